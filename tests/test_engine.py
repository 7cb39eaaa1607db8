"""Engine semantics on synthetic price series (made-up numbers, chosen to sit on the edges)."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta

import pytest

from alerts import rules
from alerts.engine import evaluate
from alerts.indicators import Market, observe
from alerts.models import Alert, Candle, Condition, Direction, Quote, RuleState
from alerts.sanity import Limits

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
STEP = timedelta(minutes=1)


def drive(
    text: str,
    prices: list[float],
    *,
    step: timedelta = STEP,
    candles: dict[str, list[Candle]] | None = None,
    other: dict[str, list[float]] | None = None,
    books: list[tuple[float, float]] | None = None,
    limits: Limits | None = None,
    start: datetime = T0,
) -> list[tuple[int, Alert]]:
    """Feed one rule a series of prices (one per step) and return (index, alert) of each fire."""
    rule = rules.parse(text)
    market = Market(limits or Limits(max_age=None))
    for symbol, bars in (candles or {}).items():
        market.add_candles(symbol, bars)
    state = RuleState()
    fires = []
    for i, price in enumerate(prices):
        now = start + i * step
        bid, ask = books[i] if books else (None, None)
        market.ingest(Quote(rule.symbol, price, now, bid=bid, ask=ask), now)
        for symbol, series in (other or {}).items():
            market.ingest(Quote(symbol, series[i], now), now)
        state, alert = evaluate(rule, state, observe(rule, market, now), now)
        if alert is not None:
            fires.append((i, alert))
    return fires


def fired_at(text: str, prices: list[float], **kwargs: object) -> list[int]:
    return [i for i, _ in drive(text, prices, **kwargs)]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rule", "prices", "expected"),
    [
        ("XAG above 50", [49, 50.5], [1]),
        ("XAG above 50", [49, 50], [1]),  # touching the level counts
        ("XAG above 50", [49, 50.5, 51, 52, 53], [1]),  # edge, not level: fires once
        ("XAG above 50", [52, 53, 51], []),  # set while already above: waits for a real cross
        ("XAG above 50", [52, 49, 50.1], [2]),  # ... which re-arms it
        # flapping inside the 0.25% band (49.875) gives one alert, not four
        ("XAG above 50", [49, 50.1, 49.95, 50.05, 49.9, 50.2, 49.88, 50.01], [1]),
        ("XAG above 50", [49, 50.1, 49.8, 50.1], [1, 3]),  # out past the band and back: again
        ("XAG resistance 50", [49, 50.5], [1]),
        ("BTC below 85k", [86000, 84900], [1]),
        ("BTC below 85k", [84000, 84500, 86000, 84999], [3]),
        ("BTC below 85k", [86000, 84900, 85100, 84900, 85300, 84000], [1, 5]),
        ("BTC support 85000", [86000, 85000], [1]),
        ("XAG above 50 confirm 3", [49, 50.1, 50.2, 50.3, 50.4], [3]),
        ("XAG above 50 confirm 3", [49, 50.1, 49.9, 50.1, 50.2, 50.3], [5]),
        ("XAG above 50 once", [49, 50.1, 48, 50.1, 48, 50.1], [1]),
    ],
)
def test_level_rules(rule: str, prices: list[float], expected: list[int]) -> None:
    assert fired_at(rule, prices) == expected


def test_cooldown_holds_a_fire_back_and_releases_it_if_still_true() -> None:
    prices = [49, 50.1, 49, 50.2, 50.3, 50.4]
    steps = timedelta(minutes=20)
    # fires at t=20m; crosses again at t=60m inside the 1h cooldown; still above at t=80m
    assert fired_at("XAG above 50 cooldown 1h", prices, step=steps) == [1, 4]


def test_cooldown_forgets_a_cross_that_went_away() -> None:
    prices = [49, 50.1, 49, 50.2, 49, 49]
    assert fired_at("XAG above 50 cooldown 1h", prices, step=timedelta(minutes=20)) == [1]


def test_expired_rule_never_fires() -> None:
    start = datetime(2026, 1, 1, 23, 58, tzinfo=UTC)
    # armed on 2026-01-01 (its last valid day); crosses after midnight: too late
    assert fired_at("XAG above 50 expires 2026-01-01", [49, 49, 51], start=start) == []
    assert fired_at("XAG above 50 expires 2026-01-02", [49, 49, 51], start=start) == [2]


def bars(day0: date, highs: list[float], lows: list[float], closes: list[float]) -> list[Candle]:
    return [
        Candle(day0 + timedelta(days=i), c, h, low, c)
        for i, (h, low, c) in enumerate(zip(highs, lows, closes, strict=True))
    ]


def test_breakout_over_prior_n_day_high() -> None:
    history = bars(date(2026, 2, 25), [10, 12, 11, 10, 10], [9, 9, 9, 9, 9], [9.5] * 5)
    # today is 2026-03-02; the prior 3 bars' high is 11 (12 is four bars back)
    assert fired_at("XAU breakout 3d", [10.5, 11.2], candles={"XAU": history}) == [1]
    assert fired_at("XAU breakout 5d", [10.5, 11.2, 12.1], candles={"XAU": history}) == [2]
    assert fired_at("XAU breakdown 3d", [9.5, 8.9], candles={"XAU": history}) == [1]
    # not enough history: no reference, no alert
    assert fired_at("XAU breakout 30d", [10.5, 13], candles={"XAU": history}) == []


def test_day_change_against_previous_close_across_a_weekend() -> None:
    # Friday 2026-02-27 closed at 50; Monday 2026-03-02 trades; no weekend bars
    history = [Candle(date(2026, 2, 27), 49, 51, 48, 50)]
    fires = drive("XAG up 6% 1d", [52, 53.1], candles={"XAG": history})
    assert [i for i, _ in fires] == [1]
    alert = fires[0][1]
    assert alert.reference == 50
    assert alert.observed == pytest.approx(6.2)
    assert alert.direction is Direction.UP
    assert fired_at("XAG down 6% 1d", [48, 46.9], candles={"XAG": history}) == [1]
    assert fired_at("XAG move 6% 1d", [48, 46.9], candles={"XAG": history}) == [1]


def test_intraday_window_uses_tick_history() -> None:
    prices = [100.0] * 15 + [101, 102, 103.1]  # 15 minutes after the first tick: 103.1 vs 100
    assert fired_at("ETH up 3% 15m", prices) == [17]
    assert fired_at("ETH up 3% 1h", prices) == []  # no tick an hour back yet: no reference


def test_spread_percent_and_rearm_under_threshold() -> None:
    books = [(100, 100.2), (100, 100.6), (100, 100.7), (100, 100.3), (100, 100.6)]
    prices = [(b + a) / 2 for b, a in books]
    fires = drive("XAG spread > 0.5%", prices, books=books)
    assert [i for i, _ in fires] == [1, 4]
    assert fires[0][1].direction is Direction.WIDER


def test_spread_multiple_of_rolling_median() -> None:
    # silver-like: 3 cents on a 50 dollar price, then dealers step back to 20 cents
    books = [(50.0, 50.03)] * 30 + [(50.0, 50.10), (50.0, 50.20)]
    prices = [(b + a) / 2 for b, a in books]
    fires = drive("XAG spread > 5x", prices, books=books)
    assert [i for i, _ in fires] == [31]
    assert fires[0][1].reference == pytest.approx(0.03 / 50.015 * 100)


def test_spread_rule_skips_quotes_without_a_book() -> None:
    assert fired_at("XAG spread > 0.1%", [50, 51, 52]) == []


def test_ratio_level() -> None:
    gold = [4000.0, 4000.0, 4000.0]
    silver = [49.0, 49.9, 50.2]  # ratio 81.6 -> 80.2 -> 79.7
    assert fired_at("XAU/XAG below 80", gold, other={"XAG": silver}) == [2]


def test_relative_performance() -> None:
    day0 = date(2026, 1, 31)
    history = {
        "XAU": [Candle(day0, 4000, 4000, 4000, 4000)],
        "BTC": [Candle(day0, 1e5, 1e5, 1e5, 1e5)],
    }
    # 30 days later gold +12%, BTC +1%: gold outperformed by ~10.9%
    fires = drive(
        "XAU/BTC up 10% 30d",
        [4200.0, 4480.0],
        candles=history,
        other={"BTC": [101000.0, 101000.0]},
    )
    assert [i for i, _ in fires] == [1]
    assert "outperformed BTC" in fires[0][1].message


@pytest.mark.parametrize(
    "bad",
    [
        Quote("XAG", 0.0, T0 + STEP),
        Quote("XAG", -51.0, T0 + STEP),
        Quote("XAG", math.nan, T0 + STEP),
        Quote("XAG", 51.0, T0 + STEP, bid=51.1, ask=51.0),
        Quote("XAG", 51.0, T0 + STEP - timedelta(hours=1)),
        Quote("XAG", 5100.0, T0 + STEP),
    ],
    ids=["zero", "negative", "nan", "crossed", "stale", "jump"],
)
def test_bad_observations_fire_nothing(bad: Quote) -> None:
    rule = rules.parse("XAG above 50")
    market = Market(Limits(max_age=timedelta(minutes=10), max_jump_pct=15))
    market.ingest(Quote("XAG", 49.0, T0), T0)
    state, _ = evaluate(rule, RuleState(), observe(rule, market, T0), T0)
    now = T0 + STEP
    assert market.ingest(bad, now) is not None
    state, alert = evaluate(rule, state, observe(rule, market, now), now)
    assert alert is None


def test_quote_that_goes_stale_fires_nothing() -> None:
    rule = rules.parse("XAG above 50")
    market = Market(Limits(max_age=timedelta(minutes=10)))
    market.ingest(Quote("XAG", 51.0, T0), T0)
    assert observe(rule, market, T0 + timedelta(minutes=11)) is None


def test_a_jump_confirmed_by_the_next_quote_fires_one_observation_late() -> None:
    prices = [40.0, 60.0, 60.5]  # +50%: held once, then confirmed
    assert fired_at("XAG above 50", prices, limits=Limits(max_age=None, max_jump_pct=15)) == [2]
    # an isolated spike that comes back is dropped for good
    assert fired_at("XAG above 50", [40.0, 60.0, 40.5, 41.0]) == []


def test_alert_carries_what_a_message_needs() -> None:
    [(_, alert)] = drive("xag ABOVE $50 cooldown 60m", [49.0, 50.5])
    assert alert.rule_text == "XAG above 50 cooldown 1h"
    assert alert.symbol == "XAG"
    assert alert.condition is Condition.ABOVE and alert.kind == "above"
    assert alert.direction is Direction.UP
    assert (alert.price, alert.reference, alert.observed) == (50.5, 50.0, 50.5)
    assert alert.time == T0 + STEP
    assert alert.message == "XAG rose above 50 (now 50.50)"


def test_state_is_plain_json() -> None:
    rule = rules.parse("XAG above 50 cooldown 1h")
    market = Market(Limits(max_age=None))
    state = RuleState()
    for i, price in enumerate([49.0, 50.5]):
        now = T0 + i * STEP
        market.ingest(Quote("XAG", price, now), now)
        state, _ = evaluate(rule, state, observe(rule, market, now), now)
    assert state.last_fired == T0 + STEP
    assert RuleState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    assert RuleState.from_dict({"armed": True, "from_a_future_version": 1}) == RuleState(armed=True)


def test_staleness_limit_per_source() -> None:
    limits = Limits(max_age=timedelta(minutes=10), source_max_age={"yahoo": timedelta(minutes=30)})
    market = Market(limits)
    delayed = T0 - timedelta(minutes=15)  # a COMEX quote with the usual exchange delay
    assert market.ingest(Quote("XAU", 4000.0, delayed, source="yahoo"), T0) is None
    assert market.ingest(Quote("BTC", 90000.0, delayed, source="ccxt:binance"), T0) is not None
    assert market.quote("XAU", T0) is not None
    assert market.quote("XAU", T0 + timedelta(minutes=16)) is None
