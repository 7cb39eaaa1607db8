"""Scripted stand-ins for the far side: a venue whose prices tests set, a clock tests move, and
a chat platform that records what it was sent (synthetic prices only)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alerts import rules
from alerts.models import Alert, Candle, Direction, Quote, Rule
from alerts.sanity import Limits
from bot.actions import Ref
from bot.charts import ChartCache
from bot.digest import Digests
from bot.replies import Reply
from bot.wording import sentence
from feeds.base import Feed, FeedHealth, TransientFeedError
from feeds.catalogue import Catalogue
from storage.api import Storage
from storage.db import Chat, Store, utcnow
from storage.memory import MemoryStore
from tickerbell.delivery import Delivery, DeliveryError
from tickerbell.market_data import MarketData
from tickerbell.service import Service

T0 = datetime(2026, 3, 2, 12, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float = 10) -> None:
        self.now += timedelta(seconds=seconds)


class ScriptedVenue:
    """A venue whose prices the test sets; `down` makes every request fail."""

    def __init__(self, clock: Clock) -> None:
        self.name = "ccxt:binance"
        self.health = FeedHealth()
        self.clock = clock
        self.prices: dict[str, float] = {}
        self.history: dict[str, list[Candle]] = {}
        self.down = False
        self.requests = 0

    async def quotes(self, symbols: list[str]) -> dict[str, Quote]:
        self.requests += 1
        if self.down:
            raise TransientFeedError("venue unreachable (scripted)")
        now = self.clock()
        return {s: Quote(s, self.prices[s], now) for s in symbols if s in self.prices}

    async def candles(self, symbol: str, timeframe: str, since: datetime) -> list[Candle]:
        return [c for c in self.history.get(symbol, []) if c.day >= since.date()]

    async def close(self) -> None:
        return None


class Recorder:
    """A notifier that records what it was asked to send, or fails on demand (`failure` for
    every send, or `failures` for the next few, in turn); `after_send` runs after each send."""

    def __init__(self, name: str, failure: DeliveryError | None = None) -> None:
        self.name = name
        self.failure = failure
        self.failures: list[DeliveryError] = []
        self.after_send: Callable[[int], None] = lambda sent: None
        self.sent: list[tuple[str, str]] = []
        self.images: list[bytes | None] = []
        self.posts: list[tuple[str, Reply]] = []

    async def send(
        self, chat: Chat, alert: Alert, image: bytes | None = None, ref: Ref | None = None
    ) -> str | None:
        if self.failure is not None:
            raise self.failure
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((chat.chat_id, sentence(alert)))
        self.after_send(len(self.sent))
        self.images.append(image)
        return str(len(self.sent))

    async def post(self, chat: Chat, reply: Reply) -> str | None:
        if self.failure is not None:
            raise self.failure
        if self.failures:
            raise self.failures.pop(0)
        self.posts.append((chat.chat_id, reply))
        return f"post {len(self.posts)}"

    async def close(self) -> None:
        return None


def make_service(
    store: Storage,
    delivery: Delivery,
    feed: Feed,
    clock: Callable[[], datetime] = utcnow,
    max_age: timedelta = timedelta(minutes=5),
    poll_seconds: float = 10.0,
    digest_every: float = 15.0,
) -> Service:
    """A real Service over `store` whose every price source is `feed` (the far side's stand-in)."""
    data = MarketData(Catalogue(), lambda source: feed, Limits(max_age=max_age), clock=clock)
    return Service(
        store,
        data,
        band=0.0025,
        poll_interval=lambda source: poll_seconds,
        wake=delivery.wake,
        digest_every=digest_every,
    )


@asynccontextmanager
async def service(
    db: Path | None, clock: Clock, venue: ScriptedVenue, *notifiers: Recorder
) -> AsyncIterator[tuple[Service, Storage, Delivery]]:
    """A real service over the SQLite store at `db`, or over the in-memory store when `db` is
    None (the layers above storage, tested fast: storage's own tests hold both to one contract).
    """
    opened = Store.open(db, clock=clock) if db is not None else MemoryStore.open(clock=clock)
    async with opened as store:
        delivery = Delivery(store, {n.name: n for n in notifiers}, clock=clock)
        svc = make_service(store, delivery, venue, clock, max_age=timedelta(minutes=2))
        delivery.digests = Digests(store, svc.data, ChartCache(), clock)
        yield svc, store, delivery


def an_alert(rule: str | Rule = "BTC below 85000", **changes: Any) -> Alert:
    """A synthetic decided alert (made-up numbers) of `rule` (text or parsed); `changes`
    override its fields (give `rule_text` with a rule that has no canonical text)."""
    parsed = rules.parse(rule) if isinstance(rule, str) else rule
    fields: dict[str, Any] = {
        "rule_text": changes["rule_text"] if "rule_text" in changes else rules.format(parsed),
        "rule": parsed,
        "direction": Direction.DOWN,
        "price": 84000.0,
        "reference": 85000.0,
        "observed": 84000.0,
        "time": datetime(2026, 3, 2, 12, tzinfo=UTC),
    }
    fields.update(changes)
    return Alert(**fields)


async def enqueue(store: Store, chat: Chat, alert: Alert) -> None:
    """Put an alert in the outbox for `chat`, as a tick would."""
    await store.commit_tick({}, [(None, chat.id, alert)])
