"""Benchmark: from a price crossing a level at the venue to the alert at the chat platform.

Latency (the default): the whole bot, `tickerbell.app.run`, with the real python-telegram-bot
stack against the fake Bot API (tests/fake_telegram.py) and the real ccxt.pro (streaming) or
ccxt REST (polling) client against the fake Binance (tests/fake_exchange.py), all on 127.0.0.1
in this one process; SQLite in a temporary folder (WAL, synchronous=FULL). Each of N synthetic
symbols (`binance:SYN000/USDT`...) has one made-up rule `above 100` in its own private chat.
A crossing: the venue moves the symbol to 99 (the rule re-arms), waits, then to 101; the
latency is from just before the venue publishes 101 (a websocket frame, or the book the next
REST poll reads) to the moment the fake Bot API has received the alert. Crossings of different
symbols overlap; those of one symbol are more than a second apart (Telegram's 1 message a
second per chat would queue them otherwise), and for polling each starts at a random phase of
the poll interval. Alerts carry their chart, as the app sends them (`--no-charts`: text only).
Prints p50/p95/max per mode.

Ingest (`--ingest`): the service alone (no chat platform) with 100k level rules over 200
symbols in 10k chats, fed by the real stream: the venue publishes book updates round-robin over
the symbols at a set rate for a few seconds (prices wander within +-1% of 100, so some rules
fire and are committed), then stops; printed per rate: the rate reached, the quotes the stream
handed on and the batches decided per second, and how long after the last update the market
held every symbol's last price (the lag: it stays small while the process keeps up, and grows
with the run's length once it falls behind). The fake venue shares this process and its core.

RSS (`--rss MINUTES`): the ingest set-up at 50 updates a second for that long, printing the
resident memory every 30 s.

Run: .venv/bin/python -m bench.latency [--modes stream,poll1,poll10] [--crossings 200]
     .venv/bin/python -m bench.latency --ingest [--rates 500,1000,2000,4000]
     .venv/bin/python -m bench.latency --rss 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fake_exchange import FakeExchange
from fake_telegram import FakeTelegram

from alerts.sanity import Limits
from feeds.catalogue import Catalogue
from feeds.ccxt_feed import CcxtFeed
from feeds.stream_feed import StreamFeed
from storage.db import Store
from tickerbell import app
from tickerbell.market_data import MarketData
from tickerbell.service import Service
from tickerbell.settings import Settings

TOKEN = "123456789:AAF-bench_latency_token"
LEVEL, BELOW, ABOVE = 100.0, 99.0, 101.0
SOURCE = "ccxt:binance"


def binance_id(i: int) -> str:
    return f"SYN{i:03d}USDT"


def symbol(i: int) -> str:
    return f"binance:SYN{i:03d}/USDT"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def wait_for(done: Callable[[], bool], limit: float = 120.0) -> None:
    deadline = time.perf_counter() + limit
    while not done():
        if time.perf_counter() > deadline:
            raise TimeoutError("the bench timed out waiting")
        await asyncio.sleep(0.001)


# ---- latency --------------------------------------------------------------------------------


async def latency(mode: str, poll: float, symbols: int, each: int, charts: bool) -> list[float]:
    """Seconds from each crossing at the venue to its alert at the fake Bot API."""
    streaming = mode == "stream"
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "latency.db"
        async with Store.open(db) as store:
            for i in range(symbols):
                chat = await store.chat("telegram", str(1000 + i))
                await store.add_rule(chat.id, f"{symbol(i)} above {LEVEL:g}", "bench", limit=50)
                if not charts:
                    await store.set_charts(chat.id, False)
        async with (
            FakeTelegram(TOKEN, poll_cap=0.5) as telegram,
            FakeExchange(streaming=streaming) as venue,
        ):
            for i in range(symbols):
                venue.set_price(binance_id(i), BELOW, BELOW)
            settings = Settings(
                _env_file=None,  # type: ignore[call-arg]
                TELEGRAM_BOT_TOKEN=TOKEN,
                TELEGRAM_API_BASE_URL=telegram.base_url,
                home=Path(folder),
                db=db,
                exchange_options={"binance": venue.ccxt_options(timeout_ms=5000)},
                poll_crypto_seconds=poll,
                venue_mode={"binance": "stream" if streaming else "poll"},
            )
            stop = asyncio.Event()
            bot = asyncio.create_task(app.run(settings, stop=stop))
            try:
                await wait_for(lambda: telegram.count("getUpdates") > 0)
                if streaming:
                    await wait_for(lambda: len(venue.subscribed()) == symbols)
                else:
                    await wait_for(lambda: venue.count("ticker/bookTicker") > 0)
                settle = 1.0 if streaming else 1.5 * poll  # the bot has seen 99: re-armed
                phase = 0.2 if streaming else poll
                results: list[float] = []

                async def move(i: int, price: float) -> None:
                    if streaming:
                        await venue.publish(binance_id(i), price, price)
                    else:
                        venue.set_price(binance_id(i), price, price)

                async def crossings(i: int) -> None:
                    chat = 1000 + i
                    await asyncio.sleep(rng.uniform(0, phase))
                    for _ in range(each):
                        await move(i, BELOW)
                        await asyncio.sleep(settle + rng.uniform(0, phase))
                        before = len(telegram.texts(chat))
                        start = time.perf_counter()
                        await move(i, ABOVE)
                        await wait_for(lambda n=before: len(telegram.texts(chat)) > n)
                        arrived = [m for m in telegram.messages if m.chat_id == chat][before]
                        results.append(arrived.at - start)

                await asyncio.gather(*(crossings(i) for i in range(symbols)))
                return results
            finally:
                stop.set()
                await asyncio.wait_for(bot, 30)


def describe(label: str, values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"{label:<14} {len(values):4d} crossings   p50 {statistics.median(ordered) * 1e3:7.0f} ms"
        f"   p95 {p95 * 1e3:7.0f} ms   max {ordered[-1] * 1e3:7.0f} ms"
    )


# ---- ingest and memory ----------------------------------------------------------------------

INGEST_SYMBOLS, INGEST_CHATS = 200, 10_000


async def ingest_setup(store: Store, rules: int) -> None:
    rng = random.Random(1)
    chats = await store.import_chats("telegram", [str(i) for i in range(INGEST_CHATS)], "private")
    for first in range(0, rules, 50_000):
        rows = []
        for i in range(first, min(rules, first + 50_000)):
            side = "above" if i % 2 else "below"
            level = round(rng.uniform(95, 105), 2)
            sym = symbol(rng.randrange(INGEST_SYMBOLS))
            rows.append((chats[i % INGEST_CHATS].id, f"{sym} {side} {level}", "b"))
        await store.import_rules(rows)


class Publisher:
    """Book updates round-robin over the symbols at a set rate; remembers the last of each."""

    def __init__(self, venue: FakeExchange) -> None:
        self.venue = venue
        self.prices = [100.0] * INGEST_SYMBOLS
        self.rng = random.Random(3)
        self.sent = 0

    async def run(self, rate: float, seconds: float) -> float:
        """Publish for `seconds` at `rate` a second (as far as the core allows); the rate met."""
        start = time.perf_counter()
        sent = 0
        i = 0
        while (now := time.perf_counter()) - start < seconds:
            due = int((now - start) * rate) + 1
            while sent < due:
                k = i % INGEST_SYMBOLS
                price = min(101.0, max(99.0, self.prices[k] + self.rng.uniform(-0.2, 0.2)))
                self.prices[k] = round(price, 4)
                await self.venue.publish(binance_id(k), self.prices[k], self.prices[k] + 0.0001)
                sent += 1
                i += 1
            await asyncio.sleep(0.001)
        self.sent += sent
        return sent / (time.perf_counter() - start)


async def ingest_rig(
    parts: contextlib.AsyncExitStack, folder: str, rules: int
) -> tuple[FakeExchange, Service, StreamFeed]:
    """The store with the rules, the venue, and the service streaming from it (not started)."""
    store = await parts.enter_async_context(Store.open(Path(folder) / "ingest.db"))
    await ingest_setup(store, rules)
    venue = await parts.enter_async_context(FakeExchange(streaming=True, synthetic=INGEST_SYMBOLS))
    for i in range(INGEST_SYMBOLS):
        venue.set_price(binance_id(i), 100.0, 100.0001)
    feed = CcxtFeed("binance", venue.ccxt_options(timeout_ms=5000))
    data = MarketData(Catalogue(), lambda source: feed, Limits(max_age=timedelta(minutes=10)))
    parts.push_async_callback(data.close_feeds)
    stream = StreamFeed("binance", venue.ccxt_options(timeout_ms=5000), silence=60)
    svc = Service(
        store,
        data,
        band=0.0025,
        poll_interval=lambda source: 10.0,
        stream_for=lambda source: stream,
    )
    parts.push_async_callback(svc.stop)
    return venue, svc, stream


def market_has(svc: Service, publisher: Publisher) -> bool:
    for k in range(INGEST_SYMBOLS):
        last = svc.market.history(symbol(k)).last
        if last is None or abs(last.price - (publisher.prices[k] + 0.00005)) > 1e-6:
            return False
    return True


async def ingest(rules: int, rates: list[float], seconds: float, rss_minutes: float) -> None:
    with tempfile.TemporaryDirectory() as folder:
        async with contextlib.AsyncExitStack() as parts:
            await ingest_run(parts, folder, rules, rates, seconds, rss_minutes)


async def ingest_run(
    parts: contextlib.AsyncExitStack,
    folder: str,
    rules: int,
    rates: list[float],
    seconds: float,
    rss_minutes: float,
) -> None:
    start = time.perf_counter()
    venue, svc, stream = await ingest_rig(parts, folder, rules)
    await svc.start()
    publisher = Publisher(venue)
    await wait_for(lambda: len(venue.subscribed()) == INGEST_SYMBOLS, 300)
    await publisher.run(200, 2)
    await wait_for(lambda: market_has(svc, publisher), 60)
    print(
        f"ingest: {len(svc.book):,} rules over {INGEST_SYMBOLS} symbols ready after"
        f" {time.perf_counter() - start:.0f} s, RSS {rss_mb():,.0f} MB"
    )
    for rate in rates:
        handed, decided = stream.updates, svc.stats.alerts_decided
        met = await publisher.run(rate, seconds)
        ended = time.perf_counter()
        try:
            await wait_for(lambda: market_has(svc, publisher), 60)
            lag = f"{(time.perf_counter() - ended) * 1e3:,.0f} ms"
        except TimeoutError:
            lag = "> 60 s"
        took = time.perf_counter() - ended + seconds
        print(
            f"  {rate:6,.0f}/s asked: {met:6,.0f}/s published, "
            f"{(stream.updates - handed) / took:6,.0f} quotes/s handed on, "
            f"{svc.stats.alerts_decided - decided:5,} alerts decided; "
            f"the market had every last price {lag} after the last update"
        )
    if rss_minutes:
        print(f"RSS at 50 updates/s for {rss_minutes:g} minutes (every 30 s):")
        marks = [rss_mb()]
        print(f"  0.0 min {marks[0]:,.1f} MB")
        for half in range(1, int(rss_minutes * 2) + 1):
            await publisher.run(50, 30)
            marks.append(rss_mb())
            print(f"  {half / 2:4.1f} min {marks[-1]:,.1f} MB", flush=True)
        growth = (marks[-1] - marks[0]) / marks[0]
        print(f"  growth {growth:+.1%} (first to last), max {max(marks):,.1f} MB")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modes", default="stream,poll1,poll10")
    parser.add_argument("--crossings", type=int, default=200)
    parser.add_argument("--poll10-crossings", type=int, default=200)
    parser.add_argument("--no-charts", action="store_true")
    parser.add_argument("--ingest", action="store_true")
    parser.add_argument("--rules", type=int, default=100_000)
    parser.add_argument("--rates", default="500,1000,2000,4000")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rss", type=float, default=0.0, help="minutes at 50 updates/s")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.ingest or args.rss:
        rates = [float(r) for r in args.rates.split(",")] if args.ingest else []
        await ingest(args.rules, rates, args.seconds, args.rss)
        return
    plans = {  # mode -> (poll seconds, symbols, crossings per symbol)
        "stream": (10.0, 10, max(1, args.crossings // 10)),
        "poll1": (1.0, 20, max(1, args.crossings // 20)),
        "poll10": (10.0, 40, max(1, args.poll10_crossings // 40)),
    }
    for mode in args.modes.split(","):
        poll, symbols, each = plans[mode]
        kind = "stream" if mode == "stream" else "poll"
        values = await latency(kind, poll, symbols, each, not args.no_charts)
        print(describe(mode, values), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
