"""A fake Binance public REST API over real HTTP on 127.0.0.1, for ccxt feed tests and benches.

It answers the four public spot endpoints the ccxt feed uses, in Binance's own JSON shapes:
`/api/v3/exchangeInfo`, `/api/v3/ticker/bookTicker`, `/api/v3/ticker/24hr` and
`/api/v3/klines`. Every request is recorded (path, query, arrival time and the client it
names, for several processes on one fake), prices are settable per symbol,
and faults can be injected: a hang past the client timeout, 429 with Retry-After, 500,
malformed JSON, and bad books (empty, crossed, zero or negative prices). One client's requests
can be held (a poll in flight) and let go later.

With `streaming=True` it is also Binance's spot websocket (`/ws/<n>`, the URL ccxt.pro dials):
a client sends `{"method": "SUBSCRIBE", "params": ["btcusdt@bookTicker", ...], "id": n}`, is
answered `{"result": null, "id": n}`, and from then on gets a bookTicker frame
(`{"u", "s", "b", "B", "a", "A"}`) for each `publish` of a subscribed symbol. A test can drop
every connection, refuse new ones, go silent (connections stay open, pings are answered, no
frame is sent) and send malformed frames. Without `streaming` the websocket path answers 404,
as a venue whose websockets are blocked: a bot that streams by default then polls.

Data: BTC's default best bid/ask is the real depth20 snapshot in /work/shared/data; daily
klines for BTCUSDT/ETHUSDT/PAXGUSDT are the real Binance bars there when present, otherwise
a synthetic series. Symbols named `SYNnnnUSDT` and the prices of the other real-named symbols
are synthetic (made up here, not recorded), there only so a bench can ask for 100 symbols.

    async with FakeExchange() as fake:
        settings = Settings(exchange_options={"binance": fake.ccxt_options()})
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import WSMsgType, web
from support.local_server import serve_locally

# ../shared/data relative to the repository (/work/main -> /work/shared/data), read in place.
DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"

API = "/api/v3"
CLIENT = "X-Test-Client"
FAPI = "/fapi/v1"
WS = "/ws"
DAY_MS = 86_400_000
SYNTHETIC_COUNT = 120

# Fallback for when the data directory is absent: the same best bid/ask as the snapshot.
SNAPSHOT_BID, SNAPSHOT_ASK = 102571.17, 102571.18

# Real Binance spot pairs: (symbol, base, quote, tickSize, stepSize).
REAL_MARKETS: tuple[tuple[str, str, str, str, str], ...] = (
    ("BTCUSDT", "BTC", "USDT", "0.01000000", "0.00001000"),
    ("ETHUSDT", "ETH", "USDT", "0.01000000", "0.00010000"),
    ("PAXGUSDT", "PAXG", "USDT", "0.01000000", "0.00010000"),
    ("SOLUSDT", "SOL", "USDT", "0.01000000", "0.00100000"),
    ("XRPUSDT", "XRP", "USDT", "0.00010000", "0.10000000"),
    ("BNBUSDT", "BNB", "USDT", "0.01000000", "0.00100000"),
    ("DOGEUSDT", "DOGE", "USDT", "0.00001000", "1.00000000"),
    ("ADAUSDT", "ADA", "USDT", "0.00010000", "0.10000000"),
    ("LTCUSDT", "LTC", "USDT", "0.01000000", "0.00100000"),
    ("ETHBTC", "ETH", "BTC", "0.00001000", "0.00010000"),
)
# Illustrative (synthetic) last prices for the real-named pairs without a data file.
ILLUSTRATIVE_LAST: dict[str, float] = {
    "SOLUSDT": 135.42,
    "XRPUSDT": 2.0513,
    "BNBUSDT": 905.37,
    "DOGEUSDT": 0.14523,
    "ADAUSDT": 0.4102,
    "LTCUSDT": 81.35,
    "ETHBTC": 0.03251,
}
KLINE_FILES = {
    "BTCUSDT": "btc_usdt_daily.csv",
    "ETHUSDT": "eth_usdt_daily.csv",
    "PAXGUSDT": "paxg_usdt_daily.csv",
}


class Fault(Enum):
    """What the fake does wrong until `heal()`."""

    TIMEOUT = "timeout"  # hang longer than the client's timeout
    RATE_LIMIT = "rate_limit"  # 429 with Retry-After
    SERVER_ERROR = "server_error"  # 500
    MALFORMED_JSON = "malformed_json"  # 200 with a truncated body
    EMPTY_BOOK = "empty_book"  # bid/ask empty strings
    CROSSED_BOOK = "crossed_book"  # bid above ask
    ZERO_PRICE = "zero_price"  # every price "0.00000000"
    NEGATIVE_PRICE = "negative_price"  # every price below zero

    @property
    def whole_request(self) -> bool:
        """True for faults that break the whole response, False for bad data in a good one."""
        return self in (Fault.TIMEOUT, Fault.RATE_LIMIT, Fault.SERVER_ERROR, Fault.MALFORMED_JSON)


@dataclass(frozen=True, slots=True)
class Request:
    """One request the fake received."""

    path: str
    query: dict[str, str]
    client: str = ""  # the CLIENT header, which `ccxt_options(client=...)` sends
    at: float = 0.0  # when it arrived (time.monotonic)


@dataclass(slots=True)
class Book:
    """Top of book and last trade of one symbol."""

    bid: float
    ask: float
    last: float


def has_data(name: str = "btc_usdt_daily.csv") -> bool:
    """Whether the shared market data file is present."""
    return (DATA_DIR / name).is_file()


def _fmt(value: float) -> str:
    return f"{value:.8f}"


def _day_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def load_klines(name: str) -> list[list[Any]] | None:
    """Real daily bars from a shared CSV as Binance kline rows, or None when the file is absent."""
    path = DATA_DIR / name
    if not path.is_file():
        return None
    rows: list[list[Any]] = []
    with path.open(newline="") as f:
        for rec in csv.DictReader(f):
            day = date.fromisoformat(rec["date"])
            rows.append(
                _kline(day, rec["open"], rec["high"], rec["low"], rec["close"], rec["volume"])
            )
    return rows


def _kline(day: date, o: str, h: str, low: str, c: str, v: str) -> list[Any]:
    # Binance layout; quote volume, trade count and taker volumes are not in the data: zeros.
    start = _day_ms(day)
    return [start, o, h, low, c, v, start + DAY_MS - 1, "0", 0, "0", "0", "0"]


def synthetic_klines(end: date, days: int, base: float) -> list[list[Any]]:
    """A smooth made-up daily series ending on `end` (used when the real data is absent)."""
    rows = []
    for i in range(days):
        day = end - timedelta(days=days - 1 - i)
        mid = base * (1 + 0.2 * math.sin(i / 30))
        o, c = mid * 0.995, mid * 1.005
        rows.append(_kline(day, _fmt(o), _fmt(c * 1.01), _fmt(o * 0.99), _fmt(c), "1000.0"))
    return rows


def _market(symbol: str, base: str, quote: str, tick: str, step: str) -> dict[str, Any]:
    """One `exchangeInfo` symbol entry in Binance's spot shape."""
    return {
        "symbol": symbol,
        "status": "TRADING",
        "baseAsset": base,
        "baseAssetPrecision": 8,
        "quoteAsset": quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": tick,
                "maxPrice": "1000000.00000000",
                "tickSize": tick,
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": step,
                "maxQty": "9000.00000000",
                "stepSize": step,
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": "5.00000000",
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


def _perpetual(symbol: str) -> dict[str, Any]:
    """One USD-M `exchangeInfo` entry for a perpetual settled in USDT (`XAGUSDT`)."""
    base = symbol.removesuffix("USDT")
    return {
        "symbol": symbol,
        "pair": symbol,
        "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000,
        "onboardDate": 1767225600000,
        "status": "TRADING",
        "baseAsset": base,
        "quoteAsset": "USDT",
        "marginAsset": "USDT",
        "pricePrecision": 2,
        "quantityPrecision": 3,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COMMODITY",
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": "0.01",
                "maxPrice": "100000",
                "tickSize": "0.01",
            },
            {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000", "stepSize": "0.001"},
        ],
        "orderTypes": ["LIMIT", "MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK"],
    }


def _utc_now() -> datetime:
    return datetime.now(UTC)


class FakeExchange:
    """The fake venue. Use as `async with FakeExchange() as fake:`; `base_url` is then set."""

    def __init__(
        self,
        clock: Callable[[], datetime] = _utc_now,
        retry_after: int = 7,
        hang_seconds: float = 10.0,
        synthetic: int = SYNTHETIC_COUNT,
        streaming: bool = False,
    ) -> None:
        self.clock = clock
        self.streaming = streaming
        self.silent = False  # connections stay open but no frame is sent
        self.refusing = False  # new websocket connections are refused (HTTP 503)
        self.ws_connections = 0  # websocket connections accepted so far
        self.ws_messages: list[dict[str, Any]] = []  # what clients sent, in order
        self.frames_sent = 0
        self._sockets: dict[web.WebSocketResponse, set[str]] = {}  # socket -> its streams
        self._update_id = 0
        self.retry_after = retry_after
        self.hang_seconds = hang_seconds
        self.requests: list[Request] = []
        self.fault: Fault | None = None
        self.fault_symbols: frozenset[str] | None = None
        self.markets: dict[str, dict[str, Any]] = {}
        self.futures: dict[str, tuple[float, float]] = {}  # perpetual id -> (bid, ask)
        self.books: dict[str, Book] = {}
        self.klines: dict[str, list[list[Any]]] = {}
        self.base_url = ""
        self._release = asyncio.Event()
        self._held: dict[str, asyncio.Event] = {}  # client -> let go (see `hold`)
        self.holding: list[str] = []  # clients with a request held now
        self._runner: web.AppRunner | None = None
        self._build(synthetic)

    def _build(self, synthetic: int) -> None:
        for symbol, base, quote, tick, step in REAL_MARKETS:
            self.markets[symbol] = _market(symbol, base, quote, tick, step)
        for i in range(synthetic):
            base = f"SYN{i:03d}"
            self.markets[f"{base}USDT"] = _market(f"{base}USDT", base, "USDT", "0.0001", "0.01")
        end = date(2026, 1, 5)  # the last day of the shared data
        for symbol, name in KLINE_FILES.items():
            fallback = {"BTCUSDT": 90000.0, "ETHUSDT": 3000.0, "PAXGUSDT": 4400.0}[symbol]
            self.klines[symbol] = load_klines(name) or synthetic_klines(end, 1101, fallback)
        for symbol in self.markets:
            if symbol in self.klines:
                last = float(self.klines[symbol][-1][4])
            elif symbol in ILLUSTRATIVE_LAST:
                last = ILLUSTRATIVE_LAST[symbol]
            else:
                last = 1.0 + int(symbol[3:6]) / 10
            tick_size = float(self.markets[symbol]["filters"][0]["tickSize"])
            self.books[symbol] = Book(bid=last - tick_size, ask=last, last=last)
        bid, ask = _snapshot_top()
        self.books["BTCUSDT"] = Book(bid=bid, ask=ask, last=ask)

    async def __aenter__(self) -> FakeExchange:
        app = web.Application()
        app.router.add_get(f"{API}/exchangeInfo", self._exchange_info)
        app.router.add_get(f"{API}/ticker/bookTicker", self._book_ticker)
        app.router.add_get(f"{API}/ticker/24hr", self._ticker_24hr)
        app.router.add_get(f"{API}/klines", self._klines)
        app.router.add_get(f"{FAPI}/exchangeInfo", self._futures_info)
        app.router.add_get(f"{FAPI}/ticker/bookTicker", self._futures_book_ticker)
        app.router.add_get(f"{WS}/{{stream}}", self._websocket)
        app.middlewares.append(self._record_and_fault)
        self._runner, port = await serve_locally(app, shutdown_timeout=1.0)
        self.base_url = f"http://127.0.0.1:{port}{API}"
        self.ws_url = f"ws://127.0.0.1:{port}{WS}"
        self.futures_url = f"http://127.0.0.1:{port}{FAPI}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release.set()
        for client in list(self._held):
            self.let_go(client)
        await self.drop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---- controls used by tests -------------------------------------------------------------

    def ccxt_options(self, timeout_ms: int = 500, client: str = "") -> dict[str, Any]:
        """ccxt constructor options pointing binance's public spot API at this fake; with
        `client`, each request names it (several processes on one fake: who polled).

        `timeout_on_exit` 0 skips the 250 ms ccxt sleeps in `close()` to let TLS transports
        drain: there is no TLS to 127.0.0.1.
        """
        futures = {
            name: self.futures_url for name in ("fapiPublic", "fapiPublicV2", "fapiPublicV3")
        }
        return {
            "urls": {
                "api": {
                    "public": self.base_url,
                    "private": self.base_url,
                    "ws": {"spot": self.ws_url},
                    **futures,
                }
            },
            "options": {"fetchMarkets": {"types": ["spot"]}},
            "timeout": timeout_ms,
            "timeout_on_exit": 0,
            **({"headers": {CLIENT: client}} if client else {}),
        }

    def set_price(self, symbol: str, bid: float, ask: float, last: float | None = None) -> None:
        """Set a symbol's book (Binance id, e.g. `BTCUSDT`); `last` defaults to the ask."""
        self.books[symbol] = Book(bid=bid, ask=ask, last=ask if last is None else last)

    def inject(self, fault: Fault, symbols: Iterable[str] | None = None) -> None:
        """Misbehave on every request from now until `heal()`; book faults only for `symbols`."""
        self.fault = fault
        self.fault_symbols = None if symbols is None else frozenset(symbols)
        self._release.clear()

    def heal(self) -> None:
        """Stop misbehaving and let any hanging request finish."""
        self.fault = None
        self.fault_symbols = None
        self._release.set()

    def hold(self, client: str) -> None:
        """Keep every REST request of one client waiting (a poll in flight) until
        `let_go(client)`; it is then answered with the prices of that moment."""
        self._held[client] = asyncio.Event()

    def let_go(self, client: str) -> None:
        """Answer the client's held requests, and hold no more."""
        released = self._held.pop(client, None)
        if released is not None:
            released.set()

    async def publish(self, symbol: str, bid: float, ask: float, rest: bool = True) -> int:
        """Set a symbol's book (Binance id) and send its bookTicker frame to every connection
        subscribed to it (none while silent); returns how many frames were sent. `rest` False
        leaves the book that REST answers with as it was (a price only the stream has seen)."""
        if rest:
            self.set_price(symbol, bid, ask)
        if self.silent:
            return 0
        self._update_id += 1
        frame = json.dumps(
            {
                "u": self._update_id,
                "s": symbol,
                "b": _fmt(bid),
                "B": "0.38980000",
                "a": _fmt(ask),
                "A": "5.54123000",
            }
        )
        stream = f"{symbol.lower()}@bookticker"
        sent = 0
        for socket, streams in list(self._sockets.items()):
            if stream in streams and not socket.closed:
                with contextlib.suppress(ConnectionError):
                    await socket.send_str(frame)
                    sent += 1
        self.frames_sent += sent
        return sent

    async def send_raw(self, text: str) -> None:
        """Send one frame of any text (a malformed one) to every open connection."""
        for socket in list(self._sockets):
            if not socket.closed:
                with contextlib.suppress(ConnectionError):
                    await socket.send_str(text)

    async def drop(self) -> None:
        """Close every websocket connection from the venue's side."""
        sockets, self._sockets = list(self._sockets), {}
        for socket in sockets:
            await socket.close(code=1001, message=b"going away")

    def subscribed(self) -> set[str]:
        """The Binance ids subscribed on open connections (`BTCUSDT`)."""
        return {
            stream.split("@")[0].upper()
            for socket, streams in self._sockets.items()
            if not socket.closed
            for stream in streams
        }

    @property
    def open_connections(self) -> int:
        return sum(1 for socket in self._sockets if not socket.closed)

    def count(self, endpoint: str | None = None) -> int:
        """Requests received, in total or for one endpoint (`exchangeInfo`, `ticker/bookTicker`,
        or a full path such as `fapi/v1/exchangeInfo`)."""
        if endpoint is None:
            return len(self.requests)
        return sum(1 for r in self.requests if r.path in (f"{API}/{endpoint}", f"/{endpoint}"))

    def add_kline(self, symbol: str, day: date, o: float, h: float, low: float, c: float) -> None:
        """Append (or replace the last) daily bar of `symbol`."""
        row = _kline(day, _fmt(o), _fmt(h), _fmt(low), _fmt(c), "1.0")
        rows = self.klines.setdefault(symbol, [])
        if rows and rows[-1][0] == row[0]:
            rows[-1] = row
        else:
            rows.append(row)

    # ---- HTTP -------------------------------------------------------------------------------

    @web.middleware
    async def _record_and_fault(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        client = request.headers.get(CLIENT, "")
        self.requests.append(Request(request.path, dict(request.query), client, time.monotonic()))
        if request.path.startswith(f"{WS}/"):
            websocket: web.StreamResponse = await handler(request)  # REST faults do not apply
            return websocket
        held = self._held.get(client)
        if held is not None:
            self.holding.append(client)
            try:
                await held.wait()
            finally:
                self.holding.remove(client)
        fault = self.fault
        if fault is Fault.TIMEOUT:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), self.hang_seconds)
            return web.json_response({"code": -1007, "msg": "Timeout waiting for response."})
        if fault is Fault.RATE_LIMIT:
            return web.json_response(
                {"code": -1003, "msg": "Too many requests; current limit is 6000 request weight."},
                status=429,
                headers={"Retry-After": str(self.retry_after)},
            )
        if fault is Fault.SERVER_ERROR:
            return web.Response(status=500, text="Internal Server Error")
        if fault is Fault.MALFORMED_JSON:
            return web.Response(
                text='[{"symbol":"BTCUSDT","bidPrice":"1025', content_type="application/json"
            )
        response: web.StreamResponse = await handler(request)
        return response

    async def _exchange_info(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "timezone": "UTC",
                "serverTime": self._now_ms(),
                "rateLimits": [
                    {
                        "rateLimitType": "REQUEST_WEIGHT",
                        "interval": "MINUTE",
                        "intervalNum": 1,
                        "limit": 6000,
                    },
                    {
                        "rateLimitType": "ORDERS",
                        "interval": "SECOND",
                        "intervalNum": 10,
                        "limit": 100,
                    },
                    {
                        "rateLimitType": "RAW_REQUESTS",
                        "interval": "MINUTE",
                        "intervalNum": 5,
                        "limit": 61000,
                    },
                ],
                "exchangeFilters": [],
                "symbols": list(self.markets.values()),
            }
        )

    async def _futures_info(self, request: web.Request) -> web.Response:
        """USD-M futures: the metal perpetuals (`XAUUSDT`, `XAGUSDT`), Binance's shape."""
        symbols = [_perpetual(symbol) for symbol in self.futures]
        return web.json_response(
            {"timezone": "UTC", "serverTime": self._now_ms(), "symbols": symbols}
        )

    async def _futures_book_ticker(self, request: web.Request) -> web.Response:
        """Every perpetual's book (ccxt asks for all of them and picks)."""
        rows = [
            {
                "symbol": symbol,
                "bidPrice": _fmt(bid),
                "bidQty": "12.5",
                "askPrice": _fmt(ask),
                "askQty": "9.1",
                "time": self._now_ms(),
            }
            for symbol, (bid, ask) in self.futures.items()
        ]
        return web.json_response(rows)

    def _selected(self, request: web.Request) -> list[str] | web.Response:
        """The `symbol`/`symbols` of a ticker request, or Binance's error for an unknown one."""
        if "symbols" in request.query:
            try:
                wanted = json.loads(request.query["symbols"])
            except ValueError:
                return _error(-1100, "Illegal characters found in parameter 'symbols'.")
        elif "symbol" in request.query:
            wanted = [request.query["symbol"]]
        else:
            wanted = list(self.markets)
        if any(s not in self.markets for s in wanted):
            return _error(-1121, "Invalid symbol.")
        return list(wanted)

    def _prices(self, symbol: str) -> tuple[str, str, str]:
        """(bid, ask, last) as Binance strings, with any book fault applied."""
        book = self.books[symbol]
        bid, ask, last = _fmt(book.bid), _fmt(book.ask), _fmt(book.last)
        if self.fault is None or self.fault.whole_request:
            return bid, ask, last
        if self.fault_symbols is not None and symbol not in self.fault_symbols:
            return bid, ask, last
        if self.fault is Fault.EMPTY_BOOK:
            return "", "", ""
        if self.fault is Fault.CROSSED_BOOK:
            return ask, bid, last
        if self.fault is Fault.ZERO_PRICE:
            return _fmt(0), _fmt(0), _fmt(0)
        return _fmt(-book.bid), _fmt(-book.ask), _fmt(-book.last)

    async def _book_ticker(self, request: web.Request) -> web.Response:
        selected = self._selected(request)
        if isinstance(selected, web.Response):
            return selected
        rows = []
        for symbol in selected:
            bid, ask, _ = self._prices(symbol)
            rows.append(
                {
                    "symbol": symbol,
                    "bidPrice": bid,
                    "bidQty": "0.38980000",
                    "askPrice": ask,
                    "askQty": "5.54123000",
                }
            )
        single = "symbol" in request.query
        return web.json_response(rows[0] if single else rows)

    async def _ticker_24hr(self, request: web.Request) -> web.Response:
        selected = self._selected(request)
        if isinstance(selected, web.Response):
            return selected
        now = self._now_ms()
        rows = []
        for symbol in selected:
            bid, ask, last = self._prices(symbol)
            book = self.books[symbol]
            rows.append(
                {
                    "symbol": symbol,
                    "priceChange": "0.00000000",
                    "priceChangePercent": "0.000",
                    "weightedAvgPrice": _fmt(book.last),
                    "prevClosePrice": _fmt(book.last),
                    "lastPrice": last,
                    "lastQty": "0.00100000",
                    "bidPrice": bid,
                    "bidQty": "0.38980000",
                    "askPrice": ask,
                    "askQty": "5.54123000",
                    "openPrice": _fmt(book.last),
                    "highPrice": _fmt(book.last),
                    "lowPrice": _fmt(book.last),
                    "volume": "1.00000000",
                    "quoteVolume": _fmt(book.last),
                    "openTime": now - DAY_MS,
                    "closeTime": now,
                    "firstId": 1,
                    "lastId": 2,
                    "count": 2,
                }
            )
        single = "symbol" in request.query
        return web.json_response(rows[0] if single else rows)

    async def _klines(self, request: web.Request) -> web.Response:
        q = request.query
        symbol = q.get("symbol", "")
        if symbol not in self.markets:
            return _error(-1121, "Invalid symbol.")
        if q.get("interval") != "1d":
            return _error(-1120, "Invalid interval.")  # the fake only has daily bars
        limit = min(int(q.get("limit", 500)), 1000)
        start = int(q.get("startTime", 0))
        end = int(q.get("endTime", 2**62))
        rows = [r for r in self.klines.get(symbol, []) if start <= r[0] <= end]
        # Without startTime Binance returns the most recent bars.
        rows = rows[:limit] if "startTime" in q else rows[-limit:]
        return web.json_response(rows)

    def _now_ms(self) -> int:
        return int(self.clock().timestamp() * 1000)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        """Binance's spot stream endpoint: SUBSCRIBE/UNSUBSCRIBE, then bookTicker frames."""
        if not self.streaming:
            return web.Response(status=404, text="Not Found")
        if self.refusing:
            return web.Response(status=503, text="Service Unavailable")
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(request)
        self.ws_connections += 1
        streams: set[str] = set()
        self._sockets[socket] = streams
        try:
            async for message in socket:
                if message.type is not WSMsgType.TEXT:
                    continue
                try:
                    body = json.loads(message.data)
                except ValueError:
                    continue
                if not isinstance(body, dict):
                    continue
                self.ws_messages.append(body)
                names = {str(p).lower() for p in body.get("params") or []}
                if body.get("method") == "SUBSCRIBE":
                    streams |= names
                elif body.get("method") == "UNSUBSCRIBE":
                    streams -= names
                if not self.silent:
                    await socket.send_json({"result": None, "id": body.get("id")})
        finally:
            self._sockets.pop(socket, None)
        return socket


def _error(code: int, msg: str) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=400)


def _snapshot_top() -> tuple[float, float]:
    """Best bid/ask of the real depth20 snapshot (or the same numbers when it is absent)."""
    path = DATA_DIR / "binance_btcusdt_depth20_snapshot.json"
    if not path.is_file():
        return SNAPSHOT_BID, SNAPSHOT_ASK
    data = json.loads(path.read_text())["data"]
    return float(data["bids"][0][0]), float(data["asks"][0][0])
