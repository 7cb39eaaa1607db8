"""Rolling market memory and the indicators rules compare against.

`Market` holds, per symbol, the last good quote, a short tick history, recent spreads and the
daily candles. Every quote enters through `ingest`, which screens it (alerts.sanity), so no
indicator is ever computed from a bad price. `observe` turns a rule plus the market into the
one number the rule compares and the baseline it compares it with.
"""

from __future__ import annotations

import bisect
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from alerts.models import Candle, Condition, Quote, Rule
from alerts.sanity import Limits, QuoteGuard, Reject

DAY = timedelta(days=1)
TICK_MEMORY = timedelta(days=2)
SPREAD_SAMPLES = 240
MIN_SPREAD_SAMPLES = 20


@dataclass(frozen=True, slots=True)
class Observation:
    """What one rule sees at one moment.

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
    spreads: deque[float] = field(default_factory=lambda: deque(maxlen=SPREAD_SAMPLES))
    candles: list[Candle] = field(default_factory=list)
    rejects: Counter[Reject] = field(default_factory=Counter)
    last_reject: Reject | None = None


class Market:
    """Per-symbol rolling memory shared by every rule of a tick (one snapshot, many readers)."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.guard = QuoteGuard(self.limits)
        self._symbols: dict[str, SymbolHistory] = {}

    def history(self, symbol: str) -> SymbolHistory:
        return self._symbols.setdefault(symbol, SymbolHistory())

    def ingest(self, quote: Quote, now: datetime) -> Reject | None:
        """Screen a quote and remember it if good; return why it was rejected otherwise."""
        problem = self.guard.check(quote, now)
        hist = self.history(quote.symbol)
        if problem is not None:
            hist.rejects[problem] += 1
            hist.last_reject = problem
            return problem
        hist.last = quote
        hist.ticks.append((quote.ts, quote.price))
        while hist.ticks and hist.ticks[0][0] < quote.ts - TICK_MEMORY:
            hist.ticks.popleft()
        spread = quote.spread_pct
        if spread is not None:
            hist.spreads.append(spread)
        return None

    def add_candles(self, symbol: str, candles: list[Candle]) -> None:
        """Merge daily candles (a later copy of a day replaces an earlier one)."""
        hist = self.history(symbol)
        merged = {c.day: c for c in hist.candles}
        merged.update((c.day, c) for c in candles)
        hist.candles = [merged[d] for d in sorted(merged)]

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
        window = self._prior(symbol, days, today)
        return max(c.high for c in window) if window else None

    def prior_low(self, symbol: str, days: int, today: date) -> float | None:
        """Lowest low of the `days` bars before `today` (None until that many exist)."""
        window = self._prior(symbol, days, today)
        return min(c.low for c in window) if window else None

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

    def spread_baseline(self, symbol: str) -> float | None:
        """Median spread (percent) of the recent samples before the latest one."""
        spreads = list(self.history(symbol).spreads)[:-1]
        if len(spreads) < MIN_SPREAD_SAMPLES:
            return None
        spreads.sort()
        mid = len(spreads) // 2
        median = spreads[mid] if len(spreads) % 2 else (spreads[mid - 1] + spreads[mid]) / 2
        return median if median > 0 else None


def observe(rule: Rule, market: Market, now: datetime) -> Observation | None:
    """Build what `rule` compares right now, or None when the data for it is missing."""
    quote = market.quote(rule.symbol, now)
    if quote is None:
        return None
    price = quote.price
    if rule.other is not None:
        other = market.quote(rule.other, now)
        if other is None:
            return None
        price = price / other.price
    cond = rule.condition
    if cond.is_level:
        return Observation(quote, price, price, rule.value, now)
    if cond.is_channel:
        assert rule.days is not None
        today = now.astimezone(UTC).date()
        if cond is Condition.BREAKOUT:
            ref = market.prior_high(rule.symbol, rule.days, today)
        else:
            ref = market.prior_low(rule.symbol, rule.days, today)
        return None if ref is None else Observation(quote, price, price, ref, now)
    if cond.is_change:
        assert rule.window is not None
        ago = market.price_ago(rule.symbol, rule.window, now)
        if ago is None:
            return None
        if rule.other is not None:
            other_ago = market.price_ago(rule.other, rule.window, now)
            if other_ago is None:
                return None
            ago = ago / other_ago
        return Observation(quote, price, (price / ago - 1) * 100, ago, now)
    spread = quote.spread_pct
    if spread is None:
        return None
    if cond is Condition.SPREAD_MULT:
        baseline = market.spread_baseline(rule.symbol)
        return None if baseline is None else Observation(quote, price, spread, baseline, now)
    return Observation(quote, price, spread, rule.value, now)
