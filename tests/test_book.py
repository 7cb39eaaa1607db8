"""RuleBook: the threshold index must decide exactly what visiting every rule decides."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from alerts import rules
from alerts.book import RuleBook, _Lines
from alerts.engine import evaluate
from alerts.indicators import Market, observe
from alerts.models import Candle, Quote, Rule, RuleState
from alerts.sanity import Limits

T0 = datetime(2026, 3, 2, tzinfo=UTC)

level_rules = st.builds(
    lambda sym, kw, level, confirm, cooldown, once: rules.parse(
        f"{sym} {kw} {level}"
        + (f" confirm {confirm}" if confirm > 1 else "")
        + (f" cooldown {cooldown}m" if cooldown else "")
        + (" once" if once else "")
    ),
    st.sampled_from(["AAA", "BBB"]),
    st.sampled_from(["above", "below", "support", "resistance"]),
    st.integers(90, 110),
    st.integers(1, 3),
    st.sampled_from([0, 0, 3]),
    st.booleans(),
)
other_rules = st.sampled_from(
    ["AAA up 2% 5m", "BBB move 1% 3m", "AAA/BBB above 1.05", "AAA/BBB down 3% 10m"]
).map(rules.parse)
# synthetic random walks (made-up prices), with occasional gaps where a symbol has no quote
ticks = st.lists(
    st.tuples(st.floats(85, 115), st.one_of(st.none(), st.floats(85, 115))),
    min_size=1,
    max_size=60,
)


def naive(rule_list: list[Rule], walk: list[tuple[float, float | None]]) -> list[tuple[int, int]]:
    market = Market(Limits(max_age=None))
    states = [RuleState() for _ in rule_list]
    out = []
    for t, (a, b) in enumerate(walk):
        now = T0 + t * timedelta(minutes=1)
        market.ingest(Quote("AAA", a, now), now)
        touched = {"AAA"}
        if b is not None:
            market.ingest(Quote("BBB", b, now), now)
            touched.add("BBB")
        for i, rule in enumerate(rule_list):
            if not touched & set(rule.symbols):
                continue  # a rule only sees new quotes: an old one is not a second observation
            states[i], alert = evaluate(rule, states[i], observe(rule, market, now), now)
            if alert is not None:
                out.append((t, i + 1))
    return out


def indexed(rule_list: list[Rule], walk: list[tuple[float, float | None]]) -> list[tuple[int, int]]:
    market = Market(Limits(max_age=None))
    book = RuleBook()
    for i, rule in enumerate(rule_list, start=1):
        book.add(i, rule)
    out = []
    for t, (a, b) in enumerate(walk):
        now = T0 + t * timedelta(minutes=1)
        market.ingest(Quote("AAA", a, now), now)
        touched = {"AAA"}
        if b is not None:
            market.ingest(Quote("BBB", b, now), now)
            touched.add("BBB")
        fires = book.evaluate(market, touched, now).fires
        out.extend((t, fire.rule_id) for fire in fires)
    return sorted(out)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(level_rules, other_rules), min_size=1, max_size=25), ticks)
def test_index_matches_naive_loop(
    rule_list: list[Rule], walk: list[tuple[float, float | None]]
) -> None:
    assert indexed(rule_list, walk) == sorted(naive(rule_list, walk))


def test_changed_states_are_reported_and_removal_forgets() -> None:
    book = RuleBook()
    book.add(1, rules.parse("AAA above 100"))
    book.add(2, rules.parse("AAA below 90"))
    market = Market(Limits(max_age=None))
    market.ingest(Quote("AAA", 95, T0), T0)
    first = book.evaluate(market, {"AAA"}, T0)
    assert first.fires == [] and set(first.changed) == {1, 2}  # both learned where the market is
    now = T0 + timedelta(minutes=1)
    market.ingest(Quote("AAA", 101, now), now)
    second = book.evaluate(market, {"AAA"}, now)
    assert [f.rule_id for f in second.fires] == [1] and set(second.changed) == {1}
    book.remove(1)
    assert book.symbols() == {"AAA"} and len(book) == 1


def test_a_reverted_evaluation_decides_the_same_crossing_again() -> None:
    """When a tick's commit fails, the service reverts it: the crossing is not lost."""
    book = RuleBook()
    book.add(1, rules.parse("AAA below 90"))
    book.add(2, rules.parse("AAA move 5% 15m"))
    market = Market(Limits(max_age=None))
    for step, price in enumerate((100, 99)):
        now = T0 + timedelta(minutes=20 * step)
        market.ingest(Quote("AAA", price, now), now)
        book.evaluate(market, {"AAA"}, now)
    now = T0 + timedelta(minutes=40)
    market.ingest(Quote("AAA", 89, now), now)
    lost = book.evaluate(market, {"AAA"}, now)
    assert sorted(f.rule_id for f in lost.fires) == [1, 2]
    book.revert(lost)
    now = T0 + timedelta(minutes=41)
    market.ingest(Quote("AAA", 88.9, now), now)
    again = book.evaluate(market, {"AAA"}, now)
    assert sorted(f.rule_id for f in again.fires) == [1, 2]


# Indicator rules and `crosses`: the same equivalence over several days, so that moving
# averages and the RSI's daily part change under the rules (each day's bar closes into the
# history, as in replay). Made-up prices around 100 with made-up daily history.

indicator_rules = st.sampled_from(
    [
        "AAA crosses 100",
        "AAA crosses 98 confirm 2",
        "AAA above ma 3d",
        "AAA below ma 5d",
        "AAA crosses ma 3d",
        "AAA crosses ma 3d once",
        "AAA > ema 4d cooldown 3h",
        "AAA below ema 4d confirm 2",
        "AAA rsi 3d above 60",
        "AAA rsi 3d below 40",
        "AAA rsi 3d crosses 50",
        "AAA rsi 5d > 70 confirm 2",
        "AAA rsi 5d below 45",
        "BBB crosses ma 2d",
        "BBB rsi 2d crosses 55",
        "BBB crosses 101",
    ]
).map(rules.parse)
history = st.lists(st.floats(90, 110), min_size=3, max_size=8)
HOURS = timedelta(hours=3)  # eight ticks a day: a walk of 60 ticks spans a week


def day_bars(prices: list[tuple[datetime, float]]) -> Candle:
    """The bar of one replayed day: open, high, low and close of its ticks."""
    values = [p for _, p in prices]
    return Candle(prices[0][0].date(), values[0], max(values), min(values), values[-1])


def walk_days(
    closes: list[float],
    walk: list[tuple[float, float | None]],
    decide: Callable[[Market, set[str], datetime], list[int]],
) -> list[tuple[int, int]]:
    """Drive `decide` over the walk, closing each day's bars into the market's history."""
    market = Market(Limits(max_age=None, max_jump_pct=100))
    first = T0.date() - timedelta(days=len(closes))
    for symbol in ("AAA", "BBB"):
        market.add_candles(
            symbol, [Candle(first + timedelta(days=i), c, c, c, c) for i, c in enumerate(closes)]
        )
    today: dict[str, list[tuple[datetime, float]]] = {"AAA": [], "BBB": []}
    out = []
    for t, (a, b) in enumerate(walk):
        now = T0 + t * HOURS
        for symbol, ticks in today.items():
            if ticks and ticks[0][0].date() < now.date():
                market.add_candles(symbol, [day_bars(ticks)])
                ticks.clear()
        touched = set()
        for symbol, price in (("AAA", a), ("BBB", b)):
            if price is not None:
                market.ingest(Quote(symbol, price, now), now)
                today[symbol].append((now, price))
                touched.add(symbol)
        out.extend((t, rule_id) for rule_id in decide(market, touched, now))
    return sorted(out)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(indicator_rules, level_rules), min_size=1, max_size=25),
    history,
    ticks,
)
def test_indicator_index_matches_naive_loop(
    rule_list: list[Rule], closes: list[float], walk: list[tuple[float, float | None]]
) -> None:
    states = [RuleState() for _ in rule_list]

    def every_rule(market: Market, touched: set[str], now: datetime) -> list[int]:
        fired = []
        for i, rule in enumerate(rule_list):
            if touched & set(rule.symbols):
                states[i], alert = evaluate(rule, states[i], observe(rule, market, now), now)
                if alert is not None:
                    fired.append(i + 1)
        return fired

    book = RuleBook()
    for i, rule in enumerate(rule_list, start=1):
        book.add(i, rule)

    def by_book(market: Market, touched: set[str], now: datetime) -> list[int]:
        return [fire.rule_id for fire in book.evaluate(market, touched, now).fires]

    assert walk_days(closes, walk, by_book) == walk_days(closes, walk, every_rule)


def test_an_average_bucket_is_visited_only_when_the_price_changes_zone() -> None:
    """Moves that stay on one side of the average change nothing and decide nothing; the
    move through it decides every rule of the bucket at once."""
    book = RuleBook()
    for i in range(1, 101):
        book.add(i, rules.parse(f"AAA {'below' if i % 2 else 'crosses'} ma 3d"))
    market = Market(Limits(max_age=None))
    market.add_candles(
        "AAA", [Candle(T0.date() - timedelta(days=d), 0, 0, 0, 100) for d in (1, 2, 3)]
    )
    decided = []
    for step, price in enumerate((101.0, 101.5, 102.0, 99.0)):
        now = T0 + timedelta(minutes=step)
        market.ingest(Quote("AAA", price, now), now)
        evaluation = book.evaluate(market, {"AAA"}, now)
        decided.append((len(evaluation.changed), len(evaluation.fires)))
    assert decided == [(100, 0), (0, 0), (0, 0), (100, 100)]


def test_a_reverted_evaluation_decides_an_indicator_crossing_again() -> None:
    book = RuleBook()
    book.add(1, rules.parse("AAA below ma 3d"))
    book.add(2, rules.parse("AAA rsi 3d below 40"))
    book.add(3, rules.parse("AAA crosses 99.5"))
    market = Market(Limits(max_age=None))
    closes = (100.0, 101.0, 100.0, 101.0)
    first = T0.date() - timedelta(days=len(closes))
    market.add_candles(
        "AAA", [Candle(first + timedelta(days=i), c, c, c, c) for i, c in enumerate(closes)]
    )
    market.ingest(Quote("AAA", 101.0, T0), T0)
    book.evaluate(market, {"AAA"}, T0)
    now = T0 + timedelta(minutes=1)
    market.ingest(Quote("AAA", 98.0, now), now)
    lost = book.evaluate(market, {"AAA"}, now)
    assert sorted(f.rule_id for f in lost.fires) == [1, 2, 3]
    book.revert(lost)
    now = T0 + timedelta(minutes=2)
    market.ingest(Quote("AAA", 98.1, now), now)
    again = book.evaluate(market, {"AAA"}, now)
    assert sorted(f.rule_id for f in again.fires) == [1, 2, 3]
    book.remove(1)
    book.remove(2)
    assert book.symbols() == {"AAA"}


# Every kind at once: price and ratio levels, changes over minutes and days (rotation for the
# pair), channels, spreads (quotes with and without a book), averages and RSI, with every
# option, under several bands, over days whose bars close into the history; with gaps, ticks
# that leave pairs out (replay), failed commits (revert) and rules reloaded mid-walk. Made-up
# prices and spreads.

SYMBOL = st.sampled_from(["AAA", "BBB"])
RELATION = st.sampled_from(["above", "below", "support", "resistance", "crosses"])
CHANGE = st.sampled_from(["up", "down", "move"])
PERCENT = st.sampled_from(["0.5", "1", "2", "5", "10", "20"])
WINDOW = st.sampled_from(["5m", "3h", "6h", "1d", "2d"])


@st.composite
def any_rule(draw: st.DrawFn) -> Rule:
    """One rule of any kind, with any options."""
    kind = draw(st.sampled_from(["level", "ratio", "change", "rotation", "channel", "spread"]))
    if kind == "level":
        text = f"{draw(SYMBOL)} {draw(RELATION)} {draw(st.integers(90, 110))}"
    elif kind == "ratio":
        level = draw(st.sampled_from(["0.9", "0.95", "1", "1.05", "1.1"]))
        text = f"AAA/BBB {draw(RELATION)} {level}"
    elif kind in ("change", "rotation"):
        subject = draw(SYMBOL) if kind == "change" else "AAA/BBB"
        text = f"{subject} {draw(CHANGE)} {draw(PERCENT)}% {draw(WINDOW)}"
    elif kind == "channel":
        direction = draw(st.sampled_from(["breakout", "breakdown"]))
        text = f"{draw(SYMBOL)} {direction} {draw(st.integers(1, 4))}d"
    else:
        threshold = draw(st.sampled_from(["0.5%", "1%", "2%", "1.5x", "2x", "3x", "0.5", "1", "2"]))
        text = f"{draw(SYMBOL)} spread > {threshold}"
    confirm = draw(st.integers(1, 3))
    cooldown = draw(st.sampled_from([0, 0, 3, 5]))
    expires = draw(st.one_of(st.none(), st.integers(0, 8)))
    text += f" confirm {confirm}" if confirm > 1 else ""
    text += f" cooldown {cooldown}h" if cooldown else ""
    text += " once" if draw(st.booleans()) else ""
    if expires is not None:
        text += f" expires {(T0.date() + timedelta(days=expires)).isoformat()}"
    return rules.parse(text)


# a quote: where the price goes (a small step from the last price, so that it lingers inside
# hysteresis bands, or a jump to a price, sometimes exactly on a level or a re-arm line) and a
# spread in price units (None: a quote without a book)
STEP = st.tuples(st.just("step"), st.floats(-0.01, 0.01))
JUMP = st.tuples(st.just("to"), st.floats(85, 115))
EXACT = st.tuples(st.just("to"), st.sampled_from([90.0, 99.75, 100.0, 100.25, 105.0]))
QUOTE = st.tuples(st.one_of(STEP, STEP, JUMP, EXACT), st.one_of(st.none(), st.floats(0, 3)))
EVENT = st.sampled_from(["", "", "", "", "", "", "no pairs", "fail", "reload", "restart"])
TICK = st.tuples(st.one_of(st.none(), QUOTE), st.one_of(st.none(), QUOTE), EVENT)
Drawn = tuple[tuple[str, float], float | None]
Tick = tuple[Drawn | None, Drawn | None, str]


def quote(symbol: str, price: float, spread: float | None, now: datetime) -> Quote:
    if spread is None:
        return Quote(symbol, price, now)
    return Quote(symbol, price, now, bid=price - spread / 2, ask=price + spread / 2)


def market_days(
    closes: list[float],
    before: list[float],
    walk: list[Tick],
    decide: Callable[[Market, set[str], datetime, str], list[int]],
) -> list[tuple[int, int]]:
    """Drive `decide` over the walk: daily bars of `closes` before it, quotes with spreads
    `before` in the hours before it (restored, as after a restart), and each day's bar closed
    into the history."""
    market = Market(Limits(max_age=None, max_jump_pct=100, spread_window=timedelta(days=30)))
    first = T0.date() - timedelta(days=len(closes))
    restored = []
    for symbol in ("AAA", "BBB"):
        bars = [
            Candle(first + timedelta(days=i), c, c * 1.02, c * 0.98, c)
            for i, c in enumerate(closes)
        ]
        market.add_candles(symbol, bars)
        for i, spread in enumerate(before):
            ts = T0 - (len(before) - i) * timedelta(hours=1)
            restored.append(quote(symbol, closes[-1], spread, ts))
    market.restore(sorted(restored, key=lambda q: q.ts))
    today: dict[str, list[tuple[datetime, float]]] = {"AAA": [], "BBB": []}
    last = dict.fromkeys(today, closes[-1])
    out = []
    for t, (a, b, event) in enumerate(walk):
        now = T0 + t * HOURS
        for symbol, ticks_of_day in today.items():
            if ticks_of_day and ticks_of_day[0][0].date() < now.date():
                market.add_candles(symbol, [day_bars(ticks_of_day)])
                ticks_of_day.clear()
        touched = set()
        for symbol, drawn in (("AAA", a), ("BBB", b)):
            if drawn is not None:
                (how, number), spread = drawn
                price = last[symbol] = last[symbol] * (1 + number) if how == "step" else number
                market.ingest(quote(symbol, price, spread, now), now)
                today[symbol].append((now, price))
                touched.add(symbol)
        out.extend((t, rule_id) for rule_id in decide(market, touched, now, event))
    return sorted(out)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.one_of(any_rule(), indicator_rules), min_size=1, max_size=30),
    st.lists(st.floats(90, 110), min_size=3, max_size=8),
    st.lists(st.floats(0, 3), max_size=25),
    st.lists(TICK, min_size=1, max_size=60),
    st.sampled_from([0.0025, 0.0, 0.01]),
)
def test_every_kind_matches_naive_loop(
    rule_list: list[Rule],
    closes: list[float],
    before: list[float],
    walk: list[Tick],
    band: float,
) -> None:
    states = [RuleState() for _ in rule_list]

    def every_rule(market: Market, touched: set[str], now: datetime, event: str) -> list[int]:
        fired, replaced = [], {}
        for i, rule in enumerate(rule_list):
            if not touched & set(rule.symbols) or (event == "no pairs" and rule.other):
                continue
            state, alert = evaluate(rule, states[i], observe(rule, market, now), now, band)
            if state != states[i]:
                replaced[i] = states[i]
            states[i] = state
            if alert is not None:
                fired.append(i + 1)
        if event == "fail":  # the tick's decisions are not saved: put them back
            for i, state in replaced.items():
                states[i] = state
        return fired

    book = RuleBook(band)
    book.add_many((i, rule, None) for i, rule in enumerate(rule_list, start=1))

    def by_book(market: Market, touched: set[str], now: datetime, event: str) -> list[int]:
        nonlocal book
        evaluation = book.evaluate(market, touched, now, pairs=event != "no pairs")
        if event == "fail":
            book.revert(evaluation)
        if event == "reload":  # a rule read again from the store, with its state
            rule_id = now.hour % len(rule_list) + 1
            state = book.states[rule_id]
            book.remove(rule_id)
            book.add(rule_id, rule_list[rule_id - 1], state)
        if event == "restart":  # a new book with every rule's stored state, as after a restart
            stored = book.states
            book = RuleBook(band)
            book.add_many((i, rule, stored[i]) for i, rule in enumerate(rule_list, start=1))
        return [fire.rule_id for fire in evaluation.fires]

    indexed_fires = market_days(closes, before, walk, by_book)
    assert indexed_fires == market_days(closes, before, walk, every_rule)
    assert [book.states[i] for i in range(1, len(rule_list) + 1)] == states


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(any_rule(), indicator_rules), min_size=1, max_size=30),
    st.lists(st.floats(90, 110), min_size=3, max_size=8),
    st.lists(TICK, min_size=1, max_size=40),
    st.integers(1, 6),
)
def test_a_learning_budget_only_delays_each_rules_first_look(
    rule_list: list[Rule], closes: list[float], walk: list[Tick], per_tick: int
) -> None:
    """With `learn_per_tick`, at most that many new rules take their first look in a tick, every
    rule takes it in the end, and the book then decides what the naive loop decides for rules
    that start watching at those ticks."""
    walk = [(a, b, "") for a, b, _ in walk]
    book = RuleBook(learn_per_tick=per_tick)
    book.add_many((i, rule, None) for i, rule in enumerate(rule_list, start=1))
    first_look: dict[int, datetime] = {}

    def by_book(market: Market, touched: set[str], now: datetime, event: str) -> list[int]:
        evaluation = book.evaluate(market, touched, now)
        learned = [i for i in evaluation.changed if i not in first_look]
        assert len(learned) <= per_tick
        first_look.update(dict.fromkeys(learned, now))
        return [fire.rule_id for fire in evaluation.fires]

    states = [RuleState() for _ in rule_list]

    def from_first_look(market: Market, touched: set[str], now: datetime, event: str) -> list[int]:
        fired = []
        for i, rule in enumerate(rule_list):
            looked = first_look.get(i + 1)
            if not touched & set(rule.symbols) or looked is None or looked > now:
                continue
            states[i], alert = evaluate(rule, states[i], observe(rule, market, now), now)
            if alert is not None:
                fired.append(i + 1)
        return fired

    indexed_fires = market_days(closes, [], walk, by_book)
    assert indexed_fires == market_days(closes, [], walk, from_first_look)


def test_new_rules_beyond_the_learning_budget_look_on_later_ticks() -> None:
    book = RuleBook(learn_per_tick=2)
    book.add_many((i, rules.parse(f"AAA above {100 + i}"), None) for i in range(1, 6))
    market = Market(Limits(max_age=None))
    learned = []
    for minute in range(3):
        now = T0 + timedelta(minutes=minute)
        market.ingest(Quote("AAA", 100, now), now)
        learned.append(sorted(book.evaluate(market, {"AAA"}, now).changed))
    assert learned == [[1, 2], [3, 4], [5]] and book.learning() == 0
    book.add(6, rules.parse("AAA above 103.5"))
    book.remove(6)  # forgotten before its first look: nothing left waiting
    assert book.learning() == 0
    now = T0 + timedelta(minutes=3)
    market.ingest(Quote("AAA", 103.5, now), now)  # through 101, 102 and 103
    assert [f.rule_id for f in book.evaluate(market, {"AAA"}, now).fires] == [1, 2, 3]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 40)), max_size=400),
    st.integers(0, 41),
    st.booleans(),
)
def test_chunked_lines_keep_order_through_inserts_and_deletes(
    steps: list[tuple[bool, int]], number: int, bulk: bool
) -> None:
    """Lines in chunks as small as 2 (many chunks, values equal across chunk edges) hold the
    same as a plain sorted list through any inserts and deletes."""
    lines, plain = _Lines(chunk=2), []
    next_id = 0
    for insert, value in steps:
        if insert and bulk:  # added at a start-up, sorted in at once
            lines.add(float(value), next_id)
            plain.append((float(value), next_id))
            next_id += 1
            continue
        lines.sort()
        if insert or not plain:
            lines.insert(float(value), next_id)
            plain.append((float(value), next_id))
            next_id += 1
        else:
            line = plain.pop(value % len(plain))
            lines.delete(*line)
    lines.sort()
    assert sorted(lines.up_to(number)) == sorted(i for v, i in plain if v <= number)
    assert sorted(lines.down_to(number)) == sorted(i for v, i in plain if v >= number)
    flat = [v for chunk in lines.values for v in chunk]
    assert flat == sorted(v for v, _ in plain)
    assert lines.lasts == [chunk[-1] for chunk in lines.values]
