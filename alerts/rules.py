"""The rule language: chat text such as `XAG above 50 cooldown 1h` to a Rule and back.

`parse` reads `SUBJECT CONDITION [OPTIONS...]` (case-insensitive, whitespace separated) and
`format` writes the canonical text, so `parse(format(rule)) == rule` for every rule `parse` can
return. Any bad input raises RuleError with a short message that quotes the offending token and
ends with a valid example after "e.g. ". See DESIGN.md, "The rule language".
"""

from __future__ import annotations

import difflib
import re
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

from alerts.models import Condition, Indicator, Rule, RuleError

_EG_LEVEL = "XAG above 50"
_EG_PAIR = "XAU/XAG below 80"
_EG_AVERAGE = "BTC below ma 200d"
_EG_RSI = "BTC rsi 14d above 70"
_EG_CHANNEL = "BTC breakout 20d"
_EG_CHANGE = "BTC up 6% 1d"
_EG_DOWN = "ETH down 10% 4h"
_EG_SPREAD = "BTC spread > 0.5%"
_EG_SYMBOL = "XAG or binance:SOL/USDT"
_EG_OPTION = {
    "confirm": "XAG above 50 confirm 3",
    "cooldown": "BTC below 85000 cooldown 1h",
    "once": "XAG above 50 once",
    "expires": "XAG above 50 expires 2026-12-31",
}

EXAMPLES: tuple[str, ...] = (
    _EG_LEVEL,
    "XAU below 2300",
    "XAG resistance 52",
    "XAU support 2250",
    "XAG crosses 50",
    _EG_AVERAGE,
    "XAU crosses ma 50d",
    "ETH above ema 21d",
    _EG_RSI,
    "XAG rsi 14d below 30",
    _EG_CHANNEL,
    "ETH breakdown 55d",
    _EG_CHANGE,
    _EG_DOWN,
    "XAG move 3% 15m",
    _EG_SPREAD,
    "binance:SOL/USDT spread > 3x",
    "XAG spread > 0.15",
    _EG_PAIR,
    "XAU/BTC up 10% 30d",
    "BTC below 85000 confirm 3 cooldown 1h once expires 2026-12-31",
)

_LEVELS = {
    c.value: c
    for c in (
        Condition.ABOVE,
        Condition.RESISTANCE,
        Condition.BELOW,
        Condition.SUPPORT,
        Condition.CROSSES,
    )
}
# What traders type for above and below; `>` and `>=` both read as `above` (touching counts).
_OPERATORS = {
    ">": Condition.ABOVE,
    ">=": Condition.ABOVE,
    "<": Condition.BELOW,
    "<=": Condition.BELOW,
}
# The conditions an indicator (ma, ema, rsi) takes.
_RELATIONS = {
    **{c.value: c for c in (Condition.ABOVE, Condition.BELOW, Condition.CROSSES)},
    **_OPERATORS,
}
_AVERAGES = {"ma": Indicator.MA, "sma": Indicator.MA, "ema": Indicator.EMA}
_CHANNELS = {c.value: c for c in (Condition.BREAKOUT, Condition.BREAKDOWN)}
_CHANGES = {c.value: c for c in (Condition.UP, Condition.DOWN, Condition.MOVE)}
_CONDITIONS = (*_LEVELS, *_CHANNELS, *_CHANGES, "spread", Indicator.RSI.value)
_OPTIONS = tuple(_EG_OPTION)

_MAX_NUMBER = Decimal(10) ** 15
_MAX_DAYS = 3650
_MAX_PERIOD = 500  # longest ma/ema/rsi period in days
_MAX_MINUTES = _MAX_DAYS * 24 * 60
_MAX_PART = 32  # longest venue or ticker accepted; real ones are far shorter
_MAX_QUOTED = 30
_UNIT_MINUTES = {"m": 1, "min": 1, "h": 60, "hr": 60, "d": 24 * 60, "w": 7 * 24 * 60}
_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9}

_NUMBER = re.compile(
    r"\$?([0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]*)?|[0-9]+(?:\.[0-9]*)?|\.[0-9]+)([kKmMbB]?)"
)
# `<` splits off only before what can follow it in a rule, so `<b>` stays one (bad) token.
_OPERATOR = re.compile(r"<=?(?=[\s0-9.$]|$)|>=?")
_PLAIN = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
_DIGITS = re.compile(r"[0-9]+")
_DAYS = re.compile(r"([0-9]+)d?")
_DURATION = re.compile(r"([0-9]+)(m|min|h|hr|d|w)")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_VENUE = re.compile(r"[A-Za-z0-9]+")
_TICKER = re.compile(r"[A-Za-z0-9^=._-]+")


def parse(text: str) -> Rule:
    """Read one rule; raise RuleError naming the bad token, with an example, on any mistake."""
    # `BTC<85k` and `spread>0.5%` read as `BTC < 85k` and `spread > 0.5%`
    tokens = _OPERATOR.sub(lambda m: f" {m[0]} ", text).split()
    if not tokens:
        raise _error("empty rule", _EG_LEVEL)
    first = _key(tokens[0])
    if (first in _CONDITIONS or first in _OPERATORS) and (
        len(tokens) == 1 or _key(tokens[1]) not in _CONDITIONS
    ):
        raise _error(f"missing symbol before {_q(tokens[0])}", _EG_LEVEL)
    symbol, other = _parse_subject(tokens[0])
    if len(tokens) > 1 and _key(tokens[1]) == "ratio":  # `gold/silver ratio below 80`
        if other is None:
            raise _error(f"'ratio' needs a pair like XAU/XAG, not {_q(tokens[0])}", _EG_PAIR)
        del tokens[1]
    if len(tokens) == 1:
        raise _error(f"missing condition after {_q(tokens[0])}", _EG_LEVEL)
    rule, rest = _parse_condition(symbol, other, tokens[1], tokens[2:])
    return _parse_options(rule, rest)


def format(rule: Rule) -> str:
    """Write a rule as canonical text (inverse of `parse`)."""
    cond = rule.condition
    words = [rule.pair]
    if rule.indicator is not None:
        if rule.days is None:
            raise _error(f"{_q(rule.indicator.value)} rule without a number of days", _EG_AVERAGE)
        if rule.indicator is Indicator.RSI:
            words += ["rsi", f"{rule.days}d", cond.value, _number_text(rule.value)]
        else:
            words += [cond.value, rule.indicator.value, f"{rule.days}d"]
    elif cond.is_level:
        words += [cond.value, _number_text(rule.value)]
    elif cond.is_channel:
        if rule.days is None:
            raise _error(f"{_q(cond.value)} rule without a number of days", _EG_CHANNEL)
        words += [cond.value, f"{rule.days}d"]
    elif cond.is_change:
        if rule.window is None:
            raise _error(f"{_q(cond.value)} rule without a window", _EG_CHANGE)
        words += [cond.value, f"{_number_text(rule.value)}%", format_duration(rule.window)]
    else:
        unit = {Condition.SPREAD_PCT: "%", Condition.SPREAD_MULT: "x"}.get(cond, "")
        words += ["spread", ">", f"{_number_text(rule.value)}{unit}"]
    if rule.confirm != 1:
        words += ["confirm", str(rule.confirm)]
    if rule.cooldown is not None:
        words += ["cooldown", format_duration(rule.cooldown)]
    if rule.once:
        words.append("once")
    if rule.expires is not None:
        words += ["expires", rule.expires.isoformat()]
    return " ".join(words)


_PLAIN_LEVEL = re.compile(r"(\S+ (?:above|below|crosses) )([0-9]{1,15}(?:\.[0-9]+)?)")


def split_level(text: str) -> tuple[str, float] | None:
    """For the commonest rule, `SUBJECT above|below|crosses NUMBER` with a plain positive
    number: the same text with the number replaced by 1, and the number; else None. Such rules
    differ only in their level, so a loader parses one text per shape (a million distinct
    levels load in seconds): `parse(text)` equals `parse(shape)` with its value replaced."""
    match = _PLAIN_LEVEL.fullmatch(text)
    if match is None:
        return None
    value = float(match[2])
    return (f"{match[1]}1", value) if value > 0 else None


def parse_number(token: str) -> float:
    """Read a positive price such as `50`, `.5`, `50k`, `1.2m`, `2b`, `$50,000.25`."""
    match = _NUMBER.fullmatch(token)
    if match is None:
        raise _error(f"{_q(token)} is not a price", _EG_LEVEL)
    base = Decimal(match[1].replace(",", ""))
    # Bound before multiplying so absurdly long digit strings cannot overflow Decimal.
    value = base * _SUFFIX[match[2].lower()] if base <= _MAX_NUMBER else base
    if value > _MAX_NUMBER:
        raise _error(f"{_q(token)} is too large (max 1e15)", _EG_LEVEL)
    number = float(value)
    if not number > 0:
        raise _error(f"{_q(token)} must be more than 0", _EG_LEVEL)
    return number


def parse_duration(token: str, example: str = _EG_CHANGE) -> timedelta:
    """Read a duration such as `15m`, `90min`, `4h`, `2hr`, `1d`, `2w` (1 minute to 3650 days);
    a RuleError shows `example` (a command's own, e.g. `/mute 2h`, where a rule's would mislead)."""
    return _duration(token, example)


def format_duration(td: timedelta) -> str:
    """Write a duration in the largest of d, h, m that divides it evenly: 7d, 2h, 90m."""
    minutes, rest = divmod(td, timedelta(minutes=1))
    if rest or minutes < 1:
        raise _error(f"{_q(str(td))} is not a positive whole number of minutes", _EG_CHANGE)
    for unit, size in (("d", 24 * 60), ("h", 60)):
        if minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


def parse_symbol(text: str) -> str:
    """One symbol as people type it (`xag`, `binance:SOL/USDT`, `yf:^GSPC`), checked exactly as
    a rule's subject is; a pair is refused. Whether the symbol is known is the catalogue's to say.
    """
    token = text.strip()
    try:
        symbol, other = _parse_subject(token)
    except RuleError:  # its example is a rule's; a command that takes a symbol shows symbols
        raise _error(f"{_q(token)} is not a valid symbol", _EG_SYMBOL) from None
    if other is not None:
        raise _error(f"{_q(token)} is a pair; give one symbol", _EG_SYMBOL)
    return symbol


def _parse_subject(token: str) -> tuple[str, str | None]:
    """The symbol and, for a pair, the other symbol of a subject token."""
    parts = token.split("/")
    symbols: list[str] = []
    i = 0
    while i < len(parts):
        venue, colon, ticker = parts[i].rpartition(":")
        quote = None
        # A venue other than yf names an exchange pair: its ticker may carry `/QUOTE`.
        if colon and venue.lower() != "yf" and i + 1 < len(parts) and ":" not in parts[i + 1]:
            i += 1
            quote = parts[i]
        ok = (not colon or _is_venue(venue)) and _is_ticker(ticker)
        if not ok or (quote is not None and not _is_ticker(quote)):
            raise _error(f"{_q(token)} is not a valid symbol or pair", _EG_LEVEL)
        symbol = ticker.upper() if quote is None else f"{ticker}/{quote}".upper()
        symbols.append(f"{venue.lower()}:{symbol}" if colon else symbol)
        i += 1
    if len(symbols) > 2:
        raise _error(f"{_q(token)} names more than two symbols", _EG_PAIR)
    if len(symbols) == 2 and symbols[0] == symbols[1]:
        raise _error(f"{_q(token)} compares a symbol with itself", _EG_PAIR)
    return symbols[0], symbols[1] if len(symbols) == 2 else None


def _is_venue(text: str) -> bool:
    return len(text) <= _MAX_PART and _VENUE.fullmatch(text) is not None


def _is_ticker(text: str) -> bool:
    return (
        len(text) <= _MAX_PART
        and _TICKER.fullmatch(text) is not None
        and any(c.isalnum() for c in text)
    )


def _parse_condition(
    symbol: str, other: str | None, word: str, args: list[str]
) -> tuple[Rule, list[str]]:
    """The rule built from the condition `word` and its arguments, and the words left over."""
    keyword = _key(word)
    if keyword in _LEVELS or keyword in _OPERATORS:
        cond = _LEVELS.get(keyword) or _OPERATORS[keyword]
        example = _EG_LEVEL if other is None else _EG_PAIR
        if not args:
            raise _error(f"missing price after {_q(keyword)}", example)
        average = _AVERAGES.get(_key(args[0]))
        if average is not None:
            return _parse_average(symbol, other, keyword, average, args[1:])
        value = parse_number(args[0])
        return Rule(symbol=symbol, condition=cond, value=value, other=other), args[1:]
    if keyword == Indicator.RSI.value:
        return _parse_rsi(symbol, other, args)
    if keyword in _CHANGES:
        cond = _CHANGES[keyword]
        if not args:
            raise _error(f"missing percent after {_q(keyword)}", _EG_CHANGE)
        value = _change_percent(args[0], cond)
        if len(args) < 2:
            raise _error(f"missing window after {_q(args[0])}", _EG_CHANGE)
        window = parse_duration(args[1])
        rule = Rule(symbol=symbol, condition=cond, value=value, other=other, window=window)
        return rule, args[2:]
    if keyword not in _CONDITIONS:
        fallback = f"unknown condition {_q(word)} (try {', '.join(_CONDITIONS)})"
        raise _unknown("condition", word, _CONDITIONS, fallback, _EG_LEVEL)
    example = _EG_CHANNEL if keyword in _CHANNELS else _EG_SPREAD
    if other is not None:
        pair = _q(f"{symbol}/{other}")
        raise _error(f"{_q(keyword)} needs a single symbol, not the pair {pair}", example)
    if keyword in _CHANNELS:
        if not args:
            raise _error(f"missing days after {_q(keyword)}", example)
        days = _parse_days(args[0])
        return Rule(symbol=symbol, condition=_CHANNELS[keyword], days=days), args[1:]
    if not args or _key(args[0]) not in (">", "above"):
        got = f", not {_q(args[0])}" if args else ""
        raise _error(f"expected '>' after 'spread'{got}", example)
    if len(args) < 2:
        raise _error("missing threshold after 'spread >'", example)
    cond, value = _spread(args[1])
    return Rule(symbol=symbol, condition=cond, value=value), args[2:]


def _parse_average(
    symbol: str, other: str | None, keyword: str, kind: Indicator, args: list[str]
) -> tuple[Rule, list[str]]:
    """`above|below|crosses ma|ema Nd` after the subject; `args` are the words after `ma`."""
    if other is not None:
        pair = _q(f"{symbol}/{other}")
        raise _error(f"a moving average needs a single symbol, not the pair {pair}", _EG_AVERAGE)
    cond = _RELATIONS.get(keyword)
    if cond is None:
        message = f"{_q(keyword)} takes a price; with a moving average use above, below or crosses"
        raise _error(message, _EG_AVERAGE)
    if not args:
        raise _error(f"missing days after {_q(kind.value)}", _EG_AVERAGE)
    days = _period(args[0], _EG_AVERAGE)
    return Rule(symbol=symbol, condition=cond, indicator=kind, days=days), args[1:]


def _parse_rsi(symbol: str, other: str | None, args: list[str]) -> tuple[Rule, list[str]]:
    """`rsi Nd above|below|crosses L` after the subject."""
    if other is not None:
        raise _error(
            f"'rsi' needs a single symbol, not the pair {_q(f'{symbol}/{other}')}", _EG_RSI
        )
    if not args:
        raise _error("missing days after 'rsi'", _EG_RSI)
    days = _period(args[0], _EG_RSI)
    cond = _RELATIONS.get(_key(args[1])) if len(args) > 1 else None
    if cond is None:
        got = f", not {_q(args[1])}" if len(args) > 1 else ""
        raise _error(f"expected above, below or crosses after 'rsi {days}d'{got}", _EG_RSI)
    if len(args) < 3:
        raise _error(f"missing RSI level after {_q(args[1])}", _EG_RSI)
    value = _plain(args[2])
    if value is None or not 0 < value < 100:
        raise _error(f"{_q(args[2])} is not an RSI level (over 0, under 100)", _EG_RSI)
    rule = Rule(symbol=symbol, condition=cond, value=value, indicator=Indicator.RSI, days=days)
    return rule, args[3:]


def _period(token: str, example: str) -> int:
    match = _DAYS.fullmatch(_key(token))
    days = _int(match[1]) if match else 0
    if not 2 <= days <= _MAX_PERIOD:
        raise _error(f"{_q(token)} is not a number of days from 2d to {_MAX_PERIOD}d", example)
    return days


def _duration(token: str, example: str) -> timedelta:
    match = _DURATION.fullmatch(_key(token))
    if match is None:
        raise _error(f"{_q(token)} is not a duration like 15m, 4h, 1d or 2w", example)
    minutes = _int(match[1]) * _UNIT_MINUTES[match[2]]
    if not 1 <= minutes <= _MAX_MINUTES:
        raise _error(f"{_q(token)} is out of range (1m to 3650d)", example)
    return timedelta(minutes=minutes)


def _parse_days(token: str) -> int:
    match = _DAYS.fullmatch(_key(token))
    days = _int(match[1]) if match else 0
    if not 1 <= days <= _MAX_DAYS:
        raise _error(f"{_q(token)} is not a number of days from 1d to 3650d", _EG_CHANNEL)
    return days


def _change_percent(token: str, cond: Condition) -> float:
    value = _plain(token.removesuffix("%"))
    if value is None:
        raise _error(f"{_q(token)} is not a percentage", _EG_CHANGE)
    if cond is Condition.DOWN and not 0 < value < 100:
        message = f"{_q(token)} is out of range for 'down' (over 0, under 100%)"
        raise _error(message, _EG_DOWN)
    if not 0 < value <= 1000:
        raise _error(f"{_q(token)} is out of range (over 0, at most 1000%)", _EG_CHANGE)
    return value


def _spread(token: str) -> tuple[Condition, float]:
    """The condition and threshold of `0.5%` (percent of mid), `3x` (times the baseline) or
    `0.15` (ask - bid in the quote currency: 15 cents)."""
    unit = token[-1:].lower()
    value = _plain(token[:-1]) if unit in ("%", "x") else None
    if value is None:
        absolute = _plain(token.removeprefix("$"))
        if absolute is not None:
            if not 0 < absolute < 1e9:
                raise _error(f"{_q(token)} is out of range (over 0)", _EG_SPREAD)
            return Condition.SPREAD_ABS, absolute
        raise _error(f"{_q(token)} is not a spread threshold like 0.5%, 3x or 0.15", _EG_SPREAD)
    if unit == "%":
        if not 0 < value <= 100:
            raise _error(f"{_q(token)} is out of range (over 0%, at most 100%)", _EG_SPREAD)
        return Condition.SPREAD_PCT, value
    if not 1 < value <= 1000:
        raise _error(f"{_q(token)} is out of range (over 1x, at most 1000x)", _EG_SPREAD)
    return Condition.SPREAD_MULT, value


def _parse_options(rule: Rule, words: list[str]) -> Rule:
    """`rule` with the options in `words` applied."""
    seen: set[str] = set()
    i = 0
    while i < len(words):
        key = _key(words[i])
        if key not in _OPTIONS:
            options = "confirm N, cooldown 1h, once, expires YYYY-MM-DD"
            fallback = f"unexpected {_q(words[i])} after the rule (options: {options})"
            raise _unknown("option", words[i], _OPTIONS, fallback, _EG_OPTION["cooldown"])
        if key in seen:
            raise _error(f"{_q(key)} given twice", _EG_OPTION[key])
        seen.add(key)
        if key == "once":
            rule = replace(rule, once=True)
            i += 1
            continue
        if i + 1 == len(words):
            raise _error(f"missing value after {_q(key)}", _EG_OPTION[key])
        value = words[i + 1]
        if key == "confirm":
            rule = replace(rule, confirm=_parse_confirm(value))
        elif key == "cooldown":
            rule = replace(rule, cooldown=_duration(value, _EG_OPTION["cooldown"]))
        else:
            rule = replace(rule, expires=_parse_date(value))
        i += 2
    return rule


def _parse_confirm(token: str) -> int:
    count = _int(token) if _DIGITS.fullmatch(token) else 0
    if not 1 <= count <= 100:
        message = f"confirm {_q(token)} is not a whole number from 1 to 100"
        raise _error(message, _EG_OPTION["confirm"])
    return count


def _parse_date(token: str) -> date:
    if _DATE.fullmatch(token):
        try:
            return date.fromisoformat(token)
        except ValueError:
            pass
    raise _error(f"expires {_q(token)} is not a date (YYYY-MM-DD)", _EG_OPTION["expires"])


def _number_text(x: float) -> str:
    """Plain decimal text that reads back as exactly `x`: no exponent, no trailing `.0`."""
    text = repr(x)
    if "e" not in text and "n" not in text:  # the usual case, without Decimal (an alert's text)
        return text.removesuffix(".0")
    text = f"{Decimal(text):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _plain(text: str) -> float | None:
    """The value of a plain decimal like `6`, `0.5` or `.5`; None for anything else."""
    return float(text) if _PLAIN.fullmatch(text) else None


def _int(digits: str) -> int:
    """int() of ASCII digits, capped so that absurdly long input stays cheap."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 12 else 10**12


def _key(token: str) -> str:
    """A token lowercased for matching keywords; non-ASCII tokens never match one."""
    return token.lower() if token.isascii() else token


def _q(token: str) -> str:
    """A user token quoted for a message: at most 30 characters, control characters as `?`."""
    if len(token) > _MAX_QUOTED:
        token = token[: _MAX_QUOTED - 1] + "…"
    return "'" + "".join(c if c.isprintable() else "?" for c in token) + "'"


def _unknown(
    kind: str, token: str, words: tuple[str, ...], fallback: str, example: str
) -> RuleError:
    """A did-you-mean error when `token` is close to one of `words`, else `fallback`."""
    close = difflib.get_close_matches(_key(token), words, n=1)
    if close:
        return _error(f"unknown {kind} {_q(token)} — did you mean {_q(close[0])}?", example)
    return _error(fallback, example)


def _error(message: str, example: str) -> RuleError:
    """A RuleError in house style: the message, then a valid example after `e.g. `."""
    end = " " if message.endswith("?") else ". "
    return RuleError(f"{message}{end}e.g. {example}")
