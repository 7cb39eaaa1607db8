"""The ccxt feed, through real ccxt over real HTTP to the fake Binance (tests/fake_exchange.py).

Nothing of ours is mocked: the feed builds a real `ccxt.async_support.binance` pointed at the
fake by `exchange_options`, and `alerts.indicators.Market` consumes what it returns. Time is an
injected clock the tests move forward; only the timeout fault waits (for ccxt's 500 ms timeout).
"""

from __future__ import annotations

import gc
import logging
import warnings
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fake_exchange import FakeExchange, Fault, has_data

from alerts.indicators import Market
from alerts.sanity import Reject
from feeds.base import FeedError, PermanentFeedError, TransientFeedError
from feeds.ccxt_feed import CcxtFeed, deep_merge
from tickerbell.settings import Settings

START = datetime(2026, 1, 6, 0, 30, tzinfo=UTC)  # just after the last bar of the shared data
BTC, ETH = "BTC/USDT", "ETH/USDT"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def pass_backoff(self, feed: CcxtFeed) -> None:
        """Move to just after the feed's retry time (if it is backing off)."""
        if feed.backoff.retry_at is not None:
            self.now = max(self.now, feed.backoff.retry_at) + timedelta(milliseconds=1)


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
async def fake(clock: Clock) -> AsyncIterator[FakeExchange]:
    exchange = FakeExchange(clock=clock)
    await exchange.__aenter__()
    try:
        yield exchange
    finally:
        await exchange.__aexit__(None, None, None)


def make_feed(
    fake: FakeExchange, clock: Clock, extra: dict[str, Any] | None = None, **kwargs: Any
) -> CcxtFeed:
    options = deep_merge(fake.ccxt_options(timeout_ms=500), extra or {})
    settings = Settings(_env_file=None, exchange_options={"binance": options})  # type: ignore[call-arg]
    return CcxtFeed("binance", settings.exchange_options["binance"], clock=clock, **kwargs)


@pytest.fixture
async def feed(fake: FakeExchange, clock: Clock) -> AsyncIterator[CcxtFeed]:
    instance = make_feed(fake, clock)
    try:
        yield instance
    finally:
        await instance.close()


def spot_symbols(fake: FakeExchange, n: int) -> list[str]:
    """The first n USDT pairs of the fake, as ccxt symbols (BTC/USDT first)."""
    ids = [s for s, m in fake.markets.items() if m["quoteAsset"] == "USDT"][:n]
    return [f"{fake.markets[s]['baseAsset']}/USDT" for s in ids]


async def tick(feed: CcxtFeed, market: Market, clock: Clock, symbols: list[str]) -> dict[str, Any]:
    """One poll as the service does it: quotes, then each into Market.ingest.

    Returns per symbol: None (accepted), a Reject, "absent" (no quote), or the FeedError type.
    """
    try:
        quotes = await feed.quotes(symbols)
    except FeedError as err:
        return dict.fromkeys(symbols, type(err))
    return {s: market.ingest(quotes[s], clock()) if s in quotes else "absent" for s in symbols}


# ---- requests per tick ------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 5, 50])
async def test_one_request_per_tick(
    fake: FakeExchange, feed: CcxtFeed, clock: Clock, n: int
) -> None:
    symbols = spot_symbols(fake, n)
    market = Market()
    for i in range(3):
        clock.advance(10)
        assert await tick(feed, market, clock, symbols) == dict.fromkeys(symbols)
        assert fake.count("exchangeInfo") == 1
        assert fake.count("ticker/bookTicker") == i + 1
        assert fake.count() == i + 2
    asked = fake.requests[-1].query["symbols"]
    assert asked.count('"') == 2 * n
    assert feed.health.requests == 4


async def test_btc_quote_is_the_real_snapshot_book(feed: CcxtFeed, clock: Clock) -> None:
    quote = (await feed.quotes([BTC]))[BTC]
    assert (quote.bid, quote.ask) == (102571.17, 102571.18)
    assert quote.last == pytest.approx(102571.175)  # bookTicker has no last: the mid
    assert quote.ts == clock()  # nor a timestamp: the feed's clock
    assert (quote.symbol, quote.source) == (BTC, "ccxt:binance")
    assert Market().ingest(quote, clock()) is None
    assert feed.health.last_ok == clock()


async def test_prices_set_at_the_fake_reach_the_quote(fake: FakeExchange, feed: CcxtFeed) -> None:
    fake.set_price("ETHUSDT", 3100.5, 3100.6)
    quote = (await feed.quotes([ETH]))[ETH]
    assert (quote.bid, quote.ask) == (3100.5, 3100.6)


async def test_duplicates_and_empty_lists_cost_nothing_extra(
    fake: FakeExchange, feed: CcxtFeed
) -> None:
    assert await feed.quotes([]) == {}
    assert fake.count() == 0
    assert set(await feed.quotes([BTC, BTC, ETH])) == {BTC, ETH}
    assert fake.requests[-1].query["symbols"] == '["BTCUSDT","ETHUSDT"]'


async def test_a_metal_perpetual_is_quoted_beside_spot_pairs(
    fake: FakeExchange, feed: CcxtFeed
) -> None:
    """`binance:XAG/USDT:USDT`: the USD-M contracts are loaded the first time one is asked
    for, and each market type is one request (synthetic silver book)."""
    fake.futures["XAGUSDT"] = (50.0, 50.02)
    fake.set_price("BTCUSDT", 86000.0, 86000.5)
    await feed.quotes([BTC])
    quotes = await feed.quotes([BTC, "XAG/USDT:USDT"])
    xag = quotes["XAG/USDT:USDT"]
    assert (xag.bid, xag.ask) == (50.0, 50.02) and quotes[BTC].bid == 86000.0
    assert fake.count("fapi/v1/exchangeInfo") == 1 and fake.count("fapi/v1/ticker/bookTicker") == 1
    await feed.quotes([BTC, "XAG/USDT:USDT"])
    assert fake.count("exchangeInfo") == 2  # spot alone, then spot and futures once: no more
    assert fake.count("fapi/v1/exchangeInfo") == 1


async def test_falls_back_to_fetch_tickers_without_bids_asks(
    fake: FakeExchange, clock: Clock
) -> None:
    feed = make_feed(fake, clock, {"has": {"fetchBidsAsks": False}})
    try:
        fake.set_price("BTCUSDT", 102571.17, 102571.18, last=102571.0)
        quote = (await feed.quotes([BTC, ETH]))[BTC]
    finally:
        await feed.close()
    assert fake.count("ticker/24hr") == 1
    assert fake.count("ticker/bookTicker") == 0
    assert (quote.bid, quote.ask, quote.last) == (102571.17, 102571.18, 102571.0)
    assert quote.ts == clock()  # the fake stamps closeTime with the same clock


# ---- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "outcome"),
    [
        (Fault.TIMEOUT, TransientFeedError),
        (Fault.RATE_LIMIT, TransientFeedError),
        (Fault.SERVER_ERROR, TransientFeedError),
        (Fault.MALFORMED_JSON, TransientFeedError),
        # ccxt turns a zero or empty price into None (omit_zero): the feed passes such a
        # ticker on as price 0, so it is rejected and counted, never silently absent.
        (Fault.EMPTY_BOOK, Reject.NOT_POSITIVE),
        (Fault.ZERO_PRICE, Reject.NOT_POSITIVE),
        (Fault.CROSSED_BOOK, Reject.CROSSED),
        (Fault.NEGATIVE_PRICE, Reject.NOT_POSITIVE),
    ],
)
async def test_fault_gives_no_good_quote_then_recovers(
    fake: FakeExchange, feed: CcxtFeed, clock: Clock, fault: Fault, outcome: object
) -> None:
    market = Market()
    symbols = [BTC, ETH]
    assert await tick(feed, market, clock, symbols) == {BTC: None, ETH: None}
    good = market.history(BTC).last

    clock.advance(10)
    fake.inject(fault)
    assert await tick(feed, market, clock, symbols) == {BTC: outcome, ETH: outcome}
    assert market.history(BTC).last == good  # nothing from the bad tick was accepted

    fake.heal()
    clock.advance(10)
    clock.pass_backoff(feed)
    assert await tick(feed, market, clock, symbols) == {BTC: None, ETH: None}
    recovered = market.history(BTC).last
    assert recovered is not None and recovered.ts == clock()


async def test_book_fault_on_one_symbol_spares_the_others(
    fake: FakeExchange, feed: CcxtFeed, clock: Clock
) -> None:
    fake.inject(Fault.CROSSED_BOOK, symbols=["ETHUSDT"])
    assert await tick(feed, Market(), clock, [BTC, ETH]) == {BTC: None, ETH: Reject.CROSSED}


async def test_rate_limit_waits_at_least_retry_after(
    fake: FakeExchange, feed: CcxtFeed, clock: Clock
) -> None:
    await feed.quotes([BTC])
    fake.inject(Fault.RATE_LIMIT)
    with pytest.raises(TransientFeedError) as info:
        await feed.quotes([BTC])
    assert "RateLimitExceeded" in str(info.value) or "DDoSProtection" in str(info.value)
    assert feed.backoff.retry_at is not None
    assert feed.backoff.retry_at - clock() >= timedelta(seconds=fake.retry_after)


async def test_transient_error_is_raised_from_the_original(
    fake: FakeExchange, feed: CcxtFeed
) -> None:
    fake.inject(Fault.SERVER_ERROR)
    with pytest.raises(TransientFeedError) as info:
        await feed.quotes([BTC])
    assert type(info.value.__cause__).__name__ == "ExchangeNotAvailable"
    assert feed.health.consecutive_failures == 1
    assert feed.health.last_error is not None and "binance" in feed.health.last_error


async def test_failed_market_load_is_transient_and_retried(
    fake: FakeExchange, feed: CcxtFeed, clock: Clock
) -> None:
    fake.inject(Fault.SERVER_ERROR)
    with pytest.raises(TransientFeedError):
        await feed.quotes([BTC])
    fake.heal()
    clock.pass_backoff(feed)
    assert BTC in await feed.quotes([BTC])
    assert fake.count("exchangeInfo") == 2


# ---- backoff and logging ----------------------------------------------------------------------


async def test_outage_sends_nothing_until_retry_and_logs_once(
    fake: FakeExchange, feed: CcxtFeed, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="feeds.ccxt_feed")
    await feed.quotes([BTC])
    fake.inject(Fault.SERVER_ERROR)
    for attempt in range(1, 4):
        with pytest.raises(TransientFeedError):
            await feed.quotes([BTC])
        sent = fake.count()
        retry_at = feed.backoff.retry_at
        assert retry_at is not None
        while clock() + timedelta(milliseconds=250) < retry_at:  # ticks during the wait
            clock.advance(0.25)
            assert await feed.quotes([BTC]) == {}
        assert fake.count() == sent  # not one request while backing off
        assert feed.backoff.failures == attempt
        clock.pass_backoff(feed)

    fake.heal()
    assert BTC in await feed.quotes([BTC])
    assert BTC in await feed.quotes([BTC])

    records = [r for r in caplog.records if r.name == "feeds.ccxt_feed"]
    warnings_ = [r for r in records if r.levelno == logging.WARNING]
    recoveries = [r for r in records if "recovered" in r.getMessage()]
    assert len(warnings_) == 1
    assert "binance" in warnings_[0].getMessage()
    assert "ExchangeNotAvailable" in warnings_[0].getMessage()
    assert len(recoveries) == 1 and recoveries[0].levelno == logging.INFO
    assert feed.health.consecutive_failures == 0


async def test_a_venue_back_after_a_long_outage_is_asked_again_within_30_seconds(
    fake: FakeExchange, feed: CcxtFeed, clock: Clock
) -> None:
    await feed.quotes([BTC])
    fake.inject(Fault.SERVER_ERROR)
    for _ in range(12):  # four minutes and more of failures: the backoff is at its cap
        with pytest.raises(TransientFeedError):
            await feed.quotes([BTC])
        clock.pass_backoff(feed)
    with pytest.raises(TransientFeedError):
        await feed.quotes([BTC])
    fake.heal()  # the venue is back now: the next request goes within 30 s
    retry_at = feed.backoff.retry_at
    assert retry_at is not None and retry_at - clock() <= timedelta(seconds=30)
    clock.pass_backoff(feed)
    assert BTC in await feed.quotes([BTC])
    assert feed.health.down_since is None


async def test_a_second_outage_is_logged_again(
    fake: FakeExchange, feed: CcxtFeed, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="feeds.ccxt_feed")
    for _ in range(2):
        fake.inject(Fault.SERVER_ERROR)
        with pytest.raises(TransientFeedError):
            await feed.quotes([BTC])
        fake.heal()
        clock.pass_backoff(feed)
        await feed.quotes([BTC])
    messages = [r.getMessage() for r in caplog.records if r.name == "feeds.ccxt_feed"]
    assert sum("feed down" in m for m in messages) == 2
    assert sum("recovered" in m for m in messages) == 2


# ---- symbols the venue does not list ----------------------------------------------------------


async def test_unlisted_symbol_is_recorded_and_the_others_still_quoted(
    fake: FakeExchange, feed: CcxtFeed
) -> None:
    quotes = await feed.quotes([BTC, "ZZZ/USDT", ETH])
    assert set(quotes) == {BTC, ETH}
    assert "ZZZ/USDT" in feed.symbol_errors
    assert "not listed on binance" in feed.symbol_errors["ZZZ/USDT"]
    assert fake.requests[-1].query["symbols"] == '["BTCUSDT","ETHUSDT"]'


async def test_only_unlisted_symbols_send_no_ticker_request(
    fake: FakeExchange, feed: CcxtFeed
) -> None:
    assert await feed.quotes(["ZZZ/USDT"]) == {}
    assert fake.count("ticker/bookTicker") == 0


async def test_pair_delisted_after_markets_loaded(
    fake: FakeExchange, feed: CcxtFeed, clock: Clock
) -> None:
    await feed.quotes([BTC, ETH])
    del fake.markets["ETHUSDT"]  # the venue now answers -1121 Invalid symbol
    with pytest.raises(PermanentFeedError):
        await feed.quotes([BTC, ETH])
    clock.pass_backoff(feed)
    quotes = await feed.quotes([BTC, ETH])  # markets reloaded: ETH is now known to be gone
    assert set(quotes) == {BTC}
    assert ETH in feed.symbol_errors
    assert fake.count("exchangeInfo") == 2


# ---- candles ----------------------------------------------------------------------------------


def day_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(("page_limit", "pages"), [(1000, 1), (150, 3)])
async def test_candles_paginate_400_days(
    fake: FakeExchange, clock: Clock, page_limit: int, pages: int
) -> None:
    feed = make_feed(fake, clock, page_limit=page_limit)
    since = datetime(2025, 12, 2, tzinfo=UTC) - timedelta(days=365)  # 400 days to 2026-01-05
    try:
        candles = await feed.candles(BTC, "1d", since)
    finally:
        await feed.close()
    assert len(candles) == 400
    assert candles[0].day == since.date() and candles[-1].day == date(2026, 1, 5)
    days = [c.day for c in candles]
    assert days == [since.date() + timedelta(days=i) for i in range(400)]
    klines = [r for r in fake.requests if r.path.endswith("/klines")]
    assert len(klines) == pages
    starts = [int(r.query["startTime"]) for r in klines]
    assert starts == [day_ms(since.date() + timedelta(days=i * page_limit)) for i in range(pages)]
    assert all(r.query["limit"] == str(page_limit) for r in klines)
    if has_data():  # real Binance bars: the 2025-10-06 all-time high, the 10-10 flash crash
        by_day = {c.day: c for c in candles}
        assert by_day[date(2025, 10, 6)].high == 126199.63
        assert by_day[date(2025, 10, 10)].low == 102000.0


async def test_candles_top_up_from_the_last_cached_bar(
    fake: FakeExchange, feed: CcxtFeed, clock: Clock
) -> None:
    since = datetime(2025, 1, 1, tzinfo=UTC)
    first = await feed.candles(BTC, "1d", since)
    assert first[-1].day == date(2026, 1, 5)
    before = fake.count("klines")

    clock.advance(86_400)  # a day later, with a new bar forming
    fake.add_kline("BTCUSDT", date(2026, 1, 6), 93000.0, 94000.0, 92000.0, 93500.0)
    second = await feed.candles(BTC, "1d", since)
    assert fake.count("klines") == before + 1
    assert fake.requests[-1].query["startTime"] == str(day_ms(date(2026, 1, 5)))
    assert second[:-1] == first and second[-1].day == date(2026, 1, 6)

    fake.add_kline("BTCUSDT", date(2026, 1, 6), 93000.0, 95000.0, 92000.0, 94800.0)
    third = await feed.candles(BTC, "1d", since)
    assert fake.count("klines") == before + 2
    assert fake.requests[-1].query["startTime"] == str(day_ms(date(2026, 1, 6)))
    assert third[-1].close == 94800.0 and len(third) == len(second)

    later = await feed.candles(BTC, "1d", datetime(2025, 12, 1, tzinfo=UTC))  # within the cache
    assert later[0].day == date(2025, 12, 1) and later[-1] == third[-1]
    assert fake.count("klines") == before + 3


async def test_candles_from_earlier_than_the_cache_refetch(
    fake: FakeExchange, feed: CcxtFeed
) -> None:
    await feed.candles(BTC, "1d", datetime(2025, 12, 1, tzinfo=UTC))
    candles = await feed.candles(BTC, "1d", datetime(2025, 1, 1, tzinfo=UTC))
    assert candles[0].day == date(2025, 1, 1)
    assert fake.requests[-1].query["startTime"] == str(day_ms(date(2025, 1, 1)))


async def test_candles_of_an_unlisted_symbol_are_a_permanent_error(feed: CcxtFeed) -> None:
    with pytest.raises(PermanentFeedError) as info:
        await feed.candles("ZZZ/USDT", "1d", datetime(2025, 1, 1, tzinfo=UTC))
    assert info.value.symbol == "ZZZ/USDT"


async def test_candles_failure_is_transient(fake: FakeExchange, feed: CcxtFeed) -> None:
    await feed.quotes([BTC])
    fake.inject(Fault.SERVER_ERROR)
    with pytest.raises(TransientFeedError) as info:
        await feed.candles(BTC, "1d", datetime(2025, 1, 1, tzinfo=UTC))
    assert info.value.symbol == BTC


async def test_candles_send_nothing_while_quotes_back_off(
    fake: FakeExchange, feed: CcxtFeed, clock: Clock
) -> None:
    fake.inject(Fault.SERVER_ERROR)
    with pytest.raises(TransientFeedError):
        await feed.quotes([BTC])
    sent = fake.count()
    with pytest.raises(TransientFeedError, match="backing off"):
        await feed.candles(BTC, "1d", datetime(2025, 1, 1, tzinfo=UTC))
    assert fake.count() == sent
    fake.heal()
    clock.pass_backoff(feed)
    assert len(await feed.candles(BTC, "1d", datetime(2025, 1, 1, tzinfo=UTC))) == 370


# ---- lifecycle --------------------------------------------------------------------------------


async def test_close_leaves_no_unclosed_session(
    fake: FakeExchange, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        feed = make_feed(fake, clock)
        await feed.quotes([BTC])
        await feed.candles(BTC, "1d", datetime(2025, 12, 1, tzinfo=UTC))
        session = feed.exchange.session
        await feed.close()
        del feed
        gc.collect()
    assert session is not None and session.closed
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert "Unclosed" not in caplog.text
    assert "requires to release all resources" not in caplog.text


async def test_feed_is_an_async_context_manager(fake: FakeExchange, clock: Clock) -> None:
    async with make_feed(fake, clock) as feed:
        assert BTC in await feed.quotes([BTC])
    assert feed.exchange.session is None


def test_exchange_options_are_deep_merged() -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        exchange_options={"binance": {"options": {"defaultType": "spot"}, "timeout": 1234}},
    )
    feed = CcxtFeed("binance", settings.exchange_options["binance"])
    assert feed.exchange.timeout == 1234
    assert feed.exchange.enableRateLimit is True
    assert feed.exchange.options["defaultType"] == "spot"
    assert feed.exchange.options["fetchMarkets"]["types"] == ["spot"]  # our default survived
    assert "recvWindow" in feed.exchange.options  # and ccxt's own options too


def test_unknown_venue_is_refused() -> None:
    with pytest.raises(ValueError, match="not a ccxt exchange"):
        CcxtFeed("nosuchvenue")
