"""The Discord adapter: the real discord.py stack against a local fake Discord over HTTP.

Alerts are real REST calls the fake records; slash commands are raw interaction payloads (as
Discord sends them) handed to the bot's real `CommandTree`, or pushed over the fake gateway.
The store is real SQLite, the command layer and the service are real; prices come from a
scripted venue (synthetic prices). Outages are the fake's: refused connections, 503s, dropped
and refused websockets, a refused token.
"""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import discord
import pytest
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket
from fake_discord import (
    ADMIN_PERMISSIONS,
    APP_PERMISSIONS,
    MEMBER_PERMISSIONS,
    Callback,
    FakeDiscord,
    Fault,
    Guild,
    Posted,
    as_typed,
)
from support import scripted
from support.scripted import T0, Clock, ScriptedVenue, enqueue, make_service
from support.waiting import until

from alerts.models import Alert, Candle, Direction, Quote
from bot.charts import ChartCache
from bot.commands import Commands
from bot.digest import Digests, setting
from bot.discord.adapter import DiscordBot, build
from bot.discord.render import AMBER, GREEN, RED, SPELLING, alert_embed, reply_embeds
from bot.discord.sync import sync_file_for
from bot.discord.tree import TickerClient, make_tree
from bot.replies import Reply
from bot.results import Command, Typed
from storage.api import DigestDue
from storage.db import Store
from tickerbell.delivery import Delivery, DeliveryError
from tickerbell.discord_sync import discord_sync
from tickerbell.service import Service
from tickerbell.settings import Settings

TOKEN = "MTA5.fake.discord-bot-token"
GUILD, CHANNEL, OTHER = 5_550_001, 7_770_001, 7_770_002
ADMIN_ROLE, MEMBER_ROLE = 9_990_001, 9_990_002
T = TypeVar("T")
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


DISCORD_API = "https://discord.com/api/v10"
DISCORD_GATEWAY = "wss://gateway.discord.gg/"


@pytest.fixture
async def server() -> AsyncIterator[FakeDiscord]:
    """The fake Discord; discord.py is left pointing at the real one (settings point it here)."""
    guild = Guild(GUILD, roles={"Alert admins": ADMIN_ROLE, "Members": MEMBER_ROLE})
    async with FakeDiscord(TOKEN, guilds=[guild]) as fake:
        yield fake


@pytest.fixture
def fake(server: FakeDiscord) -> Iterator[FakeDiscord]:
    """The fake Discord, with discord.py's REST base and gateway pointed at it."""
    with server.pointed_at():
        yield server


@dataclass
class Rig:
    bot: DiscordBot
    store: Store
    delivery: Delivery
    venue: ScriptedVenue
    service: Service


@asynccontextmanager
async def rig(db: Path, *, start: bool = True, **options: Any) -> AsyncIterator[Rig]:
    """A DiscordBot (REST only unless asked) over a real store, command layer and service."""
    clock = Clock()
    venue = ScriptedVenue(clock)
    venue.prices.update({"BTC/USDT": 86_000.0, "XAG": 48.5})
    async with Store.open(db) as store:
        delivery = Delivery(store, {})
        service = make_service(store, delivery, venue, clock)
        options.setdefault("gateway", False)
        # Answers never race the defer time on a busy machine unless a test asks for it
        # (defer_after=0: every answer deferred).
        options.setdefault("defer_after", 60.0)
        options.setdefault("retry_base", 0.02)  # reconnecting: 20 ms doubling up to 0.2 s
        options.setdefault("retry_cap", 0.2)
        commands = Commands(store, service.data, clock=clock)
        bot = DiscordBot(token=TOKEN, commands=commands, store=store, **options)
        delivery.notifiers[bot.name] = bot
        try:
            if start:
                await bot.start()
            yield Rig(bot, store, delivery, venue, service)
        finally:
            await bot.close()


async def invoke(bot: DiscordBot, payload: dict[str, Any]) -> None:
    """Hand a raw interaction payload to the bot's real CommandTree, as the gateway does."""
    data: Any = payload  # a TypedDict union in discord.py's stubs
    interaction = discord.Interaction(data=data, state=bot.client._connection)
    await bot.tree._call(interaction)


XAG_ALERT: dict[str, Any] = {
    "direction": Direction.UP,
    "price": 50.2,
    "reference": 50.0,
    "observed": 50.2,
}


def an_alert(rule: str = "XAG above 50", **changes: Any) -> Alert:
    return scripted.an_alert(rule, **{**XAG_ALERT, **changes})


def only(items: list[T]) -> T:
    assert len(items) == 1, items
    return items[0]


def messages(
    caplog: pytest.LogCaptureFixture, level: int, name: str = "bot.discord.adapter"
) -> list[str]:
    """What `name` logged at exactly this level."""
    return [r.getMessage() for r in caplog.records if r.levelno == level and r.name == name]


def worse_than_info(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every warning and error, from any logger."""
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno > logging.INFO]


def open_sessions() -> set[int]:
    """The aiohttp client sessions alive and still open in this process."""
    return {
        id(o) for o in gc.get_objects() if isinstance(o, aiohttp.ClientSession) and not o.closed
    }


@contextmanager
def every_log_line() -> Iterator[Callable[[], str]]:
    """Everything logged at any level through the root logger, formatted with tracebacks."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream.getvalue
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


# --- rendering ---


def test_alert_embeds_are_coloured_by_direction() -> None:
    up = alert_embed(an_alert()).to_dict()
    assert (up["title"], up["description"], up["color"]) == (
        "XAG",
        "XAG rose above 50 (now 50.20)",
        GREEN.value,
    )
    assert up["footer"] == {"text": "XAG above 50"}
    assert up["timestamp"] == "2026-03-02T12:00:00+00:00"
    down = alert_embed(an_alert("BTC below 85000", direction=Direction.DOWN))
    wider = alert_embed(an_alert("XAG spread > 0.5%", direction=Direction.WIDER))
    assert (down.colour, wider.colour) == (RED, AMBER)


def test_long_replies_are_split_within_discords_limits() -> None:
    rows = tuple(
        (f"#{i}", "BTC below 85000 confirm 3 cooldown 1h once", "armed") for i in range(200)
    )
    embeds = reply_embeds(Reply(("intro line",), title="200 alerts", table=rows))
    assert len(embeds) > 1
    assert embeds[0].title == "200 alerts"
    for embed in embeds:
        description = embed.description or ""
        assert len(description) <= 4096
        assert description.count("```") % 2 == 0  # every code block is closed
    text = "".join(e.description or "" for e in embeds)
    assert all(f"#{i} " in text for i in range(200))


# --- delivery ---


async def test_alert_with_chart_arrives_as_embed_and_attachment(
    tmp_path: Path, fake: FakeDiscord
) -> None:
    async with rig(tmp_path / "a.db") as r:
        chat = await r.store.chat("discord", str(CHANNEL), "guild")
        message_id = await r.bot.send(chat, an_alert(), image=PNG)
        posted = only(fake.posted(CHANNEL))
        assert message_id == str(posted.id)
        embed = only(posted.embeds)
        assert embed["title"] == "XAG"
        assert embed["description"] == "XAG rose above 50 (now 50.20)"
        assert embed["color"] == 0x2ECC71
        assert embed["footer"]["text"] == "XAG above 50"
        assert embed["image"]["url"] == "attachment://chart.png"
        assert posted.files == [("chart.png", PNG)]
        assert posted.payload["allowed_mentions"]["parse"] == []


async def test_a_rate_limit_is_waited_out_and_sent_once(tmp_path: Path, fake: FakeDiscord) -> None:
    async with rig(tmp_path / "r.db") as r:
        chat = await r.store.chat("discord", str(CHANNEL), "guild")
        await enqueue(r.store, chat, an_alert())
        fake.fail_channel(CHANNEL, Fault.RATE_LIMITED, retry_after=0.2)
        started = time.monotonic()
        await r.delivery.drain()
        assert time.monotonic() - started >= 0.2
        assert fake.attempts(CHANNEL) == 2
        assert only(fake.posted(CHANNEL)).embeds[0]["title"] == "XAG"
        assert await r.store.outbox_counts() == {"delivered": 1}
        assert r.bot.invalid.count() == 1  # the 429 counts towards Discord's ban


@pytest.mark.parametrize("fault", [Fault.FORBIDDEN, Fault.NOT_FOUND])
async def test_a_channel_that_is_gone_is_deactivated_and_left_alone(
    tmp_path: Path, fake: FakeDiscord, fault: Fault
) -> None:
    async with rig(tmp_path / "f.db") as r:
        chat = await r.store.chat("discord", str(CHANNEL), "guild")
        await r.store.add_rule(chat.id, "XAG above 50", "42", 50)
        fake.fail_channel(CHANNEL, fault, times=None)
        await enqueue(r.store, chat, an_alert())
        await r.delivery.drain()
        assert await r.store.outbox_counts() == {"failed": 1}
        found = await r.store.find_chat("discord", str(CHANNEL))
        assert found is not None and not found.active
        await enqueue(r.store, chat, an_alert(price=51.0))
        await r.delivery.drain()
        with pytest.raises(DeliveryError) as caught:
            await r.bot.send(chat, an_alert())  # even asked directly, it does not try
        assert caught.value.permanent
        assert fake.attempts(CHANNEL) == 1
        assert await r.store.outbox_counts() == {"failed": 1, "inactive": 1}

        # someone fixes the channel's permissions and uses a command there: it is back
        fake.heal()
        await invoke(r.bot, fake.interaction("alert", "list", channel_id=CHANNEL, guild_id=GUILD))
        found = await r.store.find_chat("discord", str(CHANNEL))
        assert found is not None and found.active
        assert await r.bot.send(found, an_alert()) is not None
        assert fake.attempts(CHANNEL) == 2


async def test_a_command_without_posting_rights_does_not_reactivate(
    tmp_path: Path, fake: FakeDiscord
) -> None:
    async with rig(tmp_path / "p.db") as r:
        chat = await r.store.chat("discord", str(CHANNEL), "guild")
        await r.store.set_chat_active(chat.id, False)
        cannot = discord.Permissions(view_channel=True).value
        payload = fake.interaction(
            "alert",
            "add",
            options={"rule": "XAG above 50"},
            channel_id=CHANNEL,
            guild_id=GUILD,
            permissions=ADMIN_PERMISSIONS,
            app_permissions=cannot,
        )
        await invoke(r.bot, payload)
        found = await r.store.find_chat("discord", str(CHANNEL))
        assert found is not None and not found.active
        description = fake.answers(payload)[0].embeds[0]["description"]
        assert description.startswith("Alert #1 set: XAG above 50\n")
        assert "I can't post in this channel" in description


async def test_server_errors_and_network_failures_are_transient(
    tmp_path: Path, fake: FakeDiscord
) -> None:
    now = [1000.0]
    async with rig(tmp_path / "t.db", clock=lambda: now[0]) as r:
        r.delivery.parallel_chats = 1  # one send at a time, so the hold-back is what we see
        chat = await r.store.chat("discord", str(CHANNEL), "guild")
        other = await r.store.chat("discord", str(OTHER), "guild")
        fake.fail_channel(CHANNEL, Fault.UNAVAILABLE)
        await enqueue(r.store, chat, an_alert())
        await enqueue(r.store, other, an_alert())
        await r.delivery.drain()
        assert fake.attempts(CHANNEL) == 1
        assert fake.attempts(OTHER) == 0  # held back while Discord fails
        assert await r.store.outbox_counts() == {"pending": 2}
        found = await r.store.find_chat("discord", str(CHANNEL))
        assert found is not None and found.active

        now[0] += 16  # the hold-back is over and Discord answers again
        assert await r.bot.send(other, an_alert()) is not None

        discord.http.Route.BASE = "http://127.0.0.1:9/api/v10"  # nothing listens there
        with pytest.raises(DeliveryError) as caught:
            await r.bot.send(other, an_alert())
        assert not caught.value.permanent
        assert "network" in str(caught.value)


async def test_a_500_is_retried_by_discord_py(tmp_path: Path, fake: FakeDiscord) -> None:
    async with rig(tmp_path / "5.db") as r:
        chat = await r.store.chat("discord", str(CHANNEL), "guild")
        fake.fail_channel(CHANNEL, Fault.SERVER_ERROR)
        assert await r.bot.send(chat, an_alert()) is not None
        assert (fake.attempts(CHANNEL), len(fake.posted(CHANNEL))) == (2, 1)


async def test_too_many_invalid_requests_pause_delivery(
    tmp_path: Path, fake: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    now = [1000.0]
    async with rig(tmp_path / "i.db", invalid_limit=3, clock=lambda: now[0]) as r:
        chats = [await r.store.chat("discord", str(CHANNEL + i), "guild") for i in range(4)]
        for chat in chats[:3]:
            fake.fail_channel(int(chat.chat_id), Fault.FORBIDDEN)
            with pytest.raises(DeliveryError):
                await r.bot.send(chat, an_alert())
        with pytest.raises(DeliveryError) as caught:
            await r.bot.send(chats[3], an_alert())
        assert not caught.value.permanent
        assert caught.value.retry_after == pytest.approx(600)
        assert fake.attempts(CHANNEL + 3) == 0
        assert "3 invalid requests (401/403/429) in 10 minutes; pausing" in caplog.text

        now[0] += 601
        assert await r.bot.send(chats[3], an_alert()) is not None


# --- slash commands through the real CommandTree ---


@pytest.mark.parametrize("guild_commands", [False, True])
async def test_an_admin_adds_a_rule_and_gets_a_green_embed(
    tmp_path: Path, fake: FakeDiscord, guild_commands: bool
) -> None:
    scope = {"guild_id": GUILD} if guild_commands else {}
    async with rig(tmp_path / "s.db", **scope) as r:
        payload = fake.interaction("alert", "add", options={"rule": "XAG above 50"},
                                   channel_id=CHANNEL, guild_id=GUILD, user_id=11,
                                   permissions=ADMIN_PERMISSIONS)  # fmt: skip
        assert ("guild_id" in payload["data"]) is guild_commands  # as Discord sends each
        await invoke(r.bot, payload)
        answer = only(fake.answers(payload))
        assert answer.type == 4 and not answer.ephemeral
        embed = only(answer.embeds)
        assert (embed["color"], embed["description"]) == (GREEN.value, "Alert #1 set: XAG above 50")
        chat = await r.store.find_chat("discord", str(CHANNEL))
        assert chat is not None and chat.kind == "guild" and chat.active
        assert [(s.text, s.created_by) for s in await r.store.rules(chat.id)] == [
            ("XAG above 50", "11")
        ]


async def test_after_stop_commands_get_a_short_answer(tmp_path: Path, fake: FakeDiscord) -> None:
    async with rig(tmp_path / "stop.db") as r:
        await r.bot.stop()
        payload = fake.interaction("alert", "add", options={"rule": "XAG above 50"},
                                   channel_id=CHANNEL, guild_id=GUILD,
                                   permissions=ADMIN_PERMISSIONS)  # fmt: skip
        await invoke(r.bot, payload)
        answer = only(fake.answers(payload))
        assert answer.ephemeral and "restarting" in answer.embeds[0]["description"]
        assert await r.store.rules() == []
        chat = await r.store.chat("discord", str(CHANNEL), "guild")
        assert await r.bot.send(chat, an_alert()) is not None  # delivery still drains


async def test_a_member_is_refused_privately_and_nothing_is_stored(
    tmp_path: Path, fake: FakeDiscord
) -> None:
    async with rig(tmp_path / "m.db") as r:
        for command, path, options in [
            ("alert", ("add",), {"rule": "XAG above 50"}),
            ("alert", ("remove",), {"alert": "1"}),
            ("mute", (), {"duration": "2h"}),
            ("subscribe", (), {"symbol": "XAU"}),
        ]:
            payload = fake.interaction(
                command, *path, options=options, channel_id=CHANNEL, guild_id=GUILD, user_id=22
            )
            await invoke(r.bot, payload)
            answer = only(fake.answers(payload))
            assert answer.ephemeral
            assert answer.embeds[0]["color"] == RED.value
            assert (
                "only those with Manage Server or the admin role" in answer.embeds[0]["description"]
            )
        assert await r.store.find_chat("discord", str(CHANNEL)) is None
        assert await r.store.rules() == []


async def test_a_malformed_rule_gets_a_private_error_with_an_example(
    tmp_path: Path, fake: FakeDiscord
) -> None:
    async with rig(tmp_path / "e.db") as r:
        payload = fake.interaction(
            "alert",
            "add",
            options={"rule": "XAG abov 50"},
            channel_id=CHANNEL,
            guild_id=GUILD,
            permissions=ADMIN_PERMISSIONS,
        )
        await invoke(r.bot, payload)
        answer = only(fake.answers(payload))
        assert answer.ephemeral
        embed = answer.embeds[0]
        assert embed["color"] == RED.value
        assert embed["description"] == (
            "⚠️ unknown condition 'abov' — did you mean 'above'? e.g. XAG above 50"
        )
        assert await r.store.rules() == []


async def test_status_is_open_to_everyone(tmp_path: Path, fake: FakeDiscord) -> None:
    async with rig(tmp_path / "st.db") as r:
        payload = fake.interaction(
            "status", options={"symbol": "BTC"}, channel_id=CHANNEL, guild_id=GUILD, user_id=22
        )
        await invoke(r.bot, payload)
        answer = only(fake.answers(payload))
        assert not answer.ephemeral
        embed = answer.embeds[0]
        assert (embed["title"], embed["color"]) == ("BTC", GREEN.value)
        assert embed["description"].startswith("86,000")
        assert "ccxt:binance BTC/USDT" in embed["description"]


async def test_in_a_dm_the_user_is_admin_of_their_own_alerts(
    tmp_path: Path, fake: FakeDiscord
) -> None:
    dm = 8_880_001
    async with rig(tmp_path / "dm.db") as r:
        payload = fake.interaction(
            "alert", "add", options={"rule": "BTC below 85000"}, channel_id=dm
        )
        await invoke(r.bot, payload)
        assert fake.answers(payload)[0].embeds[0]["description"] == "Alert #1 set: BTC below 85000"
        chat = await r.store.find_chat("discord", str(dm))
        assert chat is not None and chat.kind == "private"


async def test_symbol_and_alert_autocomplete(tmp_path: Path, fake: FakeDiscord) -> None:
    async with rig(tmp_path / "ac.db") as r:
        payload = fake.interaction(
            "status", options={"symbol": "xa"}, focused="symbol", channel_id=CHANNEL, guild_id=GUILD
        )
        await invoke(r.bot, payload)
        answer = only(fake.answers(payload))
        assert answer.type == 8
        assert [c["value"] for c in answer.data["choices"]] == ["xa", "XAU", "XAG", "XAUT"]

        payload = fake.interaction(
            "status", options={"symbol": ""}, focused="symbol", channel_id=CHANNEL, guild_id=GUILD
        )
        await invoke(r.bot, payload)
        values = [c["value"] for c in fake.answers(payload)[0].data["choices"]]
        assert values[:6] == ["XAU", "XAG", "BTC", "ETH", "SOL", "XRP"]
        assert len(values) == 25 and "PAXG" not in values[:4]

        chat = await r.store.chat("discord", str(CHANNEL), "guild")
        await r.store.add_rule(chat.id, "XAG above 50", "1", 50)
        await r.store.add_rule(chat.id, "BTC below 85000", "1", 50)
        payload = fake.interaction(
            "alert",
            "remove",
            options={"alert": "btc"},
            focused="alert",
            channel_id=CHANNEL,
            guild_id=GUILD,
        )
        await invoke(r.bot, payload)
        assert fake.answers(payload)[0].data["choices"] == [
            {"name": "#2 BTC below 85000", "value": "2"}
        ]

        payload = fake.interaction(
            "alert",
            "add",
            options={"rule": "XAG ab"},
            focused="rule",
            channel_id=CHANNEL,
            guild_id=GUILD,
        )
        await invoke(r.bot, payload)
        rules_offered = [c["value"] for c in fake.answers(payload)[0].data["choices"]]
        assert rules_offered[:2] == ["XAG ab", "XAG above 50"]


@pytest.mark.parametrize(
    "typed",
    [Typed(c, ("A", "B", "C")) for c in Command if c is not Command.WEBHOOK]
    + [Typed(Command.WEBHOOK, (verb, "A")) for verb in ("add", "list", "remove", "in")]
    + [Typed(Command.MUTE, ("[DURATION]",)), Typed(Command.ALERTS, ("A",))],
)
async def test_discords_spelling_names_the_trees_commands_and_options(typed: Typed) -> None:
    """What a reply tells a Discord user to type is a registered slash command with its own
    option names (all of them, when given enough words; the last takes the rest)."""
    tree = make_tree(TickerClient(intents=discord.Intents.none()))
    (name, *sub), options = as_typed(SPELLING.spell(typed))
    command = tree.get_command(name)
    for word in sub:
        assert isinstance(command, app_commands.Group)
        command = command.get_command(word)
    assert isinstance(command, app_commands.Command)
    assert list(options) == [p.display_name for p in command.parameters]


async def test_remove_and_help_speak_discords_command_names(
    tmp_path: Path, fake: FakeDiscord
) -> None:
    async with rig(tmp_path / "h.db") as r:
        payload = fake.interaction("help", channel_id=CHANNEL, guild_id=GUILD)
        await invoke(r.bot, payload)
        text = fake.answers(payload)[0].embeds[0]["description"]
        assert "/alert add rule: RULE — add an alert (e.g. /alert add rule: XAG above 50)" in text
        assert "/alert list — this chat's alerts with ids" in text
        assert "/alert remove alert: ID" in text

        payload = fake.interaction(
            "alert",
            "remove",
            options={"alert": "7"},
            channel_id=CHANNEL,
            guild_id=GUILD,
            permissions=ADMIN_PERMISSIONS,
        )
        await invoke(r.bot, payload)
        answer = fake.answers(payload)[0]
        assert answer.ephemeral
        assert answer.embeds[0]["description"] == "⚠️ no alert #7 here — see /alert list."


async def test_confirmations_are_asked_for_in_discords_command_names(
    tmp_path: Path, fake: FakeDiscord
) -> None:
    async with rig(tmp_path / "cf.db") as r:

        async def say(command: str, **options: str) -> str:
            name, *path = command.split()
            payload = fake.interaction(
                name, *path, options=options, channel_id=CHANNEL, guild_id=GUILD,
                permissions=ADMIN_PERMISSIONS,
            )  # fmt: skip
            await invoke(r.bot, payload)
            return str(only(fake.answers(payload)).embeds[0]["description"])

        assert await say("alert add", rule="BTC above 1m") == (
            "BTC is 86,000 now and 1,000,000 is more than 10x that, so nothing is stored yet. "
            "If you mean it, send /alert add rule: BTC above 1000000 confirm"
        )
        assert await say("alert add", rule="BTC above 1000000 confirm") == (
            "Alert #1 set: BTC above 1000000"
        )
        assert await say("alert remove", alert="all") == (
            "This removes all 1 alert here. Send /alert remove alert: all confirm to do it."
        )
        assert await say("alert remove", alert="all confirm") == "Removed 1 alert."
        assert await say("alert remove", alert="1 2") == (
            "⚠️ usage: /alert remove alert: ID (see /alert list), e.g. /alert remove alert: 3"
        )


async def test_a_long_list_continues_in_follow_ups(tmp_path: Path, fake: FakeDiscord) -> None:
    async with rig(tmp_path / "l.db") as r:
        chat = await r.store.chat("discord", str(CHANNEL), "guild")
        text = "BTC below 85000 confirm 3 cooldown 1h once expires 2026-12-31"
        await r.store.import_rules([(chat.id, text, "1")] * 120)
        payload = fake.interaction("alert", "list", channel_id=CHANNEL, guild_id=GUILD)
        await invoke(r.bot, payload)
        first = only(fake.answers(payload))
        assert first.embeds[0]["title"] == "120 alerts"
        assert len(fake.followups) >= 1
        shown = first.embeds[0]["description"] + "".join(
            f.embeds[0]["description"] for f in fake.followups
        )
        assert shown.count(text) == 120


async def test_a_slow_command_is_deferred_then_answered(tmp_path: Path, fake: FakeDiscord) -> None:
    async with rig(tmp_path / "d.db", defer_after=0) as r:
        payload = fake.interaction(
            "status", options={"symbol": "BTC"}, channel_id=CHANNEL, guild_id=GUILD
        )
        await invoke(r.bot, payload)
        assert [c.type for c in fake.answers(payload)] == [5]
        assert only(fake.edits).embeds[0]["title"] == "BTC"

        payload = fake.interaction(
            "status", options={"symbol": "NOPE1"}, channel_id=CHANNEL, guild_id=GUILD
        )
        await invoke(r.bot, payload)
        assert fake.deleted == [payload["token"]]  # the public "thinking" goes away
        error = only(fake.followups)
        assert error.ephemeral and "unknown symbol 'NOPE1'" in error.embeds[0]["description"]


@pytest.mark.parametrize("defer_after", [60.0, 0.0], ids=["answered", "deferred"])
async def test_a_chart_comes_as_the_embeds_image(
    tmp_path: Path, fake: FakeDiscord, defer_after: float
) -> None:
    """Both ways a chart can arrive: in the answer, or (drawn past the defer time, as a first
    chart on a busy machine is) in the edit of the deferred answer. The test fixes which."""
    async with rig(tmp_path / "c.db", defer_after=defer_after) as r:
        start = T0.date() - timedelta(days=40)
        r.venue.history["BTC/USDT"] = [
            Candle(start + timedelta(days=i), 80_000 + i, 80_500 + i, 79_500 + i, 80_100 + i)
            for i in range(40)
        ]
        payload = fake.interaction("chart", options={"symbol": "BTC", "range": "1m"},
                                   channel_id=CHANNEL, guild_id=GUILD)  # fmt: skip
        await invoke(r.bot, payload)
        if defer_after:
            answer: Callback | Posted = only(fake.answers(payload))
        else:
            assert [c.type for c in fake.answers(payload)] == [5]
            answer = only(fake.edits)
        assert answer.embeds[0]["image"]["url"] == "attachment://chart.png"
        assert answer.embeds[0]["description"].startswith("BTC 1m: ")
        [(name, image)] = answer.files
        assert name == "chart.png" and image.startswith(b"\x89PNG")


# --- over the gateway: admin by role, and both adapters in one process ---


async def test_the_admin_role_may_change_alerts_over_the_gateway(
    tmp_path: Path, fake: FakeDiscord
) -> None:
    async with rig(tmp_path / "g.db", gateway=True, admin_role="Alert admins") as r:
        await until(lambda: r.bot.client.get_guild(GUILD) is not None)
        assert fake.identified[0]["intents"] == discord.Intents(guilds=True).value
        member = fake.interaction(
            "alert",
            "add",
            options={"rule": "XAG above 50"},
            channel_id=CHANNEL,
            guild_id=GUILD,
            user_id=22,
            roles=("Members",),
        )
        admin = fake.interaction(
            "alert",
            "add",
            options={"rule": "XAG above 50"},
            channel_id=CHANNEL,
            guild_id=GUILD,
            user_id=33,
            roles=("Members", "Alert admins"),
        )
        await fake.dispatch("INTERACTION_CREATE", member)
        await fake.dispatch("INTERACTION_CREATE", admin)
        await fake.wait_for(lambda: fake.answers(member) and fake.answers(admin))
        assert fake.answers(member)[0].ephemeral
        assert fake.answers(admin)[0].embeds[0]["description"] == "Alert #1 set: XAG above 50"
        assert [s.created_by for s in await r.store.rules()] == ["33"]


async def test_one_alert_reaches_telegram_and_discord_once_each(
    tmp_path: Path, server: FakeDiscord
) -> None:
    fake = server
    from fake_telegram import FakeTelegram, plain

    from bot.telegram.adapter import TelegramBot
    from bot.telegram.pacing import Rates

    telegram_token, user = "123456789:AAF-fake_tickerbell_token", 4242
    clock = Clock()
    venue = ScriptedVenue(clock)
    venue.prices["BTC/USDT"] = 86_000.0
    async with (
        FakeTelegram(telegram_token, poll_cap=0.2) as tg,
        Store.open(tmp_path / "both.db", clock=clock) as store,
    ):
        delivery = Delivery(store, {}, clock=clock)
        service = make_service(store, delivery, venue, clock)
        commands = Commands(store, service.data)
        telegram = TelegramBot(
            token=telegram_token,
            base_url=tg.base_url,
            commands=commands,
            store=store,
            rates=Rates(1000, 1000, 60_000),
        )
        disc = build(
            token=TOKEN,
            commands=commands,
            store=store,
            db_path=tmp_path / "both.db",
            api_base_url=fake.base_url,
            gateway_url=fake.gateway_url,
        )
        for notifier in (telegram, disc):
            delivery.notifiers[notifier.name] = notifier
        try:
            await telegram.start()
            await disc.start()
            await until(lambda: fake.identified)
            tg.push("/alert BTC below 85000", chat_id=user)
            payload = fake.interaction(
                "alert",
                "add",
                options={"rule": "BTC below 85000"},
                channel_id=CHANNEL,
                guild_id=GUILD,
                permissions=ADMIN_PERMISSIONS,
            )
            await fake.dispatch("INTERACTION_CREATE", payload)
            await until(lambda: tg.texts(user) and fake.answers(payload))
            for price in (86_000.0, 84_000.0, 83_900.0, 83_800.0):
                venue.prices["BTC/USDT"] = price
                await service.poll("ccxt:binance")
                await delivery.drain()
                clock.tick()
            [telegram_alert] = [plain(t).splitlines()[0] for t in tg.texts(user)[1:]]
            assert telegram_alert.endswith("BTC fell below 85,000 (now 84,000)")  # its own layout
            posted = only(fake.posted(CHANNEL))
            assert posted.embeds[0]["description"] == "BTC fell below 85,000 (now 84,000)"
            assert posted.embeds[0]["color"] == RED.value
            assert await store.outbox_counts() == {"delivered": 2}
        finally:
            await disc.close()
            await telegram.close()


@pytest.mark.slow
async def test_tickerbell_run_serves_telegram_and_discord_together(
    tmp_path: Path, server: FakeDiscord
) -> None:
    """The composition root with both tokens: one alert reaches each platform exactly once.

    Discord is reached through DISCORD_API_BASE_URL and DISCORD_GATEWAY_URL alone.
    """
    import contextlib

    from fake_exchange import FakeExchange
    from fake_telegram import FakeTelegram, plain

    from tickerbell import app

    fake = server
    telegram_token, user = "123456789:AAF-fake_tickerbell_token", 4242
    db = tmp_path / "app.db"
    async with (
        FakeTelegram(telegram_token, poll_cap=0.2) as tg,
        FakeExchange() as exchange,
        Store.open(db) as probe,
    ):
        exchange.set_price("BTCUSDT", 86000.0, 86000.0)
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            TELEGRAM_BOT_TOKEN=telegram_token,
            TELEGRAM_API_BASE_URL=tg.base_url,
            DISCORD_BOT_TOKEN=TOKEN,
            DISCORD_API_BASE_URL=fake.base_url,
            DISCORD_GATEWAY_URL=fake.gateway_url,
            db=db,
            exchange_options={"binance": exchange.ccxt_options()},
            poll_crypto_seconds=0.2,
        )
        stop = asyncio.Event()
        running = asyncio.create_task(app.run(settings, stop=stop))
        try:
            await until(lambda: fake.identified and tg.count("getUpdates") > 0, timeout=15)
            tg.push("/alert BTC below 85000", chat_id=user)
            payload = fake.interaction(
                "alert", "add", options={"rule": "BTC below 85000"}, channel_id=CHANNEL,
                guild_id=GUILD, permissions=ADMIN_PERMISSIONS,
            )  # fmt: skip
            await fake.dispatch("INTERACTION_CREATE", payload)
            await until(lambda: tg.texts(user) and fake.answers(payload))

            async def armed() -> bool:
                stored = await probe.rules()
                return len(stored) == 2 and all(r.state and r.state.armed for r in stored)

            deadline = asyncio.get_running_loop().time() + 10
            while not await armed():
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.05)
            exchange.set_price("BTCUSDT", 84000.0, 84000.0)
            await until(lambda: len(tg.texts(user)) > 1 and fake.posted(CHANNEL), timeout=10)
            polls = exchange.count()
            await until(lambda: exchange.count() >= polls + 3)  # later ticks fire nothing
            [telegram_alert] = [plain(t).splitlines()[0] for t in tg.texts(user)[1:]]
            assert telegram_alert.endswith("BTC fell below 85,000 (now 84,000)")  # its own layout
            posted = only(fake.posted(CHANNEL))
            assert posted.embeds[0]["description"] == "BTC fell below 85,000 (now 84,000)"
            stop.set()
            assert await asyncio.wait_for(running, 15) == 0
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(running, 15)
        assert await probe.outbox_counts() == {"delivered": 2}
    assert discord.http.Route.BASE == DISCORD_API  # put back when the bot closed
    assert yarl.URL(DISCORD_GATEWAY) == DiscordWebSocket.DEFAULT_GATEWAY


def test_discord_urls_default_to_discords_own(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert defaults.discord_api_base_url == discord.http.Route.BASE == DISCORD_API
    assert defaults.discord_gateway_url == str(DiscordWebSocket.DEFAULT_GATEWAY) == DISCORD_GATEWAY
    monkeypatch.setenv("DISCORD_API_BASE_URL", "http://proxy.local:8080/api/v10")
    monkeypatch.setenv("DISCORD_GATEWAY_URL", "ws://proxy.local:8080/gateway")
    read = Settings(_env_file=None)  # type: ignore[call-arg]
    assert read.discord_api_base_url == "http://proxy.local:8080/api/v10"
    assert read.discord_gateway_url == "ws://proxy.local:8080/gateway"


# --- command sync ---


async def test_commands_sync_only_when_they_change(tmp_path: Path, fake: FakeDiscord) -> None:
    db = tmp_path / "sync.db"
    async with rig(db, sync_file=sync_file_for(db)):
        pass
    assert [scope for scope, _ in fake.syncs] == ["global"]
    names = sorted(c["name"] for c in fake.syncs[0][1])
    assert names == [
        "alert", "chart", "charts", "digest", "help", "mute", "rotation", "snooze", "status",
        "subscribe", "unmute", "unsubscribe", "webhook",
    ]  # fmt: skip
    alert = next(c for c in fake.syncs[0][1] if c["name"] == "alert")
    assert [o["name"] for o in alert["options"]] == ["add", "list", "remove"]
    assert (tmp_path / "sync.db.discord-commands.json").exists()

    async with rig(db, sync_file=sync_file_for(db)):
        pass
    assert len(fake.syncs) == 1  # same tree: no sync

    async with rig(db, start=False, sync_file=sync_file_for(db)) as r:

        @app_commands.command(name="ping")
        async def ping(interaction: discord.Interaction) -> None:
            """Check the bot answers."""

        r.bot.tree.add_command(ping)
        await r.bot.start()
    assert len(fake.syncs) == 2 and "ping" in [c["name"] for c in fake.syncs[1][1]]

    async with rig(db, sync_file=sync_file_for(db), guild_id=GUILD):
        pass
    assert [scope for scope, _ in fake.syncs] == ["global", "global", str(GUILD)]
    assert len(fake.syncs[2][1]) == 13

    async with rig(db, start=False, sync_file=sync_file_for(db)) as r:
        await r.bot.client.login(TOKEN)
        assert await r.bot.sync(force=True)  # what `tickerbell discord-sync` does
    assert len(fake.syncs) == 4


async def test_a_failed_sync_does_not_stop_the_bot(
    tmp_path: Path, fake: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with rig(tmp_path / "fs.db", guild_id=1234) as r:  # a server the bot is not in
        assert "could not sync the slash commands" in caplog.text
        chat = await r.store.chat("discord", str(CHANNEL), "guild")
        assert await r.bot.send(chat, an_alert()) is not None


async def test_app_permissions_in_the_fake_are_what_the_readme_asks_for() -> None:
    wanted = discord.Permissions(
        view_channel=True, send_messages=True, embed_links=True, attach_files=True
    )
    assert discord.Permissions(APP_PERMISSIONS) >= wanted


async def test_discord_sync_pushes_on_demand(tmp_path: Path, server: FakeDiscord) -> None:
    fake, db, out = server, tmp_path / "cli.db", io.StringIO()
    url = fake.base_url  # DISCORD_API_BASE_URL
    assert await discord_sync(TOKEN, db_path=db, api_base_url=url, out=out) == 0
    assert await discord_sync(TOKEN, db_path=db, api_base_url=url, out=out) == 0  # pushed again
    assert (
        await discord_sync(
            TOKEN, db_path=db, guild_id=GUILD, clear_global=True, api_base_url=url, out=out
        )
        == 0
    )
    assert discord.http.Route.BASE == DISCORD_API  # put back after each run
    assert [(scope, len(body)) for scope, body in fake.syncs] == [
        ("global", 13),
        ("global", 13),
        (str(GUILD), 13),
        ("global", 0),
    ]
    assert "synced to server 5550001 as Tickerbell" in out.getvalue()
    assert "global slash commands removed" in out.getvalue()
    async with rig(db, sync_file=sync_file_for(db), guild_id=GUILD, api_base_url=url):
        pass
    assert len(fake.syncs) == 4  # the bot's start-up finds them current

    assert await discord_sync("wrong-token", db_path=db, api_base_url=url, out=out) == 1
    assert "the bot token was refused" in out.getvalue()
    assert await discord_sync(TOKEN, db_path=db, guild_id=1234, api_base_url=url, out=out) == 1
    assert "is the bot in server 1234" in out.getvalue()
    nobody = "http://127.0.0.1:9/api/v10"  # nothing listens there
    assert await discord_sync(TOKEN, db_path=db, api_base_url=nobody, out=out) == 1
    assert "discord: cannot reach Discord: ClientConnectorError" in out.getvalue()


async def test_the_token_never_reaches_a_log(tmp_path: Path, fake: FakeDiscord) -> None:
    """Every line at every level, tracebacks included: a refused login, gateway failures, sends."""
    with every_log_line() as logged:
        fake.token = "a-token-reset-in-the-portal"
        async with rig(tmp_path / "log.db", gateway=True) as r:
            await until(lambda: fake.logins() >= 2)  # refused (401), retried
            fake.token = TOKEN
            await until(r.bot.listening)

            fake.gateway_down = True  # the gateway drops and refuses to come back for a while
            await fake.drop_gateway()
            await until(lambda: fake.gateway_refusals >= 2)
            fake.gateway_down = False
            await until(r.bot.listening)
            fake.token = "a-token-reset-in-the-portal"  # the gateway refuses the token (4004)
            await fake.drop_gateway()
            await until(lambda: not r.bot.listening())
            fake.token = TOKEN
            await until(r.bot.listening)

            chat = await r.store.chat("discord", str(CHANNEL), "guild")
            fake.fail_channel(CHANNEL, Fault.RATE_LIMITED, retry_after=0.05)
            assert await r.bot.send(chat, an_alert()) is not None
            fake.fail_channel(CHANNEL, Fault.UNAVAILABLE)
            with pytest.raises(DeliveryError):
                await r.bot.send(chat, an_alert())
    text = logged()
    for seen in (
        "refused the bot token",
        "gateway connection lost",
        "gateway connected again",
        "Traceback",
        "rate limited",
        "discord.gateway",
    ):
        assert seen in text
    assert TOKEN not in text
    assert TOKEN.split(".")[-1] not in text


async def test_a_refused_token_is_logged_once_and_retried_slowly(
    tmp_path: Path, fake: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    fake.token = "a-token-reset-in-the-portal"
    async with rig(tmp_path / "bad.db", gateway=True) as r:
        assert not r.bot.listening()
        await until(lambda: fake.logins() >= 3)
        assert fake.syncs == [] and not r.bot.listening()
        [error] = worse_than_info(caplog)
        assert "Discord refused the bot token (401 Unauthorized): check DISCORD_BOT_TOKEN" in error
        assert "retrying every 0.2s" in error  # the cap, at once: no point in hurrying
        assert all(r.levelno == logging.ERROR for r in caplog.records if r.levelno > logging.INFO)

        fake.token = TOKEN  # the token is good again (or the operator fixed it)
        await until(r.bot.listening)
        assert len(fake.syncs) == 1
        assert len(worse_than_info(caplog)) == 1


@pytest.mark.parametrize("outage", ["connection refused", "503"])
async def test_start_returns_while_discord_is_down_and_connects_when_it_is_back(
    tmp_path: Path, fake: FakeDiscord, caplog: pytest.LogCaptureFixture, outage: str
) -> None:
    caplog.set_level(logging.DEBUG)
    sessions = open_sessions()
    if outage == "503":
        fake.rest_down = True
    else:
        await fake.unplug()
    async with rig(tmp_path / "down.db", gateway=True) as r:
        assert not r.bot.listening()
        chat = await r.store.chat("discord", str(CHANNEL), "guild")
        with pytest.raises(DeliveryError) as caught:
            await r.bot.send(chat, an_alert())
        assert not caught.value.permanent and "not connected" in str(caught.value)

        def tries() -> int:
            return sum("login failed" in m for m in messages(caplog, logging.DEBUG))

        await until(lambda: tries() >= 3)  # it keeps trying
        assert not r.bot.listening() and fake.syncs == []
        assert len(open_sessions() - sessions) <= 1  # a failed login's session is closed

        if outage == "503":
            fake.rest_down = False
        else:
            await fake.plug_in()
        await until(r.bot.listening)
        assert len(fake.syncs) == 1
        assert await r.bot.send(chat, an_alert()) is not None
        assert only(fake.posted(CHANNEL)).embeds[0]["title"] == "XAG"
        [warning] = worse_than_info(caplog)
        assert warning.startswith("bot.discord.adapter: discord: cannot log in (")
        [logged_in] = [m for m in messages(caplog, logging.INFO) if "logged in" in m]
        assert logged_in.startswith("discord: logged in as Tickerbell after ")
    assert open_sessions() <= sessions
    gc.collect()
    assert "Unclosed" not in caplog.text
    assert "was destroyed but it is pending" not in caplog.text


async def test_a_replica_receives_only_between_receive_and_stop_receiving(
    tmp_path: Path, fake: FakeDiscord
) -> None:
    """On PostgreSQL the gateway is the "discord" role's: a replica logs in to send, connects
    the gateway only while it holds the role, and sends over REST either way."""
    async with rig(tmp_path / "role.db", gateway=False) as r:
        chat = await r.store.chat("discord", str(CHANNEL), "guild")
        assert await r.bot.send(chat, an_alert()) is not None
        assert fake.identified == [] and not r.bot.listening()
        await r.bot.receive()
        await until(r.bot.listening)
        await r.bot.stop_receiving()
        assert not r.bot.listening()
        await until(lambda: fake.open_gateways() == 0)
        assert await r.bot.send(chat, an_alert(price=51.0)) is not None
        await r.bot.receive()  # taken again
        await until(r.bot.listening)
        assert len(fake.identified) == 2 and len(fake.posted(CHANNEL)) == 2


@pytest.mark.parametrize("close_code", [4000, 4004])
async def test_the_gateway_comes_back_after_an_outage(
    tmp_path: Path, fake: FakeDiscord, caplog: pytest.LogCaptureFixture, close_code: int
) -> None:
    """A drop discord.py would resume (4000) or give up on (4004), then refused reconnects."""
    caplog.set_level(logging.INFO)
    async with rig(tmp_path / "gw.db", gateway=True) as r:
        await until(r.bot.listening)
        fake.gateway_down = True
        await fake.drop_gateway(close_code)
        await until(lambda: not r.bot.listening())
        await until(lambda: fake.gateway_refusals >= 3)
        assert not r.bot.listening()
        chat = await r.store.chat("discord", str(CHANNEL), "guild")
        assert await r.bot.send(chat, an_alert()) is not None  # alerts still go out over REST

        fake.gateway_down = False
        await until(r.bot.listening)
        payload = fake.interaction(
            "status", options={"symbol": "BTC"}, channel_id=CHANNEL, guild_id=GUILD
        )
        await fake.dispatch("INTERACTION_CREATE", payload)
        await fake.wait_for(lambda: fake.answers(payload))
        assert only(fake.answers(payload)).embeds[0]["title"] == "BTC"
        [warning] = worse_than_info(caplog)
        assert "discord: gateway connection lost (" in warning
        assert (
            messages(caplog, logging.INFO).count(
                "discord: gateway connected again; slash commands are received"
            )
            == 1
        )

        await r.bot.stop()
        assert not r.bot.listening()


# --- buttons under alerts ---


async def deliver_alert(r: Rig, fake: FakeDiscord, channel: int, kind: str) -> Posted:
    """A rule `XAG above 50` of the channel and one alert of it, delivered; the message."""
    chat = await r.store.chat("discord", str(channel), kind)
    rule = await r.store.add_rule(chat.id, "XAG above 50", "test", limit=50)
    await r.store.commit_tick({}, [(rule, chat.id, an_alert())])
    await r.delivery.drain()
    return fake.posted(channel)[-1]


def labels(fake: FakeDiscord, message: Posted) -> list[str]:
    return [label for label, _ in fake.buttons(message.id)]


async def test_buttons_in_a_server_admins_change_once_members_chart(
    tmp_path: Path, fake: FakeDiscord
) -> None:
    async with rig(tmp_path / "b.db", gateway=True) as r:
        await until(r.bot.listening)
        now = T0
        r.service.data.market.restore(
            [Quote("XAG", 48 + i / 5, now - timedelta(minutes=40 - i)) for i in range(40)]
        )
        message = await deliver_alert(r, fake, CHANNEL, "guild")
        assert labels(fake, message) == ["Snooze 1h", "Mute rule", "Remove", "Chart"]
        assert all("XAG" not in custom_id for _, custom_id in fake.buttons(message.id))
        refused = fake.press(message, "Remove", guild_id=GUILD, user_id=22)
        await fake.dispatch("INTERACTION_CREATE", refused)
        await fake.wait_for(lambda: fake.answers(refused))
        [answer] = fake.answers(refused)
        assert (
            answer.type == 4
            and answer.ephemeral
            and "only those with Manage Server" in answer.embeds[0]["description"]
        )
        assert len(await r.store.rules()) == 1
        # a double press by an admin: one snooze, one "done already"
        presses = [
            fake.press(
                message, "Snooze 1h", guild_id=GUILD, user_id=33, permissions=ADMIN_PERMISSIONS
            )
            for _ in range(2)
        ]
        for press in presses:
            await fake.dispatch("INTERACTION_CREATE", press)
        await fake.wait_for(lambda: all(fake.answers(p) for p in presses))
        [updated] = [fake.answers(p)[0] for p in presses if fake.answers(p)[0].type == 7]
        [again] = [fake.answers(p)[0] for p in presses if fake.answers(p)[0].type == 4]
        assert updated.embeds[0]["description"].endswith("\n*Snoozed until 13:00 UTC by @user33*")
        assert again.ephemeral and "Snooze 1h: done already." in again.embeds[0]["description"]
        assert labels(fake, message) == ["Mute rule", "Remove", "Chart"]
        [rule] = await r.store.rules()
        assert rule.snoozed_until == T0 + timedelta(hours=1)
        # tampered data is refused and changes nothing
        remove = dict(fake.buttons(message.id))["Remove"]
        changed = remove[:-1] + ("x" if remove[-1] != "x" else "y")  # its last character changed
        forged = fake.press(message, "Remove", guild_id=GUILD, user_id=33,
                            permissions=ADMIN_PERMISSIONS, custom_id=changed)  # fmt: skip
        await fake.dispatch("INTERACTION_CREATE", forged)
        await fake.wait_for(lambda: fake.answers(forged))
        assert "does not check out" in fake.answers(forged)[0].embeds[0]["description"]
        assert len(await r.store.rules()) == 1
        # the chart is for everyone: the alert gets it, and the button goes
        chart = fake.press(message, "Chart", guild_id=GUILD, user_id=22)
        await fake.dispatch("INTERACTION_CREATE", chart)
        await fake.wait_for(lambda: fake.answers(chart))
        [shown] = fake.answers(chart)
        assert shown.type == 7 and shown.files[0][0] == "chart.png"
        assert shown.files[0][1].startswith(b"\x89PNG")
        assert shown.embeds[0]["image"]["url"] == "attachment://chart.png"
        assert labels(fake, message) == ["Mute rule", "Remove"]


async def test_a_slow_button_is_deferred_then_its_message_edited(
    tmp_path: Path, fake: FakeDiscord
) -> None:
    async with rig(tmp_path / "d.db", gateway=True, defer_after=0.0) as r:
        await until(r.bot.listening)
        message = await deliver_alert(r, fake, OTHER, "private")
        press = fake.press(message, "Mute rule")  # a DM: the one who set it may change it
        await fake.dispatch("INTERACTION_CREATE", press)
        await fake.wait_for(lambda: fake.answers(press) and fake.edits)
        assert [c.type for c in fake.answers(press)] == [6]  # "the message will change"
        assert (
            fake.edits[-1]
            .embeds[0]["description"]
            .endswith("\n*Muted by @user42 (/snooze alert: 1 duration: off to resume)*")
        )
        assert labels(fake, message) == ["Remove", "Chart"]
        [rule] = await r.store.rules()
        assert rule.snoozed_until is not None and rule.snoozed_until.year == 9999


async def test_remove_after_a_chart_with_no_history_keeps_the_chart_button(
    tmp_path: Path, fake: FakeDiscord
) -> None:
    """Chart pressed before there is any history to draw: the answer says so and the button
    stays; a Remove after it must not take that Chart button away."""
    async with rig(tmp_path / "nc.db", gateway=True) as r:
        await until(r.bot.listening)
        message = await deliver_alert(r, fake, OTHER, "private")
        chart = fake.press(message, "Chart")
        await fake.dispatch("INTERACTION_CREATE", chart)
        await fake.wait_for(lambda: fake.answers(chart))
        assert "no price history" in fake.answers(chart)[0].embeds[0]["description"]
        assert labels(fake, message) == ["Snooze 1h", "Mute rule", "Remove", "Chart"]
        remove = fake.press(message, "Remove")
        await fake.dispatch("INTERACTION_CREATE", remove)
        await fake.wait_for(lambda: fake.answers(remove))
        assert await r.store.rules() == []
        assert labels(fake, message) == ["Chart"]


# --- the daily digest ---


async def test_digest_slash_command_sets_refuses_and_shows(
    tmp_path: Path, fake: FakeDiscord
) -> None:
    async with rig(tmp_path / "dg.db") as r:

        async def digest(user: int = 42, **options: str) -> tuple[bool, str]:
            rights = ADMIN_PERMISSIONS if user == 42 else MEMBER_PERMISSIONS
            payload = fake.interaction(
                "digest", options=options, channel_id=CHANNEL, guild_id=GUILD, user_id=user,
                permissions=rights,
            )  # fmt: skip
            await invoke(r.bot, payload)
            answer = only(fake.answers(payload))
            return answer.ephemeral, answer.embeds[0]["description"]

        private, said = await digest(time="08:00", zone="Europe/Londn")
        assert private and "unknown time zone 'Europe/Londn'" in said
        assert "e.g. /digest time: 08:00 zone: Europe/London" in said
        private, said = await digest(time="08:00")
        assert private and said.startswith(
            "⚠️ usage: /digest time: HH:MM zone: ZONE [days: weekdays] or /digest time: off"
        )
        private, said = await digest(user=22, time="08:00", zone="Europe/London")
        assert private and "only those with Manage Server or the admin role change alerts" in said
        assert await r.store.digests() == []
        private, said = await digest(time="08:00", zone="europe/london", days="weekdays")
        assert not private and said.startswith(
            "Daily digest set: 08:00 Europe/London, on weekdays (Monday to Friday)."
        )
        private, said = await digest(user=22)
        assert not private and said.startswith("Daily digest: 08:00 Europe/London")
        assert (await digest(time="off"))[1] == "Daily digest off."


async def test_a_digest_goes_from_the_outbox_as_embeds_with_the_chart(
    tmp_path: Path, fake: FakeDiscord
) -> None:
    async with rig(tmp_path / "dp.db") as r:
        r.delivery.digests = Digests(r.store, r.service.data, ChartCache(), Clock())
        r.venue.prices.update({"ETH/USDT": 4000.0, "XAU/USD": 4100.0, "XAG/USD": 52.0})
        for native, price in r.venue.prices.items():  # synthetic daily history, flat
            start = T0.date() - timedelta(days=60)
            days = [start + timedelta(days=i) for i in range(60)]
            r.venue.history[native] = [Candle(d, price, price, price, price) for d in days]
        chat = await r.store.chat("discord", str(CHANNEL), "guild")
        await r.store.set_digest(chat.id, setting("08:00", "Europe/London"))
        assert await r.store.enqueue_digest(chat.id, DigestDue(T0.date(), T0))
        await r.delivery.drain()
        posted = only(fake.posted(CHANNEL))
        embed = only(posted.embeds)
        assert embed["title"] == "Daily digest, Mon 2 Mar 2026"
        assert "No alerts here in the 24 hours before" in embed["description"]
        assert "```" in embed["description"]  # the rotation table
        assert embed["image"]["url"] == "attachment://chart.png"
        assert [name for name, _ in posted.files] == ["chart.png"]
        assert fake.buttons(posted.id) == []  # a digest has no buttons
        assert await r.store.outbox_counts() == {"delivered": 1}
