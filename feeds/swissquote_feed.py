"""Spot gold and silver with a bid and an ask, from Swissquote's public quote feed (no key).

`GET {base}/XAG/USD` answers a list of trading platforms, each with spread profiles carrying a
bid and an ask, and a timestamp in ms. The feed takes, over every platform and profile, the
tightest book (the smallest ask - bid; a crossed or zero book is passed on for the sanity check
to reject and count). It is a retail dealer's spread, not the London wholesale market's: it
widens when dealers stop quoting, which is what `XAG spread > 5x` watches.

The service has no batch form: one request per instrument per tick, sent together. Failures of
the whole source (network, timeouts, 429, 5xx, an HTML page instead of JSON) drive one
`Backoff` (at most 30 s) and are logged once per outage. Two moments of every week are not
the market speaking: the daily rollover (around 17:00 New York, when dealers widen and the
book pauses) and the weekly close (Friday 17:00 to Sunday 17:00 New York). Quotes then carry
no bid and ask, so no spread rule fires on them and they do not enter the spread baseline;
their mid price still counts. A book that has not moved for `closed_after` is a closed market,
not a stale quote. Daily history comes from `history` (Yahoo's spot tickers), as this source
has none.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from alerts.models import Candle, Quote
from feeds.backoff import Backoff
from feeds.base import (
    Feed,
    FeedError,
    FeedHealth,
    PermanentFeedError,
    TransientFeedError,
    network_cause,
)

log = logging.getLogger(__name__)

SOURCE = "swissquote"
DEFAULT_URL = "https://forex-data-feed.swissquote.com/public-quotes/bboquotes/instrument"
INSTRUMENTS = ("XAU/USD", "XAG/USD", "XPT/USD", "XPD/USD")
HISTORY_TICKERS = {"XAU/USD": "XAUUSD=X", "XAG/USD": "XAGUSD=X"}  # Yahoo's spot tickers
NEW_YORK = ZoneInfo("America/New_York")
ROLLOVER = (time(16, 45), time(18, 30))  # New York time: the daily break and its edges


def quiet_book(moment: datetime) -> bool:
    """True at the daily rollover and over the weekly close, when dealer spreads widen for
    reasons of the calendar, not of the market."""
    local = moment.astimezone(NEW_YORK)
    weekday, clock = local.weekday(), local.time()
    if weekday == 5:  # Saturday
        return True
    if weekday == 4 and clock >= ROLLOVER[0]:  # Friday from the close
        return True
    if weekday == 6 and clock < ROLLOVER[1]:  # Sunday until the open has settled
        return True
    return ROLLOVER[0] <= clock < ROLLOVER[1]


class SwissquoteFeed:
    """The Feed of spot metals, spoken to in `XAG/USD` form."""

    name = SOURCE
    book_note = "a dealer's spread, not the London wholesale market"

    def __init__(
        self,
        clock: Callable[[], datetime],
        *,
        base_url: str = DEFAULT_URL,
        history: Feed | None = None,
        timeout: float = 10.0,
        closed_after: timedelta = timedelta(minutes=10),
        backoff: Backoff | None = None,
    ) -> None:
        self.health = FeedHealth()
        self.backoff = backoff or Backoff(cap=30.0)
        self.market_closed: set[str] = set()
        self._clock = clock
        self._base = base_url.rstrip("/")
        self._history = history
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._closed_after = closed_after
        self._session: aiohttp.ClientSession | None = None

    async def quotes(self, symbols: list[str]) -> dict[str, Quote]:
        """One tick: one request per instrument, sent together; nothing while backing off."""
        now = self._clock()
        wanted = [s for s in dict.fromkeys(symbols) if s in INSTRUMENTS]
        if not wanted or not self.backoff.ready(now):
            return {}
        try:
            books = await asyncio.gather(*(self._book(symbol) for symbol in wanted))
        except FeedError as err:
            self._failed(now, err)
            raise
        if self.backoff.success():
            log.info("swissquote feed recovered")
        self.health.ok(now)
        out: dict[str, Quote] = {}
        for symbol, book in zip(wanted, books, strict=True):
            if book is None:
                continue
            bid, ask, stamp = book
            if now - stamp > self._closed_after:
                self.market_closed.add(symbol)
                continue
            self.market_closed.discard(symbol)
            if quiet_book(stamp):
                out[symbol] = Quote(symbol, (bid + ask) / 2, stamp, source=SOURCE)
            else:
                out[symbol] = Quote(symbol, (bid + ask) / 2, stamp, bid, ask, SOURCE)
        return out

    async def candles(self, symbol: str, timeframe: str, since: datetime) -> list[Candle]:
        """Daily bars from the history source (this one has none)."""
        ticker = HISTORY_TICKERS.get(symbol)
        if self._history is None or ticker is None:
            raise PermanentFeedError(f"no daily history for {symbol}", symbol)
        return await self._history.candles(ticker, timeframe, since)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _book(self, symbol: str) -> tuple[float, float, datetime] | None:
        """The tightest (bid, ask, time) on offer for one instrument; None for an empty list."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        url = f"{self._base}/{symbol}"
        self.health.requests += 1
        try:
            async with self._session.get(url) as response:
                if response.status == 429:
                    raise TransientFeedError(f"swissquote: rate limited (429) on {symbol}")
                if response.status >= 400:
                    raise TransientFeedError(f"swissquote: HTTP {response.status} on {symbol}")
                body = await response.text()
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise TransientFeedError(f"swissquote: {type(err).__name__} on {symbol}") from err
        try:
            return _tightest(json.loads(body))
        except (ValueError, TypeError, KeyError) as err:
            raise TransientFeedError(f"swissquote: not a quote list for {symbol}") from err

    def _failed(self, now: datetime, err: FeedError) -> None:
        if "429" in str(err):
            cause = "is rate-limiting our requests"
        else:
            cause = network_cause(err) or "answers with errors"
        self.health.failed(now, str(err), cause)
        retry_at = self.backoff.failure(now)
        if self.backoff.outage_started:
            log.warning(
                "feed down since %s UTC: swissquote %s; next try at %s UTC (%s)",
                now.astimezone(UTC).strftime("%H:%M:%S"),
                cause,
                retry_at.astimezone(UTC).strftime("%H:%M:%S"),
                err,
            )


def _tightest(data: Any) -> tuple[float, float, datetime] | None:
    """The (bid, ask, time) with the smallest ask - bid over every platform and profile."""
    if not isinstance(data, list):
        raise ValueError("expected a list of platforms")
    best: tuple[float, float, float, int] | None = None
    for platform in data:
        stamp = int(platform["ts"])
        for profile in platform["spreadProfilePrices"]:
            bid, ask = float(profile["bid"]), float(profile["ask"])
            if best is None or (ask - bid, -stamp) < (best[0], -best[3]):
                best = (ask - bid, bid, ask, stamp)
    if best is None:
        return None
    _, bid, ask, stamp = best
    return bid, ask, datetime.fromtimestamp(stamp / 1000, UTC)
