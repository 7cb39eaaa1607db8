"""The composition root (`tickerbell.app.run`) as a whole: start-up, faults, shutdown.

Prices come from the fake Binance over real HTTP through the real ccxt feed; alerts go to the
console chat. Nothing of ours is replaced.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fake_exchange import FakeExchange, Fault
from fake_telegram import FakeTelegram
from fake_telegram import Fault as TelegramFault
from support.postgres import end_lease_session, lease_sessions
from support.scripted import an_alert, enqueue
from support.waiting import until

from storage.db import Store
from tickerbell import app
from tickerbell.settings import Settings

pytestmark = pytest.mark.slow


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


async def test_a_database_server_that_does_not_answer_stops_the_start_with_one_line(
    tmp_path: Path, unused_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"postgresql://bot:pw-secret@127.0.0.1:{unused_port}/tb"
    settings = Settings(db=tmp_path / "a.db", database_url=url)
    assert await asyncio.wait_for(app.run(settings), timeout=30) == 1
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert line.startswith("cannot open the database: cannot connect to postgresql://bot:***@")
    assert "pw-secret" not in caplog.text


async def test_a_file_that_is_not_a_database_stops_the_start_with_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "notes.txt"
    db.write_text("my notes, not a database\n")
    assert await asyncio.wait_for(app.run(Settings(db=db)), timeout=30) == 1
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert line == f"cannot open the database: cannot open {db}: file is not a database"
    assert db.read_text() == "my notes, not a database\n"


def lease_holders(url: str, role: str = app.ENGINE) -> int:
    """How many sessions hold the installation's lease of a role (0 or 1)."""
    return len(lease_sessions(url, role))


async def test_on_postgresql_a_replica_that_loses_the_engine_lease_stops_it_and_takes_it_again(
    tmp_path: Path, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Its lease's connection gone, another replica may run the engine: this one stops the
    engine at once, then tries again; nobody else holds the lease here, so it takes it again."""
    async with FakeExchange() as exchange:
        exchange.set_price("BTCUSDT", 86000.0, 86000.0)
        settings = Settings(
            db=tmp_path / "a.db",
            database_url=postgres_url,
            exchange_options={"binance": exchange.ccxt_options()},
            poll_crypto_seconds=0.1,
        )
        stop = asyncio.Event()
        running = asyncio.create_task(app.run(settings, once_rules=["BTC below 85000"], stop=stop))
        await until(lambda: lease_holders(postgres_url) == 1, timeout=15)
        await until(lambda: exchange.count("ticker/bookTicker") > 0, timeout=15)
        end_lease_session(postgres_url, app.ENGINE)
        await until(lambda: "engine: lost its lease" in caplog.text, timeout=15)
        await until(lambda: lease_holders(postgres_url) == 1, timeout=15)  # taken again
        polls = exchange.count("ticker/bookTicker")
        await until(lambda: exchange.count("ticker/bookTicker") > polls, timeout=15)
        stop.set()
        assert await asyncio.wait_for(running, 20) == 0


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


async def test_health_says_when_the_telegram_command_side_is_down(
    tmp_path: Path, unused_port: int
) -> None:
    token = "123456789:AAF-fake_SECRET_health_token"
    port = unused_port
    async with FakeExchange() as exchange, FakeTelegram(token, poll_cap=0.2) as telegram:
        exchange.set_price("BTCUSDT", 86000.0, 86000.0)
        settings = Settings(
            TELEGRAM_BOT_TOKEN=token,
            TELEGRAM_API_BASE_URL=telegram.base_url,
            db=tmp_path / "c.db",
            exchange_options={"binance": exchange.ccxt_options()},
            poll_crypto_seconds=0.2,
            metrics_port=port,
        )
        stop = asyncio.Event()
        running = asyncio.create_task(app.run(settings, once_rules=["BTC below 85000"], stop=stop))
        url = f"http://127.0.0.1:{port}/healthz"

        health = functools.partial(_healthz, url)

        try:
            await until(lambda: _is(health, 200), timeout=15)
            telegram.fail_method("getUpdates", TelegramFault.UNAUTHORIZED, times=None)
            await until(lambda: _is(health, 503), timeout=15)
            assert (await health())[1] == "telegram is not receiving commands\n"
            telegram.heal()
            await until(lambda: _is(health, 200), timeout=15)
            before = len(telegram.texts(4242))
            telegram.push("/help", chat_id=4242)  # and commands are answered again
            await until(lambda: len(telegram.texts(4242)) > before, timeout=15)
        finally:
            stop.set()
            assert await asyncio.wait_for(running, 20) == 0


async def test_on_postgresql_healthz_says_which_roles_a_replica_holds(
    tmp_path: Path, postgres_url: str, unused_port: int
) -> None:
    async with FakeExchange() as exchange:
        exchange.set_price("BTCUSDT", 86000.0, 86000.0)

        def settings(db: str, metrics_port: int = 0) -> Settings:
            return Settings(
                db=tmp_path / db,
                database_url=postgres_url,
                exchange_options={"binance": exchange.ccxt_options()},
                poll_crypto_seconds=0.2,
                metrics_port=metrics_port,
            )

        first_stop, second_stop = asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(app.run(settings("1.db"), stop=first_stop))
        await until(lambda: lease_holders(postgres_url) == 1, timeout=15)
        second = asyncio.create_task(
            app.run(settings("2.db", unused_port), once_rules=["BTC below 85000"], stop=second_stop)
        )
        url = f"http://127.0.0.1:{unused_port}/healthz"

        health = functools.partial(_healthz, url)

        try:
            await until(lambda: _is(health, 200), timeout=15)
            assert (await health())[1] == "ok\nroles here: none\nstanding by for: engine\n"
            first_stop.set()
            assert await asyncio.wait_for(first, 20) == 0
            # the engine's, once prices flow
            await until(lambda: _answers(health, "ok\nroles here: engine\n"), timeout=30)
        finally:
            first_stop.set()
            second_stop.set()
            assert await asyncio.wait_for(second, 20) == 0


async def _healthz(url: str) -> tuple[int, str]:
    """/healthz's status and body; (0, "") while nothing answers."""
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return response.status, await response.text()
    except aiohttp.ClientError:
        return 0, ""


async def _answers(health: Callable[[], Awaitable[tuple[int, str]]], text: str) -> bool:
    return (await health())[1] == text


async def _is(health: Callable[[], Awaitable[tuple[int, str]]], status: int) -> bool:
    return (await health())[0] == status


async def test_start_tells_the_first_price_and_prunes_old_finished_alerts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    db = tmp_path / "d.db"
    long_ago = datetime.now(UTC) - timedelta(days=120)
    async with Store.open(db, clock=lambda: long_ago) as store:  # a run four months ago
        console = await store.chat("console", "console")
        await enqueue(store, console, an_alert())
        [row] = await store.pending()
        await store.mark_delivered(row.id, None)
    async with FakeExchange() as exchange:
        exchange.set_price("BTCUSDT", 86000.0, 86000.0)
        settings = Settings(
            db=db,
            exchange_options={"binance": exchange.ccxt_options()},
            poll_crypto_seconds=0.2,
            outbox_retention_days=90,
        )
        stop = asyncio.Event()
        running = asyncio.create_task(app.run(settings, once_rules=["BTC below 85000"], stop=stop))
        try:
            await until(lambda: _said(caplog, "BTC 86,000 from binance"), timeout=15)
            await until(lambda: _said(caplog, "pruned 1 finished alerts"), timeout=15)
        finally:
            stop.set()
            assert await asyncio.wait_for(running, 20) == 0
    async with Store.open(db) as store:
        assert await store.outbox_counts() == {}


async def test_the_consoles_webhooks_are_the_ones_the_settings_list(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """TICKERBELL_WEBHOOKS makes the console's webhooks (a refused one is logged and left
    out, an earlier one no longer listed is removed), and the console's alerts reach them."""
    from aiohttp import web
    from support.local_server import serve_locally

    posted: list[bytes] = []

    async def receive(request: web.Request) -> web.Response:
        posted.append(await request.read())
        return web.Response()

    receiver = web.Application()
    receiver.router.add_post("/hook", receive)
    runner, port = await serve_locally(receiver)
    db = tmp_path / "w.db"
    async with Store.open(db) as store:
        console = await store.chat("console", "console")
        await store.add_webhook(console.id, "https://old.example/hook", "s" * 16)
        await enqueue(store, console, an_alert())  # decided before the webhook was set
    try:
        async with FakeExchange() as exchange:
            settings = Settings(
                db=db,
                exchange_options={"binance": exchange.ccxt_options()},
                webhooks=f"http://127.0.0.1:{port}/hook, http://10.0.0.1/hook",
                webhook_secret="0123456789abcdef",
                webhook_allow_networks="127.0.0.1",
            )
            stop = asyncio.Event()
            running = asyncio.create_task(app.run(settings, stop=stop))
            try:
                await until(lambda: "ALERT" in capsys.readouterr().out, timeout=15)
                async with Store.open(db) as store:  # as `tickerbell alert` writes beside it
                    console = await store.chat("console", "console")
                    await enqueue(store, console, an_alert(price=83_000.0))
                await until(lambda: posted, timeout=15)
            finally:
                stop.set()
                assert await asyncio.wait_for(running, 20) == 0
    finally:
        await runner.cleanup()
    assert _said(caplog, "leaving out http://10.0.0.1/…: 10.0.0.1 is a private")
    async with Store.open(db) as store:
        [hook] = await store.webhooks()
        assert hook.url == f"http://127.0.0.1:{port}/hook" and hook.secret == "0123456789abcdef"
    assert len(posted) == 1 and b'"price":83000.0' in posted[0]  # the alert decided after


async def test_a_taken_inbound_port_stops_the_run_with_one_line(
    tmp_path: Path, taken_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeExchange() as exchange:
        settings = Settings(
            db=tmp_path / "i.db",
            exchange_options={"binance": exchange.ccxt_options()},
            webhook_port=taken_port,
            webhook_host="127.0.0.1",
        )
        assert await asyncio.wait_for(app.run(settings), timeout=20) == 1
    assert _said(caplog, "cannot take TradingView posts on 127.0.0.1:")


async def test_on_postgresql_a_killed_runs_rules_go_and_a_live_runs_stay(
    tmp_path: Path, postgres_url: str
) -> None:
    """`run --rule` rules belong to their run: a replica starting removes those of a run that
    is gone (its lease is free), keeps those of a run that lives, and its own go when it stops."""
    from storage.postgres import Lease, PostgresStore

    async with PostgresStore.open(postgres_url) as store:
        console = await store.chat(*app.CONSOLE)
        await store.add_rule(console.id, "BTC below 1000", "run:gone", limit=50)
        await store.add_rule(console.id, "BTC below 2000", "run:alive", limit=50)
        alive = Lease(postgres_url, "run:alive")
        assert await alive.take()
        try:
            async with FakeExchange() as exchange:
                settings = Settings(
                    db=tmp_path / "r.db",
                    database_url=postgres_url,
                    exchange_options={"binance": exchange.ccxt_options()},
                )
                stop = asyncio.Event()
                running = asyncio.create_task(
                    app.run(settings, once_rules=["BTC below 3000"], stop=stop)
                )
                texts = lambda: store.rules(console.id)  # noqa: E731
                await until(lambda: _texts(texts, {"BTC below 2000", "BTC below 3000"}), 30)
                stop.set()
                assert await asyncio.wait_for(running, 20) == 0
            assert [r.text for r in await store.rules(console.id)] == ["BTC below 2000"]
        finally:
            await alive.close()


async def _texts(rules: Callable[[], Awaitable[list[Any]]], wanted: set[str]) -> bool:
    return {r.text for r in await rules()} == wanted
