"""What tests share with the rest of the machine or of their process, made private to them.

The suite runs in several worker processes at once (`pytest -n auto`), beside other test runs
on the same machine: each process keeps its library caches to itself, each test gets its own
port, and a test that needs a warmed-up process says so instead of relying on which tests
happened to run before it in the same worker.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support import postgres
from support.local_server import held_port

from bot.charts import ChartSpec, Panel, Series, render


def pytest_configure(config: pytest.Config) -> None:
    """Send the caches the libraries keep on disk (yfinance's cookie and time-zone databases,
    matplotlib's font list and settings) to a folder of this process instead of the user's
    home: no two processes share one, and every run starts from empty caches, as CI does.
    Set before any test module imports those libraries (they read the location on import)."""
    caches = Path(tempfile.mkdtemp(prefix="tickerbell-test-caches-"))
    config.add_cleanup(lambda: shutil.rmtree(caches, ignore_errors=True))
    os.environ["XDG_CACHE_HOME"] = str(caches)
    os.environ["MPLCONFIGDIR"] = str(caches / "matplotlib")


KEPT = ("TICKERBELL_TEST_DATABASE_URL",)  # settings of the test run itself


@pytest.fixture(autouse=True)
def no_settings_from_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see none of the caller's Tickerbell, Telegram or Discord settings: a developer's
    exported TELEGRAM_BOT_TOKEN would otherwise reach the real Telegram from a test that builds
    `Settings()`, or from a process it starts. A test sets what it needs itself."""
    for name in list(os.environ):
        if name.startswith(("TICKERBELL_", "TELEGRAM_", "DISCORD_")) and name not in KEPT:
            monkeypatch.delenv(name)


@pytest.fixture
def unused_port() -> Iterator[int]:
    """A loopback port nobody listens on, held for the test so no other process is given it."""
    with held_port() as port:
        yield port


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The PostgreSQL server of TICKERBELL_TEST_DATABASE_URL; skips, saying how to enable the
    test, when it is not set or cannot be reached."""
    url, why = postgres.server_url()
    if url is None:
        pytest.skip(why)
    return url


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A URL of a new, empty schema on the test server, dropped after the test."""
    with postgres.throwaway_schema(postgres_server) as url:
        yield url


@pytest.fixture(scope="session")
def charts_warm() -> None:
    """Import matplotlib and draw one chart in this process (as the app warms its render pool
    at start), for a test that waits a bounded time for a chart from the default renderer.
    Cold, the first chart costs about a second of CPU (the import, and the font list built
    afresh in this process's cache): 3 to 10 s at a load of 10 on two cores."""
    day, next_day = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    render(ChartSpec("warm-up", (Panel((Series("X", points=((day, 1.0), (next_day, 2.0))),)),)))
