"""Rolling market memory and the indicators rules compare against.

`Market` holds, per symbol, the last good quote, a short tick history, recent spreads and the
daily candles. Every quote enters through `ingest`, which screens it (alerts.sanity), so no
indicator is ever computed from a bad price. `observe` turns a rule plus the market into the
one number the rule compares and the baseline it compares it with.

Many rules read the same number (every `XAG above ...` the price of XAG, every `BTC move ...
1h` its hourly change): `key_of` names what a rule reads, `read` computes it once for all
rules of that key, and `observation_for` adds the rule's own level where it is the reference.
`observe` is exactly those three steps, so the rule book and a plain loop see the same thing.
"""

from __future__ import annotations

import bisect
import statistics
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from itertools import pairwise
from typing import NamedTuple

from alerts.models import Candle, Condition, Indicator, Quote, Rule
from alerts.sanity import Limits, QuoteGuard, Reject, allowed_move

DAY = timedelta(days=1)
TICK_MEMORY = timedelta(days=2)
# Ticks (and spread samples) closer together than this are kept as one, the latest (a stream
# sends many a second): a symbol's history holds at most one per step, as a 10-second poll
# gives it, so the spread baseline still spans its window within SPREAD_SAMPLES (once it has
# the MIN_SPREAD_SAMPLES it needs to exist at all).
TICK_STEP = timedelta(seconds=10)
SPREAD_SAMPLES = 10_000  # at most, within the baseline window (Limits.spread_window)
MIN_SPREAD_SAMPLES = 20
TYPICAL_DAYS = 20
MIN_TYPICAL_DAYS = 10
SMOOTHING_SPAN = 10  # EMA and RSI(N) run over the last 10 x N closes: older ones weigh < 1e-4


class Observation(NamedTuple):
    """What one rule sees at one moment (a named tuple: a tick makes thousands, and a frozen
    dataclass sets each field through `object.__setattr__`).

    `value` is what the rule compares: a price or ratio (levels, channels), a change in percent
    (up/down/move), or a spread in percent. `reference` is the level or baseline it is compared
    with: the rule's level, the prior N-day high or low, the price W ago, the spread median.
    `price` is the subject's price (the ratio for pairs), `quote` the subject's quote.
    """

    quote: Quote
    price: float
    value: float
    reference: float | None
    time: datetime


@dataclass(slots=True)
class SymbolHistory:
    """One symbol's memory. Candles are completed daily bars in ascending day order."""

    last: Quote | None = None
    ticks: deque[tuple[datetime, float]] = field(default_factory=deque)
    spreads: deque[tuple[datetime, float]] = field(default_factory=deque)
    # the spreads of every sample but the latest, sorted: the median is read off the middle
    spreads_sorted: list[float] = field(default_factory=list)
    baseline: tuple[datetime | None, float | None] = (None, None)  # spread_baseline's cache
    candles: list[Candle] = field(default_factory=list)
    rejects: Counter[Reject] = field(default_factory=Counter)
    last_reject: Reject | None = None
    typical: dict[date, float | None] = field(default_factory=dict)  # typical_range's cache
    # average/rsi's cache: per (indicator, N) the day, the candle list it was computed from
    # (add_candles replaces the list, which so invalidates it) and the result
    daily: dict[tuple[Indicator, int], tuple[date, list[Candle], tuple[float, ...] | None]] = field(
        default_factory=dict
    )
    # prior_high/low's cache: per (high, N) the day, the candle list and the result
    extremes: dict[tuple[bool, int], tuple[date, list[Candle], float | None]] = field(
        default_factory=dict
    )

    def add_spread(self, ts: datetime, spread: float) -> None:
        """Remember a spread sample (at most `SPREAD_SAMPLES`); the one it follows joins the
        sorted baseline."""
        if len(self.spreads) == SPREAD_SAMPLES:
            self.drop_spread()
        if self.spreads:
            bisect.insort(self.spreads_sorted, self.spreads[-1][1])
        self.spreads.append((ts, spread))

    def drop_spread(self) -> None:
        """Forget the oldest spread sample."""
        _, spread = self.spreads.popleft()
        if self.spreads:  # it was not the latest, so it is in the sorted baseline
            del self.spreads_sorted[bisect.bisect_left(self.spreads_sorted, spread)]


class Market:
    """Per-symbol rolling memory shared by every rule of a tick (one snapshot, many readers)."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.guard = QuoteGuard(self.limits)
        self._symbols: dict[str, SymbolHistory] = {}

    def history(self, symbol: str) -> SymbolHistory:
        """The symbol's memory (an empty one the first time it is asked for)."""
        hist = self._symbols.get(symbol)
        if hist is None:
            hist = self._symbols[symbol] = SymbolHistory()
        return hist

    def ingest(self, quote: Quote, now: datetime) -> Reject | None:
        """Screen a quote and remember it if good; return why it was rejected otherwise."""
        typical = self.typical_range(quote.symbol, quote.ts.astimezone(UTC).date())
        problem = self.guard.check(quote, now, typical)
        hist = self.history(quote.symbol)
        if problem is not None:
            hist.rejects[problem] += 1
            hist.last_reject = problem
            return problem
        hist.last = quote
        ticks = hist.ticks
        if len(ticks) > 1 and quote.ts - ticks[-2][0] < TICK_STEP:
            ticks[-1] = (quote.ts, quote.price)
        else:
            ticks.append((quote.ts, quote.price))
        while hist.ticks and hist.ticks[0][0] < quote.ts - TICK_MEMORY:
            hist.ticks.popleft()
        spread = quote.spread_pct
        if spread is not None:
            spreads = hist.spreads
            # the first samples make a baseline as fast as they come, later ones one per step
            if len(spreads) > MIN_SPREAD_SAMPLES and quote.ts - spreads[-2][0] < TICK_STEP:
                spreads[-1] = (quote.ts, spread)  # the latest is not in the baseline yet
            else:
                hist.add_spread(quote.ts, spread)
            while hist.spreads[0][0] < quote.ts - self.limits.spread_window:
                hist.drop_spread()
        return None

    def restore(self, quotes: list[Quote]) -> None:
        """Put back quotes that were screened when first seen (stored ones, oldest first), so
        short windows and spread baselines work at once after a restart."""
        for quote in quotes:
            hist = self.history(quote.symbol)
            if hist.last is not None and quote.ts <= hist.last.ts:
                continue
            hist.last = quote
            hist.ticks.append((quote.ts, quote.price))
            spread = quote.spread_pct
            if spread is not None:
                hist.add_spread(quote.ts, spread)
            self.guard.remember(quote)

    def add_candles(self, symbol: str, candles: list[Candle]) -> None:
        """Merge daily candles (a later copy of a day replaces an earlier one). A wick that is
        a bad print by the guard's measure is cut back to the bar's body, so it never becomes
        an N-day high or low."""
        hist = self.history(symbol)
        merged = {c.day: c for c in hist.candles}
        merged.update((c.day, c) for c in candles)
        hist.candles = [merged[d] for d in sorted(merged)]
        hist.typical.clear()
        new = {c.day for c in candles}
        for i, candle in enumerate(hist.candles):
            if candle.day in new:
                typical = _median_range(hist.candles[max(0, i - TYPICAL_DAYS) : i])
                hist.candles[i] = _without_bad_wicks(candle, self.limits.max_jump_pct, typical)

    def typical_range(self, symbol: str, day: date) -> float | None:
        """The median daily range in percent of the `TYPICAL_DAYS` bars before `day` (None
        with fewer than `MIN_TYPICAL_DAYS`)."""
        hist = self.history(symbol)
        if day not in hist.typical:
            end = bisect.bisect_left(hist.candles, day, key=lambda c: c.day)
            hist.typical = {day: _median_range(hist.candles[max(0, end - TYPICAL_DAYS) : end])}
        return hist.typical[day]

    def quote(self, symbol: str, now: datetime) -> Quote | None:
        """The last good quote, or None when there is none or it is older than the limit."""
        last = self.history(symbol).last
        if last is None:
            return None
        limit = self.limits.age_limit(last.source)
        if limit is not None and now - last.ts > limit:
            return None
        return last

    def _prior(self, symbol: str, days: int, today: date) -> list[Candle]:
        candles = self.history(symbol).candles
        end = bisect.bisect_left(candles, today, key=lambda c: c.day)
        return candles[max(0, end - days) : end] if end >= days else []

    def prior_high(self, symbol: str, days: int, today: date) -> float | None:
        """Highest high of the `days` bars before `today` (None until that many exist)."""
        return self._extreme(symbol, days, today, high=True)

    def prior_low(self, symbol: str, days: int, today: date) -> float | None:
        """Lowest low of the `days` bars before `today` (None until that many exist)."""
        return self._extreme(symbol, days, today, high=False)

    def _extreme(self, symbol: str, days: int, today: date, high: bool) -> float | None:
        """`prior_high` or `prior_low`, computed once a day (and again when bars change)."""
        hist = self.history(symbol)
        cached = hist.extremes.get((high, days))
        if cached is not None and cached[0] == today and cached[1] is hist.candles:
            return cached[2]
        window = self._prior(symbol, days, today)
        value = None
        if window:
            value = max(c.high for c in window) if high else min(c.low for c in window)
        hist.extremes[(high, days)] = (today, hist.candles, value)
        return value

    def price_ago(self, symbol: str, window: timedelta, now: datetime) -> float | None:
        """The price `window` ago.

        Whole-day windows use daily closes: the close of the last bar at least that many days
        before today (so `1d` is the change since the previous session's close, also across a
        weekend). Shorter windows use the tick history.
        """
        hist = self.history(symbol)
        if window % DAY == timedelta(0) and hist.candles:
            cutoff = now.astimezone(UTC).date() - timedelta(days=window // DAY)
            end = bisect.bisect_right(hist.candles, cutoff, key=lambda c: c.day)
            return hist.candles[end - 1].close if end else None
        target = now - window
        ticks = hist.ticks
        if not ticks or ticks[0][0] > target:
            return None
        idx = bisect.bisect_right(ticks, target, key=lambda t: t[0])
        return ticks[idx - 1][1]

    def average(self, symbol: str, kind: Indicator, days: int, today: date) -> float | None:
        """The `days`-day moving average (`ma`: simple, `ema`: exponential) of the daily
        closes before `today`; None with fewer than `days` of them. Computed once a day."""
        found = self._daily(symbol, kind, days, today)
        return None if found is None else found[0]

    def rsi(self, symbol: str, days: int, price: float, today: date) -> float | None:
        """Wilder's `days`-day RSI of the daily closes before `today` with `price` as today's
        close; None with fewer than `days` + 1 of them. The closes' part is computed once a day,
        so each price costs one smoothing step."""
        found = self._daily(symbol, Indicator.RSI, days, today)
        if found is None:
            return None
        gain, loss, last = found
        change = price - last
        gain = (gain * (days - 1) + max(change, 0.0)) / days
        loss = (loss * (days - 1) + max(-change, 0.0)) / days
        return 50.0 if gain + loss == 0 else 100 * gain / (gain + loss)

    def _daily(
        self, symbol: str, kind: Indicator, days: int, today: date
    ) -> tuple[float, ...] | None:
        """What `average` and `rsi` need from the closes before `today`, cached per day."""
        hist = self.history(symbol)
        cached = hist.daily.get((kind, days))
        if cached is not None and cached[0] == today and cached[1] is hist.candles:
            return cached[2]
        end = bisect.bisect_left(hist.candles, today, key=lambda c: c.day)
        span = days if kind is Indicator.MA else SMOOTHING_SPAN * days + 1
        closes = [c.close for c in hist.candles[max(0, end - span) : end]]
        result: tuple[float, ...] | None
        if kind is Indicator.RSI:
            result = _wilder(closes, days) if len(closes) > days else None
        elif len(closes) < days:
            result = None
        elif kind is Indicator.MA:
            result = (sum(closes) / days,)
        else:
            result = (_ema(closes, days),)
        hist.daily[(kind, days)] = (today, hist.candles, result)
        return result

    def spread_baseline(self, symbol: str) -> float | None:
        """Median spread (percent) over the baseline window (`Limits.spread_window`) before
        the latest sample; None with fewer than `MIN_SPREAD_SAMPLES`. The samples are kept
        sorted as they come and go, so this reads the middle (what statistics.median gives)."""
        hist = self.history(symbol)
        latest = hist.spreads[-1][0] if hist.spreads else None
        if hist.baseline[0] == latest and latest is not None:
            return hist.baseline[1]
        spreads, median = hist.spreads_sorted, None
        n = len(spreads)
        if n >= MIN_SPREAD_SAMPLES:
            half = n // 2
            median = spreads[half] if n % 2 else (spreads[half - 1] + spreads[half]) / 2
        hist.baseline = (latest, median if median is not None and median > 0 else None)
        return hist.baseline[1]


def _ema(closes: list[float], days: int) -> float:
    """Exponential moving average (alpha 2 / (N + 1)) seeded with the mean of the first N."""
    alpha = 2 / (days + 1)
    ema = sum(closes[:days]) / days
    for close in closes[days:]:
        ema += alpha * (close - ema)
    return ema


def _wilder(closes: list[float], days: int) -> tuple[float, float, float]:
    """Wilder's average gain and loss over the closes' changes (seeded with the mean of the
    first N changes), and the last close."""
    changes = [b - a for a, b in pairwise(closes)]
    gain = sum(max(c, 0.0) for c in changes[:days]) / days
    loss = sum(max(-c, 0.0) for c in changes[:days]) / days
    for change in changes[days:]:
        gain = (gain * (days - 1) + max(change, 0.0)) / days
        loss = (loss * (days - 1) + max(-change, 0.0)) / days
    return gain, loss, closes[-1]


def bars_needed(rule: Rule) -> int:
    """How many daily bars before today the rule reads (0: none; whole-day change windows are
    the caller's)."""
    if rule.indicator in (Indicator.EMA, Indicator.RSI):
        assert rule.days is not None
        return SMOOTHING_SPAN * rule.days + 1
    return rule.days or 0


def _median_range(candles: list[Candle]) -> float | None:
    """Median of (high - low) / close in percent, or None for too short a history."""
    ranges = [(c.high - c.low) / c.close * 100 for c in candles if c.close > 0]
    return statistics.median(ranges) if len(ranges) >= MIN_TYPICAL_DAYS else None


def _without_bad_wicks(candle: Candle, max_jump_pct: float, typical: float | None) -> Candle:
    """The candle with a high or low that is a bad print (see alerts.sanity) cut to its body."""
    _, absurd = allowed_move(max_jump_pct, typical, timedelta(0))
    if absurd is None:
        return candle
    top, bottom = max(candle.open, candle.close), min(candle.open, candle.close)
    high = top if (candle.high / top - 1) * 100 > absurd else candle.high
    low = bottom if (1 - candle.low / bottom) * 100 > absurd else candle.low
    if (high, low) == (candle.high, candle.low):
        return candle
    return replace(candle, high=high, low=low)


class Measure(Enum):
    """What a rule compares with its threshold (see `Key`)."""

    __hash__ = object.__hash__  # members are singletons; Enum's own hash is a Python call

    PRICE = "price"  # the price, or a pair's ratio: level rules
    CHANGE = "change"  # percent change over a window: up, down, move (rotation for a pair)
    HIGH = "high"  # the price against the prior N-day high: breakout
    LOW = "low"  # the price against the prior N-day low: breakdown
    MA = "ma"  # the price against its N-day simple average
    EMA = "ema"  # the price against its N-day exponential average
    RSI = "rsi"  # the N-day RSI
    SPREAD_PCT = "spread_pct"  # the spread in percent of mid
    SPREAD_ABS = "spread_abs"  # ask - bid
    SPREAD_MULT = "spread_mult"  # the spread in percent against its median


class Key(NamedTuple):
    """One reading of the market that every rule with this key shares: the rules differ only
    in their thresholds (and options)."""

    symbol: str
    other: str | None
    measure: Measure
    days: int | None = None
    window: timedelta | None = None


_BY_INDICATOR = {Indicator.MA: Measure.MA, Indicator.EMA: Measure.EMA, Indicator.RSI: Measure.RSI}
_BY_CONDITION = {
    Condition.UP: Measure.CHANGE,
    Condition.DOWN: Measure.CHANGE,
    Condition.MOVE: Measure.CHANGE,
    Condition.BREAKOUT: Measure.HIGH,
    Condition.BREAKDOWN: Measure.LOW,
    Condition.SPREAD_PCT: Measure.SPREAD_PCT,
    Condition.SPREAD_ABS: Measure.SPREAD_ABS,
    Condition.SPREAD_MULT: Measure.SPREAD_MULT,
}
# readings whose reference is each rule's own level (`value`), not something shared
_OWN_LEVEL = frozenset({Measure.PRICE, Measure.SPREAD_PCT, Measure.SPREAD_ABS})


def key_of(rule: Rule) -> Key:
    """What `rule` reads from the market."""
    if rule.indicator is not None:
        return Key(rule.symbol, rule.other, _BY_INDICATOR[rule.indicator], rule.days)
    measure = _BY_CONDITION.get(rule.condition, Measure.PRICE)
    if measure is Measure.CHANGE:
        return Key(rule.symbol, rule.other, measure, window=rule.window)
    if measure in (Measure.HIGH, Measure.LOW):
        return Key(rule.symbol, rule.other, measure, rule.days)
    return Key(rule.symbol, rule.other, measure)


def observe(rule: Rule, market: Market, now: datetime) -> Observation | None:
    """Build what `rule` compares right now, or None when the data for it is missing."""
    return observation_for(rule, read(key_of(rule), market, now))


def observation_for(rule: Rule, reading: Observation | None) -> Observation | None:
    """`rule`'s observation from its key's reading: the reading itself, or with the rule's
    own level as the reference (price levels, `spread > X%`, `spread > X`)."""
    if reading is None or rule.indicator is not None:
        return reading
    if _BY_CONDITION.get(rule.condition, Measure.PRICE) not in _OWN_LEVEL:
        return reading
    return Observation(reading.quote, reading.price, reading.value, rule.value, reading.time)


def read(key: Key, market: Market, now: datetime) -> Observation | None:
    """The observation every rule of `key` shares right now (`reference` None where each rule
    brings its own level), or None when the data for it is missing."""
    quote = market.quote(key.symbol, now)
    if quote is None:
        return None
    price = quote.price
    if key.other is not None:
        other = market.quote(key.other, now)
        if other is None:
            return None
        price = price / other.price
    measure = key.measure
    if measure is Measure.PRICE:
        return Observation(quote, price, price, None, now)
    if measure is Measure.CHANGE:
        return _read_change(key, market, quote, price, now)
    if measure in (Measure.HIGH, Measure.LOW):
        assert key.days is not None
        today = now.astimezone(UTC).date()
        if measure is Measure.HIGH:
            ref = market.prior_high(key.symbol, key.days, today)
        else:
            ref = market.prior_low(key.symbol, key.days, today)
        return None if ref is None else Observation(quote, price, price, ref, now)
    if measure in (Measure.MA, Measure.EMA, Measure.RSI):
        return _read_indicator(key, market, quote, now)
    spread = quote.spread_pct
    if spread is None:
        return None
    if measure is Measure.SPREAD_ABS:
        assert quote.ask is not None and quote.bid is not None
        return Observation(quote, price, quote.ask - quote.bid, None, now)
    if measure is Measure.SPREAD_MULT:
        baseline = market.spread_baseline(key.symbol)
        return None if baseline is None else Observation(quote, price, spread, baseline, now)
    return Observation(quote, price, spread, None, now)


def _read_change(
    key: Key, market: Market, quote: Quote, price: float, now: datetime
) -> Observation | None:
    """The change in percent since `key.window` ago (of the ratio, for a pair)."""
    assert key.window is not None
    ago = market.price_ago(key.symbol, key.window, now)
    if ago is None:
        return None
    if key.other is not None:
        other_ago = market.price_ago(key.other, key.window, now)
        if other_ago is None:
            return None
        ago = ago / other_ago
    return Observation(quote, price, (price / ago - 1) * 100, ago, now)


def _read_indicator(key: Key, market: Market, quote: Quote, now: datetime) -> Observation | None:
    """A moving average is the reference the price is compared with; an RSI is the value
    itself, compared with each rule's level, so its reading has no reference."""
    assert key.days is not None
    today = now.astimezone(UTC).date()
    price = quote.price
    if key.measure is Measure.RSI:
        rsi = market.rsi(key.symbol, key.days, price, today)
        return None if rsi is None else Observation(quote, price, rsi, None, now)
    kind = Indicator.MA if key.measure is Measure.MA else Indicator.EMA
    average = market.average(key.symbol, kind, key.days, today)
    return None if average is None else Observation(quote, price, price, average, now)
