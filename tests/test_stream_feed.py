"""The streaming feed, through the real ccxt.pro client over a real websocket to the fake Binance
(tests/fake_exchange.py with `streaming=True`). Nothing of ours is mocked; prices are synthetic.

Limits are short (silence 0.5 s, retries from 50 ms) so outages resolve quickly; the tests wait
for conditions with a deadline, never for a fixed time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from fake_exchange import FakeExchange
from support.waiting import until

from alerts.models import Quote
from feeds.backoff import Backoff
from feeds.stream_feed import StreamFeed, streams

BTC, ETH, SOL = "BTC/USDT", "ETH/USDT", "SOL/USDT"


class Sink:
    """What the feed hands on: every batch of quotes, and each time it went down."""

    def __init__(self) -> None:
        self.batches: list[list[Quote]] = []
        self.downs = 0

    def quotes(self, batch: list[Quote]) -> None:
        self.batches.append(batch)

    def down(self) -> None:
        self.downs += 1

    def prices(self, symbol: str) -> list[float]:
        return [q.price for batch in self.batches for q in batch if q.symbol == symbol]


@pytest.fixture
async def fake() -> AsyncIterator[FakeExchange]:
    async with FakeExchange(streaming=True) as exchange:
        yield exchange


def make_stream(fake: FakeExchange, silence: float = 0.5) -> StreamFeed:
    return StreamFeed(
        "binance", fake.ccxt_options(), silence=silence, backoff=Backoff(base=0.05, cap=0.2)
    )


@pytest.fixture
async def running(fake: FakeExchange) -> AsyncIterator[tuple[StreamFeed, Sink]]:
    stream, sink = make_stream(fake), Sink()
    stream.start(sink.quotes, sink.down)
    try:
        yield stream, sink
    finally:
        await stream.close()


async def publish_until_seen(fake: FakeExchange, sink: Sink, binance_id: str, price: float) -> None:
    """Publish a book (bid `price`) until the feed hands it on (it subscribes a moment after
    it is told, and again after each reconnection)."""
    symbol = f"{binance_id.removesuffix('USDT')}/USDT"

    async def seen() -> bool:
        await fake.publish(binance_id, price, price + 0.01)
        return price + 0.005 in sink.prices(symbol)

    await until(seen)


def test_binance_streams_and_an_unknown_venue_does_not() -> None:
    assert streams("binance") and not streams("nosuchvenue")


async def test_one_connection_streams_every_wanted_symbol(
    fake: FakeExchange, running: tuple[StreamFeed, Sink]
) -> None:
    stream, sink = running
    stream.want([BTC, ETH])
    await publish_until_seen(fake, sink, "BTCUSDT", 90000.0)
    await fake.publish("ETHUSDT", 3000.0, 3000.5)
    await until(lambda: sink.prices(ETH))
    assert fake.subscribed() == {"BTCUSDT", "ETHUSDT"} and fake.ws_connections == 1
    assert sink.prices(ETH) == [3000.25]  # the mid of the book: bookTicker has no last trade
    assert stream.covered() == {BTC, ETH}
    quote = sink.batches[-1][-1]
    assert (quote.bid, quote.ask, quote.source) == (3000.0, 3000.5, "ccxt:binance")


async def test_a_burst_hands_on_the_latest_of_each_symbol_without_losing_any(
    fake: FakeExchange, running: tuple[StreamFeed, Sink]
) -> None:
    stream, sink = running
    stream.want([BTC, ETH, SOL])
    await publish_until_seen(fake, sink, "BTCUSDT", 90000.0)
    for i in range(100):  # sent back to back: many frames arrive between two waits
        await fake.publish("BTCUSDT", 90000.0 + i, 90000.01 + i)
    await fake.publish("SOLUSDT", 135.0, 135.02)
    await until(lambda: sink.prices(SOL))
    await until(lambda: sink.prices(BTC)[-1] == 90099.005)
    btc = sink.prices(BTC)
    assert btc == sorted(btc) and len(btc) <= 101  # in order; a burst may be coalesced
    assert all(len({q.symbol for q in b}) == len(b) for b in sink.batches)  # latest only


async def test_a_new_rule_set_resubscribes_on_a_new_connection(
    fake: FakeExchange, running: tuple[StreamFeed, Sink]
) -> None:
    stream, sink = running
    stream.want([BTC])
    await publish_until_seen(fake, sink, "BTCUSDT", 90000.0)
    stream.want([BTC, SOL])
    await publish_until_seen(fake, sink, "SOLUSDT", 135.0)
    await until(lambda: fake.open_connections == 1)
    assert fake.subscribed() == {"BTCUSDT", "SOLUSDT"} and fake.ws_connections == 2
    stream.want([])
    await until(lambda: fake.open_connections == 0 and not stream.up)


async def test_a_dropped_connection_goes_down_once_and_reconnects(
    fake: FakeExchange, running: tuple[StreamFeed, Sink], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="feeds.stream_feed")
    stream, sink = running
    stream.want([BTC])
    await publish_until_seen(fake, sink, "BTCUSDT", 90000.0)
    fake.refusing = True
    await fake.drop()
    await until(lambda: not stream.up and sink.downs == 1)
    await until(lambda: stream.backoff.failures >= 3)  # refused a few times: one outage
    fake.refusing = False
    await publish_until_seen(fake, sink, "BTCUSDT", 90001.0)
    assert sink.downs == 1
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert sum("stream down since" in line for line in lines) == 1
    assert sum("stream back after" in line for line in lines) == 1


async def test_a_silent_stream_is_down_after_the_limit_and_is_dialled_again(
    fake: FakeExchange, running: tuple[StreamFeed, Sink]
) -> None:
    stream, sink = running
    stream.want([BTC])
    await publish_until_seen(fake, sink, "BTCUSDT", 90000.0)
    fake.silent = True  # connected, pings answered, no frame
    await until(lambda: not stream.up)
    assert sink.downs == 1 and "no update" in (stream.health.last_error or "")
    await until(lambda: fake.ws_connections >= 2)
    fake.silent = False
    await publish_until_seen(fake, sink, "BTCUSDT", 90001.0)
    assert sink.prices(BTC)[-1] == 90001.005


@pytest.mark.parametrize(
    "frame",
    [
        '{"s": "BTCUSDT", "b": "1025',  # cut short: ccxt's reader stops
        "[1, 2]",  # a list ccxt cannot read: its reader stops
        "hello",
        "{}",
        '{"u": 1, "s": "BTCUSDT", "b": "abc", "a": null}',
        '{"u": 2, "s": "NOPEUSDT", "b": "1", "a": "2"}',
    ],
)
async def test_malformed_frames_are_survived(
    fake: FakeExchange, running: tuple[StreamFeed, Sink], frame: str
) -> None:
    stream, sink = running
    stream.want([BTC])
    await publish_until_seen(fake, sink, "BTCUSDT", 90000.0)
    await fake.send_raw(frame)
    await publish_until_seen(fake, sink, "BTCUSDT", 90002.0)  # at once, or after a reconnection
    await until(lambda: sink.prices(BTC)[-1] == 90002.005)
    assert all(q.symbol == BTC for b in sink.batches for q in b)


async def test_closing_leaves_no_task_and_no_connection(fake: FakeExchange) -> None:
    before = asyncio.all_tasks()
    stream, sink = make_stream(fake), Sink()
    stream.start(sink.quotes, sink.down)
    stream.want([BTC, ETH])
    await publish_until_seen(fake, sink, "BTCUSDT", 90000.0)
    await stream.close()
    await until(lambda: fake.open_connections == 0)
    await asyncio.sleep(0)  # let ccxt's finished callbacks run
    assert {t for t in asyncio.all_tasks() if not t.done()} <= before


async def test_a_failing_consumer_is_logged_and_streaming_goes_on(
    fake: FakeExchange, caplog: pytest.LogCaptureFixture
) -> None:
    stream, sink = make_stream(fake), Sink()
    failures = [RuntimeError("a bug downstream")]

    def quotes(batch: list[Quote]) -> None:
        if failures:
            raise failures.pop()
        sink.quotes(batch)

    stream.start(quotes, sink.down)
    try:
        stream.want([BTC])
        await publish_until_seen(fake, sink, "BTCUSDT", 90000.0)
    finally:
        await stream.close()
    assert any("failed unexpectedly" in r.getMessage() for r in caplog.records)
