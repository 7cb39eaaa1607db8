"""Benchmark: a replica taking the engine over on PostgreSQL when its holder is killed (kill -9).

Two `tickerbell run` processes (replicas) share one PostgreSQL schema (a throwaway one on the
server named by `--postgres`, default TICKERBELL_TEST_DATABASE_URL) and one console rule; the
one holding the "engine" lease polls the fake Binance (tests/fake_exchange.py, synthetic
prices) every second. Each round kills the engine's replica with SIGKILL and measures the gap
in the venue's polls: from the kill to the first poll of the replica that took the engine over
(lease retry every 2 s, then the service starts and reads the rules). A new replica is started
before the next round. Also: polls per second while both run (one replica polls: about 1/s).

Run: .venv/bin/python -m bench.failover [--rounds 10] [--postgres postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fake_exchange import FakeExchange
from support.postgres import throwaway_schema

from storage.postgres import PostgresStore

POLL = "ticker/bookTicker"
STANDING_BY = "engine runs on another replica: standing by"


class Replica:
    """One `tickerbell run` process, its log lines read as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, env: dict[str, str]) -> Replica:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tickerbell", "run", env=env, stderr=asyncio.subprocess.PIPE
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.lines.append(line.decode(errors="replace"))

    def said(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
        await self.process.wait()
        await self._reader


async def until(done: Callable[[], bool], limit: float = 60.0) -> float:
    """Seconds until `done()` holds, checked every 5 ms."""
    start = time.perf_counter()
    while not done():
        if time.perf_counter() - start > limit:
            raise TimeoutError("waited too long")
        await asyncio.sleep(0.005)
    return time.perf_counter() - start


async def main(rounds: int, server: str) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="tickerbell-failover-") as home,
        throwaway_schema(server) as url,
    ):
        async with FakeExchange() as fake:
            fake.set_price("BTCUSDT", 86000.0, 86000.0)
            async with PostgresStore.open(url) as store:
                console = await store.chat("console", "console")
                await store.add_rule(console.id, "BTC below 50000", "console", limit=50)
            env = {
                **os.environ,
                "TICKERBELL_HOME": home,
                "TICKERBELL_DATABASE_URL": url,
                "TICKERBELL_EXCHANGE_OPTIONS": json.dumps({"binance": fake.ccxt_options()}),
                "TICKERBELL_POLL_CRYPTO_SECONDS": "1",
            }
            active = await Replica.start(env)
            await until(lambda: fake.count(POLL) > 0)
            standby = await Replica.start(env)
            await until(lambda: standby.said(STANDING_BY))
            seen, start = fake.count(POLL), time.perf_counter()
            await asyncio.sleep(10)
            rate = (fake.count(POLL) - seen) / (time.perf_counter() - start)
            gaps = []
            for _ in range(rounds):
                seen = fake.count(POLL)
                killed = time.perf_counter()
                await active.kill()
                await until(lambda seen=seen: fake.count(POLL) > seen)
                gaps.append(time.perf_counter() - killed)
                active, standby = standby, await Replica.start(env)
                await until(lambda: standby.said(STANDING_BY))  # noqa: B023
            for replica in (active, standby):
                await replica.kill()
    gaps.sort()
    p95 = gaps[min(len(gaps) - 1, round(0.95 * (len(gaps) - 1)))]
    print(f"polls per second, two replicas: {rate:.2f} (one poller: 1.00)")
    print(
        f"takeover after kill -9, {rounds} rounds: median {statistics.median(gaps):.2f} s,"
        f" p95 {p95:.2f} s, max {gaps[-1]:.2f} s (from the kill to the first poll)"
    )
    print(f"python {sys.version.split()[0]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--postgres", default=os.environ.get("TICKERBELL_TEST_DATABASE_URL"), metavar="URL"
    )
    args = parser.parse_args()
    if not args.postgres:
        parser.error("name a PostgreSQL server: --postgres or TICKERBELL_TEST_DATABASE_URL")
    asyncio.run(main(args.rounds, args.postgres))
