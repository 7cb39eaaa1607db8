"""Benchmark: one service tick with 10k chats and 100k rules, 1% of the rules firing.

In-process stand-ins for the venue and the chat platforms; the service, rule book and SQLite
store are the real ones (a temporary database, WAL, synchronous=FULL). Synthetic prices: 50
symbols at 100, level rules uniformly between 90 and 110, then every symbol moves +0.4%, which
crosses about 1% of the rules. Run: .venv/bin/python -m bench.service
"""

from __future__ import annotations

import asyncio
import random
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alerts.models import Candle, Quote
from alerts.sanity import Limits
from feeds.base import FeedHealth
from feeds.catalogue import Catalogue
from storage.db import Store
from tickerbell.market_data import MarketData
from tickerbell.service import Service

CHATS, RULES, TICKS = 10_000, 100_000, 7
TICKERS = [
    "BTC", "ETH", "SOL", "XRP", "BNB", "DOGE", "ADA", "TRX", "AVAX", "LINK", "DOT", "LTC",
    "BCH", "TON", "XLM", "NEAR", "UNI", "ATOM", "ETC", "FIL", "APT", "ARB", "OP", "SUI",
    "SHIB", "PEPE", "AAVE", "HBAR", "ICP", "POL", "PAXG", "XAUT",
]  # fmt: skip
T0 = datetime(2026, 3, 2, tzinfo=UTC)


class Venue:
    """Answers every symbol at the price the benchmark sets (no I/O)."""

    name = "ccxt:binance"

    def __init__(self) -> None:
        self.health = FeedHealth()
        self.price = 100.0
        self.now = T0

    async def quotes(self, symbols: list[str]) -> dict[str, Quote]:
        return {s: Quote(s, self.price, self.now, source=self.name) for s in symbols}

    async def candles(self, symbol: str, timeframe: str, since: datetime) -> list[Candle]:
        return []

    async def close(self) -> None:
        return None


async def main() -> None:
    rng = random.Random(1)
    venue = Venue()
    with tempfile.TemporaryDirectory() as tmp:
        async with Store.open(Path(tmp) / "bench.db", clock=lambda: venue.now) as store:
            start = time.perf_counter()
            chats = await store.import_chats("telegram", [str(i) for i in range(CHATS)], "private")
            rows = []
            for i in range(RULES):
                side = "above" if i % 2 else "below"
                level = round(rng.uniform(90, 110), 2)
                rows.append((chats[i % CHATS].id, f"{rng.choice(TICKERS)} {side} {level}", "b"))
            await store.import_rules(rows)
            del rows  # the benchmark's own setup data is not the service's memory
            print(f"setup: {CHATS:,} chats, {RULES:,} rules in {time.perf_counter() - start:.1f} s")
            data = MarketData(
                Catalogue(),
                lambda source: venue,
                Limits(max_age=timedelta(minutes=10)),
                clock=lambda: venue.now,
            )
            service = Service(store, data, band=0.0025, poll_interval=lambda source: 10.0)
            start = time.perf_counter()
            await service.poll("ccxt:binance")  # every rule learns where the market is
            print(f"first tick (load {RULES:,} rules, every state saved): "
                  f"{(time.perf_counter() - start) * 1e3:.0f} ms")  # fmt: skip
            samples: list[dict[str, float]] = []
            for step in range(1, TICKS + 1):  # each +0.4% step crosses about 1% of the rules
                venue.now += timedelta(seconds=10)
                venue.price = 100 + 0.4 * step
                decided = service.stats.alerts_decided
                start = time.perf_counter()
                await service.poll("ccxt:binance")
                total = time.perf_counter() - start
                fired = service.stats.alerts_decided - decided
                samples.append({**service.stats.last_tick, "total": total, "fired": fired})
            fired = statistics.median(s["fired"] for s in samples)
            share = fired / RULES
            print(f"median of {TICKS} ticks, each firing about {fired:,.0f} rules ({share:.1%}):")
            for name in ("fetch", "evaluate", "commit", "total"):
                values = sorted(s[name] for s in samples)
                median, worst = statistics.median(values) * 1e3, values[-1] * 1e3
                print(f"  {name:<9} {median:8.1f} ms   (max {worst:.1f})")
            rate = statistics.median(s["fired"] / s["commit"] for s in samples)
            print(f"alerts committed per second: {rate:,.0f}")
            counts = await store.outbox_counts()
            print(f"outbox: {counts}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak:.0f} MB (python {sys.version.split()[0]})")


if __name__ == "__main__":
    asyncio.run(main())
