"""Benchmark: the service as an installation runs it, with many rules (100k; `--rules N`).

The venue is the fake Binance (tests/fake_exchange.py) over HTTP on 127.0.0.1, read by the real
ccxt feed; the service, rule book and SQLite store (a temporary file, WAL, synchronous=FULL)
are the real ones. Everything priced here is synthetic: 32 made-up symbols
(`binance:SYN000/USDT`...) at a made-up 100, and level rules uniformly between 90 and 110 over
10k chats. A ticker task that wakes every 10 ms measures how long the event loop is held (the
bots' polling and heartbeats share that loop). Figures:

1. first start: load the rules, then the first tick, then the ticks until every rule has
   learned the market (the service takes `LEARN_PER_TICK` new rules a tick; every state is saved);
2. ticks: every symbol moves +0.4% per tick, which crosses about 1% of the rules;
3. running (scheduled polls each second, the timed re-read every 2 s): one rule added and then
   removed by this process's command layer (it sets `rules_changed`), and one added by another
   connection to the database (as the CLI writes, no event): time until the rule book has it;
4. restart, in a fresh process so its memory is the service's alone: load (every state stored
   now) and the first tick, and its RSS.

Run: .venv/bin/python -m bench.service [--rules 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fake_exchange import FakeExchange

from alerts.sanity import Limits
from feeds.catalogue import Catalogue
from feeds.ccxt_feed import CcxtFeed
from storage.db import Store
from tickerbell.market_data import MarketData
from tickerbell.service import Service

CHATS, TICKS, SYMBOLS = 10_000, 7, 32
SOURCE = "ccxt:binance"
CHUNK = 50_000  # rules imported per transaction in the setup


def symbol(i: int) -> str:
    return f"binance:SYN{i:03d}/USDT"


def set_prices(fake: FakeExchange, price: float) -> None:
    """Every synthetic symbol at the same made-up price, with a one-cent spread."""
    for i in range(SYMBOLS):
        fake.set_price(f"SYN{i:03d}USDT", price - 0.01, price + 0.01, last=price)


class Stalls:
    """A task that asks to wake every 10 ms: the longest it was kept waiting is how long the
    event loop was held by something else."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + 0.01
            await asyncio.sleep(0.01)
            self.worst = max(self.worst, loop.time() - due)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def take(self) -> float:
        """The longest hold since the last `take`, in ms."""
        worst, self.worst = self.worst, 0.0
        return worst * 1e3

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def make_service(store: Store, fake: FakeExchange, changed: asyncio.Event | None = None) -> Service:
    feed = CcxtFeed("binance", fake.ccxt_options(timeout_ms=5000))
    data = MarketData(Catalogue(), lambda source: feed, Limits(max_age=timedelta(minutes=10)))
    return Service(
        store, data, band=0.0025, poll_interval=lambda source: 1.0, rules_changed=changed
    )


def rss_mb() -> float:
    """This process's resident memory now, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def setup(store: Store, count: int) -> int:
    """CHATS chats and `count` synthetic level rules, imported in chunks; the console chat's id
    (where the running phase adds its rule)."""
    rng = random.Random(1)
    chats = await store.import_chats("telegram", [str(i) for i in range(CHATS)], "private")
    for first in range(0, count, CHUNK):
        rows = []
        for i in range(first, min(count, first + CHUNK)):
            side = "above" if i % 2 else "below"
            level = round(rng.uniform(90, 110), 2)
            rows.append(
                (chats[i % CHATS].id, f"{symbol(rng.randrange(SYMBOLS))} {side} {level}", "b")
            )
        await store.import_rules(rows)
    return (await store.chat("console", "console")).id


async def start_up(service: Service, stalls: Stalls, label: str) -> None:
    """Load the rules, then the first tick: how long each took and held the event loop."""
    stalls.take()
    start = time.perf_counter()
    await service.refresh_rules()
    loaded = time.perf_counter()
    await asyncio.sleep(0.05)  # the ticker task wakes and records a hold that just ended
    load_held = stalls.take()
    tick_start = time.perf_counter()
    await service.poll(SOURCE)
    ticked = time.perf_counter()
    await asyncio.sleep(0.05)
    tick_held = stalls.take()
    learning = f"{service.book.learning():,} rules still to learn the market"
    more = 0
    while service.book.learning():  # new rules learn the market over several ticks
        await service.poll(SOURCE)
        more += 1
    learned = time.perf_counter()
    await asyncio.sleep(0.05)
    if more:
        learning += (
            f", learned over {more} more ticks in {learned - ticked:.1f} s (event loop held up to"
            f" {stalls.take():,.0f} ms)"
        )
    print(
        f"{label}: load {loaded - start:.1f} s (event loop held up to {load_held:,.0f} ms),"
        f" first tick {ticked - tick_start:.1f} s (held up to {tick_held:,.0f} ms; {learning});"
        f" {len(service.book):,} rules in the book, RSS {rss_mb():,.0f} MB"
    )


async def ticks(service: Service, fake: FakeExchange, count: int) -> None:
    samples: list[dict[str, float]] = []
    for step in range(1, TICKS + 1):  # each +0.4% step crosses about 1% of the rules
        set_prices(fake, 100 + 0.4 * step)
        decided = service.stats.alerts_decided
        start = time.perf_counter()
        await service.poll(SOURCE)
        total = time.perf_counter() - start
        fired = service.stats.alerts_decided - decided
        samples.append({**service.stats.last_tick, "total": total, "fired": fired})
    fired = statistics.median(s["fired"] for s in samples)
    print(f"median of {TICKS} ticks, each firing about {fired:,.0f} rules ({fired / count:.1%}):")
    for name in ("fetch", "evaluate", "commit", "total"):
        values = sorted(s[name] for s in samples)
        median, worst = statistics.median(values) * 1e3, values[-1] * 1e3
        print(f"  {name:<9} {median:8.1f} ms   (max {worst:.1f})")


async def until(done: Callable[[], bool], limit: float = 600.0) -> float:
    """Seconds until `done()` holds, checked every millisecond."""
    start = time.perf_counter()
    while not done():
        if time.perf_counter() - start > limit:
            return float("inf")
        await asyncio.sleep(0.001)
    return time.perf_counter() - start


async def running(
    service: Service, store: Store, db: Path, chat: int, changed: asyncio.Event, stalls: Stalls
) -> None:
    """Rules added and removed while the service runs its scheduled polls."""
    stalls.take()
    await service.start()
    await asyncio.sleep(3)  # a few scheduled polls and timed re-reads with nothing changed
    print(f"running, nothing changed (3 s): event loop held up to {stalls.take():,.0f} ms")
    book = service.book.rules

    async def change(label: str, write: Callable[[], Awaitable[int]], gone: bool) -> None:
        stalls.take()
        rule = await write()
        waited = await until(lambda: (rule in book) != gone)
        await asyncio.sleep(0.5)  # let a re-read still running finish
        print(f"  {label}: applied to the book after {waited * 1e3:,.0f} ms;"
              f" event loop held up to {stalls.take():,.0f} ms")  # fmt: skip

    async def add_here() -> int:
        rule = await store.add_rule(chat, f"{symbol(0)} above 150", "bench", limit=1000)
        changed.set()
        return rule

    added: list[int] = []

    async def remove_here() -> int:
        await store.remove_rule(chat, added[0])
        changed.set()
        return added[0]

    async def add_elsewhere() -> int:
        async with Store.open(db) as other:
            return await other.add_rule(chat, f"{symbol(1)} below 50", "cli", limit=1000)

    print("running, one rule at a time:")
    await change("added by a command (rules_changed)", add_here, gone=False)
    added.append(max(book))
    await change("removed by a command (rules_changed)", remove_here, gone=True)
    await change("added by another connection (timed re-read)", add_elsewhere, gone=False)
    await service.stop()


async def restart(db: Path, count: int) -> None:
    """The restart figures, in this fresh process."""
    async with FakeExchange() as fake, Store.open(db) as store:
        set_prices(fake, 100 + 0.4 * TICKS)
        stalls = Stalls()
        stalls.start()
        service = make_service(store, fake)
        await start_up(service, stalls, f"restart ({count:,} rules, every state stored)")
        await stalls.stop()
        await service.data.close_feeds()
    print(f"restart process peak RSS: {peak_mb():,.0f} MB")


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        async with FakeExchange() as fake, Store.open(db) as store:
            start = time.perf_counter()
            chat = await setup(store, count)
            print(f"setup: {CHATS:,} chats, {count:,} synthetic rules in "
                  f"{time.perf_counter() - start:.1f} s")  # fmt: skip
            set_prices(fake, 100.0)
            stalls = Stalls()
            stalls.start()
            changed = asyncio.Event()
            service = make_service(store, fake, changed)
            await start_up(service, stalls, "first start")
            await ticks(service, fake, count)
            await running(service, store, db, chat, changed, stalls)
            await stalls.stop()
            await service.data.close_feeds()
            print(f"outbox: {await store.outbox_counts()}")
            print(f"this process's peak RSS (setup included): {peak_mb():,.0f} MB")
            del service
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.service", "--rules", str(count), "--restart", str(db)
        )
        await child.wait()
    print(f"python {sys.version.split()[0]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=100_000)
    parser.add_argument("--restart", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.restart is not None:
        asyncio.run(restart(args.restart, args.rules))
    else:
        asyncio.run(main(args.rules))
