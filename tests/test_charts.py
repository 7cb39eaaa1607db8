"""Charts: PNGs that decode at the promised size, differ with the data, and are cached."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, date, datetime, timedelta

from PIL import Image

from alerts import rules
from alerts.models import Alert, Candle, Direction
from bot.charts import ChartCache, ChartSpec, Level, Panel, Series, render, replay_spec

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
