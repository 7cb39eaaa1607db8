"""Persistence: the storage contract (api), the SQLite store (db, migrations; no SQL elsewhere)
and an in-memory store (memory)."""
