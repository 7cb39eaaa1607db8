"""The alert engine: a pure function from (rule, state, observation, now) to (state, alert).

Semantics (the ones TradingView users expect):
- Edge-triggered: a rule fires when its condition becomes true, then disarms.
- Hysteresis: a disarmed rule re-arms only once the value has moved back past its level by
  `band` (a fraction of the level for prices; percentage points for changes). Spread rules
  re-arm as soon as the spread is back under the threshold.
- A new rule first learns where the market is: if its condition is already true it waits for
  a real crossing instead of firing at once.
- `confirm N` needs N consecutive true observations; `cooldown D` holds a fire back until D
  has passed since the last one (it then fires if the condition still holds); `once` disarms
  for good; an expired rule never fires.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from alerts import rules
from alerts.indicators import Observation
from alerts.models import Alert, Condition, Direction, Rule, RuleState
from alerts.text import number, pct

DEFAULT_BAND = 0.0025


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
    true, clear = _test(rule.condition, obs.value, _threshold(rule, obs), band)
    if state.armed is None:
        return replace(state, armed=not true, streak=0), None
    if not state.armed:
        return (replace(state, armed=True, streak=0) if clear else state), None
    if not true:
        return (replace(state, streak=0) if state.streak else state), None
    streak = state.streak + 1
    cooling = (
        rule.cooldown is not None
        and state.last_fired is not None
        and now < state.last_fired + rule.cooldown
    )
    if streak < rule.confirm or cooling:
        return replace(state, streak=streak), None
    fired = RuleState(
        armed=False,
        streak=0,
        last_fired=now,
        fired_count=state.fired_count + 1,
        done=rule.once,
    )
    return fired, _alert(rule, obs)


def _threshold(rule: Rule, obs: Observation) -> float:
    """The number `obs.value` is compared with."""
    cond = rule.condition
    if cond.is_change or cond is Condition.SPREAD_PCT:
        return rule.value
    if cond is Condition.SPREAD_MULT:
        assert obs.reference is not None
        return rule.value * obs.reference
    assert obs.reference is not None
    return obs.reference


def _test(cond: Condition, value: float, threshold: float, band: float) -> tuple[bool, bool]:
    """Return (condition true, far enough back to re-arm)."""
    if cond in (Condition.ABOVE, Condition.RESISTANCE):
        return value >= threshold, value < threshold * (1 - band)
    if cond in (Condition.BELOW, Condition.SUPPORT):
        return value <= threshold, value > threshold * (1 + band)
    if cond is Condition.BREAKOUT:  # touching the old high is not a new high
        return value > threshold, value < threshold * (1 - band)
    if cond is Condition.BREAKDOWN:
        return value < threshold, value > threshold * (1 + band)
    points = band * 100
    if cond is Condition.UP:
        return value >= threshold, value < threshold - points
    if cond is Condition.DOWN:
        return value <= -threshold, value > -threshold + points
    if cond is Condition.MOVE:
        return abs(value) >= threshold, abs(value) < threshold - points
    return value > threshold, value <= threshold


def _alert(rule: Rule, obs: Observation) -> Alert:
    return Alert(
        rule_text=rules.format(rule),
        symbol=rule.pair,
        condition=rule.condition,
        direction=_direction(rule, obs),
        price=obs.price,
        reference=obs.reference,
        observed=obs.value,
        time=obs.time,
        message=describe(rule, obs),
    )


def _direction(rule: Rule, obs: Observation) -> Direction:
    direction = rule.condition.direction
    if direction is Direction.EITHER:
        return Direction.UP if obs.value >= 0 else Direction.DOWN
    return direction


_LEVEL_VERBS = {
    Condition.ABOVE: "rose above",
    Condition.BELOW: "fell below",
    Condition.RESISTANCE: "broke through resistance at",
    Condition.SUPPORT: "broke support at",
}


def describe(rule: Rule, obs: Observation) -> str:
    """One plain-text sentence about a fire; renderers add platform markup around it."""
    cond, subject, ref = rule.condition, rule.pair, obs.reference
    now_text = f"now {number(obs.price)}"
    if cond.is_level:
        verb = _LEVEL_VERBS[cond]
        what = f"{subject} ratio" if rule.other else subject
        return f"{what} {verb} {number(rule.value)} ({now_text})"
    if cond.is_channel:
        assert ref is not None
        side = "high" if cond is Condition.BREAKOUT else "low"
        verb = "broke above" if cond is Condition.BREAKOUT else "broke below"
        return f"{subject} {verb} its {rule.days}-day {side} {number(ref)} ({now_text})"
    if cond.is_change:
        assert rule.window is not None and ref is not None
        window = rules.format_duration(rule.window)
        if rule.other:
            lead = "outperformed" if obs.value >= 0 else "underperformed"
            return (
                f"{rule.symbol} {lead} {rule.other} by {pct(abs(obs.value), signed=False)} "
                f"over {window} (ratio {number(obs.price)}, was {number(ref)})"
            )
        return f"{subject} {pct(obs.value)} over {window} ({now_text}, was {number(ref)})"
    quote = obs.quote
    book = f"bid {number(quote.bid or 0)} / ask {number(quote.ask or 0)}"
    if cond is Condition.SPREAD_MULT:
        assert ref is not None
        return (
            f"{subject} spread {pct(obs.value, signed=False)} is {obs.value / ref:.1f}x "
            f"its median {pct(ref, signed=False)} ({book})"
        )
    limit = pct(rule.value, signed=False)
    return f"{subject} spread {pct(obs.value, signed=False)} is over {limit} ({book})"
