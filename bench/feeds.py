"""Benchmark: HTTP requests and wall time per poll tick of each feed, against local fakes.

Each feed has one `bench_<feed>()` coroutine returning `Row`s; `main()` prints them in one table.
ccxt: a real `ccxt.async_support.binance` against tests/fake_exchange.py (127.0.0.1) for 1, 10
and 100 symbols (BTC/ETH/PAXG and other real-named pairs, then synthetic `SYNnnn/USDT` ones).
"first" is the first tick (it also loads the markets); the other columns are the steady state.
ccxt's rate limiter is measured on (as shipped) and off: its async leaky bucket does not credit
idle time, so every request waits cost x rateLimit (0.8 x 50 ms for a bookTicker) however long
ago the previous one was. Run: .venv/bin/python bench/feeds.py
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# Run as a script, sys.path[0] is bench/, where this file would shadow the `feeds` package.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), str(ROOT / "tests")] + [
    p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"
]

from fake_exchange import FakeExchange  # noqa: E402

from feeds.ccxt_feed import CcxtFeed  # noqa: E402
from tickerbell.settings import Settings  # noqa: E402

SIZES = (1, 10, 100)
TICKS = 30


@dataclass(frozen=True, slots=True)
class Row:
    """One measured configuration of one feed."""

    feed: str
    symbols: int
    first_requests: int
    first_ms: float
    requests_per_tick: float
    ms_per_tick: float
    p90_ms: float


async def bench_ccxt(sizes: tuple[int, ...] = SIZES, ticks: int = TICKS) -> list[Row]:
    """Requests and time per tick of CcxtFeed against the fake Binance."""
    rows = []
    async with FakeExchange() as fake:
        usdt = [m for m in fake.markets.values() if m["quoteAsset"] == "USDT"]
        for rate_limit in (True, False):
            for n in sizes:
                symbols = [f"{m['baseAsset']}/USDT" for m in usdt[:n]]
                options = {**fake.ccxt_options(timeout_ms=5000), "enableRateLimit": rate_limit}
                settings = Settings(_env_file=None, exchange_options={"binance": options})  # type: ignore[call-arg]
                label = "ccxt:binance" + ("" if rate_limit else " (no rate limiter)")
                rows.append(await _bench_ccxt_feed(fake, settings, symbols, ticks, label))
    return rows


async def _bench_ccxt_feed(
    fake: FakeExchange, settings: Settings, symbols: list[str], ticks: int, label: str
) -> Row:
    feed = CcxtFeed("binance", settings.exchange_options.get("binance"))
    try:
        before = fake.count()
        start = time.perf_counter()
        first = await feed.quotes(symbols)
        first_ms = (time.perf_counter() - start) * 1000
        first_requests = fake.count() - before
        assert len(first) == len(symbols), f"only {len(first)} of {len(symbols)} quoted"
        before = fake.count()
        times = []
        for _ in range(ticks):
            start = time.perf_counter()
            quotes = await feed.quotes(symbols)
            times.append((time.perf_counter() - start) * 1000)
            assert len(quotes) == len(symbols)
        per_tick = (fake.count() - before) / ticks
    finally:
        await feed.close()
    return Row(
        feed=label,
        symbols=len(symbols),
        first_requests=first_requests,
        first_ms=first_ms,
        requests_per_tick=per_tick,
        ms_per_tick=statistics.median(times),
        p90_ms=statistics.quantiles(times, n=10)[-1],
    )


def table(rows: list[Row]) -> str:
    """The rows as a fixed-width text table."""
    head = (
        f"{'feed':<32} {'symbols':>7} {'first req':>9} {'first ms':>9} "
        f"{'req/tick':>8} {'ms/tick':>8} {'p90 ms':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.feed:<32} {r.symbols:>7} {r.first_requests:>9} {r.first_ms:>9.1f} "
            f"{r.requests_per_tick:>8.2f} {r.ms_per_tick:>8.1f} {r.p90_ms:>8.1f}"
        )
    return "\n".join(lines)


async def run_all() -> list[Row]:
    """Every feed's bench, one after the other (add new feeds here)."""
    return await bench_ccxt()


def main() -> None:
    """Run the benches and print the table."""
    print(f"feed benchmarks: {TICKS} steady-state ticks per row, local fakes on 127.0.0.1")
    print(table(asyncio.run(run_all())))


if __name__ == "__main__":
    main()
