"""The words of an alert, shared by every front end: one plain sentence built from the alert's
data, split into its subject (what renderers emphasise) and the rest.

The sentence always reads `{subject} {rest}`. The subject is the rule's subject as written, a
symbol or a pair (`XAU/XAG` + `ratio rose above 80 ...`), except for a rotation
(`XAU/BTC up 3% 1d`), whose sentence is about the pair's first symbol (`XAU` + `outperformed
BTC by ...`).
"""

from __future__ import annotations

from dataclasses import dataclass

from alerts import rules
from alerts.models import Alert, Condition, Direction, Indicator
from alerts.text import money, number, pct

_LEVEL_VERBS = {
    Condition.ABOVE: "rose above",
    Condition.BELOW: "fell below",
    Condition.RESISTANCE: "broke through resistance at",
    Condition.SUPPORT: "broke support at",
}


@dataclass(frozen=True, slots=True)
class Parts:
    """An alert's sentence in two parts: `subject` first, then `rest`, one space between."""

    subject: str
    rest: str


def sentence(alert: Alert) -> str:
    """The alert as one plain-text sentence: `XAG rose above 50 (now 50.50)`."""
    words = parts(alert)
    return f"{words.subject} {words.rest}"


def parts(alert: Alert) -> Parts:
    """The alert's sentence as (subject, rest). Never raises: where the alert lacks what its
    kind's sentence names (a rule rebuilt from an unreadable stored text, an outbox row written
    before alerts carried their book), it says less instead."""
    if alert.note is not None:  # from outside: shown as sent
        return Parts(alert.symbol, alert.note)
    rule, ref, cond = alert.rule, alert.reference, alert.condition
    subject = rule.pair
    now_text = f"now {number(alert.price)}"
    if cond is Condition.CROSSES:
        verb = "crossed above" if alert.direction is Direction.UP else "crossed below"
    else:
        verb = _LEVEL_VERBS.get(cond, "")
    if rule.indicator is Indicator.RSI:
        rsi = f"{rule.days}-day RSI {verb} {number(rule.value)}"
        return Parts(subject, f"{rsi} ({alert.observed:.1f}, {now_text})")
    if rule.indicator is not None and ref is not None:
        average = f"{rule.days}-day {rule.indicator.value.upper()}"
        return Parts(subject, f"{verb} its {average} {number(ref)} ({now_text})")
    if cond.is_level and rule.indicator is None and rule.value > 0:
        what = "ratio " if rule.other else ""
        return Parts(subject, f"{what}{verb} {number(rule.value)} ({now_text})")
    if cond.is_channel and rule.days is not None and ref is not None:
        side = "high" if cond is Condition.BREAKOUT else "low"
        verb = "broke above" if cond is Condition.BREAKOUT else "broke below"
        return Parts(subject, f"{verb} its {rule.days}-day {side} {number(ref)} ({now_text})")
    if cond.is_change and rule.window is not None and ref is not None:
        window = rules.format_duration(rule.window)
        if rule.other:
            lead = "outperformed" if alert.observed >= 0 else "underperformed"
            return Parts(
                rule.symbol,
                f"{lead} {rule.other} by {pct(abs(alert.observed), signed=False)} "
                f"over {window} (ratio {number(alert.price)}, was {number(ref)})",
            )
        return Parts(
            subject, f"{pct(alert.observed)} over {window} ({now_text}, was {number(ref)})"
        )
    if cond.is_spread:
        spread = _spread(alert)
        if spread:
            return Parts(subject, spread)
    return Parts(subject, f"alert triggered ({now_text})")


def _spread(alert: Alert) -> str:
    """The rest of a spread alert's sentence, or "" when it lacks what it would name."""
    rule, ref, observed, bid, ask = (
        alert.rule,
        alert.reference,
        alert.observed,
        alert.bid,
        alert.ask,
    )
    # Outbox rows stored before alerts carried their book have none: the sentence leaves it out.
    book = "" if bid is None or ask is None else f" (bid {number(bid)} / ask {number(ask)})"
    if rule.condition is Condition.SPREAD_MULT:
        if not ref:
            return ""
        times = f"{observed / ref:.1f}x its {money(ref * alert.price / 100)} median"
        if bid is None or ask is None:
            return f"spread {pct(observed, signed=False)}, {times}"
        return f"spread {money(ask - bid)} ({pct(observed, signed=False)}), {times}{book}"
    if not rule.value > 0:
        return ""
    if rule.condition is Condition.SPREAD_ABS:
        return f"spread {money(observed)} is over {money(rule.value)}{book}"
    return f"spread {pct(observed, signed=False)} is over {pct(rule.value, signed=False)}{book}"
