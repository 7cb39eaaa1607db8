"""Read-only answers about the market for the command layer: a symbol's status, a price chart
and the rotation of gold, silver, BTC and ETH, from the running service's view of the market.

The command layer checks the caller and the arguments and resolves the symbol; these only read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from alerts import rules
from alerts.models import Candle, Rule
from bot.charts import RANGES, ChartCache, Level, minute_key, price_spec, rotation_spec
from bot.results import Book, Chart, Moves, Nearby, NoHistory, Ratio, Rotation, Status

if TYPE_CHECKING:
    from bot.commands import MarketView

RANGE_DAYS = 20  # the high-low range a status shows
NEAREST = 3  # levels a status shows
ROTATION = ("XAU", "XAG", "BTC", "ETH")
ROTATION_WINDOWS = (("1d", 1), ("1w", 7), ("1m", 30))


async def status(view: MarketView, symbol: str, levels: Sequence[Rule], now: datetime) -> Status:
    """Price, day change, book, N-day range, the nearest of `levels` (a chat's price levels on
    the symbol) and where the price comes from."""
    quote = await view.fresh_quote(symbol)
    note = view.feed_note(symbol)
    if quote is None:
        return Status(symbol, note)
    market, price = view.market, quote.price
    ago = market.price_ago(symbol, timedelta(days=1), now)
    book = None
    if quote.bid is not None and quote.ask is not None and quote.spread_pct is not None:
        median = market.spread_baseline(symbol)
        usual = None if median is None else median * price / 100
        book = Book(quote.bid, quote.ask, quote.spread_pct, usual)
    high = market.prior_high(symbol, RANGE_DAYS, now.date())
    low = market.prior_low(symbol, RANGE_DAYS, now.date())
    nearest = sorted(levels, key=lambda r: abs(r.value / price - 1))[:NEAREST]
    return Status(
        symbol,
        note,
        price=price,
        day_change_pct=(price / ago - 1) * 100 if ago else None,
        book=book,
        range_days=RANGE_DAYS,
        day_range=(low, high) if high is not None and low is not None else None,
        nearest=tuple(Nearby(rules.format(r), (r.value / price - 1) * 100) for r in nearest),
    )


async def chart(
    view: MarketView,
    charts: ChartCache,
    symbol: str,
    span: str,
    levels: Sequence[Rule],
    now: datetime,
) -> Chart | NoHistory:
    """A price chart over `span` (a key of RANGES) with `levels` drawn on it."""
    await view.fresh_quote(symbol)
    candles = await view.daily(symbol, RANGES[span])
    since = now - timedelta(days=1)
    ticks = [(ts, p) for ts, p in view.market.history(symbol).ticks if ts >= since]
    lines = [Level(r.value, rules.format(r)) for r in levels]
    spec = price_spec(symbol, span, candles, ticks, lines, unit=view.currency(symbol))
    if spec is None:
        return NoHistory(symbol)
    image = await charts.get(minute_key("chart", symbol, span, tuple(lines), now=now), lambda: spec)
    prices = (
        [p for _, p in ticks] if span == "1d" and len(ticks) >= 2 else [c.close for c in candles]
    )
    return Chart(symbol, span, prices[0], prices[-1], image)


async def rotation(view: MarketView, charts: ChartCache, now: datetime) -> Rotation:
    """Gold, silver, BTC and ETH side by side: changes, the gold ratios with theirs, and a
    normalised chart."""
    year_start = now.date().replace(month=1, day=1)
    days = max(35, (now.date() - year_start).days + 7)  # the last close of last year too
    closes: dict[str, list[Candle]] = {}
    last: dict[str, float] = {}
    bases: dict[str, tuple[float | None, ...]] = {}  # prices at each window's start, year's
    moves = []
    for symbol in ROTATION:
        bars = await view.daily(symbol, days)
        quote = await view.fresh_quote(symbol)
        if quote is None or not bars:
            moves.append(Moves(symbol, tuple(None for _ in ROTATION_WINDOWS), None))
            continue
        last[symbol] = quote.price
        closes[symbol] = [c for c in bars if c.day >= year_start] or bars[-30:]
        before_year = [c for c in bars if c.day < year_start]
        bases[symbol] = (
            *(view.market.price_ago(symbol, timedelta(days=d), now) for _, d in ROTATION_WINDOWS),
            before_year[-1].close if before_year else None,
        )
        *changes, year = (_change(quote.price, base) for base in bases[symbol])
        moves.append(Moves(symbol, tuple(changes), year))
    ratios = []
    for a, b in (("XAU", "XAG"), ("XAU", "BTC")):
        if a in last and b in last:
            value = last[a] / last[b]
            pairs = zip(bases[a], bases[b], strict=True)
            *changes, year = (_change(value, x / y if x and y else None) for x, y in pairs)
            ratios.append(Ratio(a, b, value, tuple(changes), year))
    image = None
    if closes:
        since = min(bars[0].day for bars in closes.values())
        spec = rotation_spec(closes, f"gold, silver, BTC and ETH since {since}, start = 100")
        if spec is not None:
            image = await charts.get(minute_key("rotation", now=now), lambda: spec)
    windows = tuple(w for w, _ in ROTATION_WINDOWS)
    return Rotation(windows, tuple(moves), tuple(ratios), image)


def _change(value: float, base: float | None) -> float | None:
    """The change from `base` to `value` in percent; None without a base."""
    return (value / base - 1) * 100 if base else None
