"""Quotes and daily candles from one crypto venue through ccxt (async), one request per tick.

One `CcxtFeed` per venue holds one ccxt exchange for its whole life. Each tick asks for every
symbol in a single batched call (`fetch_bids_asks` where the venue has it, else
`fetch_tickers`); markets are loaded once, lazily. Failures of a whole request are wrapped in
the FeedError family and drive a `Backoff`: while it waits, ticks return `{}` without touching
the network, and an outage is logged once when it starts and once when it ends. Candle history
is paginated and cached per (symbol, timeframe), so later calls only top up the newest bars.

Quotes are not screened here: that happens once, in `alerts.indicators.Market.ingest`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import ccxt
import ccxt.async_support as ccxt_async

from alerts.models import Candle, Quote
from feeds.backoff import Backoff
from feeds.base import (
    FeedError,
    FeedHealth,
    PermanentFeedError,
    TransientFeedError,
    network_cause,
)

log = logging.getLogger(__name__)

RETRY_CAP = 30.0  # seconds: a venue back from an outage is noticed within this
PAGE_LIMIT = 1000  # bars per fetch_ohlcv call (Binance's spot maximum)
MAX_PAGES = 50  # a bound on one history fetch, whatever the venue does

PERMANENT_ERRORS: tuple[type[Exception], ...] = (
    ccxt.BadSymbol,
    ccxt.AuthenticationError,
    ccxt.PermissionDenied,
    ccxt.NotSupported,
)
# ccxt's own failures (NetworkError covers timeouts, rate limits, DDoS protection and
# ExchangeNotAvailable) and the surprises it lets through from aiohttp, asyncio (since 3.11
# asyncio.TimeoutError is TimeoutError) and JSON parsing. Not ValueError at large: a bug of
# ours must surface as a bug, not pass for a venue outage.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    ccxt.BaseError,
    aiohttp.ClientError,
    TimeoutError,
    json.JSONDecodeError,
)
RATE_LIMIT_ERRORS: tuple[type[Exception], ...] = (ccxt.RateLimitExceeded, ccxt.DDoSProtection)

# Defaults per venue, under the user's exchange_options. Most rules quote spot pairs, so Binance
# loads only its spot market list (one exchangeInfo request instead of three); a perpetual swap
# (`XAG/USDT:USDT`) widens it to the USD-M contracts the first time one is asked for.
VENUE_DEFAULTS: dict[str, dict[str, Any]] = {
    "binance": {"options": {"fetchMarkets": {"types": ["spot"]}}},
}
CONTRACT_MARKET_TYPES = ["spot", "linear"]


def utc_now() -> datetime:
    """The default clock."""
    return datetime.now(UTC)


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `base` with `extra` merged in, nested dicts merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass(slots=True)
class _History:
    """Cached raw bars `[ms, o, h, l, c, v]` of one (symbol, timeframe), complete from since_ms."""

    since_ms: int
    bars: dict[int, list[Any]] = field(default_factory=dict)


class CcxtFeed:
    """The Feed for one ccxt venue (e.g. `binance`), spoken to in ccxt symbols (`BTC/USDT`).

    `quotes` raises only FeedError subclasses: TransientFeedError when the venue cannot be
    reached or answers garbage (then it backs off: until `backoff.retry_at` it returns `{}`
    at once, sending nothing), PermanentFeedError when retrying cannot help (bad credentials,
    unsupported call). Symbols the venue does not list are left out and explained in
    `symbol_errors`; the other symbols are still quoted.
    """

    def __init__(
        self,
        venue: str,
        options: Mapping[str, Any] | None = None,
        *,
        clock: Callable[[], datetime] = utc_now,
        backoff: Backoff | None = None,
        page_limit: int = PAGE_LIMIT,
    ) -> None:
        self.venue = venue.lower()
        if self.venue not in ccxt_async.exchanges:
            raise ValueError(f"{venue!r} is not a ccxt exchange id")
        self.name = f"ccxt:{self.venue}"
        self.health = FeedHealth()
        self.backoff = backoff or Backoff(cap=RETRY_CAP)
        self.symbol_errors: dict[str, str] = {}
        self._clock = clock
        self._page_limit = page_limit
        config = deep_merge(VENUE_DEFAULTS.get(self.venue, {}), {"enableRateLimit": True})
        config = deep_merge(config, options or {})
        self.exchange: ccxt_async.Exchange = getattr(ccxt_async, self.venue)(config)
        self._markets_loaded = False
        self._markets_lock = asyncio.Lock()
        self._history: dict[tuple[str, str], _History] = {}

    async def quotes(self, symbols: list[str]) -> dict[str, Quote]:
        """One tick: one batched request for every listed symbol, quotes keyed by symbol.

        While backing off it returns `{}` at once without a request. When the whole request
        fails it raises, and only a FeedError (TransientFeedError or PermanentFeedError, from
        the original error), so the poll's `except FeedError` is all it needs; both kinds
        start or extend the backoff. A ticker without a price comes back with price 0, for
        the sanity check to reject and count.
        """
        now = self._clock()
        if not symbols or not self.backoff.ready(now):
            return {}
        wanted = list(dict.fromkeys(symbols))
        try:
            listed = await self._listed(wanted)
            tickers = await self._fetch_tickers(listed) if listed else {}
        except FeedError as err:
            self._failed(err, err, now)
            raise
        except PERMANENT_ERRORS as err:
            raise self._failed(PermanentFeedError(self._describe(err)), err, now) from err
        except TRANSIENT_ERRORS as err:
            raise self._failed(TransientFeedError(self._describe(err)), err, now) from err
        self._succeeded(now)
        result: dict[str, Quote] = {}
        for symbol in listed:
            quote = quote_from_ticker(symbol, tickers.get(symbol), now, self.name)
            if quote is not None:
                result[symbol] = quote
        return result

    async def candles(self, symbol: str, timeframe: str, since: datetime) -> list[Candle]:
        """Bars from `since`, oldest first; the last one may still be forming.

        The first call pages through history (`page_limit` bars per request); later calls
        for the same symbol and timeframe fetch only from the last cached bar on. Failures raise
        FeedError. While quotes are backing off it raises TransientFeedError without a request
        (the venue is known to be down); its own failures do not extend that backoff.
        """
        now = self._clock()
        retry_at = self.backoff.retry_at
        if retry_at is not None and now < retry_at:
            message = f"{self.venue}: backing off until {retry_at.isoformat(timespec='seconds')}"
            raise TransientFeedError(message, symbol)
        since_ms = int(since.timestamp() * 1000)
        key = (symbol, timeframe)
        cached = self._history.get(key)
        if cached is None or since_ms < cached.since_ms:
            cached = _History(since_ms)
            start = since_ms
        else:
            # Re-fetch the newest cached bar: it was probably still forming.
            start = max(cached.bars) if cached.bars else cached.since_ms
        try:
            if not await self._listed([symbol]):
                raise PermanentFeedError(self.symbol_errors[symbol], symbol)
            rows = await self._fetch_ohlcv(symbol, timeframe, start)
        except FeedError:
            raise
        except PERMANENT_ERRORS as err:
            raise PermanentFeedError(self._describe(err), symbol) from err
        except TRANSIENT_ERRORS as err:
            raise TransientFeedError(self._describe(err), symbol) from err
        for row in rows:
            cached.bars[int(row[0])] = row
        self._history[key] = cached
        return [_candle(cached.bars[ms]) for ms in sorted(cached.bars) if ms >= since_ms]

    async def close(self) -> None:
        """Close the exchange's HTTP session."""
        await self.exchange.close()

    async def __aenter__(self) -> CcxtFeed:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- requests ---------------------------------------------------------------------------

    async def _listed(self, symbols: list[str]) -> list[str]:
        """The symbols the venue lists (loading markets once); the rest go to symbol_errors."""
        async with self._markets_lock:  # quotes and candles may race to load them
            if not self._markets_loaded or self._needs_contracts(symbols):
                self._widen_to_contracts(symbols)
                self.health.requests += 1
                await self.exchange.load_markets(reload=True)
                self._markets_loaded = True
        markets = self.exchange.markets or {}
        listed = []
        for symbol in symbols:
            if symbol in markets:
                self.symbol_errors.pop(symbol, None)
                listed.append(symbol)
            elif symbol not in self.symbol_errors:
                self.symbol_errors[symbol] = f"{symbol} is not listed on {self.venue}"
                log.warning("%s: %s is not listed; it gets no quotes", self.venue, symbol)
        return listed

    def _needs_contracts(self, symbols: list[str]) -> bool:
        """A contract (`BASE/QUOTE:SETTLE`) is asked for that the loaded markets may lack."""
        options = self.exchange.options.get("fetchMarkets")
        types = options.get("types") if isinstance(options, dict) else None
        restricted = isinstance(types, list) and "linear" not in types
        markets = self.exchange.markets or {}
        return restricted and any(":" in s and s not in markets for s in symbols)

    def _widen_to_contracts(self, symbols: list[str]) -> None:
        if self._needs_contracts(symbols):
            self.exchange.options["fetchMarkets"] = {"types": CONTRACT_MARKET_TYPES}

    async def _fetch_tickers(self, symbols: list[str]) -> dict[str, Any]:
        """The request of a tick: one per market type (spot, swap), as venues serve each type
        from its own endpoint."""
        by_type: dict[str, list[str]] = {}
        for symbol in symbols:
            kind = str((self.exchange.markets or {}).get(symbol, {}).get("type", "spot"))
            by_type.setdefault(kind, []).append(symbol)
        tickers: dict[str, Any] = {}
        for group in by_type.values():
            self.health.requests += 1
            try:
                if self.exchange.has.get("fetchBidsAsks"):
                    found = await self.exchange.fetch_bids_asks(group)
                else:
                    found = await self.exchange.fetch_tickers(group)
            except ccxt.BadSymbol:
                # A pair was delisted since the markets were loaded: reload them next time.
                self._markets_loaded = False
                raise
            if not isinstance(found, dict) or not found:
                # ccxt turns an unparsable body into an empty result instead of an error.
                raise TransientFeedError(f"{self.venue} answered no tickers (malformed response?)")
            tickers.update(found)
        return tickers

    async def _fetch_ohlcv(self, symbol: str, timeframe: str, start_ms: int) -> list[list[Any]]:
        """Bars from `start_ms` to now, page by page."""
        step_ms = self.exchange.parse_timeframe(timeframe) * 1000
        now_ms = int(self._clock().timestamp() * 1000)
        rows: list[list[Any]] = []
        for _ in range(MAX_PAGES):
            self.health.requests += 1
            page = await self.exchange.fetch_ohlcv(
                symbol, timeframe, since=start_ms, limit=self._page_limit
            )
            page = [row for row in page if row[0] >= start_ms]
            if not page:
                break
            rows.extend(page)
            start_ms = int(page[-1][0]) + step_ms
            if len(page) < self._page_limit or start_ms > now_ms:
                break
        return rows

    # ---- bookkeeping ------------------------------------------------------------------------

    def _failed(self, err: FeedError, cause: BaseException, now: datetime) -> FeedError:
        """Record a whole-request failure, back off, log once per outage; return `err`."""
        self.health.failed(now, str(err), _plain_cause(cause))
        retry_after = self._retry_after() if isinstance(cause, RATE_LIMIT_ERRORS) else 0.0
        retry_at = self.backoff.failure(now, at_least=retry_after)
        if self.backoff.outage_started:
            log.warning(
                "feed down since %s UTC: %s %s; next try at %s UTC (%s)",
                now.astimezone(UTC).strftime("%H:%M:%S"),
                self.venue,
                self.health.cause,
                retry_at.astimezone(UTC).strftime("%H:%M:%S"),
                err,
            )
        else:
            log.debug("feed still down (%d failures) — %s", self.backoff.failures, err)
        return err

    def _succeeded(self, now: datetime) -> None:
        failures = self.backoff.failures
        self.health.ok(now)
        if self.backoff.success():
            log.info("%s feed recovered after %d failed attempts", self.venue, failures)

    def _retry_after(self) -> float:
        """Seconds from the last response's Retry-After header (0 when absent or a date)."""
        headers = self.exchange.last_response_headers or {}
        for name, value in headers.items():
            if name.lower() == "retry-after":
                try:
                    return max(0.0, float(value))
                except ValueError:
                    return 0.0
        return 0.0

    def _describe(self, err: BaseException) -> str:
        text = str(err).strip() or type(err).__name__
        return f"{self.venue}: {type(err).__name__}: {text[:300]}"


def _plain_cause(err: BaseException) -> str:
    """What a failure means for a user, in a few words (no URLs, no exception text).

    ccxt wraps network failures (DNS, proxy) in its own errors; the original is in the chain.
    """
    if isinstance(err, RATE_LIMIT_ERRORS):
        return "is rate-limiting our requests"
    if " 451 " in str(err) or "restricted location" in str(err).lower():
        return (
            "refuses requests from this country (HTTP 451) — choose another venue, "
            "e.g. TICKERBELL_EXCHANGE=kraken"
        )
    if isinstance(err, ccxt.AuthenticationError | ccxt.PermissionDenied):
        return "refuses our credentials — check TICKERBELL_EXCHANGE_OPTIONS"
    cause = network_cause(err)
    if cause is not None:
        return cause
    if isinstance(err, ccxt.ExchangeNotAvailable):
        return "is not available (the venue answers with errors)"
    if isinstance(err, ccxt.NetworkError):
        return "is unreachable — check the network or proxy"
    return "answers with errors"


def quote_from_ticker(symbol: str, ticker: Any, now: datetime, source: str) -> Quote | None:
    """A Quote from a ccxt ticker (price 0 when it carries none), None for no ticker; `now`
    stamps a ticker without a timestamp (Binance's spot book tickers)."""
    if not isinstance(ticker, dict):
        return None
    bid, ask, last = (
        _price(ticker.get("bid")),
        _price(ticker.get("ask")),
        _price(ticker.get("last")),
    )
    if last is None:
        # Book tickers carry no last trade. ccxt reads a price of 0 as None: a ticker with
        # no price at all is passed on as 0, so the sanity check rejects and counts it.
        last = (bid + ask) / 2 if bid is not None and ask is not None else 0.0
    stamp = ticker.get("timestamp")
    ts = datetime.fromtimestamp(stamp / 1000, UTC) if isinstance(stamp, int | float) else now
    return Quote(symbol=symbol, last=last, ts=ts, bid=bid, ask=ask, source=source)


def _price(value: Any) -> float | None:
    """A ticker price as float, or None when missing."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _candle(row: list[Any]) -> Candle:
    """A Candle from a ccxt OHLCV row; `day` is the UTC date of the bar's open."""
    ms, o, h, low, c, v = row[:6]
    day = datetime.fromtimestamp(ms / 1000, UTC).date()
    volume = None if v is None else float(v)
    return Candle(
        day=day, open=float(o), high=float(h), low=float(low), close=float(c), volume=volume
    )
