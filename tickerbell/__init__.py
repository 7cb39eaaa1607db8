"""Tickerbell: the application (settings, service, delivery, CLI); the composition root."""
