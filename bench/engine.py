"""Benchmark: rules evaluated per tick by the indexed RuleBook, a lean loop and a naive loop.

Synthetic market (made-up prices throughout): 50 symbols random-walking from 100 with steps
every 10 s of 0.05% (`--step`; the real 10-second volatility implied by the daily closes in
shared/data, over their last 1,000 days, is 0.014% for gold, 0.026% for BTC and 0.036% for ETH,
so 0.05% is a busy day; the earlier 0.2% fired every rule every few minutes), each quote with a
bid and ask (a spread of about 0.05% with noise and rare spikes), 2,500 days of made-up daily
bars (2% daily moves, ending at 100) and two hours of made-up ticks before the first measured
one (for 1h windows and spread medians). A tick moves every symbol once and evaluates what it
touched; tick 0 (every rule learning where the market is) is not timed.

Three engines, over the same walk:
- indexed: `RuleBook.evaluate`.
- lean: a plain loop over every rule that computes each indicator once per symbol and window
  (one `observe` per distinct reading, shared by the rules that read it), then calls the
  engine: the best simple alternative.
- naive: `observe` and the engine for every rule (sampled: a few ticks).

Times are CPU seconds of this process (`time.process_time`): other work on the machine
inflates them less than wall time (it still competes for the caches).

Run: .venv/bin/python -m bench.engine [--step PCT] [levels | kinds [NAME...] | mixed]. With no
argument, all three; `mixed` (1M rules of every kind: build time, ticks, RSS) runs in its own
process so that its RSS is its own.
"""

from __future__ import annotations

import math
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alerts.book import RuleBook
from alerts.engine import evaluate
from alerts.indicators import Market, Observation, observe
from alerts.models import Candle, Condition, Indicator, Quote, Rule, RuleState
from alerts.sanity import Limits

SYMBOLS = [f"S{i:02d}" for i in range(50)]
PAIRS = [(SYMBOLS[i], SYMBOLS[i + 1]) for i in range(0, len(SYMBOLS), 2)]  # XAU/XAG-like
T0 = datetime(2026, 1, 1, tzinfo=UTC)
STEP = timedelta(seconds=10)
WARMUP = timedelta(hours=2)
HISTORY_DAYS = 2500
SPREAD = 0.05  # typical spread in percent of mid
STEP_SD = 0.0005  # the walk's 10-second step, as a fraction (--step)
HOUR, DAY = timedelta(hours=1), timedelta(days=1)


# --- the synthetic market -------------------------------------------------------------------


class Walk:
    """One synthetic price and spread path per symbol, identical for every engine (same seed)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.prices = dict.fromkeys(SYMBOLS, 100.0)

    def quotes(self, now: datetime) -> list[Quote]:
        out = []
        for symbol in SYMBOLS:
            price = self.prices[symbol] = self.prices[symbol] * (1 + self.rng.gauss(0, STEP_SD))
            spread = SPREAD * math.exp(self.rng.gauss(0, 0.3))
            if self.rng.random() < 0.01:
                spread *= 4  # a dealer stepping back
            half = price * spread / 200
            out.append(Quote(symbol, price, now, price - half, price + half))
        return out

    def tick(self, market: Market, now: datetime) -> None:
        for quote in self.quotes(now):
            market.ingest(quote, now)


def daily_bars() -> dict[str, list[Candle]]:
    """Made-up daily bars for every symbol, closing at 100 the day before T0."""
    rng = random.Random(11)
    first = T0.date() - timedelta(days=HISTORY_DAYS)
    out = {}
    for symbol in SYMBOLS:
        closes = [100.0]
        for _ in range(HISTORY_DAYS - 1):
            closes.append(closes[-1] * (1 + rng.gauss(0, 0.02)))
        closes = [c * 100 / closes[-1] for c in closes]
        out[symbol] = [
            Candle(first + timedelta(days=i), c, c * (1 + abs(rng.gauss(0, 0.01))),
                   c * (1 - abs(rng.gauss(0, 0.01))), c)
            for i, c in enumerate(closes)
        ]  # fmt: skip
    return out


_BARS: dict[str, list[Candle]] = {}


def new_market() -> tuple[Market, Walk]:
    """A market with the daily bars and two hours of ticks before T0, and the walk from T0."""
    if not _BARS:  # screened once (add_candles is slow on 2,500 bars), then shared
        screened = Market(Limits(max_age=None))
        for symbol, bars in daily_bars().items():
            screened.add_candles(symbol, bars)
            _BARS[symbol] = screened.history(symbol).candles
    market, walk = Market(Limits(max_age=None)), Walk(7)
    for symbol, bars in _BARS.items():
        market.history(symbol).candles = bars  # read-only from here on
    steps = WARMUP // STEP
    market.restore([q for t in range(steps, 0, -1) for q in walk.quotes(T0 - t * STEP)])
    return market, walk


# --- the rules ------------------------------------------------------------------------------


def options(rule: Rule, rng: random.Random) -> Rule:
    """Some rules carry options, as people write them: confirm, cooldown, once."""
    draw = rng.random()
    if draw < 0.1:
        return replace(rule, confirm=2)
    if draw < 0.2:
        return replace(rule, cooldown=timedelta(minutes=30))
    if draw < 0.25:
        return replace(rule, once=True)
    return rule


def _level(rng: random.Random) -> Rule:
    cond = rng.choice((Condition.ABOVE, Condition.BELOW))
    return Rule(rng.choice(SYMBOLS), cond, round(rng.uniform(80, 120), 2))


def _crosses(rng: random.Random) -> Rule:
    return Rule(rng.choice(SYMBOLS), Condition.CROSSES, round(rng.uniform(80, 120), 2))


def _average(rng: random.Random) -> Rule:
    cond = rng.choice((Condition.ABOVE, Condition.BELOW, Condition.CROSSES))
    indicator = rng.choice((Indicator.MA, Indicator.EMA))
    days = rng.choice((20, 50, 100, 200))
    return Rule(rng.choice(SYMBOLS), cond, indicator=indicator, days=days)


def _rsi(rng: random.Random) -> Rule:
    cond = rng.choice((Condition.ABOVE, Condition.BELOW, Condition.CROSSES))
    level, days = round(rng.uniform(20, 80), 1), rng.choice((7, 14, 21))
    return Rule(rng.choice(SYMBOLS), cond, level, indicator=Indicator.RSI, days=days)


def _change(conds: tuple[Condition, ...], window: timedelta, pair: bool) -> Callable[..., Rule]:
    """Change rules over `window`: from half to five times the walk's hourly move over an hour
    (1-10% at a 0.05% step), 1-10% over a day."""
    hourly = STEP_SD * math.sqrt(HOUR / STEP) * 100
    low, high = (hourly / 2, hourly * 5) if window == HOUR else (1.0, 10.0)

    def make(rng: random.Random) -> Rule:
        symbol, other = rng.choice(PAIRS) if pair else (rng.choice(SYMBOLS), None)
        value = round(rng.uniform(low, high), 2)
        return Rule(symbol, rng.choice(conds), value, other=other, window=window)

    return make


def _channel(rng: random.Random) -> Rule:
    cond = rng.choice((Condition.BREAKOUT, Condition.BREAKDOWN))
    return Rule(rng.choice(SYMBOLS), cond, days=rng.choice((5, 10, 20, 55, 100)))


def _spread(cond: Condition, low: float, high: float) -> Callable[..., Rule]:
    def make(rng: random.Random) -> Rule:
        return Rule(rng.choice(SYMBOLS), cond, round(rng.uniform(low, high), 3))

    return make


def _ratio(rng: random.Random) -> Rule:
    symbol, other = rng.choice(PAIRS)
    cond = rng.choice((Condition.ABOVE, Condition.BELOW, Condition.CROSSES))
    return Rule(symbol, cond, round(rng.uniform(0.8, 1.2), 4), other=other)


MOVE, UPDOWN = (Condition.MOVE,), (Condition.UP, Condition.DOWN)
ROTATION = (Condition.UP, Condition.DOWN, Condition.MOVE)
# every kind: the name printed and a maker of one rule; thresholds spread over a range that
# the walk visits in part (spread thresholds from twice the typical spread to 20 times it)
KINDS: dict[str, Callable[[random.Random], Rule]] = {
    "level": _level,
    "crosses": _crosses,
    "move 1h": _change(MOVE, HOUR, False),
    "up/dn 1h": _change(UPDOWN, HOUR, False),
    "move 1d": _change(MOVE, DAY, False),
    "up/dn 1d": _change(UPDOWN, DAY, False),
    "channel": _channel,
    "spread %": _spread(Condition.SPREAD_PCT, 2 * SPREAD, 20 * SPREAD),
    "spread x": _spread(Condition.SPREAD_MULT, 2, 10),
    "spread $": _spread(Condition.SPREAD_ABS, 2 * SPREAD, 20 * SPREAD),
    "ratio": _ratio,
    "rotation": lambda rng: _change(ROTATION, rng.choice((HOUR, DAY)), True)(rng),
    "average": _average,
    "rsi": _rsi,
}


def make_rules(kind: str, n: int, seed: int, with_options: bool = True) -> list[Rule]:
    rng = random.Random(seed)
    make = KINDS[kind]
    return [options(make(rng), rng) if with_options else make(rng) for _ in range(n)]


def mixed_rules(n: int) -> list[Rule]:
    """`n` rules, an equal share of every kind, shuffled."""
    share = n // len(KINDS)
    out = [r for i, kind in enumerate(KINDS) for r in make_rules(kind, share, i)]
    random.Random(0).shuffle(out)
    return out


# --- the engines ----------------------------------------------------------------------------


@dataclass
class Run:
    """One engine over one book: seconds per timed tick, fires and state changes per tick."""

    build: float
    times: list[float]
    fires: list[list[int]]
    changes: list[int]


def run_indexed(rule_list: list[Rule], ticks: int, budget: float) -> Run:
    market, walk = new_market()
    start = time.process_time()
    book = RuleBook()
    for i, rule in enumerate(rule_list):
        book.add(i, rule)
    build = time.process_time() - start

    def tick(now: datetime) -> tuple[list[int], int]:
        evaluation = book.evaluate(market, SYMBOLS, now)
        return [fire.rule_id for fire in evaluation.fires], len(evaluation.changed)

    return _drive(market, walk, tick, ticks, budget, build)


def reading_key(rule: Rule) -> tuple[object, ...]:
    """What an observation depends on besides the rule's own level: rules with equal keys
    read the same indicator."""
    cond = rule.condition
    what = rule.indicator or ("price" if cond.is_level else "change" if cond.is_change else cond)
    return rule.symbol, rule.other, what, rule.days, rule.window


def own_reference(rule: Rule) -> bool:
    """Whether the rule's observation carries its own level as the reference."""
    cond = rule.condition
    return rule.indicator is None and (cond.is_level or cond in _OWN_LEVEL)


_OWN_LEVEL = (Condition.SPREAD_PCT, Condition.SPREAD_ABS)


def run_lean(rule_list: list[Rule], ticks: int, budget: float) -> Run:
    market, walk = new_market()
    keys = [reading_key(rule) for rule in rule_list]
    own = [own_reference(rule) for rule in rule_list]
    states = [RuleState() for _ in rule_list]

    def tick(now: datetime) -> tuple[list[int], int]:
        readings: dict[tuple[object, ...], Observation | None] = {}
        fired, changes = [], 0
        for i, rule in enumerate(rule_list):
            key = keys[i]
            if key in readings:
                obs = readings[key]
            else:
                obs = readings[key] = observe(rule, market, now)
            if obs is not None and own[i]:
                obs = Observation(obs.quote, obs.price, obs.value, rule.value, obs.time)
            state, alert = evaluate(rule, states[i], obs, now)
            if state is not states[i]:
                changes += state != states[i]
                states[i] = state
            if alert is not None:
                fired.append(i)
        return fired, changes

    return _drive(market, walk, tick, ticks, budget)


def run_naive(rule_list: list[Rule], ticks: int, budget: float) -> Run:
    market, walk = new_market()
    states = [RuleState() for _ in rule_list]

    def tick(now: datetime) -> tuple[list[int], int]:
        fired, changes = [], 0
        for i, rule in enumerate(rule_list):
            state, alert = evaluate(rule, states[i], observe(rule, market, now), now)
            if state is not states[i]:
                changes += state != states[i]
                states[i] = state
            if alert is not None:
                fired.append(i)
        return fired, changes

    return _drive(market, walk, tick, ticks, budget)


def _drive(
    market: Market,
    walk: Walk,
    tick: Callable[[datetime], tuple[list[int], int]],
    ticks: int,
    budget: float,
    build: float = 0.0,
) -> Run:
    """Tick 0 untimed, then up to `ticks` timed ticks or until `budget` seconds are spent."""
    run = Run(build, [], [], [])
    for t in range(ticks + 1):
        now = T0 + t * STEP
        walk.tick(market, now)
        start = time.process_time()
        fired, changes = tick(now)
        if t:
            run.times.append(time.process_time() - start)
            run.fires.append(sorted(fired))
            run.changes.append(changes)
            if sum(run.times) > budget:
                break
    return run


# --- reports --------------------------------------------------------------------------------

HEAD = ("rules", "engine", "ms/tick", "p95 ms", "ticks", "fires/tk", "chg/tk", "vs lean")


def header(first: str = "rules") -> None:
    print("{:>9} {:>8} {:>9} {:>9} {:>6} {:>9} {:>8} {:>8}".format(first, *HEAD[1:]))


def report(label: str, name: str, run: Run, lean: Run | None = None) -> None:
    times = sorted(run.times)
    median = statistics.median(times)
    p95 = times[max(0, math.ceil(len(times) * 0.95) - 1)]
    fires = sum(len(f) for f in run.fires) / len(times)
    changes = sum(run.changes) / len(times)
    ratio = f"{statistics.median(lean.times) / median:>7.1f}x" if lean else ""
    print(
        f"{label:>9} {name:>8} {median * 1e3:>9.2f} {p95 * 1e3:>9.2f} {len(times):>6}"
        f" {fires:>9.1f} {changes:>8.1f} {ratio:>8}"
    )


def check_same(label: str, runs: dict[str, Run]) -> None:
    """Every engine must fire the same rules on the ticks they share (the bench is fair)."""
    reference = runs["indexed"].fires
    for name, run in runs.items():
        shared = min(len(reference), len(run.fires))
        if run.fires[:shared] != reference[:shared]:
            print(f"  !! {label}: {name} fires differ from indexed")


def compare(label: str, rule_list: list[Rule], scale: float = 1.0) -> None:
    """All three engines over one book; `scale` shrinks the budgets of the slow ones."""
    runs = {
        "indexed": run_indexed(rule_list, 50, 10.0),
        "lean": run_lean(rule_list, 10, 6.0 * scale),
        "naive": run_naive(rule_list, 3, 6.0 * scale),
    }
    check_same(label, runs)
    for name, run in runs.items():
        report(label, name, run, runs["lean"] if name == "indexed" else None)


def levels() -> None:
    print("level rules (above/below 80-120, no options) by book size")
    header()
    for n in (1_000, 10_000, 100_000):
        rule_list = make_rules("level", n, n, with_options=False)
        compare(f"{n:,}", rule_list)


def kinds(names: list[str]) -> None:
    n = 100_000
    print(f"\n{n:,} rules of each kind (10% confirm 2, 10% cooldown 30m, 5% once)")
    header("kind")
    for i, kind in enumerate(names or KINDS):
        compare(kind, make_rules(kind, n, 100 + i))


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size in MB, from /proc."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def mixed() -> None:
    n = 1_000_000
    print(f"\n{n:,} rules, {n // len(KINDS):,} of each of the {len(KINDS)} kinds, with options")
    rule_list = mixed_rules(n)
    before, _ = rss_mb()
    indexed = run_indexed(rule_list, 30, 15.0)
    now, peak = rss_mb()
    print(
        f"book build {indexed.build:.1f} s; RSS {now:,.0f} MB after the indexed ticks"
        f" ({now - before:,.0f} MB over the rules themselves, peak {peak:,.0f} MB)"
    )
    header()
    runs = {"indexed": indexed, "lean": run_lean(rule_list, 3, 10.0)}
    runs["naive"] = run_naive(rule_list, 1, 1.0)
    check_same("1M", runs)
    for name, run in runs.items():
        report("1M", name, run, runs["lean"] if name == "indexed" else None)


def main() -> None:
    global STEP_SD
    args = sys.argv[1:]
    if args[:1] == ["--step"]:
        STEP_SD, args = float(args[1]) / 100, args[2:]
    print(
        f"python {sys.version.split()[0]}, one core, 50 symbols, synthetic random walk"
        f" ({STEP_SD * 100:g}% steps every 10 s), CPU time"
    )
    if not args or args[0] == "levels":
        levels()
    if not args or args[0] == "kinds":
        kinds(args[1:])
    if args and args[0] == "mixed":
        mixed()
    elif not args:
        sys.stdout.flush()
        step = ["--step", f"{STEP_SD * 100:g}"]
        subprocess.run([sys.executable, "-m", "bench.engine", *step, "mixed"], check=True)


if __name__ == "__main__":
    main()
