"""For chart tests: a market with a synthetic day of prices, and a stand-in for the renderer.

The renderer is the far side of the chart pipeline (a worker process in the app): the stand-in
records every chart it is asked for, can be held back (a render that takes as long as the test
wants) and draws with the real `render`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from alerts.indicators import Market
from alerts.models import Candle, Quote
from bot.charts import ChartSpec, InThread

T1 = datetime(2026, 3, 2, 12, tzinfo=UTC)
PRICES = {"BTC": 84_000.0, "XAG": 50.0, "ETH": 3_000.0}  # synthetic


def synthetic_market() -> Market:
    """A day of 10-minute ticks up to T1 and 60 daily bars per symbol (made-up prices)."""
    market = Market()
    for symbol, price in PRICES.items():
        market.restore(
            [
                Quote(symbol, price * (1 + (i % 7 - 3) / 1000), T1 - timedelta(minutes=10 * i))
                for i in range(144, -1, -1)
            ]
        )
        day0 = T1.date() - timedelta(days=60)
        market.add_candles(
            symbol,
            [
                Candle(day0 + timedelta(days=d), price, price * 1.01, price * 0.99, price)
                for d in range(60)
            ],
        )
    return market


class StandInRenderer:
    """Records each chart asked for; draws it once `released` is set (at once by default)."""

    def __init__(self, held: bool = False) -> None:
        self.specs: list[ChartSpec] = []
        self.drawn = 0
        self.released = asyncio.Event()
        if not held:
            self.released.set()
        self._draw = InThread()

    async def __call__(self, spec: ChartSpec) -> bytes:
        self.specs.append(spec)
        await self.released.wait()
        png = await self._draw(spec)
        self.drawn += 1
        return png
