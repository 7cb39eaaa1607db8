"""A set of rules with their states, evaluated together against one market snapshot.

Replay, the live service and the benchmark all go through `RuleBook.evaluate`, so they share
one engine. Single-symbol level rules are indexed by their two thresholds (the level and the
re-arm line): such a rule can only change state when the price crosses one of them, so a tick
looks up the thresholds between the previous and the current price (bisect, O(log n + k))
instead of visiting every rule. Rules that must see every observation (new rules, rules in a
`confirm` streak or held by a cooldown) sit in a watch set; all other rule kinds have moving
baselines and are evaluated on every observation of their symbols.

Indicator rules (`ma`, `ema`, `rsi`) are grouped by (symbol, indicator, N), whose value a tick
computes once (the market caches the daily part). RSI rules are indexed like levels, by their
lines in RSI points, between the previous and the current RSI. Moving-average rules of one key
share one average and so the same lines, the average and its band: the key remembers where the
price was against them (the zone), and its rules are visited only when the zone changes. A tick
so costs O(symbols x keys + k), not O(rules).

An evaluation takes effect in memory at once; when its decisions cannot be saved (the commit
failed) `revert` puts the rules and the index back as they were, so the same crossing is
decided again on the next tick instead of being lost.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter

from alerts.engine import DEFAULT_BAND, evaluate, rearm_lines
from alerts.indicators import Market, observe
from alerts.models import Alert, Condition, Direction, Indicator, Rule, RuleState

IndicatorKey = tuple[str, Indicator, int]  # (symbol, indicator, N)


@dataclass(frozen=True, slots=True)
class Fire:
    """A rule that fired: its id and the alert it decided."""

    rule_id: int
    alert: Alert


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What one `evaluate` decided: the fires, every state that changed (what the caller must
    persist), and what it replaced (for `revert`)."""

    fires: list[Fire]
    changed: dict[int, RuleState]
    states_before: dict[int, RuleState] = field(default_factory=dict)
    prices_before: dict[str, float | None] = field(default_factory=dict)
    marks_before: dict[IndicatorKey, float | None] = field(default_factory=dict)


class RuleBook:
    """Rules by id, their states, and the per-symbol indexes that make a tick cheap."""

    def __init__(self, band: float = DEFAULT_BAND) -> None:
        self.band = band
        self.rules: dict[int, Rule] = {}
        self.states: dict[int, RuleState] = {}
        self._thresholds: dict[str, list[tuple[float, int]]] = defaultdict(list)
        self._watch: dict[str, set[int]] = defaultdict(set)
        self._moving: dict[str, set[int]] = defaultdict(set)
        self._last_price: dict[str, float] = {}
        self._symbol_refs: Counter[str] = Counter()
        # indicator rules: the keys of each symbol, each key's rules, RSI lines and watch set,
        # and its mark: the last RSI, or for a moving average the last zone (see `_zone`)
        self._keys: dict[str, set[IndicatorKey]] = defaultdict(set)
        self._key_rules: dict[IndicatorKey, set[int]] = defaultdict(set)
        self._key_lines: dict[IndicatorKey, list[tuple[float, int]]] = defaultdict(list)
        self._key_watch: dict[IndicatorKey, set[int]] = defaultdict(set)
        self._marks: dict[IndicatorKey, float] = {}

    def __len__(self) -> int:
        return len(self.rules)

    def add(self, rule_id: int, rule: Rule, state: RuleState | None = None) -> None:
        """Add (or replace) a rule; a new rule starts unarmed and learns the market first."""
        if rule_id in self.rules:
            self.remove(rule_id)
        self.rules[rule_id] = rule
        self.states[rule_id] = state or RuleState()
        self._symbol_refs.update(rule.symbols)
        if rule.indicator is not None:
            self._add_indicator(rule_id, rule)
        elif self._indexed(rule):
            for line in self._lines(rule):
                bisect.insort(self._thresholds[rule.symbol], (line, rule_id))
            self._update_watch(rule_id)
        else:
            for symbol in rule.symbols:
                self._moving[symbol].add(rule_id)

    def remove(self, rule_id: int) -> None:
        """Forget a rule and its state."""
        rule = self.rules.pop(rule_id)
        self.states.pop(rule_id)
        self._symbol_refs.subtract(rule.symbols)
        self._symbol_refs += Counter()  # drop symbols no rule needs any more
        if rule.indicator is not None:
            self._remove_indicator(rule_id, rule)
        elif self._indexed(rule):
            lines = self._thresholds[rule.symbol]
            for line in self._lines(rule):
                lines.remove((line, rule_id))
            self._watch[rule.symbol].discard(rule_id)
        else:
            for symbol in rule.symbols:
                self._moving[symbol].discard(rule_id)

    def symbols(self) -> set[str]:
        """Every symbol some rule needs a quote for."""
        return set(self._symbol_refs)

    def evaluate(
        self, market: Market, symbols: Iterable[str], now: datetime, pairs: bool = True
    ) -> Evaluation:
        """Evaluate the rules touched by new quotes of `symbols`; `pairs` False leaves out
        two-symbol rules (replay: the legs' points inside a bar are not simultaneous)."""
        candidates: set[int] = set()
        prices_before: dict[str, float | None] = {}
        marks_before: dict[IndicatorKey, float | None] = {}
        for symbol in symbols:
            candidates |= self._moving.get(symbol, set())
            quote = market.quote(symbol, now)
            if quote is None:
                continue
            prices_before[symbol] = self._last_price.get(symbol)
            candidates |= self._crossed(symbol, quote.price)
            candidates |= self._watch.get(symbol, set())
            candidates |= self._indicator_candidates(market, symbol, quote.price, now, marks_before)
        if not pairs:
            candidates = {i for i in candidates if self.rules[i].other is None}
        fires: list[Fire] = []
        changed: dict[int, RuleState] = {}
        before: dict[int, RuleState] = {}
        for rule_id in sorted(candidates):
            rule, state = self.rules[rule_id], self.states[rule_id]
            new_state, alert = evaluate(rule, state, observe(rule, market, now), now, self.band)
            if new_state != state:
                before[rule_id] = state
                self.states[rule_id] = changed[rule_id] = new_state
                if self._indexed(rule):
                    self._update_watch(rule_id)
            if alert is not None:
                fires.append(Fire(rule_id, alert))
        return Evaluation(fires, changed, before, prices_before, marks_before)

    def revert(self, evaluation: Evaluation) -> None:
        """Undo an evaluation whose decisions were not saved. A rule or price that a later
        evaluation has changed again keeps that newer value."""
        for rule_id, state in evaluation.states_before.items():
            if self.states.get(rule_id) is evaluation.changed[rule_id]:
                self.states[rule_id] = state
                if self._indexed(self.rules[rule_id]):
                    self._update_watch(rule_id)
        for symbol, price in evaluation.prices_before.items():
            if price is None:
                self._last_price.pop(symbol, None)
            else:
                self._last_price[symbol] = price
        for key, mark in evaluation.marks_before.items():
            if mark is None:
                self._marks.pop(key, None)
            else:
                self._marks[key] = mark

    def _crossed(self, symbol: str, price: float) -> set[int]:
        """Ids of indexed rules with a threshold between the previous price and this one."""
        lines = self._thresholds.get(symbol)
        previous = self._last_price.get(symbol)
        self._last_price[symbol] = price
        if not lines:
            return set()
        if previous is None:
            return {rule_id for _, rule_id in lines}
        low, high = min(previous, price), max(previous, price)
        start = bisect.bisect_left(lines, (low, -1))
        end = bisect.bisect_right(lines, (high, float("inf")))
        return {rule_id for _, rule_id in lines[start:end]}

    def _update_watch(self, rule_id: int) -> None:
        rule, state = self.rules[rule_id], self.states[rule_id]
        watch = self._watch[rule.symbol] if rule.indicator is None else self._key_watch[_key(rule)]
        if state.armed is None or state.streak > 0:
            watch.add(rule_id)
        else:
            watch.discard(rule_id)

    @staticmethod
    def _indexed(rule: Rule) -> bool:
        return rule.condition.is_level and rule.other is None

    def _lines(self, rule: Rule) -> tuple[float, ...]:
        """The level and its re-arm line (both re-arm lines for `crosses`)."""
        if rule.condition is Condition.CROSSES:
            low, high = rearm_lines(rule, rule.value, self.band)
            return low, rule.value, high
        side = 1 - self.band if rule.condition.direction is Direction.UP else 1 + self.band
        return rule.value, rule.value * side

    def _add_indicator(self, rule_id: int, rule: Rule) -> None:
        key = _key(rule)
        self._keys[rule.symbol].add(key)
        self._key_rules[key].add(rule_id)
        if rule.indicator is Indicator.RSI:
            for line in self._rsi_lines(rule):
                bisect.insort(self._key_lines[key], (line, rule_id))
        self._update_watch(rule_id)

    def _remove_indicator(self, rule_id: int, rule: Rule) -> None:
        key = _key(rule)
        self._key_rules[key].discard(rule_id)
        self._key_watch[key].discard(rule_id)
        if rule.indicator is Indicator.RSI:
            for line in self._rsi_lines(rule):
                self._key_lines[key].remove((line, rule_id))
        if not self._key_rules[key]:
            del self._key_rules[key]
            self._key_watch.pop(key, None)
            self._key_lines.pop(key, None)
            self._marks.pop(key, None)
            self._keys[rule.symbol].discard(key)

    def _rsi_lines(self, rule: Rule) -> tuple[float, ...]:
        """An RSI rule's level and re-arm line(s), in RSI points."""
        low, high = rearm_lines(rule, rule.value, self.band)
        if rule.condition is Condition.CROSSES:
            return low, rule.value, high
        return rule.value, low if rule.condition is Condition.ABOVE else high

    def _indicator_candidates(
        self,
        market: Market,
        symbol: str,
        price: float,
        now: datetime,
        marks_before: dict[IndicatorKey, float | None],
    ) -> set[int]:
        """Ids of indicator rules on `symbol` that `price` may move (see the module docstring);
        each key's value is computed once."""
        found: set[int] = set()
        today = now.astimezone(UTC).date()
        for key in self._keys.get(symbol, set()):
            _, kind, days = key
            if kind is Indicator.RSI:
                mark = market.rsi(symbol, days, price, today)
            else:
                average = market.average(symbol, kind, days, today)
                mark = None if average is None else self._zone(price, average)
            if mark is None:
                continue  # too little history: every rule of the key observes nothing
            before = self._marks.get(key)
            marks_before.setdefault(key, before)
            self._marks[key] = mark
            found |= self._key_watch.get(key, set())
            if kind is Indicator.RSI:
                found |= _between(self._key_lines[key], before, mark)
            elif mark != before:
                found |= self._key_rules[key]
        return found

    def _zone(self, price: float, average: float) -> int:
        """Every comparison the engine makes between the price and an average's lines (the
        average and its band, computed as alerts.engine.rearm_lines does), as bits: a rule on
        the average can change state only when one of them changes."""
        low, high = average * (1 - self.band), average * (1 + self.band)
        bits = (price >= average, price <= average, price < low, price > high)
        return sum(bit << i for i, bit in enumerate(bits))


def _key(rule: Rule) -> IndicatorKey:
    assert rule.indicator is not None and rule.days is not None
    return rule.symbol, rule.indicator, rule.days


def _between(lines: list[tuple[float, int]], before: float | None, value: float) -> set[int]:
    """Ids with a line between `before` and `value` (inclusive); all of them with no before."""
    if before is None:
        return {rule_id for _, rule_id in lines}
    low, high = min(before, value), max(before, value)
    start = bisect.bisect_left(lines, low, key=itemgetter(0))
    end = bisect.bisect_right(lines, high, key=itemgetter(0))
    return {rule_id for _, rule_id in lines[start:end]}
