"""Copying an installation's data from its SQLite database into an empty PostgreSQL one
(`tickerbell migrate-db`): chats, subscriptions, rules with their states and snoozes, the
outbox (alerts, digests, buttons used), daily digest settings, webhooks out and inbound
secrets, the recent quotes and the secrets (so buttons under alerts already sent still work),
every row with its id, so alert numbers and history carry over.

The source is brought to this version's schema first (as any start of this version would), then
read in one read transaction: one consistent snapshot, even while a bot still writes to it
(WAL). The target is written in one transaction: all of it lands, or none. Its change log gets
one 'start' row, so a reader of the target reads every rule once.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from storage.db import Store
from storage.postgres import PostgresStore, TargetNotEmpty

__all__ = ["TABLES", "TargetNotEmpty", "sqlite_to_postgres"]

Row = tuple[Any, ...]


def _when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _flag(value: int | None) -> bool:
    return bool(value)


def _clock_time(text: str) -> time:
    return time.fromisoformat(text)


def _day(text: str | None) -> date | None:
    return None if text is None else date.fromisoformat(text)


@dataclass(frozen=True)
class Table:
    """One table to copy: its columns (the same names in both schemas) and how each SQLite
    value becomes a PostgreSQL one (None: as it is)."""

    name: str
    columns: tuple[str, ...]
    convert: tuple[Callable[[Any], Any] | None, ...]

    def row(self, values: Row) -> Row:
        return tuple(v if f is None else f(v) for f, v in zip(self.convert, values, strict=True))


# In the order foreign keys need them.
TABLES = (
    Table(
        "chats",
        ("id", "platform", "chat_id", "kind", "active", "muted_until", "charts", "created_at"),
        (None, None, None, None, _flag, _when, _flag, _when),
    ),
    Table("subscriptions", ("chat", "symbol", "created_at"), (None, None, _when)),
    Table(
        "webhooks",
        ("chat", "owner", "url", "secret", "active", "created_at"),
        (None, None, None, None, _flag, _when),
    ),
    Table("inbound", ("chat", "secret", "created_at"), (None, None, _when)),
    Table(
        "rules",
        ("id", "chat", "text", "created_by", "created_at", "active", "snoozed_until"),
        (None, None, None, None, _when, _flag, _when),
    ),
    Table("rule_state", ("rule", "state", "updated_at"), (None, None, _when)),
    Table(
        "outbox",
        (
            "id",
            "rule",
            "chat",
            "payload",
            "created_at",
            "status",
            "attempts",
            "next_attempt_at",
            "last_error",
            "delivered_at",
            "message_id",
            "actions",
            "kind",
        ),
        (None, None, None, None, _when, None, None, _when, None, _when, None, None, None),
    ),
    Table(
        "digests",
        ("chat", "at", "zone", "weekdays_only", "active", "since", "last_day"),
        (None, _clock_time, None, _flag, _flag, _when, _day),
    ),
    Table(
        "quotes",
        ("symbol", "ts", "last", "bid", "ask", "source"),
        (None, _when, None, None, None, None),
    ),
    Table("secrets", ("name", "value"), (None, None)),
)


async def sqlite_to_postgres(source: Path, url: str) -> dict[str, int]:
    """Copy every row of the SQLite database at `source` into the PostgreSQL database at `url`
    (migrated first; it must hold no chat, rule or alert yet); return rows copied per table.
    Raises FileNotFoundError, TargetNotEmpty, or StorageUnavailable (a server not answering)."""
    if not source.is_file():
        raise FileNotFoundError(f"no database at {source}")
    async with Store.open(source):  # this version's schema, as a start would make it
        pass
    rows = await asyncio.to_thread(_read_snapshot, source)
    async with PostgresStore.open(url) as target:
        return await target.load_tables([(t.name, t.columns, rows[t.name]) for t in TABLES])


def _read_snapshot(path: Path) -> dict[str, list[Row]]:
    """Every table's rows, read in one transaction (one snapshot)."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("BEGIN")
        snapshot = {
            t.name: [t.row(r) for r in conn.execute(f"SELECT {', '.join(t.columns)} FROM {t.name}")]
            for t in TABLES
        }
        conn.execute("COMMIT")
        return snapshot
    finally:
        conn.close()
