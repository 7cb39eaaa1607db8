"""Engine semantics on synthetic price series (made-up numbers, chosen to sit on the edges)."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta

import pytest

from alerts import rules
from alerts.engine import evaluate
from alerts.indicators import DAY, Market, observe
from alerts.models import Alert, Candle, Condition, Direction, Indicator, Quote, RuleState
from alerts.sanity import Limits, Reject
from bot.wording import sentence

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
        ("XAG > 50", [49, 50.5], [1]),
        ("BTC < 85k", [86000, 84900], [1]),
        ("XAG crosses 50", [49, 50.1], [1]),  # up
        ("XAG crosses 50", [51, 50], [1]),  # down: touching counts both ways
        ("XAG crosses 50", [49, 50.1, 49.5, 50.5, 49], [1, 2, 3, 4]),  # every clear cross
        # flapping inside the band (49.875 .. 50.125) after a cross gives one alert
        ("XAG crosses 50", [49, 50.1, 49.95, 50.05, 49.9, 50.12], [1]),
        # back below only past the band counts right after a cross ...
        ("XAG crosses 50", [49, 50.1, 49.88, 49.87], [1, 3]),
        # ... but once clear of the band on its new side, touching the level counts again
        ("XAG crosses 50", [49, 50.1, 50.2, 50], [1, 3]),
        ("XAG crosses 50", [50, 49.9, 50.1, 49.8], [3]),  # learned on the level: needs the band
        ("XAG crosses 50", [52, 53, 51], []),
        ("XAG crosses 50 confirm 2", [49, 50.1, 49.9, 50.1, 50.2, 49.5, 49.4], [4, 6]),
        ("XAG crosses 50 once", [49, 50.1, 48, 51], [1]),
    ],
)
def test_level_rules(rule: str, prices: list[float], expected: list[int]) -> None:
    assert fired_at(rule, prices) == expected


def test_crosses_says_which_way() -> None:
    fires = drive("XAG crosses 50", [49.0, 50.1, 49.5])
    assert [(a.direction, sentence(a)) for _, a in fires] == [
        (Direction.UP, "XAG crossed above 50 (now 50.10)"),
        (Direction.DOWN, "XAG crossed below 50 (now 49.50)"),
    ]
    assert fires[0][1].rule_text == "XAG crosses 50" and fires[0][1].kind == "crosses"
    ratio = drive("XAU/XAG crosses 80", [4000.0, 4000.0], other={"XAG": [49.0, 50.5]})
    assert [sentence(a) for _, a in ratio] == ["XAU/XAG ratio crossed below 80 (now 79.21)"]


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


def daily(last_day: date, closes: list[float]) -> list[Candle]:
    """Flat bars (open = high = low = close) ending on `last_day`, one a calendar day."""
    first = last_day - timedelta(days=len(closes) - 1)
    return [Candle(first + timedelta(days=i), c, c, c, c) for i, c in enumerate(closes)]


# A made-up steady climb: closes 10, 11, 12, 13, 14 on the five days before T0 (2026-03-02).
CLIMB = {"XAU": daily(date(2026, 3, 1), [10, 11, 12, 13, 14])}


@pytest.mark.parametrize(
    ("rule", "prices", "expected"),
    [
        ("XAU below ma 3d", [13.5, 12.9], [1]),  # the 3-day MA is (12 + 13 + 14) / 3 = 13
        ("XAU below ma 5d", [13.5, 12.1, 11.9], [2]),  # the 5-day MA is 12
        ("XAU above ma 3d", [12.5, 13, 13.01, 12.97, 13.1, 12.9, 13.2], [1, 6]),  # band 12.9675
        ("XAU crosses ma 3d", [13.5, 12.9, 13.1, 13.02, 12.99, 12.98, 12.9, 13.0], [1, 2, 4, 7]),
        ("XAU below ma 3d", [12.5, 12.4], []),  # already below: waits for a real cross
        ("XAU below ma 6d", [13.5, 5.0], []),  # five bars only: no 6-day MA, no decision
        # EMA(3), alpha 1/2, seeded with (10 + 11 + 12) / 3 = 11: 11 -> 12 -> 13
        ("XAU above ema 3d", [12.5, 13.2], [1]),
        ("XAU below ema 5d", [12.5, 11.9], [1]),  # EMA(5) over five closes is their mean, 12
    ],
)
def test_moving_average_rules(rule: str, prices: list[float], expected: list[int]) -> None:
    assert fired_at(rule, prices, candles=CLIMB) == expected


def test_moving_average_alert_names_the_average() -> None:
    [(_, alert)] = drive("XAU below ma 3d", [13.5, 12.9], candles=CLIMB)
    assert (alert.price, alert.reference, alert.direction) == (12.9, 13, Direction.DOWN)
    assert sentence(alert) == "XAU fell below its 3-day MA 13 (now 12.90)"
    [(_, alert)] = drive("XAU crosses ema 3d", [13.5, 12.9], candles=CLIMB)
    assert sentence(alert) == "XAU crossed below its 3-day EMA 13 (now 12.90)"


def test_the_average_moves_once_a_day_and_can_cross_a_still_price() -> None:
    """Day one: the 2-day MA is 10 and the price 10.5, above it. The day closes at 12, so on
    day two the MA is 11: the same price is now below it, and `below ma` fires."""
    rule = rules.parse("XAU below ma 2d")
    market = Market(Limits(max_age=None))
    market.add_candles("XAU", daily(date(2026, 3, 1), [10, 10]))
    state, fires = RuleState(), []
    for now, close_day in ((T0, False), (T0 + timedelta(hours=6), True), (T0 + DAY, False)):
        market.ingest(Quote("XAU", 10.5, now), now)
        state, alert = evaluate(rule, state, observe(rule, market, now), now)
        fires.append(alert is not None)
        if close_day:
            market.add_candles("XAU", [Candle(now.date(), 10, 12, 10, 12)])
    assert fires == [False, False, True]
    assert market.average("XAU", Indicator.MA, 2, (T0 + DAY).date()) == 11


# Wilder's RSI(2) by hand over the closes 10, 11, 10, 12 (changes +1, -1, +2): the first two
# changes average to gain 0.5 and loss 0.5; +2 smooths them to gain (0.5 + 2) / 2 = 1.25 and
# loss 0.5 / 2 = 0.25. A price of 13 today (+1) gives gain 1.125, loss 0.125: RSI 90; 11 (-1)
# gives gain 0.625, loss 0.625: RSI 50; 12 (0) gives gain 0.625, loss 0.125: RSI 83.33.
WAVE = {"XAG": daily(date(2026, 3, 1), [10, 11, 10, 12])}


@pytest.mark.parametrize(("price", "rsi"), [(13, 90), (11, 50), (12, 250 / 3), (11.9, 78.125)])
def test_rsi_by_hand(price: float, rsi: float) -> None:
    market = Market(Limits(max_age=None))
    market.add_candles("XAG", WAVE["XAG"])
    assert market.rsi("XAG", 2, price, T0.date()) == pytest.approx(rsi)
    assert market.rsi("XAG", 4, price, T0.date()) is None  # four closes: not enough for RSI(4)


@pytest.mark.parametrize(
    ("rule", "prices", "expected"),
    [
        ("XAG rsi 2d above 85", [12, 13], [1]),  # 83.3 -> 90
        ("XAG rsi 2d above 85", [13, 13.5], []),  # already above: waits
        # re-arms only 2 RSI points under the level (under 83): 12 gives 83.3, 11.9 gives 78.1
        ("XAG rsi 2d above 85", [12, 13, 12.1, 12.5, 12, 13], [1]),
        ("XAG rsi 2d above 85", [12, 13, 12.1, 12.5, 11.9, 13], [1, 5]),
        ("XAG rsi 2d below 60", [12, 11, 11.5, 13, 11], [1, 4]),
        ("XAG rsi 2d crosses 80", [12, 11, 13], [1, 2]),
        ("XAG rsi 3d above 50", [11, 13], []),  # RSI(3) needs four closes before today: has four
    ],
)
def test_rsi_rules(rule: str, prices: list[float], expected: list[int]) -> None:
    limits = Limits(max_age=None, max_jump_pct=50)  # these made-up moves are large
    assert fired_at(rule, prices, candles=WAVE, limits=limits) == expected


def test_rsi_alert_gives_the_rsi_and_the_price() -> None:
    [(_, alert)] = drive("XAG rsi 2d above 85", [12, 13], candles=WAVE)
    assert alert.observed == pytest.approx(90) and alert.price == 13
    assert alert.reference is None  # the level is an RSI, not a price to draw on a chart
    assert alert.direction is Direction.UP
    assert sentence(alert) == "XAG 2-day RSI rose above 85 (90.0, now 13)"


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


def test_a_stream_of_ticks_is_kept_one_per_step_and_windows_still_read_it() -> None:
    """Ten synthetic quotes a second for five minutes: memory holds one tick per 10 s and,
    after the 20 the spread baseline needs, one spread sample per 10 s (the latest of each);
    a 1-minute window still finds the price of a minute ago, and the latest spread is the
    latest quote's."""
    market = Market(Limits(max_age=None))
    for i in range(3000):
        ts = T0 + timedelta(seconds=i / 10)
        price, half = 90000.0 + i, 1.0 + i % 7
        quote = Quote("BTC", price, ts, bid=price - half, ask=price + half)
        assert market.ingest(quote, ts) is None
    now = T0 + timedelta(seconds=299.9)
    history = market.history("BTC")
    assert len(history.ticks) <= 32 and len(history.spreads) <= 32 + 20  # of 3,000 quotes
    assert history.spreads[-1][1] == quote.spread_pct
    ago = market.price_ago("BTC", timedelta(minutes=1), now)
    assert ago is not None and 90000.0 + 2999 - 700 <= ago <= 90000.0 + 2999 - 600


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


def test_spread_in_the_quote_currency() -> None:
    """Synthetic silver: 3 cents, then 21 cents, then 4 cents (re-armed), then 16 cents."""
    books = [(50.0, 50.03), (50.0, 50.21), (50.0, 50.04), (50.0, 50.16)]
    prices = [(b + a) / 2 for b, a in books]
    fires = drive("XAG spread > 0.15", prices, books=books)
    assert [i for i, _ in fires] == [1, 3]
    assert (fires[0][1].bid, fires[0][1].ask) == (50.0, 50.21)
    assert sentence(fires[0][1]) == "XAG spread 21.0c is over 15.0c (bid 50 / ask 50.21)"


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
    assert "outperformed BTC" in sentence(fires[0][1])


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


def test_a_quote_older_than_the_last_good_one_repeats_no_alert() -> None:
    """A venue's stream and the poll covering for it can hand in quotes out of order: a
    price already superseded must not re-arm the rule that the newer one fired."""
    rule = rules.parse("BTC below 85000")
    market = Market(Limits(max_age=None))
    state, fires, refused = RuleState(), [], []
    # (price, its time): the third was observed before the second but arrives after it
    arrivals = [
        (86000.0, T0),
        (84000.0, T0 + 2 * STEP),
        (86000.0, T0 + STEP),
        (83900.0, T0 + 3 * STEP),
    ]
    for i, (price, at) in enumerate(arrivals):
        now = T0 + 3 * STEP + i * timedelta(seconds=1)
        refused.append(market.ingest(Quote("BTC", price, at), now))
        state, alert = evaluate(rule, state, observe(rule, market, now), now)
        if alert is not None:
            fires.append(alert.price)
    assert refused == [None, None, Reject.SUPERSEDED, None]
    assert fires == [84000.0]


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
    assert alert.rule == rules.parse("XAG above 50 cooldown 1h")
    assert (alert.bid, alert.ask) == (None, None)  # the quote had no book
    assert sentence(alert) == "XAG rose above 50 (now 50.50)"


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
