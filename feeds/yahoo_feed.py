"""Yahoo Finance through yfinance: quotes for a tick and cached daily candles.

One call at a time. yfinance is synchronous and not thread-safe, so every call runs in
`asyncio.to_thread` behind one asyncio.Lock (and a thread lock, so a caller cancelled mid-call
cannot let a second call overlap the first). All symbols of a tick share that one call.

What a tick fetches. yfinance has no multi-symbol price endpoint: `yf.download` loops over
`Ticker.history`, one v8 chart request per symbol, and throws the chart meta away. This feed
runs the same loop (`Ticker.history(period="5d", interval="1d")` per symbol, so the same HTTP
cost as `download`) and keeps the meta, whose `regularMarketPrice` and `regularMarketTime` are
the freshest price Yahoo's chart has and the time it traded. Steady state is one HTTP request
per symbol per tick; the first call of a process adds the cookie, crumb and time-zone requests.

No book. The chart carries no bid or ask, so every Quote has bid=ask=None and spread rules skip
Yahoo symbols. Yahoo has a book only in its quote endpoints, which yfinance reaches one symbol
at a time through `Ticker.info` (two more requests per symbol per tick); left out on purpose.

Closed, not stale. A symbol whose data time (`regularMarketTime`) has not advanced since the
last tick yields no quote and is CLOSED. On first sight, with nothing to compare, it is CLOSED
when the clock is outside the regular session of the chart's `currentTradingPeriod` (a bot
started at the weekend), so a Friday price is never handed on as a stale quote.

No data. An empty frame or "possibly delisted" gives no quote for that symbol (NO_DATA) and
backs that symbol off on its own. A rate limit (`YFRateLimitError`, HTTP 429) backs the whole
feed off: `quotes` returns {} and sends nothing until the retry time. Neither raises: yfinance
turns most network failures into empty frames anyway, so states and `health` tell the story.
Only an unexpected failure of the whole call raises, as TransientFeedError from the original.
One warning is logged when an outage starts and one info when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import math
import numbers
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import Any, TypeGuard, TypeVar

import pandas as pd
import yfinance as yf
from curl_cffi import requests as curl_requests
from yfinance.exceptions import YFRateLimitError

from alerts.models import Candle, Quote
from feeds.backoff import Backoff
from feeds.base import FeedHealth, PermanentFeedError, TransientFeedError

log = logging.getLogger(__name__)

SOURCE = "yahoo"
# Yahoo chart ranges and the calendar days each surely covers.
_RANGES = (
    ("5d", 4),
    ("1mo", 28),
    ("3mo", 89),
    ("6mo", 181),
    ("1y", 365),
    ("2y", 730),
    ("5y", 1826),
    ("10y", 3652),
)
T = TypeVar("T")


class SymbolState(Enum):
    """What the last tick learned about a symbol; `/status` shows the value."""

    OPEN = "open"  # a new quote this tick
    CLOSED = "closed"  # Yahoo answered, but nothing traded since the last tick
    NO_DATA = "no_data"  # empty frame, delisted, rate limited or backing off


@dataclass(frozen=True, slots=True)
class _Chart:
    """The part of one chart response a tick needs, as plain Python values."""

    last: float
    ts: datetime
    session: tuple[datetime, datetime] | None


@dataclass(slots=True)
class _History:
    """Cached daily candles of one symbol, complete from `start` on."""

    start: date
    fetched_at: datetime
    bars: dict[date, Candle] = field(default_factory=dict)

    def since(self, first: date) -> list[Candle]:
        return [self.bars[day] for day in sorted(self.bars) if day >= first]


class YahooFeed:
    """The yfinance feed (feeds.base.Feed), with per-symbol market state for `/status`.

    `states` holds each symbol's SymbolState after its last tick, `data_time` the time of the
    last data Yahoo had for it. `health.requests` counts chart requests asked of yfinance (one
    per symbol per tick); its one-off cookie, crumb and time-zone requests are not counted.
    """

    name = SOURCE

    def __init__(
        self,
        clock: Callable[[], datetime],
        *,
        session: curl_requests.Session[Any] | None = None,
        period: str = "5d",
        timeout: float = 10.0,
        candle_ttl: timedelta = timedelta(minutes=30),
        backoff_base: float = 60.0,
        backoff_cap: float = 1800.0,
        rng: random.Random | None = None,
    ) -> None:
        self.health = FeedHealth()
        self.states: dict[str, SymbolState] = {}
        self.data_time: dict[str, datetime] = {}
        self.backoff = Backoff(backoff_base, backoff_cap, rng)
        self._clock = clock
        self._session = session
        self._period = period
        self._timeout = timeout
        self._candle_ttl = candle_ttl
        self._symbol_backoff: dict[str, Backoff] = {}
        self._history: dict[str, _History] = {}
        self._lock = asyncio.Lock()
        self._thread_lock = threading.Lock()

    @property
    def market_closed(self) -> set[str]:
        """Symbols whose market the last tick found closed (no new trade)."""
        return {sym for sym, state in self.states.items() if state is SymbolState.CLOSED}

    @property
    def no_data(self) -> set[str]:
        """Symbols for which the last tick got nothing (empty, delisted, rate limited)."""
        return {sym for sym, state in self.states.items() if state is SymbolState.NO_DATA}

    def retry_at(self, symbol: str | None = None) -> datetime | None:
        """When the feed (or one symbol) will be asked again; None when not backing off."""
        backoff = self.backoff if symbol is None else self._symbol_backoff.get(symbol)
        return None if backoff is None else backoff.retry_at

    async def quotes(self, symbols: list[str]) -> dict[str, Quote]:
        """One tick: a new quote for each symbol that traded since the last tick."""
        now = self._clock()
        wanted = list(dict.fromkeys(symbols))
        if not wanted or not self.backoff.ready(now):
            return {}
        due = [sym for sym in wanted if self._backoff_of(sym).ready(now)]
        if not due:
            return {}
        try:
            charts = await self._call(self._fetch_charts, due)
        except YFRateLimitError as err:
            self._feed_failed(now, due, f"rate limited ({err})")
            return {}
        except Exception as err:
            self._feed_failed(now, due, f"{type(err).__name__}: {err}")
            raise TransientFeedError(f"yahoo call failed: {err}") from err
        if any(isinstance(chart, _Chart) for chart in charts.values()):
            self._feed_ok(now)
        else:
            self.health.consecutive_failures += 1
        out: dict[str, Quote] = {}
        for sym, chart in charts.items():
            if isinstance(chart, str):
                self._symbol_failed(now, sym, chart)
                continue
            self._symbol_ok(sym)
            if self._closed(sym, chart, now):
                self.states[sym] = SymbolState.CLOSED
            else:
                self.states[sym] = SymbolState.OPEN
                out[sym] = Quote(symbol=sym, last=chart.last, ts=chart.ts, source=SOURCE)
            self.data_time[sym] = max(chart.ts, self.data_time.get(sym, chart.ts))
        return out

    async def candles(self, symbol: str, timeframe: str, since: datetime) -> list[Candle]:
        """Daily bars from `since` (day = the bar's exchange date), cached and topped up."""
        if timeframe != "1d":
            raise PermanentFeedError(f"yahoo feed serves 1d candles, not {timeframe!r}", symbol)
        now = self._clock()
        first = since.astimezone(UTC).date()
        hist = self._history.get(symbol)
        covered = hist is not None and hist.start <= first
        if hist is not None and covered and now - hist.fetched_at < self._candle_ttl:
            return hist.since(first)
        if not self.backoff.ready(now):
            if hist is not None and covered:
                return hist.since(first)
            raise TransientFeedError("yahoo: backing off after a failure", symbol)
        # A top-up re-reads the last cached day: it may have been a session still trading.
        start = max(hist.bars) if hist is not None and covered and hist.bars else first
        try:
            bars = await self._call(self._fetch_daily, symbol, start, _range_for(now.date(), start))
        except YFRateLimitError as err:
            self._feed_failed(now, [], f"rate limited ({err})")
            raise TransientFeedError("yahoo rate limit", symbol) from err
        except Exception as err:
            self._feed_failed(now, [], f"{type(err).__name__}: {err}")
            raise TransientFeedError(f"yahoo history failed: {err}", symbol) from err
        self._feed_ok(now)
        if hist is None or not covered:
            old = hist.bars if hist is not None else {}
            hist = self._history[symbol] = _History(first, now, dict(old))
        hist.fetched_at = now
        hist.bars.update((bar.day, bar) for bar in bars)
        return hist.since(first)

    async def close(self) -> None:
        """Wait for a running call to finish; the session belongs to whoever passed it in."""
        async with self._lock:
            pass

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        async with self._lock:
            return await asyncio.to_thread(self._serial, fn, *args)

    def _serial(self, fn: Callable[..., T], *args: Any) -> T:
        with self._thread_lock:  # a cancelled caller's thread may still be running
            return fn(*args)

    def _fetch_charts(self, symbols: list[str]) -> dict[str, _Chart | str]:
        """Worker thread: each symbol's chart or why there is none; a rate limit propagates."""
        out: dict[str, _Chart | str] = {}
        for sym in symbols:
            self.health.requests += 1
            try:
                out[sym] = self._fetch_chart(sym)
            except YFRateLimitError:
                raise
            except Exception as err:  # one bad symbol never spoils the tick
                log.debug("yahoo: chart of %s failed", sym, exc_info=True)
                out[sym] = f"{type(err).__name__}: {err}"
        return out

    def _fetch_chart(self, symbol: str) -> _Chart | str:
        ticker = yf.Ticker(symbol, session=self._session)
        frame = ticker.history(
            period=self._period,
            interval="1d",
            auto_adjust=False,
            actions=False,
            timeout=self._timeout,
        )
        if frame.empty:
            return "empty frame"
        meta: Mapping[str, Any] = ticker.history_metadata
        price = meta.get("regularMarketPrice")
        last = float(price) if _number(price) else float(frame["Close"].iloc[-1])
        ts = _utc(meta.get("regularMarketTime")) or _utc(frame.index[-1])
        if ts is None or not math.isfinite(last):
            return "no price or time in the chart"
        return _Chart(last, ts, _regular_session(meta.get("currentTradingPeriod")))

    def _fetch_daily(self, symbol: str, start: date, period: str) -> list[Candle]:
        """Worker thread: the daily bars of Yahoo range `period` from `start` on."""
        self.health.requests += 1
        frame = yf.Ticker(symbol, session=self._session).history(
            period=period,
            interval="1d",
            auto_adjust=False,
            actions=False,
            timeout=self._timeout,
        )
        return [
            Candle(
                day=stamp.date(),
                open=float(row.Open),
                high=float(row.High),
                low=float(row.Low),
                close=float(row.Close),
                volume=float(row.Volume) if _number(row.Volume) else None,
            )
            for stamp, row in zip(frame.index, frame.itertuples(index=False), strict=True)
            if stamp.date() >= start
        ]

    def _closed(self, symbol: str, chart: _Chart, now: datetime) -> bool:
        previous = self.data_time.get(symbol)
        if previous is not None:
            return chart.ts <= previous
        if chart.session is None:
            return False
        start, end = chart.session
        return not start <= now <= end

    def _backoff_of(self, symbol: str) -> Backoff:
        backoff = self._symbol_backoff.get(symbol)
        if backoff is None:
            backoff = Backoff(self.backoff.base, self.backoff.cap, self.backoff.rng)
            self._symbol_backoff[symbol] = backoff
        return backoff

    def _feed_failed(self, now: datetime, symbols: list[str], error: str) -> None:
        retry = self.backoff.failure(now)
        self.health.failed(now, error, "is not answering (network, or Yahoo rate-limiting us)")
        for sym in symbols:
            self.states[sym] = SymbolState.NO_DATA
        if self.backoff.outage_started:
            log.warning("yahoo: %s; next try at %s", error, retry.isoformat())

    def _feed_ok(self, now: datetime) -> None:
        self.health.ok(now)
        if self.backoff.success():
            log.info("yahoo: recovered")

    def _symbol_failed(self, now: datetime, symbol: str, reason: str) -> None:
        backoff = self._backoff_of(symbol)
        retry = backoff.failure(now)
        self.states[symbol] = SymbolState.NO_DATA
        self.health.last_error = f"no data for {symbol}: {reason}"
        self.health.last_error_at = now
        if backoff.outage_started:
            log.warning("yahoo: %s; next try at %s", self.health.last_error, retry.isoformat())

    def _symbol_ok(self, symbol: str) -> None:
        if self._backoff_of(symbol).success():
            log.info("yahoo: data for %s again", symbol)


def _range_for(today: date, start: date) -> str:
    """The shortest Yahoo range reaching back to `start`.

    A range, not `start=`: yfinance needs the symbol's time zone for `start=` and, once its
    time-zone probe has failed (a 404 at first sight), keeps failing for the process lifetime.
    """
    days = (today - start).days
    for period, span in _RANGES:
        if days <= span:
            return period
    return "max"


def _number(value: object) -> TypeGuard[numbers.Real]:
    return isinstance(value, numbers.Real) and math.isfinite(value)


def _utc(value: object) -> datetime | None:
    """A chart time (pandas Timestamp, datetime or epoch seconds) as an aware UTC datetime."""
    if isinstance(value, numbers.Real) and math.isfinite(value):
        return datetime.fromtimestamp(float(value), UTC)
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return None


def _regular_session(periods: object) -> tuple[datetime, datetime] | None:
    """The regular session from the chart's `currentTradingPeriod`, if it has one."""
    if not isinstance(periods, Mapping):
        return None
    regular = periods.get("regular")
    if not isinstance(regular, Mapping):
        return None
    start, end = _utc(regular.get("start")), _utc(regular.get("end"))
    return (start, end) if start is not None and end is not None else None
