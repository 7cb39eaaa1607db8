"""The storage contract (storage.api) against every backend, and the SQLite store on real files:
migrations, pragmas, connections, backups."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from support.full_disk import small_disk
from support.scripted import T0, Clock

from alerts import rules
from alerts.models import Alert, Condition, Direction, Quote, Rule, RuleState
from bot import render
from bot.wording import sentence
from storage.api import (
    ChatDigest,
    DigestDue,
    DigestSetting,
    RuleChanges,
    Storage,
    StorageUnavailable,
)
from storage.db import (
    LimitReached,
    Store,
    _statements,
    alert_from_json,
    alert_to_json,
    backup,
)
from storage.memory import MemoryStore
from storage.migrations import MIGRATIONS
from storage.postgres import PostgresStore
from tickerbell.delivery import ConsoleNotifier, Delivery

# What each backend raises for a write naming a chat or rule that does not exist.
REFUSED: dict[str, type[Exception]] = {
    "sqlite": sqlite3.IntegrityError,
    "memory": ValueError,
    "postgres": psycopg.IntegrityError,  # skipped without TICKERBELL_TEST_DATABASE_URL
}


def alert(price: float = 50.5) -> Alert:
    rule = rules.parse("XAG above 50")
    return Alert("XAG above 50", rule, Direction.UP, price, 50.0, price, T0, price - 0.01, price)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=list(REFUSED))
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store(
    backend: str, tmp_path: Path, clock: Clock, request: pytest.FixtureRequest
) -> AsyncIterator[Storage]:
    """Each backend in turn, for the tests of the contract."""
    if backend == "sqlite":
        async with Store.open(tmp_path / "t.db", clock=clock) as sqlite:
            yield sqlite
    elif backend == "postgres":
        url = request.getfixturevalue("postgres_url")  # a new schema on the test server
        async with PostgresStore.open(url, clock=clock) as postgres:
            yield postgres
    else:
        async with MemoryStore.open(clock=clock) as memory:
            yield memory


@pytest.fixture
async def sqlite_store(tmp_path: Path, clock: Clock) -> AsyncIterator[Store]:
    """The SQLite store, for what only it has: a file, pragmas, two connections, backups."""
    async with Store.open(tmp_path / "t.db", clock=clock) as s:
        yield s


async def test_pragmas_and_version(sqlite_store: Store, tmp_path: Path) -> None:
    assert await sqlite_store.schema_version() == len(MIGRATIONS)
    conn = sqlite3.connect(tmp_path / "t.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


async def test_database_made_by_migration_1_opens_with_later_code(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for statement in _statements(MIGRATIONS[0]):
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version VALUES (1)")
    conn.execute(
        "INSERT INTO chats (platform, chat_id, created_at) VALUES ('telegram', '42', ?)",
        (T0.isoformat(),),
    )
    conn.execute(
        "INSERT INTO rules (chat, text, created_at) VALUES (1, 'XAG above 50', ?)",
        (T0.isoformat(),),
    )
    conn.commit()
    conn.close()
    async with Store.open(path) as store:
        assert await store.schema_version() == len(MIGRATIONS)
        [rule] = await store.rules()
        assert (rule.text, rule.state) == ("XAG above 50", None)


async def test_a_database_made_before_the_change_log_reads_all_once(tmp_path: Path) -> None:
    """A database from before migration 5 has a revision and no log: a reader at that
    revision sees what changes after it; one from before it reads everything."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for script in MIGRATIONS[:4]:
        for statement in _statements(script):
            conn.execute(statement)
    conn.execute("INSERT INTO schema_version VALUES (4)")
    conn.execute(
        "INSERT INTO chats (platform, chat_id, created_at) VALUES ('telegram', '42', ?)",
        (T0.isoformat(),),
    )
    for level in (50, 60):
        conn.execute(
            "INSERT INTO rules (chat, text, created_at) VALUES (1, ?, ?)",
            (f"XAG above {level}", T0.isoformat()),
        )
    conn.commit()
    conn.close()
    async with Store.open(path) as store:
        assert await store.rules_revision() == 2
        assert await store.rule_changes(2) == RuleChanges(2)
        assert await store.rule_changes(1) is None
        assert await store.remove_rule(1, 1)
        assert await store.rule_changes(2) == RuleChanges(3, (), (1,))


async def test_rules_limit_and_revision(store: Storage) -> None:
    chat = await store.chat("telegram", "42")
    assert await store.chat("telegram", "42") == chat  # created once
    before = await store.rules_revision()
    first = await store.add_rule(chat.id, "XAG above 50", "u1", limit=2)
    await store.add_rule(chat.id, "BTC below 85000", "u1", limit=2)
    with pytest.raises(LimitReached):
        await store.add_rule(chat.id, "ETH above 5000", "u1", limit=2)
    assert await store.rules_revision() == before + 2
    assert await store.remove_rule(chat.id, first)
    assert not await store.remove_rule(chat.id, first)
    other = await store.chat("telegram", "43")
    assert not await store.remove_rule(other.id, first + 1)  # not yours
    assert [r.text for r in await store.rules(chat.id)] == ["BTC below 85000"]
    assert await store.remove_all_rules(chat.id) == 1


async def test_tick_is_one_transaction(store: Storage, backend: str) -> None:
    chat = await store.chat("console", "console")
    rule = await store.add_rule(chat.id, "XAG above 50", "cli", limit=50)
    fired = RuleState(armed=False, last_fired=T0, fired_count=1)
    with pytest.raises(REFUSED[backend]):  # the second alert names no chat: all rolls back
        await store.commit_tick({rule: fired}, [(rule, chat.id, alert()), (rule, 999, alert())])
    assert (await store.rules())[0].state is None
    assert await store.outbox_counts() == {}
    queued = await store.commit_tick({rule: fired}, [(rule, chat.id, alert())])
    assert queued == 1
    assert (await store.rules())[0].state == fired


async def test_outbox_life_cycle(store: Storage, clock: Clock) -> None:
    chat = await store.chat("console", "console")
    rule = await store.add_rule(chat.id, "XAG above 50", "cli", limit=50)
    await store.commit_tick({}, [(rule, chat.id, alert(50.5)), (rule, chat.id, alert(51.0))])
    first, second = await store.pending()
    assert first.alert == alert(50.5) and first.chat == chat
    await store.mark_retry(first.id, "timeout", T0 + timedelta(seconds=30))
    assert await store.pending() == []  # the chat's later rows wait behind its first
    clock.now = T0 + timedelta(seconds=31)
    assert [r.id for r in await store.pending()] == [first.id, second.id]
    await store.mark_delivered(first.id, "m1")
    await store.mark_failed(second.id, "chat not found")
    assert await store.outbox_counts() == {"delivered": 1, "failed": 1}
    assert [status for status, _ in await store.history(chat.id)] == ["failed", "delivered"]


async def test_muted_and_inactive_chats_are_not_queued(store: Storage) -> None:
    muted = await store.chat("telegram", "1")
    gone = await store.chat("telegram", "2")
    await store.set_muted(muted.id, T0 + timedelta(hours=1))
    await store.set_chat_active(gone.id, False)
    queued = await store.commit_tick({}, [(None, muted.id, alert()), (None, gone.id, alert())])
    assert queued == 0
    assert await store.outbox_counts() == {"muted": 1, "inactive": 1}


async def test_subscriptions_and_chat_move(store: Storage) -> None:
    chat = await store.chat("telegram", "-100")
    assert await store.subscribe(chat.id, "XAG")
    assert not await store.subscribe(chat.id, "XAG")
    await store.move_chat("telegram", "-100", "-100200")
    assert (await store.find_chat("telegram", "-100200")) is not None
    assert await store.subscriptions(chat.id) == [(chat.id, "XAG")]
    assert await store.unsubscribe(chat.id) == 1


async def test_recent_quotes_with_retention(store: Storage) -> None:
    quotes = [
        Quote("BTC", 100.0 + i, T0 + timedelta(minutes=i), 99.0, 101.0, "x") for i in range(5)
    ]
    await store.save_quotes(quotes)
    assert await store.prune_quotes(T0 + timedelta(minutes=2)) == 2
    assert [q.last for q in await store.recent_quotes("BTC")] == [102.0, 103.0, 104.0]
    later = await store.recent_quotes("BTC", since=T0 + timedelta(minutes=4))
    assert [q.last for q in later] == [104.0]


async def test_one_chats_retry_holds_back_only_that_chat(store: Storage, clock: Clock) -> None:
    slow, other = await store.chat("telegram", "1"), await store.chat("telegram", "2")
    await store.commit_tick({}, [(None, slow.id, alert(50.5)), (None, other.id, alert(50.6))])
    await store.commit_tick({}, [(None, slow.id, alert(51.0))])
    first = (await store.pending())[0]
    await store.mark_retry(first.id, "429", T0 + timedelta(seconds=30))
    assert [(r.chat.chat_id, r.alert.price) for r in await store.pending()] == [("2", 50.6)]
    clock.now = T0 + timedelta(seconds=31)
    assert [(r.chat.chat_id, r.alert.price) for r in await store.pending()] == [
        ("1", 50.5),
        ("2", 50.6),
        ("1", 51.0),
    ]


async def test_a_claim_gives_the_due_rows_and_a_released_chat_can_be_claimed_again(
    store: Storage, clock: Clock
) -> None:
    slow, other = await store.chat("telegram", "1"), await store.chat("telegram", "2")
    await store.commit_tick({}, [(None, slow.id, alert(50.5)), (None, other.id, alert(50.6))])
    await store.commit_tick({}, [(None, slow.id, alert(51.0))])
    first, _, _ = claimed = await store.claim()
    assert claimed == await store.pending()
    await store.release()
    assert await store.claim(platforms=("discord", "console")) == []  # only these platforms'
    await store.release()
    assert await store.claim(platforms=("telegram",)) == claimed
    await store.mark_retry(first.id, "429", T0 + timedelta(seconds=30))
    await store.release()
    assert [(r.chat.chat_id, r.alert.price) for r in await store.claim()] == [("2", 50.6)]
    await store.release()
    clock.now = T0 + timedelta(seconds=31)
    assert [r.id for r in await store.claim(limit=2)] == [r.id for r in await store.pending(2)]
    await store.mark_delivered(first.id, "m1")
    await store.release()
    assert [r.alert.price for r in await store.claim()] == [50.6, 51.0]
    await store.release()
    await store.release()  # nothing held: nothing happens


async def test_rows_queued_wake_whoever_asked(store: Storage) -> None:
    chat = await store.chat("telegram", "1")
    await store.set_digest(chat.id, DigestSetting(time(8), "UTC"))
    for queue in (
        lambda: store.commit_tick({}, [(None, chat.id, alert())]),
        lambda: store.enqueue_digest(chat.id, DigestDue(date(2026, 1, 2), T0)),
    ):
        woken = asyncio.Event()
        store.on_queued(woken.set)
        await queue()
        await asyncio.wait_for(woken.wait(), timeout=10)


async def test_reads_never_see_a_write_that_is_not_committed(sqlite_store: Store) -> None:
    """A read running while another coroutine's transaction is open sees the last commit only
    (the shared-connection race that lost alerts in the crash test)."""
    store = sqlite_store
    chat = await store.chat("console", "console")
    inside, release = asyncio.Event(), asyncio.Event()

    async def tick_that_fails() -> None:
        async with store._transaction() as conn:
            await conn.execute(
                "INSERT INTO outbox (chat, payload, created_at) VALUES (?, '{}', ?)",
                (chat.id, T0.isoformat()),
            )
            inside.set()
            await release.wait()
            raise RuntimeError("disk full (simulated)")

    failing = asyncio.create_task(tick_that_fails())
    await inside.wait()
    assert await store.pending() == []
    assert await store.outbox_counts() == {}
    release.set()
    with pytest.raises(RuntimeError):
        await failing
    assert await store.outbox_counts() == {}


async def test_concurrent_reads_and_writes_keep_every_row_whole(sqlite_store: Store) -> None:
    store = sqlite_store
    chat = await store.chat("console", "console")

    async def writer() -> None:
        for i in range(60):
            await store.commit_tick({}, [(None, chat.id, alert(50.0 + i))])
            rows = await store.pending()
            await store.mark_delivered(rows[0].id, None)

    async def reader() -> None:
        for _ in range(200):
            counts = await store.outbox_counts()
            assert set(counts) <= {"pending", "delivered"}, counts
            await asyncio.sleep(0)

    await asyncio.gather(writer(), reader(), reader())
    assert await store.outbox_counts() == {"delivered": 60}


async def test_database_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "private.db"
    async with Store.open(path) as s:
        await s.chat("telegram", "42")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    path.chmod(0o644)  # made by an older version
    async with Store.open(path):
        pass
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


async def test_removing_a_rule_drops_its_alerts_not_yet_sent(store: Storage) -> None:
    chat = await store.chat("telegram", "42")
    kept = await store.add_rule(chat.id, "XAG above 50", "u1", limit=50)
    gone = await store.add_rule(chat.id, "XAG above 60", "u1", limit=50)
    await store.commit_tick({}, [(gone, chat.id, alert(60.5)), (kept, chat.id, alert(50.5))])
    assert await store.remove_rule(chat.id, gone)
    assert [row.rule for row in await store.pending()] == [kept]
    assert await store.outbox_counts() == {"pending": 1, "removed": 1}


# --- retention and backups ---


async def test_finished_alerts_older_than_the_retention_are_pruned(
    store: Storage, clock: Clock
) -> None:
    chat, muted = await store.chat("telegram", "42"), await store.chat("telegram", "43")
    await store.set_muted(muted.id, T0 + timedelta(days=365))
    await store.commit_tick({}, [(None, chat.id, alert(50.1)), (None, chat.id, alert(50.2))])
    await store.commit_tick({}, [(None, chat.id, alert(50.3)), (None, muted.id, alert(50.4))])
    delivered, failed, waiting = await store.pending()
    await store.mark_delivered(delivered.id, "m1")
    await store.mark_failed(failed.id, "chat not found")
    clock.now = T0 + timedelta(days=100)
    await store.commit_tick({}, [(None, chat.id, alert(60.0))])
    recent = (await store.pending())[-1]
    await store.mark_delivered(recent.id, "m2")

    assert await store.prune_outbox(before=T0 + timedelta(days=10)) == 3
    # the old alert still waiting for delivery stays, however old
    assert await store.outbox_counts() == {"pending": 1, "delivered": 1}
    assert [a.price for _, a in await store.history(chat.id)] == [60.0, waiting.alert.price]
    assert await store.prune_outbox(before=T0 + timedelta(days=10)) == 0


async def test_backup_of_a_store_being_written_is_one_consistent_snapshot(
    sqlite_store: Store, tmp_path: Path
) -> None:
    store = sqlite_store
    chat = await store.chat("telegram", "42")
    rule = await store.add_rule(chat.id, "XAG above 50", "u1", limit=50)
    written = 0
    stop = asyncio.Event()

    async def writer() -> None:
        nonlocal written
        while not stop.is_set():
            state = RuleState(armed=written % 2 == 0, fired_count=written)
            await store.commit_tick({rule: state}, [(rule, chat.id, alert(50.0 + written))])
            written += 1
            await asyncio.sleep(0)

    writing = asyncio.create_task(writer())
    while written < 20:
        await asyncio.sleep(0.01)
    before = written
    copy = tmp_path / "backups" / "copy.db"
    copy.parent.mkdir()
    await backup(tmp_path / "t.db", copy)
    after = written
    while written < after + 20:  # the store keeps writing after the snapshot
        await asyncio.sleep(0.01)
    stop.set()
    await writing

    assert stat.S_IMODE(os.stat(copy).st_mode) == 0o600
    assert sorted(os.listdir(copy.parent)) == ["copy.db"]  # one self-contained file
    conn = sqlite3.connect(copy)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        (rows,) = conn.execute("SELECT count(*) FROM outbox").fetchone()
        (state,) = conn.execute("SELECT state FROM rule_state").fetchone()
    finally:
        conn.close()
    assert before <= rows <= after + 1  # some moment during the backup...
    assert f'"fired_count": {rows - 1}' in state  # ...with the rule state of that same tick
    assert await store.outbox_counts() == {"pending": written}


async def test_a_restored_backup_opens_with_its_rules_and_alerts(tmp_path: Path) -> None:
    live, copy = tmp_path / "live.db", tmp_path / "copy.db"
    async with Store.open(live) as store:
        chat = await store.chat("telegram", "42")
        rule = await store.add_rule(chat.id, "XAG above 50", "u1", limit=50)
        await store.commit_tick({}, [(rule, chat.id, alert())])
        await backup(live, copy)
        await store.add_rule(chat.id, "BTC below 85000", "u1", limit=50)  # after the backup
    # restore: the bot is stopped; drop any -wal/-shm left by a crash, copy the backup back
    for leftover in (live.with_name("live.db-wal"), live.with_name("live.db-shm")):
        leftover.unlink(missing_ok=True)
    live.write_bytes(copy.read_bytes())
    async with Store.open(live) as store:
        assert await store.schema_version() == len(MIGRATIONS)
        assert [r.text for r in await store.rules()] == ["XAG above 50"]
        assert await store.outbox_counts() == {"pending": 1}
        await store.add_rule(chat.id, "ETH above 5000", "u1", limit=50)  # and it takes writes
    assert stat.S_IMODE(os.stat(live).st_mode) == 0o600


async def test_backup_never_overwrites_and_needs_a_database(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "live.db"):
        pass
    (tmp_path / "taken.db").write_text("precious")
    with pytest.raises(FileExistsError):
        await backup(tmp_path / "live.db", tmp_path / "taken.db")
    assert (tmp_path / "taken.db").read_text() == "precious"
    with pytest.raises(FileNotFoundError):
        await backup(tmp_path / "missing.db", tmp_path / "new.db")
    assert not (tmp_path / "new.db").exists()


# --- the rest of the contract, for every backend ---


async def test_a_chats_waiting_row_holds_back_its_later_rows_only(
    store: Storage, clock: Clock
) -> None:
    chat, other = await store.chat("telegram", "1"), await store.chat("telegram", "2")
    await store.commit_tick({}, [(None, chat.id, alert(50.0 + i)) for i in range(3)])
    await store.commit_tick({}, [(None, other.id, alert(60.0))])
    first, middle, last, others = await store.pending()
    assert first.id < middle.id < last.id < others.id  # ids grow in the order rows are made
    await store.mark_retry(middle.id, "429", T0 + timedelta(seconds=30))
    assert [r.id for r in await store.pending()] == [first.id, others.id]
    assert [r.id for r in await store.pending(limit=1)] == [first.id]
    clock.now = T0 + timedelta(seconds=29)
    assert [r.id for r in await store.pending()] == [first.id, others.id]
    clock.now = T0 + timedelta(seconds=30)  # due at its time
    rows = await store.pending()
    assert [r.id for r in rows] == [first.id, middle.id, last.id, others.id]
    assert [r.attempts for r in rows] == [0, 1, 0, 0]
    await store.mark_retry(middle.id, "429 again", T0 + timedelta(seconds=60))
    await store.mark_failed(first.id, "blocked")
    assert await store.pending() == [others]
    assert await store.outbox_counts() == {"failed": 1, "pending": 3}  # a retry stays pending


async def test_pending_rows_carry_their_chat_as_it_is_now(store: Storage) -> None:
    chat = await store.chat("telegram", "42")
    await store.commit_tick({}, [(None, chat.id, alert())])
    await store.set_chat_active(chat.id, False)
    await store.set_charts(chat.id, False)
    await store.set_muted(chat.id, T0 + timedelta(hours=1))
    [row] = await store.pending()  # made before: still pending, and it shows the chat now
    assert row.chat == await store.get_chat(chat.id)
    assert (row.chat.active, row.chat.charts) == (False, False)
    assert row.chat.muted_until == T0 + timedelta(hours=1)
    assert (row.rule, row.alert, row.attempts) == (None, alert(), 0)


@pytest.mark.parametrize(
    ("muted_for", "active", "status"),
    [
        (None, True, "pending"),
        (timedelta(0), True, "pending"),  # a mute ends at its time
        (timedelta(seconds=1), True, "muted"),
        (-timedelta(hours=1), False, "inactive"),
        (timedelta(hours=1), False, "muted"),  # muted wins over inactive
    ],
)
async def test_what_a_tick_records_for_a_chat(
    store: Storage, muted_for: timedelta | None, active: bool, status: str
) -> None:
    chat = await store.chat("telegram", "42")
    until = None if muted_for is None else (T0 + muted_for).astimezone(timezone(timedelta(hours=2)))
    await store.set_muted(chat.id, until)
    await store.set_chat_active(chat.id, active)
    stored = await store.get_chat(chat.id)
    assert stored.muted_until == until
    assert stored.muted_until is None or stored.muted_until.utcoffset() == timedelta(0)
    queued = await store.commit_tick({}, [(None, chat.id, alert())])
    assert queued == (status == "pending")
    assert await store.outbox_counts() == {status: 1}
    assert await store.history(chat.id) == [(status, alert())]


async def test_chats_are_made_once_found_moved_and_imported(store: Storage, backend: str) -> None:
    group = await store.chat("telegram", "-7", "group")
    assert await store.chat("telegram", "-7", "supergroup") == group  # keeps its kind
    assert (group.kind, group.active, group.muted_until, group.charts) == (
        "group",
        True,
        None,
        True,
    )
    assert await store.find_chat("telegram", "-8") is None
    assert await store.find_chat("discord", "-7") is None  # ids are per platform
    assert await store.get_chat(group.id) == group
    with pytest.raises(KeyError):
        await store.get_chat(group.id + 100)
    await store.set_charts(group.id, False)
    assert not (await store.get_chat(group.id)).charts
    await store.set_chat_active(group.id + 100, False)  # unknown: nothing happens

    imported = await store.import_chats("telegram", ["b", "-7", "a", "b"], "private")
    assert [c.chat_id for c in imported] == ["-7", "a", "b"]  # by chat id, each once
    assert imported[0] == await store.get_chat(group.id)
    assert {c.kind for c in imported[1:]} == {"private"}
    assert len({c.id for c in imported}) == 3

    await store.move_chat("telegram", "-7", "-1007")
    assert await store.find_chat("telegram", "-7") is None
    moved = await store.find_chat("telegram", "-1007")
    assert moved is not None and moved.id == group.id
    await store.move_chat("telegram", "-7", "-1008")  # gone already: nothing happens
    assert await store.find_chat("telegram", "-1008") is None
    with pytest.raises(REFUSED[backend]):
        await store.move_chat("telegram", "a", "b")  # taken
    assert [c.chat_id for c in await store.import_chats("telegram", ["a", "b"], "x")] == [
        "a",
        "b",
    ]


async def test_rules_keep_their_author_time_and_last_state(store: Storage, clock: Clock) -> None:
    one, two = await store.chat("telegram", "1"), await store.chat("telegram", "2")
    first = await store.add_rule(one.id, "XAG above 50", "u1", limit=1)
    clock.now = T0 + timedelta(minutes=5)
    await store.import_rules([(two.id, "BTC below 85000", "u2"), (one.id, "ETH above 5000", "")])
    assert [(r.chat, r.text, r.created_by, r.created_at, r.state) for r in await store.rules()] == [
        (one.id, "XAG above 50", "u1", T0, None),
        (two.id, "BTC below 85000", "u2", T0 + timedelta(minutes=5), None),
        (one.id, "ETH above 5000", "", T0 + timedelta(minutes=5), None),
    ]
    assert [r.text for r in await store.rules(one.id)] == ["XAG above 50", "ETH above 5000"]
    armed, fired = RuleState(armed=True), RuleState(armed=False, last_fired=T0, fired_count=1)
    await store.commit_tick({first: armed}, [])
    await store.commit_tick({first: fired}, [])
    assert [r.state for r in await store.rules(one.id)] == [fired, None]
    with pytest.raises(LimitReached):  # imported rules count towards the limit
        await store.add_rule(one.id, "XAU above 5000", "u1", limit=2)


async def test_a_rule_added_with_its_first_state_is_read_back_with_it(store: Storage) -> None:
    chat = await store.chat("telegram", "1")
    revision = await store.rules_revision()
    learned = RuleState(armed=False)  # already true when it was set
    rule = await store.add_rule(chat.id, "XAG above 50", "u1", limit=5, state=learned)
    assert [r.state for r in await store.rules(chat.id)] == [learned]
    changes = await store.rule_changes(revision)
    assert changes is not None and [(r.id, r.state) for r in changes.rules] == [(rule, learned)]
    with pytest.raises(LimitReached):  # refused: nothing of it is written
        await store.add_rule(chat.id, "XAG above 60", "u1", limit=1, state=learned)
    assert len(await store.rules(chat.id)) == 1


async def test_removing_rules_by_author_or_all_at_once(store: Storage) -> None:
    chat, other = await store.chat("telegram", "1"), await store.chat("telegram", "2")
    mine = await store.add_rule(chat.id, "XAG above 50", "u1", limit=50)
    run = await store.add_rule(chat.id, "XAG above 60", "run", limit=50)
    elsewhere = await store.add_rule(other.id, "XAG above 70", "run", limit=50)
    await store.commit_tick(
        {},
        [
            (mine, chat.id, alert(50.5)),
            (run, chat.id, alert(60.5)),
            (None, chat.id, alert(61.0)),  # a digest alert: no rule
            (elsewhere, other.id, alert(70.5)),
        ],
    )
    assert await store.remove_rules_created_by(chat.id, "run") == 1
    assert await store.remove_rules_created_by(chat.id, "run") == 0
    assert [r.id for r in await store.rules()] == [mine, elsewhere]
    assert await store.outbox_counts() == {"pending": 4}  # their alerts still go
    assert await store.remove_all_rules(chat.id) == 1
    assert [r.id for r in await store.rules()] == [elsewhere]
    assert [r.alert.price for r in await store.pending()] == [61.0, 70.5]
    assert await store.outbox_counts() == {"pending": 2, "removed": 2}
    assert await store.remove_all_rules(chat.id) == 0


async def test_the_revision_counts_rule_and_subscription_changes(store: Storage) -> None:
    chat = await store.chat("telegram", "1")
    assert await store.rules_revision() == 0
    rule = await store.add_rule(chat.id, "XAG above 50", "u1", limit=50)
    assert await store.rules_revision() == 1
    steps: list[tuple[Callable[[], Awaitable[object]], int]] = [
        (lambda: store.import_rules([(chat.id, "XAG 60", "u1"), (chat.id, "XAG 70", "")]), 2),
        (lambda: store.subscribe(chat.id, "XAU"), 1),
        (lambda: store.subscribe(chat.id, "XAU"), 0),  # already was
        (lambda: store.subscribe(chat.id, "XAG"), 1),
        (lambda: store.commit_tick({rule: RuleState(armed=True)}, [(rule, chat.id, alert())]), 0),
        (lambda: store.set_muted(chat.id, T0 + timedelta(hours=1)), 0),
        (lambda: store.set_chat_active(chat.id, False), 0),
        (lambda: store.remove_rule(chat.id, rule), 1),
        (lambda: store.remove_rule(chat.id, rule), 0),
        (lambda: store.remove_rules_created_by(chat.id, ""), 1),
        (lambda: store.remove_all_rules(chat.id), 1),
        (lambda: store.unsubscribe(chat.id), 2),
        (lambda: store.unsubscribe(chat.id), 0),
    ]
    expected = 1
    for step, bump in steps:
        await step()
        expected += bump
        assert await store.rules_revision() == expected


async def test_rule_changes_are_what_changed_since_a_revision_as_it_is_now(
    store: Storage, clock: Clock
) -> None:
    chat = await store.chat("telegram", "1")
    kept = await store.add_rule(chat.id, "XAG above 50", "u1", limit=50)
    start = await store.rules_revision()
    assert await store.rule_changes(start) == RuleChanges(start)  # nothing since
    gone = await store.add_rule(chat.id, "XAG above 60", "u1", limit=50)
    await store.import_rules([(chat.id, "BTC below 85000", "u2")])
    middle = await store.rules_revision()
    armed = RuleState(armed=True)
    await store.commit_tick({kept: armed, gone: armed}, [])  # states are no change
    assert await store.rule_changes(middle) == RuleChanges(middle)
    assert await store.remove_rule(chat.id, gone)
    await store.subscribe(chat.id, "XAU")
    now = await store.rules_revision()
    [imported] = [r for r in await store.rules() if r.text == "BTC below 85000"]
    # added then removed: once, as removed; the import: once, as it is now
    assert await store.rule_changes(start) == RuleChanges(now, (imported,), (gone,), True)
    assert await store.rule_changes(middle) == RuleChanges(now, (), (gone,), True)
    assert await store.rule_changes(now - 1) == RuleChanges(now, subscriptions=True)
    assert await store.rule_changes(now) == RuleChanges(now)
    old = await store.rule_changes(0)  # the first rule's state comes with it
    assert old is not None and [(r.id, r.state) for r in old.rules] == [
        (kept, armed),
        (imported.id, None),
    ]


async def test_a_reader_too_far_behind_is_told_to_read_everything(store: Storage) -> None:
    chat = await store.chat("telegram", "1")
    first = await store.add_rule(chat.id, "XAG above 50", "u1", limit=50)
    await store.import_rules([(chat.id, f"XAG above {60 + i}", "") for i in range(11_500)])
    await store.remove_rule(chat.id, first)
    now = await store.rules_revision()
    assert await store.rule_changes(0) is None  # the first changes are forgotten
    recent = await store.rule_changes(now - 10_000)  # the last 10,000 are always known
    assert recent is not None and recent.revision == now
    assert (len(recent.rules), recent.removed) == (9_999, (first,))
    assert await store.rule_changes(now + 3) is None  # ahead of the store: a restored backup


async def test_all_rules_page_by_page(store: Storage) -> None:
    chat = await store.chat("telegram", "1")
    await store.import_rules([(chat.id, f"XAG above {50 + i}", "") for i in range(7)])
    ids = [r.id for r in await store.rules()]
    await store.remove_rule(chat.id, ids[2])
    pages, after = [], 0
    while page := await store.rules_page(after, 2):
        pages.append([r.id for r in page])
        after = page[-1].id
    assert pages == [ids[0:2], ids[3:5], ids[5:7]]
    assert await store.rules_page(0, 100) == await store.rules()


async def test_subscriptions_are_ordered_and_dropped_one_by_one(store: Storage) -> None:
    one, two = await store.chat("telegram", "1"), await store.chat("telegram", "2")
    for chat, symbol in [(two, "ZZZ"), (one, "YYY"), (two, "AAA"), (one, "BBB")]:
        assert await store.subscribe(chat.id, symbol)
    assert await store.subscriptions() == [
        (one.id, "BBB"),
        (one.id, "YYY"),
        (two.id, "AAA"),
        (two.id, "ZZZ"),
    ]
    assert await store.subscriptions(two.id) == [(two.id, "AAA"), (two.id, "ZZZ")]
    assert await store.unsubscribe(one.id, "YYY") == 1
    assert await store.unsubscribe(one.id, "YYY") == 0
    assert await store.unsubscribe(two.id + 100) == 0
    assert await store.subscriptions(one.id) == [(one.id, "BBB")]


async def test_writes_naming_what_does_not_exist_are_refused_whole(
    store: Storage, backend: str
) -> None:
    chat = await store.chat("telegram", "1")
    rule = await store.add_rule(chat.id, "XAG above 50", "u1", limit=50)
    refused: list[Callable[[], Awaitable[object]]] = [
        lambda: store.add_rule(chat.id + 100, "XAG above 60", "u1", limit=50),
        lambda: store.import_rules([(chat.id, "XAG 60", "u1"), (chat.id + 100, "XAG 70", "")]),
        lambda: store.subscribe(chat.id + 100, "XAU"),
        lambda: store.commit_tick({rule: RuleState(armed=True), rule + 100: RuleState()}, []),
        lambda: store.commit_tick({}, [(None, chat.id, alert()), (rule + 100, chat.id, alert())]),
    ]
    for write in refused:
        with pytest.raises(REFUSED[backend]):
            await write()
    assert [(r.id, r.state) for r in await store.rules()] == [(rule, None)]
    assert await store.rules_revision() == 1
    assert await store.subscriptions() == []
    assert await store.outbox_counts() == {}


async def test_history_is_newest_first_and_marks_of_unknown_rows_do_nothing(
    store: Storage,
) -> None:
    chat, other = await store.chat("telegram", "1"), await store.chat("telegram", "2")
    await store.commit_tick({}, [(None, chat.id, alert(50.0 + i)) for i in range(3)])
    await store.commit_tick({}, [(None, other.id, alert(60.0))])
    first = (await store.pending())[0]
    await store.mark_delivered(first.id, "m1")
    assert await store.history(chat.id, limit=2) == [
        ("pending", alert(52.0)),
        ("pending", alert(51.0)),
    ]
    assert [s for s, _ in await store.history(chat.id)] == ["pending", "pending", "delivered"]
    assert await store.history(other.id) == [("pending", alert(60.0))]
    assert await store.history(other.id + 100) == []
    missing = max(r.id for r in await store.pending()) + 100
    await store.mark_delivered(missing, "m2")
    await store.mark_retry(missing, "timeout", T0 + timedelta(seconds=30))
    await store.mark_failed(missing, "gone")
    assert await store.outbox_counts() == {"delivered": 1, "pending": 3}


async def test_quotes_are_one_per_time_and_come_back_in_utc(store: Storage) -> None:
    east = timezone(timedelta(hours=2))
    at = [(T0 + timedelta(minutes=i)).astimezone(east) for i in range(4)]
    await store.save_quotes(
        [Quote("BTC", 100.0 + i, ts, source="x", bar=True) for i, ts in enumerate(at)]
    )
    await store.save_quotes(
        [Quote("BTC", 200.0, at[1], 199.0, 201.0, "y"), Quote("ETH", 5.0, at[0])]
    )
    btc = await store.recent_quotes("BTC")
    assert btc == [
        Quote("BTC", 100.0, T0, source="x"),
        Quote("BTC", 200.0, T0 + timedelta(minutes=1), 199.0, 201.0, "y"),  # replaced
        Quote("BTC", 102.0, T0 + timedelta(minutes=2), source="x"),
        Quote("BTC", 103.0, T0 + timedelta(minutes=3), source="x"),
    ]
    assert {q.ts.utcoffset() for q in btc} == {timedelta(0)}
    assert [q.last for q in await store.recent_quotes("BTC", limit=2)] == [102.0, 103.0]
    assert [q.last for q in await store.recent_quotes("BTC", since=at[1], limit=1)] == [103.0]
    assert await store.recent_quotes("XAU") == []
    assert await store.prune_quotes(T0 + timedelta(minutes=1)) == 2  # every symbol's
    assert await store.recent_quotes("ETH") == []
    assert [q.last for q in await store.recent_quotes("BTC")] == [200.0, 102.0, 103.0]


async def test_pruning_keeps_what_was_decided_at_the_cut(store: Storage) -> None:
    chat = await store.chat("telegram", "42")
    await store.commit_tick({}, [(None, chat.id, alert())])
    [row] = await store.pending()
    await store.mark_failed(row.id, "chat not found")
    assert await store.prune_outbox(before=T0) == 0
    assert await store.prune_outbox(before=T0 + timedelta(microseconds=1)) == 1
    assert await store.outbox_counts() == {}


# Outbox payloads exactly as the version whose alerts carried a `message` (and no book) wrote them.
OLD_PAYLOADS = [
    '{"rule_text": "XAG above 50", "symbol": "XAG", "condition": "above", "direction": "up", '
    '"price": 50.5, "reference": 50.0, "observed": 50.5, "time": "2026-03-02T12:00:00+00:00", '
    '"message": "XAG rose above 50 (now 50.50)"}',
    '{"rule_text": "XAU/XAG below 80", "symbol": "XAU/XAG", "condition": "below", '
    '"direction": "down", "price": 79.21, "reference": 80.0, "observed": 79.21, '
    '"time": "2026-03-02T12:00:00+00:00", "message": "XAU/XAG ratio fell below 80 (now 79.21)"}',
    '{"rule_text": "XAG spread > 0.15", "symbol": "XAG", "condition": "spread_abs", '
    '"direction": "wider", "price": 50.105, "reference": 0.15, "observed": 0.21000000000000085, '
    '"time": "2026-03-02T12:00:00+00:00", '
    '"message": "XAG spread 21.0c is over 15.0c (bid 50 / ask 50.21)"}',
]


async def insert_payloads(store: Store, chat: int, payloads: list[str]) -> None:
    """Outbox rows as an earlier version left them in the database."""
    async with store._transaction() as conn:
        for payload in payloads:
            await conn.execute(
                "INSERT INTO outbox (chat, payload, created_at) VALUES (?, ?, ?)",
                (chat, payload, T0.isoformat()),
            )


async def test_outbox_rows_from_before_alerts_were_data_still_load_and_render(
    sqlite_store: Store,
) -> None:
    store = sqlite_store
    chat = await store.chat("console", "console")
    await insert_payloads(store, chat.id, OLD_PAYLOADS)
    level, ratio, spread = [row.alert for row in await store.pending()]
    assert level.rule == rules.parse("XAG above 50") and level.symbol == "XAG"
    assert (level.bid, level.ask) == (None, None)
    assert ratio.rule == rules.parse("XAU/XAG below 80") and ratio.symbol == "XAU/XAG"
    assert sentence(level) == "XAG rose above 50 (now 50.50)"  # their old messages, word for word
    assert render.alert_html(ratio).split("\n")[0] == (
        "🔴▼ <b>XAU/XAG</b> ratio fell below 80 (now 79.21)"
    )
    assert sentence(spread) == "XAG spread 21.0c is over 15.0c"  # the book was not stored


async def test_an_alert_whose_rule_no_longer_parses_is_still_delivered(
    sqlite_store: Store, clock: Clock
) -> None:
    """A stored rule text the grammar no longer reads (here a made-up condition) loads as a bare
    rule of the stored subject and condition, and goes out in the words that are still true."""
    store = sqlite_store
    chat = await store.chat("console", "console")
    payload = (
        '{"rule_text": "XAU/XAG wobbles 80", "symbol": "XAU/XAG", "condition": "crosses", '
        '"direction": "up", "price": 80.5, "reference": 80.0, "observed": 80.5, '
        '"time": "2026-03-02T12:00:00+00:00", "bid": null, "ask": null}'
    )
    await insert_payloads(store, chat.id, [payload])
    [row] = await store.pending()
    assert row.alert.rule == Rule("XAU/XAG", Condition.CROSSES)
    assert (row.alert.rule_text, row.alert.symbol) == ("XAU/XAG wobbles 80", "XAU/XAG")
    printed: list[str] = []
    delivery = Delivery(store, {"console": ConsoleNotifier(printed.append)}, clock=clock)
    await delivery.drain()
    assert printed == [
        "[2026-03-02 12:00:00 UTC] ALERT XAU/XAG alert triggered (now 80.50)  (XAU/XAG wobbles 80)"
    ]
    assert await store.outbox_counts() == {"delivered": 1}


def test_an_alert_is_stored_as_data_without_a_sentence() -> None:
    stored = json.loads(alert_to_json(alert(50.5)))
    assert "message" not in stored
    assert (stored["rule_text"], stored["bid"], stored["ask"]) == ("XAG above 50", 50.49, 50.5)
    assert alert_from_json(alert_to_json(alert(50.5))) == alert(50.5)


async def test_a_full_disk_is_storage_unavailable_and_lands_nothing_partial(
    tmp_path: Path, clock: Clock
) -> None:
    """The contract's StorageUnavailable, not a driver error, reaches the layers above: a write
    that cannot land changes nothing, and the same write works once there is room again."""
    with small_disk(tmp_path / "disk") as disk:
        async with Store.open(disk.path / "full.db", clock=clock) as store:
            chat = await store.chat("telegram", "42")
            batch = [(None, chat.id, alert(50.0 + i / 100)) for i in range(200)]
            disk.fill()
            landed = 0
            with pytest.raises(StorageUnavailable):
                for _ in range(1000):  # pages the WAL had in hand fill first
                    await store.commit_tick({}, batch)
                    landed += len(batch)
            assert await store.outbox_counts() == ({"pending": landed} if landed else {})
            disk.free()
            await store.commit_tick({}, batch)
            assert await store.outbox_counts() == {"pending": landed + len(batch)}


async def test_a_snoozed_rule_comes_back_relearning_with_its_history(
    store: Storage, clock: Clock
) -> None:
    chat = await store.chat("telegram", "1")
    other = await store.chat("telegram", "2")
    rule = await store.add_rule(chat.id, "XAG above 50", "u", limit=50)
    fired = RuleState(armed=True, last_fired=T0, fired_count=2)
    await store.commit_tick({rule: fired}, [])
    revision = await store.rules_revision()
    until = (T0 + timedelta(hours=1)).astimezone(timezone(timedelta(hours=2)))
    assert await store.snooze_rule(chat.id, rule, until)
    [stored] = await store.rules(chat.id)
    assert stored.snoozed_until == T0 + timedelta(hours=1)
    assert stored.snoozed_until is not None and stored.snoozed_until.utcoffset() == timedelta(0)
    assert stored.state == RuleState(armed=None, last_fired=T0, fired_count=2)
    changes = await store.rule_changes(revision)
    assert changes is not None and [r.id for r in changes.rules] == [rule]
    assert not await store.snooze_rule(other.id, rule, until)  # another chat's rule
    assert await store.snooze_rule(chat.id, rule, None)
    assert (await store.rules(chat.id))[0].snoozed_until is None
    await store.remove_rule(chat.id, rule)
    assert not await store.snooze_rule(chat.id, rule, until)  # removed
    fresh = await store.add_rule(chat.id, "XAG below 40", "u", limit=50)
    assert await store.snooze_rule(chat.id, fresh, until)  # no state yet: stays none
    assert (await store.rules(chat.id))[0].state is None


async def test_an_outbox_row_by_id_and_each_button_recorded_once(store: Storage) -> None:
    chat = await store.chat("telegram", "1")
    rule = await store.add_rule(chat.id, "XAG above 50", "u", limit=50)
    await store.commit_tick({}, [(rule, chat.id, alert(50.5)), (None, chat.id, alert(51.0))])
    first, second = await store.pending()
    assert first.actions == frozenset()
    assert await store.outbox_row(first.id) == first
    assert await store.mark_action(first.id, "s")
    assert not await store.mark_action(first.id, "s")  # a double press does one thing
    assert await store.mark_action(first.id, "r")
    await store.mark_delivered(first.id, "m1")
    found = await store.outbox_row(first.id)  # delivered rows are found too
    assert found is not None and found.actions == {"s", "r"} and found.alert == alert(50.5)
    assert (await store.outbox_row(second.id)) == second and second.rule is None
    assert await store.outbox_row(999) is None
    assert not await store.mark_action(999, "s")
    await store.unmark_action(first.id, "s")  # it did nothing after all: usable again
    await store.unmark_action(first.id, "c")  # never recorded
    await store.unmark_action(999, "s")
    found = await store.outbox_row(first.id)
    assert found is not None and found.actions == {"r"}
    assert await store.mark_action(first.id, "s")


async def test_a_secret_is_made_once_and_kept(store: Storage) -> None:
    key = await store.secret("actions")
    assert len(key) == 64 and int(key, 16) >= 0
    assert await store.secret("actions") == key
    assert await store.secret("other") != key


async def test_a_secret_survives_a_restart(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "k.db") as first:
        key = await first.secret("actions")
    async with Store.open(tmp_path / "k.db") as again:
        assert await again.secret("actions") == key


# --- daily digests ---

LONDON_8 = DigestSetting(time(8, 0), "Europe/London")


def due(day: int) -> DigestDue:
    """The digest of 2026-03-`day` (synthetic), due at 08:00 UTC."""
    return DigestDue(date(2026, 3, day), datetime(2026, 3, day, 8, tzinfo=UTC))


async def test_a_digest_is_set_shown_changed_and_turned_off(store: Storage, clock: Clock) -> None:
    chat = await store.chat("telegram", "1")
    other = await store.chat("telegram", "2")
    assert await store.digests() == []
    await store.set_digest(chat.id, LONDON_8)
    assert await store.digests() == [ChatDigest(chat.id, LONDON_8, T0, None)]
    clock.tick(60)
    weekdays = DigestSetting(time(17, 30), "America/New_York", weekdays_only=True)
    await store.set_digest(chat.id, weekdays)
    await store.set_digest(other.id, LONDON_8)
    assert await store.digests(chat.id) == [ChatDigest(chat.id, weekdays, clock.now, None)]
    assert [d.chat for d in await store.digests()] == [chat.id, other.id]
    await store.set_digest(chat.id, None)
    await store.set_digest(chat.id, None)  # off twice: nothing more happens
    assert await store.digests(chat.id) == [] and len(await store.digests()) == 1


async def test_a_digest_is_enqueued_once_a_day_with_its_day_recorded(
    store: Storage, clock: Clock
) -> None:
    chat = await store.chat("telegram", "1")
    assert not await store.enqueue_digest(chat.id, due(2))  # no digest set: nothing
    await store.set_digest(chat.id, LONDON_8)
    assert await store.enqueue_digest(chat.id, due(2))
    assert not await store.enqueue_digest(chat.id, due(2))  # never twice a day
    assert not await store.enqueue_digest(chat.id, due(1))  # nor for a day before
    [row] = await store.pending()
    assert (row.rule, row.chat, row.alert, row.attempts) == (None, chat, due(2), 0)
    assert await store.outbox_row(row.id) == row and row.actions == frozenset()
    assert (await store.digests())[0].last_day == date(2026, 3, 2)
    await store.set_digest(chat.id, None)
    assert not await store.enqueue_digest(chat.id, due(3))  # off: nothing
    await store.set_digest(chat.id, LONDON_8)  # on again: the last day is remembered
    assert (await store.digests())[0].last_day == date(2026, 3, 2)
    assert not await store.enqueue_digest(chat.id, due(2))
    assert await store.enqueue_digest(chat.id, due(3))
    assert [r.alert for r in await store.pending()] == [due(2), due(3)]
    await store.mark_delivered(row.id, "7")
    assert await store.outbox_counts() == {"delivered": 1, "pending": 1}
    assert await store.history(chat.id) == []  # digests are not alerts


async def test_a_digest_waits_in_order_behind_alerts_and_follows_mute(
    store: Storage, clock: Clock
) -> None:
    chat = await store.chat("telegram", "1")
    await store.set_digest(chat.id, LONDON_8)
    await store.commit_tick({}, [(None, chat.id, alert(60.0))])
    assert await store.enqueue_digest(chat.id, due(2))
    await store.commit_tick({}, [(None, chat.id, alert(61.0))])
    assert [r.alert for r in await store.pending()] == [alert(60.0), due(2), alert(61.0)]
    assert await store.remove_all_rules(chat.id) == 0
    assert len(await store.pending()) == 3  # a digest has no rule to remove
    await store.set_muted(chat.id, clock.now + timedelta(hours=1))
    assert await store.enqueue_digest(chat.id, due(3))  # recorded as sent: muted, not later
    assert await store.outbox_counts() == {"muted": 1, "pending": 3}
    assert not await store.enqueue_digest(chat.id, due(3))


async def test_a_digest_for_a_chat_that_does_not_exist_is_refused(
    store: Storage, backend: str
) -> None:
    with pytest.raises(REFUSED[backend]):
        await store.set_digest(99, LONDON_8)
    await store.set_digest(99, None)  # turning off what is not there: nothing
    assert await store.digests() == []


@pytest.mark.parametrize("version", [5, 6, 7])  # before buttons; before digests; before webhooks
async def test_alerts_waiting_in_a_database_from_before_digests_still_go(
    tmp_path: Path, version: int
) -> None:
    """The outbox rows of a database from before migrations 7 and 8 are alerts, still
    pending, and the chat has no webhooks yet."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for script in MIGRATIONS[:version]:
        for statement in _statements(script):
            conn.execute(statement)
    conn.execute("INSERT INTO schema_version VALUES (?)", (version,))
    conn.execute(
        "INSERT INTO chats (platform, chat_id, created_at) VALUES ('telegram', '42', ?)",
        (T0.isoformat(),),
    )
    conn.execute(
        "INSERT INTO outbox (chat, payload, created_at) VALUES (1, ?, ?)",
        (alert_to_json(alert()), T0.isoformat()),
    )
    conn.commit()
    conn.close()
    async with Store.open(path) as store:
        [row] = await store.pending()
        assert row.alert == alert() and await store.history(row.chat.id) == [("pending", alert())]
        assert await store.digests() == []
        assert await store.webhooks() == [] and await store.inbound_secret(row.chat.id) is None
        hook, _ = await store.add_webhook(row.chat.id, "https://example.com/hook", "s")
        await store.commit_tick({}, [(None, row.chat.id, alert(51.0))])
        assert [r.chat.id for r in await store.pending()] == [row.chat.id, row.chat.id, hook.id]


# --- webhooks ---


async def test_a_chats_webhooks_hear_its_alerts_in_order_after_it(store: Storage) -> None:
    chat = await store.chat("telegram", "42")
    other = await store.chat("telegram", "43")
    rule = await store.add_rule(chat.id, "XAG above 50", "u1", limit=50)
    slack, added = await store.add_webhook(chat.id, "https://hooks.slack.com/services/A/B/C", "s1")
    plain, _ = await store.add_webhook(chat.id, "https://example.com/hook", "s2")
    assert added and slack.owner == chat.id and slack.secret == "s1"
    assert await store.webhooks(chat.id) == [slack, plain] == await store.webhooks()
    assert await store.webhooks(other.id) == []
    assert await store.webhook(slack.id) == slack
    hook_chat = await store.get_chat(slack.id)
    assert (hook_chat.platform, hook_chat.kind) == ("webhook", "webhook")
    assert "slack" not in hook_chat.chat_id  # the URL (a secret for Slack) is not its name
    queued = await store.commit_tick(
        {}, [(rule, chat.id, alert(50.5)), (None, other.id, alert(51.0))]
    )
    assert queued == 4
    rows = await store.pending()
    assert [(r.chat.id, r.rule, r.alert.price) for r in rows] == [
        (chat.id, rule, 50.5),
        (slack.id, rule, 50.5),
        (plain.id, rule, 50.5),
        (other.id, None, 51.0),
    ]


async def test_a_webhook_added_twice_is_one_and_removed_stops_hearing(store: Storage) -> None:
    chat = await store.chat("telegram", "42")
    rule = await store.add_rule(chat.id, "XAG above 50", "u1", limit=50)
    hook, _ = await store.add_webhook(chat.id, "https://example.com/hook", "old")
    again, added = await store.add_webhook(chat.id, "https://example.com/hook", "new")
    assert not added and again == replace(hook, secret="new")
    await store.commit_tick({}, [(rule, chat.id, alert())])
    other = await store.chat("telegram", "43")
    assert not await store.remove_webhook(other.id, hook.id)  # not yours
    assert await store.remove_webhook(chat.id, hook.id)
    assert not await store.remove_webhook(chat.id, hook.id)
    assert await store.webhooks() == [] and await store.webhook(hook.id) is None
    assert [row.chat.id for row in await store.pending()] == [chat.id]  # its row went too
    await store.commit_tick({}, [(rule, chat.id, alert())])
    assert await store.outbox_counts() == {"pending": 2, "removed": 1}
    back, added = await store.add_webhook(chat.id, "https://example.com/hook", "s")
    assert added and back.id == hook.id


async def test_a_daily_digest_goes_to_the_chat_not_its_webhooks(store: Storage) -> None:
    chat = await store.chat("telegram", "42")
    hook, _ = await store.add_webhook(chat.id, "https://example.com/hook", "s")
    await store.set_digest(chat.id, LONDON_8)
    assert await store.enqueue_digest(chat.id, due(2))
    [row] = await store.pending()
    assert (row.chat.id, row.alert) == (chat.id, due(2)) and hook.id != chat.id


async def test_a_webhooks_rows_follow_its_owner_and_its_rules(store: Storage) -> None:
    chat = await store.chat("telegram", "42")
    rule = await store.add_rule(chat.id, "XAG above 50", "u1", limit=50)
    hook, _ = await store.add_webhook(chat.id, "https://example.com/hook", "s")
    await store.set_muted(chat.id, T0 + timedelta(hours=1))
    assert await store.commit_tick({}, [(rule, chat.id, alert())]) == 0
    await store.set_muted(chat.id, None)
    await store.set_chat_active(hook.id, False)  # the receiver is gone
    assert await store.commit_tick({}, [(rule, chat.id, alert())]) == 1
    await store.set_chat_active(hook.id, True)
    await store.commit_tick({}, [(rule, chat.id, alert())])
    assert await store.remove_rule(chat.id, rule)  # its alerts go for the webhook too
    assert await store.pending() == []
    assert await store.outbox_counts() == {"muted": 2, "inactive": 1, "removed": 3}
    second = await store.add_rule(chat.id, "XAG above 60", "u1", limit=50)
    await store.commit_tick({}, [(second, chat.id, alert()), (None, chat.id, alert())])
    assert await store.remove_all_rules(chat.id) == 1
    assert [(r.chat.id, r.rule) for r in await store.pending()] == [
        (chat.id, None),
        (hook.id, None),
    ]


async def test_inbound_secrets_name_one_chat_each(store: Storage, backend: str) -> None:
    chat = await store.chat("telegram", "42")
    other = await store.chat("discord", "9")
    assert await store.inbound_secret(chat.id) is None
    assert await store.inbound_chat("abc") is None
    await store.set_inbound_secret(chat.id, "abc")
    assert await store.inbound_secret(chat.id) == "abc"
    assert await store.inbound_chat("abc") == chat
    with pytest.raises(REFUSED[backend]):
        await store.set_inbound_secret(other.id, "abc")
    await store.set_inbound_secret(chat.id, "def")  # a new one replaces the old
    assert await store.inbound_chat("abc") is None and await store.inbound_chat("def") == chat
    await store.set_inbound_secret(chat.id, None)
    assert await store.inbound_secret(chat.id) is None and await store.inbound_chat("def") is None


def test_an_alert_from_outside_keeps_its_note_and_says_it_as_sent() -> None:
    bare = Rule(symbol="BTCUSDT", condition=Condition.MOVE)
    note = "BTCUSDT crossed 90000 <b>&</b> {{close}}"
    outside = Alert("TradingView", bare, Direction.EITHER, 0.0, None, 0.0, T0, note=note)
    assert alert_from_json(alert_to_json(outside)) == outside
    assert sentence(outside) == f"BTCUSDT {note}"
    assert "note" not in json.loads(alert_to_json(alert()))
