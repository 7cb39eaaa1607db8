"""Values shared by every floor: quotes, candles, rules, rule state and alerts.

Everything here is a frozen dataclass or an Enum so it can be compared, hashed, stored and sent
between layers without surprises. Nothing here does I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import Any, NamedTuple


class RuleError(ValueError):
    """A user-facing error: its message is fit to show in chat as it is."""


@dataclass(frozen=True, slots=True)
class Quote:
    """One observation of a symbol. `bid`/`ask` are None where the source has no book.

    `bar` marks a point of a completed bar (replay): the bar itself says the price traded, so
    an isolated extreme needs no later quote to confirm it.
    """

    symbol: str
    last: float
    ts: datetime
    bid: float | None = None
    ask: float | None = None
    source: str = ""
    bar: bool = False

    @property
    def price(self) -> float:
        """The price rules compare: the last trade, else the mid of the book."""
        if math.isfinite(self.last) and self.last > 0:
            return self.last
        if self.bid is not None and self.ask is not None:
            return (self.bid + self.ask) / 2
        return self.last

    @property
    def spread_pct(self) -> float | None:
        """(ask - bid) / mid in percent, or None when the quote carries no book."""
        if self.bid is None or self.ask is None:
            return None
        mid = (self.bid + self.ask) / 2
        if not mid > 0:
            return None
        return (self.ask - self.bid) / mid * 100


@dataclass(frozen=True, slots=True)
class Candle:
    """One daily (or other timeframe) bar; `day` is the bar's calendar date in UTC."""

    day: date
    open: float
    high: float
    low: float
    close: float
    volume: float | None = None


class Condition(Enum):
    """What a rule watches. The value is the keyword people type."""

    __hash__ = object.__hash__  # members are singletons; Enum's own hash is a Python call

    ABOVE = "above"
    RESISTANCE = "resistance"
    BELOW = "below"
    SUPPORT = "support"
    BREAKOUT = "breakout"
    BREAKDOWN = "breakdown"
    UP = "up"
    DOWN = "down"
    MOVE = "move"
    SPREAD_PCT = "spread_pct"
    SPREAD_MULT = "spread_mult"
    SPREAD_ABS = "spread_abs"
    CROSSES = "crosses"

    @property
    def is_level(self) -> bool:
        return self in _LEVEL

    @property
    def is_change(self) -> bool:
        return self in _CHANGE

    @property
    def is_channel(self) -> bool:
        return self in (Condition.BREAKOUT, Condition.BREAKDOWN)

    @property
    def is_spread(self) -> bool:
        return self in (Condition.SPREAD_PCT, Condition.SPREAD_MULT, Condition.SPREAD_ABS)

    @property
    def direction(self) -> Direction:
        if self in (Condition.ABOVE, Condition.RESISTANCE, Condition.BREAKOUT, Condition.UP):
            return Direction.UP
        if self in (Condition.BELOW, Condition.SUPPORT, Condition.BREAKDOWN, Condition.DOWN):
            return Direction.DOWN
        if self in (Condition.MOVE, Condition.CROSSES):
            return Direction.EITHER
        return Direction.WIDER


_LEVEL = frozenset(
    {Condition.ABOVE, Condition.RESISTANCE, Condition.BELOW, Condition.SUPPORT, Condition.CROSSES}
)
_CHANGE = frozenset({Condition.UP, Condition.DOWN, Condition.MOVE})


class Indicator(Enum):
    """A daily-close indicator a rule compares with instead of a fixed number; the value is the
    keyword people type (`BTC below ma 200d`, `ETH above ema 21d`, `BTC rsi 14d above 70`)."""

    __hash__ = object.__hash__  # members are singletons; Enum's own hash is a Python call

    MA = "ma"
    EMA = "ema"
    RSI = "rsi"


class Direction(Enum):
    """Which way a rule fires; renderers colour by it (up green, down red, spread amber)."""

    __hash__ = object.__hash__  # members are singletons; Enum's own hash is a Python call

    UP = "up"
    DOWN = "down"
    EITHER = "either"
    WIDER = "wider"


@dataclass(frozen=True, slots=True)
class Rule:
    """A parsed rule. `other` is set for two-symbol rules (`A/B ...`): ratio levels and rotation.

    `value` is a price or ratio for level rules, a percentage for change and `spread > X%` rules,
    and a multiple of the baseline for `spread > Kx`. `days` is N for breakout/breakdown and
    `window` the W of change rules.

    With an `indicator` the condition (above, below, crosses) compares the price with the
    indicator instead of `value`: a moving average (`ma`, `ema`) of the `days` daily closes
    before today, `value` unused; or, for `rsi`, the `days`-day RSI with `value` the RSI level.
    """

    symbol: str
    condition: Condition
    value: float = 0.0
    other: str | None = None
    days: int | None = None
    window: timedelta | None = None
    indicator: Indicator | None = None
    confirm: int = 1
    cooldown: timedelta | None = None
    once: bool = False
    expires: date | None = None

    def at(self, value: float) -> Rule:
        """This rule with another `value`: `dataclasses.replace` without its generic machinery
        (8 us against 1 us; a start-up builds a million rules this way)."""
        return Rule(
            self.symbol, self.condition, value, self.other, self.days, self.window,
            self.indicator, self.confirm, self.cooldown, self.once, self.expires,
        )  # fmt: skip

    @property
    def symbols(self) -> tuple[str, ...]:
        """Every symbol whose quote the rule needs."""
        return (self.symbol,) if self.other is None else (self.symbol, self.other)

    @property
    def is_price_level(self) -> bool:
        """A fixed price or ratio level (what /status and charts draw), not an indicator."""
        return self.condition.is_level and self.indicator is None

    @property
    def pair(self) -> str:
        """The subject as people write it: `XAG` or `XAU/XAG`."""
        return self.symbol if self.other is None else f"{self.symbol}/{self.other}"

    def expired(self, now: datetime) -> bool:
        """A rule expires at the end of its `expires` day (UTC)."""
        return self.expires is not None and now.astimezone(UTC).date() > self.expires


class RuleState(NamedTuple):
    """Everything the engine remembers about one rule between observations. A named tuple:
    a busy tick makes and compares thousands (a frozen dataclass sets each field through
    `object.__setattr__`, and compares in Python).

    `armed` is None until the first good observation: a new rule learns where the price is
    before it can fire, so a level that is already crossed waits for a real crossing.
    `streak` counts consecutive observations with the condition true (for `confirm N`).
    `above` is for `crosses` rules only: whether the price is on the upper side of the level
    (the side the next cross leaves); their `armed` False means the next cross must clear the
    hysteresis band.
    """

    armed: bool | None = None
    streak: int = 0
    last_fired: datetime | None = None
    fired_count: int = 0
    done: bool = False
    above: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (datetimes as ISO text) for storage."""
        out: dict[str, Any] = {}
        for name, value in zip(self._fields, self, strict=True):
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RuleState:
        """Inverse of `to_dict`; unknown keys are ignored so old rows keep loading."""
        kwargs = {k: v for k, v in data.items() if k in cls._fields}
        if kwargs.get("last_fired") is not None:
            kwargs["last_fired"] = datetime.fromisoformat(kwargs["last_fired"])
        return cls(**kwargs)

    def but(self, armed: bool | None, streak: int, above: bool | None) -> RuleState:
        """This state with another `armed`, `streak` and `above`, its fire history kept: what
        the engine makes on most observations (`_replace` builds a dict of the fields)."""
        return RuleState(armed, streak, self.last_fired, self.fired_count, self.done, above)

    def relearned(self) -> RuleState:
        """The state of a rule coming back from a snooze: it learns where the market is first,
        like a new rule (so a condition that already holds waits for a real crossing), and
        keeps its fire history (cooldown, count, `once`)."""
        return self._replace(armed=None, streak=0, above=None)


@dataclass(frozen=True, slots=True)
class Alert:
    """A decided fire as data: everything a renderer needs to word it, nothing platform-specific
    and no sentence (front ends word it, see `bot.wording`).

    `rule_text` is the canonical text of `rule`. `price` is the subject's price (the ratio for
    pairs), `observed` what the rule compared and `reference` what it compared it with (see
    `alerts.indicators.Observation`). `bid`/`ask` are the book of the rule's (first) symbol,
    None without one.

    `note` is set on an alert from outside (a TradingView webhook post): its text, shown as
    sent instead of a sentence about the rule; its rule is then a bare one naming the subject.
    """

    rule_text: str
    rule: Rule
    direction: Direction
    price: float
    reference: float | None
    observed: float
    time: datetime
    bid: float | None = None
    ask: float | None = None
    note: str | None = None

    @property
    def symbol(self) -> str:
        """The subject as people write it: `XAG` or `XAU/XAG`."""
        return self.rule.pair

    @property
    def condition(self) -> Condition:
        return self.rule.condition

    @property
    def kind(self) -> str:
        return self.condition.value
