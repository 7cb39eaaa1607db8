"""Quote sanity: the one place that decides whether an observation may reach any rule.

A quote that is zero, negative, NaN, crossed (bid > ask), stale, or an isolated absurd jump is
rejected with a reason; the caller counts it and evaluates nothing with it. A jump is only
"isolated" until the next quote confirms it: a real crash is accepted one observation late.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum

from alerts.models import Quote


class Reject(Enum):
    """Why a quote was refused; the value is the label used in logs and metrics."""

    NOT_POSITIVE = "not_positive"
    NOT_FINITE = "not_finite"
    CROSSED = "crossed"
    STALE = "stale"
    JUMP = "jump"


@dataclass(frozen=True, slots=True)
class Limits:
    """Sanity limits. `max_age` None disables the staleness check (replay).

    `source_max_age` overrides the age limit per quote source: Yahoo's futures quotes come
    with an exchange delay that a crypto venue's never has.
    """

    max_age: timedelta | None = timedelta(minutes=10)
    max_jump_pct: float = 15.0
    source_max_age: Mapping[str, timedelta] = field(default_factory=dict)

    def age_limit(self, source: str) -> timedelta | None:
        """The staleness limit for quotes from `source`."""
        if self.max_age is None:
            return None
        return self.source_max_age.get(source, self.max_age)


def quote_problem(quote: Quote, now: datetime, max_age: timedelta | None) -> Reject | None:
    """Stateless checks: prices finite and positive, book not crossed, timestamp fresh."""
    prices = [quote.last] + [p for p in (quote.bid, quote.ask) if p is not None]
    if not all(math.isfinite(p) for p in prices):
        return Reject.NOT_FINITE
    if not all(p > 0 for p in prices):
        return Reject.NOT_POSITIVE
    if quote.bid is not None and quote.ask is not None and quote.bid > quote.ask:
        return Reject.CROSSED
    if max_age is not None and now - quote.ts > max_age:
        return Reject.STALE
    return None


def screen_jump(
    last_good: float | None, suspect: float | None, price: float, max_jump_pct: float
) -> tuple[bool, float | None]:
    """Decide whether `price` is believable after `last_good`; return (accepted, new suspect).

    A move beyond `max_jump_pct` from the last good price is held as a suspect. It is accepted
    when the next price lands within the limit of the suspect (the move was real) and dropped
    when the next price returns near the last good one (it was a glitch).
    """
    if last_good is None or _within(last_good, price, max_jump_pct):
        return True, None
    if suspect is not None and _within(suspect, price, max_jump_pct):
        return True, None
    return False, price


def _within(reference: float, price: float, max_jump_pct: float) -> bool:
    return abs(price / reference - 1) * 100 <= max_jump_pct


class QuoteGuard:
    """Per-symbol screening for a feed: remembers the last good price of each symbol."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._last_good: dict[str, float] = {}
        self._suspect: dict[str, float] = {}

    def check(self, quote: Quote, now: datetime) -> Reject | None:
        """None when the quote is good (and becomes the new reference), else the reason."""
        problem = quote_problem(quote, now, self.limits.age_limit(quote.source))
        if problem is not None:
            return problem
        accepted, suspect = screen_jump(
            self._last_good.get(quote.symbol),
            self._suspect.get(quote.symbol),
            quote.price,
            self.limits.max_jump_pct,
        )
        if suspect is None:
            self._suspect.pop(quote.symbol, None)
        else:
            self._suspect[quote.symbol] = suspect
        if not accepted:
            return Reject.JUMP
        self._last_good[quote.symbol] = quote.price
        return None
