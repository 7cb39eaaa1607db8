"""Human text of numbers and what people type (alerts.text)."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts import rules
from alerts.text import fold, number


@pytest.mark.parametrize(
    ("typed", "read"),
    [
        ("BTC above 85000", "BTC above 85000"),
        ("ＢＴＣ ａｂｏｖｅ ８５０００", "BTC above 85000"),  # full-width letters and digits
        ("／ｓｔａｔｕｓ\u3000ＢＴＣ", "/status BTC"),  # ideographic space
        ("ＸＡＵ／ＸＡＧ ｂｅｌｏｗ ８０", "XAU/XAG below 80"),
        ("ﾋﾞｯﾄ", "ビット"),  # half-width katakana: composed, as NFKC does
        ("café", "café"),  # stays composed
        ("BTC above 5²", "BTC above 5²"),  # kept: NFKC would read 52
        ("XAG below ½", "XAG below ½"),
        ("H₂", "H₂"),
        ("/remove ①", "/remove ①"),
    ],
)
def test_fold(typed: str, read: str) -> None:
    assert fold(typed) == read
    assert fold(read) == read


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (85129.434, "85,129.43"),
        (50.0, "50"),
        (0.5, "0.5"),
        (0.0001234, "0.0001234"),
        (1e-7, "0.0000001"),
        (-1.23456e-9, "-0.000000001235"),
        (0.99996, "1"),
        (1e15, "1,000,000,000,000,000"),
        (2.5e20, "250,000,000,000,000,000,000"),
    ],
)
def test_number(value: float, text: str) -> None:
    assert number(value) == text


@given(
    st.floats(min_value=1e-30, max_value=1e30, allow_nan=False, allow_infinity=False),
    st.booleans(),
)
def test_number_is_never_in_exponent_form_and_reads_back(x: float, negative: bool) -> None:
    """Tiny and huge alike: plain digits (the ones a person can type back), to four
    significant digits below 1 and to the cent above."""
    value = -x if negative else x
    text = number(value)
    assert "e" not in text.lower()
    read = float(Decimal(text.replace(",", "")))
    if abs(value) >= 1:
        assert abs(read - value) <= 0.005 + abs(value) * 1e-15
    else:
        assert math.isclose(read, value, rel_tol=5e-4)
    if 0 < value <= 1e15:  # within what a rule may name
        assert rules.parse_number(text) == read
