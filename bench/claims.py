"""Benchmark: delivery by several replicas on one PostgreSQL (the store's per-chat claims).

Throughput: ROWS rows over CHATS chats wait in the outbox of a throwaway schema (on the server
named by `--postgres`, default TICKERBELL_TEST_DATABASE_URL); 1, then 3 delivery loops, each on
a store of its own (its own pool and claims session), drain them to a platform that accepts at
once: rows claimed and marked delivered per second, what the store allows before any
platform's rate limit (Telegram's is about 30/s per bot).

Takeover: a loop in a subprocess gets no answer to its messages after its first ten (they stay
in flight) and is killed with SIGKILL; a loop in this process (polling every second, as
delivery does by default) takes its chats: seconds from the kill to the survivor's first
message to a chat the dead one held.

Run: .venv/bin/python -m bench.claims [--rows 20000] [--chats 2000] [--rounds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from aiohttp import web
from support.local_server import serve_locally
from support.postgres import throwaway_schema
from support.run_delivery import PLATFORM, delivering

from alerts import rules
from alerts.models import Alert, Direction
from bot.actions import Ref
from bot.replies import Reply
from storage.api import Chat
from storage.postgres import PostgresStore
from tickerbell.delivery import Delivery

ROOT = Path(__file__).resolve().parents[1]
RULE = rules.parse("XAG above 50")
T0 = datetime(2026, 1, 2, tzinfo=UTC)


def alert(seq: int) -> Alert:
    return Alert(str(seq), RULE, Direction.UP, 50.5, 50.0, 50.5, T0, 50.49, 50.5)


class Instant:
    """A platform that takes every message at once."""

    name = PLATFORM

    async def send(
        self, chat: Chat, alert: Alert, image: bytes | None = None, ref: Ref | None = None
    ) -> str | None:
        return None

    async def post(self, chat: Chat, reply: Reply) -> str | None:
        return None

    async def close(self) -> None:
        return None


async def fill(url: str, rows: int, chats: int) -> list[Chat]:
    async with PostgresStore.open(url) as store:
        made = await store.import_chats(PLATFORM, [f"c{i:05d}" for i in range(chats)], "private")
        for seq in range(rows // chats):
            await store.commit_tick({}, [(None, chat.id, alert(seq)) for chat in made])
        return made


async def throughput(server: str, loops: int, rows: int, chats: int) -> float:
    with throwaway_schema(server) as url:
        await fill(url, rows, chats)
        total = rows // chats * chats
        async with PostgresStore.open(url) as watch, AsyncExitStack() as stores:
            opened = [
                await stores.enter_async_context(PostgresStore.open(url)) for _ in range(loops)
            ]
            runs = [Delivery(store, {PLATFORM: Instant()}) for store in opened]
            start = time.perf_counter()
            tasks = [asyncio.create_task(run.run()) for run in runs]
            while (await watch.outbox_counts()).get("delivered", 0) < total:
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - start
            for run in runs:
                run.stop()
            await asyncio.gather(*tasks)
    return total / elapsed


class Receiver:
    """Records when each message arrives; the loop named `held` gets answers to ten, then none."""

    def __init__(self, held: str) -> None:
        self.held = held
        self.answered = 0
        self.in_flight: set[str] = set()  # chats the held loop has a message in flight to
        self.taken: list[float] = []  # when the survivor sent to one of those
        self.ended = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body["by"] == self.held:
            if self.answered >= 10:
                self.in_flight.add(body["chat"])
                await self.ended.wait()
            self.answered += 1
        elif body["chat"] in self.in_flight:
            self.taken.append(time.perf_counter())
        return web.json_response({"ok": True})


async def takeover(server: str) -> float:
    receiver = Receiver("A")
    application = web.Application()
    application.router.add_post("/alert", receiver.handle)
    runner, port = await serve_locally(application)
    target = f"http://127.0.0.1:{port}/alert"
    try:
        with throwaway_schema(server) as url:
            await fill(url, 200, 40)
            script = ROOT / "tests" / "support" / "run_delivery.py"
            env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
            a = await asyncio.create_subprocess_exec(
                sys.executable, str(script), url, target, "A", "20", env=env
            )
            while not receiver.in_flight:
                await asyncio.sleep(0.005)
            async with delivering(url, target, "B"):
                await asyncio.sleep(1.5)  # B settles into its polling
                a.kill()
                killed = time.perf_counter()
                await a.wait()
                while not receiver.taken:
                    await asyncio.sleep(0.005)
                return receiver.taken[0] - killed
    finally:
        receiver.ended.set()
        await runner.cleanup()


async def main(rows: int, chats: int, rounds: int, server: str) -> None:
    for loops in (1, 3):
        rate = await throughput(server, loops, rows, chats)
        print(
            f"{loops} loop(s): {rate:,.0f} rows/s claimed and marked ({rows} rows, {chats} chats)"
        )
    gaps = sorted([await takeover(server) for _ in range(rounds)])
    p95 = gaps[min(len(gaps) - 1, round(0.95 * (len(gaps) - 1)))]
    print(
        f"takeover after kill -9, {rounds} rounds: median {statistics.median(gaps):.2f} s,"
        f" p95 {p95:.2f} s, max {gaps[-1]:.2f} s (kill to the survivor's first send to a chat"
        " the killed loop held; the survivor polls every 1 s)"
    )
    print(f"python {sys.version.split()[0]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--chats", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--postgres", default=os.environ.get("TICKERBELL_TEST_DATABASE_URL"), metavar="URL"
    )
    args = parser.parse_args()
    if not args.postgres:
        parser.error("name a PostgreSQL server: --postgres or TICKERBELL_TEST_DATABASE_URL")
    asyncio.run(main(args.rows, args.chats, args.rounds, args.postgres))
