"""Benchmark: how large the database grows in a year at 100 alerts a day.

The real store (a temporary database, WAL, synchronous=FULL) on a simulated clock: 20 chats with
5 rules each; every day 10 ticks each decide 10 alerts (with their rule states), each alert is
then delivered, and once a day the outbox is pruned as the service does
(TICKERBELL_OUTBOX_RETENTION_DAYS, default 90). The same year is run again without pruning. Then
two days of quotes are added, the steady state of the recent-quotes table (the service keeps 2
days): 4 symbols every 10 s. Run: .venv/bin/python -m bench.retention
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alerts.models import Alert, Direction, Quote, RuleState
from alerts.rules import parse
from storage.db import Store

DAYS, PER_DAY, TICKS_PER_DAY, CHATS, RULES_PER_CHAT = 365, 100, 10, 20, 5
RETENTION = timedelta(days=90)
QUOTE_DAYS, QUOTE_SYMBOLS, QUOTE_EVERY = 2, ("BTC", "ETH", "XAU", "XAG"), timedelta(seconds=10)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def size(path: Path) -> int:
    """Bytes of the database file (a closed store has checkpointed and removed its WAL)."""
    return path.stat().st_size


def wal(path: Path) -> int:
    """Bytes of the WAL beside an open store (up to ~4 MB between checkpoints)."""
    file = path.with_name(path.name + "-wal")
    return file.stat().st_size if file.exists() else 0


def mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


async def simulate_year(path: Path, prune: bool) -> tuple[int, dict[str, int]]:
    """Run the year; print the size each quarter; return the final size and outbox counts."""
    clock = Clock()
    async with Store.open(path, clock=clock) as store:
        rules: list[tuple[int, int]] = []
        for c in range(CHATS):
            chat = await store.chat("telegram", str(100_000 + c))
            for r in range(RULES_PER_CHAT):
                text = f"XAG above {50 + r}"
                rules.append((await store.add_rule(chat.id, text, "u1", limit=50), chat.id))
        n = 0
        for day in range(DAYS):
            for tick in range(TICKS_PER_DAY):
                clock.now = T0 + timedelta(days=day, hours=2 * tick)
                fired = []
                for _ in range(PER_DAY // TICKS_PER_DAY):
                    rule, chat = rules[n % len(rules)]
                    price = 50.0 + (n % 97) / 10
                    text = f"XAG above {price:.1f}"
                    alert = Alert(
                        text, parse(text), Direction.UP, price, price - 0.1, price,
                        clock.now, price - 0.01, price + 0.01,
                    )  # fmt: skip
                    fired.append((rule, chat, alert))
                    n += 1
                states = {
                    rule: RuleState(armed=False, last_fired=clock.now, fired_count=n)
                    for rule, _, _ in fired
                }
                await store.commit_tick(states, fired)
                for row in await store.pending():
                    await store.mark_delivered(row.id, str(row.id))
            if prune:
                await store.prune_outbox(clock.now - RETENTION)
            if (day + 1) % 91 == 0 or day + 1 == DAYS:
                print(f"  day {day + 1:>3}: {mb(size(path)):>8} + WAL {mb(wal(path))}", flush=True)
        counts = await store.outbox_counts()
    return size(path), counts


async def add_quotes(path: Path) -> int:
    """Two days of quotes as the service saves them (it drops what is over 2 days old hourly)."""
    clock = Clock()
    async with Store.open(path, clock=clock) as store:
        start = T0 + timedelta(days=DAYS)
        steps = int(timedelta(days=QUOTE_DAYS) / QUOTE_EVERY)
        for i in range(steps):
            now = start + i * QUOTE_EVERY
            quotes = [Quote(s, 100.0 + i % 50, now, 99.9, 100.1, "x") for s in QUOTE_SYMBOLS]
            await store.save_quotes(quotes)
        await store.prune_quotes(now - timedelta(days=QUOTE_DAYS))
    return size(path)


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tickerbell-bench-") as scratch:
        results = {}
        for prune in (True, False):
            label = f"pruned after {RETENTION.days} days" if prune else "never pruned"
            print(f"{DAYS} days at {PER_DAY} alerts a day, {label}:")
            path = Path(scratch) / f"{'pruned' if prune else 'kept'}.db"
            started = time.perf_counter()
            results[prune] = await simulate_year(path, prune)
            print(f"  outbox rows {results[prune][1]}, {time.perf_counter() - started:.0f}s")
        with_quotes = await add_quotes(Path(scratch) / "pruned.db")
        print(f"pruned database plus 2 days of quotes (4 symbols every 10 s): {mb(with_quotes)}")
        print(
            f"after a year: {mb(results[True][0])} pruned, {mb(results[False][0])} never pruned;"
            f" with the quotes table {mb(with_quotes)}"
        )


if __name__ == "__main__":
    asyncio.run(main())
