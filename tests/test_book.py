"""RuleBook: the threshold index must decide exactly what visiting every rule decides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from alerts import rules
from alerts.book import RuleBook
from alerts.engine import evaluate
from alerts.indicators import Market, observe
from alerts.models import Quote, Rule, RuleState
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
