"""The PostgreSQL store (a `storage.api.Storage`), selected by `TICKERBELL_DATABASE_URL`: for
more than one process on one database, where SQLite's single file stops.

The driver is psycopg 3 (async, with psycopg_pool), not asyncpg: it ships its own type hints
(mypy strict checks our calls without stubs), raises the DB-API exceptions the SQLite store
already speaks (`OperationalError` for a lost or refused connection becomes
`StorageUnavailable`, `IntegrityError` stays the integrity error), takes libpq connection
strings as they are (`?options=-c search_path=...`, sslmode, service files), and its pool checks
a connection before lending it, so a restarted server costs no failed call. asyncpg is faster
per row; at our few statements per tick the difference does not show.

Each call takes a pooled connection in autocommit mode: a read is one statement (one snapshot,
as in SQLite), a write one explicit transaction. Arrays go to the server in binary (`%b`): for
a tick saving 100k states, text arrays took three to four times as long. Rule changes take
their revisions from a counter row (migration 1), so revisions follow commit order without
gaps; a tick's outbox rows take an advisory lock while they are numbered, so ids follow commit
order too and a reader of `pending` never sees a later row of a chat before an earlier one.
Times are `timestamptz`, read back in UTC (each connection's time zone is set so).

Delivery by several processes (`claim`): each store takes per-chat advisory locks, with
`pg_try_advisory_lock`, on a session of its own (the claims session), reads the due rows of
the chats it got in a new statement (so it sees every mark their last holder committed before
letting go), and lets all of them go at the end of a round (`pg_advisory_unlock_all`). A chat
held by another process is skipped whole: rows queued for it while its holder sends its earlier
rows wait for the holder's round to end (the holder is woken by their NOTIFY too and takes them
next). The outcome of every send (`mark_*`) is written on the claims session, so it is the
fence: once that session is gone (its locks free for another process to take) no mark lands
and delivery holds, so a process that lost its claims sends at most the one row per chat that
was in flight. Chosen over a claims table with an expiry renewed while sending (rows locked
with `FOR UPDATE SKIP LOCKED`), because the server frees a dead process's locks the moment its
session ends: after kill -9 the kernel closes the socket and another process can take the chats
at its next round, where an expiry must outlast the slowest send (timeouts, a chart, a 429's
retry_after: tens of seconds) and every takeover waits for it; a row lock held across a send
would instead keep a transaction, and a pooled connection, open per chat. A host that vanishes
without closing its socket is found by TCP keepalives (LEASE_KEEPALIVE), as for a `Lease`.

The engine is fenced by an epoch (`take_engine`, table `fences`): a process that starts the
engine bumps the engine's row, and each of its ticks reads that row FOR SHARE in its own
transaction and is refused (`Fenced`, rolled back) when the epoch is no longer its own. The
bump waits for the row's share locks, so it comes after any tick of the old holder that is
committing, and the new holder then reads every state that tick saved; the old holder's later
ticks see the new epoch. The lease alone cannot do this: its holder learns that it lost the
lease only at its next check, and a tick in flight commits meanwhile. Writes without an epoch
(a TradingView post, taken by every process) are not fenced; nor are daily digests, which
`enqueue_digest` puts in the outbox at most once per chat and day whoever runs it.

Queued rows wake delivery everywhere: `commit_tick` and `enqueue_digest` send a NOTIFY (payload:
the schema) in their transaction when they queued pending rows, and a store asked to
(`on_queued`) keeps a listening connection, reconnecting with backoff (logged once per outage).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from alerts.models import Alert, Quote, RuleState
from storage.api import (
    WEBHOOK,
    BudgetStore,
    Chat,
    ChatDigest,
    Clock,
    DigestDue,
    DigestSetting,
    EngineFence,
    Fenced,
    LimitReached,
    OutboxRow,
    RuleChanges,
    Slots,
    Storage,
    StorageUnavailable,
    StoredRule,
    Webhook,
    utcnow,
)
from storage.db import alert_from_json, alert_to_json, digest_from_json, digest_to_json
from storage.pg_migrations import MIGRATIONS

Connection = psycopg.AsyncConnection[tuple[Any, ...]]

log = logging.getLogger(__name__)

SCHEMES = ("postgresql://", "postgres://")
OPEN_SECONDS = 10.0  # to reach the server at start, and to get a connection from the pool
POOL_SIZE = 10
# Advisory lock keys (any fixed bigints, the same in every process on one database).
MIGRATION_LOCK = 0x7469636B_0001  # "tick", 1
OUTBOX_LOCK = 0x7469636B_0002
# A lease's two keys: ours, and the hash of its name within the schema (advisory locks are
# per database: two installations in two schemas of one database must not share a lease).
LEASE_CLASS = 0x7469636B
LEASE_KEY = "hashtext(current_schema() || ':' || %s)"
LEASE_KEEPALIVE = (10, 2, 3)  # TCP keepalive: idle seconds, seconds between probes, probes
REASON_SECONDS = 5  # the direct try that finds why a server cannot be reached
CHECK_SECONDS = 5.0  # a lease's session that does not answer this fast is taken as lost
# Delivery claims: a chat's lock keys are this hash and the chat id (the low 31 bits: ids that
# far apart share a lock, which only makes one wait for the other).
CLAIM_KEY = "hashtext(current_schema() || ':delivery'), (chat & 2147483647)::int4"
CHANNEL = "tickerbell_outbox"  # NOTIFY'd with the schema as payload when rows are queued
_NOTIFY = f"SELECT pg_notify('{CHANNEL}', current_schema())"
LISTEN_RETRY = (1.0, 60.0)  # the listener reconnects after 1 s, 2 s, ... at most a minute

_CHAT_COLUMNS = "id, platform, chat_id, kind, active, muted_until, charts"
_RULE_COLUMNS = "r.id, r.chat, r.text, r.created_by, r.created_at, s.state, r.snoozed_until"
_RULES = "rules r LEFT JOIN rule_state s ON s.rule = r.id"
_OUTBOX_ROWS = (
    "SELECT o.id, o.rule, o.payload, o.attempts,"
    " c.id, c.platform, c.chat_id, c.kind, c.active, c.muted_until, c.charts,"
    " o.actions, o.kind FROM outbox o JOIN chats c ON c.id = o.chat"
)
_WEBHOOK_COLUMNS = "chat, owner, url, secret"
_HOOKED = "(SELECT %s UNION SELECT chat FROM webhooks WHERE owner = %s)"  # a chat and its webhooks
_REVISION = "SELECT value FROM meta WHERE key = 'rules_revision'"
ENGINE_FENCE = "engine"  # the engine's row in `fences`


class TargetNotEmpty(Exception):
    """The database already holds Tickerbell data, so whole tables cannot be loaded into it."""


def is_postgres_url(url: str) -> bool:
    """Whether a database URL names PostgreSQL."""
    return url.startswith(SCHEMES)


def safe_url(url: str) -> str:
    """The URL fit for a log line: the password, if any, replaced."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class PostgresStore:
    """Repository over one PostgreSQL database (or schema, by the URL's search_path). Open
    with `async with PostgresStore.open(url) as store`."""

    def __init__(self, pool: AsyncConnectionPool[Connection], clock: Clock, url: str) -> None:
        self._pool = pool
        self._url = url
        self._clock = clock
        self._claims: Connection | None = None  # the session holding this store's claims
        self._holding = False  # a claim gave rows, not yet released
        self._claims_lost = False  # the session ended while holding: marks refused
        self._woken: list[Callable[[], None]] = []  # on_queued's callbacks
        self._listener: asyncio.Task[None] | None = None

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        url: str,
        clock: Clock = utcnow,
        *,
        migrate: bool = True,
        read_only: bool = False,
        timeout: float = OPEN_SECONDS,
    ) -> AsyncIterator[PostgresStore]:
        """Connect (StorageUnavailable when the server cannot be reached within `timeout`
        seconds, which also bounds each later wait for a connection), migrate unless told not
        to (or `read_only`: every write is then refused by the server), and close the pool on
        exit."""
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            url,
            kwargs={"autocommit": True},
            min_size=1,
            max_size=POOL_SIZE,
            open=False,
            configure=_read_only if read_only else _configure,
            check=AsyncConnectionPool.check_connection,
            timeout=timeout,
            # Reconnection backs off exponentially until it gives up after this long; then the
            # next call starts a new attempt at once. A short one bounds the wait, once the
            # server is back, to about `timeout` (psycopg_pool's backoff has no cap of its own).
            reconnect_timeout=timeout,
            name="tickerbell",
        )
        try:
            try:
                await pool.open(wait=True, timeout=timeout)
            except psycopg.OperationalError:  # the pool says only that it gave up waiting
                reason = await _why_unreachable(url)
                raise StorageUnavailable(f"cannot connect to {safe_url(url)}: {reason}") from None
            store = cls(pool, clock, url)
            if migrate and not read_only:
                await store._migrate()
            try:
                yield store
            finally:
                await store._close_sessions()
        finally:
            await pool.close()

    async def _close_sessions(self) -> None:
        """Stop listening and end the claims session (its claims go with it)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        await self._drop_claims()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Connection]:
        """One write transaction: all of it lands, or none of it."""
        with _unavailable_on_failure():
            async with self._pool.connection() as conn, conn.transaction():
                yield conn

    async def _all(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one statement (one snapshot of committed data)."""
        with _unavailable_on_failure():
            async with self._pool.connection() as conn:
                cursor = await conn.execute(sql, args)
                return await cursor.fetchall()

    async def _one(self, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        rows = await self._all(sql, args)
        return rows[0] if rows else None

    async def _migrate(self) -> None:
        async with self._transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER)")
        for number, script in enumerate(MIGRATIONS, start=1):
            async with self._transaction() as conn:
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                cursor = await conn.execute("SELECT max(version) FROM schema_version")
                row = await cursor.fetchone()
                if row is not None and row[0] is not None and row[0] >= number:
                    continue
                await conn.execute(script)  # no parameters: many statements in one go
                await conn.execute("DELETE FROM schema_version")
                await conn.execute("INSERT INTO schema_version VALUES (%s)", (number,))

    async def schema_version(self) -> int:
        """The number of the last migration applied (0 in a database never migrated)."""
        if await self._one("SELECT to_regclass('schema_version')") == (None,):
            return 0
        row = await self._one("SELECT max(version) FROM schema_version")
        return int(row[0]) if row and row[0] is not None else 0

    # --- chats ---

    async def chat(self, platform: str, chat_id: str, kind: str = "private") -> Chat:
        found = await self.find_chat(platform, chat_id)
        if found is not None:
            return found
        async with self._transaction() as conn:
            await conn.execute(
                "INSERT INTO chats (platform, chat_id, kind, created_at) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (platform, chat_id) DO NOTHING",
                (platform, chat_id, kind, self._clock()),
            )
        found = await self.find_chat(platform, chat_id)
        assert found is not None
        return found

    async def find_chat(self, platform: str, chat_id: str) -> Chat | None:
        row = await self._one(
            f"SELECT {_CHAT_COLUMNS} FROM chats WHERE platform = %s AND chat_id = %s",
            (platform, chat_id),
        )
        return _chat(row) if row else None

    async def get_chat(self, chat: int) -> Chat:
        row = await self._one(f"SELECT {_CHAT_COLUMNS} FROM chats WHERE id = %s", (chat,))
        if row is None:
            raise KeyError(f"no chat {chat}")
        return _chat(row)

    async def set_chat_active(self, chat: int, active: bool) -> None:
        await self._write("UPDATE chats SET active = %s WHERE id = %s", (active, chat))

    async def set_muted(self, chat: int, until: datetime | None) -> None:
        await self._write("UPDATE chats SET muted_until = %s WHERE id = %s", (until, chat))

    async def set_charts(self, chat: int, on: bool) -> None:
        await self._write("UPDATE chats SET charts = %s WHERE id = %s", (on, chat))

    async def move_chat(self, platform: str, old_id: str, new_id: str) -> None:
        await self._write(
            "UPDATE chats SET chat_id = %s WHERE platform = %s AND chat_id = %s",
            (new_id, platform, old_id),
        )

    async def import_chats(self, platform: str, chat_ids: list[str], kind: str) -> list[Chat]:
        await self._write(
            "INSERT INTO chats (platform, chat_id, kind, created_at)"
            " SELECT %s, chat_id, %s, %s FROM unnest(%b::text[]) AS chat_id"
            " ON CONFLICT (platform, chat_id) DO NOTHING",
            (platform, kind, self._clock(), chat_ids),
        )
        rows = await self._all(
            f"SELECT {_CHAT_COLUMNS} FROM chats WHERE platform = %s AND chat_id = ANY(%s)"
            " ORDER BY chat_id",
            (platform, chat_ids),
        )
        return [_chat(row) for row in rows]

    async def _write(self, sql: str, args: Sequence[Any]) -> int:
        """One statement in its own transaction; how many rows it touched."""
        async with self._transaction() as conn:
            cursor = await conn.execute(sql, args)
            return cursor.rowcount

    # --- rules ---

    async def add_rule(
        self, chat: int, text: str, created_by: str, limit: int, state: RuleState | None = None
    ) -> int:
        async with self._transaction() as conn:
            # The chat's row lock makes count-then-insert atomic against another process's add.
            await conn.execute("SELECT 1 FROM chats WHERE id = %s FOR NO KEY UPDATE", (chat,))
            cursor = await conn.execute(
                "SELECT count(*) FROM rules WHERE chat = %s AND active", (chat,)
            )
            row = await cursor.fetchone()
            count = row[0] if row is not None else 0
            if count >= limit:
                raise LimitReached(f"this chat already has {count} rules (the limit is {limit})")
            cursor = await conn.execute(
                "INSERT INTO rules (chat, text, created_by, created_at)"
                " VALUES (%s, %s, %s, %s) RETURNING id",
                (chat, text, created_by, self._clock()),
            )
            made = await cursor.fetchone()
            assert made is not None
            rule = int(made[0])
            if state is not None:
                await conn.execute(
                    "INSERT INTO rule_state (rule, state, updated_at) VALUES (%s, %s, %s)",
                    (rule, json.dumps(state.to_dict()), self._clock()),
                )
            return rule

    async def import_rules(self, rows: list[tuple[int, str, str]]) -> None:
        await self._write(
            "INSERT INTO rules (chat, text, created_by, created_at)"
            " SELECT chat, text, created_by, %s"
            " FROM unnest(%b::bigint[], %b::text[], %b::text[]) WITH ORDINALITY"
            " AS t(chat, text, created_by, n) ORDER BY n",
            (
                self._clock(),
                [chat for chat, _, _ in rows],
                [text for _, text, _ in rows],
                [by for _, _, by in rows],
            ),
        )

    async def remove_rule(self, chat: int, rule: int) -> bool:
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "UPDATE rules SET active = FALSE WHERE id = %s AND chat = %s AND active",
                (rule, chat),
            )
            await conn.execute(
                f"UPDATE outbox SET status = 'removed' WHERE rule = %s AND chat IN {_HOOKED}"
                " AND status = 'pending'",
                (rule, chat, chat),
            )
            return cursor.rowcount > 0

    async def remove_all_rules(self, chat: int) -> int:
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "UPDATE rules SET active = FALSE WHERE chat = %s AND active", (chat,)
            )
            await conn.execute(
                f"UPDATE outbox SET status = 'removed' WHERE chat IN {_HOOKED}"
                " AND rule IS NOT NULL AND status = 'pending'",
                (chat, chat),
            )
            return cursor.rowcount

    async def remove_rules_created_by(self, chat: int, created_by: str) -> int:
        return await self._write(
            "UPDATE rules SET active = FALSE WHERE chat = %s AND created_by = %s AND active",
            (chat, created_by),
        )

    async def snooze_rule(self, chat: int, rule: int, until: datetime | None) -> bool:
        """Snooze (or, with None, wake) one of this chat's active rules; its stored state is
        relearned in the same transaction."""
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "UPDATE rules SET snoozed_until = %s WHERE id = %s AND chat = %s AND active",
                (until, rule, chat),
            )
            if cursor.rowcount == 0:
                return False
            cursor = await conn.execute(
                "SELECT state FROM rule_state WHERE rule = %s FOR UPDATE", (rule,)
            )
            found = await cursor.fetchone()
            if found is not None:
                state = RuleState.from_dict(json.loads(found[0])).relearned()
                await conn.execute(
                    "UPDATE rule_state SET state = %s, updated_at = %s WHERE rule = %s",
                    (json.dumps(state.to_dict()), self._clock(), rule),
                )
            return True

    async def rules(self, chat: int | None = None) -> list[StoredRule]:
        if chat is None:
            rows = await self._all(
                f"SELECT {_RULE_COLUMNS} FROM {_RULES} WHERE r.active ORDER BY r.id"
            )
        else:
            rows = await self._all(
                f"SELECT {_RULE_COLUMNS} FROM {_RULES} WHERE r.active AND r.chat = %s"
                " ORDER BY r.id",
                (chat,),
            )
        return _stored_rules(rows)

    async def rules_page(self, after: int, limit: int) -> list[StoredRule]:
        rows = await self._all(
            f"SELECT {_RULE_COLUMNS} FROM {_RULES} WHERE r.active AND r.id > %s"
            " ORDER BY r.id LIMIT %s",
            (after, limit),
        )
        return _stored_rules(rows)

    async def rules_revision(self) -> int:
        row = await self._one(_REVISION)
        assert row is not None
        return int(row[0])

    async def rule_changes(self, since: int) -> RuleChanges | None:
        """The changes after `since` from the log the triggers keep; the revision and the
        changes are read in one statement, so in one snapshot."""
        # Each changed rule and its state are looked up by id (LATERAL ... LIMIT 1 and a
        # subquery keep the planner from hashing the whole rules and rule_state tables when
        # its statistics are stale, as right after an import or a first tick).
        rows = await self._all(
            f"SELECT m.value, c.revision, c.kind, c.rule, x.*"
            f" FROM ({_REVISION}) m (value) LEFT JOIN rule_changes c ON c.revision > %s"
            " LEFT JOIN LATERAL (SELECT r.active, r.id, r.chat, r.text, r.created_by,"
            "  r.created_at, (SELECT s.state FROM rule_state s WHERE s.rule = r.id),"
            "  r.snoozed_until"
            "  FROM rules r WHERE r.id = c.rule LIMIT 1) x ON TRUE"
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
            int(revision),
            tuple(_stored_rules([row[5:] for _, row in changed if row[4]])),
            tuple(rule for rule, row in changed if not row[4]),
            subscriptions=any(row[2] == "subscription" for row in rows),
        )

    # --- a tick: states and alerts together ---

    async def commit_tick(
        self,
        states: dict[int, RuleState],
        alerts: Sequence[tuple[int | None, int, Alert]],
        epoch: int | None = None,
    ) -> int:
        now = self._clock()
        async with self._transaction() as conn:
            if epoch is not None:
                # The share lock holds off `take_engine` until this transaction ends, so once
                # a new epoch is taken no tick of an older one lands (and all before it did).
                cursor = await conn.execute(
                    "SELECT epoch FROM fences WHERE name = %s FOR SHARE", (ENGINE_FENCE,)
                )
                found = await cursor.fetchone()
                if found is None or found[0] != epoch:
                    now_held = "none" if found is None else found[0]
                    raise Fenced(f"the engine's epoch is {now_held}, this tick's {epoch}")
            if states:
                await conn.execute(
                    "INSERT INTO rule_state (rule, state, updated_at)"
                    " SELECT rule, state, %s"
                    " FROM unnest(%b::bigint[], %b::text[]) AS t(rule, state)"
                    " ON CONFLICT (rule) DO UPDATE SET state = excluded.state,"
                    " updated_at = excluded.updated_at",
                    (now, list(states), [json.dumps(s.to_dict()) for s in states.values()]),
                )
            if not alerts:
                return 0
            # Numbered in commit order: a later commit never shows a lower id (see the docstring).
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (OUTBOX_LOCK,))
            owners = list({chat for _, chat, _ in alerts})
            cursor = await conn.execute(
                "SELECT owner, chat FROM webhooks WHERE active AND owner = ANY(%s) ORDER BY chat",
                (owners,),
            )
            hooks: dict[int, list[int]] = {}
            for owner, hook in await cursor.fetchall():
                hooks.setdefault(owner, []).append(hook)
            cursor = await conn.execute(
                "SELECT id, muted_until, active FROM chats WHERE id = ANY(%s)",
                (owners + [hook for chats in hooks.values() for hook in chats],),
            )
            status = _delivery_status(await cursor.fetchall(), now)
            rows = []
            for rule, chat, alert in alerts:
                payload = alert_to_json(alert)
                own = status.get(chat, "pending")
                rows.append((rule, chat, payload, now, own))
                for hook in hooks.get(chat, ()):  # a webhook hears as its owner does
                    hook_status = own if own != "pending" else status.get(hook, "pending")
                    rows.append((rule, hook, payload, now, hook_status))
            async with conn.cursor() as many:
                await many.executemany(
                    "INSERT INTO outbox (rule, chat, payload, created_at, status)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    rows,
                )
            queued = sum(1 for row in rows if row[4] == "pending")
            if queued:
                await conn.execute(_NOTIFY)  # heard once this transaction commits
        return queued

    async def take_engine(self) -> int:
        """Take the engine's next epoch: the row lock waits for a tick holding it (FOR SHARE)
        to commit."""
        row = await self._one(
            "INSERT INTO fences AS f (name, epoch) VALUES (%s, 1)"
            " ON CONFLICT (name) DO UPDATE SET epoch = f.epoch + 1 RETURNING f.epoch",
            (ENGINE_FENCE,),
        )
        assert row is not None
        return int(row[0])

    # --- the outbox ---

    async def pending(self, limit: int = 500) -> list[OutboxRow]:
        rows = await self._all(
            f"{_OUTBOX_ROWS}"
            " WHERE o.status = 'pending' AND NOT EXISTS ("
            "  SELECT 1 FROM outbox w WHERE w.status = 'pending' AND w.chat = o.chat"
            "  AND w.id <= o.id AND w.next_attempt_at > %s)"
            " ORDER BY o.id LIMIT %s",
            (self._clock(), limit),
        )
        return [_outbox_row(row) for row in rows]

    async def claim(
        self, limit: int = 500, platforms: Collection[str] | None = None
    ) -> list[OutboxRow]:
        """Lock up to `limit` chats (of these platforms) with due rows that no other session
        holds, oldest first row first, then read their due rows (see the module docstring)."""
        now = self._clock()
        names = None if platforms is None else list(platforms)
        found = await self._on_claims(
            "WITH due AS MATERIALIZED ("
            " SELECT chat, id FROM (SELECT DISTINCT ON (o.chat) o.chat, o.id, o.next_attempt_at"
            "  FROM outbox o JOIN chats c ON c.id = o.chat WHERE o.status = 'pending'"
            "  AND (%s::text[] IS NULL OR c.platform = ANY(%s)) ORDER BY o.chat, o.id) AS first"
            " WHERE next_attempt_at IS NULL OR next_attempt_at <= %s ORDER BY id)"
            f" SELECT chat FROM due WHERE pg_try_advisory_lock({CLAIM_KEY}) LIMIT %s",
            (names, names, now, limit),
        )  # the lock is tried row by row until `limit` chats are held, and on no more
        chats = [chat for (chat,) in found]
        if not chats:
            return []
        rows = await self._on_claims(
            f"{_OUTBOX_ROWS}"
            " WHERE o.chat = ANY(%s) AND o.status = 'pending' AND NOT EXISTS ("
            "  SELECT 1 FROM outbox w WHERE w.status = 'pending' AND w.chat = o.chat"
            "  AND w.id <= o.id AND w.next_attempt_at > %s)"
            " ORDER BY o.id LIMIT %s",
            (chats, now, limit),
        )
        idle = list(set(chats) - {row[4] for row in rows})  # delivered meanwhile, or removed
        if idle:
            await self._on_claims(
                f"SELECT pg_advisory_unlock({CLAIM_KEY}) FROM unnest(%s::bigint[]) AS chat",
                (idle,),
            )
        self._holding = bool(rows)
        return [_outbox_row(row) for row in rows]

    async def release(self) -> None:
        self._holding = self._claims_lost = False
        if self._claims is None:
            return
        with contextlib.suppress(StorageUnavailable):  # a session that is gone holds nothing
            await self._on_claims("SELECT pg_advisory_unlock_all()")

    async def _on_claims(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement on the claims session (opened when there is none). When the session
        fails, it is closed (the server frees its locks) and StorageUnavailable is raised; when
        it held claimed chats, marks are refused until the next `release`."""
        if self._claims_lost:
            raise StorageUnavailable("delivery claims were lost; holding until released")
        try:
            async with asyncio.timeout(OPEN_SECONDS):
                if self._claims is None or self._claims.closed:
                    self._claims = await _session(self._url)
                    await _configure(self._claims)
                cursor = await self._claims.execute(sql, args)
                return await cursor.fetchall() if cursor.description else []
        except (psycopg.OperationalError, psycopg.InterfaceError, TimeoutError, OSError) as err:
            await self._drop_claims()
            self._claims_lost, self._holding = self._holding, False
            reason = str(err).strip() or "no answer in time"
            raise StorageUnavailable(f"delivery claims session lost: {reason}") from err

    async def _drop_claims(self) -> None:
        conn, self._claims = self._claims, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    async def _mark(self, sql: str, args: Sequence[Any]) -> None:
        """A delivery outcome: on the claims session while there is one (see the module
        docstring), else as any write."""
        if self._claims is None and not self._claims_lost:
            await self._write(sql, args)
        else:
            await self._on_claims(sql, args)

    def on_queued(self, wake: Callable[[], None]) -> None:
        """Start listening (on the first call) and call `wake` on each NOTIFY of this schema."""
        self._woken.append(wake)
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="outbox listener")

    async def _listen(self) -> None:
        """Listen until cancelled, waking once each time it starts listening (for the rows
        queued before); after an outage (logged once), reconnect with backoff."""
        url, failures = self._url, 0
        while True:
            try:
                async with asyncio.timeout(OPEN_SECONDS):
                    conn = await _session(url)
                try:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    cursor = await conn.execute("SELECT current_schema()")
                    row = await cursor.fetchone()
                    schema = row[0] if row else None
                    if failures:
                        log.info("outbox listener: listening again")
                        failures = 0
                    self._queued()  # for rows queued before it listened
                    async for note in conn.notifies():
                        if note.payload == schema:
                            self._queued()
                finally:
                    with contextlib.suppress(psycopg.Error):
                        await conn.close()
            except (psycopg.Error, TimeoutError, OSError) as err:
                if not failures:
                    log.warning(
                        "outbox listener: cannot listen on %s (%s); delivery polls until it can",
                        safe_url(url),
                        (str(err).strip() or type(err).__name__).splitlines()[0],
                    )
                failures += 1
                base, cap = LISTEN_RETRY
                await asyncio.sleep(min(cap, base * 2.0 ** min(failures - 1, 16)))

    def _queued(self) -> None:
        for wake in self._woken:
            wake()

    async def outbox_row(self, row: int) -> OutboxRow | None:
        found = await self._one(f"{_OUTBOX_ROWS} WHERE o.id = %s", (row,))
        return None if found is None else _outbox_row(found)

    async def mark_action(self, row: int, action: str) -> bool:
        marked = await self._write(
            "UPDATE outbox SET actions = actions || %s WHERE id = %s AND strpos(actions, %s) = 0",
            (action, row, action),
        )
        return marked > 0

    async def unmark_action(self, row: int, action: str) -> None:
        await self._write(
            "UPDATE outbox SET actions = replace(actions, %s, '') WHERE id = %s", (action, row)
        )

    async def mark_delivered(self, row: int, message_id: str | None) -> None:
        await self._mark(
            "UPDATE outbox SET status = 'delivered', delivered_at = %s, message_id = %s,"
            " attempts = attempts + 1 WHERE id = %s",
            (self._clock(), message_id, row),
        )

    async def mark_retry(self, row: int, error: str, next_attempt: datetime) -> None:
        await self._mark(
            "UPDATE outbox SET attempts = attempts + 1, last_error = %s, next_attempt_at = %s"
            " WHERE id = %s",
            (_text(error[:500]), next_attempt, row),
        )

    async def mark_failed(self, row: int, error: str) -> None:
        await self._mark(
            "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = %s"
            " WHERE id = %s",
            (_text(error[:500]), row),
        )

    async def outbox_counts(self) -> dict[str, int]:
        rows = await self._all("SELECT status, count(*) FROM outbox GROUP BY status")
        return {status: int(count) for status, count in rows}

    async def history(self, chat: int, limit: int = 20) -> list[tuple[str, Alert]]:
        rows = await self._all(
            "SELECT status, payload FROM outbox WHERE chat = %s AND kind = 'alert'"
            " ORDER BY id DESC LIMIT %s",
            (chat, limit),
        )
        return [(status, alert_from_json(payload)) for status, payload in rows]

    async def prune_outbox(self, before: datetime) -> int:
        return await self._write(
            "DELETE FROM outbox WHERE status <> 'pending' AND created_at < %s", (before,)
        )

    # --- subscriptions ---

    async def subscribe(self, chat: int, symbol: str) -> bool:
        added = await self._write(
            "INSERT INTO subscriptions (chat, symbol, created_at) VALUES (%s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (chat, symbol, self._clock()),
        )
        return added > 0

    async def unsubscribe(self, chat: int, symbol: str | None = None) -> int:
        if symbol is None:
            return await self._write("DELETE FROM subscriptions WHERE chat = %s", (chat,))
        return await self._write(
            "DELETE FROM subscriptions WHERE chat = %s AND symbol = %s", (chat, symbol)
        )

    async def subscriptions(self, chat: int | None = None) -> list[tuple[int, str]]:
        if chat is None:
            rows = await self._all("SELECT chat, symbol FROM subscriptions ORDER BY chat, symbol")
        else:
            rows = await self._all(
                "SELECT chat, symbol FROM subscriptions WHERE chat = %s ORDER BY symbol", (chat,)
            )
        return [(int(r[0]), str(r[1])) for r in rows]

    # --- secrets ---

    async def secret(self, name: str) -> str:
        async with self._transaction() as conn:
            # A concurrent first use waits on the key, then finds the other's (committed) value.
            await conn.execute(
                "INSERT INTO secrets (name, value) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                (name, secrets.token_hex(32)),
            )
            cursor = await conn.execute("SELECT value FROM secrets WHERE name = %s", (name,))
            row = await cursor.fetchone()
        assert row is not None
        return str(row[0])

    # --- shared send budgets ---

    async def take_slots(self, name: str, count: int, interval: float) -> Slots:
        """Book slots on the budget's grid in one statement: the row lock orders processes
        booking at once, and the server's clock is everyone's (no skew between hosts)."""
        if count < 1 or not interval > 0:
            raise ValueError(f"cannot book {count} slots {interval} s apart")
        span = timedelta(seconds=count * interval)
        row = await self._one(
            "INSERT INTO send_budgets AS b (name, next_slot) VALUES (%s, clock_timestamp() + %s)"
            " ON CONFLICT (name) DO UPDATE"
            " SET next_slot = greatest(b.next_slot, clock_timestamp()) + %s"
            " RETURNING b.next_slot - %s, clock_timestamp()",
            (name, span, span, span),
        )
        assert row is not None
        first, now = row
        return Slots(first.astimezone(UTC), (first - now).total_seconds(), interval, count)

    # --- daily digests ---

    async def set_digest(self, chat: int, setting: DigestSetting | None) -> None:
        if setting is None:
            await self._write("UPDATE digests SET active = FALSE WHERE chat = %s", (chat,))
            return
        await self._write(
            "INSERT INTO digests (chat, at, zone, weekdays_only, active, since)"
            " VALUES (%s, %s, %s, %s, TRUE, %s) ON CONFLICT (chat) DO UPDATE SET at = excluded.at,"
            " zone = excluded.zone, weekdays_only = excluded.weekdays_only, active = TRUE,"
            " since = excluded.since",
            (chat, setting.at, setting.zone, setting.weekdays_only, self._clock()),
        )

    async def digests(self, chat: int | None = None) -> list[ChatDigest]:
        rows = await self._all(
            "SELECT chat, at, zone, weekdays_only, since, last_day FROM digests"
            " WHERE active AND (%s::bigint IS NULL OR chat = %s) ORDER BY chat",
            (chat, chat),
        )
        return [
            ChatDigest(
                int(row[0]),
                DigestSetting(row[1], row[2], bool(row[3])),
                row[4].astimezone(UTC),
                row[5],
            )
            for row in rows
        ]

    async def enqueue_digest(self, chat: int, digest: DigestDue) -> bool:
        now = self._clock()
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "UPDATE digests SET last_day = %s WHERE chat = %s AND active"
                " AND (last_day IS NULL OR last_day < %s)",
                (digest.day, chat, digest.day),
            )
            if cursor.rowcount == 0:
                return False
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (OUTBOX_LOCK,))  # as a tick's
            cursor = await conn.execute(
                "SELECT id, muted_until, active FROM chats WHERE id = %s", (chat,)
            )
            status = _delivery_status(await cursor.fetchall(), now)
            await conn.execute(
                "INSERT INTO outbox (rule, chat, payload, created_at, status, kind)"
                " VALUES (NULL, %s, %s, %s, %s, 'digest')",
                (chat, digest_to_json(digest), now, status.get(chat, "pending")),
            )
            if chat not in status:
                await conn.execute(_NOTIFY)
            return True

    # --- webhooks ---

    async def add_webhook(self, owner: int, url: str, secret: str) -> tuple[Webhook, bool]:
        chat_id = f"{owner}:{hashlib.sha256(url.encode()).hexdigest()[:16]}"  # as SQLite's
        now = self._clock()
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "INSERT INTO chats (platform, chat_id, kind, created_at) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (platform, chat_id) DO UPDATE SET active = TRUE RETURNING id",
                (WEBHOOK, chat_id, WEBHOOK, now),
            )
            row = await cursor.fetchone()
            assert row is not None
            chat = int(row[0])
            cursor = await conn.execute("SELECT active FROM webhooks WHERE chat = %s", (chat,))
            found = await cursor.fetchone()
            await conn.execute(
                "INSERT INTO webhooks (chat, owner, url, secret, created_at)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (chat) DO UPDATE SET active = TRUE,"
                " secret = excluded.secret",
                (chat, owner, url, secret, now),
            )
        return Webhook(chat, owner, url, secret), found is None or not found[0]

    async def remove_webhook(self, owner: int, webhook: int) -> bool:
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "UPDATE webhooks SET active = FALSE WHERE chat = %s AND owner = %s AND active",
                (webhook, owner),
            )
            if cursor.rowcount == 0:
                return False
            await conn.execute(
                "UPDATE outbox SET status = 'removed' WHERE chat = %s AND status = 'pending'",
                (webhook,),
            )
            return True

    async def webhooks(self, owner: int | None = None) -> list[Webhook]:
        rows = await self._all(
            f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks"
            " WHERE active AND (%s::bigint IS NULL OR owner = %s) ORDER BY chat",
            (owner, owner),
        )
        return [Webhook(*row) for row in rows]

    async def webhook(self, chat: int) -> Webhook | None:
        row = await self._one(
            f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE chat = %s AND active", (chat,)
        )
        return None if row is None else Webhook(*row)

    async def set_inbound_secret(self, chat: int, secret: str | None) -> None:
        async with self._transaction() as conn:
            await conn.execute("DELETE FROM inbound WHERE chat = %s", (chat,))
            if secret is not None:
                await conn.execute(
                    "INSERT INTO inbound (chat, secret, created_at) VALUES (%s, %s, %s)",
                    (chat, secret, self._clock()),
                )

    async def inbound_secret(self, chat: int) -> str | None:
        row = await self._one("SELECT secret FROM inbound WHERE chat = %s", (chat,))
        return None if row is None else str(row[0])

    async def inbound_chat(self, secret: str) -> Chat | None:
        row = await self._one(
            f"SELECT {_CHAT_COLUMNS} FROM chats WHERE id = (SELECT chat FROM inbound"
            " WHERE secret = %s)",
            (secret,),
        )
        return None if row is None else _chat(row)

    # --- recent quotes ---

    async def save_quotes(self, quotes: Iterable[Quote]) -> None:
        latest = {(q.symbol, q.ts.astimezone(UTC)): q for q in quotes}  # one row per key
        if not latest:
            return
        await self._write(
            "INSERT INTO quotes (symbol, ts, last, bid, ask, source)"
            " SELECT * FROM unnest(%b::text[], %b::timestamptz[], %b::float8[], %b::float8[],"
            " %b::float8[], %b::text[])"
            " ON CONFLICT (symbol, ts) DO UPDATE SET last = excluded.last, bid = excluded.bid,"
            " ask = excluded.ask, source = excluded.source",
            (
                [symbol for symbol, _ in latest],
                [ts for _, ts in latest],
                [float(q.last) for q in latest.values()],
                [_float(q.bid) for q in latest.values()],
                [_float(q.ask) for q in latest.values()],
                [q.source for q in latest.values()],
            ),
        )

    async def prune_quotes(self, before: datetime) -> int:
        return await self._write("DELETE FROM quotes WHERE ts < %s", (before,))

    async def recent_quotes(
        self, symbol: str, since: datetime | None = None, limit: int = 20_000
    ) -> list[Quote]:
        rows = await self._all(
            "SELECT symbol, ts, last, bid, ask, source FROM quotes"
            " WHERE symbol = %s AND (%s::timestamptz IS NULL OR ts >= %s)"
            " ORDER BY ts DESC LIMIT %s",
            (symbol, since, since, limit),
        )
        return [
            Quote(r[0], r[2], r[1].astimezone(UTC), bid=r[3], ask=r[4], source=r[5])
            for r in reversed(rows)
        ]

    # --- an installation moved in (tickerbell migrate-db) ---

    async def load_tables(
        self, tables: Sequence[tuple[str, Sequence[str], Sequence[tuple[Any, ...]]]]
    ) -> dict[str, int]:
        """Load whole tables (name, columns, rows; in the order foreign keys need) into this
        store, which must hold no chat, rule or alert yet (TargetNotEmpty), ids kept, in one
        transaction; return rows per table. The change log restarts with one 'start' row, so
        a reader reads every rule once."""
        async with self._transaction() as conn:
            await conn.execute("LOCK TABLE chats, rules, outbox IN EXCLUSIVE MODE")
            cursor = await conn.execute(
                "SELECT (SELECT count(*) FROM chats), (SELECT count(*) FROM rules),"
                " (SELECT count(*) FROM outbox)"
            )
            held = await cursor.fetchone()
            if held is not None and any(held):
                chats, rules, alerts = held
                raise TargetNotEmpty(
                    f"the target already holds {chats} chats, {rules} rules and {alerts} alerts"
                )
            # One 'start' row stands for the changes a row-by-row log would have made.
            await conn.execute("ALTER TABLE rules DISABLE TRIGGER USER")
            await conn.execute("ALTER TABLE subscriptions DISABLE TRIGGER USER")
            counts: dict[str, int] = {}
            for name, columns, rows in tables:
                names = sql.SQL(", ").join(map(sql.Identifier, columns))
                copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(name), names)
                async with conn.cursor() as cur, cur.copy(copy_sql) as copy:
                    for row in rows:
                        await copy.write_row(row)
                if "id" in columns:  # the next id comes after the highest copied
                    await conn.execute(
                        sql.SQL(
                            "SELECT setval(pg_get_serial_sequence({}, 'id'),"
                            " coalesce((SELECT max(id) FROM {}), 0) + 1, false)"
                        ).format(sql.Literal(name), sql.Identifier(name))
                    )
                counts[name] = len(rows)
            await conn.execute("ALTER TABLE rules ENABLE TRIGGER USER")
            await conn.execute("ALTER TABLE subscriptions ENABLE TRIGGER USER")
            await conn.execute(
                "UPDATE meta SET value = value + 1 WHERE key = 'rules_revision';"
                " INSERT INTO rule_changes (revision, rule, kind)"
                " SELECT value, NULL, 'start' FROM meta WHERE key = 'rules_revision'"
            )
        return counts


class Lease:
    """A named advisory lock on a session of its own: held for exactly as long as that
    session lives, so it is released on `close`, or by the server as soon as the holder's
    process dies or its connection ends. Many processes on one database use it to agree on
    which one of them is active (`tickerbell run`: the others stand by).

    A holder that vanishes without closing its connection (a power cut, a network cut) is
    noticed by TCP keepalives on both sides: the server lets the lease go once
    LEASE_KEEPALIVE's probes go unanswered (about 16 s after the last word), while the holder
    finds out sooner (a `check` unanswered for CHECK_SECONDS), so it stops before another
    process can take over."""

    def __init__(self, url: str, name: str, timeout: float = OPEN_SECONDS) -> None:
        self._url = url
        self._name = name
        self._timeout = timeout
        self._conn: Connection | None = None
        self.held = False

    async def take(self) -> bool:
        """Take the lease if nobody holds it; whether this process holds it now. Never waits
        for a holder; StorageUnavailable when the server cannot be reached."""
        if self.held:
            return await self.check()
        try:
            async with asyncio.timeout(self._timeout):
                if self._conn is None or self._conn.closed:
                    self._conn = await _session(self._url)
                cursor = await self._conn.execute(
                    f"SELECT pg_try_advisory_lock(%s, {LEASE_KEY})", (LEASE_CLASS, self._name)
                )
                row = await cursor.fetchone()
        except (psycopg.Error, TimeoutError) as err:
            await self.close()
            reason = str(err).strip() or "no answer in time"
            raise StorageUnavailable(f"cannot connect to {safe_url(self._url)}: {reason}") from err
        self.held = bool(row and row[0])
        return self.held

    async def check(self) -> bool:
        """Whether the lease is still held: its session still answers. Once it does not, the
        server has let the lease go (or will, when it notices), and this is False."""
        if not self.held or self._conn is None:
            return False
        try:
            async with asyncio.timeout(CHECK_SECONDS):
                await self._conn.execute("SELECT 1")
        except (psycopg.Error, TimeoutError):
            self.held = False  # its session is lost: nothing to unlock on it
            await self.close()
        return self.held

    async def close(self) -> None:
        """Let the lease go (ending its session). A lease held is unlocked first: the server
        frees a closed session's locks only once it has noticed, so another process taking
        over at once could still find it held."""
        held, self.held = self.held, False
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(psycopg.Error, TimeoutError):
            if held and not conn.closed:
                async with asyncio.timeout(CHECK_SECONDS):
                    await conn.execute(
                        f"SELECT pg_advisory_unlock(%s, {LEASE_KEY})", (LEASE_CLASS, self._name)
                    )
        with contextlib.suppress(psycopg.Error):
            await conn.close()


async def _session(url: str) -> Connection:
    """A connection of its own (a lease's, delivery claims', the outbox listener's), with
    keepalives set on the client and on the server side."""
    idle, interval, count = LEASE_KEEPALIVE
    conn = await psycopg.AsyncConnection.connect(
        url,
        autocommit=True,
        keepalives=1,
        keepalives_idle=idle,
        keepalives_interval=interval,
        keepalives_count=count,
    )
    for name, value in zip(("idle", "interval", "count"), LEASE_KEEPALIVE, strict=True):
        await conn.execute(sql.SQL("SET tcp_keepalives_{} = {}").format(sql.SQL(name), value))
    return conn


_POSTGRES_STORE_IS_STORAGE: type[Storage] = PostgresStore  # mypy checks that it keeps the contract
_POSTGRES_STORE_IS_BUDGET_STORE: type[BudgetStore] = PostgresStore
_POSTGRES_STORE_IS_ENGINE_FENCE: type[EngineFence] = PostgresStore


async def _configure(conn: Connection) -> None:
    """Each new connection reads times in UTC (so `timestamptz` comes back as UTC) and never
    compiles a query (JIT costs tens of milliseconds where an estimate is inflated, and
    every query of ours is small)."""
    await conn.execute("SET TIME ZONE 'UTC'")
    await conn.execute("SET jit = off")


async def _read_only(conn: Connection) -> None:
    """A connection that reads in UTC and whose every transaction is read-only."""
    await _configure(conn)
    await conn.execute("SET default_transaction_read_only = on")


@contextmanager
def _unavailable_on_failure(what: str = "") -> Iterator[None]:
    """psycopg's operational errors (a refused or lost connection, a server shutting down, a
    full disk, no connection free in time) as the contract's StorageUnavailable; integrity
    errors pass unchanged."""
    try:
        yield
    except psycopg.OperationalError as err:
        reason = str(err).strip() or type(err).__name__
        raise StorageUnavailable(f"{what}: {reason}" if what else reason) from err


async def _why_unreachable(url: str) -> str:
    """Why the server cannot be reached, in libpq's words (`Connection refused`, `password
    authentication failed`, `database "x" does not exist`), from one more direct try."""
    try:
        conn = await psycopg.AsyncConnection.connect(url, connect_timeout=REASON_SECONDS)
    except psycopg.Error as err:
        # libpq: 'connection failed: connection to server at "h" (h), port p failed: reason'
        # and sometimes a hint on the next line; the reason is what a person can act on.
        first = next((line for line in str(err).splitlines() if line.strip()), "")
        reason = first.rpartition(" failed: ")[2].removeprefix("FATAL:").strip()
        return reason or type(err).__name__
    await conn.close()
    return "no connection was free in time"


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _text(value: str) -> str:
    """PostgreSQL text cannot hold NUL characters (an error message might)."""
    return value.replace("\x00", "")


def _delivery_status(chats: Iterable[tuple[Any, ...]], now: datetime) -> dict[int, str]:
    """'muted' or 'inactive' for the chats that must not get alerts now."""
    status: dict[int, str] = {}
    for chat, muted_until, active in chats:
        if muted_until is not None and muted_until > now:
            status[chat] = "muted"
        elif not active:
            status[chat] = "inactive"
    return status


def _stored_rules(rows: Iterable[Sequence[Any]]) -> list[StoredRule]:
    """Rule rows (`_RULE_COLUMNS`) as values; equal states are parsed once and shared."""
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
                created_at.astimezone(UTC),
                state,
                None if snoozed_until is None else snoozed_until.astimezone(UTC),
            )
        )
    return out


def _outbox_row(row: Sequence[Any]) -> OutboxRow:
    """An `_OUTBOX_ROWS` row as a value."""
    payload = digest_from_json(row[2]) if row[12] == "digest" else alert_from_json(row[2])
    return OutboxRow(row[0], row[1], _chat(row[4:11]), payload, row[3], frozenset(row[11]))


def _chat(row: Sequence[Any]) -> Chat:
    return Chat(
        id=row[0],
        platform=row[1],
        chat_id=row[2],
        kind=row[3],
        active=bool(row[4]),
        muted_until=row[5],
        charts=bool(row[6]),
    )
