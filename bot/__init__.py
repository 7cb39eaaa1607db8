"""The chat side: the platform-neutral command layer, rendering and platform adapters."""
