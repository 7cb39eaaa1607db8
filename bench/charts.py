"""Benchmark: chart render time and the cache's hit rate for one alert fanned out to many chats.

Synthetic intraday series (made-up prices) and, when ../shared/data is present, real daily
silver bars as candles. Run: .venv/bin/python -m bench.charts
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.charts import ChartCache, ChartSpec, Level, Panel, Series, render
from feeds.replay import read_candles

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "silver_sif_daily.csv"
T0 = datetime(2026, 3, 2, tzinfo=UTC)
CHATS = 1_000


def intraday(seed: int) -> ChartSpec:
    rng = random.Random(seed)
    price, points = 50.0, []
    for i in range(24 * 12):  # a day of 5-minute points
        price *= 1 + rng.gauss(0, 0.002)
        points.append((T0 + timedelta(minutes=5 * i), price))
    panel = Panel((Series("XAG", points=tuple(points)),), levels=(Level(50, "XAG above 50"),))
    return ChartSpec("XAG 1d (synthetic)", (panel,))


def daily() -> ChartSpec | None:
    if not DATA.is_file():
        return None
    _, candles = read_candles(DATA)
    panel = Panel((Series("XAG", candles=tuple(candles[-130:])),), levels=(Level(50, "50"),))
    return ChartSpec("XAG 6 months (SI=F daily)", (panel,))


def timed(spec: ChartSpec, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        render(spec)
        times.append(time.perf_counter() - start)
    return times


async def fan_out() -> ChartCache:
    """One alert to CHATS chats, each asking for its chart at once, as delivery does."""
    cache = ChartCache()
    spec = intraday(1)
    key = ("XAG", "1d", "XAG above 50", T0)
    await asyncio.gather(*(cache.get(key, lambda: spec) for _ in range(CHATS)))
    return cache


def main() -> None:
    render(intraday(0))  # first render loads fonts: not counted
    rows = [("line, 288 points", timed(intraday(2), 15))]
    spec = daily()
    if spec is not None:
        rows.append(("130 daily candles", timed(spec, 15)))
    else:
        print(f"(no real data at {DATA}: candles skipped)")
    for name, times in rows:
        print(f"{name:<20} median {statistics.median(times) * 1e3:6.1f} ms   "
              f"max {max(times) * 1e3:6.1f} ms   (goal < 250 ms)")  # fmt: skip
    cache = asyncio.run(fan_out())
    asked = cache.renders + cache.hits
    print(f"fan-out to {CHATS:,} chats: {cache.renders} render(s), "
          f"hit rate {cache.hits / asked:.1%} (goal: one render)")  # fmt: skip


if __name__ == "__main__":
    main()
