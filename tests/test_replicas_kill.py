"""Three replicas on one PostgreSQL schema, killed (`kill -9`) at random moments ten times.

Each replica is a real process (tests/support/run_replica.py, i.e. `tickerbell.app.run`) with
the fake Binance and the fake Telegram Bot API on the far side. 200 Telegram chats each have
`BTC crosses 85000`; the venue's price moves across the level every FLIP seconds (each time to
a price of its own, so every alert names its crossing). A random replica is killed at a random
moment, ten times, and started again at once (under a new name, so the venue tells its polls
apart); each kill waits until two replicas at least have started (tried their leases), so
that one can take over, then a random while: the third may still be starting. Then, once
nothing waits in the outbox:

- every decided alert (outbox row) was delivered, and reached its chat, in the chat's order;
- each duplicate in a chat is explained by a kill of its own (at most the message in flight
  per chat and kill);
- the venue was never polled by two replicas in turn: each replica's polls form one unbroken
  run (no replica polls again once another has);

and it prints the engine's takeover times (from killing its holder to the next replica's
first poll, p50 and p95) and the duplicates. The kills follow a seeded random schedule (the
seed is printed), so a failure can be run again.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import os
import random
import re
import signal
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from fake_exchange import FakeExchange
from fake_telegram import FakeTelegram
from support.waiting import until

from storage.db import alert_from_json
from storage.postgres import LEASE_CLASS, LEASE_KEY, PostgresStore
from tickerbell.app import ENGINE

pytestmark = pytest.mark.slow

TOKEN = "123456789:AAF-fake_SECRET_kill_token"
CHATS = [10_000 + n for n in range(200)]
RULE = "BTC crosses 85000"
POLL = "ticker/bookTicker"
POLL_SECONDS = 0.5
FLIP = 4.0  # seconds between crossings: 50 alerts a second
KILLS = 10
ARRIVAL_SLACK = 5.0  # see duplicates_by_kill
RUNNER = Path(__file__).parent / "support" / "run_replica.py"
NOW = re.compile(r"\(now ([\d,.]+)\)")


@dataclass
class Replica:
    name: str
    process: asyncio.subprocess.Process
    log: Path

    def started(self) -> bool:
        """Whether it has started every part and tried the engine's lease."""
        text = self.log.read_text(errors="replace")
        return "engine: running on this replica" in text or "engine runs on another" in text


class Replicas:
    """The replica processes, each started under a new name (r1, r2, ...)."""

    def __init__(self, url: str, env: dict[str, str], logs: Path, exchange: FakeExchange) -> None:
        self.url = url
        self.env = env
        self.logs = logs
        self.exchange = exchange
        self.live: list[Replica] = []
        self.started = 0

    async def start(self) -> Replica:
        self.started += 1
        name = f"r{self.started}"
        env = {
            **self.env,
            "TICKERBELL_EXCHANGE_OPTIONS": json.dumps(
                {"binance": self.exchange.ccxt_options(client=name)}
            ),
            "TICKERBELL_DATABASE_URL": f"{self.url}&application_name={name}",  # in pg_stat_activity
        }
        path = self.logs / f"{name}.log"
        with path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable, str(RUNNER), str(POLL_SECONDS), env=env, stdout=log, stderr=log
            )
        replica = Replica(name, process, path)
        self.live.append(replica)
        return replica

    async def kill(self, replica: Replica) -> None:
        self.live.remove(replica)
        replica.process.send_signal(signal.SIGKILL)
        await replica.process.wait()

    async def stop_all(self) -> None:
        for replica in self.live:
            replica.process.send_signal(signal.SIGTERM)
        codes = [await asyncio.wait_for(r.process.wait(), 30) for r in self.live]
        self.live = []
        assert codes == [0] * len(codes)


async def prepare(url: str) -> None:
    """The 200 chats with their rule, alerts without charts (text only: quick to send)."""
    async with PostgresStore.open(url) as store:
        for chat_id in CHATS:
            chat = await store.chat("telegram", str(chat_id))
            await store.set_charts(chat.id, False)
            await store.add_rule(chat.id, RULE, "test", limit=50)


def outbox(url: str) -> dict[int, list[tuple[str, int]]]:
    """Each chat's outbox rows in order: (status, the alert's price)."""
    rows: dict[int, list[tuple[str, int]]] = {}
    with psycopg.connect(url) as conn:
        found = conn.execute(
            "SELECT c.chat_id, o.status, o.payload FROM outbox o JOIN chats c ON c.id = o.chat"
            " ORDER BY o.id"
        ).fetchall()
    for chat_id, status, payload in found:
        rows.setdefault(int(chat_id), []).append((status, round(alert_from_json(payload).price)))
    return rows


def engine_holder(url: str) -> str | None:
    """The name of the replica holding the engine's lease now, if any."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.classid = %s"
            f" AND l.objid = {LEASE_KEY}::oid AND l.granted",
            (LEASE_CLASS, ENGINE),
        ).fetchone()
    return str(row[0]) if row else None


def pending(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM outbox WHERE status = 'pending'").fetchone()
    return int(row[0]) if row else 0


def stuck(url: str) -> str:
    """What the pending rows say: how many, their attempts, errors and when next due."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT count(*), max(attempts), max(next_attempt_at) - now(),"
            " array_agg(DISTINCT last_error) FROM outbox WHERE status = 'pending'"
        ).fetchone()
        held = conn.execute(
            "SELECT a.application_name, a.state, a.wait_event, now() - a.state_change,"
            " left(a.query, 60), count(*) FROM pg_locks l JOIN pg_stat_activity a"
            " ON a.pid = l.pid WHERE l.locktype = 'advisory' GROUP BY 1, 2, 3, 4, 5"
        ).fetchall()
    return f"{rows}; advisory locks by session: {held}"


def told(telegram: FakeTelegram, chat_id: int) -> list[int]:
    """The prices of the alerts a chat received, in order."""
    prices = []
    for text in telegram.texts(chat_id):
        found = NOW.search(text)
        if found:
            prices.append(round(float(found.group(1).replace(",", ""))))
    return prices


def told_at(telegram: FakeTelegram, chat_id: int) -> list[tuple[float, int]]:
    """When each alert reached a chat (the fake's clock) and its price, in order."""
    out = []
    for message in telegram.messages:
        found = NOW.search(message.text) if message.chat_id == chat_id else None
        if found:
            out.append((message.at, round(float(found.group(1).replace(",", "")))))
    return out


def duplicates_by_kill(told: list[tuple[float, int]], kills: list[float]) -> Counter[int]:
    """Which kill (by its index) explains each duplicate in a chat, no kill used twice: an
    alert told again at `t2`, last told at `t1`, is explained by a kill between them. A kill
    may come up to ARRIVAL_SLACK seconds before `t1`: the fake records a message when this
    process's loop reads it, which may be after a kill that this loop itself made. Matched as
    intervals to points (duplicates by `t2`, each the earliest free kill it may take: the
    matching that explains the most); one no kill explains fails."""
    last: dict[int, float] = {}
    spans: list[tuple[float, float, int]] = []  # (t2, t1, price) of each duplicate
    for at, price in told:
        if price in last:
            spans.append((at, last[price], price))
        last[price] = at
    by_kill: Counter[int] = Counter()
    for t2, t1, price in sorted(spans):
        k = bisect.bisect_left(kills, t1 - ARRIVAL_SLACK)
        while k < len(kills) and kills[k] <= t2 and by_kill[k]:
            k += 1
        assert k < len(kills) and kills[k] <= t2, f"{price} told again with no kill to explain it"
        by_kill[k] += 1
    return by_kill


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def test_three_replicas_killed_ten_times_deliver_every_alert(
    tmp_path: Path, postgres_url: str
) -> None:
    seed = int(os.environ.get("KILL_TEST_SEED", random.randrange(10**6)))
    print(f"\nkill schedule seed {seed} (KILL_TEST_SEED={seed} repeats it)")
    rng = random.Random(seed)
    await prepare(postgres_url)
    async with FakeTelegram(TOKEN, poll_cap=0.5) as telegram, FakeExchange() as exchange:
        exchange.set_price("BTCUSDT", 86000.0, 86000.0)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(sys.path),
            "TICKERBELL_HOME": str(tmp_path),
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE_URL": telegram.base_url,
            "TELEGRAM_OVERALL_PER_SECOND": "500",  # the fake enforces no limit: go fast
            "TELEGRAM_CHAT_PER_SECOND": "20",
            "TICKERBELL_VENUE_MODE": json.dumps({"binance": "poll"}),
        }
        replicas = Replicas(postgres_url, env, tmp_path, exchange)
        try:
            for _ in range(3):
                await replicas.start()
            polls = lambda: [r for r in exchange.requests if r.path.endswith(POLL)]  # noqa: E731
            await until(lambda: polls(), timeout=60)

            async def move() -> None:
                """Cross the level every FLIP seconds, each time to a price of its own."""
                for flip in range(1, 10**6):
                    await asyncio.sleep(FLIP)  # the venue's own pace, not a wait for us
                    price = 84000.0 - flip if flip % 2 else 86000.0 + flip
                    exchange.set_price("BTCUSDT", price, price)

            mover = asyncio.create_task(move())
            kills: list[tuple[float, str, bool]] = []  # when, whom, whether it held the engine
            killed_at: list[float] = []  # when, on the fake Bot API's clock (perf_counter)
            for _ in range(KILLS):
                await until(lambda: sum(r.started() for r in replicas.live) >= 2, timeout=90)
                await asyncio.sleep(rng.uniform(0.5, 2.5))  # a random moment: the test's chaos
                victim = rng.choice(replicas.live)
                holder = engine_holder(postgres_url) == victim.name
                kills.append((time.monotonic(), victim.name, holder))
                killed_at.append(time.perf_counter())
                await replicas.kill(victim)
                await replicas.start()
            await asyncio.sleep(FLIP)  # one more crossing after the last kill
            mover.cancel()
            await asyncio.gather(mover, return_exceptions=True)
            try:
                await until(lambda: pending(postgres_url) == 0, timeout=90)
            except AssertionError:
                last = telegram.messages[-1].at if telegram.messages else None
                raise AssertionError(
                    f"rows still pending: {stuck(postgres_url)}; {len(telegram.messages)} "
                    f"messages, the last {time.perf_counter() - last if last else '-'} s ago"
                ) from None
        finally:
            await replicas.stop_all()

    rows = outbox(postgres_url)
    assert sum(len(r) for r in rows.values()) >= len(CHATS)  # alerts were decided at all
    duplicates: Counter[int] = Counter()
    for chat_id in CHATS:
        decided = [price for _, price in rows.get(chat_id, [])]
        assert {status for status, _ in rows.get(chat_id, [])} <= {"delivered"}, chat_id
        received = told(telegram, chat_id)
        first_seen = list(dict.fromkeys(received))
        assert first_seen == decided, f"chat {chat_id}: every alert, once at least, in order"
        duplicates[chat_id] = len(received) - len(first_seen)
        duplicates_by_kill(told_at(telegram, chat_id), killed_at)  # each from a kill of its own

    runs = [r.client for r in polls()]
    turns = [name for i, name in enumerate(runs) if i == 0 or runs[i - 1] != name]
    assert len(turns) == len(set(turns)), f"polled by two replicas in turn: {turns}"

    takeovers = []
    for killed_at, name, holder in kills:
        if holder:
            after = [r.at for r in polls() if r.at > killed_at and r.client != name]
            takeovers.append(after[0] - killed_at)
    decided_total = sum(len(r) for r in rows.values())
    print(
        f"{decided_total} alerts decided and delivered to {len(CHATS)} chats; {KILLS} kills "
        f"({len(takeovers)} of the engine's holder); duplicates: {sum(duplicates.values())} "
        f"in {sum(1 for d in duplicates.values() if d)} chats, at most "
        f"{max(duplicates.values())} in one"
    )
    if takeovers:
        print(
            f"engine takeover after kill -9: p50 {statistics.median(takeovers):.2f} s, "
            f"p95 {percentile(takeovers, 0.95):.2f} s (from the kill to the next replica's "
            "first poll)"
        )
    print(f"the venue was polled by {len(turns)} replicas in turn: {' -> '.join(turns)}")
