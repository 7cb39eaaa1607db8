"""A set of rules with their states, evaluated together against one market snapshot.

Replay, the live service and the benchmark all go through `RuleBook.evaluate`, so they share
one engine. Single-symbol level rules are indexed by their two thresholds (the level and the
re-arm line): such a rule can only change state when the price crosses one of them, so a tick
looks up the thresholds between the previous and the current price (bisect, O(log n + k))
instead of visiting every rule. Rules that must see every observation (new rules, rules in a
`confirm` streak or held by a cooldown) sit in a watch set; all other rule kinds have moving
baselines and are evaluated on every observation of their symbols.

An evaluation takes effect in memory at once; when its decisions cannot be saved (the commit
failed) `revert` puts the rules and the index back as they were, so the same crossing is
decided again on the next tick instead of being lost.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from alerts.engine import DEFAULT_BAND, evaluate
from alerts.indicators import Market, observe
from alerts.models import Alert, Direction, Rule, RuleState


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

    def __len__(self) -> int:
        return len(self.rules)

    def add(self, rule_id: int, rule: Rule, state: RuleState | None = None) -> None:
        """Add (or replace) a rule; a new rule starts unarmed and learns the market first."""
        if rule_id in self.rules:
            self.remove(rule_id)
        self.rules[rule_id] = rule
        self.states[rule_id] = state or RuleState()
        self._symbol_refs.update(rule.symbols)
        if self._indexed(rule):
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
        if self._indexed(rule):
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
        for symbol in symbols:
            candidates |= self._moving.get(symbol, set())
            quote = market.quote(symbol, now)
            if quote is None:
                continue
            prices_before[symbol] = self._last_price.get(symbol)
            candidates |= self._crossed(symbol, quote.price)
            candidates |= self._watch.get(symbol, set())
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
        return Evaluation(fires, changed, before, prices_before)

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
        if state.armed is None or state.streak > 0:
            self._watch[rule.symbol].add(rule_id)
        else:
            self._watch[rule.symbol].discard(rule_id)

    @staticmethod
    def _indexed(rule: Rule) -> bool:
        return rule.condition.is_level and rule.other is None

    def _lines(self, rule: Rule) -> tuple[float, float]:
        """The level and its re-arm line."""
        side = 1 - self.band if rule.condition.direction is Direction.UP else 1 + self.band
        return rule.value, rule.value * side
