"""YahooFeed against a fake Yahoo over real HTTP: yfinance's own requests and parsing run.

Bars are the real GC=F / SI=F daily downloads in /work/shared/data; market times are synthetic
(15:30 New York on the bar's day unless a test says otherwise). The clock is injected and moved
by hand: nothing sleeps.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, time, timedelta

import pytest
import yfinance as yf
from fake_yahoo import FILES, NEW_YORK, FakeYahoo, Seen, UnexpectedHost, load_bars
from yfinance.data import SingletonMeta, YfData

from alerts.indicators import Market
from feeds.base import PermanentFeedError
from feeds.yahoo_feed import SymbolState, YahooFeed

pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword")

GOLD, SILVER = "GC=F", "SI=F"
DAY = date(2026, 7, 9)  # a Thursday, the last day in the files
SET_UP = {"/", "/v1/test/getcrumb"}  # cookie and crumb, sent once per process


class Clock:
    """A hand-moved clock."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


def traded(day: date, hour: int = 15, minute: int = 30) -> datetime:
    """A synthetic last-trade time on `day`, New York time."""
    return datetime.combine(day, time(hour, minute), NEW_YORK)


def ticks_of(requests: list[Seen]) -> list[Seen]:
    """The tick charts among requests (yfinance's one-off time-zone probe uses range=1d)."""
    return [seen for seen in requests if seen.symbol and seen.query.get("range") == "5d"]


def ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The feed's own log records (yfinance logs its own errors beside them)."""
    return [record for record in caplog.records if record.name == "feeds.yahoo_feed"]


@pytest.fixture(scope="module", autouse=True)
def yf_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep yfinance's cookie and time-zone caches out of the user's home."""
    yf.set_tz_cache_location(str(tmp_path_factory.mktemp("yfinance-cache")))
    yield


@pytest.fixture(autouse=True)
def fresh_yfinance() -> Iterator[None]:
    """Each test starts as a new process does. yfinance keeps its session, cookie, crumb and
    cookie strategy in one process-wide object (`yfinance.data.YfData`, a singleton), and a
    failed crumb fetch anywhere earlier in the process switches the strategy for good: the next
    test's first call then sends requests no new process sends."""
    SingletonMeta._instances.pop(YfData, None)
    yield
    SingletonMeta._instances.pop(YfData, None)


@pytest.fixture
async def fake() -> AsyncIterator[FakeYahoo]:
    missing = [str(path) for path in FILES.values() if not path.exists()]
    if missing:
        pytest.skip(f"real GC=F/SI=F bars not found: {', '.join(missing)}")
    server = FakeYahoo({sym: load_bars(path) for sym, path in FILES.items()})
    await server.start()
    try:
        for sym in FILES:
            server.show(sym, DAY, traded(DAY))
        yield server
    finally:
        await server.close()
    assert server.unexpected == [], "yfinance tried to leave the fake"


@pytest.fixture
def clock() -> Clock:
    return Clock(traded(DAY, 15, 31).astimezone(UTC))


@pytest.fixture
async def feed(fake: FakeYahoo, clock: Clock) -> AsyncIterator[YahooFeed]:
    yahoo = YahooFeed(clock, session=fake.session(), rng=random.Random(7))
    try:
        yield yahoo
    finally:
        await yahoo.close()


async def test_a_tick_quotes_both_metals_with_one_chart_request_each(
    fake: FakeYahoo, feed: YahooFeed, clock: Clock
) -> None:
    quotes = await feed.quotes([GOLD, SILVER])

    assert set(quotes) == {GOLD, SILVER}
    for sym, quote in quotes.items():
        assert quote.symbol == sym
        assert quote.last == fake.close_of(sym, DAY)
        assert quote.ts == traded(DAY).astimezone(UTC)
        assert (quote.bid, quote.ask, quote.source) == (None, None, "yahoo")
        assert Market().ingest(quote, clock()) is None
    assert feed.states == {GOLD: SymbolState.OPEN, SILVER: SymbolState.OPEN}
    assert sorted(str(seen.symbol) for seen in ticks_of(fake.requests)) == [GOLD, SILVER]
    set_up = [seen for seen in fake.requests if seen not in ticks_of(fake.requests)]
    odd = [seen for seen in set_up if seen.path not in SET_UP and seen.query.get("range") != "1d"]
    assert odd == []

    # Steady state: the next tick costs exactly one chart request per symbol, nothing else.
    before = len(fake.requests)
    clock.advance(minutes=1)
    for sym in (GOLD, SILVER):
        fake.show(sym, DAY, traded(DAY, 15, 32), price=fake.close_of(sym, DAY) + 1)
    quotes = await feed.quotes([GOLD, SILVER])

    sent = fake.requests[before:]
    assert [(seen.host, seen.symbol) for seen in sent] == [
        ("query2.finance.yahoo.com", GOLD),
        ("query2.finance.yahoo.com", SILVER),
    ]
    assert sent[0].query["interval"] == "1d"
    assert quotes[GOLD].last == fake.close_of(GOLD, DAY) + 1
    assert quotes[GOLD].ts == traded(DAY, 15, 32).astimezone(UTC)


@pytest.mark.parametrize("mode", ["empty", "delisted"])
async def test_no_data_gives_no_quote_and_backs_that_symbol_off(
    fake: FakeYahoo, feed: YahooFeed, clock: Clock, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake.listings[SILVER].mode = mode  # type: ignore[assignment]
    caplog.set_level(logging.INFO, logger="feeds.yahoo_feed")

    quotes = await feed.quotes([GOLD, SILVER])

    assert set(quotes) == {GOLD}
    assert feed.states[SILVER] is SymbolState.NO_DATA
    assert feed.no_data == {SILVER}
    assert feed.health.last_ok == clock()
    retry = feed.retry_at(SILVER)
    assert retry is not None and retry > clock()

    before = len(fake.requests)
    clock.now = retry - timedelta(seconds=1)
    await feed.quotes([GOLD, SILVER])
    assert {seen.symbol for seen in fake.requests[before:]} == {GOLD}

    fake.listings[SILVER].mode = "ok"
    fake.show(SILVER, DAY, traded(DAY, 16))
    clock.now = retry
    quotes = await feed.quotes([GOLD, SILVER])
    assert quotes[SILVER].last == fake.close_of(SILVER, DAY)
    assert feed.states[SILVER] is SymbolState.OPEN
    messages = [(r.levelname, r.getMessage()) for r in ours(caplog)]
    assert [level for level, _ in messages] == ["WARNING", "INFO"]
    assert SILVER in messages[0][1] and SILVER in messages[1][1]


async def test_rate_limit_sends_nothing_until_the_retry_time_then_recovers(
    fake: FakeYahoo, feed: YahooFeed, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="feeds.yahoo_feed")
    fake.rate_limited = True

    assert await feed.quotes([GOLD, SILVER]) == {}
    assert feed.no_data == {GOLD, SILVER}
    assert feed.health.consecutive_failures == 1
    assert "rate limited" in (feed.health.last_error or "")
    assert {seen.status for seen in fake.requests if seen.symbol} == {429}
    assert SILVER not in {seen.symbol for seen in fake.requests}  # the loop stopped at once
    retry = feed.retry_at()
    assert retry is not None and retry > clock()

    before = len(fake.requests)
    clock.now = retry - timedelta(seconds=1)
    assert await feed.quotes([GOLD, SILVER]) == {}
    assert fake.requests[before:] == []

    clock.now = retry  # still limited: a second failure, but no second warning
    assert await feed.quotes([GOLD, SILVER]) == {}
    assert feed.health.consecutive_failures == 2

    fake.rate_limited = False
    retry = feed.retry_at()
    assert retry is not None
    clock.now = retry
    quotes = await feed.quotes([GOLD, SILVER])
    assert set(quotes) == {GOLD, SILVER}
    assert feed.health.consecutive_failures == 0
    assert feed.retry_at() is None
    levels = [r.levelname for r in ours(caplog)]
    assert levels == ["WARNING", "INFO"]


async def test_an_unreachable_yahoo_is_no_data_not_an_exception(
    fake: FakeYahoo, feed: YahooFeed
) -> None:
    await feed.quotes([GOLD])
    await fake.close()

    assert await feed.quotes([GOLD, SILVER]) == {}
    assert feed.no_data == {GOLD, SILVER}


async def test_no_new_trade_since_the_last_tick_is_closed_not_stale(
    fake: FakeYahoo, feed: YahooFeed, clock: Clock
) -> None:
    first = await feed.quotes([GOLD, SILVER])
    market = Market()
    for quote in first.values():
        assert market.ingest(quote, clock()) is None

    clock.advance(minutes=1)
    fake.show(SILVER, DAY, traded(DAY, 15, 31))
    second = await feed.quotes([GOLD, SILVER])

    assert set(second) == {SILVER}
    assert feed.market_closed == {GOLD}
    assert feed.states[GOLD] is SymbolState.CLOSED
    assert feed.no_data == set()
    assert market.history(GOLD).rejects.total() == 0  # nothing stale was handed on

    clock.advance(minutes=1)
    fake.show(GOLD, DAY, traded(DAY, 15, 33))
    assert set(await feed.quotes([GOLD])) == {GOLD}
    assert feed.market_closed == set()


async def test_first_sight_outside_the_session_is_closed(fake: FakeYahoo, clock: Clock) -> None:
    # 2026-07-02 is the last bar before the Independence Day weekend (no bar on Friday 3rd).
    thursday = date(2026, 7, 2)
    for sym in (GOLD, SILVER):
        fake.show(sym, thursday, traded(thursday, 16, 59))
    clock.now = datetime(2026, 7, 4, 12, tzinfo=UTC)
    feed = YahooFeed(clock, session=fake.session())

    assert await feed.quotes([GOLD, SILVER]) == {}
    assert feed.market_closed == {GOLD, SILVER}
    assert feed.data_time[GOLD] == traded(thursday, 16, 59).astimezone(UTC)


async def test_candles_are_cached_and_topped_up(fake: FakeYahoo, clock: Clock) -> None:
    feed = YahooFeed(clock, session=fake.session(), candle_ttl=timedelta(minutes=30))
    real = {bar.day: bar for bar in fake.bars[GOLD]}
    since = datetime(2026, 6, 1, tzinfo=UTC)
    fake.show(GOLD, date(2026, 7, 7), traded(date(2026, 7, 7)))

    candles = await feed.candles(GOLD, "1d", since)

    assert [c.day for c in candles] == sorted(
        d for d in real if since.date() <= d <= date(2026, 7, 7)
    )
    for candle in candles:
        bar = real[candle.day]
        assert (candle.open, candle.high, candle.low, candle.close) == (
            bar.open,
            bar.high,
            bar.low,
            bar.close,
        )
        assert candle.volume == bar.volume
    assert fake.charts()[-1].query["range"] == "3mo"  # the shortest range back to June 1st

    before = len(fake.requests)
    assert await feed.candles(GOLD, "1d", since) == candles
    assert fake.requests[before:] == []  # within the TTL: served from the cache

    fake.show(GOLD, DAY, traded(DAY))
    clock.advance(hours=1)
    topped = await feed.candles(GOLD, "1d", since)

    charts = [seen for seen in fake.requests[before:] if seen.symbol]
    assert len(charts) == 1
    assert charts[0].query["range"] == "5d"  # back to the last cached day, re-read
    assert topped[: len(candles)] == candles
    assert [c.day for c in topped[len(candles) :]] == [date(2026, 7, 8), DAY]
    assert topped[-1].close == real[DAY].close

    clock.advance(minutes=1)
    earlier = datetime(2026, 5, 1, tzinfo=UTC)
    longer = await feed.candles(GOLD, "1d", earlier)
    assert fake.charts()[-1].query["range"] == "3mo"
    assert longer[-len(topped) :] == topped and longer[0].day >= earlier.date()


async def test_candles_refuse_other_timeframes(feed: YahooFeed) -> None:
    with pytest.raises(PermanentFeedError):
        await feed.candles(GOLD, "1h", datetime(2026, 6, 1, tzinfo=UTC))


async def test_the_fake_refuses_any_other_host(fake: FakeYahoo) -> None:
    with pytest.raises(UnexpectedHost):
        fake.session().get("https://example.com/")
    assert fake.unexpected == ["https://example.com/"]
    fake.unexpected.clear()
