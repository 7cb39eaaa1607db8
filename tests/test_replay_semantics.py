"""What a replay may and may not conclude from daily bars: bad data decides nothing, a stale leg
pairs with nothing, real crashes are kept and bad prints are not, no sub-day facts are invented,
and malformed history is refused with a clear message.

Each case runs on the real files in ../shared/data where the case is real (skipped when absent)
and on a named synthetic series (made-up prices, built in this module).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from alerts import rules
from alerts.indicators import Market
from alerts.models import Candle, RuleError
from feeds.replay import ReplayError, read_candles, replay
from tickerbell.cli import load_series

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"real price history not found at {DATA} (CI has ../shared beside)"
)
DAY0 = date(2026, 3, 2)


def real(**files: str) -> dict[str, list[Candle]]:
    return load_series([f"{symbol}={DATA / name}" for symbol, name in files.items()])


def fire_times(series: dict[str, list[Candle]], *texts: str) -> list[datetime]:
    result = replay(series, [rules.parse(text) for text in texts])
    return [fire.alert.time for fire in result.fires]


def calm(days: int, price: float = 100.0, start: date = DAY0, width: float = 1.0) -> list[Candle]:
    """Synthetic: `days` quiet bars around `price`, each `width` percent from low to high."""
    half = price * width / 200
    return [
        Candle(start + timedelta(days=i), price, price + half, price - half, price)
        for i in range(days)
    ]


def bar(day: date, o: float, h: float, low: float, c: float) -> Candle:
    return Candle(day, o, h, low, c)


# --- 1. a rejected quote decides nothing ---


def test_a_rejected_print_neither_confirms_nor_resets_a_rule_synthetic() -> None:
    """Synthetic: quiet bars at 100, then a bar whose 300 high is a bad print."""
    bars = calm(25)
    bad = DAY0 + timedelta(days=25)
    bars.append(bar(bad, 100.0, 300.0, 98.5, 100.2))  # path: 100, 98.5, 300 (bad), 100.2
    times = fire_times({"AAA": bars}, "AAA below 99 confirm 2")
    at_bad_print = datetime.combine(bad, datetime.min.time(), UTC) + timedelta(hours=16)
    assert at_bad_print not in times  # only one true observation (98.5) was real


@needs_data
def test_paxg_bad_print_confirms_nothing() -> None:
    """PAXG 2024-04-13: open 2354, low 2323, the bad 3,295 print at 16h, close 2452."""
    times = fire_times(real(PAXG="paxg_usdt_daily.csv"), "PAXG below 2330 confirm 2")
    assert datetime(2024, 4, 13, 16, tzinfo=UTC) not in times


# --- 2. a stale leg pairs with nothing ---


def test_a_ratio_stops_when_one_series_ends_synthetic() -> None:
    """Synthetic: AAA runs 40 days, BBB only 10; AAA keeps rising past the level."""
    aaa = [bar(DAY0 + timedelta(days=i), 100 + i, 101 + i, 99 + i, 100 + i) for i in range(40)]
    bbb = calm(10, price=100.0)
    times = fire_times({"AAA": aaa, "BBB": bbb}, "AAA/BBB above 1.2")
    assert times == []  # AAA/BBB would pass 1.2 on day 20, ten days after BBB's last bar


@needs_data
def test_gold_over_btc_fires_nothing_after_btc_data_ends() -> None:
    series = real(XAU="gold_gcf_daily.csv", BTC="btc_usdt_daily.csv")
    times = fire_times(series, "XAU/BTC above 0.05")
    last_btc = series["BTC"][-1].day
    assert times and max(times).date() <= last_btc + timedelta(days=4)


def test_a_weekend_gap_pairs_fridays_close_with_a_24_7_market_synthetic() -> None:
    """Synthetic: CCC trades weekdays only, DDD every day and doubles over a weekend."""
    friday = date(2026, 3, 6)
    ccc = [bar(friday, 100, 100.5, 99.5, 100)]
    ddd = [bar(friday, 100, 100.5, 99.5, 100), bar(friday + timedelta(days=1), 100, 100, 40, 45)]
    times = fire_times({"CCC": ccc, "DDD": ddd}, "CCC/DDD above 2")
    assert [t.date() for t in times] == [friday + timedelta(days=1)]  # Saturday, at the close


# --- 3. the guard keeps real crashes and drops bad prints ---


@needs_data
def test_of_all_real_prices_only_the_paxg_print_is_rejected() -> None:
    files = {
        "BTC": "btc_usdt_daily.csv",
        "ETH": "eth_usdt_daily.csv",
        "PAXG": "paxg_usdt_daily.csv",
        "XAU": "gold_gcf_daily.csv",
        "XAG": "silver_sif_daily.csv",
    }
    rejected = []
    for symbol, name in files.items():
        result = replay(real(**{symbol: name}), [rules.parse(f"{symbol} above 1")])
        rejected.extend((when, sym) for when, sym, _ in result.rejected)
    assert rejected == [(datetime(2024, 4, 13, 16, tzinfo=UTC), "PAXG")]


@needs_data
@pytest.mark.parametrize(
    ("files", "rule", "day"),
    [
        ({"BTC": "btc_usdt_daily.csv"}, "BTC below 50000", "2024-08-05"),  # low 49,000
        ({"BTC": "btc_usdt_daily.csv"}, "BTC below 105000", "2025-10-10"),  # low 102,000
        ({"ETH": "eth_usdt_daily.csv"}, "ETH below 3500", "2025-10-10"),  # low 3,435
        ({"XAG": "silver_sif_daily.csv"}, "XAG below 80", "2026-01-30"),  # low 76.03
        ({"XAG": "silver_sif_daily.csv"}, "XAG below 72", "2026-02-05"),  # low 71.08
    ],
)
def test_real_crash_lows_fire(files: dict[str, str], rule: str, day: str) -> None:
    assert day in {t.date().isoformat() for t in fire_times(real(**files), rule)}


@needs_data
def test_the_paxg_print_never_becomes_a_20_day_high() -> None:
    series = real(PAXG="paxg_usdt_daily.csv")
    market = Market()
    market.add_candles("PAXG", series["PAXG"])
    assert market.prior_high("PAXG", 20, date(2024, 4, 20)) == 2539.0  # 04-14's high, not 3,295
    first = fire_times(series, "PAXG above 3000")[0]  # gold really got there in 2025
    assert first.date() > date(2025, 1, 1)


def test_bad_print_and_real_crash_synthetic() -> None:
    """Synthetic: a quiet series with a +40% wick (bad) and a volatile one with a -16% low
    (a crash its own volatility makes believable)."""
    quiet = calm(25, width=1.5)
    quiet.append(bar(DAY0 + timedelta(days=25), 100, 140, 99.5, 100.5))
    wild = calm(25, width=4.0)
    wild.append(bar(DAY0 + timedelta(days=25), 100, 100.5, 84, 95))
    result = replay({"QQQ": quiet, "WWW": wild}, [rules.parse("WWW below 85")])
    assert [(sym, reason) for _, sym, reason in result.rejected] == [("QQQ", "jump")]
    assert len(result.fires) == 1


# --- 4. no sub-day facts from daily bars ---


@pytest.mark.parametrize("text", ["XAG up 6% 15m", "XAG move 3% 4h", "XAU/XAG down 2% 12h"])
def test_windows_under_a_day_are_refused(text: str) -> None:
    series = {"XAG": calm(5), "XAU": calm(5)}
    with pytest.raises(RuleError, match="daily bars only: use a window of whole days"):
        replay(series, [rules.parse(text)])


def test_two_legs_pair_only_at_real_times_synthetic() -> None:
    """Synthetic: on one day AAA's high and BBB's low both sit at the made-up 16h point."""
    aaa = [*calm(3), bar(DAY0 + timedelta(days=3), 100, 112, 99.5, 100.5)]  # high at 16h
    bbb = [*calm(3), bar(DAY0 + timedelta(days=3), 100, 100.5, 90, 99.5)]  # low at 16h
    assert fire_times({"AAA": aaa, "BBB": bbb}, "AAA/BBB above 1.2") == []


# --- 5. malformed history gets a clear message ---


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("2026-03-02,1,2,0.5,nan\n", r"x\.csv:2: close is 'nan', not a positive price"),
        ("2026-03-02,1,2,,1.5\n", r"x\.csv:2: low is empty"),
        ("2026-03-02,1,2,0.5,1.5\n2026-03-02,1,2,0.5,1.6\n", r"x\.csv:3: 2026-03-02 appears again"),
        ("", r"x\.csv: no rows after the header"),
        ("2026-03-02,1,0.9,0.5,1\n", r"x\.csv:2: not a bar"),
    ],
)
def test_malformed_history_is_refused_with_file_and_line(
    tmp_path: Path, rows: str, message: str
) -> None:
    path = tmp_path / "x.csv"
    path.write_text("date,open,high,low,close\n" + rows)
    with pytest.raises(ReplayError, match=message):
        read_candles(path)


def test_a_bom_and_an_exact_repeat_are_harmless(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    row = "2026-03-02,1,2,0.5,1.5\n"
    path.write_text("\ufeffdate,open,high,low,close\n" + row + row, encoding="utf-8")
    _, candles = read_candles(path)
    assert candles == [Candle(date(2026, 3, 2), 1.0, 2.0, 0.5, 1.5)]


def test_the_same_symbol_twice_is_refused(tmp_path: Path) -> None:
    for name in ("a.csv", "b.csv"):
        (tmp_path / name).write_text("date,open,high,low,close\n2026-03-02,1,2,0.5,1.5\n")
    with pytest.raises(ReplayError, match="--data names XAG twice"):
        load_series([f"XAG={tmp_path / 'a.csv'}", f"silver={tmp_path / 'b.csv'}"])
