"""Telegram webhook mode through the real `tickerbell.app.run`: the bot registers its webhook at
the fake Bot API, and updates are posted to its endpoint on 127.0.0.1 as Telegram posts them
(the fake's `post_update`, with the secret token the bot registered). A post without the right
secret, or that is not an update, is refused and runs nothing; stopping leaves the webhook set.
On PostgreSQL (given TICKERBELL_TEST_DATABASE_URL), two processes answer posts to either.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from fake_exchange import FakeExchange
from fake_telegram import FakeTelegram, Fault, plain
from support.local_server import held_port
from support.waiting import until
from test_telegram import TOKEN as RIG_TOKEN
from test_telegram import records, rig

from bot.telegram.adapter import UPDATES
from bot.telegram.webhook import MAX_BODY, Webhook, derived_secret
from storage.backend import open_store
from tickerbell import app
from tickerbell.settings import Settings

pytestmark = pytest.mark.slow

TOKEN = "123456789:AAF-fake_SECRET_webhook_token"
PUBLIC = "https://bot.example.com/telegram"  # what Telegram posts to (a proxy in front of us)
USER, FRIEND = 4242, 4343


class Bot:
    """One `tickerbell run` in webhook mode, listening on 127.0.0.1:port."""

    def __init__(self, telegram: FakeTelegram, port: int) -> None:
        self.telegram = telegram
        self.url = f"http://127.0.0.1:{port}/telegram"

    async def say(self, text: str, chat: int = USER) -> str:
        """Post a user's command as Telegram would; the bot's answer, as the user reads it."""
        before = len(self.telegram.texts(chat))
        assert await self.post(self.telegram.update(text, chat_id=chat)) == 200
        await until(lambda: len(self.telegram.texts(chat)) > before, timeout=15)
        return plain(self.telegram.texts(chat)[before])

    async def post(self, body: dict[str, Any] | bytes, secret: str | None = None) -> int:
        return await self.telegram.post_update(self.url, body, secret)


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(TOKEN) as fake:
        yield fake


@pytest.fixture
async def exchange() -> AsyncIterator[FakeExchange]:
    async with FakeExchange() as fake:
        fake.set_price("BTCUSDT", 86000.0, 86000.0)
        yield fake


@pytest.fixture
def port() -> Iterator[int]:
    with held_port() as number:
        yield number


def settings_for(
    telegram: FakeTelegram, exchange: FakeExchange, port: int, **more: Any
) -> Settings:
    return Settings(
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_BASE_URL=telegram.base_url,
        TELEGRAM_WEBHOOK_URL=PUBLIC,
        TELEGRAM_WEBHOOK_HOST="127.0.0.1",
        TELEGRAM_WEBHOOK_PORT=port,
        exchange_options={"binance": exchange.ccxt_options()},
        poll_crypto_seconds=0.2,
        **more,
    )


async def armed(settings: Settings) -> None:
    """Wait until the engine has seen each rule's price on the near side of its level (a
    crossing before that is none: a new rule's first look decides where it stands)."""
    async with open_store(settings.db, settings.database_url_value) as store:

        async def all_armed() -> bool:
            rules = await store.rules()
            return bool(rules) and all(r.state is not None and r.state.armed for r in rules)

        await until(all_armed, timeout=30)


@asynccontextmanager
async def running(settings: Settings, telegram: FakeTelegram) -> AsyncIterator[Bot]:
    """The bot, from start until its webhook is set, to a clean stop."""
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(settings, stop=stop))
    sets = telegram.count("setWebhook")
    try:
        await until(lambda: telegram.count("setWebhook") > sets or task.done(), 15)
        assert not task.done()
        yield Bot(telegram, settings.telegram_webhook_port)
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 20) == 0


async def test_commands_posted_to_the_webhook_are_answered_and_the_webhook_outlives_a_stop(
    tmp_path: Path, telegram: FakeTelegram, exchange: FakeExchange, port: int
) -> None:
    settings = settings_for(telegram, exchange, port, db=tmp_path / "w.db")
    async with running(settings, telegram) as bot:
        assert (await bot.say("/status BTC")).startswith("BTC\n86,000")
        assert await bot.say("/alert BTC below 85000") == "Alert #1 set: BTC below 85000"
        await armed(settings)
        exchange.set_price("BTCUSDT", 84000.0, 84000.0)
        await until(lambda: len(telegram.texts(USER)) > 2, timeout=15)
        assert plain(telegram.texts(USER)[2]).startswith("🔴▼ BTC fell below 85,000 (now 84,000)")
    assert telegram.webhook == {
        "url": PUBLIC,
        "secret_token": derived_secret(TOKEN),  # the same in every process with this token
        "allowed_updates": list(UPDATES),
    }
    assert telegram.count("getUpdates") == telegram.count("deleteWebhook") == 0
    assert TOKEN.split(":")[1] not in derived_secret(TOKEN)


async def test_posts_without_the_secret_or_not_updates_are_refused_and_run_nothing(
    tmp_path: Path,
    telegram: FakeTelegram,
    exchange: FakeExchange,
    port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = settings_for(
        telegram, exchange, port, db=tmp_path / "w.db", TELEGRAM_WEBHOOK_SECRET="s" * 32
    )
    async with running(settings, telegram) as bot:
        forged = telegram.update("/alert BTC below 1", chat_id=USER)
        assert await bot.post(forged, secret="") == 403
        assert await bot.post(forged, secret="t" * 32) == 403
        assert await bot.post(forged, secret="s" * 31) == 403
        assert await bot.post(b"{not json", secret="s" * 32) == 400
        assert await bot.post(b"\xff\xfe", secret="s" * 32) == 400
        assert await bot.post(b"[1, 2]", secret="s" * 32) == 400
        assert await bot.post(b'{"update_id": 7, "message": 5}', secret="s" * 32) == 400
        assert await bot.post(b" " * (MAX_BODY + 1), secret="s" * 32) == 413
        # A post from the same chat after them: the first thing it sees is its own answer.
        assert await bot.say("/alerts") == "No alerts yet. Add one, e.g. /alert XAG above 50"
    assert telegram.webhook is not None and telegram.webhook["secret_token"] == "s" * 32
    assert [m for m in telegram.messages if m.chat_id != USER] == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert "refused 1 webhook post(s) without the right secret token" in caplog.text
    assert "s" * 32 not in caplog.text


async def test_the_webhook_is_set_once_telegram_answers_and_the_port_once_it_is_free(
    tmp_path: Path,
    telegram: FakeTelegram,
    exchange: FakeExchange,
    caplog: pytest.LogCaptureFixture,
) -> None:
    telegram.fail_method("setWebhook", Fault.BAD_GATEWAY, times=3)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = settings_for(telegram, exchange, port, db=tmp_path / "w.db")
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(settings, stop=stop))
        try:
            await until(
                lambda: (
                    f"cannot take webhook posts on TELEGRAM_WEBHOOK_PORT={port} " in caplog.text
                ),
                15,
            )
            taken.close()  # the port comes free (an old process ended)
            await until(lambda: telegram.webhook is not None, timeout=30)
            bot = Bot(telegram, port)
            assert await bot.say("/alerts") == "No alerts yet. Add one, e.g. /alert XAG above 50"
        finally:
            stop.set()
            assert await asyncio.wait_for(task, 20) == 0
    said = [r.getMessage() for r in caplog.records if r.name == "bot.telegram.adapter"]
    assert sum("cannot take webhook posts" in line for line in said) == 1
    assert sum("cannot set the webhook" in line for line in said) == 1  # once per outage
    assert not [r for r in caplog.records if r.exc_info]


async def test_telegram_failing_to_post_is_logged_once_and_a_deleted_webhook_is_set_again(
    tmp_path: Path, port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.telegram.adapter")
    webhook = Webhook(PUBLIC, "127.0.0.1", port)
    reason = "SSL error {error:0A000086:SSL routines::certificate verify failed}"
    async with (
        FakeTelegram(RIG_TOKEN) as telegram,
        rig(tmp_path / "r.db", telegram, webhook=webhook, webhook_check_seconds=0.05),
    ):
        telegram.webhook_failure = reason  # say, the proxy's certificate expired
        checks = telegram.count("getWebhookInfo")
        await until(lambda: telegram.count("getWebhookInfo") >= checks + 5)
        telegram.webhook_failure = None
        await until(lambda: "Telegram delivers updates to the webhook again" in caplog.text)
        telegram.webhook = None  # deleted, by a process polling with this token
        await until(lambda: telegram.webhook is not None)
        assert await Bot(telegram, port).say("/alerts") == (
            "No alerts yet. Add one, e.g. /alert XAG above 50"
        )
    assert records(caplog, logging.WARNING) == [
        f"telegram: Telegram cannot deliver updates to {PUBLIC}: {reason}",
        f"telegram: the webhook is deleted, not {PUBLIC} (a process polling with this token?); "
        "setting it again",
    ]


async def test_back_to_polling_the_webhook_is_deleted_and_commands_come_by_getupdates(
    tmp_path: Path, telegram: FakeTelegram, exchange: FakeExchange, port: int
) -> None:
    webhook = settings_for(telegram, exchange, port, db=tmp_path / "w.db")
    async with running(webhook, telegram) as bot:
        assert await bot.say("/alert BTC below 85000") == "Alert #1 set: BTC below 85000"
    polling = webhook.model_copy(update={"telegram_webhook_url": ""})
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(polling, stop=stop))
    try:
        await until(lambda: telegram.webhook is None and telegram.count("getUpdates") > 0, 15)
        telegram.push("/alerts", chat_id=USER)
        await until(lambda: len(telegram.texts(USER)) > 1, timeout=15)
        assert plain(telegram.texts(USER)[1]).startswith("1 alert\n#1  BTC below 85000")
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 20) == 0


async def test_on_postgresql_two_processes_answer_posts_to_either(
    tmp_path: Path, telegram: FakeTelegram, exchange: FakeExchange, postgres_url: str
) -> None:
    with held_port() as one, held_port() as two:
        settings = [
            settings_for(
                telegram, exchange, port, db=tmp_path / f"{port}.db", database_url=postgres_url
            )
            for port in (one, two)
        ]
        async with (
            running(settings[0], telegram) as first,
            running(settings[1], telegram) as second,
        ):
            assert await first.say("/alert BTC below 85000") == "Alert #1 set: BTC below 85000"
            assert (await second.say("/alerts")).startswith("1 alert\n#1  BTC below 85000")
            assert await second.say("/alert BTC above 90000", FRIEND) == (
                "Alert #2 set: BTC above 90000"
            )
            assert (await first.say("/alerts", FRIEND)).startswith("1 alert\n#2  BTC above")
            await armed(settings[0])
            exchange.set_price("BTCUSDT", 84000.0, 84000.0)
            await until(lambda: len(telegram.texts(USER)) > 2, timeout=30)
    [told] = telegram.texts(USER)[2:]  # once, though both processes run
    assert plain(told).startswith("🔴▼ BTC fell below 85,000 (now 84,000)")
    assert not any(tmp_path.glob("*.db"))  # nothing went to SQLite
