"""The Telegram adapter: chat commands in, alerts out, over one PTB `Application`.

The Application shares the service's event loop and is started and stopped explicitly (no
`run_polling`): `start()` connects, registers the command menu and long-polls for updates,
dropping those that queued up while the bot was down. Every command goes to the
platform-neutral `Commands` layer and its `Reply` is rendered as Telegram HTML.

It is also the "telegram" notifier of the delivery worker: `send` maps Telegram's errors onto
`DeliveryError` (Forbidden: the chat is gone; RetryAfter: waited out a few times, then handed
back with its delay; ChatMigrated: the chat's rules follow it to its new id). Sends are paced
below Telegram's flood limits by `SendLimiter`, and the bot token is redacted from every log
record while the bot exists (httpx and PTB both log URLs, and Telegram URLs contain it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Coroutine, Hashable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from telegram import BotCommand, Message, Update
from telegram import Chat as TelegramChat
from telegram.constants import ChatMemberStatus, ChatType, ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.ext import (
    Application,
    ApplicationBuilder,
    BaseRateLimiter,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBDeprecationWarning

from alerts.models import Alert
from bot import render
from bot.commands import Caller, Commands
from bot.notifier import DeliveryError
from storage.db import Chat, Store

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.telegram.org/bot"
CAPTION_LIMIT = 1024  # Telegram's limit for a photo caption
COMMANDS = (
    ("start", "What this bot does"),
    ("help", "Commands and rule examples"),
    ("status", "Price, day change, spread: /status BTC"),
    ("alert", "Add an alert: /alert XAG above 50"),
    ("alerts", "This chat's alerts with ids"),
    ("remove", "Remove an alert: /remove 3"),
    ("mute", "Pause alerts: /mute 2h"),
    ("unmute", "Resume alerts"),
    ("subscribe", "Notable moves of a symbol: /subscribe XAU"),
    ("unsubscribe", "Stop notable moves"),
    ("chart", "A price chart: /chart XAU 3m"),
    ("rotation", "Gold, silver, BTC, ETH side by side"),
    ("charts", "Charts with alerts: /charts on|off"),
)
ADMIN_STATUSES = frozenset({ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR})
GROUP_KINDS = frozenset({ChatType.GROUP, ChatType.SUPERGROUP})
REFUSAL = "Sorry, this bot only answers the chats its owner has allowed."
HINT = "I answer commands: try /help, or /status BTC."
SORRY = "Sorry, something went wrong on my side. Please try again in a minute."

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Rates:
    """Telegram's flood limits as we respect them; 0 turns a limit off."""

    overall_per_second: float = 30.0
    chat_per_second: float = 1.0
    group_per_minute: float = 20.0


class KeyedLocks:
    """One asyncio.Lock per key (FIFO), kept only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        """Hold the key's lock for the block."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users > 1:
                self._locks[key] = (lock, users - 1)
            else:
                del self._locks[key]


class Pacer:
    """Spaces events at least `interval` seconds apart per key, first come first served.

    No bursts: slots are booked one at a time, when the previous event went, so a stalled
    event loop slows sends down instead of releasing a backlog at once. Slots stay on their
    grid (a late wake-up does not push every later slot back), and a strict spacing never puts
    more than N in any window of N intervals.
    """

    def __init__(self, clock: Callable[[], float], sleep: Sleep) -> None:
        self.clock = clock
        self.sleep = sleep
        self._next: dict[Hashable, float] = {}
        self._locks = KeyedLocks()

    async def wait(self, key: Hashable, interval: float) -> None:
        """Return when `key` may go again, and start its next interval."""
        if interval <= 0:
            return
        async with self._locks.hold(key):
            now = self.clock()
            slot = max(now, self._next.get(key, now))
            self._next[key] = slot + interval
            if len(self._next) > 4096:  # forget keys whose interval has passed
                self._next = {k: t for k, t in self._next.items() if t > now}
            if slot > now:
                await self.sleep(slot - now)


class SendLimiter(BaseRateLimiter[int]):
    """PTB rate limiter: overall, per private chat and per group, for message-sending calls.

    PTB's AIORateLimiter has no per-private-chat bucket and allows bursts of the full rate; this
    one spaces sends evenly, at `HEADROOM` of each limit: spaced at exactly the limit, the
    smallest network jitter puts N+1 arrivals in some window of Telegram's. Other calls
    (getUpdates, getChatMember, ...) are not limited. A RetryAfter is not retried here:
    `TelegramBot` decides (it knows what is being sent).
    """

    HEADROOM = 0.95

    def __init__(self, rates: Rates, clock: Callable[[], float], sleep: Sleep) -> None:
        self.rates = rates
        self.pacer = Pacer(clock, sleep)

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to release."""

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, Any]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> Any:
        """Wait for the chat's slot, then the bot's, then make the call."""
        chat_id = data.get("chat_id")
        if chat_id is not None and endpoint.startswith(("send", "copy", "forward")):
            if _is_group(chat_id):
                interval = _interval(self.rates.group_per_minute / 60)
            else:
                interval = _interval(self.rates.chat_per_second)
            await self.pacer.wait(str(chat_id), interval)
            await self.pacer.wait(None, _interval(self.rates.overall_per_second))
        return await callback(*args, **kwargs)


def _interval(per_second: float) -> float:
    return 1 / (per_second * SendLimiter.HEADROOM) if per_second > 0 else 0.0


def _is_group(chat_id: object) -> bool:
    """Groups, supergroups and channels have negative ids (or an @username)."""
    try:
        return int(str(chat_id)) < 0
    except ValueError:
        return True


def _chat_ref(chat_id: str) -> int | str:
    """A stored chat id as the Bot API takes it."""
    return int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id


def _retry_seconds(err: RetryAfter) -> float:
    """RetryAfter's delay in seconds (its `retry_after` type is changing in PTB 22.x)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = err.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class _Redactor:
    """A log record factory that replaces a secret in every record's message and traceback."""

    def __init__(self, secret: str, inner: Callable[..., logging.LogRecord]) -> None:
        self.secret = secret
        self.inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        try:
            message = record.getMessage()
            if self.secret in message:
                record.msg, record.args = message.replace(self.secret, "<token>"), None
            if record.exc_info and record.exc_info[0] is not None:
                text = logging.Formatter().formatException(record.exc_info)
                if self.secret in text:
                    record.exc_text = text.replace(self.secret, "<token>")
        except Exception:  # a malformed record is logging's to report, not ours
            pass
        return record


class TelegramBot:
    """The Telegram front end and the delivery notifier for platform "telegram"."""

    name = "telegram"

    def __init__(
        self,
        *,
        token: str,
        commands: Commands,
        store: Store,
        base_url: str = DEFAULT_BASE_URL,
        allowed_chats: Collection[str] = (),
        rates: Rates | None = None,
        retries: int = 2,
        max_retry_wait: float = 30.0,
        admin_cache_seconds: float = 300.0,
        poll_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        # Before the Bot exists: it logs its URL, token included, at DEBUG.
        self._redactor = _Redactor(token, logging.getLogRecordFactory())
        logging.setLogRecordFactory(self._redactor)
        self.commands = commands
        self.store = store
        self.allowed_chats = frozenset(allowed_chats)
        self.retries = retries
        self.max_retry_wait = max_retry_wait
        self.admin_cache_seconds = admin_cache_seconds
        self.poll_timeout = poll_timeout
        self.clock = clock
        self.sleep = sleep
        self._admins: dict[tuple[int, int], tuple[bool, float]] = {}
        self._turns = KeyedLocks()  # one message at a time per chat, in arrival order
        self.app: Application[Any, Any, Any, Any, Any, Any] = (
            ApplicationBuilder()
            .token(token)
            .base_url(base_url)
            .rate_limiter(SendLimiter(rates or Rates(), clock, sleep))
            .job_queue(None)  # the service owns scheduling
            .concurrent_updates(16)  # a slow /status must not hold up everyone else
            .build()
        )
        only_new = filters.UpdateType.MESSAGE  # an edited "/alert ..." must not add it twice
        self.app.add_handler(MessageHandler(only_new & filters.COMMAND, self._on_command))
        self.app.add_handler(
            MessageHandler(
                only_new & filters.ChatType.PRIVATE & filters.TEXT & ~filters.COMMAND,
                self._on_text,
            )
        )
        self.app.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, self._on_migrate))
        self.app.add_error_handler(self._on_error)

    # --- life cycle ---

    async def start(self) -> None:
        """Connect (getMe), register the command menu, and poll, dropping stale updates."""
        try:
            await self.app.initialize()
            try:
                await self.app.bot.set_my_commands([BotCommand(c, d) for c, d in COMMANDS])
            except TelegramError as err:  # the menu is a convenience; commands work without it
                log.warning("telegram: could not register the command menu: %s", err)
            await self.app.start()
            assert self.app.updater is not None
            await self.app.updater.start_polling(
                timeout=timedelta(seconds=self.poll_timeout),
                drop_pending_updates=True,
                allowed_updates=[Update.MESSAGE],
                error_callback=self._polling_failed,
            )
        except BaseException:
            await self.close()
            raise
        log.info("telegram: answering as @%s", self.app.bot.username)

    async def stop(self) -> None:
        """Stop polling and finish the commands in flight; `send` keeps working until close()."""
        if self.app.updater is not None and self.app.updater.running:
            await self.app.updater.stop()
        if self.app.running:
            await self.app.stop()

    async def close(self) -> None:
        """Stop, release the HTTP connections and stop redacting the token from logs."""
        try:
            await self.stop()
            await self.app.shutdown()
        finally:
            if logging.getLogRecordFactory() is self._redactor:
                logging.setLogRecordFactory(self._redactor.inner)

    # --- the notifier ---

    async def send(self, chat: Chat, alert: Alert, image: bytes | None = None) -> str | None:
        """Deliver one alert; Telegram's answer becomes a message id or a DeliveryError."""
        chat_id = chat.chat_id
        text = render.alert_html(alert)
        mode: ParseMode | None = ParseMode.HTML
        waits = moves = 0
        while True:
            try:
                message: Message
                if image is not None and len(text) <= CAPTION_LIMIT:
                    message = await self.app.bot.send_photo(
                        _chat_ref(chat_id), image, caption=text, parse_mode=mode
                    )
                else:  # no chart, or a caption too long for one: the text alone
                    message = await self.app.bot.send_message(
                        _chat_ref(chat_id), text, parse_mode=mode
                    )
                return str(message.message_id)
            except RetryAfter as err:
                delay = _retry_seconds(err)
                if waits >= self.retries or delay > self.max_retry_wait:
                    raise DeliveryError(
                        f"flood control, retry in {delay:g}s", retry_after=delay
                    ) from err
                waits += 1
                log.info("telegram: flood control in chat %s; waiting %gs", chat_id, delay)
                await self.sleep(delay)
            except ChatMigrated as err:
                new_id = str(err.new_chat_id)
                if moves >= 2 or new_id == chat_id:
                    raise DeliveryError(f"chat {chat_id} keeps migrating") from err
                moves += 1
                await self._move(chat_id, new_id)
                chat_id = new_id
            except Forbidden as err:  # blocked, kicked, or the account is deactivated
                raise DeliveryError(f"forbidden: {err.message}", chat_gone=True) from err
            except BadRequest as err:
                if "chat not found" in err.message.lower():
                    raise DeliveryError(f"bad request: {err.message}", chat_gone=True) from err
                if mode is None:
                    raise DeliveryError(f"bad request: {err.message}", permanent=True) from err
                log.error(
                    "telegram: chat %s rejected alert %r as HTML (%s); sending it as plain text",
                    chat_id,
                    alert.rule_text,
                    err.message,
                )
                text, mode = render.alert_plain(alert), None
            except NetworkError as err:  # after BadRequest and TimedOut's own subclasses
                raise DeliveryError(f"network: {err.message}") from err
            except TelegramError as err:  # InvalidToken, Conflict, ...: never the chat's fault
                raise DeliveryError(f"telegram: {err.message}") from err

    # --- handlers ---

    async def _on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Answer one command through the command layer."""
        message, chat = update.effective_message, update.effective_chat
        if message is None or chat is None or not message.text:
            return
        async with self._turns.hold(chat.id):
            await self._command(message, chat)

    async def _command(self, message: Message, chat: TelegramChat) -> None:
        assert message.text is not None
        try:
            if not self._addressed_to_me(message.text):
                return
            if not self._allowed(chat.id):
                await self._answer(chat.id, REFUSAL)
                return
            await self._reactivate(chat)
            # An anonymous admin posts as the group (from_user is Telegram's shared stand-in).
            sender = message.sender_chat or message.from_user
            caller = Caller(
                platform=self.name,
                chat_id=str(chat.id),
                chat_kind=chat.type,
                user_id=str(sender.id) if sender else "",
                is_admin=await self._is_admin(chat, message),
            )
            reply = await self.commands.handle(caller, message.text)
            parts = render.telegram_html(reply)
            if reply.image is not None and len(parts) == 1 and len(parts[0]) <= CAPTION_LIMIT:
                await self.app.bot.send_photo(
                    chat.id, reply.image, caption=parts[0], parse_mode=ParseMode.HTML
                )
                return
            for part in parts:
                await self._answer(chat.id, part)
            if reply.image is not None:
                await self.app.bot.send_photo(chat.id, reply.image)
        except TelegramError as err:
            log.warning("telegram: could not answer in chat %s: %s", chat.id, err)
        except Exception:
            log.exception("telegram: command %r in chat %s failed", message.text[:40], chat.id)
            with contextlib.suppress(TelegramError):
                await self._answer(chat.id, SORRY)

    async def _on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Point plain text in a private chat at /help."""
        chat = update.effective_chat
        if chat is None:
            return
        async with self._turns.hold(chat.id):
            try:
                await self._answer(chat.id, HINT if self._allowed(chat.id) else REFUSAL)
            except TelegramError as err:
                log.warning("telegram: could not answer in chat %s: %s", chat.id, err)

    async def _on_migrate(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A group became a supergroup: its rules follow it to the new id now."""
        message = update.effective_message
        if message is None:
            return
        if message.migrate_to_chat_id:
            old, new = message.chat.id, message.migrate_to_chat_id
        elif message.migrate_from_chat_id:
            old, new = message.migrate_from_chat_id, message.chat.id
        else:
            return
        try:
            await self._move(str(old), str(new))
        except Exception:
            log.exception("telegram: moving chat %s to %s failed", old, new)

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log what escaped PTB's machinery, with its trace."""
        log.error("telegram: unexpected error", exc_info=context.error)

    def _polling_failed(self, err: TelegramError) -> None:
        """PTB retries polling with backoff; one line per failure is enough."""
        log.warning("telegram: polling for updates failed: %s", err)

    # --- helpers ---

    async def _answer(self, chat_id: int, html: str) -> Message:
        """Send one HTML message, waiting out a short flood-control delay once."""
        try:
            message: Message = await self.app.bot.send_message(
                chat_id, html, parse_mode=ParseMode.HTML
            )
        except RetryAfter as err:
            delay = _retry_seconds(err)
            if delay > self.max_retry_wait:
                raise
            await self.sleep(delay)
            message = await self.app.bot.send_message(chat_id, html, parse_mode=ParseMode.HTML)
        return message

    async def _move(self, old: str, new: str) -> None:
        """Carry a chat's rules, mute and subscriptions over to its new id."""
        if await self.store.find_chat(self.name, old) is None:
            return  # moved already (Telegram tells both the old and the new chat)
        if await self.store.find_chat(self.name, new) is not None:
            log.warning(
                "telegram: chat %s became %s, which already has its own settings; "
                "the old chat's rules stay under the old id",
                old,
                new,
            )
            return
        await self.store.move_chat(self.name, old, new)
        log.info("telegram: chat %s became %s; its rules moved with it", old, new)
        if self.allowed_chats and old in self.allowed_chats and new not in self.allowed_chats:
            log.warning("telegram: add %s to TELEGRAM_ALLOWED_CHATS (it was %s)", new, old)

    def _addressed_to_me(self, text: str) -> bool:
        """False for `/cmd@OtherBot`: in a group with several bots it is not ours to answer."""
        word = text.split(maxsplit=1)[0]
        if "@" not in word:
            return True
        return word.split("@", 1)[1].lower() == (self.app.bot.username or "").lower()

    def _allowed(self, chat_id: int) -> bool:
        return not self.allowed_chats or str(chat_id) in self.allowed_chats

    async def _reactivate(self, chat: TelegramChat) -> None:
        """A chat that talks to us is reachable again (it may have unblocked the bot)."""
        stored = await self.store.find_chat(self.name, str(chat.id))
        if stored is not None and not stored.active:
            await self.store.set_chat_active(stored.id, True)
            log.info("telegram: chat %s is back; delivering to it again", chat.id)

    async def _is_admin(self, chat: TelegramChat, message: Message) -> bool:
        """Private chats: yes. Groups: the sender is the creator or an administrator."""
        if chat.type not in GROUP_KINDS:
            return True
        if message.sender_chat is not None and message.sender_chat.id == chat.id:
            return True  # an anonymous admin, posting as the group itself
        user = message.from_user
        if user is None:
            return False
        key, now = (chat.id, user.id), self.clock()
        cached = self._admins.get(key)
        if cached is not None and now - cached[1] < self.admin_cache_seconds:
            return cached[0]
        try:
            member = await self.app.bot.get_chat_member(chat.id, user.id)
        except TelegramError as err:
            log.warning("telegram: cannot check admin rights in chat %s: %s", chat.id, err)
            return False
        is_admin = member.status in ADMIN_STATUSES
        if len(self._admins) > 4096:
            self._admins = {
                k: v for k, v in self._admins.items() if now - v[1] < self.admin_cache_seconds
            }
        self._admins[key] = (is_admin, now)
        return is_admin
