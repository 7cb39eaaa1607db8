"""Whole journeys, in the order people use the bot, through the real `tickerbell.app.run`.

Only the far side of each wire is faked: a Telegram Bot API (python-telegram-bot talks to it over
HTTP) and a Binance REST API (ccxt talks to it over HTTP), both on 127.0.0.1. Each journey
asserts what the user sees: the replies and alerts in the chat, their count and their order.
Prices are synthetic levels set at the fake venue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fake_exchange import FakeExchange
from fake_exchange import Fault as VenueFault
from fake_telegram import FakeTelegram, Fault, plain
from support.postgres import Relay
from support.waiting import until

from tickerbell import app
from tickerbell.settings import Settings

pytestmark = pytest.mark.slow

TOKEN = "123456789:AAF-fake_SECRET_journey_token"
USER, FRIEND, GROUP, ADMIN, MEMBER = 4242, 4343, -100777, 11, 22
ALERT_MARKS = ("🔴▼", "🟢▲", "🟠↔", "🔔")  # an alert message starts with one of these


@dataclass
class World:
    """The far side: a Telegram and a venue that outlive restarts of the bot."""

    telegram: FakeTelegram
    exchange: FakeExchange
    db: Path
    database_url: str | None = None  # PostgreSQL instead of the SQLite file `db`

    def price(self, btc: float) -> None:
        self.exchange.set_price("BTCUSDT", btc, btc)

    def messages(self, chat: int) -> list[str]:
        return [plain(text) for text in self.telegram.texts(chat)]

    def alerts(self, chat: int) -> list[str]:
        return [text for text in self.messages(chat) if text.startswith(ALERT_MARKS)]

    async def say(self, text: str, chat: int = USER, **sender: int | str) -> str:
        """Send a command as a user and return the bot's answer, as the user reads it."""
        before = len(self.telegram.texts(chat))
        self.telegram.push(text, chat_id=chat, **sender)  # type: ignore[arg-type]
        await until(lambda: len(self.telegram.texts(chat)) > before, timeout=15)
        return self.messages(chat)[before]

    async def ticks(self, count: int = 3) -> None:
        """Let the bot see the venue's current prices a few times."""
        seen = self.exchange.count("ticker/bookTicker")
        await until(lambda: self.exchange.count("ticker/bookTicker") >= seen + count, timeout=15)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with FakeTelegram(TOKEN, poll_cap=0.2) as telegram, FakeExchange() as exchange:
        yield World(telegram, exchange, tmp_path / "journey.db")


def settings_for(world: World, poll_seconds: float = 0.2) -> Settings:
    return Settings(
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_BASE_URL=world.telegram.base_url,
        db=world.db,
        database_url=world.database_url,
        exchange_options={"binance": world.exchange.ccxt_options()},
        poll_crypto_seconds=poll_seconds,
    )


@asynccontextmanager
async def running(world: World, poll_seconds: float = 0.2, **settings: Any) -> AsyncIterator[None]:
    """The bot, from start until it answers, to a clean stop; `settings` override those of
    `settings_for`."""
    stop = asyncio.Event()
    chosen = settings_for(world, poll_seconds).model_copy(update=settings)
    task = asyncio.create_task(app.run(chosen, stop=stop))
    polls = world.telegram.count("getUpdates")
    try:
        await until(lambda: world.telegram.count("getUpdates") > polls or task.done(), 15)
        yield
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 20) == 0


async def test_status_then_alert_then_the_crossing(world: World) -> None:
    world.price(86000)
    async with running(world):
        assert (await world.say("/status BTC")).startswith("BTC\n86,000")
        assert await world.say("/alert BTC below 85000") == "Alert #1 set: BTC below 85000"
        await world.ticks()
        world.price(84000)
        await until(lambda: world.alerts(USER))
        await world.ticks()  # later ticks below the level fire nothing more
        assert world.alerts(USER) == [world.alerts(USER)[0]] and world.alerts(USER)[0].startswith(
            "🔴▼ BTC fell below 85,000 (now 84,000)"
        )


async def test_a_crossing_right_after_the_alert_is_set_is_told(world: World) -> None:
    """The price crosses the moment after the reply, before the engine's next tick: the rule
    keeps what it learned from the price the user saw (86,000: not yet below), so the crossing
    is told, once."""
    world.price(86000)
    world.exchange.set_price("ETHUSDT", 3000, 3000)
    async with running(world, poll_seconds=3):
        assert await world.say("/alert ETH above 5000") == "Alert #1 set: ETH above 5000"
        await world.ticks(1)  # the venue is polled already: a new rule waits for the next poll
        assert (await world.say("/status BTC")).startswith("BTC\n86,000")
        assert await world.say("/alert BTC below 85000") == "Alert #2 set: BTC below 85000"
        world.price(84000)
        await until(lambda: world.alerts(USER))
        await world.ticks(1)  # a later tick below the level fires nothing more
        assert len(world.alerts(USER)) == 1
        assert world.alerts(USER)[0].startswith("🔴▼ BTC fell below 85,000 (now 84,000)")


async def test_an_alert_set_while_the_venue_is_down_starts_from_its_last_price(
    world: World,
) -> None:
    """As for a metal set on a Saturday: the last price (86,000) is no longer current, and the
    first one after the outage (84,000) is past the level. The rule starts from the last price,
    so the crossing is told, not taken as already true."""
    world.price(86000)
    async with running(world, max_quote_age_seconds=3):  # a poll answered under load is fresh
        assert await world.say("/alert BTC below 70000") == "Alert #1 set: BTC below 70000"
        await world.ticks(2)
        world.exchange.inject(VenueFault.SERVER_ERROR)
        await asyncio.sleep(3.5)  # BTC's last price is now older than the staleness limit
        assert await world.say("/alert BTC below 85000") == "Alert #2 set: BTC below 85000"
        world.price(84000)
        world.exchange.heal()
        await until(lambda: world.alerts(USER), timeout=15)
        await world.ticks(2)
        assert len(world.alerts(USER)) == 1
        assert world.alerts(USER)[0].startswith("🔴▼ BTC fell below 85,000 (now 84,000)")


async def test_chart_then_alert_then_the_crossing(world: World) -> None:
    world.price(86000)
    async with running(world):
        assert (await world.say("/chart BTC 1d")).startswith(("BTC 1d", "⚠️ no price history"))
        assert await world.say("/alert BTC below 85000") == "Alert #1 set: BTC below 85000"
        await world.ticks()
        world.price(84000)
        await until(lambda: world.alerts(USER), timeout=20)
        await world.ticks()
        assert len(world.alerts(USER)) == 1


async def test_subscribe_then_alert_then_the_crossing(world: World) -> None:
    world.price(86000)
    async with running(world):
        assert await world.say("/subscribe BTC") == "Subscribed to BTC."
        assert await world.say("/alert BTC below 85000") == "Alert #2 set: BTC below 85000" or (
            world.messages(USER)[-1] == "Alert #1 set: BTC below 85000"
        )
        await world.ticks()
        world.price(84000)
        await until(lambda: any("BTC below 85000" in a for a in world.alerts(USER)), timeout=20)
        await world.ticks()
        assert sum("BTC below 85000" in a for a in world.alerts(USER)) == 1


async def test_alert_then_restart_then_the_crossing(world: World) -> None:
    world.price(86000)
    async with running(world):
        await world.say("/alert BTC below 85000")
        await world.ticks()
    async with running(world):
        await world.ticks()
        world.price(84000)
        await until(lambda: world.alerts(USER))
        await world.ticks()
    async with running(world):  # and the next start does not say it again
        await world.ticks()
    assert len(world.alerts(USER)) == 1


async def test_on_postgresql_an_alert_fires_once_and_a_restart_does_not_repeat_it(
    world: World, postgres_url: str
) -> None:
    world.database_url = postgres_url  # TICKERBELL_DATABASE_URL
    world.price(86000)
    async with running(world):
        assert await world.say("/alert BTC below 85000") == "Alert #1 set: BTC below 85000"
        await world.ticks()
        world.price(84000)
        await until(lambda: world.alerts(USER))
        await world.ticks()
    async with running(world):
        await world.ticks()
        assert (
            await world.say("/alerts") == "1 alert\n#1  BTC below 85000  fired, waiting to re-arm"
        )
    [told] = world.alerts(USER)
    assert told.startswith("🔴▼ BTC fell below 85,000 (now 84,000)")
    assert not world.db.exists()  # nothing went to SQLite


async def test_on_postgresql_a_crossing_while_the_database_is_away_is_told_once_it_is_back(
    world: World, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with Relay(postgres_url) as network:
        world.database_url = network.url
        world.price(86000)
        async with running(world):
            assert await world.say("/alert BTC below 85000") == "Alert #1 set: BTC below 85000"
            await world.ticks()
            await network.cut()  # the database is unreachable: the engine stops
            world.price(84000)
            await until(lambda: "engine: lost its lease" in caplog.text, timeout=30)
            await network.restore()
            await until(lambda: world.alerts(USER), timeout=60)
            await world.ticks()
    [told] = world.alerts(USER)
    assert told.startswith("🔴▼ BTC fell below 85,000 (now 84,000)")


async def test_on_postgresql_a_second_replica_takes_over_when_the_first_stops(
    world: World, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tickerbell")
    world.database_url = postgres_url
    world.price(86000)
    standby_stop = asyncio.Event()
    async with running(world):
        await world.say("/alert BTC below 85000")
        await world.ticks()  # the rule learns the price above its level first
        standby = asyncio.create_task(app.run(settings_for(world), stop=standby_stop))
        await until(lambda: "engine runs on another replica: standing by" in caplog.text, 15)
        world.price(84000)
        await until(lambda: world.alerts(USER))
        await world.ticks()
    # the active one stopped: the standby takes over with the rule's state
    polls = world.telegram.count("getUpdates")
    await until(lambda: world.telegram.count("getUpdates") > polls, timeout=30)
    assert await world.say("/alerts") == "1 alert\n#1  BTC below 85000  fired, waiting to re-arm"
    await world.ticks()
    standby_stop.set()
    assert await asyncio.wait_for(standby, 20) == 0
    assert len(world.alerts(USER)) == 1
    replies = [m for m in world.messages(USER) if not m.startswith(ALERT_MARKS)]
    assert len(replies) == 2  # each command answered once, by one process


async def test_a_crossing_while_the_bot_is_down_is_told_once_after_it_starts(
    world: World,
) -> None:
    world.price(86000)
    async with running(world):
        await world.say("/alert BTC below 85000")
        await world.ticks()
    world.price(84000)  # crossed while nobody was watching
    async with running(world):
        await until(lambda: world.alerts(USER))
        await world.ticks()
    async with running(world):
        await world.ticks()
    assert len(world.alerts(USER)) == 1


async def test_in_a_group_a_member_is_refused_then_an_admin_sets_the_alert(
    world: World,
) -> None:
    world.telegram.admins[GROUP] = {ADMIN: "administrator"}
    world.price(86000)
    async with running(world):
        group = {"chat_type": "supergroup"}
        refused = await world.say("/alert BTC below 85000", GROUP, user_id=MEMBER, **group)
        assert refused.startswith("⚠️ only admins change alerts in a group")
        assert (await world.say("/alerts", GROUP, user_id=MEMBER, **group)) == (
            "No alerts yet. Add one, e.g. /alert XAG above 50"
        )
        accepted = await world.say("/alert BTC below 85000", GROUP, user_id=ADMIN, **group)
        assert accepted == "Alert #1 set: BTC below 85000"
        await world.ticks()
        world.price(84000)
        await until(lambda: world.alerts(GROUP))
        await world.ticks()
        assert len(world.alerts(GROUP)) == 1


async def test_mute_cross_unmute_cross(world: World) -> None:
    world.price(86000)
    async with running(world):
        await world.say("/alert BTC below 85000")
        assert await world.say("/unmute") == "Alerts were not muted: they are on."
        assert (await world.say("/mute")).startswith("Muted until you send /unmute")
        await world.ticks()
        world.price(84000)  # crosses while muted: kept in the history, not sent
        await world.ticks()
        world.price(86000)  # back above: re-armed
        await world.ticks()
        assert await world.say("/unmute") == "Alerts are on again."
        world.price(84500)
        await until(lambda: world.alerts(USER))
        await world.ticks()
        assert len(world.alerts(USER)) == 1
        assert world.alerts(USER)[0].startswith("🔴▼ BTC fell below 85,000 (now 84,500)")


async def test_removing_an_alert_whose_message_is_still_pending_sends_nothing_more(
    world: World,
) -> None:
    world.price(86000)
    async with running(world):
        await world.say("/alert BTC below 85000")
        await world.ticks()
        sends = world.telegram.count("sendPhoto") + world.telegram.count("sendMessage")
        world.telegram.fail_chat(USER, Fault.INTERNAL)  # the alert's first send fails
        world.price(84000)
        total = lambda: world.telegram.count("sendPhoto") + world.telegram.count("sendMessage")  # noqa: E731
        await until(lambda: total() > sends)  # the alert was decided and tried once
        assert await world.say("/remove 1") == "Removed alert #1."
        await asyncio.sleep(4)  # past the retry time of the failed send
        assert world.alerts(USER) == []


async def test_two_chats_with_the_same_rule_each_hear_once(world: World) -> None:
    world.price(86000)
    async with running(world):
        await world.say("/alert BTC below 85000", USER)
        await world.say("/alert BTC below 85000", FRIEND)
        await world.ticks()
        world.price(84000)
        await until(lambda: world.alerts(USER) and world.alerts(FRIEND))
        await world.ticks()
        assert len(world.alerts(USER)) == len(world.alerts(FRIEND)) == 1


async def test_malformed_commands_get_their_own_command_as_the_example(world: World) -> None:
    """Each refusal shows the form of the command typed: `/mute abc` used to answer with a
    rule (`e.g. BTC up 6% 1d`), `/status 🚀` with `e.g. XAG above 50`."""
    answers = {
        "/mute abc": "⚠️ 'abc' is not a duration like 15m, 4h, 1d or 2w. e.g. /mute 2h",
        "/mute 99999d": "⚠️ '99999d' is out of range (1m to 3650d). e.g. /mute 2h",
        "/status 🚀": "⚠️ '🚀' is not a valid symbol. e.g. XAG or binance:SOL/USDT",
        "/chart BTC/": "⚠️ 'BTC/' is not a valid symbol. e.g. XAG or binance:SOL/USDT",
        "/foo": "⚠️ unknown command '/foo'. Try /help.",
        "/alrets": "⚠️ unknown command '/alrets' — did you mean /alerts? Try /help.",
        "/digest 08:00 Mars/Base": "⚠️ unknown time zone 'Mars/Base': give an IANA name "
        "(Region/City), e.g. /digest 08:00 Europe/London",
    }
    world.price(86000)
    async with running(world):
        for command, answer in answers.items():
            assert await world.say(command) == answer
        assert await world.say("/alerts") == "No alerts yet. Add one, e.g. /alert XAG above 50"


async def test_remove_under_an_alert_keeps_its_chart_button(world: World) -> None:
    """An alert, its buttons, Remove pressed: the rule is gone, and so are the rule's buttons,
    while Chart (still meaningful) stays."""
    world.price(86000)
    async with running(world):
        # text alerts, whatever history there is by then: a chart sent with it has no button
        assert await world.say("/charts off") == "Alerts here are text only."
        assert await world.say("/alert BTC below 85000") == "Alert #1 set: BTC below 85000"
        await world.ticks()
        world.price(84000)
        await until(lambda: world.alerts(USER))
        [sent] = [m for m in world.telegram.messages if m.keyboard]
        assert [label for label, _ in sent.keyboard] == [
            *("Snooze 1h", "Mute rule", "Remove", "Chart")
        ]
        pressed = world.telegram.press(sent.message_id, "Remove", user_id=USER)
        await until(lambda: world.telegram.answer_to(pressed) is not None and world.telegram.edits)
        assert await world.say("/alerts") == "No alerts yet. Add one, e.g. /alert XAG above 50"
        assert [label for label, _ in world.telegram.keyboard(sent.message_id)] == ["Chart"]
