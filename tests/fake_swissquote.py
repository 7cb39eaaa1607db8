"""A local stand-in for Swissquote's public quote feed, over real HTTP on 127.0.0.1.

`GET /instrument/XAG/USD` answers what the real service answers in shape (a list of platforms,
each with spread profiles carrying bid and ask, and a time in ms): two platforms, three
profiles, the tightest being the book the test set (synthetic prices). Faults: 429, 500, an
HTML page, a hang past the client's timeout, a crossed book, a zero book.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from enum import Enum
from types import TracebackType
from typing import Any

from aiohttp import web
from support.local_server import serve_locally


class Fault(Enum):
    RATE_LIMIT = "rate_limit"
    SERVER_ERROR = "server_error"
    HTML = "html"
    HANG = "hang"
    CROSSED = "crossed"
    ZERO = "zero"


class FakeSwissquote:
    """Use as `async with FakeSwissquote(clock) as fake:`; then `fake.base_url`."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.clock = clock
        self.books: dict[str, tuple[float, float]] = {}
        self.stamps: dict[str, datetime] = {}  # a fixed time for an instrument (a closed market)
        self.fault: Fault | None = None
        self.requests: list[str] = []
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()
        self.port = 0

    async def __aenter__(self) -> FakeSwissquote:
        app = web.Application()
        app.router.add_get("/instrument/{base}/{quote}", self._quote)
        self._runner, self.port = await serve_locally(app)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/instrument"

    def set_book(self, instrument: str, bid: float, ask: float) -> None:
        self.books[instrument] = (bid, ask)

    def heal(self) -> None:
        self.fault = None
        self._release.set()
        self._release = asyncio.Event()

    async def _quote(self, request: web.Request) -> web.StreamResponse:
        instrument = f"{request.match_info['base']}/{request.match_info['quote']}"
        self.requests.append(instrument)
        if self.fault is Fault.RATE_LIMIT:
            return web.Response(status=429, text="Too Many Requests")
        if self.fault is Fault.SERVER_ERROR:
            return web.Response(status=500, text="Internal Server Error")
        if self.fault is Fault.HTML:
            return web.Response(
                text="<html><body>Maintenance</body></html>", content_type="text/html"
            )
        if self.fault is Fault.HANG:
            await self._release.wait()
        if instrument not in self.books:
            return web.json_response([])
        bid, ask = self.books[instrument]
        if self.fault is Fault.CROSSED:
            bid, ask = ask + (ask - bid), bid
        elif self.fault is Fault.ZERO:
            bid = ask = 0.0
        stamp = self.stamps.get(instrument, self.clock())
        body = json.dumps(_platforms(bid, ask, int(stamp.timestamp() * 1000)))
        return web.Response(text=body, content_type="application/json")


def _platforms(bid: float, ask: float, ms: int) -> list[dict[str, Any]]:
    """Two platforms: the book set, and wider profiles around it (as the real feed lists)."""
    spread = ask - bid

    def profile(name: str, widen: float) -> dict[str, Any]:
        extra = spread * widen / 2
        return {
            "spreadProfile": name,
            "bidSpread": round((spread + 2 * extra) * 100, 1),
            "askSpread": round((spread + 2 * extra) * 100, 1),
            "bid": round(bid - extra, 6),
            "ask": round(ask + extra, 6),
        }

    return [
        {
            "topo": {"platform": "MT4", "server": "Live1"},
            "spreadProfilePrices": [profile("Standard", 1.0), profile("Premium", 0.5)],
            "ts": ms,
        },
        {
            "topo": {"platform": "MT5", "server": "Live2"},
            "spreadProfilePrices": [profile("Prime", 0.0), profile("Standard", 1.0)],
            "ts": ms,
        },
    ]
