"""Tests for the rule language: parsing, canonical formatting, errors and round trips."""

from __future__ import annotations

import string
from dataclasses import replace
from datetime import date, timedelta

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from alerts import rules
from alerts.models import Condition, Indicator, Rule, RuleError

C = Condition
MA, EMA, RSI = Indicator.MA, Indicator.EMA, Indicator.RSI
H = timedelta(hours=1)


def check_error(exc: RuleError) -> str:
    """Assert the house style of a RuleError message and return the message."""
    message = str(exc)
    assert len(message) <= 200, message
    assert "e.g. " in message, message
    rules.parse(message.rpartition("e.g. ")[2])
    return message


VALID = [
    ("XAG above 50", Rule("XAG", C.ABOVE, 50.0)),
    (
        "xag   ABOVE $50k cooldown 60m Once",
        Rule("XAG", C.ABOVE, 50000.0, cooldown=H, once=True),
    ),
    ("XAG resistance 52.5", Rule("XAG", C.RESISTANCE, 52.5)),
    ("XAU below 2,300", Rule("XAU", C.BELOW, 2300.0)),
    ("xau SUPPORT $1,234.5", Rule("XAU", C.SUPPORT, 1234.5)),
    ("BTC above 1.2m", Rule("BTC", C.ABOVE, 1_200_000.0)),
    ("BTC above 2B", Rule("BTC", C.ABOVE, 2e9)),
    ("BTC above 50,000.25", Rule("BTC", C.ABOVE, 50000.25)),
    ("BTC above 50K", Rule("BTC", C.ABOVE, 50000.0)),
    ("ETH below .5", Rule("ETH", C.BELOW, 0.5)),
    ("  XAG\tabove\n50  ", Rule("XAG", C.ABOVE, 50.0)),
    ("BTC breakout 20d", Rule("BTC", C.BREAKOUT, days=20)),
    ("btc BREAKDOWN 55", Rule("BTC", C.BREAKDOWN, days=55)),
    ("BTC up 6% 1d", Rule("BTC", C.UP, 6.0, window=timedelta(days=1))),
    ("ETH down 10 4H", Rule("ETH", C.DOWN, 10.0, window=4 * H)),
    ("XAG move 3.5% 15min", Rule("XAG", C.MOVE, 3.5, window=timedelta(minutes=15))),
    ("XAG move 2% 1w", Rule("XAG", C.MOVE, 2.0, window=timedelta(days=7))),
    ("BTC up 1% 2hr", Rule("BTC", C.UP, 1.0, window=2 * H)),
    ("BTC spread > 0.5%", Rule("BTC", C.SPREAD_PCT, 0.5)),
    ("BTC spread >0.5%", Rule("BTC", C.SPREAD_PCT, 0.5)),
    ("BTC SPREAD above 0.5%", Rule("BTC", C.SPREAD_PCT, 0.5)),
    ("BTC spread>2X", Rule("BTC", C.SPREAD_MULT, 2.0)),
    ("XAG spread > 0.15", Rule("XAG", C.SPREAD_ABS, 0.15)),
    ("silver spread > $0.2", Rule("SILVER", C.SPREAD_ABS, 0.2)),
    ("binance:sol/usdt spread > 3x", Rule("binance:SOL/USDT", C.SPREAD_MULT, 3.0)),
    ("yf:^gspc below 5000", Rule("yf:^GSPC", C.BELOW, 5000.0)),
    ("YF:gc=f above 2500", Rule("yf:GC=F", C.ABOVE, 2500.0)),
    ("BRK.B below 400", Rule("BRK.B", C.BELOW, 400.0)),
    ("XAU/XAG below 80", Rule("XAU", C.BELOW, 80.0, other="XAG")),
    ("xau/btc up 10% 30d", Rule("XAU", C.UP, 10.0, other="BTC", window=timedelta(days=30))),
    ("binance:SOL/USDT/XAU above 0.05", Rule("binance:SOL/USDT", C.ABOVE, 0.05, other="XAU")),
    ("XAU/kraken:eth/usd support 1.5", Rule("XAU", C.SUPPORT, 1.5, other="kraken:ETH/USD")),
    ("yf:XAU/XAG move 5% 7d", Rule("yf:XAU", C.MOVE, 5.0, other="XAG", window=timedelta(days=7))),
    (
        "XAG above 50 confirm 3 cooldown 2h once expires 2026-12-01",
        Rule("XAG", C.ABOVE, 50.0, confirm=3, cooldown=2 * H, once=True, expires=date(2026, 12, 1)),
    ),
    (
        "XAG above 50 EXPIRES 2026-12-31 ONCE confirm 1 Cooldown 90M",
        Rule(
            "XAG",
            C.ABOVE,
            50.0,
            cooldown=timedelta(minutes=90),
            once=True,
            expires=date(2026, 12, 31),
        ),
    ),
    ("UP above 5", Rule("UP", C.ABOVE, 5.0)),
    # the forms traders type
    ("XAG > 50", Rule("XAG", C.ABOVE, 50.0)),
    ("BTC < 85k", Rule("BTC", C.BELOW, 85000.0)),
    ("XAG >= 50", Rule("XAG", C.ABOVE, 50.0)),
    ("XAG <= 50", Rule("XAG", C.BELOW, 50.0)),
    ("XAG>50", Rule("XAG", C.ABOVE, 50.0)),
    ("BTC<$85,000", Rule("BTC", C.BELOW, 85000.0)),
    ("xag >=50 once", Rule("XAG", C.ABOVE, 50.0, once=True)),
    ("XAG crosses 50", Rule("XAG", C.CROSSES, 50.0)),
    ("XAU/XAG crosses 80", Rule("XAU", C.CROSSES, 80.0, other="XAG")),
    ("gold/silver ratio below 80", Rule("GOLD", C.BELOW, 80.0, other="SILVER")),
    ("XAU/XAG RATIO < 80", Rule("XAU", C.BELOW, 80.0, other="XAG")),
    ("BTC below ma 200d", Rule("BTC", C.BELOW, indicator=MA, days=200)),
    ("XAU crosses MA 50", Rule("XAU", C.CROSSES, indicator=MA, days=50)),
    ("btc < sma 200d", Rule("BTC", C.BELOW, indicator=MA, days=200)),
    ("ETH above ema 21d", Rule("ETH", C.ABOVE, indicator=EMA, days=21)),
    ("BTC rsi 14d above 70", Rule("BTC", C.ABOVE, 70.0, indicator=RSI, days=14)),
    ("XAG RSI 14 below 30", Rule("XAG", C.BELOW, 30.0, indicator=RSI, days=14)),
    ("BTC rsi 14d>70.5 cooldown 1d", Rule("BTC", C.ABOVE, 70.5, indicator=RSI, days=14,
                                          cooldown=timedelta(days=1))),
    ("ETH rsi 7d crosses 50", Rule("ETH", C.CROSSES, 50.0, indicator=RSI, days=7)),
    ("RSI above 5", Rule("RSI", C.ABOVE, 5.0)),  # a symbol may be called RSI
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), VALID)
def test_parse_valid(text: str, expected: Rule) -> None:
    assert rules.parse(text) == expected


CANONICAL = [
    ("xag   ABOVE $50k cooldown 60m Once", "XAG above 50000 cooldown 1h once"),
    ("XAG above 0.00000001", "XAG above 0.00000001"),
    ("XAG above 0.10", "XAG above 0.1"),
    ("XAG above 50.0", "XAG above 50"),
    ("XAG above 50.", "XAG above 50"),
    ("BTC above 1.2m", "BTC above 1200000"),
    ("BTC above $1,000,000,000,000,000", "BTC above 1000000000000000"),
    ("xag resistance 52", "XAG resistance 52"),
    ("btc breakout 20", "BTC breakout 20d"),
    ("eth down 10 1w", "ETH down 10% 7d"),
    ("xag move 3.50% 90m", "XAG move 3.5% 90m"),
    ("xag move 3% 120m", "XAG move 3% 2h"),
    ("xag move 3% 1440min", "XAG move 3% 1d"),
    ("BTC spread above .5%", "BTC spread > 0.5%"),
    ("BTC spread>3X", "BTC spread > 3x"),
    ("xau/xag SUPPORT 80", "XAU/XAG support 80"),
    ("yf:^gspc below 5,000", "yf:^GSPC below 5000"),
    ("BINANCE:sol/usdt resistance 250", "binance:SOL/USDT resistance 250"),
    (
        "XAG above 50 expires 2026-12-31 once cooldown 4h confirm 2",
        "XAG above 50 confirm 2 cooldown 4h once expires 2026-12-31",
    ),
    ("XAG above 50 confirm 1", "XAG above 50"),
    ("XAG > 50", "XAG above 50"),
    ("XAG >= 50", "XAG above 50"),
    ("BTC < 85k", "BTC below 85000"),
    ("BTC <= 85k", "BTC below 85000"),
    ("xag CROSSES $50", "XAG crosses 50"),
    ("gold/silver ratio below 80", "GOLD/SILVER below 80"),  # the catalogue makes it XAU/XAG
    ("btc < SMA 200", "BTC below ma 200d"),
    ("xau crosses ma 050d", "XAU crosses ma 50d"),
    ("eth > EMA 21D", "ETH above ema 21d"),
    ("btc RSI 14 > 70.0", "BTC rsi 14d above 70"),
    ("xag rsi 14d <= 30 confirm 2", "XAG rsi 14d below 30 confirm 2"),
]


@pytest.mark.parametrize(("text", "canonical"), CANONICAL)
def test_format_canonical(text: str, canonical: str) -> None:
    assert rules.format(rules.parse(text)) == canonical
    assert rules.parse(canonical) == rules.parse(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [(1e-08, "0.00000001"), (50000.0, "50000"), (0.1, "0.1"), (1e15, "1000000000000000")],
)
def test_format_numbers(value: float, text: str) -> None:
    assert rules.format(Rule("XAG", C.ABOVE, value)) == f"XAG above {text}"


@pytest.mark.parametrize("example", rules.EXAMPLES)
def test_examples_are_canonical(example: str) -> None:
    assert rules.format(rules.parse(example)) == example


def test_examples_cover_every_condition() -> None:
    parsed = [rules.parse(example) for example in rules.EXAMPLES]
    assert {rule.condition for rule in parsed} == set(Condition)
    assert {rule.indicator for rule in parsed} == {None, *Indicator}
    assert any(rule.other is not None for rule in parsed)


MALFORMED = [
    ("", None),
    ("   \n\t ", None),
    ("XAG abov 50", "abov"),
    ("XAG blow 50", "blow"),
    ("XAG frobnicate 50", "frobnicate"),
    ("XAG above abc", "abc"),
    ("XAG above", "above"),
    ("XAG above 1,23", "1,23"),
    ("XAG above 1234,567", "1234,567"),
    ("XAG above --5", "--5"),
    ("XAG above nan", "nan"),
    ("XAG above inf", "inf"),
    ("XAG above 1e400", "1e400"),
    ("XAG above 0", "0"),
    ("XAG above $0.00", "$0.00"),
    ("XAG above -5", "-5"),
    ("XAG above 2000000b", "2000000b"),
    ("XAG above €50", "€50"),
    ("XAG", "XAG"),
    ("above 50", "above"),
    ("XA$ above 50", "XA$"),
    ("<b>XAG</b> above 50", "<b"),
    ("XAU/ above 50", "XAU/"),
    ("/XAU above 50", "/XAU"),
    ("XAU/XAU below 80", "XAU/XAU"),
    ("xau/XAU below 80", "xau/XAU"),
    ("XAU/XAG/XPT below 80", "XAU/XAG/XPT"),
    ("binance: above 5", "binance:"),
    ("binance:SOL/ above 5", "binance:SOL/"),
    ("bin-ance:SOL above 5", "bin-ance:SOL"),
    ("... above 5", "..."),
    ("XAU/XAG breakout 20d", "breakout"),
    ("XAU/XAG spread > 1%", "spread"),
    ("BTC breakout 20x", "20x"),
    ("BTC breakout 0", "0"),
    ("BTC breakout 3651d", "3651d"),
    ("BTC breakout", "breakout"),
    ("BTC up", "up"),
    ("BTC up 6%", "6%"),
    ("BTC up 6% 20x", "20x"),
    ("BTC up six% 1d", "six%"),
    ("BTC up 0% 1d", "0%"),
    ("BTC up 1001% 1d", "1001%"),
    ("BTC down 100% 1d", "100%"),
    ("BTC up -5% 1d", "-5%"),
    ("BTC up 6% 0m", "0m"),
    ("BTC up 6% 3651d", "3651d"),
    ("BTC up 6% 99999999999999999999999d", "99999999999999999999999d"),
    ("BTC spread", "spread"),
    ("BTC spread 0.5%", "0.5%"),
    ("BTC spread >", "spread >"),
    ("BTC spread > -0.5", "-0.5"),
    ("BTC spread > 101%", "101%"),
    ("BTC spread > 0%", "0%"),
    ("BTC spread > 1x", "1x"),
    ("BTC spread > 1001x", "1001x"),
    ("BTC spread > wide", "wide"),
    ("BTC below 85000 coldown 1h", "coldown"),
    ("XAG above 50 60", "60"),
    ("XAG above 50 confirm 2 confirm 3", "confirm"),
    ("XAG above 50 once once", "once"),
    ("XAG above 50 confirm 0", "0"),
    ("XAG above 50 confirm 101", "101"),
    ("XAG above 50 confirm x", "x"),
    ("XAG above 50 confirm", "confirm"),
    ("XAG above 50 cooldown 20x", "20x"),
    ("XAG above 50 cooldown", "cooldown"),
    ("XAG above 50 expires 2026-13-01", "2026-13-01"),
    ("XAG above 50 expires 2026-02-30", "2026-02-30"),
    ("XAG above 50 expires 20261231", "20261231"),
    ("XAG above 50 expires tomorrow", "tomorrow"),
    ("> 50", ">"),
    ("XAG >", ">"),
    ("XAG crosses", "crosses"),
    ("XAG => 50", "="),
    ("XAG ratio below 80", "ratio"),
    ("XAU/XAG ratio", "XAU/XAG"),
    ("XAG support ma 200d", "support"),
    ("XAU/XAG below ma 200d", "XAU/XAG"),
    ("BTC below ma", "ma"),
    ("BTC below ema 1d", "1d"),
    ("BTC below ma 501d", "501d"),
    ("BTC below ma 20x", "20x"),
    ("BTC rsi", "rsi"),
    ("BTC rsi 14d", "rsi 14d"),
    ("BTC rsi 14d 70", "70"),
    ("BTC rsi 14d support 30", "support"),
    ("BTC rsi 14d above", "above"),
    ("BTC rsi 14d above 100", "100"),
    ("BTC rsi 14d above 0", "0"),
    ("BTC rsi 14d above 7O", "7O"),
    ("BTC rsi fourteen above 70", "fourteen"),
    ("XAU/XAG rsi 14d above 70", "XAU/XAG"),
]


@pytest.mark.parametrize(("text", "token"), MALFORMED)
def test_malformed(text: str, token: str | None) -> None:
    with pytest.raises(RuleError) as info:
        rules.parse(text)
    message = check_error(info.value)
    if token is not None:
        assert f"'{token}'" in message


def test_error_suggestions() -> None:
    with pytest.raises(RuleError, match="did you mean 'above'"):
        rules.parse("XAG abov 50")
    with pytest.raises(RuleError, match="did you mean 'cooldown'"):
        rules.parse("BTC below 85000 coldown 1h")
    with pytest.raises(RuleError) as info:
        rules.parse("BTC spread > wide")
    assert "0.5%, 3x or 0.15" in str(info.value)


def test_exact_messages() -> None:
    cases = {
        "": "empty rule. e.g. XAG above 50",
        "XAG abov 50": "unknown condition 'abov' — did you mean 'above'? e.g. XAG above 50",
        "XAG above abc": "'abc' is not a price. e.g. XAG above 50",
        "XAG above": "missing price after 'above'. e.g. XAG above 50",
        "BTC below 85000 coldown 1h": (
            "unknown option 'coldown' — did you mean 'cooldown'? e.g. BTC below 85000 cooldown 1h"
        ),
    }
    for text, expected in cases.items():
        with pytest.raises(RuleError) as info:
            rules.parse(text)
        assert str(info.value) == expected


@pytest.mark.parametrize(
    "text",
    [
        "XAG above 50 " + "x" * 10_000,
        "x" * 10_000,
        "XAG " + "a" * 10_000,
        "XAG above " + "9" * 10_000,
        "XAG above ." + "0" * 10_000 + "1",
        "XAG up 5% " + "1" * 10_000 + "m",
        "XAG\x00\x07 above 50",
        "XAG above 50 \u202e\u0000",
    ],
)
def test_hostile_input_gives_short_messages(text: str) -> None:
    with pytest.raises(RuleError) as info:
        rules.parse(text)
    message = check_error(info.value)
    assert "\x00" not in message and "\x07" not in message


@pytest.mark.parametrize(
    ("token", "minutes"),
    [("1m", 1), ("15min", 15), ("90m", 90), ("4h", 240), ("2HR", 120), ("1d", 1440), ("1w", 10080)],
)
def test_parse_duration(token: str, minutes: int) -> None:
    assert rules.parse_duration(token) == timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("minutes", "text"),
    [(1, "1m"), (90, "90m"), (120, "2h"), (1500, "25h"), (1440, "1d"), (10080, "7d")],
)
def test_format_duration(minutes: int, text: str) -> None:
    assert rules.format_duration(timedelta(minutes=minutes)) == text


@pytest.mark.parametrize(
    "td", [timedelta(0), timedelta(seconds=30), timedelta(minutes=-5), timedelta(seconds=90)]
)
def test_format_duration_rejects(td: timedelta) -> None:
    with pytest.raises(RuleError) as info:
        rules.format_duration(td)
    check_error(info.value)


@pytest.mark.parametrize("token", ["", "5", "m", "1.5h", "-1h", "1y", "0m", "3651d", "1 h"])
def test_parse_duration_rejects(token: str) -> None:
    with pytest.raises(RuleError) as info:
        rules.parse_duration(token)
    check_error(info.value)


@pytest.mark.parametrize(
    ("token", "value"),
    [("50", 50.0), ("$1,234.5", 1234.5), ("1.1k", 1100.0), ("1.2M", 1.2e6), ("2b", 2e9)],
)
def test_parse_number(token: str, value: float) -> None:
    assert rules.parse_number(token) == value


# Hypothesis: every valid rule survives format -> parse, and parse never raises anything else.

TICKER_CHARS = string.ascii_uppercase + string.digits + "^=._-"
tickers = st.text(TICKER_CHARS, min_size=1, max_size=12).filter(
    lambda t: any(c.isalnum() for c in t)
)
venues = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=8)
exchanges = venues.filter(lambda v: v != "yf")
symbols = st.one_of(
    tickers,
    tickers.map(lambda t: f"yf:{t}"),
    st.builds(lambda v, t: f"{v}:{t}", exchanges, tickers),
    st.builds(lambda v, t, q: f"{v}:{t}/{q}", exchanges, tickers, tickers),
)
minutes = st.integers(min_value=1, max_value=3650 * 24 * 60).map(lambda m: timedelta(minutes=m))


def floats(
    low: float, high: float, *, exclude_low: bool = False, exclude_high: bool = False
) -> st.SearchStrategy[float]:
    return st.floats(
        min_value=low,
        max_value=high,
        exclude_min=exclude_low,
        exclude_max=exclude_high,
        allow_nan=False,
        allow_infinity=False,
    )


def unwritable(symbol: str, other: str) -> bool:
    """`binance:SOL` vs `XAU` has no text: `binance:SOL/XAU` reads as one exchange pair."""
    exchange_without_quote = ":" in symbol and not symbol.startswith("yf:") and "/" not in symbol
    return exchange_without_quote and ":" not in other


@st.composite
def valid_rules(draw: st.DrawFn) -> Rule:
    symbol = draw(symbols)
    other = draw(st.none() | symbols)
    if other is not None:
        assume(other != symbol and not unwritable(symbol, other))
        conditions = [c for c in Condition if c.is_level or c.is_change]
    else:
        conditions = list(Condition)
    cond = draw(st.sampled_from(conditions))
    value, days, window, indicator = 0.0, None, None, None
    if other is None and cond in (C.ABOVE, C.BELOW, C.CROSSES):
        indicator = draw(st.none() | st.sampled_from(Indicator))
    if indicator is not None:
        days = draw(st.integers(min_value=2, max_value=500))
        if indicator is RSI:
            value = draw(floats(0.0, 100.0, exclude_low=True, exclude_high=True))
    elif cond.is_level:
        value = draw(floats(1e-8, 1e15))
    elif cond.is_channel:
        days = draw(st.integers(min_value=1, max_value=3650))
    elif cond.is_change:
        high = 100.0 if cond is C.DOWN else 1000.0
        value = draw(floats(1e-8, high, exclude_high=cond is C.DOWN))
        window = draw(minutes)
    elif cond is C.SPREAD_PCT:
        value = draw(floats(1e-8, 100.0))
    elif cond is C.SPREAD_ABS:
        value = draw(floats(1e-8, 1e8))
    else:
        value = draw(floats(1.0, 1000.0, exclude_low=True))
    return Rule(
        symbol=symbol,
        condition=cond,
        value=value,
        other=other,
        days=days,
        window=window,
        indicator=indicator,
        confirm=draw(st.integers(min_value=1, max_value=100)),
        cooldown=draw(st.none() | minutes),
        once=draw(st.booleans()),
        expires=draw(st.none() | st.dates()),
    )


@settings(max_examples=500)
@given(valid_rules())
def test_round_trip(rule: Rule) -> None:
    text = rules.format(rule)
    assert rules.parse(text) == rule
    assert rules.format(rules.parse(text)) == text


def parse_or_error(text: str) -> None:
    """parse returns a Rule that round-trips, or raises a well-formed RuleError."""
    try:
        rule = rules.parse(text)
    except RuleError as exc:
        check_error(exc)
    else:
        assert rules.parse(rules.format(rule)) == rule


@settings(max_examples=500)
@given(st.text(max_size=300))
def test_fuzz_text(text: str) -> None:
    parse_or_error(text)


JUNK = [
    *(c.value for c in Condition),
    *("spread", "confirm", "cooldown", "once", "expires", ">", "above", "%", "x", "$", "/"),
    *("XAG", "xau/xag", "XAU/XAU", "binance:SOL/USDT", "yf:^gspc", "yf:", ":", "a:b:c"),
    *("50", "50k", "$1,234.5", ".5", "1,23", "--5", "-5", "0", "nan", "inf", "1e400"),
    *("6%", "0.5%", "3x", "1x", "20d", "20", "1h", "90m", "2w", "20x", "0m", "3651d"),
    *("2026-12-31", "2026-13-01", "<b>", "é", "\x00", "9" * 40, "'", "e.g."),
    *("crosses", "ma", "sma", "ema", "rsi", "ratio", "<", ">=", "<=", "=", "14d", "200d", "70"),
]


@settings(max_examples=500)
@given(st.lists(st.sampled_from(JUNK), max_size=10))
def test_fuzz_keywords(words: list[str]) -> None:
    parse_or_error(" ".join(words))


@settings(max_examples=300)
@given(valid_rules(), st.integers(min_value=0, max_value=20), st.sampled_from(JUNK))
def test_fuzz_mutated_rules(rule: Rule, position: int, junk: str) -> None:
    words = rules.format(rule).split()
    words.insert(min(position, len(words)), junk)
    parse_or_error(" ".join(words))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["BTC", "xau", "gold", "XAU/XAG", "binance:ETH/USDT", "yahoo:SI=F", "B!"]),
    st.sampled_from(["above", "below", "crosses", "Above", "under"]),
    st.one_of(
        st.from_regex(r"[0-9]{1,16}(\.[0-9]{1,12})?", fullmatch=True),
        st.sampled_from(["0", "0.0", "007", "1e5", "50k", "1.", ".5"]),
    ),
)
def test_a_plain_level_parses_as_its_shape_with_the_level_replaced(
    subject: str, condition: str, number: str
) -> None:
    text = f"{subject} {condition} {number}"
    level = rules.split_level(text)
    try:
        expected: Rule | str = rules.parse(text)
    except RuleError as err:
        expected = str(err)
    if level is None:
        return
    shape, value = level
    try:
        template = rules.parse(shape)
    except RuleError:
        assert isinstance(expected, str)  # the loader then parses the text itself
        return
    assert replace(template, value=value) == expected


def test_a_rule_at_another_value_keeps_every_other_field() -> None:
    rule = Rule(
        "XAU", Condition.ABOVE, 2, "XAG", 20, timedelta(hours=1), Indicator.RSI, 3,
        timedelta(minutes=30), True, date(2027, 1, 1),
    )  # fmt: skip
    assert rule.at(5.5) == replace(rule, value=5.5)
