"""The Discord adapter: slash commands in, alerts out, over one discord.py `Client`.

Commands reach Discord only when synced, and syncing is deliberate (bot.discord.sync).
Receiving interactions needs the gateway; sending needs only REST. Discord wants one gateway
connection per bot token: with `gateway=False` (a replica on PostgreSQL) `start()` logs in for
sending only, and the gateway runs between `receive()` and `stop_receiving()`, while this
replica holds the "discord" lease.

Discord being down never stops the bot: `start()` logs in, syncs and connects the gateway in a
background task that retries with exponential backoff (one warning per outage, one ERROR when
the token is refused), and the gateway is supervised the same way once connected. `listening()`
says whether slash commands can arrive right now; `SlashAnswers` answers them.

It is also the "discord" notifier of the delivery worker. discord.py's own rate-limit handling
stays on; on top of it `send` maps 403/404 to a permanent `DeliveryError` (the channel is
deactivated and never written to again until someone uses a command there), 5xx and network
failures to a transient one (and holds Discord sends back for a short while), and it counts
every invalid answer (401, 403, 429) so as never to approach Discord's ban of 10,000 in ten
minutes (bot.discord.guard): past a conservative limit Discord delivery pauses and says so in
the log. On PostgreSQL, where several processes may send for one bot, channel posts also take
slots of the bot's global rate (50/s) shared through the database (bot.budget); alone, a
process leaves that limit to discord.py. The token's signature is redacted from every log
record (bot.redaction).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import discord
from discord.gateway import DiscordWebSocket

from alerts.models import Alert
from bot.actions import Ref
from bot.budget import SharedBudget
from bot.commands import Commands
from bot.discord.answers import DEFER_AFTER, SlashAnswers
from bot.discord.guard import INVALID_LIMIT, INVALID_WINDOW, InvalidRequests
from bot.discord.render import CHART, SYMBOLS, action_view, alert_embed, reply_embeds
from bot.discord.sync import point_discord_py, sync_commands, sync_file_for
from bot.discord.tree import TickerClient, make_tree
from bot.notifier import DeliveryError
from bot.redaction import redact
from bot.replies import Reply
from feeds.backoff import Backoff
from storage.api import BudgetStore, Chat, Storage

log = logging.getLogger(__name__)

PLATFORM = "discord"
OUTAGE_PAUSE = 15.0
PER_SECOND = 50.0  # Discord's global limit per bot (interaction answers do not count)
HEADROOM = 0.95  # of PER_SECOND, when shared (bot.budget)
MAX_RATELIMIT_WAIT = 30.0
RETRY_BASE, RETRY_CAP = 1.0, 60.0  # reconnecting to Discord: 1 s doubling up to a minute
LOGIN_TIMEOUT = 30.0  # discord.py itself retries a 502 for up to 25 s
START_WAIT = 5.0  # start() waits this long at most for the first login attempt


class DiscordBot:
    """The Discord front end and the delivery notifier for platform "discord"."""

    name = PLATFORM

    def __init__(
        self,
        *,
        token: str,
        commands: Commands,
        store: Storage,
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
        budgets: BudgetStore | None = None,
        per_second: float = PER_SECOND,
    ) -> None:
        redact(_secret_of(token))  # before discord.py could log it
        self.token = token
        self.commands = commands
        self.store = store
        self.guild_id = guild_id
        self.sync_file = sync_file
        self.gateway = gateway
        self.outage_pause = outage_pause
        self.clock = clock
        self.invalid = InvalidRequests(invalid_limit, invalid_window, clock)
        self.budget = None
        if budgets is not None:  # several processes send for this bot: share its rate
            self.budget = SharedBudget(budgets, PLATFORM, 1 / (per_second * HEADROOM), clock)
        self._gone: set[str] = set()  # channels that answered 403/404: never written to again
        self._paused = False
        self._outage_until = 0.0
        self.retry_cap = retry_cap
        self.login_timeout = login_timeout
        self.start_wait = start_wait
        self._login_backoff = Backoff(retry_base, retry_cap)
        self._gateway_backoff = Backoff(retry_base, retry_cap)
        self._task: asyncio.Task[None] | None = None  # logging in, then syncing
        self._listener: asyncio.Task[None] | None = None  # the gateway, once logged in
        self._tried = asyncio.Event()  # the first login attempt (and sync) is over
        self._in = asyncio.Event()  # logged in (and synced, or failed to)
        self._logged_in = False
        self._gateway_ready = False
        self._token_refused = False
        self._restore_urls = point_discord_py(api_base_url, gateway_url)
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False  # no voice here
        trace = aiohttp.TraceConfig()
        trace.on_request_end.append(self._on_response)
        intents = discord.Intents.none()
        intents.guilds = True  # the server's roles, for DISCORD_ADMIN_ROLE
        self.answers = SlashAnswers(
            platform=self.name,
            commands=commands,
            store=store,
            admin_role=admin_role,
            symbols=symbols,
            defer_after=defer_after,
            reachable=self._gone.discard,
        )
        self.client = TickerClient(
            self.answers,
            self.gateway_event,
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
        if self.gateway:
            await self.receive()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._tried.wait(), self.start_wait)

    def ready(self) -> bool:
        """Whether alerts can be sent now: logged in."""
        return self._logged_in and not self.client.is_closed()

    async def receive(self) -> None:
        """Keep the gateway connected (in the background, from when logged in)."""
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen_when_in(), name="discord gateway")

    async def stop_receiving(self) -> None:
        """Disconnect the gateway; sending over REST goes on."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            await asyncio.wait({listener})
        self._gateway_ready = False
        if self._logged_in and not self.client.is_closed():
            self.client.gateway_only = True
            await self.client.close()  # the gateway connection only

    def listening(self) -> bool:
        """Whether slash commands can arrive now: logged in, the gateway READY (or RESUMED)."""
        ws: DiscordWebSocket | None = self.client.ws
        return (
            self.answers.accepting
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
        self.answers.accepting = False
        if not self._logged_in:
            await self._cancel()

    async def close(self) -> None:
        """Stop the background tasks, disconnect the gateway and close the HTTP session."""
        self.answers.accepting = False
        await self._cancel()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            await asyncio.wait({listener})
        self.client.gateway_only = False
        await self.client.close()
        if self.budget is not None:
            await self.budget.close()
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
        """Log in (retrying), then sync the commands."""
        await self._log_in()
        try:
            await self.sync()
        except Exception as err:  # commands synced before keep working
            log.warning("discord: could not sync the slash commands: %s", _describe(err))
        finally:
            self._tried.set()
            self._in.set()

    async def _listen_when_in(self) -> None:
        await self._in.wait()
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

    async def send(
        self, chat: Chat, alert: Alert, image: bytes | None = None, ref: Ref | None = None
    ) -> str | None:
        """Post one alert as an embed (with `image` as chart.png) to the chat's channel, with
        its buttons when `ref` names its row."""
        view = None
        if ref is not None:
            view = action_view(await self.commands.buttons(chat, ref, alert, image is not None))
        return await self._deliver(chat, alert_embed(alert), image, view)

    async def post(self, chat: Chat, reply: Reply) -> str | None:
        """Post a composed message (a daily digest, no buttons) as embeds, the chart on the
        first; the id of the first message."""
        first, *rest = reply_embeds(reply)
        sent = await self._deliver(chat, first, reply.image)
        for embed in rest:
            await self._deliver(chat, embed)
        return sent

    async def _deliver(
        self,
        chat: Chat,
        embed: discord.Embed,
        image: bytes | None = None,
        view: discord.ui.View | None = None,
    ) -> str:
        """Post one embed (with `image` as chart.png, `view`'s buttons under it) to the chat's
        channel; Discord's answer becomes a message id or a DeliveryError."""
        self._may_send(chat)
        channel = self.client.get_partial_messageable(int(chat.chat_id))
        if self.budget is not None:
            await self.budget.slot()
        try:
            if image is None:
                message = await channel.send(embed=embed, view=view or discord.utils.MISSING)
            else:
                embed.set_image(url=f"attachment://{CHART}")
                chart = discord.File(io.BytesIO(image), filename=CHART)
                message = await channel.send(
                    embed=embed, file=chart, view=view or discord.utils.MISSING
                )
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


def _secret_of(token: str) -> str:
    """The secret part of a bot token (`<bot id>.<timestamp>.<signature>`): its signature."""
    return token.rpartition(".")[2] or token


def _describe(err: BaseException) -> str:
    """An exception for the log: its type and message (never a request's headers)."""
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def build(
    *,
    token: str,
    commands: Commands,
    store: Storage,
    db_path: Path | str,
    guild_id: int | None = None,
    admin_role: str = "",
    api_base_url: str | None = None,
    gateway_url: str | None = None,
    budgets: BudgetStore | None = None,
    gateway: bool = True,
) -> DiscordBot:
    """The Discord front end as the composition root needs it (start() it, close() it);
    without `gateway` it receives only between receive() and stop_receiving()."""
    return DiscordBot(
        token=token,
        commands=commands,
        store=store,
        guild_id=guild_id,
        admin_role=admin_role,
        sync_file=sync_file_for(db_path),
        api_base_url=api_base_url,
        gateway_url=gateway_url,
        budgets=budgets,
        gateway=gateway,
    )
