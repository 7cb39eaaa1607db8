"""The SQLite store (a `storage.api.Storage`): one aiosqlite connection, migrations, and every
query Tickerbell makes.

Pragmas: WAL (readers never block the writer), a 5 s busy timeout (the CLI may write while the
service runs), and `synchronous=FULL`. In WAL mode NORMAL can lose the last commits on a power
cut or OS crash (not on a process crash); a decided alert must survive both, and we commit only
a few times per tick, so the extra fsync is cheap. All writes go through one lock, so a tick's
states and alerts land in one transaction and never interleave with a chat command's write.

Reads go through a second connection: in WAL mode it sees the last commit and never a write
transaction still open on the writer (a read on the writer's connection could see, between
two awaits, the rows of a tick that then rolled back), and each read is one job on its
thread (`execute_fetchall`), so nothing runs between its statement and its rows. The file is
private to its owner (0600): it holds chat and user ids.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import sqlite3
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import aiosqlite

from alerts import rules
from alerts.models import Alert, Condition, Direction, Quote, Rule, RuleError, RuleState
from storage.api import (
    WEBHOOK,
    Chat,
    ChatDigest,
    Clock,
    DigestDue,
    DigestSetting,
    LimitReached,
    OutboxRow,
    RuleChanges,
    Storage,
    StorageUnavailable,
    StoredRule,
    Webhook,
    utcnow,
)
from storage.migrations import MIGRATIONS

# The value names callers import from here until they import them from storage.api.
__all__ = [
    "Chat",
    "Clock",
    "LimitReached",
    "OutboxRow",
    "StorageUnavailable",
    "Store",
    "StoredRule",
    "alert_from_json",
    "alert_to_json",
    "backup",
    "utcnow",
]

_CHAT_COLUMNS = "id, platform, chat_id, kind, active, muted_until, charts"
_RULE_COLUMNS = "r.id, r.chat, r.text, r.created_by, r.created_at, s.state, r.snoozed_until"
_RULES = "rules r LEFT JOIN rule_state s ON s.rule = r.id"
_REVISION = "SELECT coalesce(max(revision), 0) AS revision FROM rule_changes"
_OUTBOX_ROWS = (
    "SELECT o.id, o.rule, o.payload, o.attempts,"
    " c.id, c.platform, c.chat_id, c.kind, c.active, c.muted_until, c.charts,"
    " o.actions, o.kind FROM outbox o JOIN chats c ON c.id = o.chat"
)
_WEBHOOK_COLUMNS = "chat, owner, url, secret"
_HOOKED = "(SELECT ? UNION SELECT chat FROM webhooks WHERE owner = ?)"  # a chat and its webhooks


def alert_to_json(alert: Alert) -> str:
    """Serialise an alert for the outbox: its data, no sentence (front ends word it); an
    alert from outside keeps its note."""
    note = {} if alert.note is None else {"note": alert.note}
    return json.dumps(
        {
            **note,
            "rule_text": alert.rule_text,
            "symbol": alert.symbol,
            "condition": alert.condition.value,
            "direction": alert.direction.value,
            "price": alert.price,
            "reference": alert.reference,
            "observed": alert.observed,
            "time": alert.time.isoformat(),
            "bid": alert.bid,
            "ask": alert.ask,
        }
    )


def alert_from_json(text: str) -> Alert:
    """Inverse of `alert_to_json`; the rule is parsed back from its text.

    Rows from before alerts were data (a `message`, no `bid`/`ask`) load with no book. A rule
    text that no longer parses (the grammar changed since) loads as a bare rule of the stored
    subject and condition: the alert is still delivered, in the fewer words the wording can
    say without the rule's details, never as an error that would hold up the outbox.
    """
    data: dict[str, Any] = json.loads(text)
    note = data.get("note")
    try:
        if note is not None:
            raise RuleError("an alert from outside has no rule of ours")
        rule = rules.parse(data["rule_text"])
    except RuleError:
        rule = Rule(symbol=data["symbol"], condition=Condition(data["condition"]))
    return Alert(
        rule_text=data["rule_text"],
        rule=rule,
        direction=Direction(data["direction"]),
        price=data["price"],
        reference=data["reference"],
        observed=data["observed"],
        time=datetime.fromisoformat(data["time"]),
        bid=data.get("bid"),
        ask=data.get("ask"),
        note=note,
    )


def digest_to_json(digest: DigestDue) -> str:
    """Serialise a digest for the outbox: its local day and when it was due."""
    return json.dumps({"day": digest.day.isoformat(), "due": digest.due.isoformat()})


def digest_from_json(text: str) -> DigestDue:
    """Inverse of `digest_to_json`."""
    data: dict[str, Any] = json.loads(text)
    return DigestDue(date.fromisoformat(data["day"]), datetime.fromisoformat(data["due"]))


def _ts(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


class Store:
    """Repository over one SQLite database. Open with `async with Store.open(path) as store`."""

    def __init__(
        self, conn: aiosqlite.Connection, reader: aiosqlite.Connection, clock: Clock
    ) -> None:
        self._conn = conn
        self._reader = reader
        self._clock = clock
        self._write = asyncio.Lock()
        self._woken: list[Callable[[], None]] = []  # on_queued's callbacks

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path | str, clock: Clock = utcnow) -> AsyncIterator[Store]:
        """Open (creating if needed, owner-only), migrate, and close on exit.

        A file that cannot be opened as a database (a folder in the way, no permission, some
        other file) raises StorageUnavailable naming it, so the user is told in one line."""
        try:
            _private_file(Path(path))
            conn = await aiosqlite.connect(str(path), isolation_level=None)
        except (OSError, sqlite3.Error) as err:
            raise StorageUnavailable(f"cannot open {path}: {_reason(err)}") from err
        reader: aiosqlite.Connection | None = None
        try:
            try:
                for pragma in (
                    "journal_mode=WAL",
                    "busy_timeout=5000",
                    "synchronous=FULL",
                    "foreign_keys=ON",
                ):
                    await conn.execute(f"PRAGMA {pragma}")
                reader = await aiosqlite.connect(str(path), isolation_level=None)
                await reader.execute("PRAGMA busy_timeout=5000")
                await reader.execute("PRAGMA query_only=ON")
                store = cls(conn, reader, clock)
                await store._migrate()
            except (OSError, sqlite3.DatabaseError) as err:
                raise StorageUnavailable(f"cannot open {path}: {_reason(err)}") from err
            yield store
        finally:
            if reader is not None:
                await reader.close()
            await conn.close()

    @classmethod
    @asynccontextmanager
    async def open_read_only(cls, path: Path | str) -> AsyncIterator[Store]:
        """Open an existing database for reading only (no migration; every write fails)."""
        uri = f"{Path(path).resolve().as_uri()}?mode=ro"
        conn = await aiosqlite.connect(uri, uri=True, isolation_level=None)
        try:
            await conn.execute("PRAGMA busy_timeout=5000")
            yield cls(conn, conn, utcnow)
        finally:
            await conn.close()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One serialised write transaction: all of it lands, or none of it."""
        async with self._write:
            with _unavailable_on_failure():
                await self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    await self._conn.execute("ROLLBACK")
                    raise
                await self._conn.execute("COMMIT")

    async def _migrate(self) -> None:
        await self._conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
        )
        version = await self.schema_version()
        for number, script in enumerate(MIGRATIONS, start=1):
            if number <= version:
                continue
            async with self._transaction() as conn:
                for statement in _statements(script):
                    await conn.execute(statement)
                await conn.execute("DELETE FROM schema_version")
                await conn.execute("INSERT INTO schema_version VALUES (?)", (number,))

    async def schema_version(self) -> int:
        """The number of the last migration applied."""
        row = await self._one("SELECT max(version) FROM schema_version")
        return int(row[0]) if row and row[0] is not None else 0

    async def _one(self, sql: str, args: Iterable[Any] = ()) -> Any:
        rows = await self._all(sql, args)
        return rows[0] if rows else None

    async def _all(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        """Rows of one committed-state read, fetched in the same job as the statement."""
        with _unavailable_on_failure():
            return list(await self._reader.execute_fetchall(sql, tuple(args)))

    # --- chats ---

    async def chat(self, platform: str, chat_id: str, kind: str = "private") -> Chat:
        """The chat with this platform id, created on first sight."""
        async with self._transaction() as conn:
            await conn.execute(
                "INSERT INTO chats (platform, chat_id, kind, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (platform, chat_id) DO NOTHING",
                (platform, chat_id, kind, _ts(self._clock())),
            )
        found = await self.find_chat(platform, chat_id)
        assert found is not None
        return found

    async def find_chat(self, platform: str, chat_id: str) -> Chat | None:
        """The chat if it exists, without creating it."""
        row = await self._one(
            f"SELECT {_CHAT_COLUMNS} FROM chats WHERE platform = ? AND chat_id = ?",
            (platform, chat_id),
        )
        return _chat(row) if row else None

    async def get_chat(self, chat: int) -> Chat:
        row = await self._one(
            f"SELECT {_CHAT_COLUMNS} FROM chats WHERE id = ?",
            (chat,),
        )
        if row is None:
            raise KeyError(f"no chat {chat}")
        return _chat(row)

    async def set_chat_active(self, chat: int, active: bool) -> None:
        async with self._transaction() as conn:
            await conn.execute("UPDATE chats SET active = ? WHERE id = ?", (int(active), chat))

    async def set_muted(self, chat: int, until: datetime | None) -> None:
        async with self._transaction() as conn:
            await conn.execute("UPDATE chats SET muted_until = ? WHERE id = ?", (_ts(until), chat))

    async def set_charts(self, chat: int, on: bool) -> None:
        """Whether this chat's alerts carry a chart."""
        async with self._transaction() as conn:
            await conn.execute("UPDATE chats SET charts = ? WHERE id = ?", (int(on), chat))

    async def move_chat(self, platform: str, old_id: str, new_id: str) -> None:
        """A chat changed its id (a Telegram group became a supergroup): keep its rules."""
        async with self._transaction() as conn:
            await conn.execute(
                "UPDATE chats SET chat_id = ? WHERE platform = ? AND chat_id = ?",
                (new_id, platform, old_id),
            )

    # --- rules ---

    async def add_rule(
        self, chat: int, text: str, created_by: str, limit: int, state: RuleState | None = None
    ) -> int:
        """Insert a rule (its canonical text) and its first state; raise LimitReached past
        `limit` active rules."""
        async with self._transaction() as conn:
            async with conn.execute(
                "SELECT count(*) FROM rules WHERE chat = ? AND active = 1", (chat,)
            ) as cur:
                row = await cur.fetchone()
            if row is not None and row[0] >= limit:
                raise LimitReached(f"this chat already has {row[0]} rules (the limit is {limit})")
            stamp = _ts(self._clock())
            cursor = await conn.execute(
                "INSERT INTO rules (chat, text, created_by, created_at) VALUES (?, ?, ?, ?)",
                (chat, text, created_by, stamp),
            )
            rule = cursor.lastrowid
            assert rule is not None
            if state is not None:
                await conn.execute(
                    "INSERT INTO rule_state (rule, state, updated_at) VALUES (?, ?, ?)",
                    (rule, json.dumps(state.to_dict()), stamp),
                )
            return rule

    async def import_rules(self, rows: list[tuple[int, str, str]]) -> None:
        """Insert many (chat, canonical text, created_by) rules in one transaction (no limit)."""
        stamp = _ts(self._clock())
        async with self._transaction() as conn:
            await conn.executemany(
                "INSERT INTO rules (chat, text, created_by, created_at) VALUES (?, ?, ?, ?)",
                [(chat, text, by, stamp) for chat, text, by in rows],
            )

    async def import_chats(self, platform: str, chat_ids: list[str], kind: str) -> list[Chat]:
        """Create many chats in one transaction; return them all (new or existing)."""
        async with self._transaction() as conn:
            await conn.executemany(
                "INSERT INTO chats (platform, chat_id, kind, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (platform, chat_id) DO NOTHING",
                [(platform, chat_id, kind, _ts(self._clock())) for chat_id in chat_ids],
            )
        rows = await self._all(
            f"SELECT {_CHAT_COLUMNS} FROM chats WHERE platform = ? ORDER BY chat_id",
            (platform,),
        )
        wanted = set(chat_ids)
        return [_chat(row) for row in rows if row[2] in wanted]

    async def remove_rule(self, chat: int, rule: int) -> bool:
        """Deactivate one of this chat's rules and drop its alerts not yet sent; False when
        the chat has no such rule."""
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "UPDATE rules SET active = 0 WHERE id = ? AND chat = ? AND active = 1",
                (rule, chat),
            )
            await conn.execute(
                f"UPDATE outbox SET status = 'removed' WHERE rule = ? AND chat IN {_HOOKED}"
                " AND status = 'pending'",
                (rule, chat, chat),
            )
            return cursor.rowcount > 0

    async def remove_all_rules(self, chat: int) -> int:
        """Deactivate every rule of this chat and drop their alerts not yet sent; return how
        many rules."""
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "UPDATE rules SET active = 0 WHERE chat = ? AND active = 1", (chat,)
            )
            await conn.execute(
                f"UPDATE outbox SET status = 'removed' WHERE chat IN {_HOOKED}"
                " AND rule IS NOT NULL AND status = 'pending'",
                (chat, chat),
            )
            return cursor.rowcount

    async def remove_rules_created_by(self, chat: int, created_by: str) -> int:
        """Deactivate a chat's rules made by one author (the rules of a finished `run --rule`)."""
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "UPDATE rules SET active = 0 WHERE chat = ? AND created_by = ? AND active = 1",
                (chat, created_by),
            )
            return cursor.rowcount

    async def snooze_rule(self, chat: int, rule: int, until: datetime | None) -> bool:
        """Snooze (or, with None, wake) one of this chat's active rules; its stored state is
        relearned in the same transaction."""
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "UPDATE rules SET snoozed_until = ? WHERE id = ? AND chat = ? AND active = 1",
                (_ts(until), rule, chat),
            )
            if cursor.rowcount == 0:
                return False
            async with conn.execute("SELECT state FROM rule_state WHERE rule = ?", (rule,)) as cur:
                found = await cur.fetchone()
            if found is not None:
                state = RuleState.from_dict(json.loads(found[0])).relearned()
                await conn.execute(
                    "UPDATE rule_state SET state = ?, updated_at = ? WHERE rule = ?",
                    (json.dumps(state.to_dict()), _ts(self._clock()), rule),
                )
            return True

    async def rules(self, chat: int | None = None) -> list[StoredRule]:
        """Active rules with their states: one chat's, or everyone's."""
        sql = f"SELECT {_RULE_COLUMNS} FROM {_RULES} WHERE r.active = 1"
        args: tuple[Any, ...] = ()
        if chat is not None:
            sql += " AND r.chat = ?"
            args = (chat,)
        return _stored_rules(await self._all(sql + " ORDER BY r.id", args))

    async def rules_page(self, after: int, limit: int) -> list[StoredRule]:
        """Up to `limit` active rules with ids above `after`, by id."""
        rows = await self._all(
            f"SELECT {_RULE_COLUMNS} FROM {_RULES} WHERE r.active = 1 AND r.id > ?"
            " ORDER BY r.id LIMIT ?",
            (after, limit),
        )
        return _stored_rules(rows)

    async def rules_revision(self) -> int:
        """The revision of the last rule change: the last row of the change log."""
        row = await self._one(_REVISION)
        return int(row[0])

    async def rule_changes(self, since: int) -> RuleChanges | None:
        """The changes after `since` from the log the triggers keep (migration 5); the
        revision and the changes are read in one statement, so in one snapshot."""
        rows = await self._all(
            f"SELECT m.revision, c.revision, c.kind, c.rule, r.active, {_RULE_COLUMNS}"
            f" FROM ({_REVISION}) m LEFT JOIN rule_changes c ON c.revision > ?"
            " LEFT JOIN rules r ON r.id = c.rule LEFT JOIN rule_state s ON s.rule = c.rule"
            " ORDER BY c.revision",
            (since,),
        )
        revision, first, kind = rows[0][:3]
        if revision == since:
            return RuleChanges(since)
        if revision < since or first != since + 1 or kind == "start":
            return None  # the store went back, or its log does not reach back to `since`
        changed = sorted({row[3]: row for row in rows if row[2] == "rule"}.items())
        return RuleChanges(
            revision,
            tuple(_stored_rules([row[5:] for _, row in changed if row[4]])),
            tuple(rule for rule, row in changed if not row[4]),
            subscriptions=any(row[2] == "subscription" for row in rows),
        )

    # --- a tick: states and alerts together ---

    async def commit_tick(
        self,
        states: dict[int, RuleState],
        alerts: Sequence[tuple[int | None, int, Alert]],
        epoch: int | None = None,  # one process: one engine, nothing to fence
    ) -> int:
        """Save changed rule states and enqueue (rule, chat, alert) in one transaction.

        Alerts for a muted or inactive chat are recorded as such and not delivered. Returns
        how many rows now wait for delivery.
        """
        now = self._clock()
        stamp = _ts(now)
        async with self._transaction() as conn:
            await conn.executemany(
                "INSERT INTO rule_state (rule, state, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (rule) DO UPDATE SET state = excluded.state,"
                " updated_at = excluded.updated_at",
                ((rule, json.dumps(state.to_dict()), stamp) for rule, state in states.items()),
            )
            owners = {chat for _, chat, _ in alerts}
            hooks = await self._hooks(conn, owners)
            status = await self._delivery_status(
                conn, owners | {hook for chats in hooks.values() for hook in chats}, now
            )
            rows = []
            for rule, chat, alert in alerts:
                payload = alert_to_json(alert)
                own = status.get(chat, "pending")
                rows.append((rule, chat, payload, stamp, own))
                for hook in hooks.get(chat, ()):
                    hook_status = own if own != "pending" else status.get(hook, "pending")
                    rows.append((rule, hook, payload, stamp, hook_status))
            await conn.executemany(
                "INSERT INTO outbox (rule, chat, payload, created_at, status)"
                " VALUES (?, ?, ?, ?, ?)",
                rows,
            )
        queued = sum(1 for row in rows if row[4] == "pending")
        if queued:
            self._queued()
        return queued

    def on_queued(self, wake: Callable[[], None]) -> None:
        """Call `wake` after each commit that queued pending rows (one process: no other
        writes to this database queue any)."""
        self._woken.append(wake)

    def _queued(self) -> None:
        for wake in self._woken:
            wake()

    @staticmethod
    async def _hooks(conn: aiosqlite.Connection, owners: set[int]) -> dict[int, list[int]]:
        """The active webhooks of each of these chats, by id."""
        if not owners:
            return {}
        marks = ",".join("?" * len(owners))
        async with conn.execute(
            f"SELECT owner, chat FROM webhooks WHERE active = 1 AND owner IN ({marks})"
            " ORDER BY chat",
            tuple(owners),
        ) as cur:
            rows = await cur.fetchall()
        hooks: dict[int, list[int]] = {}
        for owner, chat in rows:
            hooks.setdefault(owner, []).append(chat)
        return hooks

    @staticmethod
    async def _delivery_status(
        conn: aiosqlite.Connection, chats: set[int], now: datetime
    ) -> dict[int, str]:
        """'muted' or 'inactive' for the chats that must not get alerts now."""
        if not chats:
            return {}
        marks = ",".join("?" * len(chats))
        async with conn.execute(
            f"SELECT id, muted_until, active FROM chats WHERE id IN ({marks})", tuple(chats)
        ) as cur:
            rows = await cur.fetchall()
        status: dict[int, str] = {}
        for chat, muted_until, active in rows:
            if muted_until is not None and datetime.fromisoformat(muted_until) > now:
                status[chat] = "muted"
            elif not active:
                status[chat] = "inactive"
        return status

    # --- the outbox ---

    async def pending(self, limit: int = 500) -> list[OutboxRow]:
        """Undelivered rows that are due, oldest first, so each chat gets them in order: a chat
        whose earliest row waits for its retry time gets none of its later rows meanwhile."""
        return await self.claim(limit)

    async def claim(
        self, limit: int = 500, platforms: Collection[str] | None = None
    ) -> list[OutboxRow]:
        """The pending rows of these platforms: one process delivers from a SQLite database, so
        every chat is its own."""
        now = _ts(self._clock())
        names = list(platforms) if platforms is not None else []
        only = f" AND c.platform IN ({','.join('?' * len(names))})" if platforms is not None else ""
        rows = await self._all(
            f"{_OUTBOX_ROWS}"
            f" WHERE o.status = 'pending'{only} AND NOT EXISTS ("
            "  SELECT 1 FROM outbox w WHERE w.status = 'pending' AND w.chat = o.chat"
            "  AND w.id <= o.id AND w.next_attempt_at > ?)"
            " ORDER BY o.id LIMIT ?",
            (*names, now, limit),
        )
        return [_outbox_row(row) for row in rows]

    async def release(self) -> None:
        return None

    async def outbox_row(self, row: int) -> OutboxRow | None:
        """One row by id, whatever its status."""
        found = await self._one(f"{_OUTBOX_ROWS} WHERE o.id = ?", (row,))
        return None if found is None else _outbox_row(found)

    async def mark_action(self, row: int, action: str) -> bool:
        """Record a button used on the row's message; False when it was already."""
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "UPDATE outbox SET actions = actions || ? WHERE id = ? AND instr(actions, ?) = 0",
                (action, row, action),
            )
            return cursor.rowcount > 0

    async def unmark_action(self, row: int, action: str) -> None:
        async with self._transaction() as conn:
            await conn.execute(
                "UPDATE outbox SET actions = replace(actions, ?, '') WHERE id = ?", (action, row)
            )

    async def mark_delivered(self, row: int, message_id: str | None) -> None:
        async with self._transaction() as conn:
            await conn.execute(
                "UPDATE outbox SET status = 'delivered', delivered_at = ?, message_id = ?,"
                " attempts = attempts + 1 WHERE id = ?",
                (_ts(self._clock()), message_id, row),
            )

    async def mark_retry(self, row: int, error: str, next_attempt: datetime) -> None:
        async with self._transaction() as conn:
            await conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?"
                " WHERE id = ?",
                (error[:500], _ts(next_attempt), row),
            )

    async def mark_failed(self, row: int, error: str) -> None:
        """A permanent failure: the row stops being retried and keeps its error."""
        async with self._transaction() as conn:
            await conn.execute(
                "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ?"
                " WHERE id = ?",
                (error[:500], row),
            )

    async def outbox_counts(self) -> dict[str, int]:
        """Rows per status (pending, delivered, failed, muted, inactive, removed)."""
        rows = await self._all("SELECT status, count(*) FROM outbox GROUP BY status")
        return {status: count for status, count in rows}

    async def history(self, chat: int, limit: int = 20) -> list[tuple[str, Alert]]:
        """A chat's recent alerts, newest first, with their delivery status."""
        rows = await self._all(
            "SELECT status, payload FROM outbox WHERE chat = ? AND kind = 'alert'"
            " ORDER BY id DESC LIMIT ?",
            (chat, limit),
        )
        return [(status, alert_from_json(payload)) for status, payload in rows]

    async def prune_outbox(self, before: datetime) -> int:
        """Forget finished alerts (delivered, failed, muted, inactive, removed) decided before
        `before`, so the outbox and the history stay bounded; pending rows stay whatever their
        age. Returns how many rows went. The file keeps its size: freed pages are reused."""
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "DELETE FROM outbox WHERE status != 'pending' AND created_at < ?", (_ts(before),)
            )
            return cursor.rowcount

    # --- subscriptions ---

    async def subscribe(self, chat: int, symbol: str) -> bool:
        """Subscribe a chat to a symbol's notable-move digest; False if it already was."""
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "INSERT INTO subscriptions (chat, symbol, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (chat, symbol, _ts(self._clock())),
            )
            return cursor.rowcount > 0

    async def unsubscribe(self, chat: int, symbol: str | None = None) -> int:
        """Drop one subscription, or all of a chat's; return how many."""
        async with self._transaction() as conn:
            if symbol is None:
                cursor = await conn.execute("DELETE FROM subscriptions WHERE chat = ?", (chat,))
            else:
                cursor = await conn.execute(
                    "DELETE FROM subscriptions WHERE chat = ? AND symbol = ?", (chat, symbol)
                )
            return cursor.rowcount

    async def subscriptions(self, chat: int | None = None) -> list[tuple[int, str]]:
        """(chat, symbol) pairs: one chat's, or all."""
        if chat is None:
            rows = await self._all("SELECT chat, symbol FROM subscriptions ORDER BY chat, symbol")
            return [(r[0], r[1]) for r in rows]
        rows = await self._all(
            "SELECT chat, symbol FROM subscriptions WHERE chat = ? ORDER BY symbol", (chat,)
        )
        return [(r[0], r[1]) for r in rows]

    # --- secrets ---

    async def secret(self, name: str) -> str:
        """The named secret, made (random) on first use."""
        async with self._transaction() as conn:
            await conn.execute(
                "INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                (name, secrets.token_hex(32)),
            )
            async with conn.execute("SELECT value FROM secrets WHERE name = ?", (name,)) as cur:
                row = await cur.fetchone()
        assert row is not None
        return str(row[0])

    # --- daily digests ---

    async def set_digest(self, chat: int, setting: DigestSetting | None) -> None:
        """Set a chat's digest from now on, or turn it off; its last day sent stays."""
        async with self._transaction() as conn:
            if setting is None:
                await conn.execute("UPDATE digests SET active = 0 WHERE chat = ?", (chat,))
                return
            await conn.execute(
                "INSERT INTO digests (chat, at, zone, weekdays_only, active, since)"
                " VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT (chat) DO UPDATE SET at = excluded.at,"
                " zone = excluded.zone, weekdays_only = excluded.weekdays_only, active = 1,"
                " since = excluded.since",
                (
                    chat,
                    setting.at.isoformat("minutes"),
                    setting.zone,
                    int(setting.weekdays_only),
                    _ts(self._clock()),
                ),
            )

    async def digests(self, chat: int | None = None) -> list[ChatDigest]:
        """The digests that are on, by chat."""
        sql = "SELECT chat, at, zone, weekdays_only, since, last_day FROM digests WHERE active = 1"
        args: tuple[Any, ...] = ()
        if chat is not None:
            sql += " AND chat = ?"
            args = (chat,)
        rows = await self._all(sql + " ORDER BY chat", args)
        return [
            ChatDigest(
                row[0],
                DigestSetting(time.fromisoformat(row[1]), row[2], bool(row[3])),
                datetime.fromisoformat(row[4]),
                None if row[5] is None else date.fromisoformat(row[5]),
            )
            for row in rows
        ]

    async def enqueue_digest(self, chat: int, digest: DigestDue) -> bool:
        """Record the day and put the digest in the outbox, in one transaction; False when
        the digest is off or that day's (or a later one's) went out already."""
        now = self._clock()
        day = digest.day.isoformat()
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "UPDATE digests SET last_day = ? WHERE chat = ? AND active = 1"
                " AND (last_day IS NULL OR last_day < ?)",
                (day, chat, day),
            )
            if cursor.rowcount == 0:
                return False
            status = await self._delivery_status(conn, {chat}, now)
            await conn.execute(
                "INSERT INTO outbox (rule, chat, payload, created_at, status, kind)"
                " VALUES (NULL, ?, ?, ?, ?, 'digest')",
                (chat, digest_to_json(digest), _ts(now), status.get(chat, "pending")),
            )
        if chat not in status:
            self._queued()
        return True

    # --- webhooks ---

    async def add_webhook(self, owner: int, url: str, secret: str) -> tuple[Webhook, bool]:
        """Make `url` a webhook of chat `owner`; True when it was not one already."""
        chat_id = f"{owner}:{hashlib.sha256(url.encode()).hexdigest()[:16]}"  # no secret in it
        stamp = _ts(self._clock())
        async with self._transaction() as conn:
            await conn.execute(
                "INSERT INTO chats (platform, chat_id, kind, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (platform, chat_id) DO UPDATE SET active = 1",
                (WEBHOOK, chat_id, WEBHOOK, stamp),
            )
            async with conn.execute(
                "SELECT id FROM chats WHERE platform = ? AND chat_id = ?", (WEBHOOK, chat_id)
            ) as cur:
                row = await cur.fetchone()
            assert row is not None
            chat = int(row[0])
            async with conn.execute("SELECT active FROM webhooks WHERE chat = ?", (chat,)) as cur:
                found = await cur.fetchone()
            await conn.execute(
                "INSERT INTO webhooks (chat, owner, url, secret, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (chat) DO UPDATE SET active = 1,"
                " secret = excluded.secret",
                (chat, owner, url, secret, stamp),
            )
        return Webhook(chat, owner, url, secret), found is None or not found[0]

    async def remove_webhook(self, owner: int, webhook: int) -> bool:
        """Stop one of this chat's webhooks and drop its alerts not yet sent."""
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "UPDATE webhooks SET active = 0 WHERE chat = ? AND owner = ? AND active = 1",
                (webhook, owner),
            )
            if cursor.rowcount == 0:
                return False
            await conn.execute(
                "UPDATE outbox SET status = 'removed' WHERE chat = ? AND status = 'pending'",
                (webhook,),
            )
            return True

    async def webhooks(self, owner: int | None = None) -> list[Webhook]:
        """Active webhooks, one chat's or all, by id."""
        sql = f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE active = 1"
        args: tuple[int, ...] = ()
        if owner is not None:
            sql, args = sql + " AND owner = ?", (owner,)
        return [Webhook(*row) for row in await self._all(sql + " ORDER BY chat", args)]

    async def webhook(self, chat: int) -> Webhook | None:
        row = await self._one(
            f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE chat = ? AND active = 1", (chat,)
        )
        return None if row is None else Webhook(*row)

    async def set_inbound_secret(self, chat: int, secret: str | None) -> None:
        async with self._transaction() as conn:
            await conn.execute("DELETE FROM inbound WHERE chat = ?", (chat,))
            if secret is not None:
                await conn.execute(
                    "INSERT INTO inbound (chat, secret, created_at) VALUES (?, ?, ?)",
                    (chat, secret, _ts(self._clock())),
                )

    async def inbound_secret(self, chat: int) -> str | None:
        row = await self._one("SELECT secret FROM inbound WHERE chat = ?", (chat,))
        return None if row is None else str(row[0])

    async def inbound_chat(self, secret: str) -> Chat | None:
        row = await self._one(
            f"SELECT {_CHAT_COLUMNS} FROM chats WHERE id = (SELECT chat FROM inbound"
            " WHERE secret = ?)",
            (secret,),
        )
        return None if row is None else _chat(row)

    # --- recent quotes ---

    async def save_quotes(self, quotes: Iterable[Quote]) -> None:
        """Record good quotes (they warm the market after a restart)."""
        rows = [(q.symbol, _ts(q.ts), q.last, q.bid, q.ask, q.source) for q in quotes]
        async with self._transaction() as conn:
            await conn.executemany(
                "INSERT OR REPLACE INTO quotes (symbol, ts, last, bid, ask, source)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )

    async def prune_quotes(self, before: datetime) -> int:
        """Drop quotes older than `before`; return how many."""
        async with self._transaction() as conn:
            cursor = await conn.execute("DELETE FROM quotes WHERE ts < ?", (_ts(before),))
            return cursor.rowcount

    async def recent_quotes(
        self, symbol: str, since: datetime | None = None, limit: int = 20_000
    ) -> list[Quote]:
        """A symbol's stored quotes (since a time), oldest first."""
        rows = await self._all(
            "SELECT symbol, ts, last, bid, ask, source FROM quotes WHERE symbol = ? AND ts >= ?"
            " ORDER BY ts DESC LIMIT ?",
            (symbol, _ts(since) or "", limit),
        )
        return [
            Quote(r[0], r[2], datetime.fromisoformat(r[1]), bid=r[3], ask=r[4], source=r[5])
            for r in reversed(rows)
        ]


_STORE_IS_STORAGE: type[Storage] = Store  # mypy checks that Store keeps the contract


async def backup(source: Path | str, target: Path | str) -> None:
    """Copy a database, live or not, to a new file with SQLite's online backup API.

    The copy is the last commit as one consistent snapshot, taken in one step while the bot
    keeps writing (WAL: the writer is not blocked). It is checked (`quick_check`), made a
    self-contained file (rollback journal instead of WAL) and owner-only, and appears under its
    name only once complete. Restore: stop the bot, delete the database's `-wal` and `-shm` files
    if any, copy the backup over the database.
    """
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise FileNotFoundError(f"no database at {source}")
    if target.exists():
        raise FileExistsError(f"{target} already exists; name a new file or a folder")
    await asyncio.to_thread(_backup, source, target)


def _backup(source: Path, target: Path) -> None:
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    _private_file(partial)
    src = sqlite3.connect(source)
    try:
        src.execute("PRAGMA busy_timeout=5000")
        src.execute("PRAGMA query_only=ON")
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)  # pages=-1: every page in one step, so one snapshot
            dst.execute("PRAGMA journal_mode=DELETE")
            (check,) = dst.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise sqlite3.DatabaseError(f"the backup does not check out: {check}")
        finally:
            dst.close()
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        src.close()


@contextmanager
def _unavailable_on_failure() -> Iterator[None]:
    """SQLite's operational errors (a full disk, an I/O error, a lock held past the busy
    timeout) as the contract's StorageUnavailable; integrity errors pass unchanged."""
    try:
        yield
    except sqlite3.OperationalError as err:
        raise StorageUnavailable(str(err)) from err


def _reason(err: Exception) -> str:
    """An error's own words without its errno prefix (`Permission denied`)."""
    return err.strerror if isinstance(err, OSError) and err.strerror else str(err)


def _private_file(path: Path) -> None:
    """Create the database file readable by its owner only, or make an existing one so."""
    if str(path) == ":memory:":
        return
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o600)


def _statements(script: str) -> list[str]:
    """Split a migration into statements (triggers keep their inner semicolons)."""
    out, buffer = [], ""
    for part in script.split(";"):
        buffer += part + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \n;"):
                out.append(buffer.strip())
            buffer = ""
    return out


def _stored_rules(rows: Iterable[Any]) -> list[StoredRule]:
    """Rule rows (`_RULE_COLUMNS`) as values; equal states are parsed once and shared (a
    state is frozen, and a million rules hold few distinct ones)."""
    states: dict[str, RuleState] = {}
    out = []
    for rule, chat, text, created_by, created_at, state_json, snoozed_until in rows:
        state = None
        if state_json:
            state = states.get(state_json)
            if state is None:
                state = states[state_json] = RuleState.from_dict(json.loads(state_json))
        out.append(
            StoredRule(
                rule,
                chat,
                text,
                created_by,
                datetime.fromisoformat(created_at),
                state,
                _dt(snoozed_until),
            )
        )
    return out


def _outbox_row(row: Any) -> OutboxRow:
    """An `_OUTBOX_ROWS` row as a value."""
    payload = digest_from_json(row[2]) if row[12] == "digest" else alert_from_json(row[2])
    return OutboxRow(row[0], row[1], _chat(row[4:11]), payload, row[3], frozenset(row[11]))


def _chat(row: Any) -> Chat:
    return Chat(
        id=row[0],
        platform=row[1],
        chat_id=row[2],
        kind=row[3],
        active=bool(row[4]),
        muted_until=_dt(row[5]),
        charts=bool(row[6]),
    )
