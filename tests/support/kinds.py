"""One synthetic alert of every kind with the words it must read as: (alert, subject, rest).

Shared by the wording tests and the Telegram ones (made-up numbers throughout).
"""

from __future__ import annotations

from typing import Any

from alerts.models import Alert, Condition, Direction, Rule
from support.scripted import an_alert

UP, DOWN, WIDER = Direction.UP, Direction.DOWN, Direction.WIDER
BOOK = {"bid": 50.0, "ask": 50.21, "price": 50.105}


def _kind(rule: str | Rule, subject: str, rest: str, **fields: Any) -> tuple[Alert, str, str]:
    return an_alert(rule, **fields), subject, rest


EVERY_KIND: list[tuple[Alert, str, str]] = [
    _kind("XAG above 50", "XAG", "rose above 50 (now 50.50)",
          direction=UP, price=50.5, reference=50.0, observed=50.5),
    _kind("BTC below 85000", "BTC", "fell below 85,000 (now 84,000)"),
    _kind("XAG resistance 52.5", "XAG", "broke through resistance at 52.50 (now 52.60)",
          direction=UP, price=52.6, reference=52.5, observed=52.6),
    _kind("XAG support 48", "XAG", "broke support at 48 (now 47.90)",
          price=47.9, reference=48.0, observed=47.9),
    _kind("BTC crosses 90000", "BTC", "crossed above 90,000 (now 90,100)",
          direction=UP, price=90100.0, reference=90000.0, observed=90100.0),
    _kind("BTC crosses 90000", "BTC", "crossed below 90,000 (now 89,900)",
          price=89900.0, reference=90000.0, observed=89900.0),
    _kind("XAU/XAG above 80", "XAU/XAG", "ratio rose above 80 (now 81)",
          price=81.0, reference=80.0, observed=81.0),
    _kind("XAU/XAG below 80", "XAU/XAG", "ratio fell below 80 (now 79.21)",
          price=79.21, reference=80.0, observed=79.21),
    _kind("XAU below ma 3d", "XAU", "fell below its 3-day MA 13 (now 12.90)",
          price=12.9, reference=13.0, observed=12.9),
    _kind("XAU crosses ema 3d", "XAU", "crossed below its 3-day EMA 13 (now 12.90)",
          price=12.9, reference=13.0, observed=12.9),
    _kind("XAG rsi 2d above 85", "XAG", "2-day RSI rose above 85 (90.0, now 13)",
          direction=UP, price=13.0, reference=None, observed=90.0),
    _kind("XAG breakout 20d", "XAG", "broke above its 20-day high 51.20 (now 51.30)",
          direction=UP, price=51.3, reference=51.2, observed=51.3),
    _kind("XAG breakdown 5d", "XAG", "broke below its 5-day low 47 (now 46.50)",
          price=46.5, reference=47.0, observed=46.5),
    _kind("BTC up 5% 1d", "BTC", "+5.50% over 1d (now 84,400, was 80,000)",
          direction=UP, price=84400.0, reference=80000.0, observed=5.5),
    _kind("BTC down 3% 4h", "BTC", "-3.20% over 4h (now 77,440, was 80,000)",
          price=77440.0, reference=80000.0, observed=-3.2),
    _kind("BTC move 2% 90m", "BTC", "-2.50% over 90m (now 78,000, was 80,000)",
          price=78000.0, reference=80000.0, observed=-2.5),
    _kind("XAU/BTC up 3% 1d", "XAU", "outperformed BTC by 3.00% over 1d (ratio 0.03, was 0.029)",
          price=0.03, reference=0.029, observed=3.0),
    _kind("XAU/BTC move 2% 7d", "XAU",
          "underperformed BTC by 2.50% over 7d (ratio 0.039, was 0.04)",
          price=0.039, reference=0.04, observed=-2.5),
    _kind("XAG spread > 0.3%", "XAG", "spread 0.42% is over 0.30% (bid 50 / ask 50.21)",
          direction=WIDER, reference=0.3, observed=0.42, **BOOK),
    _kind("XAG spread > 5x", "XAG",
          "spread 21.0c (0.42%), 7.0x its 3.0c median (bid 50 / ask 50.21)",
          direction=WIDER, reference=0.06, observed=0.4192, **BOOK),
    _kind("XAG spread > 0.15", "XAG", "spread 21.0c is over 15.0c (bid 50 / ask 50.21)",
          direction=WIDER, reference=0.15, observed=0.21, **BOOK),
    # a symbol with a venue and a slash is one subject, not a pair
    _kind("binance:BTC/USDT above 90000", "binance:BTC/USDT", "rose above 90,000 (now 90,100)",
          direction=UP, price=90100.0, reference=90000.0, observed=90100.0),
    # a bare rule (what storage rebuilds from a rule text that no longer parses)
    _kind(Rule("XAG", Condition.BREAKOUT), "XAG", "alert triggered (now 51.30)",
          rule_text="XAG breakout 20 days", direction=UP, price=51.3, reference=51.2,
          observed=51.3),
]  # fmt: skip
