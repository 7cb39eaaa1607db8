"""Benchmark: the store calls a service and its delivery make, on SQLite and on PostgreSQL.

Both stores are the real ones: SQLite on a temporary file (WAL, synchronous=FULL), PostgreSQL
in a throwaway schema of the server named by `--postgres` (default: TICKERBELL_TEST_DATABASE_URL,
else TICKERBELL_DATABASE_URL; without either, SQLite alone), dropped afterwards. The data is
synthetic: 10k chats and 100k level rules (`--rules N`). Figures per backend:

1. import the chats and rules (in chunks of 50k rules);
2. read every rule page by page (10k a page), as a service's start does;
3. the first tick: every rule's state saved in one commit;
4. a tick firing 1% of the rules: their states and one alert each (median of 5);
5. `pending(500)` with those alerts waiting (median of 5);
6. recording 500 deliveries, one chat after another, and 32 chats at once (rows/s);
7. a tick's 32 quotes saved (median of 20);
8. `rule_changes` after one rule was added (median of 20).

Run: .venv/bin/python -m bench.storage [--rules 1000000] [--postgres postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.postgres import throwaway_schema

from alerts import rules
from alerts.models import Alert, Direction, Quote, RuleState
from storage.api import Storage
from storage.db import Store
from storage.postgres import PostgresStore

CHATS, CHUNK, PAGE = 10_000, 50_000, 10_000
T0 = datetime(2026, 3, 2, 12, tzinfo=UTC)


def alert(price: float) -> Alert:
    rule = rules.parse("XAG above 50")
    return Alert("XAG above 50", rule, Direction.UP, price, 50.0, price, T0, price - 0.01, price)


async def timed(work: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await work()
    return time.perf_counter() - start


async def median(work: Callable[[], Awaitable[object]], runs: int) -> float:
    return statistics.median([await timed(work) for _ in range(runs)])


async def run(store: Storage, count: int) -> dict[str, str]:
    """Each figure of the docstring, as text."""
    out: dict[str, str] = {}
    start = time.perf_counter()
    chats = await store.import_chats("telegram", [str(i) for i in range(CHATS)], "private")
    for first in range(0, count, CHUNK):
        rows = [
            (chats[i % CHATS].id, f"XAG above {50 + i / 1000:.3f}", "b")
            for i in range(first, min(count, first + CHUNK))
        ]
        await store.import_rules(rows)
    out["import"] = f"{time.perf_counter() - start:.1f} s"

    async def read_all() -> list[int]:
        ids, after = [], 0
        while page := await store.rules_page(after, PAGE):
            ids += [r.id for r in page]
            after = page[-1].id
        return ids

    start = time.perf_counter()
    ids = await read_all()
    out["read all rules"] = f"{time.perf_counter() - start:.2f} s"
    armed = RuleState(armed=True)
    out["first tick"] = (
        f"{await timed(lambda: store.commit_tick(dict.fromkeys(ids, armed), [])):.2f} s"
    )

    firing = ids[::100]
    fired = RuleState(armed=False, last_fired=T0, fired_count=1)

    def tick() -> Awaitable[int]:
        alerts = [(rule, chats[rule % CHATS].id, alert(51.0)) for rule in firing]
        return store.commit_tick(dict.fromkeys(firing, fired), alerts)

    out[f"tick firing {len(firing):,}"] = f"{await median(tick, 5) * 1e3:.0f} ms"
    out["pending(500)"] = f"{await median(lambda: store.pending(500), 5) * 1e3:.0f} ms"

    rows = await store.pending(500)
    start = time.perf_counter()
    for row in rows[:250]:
        await store.mark_delivered(row.id, "m")
    one = 250 / (time.perf_counter() - start)
    start = time.perf_counter()
    queue = iter(rows[250:500])

    async def worker() -> None:
        for row in queue:
            await store.mark_delivered(row.id, "m")

    await asyncio.gather(*(worker() for _ in range(32)))
    many = 250 / (time.perf_counter() - start)
    out["mark_delivered"] = f"{one:,.0f}/s one by one, {many:,.0f}/s 32 at once"

    moment = [T0]

    def quotes() -> Awaitable[None]:
        moment[0] += timedelta(seconds=10)
        return store.save_quotes(
            Quote(f"SYN{i:03d}", 100.0, moment[0], 99.99, 100.01, "x") for i in range(32)
        )

    out["save 32 quotes"] = f"{await median(quotes, 20) * 1e3:.1f} ms"
    await store.add_rule(chats[0].id, "XAG above 99", "b", limit=10**9)
    since = await store.rules_revision() - 1
    out["rule_changes"] = f"{await median(lambda: store.rule_changes(since), 20) * 1e3:.1f} ms"
    return out


@asynccontextmanager
async def sqlite() -> AsyncIterator[Storage]:
    with tempfile.TemporaryDirectory(prefix="tickerbell-bench-") as scratch:
        async with Store.open(Path(scratch) / "bench.db") as store:
            yield store


@asynccontextmanager
async def postgres(url: str) -> AsyncIterator[Storage]:
    with throwaway_schema(url) as schema_url:
        async with PostgresStore.open(schema_url) as store:
            yield store


async def main(count: int, url: str | None) -> None:
    results: dict[str, dict[str, str]] = {}
    async with sqlite() as store:
        results["SQLite"] = await run(store, count)
    if url:
        async with postgres(url) as store:
            results["PostgreSQL"] = await run(store, count)
    print(f"{count:,} rules over {CHATS:,} chats")
    names = list(results)
    print(f"{'':<26}" + "".join(f"{name:>36}" for name in names))
    for figure in results["SQLite"]:
        print(f"{figure:<26}" + "".join(f"{results[n][figure]:>36}" for n in names))
    print(f"python {sys.version.split()[0]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=100_000)
    default = os.environ.get("TICKERBELL_TEST_DATABASE_URL") or os.environ.get(
        "TICKERBELL_DATABASE_URL"
    )
    parser.add_argument("--postgres", default=default, metavar="URL")
    args = parser.parse_args()
    asyncio.run(main(args.rules, args.postgres))
