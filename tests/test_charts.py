"""Charts: PNGs that decode at the promised size, differ with the data, and are cached; alert
charts shared per symbol and minute; rendering in a worker process."""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import os
import signal
import sys
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image
from support.charts import PRICES, T1, StandInRenderer, synthetic_market
from support.scripted import an_alert
from support.waiting import until

from alerts import rules
from alerts.models import Alert, Candle, Direction
from bot.charts import (
    AlertCharts,
    ChartCache,
    ChartSpec,
    Level,
    Panel,
    RenderPool,
    Series,
    render,
    replay_spec,
)

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def line(prices: list[float]) -> ChartSpec:
    """A synthetic intraday line (made-up prices)."""
    points = tuple((T0 + timedelta(minutes=15 * i), p) for i, p in enumerate(prices))
    return ChartSpec("XAG 1d", (Panel((Series("XAG", points=points),), levels=(Level(50, "50"),)),))


def test_png_decodes_at_the_phone_size() -> None:
    image = Image.open(io.BytesIO(render(line([49, 49.5, 50.2, 50.1]))))
    assert image.format == "PNG" and image.size == (1200, 700)


def test_different_data_gives_a_different_picture() -> None:
    assert render(line([49, 49.5, 50.2])) != render(line([49, 48.5, 48.2]))


def test_candles_ratio_and_fires_in_a_replay_chart() -> None:
    day0 = date(2026, 1, 1)
    silver = [Candle(day0 + timedelta(days=i), 48 + i, 49 + i, 47 + i, 48.5 + i) for i in range(5)]
    gold = [Candle(day0 + timedelta(days=i), 4000, 4010, 3990, 4000) for i in range(5)]
    fire = Alert("XAG above 50", rules.parse("XAG above 50"), Direction.UP, 50.5, 50, 50.5,
                 datetime(2026, 1, 3, 16, tzinfo=UTC))  # fmt: skip
    spec = replay_spec(
        {"XAG": silver, "XAU": gold},
        [rules.parse("XAG above 50"), rules.parse("XAU/XAG below 80")],
        [fire],
    )
    assert [p.label for p in spec.panels] == ["XAG", "XAU/XAG"]
    assert spec.panels[0].fires == ((fire.time, 50.5),)
    assert spec.panels[1].unit == "ratio"
    assert Image.open(io.BytesIO(render(spec))).size == (1200, 700)


async def test_cache_renders_once_for_many_concurrent_askers() -> None:
    cache = ChartCache()
    spec = line([49, 50.5])
    pngs = await asyncio.gather(*(cache.get(("XAG", "1d", T0), lambda: spec) for _ in range(50)))
    assert cache.renders == 1 and cache.hits == 49
    assert len(set(pngs)) == 1
    await cache.get(("XAG", "1d", T0 + timedelta(minutes=1)), lambda: spec)
    assert cache.renders == 2


def fired(symbol: str, level: float, minute: int = 0) -> Alert:
    """A synthetic alert of `symbol above level` at T1 plus `minute` minutes (made-up price)."""
    return an_alert(
        f"{symbol} above {level}",
        direction=Direction.UP,
        price=PRICES[symbol],
        reference=level,
        observed=PRICES[symbol],
        time=T1 + timedelta(minutes=minute, seconds=5),
    )


async def test_alert_charts_are_one_per_symbol_and_minute_with_the_fired_levels() -> None:
    renderer = StandInRenderer()
    charts = AlertCharts(synthetic_market(), ChartCache(renderer))
    btc = [fired("BTC", 83_000 + i) for i in range(20)]  # 20 distinct rules
    xag = [fired("XAG", 49), fired("XAG", 49.5)]
    charts.prepare(btc + xag)
    pngs = await asyncio.gather(*(charts.for_alert(a) for a in btc + xag))
    assert charts.cache.renders == 2 and len(renderer.specs) == 2
    assert len(set(pngs[:20])) == 1 and pngs[20] == pngs[21] != pngs[0]
    by_title = {spec.title: spec.panels[0] for spec in renderer.specs}
    assert [(lv.value, lv.label) for lv in by_title["XAG 1d"].levels] == [
        (49, "XAG above 49"),
        (49.5, "XAG above 49.5"),
    ]
    many = by_title["BTC 1d"]  # past MAX_LEVELS: one band from the lowest to the highest
    assert many.band == (83_000, 83_019)
    assert [lv.label for lv in many.levels] == ["20 alert levels"]
    assert len(many.fires) == 1  # one tick: one fire marker
    await charts.for_alert(fired("BTC", 83_500, minute=1))  # the next minute: a new chart
    assert charts.cache.renders == 3
    assert [lv.label for lv in renderer.specs[-1].panels[0].levels] == ["BTC above 83500"]


async def test_an_alert_nobody_prepared_gets_a_chart_with_its_own_level() -> None:
    renderer = StandInRenderer()
    charts = AlertCharts(synthetic_market(), ChartCache(renderer))
    png = await charts.for_alert(fired("ETH", 2_990))
    assert png is not None and png.startswith(b"\x89PNG")
    [spec] = renderer.specs
    assert [lv.label for lv in spec.panels[0].levels] == ["ETH above 2990"]
    ratio = an_alert("XAU/XAG above 80", price=81.0, reference=80.0, observed=81.0, time=T1)
    assert await charts.for_alert(ratio) is None  # no history of the ratio


async def test_a_failed_render_reaches_its_askers_and_the_next_ask_tries_again() -> None:
    attempts = []

    async def failing_once(spec: ChartSpec) -> bytes:
        attempts.append(spec)
        if len(attempts) == 1:
            raise RuntimeError("worker died")
        return render(spec)

    cache = ChartCache(failing_once)
    spec = line([49, 50.5])
    results = await asyncio.gather(
        *(cache.get(("XAG", T0), lambda: spec) for _ in range(3)), return_exceptions=True
    )
    assert [type(r) for r in results] == [RuntimeError] * 3
    assert (await cache.get(("XAG", T0), lambda: spec)).startswith(b"\x89PNG")
    assert len(attempts) == 2


async def test_the_render_pool_draws_in_a_worker_process() -> None:
    pool = RenderPool(workers=1)
    cache = ChartCache(pool)
    try:
        spec = line([49, 49.5, 50.2, 50.1])
        pngs = await asyncio.gather(*(cache.get(("XAG", T0), lambda: spec) for _ in range(5)))
        assert cache.renders == 1 and len(set(pngs)) == 1
        assert Image.open(io.BytesIO(pngs[0])).size == (1200, 700)
        assert pngs[0] == render(spec)  # the same picture as drawn here
    finally:
        await pool.close()


async def test_a_killed_worker_costs_its_chart_and_the_next_render_gets_a_new_one() -> None:
    pool = RenderPool(workers=1)
    spec = line([49, 49.5, 50.2])
    try:
        assert (await pool(spec)).startswith(b"\x89PNG")
        for worker in multiprocessing.active_children():  # out of memory, say
            worker.kill()
            worker.join()
        with pytest.raises(BrokenProcessPool):
            await pool(spec)
        assert (await pool(spec)).startswith(b"\x89PNG")
    finally:
        await pool.close()


KILLED_PARENT = """
import asyncio, multiprocessing, pathlib, sys
from bot.charts import RenderPool

async def main():
    pool = RenderPool(workers=1)
    await asyncio.gather(*(asyncio.wrap_future(f) for f in pool.start()))
    pids = " ".join(str(child.pid) for child in multiprocessing.active_children())
    pathlib.Path(sys.argv[1]).write_text(pids)
    await asyncio.sleep(600)

asyncio.run(main())
"""


@pytest.mark.skipif(sys.platform != "linux", reason="workers follow their parent on Linux only")
async def test_chart_workers_end_when_the_service_is_killed(tmp_path: Path) -> None:
    """kill -9 of the service leaves no chart worker behind (it would hold the service's
    pipes and memory for good)."""
    written = tmp_path / "workers"
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILLED_PARENT, str(written),
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    await until(lambda: written.exists() and written.read_text(), timeout=120)
    workers = [int(pid) for pid in written.read_text().split()]
    parent.kill()
    await parent.wait()
    try:
        await until(lambda: not any(_running(pid) for pid in workers), timeout=30)
    finally:
        for pid in filter(_running, workers):  # should the check have failed
            os.kill(pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    """Whether the process runs (a zombie waiting for a reaper has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
