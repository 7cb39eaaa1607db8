"""Replay over the real price history in ../shared/data, read in place.

The expected dates were worked out from the CSV files by a separate ten-line script that
shares no code with Tickerbell (csv.DictReader, a loop over each bar's open -> low/high ->
close path, and the 0.25% re-arm band), then checked by eye against the rows. For example,
silver futures first traded at or above $50 on 2025-10-13 (high 50.495, previous high 48.29).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from datetime import date
from itertools import pairwise
from pathlib import Path

import pytest

from alerts import rules
from bot.wording import sentence
from feeds.replay import bar_path, read_candles, replay, symbol_from_name
from tickerbell.cli import load_series, main

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"real price history not found at {DATA} (CI has ../shared beside)"
)


def fires(spec: dict[str, str], *texts: str, **kwargs: object) -> list[tuple[str, str]]:
    series = load_series([f"{sym}={DATA / name}" for sym, name in spec.items()])
    result = replay(series, [rules.parse(t) for t in texts], **kwargs)  # type: ignore[arg-type]
    return [(f.alert.time.date().isoformat(), f.alert.rule_text) for f in result.fires]


@needs_data
def test_silver_through_50() -> None:
    days = [d for d, _ in fires({"XAG": "silver_sif_daily.csv"}, "XAG above 50")]
    assert days[0] == "2025-10-13"  # the first day silver futures traded at $50
    assert days == [
        "2025-10-13",
        "2025-10-14",
        "2025-10-20",
        "2025-11-10",
        "2025-11-17",
        "2025-11-18",
        "2025-11-24",
    ]


@needs_data
def test_btc_below_85000() -> None:
    days = [d for d, _ in fires({"BTC": "btc_usdt_daily.csv"}, "BTC below 85000")]
    assert days[:3] == ["2025-02-26", "2025-02-27", "2025-03-04"]
    assert "2025-11-21" in days  # the November 2025 slide (low 80,600)
    assert len(days) == 19


@needs_data
def test_btc_support_with_confirm_and_cooldown_is_quieter() -> None:
    plain = fires({"BTC": "btc_usdt_daily.csv"}, "BTC below 85000")
    quiet = fires({"BTC": "btc_usdt_daily.csv"}, "BTC below 85000 cooldown 7d")
    assert 0 < len(quiet) < len(plain)
    assert quiet[0][0] == "2025-02-26"


@needs_data
def test_gold_breakouts_above_prior_20_day_high() -> None:
    candles = read_candles(DATA / "gold_gcf_daily.csv")[1]
    by_day = {c.day: i for i, c in enumerate(candles)}
    breakout_days, clean_days = set(), set()
    for i in range(20, len(candles)):
        ref = max(c.high for c in candles[i - 20 : i])
        if candles[i].high > ref:
            breakout_days.add(candles[i].day)
            if candles[i].open < ref * (1 - 0.0025):
                clean_days.add(candles[i].day)
    assert (len(breakout_days), len(clean_days)) == (140, 47)  # from the separate script
    got = {
        date.fromisoformat(d) for d, _ in fires({"XAU": "gold_gcf_daily.csv"}, "XAU breakout 20d")
    }
    # every fire is a breakout day; every breakout day that opened clearly below the
    # reference (so the rule was certainly armed) fires
    assert got <= breakout_days
    assert clean_days <= got
    assert min(got) == date(2023, 2, 1) and by_day[min(got)] >= 20


@needs_data
def test_silver_six_percent_days() -> None:
    got = [d for d, _ in fires({"XAG": "silver_sif_daily.csv"}, "XAG up 6% 1d")]
    # days whose high was >= 6% over the previous close, from the separate script; on
    # 2026-05-11 silver opened +6.48%, dipped to +5.73% (past the 0.25-point re-arm band) and
    # closed +6.33%, so it fires twice that day
    expected = (
        "2023-03-13 2023-12-14 2024-05-17 2024-10-18 2025-10-13 2025-11-28 2025-12-17 "
        "2025-12-26 2025-12-30 2026-01-05 2026-01-06 2026-01-09 2026-01-12 2026-01-14 "
        "2026-01-20 2026-01-23 2026-01-26 2026-01-28 2026-01-29 2026-02-02 2026-02-03 "
        "2026-02-04 2026-02-09 2026-02-20 2026-02-23 2026-02-27 2026-03-10 2026-03-31 "
        "2026-04-08 2026-05-06 2026-05-07 2026-05-11 2026-05-11 2026-06-12"
    ).split()
    assert got == expected


@needs_data
def test_paxg_wick_is_rejected_as_an_isolated_jump() -> None:
    # 2024-04-13: PAXG's high printed 3295 on a 2323-2452 day (a thin-liquidity wick)
    spec = {"PAXG": "paxg_usdt_daily.csv"}
    series = load_series([f"PAXG={DATA / 'paxg_usdt_daily.csv'}"])
    result = replay(series, [rules.parse("PAXG above 3000")])
    assert result.fires[0].alert.time.date() == date(2025, 2, 25)
    assert any(day.date() == date(2024, 4, 13) and why == "jump" for day, _, why in result.rejected)
    assert fires(spec, "PAXG above 3000", start=date(2025, 3, 1), end=date(2025, 3, 31))[0][0] == (
        "2025-03-13"
    )


@needs_data
def test_gold_silver_ratio_and_rotation_run_on_two_files() -> None:
    spec = {"XAU": "gold_gcf_daily.csv", "XAG": "silver_sif_daily.csv"}
    got = fires(spec, "XAU/XAG below 60", "XAU/XAG up 10% 30d")
    assert {rule for _, rule in got} == {"XAU/XAG below 60", "XAU/XAG up 10% 30d"}


@needs_data
def test_cli_prints_lines_json_and_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["replay", "--data", str(DATA / "silver_sif_daily.csv"), "--rule", "SILVER above 50"]
    assert main([*args, "--to", "2025-10-31"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("2025-10-13  XAG ")
    assert out[-1].strip() == "3  XAG above 50"
    assert main([*args, "--from", "2025-11-01", "--json"]) == 0
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["time"][:10] for r in records] == [
        "2025-11-10",
        "2025-11-17",
        "2025-11-18",
        "2025-11-24",
    ]
    assert set(records[0]) == {"time", "symbol", "rule", "kind", "price", "message"}
    assert "4  XAG above 50" in captured.err


def test_bar_path_order_follows_the_bar(tmp_path: Path) -> None:
    csv_file = tmp_path / "eth_usdt_daily.csv"
    csv_file.write_text("date,open,high,low,close\n2026-01-01,10,12,9,11\n2026-01-02,11,12,8,9\n")
    _, (green, red) = read_candles(csv_file)
    assert [p for _, p in bar_path(green)] == [10, 9, 12, 11]
    assert [p for _, p in bar_path(red)] == [11, 12, 8, 9]
    assert symbol_from_name(csv_file) == "ETH"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("when,price\n2026-01-01,1\n", "expected columns"),
        ("date,open,high,low,close\n2026-13-01,1,1,1,1\n", ":2:"),
        ("date,open,high,low,close\n2026-01-01,x,1,1,1\n", ":2:"),
    ],
)
def test_bad_files_get_a_clear_error(
    tmp_path: Path, content: str, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "xag.csv"
    bad.write_text(content)
    assert main(["replay", "--data", str(bad), "--rule", "XAG above 50"]) == 2
    assert needle in capsys.readouterr().err


def test_rule_without_data_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "xag.csv"
    good.write_text("date,open,high,low,close\n2026-01-01,1,1,1,1\n")
    assert main(["replay", "--data", str(good), "--rule", "BTC above 5"]) == 2
    assert "no data for BTC (have: XAG)" in capsys.readouterr().err
    assert main(["replay", "--data", str(good), "--rule", "XAG abov 5"]) == 2
    assert "did you mean 'above'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "told"),
    [
        (
            ["--from", "2026-01-10", "--to", "2026-01-01"],
            "--from 2026-01-10 is after --to 2026-01-01",
        ),
        (["--from", "2030-01-01"], "no bars from 2030-01-01: the data runs from 2026-01-01 to "),
        (["--to", "1990-01-01"], "no bars up to 1990-01-01: the data runs from 2026-01-01 to "),
        (["--plot", "no/such/folder/x.png"], "--plot no/such/folder/x.png: no folder no/such"),
        (["--from", "2026-02-30"], "'2026-02-30' is not a day: expected YYYY-MM-DD"),
        (["--max-jump", "-5"], "--max-jump: expected a number more than 0"),
        (["--max-jump", "nan"], "--max-jump: expected a number more than 0"),
    ],
)
def test_bad_options_are_one_line_before_anything_runs(
    extra: list[str], told: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "xag.csv"
    good.write_text("date,open,high,low,close\n2026-01-01,1,1,1,1\n2026-01-02,1,1,1,1\n")
    try:
        code = main(["replay", "--data", str(good), "--rule", "XAG above 5", *extra])
    except SystemExit as exit:  # argparse's own refusal, after its usage lines
        code = exit.code
    assert code == 2
    err = capsys.readouterr().err
    assert told in err.splitlines()[-1] and "Traceback" not in err
    assert not list(tmp_path.glob("**/*.png"))


@needs_data
def test_replay_plot_writes_a_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    out = tmp_path / "silver.png"
    args = ["replay", "--data", f"XAG={DATA / 'silver_sif_daily.csv'}", "--rule", "XAG above 50"]
    assert main([*args, "--from", "2025-08-01", "--to", "2025-12-31", "--plot", str(out)]) == 0
    assert Image.open(out).size == (1200, 700)


# Moving-average and RSI rules on the real history. The expected dates come from the few lines
# below, which share no code with Tickerbell: csv rows, each day's four points (open, then the
# low and the high, the high first on a down day, then the close), the indicator of the closes
# before the day, and the engine's edge and hysteresis rules written out plainly. The pinned
# first dates and counts were read off their output and checked against the CSV rows by eye.


def day_points(name: str) -> list[tuple[str, float, list[float]]]:
    """(date, close, the day's four points) per CSV row."""
    out = []
    for row in csv.DictReader((DATA / name).open()):
        o, h, low, c = (float(row[k]) for k in ("open", "high", "low", "close"))
        out.append((row["date"], c, [o, low, h, c] if c >= o else [o, h, low, c]))
    return out


def expected_fires(
    days: list[tuple[str, float, list[float]]],
    indicator: Callable[[list[float], float], float | None],
    fires_at: Callable[[float], bool],
    rearms_at: Callable[[float], bool],
) -> list[str]:
    """Dates of fires of an edge-triggered rule on `indicator(closes before today, price)`."""
    armed, out, closes = None, [], []
    for day, close, points in days:
        for price in points:
            value = indicator(closes, price)
            if value is None:
                continue
            if armed is None:
                armed = not fires_at(value)  # a new rule learns the market first
            elif armed and fires_at(value):
                out.append(day)
                armed = False
            elif not armed and rearms_at(value):
                armed = True
        closes.append(close)
    return out


def ma_200(closes: list[float], price: float) -> float | None:
    return price / (sum(closes[-200:]) / 200) if len(closes) >= 200 else None  # price / MA


def rsi_14(closes: list[float], price: float) -> float | None:
    """Wilder's RSI(14) of the last 141 closes and today's price, seeded with a plain mean."""
    if len(closes) < 15:
        return None
    window = [*closes[-141:], price]
    moves = [b - a for a, b in pairwise(window)]
    up = sum(max(m, 0) for m in moves[:14]) / 14
    down = sum(max(-m, 0) for m in moves[:14]) / 14
    for m in moves[14:]:
        up, down = (up * 13 + max(m, 0)) / 14, (down * 13 + max(-m, 0)) / 14
    return 100 * up / (up + down)


@needs_data
def test_btc_below_its_200_day_average() -> None:
    want = expected_fires(
        day_points("btc_usdt_daily.csv"), ma_200, lambda r: r <= 1, lambda r: r > 1.0025
    )
    series = load_series([f"BTC={DATA / 'btc_usdt_daily.csv'}"])
    result = replay(series, [rules.parse("BTC below ma 200d")])
    assert result.rejected == []  # every point reached the rule, as in the computation above
    got = [f.alert.time.date().isoformat() for f in result.fires]
    assert got == want
    # the first 200 bars end 2023-07-19; BTC first traded under its 200-day MA (27,248) on
    # 2023-08-17 (low 25,166); the 2024 summer and the 2025 slides follow
    assert (got[0], len(got)) == ("2023-08-17", 40)
    assert sentence(result.fires[0].alert) == "BTC fell below its 200-day MA 27,248.25 (now 25,166)"


@needs_data
def test_silver_rsi_above_70() -> None:
    want = expected_fires(
        day_points("silver_sif_daily.csv"), rsi_14, lambda r: r >= 70, lambda r: r < 68
    )
    got = [d for d, _ in fires({"XAG": "silver_sif_daily.csv"}, "XAG rsi 14d above 70")]
    assert got == want
    # 2023-03-30: silver opened at its high, 23.985 after a 23.376 close (RSI over 70), fell
    # to 23.605 (under 68) and closed at 23.902 (over 70 again), so it fires twice that day
    assert (got[:3], len(got)) == (["2023-03-30", "2023-03-30", "2023-04-03"], 41)


@needs_data
def test_cli_replays_average_and_rsi_rules(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["replay", "--data", f"BTC={DATA / 'btc_usdt_daily.csv'}", "--to", "2023-08-31"]
    assert main([*args, "--rule", "btc < ma 200", "--rule", "BTC rsi 14d < 30"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("2023-03-09  BTC      BTC rsi 14d below 30")
    assert out[-2:] == ["      3  BTC below ma 200d", "      3  BTC rsi 14d below 30"]
