"""What only the PostgreSQL store has (the contract itself is in test_storage.py): a server
that is away, migrations run by processes starting together, a URL fit for the log.

The tests need `TICKERBELL_TEST_DATABASE_URL` and skip without it (tests/support/postgres.py)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from datetime import datetime, timedelta

import psycopg
import pytest
from support.postgres import Relay
from support.scripted import T0
from support.waiting import until

from alerts import rules
from alerts.models import Alert, Direction, RuleState
from storage.api import Fenced, Slots, StorageUnavailable
from storage.db import alert_to_json
from storage.pg_migrations import MIGRATIONS
from storage.postgres import LEASE_CLASS, LEASE_KEY, Lease, PostgresStore, safe_url


def alert(price: float = 50.5) -> Alert:
    rule = rules.parse("XAG above 50")
    return Alert("XAG above 50", rule, Direction.UP, price, 50.0, price, T0, price - 0.01, price)


async def test_a_server_nobody_answers_at_start_is_unavailable(unused_port: int) -> None:
    url = f"postgresql://postgres@127.0.0.1:{unused_port}/test"
    with pytest.raises(StorageUnavailable, match=f"cannot connect to {url}"):
        async with PostgresStore.open(url, timeout=0.5):
            pass


async def test_a_lost_server_is_unavailable_and_the_same_call_works_once_it_is_back(
    postgres_url: str,
) -> None:
    async with Relay(postgres_url) as relay, PostgresStore.open(relay.url, timeout=0.5) as store:
        chat = await store.chat("telegram", "42")
        await relay.cut()
        for call in (store.pending, lambda: store.commit_tick({}, [(None, chat.id, alert())])):
            with pytest.raises(StorageUnavailable):
                await call()
        await relay.restore()
        deadline = time.monotonic() + 20
        while True:  # the pool reconnects in the background, with backoff
            try:
                await store.commit_tick({}, [(None, chat.id, alert())])
                break
            except StorageUnavailable:
                assert time.monotonic() < deadline, "the store did not come back"
        assert await store.outbox_counts() == {"pending": 1}


async def test_processes_starting_together_migrate_once(postgres_url: str) -> None:
    async def start() -> int:
        async with PostgresStore.open(postgres_url) as store:
            return await store.schema_version()

    assert await asyncio.gather(*(start() for _ in range(4))) == [len(MIGRATIONS)] * 4


async def test_concurrent_adds_keep_the_per_chat_limit(postgres_url: str) -> None:
    """Two processes adding to one chat at once: the limit holds (the chat row is locked)."""
    async with PostgresStore.open(postgres_url) as one, PostgresStore.open(postgres_url) as two:
        chat = await one.chat("telegram", "42")
        results = await asyncio.gather(
            *(s.add_rule(chat.id, f"XAG above {50 + i}", "u", limit=5) for i, s in
              enumerate([one, two] * 5)),
            return_exceptions=True,
        )  # fmt: skip
        assert sum(isinstance(r, int) for r in results) == 5
        assert len(await two.rules(chat.id)) == 5


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://bot:s3cret@db:5432/tb", "postgresql://bot:***@db:5432/tb"),
        ("postgresql://bot@db/tb?sslmode=require", "postgresql://bot@db/tb?sslmode=require"),
        ("postgres://:pw@db/tb", "postgres://:***@db/tb"),
    ],
)
def test_a_url_in_the_log_hides_its_password(url: str, shown: str) -> None:
    assert safe_url(url) == shown


async def test_a_lease_is_held_by_one_session_until_it_closes_or_ends(postgres_url: str) -> None:
    first, second = Lease(postgres_url, "active"), Lease(postgres_url, "active")
    other = Lease(postgres_url, "another name")
    try:
        assert await first.take() and await first.take()  # taken, and still ours
        assert not await second.take() and await other.take()
        await first.close()
        assert await second.take() and not await first.take()
        with psycopg.connect(postgres_url, autocommit=True) as admin:  # its session ends
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
                f" AND classid = %s AND objid = {LEASE_KEY}::oid AND granted",
                (LEASE_CLASS, "active"),
            )
        assert not await second.check()
        assert await first.take()
    finally:
        for lease in (first, second, other):
            await lease.close()


async def test_a_lease_on_a_server_nobody_answers_is_unavailable(unused_port: int) -> None:
    lease = Lease(f"postgresql://postgres:pw@127.0.0.1:{unused_port}/test", "active", timeout=1)
    with pytest.raises(StorageUnavailable, match="postgres:\\*\\*\\*@"):
        await lease.take()
    assert not await lease.check()


async def test_a_database_of_the_first_schema_opens_with_its_alert_waiting(
    postgres_url: str,
) -> None:
    """A database made by migration 1 alone (before snoozes, buttons and digests) is migrated
    on opening: its rule and its waiting alert read as before, with nothing snoozed or used."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER)")
        conn.execute(MIGRATIONS[0])
        conn.execute("INSERT INTO schema_version VALUES (1)")
        conn.execute(
            "INSERT INTO chats (platform, chat_id, created_at) VALUES ('telegram', '42', %s)", (T0,)
        )
        conn.execute(
            "INSERT INTO rules (chat, text, created_at) VALUES (1, 'XAG above 50', %s)", (T0,)
        )
        conn.execute(
            "INSERT INTO outbox (rule, chat, payload, created_at) VALUES (1, 1, %s, %s)",
            (alert_to_json(alert()), T0),
        )
    async with PostgresStore.open(postgres_url) as store:
        assert await store.schema_version() == len(MIGRATIONS)
        [rule] = await store.rules()
        assert (rule.text, rule.snoozed_until) == ("XAG above 50", None)
        [row] = await store.pending()
        assert (row.alert, row.actions) == (alert(), frozenset())
        assert await store.outbox_row(row.id) == row
        assert await store.history(1) == [("pending", alert())]


async def test_processes_making_a_secret_at_once_agree(postgres_url: str) -> None:
    async with PostgresStore.open(postgres_url) as one, PostgresStore.open(postgres_url) as two:
        keys = await asyncio.gather(*(s.secret("actions") for s in [one, two] * 4))
        assert len(set(keys)) == 1


RATE = 28.5  # Telegram's 30/s at the adapter's headroom
INTERVAL = 1 / RATE
BURST = 1  # a grid has no burst: one slot more only where a window starts on a slot


def most_in_a_second(times: list[datetime]) -> int:
    """The most slot times inside any one-second window [t, t + 1 s)."""
    times = sorted(times)
    most, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= timedelta(seconds=1):
            start += 1
        most = max(most, end - start + 1)
    return most


async def test_processes_booking_send_slots_at_once_keep_the_rate(postgres_url: str) -> None:
    """Three processes (each its own connections) book slots of one budget at once, a few at
    a time as their sends queue up: over any second the grants stay within the rate plus the
    burst, and every slot is granted once. Counted on the slots granted, not timed."""
    async with (
        PostgresStore.open(postgres_url) as one,
        PostgresStore.open(postgres_url) as two,
        PostgresStore.open(postgres_url) as three,
    ):

        async def book(store: PostgresStore, seed: int) -> list[Slots]:
            rng = random.Random(seed)
            return [await store.take_slots("telegram", rng.randint(1, 5), INTERVAL)
                    for _ in range(40)]  # fmt: skip

        booked = await asyncio.gather(*(book(s, i) for i, s in enumerate([one, two, three])))
        other = await one.take_slots("discord", 1, 1 / 47.5)  # another budget: its own grid
    granted = [t for slots in booked for b in slots for t in b.times()]
    assert len(granted) == sum(b.count for slots in booked for b in slots) > 3 * 40
    assert len(set(granted)) == len(granted)
    assert most_in_a_second(granted) <= RATE + BURST
    assert other.wait <= 0  # not behind Telegram's bookings
    gaps = [b - a for a, b in itertools.pairwise(sorted(granted))]
    assert min(gaps) >= timedelta(seconds=INTERVAL) - timedelta(microseconds=2)  # rounding


async def test_a_dead_holder_does_not_keep_the_send_budget(postgres_url: str) -> None:
    """A process that dies after booking slots leaves only those unused; one that dies while
    booking (its transaction holding the budget's row) holds up nobody once its session ends."""
    async with PostgresStore.open(postgres_url) as alive:
        async with PostgresStore.open(postgres_url) as dying:
            taken = await dying.take_slots("telegram", 5, INTERVAL)
        after = await alive.take_slots("telegram", 1, INTERVAL)
        # now, or right after the dead one's slots: its death cost only the slots it booked
        next_one = timedelta(seconds=INTERVAL + 1e-5)
        assert after.wait <= 0 or after.first - taken.times()[-1] <= next_one
        stuck = psycopg.connect(postgres_url, autocommit=True)
        try:
            stuck.execute("BEGIN")
            stuck.execute("SELECT * FROM send_budgets WHERE name = 'telegram' FOR UPDATE")
            waiting = asyncio.create_task(alive.take_slots("telegram", 1, INTERVAL))
            await until(lambda: blocked_on_a_lock(postgres_url))
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (stuck.info.backend_pid,))
            slot = await asyncio.wait_for(waiting, 10)
        finally:
            with contextlib.suppress(psycopg.Error):
                stuck.close()
        # now, or the next slot on the grid: the dead session's lock cost nothing
        assert slot.wait <= 0 or slot.first - after.first <= next_one


def blocked_on_a_lock(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND query LIKE 'INSERT INTO send_budgets%%'"
        ).fetchone()
    return bool(row and row[0])


async def test_a_claimed_chat_is_one_stores_until_released(postgres_url: str) -> None:
    """Two processes claiming at once: each chat goes to one; a row queued for a chat while
    its holder sends the earlier ones waits for the holder, then goes alone."""
    async with PostgresStore.open(postgres_url) as one, PostgresStore.open(postgres_url) as two:
        a, b = await one.chat("telegram", "a"), await one.chat("telegram", "b")
        await one.commit_tick({}, [(None, a.id, alert(50.1)), (None, a.id, alert(50.2))])
        await one.commit_tick({}, [(None, b.id, alert(50.3))])
        first = await one.claim(limit=2)  # a's two rows: a is one's, b is free
        assert [r.alert.price for r in first] == [50.1, 50.2]
        [other] = await two.claim()
        assert other.alert.price == 50.3
        await one.commit_tick({}, [(None, a.id, alert(50.4)), (None, b.id, alert(50.5))])
        await two.mark_delivered(other.id, None)
        await two.release()
        assert [r.alert.price for r in await two.claim()] == [50.5]  # not a's new row
        for row in first:
            await one.mark_delivered(row.id, None)
        await one.release()
        assert [r.alert.price for r in await two.claim()] == [50.4, 50.5]  # a's first: gone
        await two.release()


async def test_a_store_whose_claims_session_ends_records_nothing_until_released(
    postgres_url: str,
) -> None:
    """The claims session is the fence: once it is gone (another process may hold its chats
    now) the store's marks are refused, so its loop stops after the row in flight."""
    async with PostgresStore.open(postgres_url) as one, PostgresStore.open(postgres_url) as two:
        a = await one.chat("telegram", "a")
        await one.commit_tick({}, [(None, a.id, alert(50.1)), (None, a.id, alert(50.2))])
        in_flight, later = await one.claim()
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
                " AND classid = hashtext(current_schema() || ':delivery')::oid AND granted"
            )
        assert [r.id for r in await two.claim()] == [in_flight.id, later.id]  # at once
        for _ in range(2):
            with pytest.raises(StorageUnavailable):
                await one.mark_delivered(in_flight.id, "m1")
        await two.mark_delivered(in_flight.id, "m2")
        await two.release()
        await one.release()
        await one.mark_delivered(later.id, "m3")  # no claims: the marks go through again
        assert await one.outbox_counts() == {"delivered": 2}
        assert await one.claim() == []


async def test_an_engine_whose_epoch_was_taken_by_another_commits_nothing(
    postgres_url: str,
) -> None:
    """Two stores take the engine in turn: the first one's ticks are refused from then on,
    states and alerts alike; the second's land, and so do writes that carry no epoch (a
    TradingView post, taken by every replica)."""
    async with PostgresStore.open(postgres_url) as one, PostgresStore.open(postgres_url) as two:
        chat = await one.chat("telegram", "42")
        rule = await one.add_rule(chat.id, "XAG above 50", "test", limit=10)
        state = RuleState(armed=False, last_fired=T0, fired_count=1)
        assert await one.take_engine() == 1
        assert await two.take_engine() == 2
        with pytest.raises(Fenced, match="the engine's epoch is 2, this tick's 1"):
            await one.commit_tick({rule: state}, [(rule, chat.id, alert())], epoch=1)
        assert [r.state for r in await two.rules()] == [None]
        assert await two.outbox_counts() == {}
        assert await two.commit_tick({rule: state}, [(rule, chat.id, alert())], epoch=2) == 1
        assert await one.commit_tick({}, [(None, chat.id, alert(51))]) == 1
        assert [r.state for r in await one.rules()] == [state]
        assert await one.outbox_counts() == {"pending": 2}


async def test_taking_the_engine_waits_for_a_tick_of_the_last_holder_being_committed(
    postgres_url: str,
) -> None:
    """A tick that has read its epoch holds the row until it commits: the next holder's epoch
    comes after it, so the next holder reads what that tick saved."""
    async with PostgresStore.open(postgres_url) as one, PostgresStore.open(postgres_url) as two:
        assert await one.take_engine() == 1
        with psycopg.connect(postgres_url) as tick:  # a tick between its check and its commit
            tick.execute("SELECT epoch FROM fences WHERE name = 'engine' FOR SHARE")
            taking = asyncio.ensure_future(two.take_engine())
            await until(lambda: waiting_on_a_lock(postgres_url), timeout=10)
            assert not taking.done()
            tick.commit()
        assert await taking == 2


def waiting_on_a_lock(url: str) -> bool:
    """Whether a session of this schema's database waits for a row lock (a lock not granted)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE NOT l.granted AND a.query LIKE '%INTO fences%'"
        ).fetchone()
    return bool(row and row[0])


async def test_a_listening_store_hears_rows_queued_by_another_and_listens_again_after_an_outage(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "storage.postgres")
    async with (
        Relay(postgres_url) as relay,
        PostgresStore.open(relay.url, timeout=0.5) as listening,
        PostgresStore.open(postgres_url) as queuing,
    ):
        chat = await queuing.chat("telegram", "42")
        woken = asyncio.Event()
        listening.on_queued(woken.set)
        await asyncio.wait_for(woken.wait(), timeout=10)  # it listens: once, for rows before
        for _ in range(2):
            woken.clear()
            await queuing.commit_tick({}, [(None, chat.id, alert())])
            await asyncio.wait_for(woken.wait(), timeout=10)
        await relay.cut()
        await until(lambda: "outbox listener: cannot listen" in caplog.text, timeout=20)
        woken.clear()
        await queuing.commit_tick({}, [(None, chat.id, alert())])  # nobody hears it
        await relay.restore()
        await asyncio.wait_for(woken.wait(), timeout=20)  # listening again: it wakes once
        woken.clear()
        await queuing.commit_tick({}, [(None, chat.id, alert())])
        await asyncio.wait_for(woken.wait(), timeout=10)
    assert caplog.text.count("outbox listener: cannot listen") == 1
    assert caplog.text.count("outbox listener: listening again") == 1
