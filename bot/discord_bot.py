"""The Discord adapter: slash commands in, alerts out, over one discord.py `Client`.

Slash commands (`/status`, `/alert add|list|remove`, `/mute`, `/unmute`, `/subscribe`,
`/unsubscribe`, `/chart`, `/rotation`, `/charts`, `/help`) are a real `CommandTree`; each one
calls the command layer's typed operation with its options (`/alert add rule:"XAG above 50"`
-> `Commands.add_alert(caller, "XAG above 50")`) and answers with the result in words, written
the Discord way (`/alert list`, not `/alerts`), as an embed (green when ok, red when not;
refusals and errors only to the caller). Alerts go to the channel where the rule was made.

Commands reach Discord only when synced, and syncing is deliberate: at start-up only when the
tree's JSON differs from the last sync (a hash kept in a small file beside the database), or on
demand with `tickerbell discord-sync`. Receiving interactions needs the gateway; sending needs
only REST.

Discord being down never stops the bot: `start()` logs in, syncs and connects the gateway in a
background task that retries with exponential backoff (one warning per outage, one ERROR when
the token is refused), and the gateway is supervised the same way once connected. `listening()`
says whether slash commands can arrive right now.

It is also the "discord" notifier of the delivery worker. discord.py's own rate-limit handling
stays on; on top of it `send` maps 403/404 to a permanent `DeliveryError` (the channel is
deactivated and never written to again until someone uses a command there), 5xx and network
failures to a transient one (and holds Discord sends back for a short while), and it counts
every invalid answer (401, 403, 429) so as never to approach Discord's ban of 10,000 in ten
minutes: past a conservative limit Discord delivery pauses and says so in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.app_commands import Choice
from discord.gateway import DiscordWebSocket

from alerts import rules
from alerts.models import Alert, Direction
from bot import render, replies
from bot.charts import RANGES
from bot.commands import Caller, Commands
from bot.notifier import DeliveryError
from bot.replies import Reply, Spelling
from bot.results import Command, Result
from feeds.backoff import Backoff
from feeds.catalogue import COMMON_CRYPTO
from storage.db import Chat, Store

log = logging.getLogger(__name__)

PLATFORM = "discord"
SYMBOLS: tuple[str, ...] = tuple(dict.fromkeys(("XAU", "XAG", "BTC", "ETH", *COMMON_CRYPTO)))
CHART = "chart.png"

GREEN = discord.Colour(0x2ECC71)
RED = discord.Colour(0xE74C3C)
AMBER = discord.Colour(0xF39C12)
BLURPLE = discord.Colour(0x5865F2)
COLOURS = {Direction.UP: GREEN, Direction.DOWN: RED, Direction.WIDER: AMBER}

TITLE_LIMIT, DESCRIPTION_LIMIT, FOOTER_LIMIT = 256, 4096, 2048
CHOICES = 25  # Discord shows at most 25 autocomplete choices of at most 100 characters
CHOICE_LENGTH = 100
DEFER_AFTER = 2.0  # Discord wants a first answer within 3 s
INVALID_LIMIT = 1000  # Discord bans at 10,000 invalid requests in 10 minutes
INVALID_WINDOW = 600.0
OUTAGE_PAUSE = 15.0
MAX_RATELIMIT_WAIT = 30.0
RETRY_BASE, RETRY_CAP = 1.0, 60.0  # reconnecting to Discord: 1 s doubling up to a minute
LOGIN_TIMEOUT = 30.0  # discord.py itself retries a 502 for up to 25 s
START_WAIT = 5.0  # start() waits this long at most for the first login attempt

SORRY = "Sorry, something went wrong on my side. Please try again in a minute."
STOPPING = "Tickerbell is restarting; please try again in a minute."
CANNOT_POST = (
    "I can't post in this channel, so its alerts can't arrive: give me View Channel, "
    "Send Messages, Embed Links and Attach Files here."
)

# How Discord writes the commands a reply points to: three of them live in the /alert group.
SPELLING = Spelling(
    add="/alert add",
    list="/alert list",
    remove="/alert remove",
    confirm_add="/alert add {rule} confirm",
    confirm_remove_all="/alert remove all confirm",
)


# --- rendering ---


def reply_embeds(reply: Reply, limit: int = DESCRIPTION_LIMIT) -> list[discord.Embed]:
    """The reply as embeds, one per message: title, lines, the table in a code block."""
    colour = GREEN if reply.ok else RED
    lines = [discord.utils.escape_markdown(line) for line in reply.lines]
    if not reply.ok and lines:
        lines[0] = "⚠️ " + lines[0]
    rows = render.plain(Reply((), table=reply.table)).split("\n") if reply.table else []
    rows = [row.replace("`", "ˋ") for row in rows]
    pages = ["\n".join(group) for group in _pack(lines, limit)]
    pages += ["```\n" + "\n".join(group) + "\n```" for group in _pack(rows, limit - 8)]
    merged: list[str] = []
    for page in pages:
        if merged and len(merged[-1]) + 1 + len(page) <= limit:
            merged[-1] += "\n" + page
        else:
            merged.append(page)
    embeds = [discord.Embed(description=page or None, colour=colour) for page in merged or [""]]
    if reply.title:
        embeds[0].title = _cut(reply.title, TITLE_LIMIT)
    return embeds


def alert_embed(alert: Alert) -> discord.Embed:
    """An alert as an embed: coloured by direction, the symbol, the message, rule and time."""
    embed = discord.Embed(
        title=_cut(alert.symbol, TITLE_LIMIT),
        description=_cut(discord.utils.escape_markdown(alert.message), DESCRIPTION_LIMIT),
        colour=COLOURS.get(alert.direction, BLURPLE),
        timestamp=alert.time,
    )
    embed.set_footer(text=_cut(alert.rule_text, FOOTER_LIMIT))
    return embed


def _pack(items: list[str], limit: int) -> list[list[str]]:
    """Consecutive items in groups whose newline-joined length stays within `limit`."""
    groups: list[list[str]] = []
    size = 0
    for raw in items:
        item = _cut(raw, limit)
        if groups and size + 1 + len(item) <= limit:
            groups[-1].append(item)
            size += 1 + len(item)
        else:
            groups.append([item])
            size = len(item)
    return groups


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- autocomplete ---


def symbol_choices(current: str, symbols: Sequence[str] = SYMBOLS) -> list[Choice[str]]:
    """Known symbols matching what the user typed (prefix first), led by the text itself."""
    typed = current.strip()[:CHOICE_LENGTH]
    wanted = typed.upper()
    names = [s for s in symbols if s.startswith(wanted)]
    names += [s for s in symbols if wanted in s and not s.startswith(wanted)]
    if typed and wanted not in names:
        names.insert(0, typed)
    return [Choice(name=name, value=name) for name in names[:CHOICES]]


def rule_choices(current: str) -> list[Choice[str]]:
    """What the user typed, then the rule examples that start with it (all when none do)."""
    typed = current.strip()[:CHOICE_LENGTH]
    examples = [e for e in rules.EXAMPLES if e.lower().startswith(typed.lower())]
    names = [typed] if typed and typed not in examples else []
    names += examples or list(rules.EXAMPLES)
    return [Choice(name=_cut(name, CHOICE_LENGTH), value=name) for name in names[:CHOICES]]


# --- the slash commands ---


class TickerClient(discord.Client):
    """discord.py's client, carrying the adapter its slash commands answer through."""

    def __init__(self, handler: DiscordBot | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.handler = handler
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

    def dispatch(self, event: str, /, *args: Any, **kwargs: Any) -> None:
        """discord.py's dispatch; the adapter also hears of gateway readiness and loss."""
        super().dispatch(event, *args, **kwargs)
        if self.handler is not None and event in ("connect", "resumed", "disconnect"):
            self.handler.gateway_event(event)


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
    handler = interaction.client.handler
    if handler is not None:
        await handler.answer(interaction, call, posts_here=posts_here)


async def _symbols(interaction: Interaction, current: str) -> list[Choice[str]]:
    handler = interaction.client.handler
    return symbol_choices(current, handler.symbols if handler else SYMBOLS)


async def _subscribable(interaction: Interaction, current: str) -> list[Choice[str]]:
    choices = [Choice(name="all", value="all")] if "all".startswith(current.lower()) else []
    return [*choices, *await _symbols(interaction, current)][:CHOICES]


async def _rules(interaction: Interaction, current: str) -> list[Choice[str]]:
    return rule_choices(current)


async def _alert_ids(interaction: Interaction, current: str) -> list[Choice[str]]:
    handler = interaction.client.handler
    return await handler.alert_choices(interaction, current) if handler else []


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

    @app_commands.command(name="help")
    async def help_(interaction: Interaction) -> None:
        """The commands and the rule language with examples."""
        await _answer(interaction, lambda cmds, who: cmds.help(who))

    return [status, alert, mute, unmute, subscribe, unsubscribe, chart, rotation, charts, help_]


# --- command sync ---


def sync_file_for(db_path: Path | str) -> Path:
    """Where the hash of the last synced commands lives: beside the database."""
    db = Path(db_path)
    return db.with_name(f"{db.name}.discord-commands.json")


def tree_digest(tree: CommandTree, guild_id: int | None) -> str:
    """A hash of exactly what a sync would send for this scope."""
    guild = discord.Object(id=guild_id) if guild_id is not None else None
    payload = [command.to_dict(tree) for command in tree.get_commands(guild=guild)]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


async def sync_commands(
    tree: CommandTree, guild_id: int | None, state: Path | None, force: bool = False
) -> bool:
    """Push the commands when they differ from the last sync (or when forced); True if pushed.

    Call after login. Global commands can take a while to show up in every server; guild
    commands (`guild_id`) appear at once.
    """
    application = tree.client.application_id
    key = f"{application}:{guild_id if guild_id is not None else 'global'}"
    digest = tree_digest(tree, guild_id)
    synced = _read_json(state)
    if not force and synced.get(key) == digest:
        log.debug("discord: slash commands unchanged since the last sync")
        return False
    guild = discord.Object(id=guild_id) if guild_id is not None else None
    pushed = await tree.sync(guild=guild)
    where = f"server {guild_id}" if guild_id is not None else "every server (global)"
    log.info("discord: synced %d slash commands to %s", len(pushed), where)
    if state is not None:
        synced[key] = digest
        temporary = state.with_name(state.name + ".tmp")
        temporary.write_text(json.dumps(synced, indent=1, sort_keys=True))
        temporary.replace(state)
    return True


def point_discord_py(
    api_base_url: str | None = None, gateway_url: str | None = None
) -> Callable[[], None]:
    """Send discord.py's REST calls and gateway connections to these URLs (None: as they are).

    discord.py reads both from globals (`Route.BASE`, `DiscordWebSocket.DEFAULT_GATEWAY`), which
    is fine with one Discord bot per process. Returns a function that puts back the old values
    (each only if nobody changed it since).
    """
    old_base, old_gateway = discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    base = api_base_url.rstrip("/") if api_base_url else old_base
    gateway = yarl.URL(gateway_url) if gateway_url else old_gateway
    discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = base, gateway

    def restore() -> None:
        if base == discord.http.Route.BASE:
            discord.http.Route.BASE = old_base
        if gateway == DiscordWebSocket.DEFAULT_GATEWAY:
            DiscordWebSocket.DEFAULT_GATEWAY = old_gateway

    return restore


def _read_json(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# --- invalid requests ---


class InvalidRequests:
    """Counts 401, 403 and 429 answers over a sliding window, as Discord's ban does.

    A 429 with `X-RateLimit-Scope: shared` is not counted (Discord does not count it either).
    """

    def __init__(self, limit: int, window: float, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._times: deque[float] = deque()

    def record(self, status: int, scope: str | None = None) -> None:
        """Note one HTTP answer."""
        if status in (401, 403) or (status == 429 and scope != "shared"):
            self._times.append(self.clock())

    def count(self) -> int:
        """Invalid answers within the window."""
        horizon = self.clock() - self.window
        while self._times and self._times[0] <= horizon:
            self._times.popleft()
        return len(self._times)

    def pause_left(self) -> float:
        """Seconds until the count falls below the limit again (0: sending is fine)."""
        if self.limit <= 0 or self.count() < self.limit:
            return 0.0
        return self._times[-self.limit] + self.window - self.clock()


# --- the adapter ---


class DiscordBot:
    """The Discord front end and the delivery notifier for platform "discord"."""

    name = PLATFORM

    def __init__(
        self,
        *,
        token: str,
        commands: Commands,
        store: Store,
        guild_id: int | None = None,
        admin_role: str = "",
        sync_file: Path | None = None,
        gateway: bool = True,
        symbols: Sequence[str] = SYMBOLS,
        defer_after: float = DEFER_AFTER,
        invalid_limit: int = INVALID_LIMIT,
        invalid_window: float = INVALID_WINDOW,
        outage_pause: float = OUTAGE_PAUSE,
        clock: Callable[[], float] = time.monotonic,
        api_base_url: str | None = None,
        gateway_url: str | None = None,
        retry_base: float = RETRY_BASE,
        retry_cap: float = RETRY_CAP,
        login_timeout: float = LOGIN_TIMEOUT,
        start_wait: float = START_WAIT,
    ) -> None:
        self.token = token
        self.commands = commands
        self.store = store
        self.guild_id = guild_id
        self.admin_role = admin_role.strip()
        self.sync_file = sync_file
        self.gateway = gateway
        self.symbols = tuple(symbols)
        self.defer_after = defer_after
        self.outage_pause = outage_pause
        self.clock = clock
        self.invalid = InvalidRequests(invalid_limit, invalid_window, clock)
        self._gone: set[str] = set()  # channels that answered 403/404: never written to again
        self._paused = False
        self._outage_until = 0.0
        self._accepting = True
        self.retry_cap = retry_cap
        self.login_timeout = login_timeout
        self.start_wait = start_wait
        self._login_backoff = Backoff(retry_base, retry_cap)
        self._gateway_backoff = Backoff(retry_base, retry_cap)
        self._task: asyncio.Task[None] | None = None
        self._tried = asyncio.Event()  # the first login attempt (and sync) is over
        self._logged_in = False
        self._gateway_ready = False
        self._token_refused = False
        self._restore_urls = point_discord_py(api_base_url, gateway_url)
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False  # no voice here
        trace = aiohttp.TraceConfig()
        trace.on_request_end.append(self._on_response)
        intents = discord.Intents.none()
        intents.guilds = True  # the server's roles, for DISCORD_ADMIN_ROLE
        self.client = TickerClient(
            self,
            intents=intents,
            http_trace=trace,
            max_ratelimit_timeout=MAX_RATELIMIT_WAIT,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self.tree = make_tree(self.client, guild_id)

    # --- life cycle ---

    async def start(self) -> None:
        """Log in, sync the commands if they changed and connect the gateway, in the background.

        Returns once the first login attempt (and the sync after it) is over, or after
        `start_wait` seconds; it never raises for Discord being unreachable or refusing the
        token: the background task keeps trying with backoff until `stop()` or `close()`.
        """
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="discord")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._tried.wait(), self.start_wait)

    def listening(self) -> bool:
        """Whether slash commands can arrive now: logged in, the gateway READY (or RESUMED)."""
        ws: DiscordWebSocket | None = self.client.ws
        return (
            self._accepting
            and self._logged_in
            and self._gateway_ready
            and not self.client.is_closed()
            and ws is not None
            and ws.open
        )

    async def sync(self, force: bool = False) -> bool:
        """Push the slash commands if they changed since the last sync (or always, forced)."""
        return await sync_commands(self.tree, self.guild_id, self.sync_file, force)

    async def stop(self) -> None:
        """Stop taking commands (they get a short 'restarting' answer); sending still works.

        A login still being retried is given up.
        """
        self._accepting = False
        if not self._logged_in:
            await self._cancel()

    async def close(self) -> None:
        """Stop the background task, disconnect the gateway and close the HTTP session."""
        self._accepting = False
        await self._cancel()
        self.client.gateway_only = False
        await self.client.close()
        self._logged_in = self._gateway_ready = False
        self._restore_urls()

    async def _cancel(self) -> None:
        task, self._task = self._task, None
        if task is None or task is asyncio.current_task():
            return
        task.cancel()
        await asyncio.wait({task})
        if not task.cancelled() and task.exception() is not None:
            log.error("discord: the background task failed", exc_info=task.exception())

    async def _run(self) -> None:
        """Log in (retrying), sync the commands, then keep the gateway connected."""
        await self._log_in()
        try:
            await self.sync()
        except Exception as err:  # commands synced before keep working
            log.warning("discord: could not sync the slash commands: %s", _describe(err))
        finally:
            self._tried.set()
        if self.gateway:
            await self._listen()

    async def _log_in(self) -> None:
        """Log in over REST, retrying with backoff while Discord is unreachable or says no."""
        while True:
            try:
                await asyncio.wait_for(self.client.login(self.token), self.login_timeout)
            except discord.LoginFailure:
                wait = self._retry_in(self._login_backoff, at_least=self.retry_cap)
                if not self._token_refused:
                    log.error(
                        "discord: Discord refused the bot token (401 Unauthorized): check "
                        "DISCORD_BOT_TOKEN (reset in the Developer Portal?); retrying every %gs",
                        wait,
                    )
                self._token_refused = True
            except Exception as err:
                wait = self._retry_in(self._login_backoff)
                if self._login_backoff.outage_started:
                    log.warning(
                        "discord: cannot log in (%s); retrying in the background, alerts wait "
                        "in the outbox meanwhile",
                        _describe(err),
                    )
                log.debug("discord: login failed; next try in %.1fs", wait, exc_info=True)
            else:
                self._logged_in = True
                self._token_refused = False
                failures = self._login_backoff.failures
                self._login_backoff.success()
                after = f" after {failures} failed attempts" if failures else ""
                log.info("discord: logged in as %s%s", self.client.user, after)
                return
            self._tried.set()
            await self._drop_session()
            await asyncio.sleep(wait)

    async def _drop_session(self) -> None:
        """Close the HTTP session a failed login left open (discord.py opens one per login)."""
        await self.client.http.close()
        # closing the session closed its connector too: let the next login make a new one
        self.client.http.connector = discord.utils.MISSING

    async def _listen(self) -> None:
        """Keep the gateway connected: reconnect with backoff, one warning per outage."""
        while True:
            self.client.gateway_only = True
            failure: Exception | None = None
            try:
                await self.client.connect(reconnect=False)
            except Exception as err:
                failure = err
            self._gateway_ready = False
            wait = self._retry_in(self._gateway_backoff)
            if self._gateway_backoff.outage_started:
                log.warning(
                    "discord: gateway connection lost (%s): slash commands are not received "
                    "until it is back; alerts are still sent. Reconnecting in the background",
                    _describe(failure) if failure else "closed by Discord",
                )
            log.debug("discord: gateway down; next try in %.1fs", wait, exc_info=failure)
            await asyncio.sleep(wait)

    def gateway_event(self, event: str) -> None:
        """Track the gateway: `connect` (its READY) or `resumed`: commands arrive; `disconnect`.

        discord.py's own `ready` comes up to 2 s later, once the guilds are cached.
        """
        self._gateway_ready = event != "disconnect"
        if self._gateway_ready and self._gateway_backoff.success():
            log.info("discord: gateway connected again; slash commands are received")

    @staticmethod
    def _retry_in(backoff: Backoff, at_least: float = 0.0) -> float:
        """Record a failure; the seconds until the next attempt."""
        now = datetime.now(UTC)
        return (backoff.failure(now, at_least) - now).total_seconds()

    # --- the notifier ---

    async def send(self, chat: Chat, alert: Alert, image: bytes | None = None) -> str | None:
        """Post one alert as an embed (with `image` as chart.png) to the chat's channel."""
        self._may_send(chat)
        channel = self.client.get_partial_messageable(int(chat.chat_id))
        embed = alert_embed(alert)
        try:
            if image is None:
                message = await channel.send(embed=embed)
            else:
                embed.set_image(url=f"attachment://{CHART}")
                chart = discord.File(io.BytesIO(image), filename=CHART)
                message = await channel.send(embed=embed, file=chart)
        except (discord.Forbidden, discord.NotFound) as err:
            self._gone.add(chat.chat_id)
            raise DeliveryError(f"{err.status} {err.text or err}", chat_gone=True) from err
        except discord.RateLimited as err:
            wait = err.retry_after
            raise DeliveryError(f"rate limited for {wait:g}s", retry_after=wait) from err
        except discord.HTTPException as err:
            if err.status == 429:  # not retried by discord.py: Cloudflare, most likely
                raise DeliveryError("rate limited (429 without Via)", retry_after=60.0) from err
            if err.status >= 500:
                self._outage_until = self.clock() + self.outage_pause
            raise DeliveryError(f"{err.status} {err.text or err}") from err
        except (aiohttp.ClientError, OSError, TimeoutError) as err:
            self._outage_until = self.clock() + self.outage_pause
            raise DeliveryError(f"network: {err!r}") from err
        return str(message.id)

    def _may_send(self, chat: Chat) -> None:
        """Raise instead of sending where a send would be wasted or count against us."""
        if not self._logged_in or self.client.is_closed():
            raise DeliveryError("not connected to Discord")
        if chat.chat_id in self._gone:
            raise DeliveryError(f"channel {chat.chat_id} is unreachable", chat_gone=True)
        if not chat.chat_id.isdigit():
            raise DeliveryError(f"'{chat.chat_id}' is not a Discord channel id", chat_gone=True)
        wait = self.invalid.pause_left()
        if wait > 0:
            if not self._paused:
                log.error(
                    "discord: %d invalid requests (401/403/429) in %.0f minutes; pausing "
                    "delivery for %.0fs to stay far from Discord's ban at 10,000",
                    self.invalid.count(),
                    self.invalid.window / 60,
                    wait,
                )
            self._paused = True
            raise DeliveryError("paused: too many invalid requests", retry_after=wait)
        if self._paused:
            self._paused = False
            log.info("discord: invalid requests back under the limit; delivering again")
        outage = self._outage_until - self.clock()
        if outage > 0:
            raise DeliveryError("Discord failing; holding sends back", retry_after=outage)

    async def _on_response(
        self,
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        self.invalid.record(
            params.response.status, params.response.headers.get("X-RateLimit-Scope")
        )

    # --- answering slash commands ---

    async def answer(self, interaction: Interaction, call: Call, posts_here: bool = False) -> None:
        """Run one typed operation of the command layer and answer with its result as embeds."""
        try:
            if not self._accepting:
                await self._respond(interaction, Reply((STOPPING,), ok=False))
                return
            caller = self.caller(interaction)
            await self._reactivate(interaction, caller)
            reply = await self._run_in_time(interaction, caller, call)
            if posts_here and reply.ok and not _can_post(interaction):
                reply = replace(reply, lines=(*reply.lines, CANNOT_POST))
            await self._respond(interaction, reply)
        except discord.HTTPException as err:
            log.warning("discord: could not answer /%s: %s", _name(interaction), err)
        except Exception:
            log.exception("discord: /%s failed", _name(interaction))
            with contextlib.suppress(discord.HTTPException):
                await self._respond(interaction, Reply((SORRY,), ok=False))

    def caller(self, interaction: Interaction) -> Caller:
        """Who is asking, from which channel, and whether they may change alerts."""
        in_guild = interaction.guild_id is not None
        return Caller(
            platform=self.name,
            chat_id=str(interaction.channel_id),
            chat_kind="guild" if in_guild else "private",
            user_id=str(interaction.user.id),
            is_admin=self.is_admin(interaction),
        )

    def is_admin(self, interaction: Interaction) -> bool:
        """DMs: yes. Servers: Manage Server (or Administrator), or the admin role if set.

        The role is matched by name or id against the member's cached roles (the gateway's
        `guilds` intent fills that cache).
        """
        if interaction.guild_id is None:
            return True
        rights = interaction.permissions
        if rights.administrator or rights.manage_guild:
            return True
        if not self.admin_role or not isinstance(interaction.user, discord.Member):
            return False
        return any(self.admin_role in (role.name, str(role.id)) for role in interaction.user.roles)

    async def alert_choices(self, interaction: Interaction, current: str) -> list[Choice[str]]:
        """This channel's alerts as `#id rule` choices, then `all`."""
        chat = await self.store.find_chat(self.name, str(interaction.channel_id))
        stored = [] if chat is None else await self.store.rules(chat.id)
        typed = current.strip().lstrip("#").lower()
        choices = [
            Choice(name=_cut(f"#{r.id} {r.text}", CHOICE_LENGTH), value=str(r.id))
            for r in stored
            if typed in f"{r.id} {r.text}".lower()
        ][: CHOICES - 2]
        if "all".startswith(typed[:3]):
            choices.append(Choice(name="all (asks first)", value="all"))
            choices.append(
                Choice(name="all confirm — remove every alert here", value="all confirm")
            )
        return choices

    async def _run_in_time(self, interaction: Interaction, caller: Caller, call: Call) -> Reply:
        """The command's reply; past `defer_after` seconds, tell Discord we are working on it."""
        work = asyncio.ensure_future(call(self.commands, caller))
        try:
            result = await asyncio.wait_for(asyncio.shield(work), self.defer_after)
        except TimeoutError:
            await interaction.response.defer(thinking=True)
            result = await work
        return replies.reply(result, SPELLING)

    async def _respond(self, interaction: Interaction, reply: Reply) -> None:
        """Send the embeds (a chart on the first); refusals and errors only to the caller."""
        embeds = reply_embeds(reply)
        private = not reply.ok
        files = []
        if reply.image is not None:
            embeds[0].set_image(url=f"attachment://{CHART}")
            files.append(discord.File(io.BytesIO(reply.image), filename=CHART))
        if not interaction.response.is_done():
            await interaction.response.send_message(embed=embeds[0], files=files, ephemeral=private)
            embeds = embeds[1:]
        elif private:  # a public "thinking…" must not turn into a public error
            await interaction.delete_original_response()
        else:
            await interaction.edit_original_response(embed=embeds[0], attachments=files)
            embeds = embeds[1:]
        for embed in embeds:
            await interaction.followup.send(embed=embed, ephemeral=private)

    async def _reactivate(self, interaction: Interaction, caller: Caller) -> None:
        """A channel that failed before is written to again once we may post there."""
        if not _can_post(interaction):
            return
        self._gone.discard(caller.chat_id)
        stored = await self.store.find_chat(self.name, caller.chat_id)
        if stored is not None and not stored.active:
            await self.store.set_chat_active(stored.id, True)
            log.info("discord: channel %s is reachable again; delivering to it", caller.chat_id)


def _name(interaction: Interaction) -> str:
    """The slash command's name as people type it (`alert add`), for the log."""
    command = interaction.command
    return command.qualified_name if command is not None else "?"


def _describe(err: BaseException) -> str:
    """An exception for the log: its type and message (never a request's headers)."""
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def _can_post(interaction: Interaction) -> bool:
    """Whether the bot may post alert embeds (with a chart) in the interaction's channel."""
    if interaction.guild_id is None:
        return True
    rights = interaction.app_permissions
    in_thread = isinstance(interaction.channel, discord.Thread)
    send = rights.send_messages_in_threads if in_thread else rights.send_messages
    return rights.view_channel and send and rights.embed_links and rights.attach_files


def build(
    *,
    token: str,
    commands: Commands,
    store: Store,
    db_path: Path | str,
    guild_id: int | None = None,
    admin_role: str = "",
    api_base_url: str | None = None,
    gateway_url: str | None = None,
) -> DiscordBot:
    """The Discord front end as the composition root needs it (start() it, close() it)."""
    return DiscordBot(
        token=token,
        commands=commands,
        store=store,
        guild_id=guild_id,
        admin_role=admin_role,
        sync_file=sync_file_for(db_path),
        api_base_url=api_base_url,
        gateway_url=gateway_url,
    )
