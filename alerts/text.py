"""Human number formatting shared by alert messages and chat replies."""

from __future__ import annotations

import math
import unicodedata
from decimal import Decimal


def number(x: float) -> str:
    """A price as people read it, never in exponent form: `85,129.43`, `50`, `0.0001234`,
    `0.0000001`, `1,000,000,000,000,000,000`."""
    if not math.isfinite(x):
        return str(x)
    if abs(x) >= 1:
        text = f"{x:,.2f}"
        return text[:-3] if text.endswith(".00") else text
    text = f"{x:.4g}"  # four significant digits, in exponent form below 0.0001
    return f"{Decimal(text):f}" if "e" in text else text


def money(x: float) -> str:
    """A price difference: in cents under one unit (`21.0c`), else as a price."""
    return f"{x * 100:.1f}c" if abs(x) < 1 else number(x)


def pct(x: float, signed: bool = True) -> str:
    """A percentage with two decimals, signed by default: `+6.42%`."""
    return f"{x:+.2f}%" if signed else f"{x:.2f}%"


def count(n: int, noun: str) -> str:
    """`1 alert`, `2 alerts`, `0 alerts`."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def printable(text: str, limit: int = 30) -> str:
    """User text fit to echo back: control and direction-override characters dropped, cut to
    `limit` characters."""
    kept = "".join(ch for ch in text if unicodedata.category(ch) not in _HIDDEN)
    return kept[:limit] + ("…" if len(kept) > limit else "")


def fold(text: str) -> str:
    """What people type, as NFKC reads it (full-width `ＢＴＣ ８５０００` is `BTC 85000`), except
    that superscripts, subscripts, fractions and circled forms stay as typed: `5²` must not
    read as `52`, nor `/remove ①` remove alert #1."""
    if text.isascii():
        return text
    kept = "".join(
        ch if unicodedata.decomposition(ch).startswith(_KEPT) else unicodedata.normalize("NFKD", ch)
        for ch in text
    )
    return unicodedata.normalize("NFC", kept)


_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_KEPT = ("<super>", "<sub>", "<fraction>", "<circle>")  # forms that change what a number says
