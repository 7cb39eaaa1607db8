"""Webhooks out and in, as people use them, through the real `tickerbell.app.run`: a Telegram
user (fake Bot API) adds a webhook (a receiver on 127.0.0.1) and takes the chat's TradingView
URL; a TradingView-style post to it and a real crossing at the (fake) venue each reach both the
chat and the receiver, once, the receiver's copy signed; on SQLite and on PostgreSQL (given
TICKERBELL_TEST_DATABASE_URL)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from fake_exchange import FakeExchange
from fake_telegram import FakeTelegram
from support.local_server import serve_locally
from support.waiting import until
from test_journeys import TOKEN, USER, World

from tickerbell import app
from tickerbell.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", "postgres"])
async def world(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[World]:
    async with FakeTelegram(TOKEN, poll_cap=0.2) as telegram, FakeExchange() as exchange:
        world = World(telegram, exchange, tmp_path / "journey.db")
        if request.param == "postgres":
            world.database_url = request.getfixturevalue("postgres_url")
        yield world


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """A webhook receiver on 127.0.0.1: its URL and what it was posted (headers, body)."""
    posts: list[tuple[dict[str, str], bytes]] = []

    async def handle(request: web.Request) -> web.Response:
        posts.append((dict(request.headers), await request.read()))
        return web.Response(text="ok")

    application = web.Application()
    application.router.add_post("/hook", handle)
    runner, port = await serve_locally(application)
    try:
        yield f"http://127.0.0.1:{port}/hook", posts
    finally:
        await runner.cleanup()


@asynccontextmanager
async def running(world: World, inbound_port: int) -> AsyncIterator[None]:
    settings = Settings(
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_BASE_URL=world.telegram.base_url,
        db=world.db,
        database_url=world.database_url,
        exchange_options={"binance": world.exchange.ccxt_options()},
        poll_crypto_seconds=0.2,
        webhook_port=inbound_port,
        webhook_host="127.0.0.1",
        webhook_public_url=f"http://127.0.0.1:{inbound_port}",
        webhook_allow_networks="127.0.0.1",
    )
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(settings, stop=stop))
    polls = world.telegram.count("getUpdates")
    try:
        await until(lambda: world.telegram.count("getUpdates") > polls or task.done(), 15)
        yield
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 20) == 0


def signed_by(secret: str, headers: dict[str, str], body: bytes) -> bool:
    signed = headers["X-Tickerbell-Timestamp"].encode() + b"." + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return headers["X-Tickerbell-Signature"] == f"sha256={digest}"


async def test_a_tradingview_post_and_a_crossing_reach_the_chat_and_its_webhook(
    world: World,
    receiver: tuple[str, list[tuple[dict[str, str], bytes]]],
    unused_port: int,
) -> None:
    hook_url, posts = receiver
    world.price(86000)
    async with running(world, unused_port):
        added = await world.say(f"/webhook add {hook_url}")
        assert added.startswith("Webhook #") and "as JSON to http://127.0.0.1:" in added
        secret = added.splitlines()[-1]
        given = await world.say("/webhook in")
        found = re.search(rf"http://127\.0\.0\.1:{unused_port}/tv/\S+", given)
        assert found is not None
        note = "BTCUSDT crossed 90000 (close 90012.5) {{strategy.order.action}}"
        async with aiohttp.ClientSession() as http:
            async with http.post(found.group(0), data=note.encode()) as response:
                assert response.status == 200
            async with http.post(found.group(0) + "x", data=b"forged") as response:
                assert response.status == 403
        await until(lambda: world.alerts(USER) and posts, timeout=15)
        assert world.alerts(USER) == [f"🔔 TradingView {note}\nTradingView alert · " +
                                      world.alerts(USER)[0].rsplit(" · ", 1)[1]]  # fmt: skip
        headers, body = posts[0]
        sent: dict[str, Any] = json.loads(body)
        assert (sent["source"], sent["text"]) == ("tradingview", f"TradingView {note}")
        assert signed_by(secret, headers, body)

        assert await world.say("/alert BTC below 85000") == "Alert #1 set: BTC below 85000"
        await world.ticks()
        world.price(84000)
        await until(lambda: len(world.alerts(USER)) == 2 and len(posts) == 2, timeout=20)
        await world.ticks()
    assert world.alerts(USER)[1].startswith("🔴▼ BTC fell below 85,000 (now 84,000)")
    headers, body = posts[1]
    assert json.loads(body)["text"] == "BTC fell below 85,000 (now 84,000)"
    assert signed_by(secret, headers, body)
    assert len(posts) == 2 and len(world.alerts(USER)) == 2
