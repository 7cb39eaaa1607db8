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

import tempfile  # noqa: E402
import warnings  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from datetime import time as dtime  # noqa: E402

import yfinance as yf  # noqa: E402
from fake_exchange import FakeExchange  # noqa: E402
from fake_swissquote import FakeSwissquote  # noqa: E402
from fake_yahoo import NEW_YORK, FakeYahoo, load_bars  # noqa: E402

from feeds.ccxt_feed import CcxtFeed  # noqa: E402
from feeds.swissquote_feed import SwissquoteFeed  # noqa: E402
from feeds.yahoo_feed import YahooFeed  # noqa: E402
from tickerbell.settings import Settings  # noqa: E402

SIZES = (1, 10, 100)
DATA = ROOT.parent / "shared" / "data"
YAHOO_FILES = {"GC=F": DATA / "gold_gcf_daily.csv", "SI=F": DATA / "silver_sif_daily.csv"}
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


async def bench_yahoo(sizes: tuple[int, ...] = (1, 10), ticks: int = 10) -> list[Row]:
    """Requests and time per tick of YahooFeed against the fake Yahoo (yfinance's real code).

    Beyond GC=F and SI=F the symbols are made-up tickers (SYN01=F, ...) serving copies of the
    real SI=F bars; the last-trade time moves each tick so every symbol is quoted, not closed.
    """
    if not all(path.exists() for path in YAHOO_FILES.values()):
        print(f"(real GC=F/SI=F bars not found under {DATA}: Yahoo rows skipped)")
        return []
    yf.set_tz_cache_location(tempfile.mkdtemp(prefix="yfinance-cache-"))
    gold, silver = (load_bars(path) for path in YAHOO_FILES.values())
    rows = []
    for n in sizes:
        symbols = ["GC=F", "SI=F", *(f"SYN{i:02d}=F" for i in range(1, n - 1))][:n]
        bars = {sym: gold if sym == "GC=F" else silver for sym in symbols}
        fake = FakeYahoo(bars)
        await fake.start()
        day = silver[-1].day
        at = datetime.combine(day, dtime(15, 0), NEW_YORK)
        now = [at.astimezone(UTC)]
        feed = YahooFeed(lambda now=now: now[0], session=fake.session())  # type: ignore[misc]
        try:
            times, first_requests, first_ms = [], 0, 0.0
            for tick in range(ticks + 1):
                at += timedelta(minutes=1)
                now[0] = at.astimezone(UTC) + timedelta(seconds=5)
                for sym in symbols:
                    fake.show(sym, day, at)
                before = len(fake.requests)
                start = time.perf_counter()
                quotes = await feed.quotes(symbols)
                elapsed = (time.perf_counter() - start) * 1000
                assert len(quotes) == len(symbols), f"only {len(quotes)} of {len(symbols)} quoted"
                if tick == 0:
                    first_requests, first_ms = len(fake.requests) - before, elapsed
                else:
                    times.append(elapsed)
            per_tick = sum(1 for r in fake.requests[-ticks * n :] if r.symbol) / ticks
        finally:
            await feed.close()
            await fake.close()
        rows.append(
            Row("yahoo (yfinance)", n, first_requests, first_ms, per_tick,
                statistics.median(times), statistics.quantiles(times, n=10)[-1])
        )  # fmt: skip
    return rows


async def bench_swissquote(ticks: int = TICKS) -> list[Row]:
    """Requests and time per tick of the spot metals feed against the fake Swissquote: it has
    no batch form, so one request per instrument per tick, sent together (synthetic books)."""
    rows = []
    for symbols in (["XAG/USD"], ["XAU/USD", "XAG/USD", "XPT/USD", "XPD/USD"]):
        async with FakeSwissquote() as fake:
            for i, symbol in enumerate(symbols):
                fake.set_book(symbol, 50.0 + i, 50.03 + i)
            feed = SwissquoteFeed(lambda: datetime.now(UTC), base_url=fake.base_url)
            try:
                times, first_requests, first_ms = [], 0, 0.0
                for tick in range(ticks + 1):
                    before = len(fake.requests)
                    start = time.perf_counter()
                    await feed.quotes(symbols)
                    elapsed = (time.perf_counter() - start) * 1000
                    if tick == 0:
                        first_requests, first_ms = len(fake.requests) - before, elapsed
                    else:
                        times.append(elapsed)
                per_tick = (len(fake.requests) - first_requests) / ticks
            finally:
                await feed.close()
        rows.append(
            Row("swissquote (spot metals)", len(symbols), first_requests, first_ms, per_tick,
                statistics.median(times), statistics.quantiles(times, n=10)[-1])
        )  # fmt: skip
    return rows


async def run_all() -> list[Row]:
    """Every feed's bench, one after the other (add new feeds here)."""
    return await bench_ccxt() + await bench_yahoo() + await bench_swissquote()


def main() -> None:
    """Run the benches and print the table."""
    warnings.simplefilter("ignore", FutureWarning)  # pandas 3.1 about yfinance's internals
    warnings.simplefilter("ignore", DeprecationWarning)
    print(f"feed benchmarks: {TICKS} steady-state ticks per row, local fakes on 127.0.0.1")
    print(table(asyncio.run(run_all())))


if __name__ == "__main__":
    main()
