"""Quote sanity: the one place that decides whether an observation may reach any rule.

A quote that is zero, negative, NaN, crossed (bid > ask), stale, or an isolated absurd jump is
rejected with a reason; the caller counts it and evaluates nothing with it. So is a quote older
than the symbol's last good one: two paths of one venue (its stream, and the poll that covers
for the stream while it is down) can hand in their quotes out of order, and a price the rules
have already seen superseded must not be decided again after the newer one (it would re-arm a
rule that just fired, and the next crossing would repeat the alert).

Jumps are judged by the time that passed and the symbol's own volatility: a live tick that
moves more than `max_jump_pct` (more over a longer gap) is held until the next quote confirms
it, so a real crash is accepted one observation late and a one-off spike is dropped; a point of
a completed bar needs no such confirmation (the bar says it traded). A move of more than
`ABSURD_RANGES` times the symbol's median daily range is a bad print even inside a bar (PAXG's
3,295 high on 2024-04-13 against a 1.6% typical range), unless later quotes keep confirming it.
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
    SUPERSEDED = "superseded"  # older than the last good quote of its symbol
    JUMP = "jump"


@dataclass(frozen=True, slots=True)
class Limits:
    """Sanity limits. `max_age` None disables the staleness check (replay). `spread_window`
    is the market memory behind the spread baseline.

    `source_max_age` overrides the age limit per quote source: Yahoo's futures quotes come
    with an exchange delay that a crypto venue's never has.
    """

    max_age: timedelta | None = timedelta(minutes=10)
    max_jump_pct: float = 15.0
    source_max_age: Mapping[str, timedelta] = field(default_factory=dict)
    spread_window: timedelta = timedelta(hours=24)  # how far back `spread > Kx` medians look

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


ABSURD_RANGES = 20.0  # a move this many times the symbol's median daily range is a bad print
ABSURD_CONFIRMATIONS = 2  # later quotes needed to believe such a move anyway (a real re-pricing)


def allowed_move(
    max_jump_pct: float, typical_range_pct: float | None, elapsed: timedelta
) -> tuple[float, float | None]:
    """(plain, absurd) limits in percent for a move over `elapsed`.

    A move beyond `plain` is held until a later quote confirms it (a bar's own points need no
    confirmation); one beyond `absurd` is a bad print whatever the bar says, unless several
    later quotes confirm it. Both grow with the square root of the days elapsed, as price
    moves do, so points hours or days apart are not judged as if seconds apart; `absurd` is
    None without a typical range (no daily history yet).
    """
    stretch = max(1.0, math.sqrt(elapsed / timedelta(days=1)))
    plain = max_jump_pct * stretch
    if typical_range_pct is None:
        return plain, None
    return plain, max(max_jump_pct, ABSURD_RANGES * typical_range_pct) * stretch


@dataclass(slots=True)
class _Suspect:
    price: float
    seen: int
    need: int


class QuoteGuard:
    """Per-symbol screening: remembers the last good price of each symbol and when it was."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._last_good: dict[str, tuple[float, datetime]] = {}
        self._suspect: dict[str, _Suspect] = {}

    def remember(self, quote: Quote) -> None:
        """Take an earlier good quote as the reference (a restart restoring the market)."""
        self._last_good[quote.symbol] = (quote.price, quote.ts)

    def check(
        self, quote: Quote, now: datetime, typical_range_pct: float | None = None
    ) -> Reject | None:
        """None when the quote is good (and becomes the new reference), else the reason.

        `typical_range_pct` is the symbol's median daily range (high - low over close) of the
        days before, when known.
        """
        problem = quote_problem(quote, now, self.limits.age_limit(quote.source))
        if problem is not None:
            return problem
        symbol, price = quote.symbol, quote.price
        last = self._last_good.get(symbol)
        if last is not None and quote.ts < last[1]:
            return Reject.SUPERSEDED
        if last is not None and not self._believable(quote, last, typical_range_pct):
            return Reject.JUMP
        self._suspect.pop(symbol, None)
        self._last_good[symbol] = (price, quote.ts)
        return None

    def _believable(
        self, quote: Quote, last: tuple[float, datetime], typical_range_pct: float | None
    ) -> bool:
        reference, since = last
        plain, absurd = allowed_move(
            self.limits.max_jump_pct, typical_range_pct, max(quote.ts - since, timedelta(0))
        )
        move = abs(quote.price / reference - 1) * 100
        is_absurd = absurd is not None and move > absurd
        if not is_absurd and (quote.bar or move <= plain):
            return True
        need = ABSURD_CONFIRMATIONS if is_absurd else 1
        suspect = self._suspect.get(quote.symbol)
        if suspect is not None and _within(suspect.price, quote.price, self.limits.max_jump_pct):
            suspect.seen += 1
            suspect.price = quote.price
            return suspect.seen >= suspect.need
        self._suspect[quote.symbol] = _Suspect(quote.price, 0, need)
        return False


def _within(reference: float, price: float, max_jump_pct: float) -> bool:
    return abs(price / reference - 1) * 100 <= max_jump_pct
