"""A fake Yahoo Finance on 127.0.0.1 that yfinance talks to over real HTTP.

It answers the endpoints yfinance 1.7 calls for prices: the cookie page (`fc.yahoo.com`), the
crumb (`/v1/test/getcrumb` on query1/query2), the consent page (`guce.yahoo.com`, only reached
after an error) and the v8 chart (`/v8/finance/chart/{symbol}`), in Yahoo's JSON shapes. The
quote endpoints (quoteSummary, v7 quote, fundamentals timeseries) answer "nothing found": yfinance
only asks them for a time zone after a symbol's first chart request came back 404.

yfinance is pointed at it with `FakeYahooSession`: a curl_cffi Session (the session type
yfinance 1.7 accepts) that turns Yahoo's `https://` URLs into `http://` and sends them through
the fake as a plain HTTP proxy. Host names, paths, query strings and cookie domains stay
Yahoo's, so yfinance's own cookie/crumb handling and chart parsing run unchanged; only TLS is
gone. Any other host is refused before it leaves the process and listed in `unexpected`.

Bars come from the real yfinance downloads in /work/shared/data (GC=F, SI=F daily). Everything
else in a response (bar timestamps, market times, trading periods, the crumb, the cookie) is
synthetic and marked so where it is made.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from aiohttp import web
from curl_cffi import requests as curl_requests
from support.local_server import serve_locally

DATA = Path("/work/shared/data")
FILES = {"GC=F": DATA / "gold_gcf_daily.csv", "SI=F": DATA / "silver_sif_daily.csv"}
NEW_YORK = ZoneInfo("America/New_York")
YAHOO_HOSTS = frozenset(
    {
        "query1.finance.yahoo.com",
        "query2.finance.yahoo.com",
        "fc.yahoo.com",
        "guce.yahoo.com",
        "consent.yahoo.com",
    }
)
CRUMB = "sYnTh3t1c.crumb"  # synthetic
VALID_RANGES = ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"]
_RANGE_BARS = {"1d": 1, "5d": 5, "1mo": 21, "3mo": 63, "6mo": 126, "1y": 252}

Mode = Literal["ok", "empty", "delisted"]


class UnexpectedHost(RuntimeError):
    """yfinance tried to reach a host the fake does not serve."""


@dataclass(frozen=True, slots=True)
class Bar:
    """One real daily bar from the CSV files."""

    day: date
    open: float
    high: float
    low: float
    close: float
    volume: int


@dataclass(frozen=True, slots=True)
class Seen:
    """One request as the fake received it."""

    host: str
    path: str
    query: dict[str, str]
    status: int

    @property
    def symbol(self) -> str | None:
        """The chart symbol of a chart request, else None."""
        prefix = "/v8/finance/chart/"
        return self.path[len(prefix) :] if self.path.startswith(prefix) else None


@dataclass(slots=True)
class Listing:
    """What the fake says about one symbol right now.

    `day` is the current session: bars up to it are visible. `time` is `regularMarketTime` and
    `price` `regularMarketPrice` (None: the day's real close). `mode` "empty" answers a chart
    with meta but no bars, "delisted" answers 404 with Yahoo's chart error.
    """

    day: date
    time: datetime
    price: float | None = None
    mode: Mode = "ok"


def load_bars(path: Path) -> list[Bar]:
    """Read one of the shared daily CSVs (date,open,high,low,close,volume)."""
    with path.open(newline="") as handle:
        return [
            Bar(
                day=date.fromisoformat(row["date"]),
                open=float(row["open"]),
                high=float(row["high"]),
                low=float(row["low"]),
                close=float(row["close"]),
                volume=int(float(row["volume"])),
            )
            for row in csv.DictReader(handle)
        ]


def bar_time(day: date) -> int:
    """A daily bar's timestamp: midnight New York (synthetic; yfinance keeps only the date)."""
    return int(datetime.combine(day, time(0), NEW_YORK).timestamp())


def session_window(day: date) -> tuple[datetime, datetime]:
    """A synthetic COMEX session for `day`: 18:00 New York the evening before to 17:00."""
    start = datetime.combine(day - timedelta(days=1), time(18), NEW_YORK)
    return start, datetime.combine(day, time(17), NEW_YORK)


@dataclass
class FakeYahoo:
    """The fake's state: bars per symbol, what each symbol shows now, and every request."""

    bars: dict[str, list[Bar]]
    listings: dict[str, Listing] = field(default_factory=dict)
    rate_limited: bool = False
    requests: list[Seen] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def proxy(self) -> str:
        """The fake's address as an HTTP proxy URL."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner, self.port = await serve_locally(app, access_log=None)

    async def close(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()

    def session(self) -> FakeYahooSession:
        """A session for yfinance that reaches Yahoo's hosts only through this fake."""
        return FakeYahooSession(self)

    def show(self, symbol: str, day: date, at: datetime, price: float | None = None) -> None:
        """Make `symbol` show session `day`, last traded at `at` (price None: the real close)."""
        mode = self.listings[symbol].mode if symbol in self.listings else "ok"
        self.listings[symbol] = Listing(day, at, price, mode)

    def charts(self) -> list[Seen]:
        """The chart requests received so far."""
        return [seen for seen in self.requests if seen.symbol is not None]

    def close_of(self, symbol: str, day: date) -> float:
        """The real close of `symbol` on `day`."""
        return next(bar.close for bar in self.bars[symbol] if bar.day == day)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        host = request.host.split(":")[0]
        response = self._answer(host, request.path, dict(request.query))
        self.requests.append(Seen(host, request.path, dict(request.query), response.status))
        return response

    def _answer(self, host: str, path: str, query: dict[str, str]) -> web.Response:
        if host not in YAHOO_HOSTS:
            self.unexpected.append(f"{host}{path}")
            return web.Response(status=502, text="fake yahoo: unknown host")
        if host == "fc.yahoo.com":
            # yfinance ignores this page's status and keeps only the A3 cookie it sets.
            # Synthetic value; not `Secure`, because the fake speaks plain HTTP. The expiry is
            # on the wall clock because yfinance checks its cached cookie against the wall clock.
            expires = datetime.now(UTC) + timedelta(days=365)
            cookie = (
                "A3=d=AQABBsynthetic&S=AQAAAsynthetic; "
                f"Expires={expires:%a, %d %b %Y %H:%M:%S} GMT; Max-Age=31557600; "
                "Domain=.yahoo.com; Path=/; SameSite=None"
            )
            return web.Response(
                status=404, text="<html>fake</html>", headers={"Set-Cookie": cookie}
            )
        if host in ("guce.yahoo.com", "consent.yahoo.com"):
            return web.Response(
                text="<html><body>no consent form</body></html>", content_type="text/html"
            )
        if self.rate_limited:
            return web.Response(status=429, text="Too Many Requests\r\n")
        if path == "/v1/test/getcrumb":
            return web.Response(text=CRUMB)
        if path.startswith("/v8/finance/chart/"):
            return self._chart(path.rsplit("/", 1)[1], query)
        return _no_quote_data(path)

    def _chart(self, symbol: str, query: dict[str, str]) -> web.Response:
        listing = self.listings.get(symbol)
        if listing is None or symbol not in self.bars or listing.mode == "delisted":
            error = {"code": "Not Found", "description": "No data found, symbol may be delisted"}
            missing = {"chart": {"result": None, "error": error}}
            return web.Response(
                status=404, text=json.dumps(missing), content_type="application/json"
            )
        visible = [bar for bar in self.bars[symbol] if bar.day <= listing.day]
        bars = _select(visible, query)
        today = visible[-1]
        price = today.close if listing.price is None else listing.price
        result: dict[str, Any] = {"meta": _meta(symbol, listing, today, price, query)}
        if listing.mode == "empty" or not bars:
            result["indicators"] = {"quote": [{}], "adjclose": [{}]}
        else:
            closes = [bar.close for bar in bars]
            result["timestamp"] = [bar_time(bar.day) for bar in bars]
            result["indicators"] = {
                "quote": [
                    {
                        "open": [bar.open for bar in bars],
                        "high": [bar.high for bar in bars],
                        "low": [bar.low for bar in bars],
                        "close": closes,
                        "volume": [bar.volume for bar in bars],
                    }
                ],
                "adjclose": [{"adjclose": closes}],
            }
        body: dict[str, Any] = {"chart": {"result": [result], "error": None}}
        return web.Response(text=json.dumps(body), content_type="application/json")


def _no_quote_data(path: str) -> web.Response:
    """The quote endpoints, empty: yfinance asks them for a time zone when a chart 404s."""
    if path.startswith("/v10/finance/quoteSummary/"):
        symbol = path.rsplit("/", 1)[1]
        error = {"code": "Not Found", "description": f"Quote not found for symbol: {symbol}"}
        body: dict[str, Any] = {"quoteSummary": {"result": None, "error": error}}
        return web.Response(status=404, text=json.dumps(body), content_type="application/json")
    if path == "/v7/finance/quote":
        body = {"quoteResponse": {"result": [], "error": None}}
    elif path.startswith("/ws/fundamentals-timeseries/v1/finance/timeseries/"):
        body = {"timeseries": {"result": [], "error": None}}
    else:
        return web.Response(status=404, text="fake yahoo: no such endpoint")
    return web.Response(text=json.dumps(body), content_type="application/json")


def _select(visible: list[Bar], query: dict[str, str]) -> list[Bar]:
    """The bars a chart query asks for: `period1`/`period2` seconds, or a `range`."""
    if "period1" in query:
        first = int(query["period1"])
        last = int(query.get("period2") or 2**40)
        return [bar for bar in visible if first <= bar_time(bar.day) < last]
    count = _RANGE_BARS.get(query.get("range", "1mo"), len(visible))
    return visible[-count:]


def _meta(
    symbol: str, listing: Listing, today: Bar, price: float, query: dict[str, str]
) -> dict[str, Any]:
    """Chart meta in Yahoo's shape; market time and trading periods are synthetic."""
    start, end = session_window(listing.day)
    offset = int((end.utcoffset() or timedelta(0)).total_seconds())
    zone = end.tzname() or "EST"

    def period(a: datetime, b: datetime) -> dict[str, Any]:
        return {
            "timezone": zone,
            "start": int(a.timestamp()),
            "end": int(b.timestamp()),
            "gmtoffset": offset,
        }

    name = {"GC=F": "Gold", "SI=F": "Silver"}.get(symbol, symbol)
    return {
        "currency": "USD",
        "symbol": symbol,
        "exchangeName": "CMX",
        "fullExchangeName": "COMEX",
        "instrumentType": "FUTURE",
        "firstTradeDate": 967608000,
        "regularMarketTime": int(listing.time.timestamp()),
        "hasPrePostMarketData": False,
        "gmtoffset": offset,
        "timezone": zone,
        "exchangeTimezoneName": "America/New_York",
        "regularMarketPrice": price,
        "regularMarketDayHigh": today.high,
        "regularMarketDayLow": today.low,
        "regularMarketVolume": today.volume,
        "longName": name,
        "shortName": name,
        "chartPreviousClose": today.open,
        "priceHint": 2,
        "currentTradingPeriod": {
            "pre": period(start, start),
            "regular": period(start, end),
            "post": period(end, end),
        },
        "dataGranularity": query.get("interval", "1d"),
        "range": query.get("range", ""),
        "validRanges": VALID_RANGES,
    }


class FakeYahooSession(curl_requests.Session[Any]):
    """A curl_cffi Session that sends Yahoo's URLs, as plain HTTP, through the fake."""

    def __init__(self, fake: FakeYahoo) -> None:
        super().__init__(proxies={"http": fake.proxy, "https": fake.proxy})
        self.fake = fake

    def request(self, method: Any, url: str, *args: Any, **kwargs: Any) -> Any:
        """Refuse any non-Yahoo host; rewrite https to http and send through the fake."""
        parts = urlsplit(url)
        if parts.hostname not in YAHOO_HOSTS:
            self.fake.unexpected.append(url)
            raise UnexpectedHost(f"fake yahoo: refusing request to {url}")
        plain = urlunsplit(("http", *parts[1:]))
        return super().request(method, plain, *args, **kwargs)
