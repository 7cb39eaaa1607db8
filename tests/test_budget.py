"""The shared send budget (bot.budget) on PostgreSQL: processes sending for one bot through the
real Telegram and Discord adapters, against the fake Bot API and the fake Discord, take their
slots from one grid in the database; a database that does not answer leaves each process pacing
itself. That the grid keeps the rate over any second is in test_postgres.py (counted on the
slots granted). Skips without TICKERBELL_TEST_DATABASE_URL (tests/support/postgres.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from fake_discord import FakeDiscord
from fake_telegram import FakeTelegram
from fake_telegram import Limits as FloodLimits
from support.postgres import Relay
from support.scripted import an_alert
from support.waiting import until

from alerts.sanity import Limits
from bot.budget import SharedBudget
from bot.commands import Commands
from bot.discord.adapter import HEADROOM, PER_SECOND, DiscordBot
from bot.telegram.adapter import TelegramBot
from bot.telegram.pacing import Rates, SendLimiter
from feeds.base import Feed
from feeds.catalogue import Catalogue
from storage.postgres import PostgresStore
from tickerbell import app
from tickerbell.market_data import MarketData
from tickerbell.settings import Settings

TOKEN = "123456789:AAF-fake_SECRET_budget_token"
DISCORD_TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GfakeX.fake_SECRET_budget_signature"
FIRST_CHAT = 500_000
CHANNEL = 7_770_001

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


def server_now(url: str) -> datetime:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def next_slot(url: str, name: str) -> datetime | None:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT next_slot FROM send_budgets WHERE name = %s", (name,)).fetchone()
    return None if row is None else row[0]  # type: ignore[no-any-return]


def no_feed(source: str) -> Feed:
    raise AssertionError("these tests ask for no price")


def no_prices(store: PostgresStore) -> Commands:
    """The command layer the adapters need; these tests only send."""
    return Commands(store, MarketData(Catalogue(), no_feed, Limits()))


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(TOKEN, poll_cap=0.2, limits=FloodLimits()) as fake:
        yield fake


async def test_processes_sending_for_one_telegram_bot_take_slots_of_one_grid(
    postgres_url: str, telegram: FakeTelegram
) -> None:
    """Two processes (each its own store and bot) send 30 alerts at once: every send of both
    took a slot of the one grid (the grid moved on by at least 30 slots), and each alert
    arrived once."""
    sends = 30
    async with PostgresStore.open(postgres_url) as one, PostgresStore.open(postgres_url) as two:
        chats = await one.import_chats(
            "telegram", [str(FIRST_CHAT + i) for i in range(sends)], "private"
        )
        bots = [
            TelegramBot(
                token=TOKEN,
                base_url=telegram.base_url,
                commands=no_prices(store),
                store=store,
                budgets=store,
                rates=Rates(),
            )
            for store in (one, two)
        ]
        try:
            for bot in bots:
                await bot.start()
                await until(bot.listening)
            started = server_now(postgres_url)
            await asyncio.gather(
                *(bots[i % 2].send(chat, an_alert()) for i, chat in enumerate(chats))
            )
        finally:
            for bot in bots:
                await bot.close()
    interval = 1 / (Rates().overall_per_second * SendLimiter.HEADROOM)
    booked_until = next_slot(postgres_url, "telegram")
    assert booked_until is not None
    assert booked_until - started >= timedelta(seconds=sends * interval)
    assert sorted(m.chat_id for m in telegram.messages) == [FIRST_CHAT + i for i in range(sends)]


async def test_processes_posting_for_one_discord_bot_take_slots_of_one_grid(
    postgres_url: str,
) -> None:
    posts = 6
    async with (
        FakeDiscord(DISCORD_TOKEN) as fake,
        PostgresStore.open(postgres_url) as one,
        PostgresStore.open(postgres_url) as two,
    ):
        with fake.pointed_at():
            chat = await one.chat("discord", str(CHANNEL), "guild")
            bots = [
                DiscordBot(
                    token=DISCORD_TOKEN,
                    commands=no_prices(store),
                    store=store,
                    gateway=False,
                    budgets=store,
                )
                for store in (one, two)
            ]
            try:
                for bot in bots:
                    await bot.start()
                started = server_now(postgres_url)
                await asyncio.gather(*(bots[i % 2].send(chat, an_alert()) for i in range(posts)))
            finally:
                for bot in bots:
                    await bot.close()
            assert len(fake.posted(CHANNEL)) == posts
    booked_until = next_slot(postgres_url, "discord")
    assert booked_until is not None
    assert booked_until - started >= timedelta(seconds=posts / (PER_SECOND * HEADROOM))


async def test_without_the_database_a_process_paces_itself_until_it_answers(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Sends never wait on a database that is away: slots come from a local grid meanwhile,
    said once in the log; once it is back, slots are booked in it again."""
    caplog.set_level(logging.INFO, logger="bot.budget")
    async with Relay(postgres_url) as relay, PostgresStore.open(relay.url, timeout=0.5) as store:
        budget = SharedBudget(store, "telegram", 0.01, store_seconds=1.0, retry_seconds=0.05)
        try:
            await budget.slot()
            booked = next_slot(postgres_url, "telegram")
            assert booked is not None
            await relay.cut()
            for _ in range(5):
                await budget.slot()
            assert next_slot(postgres_url, "telegram") == booked
            await relay.restore()

            async def shared_again() -> bool:
                await budget.slot()
                return next_slot(postgres_url, "telegram") != booked

            await until(shared_again, timeout=30)  # the pool reconnects with backoff
        finally:
            await budget.close()
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "bot.budget"]
    assert [level for level, _ in said] == [logging.WARNING, logging.INFO]
    assert "paces itself at the full rate" in said[0][1]
    assert "sharing the send rate through the database again" in said[1][1]


async def test_a_send_that_gives_up_waiting_holds_up_no_other(postgres_url: str) -> None:
    async with PostgresStore.open(postgres_url) as store:
        budget = SharedBudget(store, "telegram", 0.01)
        try:
            waiting = [asyncio.create_task(budget.slot()) for _ in range(8)]
            waiting[1].cancel()
            waiting[5].cancel()
            done = await asyncio.gather(*waiting, return_exceptions=True)
        finally:
            await budget.close()
    assert [isinstance(d, asyncio.CancelledError) for d in done] == [
        False, True, False, False, False, True, False, False
    ]  # fmt: skip


async def test_tickerbell_run_on_postgresql_shares_telegrams_rate(
    tmp_path: Path, postgres_url: str, telegram: FakeTelegram
) -> None:
    """`tickerbell run` on PostgreSQL sends through the shared budget (a command's reply takes
    a slot of the grid); on SQLite it paces itself (nothing to share: tested in
    test_telegram.py)."""
    settings = Settings(
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_BASE_URL=telegram.base_url,
        db=tmp_path / "unused.db",
        database_url=postgres_url,
    )
    stop = asyncio.Event()
    running = asyncio.create_task(app.run(settings, stop=stop))
    try:
        await until(lambda: telegram.count("getUpdates") > 0, timeout=15)
        telegram.push("/help", chat_id=FIRST_CHAT)
        await until(lambda: telegram.texts(FIRST_CHAT), timeout=15)
        assert next_slot(postgres_url, "telegram") is not None
    finally:
        stop.set()
        assert await asyncio.wait_for(running, 20) == 0
