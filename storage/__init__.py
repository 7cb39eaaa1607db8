"""Persistence: aiosqlite connection, migrations and repositories (no SQL elsewhere)."""
