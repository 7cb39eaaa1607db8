"""The `tickerbell` command line: `replay` now; `run`, `alert` and `cmd` join as they land."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import date
from pathlib import Path

from alerts import rules
from alerts.models import Candle, Rule, RuleError
from alerts.sanity import Limits
from alerts.text import number
from feeds.replay import ReplayError, read_candles, replay, symbol_from_name

ALIASES = {"GOLD": "XAU", "SILVER": "XAG"}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tickerbell` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.handler(args))
    except (RuleError, ReplayError) as err:
        print(f"tickerbell: {err}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tickerbell", description="Market alerts for gold, silver and crypto."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    rp = sub.add_parser(
        "replay",
        help="run rules over daily OHLC history and print what would have fired",
        description="Run rules over daily OHLC(V) CSV files and print every fire.",
    )
    rp.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="[SYM=]PATH",
        help="a CSV with date,open,high,low,close[,volume]; SYM defaults to a symbol column "
        "or the file name's first word",
    )
    rp.add_argument("--rule", action="append", required=True, help='e.g. "XAG above 50"')
    rp.add_argument("--from", dest="start", type=date.fromisoformat, help="first day (YYYY-MM-DD)")
    rp.add_argument("--to", dest="end", type=date.fromisoformat, help="last day (YYYY-MM-DD)")
    rp.add_argument("--json", action="store_true", help="one JSON object per fire on stdout")
    rp.add_argument(
        "--max-jump",
        type=float,
        default=Limits().max_jump_pct,
        metavar="PCT",
        help="an isolated move larger than this is held until the next price confirms it",
    )
    rp.set_defaults(handler=_replay)
    return parser


def load_series(specs: Sequence[str]) -> dict[str, list[Candle]]:
    """Read `[SYM=]PATH` specs into candles per canonical symbol."""
    series: dict[str, list[Candle]] = {}
    for spec in specs:
        name, sep, raw_path = spec.partition("=")
        path = Path(raw_path if sep else spec)
        if not path.is_file():
            raise ReplayError(f"no such file: {path}")
        column_symbol, candles = read_candles(path)
        symbol = name if sep else (column_symbol or symbol_from_name(path))
        series[canonical(symbol)] = candles
    return series


def canonical(symbol: str) -> str:
    """Upper-case with the metal aliases resolved (GOLD -> XAU)."""
    upper = symbol.strip().upper()
    return ALIASES.get(upper, upper)


def canonical_rule(rule: Rule) -> Rule:
    """The rule with its symbols in canonical form."""
    other = canonical(rule.other) if rule.other else None
    return replace(rule, symbol=canonical(rule.symbol), other=other)


def _replay(args: argparse.Namespace) -> int:
    out = sys.stdout
    series = load_series(args.data)
    parsed = [canonical_rule(rules.parse(text)) for text in args.rule]
    for rule in parsed:
        missing = [s for s in rule.symbols if s not in series]
        if missing:
            have = ", ".join(sorted(series))
            hint = "add --data SYM=PATH"
            raise ReplayError(f"no data for {', '.join(missing)} (have: {have}); {hint}")
    result = replay(series, parsed, args.start, args.end, Limits(None, args.max_jump))
    counts: Counter[str] = Counter()
    for fire in result.fires:
        alert = fire.alert
        counts[alert.rule_text] += 1
        if args.json:
            record = {
                "time": alert.time.isoformat(),
                "symbol": alert.symbol,
                "rule": alert.rule_text,
                "kind": alert.kind,
                "price": alert.price,
                "message": alert.message,
            }
            print(json.dumps(record), file=out)
        else:
            day = alert.time.date().isoformat()
            line = f"{day}  {alert.symbol:<8} {alert.rule_text:<28} {number(alert.price):>12}"
            print(f"{line}  {alert.message}", file=out)
    summary = sys.stderr if args.json else out
    print(f"-- {len(result.fires)} fires, {len(result.rejected)} quotes rejected", file=summary)
    for rule in parsed:
        text = rules.format(rule)
        print(f"   {counts[text]:>4}  {text}", file=summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
