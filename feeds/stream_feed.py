"""Live quotes of one crypto venue over one websocket (ccxt.pro), for the symbols rules need.

A `StreamFeed` keeps one subscription (`watch_bids_asks`, else `watch_tickers`) for every spot
symbol it is told to `want`, and hands each batch of fresh quotes to the `on_quotes` callback
it was started with; the callback must not block (the service only queues them). The stream is
`up` from its first update after a (re)connection until it fails; while it is not up, the
service polls the venue instead, and `on_down` is called the moment it goes down so polling
takes over without waiting for its next turn.

ccxt.pro does not reconnect by itself. A failed connection (refused, closed by the venue, a ccxt
error) and a connection that has sent no update for `silence` seconds are both an outage: the
stream is closed (its ccxt exchange with it: no task or future of it survives) and dialled
again after a `Backoff` delay with jitter; the outage is logged once when it starts and once
when it ends. A malformed frame is one way a stream goes silent: ccxt's reader stops at a frame
it cannot parse (ccxt 4.5.90 logs it from asyncio's exception handler), so the silence limit
is what recovers from it. A change of the wanted symbols closes the connection and opens one
for the new set (ccxt.pro binds a subscription to its connection).

Updates are never lost between two waits: ccxt keeps the latest book of every symbol
(`exchange.bidsasks` / `exchange.tickers`), and after each wait the feed hands on every
symbol whose book changed since it last looked, the latest only (a burst is coalesced).
Contracts (`BASE/QUOTE:SETTLE`) are left to polling: venues stream each market type on its
own connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
import ccxt
import ccxt.pro as ccxt_pro

from alerts.models import Quote
from feeds.backoff import Backoff
from feeds.base import FeedHealth
from feeds.ccxt_feed import VENUE_DEFAULTS, deep_merge, quote_from_ticker, utc_now

log = logging.getLogger(__name__)

SILENCE_SECONDS = 30.0  # a stream with no update for this long is down
RETRY_CAP = 30.0  # seconds between attempts at most, like the polled feed

# What a failing stream raises through `watch_*`: ccxt's own errors (a connection closed or
# refused is a NetworkError), aiohttp's and asyncio's, and our silence timeout.
STREAM_ERRORS: tuple[type[Exception], ...] = (
    ccxt.BaseError,
    aiohttp.ClientError,
    OSError,  # TimeoutError and ConnectionError included
)


def streams(venue: str) -> bool:
    """Whether ccxt.pro can stream best bids and asks (or tickers) of this venue."""
    maker = getattr(ccxt_pro, venue.lower(), None)
    if maker is None:
        return False
    has = maker().has  # opens no connection: nothing to close
    return bool(has.get("watchBidsAsks") or has.get("watchTickers"))


class StreamFeed:
    """The websocket stream of one ccxt venue, spoken to in ccxt symbols (`BTC/USDT`)."""

    def __init__(
        self,
        venue: str,
        options: Mapping[str, Any] | None = None,
        *,
        clock: Callable[[], datetime] = utc_now,
        silence: float = SILENCE_SECONDS,
        backoff: Backoff | None = None,
    ) -> None:
        self.venue = venue.lower()
        self.name = f"ccxt:{self.venue}"
        self.health = FeedHealth()
        self.backoff = backoff or Backoff(cap=RETRY_CAP)
        self.silence = silence
        self.updates = 0  # quotes handed on
        self.connections = 0  # connections opened
        self._clock = clock
        config = deep_merge(VENUE_DEFAULTS.get(self.venue, {}), {"enableRateLimit": True})
        self._config = deep_merge(config, options or {})
        self._wanted: frozenset[str] = frozenset()
        self._streamed: frozenset[str] = frozenset()  # the wanted symbols actually subscribed
        self._changed = asyncio.Event()
        self._up = False
        self._markets: ccxt_pro.Exchange | None = None  # the exchange that loaded the markets
        self._task: asyncio.Task[None] | None = None
        self._on_quotes: Callable[[list[Quote]], None] = lambda quotes: None
        self._on_down: Callable[[], None] = lambda: None

    @property
    def up(self) -> bool:
        """True while updates flow: from the first one after connecting until a failure."""
        return self._up

    def covered(self) -> frozenset[str]:
        """The symbols this stream delivers now (none while it is down)."""
        return self._streamed if self._up else frozenset()

    def want(self, symbols: Iterable[str]) -> None:
        """The symbols to stream from now on; a different set resubscribes."""
        wanted = frozenset(symbols)
        if wanted != self._wanted:
            self._wanted = wanted
            self._changed.set()

    def start(self, on_quotes: Callable[[list[Quote]], None], on_down: Callable[[], None]) -> None:
        """Start streaming in a task of our own (closed by `close`)."""
        self._on_quotes, self._on_down = on_quotes, on_down
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"stream:{self.venue}")

    async def close(self) -> None:
        """Stop streaming and close the connection; nothing of the stream keeps running."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._up = False
        if self._markets is not None:
            await self._markets.close()
            self._markets = None

    # ---- the connection ---------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            if not self._wanted:
                self._set_down()
                await self._changed.wait()
            self._changed.clear()
            session = asyncio.create_task(self._session(self._wanted), name=f"{self.name} session")
            changed = asyncio.create_task(self._changed.wait(), name=f"{self.name} changes")
            try:
                await asyncio.wait({session, changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (session, changed):
                    task.cancel()
                await asyncio.gather(session, changed, return_exceptions=True)
            error = None if session.cancelled() else session.exception()
            if error is None:
                continue  # the wanted symbols changed: subscribe the new set at once
            if not isinstance(error, STREAM_ERRORS):  # a bug: shown, and the stream goes on
                log.error("%s stream failed unexpectedly", self.venue, exc_info=error)
            self._failed(error)
            retry_at = self.backoff.retry_at or utc_now()
            await asyncio.sleep(max(0.0, (retry_at - utc_now()).total_seconds()))

    async def _session(self, wanted: frozenset[str]) -> None:
        """One connection: subscribe, then hand on updates until it fails (raises)."""
        self._set_down()  # until the first update of this connection: polling covers
        exchange = self._exchange()
        keeps_markets = exchange is self._markets  # closed by `close`, after the last session
        try:
            if not exchange.markets:
                await exchange.load_markets()
            markets = exchange.markets or {}
            symbols = sorted(s for s in wanted if markets.get(s, {}).get("type") == "spot")
            self._streamed = frozenset(symbols)
            if not symbols:
                await asyncio.Event().wait()  # nothing to stream until the wanted set changes
            books = exchange.bidsasks if exchange.has.get("watchBidsAsks") else exchange.tickers
            watch = (
                exchange.watch_bids_asks
                if exchange.has.get("watchBidsAsks")
                else exchange.watch_tickers
            )
            self.connections += 1
            seen: dict[str, object] = {}
            while True:
                try:
                    await asyncio.wait_for(watch(symbols), self.silence)
                except TimeoutError:
                    raise TimeoutError(f"no update for {self.silence:g}s") from None
                fresh = [(s, books[s]) for s in symbols if books.get(s) is not seen.get(s)]
                if not fresh:
                    continue
                now = self._clock()
                quotes = []
                for symbol, ticker in fresh:
                    seen[symbol] = ticker
                    quote = quote_from_ticker(symbol, ticker, now, self.name)
                    if quote is not None:
                        quotes.append(quote)
                self._set_up(now)
                self.updates += len(quotes)
                self._on_quotes(quotes)
        finally:
            if keeps_markets:
                await exchange.close_ws_clients()
            else:
                await exchange.close()

    def _exchange(self) -> ccxt_pro.Exchange:
        """The exchange of one connection. Markets are loaded once, by the first exchange,
        which serves the first connection too; later connections get a fresh exchange with a
        copy of the markets (ccxt.pro binds streams to an exchange's bookkeeping)."""
        exchange: ccxt_pro.Exchange = getattr(ccxt_pro, self.venue)(self._config)
        if self._markets is None:
            self._markets = exchange
        elif self._markets.markets:
            exchange.set_markets_from_exchange(self._markets)
        return exchange

    # ---- state ------------------------------------------------------------------------------

    def _set_up(self, now: datetime) -> None:
        if self._up:
            return
        self._up = True
        failures = self.backoff.failures
        self.health.ok(now)
        if self.backoff.success():
            log.info("%s stream back after %d failed attempts", self.venue, failures)
        else:
            log.info("%s: streaming %d symbols", self.venue, len(self._streamed))

    def _set_down(self) -> None:
        if self._up:
            self._up = False
            self._on_down()

    def _failed(self, err: BaseException) -> None:
        """Record an outage, back off, log once per outage."""
        now = utc_now()
        self._set_down()
        text = f"{type(err).__name__}: {str(err).strip()[:200]}"
        self.health.failed(now, text, "stream is down")
        retry_at = self.backoff.failure(now)
        if self.backoff.outage_started:
            log.warning(
                "%s stream down since %s UTC (%s); polling meanwhile, next try at %s UTC",
                self.venue,
                now.astimezone(UTC).strftime("%H:%M:%S"),
                text,
                retry_at.astimezone(UTC).strftime("%H:%M:%S"),
            )
        else:
            log.debug(
                "%s stream still down (%d failures): %s", self.venue, self.backoff.failures, text
            )
