"""The Feed protocol and the one error family every feed raises."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import aiohttp

from alerts.models import Candle, Quote


class FeedError(Exception):
    """A feed failed. Library errors are wrapped in a subclass, raised `from` the original."""

    def __init__(self, message: str, symbol: str | None = None) -> None:
        super().__init__(message)
        self.symbol = symbol


class TransientFeedError(FeedError):
    """Worth retrying with backoff: network, timeouts, rate limits, venue down."""


class PermanentFeedError(FeedError):
    """Retrying will not help: unknown symbol, bad credentials, unsupported call."""


@dataclass(slots=True)
class FeedHealth:
    """What `/status` and `/healthz` show about a feed: last success and last failure.

    `last_error` is the technical text for the log; `down_since` and `cause` describe the
    current outage in plain words for chat (None when the feed works).
    """

    last_ok: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    consecutive_failures: int = 0
    requests: int = 0
    down_since: datetime | None = None
    cause: str | None = None

    def failed(self, now: datetime, error: str, cause: str) -> None:
        """Record a failed request; the first of an outage sets `down_since`."""
        self.last_error, self.last_error_at, self.cause = error, now, cause
        self.consecutive_failures += 1
        if self.down_since is None:
            self.down_since = now

    def ok(self, now: datetime) -> None:
        """Record a success: the outage, if any, is over."""
        self.last_ok = now
        self.consecutive_failures = 0
        self.down_since = self.cause = None


def network_cause(err: BaseException) -> str | None:
    """What a network failure means for a user, in a few words (no URLs, no exception text);
    None when `err` is no network failure. Libraries wrap the original: the chain is read."""
    chain = [err]
    while len(chain) < 8 and (inner := chain[-1].__cause__ or chain[-1].__context__):
        chain.append(inner)
    if any(isinstance(e, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError)
           for e in chain):  # fmt: skip
        return "is unreachable through the proxy — check the proxy setting"
    if any(isinstance(e, socket.gaierror) for e in chain):
        return "cannot be found (DNS lookup failed) — check the network or DNS"
    if any(isinstance(e, TimeoutError) for e in chain):
        return "does not answer in time — check the network or proxy"
    if any(isinstance(e, aiohttp.ClientError | OSError) for e in chain):
        return "is unreachable — check the network or proxy"
    return None


class Feed(Protocol):
    """A source of quotes and candle history, spoken to in its own (native) symbols.

    `quotes` returns what it could parse, keyed by native symbol, with `Quote.symbol` set to
    the native symbol; sanity screening happens in one place after it (alerts.indicators.Market).
    It never raises for one bad symbol; a whole-request failure raises a FeedError.
    """

    name: str
    health: FeedHealth

    async def quotes(self, symbols: list[str]) -> dict[str, Quote]:
        """One tick: the current quote of each symbol it could get (one batched request)."""
        ...

    async def candles(self, symbol: str, timeframe: str, since: datetime) -> list[Candle]:
        """History bars from `since` (timeframe like `1d`), oldest first."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
