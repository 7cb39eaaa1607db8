"""PNG charts in memory: price (line, or candles for daily ranges), levels, fires.

matplotlib's object API on the Agg canvas (no display, no pyplot global state). A render takes
a tenth to half a second of CPU, so async code goes through `ChartCache.get`, which renders each
key once and shares it with everyone who asks meanwhile. Where it renders is the cache's
`render`: by default in a worker thread, one at a time (matplotlib is not thread-safe); the app
gives it a `RenderPool`, worker processes that keep matplotlib off the event loop's core.

Alert charts (`AlertCharts`) are one per (symbol, minute), shared by every alert of the symbol in
that minute, drawn with the levels of those alerts: one PNG cannot highlight each reader's own
level, and the caption already states it. A thousand distinct rules firing on four symbols
cost four renders, not a thousand.
"""

from __future__ import annotations

import asyncio
import ctypes
import io
import logging
import multiprocessing
import os
import signal
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

from alerts import rules
from alerts.indicators import Market
from alerts.models import Alert, Candle, Rule

if TYPE_CHECKING:  # matplotlib takes most of a second to import: only rendering needs it
    from matplotlib.axes import Axes

log = logging.getLogger(__name__)

WIDTH, HEIGHT, DPI = 12, 7, 100  # 1200 x 700 pixels: readable on a phone
BACKGROUND, PANEL, TEXT, GRID = "#1f2430", "#262c3a", "#e6e9ef", "#3b4252"
UP, DOWN, LINE, LEVEL, FIRE = "#26a69a", "#ef5350", "#4fc3f7", "#ffb300", "#ffffff"
SERIES_COLOURS = ("#ffd54f", "#b0bec5", "#ff9800", "#7986cb", "#4fc3f7", "#f06292")


@dataclass(frozen=True, slots=True)
class Level:
    """A horizontal line: a rule's level or baseline, with its label."""

    value: float
    label: str


@dataclass(frozen=True, slots=True)
class Series:
    """One named price path for a panel."""

    name: str
    points: tuple[tuple[datetime, float], ...] = ()
    candles: tuple[Candle, ...] = ()


@dataclass(frozen=True, slots=True)
class Panel:
    """One plot area: its series, level lines, fire markers and unit."""

    series: tuple[Series, ...]
    unit: str = "USD"
    levels: tuple[Level, ...] = ()
    fires: tuple[tuple[datetime, float], ...] = ()
    band: tuple[float, float] | None = None
    normalised: bool = False
    label: str = ""


@dataclass(frozen=True, slots=True)
class ChartSpec:
    """Everything a chart shows (panels stacked on one time axis); hashable for the cache."""

    title: str
    panels: tuple[Panel, ...]
    subtitle: str = "times in UTC"


def render(spec: ChartSpec) -> bytes:
    """Draw the chart and return PNG bytes (call it through ChartCache from async code)."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI, facecolor=BACKGROUND)
    axes = fig.subplots(len(spec.panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, panel in zip(axes, spec.panels, strict=True):
        _panel(ax, panel, small=len(spec.panels) > 1)
    locator = AutoDateLocator()  # type: ignore[no-untyped-call]  # matplotlib: untyped
    axes[-1].xaxis.set_major_locator(locator)
    axes[-1].xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    axes[-1].set_xlabel(spec.subtitle, color=TEXT, fontsize=13)
    axes[0].set_title(spec.title, color=TEXT, fontsize=20, loc="left", pad=14)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", facecolor=BACKGROUND)
    return out.getvalue()


def _panel(ax: Axes, panel: Panel, small: bool) -> None:
    ax.set_facecolor(PANEL)
    for i, series in enumerate(panel.series):
        colour = LINE if len(panel.series) == 1 else SERIES_COLOURS[i % len(SERIES_COLOURS)]
        if series.candles:
            _candles(ax, series.candles)
        elif series.points:
            xs, ys = zip(*series.points, strict=True)
            ax.plot(xs, ys, color=colour, linewidth=2.2, label=series.name)
    if panel.band is not None:
        ax.axhspan(*panel.band, color=LEVEL, alpha=0.12, linewidth=0)
    for level in panel.levels:
        ax.axhline(level.value, color=LEVEL, linestyle="--", linewidth=1.6)
        ax.annotate(
            f" {level.label}", (1, level.value), xycoords=("axes fraction", "data"),
            color=LEVEL, fontsize=13, va="bottom", ha="right",
        )  # fmt: skip
    if panel.fires:
        xs, ys = zip(*panel.fires, strict=True)
        ax.scatter(xs, ys, s=120 if small else 170, marker="v", color=FIRE, edgecolor=LEVEL,
                   zorder=5, label="alert")  # fmt: skip
    if len(panel.series) > 1 or panel.fires:
        ax.legend(loc="upper left", fontsize=12 if small else 13, facecolor=PANEL,
                  labelcolor=TEXT, edgecolor=GRID)  # fmt: skip
    unit = "start = 100" if panel.normalised else panel.unit
    ax.set_ylabel(f"{panel.label} {unit}".strip(), color=TEXT, fontsize=13 if small else 15)
    ax.tick_params(colors=TEXT, labelsize=12 if small else 13)
    ax.grid(color=GRID, linewidth=0.8)
    for side in ax.spines.values():
        side.set_color(GRID)


def _candles(ax: Axes, candles: Sequence[Candle]) -> None:
    """Daily candles as two collections (wicks, then thick bodies): one artist each, fast."""
    from matplotlib.dates import date2num

    xs = [date2num(c.day) for c in candles]  # type: ignore[no-untyped-call]
    colours = [UP if c.close >= c.open else DOWN for c in candles]
    ax.vlines(xs, [c.low for c in candles], [c.high for c in candles], colors=colours,
              linewidth=1.2)  # fmt: skip
    body = max(1.5, min(12.0, 520 / len(candles)))  # points: about 70% of a bar's width
    tops = [max(c.open, c.close) for c in candles]
    bottoms = [min(c.open, c.close) for c in candles]
    # a flat bar (open == close) still shows a sliver
    span = max(c.high for c in candles) - min(c.low for c in candles)
    tops = [
        t if t - b > span * 0.002 else b + span * 0.002 for t, b in zip(tops, bottoms, strict=True)
    ]
    ax.vlines(xs, bottoms, tops, colors=colours, linewidth=body)
    low = min(c.low for c in candles)
    ax.set_xlim(xs[0] - 1, xs[-1] + 1)
    ax.set_ylim(low - span * 0.04, low + span * 1.04)


Render = Callable[[ChartSpec], Awaitable[bytes]]


class InThread:
    """Renders in a worker thread, one at a time (matplotlib is not thread-safe). The default
    for a cache nobody gave a pool: commands in tests, the console."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    async def __call__(self, spec: ChartSpec) -> bytes:
        return await asyncio.to_thread(self._render, spec)

    def _render(self, spec: ChartSpec) -> bytes:
        with self._lock:
            return render(spec)


class RenderPool:
    """Renders in `workers` processes: matplotlib's CPU stays off the event loop (and out of
    its threads), and a worker that dies (out of memory) costs that chart, not the process.

    Workers are spawned, not forked: the service has threads (SQLite, yfinance) that a fork
    would copy mid-flight. Each imports matplotlib once; `start` does that ahead of the first
    alert. A broken pool is replaced on the next render.
    """

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> list[Future[None]]:
        """Spawn the workers and warm them (imports, fonts) in the background; the futures
        are done when they are warm."""
        pool = self._executor()
        return [pool.submit(_warm) for _ in range(self.workers)]

    async def __call__(self, spec: ChartSpec) -> bytes:
        pool = self._executor()
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, render, spec)
        except BrokenProcessPool:  # it has failed its other renders and stopped by itself
            if self._pool is pool:
                self._pool = None
            raise

    async def close(self) -> None:
        """Stop the workers: queued renders are dropped, one in progress ends on its own (a
        shutdown need not wait for it)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_die_with_parent,
                initargs=(os.getpid(),),
            )
        return self._pool


def _die_with_parent(parent: int) -> None:
    """Make this worker end when the process that spawned it ends, even by kill -9: Linux's
    PR_SET_PDEATHSIG. Without it a killed service leaves its workers running, and holding its
    pipes, for good. Elsewhere (no prctl) a worker is left to end on its own."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the signal was set up
        os._exit(0)


def _warm() -> None:
    """Import matplotlib and load its fonts in a worker (a tiny render)."""
    day = datetime(2000, 1, 1, tzinfo=UTC)
    render(ChartSpec("", (Panel((Series("", points=((day, 1.0), (day + timedelta(1), 2.0))),)),)))


@dataclass
class ChartCache:
    """Renders each key once, shares the PNG with everyone who asks for it while it renders,
    and remembers the last `size` PNGs (about 100 kB each). Keys change each minute
    (`minute_key`), so a chart is at most a minute old."""

    renderer: Render = field(default_factory=InThread)
    size: int = 64
    renders: int = 0
    hits: int = 0
    _done: OrderedDict[Hashable, bytes] = field(default_factory=OrderedDict)
    _pending: dict[Hashable, asyncio.Task[bytes]] = field(default_factory=dict)

    def has(self, key: Hashable) -> bool:
        """Whether `key` is rendered or rendering."""
        return key in self._done or key in self._pending

    def start(self, key: Hashable, spec: ChartSpec) -> None:
        """Begin rendering `key` now, unless it is done or under way; for whoever asks later."""
        if not self.has(key):
            self._begin(key, spec)

    async def get(self, key: Hashable, make: Callable[[], ChartSpec]) -> bytes:
        """The PNG for `key`, rendered from `make()` the first time it is asked for."""
        if self.has(key):
            return await self.wait(key)
        return await asyncio.shield(self._begin(key, make()))

    async def wait(self, key: Hashable) -> bytes:
        """The PNG of a key that is rendered or rendering (see `has`)."""
        self.hits += 1
        if key in self._done:
            self._done.move_to_end(key)
            return self._done[key]
        # shielded: one asker giving up (its wait timed out) must not cancel the others' chart
        return await asyncio.shield(self._pending[key])

    def _begin(self, key: Hashable, spec: ChartSpec) -> asyncio.Task[bytes]:
        self.renders += 1
        task = asyncio.create_task(self._render(key, spec), name=f"chart {key!r}"[:80])
        self._pending[key] = task
        task.add_done_callback(_retrieved)
        return task

    async def _render(self, key: Hashable, spec: ChartSpec) -> bytes:
        try:
            png = await self.renderer(spec)
        finally:
            self._pending.pop(key, None)
        self._done[key] = png
        while len(self._done) > self.size:
            self._done.popitem(last=False)
        return png


def _retrieved(task: asyncio.Task[bytes]) -> None:
    """Mark a failed render's error as seen: whoever waited for it has it (or gave up)."""
    if not task.cancelled():
        task.exception()


def minute_key(*parts: object, now: datetime) -> tuple[object, ...]:
    """A cache key that changes each minute: the same chart is reused within the minute."""
    return (*parts, now.replace(second=0, microsecond=0))


MAX_CANDLES = 200  # beyond this many bars a close line reads better than candles


def replay_spec(
    series: dict[str, list[Candle]], rule_list: Sequence[Rule], alerts: Sequence[Alert]
) -> ChartSpec:
    """The replayed history of each rule subject with its levels and every fire marked."""
    panels = []
    for subject in dict.fromkeys(rule.pair for rule in rule_list):
        subject_rules = [r for r in rule_list if r.pair == subject]
        first = subject_rules[0]
        if first.other is None:
            bars = tuple(series[first.symbol])
            drawn = (
                Series(subject, candles=bars)
                if len(bars) <= MAX_CANDLES
                else Series(subject, points=tuple((_noon(c.day), c.close) for c in bars))
            )
        else:
            other = {c.day: c.close for c in series[first.other]}
            ratio = tuple((_noon(c.day), c.close / other[c.day])
                          for c in series[first.symbol] if c.day in other)  # fmt: skip
            drawn = Series(f"{subject} ratio", points=ratio)
        levels = tuple(Level(r.value, rules.format(r)) for r in subject_rules if r.is_price_level)
        fires = tuple((a.time, a.price)
                      for a in alerts if a.symbol == subject)  # fmt: skip
        unit = "USD" if first.other is None else "ratio"
        panels.append(Panel((drawn,), unit=unit, levels=levels, fires=fires, label=subject))
    title = "replay: " + ", ".join(rules.format(r) for r in rule_list)
    return ChartSpec(title[:90], tuple(panels), subtitle="daily bars, UTC")


def _noon(day: date) -> datetime:
    return datetime.combine(day, time(12), tzinfo=UTC)


RANGES = {"1d": 1, "1w": 7, "1m": 30, "3m": 91, "1y": 365}
MIN_TICKS = 10  # fewer intraday points than this: draw daily candles instead


def price_spec(
    symbol: str,
    span: str,
    candles: Sequence[Candle],
    ticks: Sequence[tuple[datetime, float]],
    levels: Sequence[Level] = (),
    fires: Sequence[tuple[datetime, float]] = (),
    unit: str = "USD",
) -> ChartSpec | None:
    """A symbol over a range: a line of ticks for `1d`, else daily candles (or a close line)."""
    if span == "1d" and len(ticks) >= MIN_TICKS:
        series = Series(symbol, points=tuple(ticks))
    elif candles:
        bars = tuple(candles)
        series = (
            Series(symbol, candles=bars)
            if len(bars) <= MAX_CANDLES
            else Series(symbol, points=tuple((_noon(c.day), c.close) for c in bars))
        )
    else:
        return None
    panel = Panel((series,), unit=unit, levels=tuple(levels), fires=tuple(fires), label=symbol)
    return ChartSpec(f"{symbol} {span}", (panel,))


def rotation_spec(closes: dict[str, list[Candle]], title: str) -> ChartSpec | None:
    """Several symbols normalised to 100 at the start of the range, on one panel."""
    lines = []
    for symbol, bars in closes.items():
        if len(bars) >= 2:
            base = bars[0].close
            points = tuple((_noon(c.day), c.close / base * 100) for c in bars)
            lines.append(Series(symbol, points=points))
    if not lines:
        return None
    return ChartSpec(title, (Panel(tuple(lines), normalised=True),))


MAX_LEVELS = 6  # more levels on one chart: a shaded band from the lowest to the highest


class AlertCharts:
    """The chart that goes with an alert: its subject's recent path, the fired levels, the fire.

    One chart per (symbol, minute), shared by every alert of that symbol in that minute (the
    range, a day of ticks or three months of bars, follows from the symbol's data). `prepare`
    starts the renders for a batch of alerts at once, each with the levels of its alerts in the
    batch, so they draw while earlier messages go out; an alert nobody prepared gets its chart
    drawn with its own level when first asked for.
    """

    def __init__(
        self, market: Market, cache: ChartCache, currency: Callable[[str], str] = lambda s: "USD"
    ) -> None:
        self.market = market
        self.cache = cache
        self.currency = currency

    def prepare(self, alerts: Sequence[Alert]) -> None:
        """Start rendering the charts of these alerts (one per key), without waiting."""
        by_key: dict[Hashable, list[Alert]] = {}
        for alert in alerts:
            by_key.setdefault(self.key(alert), []).append(alert)
        for key, group in by_key.items():
            spec = self.spec(group)
            if spec is not None:
                self.cache.start(key, spec)

    async def for_alert(self, alert: Alert) -> bytes | None:
        """A PNG for the alert, or None when there is no price history to draw (pairs)."""
        key = self.key(alert)
        if self.cache.has(key):
            return await self.cache.wait(key)
        spec = self.spec([alert])
        if spec is None:
            return None
        return await self.cache.get(key, lambda: spec)

    @staticmethod
    def key(alert: Alert) -> Hashable:
        """The chart's cache key: its symbol and minute."""
        return minute_key("alert", alert.symbol, now=alert.time)

    def spec(self, alerts: Sequence[Alert]) -> ChartSpec | None:
        """The chart of alerts of one symbol and minute: a day of ticks (or 60 daily bars),
        their levels (a band past MAX_LEVELS) and fires."""
        first = alerts[0]
        history = self.market.history(first.symbol)
        since = first.time - timedelta(days=1)
        ticks = [(ts, price) for ts, price in history.ticks if ts >= since]
        candles = history.candles[-60:]
        span = "1d" if len(ticks) >= MIN_TICKS else "3m"
        priced: dict[float, str] = {}  # level -> its rule; a spread baseline is no price
        for alert in alerts:
            if not alert.condition.is_spread and alert.reference:
                priced.setdefault(alert.reference, alert.rule_text)
        band = None
        levels = [Level(value, text) for value, text in sorted(priced.items())]
        if len(levels) > MAX_LEVELS:
            band = (levels[0].value, levels[-1].value)
            levels = [Level(band[1], f"{len(levels)} alert levels")]
        fires = tuple(dict.fromkeys((a.time, a.price) for a in alerts))
        spec = price_spec(
            first.symbol, span, candles, ticks, levels, fires, self.currency(first.symbol)
        )
        if spec is None or band is None:
            return spec
        panel = replace(spec.panels[0], band=band)
        return replace(spec, panels=(panel,))
