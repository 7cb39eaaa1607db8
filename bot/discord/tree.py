"""The slash command tree: discord.py's client and `CommandTree`, and the commands, each
calling one typed operation of the command layer with its options."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import discord
from discord import app_commands
from discord.app_commands import Choice

from bot import digest as digests
from bot.charts import RANGES
from bot.commands import Caller, Commands
from bot.discord.render import CHOICES, SORRY, SYMBOLS, reply_embeds, rule_choices, symbol_choices
from bot.replies import Reply
from bot.results import Command, Result

log = logging.getLogger(__name__)


class Answering(Protocol):
    """What the slash commands answer through (bot.discord.answers.SlashAnswers)."""

    @property
    def symbols(self) -> Sequence[str]:
        """The symbols autocomplete offers."""
        ...

    async def answer(self, interaction: Interaction, call: Call, posts_here: bool = False) -> None:
        """Run `call` for the interaction's caller and answer with its result."""
        ...

    async def alert_choices(self, interaction: Interaction, current: str) -> list[Choice[str]]:
        """The channel's alerts matching what the user typed."""
        ...

    async def press(self, interaction: Interaction) -> None:
        """A button under an alert was pressed."""
        ...


class TickerClient(discord.Client):
    """discord.py's client, carrying what its slash commands answer through (`answers`) and
    whom to tell of gateway readiness and loss (`on_gateway`)."""

    def __init__(
        self,
        answers: Answering | None = None,
        on_gateway: Callable[[str], None] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.answers = answers
        self.on_gateway = on_gateway
        self.gateway_only = False  # while True, close() drops only the gateway connection

    async def close(self) -> None:
        """Close the client; under `gateway_only`, drop just the gateway connection.

        `connect(reconnect=False)` closes the whole client (the HTTP session too) when the
        gateway fails; the adapter reconnects the gateway itself and keeps sending over REST.
        """
        if not self.gateway_only:
            await super().close()
        elif self.ws is not None and self.ws.open:
            await self.ws.close(code=1000)

    async def on_interaction(self, interaction: Interaction) -> None:
        """Buttons under alerts (component interactions); slash commands go to the tree."""
        if interaction.type is discord.InteractionType.component and self.answers is not None:
            await self.answers.press(interaction)

    def dispatch(self, event: str, /, *args: Any, **kwargs: Any) -> None:
        """discord.py's dispatch; the adapter also hears of gateway readiness and loss."""
        super().dispatch(event, *args, **kwargs)
        if self.on_gateway is not None and event in ("connect", "resumed", "disconnect"):
            self.on_gateway(event)


Interaction = discord.Interaction[TickerClient]
Call = Callable[[Commands, Caller], Awaitable[Result]]  # one typed operation, for a caller


class CommandTree(app_commands.CommandTree[TickerClient]):
    """The tree, with one error handler for what the commands did not catch themselves."""

    async def on_error(self, interaction: Interaction, error: app_commands.AppCommandError) -> None:
        """Log it; answer the user if nobody has (a stale command after a change, a bug)."""
        if isinstance(error, app_commands.CommandNotFound | app_commands.CommandSignatureMismatch):
            log.warning("discord: %s (commands not synced since they changed?)", error)
        else:
            log.error("discord: slash command failed", exc_info=error)
        if interaction.type is discord.InteractionType.application_command:
            with contextlib.suppress(discord.HTTPException):
                if not interaction.response.is_done():
                    embed = reply_embeds(Reply((SORRY,), ok=False))[0]
                    await interaction.response.send_message(embed=embed, ephemeral=True)


def make_tree(client: TickerClient, guild_id: int | None = None) -> CommandTree:
    """The slash commands on `client`; with `guild_id` they are also that server's own."""
    tree = CommandTree(client)
    for command in _slash_commands():
        tree.add_command(command)
    if guild_id is not None:
        tree.copy_global_to(guild=discord.Object(id=guild_id))
    return tree


async def _answer(interaction: Interaction, call: Call, posts_here: bool = False) -> None:
    answers = interaction.client.answers
    if answers is not None:
        await answers.answer(interaction, call, posts_here=posts_here)


async def _symbols(interaction: Interaction, current: str) -> list[Choice[str]]:
    answers = interaction.client.answers
    return symbol_choices(current, answers.symbols if answers else SYMBOLS)


async def _subscribable(interaction: Interaction, current: str) -> list[Choice[str]]:
    choices = [Choice(name="all", value="all")] if "all".startswith(current.lower()) else []
    return [*choices, *await _symbols(interaction, current)][:CHOICES]


async def _rules(interaction: Interaction, current: str) -> list[Choice[str]]:
    return rule_choices(current)


async def _alert_ids(interaction: Interaction, current: str) -> list[Choice[str]]:
    answers = interaction.client.answers
    return await answers.alert_choices(interaction, current) if answers else []


async def _snoozable(interaction: Interaction, current: str) -> list[Choice[str]]:
    return [c for c in await _alert_ids(interaction, current) if not c.value.startswith("all")]


async def _time_zones(interaction: Interaction, current: str) -> list[Choice[str]]:
    return [Choice(name=zone, value=zone) for zone in digests.zone_choices(current, CHOICES)]


def _slash_commands() -> list[app_commands.Command[Any, Any, Any] | app_commands.Group]:
    """Fresh command objects (a command belongs to one tree)."""
    symbol_help = "BTC, ETH, XAU (gold), XAG (silver), binance:SOL/USDT, yf:^GSPC"

    @app_commands.command(name="status")
    @app_commands.describe(symbol=symbol_help)
    @app_commands.autocomplete(symbol=_symbols)
    async def status(interaction: Interaction, symbol: str) -> None:
        """Price, day change, spread and this channel's nearest alert levels."""
        await _answer(interaction, lambda cmds, who: cmds.status(who, symbol))

    alert = app_commands.Group(name="alert", description="Add, list and remove price alerts")

    @alert.command(name="add")
    @app_commands.describe(rule="e.g. XAG above 50, BTC down 5% 1d, XAU/XAG below 80")
    @app_commands.autocomplete(rule=_rules)
    async def add(interaction: Interaction, rule: str) -> None:
        """Add an alert for this channel."""
        await _answer(interaction, lambda cmds, who: cmds.add_alert(who, rule), posts_here=True)

    @alert.command(name="list")
    async def list_(interaction: Interaction) -> None:
        """This channel's alerts with their ids."""
        await _answer(interaction, lambda cmds, who: cmds.list_alerts(who))

    @alert.command(name="remove")
    @app_commands.describe(alert="The alert's id from /alert list, or: all")
    @app_commands.autocomplete(alert=_alert_ids)
    async def remove(interaction: Interaction, alert: str) -> None:
        """Remove an alert by id (all: every alert here, after a confirmation)."""
        await _answer(interaction, lambda cmds, who: cmds.remove(who, alert))

    @app_commands.command(name="mute")
    @app_commands.describe(duration="How long, e.g. 30m, 2h, 1d; empty: until /unmute")
    async def mute(interaction: Interaction, duration: str | None = None) -> None:
        """Pause this channel's alerts."""
        await _answer(interaction, lambda cmds, who: cmds.mute(who, duration))

    @app_commands.command(name="unmute")
    async def unmute(interaction: Interaction) -> None:
        """Resume this channel's alerts."""
        await _answer(interaction, lambda cmds, who: cmds.unmute(who))

    @app_commands.command(name="snooze")
    @app_commands.describe(
        alert="The alert's id from /alert list",
        duration="How long, e.g. 30m, 1h, 1d; forever: until off; off: on again now",
    )
    @app_commands.autocomplete(alert=_snoozable)
    async def snooze(interaction: Interaction, alert: str, duration: str) -> None:
        """Quiet one alert for a while; it then waits for a fresh crossing."""
        await _answer(interaction, lambda cmds, who: cmds.snooze(who, alert, duration))

    @app_commands.command(name="subscribe")
    @app_commands.describe(symbol=f"{symbol_help}, or all")
    @app_commands.autocomplete(symbol=_subscribable)
    async def subscribe(interaction: Interaction, symbol: str) -> None:
        """Follow a symbol's notable moves in this channel."""
        await _answer(interaction, lambda cmds, who: cmds.subscribe(who, symbol), posts_here=True)

    @app_commands.command(name="unsubscribe")
    @app_commands.describe(symbol="The symbol to stop following; empty: all of them")
    @app_commands.autocomplete(symbol=_subscribable)
    async def unsubscribe(interaction: Interaction, symbol: str | None = None) -> None:
        """Stop following notable moves."""
        await _answer(interaction, lambda cmds, who: cmds.unsubscribe(who, symbol))

    @app_commands.command(name="chart")
    @app_commands.rename(span="range")
    @app_commands.describe(symbol=symbol_help, span="How far back (default 1m)")
    @app_commands.choices(span=[Choice(name=span, value=span) for span in RANGES])
    @app_commands.autocomplete(symbol=_symbols)
    async def chart(interaction: Interaction, symbol: str, span: str = "1m") -> None:
        """A price chart with this channel's alert levels on it."""
        await _answer(interaction, lambda cmds, who: cmds.chart(who, symbol, span))

    @app_commands.command(name="rotation")
    async def rotation(interaction: Interaction) -> None:
        """Gold, silver, BTC and ETH side by side."""
        await _answer(interaction, lambda cmds, who: cmds.rotation(who))

    @app_commands.command(name="charts")
    @app_commands.describe(setting="on: alerts here come with a chart; off: text only")
    @app_commands.choices(setting=[Choice(name="on", value="on"), Choice(name="off", value="off")])
    async def charts(interaction: Interaction, setting: str) -> None:
        """Charts with this channel's alerts, on or off."""
        on = setting.lower()

        async def call(cmds: Commands, who: Caller) -> Result:
            if on not in ("on", "off"):
                return await cmds.invalid(who, cmds.set_charts, Command.CHARTS)
            return await cmds.set_charts(who, on == "on")

        await _answer(interaction, call)

    @app_commands.command(name="digest")
    @app_commands.rename(at="time")
    @app_commands.describe(
        at="Local time HH:MM, e.g. 08:00, or off; leave both empty to see the setting",
        zone="IANA time zone, e.g. Europe/London",
        days="Every day (the default) or Monday to Friday",
    )
    @app_commands.choices(
        days=[Choice(name="every day", value="daily"), Choice(name="weekdays", value="weekdays")]
    )
    @app_commands.autocomplete(zone=_time_zones)
    async def digest(
        interaction: Interaction,
        at: str | None = None,
        zone: str | None = None,
        days: str = "daily",
    ) -> None:
        """A daily digest here: gold, silver, BTC and ETH, the day's alerts and a chart."""

        async def call(cmds: Commands, who: Caller) -> Result:
            if at is None and zone is None:
                return await cmds.show_digest(who)
            if zone is None and (at or "").strip().lower() == "off":
                return await cmds.digest_off(who)
            if at is None or zone is None:
                return await cmds.invalid(who, cmds.set_digest, Command.DIGEST)
            return await cmds.set_digest(who, at, zone, days)

        await _answer(interaction, call, posts_here=True)

    webhook = app_commands.Group(
        name="webhook", description="Post this channel's alerts to a URL; take TradingView's"
    )

    @webhook.command(name="add")
    @app_commands.describe(url="A Slack or Discord incoming-webhook URL, or your own https URL")
    async def webhook_add(interaction: Interaction, url: str) -> None:
        """Post this channel's alerts to a URL too (Slack, Discord or signed JSON)."""
        await _answer(interaction, lambda cmds, who: cmds.add_webhook(who, url))

    @webhook.command(name="list")
    async def webhook_list(interaction: Interaction) -> None:
        """This channel's webhooks with their ids."""
        await _answer(interaction, lambda cmds, who: cmds.list_webhooks(who))

    @webhook.command(name="remove")
    @app_commands.describe(webhook="The webhook's id from /webhook list")
    async def webhook_remove(interaction: Interaction, webhook: str) -> None:
        """Stop posting this channel's alerts to one webhook."""
        await _answer(interaction, lambda cmds, who: cmds.remove_webhook(who, webhook))

    @webhook.command(name="in")
    @app_commands.describe(action="show (default), new: a new URL, off: stop taking posts")
    @app_commands.choices(action=[Choice(name=a, value=a) for a in ("show", "new", "off")])
    async def webhook_in(interaction: Interaction, action: str = "show") -> None:
        """The URL TradingView alerts post to, to arrive in this channel."""
        which = "" if action == "show" else action
        await _answer(interaction, lambda cmds, who: cmds.inbound(who, which), posts_here=True)

    @app_commands.command(name="help")
    async def help_(interaction: Interaction) -> None:
        """The commands and the rule language with examples."""
        await _answer(interaction, lambda cmds, who: cmds.help(who))

    return [
        status,
        alert,
        mute,
        unmute,
        snooze,
        subscribe,
        unsubscribe,
        chart,
        rotation,
        charts,
        digest,
        webhook,
        help_,
    ]
