"""The service with a streaming venue: the real ccxt.pro client over a real websocket and the
real ccxt REST client (the fallback), both to the fake Binance on 127.0.0.1; the real feeds,
market, rule book, SQLite store and delivery. Only the chat platform is a recorder. Prices are
synthetic levels around made-up rules.

Streams here are retried from 50 ms (and declared silent after 0.5 s where silence is the
point), and polling runs every 0.1 s when it runs at all, so outages resolve quickly; every
wait has a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from fake_exchange import FakeExchange
from fake_telegram import FakeTelegram, plain
from support.scripted import Recorder
from support.waiting import until

from alerts.sanity import Limits
from feeds.backoff import Backoff
from feeds.catalogue import Catalogue
from feeds.ccxt_feed import CcxtFeed
from feeds.stream_feed import StreamFeed
from storage.db import Store, utcnow
from tickerbell import app
from tickerbell.delivery import Delivery
from tickerbell.market_data import MarketData
from tickerbell.metrics import make_app
from tickerbell.service import Service
from tickerbell.settings import Settings

SOURCE = "ccxt:binance"
FELL = "BTC fell below 85,000 (now {:,})"


@dataclass
class Rig:
    fake: FakeExchange
    svc: Service
    store: Store
    chat: Recorder

    @property
    def stream(self) -> StreamFeed:
        stream = self.svc.streams[SOURCE]
        assert isinstance(stream, StreamFeed)
        return stream

    async def stream_price(self, price: float, symbol: str = "BTC") -> None:
        """Publish a price on the stream until the market has taken it from the stream."""

        async def taken() -> bool:
            await self.fake.publish(f"{symbol}USDT", price, price)
            last = self.svc.market.history(symbol).last
            return last is not None and last.price == price and self.stream.up

        await until(taken)

    def polls(self) -> int:
        """REST book requests so far: the fallback's polls."""
        return self.fake.count("ticker/bookTicker")


@asynccontextmanager
async def rig(tmp_path: Path, silence: float = 10.0) -> AsyncIterator[Rig]:
    async with FakeExchange(streaming=True) as fake, Store.open(tmp_path / "s.db") as store:
        fake.set_price("BTCUSDT", 86000.0, 86000.0)
        chat = Recorder("telegram")
        delivery = Delivery(store, {"telegram": chat})
        data = MarketData(
            Catalogue(),
            lambda source: CcxtFeed("binance", fake.ccxt_options()),
            Limits(max_age=timedelta(minutes=5)),
        )
        svc = Service(
            store,
            data,
            band=0.0025,
            poll_interval=lambda source: 0.1,
            wake=delivery.wake,
            stream_for=lambda source: StreamFeed(
                "binance",
                fake.ccxt_options(),
                silence=silence,
                backoff=Backoff(base=0.05, cap=0.2),
            ),
        )
        owner = await store.chat("telegram", "42")
        await store.add_rule(owner.id, "BTC below 85000", "test", limit=50)
        await svc.start()
        delivering = asyncio.create_task(delivery.run())
        try:
            yield Rig(fake, svc, store, chat)
        finally:
            await svc.stop()
            delivery.stop()
            await delivering
            await data.close_feeds()


async def poll_turns(svc: Service, turns: int) -> None:
    """Wait until the poll job has come round `turns` more times (it runs every 0.1 s).

    The tasks seen are kept, not their `id()`s: a finished task is freed, and the next
    turn's task often gets its address, so counting ids can miss turns for good."""
    seen: list[asyncio.Task[None]] = []

    def turned() -> bool:
        task = svc._ticks.get(f"poll:{SOURCE}")
        if task is not None and all(task is not known for known in seen):
            seen.append(task)
        return len(seen) > turns

    await until(turned)


async def test_a_streamed_crossing_fires_once_and_polling_rests(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.stream_price(86000.0)
        await poll_turns(r.svc, 1)  # a poll that started before the stream was up has ended
        before = r.polls()
        await r.stream_price(84000.0)
        await until(lambda: r.chat.sent)
        for price in (83900.0, 83800.0, 84100.0):
            await r.stream_price(price)
        await poll_turns(r.svc, 3)
        assert r.chat.sent == [("42", FELL.format(84000))]
        assert r.polls() == before  # the stream is up: no poll asked for its symbols
        assert await r.store.outbox_counts() == {"delivered": 1}


async def test_flapping_around_the_level_fires_once(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.stream_price(86000.0)
        for i in range(10):  # within the 0.25% band around 85,000 (synthetic)
            await r.stream_price(84990.0 - i)
            await r.stream_price(85010.0 + i)
        await until(lambda: r.chat.sent)
        await poll_turns(r.svc, 2)
        assert r.chat.sent == [("42", FELL.format(84990))]


async def test_a_dropped_stream_is_covered_by_polling_without_a_gap_or_a_repeat(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        await r.stream_price(86000.0)
        r.fake.refusing = True
        await r.fake.drop()
        await until(lambda: not r.stream.up)
        r.fake.set_price("BTCUSDT", 84000.0, 84000.0)  # only polling can see it now
        await until(lambda: r.chat.sent)
        assert r.chat.sent == [("42", FELL.format(84000))]
        r.fake.refusing = False
        await r.stream_price(83900.0)  # the stream is back, still below: nothing new
        await poll_turns(r.svc, 1)  # a poll that started while it was down has ended
        polls = r.polls()
        await r.stream_price(83800.0)
        await poll_turns(r.svc, 3)
        assert r.polls() == polls
        assert r.chat.sent == [("42", FELL.format(84000))]


async def test_a_reconnection_fires_nothing_false(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.stream_price(86000.0)
        for price in (86100.0, 86200.0):
            connections = r.fake.ws_connections
            await r.fake.drop()  # ccxt may notice only when the next wait begins: dial again
            await until(lambda n=connections: r.fake.ws_connections > n)
            await r.stream_price(price)
        await poll_turns(r.svc, 2)
        assert r.chat.sent == [] and r.fake.ws_connections >= 3


async def test_a_silent_stream_falls_back_to_polling(tmp_path: Path) -> None:
    async with rig(tmp_path, silence=0.5) as r, metrics(r) as read:
        await r.stream_price(86000.0)
        assert 'tickerbell_stream_up{feed="ccxt:binance"} 1.0' in await read()
        r.fake.silent = True  # connected, answering pings, sending nothing
        r.fake.set_price("BTCUSDT", 84000.0, 84000.0)
        await until(lambda: r.chat.sent)  # after the silence limit, a poll saw it
        assert not r.stream.up
        assert 'tickerbell_stream_up{feed="ccxt:binance"} 0.0' in await read()
        r.fake.silent = False
        await r.stream_price(83900.0)
        assert r.chat.sent == [("42", FELL.format(84000))]


@asynccontextmanager
async def metrics(r: Rig) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """The service's /metrics over HTTP: a function that reads it."""
    async with TestClient(TestServer(make_app(r.svc, r.store))) as client:

        async def read() -> str:
            return await (await client.get("/metrics")).text()

        yield read


async def test_malformed_frames_are_survived(tmp_path: Path) -> None:
    async with rig(tmp_path, silence=0.5) as r:  # a frame ccxt cannot parse silences it
        await r.stream_price(86000.0)
        for frame in ('{"s": "BTCUSDT", "b": "1025', "[1, 2]", '{"s": "BTCUSDT", "b": "x"}'):
            await r.fake.send_raw(frame)
        await r.stream_price(84000.0)
        await until(lambda: r.chat.sent)
        assert r.chat.sent == [("42", FELL.format(84000))]
        assert r.svc.stats.feeds[SOURCE].rejected.get("not_positive", 0) <= 1


async def test_a_new_rule_subscribes_its_symbol(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.stream_price(86000.0)
        owner = await r.store.chat("telegram", "42")
        await r.store.add_rule(owner.id, "ETH above 3100", "test", limit=50)
        await r.svc.refresh_rules()
        await until(lambda: r.fake.subscribed() == {"BTCUSDT", "ETHUSDT"})
        await r.stream_price(3050.0, "ETH")
        await r.stream_price(3150.0, "ETH")
        await until(lambda: r.chat.sent)
        assert r.chat.sent == [("42", "ETH rose above 3,100 (now 3,150)")]


async def test_shutdown_closes_the_stream_and_leaves_no_task(tmp_path: Path) -> None:
    before = asyncio.all_tasks()
    async with rig(tmp_path) as r:
        await r.stream_price(86000.0)
        fake = r.fake
    await until(lambda: fake.open_connections == 0)
    await asyncio.sleep(0)  # let finished callbacks run
    assert {t for t in asyncio.all_tasks() if not t.done()} <= before


@pytest.mark.slow
async def test_a_streamed_crossing_reaches_the_telegram_chat(tmp_path: Path) -> None:
    """The whole way through `tickerbell.app.run`: the real python-telegram-bot against the
    fake Bot API. The venue's REST answers stay at 86,000, so the alert (84,000) can only
    come from the stream; and a poll after it would re-arm the rule, so the prices streamed
    next would repeat it. (Counting the venue's REST requests once the stream is up would not
    do: the engine's first poll may still be on its way then.)"""
    token, user = "123456789:AAF-fake_SECRET_stream_token", 4242
    async with (
        FakeTelegram(token, poll_cap=0.2) as telegram,
        FakeExchange(streaming=True) as exchange,
    ):
        exchange.set_price("BTCUSDT", 86000.0, 86000.0)
        settings = Settings(
            TELEGRAM_BOT_TOKEN=token,
            TELEGRAM_API_BASE_URL=telegram.base_url,
            db=tmp_path / "journey.db",
            exchange_options={"binance": exchange.ccxt_options()},
            poll_crypto_seconds=3600,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(settings, stop=stop))
        try:
            await until(lambda: telegram.count("getUpdates") > 0, timeout=15)  # it listens
            telegram.push("/alert BTC below 85000", chat_id=user)
            await until(lambda: telegram.texts(user), timeout=15)
            assert plain(telegram.texts(user)[0]) == "Alert #1 set: BTC below 85000"
            await until(lambda: exchange.subscribed() == {"BTCUSDT"}, timeout=15)

            async def alerted() -> bool:
                await exchange.publish("BTCUSDT", 84000.0, 84000.0, rest=False)
                return len(telegram.texts(user)) > 1

            await until(alerted, timeout=15)
            for price in (83900.0, 83800.0):
                await exchange.publish("BTCUSDT", price, price, rest=False)
            updates = telegram.count("getUpdates")
            await until(lambda: telegram.count("getUpdates") >= updates + 3)
            texts = [plain(text) for text in telegram.texts(user)]
            assert len(texts) == 2 and "BTC fell below 85,000 (now 84,000)" in texts[1]
        finally:
            stop.set()
            assert await asyncio.wait_for(task, 20) == 0


def test_ccxt_venues_stream_unless_told_to_poll() -> None:
    settings = Settings(_env_file=None, venue_mode={"kraken": "poll"})  # type: ignore[call-arg]
    make = app.live_stream_factory(settings, utcnow)
    assert isinstance(make("ccxt:binance"), StreamFeed)  # built, not started: nothing to close
    assert make("ccxt:kraken") is None
    assert make("yahoo") is None and make("swissquote") is None
