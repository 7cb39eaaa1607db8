"""Whole Discord journeys, in the order people use the bot, through the real `tickerbell.app.run`.

The counterpart of test_journeys.py. Only the far side of each wire is faked: a Discord (REST and
gateway; discord.py talks to it over HTTP and a websocket) and a Binance REST API (ccxt), both on
127.0.0.1. People act by slash commands, dispatched as Discord dispatches them over the gateway;
each journey asserts what they see: the answers to their commands and the alert embeds in the
channel, their count and their order. Prices are synthetic levels set at the fake venue.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fake_discord import (
    ADMIN_PERMISSIONS,
    MEMBER_PERMISSIONS,
    FakeDiscord,
    Fault,
    Guild,
    as_typed,
)
from fake_exchange import FakeExchange
from support.waiting import until

from tickerbell import app
from tickerbell.settings import Settings

pytestmark = pytest.mark.slow

TOKEN = "MTA5.fake.discord-journey-token"
GUILD, CHANNEL, OTHER = 5_550_001, 7_770_001, 7_770_002
ADMIN, MEMBER = 11, 22
RULE = "BTC below 85000"


@dataclass(frozen=True)
class Answer:
    """An answer to a slash command as its user reads it: title and text; private or not."""

    text: str
    private: bool


@dataclass
class World:
    """The far side: a Discord and a venue that outlive restarts of the bot."""

    discord: FakeDiscord
    exchange: FakeExchange
    db: Path

    def price(self, btc: float) -> None:
        self.exchange.set_price("BTCUSDT", btc, btc)

    def channel(self, channel: int = CHANNEL) -> list[str]:
        """Every embed the bot posted in the channel, in order, as `footer: description`."""
        return [
            f"{(embed.get('footer') or {}).get('text')}: {embed.get('description')}"
            for message in self.discord.posted(channel)
            for embed in message.embeds
        ]

    def alerts(self, channel: int = CHANNEL) -> list[str]:
        """The channel's alerts for RULE (an alert embed's footer is its rule)."""
        return [text for text in self.channel(channel) if text.startswith(f"{RULE}: ")]

    async def say(
        self,
        command: str,
        channel: int = CHANNEL,
        user: int = ADMIN,
        permissions: int = ADMIN_PERMISSIONS,
        **options: str,
    ) -> Answer:
        """Use a slash command (`"alert add", rule=...`) in a server channel; the answer."""
        name, *path = command.split()
        payload = self.discord.interaction(
            name,
            *path,
            options=options,
            channel_id=channel,
            guild_id=GUILD,
            user_id=user,
            permissions=permissions,
        )
        fake = self.discord
        later = (len(fake.edits), len(fake.followups))
        await fake.dispatch("INTERACTION_CREATE", payload)
        await until(lambda: fake.answers(payload), timeout=15)
        first = fake.answers(payload)[0]
        if first.type != 5:
            return _read(first.embeds, first.ephemeral)
        # "thinking…" first: the answer replaces it, or comes privately as a follow-up
        await until(lambda: (len(fake.edits), len(fake.followups)) != later, timeout=15)
        if len(fake.edits) > later[0]:
            return _read(fake.edits[later[0]].embeds, False)
        followup = fake.followups[later[1]]
        return _read(followup.embeds, followup.ephemeral)

    async def ticks(self, count: int = 3) -> None:
        """Let the bot see the venue's current prices a few times."""
        seen = self.exchange.count("ticker/bookTicker")
        await until(lambda: self.exchange.count("ticker/bookTicker") >= seen + count, timeout=15)


def _read(embeds: list[dict[str, object]], private: bool) -> Answer:
    embed = embeds[0]
    parts = [embed.get("title"), embed.get("description")]
    return Answer("\n".join(str(p) for p in parts if p), private)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with FakeDiscord(TOKEN, guilds=[Guild(GUILD)]) as discord, FakeExchange() as exchange:
        yield World(discord, exchange, tmp_path / "journey.db")


@asynccontextmanager
async def running(world: World) -> AsyncIterator[None]:
    """The bot, from start until it listens on the gateway, to a clean stop."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        DISCORD_BOT_TOKEN=TOKEN,
        DISCORD_API_BASE_URL=world.discord.base_url,
        DISCORD_GATEWAY_URL=world.discord.gateway_url,
        db=world.db,
        exchange_options={"binance": world.exchange.ccxt_options()},
        poll_crypto_seconds=0.2,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(settings, stop=stop))
    # the fake sends READY as it records the IDENTIFY: what is dispatched next reaches the bot
    identified = len(world.discord.identified)
    try:
        await until(lambda: len(world.discord.identified) > identified or task.done(), 15)
        assert not task.done(), "the bot stopped at start"
        yield
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 20) == 0


async def test_status_then_alert_then_the_crossing(world: World) -> None:
    world.price(86000)
    async with running(world):
        status = await world.say("status", symbol="BTC")
        assert status.text.startswith("BTC\n86,000") and not status.private
        assert await world.say("alert add", rule=RULE) == Answer(
            "Alert #1 set: BTC below 85000", False
        )
        await world.ticks()
        world.price(84000)
        await until(lambda: world.channel())
        await world.ticks()  # later ticks below the level post nothing more
        assert world.channel() == ["BTC below 85000: BTC fell below 85,000 (now 84,000)"]


async def test_chart_then_alert_then_the_crossing(world: World) -> None:
    world.price(86000)
    async with running(world):
        chart = await world.say("chart", symbol="BTC", range="1d")
        assert chart.text.startswith(("BTC 1d", "⚠️ no price history"))
        assert (await world.say("alert add", rule=RULE)).text == "Alert #1 set: BTC below 85000"
        await world.ticks()
        world.price(84000)
        await until(lambda: world.channel(), timeout=20)
        await world.ticks()
        assert world.channel() == ["BTC below 85000: BTC fell below 85,000 (now 84,000)"]


async def test_subscribe_then_alert_then_the_crossing(world: World) -> None:
    world.price(86000)
    async with running(world):
        assert (await world.say("subscribe", symbol="BTC")).text == "Subscribed to BTC."
        assert (await world.say("alert add", rule=RULE)).text == "Alert #1 set: BTC below 85000"
        await world.ticks()
        world.price(84000)
        await until(lambda: world.alerts(), timeout=20)
        await world.ticks()
        assert world.alerts() == ["BTC below 85000: BTC fell below 85,000 (now 84,000)"]


async def test_alert_then_restart_then_the_crossing(world: World) -> None:
    world.price(86000)
    async with running(world):
        await world.say("alert add", rule=RULE)
        await world.ticks()
    async with running(world):
        await world.ticks()
        world.price(84000)
        await until(lambda: world.channel())
        await world.ticks()
    async with running(world):  # and the next start does not say it again
        await world.ticks()
    assert world.channel() == ["BTC below 85000: BTC fell below 85,000 (now 84,000)"]


async def test_a_crossing_while_the_bot_is_down_is_told_once_after_it_starts(
    world: World,
) -> None:
    world.price(86000)
    async with running(world):
        await world.say("alert add", rule=RULE)
        await world.ticks()
    world.price(84000)  # crossed while nobody was watching
    async with running(world):
        await until(lambda: world.channel())
        await world.ticks()
    async with running(world):
        await world.ticks()
    assert world.channel() == ["BTC below 85000: BTC fell below 85,000 (now 84,000)"]


async def test_in_a_server_a_member_is_refused_then_a_manager_sets_the_alert(
    world: World,
) -> None:
    world.price(86000)
    async with running(world):
        refused = await world.say(  # a member without Manage Server
            "alert add", user=MEMBER, permissions=MEMBER_PERMISSIONS, rule=RULE
        )
        assert refused.private and refused.text.startswith(
            "⚠️ in a server only those with Manage Server or the admin role change alerts"
        )
        listed = await world.say("alert list", user=MEMBER, permissions=MEMBER_PERMISSIONS)
        assert listed.text == "No alerts yet. Add one, e.g. /alert add rule: XAG above 50"
        accepted = await world.say("alert add", rule=RULE)  # with Manage Server
        assert accepted == Answer("Alert #1 set: BTC below 85000", False)
        await world.ticks()
        world.price(84000)
        await until(lambda: world.channel())
        await world.ticks()
        assert world.channel() == ["BTC below 85000: BTC fell below 85,000 (now 84,000)"]


async def test_what_a_reply_tells_to_type_is_typed_and_works(world: World) -> None:
    """Replies that say what to type say it as a Discord user types it (slash commands with
    named options); typed as told, it works."""

    async def type_as_told(text: str) -> Answer:
        (name, *sub), options = as_typed(text.rpartition("e.g. ")[2])
        return await world.say(" ".join((name, *sub)), **options)

    world.price(86000)
    async with running(world):
        listed = await world.say("alert list")
        assert listed.text == "No alerts yet. Add one, e.g. /alert add rule: XAG above 50"
        assert (await type_as_told(listed.text)).text == "Alert #1 set: XAG above 50"

        bad = await world.say("mute", duration="2x")
        assert bad == Answer(
            "⚠️ '2x' is not a duration like 15m, 4h, 1d or 2w. e.g. /mute duration: 2h", True
        )
        assert (await type_as_told(bad.text)).text.startswith("Muted until 20")

        usage = await world.say("snooze", alert="1", duration="soon")
        assert usage.private and usage.text.startswith(
            "⚠️ usage: /snooze alert: ID duration: DURATION"
        )
        assert usage.text.endswith("(see /alert list), e.g. /snooze alert: 3 duration: 1h")
        assert (await type_as_told(usage.text)).text == "⚠️ no alert #3 here — see /alert list."

        zone = await world.say("digest", time="08:00", zone="Europe/Londn")
        assert zone.text.endswith("e.g. /digest time: 08:00 zone: Europe/London")
        assert (await type_as_told(zone.text)).text.startswith(
            "Daily digest set: 08:00 Europe/London, every day."
        )


async def test_mute_cross_unmute_cross(world: World) -> None:
    world.price(86000)
    async with running(world):
        await world.say("alert add", rule=RULE)
        assert (await world.say("unmute")).text == "Alerts were not muted: they are on."
        assert (await world.say("mute")).text.startswith("Muted until you send /unmute")
        await world.ticks()
        world.price(84000)  # crosses while muted: kept in the history, not sent
        await world.ticks()
        world.price(86000)  # back above: re-armed
        await world.ticks()
        assert world.channel() == []
        assert (await world.say("unmute")).text == "Alerts are on again."
        world.price(84500)
        await until(lambda: world.channel())
        await world.ticks()
        assert world.channel() == ["BTC below 85000: BTC fell below 85,000 (now 84,500)"]


async def test_removing_an_alert_whose_message_is_still_pending_sends_nothing_more(
    world: World,
) -> None:
    world.price(86000)
    async with running(world):
        await world.say("alert add", rule=RULE)
        await world.ticks()
        # The alert's first post fails with a 503 (discord.py retries a 500 inside the same
        # request, so that one never comes back to delivery while the user removes the rule).
        world.discord.fail_channel(CHANNEL, Fault.UNAVAILABLE)
        world.price(84000)
        await until(lambda: world.discord.attempts(CHANNEL) > 0)  # decided, tried once
        assert (await world.say("alert remove", alert="1")).text == "Removed alert #1."
        await asyncio.sleep(4)  # past the retry time of the failed post
        assert world.channel() == []


async def test_two_channels_with_the_same_rule_each_hear_once(world: World) -> None:
    world.price(86000)
    async with running(world):
        await world.say("alert add", CHANNEL, rule=RULE)
        await world.say("alert add", OTHER, rule=RULE)
        await world.ticks()
        world.price(84000)
        await until(lambda: world.channel(CHANNEL) and world.channel(OTHER))
        await world.ticks()
        alert = "BTC below 85000: BTC fell below 85,000 (now 84,000)"
        assert world.channel(CHANNEL) == world.channel(OTHER) == [alert]
