"""Benchmark: webhooks in and out, as production runs them.

In: TradingView-style posts over HTTP on 127.0.0.1 to the real endpoint (tickerbell.webhook_in),
each committed to the SQLite outbox (a temporary database, WAL, synchronous=FULL) before the
200: posts stored per second, one at a time and `--concurrency` at once, and the p95 answer
time.

Out: alerts committed for a chat with `--hooks` webhooks (each row fanned out in the tick's
transaction), drained by the real Delivery worker through the real notifier (signing, the
guarded resolver) to a receiver on 127.0.0.1 that answers 200: posts per second, lost and
duplicated posts. Receiver and bot share one process and one core.

Run: .venv/bin/python -m bench.webhooks [--posts 500] [--alerts 500] [--hooks 4]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from alerts import rules
from alerts.models import Alert, Direction
from bot.webhook import WebhookNotifier
from bot.webhook_urls import Targets
from storage.api import utcnow
from storage.db import Store
from tickerbell.delivery import ConsoleNotifier, Delivery
from tickerbell.webhook_in import Inbound


async def _serve(app: web.Application) -> tuple[web.AppRunner, int]:
    """Serve `app` on a free loopback port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner, sock.getsockname()[1]


async def _post_all(http: aiohttp.ClientSession, url: str, posts: int, width: int) -> list[float]:
    """Post `posts` messages, `width` at once; each one's answer time."""
    gate = asyncio.Semaphore(width)
    times: list[float] = []

    async def one(n: int) -> None:
        async with gate:
            began = time.perf_counter()
            body = f"BTCUSDT crossed {90000 + n} (close {90012.5 + n})"
            async with http.post(url, data=body.encode()) as response:
                assert response.status == 200, response.status
            times.append(time.perf_counter() - began)

    await asyncio.gather(*(one(n) for n in range(posts)))
    return times


async def inbound(db: Path, posts: int, concurrency: int) -> None:
    async with Store.open(db) as store:
        chat = await store.chat("telegram", "42")
        await store.set_inbound_secret(chat.id, "bench-secret")
        runner, port = await _serve(Inbound(store, per_minute=10**9).app())
        url = f"http://127.0.0.1:{port}/tv/bench-secret"
        try:
            async with aiohttp.ClientSession() as http:
                for width in (1, concurrency):
                    began = time.perf_counter()
                    times = await _post_all(http, url, posts, width)
                    took = time.perf_counter() - began
                    p95 = statistics.quantiles(times, n=20)[-1] * 1000
                    print(f"  in, {width:>3} at once: {posts / took:7.0f} posts stored/s, "
                          f"p95 answer {p95:.1f} ms")  # fmt: skip
        finally:
            await runner.cleanup()
        counts = await store.outbox_counts()
        print(f"  outbox after: {counts} (expected {2 * posts} pending)")


async def outbound(db: Path, alerts: int, hooks: int) -> None:
    received: list[bytes] = []

    async def receive(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook/{n}", receive)
    runner, port = await _serve(app)
    rule = rules.parse("BTC below 85000")
    async with Store.open(db) as store:
        console = await store.chat("console", "console")
        for n in range(hooks):
            await store.add_webhook(console.id, f"http://127.0.0.1:{port}/hook/{n}", "k" * 32)
        notifier = WebhookNotifier(store, Targets.parse("127.0.0.1"))
        delivery = Delivery(store, {"console": ConsoleNotifier(lambda line: None),
                                    "webhook": notifier})  # fmt: skip
        now = utcnow()
        batch = [
            (None, console.id, Alert("BTC below 85000", rule, Direction.DOWN, 84000.0 - n,
                                     85000.0, 84000.0 - n, now))
            for n in range(alerts)
        ]  # fmt: skip
        try:
            began = time.perf_counter()
            await store.commit_tick({}, batch)
            committed = time.perf_counter() - began
            while (await store.outbox_counts()).get("pending", 0):
                await delivery.drain()
            took = time.perf_counter() - began
        finally:
            await notifier.close()
            await runner.cleanup()
        expected = alerts * hooks
        print(f"  out: {alerts} alerts x {hooks} webhooks committed in {committed * 1000:.0f} ms; "
              f"{expected} posts in {took:.2f} s = {len(received) / took:.0f} posts/s "
              f"({hooks} webhooks in parallel, each in order)")  # fmt: skip
        print(f"  lost: {expected - len(set(received))}, duplicated: "
              f"{len(received) - len(set(received))}")  # fmt: skip


async def main(posts: int, concurrency: int, alerts: int, hooks: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        print("webhooks, over HTTP on 127.0.0.1, SQLite outbox (WAL, synchronous=FULL)")
        await inbound(Path(folder) / "in.db", posts, concurrency)
        await outbound(Path(folder) / "out.db", alerts, hooks)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--alerts", type=int, default=500)
    parser.add_argument("--hooks", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(main(args.posts, args.concurrency, args.alerts, args.hooks))
