"""Which store a run uses: PostgreSQL when a database URL is given, else the SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from storage.api import Clock, Storage, utcnow


def open_store(
    path: Path, url: str | None = None, clock: Clock = utcnow
) -> AbstractAsyncContextManager[Storage]:
    """The store, migrated on opening: PostgreSQL at `url` if given, else SQLite at `path`.
    Each driver is imported only when chosen."""
    if url:
        from storage.postgres import PostgresStore

        return PostgresStore.open(url, clock=clock)
    from storage.db import Store

    return Store.open(path, clock=clock)


def describe(path: Path, url: str | None = None) -> str:
    """Where the data is, fit for a log line (a URL's password hidden)."""
    if url:
        from storage.postgres import safe_url

        return safe_url(url)
    return str(path.resolve())


@asynccontextmanager
async def open_read_only(path: Path, url: str | None = None) -> AsyncIterator[Storage | None]:
    """The store for reading only (never migrated, every write refused), or None when nothing
    was ever stored there (no SQLite file, or a PostgreSQL database never migrated)."""
    if url:
        from storage.postgres import PostgresStore

        async with PostgresStore.open(url, migrate=False, read_only=True) as postgres:
            yield postgres if await postgres.schema_version() else None
        return
    if not path.exists():
        yield None
        return
    from storage.db import Store

    async with Store.open_read_only(path) as sqlite:
        yield sqlite
