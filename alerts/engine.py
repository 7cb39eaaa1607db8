"""The alert engine: a pure function from (rule, state, observation, now) to (state, alert).

Semantics (the ones TradingView users expect):
- Edge-triggered: a rule fires when its condition becomes true, then disarms.
- Hysteresis: a disarmed rule re-arms only once the value has moved back past its level by
  `band` (a fraction of the level for prices and moving averages; percentage points for
  changes; `RSI_BAND` points for RSI). Spread rules re-arm as soon as the spread is back under
  the threshold.
- `crosses` fires when the value reaches the level from the side it was on, either way. After
  a fire, a return through the level counts only once it clears the band on the side it left
  (so flapping inside the band gives one alert); once the value has cleared the band on its new
  side, touching the level again counts.
- A new rule first learns where the market is: if its condition is already true it waits for
  a real crossing instead of firing at once.
- `confirm N` needs N consecutive true observations; `cooldown D` holds a fire back until D
  has passed since the last one (it then fires if the condition still holds); `once` disarms
  for good; an expired rule never fires.
"""

from __future__ import annotations

import functools
from datetime import datetime

from alerts import rules
from alerts.indicators import Observation
from alerts.models import Alert, Condition, Direction, Indicator, Rule, RuleState

DEFAULT_BAND = 0.0025
RSI_BAND = 2.0  # RSI points an RSI rule must move back past its level to re-arm

# Members read on every evaluation, under module names (see alerts.book: in Python 3.11 each
# `Condition.X` read goes through EnumType's __getattr__ hook).
_CROSSES, _ABOVE, _RESISTANCE = Condition.CROSSES, Condition.ABOVE, Condition.RESISTANCE
_BELOW, _SUPPORT, _BREAKOUT = Condition.BELOW, Condition.SUPPORT, Condition.BREAKOUT
_BREAKDOWN, _UP, _DOWN, _MOVE = Condition.BREAKDOWN, Condition.UP, Condition.DOWN, Condition.MOVE
_SPREAD_MULT, _RSI, _EITHER = Condition.SPREAD_MULT, Indicator.RSI, Direction.EITHER
_OWN_LEVEL = frozenset({Condition.SPREAD_PCT, Condition.SPREAD_ABS})  # compared with rule.value


def evaluate(
    rule: Rule,
    state: RuleState,
    obs: Observation | None,
    now: datetime,
    band: float = DEFAULT_BAND,
) -> tuple[RuleState, Alert | None]:
    """Advance one rule by one observation. `obs` None (no usable data) changes nothing."""
    if obs is None or state.done or rule.expired(now):
        return state, None
    threshold = _threshold(rule, obs)
    if rule.condition is _CROSSES:
        return _cross(rule, state, obs, now, threshold, rearm_lines(rule, threshold, band))
    if rule.indicator is _RSI:
        low, high = rearm_lines(rule, threshold, band)
        if rule.condition is _ABOVE:
            true, clear = obs.value >= threshold, obs.value < low
        else:
            true, clear = obs.value <= threshold, obs.value > high
    else:
        true, clear = _test(rule.condition, obs.value, threshold, band)
    if state.armed is None:
        return state.but(not true, 0, state.above), None
    if not state.armed:
        return (state.but(True, 0, state.above) if clear else state), None
    if not true:
        return (state.but(state.armed, 0, state.above) if state.streak else state), None
    return _hit(rule, state, obs, now, _fired(rule, state, now), _direction(rule, obs))


def _cross(
    rule: Rule,
    state: RuleState,
    obs: Observation,
    now: datetime,
    level: float,
    lines: tuple[float, float],
) -> tuple[RuleState, Alert | None]:
    """A `crosses` rule: `state.above` is the side the value is on; `armed` False (just fired,
    or learned on the level) means the next cross must clear the band beyond the level."""
    value, (low, high) = obs.value, lines
    if state.armed is None or state.above is None:
        return state.but(value != level, 0, value >= level), None
    if state.above:
        true = value <= level if state.armed else value < low
        clear = value > high
    else:
        true = value >= level if state.armed else value > high
        clear = value < low
    if not true:
        settled = state.but(state.armed or clear, 0, state.above)
        return (state if settled == state else settled), None
    # Armed only if already clear of the band on the new side, so a second look at the same
    # value changes nothing (the rule book relies on that).
    after = _fired(
        rule, state, now, above=not state.above, armed=value < low if state.above else value > high
    )
    direction = Direction.DOWN if state.above else Direction.UP
    return _hit(rule, state, obs, now, after, direction)


def _fired(
    rule: Rule, state: RuleState, now: datetime, armed: bool = False, above: bool | None = None
) -> RuleState:
    """The state after a fire: disarmed unless `armed`; `above` is a `crosses` rule's new side."""
    return RuleState(
        armed=armed,
        streak=0,
        last_fired=now,
        fired_count=state.fired_count + 1,
        done=rule.once,
        above=above,
    )


def _hit(
    rule: Rule,
    state: RuleState,
    obs: Observation,
    now: datetime,
    fired: RuleState,
    direction: Direction,
) -> tuple[RuleState, Alert | None]:
    """The condition holds on an armed rule: count it toward `confirm`, hold it through a
    cooldown, else fire and take the state `fired`."""
    streak = state.streak + 1
    cooling = (
        rule.cooldown is not None
        and state.last_fired is not None
        and now < state.last_fired + rule.cooldown
    )
    if streak < rule.confirm or cooling:
        return state.but(state.armed, streak, state.above), None
    return fired, _alert(rule, obs, direction)


def rearm_lines(rule: Rule, level: float, band: float) -> tuple[float, float]:
    """The lines below and above `level` that a value must pass to clear the hysteresis band:
    `band` is a fraction of the level, except for RSI rules (`RSI_BAND` points)."""
    if rule.indicator is _RSI:
        return level - RSI_BAND, level + RSI_BAND
    return level * (1 - band), level * (1 + band)


def _threshold(rule: Rule, obs: Observation) -> float:
    """The number `obs.value` is compared with."""
    cond = rule.condition
    if cond.is_change or cond in _OWN_LEVEL or rule.indicator is _RSI:
        return rule.value
    if cond is _SPREAD_MULT:
        assert obs.reference is not None
        return rule.value * obs.reference
    assert obs.reference is not None
    return obs.reference


def _test(cond: Condition, value: float, threshold: float, band: float) -> tuple[bool, bool]:
    """Return (condition true, far enough back to re-arm)."""
    if cond is _ABOVE or cond is _RESISTANCE:
        return value >= threshold, value < threshold * (1 - band)
    if cond is _BELOW or cond is _SUPPORT:
        return value <= threshold, value > threshold * (1 + band)
    if cond is _BREAKOUT:  # touching the old high is not a new high
        return value > threshold, value < threshold * (1 - band)
    if cond is _BREAKDOWN:
        return value < threshold, value > threshold * (1 + band)
    points = band * 100
    if cond is _UP:
        return value >= threshold, value < threshold - points
    if cond is _DOWN:
        return value <= -threshold, value > -threshold + points
    if cond is _MOVE:
        return abs(value) >= threshold, abs(value) < threshold - points
    return value > threshold, value <= threshold


def _alert(rule: Rule, obs: Observation, direction: Direction) -> Alert:
    return Alert(
        rule_text=_rule_text(rule),
        rule=rule,
        direction=direction,
        price=obs.price,
        reference=obs.reference,
        observed=obs.value,
        time=obs.time,
        bid=obs.quote.bid,
        ask=obs.quote.ask,
    )


@functools.lru_cache(maxsize=65_536)
def _rule_text(rule: Rule) -> str:
    """A rule's canonical text, written once per distinct rule (a busy tick fires hundreds of
    rules, many of them fired before)."""
    return rules.format(rule)


def _direction(rule: Rule, obs: Observation) -> Direction:
    direction = rule.condition.direction
    if direction is _EITHER:
        return Direction.UP if obs.value >= 0 else Direction.DOWN
    return direction
