"""Replay: daily OHLC(V) CSV files turned into time-ordered quotes for the engine.

Each bar becomes four observations: the open, then the high and the low in the order that is
plausible for the bar (a bar that closed up went down first, one that closed down went up
first), then the close. An intraday cross is so caught on its own day. A day's candle joins the
market's history after its close, so N-day windows only ever look at earlier days.

What daily bars cannot say, a replay does not invent:
- The high and low of a bar have no real time of day, so two-symbol rules (ratios, rotation)
  pair the legs only at the open and the close. A leg's last price pairs with the other's for
  up to `REPLAY_MAX_AGE` (4 days): Friday's close of a market closed at the weekend pairs with
  a 24/7 market through Monday, and a series whose file has ended stops pairing after that.
- Windows shorter than a day (`15m`, `4h`) are refused: they would compare made-up moments.
- A quote the sanity check rejects decides nothing: its symbol's rules are not evaluated then.
"""

from __future__ import annotations

import csv
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from alerts.book import Fire, RuleBook
from alerts.indicators import Market
from alerts.models import Candle, Quote, Rule, RuleError
from alerts.rules import format as rule_text
from alerts.sanity import Limits
from feeds.base import FeedHealth
from feeds.catalogue import METAL_ALIASES, Instrument

SOURCE = "replay"
REPLAY_MAX_AGE = timedelta(days=4)
_DATE_COLUMNS = ("date", "timestamp", "time", "datetime", "day")
_BAR_TIMES = (time(0, 0), time(8, 0), time(16, 0), time(23, 59, 59))


class ReplayError(ValueError):
    """A history file cannot be read; the message says which file and line."""


def read_candles(path: Path) -> tuple[str | None, list[Candle]]:
    """Read a daily OHLC(V) CSV; return the symbol named in a `symbol` column (if any) and bars."""
    with path.open(newline="", encoding="utf-8-sig") as handle:  # a BOM is not a column name
        reader = csv.DictReader(handle)
        fields = {name.strip().lower(): name for name in reader.fieldnames or []}
        date_key = next((fields[k] for k in _DATE_COLUMNS if k in fields), None)
        missing = [k for k in ("open", "high", "low", "close") if k not in fields]
        if date_key is None or missing:
            need = "date, open, high, low, close[, volume]"
            raise ReplayError(f"{path}: expected columns {need}, got {reader.fieldnames}")
        symbol: str | None = None
        candles: list[Candle] = []
        seen: dict[date, tuple[int, Candle]] = {}
        for line, row in enumerate(reader, start=2):
            try:
                candle = _candle(row, date_key, fields)
            except (TypeError, ValueError) as err:
                raise ReplayError(f"{path}:{line}: {err}") from err
            if candle.day in seen:
                first, earlier = seen[candle.day]
                if earlier != candle:
                    raise ReplayError(
                        f"{path}:{line}: {candle.day} appears again with other prices "
                        f"(first at line {first}); keep one row per day"
                    )
                continue  # an exact repeat changes nothing
            seen[candle.day] = (line, candle)
            candles.append(candle)
            if symbol is None and "symbol" in fields:
                symbol = row[fields["symbol"]].strip().upper() or None
    if not candles:
        raise ReplayError(f"{path}: no rows after the header")
    candles.sort(key=lambda c: c.day)
    return symbol, candles


def _candle(row: dict[str, str], date_key: str, fields: dict[str, str]) -> Candle:
    """One CSV row as a Candle; ValueError saying what is wrong with it."""
    prices = {}
    for name in ("open", "high", "low", "close"):
        text = (row[fields[name]] or "").strip()
        if not text:
            raise ValueError(f"{name} is empty")
        value = float(text)
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} is {text!r}, not a positive price")
        prices[name] = value
    if prices["high"] < max(prices["open"], prices["close"], prices["low"]) or prices["low"] > min(
        prices["open"], prices["close"]
    ):
        raise ValueError(f"not a bar: high and low must bound open and close ({prices})")
    volume = (row.get(fields.get("volume", ""), "") or "").strip()
    return Candle(
        day=date.fromisoformat((row[date_key] or "").strip()[:10]),
        volume=float(volume) if volume else None,
        **prices,
    )


def symbol_from_name(path: Path) -> str:
    """`btc_usdt_daily.csv` -> `BTC`, `XAG.csv` -> `XAG`: the file name's first word."""
    return re.split(r"[_\-. ]", path.stem, maxsplit=1)[0].upper()


def canonical_symbol(text: str) -> str:
    """Upper-case with the metal aliases resolved (`silver` -> XAG)."""
    upper = text.strip().upper()
    return METAL_ALIASES.get(upper, upper)


@dataclass(frozen=True, slots=True)
class ReplayCatalogue:
    """Resolves symbols of a replay: every symbol with data comes from the replay feed."""

    symbols: frozenset[str]

    def resolve(self, text: str) -> Instrument:
        """The replayed instrument for a symbol, or RuleError naming the symbols with data."""
        name = canonical_symbol(text)
        if name not in self.symbols:
            have = ", ".join(sorted(self.symbols))
            raise RuleError(f"no data for {name} (have: {have}); add --data SYM=PATH")
        return Instrument(name, SOURCE, name)


def bar_path(candle: Candle) -> list[tuple[datetime, float]]:
    """The bar's four observations with synthetic times on its day (UTC)."""
    up = candle.close >= candle.open
    middle = (candle.low, candle.high) if up else (candle.high, candle.low)
    prices = (candle.open, *middle, candle.close)
    return [
        (datetime.combine(candle.day, at, tzinfo=UTC), price)
        for at, price in zip(_BAR_TIMES, prices, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class Step:
    """One moment of a replay: the quotes observed then and the candles that closed with them."""

    time: datetime
    quotes: list[Quote]
    closed: list[tuple[str, Candle]]


def steps(
    series: dict[str, list[Candle]], start: date | None = None, end: date | None = None
) -> Iterator[Step]:
    """Merge all symbols' bar paths into one time-ordered stream (only days within the dates)."""
    quotes: dict[datetime, list[Quote]] = defaultdict(list)
    closed: dict[datetime, list[tuple[str, Candle]]] = defaultdict(list)
    for symbol, candles in series.items():
        for candle in candles:
            if (start and candle.day < start) or (end and candle.day > end):
                continue
            path = bar_path(candle)
            for ts, price in path:
                quotes[ts].append(Quote(symbol, price, ts, source=SOURCE, bar=True))
            closed[path[-1][0]].append((symbol, candle))
    for ts in sorted(quotes):
        yield Step(ts, quotes[ts], closed.get(ts, []))


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What a replay decided, with what the sanity checks threw away."""

    fires: list[Fire]
    rejected: list[tuple[datetime, str, str]]


def replay(
    series: dict[str, list[Candle]],
    rules: Iterable[Rule],
    start: date | None = None,
    end: date | None = None,
    limits: Limits | None = None,
    band: float | None = None,
) -> ReplayResult:
    """Run rules over history through the same Market and RuleBook as the live service.

    Bars before `start` still feed the market's history (so `breakout 20d` works from the first
    replayed day) but no rule sees them.
    """
    market = Market(limits or Limits(max_age=REPLAY_MAX_AGE))
    book = RuleBook() if band is None else RuleBook(band)
    for rule_id, rule in enumerate(rules, start=1):
        check_replayable(rule)
        book.add(rule_id, rule)
    fires: list[Fire] = []
    rejected: list[tuple[datetime, str, str]] = []
    warmup_end = start - timedelta(days=1) if start else None
    for step in steps(series, None, end):
        good: set[str] = set()
        for quote in step.quotes:
            problem = market.ingest(quote, step.time)
            if problem is None:
                good.add(quote.symbol)
            else:
                rejected.append((step.time, quote.symbol, problem.value))
        if warmup_end is None or step.time.date() > warmup_end:
            real_time = step.time.time() in (_BAR_TIMES[0], _BAR_TIMES[-1])
            fires.extend(book.evaluate(market, good, step.time, pairs=real_time).fires)
        for symbol, candle in step.closed:
            market.add_candles(symbol, [candle])
    return ReplayResult(fires, rejected)


def check_replayable(rule: Rule) -> None:
    """Raise RuleError for a rule that daily bars cannot answer (a window under a day)."""
    if rule.window is not None and rule.window % timedelta(days=1):
        text = rule_text(rule)
        raise RuleError(
            f"'{text}' compares moments less than a day apart, and a replay has daily bars "
            "only: use a window of whole days, e.g. 1d"
        )


class ReplayFeed:
    """A Feed that plays history as if live: each `quotes` call is the next moment of the data.

    Its `clock` is the replayed time, so the service that polls it sees the market of that day
    (staleness, N-day windows and cooldowns all run on replayed time). `finished` turns true
    after the last moment.
    """

    name = SOURCE

    def __init__(self, series: dict[str, list[Candle]], start: date | None = None) -> None:
        self.health = FeedHealth()
        self.finished = False
        self._series = series
        self._steps = list(steps(series, start))
        self._next = 0
        first = self._steps[0].time if self._steps else datetime.now(UTC)
        self._now = first

    @property
    def symbols(self) -> list[str]:
        return sorted(self._series)

    def clock(self) -> datetime:
        return self._now

    async def quotes(self, symbols: list[str]) -> dict[str, Quote]:
        if self._next >= len(self._steps):
            self.finished = True
            return {}
        step = self._steps[self._next]
        self._next += 1
        self._now = step.time
        self.health.last_ok = step.time
        wanted = set(symbols)
        return {q.symbol: q for q in step.quotes if q.symbol in wanted}

    async def candles(self, symbol: str, timeframe: str, since: datetime) -> list[Candle]:
        """Completed bars of the replayed history before the replayed day."""
        today = self._now.date()
        return [c for c in self._series.get(symbol, []) if since.date() <= c.day < today]

    async def close(self) -> None:
        return None
