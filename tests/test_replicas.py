"""Replicas on one PostgreSQL schema: two `tickerbell.app.run` in one event loop, each with its
own stop, the fake Binance and the fake Telegram Bot API shared, as behind one bot token.

Each replica names itself to the venue (a header ccxt sends), so the test sees who polled.
The tests need `TICKERBELL_TEST_DATABASE_URL` and skip without it (tests/support/postgres.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psycopg
import pytest
from fake_exchange import FakeExchange
from fake_telegram import FakeTelegram, plain
from support.local_server import held_port
from support.postgres import end_lease_session
from support.waiting import until

from storage.postgres import PostgresStore
from tickerbell import app
from tickerbell.settings import Settings

pytestmark = pytest.mark.slow

TOKEN = "123456789:AAF-fake_SECRET_replica_token"
USER = 4242
SECRET = "tv-secret-of-the-user-chat-0123456789"
POLL = "ticker/bookTicker"
FELL = "BTC fell below 85,000"


@dataclass
class Replica:
    """One `app.run` with its own stop, its TradingView port and its name at the venue."""

    name: str
    port: int
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[int] | None = None


@dataclass
class Cluster:
    telegram: FakeTelegram
    exchange: FakeExchange
    url: str
    home: Path
    venue_timeout_ms: int = 500
    replicas: dict[str, Replica] = field(default_factory=dict)

    def settings(self, replica: Replica) -> Settings:
        return Settings(
            TELEGRAM_BOT_TOKEN=TOKEN,
            TELEGRAM_API_BASE_URL=self.telegram.base_url,
            db=self.home / f"{replica.name}.db",  # unused: the data is in PostgreSQL
            database_url=self.url,
            exchange_options={
                "binance": self.exchange.ccxt_options(self.venue_timeout_ms, client=replica.name)
            },
            venue_mode={"binance": "poll"},
            poll_crypto_seconds=0.2,
            webhook_host="127.0.0.1",
            webhook_port=replica.port,
        )

    def start(self, name: str, port: int) -> Replica:
        replica = self.replicas[name] = Replica(name, port)
        replica.task = asyncio.create_task(app.run(self.settings(replica), stop=replica.stop))
        return replica

    async def stop(self, name: str) -> None:
        replica = self.replicas.pop(name)
        replica.stop.set()
        assert replica.task is not None
        assert await asyncio.wait_for(replica.task, 30) == 0

    def price(self, btc: float) -> None:
        self.exchange.set_price("BTCUSDT", btc, btc)

    def pollers(self, since: int = 0) -> list[str]:
        """Who polled the venue's books, in order, from request number `since` on."""
        return [r.client for r in self.exchange.requests[since:] if r.path.endswith(POLL)]

    async def ticks(self, by: str, count: int = 3) -> None:
        """Let the replica `by` poll the venue's current prices a few times."""
        seen = len(self.exchange.requests)
        await until(lambda: self.pollers(seen).count(by) >= count, timeout=30)

    def messages(self, chat: int = USER) -> list[str]:
        return [plain(text) for text in self.telegram.texts(chat)]

    def told(self, needle: str, chat: int = USER) -> list[str]:
        """The messages in a chat (the user's) that contain `needle`."""
        return [text for text in self.messages(chat) if needle in text]

    async def say(self, text: str) -> str:
        before = len(self.telegram.texts(USER))
        self.telegram.push(text, chat_id=USER)
        await until(lambda: len(self.telegram.texts(USER)) > before, timeout=30)
        return self.messages()[before]

    async def post(self, name: str, text: str) -> int:
        """A TradingView post to one replica's endpoint; its HTTP status (0: no answer)."""
        url = f"http://127.0.0.1:{self.replicas[name].port}/tv/{SECRET}"
        try:
            async with aiohttp.ClientSession() as http, http.post(url, data=text) as response:
                return response.status
        except aiohttp.ClientError:
            return 0


@asynccontextmanager
async def cluster_of(
    tmp_path: Path, url: str, venue_timeout_ms: int = 500
) -> AsyncIterator[Cluster]:
    async with FakeTelegram(TOKEN, poll_cap=0.2) as telegram, FakeExchange() as exchange:
        async with PostgresStore.open(url) as store:
            chat = await store.chat("telegram", str(USER))
            await store.set_inbound_secret(chat.id, SECRET)
        cluster = Cluster(telegram, exchange, url, tmp_path, venue_timeout_ms)
        try:
            yield cluster
        finally:
            for name in list(cluster.replicas):
                await cluster.stop(name)


async def test_two_replicas_share_one_engine_and_the_second_takes_it_over_with_its_states(
    tmp_path: Path, postgres_url: str
) -> None:
    """One replica polls the venue and decides; both take TradingView posts and deliver; when
    the engine's replica stops, the other takes the engine (and Telegram) over, reads the
    rule's state (a rule that fired does not fire again) and tells the next crossing once."""
    with held_port() as port_a, held_port() as port_b:
        async with cluster_of(tmp_path, postgres_url) as cluster:
            cluster.price(86000)
            cluster.start("a", port_a)
            assert await cluster.say("/alert BTC below 85000") == "Alert #1 set: BTC below 85000"
            await cluster.ticks("a")
            cluster.start("b", port_b)
            seen = len(cluster.exchange.requests)
            await until(lambda: cluster.post("b", "posted to b"), timeout=30)  # b is up
            assert await cluster.post("a", "posted to a") == 200
            await cluster.ticks("a")
            cluster.price(84000)
            await until(lambda: cluster.told(FELL), timeout=30)
            await cluster.ticks("a")
            assert set(cluster.pollers(seen)) == {"a"}  # b runs, but does not poll
            await until(lambda: cluster.told("posted to a") and cluster.told("posted to b"), 30)

            await cluster.stop("a")
            await cluster.ticks("b")  # b took the engine over, the price still below
            assert await cluster.say("/alerts") == (
                "1 alert\n#1  BTC below 85000  fired, waiting to re-arm"
            )
            cluster.price(86000)  # re-armed above the band, then the next crossing
            await cluster.ticks("b")
            cluster.price(84500)
            await until(lambda: len(cluster.told(FELL)) == 2, timeout=30)
            await cluster.ticks("b")
    first, second = cluster.told(FELL)
    assert "(now 84,000)" in first and "(now 84,500)" in second
    assert len(cluster.told("posted to a")) == len(cluster.told("posted to b")) == 1


def engine_epoch(url: str) -> int:
    """The engine's epoch: how many times a replica has started the engine."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT epoch FROM fences WHERE name = 'engine'").fetchone()
    return int(row[0]) if row else 0


async def test_an_engine_that_lost_its_lease_with_a_tick_in_flight_cannot_commit_it(
    tmp_path: Path, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The engine's replica loses its lease session (the server ends it; the process lives on)
    while its poll is at the venue; the other replica takes the engine over and decides the
    crossing; then the old holder's poll comes back with the same crossing. Its tick is
    refused (the engine's epoch moved on), so every chat is told each crossing once, and the
    old holder says once that another replica took the engine over."""
    caplog.set_level(logging.INFO, logger="tickerbell")
    others = [5001, 5002]
    with held_port() as port_a, held_port() as port_b:
        async with cluster_of(tmp_path, postgres_url, venue_timeout_ms=30_000) as cluster:
            async with PostgresStore.open(postgres_url) as store:
                for chat_id in others:
                    chat = await store.chat("telegram", str(chat_id))
                    await store.set_charts(chat.id, False)
                    await store.add_rule(chat.id, "BTC below 85000", "test", limit=50)
            cluster.price(86000)
            cluster.start("a", port_a)
            assert await cluster.say("/alert BTC below 85000") == "Alert #3 set: BTC below 85000"
            await cluster.ticks("a")
            cluster.start("b", port_b)
            await until(lambda: "engine runs on another replica" in caplog.text, timeout=30)
            await cluster.ticks("a")  # every rule's state committed by a: armed above

            assert engine_epoch(postgres_url) == 1
            cluster.exchange.hold("a")  # a's next poll stays at the venue
            await until(lambda: "a" in cluster.exchange.holding, timeout=30)
            cluster.price(84000)
            end_lease_session(postgres_url, app.ENGINE)
            # b starts the engine (and decides the crossing); a's poll comes back with the
            # same crossing once b has taken the engine, whether or not b has decided yet: the
            # fence, not the order, keeps it from being told twice. (a waits up to 5 s for
            # its poll once it notices the loss, so the poll must come back within that.)
            await until(lambda: engine_epoch(postgres_url) == 2, timeout=30)
            cluster.exchange.let_go("a")
            stopped = ("engine: another replica took", "engine: lost its lease")
            await until(lambda: any(s in caplog.text for s in stopped), timeout=30)

            await cluster.ticks("b")
            cluster.price(86000)  # re-armed, then the next crossing
            await cluster.ticks("b")
            cluster.price(84500)
            await until(lambda: all(cluster.told("84,500", c) for c in [USER, *others]), 30)
            await cluster.ticks("b")
    for chat_id in [USER, *others]:
        told = cluster.told(FELL, chat_id)
        assert len(told) == 2, (chat_id, told)
        assert "(now 84,000)" in told[0] and "(now 84,500)" in told[1]
    said = [r.getMessage() for r in caplog.records if r.name == "tickerbell"]
    assert [s for s in said if s.startswith(stopped)] == [
        "engine: another replica took it over (this replica's last tick was refused): "
        "stopped it here; trying to take it again"
    ]
