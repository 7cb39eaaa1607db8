"""Tickerbell: the application (settings, service, delivery, CLI); the composition root."""

__version__ = "0.1.0"
