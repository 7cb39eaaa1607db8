"""A set of rules with their states, evaluated together against one market snapshot.

Replay, the live service and the benchmark all go through `RuleBook.evaluate`, so they share
one engine. A tick costs O(readings + rules it decides), not O(rules):

- Rules are grouped by what they read (`alerts.indicators.key_of`: the price of XAG, the
  hourly change of BTC, the 20-day high of ETH, the XAU/XAG ratio, ...). A tick reads each
  group's number once.
- A rule can change state only when that number reaches one of its lines: its level and its
  re-arm line (both re-arm lines for `crosses`), and of those only the ones that matter in its
  state, each from one side: an armed `above` rule waits for the number to rise to its level,
  once fired it waits for the number to fall to its re-arm line. A settled rule's state is
  consistent with the market (looking at it again would change nothing), so its number is on
  the quiet side of each of its lines. Each group keeps two sorted arrays of lines, those
  waiting for a rise and those waiting for a fall, and a tick visits by bisection only the
  lines the number is now at or past: the rules that change, and no others (bar exact ties).
  This holds for rules loaded with a stored state too, so a restart does not look at every
  rule. A rule whose state changes moves its lines. A `move` rule's lines are on the size of
  the change; a `spread > Kx` rule's on the spread over its median, with a margin for rounding
  (the engine compares the spread with K x median, a rounding apart).
- Moving-average and channel rules of one group all compare the price with the same reference
  (the average or the N-day high/low) and its band: the group remembers where the price was
  against those lines (its zone), and its rules are visited only when the zone changes.
- Rules that must see every observation sit in the group's watch set: those in a `confirm`
  streak or held by a cooldown, rules put back by `revert`, and a zone group's rules until
  the group has seen a reading. New rules, still learning where the market is, wait in the
  group's `learning` queue; with `learn_per_tick` set (the live service), an evaluation
  takes at most that many of them and leaves the rest for the next ones, so that importing a
  million rules spreads their first look (and the saving of their first states) over ticks
  instead of holding the event loop for seconds. A rule can never fire on its first look, so
  a later first look only means it starts watching a few ticks later.

New rules are added cheaply and their lines sorted in, one sort per group, before the next
evaluation (`add_many` sorts at once), so a million rules load in seconds.

An evaluation takes effect in memory at once; when its decisions cannot be saved (the commit
failed) `revert` puts the rules back as they were and has them looked at again on the next
tick, so the same crossing is decided again instead of being lost.
"""

from __future__ import annotations

import bisect
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from itertools import islice
from typing import NamedTuple

from alerts.engine import DEFAULT_BAND, evaluate, rearm_lines
from alerts.indicators import Key, Market, Observation, key_of, observation_for, read
from alerts.models import Alert, Condition, Direction, Indicator, Rule, RuleState

RATIO_MARGIN = 1e-9  # far above the rounding between spread > K x median and spread/median > K
SMALL_SORT = 16  # up to this many new lines go into a group one by one, more by one sort
CHUNK = 512  # lines per chunk: an insert or a delete moves at most about twice as many
_NEW = RuleState()
# conditions that fire on a fall (`down` on the change; the others on the price)
_FALLING = frozenset(c for c in Condition if c.direction is Direction.DOWN)


class Fire(NamedTuple):
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


class Lane(Enum):
    """How a group finds the rules a new reading may move."""

    __hash__ = object.__hash__  # members are singletons; Enum's own hash is a Python call

    VALUE = "value"  # each rule's lines on the reading's value, bisected
    SIZE = "size"  # the same on the value's size (`move`: |change|)
    RATIO = "ratio"  # on value / reference (`spread > Kx`), bisected with a margin
    ZONE = "zone"  # all rules share the reference's lines: visited when the zone changes


@dataclass(eq=False, slots=True)
class _Lines:
    """Lines waiting for the number from one side, sorted, in chunks: `values[k]` is a sorted
    chunk, `ids[k][i]` owns `values[k][i]`, `lasts[k]` is the chunk's largest value, and no
    value of a chunk is above the next chunk's first. An insert or a delete moves one chunk's
    entries, not the whole group's (a group of a million lines would move megabytes for each
    rule that changes). `pending_values` (owned by `pending_ids`) were added since the last sort."""

    values: list[array[float]] = field(default_factory=list)
    ids: list[array[int]] = field(default_factory=list)
    lasts: list[float] = field(default_factory=list)
    pending_values: list[float] = field(default_factory=list)
    pending_ids: list[int] = field(default_factory=list)
    chunk: int = CHUNK

    def add(self, line: float, rule_id: int) -> None:
        """Add a line at the next `sort` (a start-up adds a million, then sorts once)."""
        self.pending_values.append(line)
        self.pending_ids.append(rule_id)

    def sort(self) -> None:
        """Bring the pending lines into the sorted ones (many at once by one sort). The sort
        is of positions keyed by plain floats, which Python compares without the generic
        machinery: a million (line, id) pairs took 2.5 s sorted as tuples, 1.4 s so."""
        if not self.pending_values:
            return
        new_values, new_ids = self.pending_values, self.pending_ids
        self.pending_values, self.pending_ids = [], []
        if len(new_values) <= SMALL_SORT:
            for line, rule_id in zip(new_values, new_ids, strict=True):
                self.insert(line, rule_id)
            return
        values = [value for chunk in self.values for value in chunk] + new_values
        ids = [rule_id for chunk in self.ids for rule_id in chunk] + new_ids
        order = sorted(range(len(values)), key=values.__getitem__)
        values = [values[i] for i in order]
        ids = [ids[i] for i in order]
        step = self.chunk
        self.values = [array("d", values[k : k + step]) for k in range(0, len(values), step)]
        self.ids = [array("q", ids[k : k + step]) for k in range(0, len(ids), step)]
        self.lasts = [chunk[-1] for chunk in self.values]

    def insert(self, line: float, rule_id: int) -> None:
        if not self.values:
            self.values.append(array("d", [line]))
            self.ids.append(array("q", [rule_id]))
            self.lasts.append(line)
            return
        k = min(bisect.bisect_left(self.lasts, line), len(self.lasts) - 1)
        values, ids = self.values[k], self.ids[k]
        i = bisect.bisect_right(values, line)
        values.insert(i, line)
        ids.insert(i, rule_id)
        self.lasts[k] = values[-1]
        if len(values) > 2 * self.chunk:  # split in two
            self.values.insert(k + 1, values[self.chunk :])
            self.ids.insert(k + 1, ids[self.chunk :])
            del values[self.chunk :], ids[self.chunk :]
            self.lasts.insert(k, values[-1])

    def delete(self, line: float, rule_id: int) -> None:
        k = bisect.bisect_left(self.lasts, line)
        i = bisect.bisect_left(self.values[k], line)
        while self.ids[k][i] != rule_id:  # among lines of the same value, maybe chunks apart
            i += 1
            if i == len(self.ids[k]):
                k, i = k + 1, 0
        values, ids = self.values[k], self.ids[k]
        del values[i], ids[i]
        if values:
            self.lasts[k] = values[-1]
        else:
            del self.values[k], self.ids[k], self.lasts[k]

    def up_to(self, number: float) -> Sequence[int]:
        """The rules of the lines at or below `number`."""
        if not self.lasts:
            return ()
        if self.lasts[0] > number:  # the usual case: within the first chunk
            return self.ids[0][: bisect.bisect_right(self.values[0], number)]
        out: list[int] = []
        for k, last in enumerate(self.lasts):
            if last <= number:
                out.extend(self.ids[k])
                continue
            out.extend(self.ids[k][: bisect.bisect_right(self.values[k], number)])
            break
        return out

    def down_to(self, number: float) -> Sequence[int]:
        """The rules of the lines at or above `number`."""
        if not self.values:
            return ()
        last = self.values[-1]
        if last[0] < number:  # the usual case: within the last chunk
            return self.ids[-1][bisect.bisect_left(last, number) :]
        out: list[int] = []
        for k in range(len(self.values) - 1, -1, -1):
            values = self.values[k]
            if values[0] >= number:
                out.extend(self.ids[k])
                continue
            out.extend(self.ids[k][bisect.bisect_left(values, number) :])
            break
        return out


Line = tuple[float, bool]  # a line's value, and True when it waits for a rise (else a fall)


@dataclass(eq=False, slots=True)
class _Group:
    """The rules that share one reading and lane: their lines by the side they wait on, or
    for a zone group its `members` and its zone when last read (`mark`)."""

    key: Key
    lane: Lane
    rises: _Lines = field(default_factory=_Lines)
    falls: _Lines = field(default_factory=_Lines)
    members: set[int] = field(default_factory=set)
    watch: set[int] = field(default_factory=set)
    learning: dict[int, None] = field(default_factory=dict)  # an ordered set: first in, first out
    size: int = 0
    mark: float | None = None


GroupKey = tuple[Key, Lane]

# Members read on the hot paths, under module names: in Python 3.11 reading a member off its
# class (`Condition.CROSSES`) goes through EnumType's __getattr__ hook, 0.3-0.6 us a read, and
# a start-up of a million rules made ten million such reads.
_ZONE, _SIZE, _RATIO = Lane.ZONE, Lane.SIZE, Lane.RATIO
_CROSSES, _ABOVE, _DOWN = Condition.CROSSES, Condition.ABOVE, Condition.DOWN
_UP, _MOVE, _RSI = Condition.UP, Condition.MOVE, Indicator.RSI


class RuleBook:
    """Rules by id, their states, and the per-reading indexes that make a tick cheap."""

    def __init__(self, band: float = DEFAULT_BAND, learn_per_tick: int | None = None) -> None:
        self.band = band
        self.learn_per_tick = learn_per_tick
        self._learn_left: int | None = None  # of `learn_per_tick`, during an evaluation
        self.rules: dict[int, Rule] = {}
        self.states: dict[int, RuleState] = {}
        self._groups: dict[GroupKey, _Group] = {}
        self._by_symbol: dict[str, dict[GroupKey, _Group]] = {}  # both legs of a pair
        self._unsorted: set[_Group] = set()
        self._group_keys: dict[tuple[object, ...], GroupKey] = {}  # see `_group`
        self._symbol_refs: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self.rules)

    def add(self, rule_id: int, rule: Rule, state: RuleState | None = None) -> None:
        """Add (or replace) a rule; a new rule starts unarmed and learns the market first. A
        rule with a settled stored state is looked at when the market reaches its lines."""
        if rule_id in self.rules:
            self.remove(rule_id)
        state = state or _NEW
        self.rules[rule_id] = rule
        self.states[rule_id] = state
        refs = self._symbol_refs
        refs[rule.symbol] += 1
        if rule.other is not None:
            refs[rule.other] += 1
        group = self._group(rule)
        group.size += 1
        learning = _learning(rule, state)
        if learning and not state.done:
            group.learning[rule_id] = None
        if group.lane is _ZONE:
            if not learning:  # a learning rule joins at its first look (`_take_learners`)
                group.members.add(rule_id)
                if not state.done:
                    group.watch.add(rule_id)  # the zone it was in is not known
            return
        if state.streak and not learning:
            group.watch.add(rule_id)
        for line, rises in self._live_lines(rule, state):
            lines = group.rises if rises else group.falls
            lines.pending_values.append(line)  # `_Lines.add`, inlined: a start-up's hot loop
            lines.pending_ids.append(rule_id)
        self._unsorted.add(group)

    def add_many(self, items: Iterable[tuple[int, Rule, RuleState | None]]) -> None:
        """Add many rules (a start-up), sorting each group's lines once."""
        for rule_id, rule, state in items:
            self.add(rule_id, rule, state)
        self._sort()

    def remove(self, rule_id: int) -> None:
        """Forget a rule and its state."""
        rule = self.rules.pop(rule_id)
        state = self.states.pop(rule_id)
        self._symbol_refs.subtract(rule.symbols)
        self._symbol_refs += Counter()  # drop symbols no rule needs any more
        group_key = _group_key(rule)
        group = self._groups[group_key]
        group.size -= 1
        group.watch.discard(rule_id)
        group.learning.pop(rule_id, None)
        if group.lane is _ZONE:
            group.members.discard(rule_id)
        else:
            self._move_lines(group, rule_id, self._live_lines(rule, state), ())
        if not group.size:
            del self._groups[group_key]
            self._unsorted.discard(group)
            for symbol in rule.symbols:
                del self._by_symbol[symbol][group_key]
                if not self._by_symbol[symbol]:
                    del self._by_symbol[symbol]

    def learning(self) -> int:
        """How many rules wait for their first look at the market."""
        return sum(len(group.learning) for group in self._groups.values())

    def symbols(self) -> set[str]:
        """Every symbol some rule needs a quote for."""
        return set(self._symbol_refs)

    def evaluate(
        self, market: Market, symbols: Iterable[str], now: datetime, pairs: bool = True
    ) -> Evaluation:
        """Evaluate the rules touched by new quotes of `symbols`; `pairs` False leaves out
        two-symbol rules (replay: the legs' points inside a bar are not simultaneous)."""
        self._sort()
        touched: dict[GroupKey, _Group] = {}
        for symbol in symbols:
            for group_key, group in self._by_symbol.get(symbol, {}).items():
                if pairs or group.key.other is None:
                    touched[group_key] = group
        readings: dict[Key, Observation | None] = {}
        found: dict[int, tuple[_Group, Observation]] = {}
        self._learn_left = self.learn_per_tick
        for group in touched.values():
            key = group.key
            if key in readings:
                reading = readings[key]
            else:
                reading = readings[key] = read(key, market, now)
            if reading is not None:  # else every rule of the group observes nothing
                self._visit(group, reading, found)
        fires: list[Fire] = []
        changed: dict[int, RuleState] = {}
        before: dict[int, RuleState] = {}
        for rule_id in sorted(found):
            group, reading = found[rule_id]
            rule, state = self.rules[rule_id], self.states[rule_id]
            obs = observation_for(rule, reading)
            new_state, alert = evaluate(rule, state, obs, now, self.band)
            if new_state is not state and new_state != state:
                before[rule_id] = state
                self._set_state(group, rule_id, rule, state, new_state)
                changed[rule_id] = new_state
                state = new_state
            if _unsettled(rule, state, now):
                group.watch.add(rule_id)
            else:
                group.watch.discard(rule_id)  # visited by a zone change or its lines
            if alert is not None:
                fires.append(Fire(rule_id, alert))
        return Evaluation(fires, changed, before)

    def revert(self, evaluation: Evaluation) -> None:
        """Undo an evaluation whose decisions were not saved: its rules are looked at again on
        their next observation. A rule that a later evaluation has changed again keeps that
        newer state."""
        for rule_id, state in evaluation.states_before.items():
            now = evaluation.changed[rule_id]
            if self.states.get(rule_id) is now:
                rule = self.rules[rule_id]
                group = self._groups[_group_key(rule)]
                self._set_state(group, rule_id, rule, now, state)
                group.watch.add(rule_id)

    def _set_state(
        self, group: _Group, rule_id: int, rule: Rule, old: RuleState, new: RuleState
    ) -> None:
        """Give a rule a new state, and move its lines to the ones that matter in it."""
        self.states[rule_id] = new
        if group.lane is not _ZONE:
            lines = self._live_lines(rule, old), self._live_lines(rule, new)
            if lines[0] != lines[1]:
                self._move_lines(group, rule_id, *lines)

    def _move_lines(
        self, group: _Group, rule_id: int, old: tuple[Line, ...], new: tuple[Line, ...]
    ) -> None:
        """Take a rule's `old` lines out of its group and put its `new` ones in."""
        self._sort_group(group)
        for line, rises in old:
            (group.rises if rises else group.falls).delete(line, rule_id)
        for line, rises in new:
            (group.rises if rises else group.falls).insert(line, rule_id)

    def _visit(
        self, group: _Group, reading: Observation, found: dict[int, tuple[_Group, Observation]]
    ) -> None:
        """Add to `found` the rules of `group` that `reading` may move."""
        lane, value = group.lane, reading.value
        if group.watch:
            for rule_id in group.watch:
                found[rule_id] = (group, reading)
            # Each is evaluated now and put back if still unsettled. A fresh set, because a set
            # never shrinks: one that held a group's every learning rule at start would be
            # scanned whole on every tick (17 ms a tick at 1M rules for 55 members).
            group.watch = set()
        if group.learning:
            self._take_learners(group, reading, found)
        if lane is _ZONE:
            assert reading.reference is not None
            zone = self._zone(value, reading.reference)
            before, group.mark = group.mark, zone
            if before is not None and zone != before:
                for rule_id in group.members:
                    found[rule_id] = (group, reading)
            return
        low = high = value
        if lane is _SIZE:
            low = high = abs(value)
        elif lane is _RATIO:
            assert reading.reference is not None
            mark = value / reading.reference
            low, high = mark * (1 - RATIO_MARGIN), mark * (1 + RATIO_MARGIN)
        for rule_id in group.rises.up_to(high):
            found[rule_id] = (group, reading)
        for rule_id in group.falls.down_to(low):
            found[rule_id] = (group, reading)

    def _take_learners(
        self, group: _Group, reading: Observation, found: dict[int, tuple[_Group, Observation]]
    ) -> None:
        """Add to `found` the group's rules waiting for their first look, as many as this
        evaluation may still take (first come, first looked at)."""
        left = self._learn_left
        taken: Sequence[int] | dict[int, None]
        if left is None or left >= len(group.learning):
            taken, group.learning = group.learning, {}
        else:  # the first `left` (deleting them costs what they are, not the whole queue)
            taken = list(islice(group.learning, left))
            for rule_id in taken:
                del group.learning[rule_id]
        for rule_id in taken:
            found[rule_id] = (group, reading)
        if group.lane is _ZONE:  # looked at once, it is visited by zone changes
            group.members.update(taken)
        if left is not None:
            self._learn_left = left - len(taken)

    def _zone(self, price: float, reference: float) -> int:
        """Every comparison the engine makes between the price and a shared reference (an
        average or an N-day high or low) and its band, computed as alerts.engine does, as bits:
        a rule on that reference can change state only when one of them changes."""
        low, high = reference * (1 - self.band), reference * (1 + self.band)
        above, below = price > reference, price < reference
        return above | below << 1 | (price < low) << 2 | (price > high) << 3

    def _live_lines(self, rule: Rule, state: RuleState) -> tuple[Line, ...]:
        """The lines at which `rule` in `state` can change, when it is settled (a rule with a
        streak is looked at on every reading anyway), with the side each waits on. An armed
        rule waits for the number to reach its level (from below for `above`, `up`, `move`
        and spreads, from above for `below` and `down`, from the side it is on for `crosses`),
        a disarmed one to come back through its re-arm line(s); a rule still learning the
        market, or done, has none."""
        if state.done or _learning(rule, state):
            return ()
        lines = self._lines(rule)
        if rule.condition is _CROSSES:
            if state.armed:
                return ((lines[1], not state.above),)
            return (lines[0], False), (lines[2], True)
        rises = rule.condition not in _FALLING
        if state.armed:
            return ((lines[0], rises),)
        return ((lines[-1], not rises),)

    def _lines(self, rule: Rule) -> tuple[float, ...]:
        """The values of the rule's number at which its state can change: its level and its
        re-arm line(s), as alerts.engine computes them."""
        cond, value = rule.condition, rule.value
        if rule.indicator is _RSI:
            low, high = rearm_lines(rule, value, self.band)
            if cond is _CROSSES:
                return low, value, high
            return value, low if cond is _ABOVE else high
        if cond is _CROSSES:
            low, high = rearm_lines(rule, value, self.band)
            return low, value, high
        if cond.is_level:
            side = 1 + self.band if cond in _FALLING else 1 - self.band
            return value, value * side
        points = self.band * 100
        if cond is _UP or cond is _MOVE:  # a move's lines are on |change|
            return value, value - points
        if cond is _DOWN:
            return -value, -value + points
        return (value,)  # spreads re-arm as soon as they are back under the threshold

    def _group(self, rule: Rule) -> _Group:
        """The rule's group, made (and filed under its symbols) if new."""
        reads = (rule.symbol, rule.other, rule.condition, rule.indicator, rule.days, rule.window)
        group_key = self._group_keys.get(reads)
        if group_key is None:  # one key_of per kind of reading, not per rule (a start-up)
            group_key = self._group_keys[reads] = _group_key(rule)
        group = self._groups.get(group_key)
        if group is None:
            group = self._groups[group_key] = _Group(*group_key)
            for symbol in rule.symbols:
                self._by_symbol.setdefault(symbol, {})[group_key] = group
        return group

    def _sort(self) -> None:
        for group in self._unsorted:
            self._sort_group(group)
        self._unsorted.clear()

    @staticmethod
    def _sort_group(group: _Group) -> None:
        group.rises.sort()
        group.falls.sort()


def _group_key(rule: Rule) -> GroupKey:
    """What the rule reads, and how its lines are laid out on it."""
    cond = rule.condition
    if rule.indicator in (Indicator.MA, Indicator.EMA) or cond.is_channel:
        lane = _ZONE
    elif cond is Condition.MOVE:
        lane = _SIZE
    elif cond is Condition.SPREAD_MULT:
        lane = _RATIO
    else:
        lane = Lane.VALUE
    return key_of(rule), lane


def _unsettled(rule: Rule, state: RuleState, now: datetime) -> bool:
    """Whether the rule must see its next observation whatever the number does: it is still
    learning the market, or counting a `confirm` streak or a crossing held by a cooldown. A
    rule that is done or expired never changes again."""
    if state.done or rule.expired(now):
        return False
    return _learning(rule, state) or state.streak > 0


def _learning(rule: Rule, state: RuleState) -> bool:
    """Whether the rule has not yet learned where the market is (it has no lines yet)."""
    return state.armed is None or (rule.condition is _CROSSES and state.above is None)
