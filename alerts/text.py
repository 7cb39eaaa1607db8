"""Human number formatting shared by alert messages and chat replies."""

from __future__ import annotations

import math


def number(x: float) -> str:
    """A price as people read it: `85,129.43`, `50`, `0.0001234`."""
    if not math.isfinite(x) or abs(x) >= 1e15:
        return f"{x:.3e}"
    if abs(x) >= 1:
        text = f"{x:,.2f}"
        return text[:-3] if text.endswith(".00") else text
    return f"{x:.4g}"


def pct(x: float, signed: bool = True) -> str:
    """A percentage with two decimals, signed by default: `+6.42%`."""
    return f"{x:+.2f}%" if signed else f"{x:.2f}%"
