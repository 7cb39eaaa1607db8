"""Alert text for Telegram: the subject named once, in bold, every dynamic value escaped."""

from __future__ import annotations

import pytest
from fake_telegram import html_problem
from support.scripted import an_alert

from bot import render


@pytest.mark.parametrize(
    ("symbol", "message", "headline"),
    [
        ("BTC", "BTC fell below 85,000 (now 84,000)",
         "🔴▼ <b>BTC</b> fell below 85,000 (now 84,000)"),
        ("XAU/XAG", "XAU/XAG ratio rose above 80 (now 81)",
         "🔴▼ <b>XAU/XAG</b> ratio rose above 80 (now 81)"),
        ("XAU/BTC", "XAU outperformed BTC by 3.00% over 1d",
         "🔴▼ <b>XAU</b> outperformed BTC by 3.00% over 1d"),
        ("A&B", "A&B fell < 1", "🔴▼ <b>A&amp;B</b> fell &lt; 1"),
        # a message that does not start with its subject gets the symbol in front
        ("BTC", "Bitcoin fell", "🔴▼ <b>BTC</b> Bitcoin fell"),
        ("BTC", "BTCUSD fell", "🔴▼ <b>BTC</b> BTCUSD fell"),
        ("BTC", "", "🔴▼ <b>BTC</b> "),
    ],
)  # fmt: skip
def test_alert_html_names_the_subject_once_in_bold(
    symbol: str, message: str, headline: str
) -> None:
    text = render.alert_html(an_alert(message, symbol=symbol))
    assert text.split("\n")[0] == headline
    assert html_problem(text) is None
