"""Human text of numbers and what people type (alerts.text)."""

from __future__ import annotations

import pytest

from alerts.text import fold


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
