"""Benchmark: alerts fanned out to N Telegram chats, as production delivers them.

Real: the outbox in SQLite (a temporary database, WAL, synchronous=FULL), the Delivery worker
draining it, and the TelegramBot adapter's `send` (PTB, httpx, its send pacing). The far side is
tests/fake_telegram.py over HTTP on 127.0.0.1, enforcing Telegram's flood limits (30 msg/s per
bot, 1/s per private chat, 20/min per group) scaled up by a factor so the run takes seconds; the
bot is configured with the same scaled limits. One alert is committed to the outbox for every
chat in one transaction (the decision), then delivery is woken.

The default factor is 5 (150 msg/s): the fake and the bot share one process and one core,
and near 500 msg/s that core, not the bot's pacing, sets the pace.

Two workloads. By default one alert (text only) goes to every chat. With `--rules N`, N chats
each hold one distinct rule (distinct levels over a few symbols) and all of them fire in one
tick, as an installation's busy minute looks; `--charts` then delivers each with its chart,
drawn from a synthetic day of 10-second ticks and 60 synthetic daily bars per symbol (made-up
prices), as the app wires it.

Prints the achieved send rate as a fraction of the scaled overall limit, the 429s the fake
answered (photos and texts alike), messages lost, and the time from the decision (commit) to
each send returning; with charts also the renders, the alerts that waited for their chart and
the longest wait, and the peak memory (this process, and its chart workers: a spawned worker
re-imports this script's modules, the Telegram stack included, so it weighs more here than in
the app, whose entry point is light; bench.charts measures a worker as the app has it).
`--direct` skips the Delivery worker and calls `send` for every chat at once, to show what
the adapter alone sustains (the worker sends one row at a time).

`--replicas N --database-url URL` delivers on PostgreSQL (a throwaway schema there, dropped
after) with N replica processes, each with its own store, TelegramBot and Delivery loop, all
sending for one bot to the one fake (in this process): the bot's overall rate is shared
through the database (bot.budget), which the figures show against the limit the fake
enforces; `--local-pacing` lets each replica pace itself alone instead, as before the shared
budget; `--in-process` runs the replicas as tasks of this process (on a machine with few
cores, processes starved of CPU send late and arrive bunched, which no pacing can undo).
The replicas share the chats as delivery does, each claiming the chats it sends to
(storage `claim`); a round claims up to `--batch` rows (500), so with fewer one replica may
take nearly all of them in its first round (`--batch 25` spreads them). Also printed: slot
bookings (database round trips) per send.
Run: .venv/bin/python -m bench.fanout [--chats 2000] [--scale 20] [--direct]
     .venv/bin/python -m bench.fanout --rules 1000 --charts --scale 1   (real limits)
     .venv/bin/python -m bench.fanout --replicas 3 --batch 25 --scale 1 --chats 600 \
         --database-url postgresql://...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alerts import rules
from alerts.indicators import Market
from alerts.models import Alert, Candle, Direction, Quote
from alerts.sanity import Limits as QuoteLimits
from bot.actions import Ref
from bot.charts import AlertCharts, ChartCache, RenderPool
from bot.commands import Commands
from bot.replies import Reply
from bot.telegram.adapter import TelegramBot
from bot.telegram.pacing import Rates
from feeds.base import FeedHealth
from feeds.catalogue import Catalogue
from storage.api import Slots
from storage.db import Chat, Store
from storage.postgres import PostgresStore
from tickerbell.delivery import Delivery
from tickerbell.market_data import MarketData

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fake_telegram import FakeTelegram, Limits
from support.postgres import throwaway_schema

TOKEN = "123456789:AAF-bench_token"
FIRST_CHAT = 100_000_000
NOW = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
ALERT = Alert(
    rule_text="XAU up 2% 1d",
    rule=rules.parse("XAU up 2% 1d"),
    direction=Direction.UP,
    price=4110.0,
    reference=4029.4,
    observed=2.0,
    time=NOW,
)  # synthetic figures
PRICES = {"XAU": 4110.0, "XAG": 50.5, "BTC": 84_000.0, "ETH": 3_050.0}  # synthetic
TICK_SECONDS = 10  # the default crypto poll interval: a day of ticks is what a chart draws


class NoFeed:
    """The bench sends only; no command asks for a price."""

    name = "none"

    def __init__(self) -> None:
        self.health = FeedHealth()

    async def quotes(self, symbols: list[str]) -> dict[str, Quote]:
        raise AssertionError("no prices in this bench")

    async def candles(self, symbol: str, timeframe: str, since: datetime) -> list[Candle]:
        raise AssertionError("no prices in this bench")

    async def close(self) -> None:
        return None


class Timed:
    """The adapter as delivery sees it, noting when each send returned."""

    def __init__(self, bot: TelegramBot) -> None:
        self.bot = bot
        self.name = bot.name
        self.returned: list[float] = []
        self.durations: list[float] = []

    async def send(
        self, chat: Chat, alert: Alert, image: bytes | None = None, ref: Ref | None = None
    ) -> str | None:
        started = time.perf_counter()
        message_id = await self.bot.send(chat, alert, image, ref)
        self.returned.append(time.perf_counter())
        self.durations.append(self.returned[-1] - started)
        return message_id

    async def post(self, chat: Chat, reply: Reply) -> str | None:
        return await self.bot.post(chat, reply)

    async def close(self) -> None:
        await self.bot.close()


class Replica(PostgresStore):
    """One replica's store, counting its slot bookings."""

    bookings = 0

    async def take_slots(self, name: str, count: int, interval: float) -> Slots:
        self.bookings += 1
        return await super().take_slots(name, count, interval)


def distinct_alerts(count: int) -> list[Alert]:
    """`count` alerts of distinct rules (levels just under the price) over a few symbols."""
    symbols = list(PRICES)
    alerts = []
    for i in range(count):
        symbol = symbols[i % len(symbols)]
        price = PRICES[symbol]
        level = round(price * (1 - 0.00001 * (i // len(symbols) + 1)), 4)
        rule = rules.parse(f"{symbol} above {level}")
        text = rules.format(rule)
        alerts.append(Alert(text, rule, Direction.UP, price, level, price, NOW))
    return alerts


def synthetic_market() -> Market:
    """A day of 10-second ticks and 60 daily bars per symbol: a random walk (made-up prices)."""
    market = Market()
    rng = random.Random(7)
    for symbol, end in PRICES.items():
        steps = 24 * 3600 // TICK_SECONDS
        path, price = [], end
        for _ in range(steps):
            path.append(price)
            price *= 1 + rng.gauss(0, 0.0004)
        path.reverse()
        start = NOW - timedelta(seconds=TICK_SECONDS * steps)
        market.restore(
            [Quote(symbol, p, start + timedelta(seconds=TICK_SECONDS * (i + 1)))
             for i, p in enumerate(path)]
        )  # fmt: skip
        day0 = NOW.date() - timedelta(days=60)
        market.add_candles(
            symbol,
            [Candle(day0 + timedelta(days=d), end * 0.99, end * 1.01, end * 0.98, end)
             for d in range(60)],
        )  # fmt: skip
    return market


class Memory:
    """Peak resident memory of this process and of its children (chart workers), sampled."""

    def __init__(self) -> None:
        self.peak_self = 0
        self.peak_children = 0

    async def sample(self) -> None:
        while True:
            self.peak_self = max(self.peak_self, _rss(os.getpid()))
            self.peak_children = max(self.peak_children, sum(map(_rss, _children())))
            await asyncio.sleep(0.25)


def _rss(pid: int) -> int:
    """Resident set size in kB (0 for a process that is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children() -> list[int]:
    me = str(os.getpid())
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if stat.read().rsplit(")", 1)[1].split()[1] == me:
                        found.append(int(entry))
            except OSError:
                continue
    return found


async def main(
    chats: int,
    scale: float,
    direct: bool,
    interval: float,
    distinct: int,
    charts: bool,
    workers: int,
    chart_wait: float,
) -> None:
    limits = Limits().scaled(scale)
    rates = Rates(limits.overall_per_second, limits.chat_per_second, limits.group_per_minute)
    count = distinct or chats
    alerts = distinct_alerts(count) if distinct else [ALERT] * count
    memory = Memory()
    sampler = asyncio.create_task(memory.sample())
    pool = RenderPool(workers)
    cache = ChartCache(pool)
    if charts:  # as the app does at start when a chat platform is configured; an
        # installation's workers are warm long before a tick, so the bench waits for them too
        await asyncio.gather(*(asyncio.wrap_future(f) for f in pool.start()))
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            FakeTelegram(TOKEN, limits=limits) as fake,
            Store.open(Path(tmp) / "fanout.db") as store,
        ):
            ids = [str(FIRST_CHAT + i) for i in range(count)]
            subscribed = await store.import_chats("telegram", ids, "private")
            for chat in subscribed:
                await store.subscribe(chat.id, "XAU")
                if not charts:
                    await store.set_charts(chat.id, False)
            data = MarketData(
                Catalogue(), lambda source: NoFeed(), QuoteLimits(max_age=timedelta(minutes=10))
            )
            bot = TelegramBot(
                token=TOKEN,
                base_url=fake.base_url,
                commands=Commands(store, data),
                store=store,
                rates=rates,
            )
            timed = Timed(bot)
            delivery = Delivery(
                store,
                {timed.name: timed},
                interval=interval,
                charts=AlertCharts(synthetic_market(), cache) if charts else None,
                chart_wait=chart_wait,
            )
            await bot.start()
            worker = None if direct else asyncio.create_task(delivery.run())
            try:
                await store.commit_tick(
                    {}, [(None, chat.id, a) for chat, a in zip(subscribed, alerts, strict=True)]
                )
                decided = time.perf_counter()
                if direct:
                    await asyncio.gather(*(timed.send(chat, ALERT) for chat in subscribed))
                else:
                    delivery.wake()
                    deadline = decided + 1800
                    while len(timed.returned) < count and time.perf_counter() < deadline:
                        await asyncio.sleep(0.05)
            finally:
                delivery.stop()
                if worker is not None:
                    await worker
                await bot.close()
            counts = await store.outbox_counts()
    await pool.close()
    sampler.cancel()
    what = f"{count} distinct rules firing in one tick" if distinct else "one alert"
    how = "send() for every chat at once" if direct else f"Delivery (pause {interval:g} s)"
    print(f"fan-out of {what} to {count} private chats via {how}, limits x{scale:g}, "
          f"charts {'on' if charts else 'off'}")  # fmt: skip
    report(count, limits, fake, timed.returned, timed.durations, decided, counts)
    if charts:
        waits = delivery.chart_waits
        print(f"  chart renders: {cache.renders} in {workers} worker process(es) "
              f"(cache hits {cache.hits})")  # fmt: skip
        print(f"  alerts that waited for their chart: {waits.waited} of {count}, longest "
              f"{waits.longest:.2f} s; text alone past {chart_wait:g} s: {waits.late}")  # fmt: skip
    print(f"  peak RSS: this process {max(memory.peak_self, _maxrss()) / 1024:.0f} MB, "
          f"chart workers {memory.peak_children / 1024:.0f} MB")  # fmt: skip


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@dataclass
class Cues:
    """A replica's cues: it sets `ready` once connected, delivers from `go` until `stop`."""

    ready: asyncio.Event = field(default_factory=asyncio.Event)
    go: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)


async def replicated(
    url: str,
    replicas: int,
    chats: int,
    scale: float,
    interval: float,
    batch: int,
    shared: bool,
    in_process: bool,
) -> None:
    """One alert to every chat, delivered by `replicas` replicas on PostgreSQL at once: each a
    process of its own, or (`in_process`) a task of this one."""
    limits = Limits().scaled(scale)
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # a replica's poll cut at stop
    with throwaway_schema(url) as schema_url:
        async with (
            FakeTelegram(TOKEN, limits=limits) as fake,
            PostgresStore.open(schema_url) as store,
        ):
            ids = [str(FIRST_CHAT + i) for i in range(chats)]
            subscribed = await store.import_chats("telegram", ids, "private")
            how = (schema_url, replicas, fake.base_url, scale, interval, batch, shared)
            run = replica if in_process else _as_process
            cues = [Cues() for _ in range(replicas)]
            tasks = [asyncio.create_task(run(*how, i, c)) for i, c in enumerate(cues)]
            try:
                await asyncio.wait_for(asyncio.gather(*(c.ready.wait() for c in cues)), 120)
                await store.commit_tick({}, [(None, chat.id, ALERT) for chat in subscribed])
                decided = time.perf_counter()  # CLOCK_MONOTONIC: the processes' clock too
                for c in cues:
                    c.go.set()
                deadline = decided + 1800
                while len(fake.messages) < chats:
                    assert time.perf_counter() < deadline, "delivery did not finish"
                    await asyncio.sleep(0.05)
                for c in cues:
                    c.stop.set()
                results = await asyncio.gather(*tasks)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            counts = await store.outbox_counts()
    pacing = "shared through PostgreSQL" if shared else "each replica alone"
    kind = "tasks of one process" if in_process else "processes"
    print(f"fan-out of one alert to {chats} private chats by {replicas} replica {kind} on "
          f"PostgreSQL, overall rate {pacing}, limits x{scale:g}")  # fmt: skip
    returned = [at for r in results for at in r["returned"]]
    durations = [d for r in results for d in r["durations"]]
    report(chats, limits, fake, returned, durations, decided, counts)
    print(f"  sent per replica: {[len(r['returned']) for r in results]}")
    bookings = sum(r["bookings"] for r in results)
    if shared:
        each = chats / max(bookings, 1)
        print(f"  slot bookings (round trips): {bookings}, {each:.1f} sends each")


async def _as_process(
    url: str,
    replicas: int,
    base_url: str,
    scale: float,
    interval: float,
    batch: int,
    shared: bool,
    mine: int,
    cues: Cues,
) -> dict[str, Any]:
    """A replica in a process of its own (`worker`), cued over its stdin and stdout."""
    options = ["--replicas", str(replicas), "--database-url", url, "--base-url", base_url]
    options += ["--scale", str(scale), "--interval", str(interval), "--batch", str(batch)]
    options += [] if shared else ["--local-pacing"]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.fanout", "--worker", str(mine), *options,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    try:
        assert (await process.stdout.readline()).strip() == b"ready"
        cues.ready.set()
        for cue, word in ((cues.go, b"go\n"), (cues.stop, b"stop\n")):
            await cue.wait()
            process.stdin.write(word)
        figures: dict[str, Any] = json.loads(await process.stdout.readline())
        return figures
    except BaseException:
        process.kill()
        raise
    finally:
        await process.wait()


async def replica(
    url: str,
    replicas: int,
    base_url: str,
    scale: float,
    interval: float,
    batch: int,
    shared: bool,
    mine: int,
    cues: Cues,
) -> dict[str, Any]:
    """One replica: its store, bot and Delivery loop, for its share of the chats; its
    figures."""
    limits = Limits().scaled(scale)
    rates = Rates(limits.overall_per_second, limits.chat_per_second, limits.group_per_minute)
    async with Replica.open(url) as store:
        data = MarketData(
            Catalogue(), lambda source: NoFeed(), QuoteLimits(max_age=timedelta(minutes=10))
        )
        bot = TelegramBot(
            token=TOKEN,
            base_url=base_url,
            commands=Commands(store, data),
            store=store,
            rates=rates,
            budgets=store if shared else None,
        )
        timed = Timed(bot)
        delivery = Delivery(store, {bot.name: timed}, interval=interval, batch=batch)
        try:
            await bot.start()
            while not bot.listening():
                await asyncio.sleep(0.05)
            cues.ready.set()
            await cues.go.wait()
            running = asyncio.create_task(delivery.run())
            delivery.wake()
            await cues.stop.wait()
            delivery.stop()
            await running
        finally:
            await bot.close()
    return {"returned": timed.returned, "durations": timed.durations, "bookings": store.bookings}


async def worker(
    url: str,
    replicas: int,
    base_url: str,
    scale: float,
    interval: float,
    batch: int,
    shared: bool,
    mine: int,
) -> None:
    """A replica process: says "ready" once connected, delivers from "go" until "stop" (lines
    on stdin), then prints its figures (JSON)."""
    lines = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(lines), sys.stdin)
    cues = Cues()
    running = asyncio.create_task(
        replica(url, replicas, base_url, scale, interval, batch, shared, mine, cues)
    )
    await cues.ready.wait()
    print("ready", flush=True)
    for cue in (cues.go, cues.stop):
        await lines.readline()
        cue.set()
    print(json.dumps(await running), flush=True)


def report(
    chats: int,
    limits: Limits,
    fake: FakeTelegram,
    returned: list[float],
    durations: list[float],
    decided: float,
    counts: dict[str, int],
) -> None:
    """Print the figures."""
    received = Counter(m.chat_id for m in fake.messages)
    lost = sum(1 for i in range(chats) if received[FIRST_CHAT + i] == 0)
    duplicated = sum(n - 1 for n in received.values() if n > 1)
    arrivals = sorted(m.at for m in fake.messages)
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
    rate = (len(arrivals) - 1) / span if span else 0.0
    latencies = sorted(t - decided for t in returned)
    p95 = statistics.quantiles(latencies, n=20)[-1] if len(latencies) > 1 else float("nan")
    kinds = Counter(m.method for m in fake.messages)
    print(
        f"  limits enforced: {limits.overall_per_second:g} msg/s per bot, "
        f"{limits.chat_per_second:g}/s per private chat, {limits.group_per_minute:g}/min per group"
    )
    print(
        f"  achieved {rate:.1f} msg/s = {rate / limits.overall_per_second:.2f} of the limit "
        f"(first to last arrival, {span:.2f} s)"
    )
    print(f"  429 answers: {fake.rate_limited}; accepted: {dict(kinds)}")
    print(f"  lost: {lost}, duplicated: {duplicated}, outbox: {counts}")
    if durations:
        print(f"  one send() call: mean {statistics.mean(durations) * 1000:.2f} ms")
    if latencies:
        print(
            f"  decision -> send returned: p50 {statistics.median(latencies):.2f} s, "
            f"p95 {p95:.2f} s, max {latencies[-1]:.2f} s"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=2000, help="subscribed chats (2000)")
    parser.add_argument("--scale", type=float, default=5, help="limits multiplied by (5)")
    parser.add_argument("--direct", action="store_true", help="bypass the Delivery worker")
    parser.add_argument(
        "--interval", type=float, default=1.0, help="Delivery's pause between rounds (1.0)"
    )
    parser.add_argument(
        "--rules", type=int, default=0, help="N chats with one distinct rule each, all firing"
    )
    parser.add_argument("--charts", action="store_true", help="deliver with charts")
    parser.add_argument("--workers", type=int, default=1, help="chart worker processes (1)")
    parser.add_argument("--chart-wait", type=float, default=2.0, help="longest chart wait (2 s)")
    parser.add_argument(
        "--replicas", type=int, default=0, help="N replicas on PostgreSQL (--database-url)"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("TICKERBELL_TEST_DATABASE_URL", ""),
        help="PostgreSQL for --replicas (default TICKERBELL_TEST_DATABASE_URL)",
    )
    parser.add_argument(
        "--local-pacing", action="store_true", help="with --replicas: each replica paces alone"
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="replicas as tasks of one process",
    )
    parser.add_argument(
        "--batch", type=int, default=500, help="with --replicas: rows a delivery round takes (500)"
    )
    parser.add_argument("--worker", type=int, default=-1, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker >= 0:  # one replica process of --replicas
        asyncio.run(
            worker(
                args.database_url,
                args.replicas,
                args.base_url,
                args.scale,
                args.interval,
                args.batch,
                not args.local_pacing,
                args.worker,
            )
        )
        sys.exit(0)
    if args.replicas:
        if not args.database_url:
            parser.error("--replicas needs --database-url postgresql://...")
        if args.direct or args.rules or args.charts:
            parser.error("--replicas delivers one text alert to every chat")
        asyncio.run(
            replicated(
                args.database_url,
                args.replicas,
                args.chats,
                args.scale,
                args.interval,
                args.batch,
                not args.local_pacing,
                args.in_process,
            )
        )
        sys.exit(0)
    asyncio.run(
        main(
            args.chats,
            args.scale,
            args.direct,
            args.interval,
            args.rules,
            args.charts,
            args.workers,
            args.chart_wait,
        )
    )
