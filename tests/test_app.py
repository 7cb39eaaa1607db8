"""The composition root (`tickerbell.app.run`) as a whole: start-up, faults, shutdown.

Prices come from the fake Binance over real HTTP through the real ccxt feed; alerts go to the
console chat. Nothing of ours is replaced.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_exchange import FakeExchange, Fault
from support.waiting import until

from tickerbell import app
from tickerbell.settings import Settings


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


async def test_a_part_that_cannot_start_stops_every_part_already_started(
    tmp_path: Path, taken_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeExchange() as exchange:
        exchange.set_price("BTCUSDT", 86000.0, 86000.0)
        settings = Settings(
            db=tmp_path / "a.db",
            exchange_options={"binance": exchange.ccxt_options()},
            poll_crypto_seconds=0.1,
            metrics_port=taken_port,
        )
        status = await asyncio.wait_for(
            app.run(settings, once_rules=["BTC below 85000"]), timeout=20
        )
        assert status == 1
        assert [r.getMessage() for r in caplog.records if "cannot serve metrics" in r.getMessage()]
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert left == []  # no poll, delivery or scheduler task outlives the run
        seen = exchange.count()
        await asyncio.sleep(0.5)
        assert exchange.count() == seen  # nothing polls any more


async def test_a_hanging_venue_is_one_warning_not_one_per_poll(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with FakeExchange(hang_seconds=30) as exchange:
        exchange.set_price("BTCUSDT", 86000.0, 86000.0)
        settings = Settings(
            db=tmp_path / "b.db",
            exchange_options={"binance": exchange.ccxt_options(timeout_ms=1500)},
            poll_crypto_seconds=0.2,
        )
        stop = asyncio.Event()
        running = asyncio.create_task(app.run(settings, once_rules=["BTC below 85000"], stop=stop))
        try:
            await until(lambda: exchange.count("ticker/bookTicker") >= 1)
            exchange.inject(Fault.TIMEOUT)
            await until(lambda: _said(caplog, "feed down"), timeout=10)
            await asyncio.sleep(2.0)  # ten poll intervals into the outage
        finally:
            stop.set()
            assert await asyncio.wait_for(running, 20) == 0
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings if "skipped" in r.getMessage()] == []
    assert len([r for r in warnings if "feed down" in r.getMessage()]) == 1


def _said(caplog: pytest.LogCaptureFixture, needle: str) -> bool:
    return any(needle in record.getMessage() for record in caplog.records)
