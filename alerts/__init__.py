"""The pure core: models, the rule language, indicators and the engine. No I/O."""
