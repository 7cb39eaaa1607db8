"""Benchmark: chart render time, the cache's hit rate for one alert fanned out to many chats,
and the alert charts of 1,000 distinct rules firing at once: how many renders, how long until
all are drawn by 1 or 2 worker processes, and the workers' memory.

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

from bot.charts import (
    AlertCharts,
    ChartCache,
    ChartSpec,
    Level,
    Panel,
    RenderPool,
    Series,
    render,
)

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
    from feeds.replay import read_candles  # here: it brings aiohttp, which workers need not

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


async def distinct_rules(workers: int) -> None:
    """CHATS distinct rules on four symbols firing in one tick: their charts, prepared at once
    as delivery does, drawn by `workers` processes (started and warmed first, as in the app)."""
    # Imported here: each spawned worker re-imports this module (the app's re-import its light
    # entry point), and bench.fanout brings the whole Telegram stack.
    from bench.fanout import Memory, distinct_alerts, synthetic_market

    memory = Memory()
    sampler = asyncio.create_task(memory.sample())
    pool = RenderPool(workers)
    pool.start()
    cache = ChartCache(pool)
    await cache.get("warm", lambda: intraday(3))  # the workers' imports are not counted
    charts = AlertCharts(synthetic_market(), cache)
    alerts = distinct_alerts(CHATS)
    started = time.perf_counter()
    charts.prepare(alerts)
    await asyncio.gather(*(charts.for_alert(a) for a in alerts))
    took = time.perf_counter() - started
    await pool.close()
    sampler.cancel()
    workers_mb = memory.peak_children / 1024
    print(f"{CHATS:,} distinct rules, 4 symbols, {workers} worker(s): {cache.renders - 1} "
          f"renders, all drawn in {took:.2f} s; workers' peak RSS {workers_mb:.0f} MB")  # fmt: skip


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
    for workers in (1, 2):
        asyncio.run(distinct_rules(workers))


if __name__ == "__main__":
    main()
