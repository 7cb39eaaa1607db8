"""Alert text: the wording every front end shares, and Telegram's HTML of it (the subject named
once, in bold, every dynamic value escaped)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fake_telegram import html_problem
from support.kinds import EVERY_KIND
from support.scripted import an_alert

from alerts.models import Alert, Condition, Direction, Rule
from bot import render
from bot.wording import Parts, parts, sentence

KINDS = pytest.mark.parametrize(
    ("alert", "subject", "rest"), EVERY_KIND, ids=[alert.rule_text for alert, _, _ in EVERY_KIND]
)


@KINDS
def test_each_kind_is_worded_as_its_subject_and_the_rest(
    alert: Alert, subject: str, rest: str
) -> None:
    assert parts(alert) == Parts(subject, rest)
    assert sentence(alert) == f"{subject} {rest}"


@KINDS
def test_the_telegram_headline_names_each_kinds_subject_once_in_bold(
    alert: Alert, subject: str, rest: str
) -> None:
    text = render.alert_html(alert)
    headline = text.split("\n")[0]
    assert headline.split(" ", 1)[1] == f"<b>{subject}</b> {rest}"
    assert headline.count(subject) == 1 and text.count("<b>") == 1
    assert html_problem(text) is None


@pytest.mark.parametrize(
    ("alert", "headline"),
    [
        (an_alert(), "🔴▼ <b>BTC</b> fell below 85,000 (now 84,000)"),
        (an_alert("XAU/XAG above 80", price=81.0, reference=80.0, observed=81.0),
         "🔴▼ <b>XAU/XAG</b> ratio rose above 80 (now 81)"),
        (an_alert("XAU/BTC up 3% 1d", price=0.03, reference=0.029, observed=3.0),
         "🔴▼ <b>XAU</b> outperformed BTC by 3.00% over 1d (ratio 0.03, was 0.029)"),
        (an_alert(Rule("A&B", Condition.BELOW, 1.0), price=0.5),
         "🔴▼ <b>A&amp;B</b> fell below 1 (now 0.5)"),
        (an_alert(Rule("A&B", Condition.UP, 1.0, other="C<D", window=timedelta(days=1)),
                  price=2.0, reference=1.9, observed=5.0),
         "🔴▼ <b>A&amp;B</b> outperformed C&lt;D by 5.00% over 1d (ratio 2, was 1.90)"),
        # a venue's symbol with a slash is one subject, not a pair
        (an_alert("binance:BTC/USDT below 85000"),
         "🔴▼ <b>binance:BTC/USDT</b> fell below 85,000 (now 84,000)"),
    ],
)  # fmt: skip
def test_alert_html_names_the_subject_once_in_bold(alert: Alert, headline: str) -> None:
    text = render.alert_html(alert)
    assert text.split("\n")[0] == headline
    assert html_problem(text) is None


def test_alert_plain_is_the_sentence_then_the_rule_and_time() -> None:
    alert = an_alert("XAG above 50", direction=Direction.UP, price=50.5, reference=50.0)
    line = "XAG rose above 50 (now 50.50) — XAG above 50 (2026-03-02 12:00 UTC)"
    assert render.alert_plain(alert) == line


@pytest.mark.parametrize(
    ("rule", "rest"),
    [
        ("XAG spread > 0.3%", "spread 0.42% is over 0.30%"),
        ("XAG spread > 5x", "spread 0.42%, 7.0x its 3.0c median"),
        ("XAG spread > 0.15", "spread 42.0c is over 15.0c"),
    ],
)
def test_a_spread_alert_without_its_book_leaves_the_book_out(rule: str, rest: str) -> None:
    """Outbox rows from before alerts carried their book have none."""
    alert = an_alert(rule, direction=Direction.WIDER, price=50.105, reference=0.06, observed=0.42)
    assert parts(alert) == Parts("XAG", rest)


@pytest.mark.parametrize(
    "rule",
    [
        Rule("XAG", Condition.ABOVE),
        Rule("XAG", Condition.CROSSES),
        Rule("XAG", Condition.BREAKDOWN),
        Rule("XAG", Condition.UP),
        Rule("XAG/XAU", Condition.MOVE),
        Rule("XAG", Condition.SPREAD_PCT),
        Rule("XAG", Condition.SPREAD_ABS),
    ],
    ids=lambda rule: rule.condition.value,
)
def test_a_bare_rule_is_worded_without_the_details_it_lacks(rule: Rule) -> None:
    """What storage rebuilds from a rule text that no longer parses: no level, days, window."""
    alert = an_alert(rule, rule_text="XAG gone 5", price=50.5, reference=None, observed=50.5)
    assert sentence(alert) == f"{rule.pair} alert triggered (now 50.50)"


def test_an_average_rule_without_its_average_is_worded_without_it() -> None:
    alert = an_alert("XAG above ma 20d", direction=Direction.UP, price=50.5, reference=None)
    assert sentence(alert) == "XAG alert triggered (now 50.50)"
