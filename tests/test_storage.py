"""The SQLite store on real files: migrations, pragmas, atomic ticks, the outbox life cycle."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from support.scripted import T0, Clock

from alerts import rules
from alerts.models import Alert, Condition, Direction, Quote, Rule, RuleState
from bot import render
from bot.wording import sentence
from storage.db import (
    LimitReached,
    Store,
    _statements,
    alert_from_json,
    alert_to_json,
    backup,
)
from storage.migrations import MIGRATIONS
from tickerbell.delivery import ConsoleNotifier, Delivery


def alert(price: float = 50.5) -> Alert:
    rule = rules.parse("XAG above 50")
    return Alert("XAG above 50", rule, Direction.UP, price, 50.0, price, T0, price - 0.01, price)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.open(tmp_path / "t.db", clock=Clock()) as s:
        yield s


async def test_pragmas_and_version(store: Store, tmp_path: Path) -> None:
    assert await store.schema_version() == len(MIGRATIONS)
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


async def test_rules_limit_and_revision(store: Store) -> None:
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


async def test_tick_is_one_transaction(store: Store) -> None:
    chat = await store.chat("console", "console")
    rule = await store.add_rule(chat.id, "XAG above 50", "cli", limit=50)
    fired = RuleState(armed=False, last_fired=T0, fired_count=1)
    with pytest.raises(sqlite3.IntegrityError):  # the second alert names no chat: all rolls back
        await store.commit_tick({rule: fired}, [(rule, chat.id, alert()), (rule, 999, alert())])
    assert (await store.rules())[0].state is None
    assert await store.outbox_counts() == {}
    queued = await store.commit_tick({rule: fired}, [(rule, chat.id, alert())])
    assert queued == 1
    assert (await store.rules())[0].state == fired


async def test_outbox_life_cycle(store: Store) -> None:
    clock = store._clock
    assert isinstance(clock, Clock)
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


async def test_muted_and_inactive_chats_are_not_queued(store: Store) -> None:
    muted = await store.chat("telegram", "1")
    gone = await store.chat("telegram", "2")
    await store.set_muted(muted.id, T0 + timedelta(hours=1))
    await store.set_chat_active(gone.id, False)
    queued = await store.commit_tick({}, [(None, muted.id, alert()), (None, gone.id, alert())])
    assert queued == 0
    assert await store.outbox_counts() == {"muted": 1, "inactive": 1}


async def test_subscriptions_and_chat_move(store: Store) -> None:
    chat = await store.chat("telegram", "-100")
    assert await store.subscribe(chat.id, "XAG")
    assert not await store.subscribe(chat.id, "XAG")
    await store.move_chat("telegram", "-100", "-100200")
    assert (await store.find_chat("telegram", "-100200")) is not None
    assert await store.subscriptions(chat.id) == [(chat.id, "XAG")]
    assert await store.unsubscribe(chat.id) == 1


async def test_recent_quotes_with_retention(store: Store) -> None:
    quotes = [
        Quote("BTC", 100.0 + i, T0 + timedelta(minutes=i), 99.0, 101.0, "x") for i in range(5)
    ]
    await store.save_quotes(quotes)
    assert await store.prune_quotes(T0 + timedelta(minutes=2)) == 2
    assert [q.last for q in await store.recent_quotes("BTC")] == [102.0, 103.0, 104.0]
    later = await store.recent_quotes("BTC", since=T0 + timedelta(minutes=4))
    assert [q.last for q in later] == [104.0]


async def test_one_chats_retry_holds_back_only_that_chat(store: Store) -> None:
    clock = store._clock
    assert isinstance(clock, Clock)
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


async def test_reads_never_see_a_write_that_is_not_committed(store: Store) -> None:
    """A read running while another coroutine's transaction is open sees the last commit only
    (the shared-connection race that lost alerts in the crash test)."""
    chat = await store.chat("console", "console")
    inside, release = asyncio.Event(), asyncio.Event()

    async def tick_that_fails() -> None:
        async with store.transaction() as conn:
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


async def test_concurrent_reads_and_writes_keep_every_row_whole(store: Store) -> None:
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


async def test_removing_a_rule_drops_its_alerts_not_yet_sent(store: Store) -> None:
    chat = await store.chat("telegram", "42")
    kept = await store.add_rule(chat.id, "XAG above 50", "u1", limit=50)
    gone = await store.add_rule(chat.id, "XAG above 60", "u1", limit=50)
    await store.commit_tick({}, [(gone, chat.id, alert(60.5)), (kept, chat.id, alert(50.5))])
    assert await store.remove_rule(chat.id, gone)
    assert [row.rule for row in await store.pending()] == [kept]
    assert await store.outbox_counts() == {"pending": 1, "removed": 1}


# --- retention and backups ---


async def test_finished_alerts_older_than_the_retention_are_pruned(store: Store) -> None:
    clock = store._clock
    assert isinstance(clock, Clock)
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
    store: Store, tmp_path: Path
) -> None:
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
    async with store.transaction() as conn:
        for payload in payloads:
            await conn.execute(
                "INSERT INTO outbox (chat, payload, created_at) VALUES (?, ?, ?)",
                (chat, payload, T0.isoformat()),
            )


async def test_outbox_rows_from_before_alerts_were_data_still_load_and_render(
    store: Store,
) -> None:
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


async def test_an_alert_whose_rule_no_longer_parses_is_still_delivered(store: Store) -> None:
    """A stored rule text the grammar no longer reads (here a made-up condition) loads as a bare
    rule of the stored subject and condition, and goes out in the words that are still true."""
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
    delivery = Delivery(store, {"console": ConsoleNotifier(printed.append)}, clock=store._clock)
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
