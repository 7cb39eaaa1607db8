"""Benchmark: rules evaluated per tick, the indexed RuleBook against a naive loop.

Synthetic market (made-up prices): 50 symbols random-walking around 100 with 0.2% steps,
level rules at uniformly random levels between 80 and 120, half `above`, half `below`.
A tick moves every symbol once and evaluates what it touched. Run: .venv/bin/python -m bench.engine

Then 100k rules of each newer kind over the same walk, with 2,500 days of made-up daily closes
(2% daily moves) ending at 100: `crosses` levels; `above`/`below`/`crosses` against an MA or EMA
of 20, 50, 100 or 200 days; RSI(7, 14, 21) `above`/`below`/`crosses` a level from 20 to 80.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from alerts.book import RuleBook
from alerts.engine import evaluate
from alerts.indicators import Market, observe
from alerts.models import Candle, Condition, Indicator, Quote, Rule, RuleState
from alerts.sanity import Limits

SYMBOLS = [f"S{i:02d}" for i in range(50)]
T0 = datetime(2026, 1, 1, tzinfo=UTC)
HISTORY_DAYS = 2500


def make_rules(n: int, rng: random.Random) -> list[Rule]:
    conditions = (Condition.ABOVE, Condition.BELOW)
    return [
        Rule(rng.choice(SYMBOLS), rng.choice(conditions), round(rng.uniform(80, 120), 2))
        for _ in range(n)
    ]


def make_new_rules(kind: str, n: int, rng: random.Random) -> list[Rule]:
    """`n` rules of one newer kind: crosses, average (ma/ema) or rsi."""
    out = []
    relations = (Condition.ABOVE, Condition.BELOW, Condition.CROSSES)
    for _ in range(n):
        symbol, cond = rng.choice(SYMBOLS), rng.choice(relations)
        if kind == "crosses":
            out.append(Rule(symbol, Condition.CROSSES, round(rng.uniform(80, 120), 2)))
        elif kind == "average":
            indicator = rng.choice((Indicator.MA, Indicator.EMA))
            out.append(Rule(symbol, cond, indicator=indicator, days=rng.choice((20, 50, 100, 200))))
        else:
            level = round(rng.uniform(20, 80), 1)
            out.append(
                Rule(symbol, cond, level, indicator=Indicator.RSI, days=rng.choice((7, 14, 21)))
            )
    return out


def daily_history(market: Market) -> None:
    """Made-up daily closes for every symbol, ending at 100 the day before T0."""
    rng = random.Random(11)
    for symbol in SYMBOLS:
        closes = [100.0]
        for _ in range(HISTORY_DAYS - 1):
            closes.append(closes[-1] * (1 + rng.gauss(0, 0.02)))
        closes = [c * 100 / closes[-1] for c in closes]
        first = T0.date() - timedelta(days=HISTORY_DAYS)
        bars = [Candle(first + timedelta(days=i), c, c, c, c) for i, c in enumerate(closes)]
        market.add_candles(symbol, bars)


class Walk:
    """One synthetic price path per symbol, identical for both engines (same seed)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.prices = dict.fromkeys(SYMBOLS, 100.0)

    def tick(self, market: Market, now: datetime) -> None:
        for symbol in SYMBOLS:
            self.prices[symbol] *= 1 + self.rng.gauss(0, 0.002)
            market.ingest(Quote(symbol, self.prices[symbol], now), now)


def new_market(history: bool) -> Market:
    market = Market(Limits(max_age=None))
    if history:
        daily_history(market)
    return market


def run_indexed(
    rule_list: list[Rule], ticks: int, history: bool = False
) -> tuple[list[float], int]:
    market, walk, book = new_market(history), Walk(7), RuleBook()
    for i, rule in enumerate(rule_list):
        book.add(i, rule)
    times, fired = [], 0
    for t in range(ticks + 1):
        now = T0 + t * timedelta(seconds=10)
        walk.tick(market, now)
        start = time.perf_counter()
        fires = book.evaluate(market, SYMBOLS, now).fires
        if t:  # tick 0 is every rule learning where the market is
            times.append(time.perf_counter() - start)
            fired += len(fires)
    return times, fired


def run_naive(rule_list: list[Rule], ticks: int, history: bool = False) -> tuple[list[float], int]:
    market, walk = new_market(history), Walk(7)
    states = [RuleState() for _ in rule_list]
    times, fired = [], 0
    for t in range(ticks + 1):
        now = T0 + t * timedelta(seconds=10)
        walk.tick(market, now)
        start = time.perf_counter()
        count = 0
        for i, rule in enumerate(rule_list):
            states[i], alert = evaluate(rule, states[i], observe(rule, market, now), now)
            count += alert is not None
        if t:
            times.append(time.perf_counter() - start)
            fired += count
    return times, fired


def report(label: str, n: int, name: str, times: list[float], fired: int) -> None:
    median = statistics.median(times)
    p95 = sorted(times)[int(len(times) * 0.95) - 1]
    per_tick = fired / len(times)
    print(
        f"{label:>8} {name:>8} {median * 1e3:>9.3f} {p95 * 1e3:>8.3f}"
        f" {n / median:>12,.0f} {per_tick:>10.1f}"
    )


def main() -> None:
    print(f"python {sys.version.split()[0]}, one core, 50 symbols, synthetic random walk")
    head = ("rules", "engine", "ms/tick", "p95 ms", "rules/s", "fires/tick")
    print("{:>8} {:>8} {:>9} {:>8} {:>12} {:>10}".format(*head))
    for n, ticks in ((1_000, 200), (10_000, 100), (100_000, 50)):
        rule_list = make_rules(n, random.Random(n))
        results = {"indexed": run_indexed(rule_list, ticks)}
        results["naive"] = run_naive(rule_list, max(5, ticks // 10))
        for name, (times, fired) in results.items():
            report(str(n), n, name, times, fired)
    n = 100_000
    print(f"\n{n:,} rules of each newer kind ({HISTORY_DAYS} days of daily closes per symbol)")
    print("{:>8} {:>8} {:>9} {:>8} {:>12} {:>10}".format("kind", *head[1:]))
    for kind in ("crosses", "average", "rsi"):
        rule_list = make_new_rules(kind, n, random.Random(n))
        results = {"indexed": run_indexed(rule_list, 50, history=True)}
        results["naive"] = run_naive(rule_list, 5, history=True)
        for name, (times, fired) in results.items():
            report(kind, n, name, times, fired)


if __name__ == "__main__":
    main()
