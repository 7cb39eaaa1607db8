"""The Telegram adapter: chat commands in, alerts out, over one PTB `Application`.

The Application shares the service's event loop and is started and stopped explicitly (no
`run_polling`, no PTB Updater): `start()` returns at once and a background task connects
(getMe), drops the updates that queued up while the bot was down, registers the command menu;
another long-polls for updates. Sending needs only the connection: with `polling=False` (a
replica on PostgreSQL) `start()` connects for sending, keeps the updates waiting, and polls only
between `receive()` and `stop_receiving()`, while it holds the "telegram" lease (Telegram allows
one long-poller per token). Telegram being unreachable or refusing the token, at start or
later, is an outage: retried with backoff for as long as it lasts, logged once. PTB's own
polling loop is not used because it gives up for good on a 401, however brief. Every command
goes to the platform-neutral `Commands` layer and its `Reply` is rendered as Telegram HTML.

In webhook mode (a `Webhook` given: several processes serve one bot) the task instead listens
for Telegram's posts (bot.telegram.webhook) and registers the webhook with its secret token,
retried like the rest; pending updates are kept (another process may be serving them), and
stopping leaves the webhook in place: the other processes still answer it.

It is also the "telegram" notifier of the delivery worker: `send` maps Telegram's errors onto
`DeliveryError` (Forbidden: the chat is gone; RetryAfter: waited out a few times, then handed
back with its delay; ChatMigrated: the chat's rules follow it to its new id). Sends are paced
below Telegram's flood limits (bot.telegram.pacing; given `budgets`, the overall limit is
shared by every process on the database), and the token's secret is redacted from every log
record for the rest of the process (bot.redaction: httpx and PTB log URLs, Telegram URLs
contain the token, and PTB's InvalidToken quotes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from typing import Any

from telegram import (
    BotCommand,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    Update,
    User,
)
from telegram import Chat as TelegramChat
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from alerts.models import Alert
from bot import render
from bot.actions import Ref
from bot.commands import Caller, Commands
from bot.notifier import DeliveryError
from bot.redaction import redact, scrub
from bot.replies import BUTTONS, Reply, pressed_note, refusal_text
from bot.results import Action, NoHistory, Pressed, Refusal
from bot.telegram.admins import Admins
from bot.telegram.pacing import FloodWaits, KeyedLocks, Rates, SendLimiter, Sleep, retry_seconds
from bot.telegram.webhook import Endpoint, Webhook, derived_secret
from feeds.backoff import Backoff
from storage.api import BudgetStore, Chat, Storage

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.telegram.org/bot"
CAPTION_LIMIT = 1024  # Telegram's limit for a photo caption
TOAST_LIMIT = 200  # Telegram's limit for a button's answer
COMMANDS = (
    ("start", "What this bot does"),
    ("help", "Commands and rule examples"),
    ("status", "Price, day change, spread: /status BTC"),
    ("alert", "Add an alert: /alert XAG above 50"),
    ("alerts", "This chat's alerts with ids"),
    ("remove", "Remove an alert: /remove 3"),
    ("mute", "Pause alerts: /mute 2h"),
    ("unmute", "Resume alerts"),
    ("snooze", "Quiet one alert: /snooze 3 1h"),
    ("subscribe", "Notable moves of a symbol: /subscribe XAU"),
    ("unsubscribe", "Stop notable moves"),
    ("chart", "A price chart: /chart XAU 3m"),
    ("rotation", "Gold, silver, BTC, ETH side by side"),
    ("charts", "Charts with alerts: /charts on|off"),
    ("digest", "A daily digest: /digest 08:00 Europe/London"),
    ("webhook", "Webhooks: /webhook add URL|list|remove ID|in"),
)
UPDATES = (Update.MESSAGE, Update.EDITED_MESSAGE, Update.CALLBACK_QUERY)  # what handlers take
REFUSAL = "Sorry, this bot only answers the chats its owner has allowed."
HINT = "I answer commands: try /help, or /status BTC."
SORRY = "Sorry, something went wrong on my side. Please try again in a minute."
EDITED = "Edits are not read: send the command again."
EDITS_KEPT = 1000  # edited messages remembered, so that editing one again gets no second note


def _chat_ref(chat_id: str) -> int | str:
    """A stored chat id as the Bot API takes it."""
    return int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id


def _keyboard(buttons: list[tuple[Action, str]]) -> InlineKeyboardMarkup | None:
    """Buttons under an alert, two a row; None when there are none."""
    if not buttons:
        return None
    keys = [InlineKeyboardButton(BUTTONS[action], callback_data=data) for action, data in buttons]
    return InlineKeyboardMarkup([keys[i : i + 2] for i in range(0, len(keys), 2)])


def _name(user: User) -> str:
    """How a note names the one who pressed a button: @username, else the first name."""
    return f"@{user.username}" if user.username else user.first_name


def _secret_of(token: str) -> str:
    """The secret half of a bot token (`<bot id>:<secret>`); the bot id is public."""
    return token.partition(":")[2] or token


class TelegramBot:
    """The Telegram front end and the delivery notifier for platform "telegram"."""

    name = "telegram"

    def __init__(
        self,
        *,
        token: str,
        commands: Commands,
        store: Storage,
        base_url: str = DEFAULT_BASE_URL,
        allowed_chats: Collection[str] = (),
        webhook: Webhook | None = None,
        rates: Rates | None = None,
        budgets: BudgetStore | None = None,
        retries: int = 2,
        max_retry_wait: float = 30.0,
        admin_cache_seconds: float = 300.0,
        poll_timeout: float = 10.0,
        polling: bool = True,
        webhook_check_seconds: float = 60.0,
        reconnect_base: float = 1.0,
        reconnect_cap: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        # Before the Bot exists: it logs its URL, token included, at DEBUG.
        self._secret = _secret_of(token)
        redact(self._secret)
        self.webhook = webhook
        self.commands = commands
        self.store = store
        self.allowed_chats = frozenset(allowed_chats)
        self.retries = retries
        self.max_retry_wait = max_retry_wait
        self.poll_timeout = poll_timeout
        self.polling = polling
        self.webhook_check_seconds = webhook_check_seconds
        self.reconnect_base = reconnect_base
        self.reconnect_cap = reconnect_cap
        self.clock = clock
        self.sleep = sleep
        self._task: asyncio.Task[None] | None = None  # connecting, then watching a webhook
        self._poller: asyncio.Task[None] | None = None  # polling, once connected
        self._connected = False  # getMe answered and the Application runs: sends may go
        self._up = asyncio.Event()  # set with _connected
        self._receiving = False  # the last getUpdates (or the connection) succeeded
        self._turns = KeyedLocks()  # one message at a time per chat, in arrival order
        self._edits: dict[tuple[int, int], None] = {}  # (chat, message) noted, oldest first
        self.app: Application[Any, Any, Any, Any, Any, Any] = (
            ApplicationBuilder()
            .token(token)
            .base_url(base_url)
            .rate_limiter(SendLimiter(rates or Rates(), clock, sleep, budgets))
            .job_queue(None)  # the service owns scheduling
            .updater(None)  # we poll ourselves (see _poll)
            .concurrent_updates(16)  # a slow /status must not hold up everyone else
            .build()
        )
        self.admins = Admins(
            self.app.bot.get_chat_member, clock, admin_cache_seconds, self._describe
        )
        only_new = filters.UpdateType.MESSAGE  # an edited "/alert ..." must not add it twice
        self.app.add_handler(MessageHandler(only_new & filters.COMMAND, self._on_command))
        self.app.add_handler(
            MessageHandler(filters.UpdateType.EDITED_MESSAGE & filters.COMMAND, self._on_edit)
        )
        self.app.add_handler(
            MessageHandler(
                only_new & filters.ChatType.PRIVATE & filters.TEXT & ~filters.COMMAND,
                self._on_text,
            )
        )
        self.app.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, self._on_migrate))
        self.app.add_handler(CallbackQueryHandler(self._on_press))
        self.app.add_error_handler(self._on_error)
        self.endpoint: Endpoint | None = None
        self._webhook_secret = ""
        self._webhook_error: datetime | None = None  # when Telegram last failed to post to us
        if webhook is not None:
            self._webhook_secret = webhook.secret or derived_secret(token)
            redact(self._webhook_secret)
            self.endpoint = Endpoint(
                self.app.bot, self.app.update_queue, self._webhook_secret, webhook.path
            )

    # --- life cycle ---

    async def start(self) -> None:
        """Connect and poll (or take webhook posts) in a background task: returns at once and
        never raises for Telegram's sake (unreachable, failing or refusing the token: retried
        with backoff)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="telegram")
        if self.polling and self.endpoint is None:
            await self.receive()

    async def receive(self) -> None:
        """Long-poll for updates in the background, from when the connection is up."""
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll_when_up(), name="telegram polling")

    async def stop_receiving(self) -> None:
        """Stop polling (updates not yet taken wait at Telegram for the next poller); sending
        and the commands in flight go on."""
        poller, self._poller = self._poller, None
        if self.endpoint is None:
            self._receiving = False
        if poller is not None:
            poller.cancel()
            await asyncio.wait({poller})

    def ready(self) -> bool:
        """Whether alerts can be sent now: connected."""
        return self._connected

    def listening(self) -> bool:
        """Whether commands are being received: connected, and polling without failures (or
        taking webhook posts)."""
        if self.endpoint is not None:
            return self._receiving and self.endpoint.serving
        return self._receiving and self._poller is not None and not self._poller.done()

    async def stop(self) -> None:
        """Stop connecting or polling and finish the commands in flight; `send` keeps working
        until close()."""
        await self.stop_receiving()
        task, self._task = self._task, None
        self._receiving = False
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
        if self.endpoint is not None:  # the webhook stays set: other processes answer it
            await self.endpoint.close()
        if self.app.running:
            await self.app.stop()

    async def close(self) -> None:
        """Stop and release the HTTP connections (the token stays redacted from logs)."""
        await self.stop()
        self._connected = False
        self._up.clear()
        await self.app.shutdown()
        await self.app.bot.shutdown()  # after a failed getMe the bot is open, the app is not

    async def _run(self) -> None:
        try:
            await self._connect()
            if self.endpoint is not None:
                await self._watch_webhook()
        except Exception:  # a bug: say so, rather than end silently inside a task
            self._receiving = False
            log.exception("telegram: no longer taking commands")

    async def _poll_when_up(self) -> None:
        try:
            await self._up.wait()
            self._receiving = True
            await self._poll()
        except Exception:  # a bug: say so, rather than end silently inside a task
            self._receiving = False
            log.exception("telegram: no longer taking commands")

    async def _connect(self) -> None:
        """getMe (it checks the token) and drop stale updates until both work (in webhook mode:
        listen, then set the webhook); then register the command menu and start handling
        updates. A replica that polls only under the "telegram" lease keeps the updates: another
        replica may be about to take them."""
        backoff = Backoff(self.reconnect_base, self.reconnect_cap)
        while True:
            what = "cannot connect"
            try:
                await self.app.initialize()
                if self.webhook is None or self.endpoint is None:
                    await self.app.bot.delete_webhook(drop_pending_updates=self.polling)
                    break
                if not self.endpoint.serving:
                    what = f"cannot take webhook posts on TELEGRAM_WEBHOOK_PORT={self.webhook.port}"
                    await self.endpoint.start(self.webhook.host, self.webhook.port)
                    backoff.success()  # a failing setWebhook next is news: logged
                what = "cannot set the webhook"
                await self._set_webhook()
                break
            except Exception as err:
                await asyncio.sleep(self._failed(backoff, what, err))
        try:
            await self.app.bot.set_my_commands([BotCommand(c, d) for c, d in COMMANDS])
        except TelegramError as err:  # the menu is a convenience; commands work without it
            log.warning("telegram: could not register the command menu: %s", self._describe(err))
        await self.app.start()
        self._connected = True
        self._receiving = self.endpoint is not None  # polling says so itself
        self._up.set()
        how = f" (webhook {self.webhook.url})" if self.webhook is not None else ""
        log.info("telegram: answering as @%s%s", self.app.bot.username, how)

    async def _set_webhook(self) -> None:
        """Register the webhook, its secret and the updates we take; the last Telegram error
        delivering to it is noted, so that only newer ones count (`_watch_webhook`)."""
        assert self.webhook is not None
        await self.app.bot.set_webhook(
            self.webhook.url, secret_token=self._webhook_secret, allowed_updates=UPDATES
        )
        self._webhook_error = (await self.app.bot.get_webhook_info()).last_error_date

    async def _watch_webhook(self) -> None:
        """Ask Telegram every `webhook_check_seconds` how the webhook fares. Telegram failing to
        deliver to it (the proxy, TLS or DNS in front of us) is logged once per outage, with
        Telegram's reason: nothing else would show it. A webhook deleted or replaced (by a
        process polling with this token, say) is set again. Failures to ask are not news:
        sends and their outages say that Telegram is unreachable."""
        assert self.webhook is not None
        failing = False
        while True:
            await asyncio.sleep(self.webhook_check_seconds)
            try:
                info = await self.app.bot.get_webhook_info()
                if info.url != self.webhook.url:
                    log.warning(
                        "telegram: the webhook is %s, not %s (a process polling with this "
                        "token?); setting it again",
                        info.url or "deleted",
                        self.webhook.url,
                    )
                    await self._set_webhook()
                    continue
            except TelegramError:
                continue
            error_at = info.last_error_date  # Telegram's last failed post, kept until the next
            fails = error_at is not None and error_at != self._webhook_error
            self._webhook_error = error_at
            if fails and not failing:
                log.warning(
                    "telegram: Telegram cannot deliver updates to %s: %s",
                    self.webhook.url,
                    info.last_error_message or "no reason given",
                )
            elif failing and not fails:
                log.info("telegram: Telegram delivers updates to the webhook again")
            failing = fails

    async def _poll(self) -> None:
        """Long-poll getUpdates into the Application's queue; failures (a 401 included) are
        retried with backoff for as long as they last."""
        backoff = Backoff(self.reconnect_base, self.reconnect_cap)
        offset: int | None = None
        while True:
            try:
                updates = await self.app.bot.get_updates(
                    offset=offset,
                    timeout=timedelta(seconds=self.poll_timeout),
                    allowed_updates=UPDATES,
                )
            except Exception as err:
                self._receiving = False
                await asyncio.sleep(self._failed(backoff, "polling for updates failed", err))
                continue
            self._receiving = True
            if backoff.success():
                log.info("telegram: receiving updates again")
            for update in updates:
                await self.app.update_queue.put(update)
            if updates:
                offset = updates[-1].update_id + 1

    def _failed(self, backoff: Backoff, what: str, err: Exception) -> float:
        """Count a failed attempt and warn at the first of an outage; the seconds to wait."""
        now = datetime.now(UTC)
        at_least = retry_seconds(err) if isinstance(err, RetryAfter) else 0.0
        wait = (backoff.failure(now, at_least) - now).total_seconds()
        if backoff.outage_started:
            log.warning(
                "telegram: %s (%s); retrying in the background",
                what,
                self._describe(err),
                exc_info=None if isinstance(err, TelegramError | OSError) else err,  # a bug
            )
        return wait

    def _describe(self, err: Exception) -> str:
        """An error as text for logs and the outbox: never the token (InvalidToken quotes it)."""
        if isinstance(err, InvalidToken):
            return "Telegram refused the token"
        if isinstance(err, TelegramError):
            text = err.message
        else:  # an OSError says itself well ("address already in use"); other errors are bugs
            text = str(err) if isinstance(err, OSError) else repr(err)
        return scrub(text, (self._secret,))

    # --- the notifier ---

    async def send(
        self, chat: Chat, alert: Alert, image: bytes | None = None, ref: Ref | None = None
    ) -> str | None:
        """Deliver one alert, with its buttons under it when `ref` names its row; Telegram's
        answer becomes a message id or a DeliveryError."""
        text = render.alert_html(alert)
        keyboard = None
        if ref is not None:
            with_chart = image is not None and len(text) <= CAPTION_LIMIT
            keyboard = _keyboard(await self.commands.buttons(chat, ref, alert, with_chart))
        return await self._deliver(chat, text, image, render.alert_plain(alert), keyboard)

    async def post(self, chat: Chat, reply: Reply) -> str | None:
        """Deliver a composed message (a daily digest, no buttons): one photo with the text as
        its caption when that fits, else the text, then the chart; the id of its first
        message."""
        parts = render.telegram_html(reply)
        if reply.image is not None and len(parts) == 1 and len(parts[0]) <= CAPTION_LIMIT:
            return await self._deliver(chat, parts[0], reply.image)
        first = None
        for part in parts:
            sent = await self._deliver(chat, part)
            first = first or sent
        if reply.image is not None:
            await self._deliver(chat, "", reply.image)
        return first

    async def _deliver(
        self,
        chat: Chat,
        text: str,
        image: bytes | None = None,
        plain: str | None = None,
        keyboard: InlineKeyboardMarkup | None = None,
    ) -> str:
        """Send one HTML message (a photo with `text` as its caption when `image` is given and
        the caption fits), with `keyboard` under it; `plain` is sent instead if Telegram
        refuses the HTML."""
        if not self._connected:
            raise DeliveryError("telegram: not connected yet")
        if self.allowed_chats and chat.chat_id not in self.allowed_chats:
            raise DeliveryError("chat not in TELEGRAM_ALLOWED_CHATS", permanent=True)
        chat_id = chat.chat_id
        mode: ParseMode | None = ParseMode.HTML
        waits, moves = FloodWaits(self.retries, self.max_retry_wait, self.sleep), 0
        while True:
            try:
                message: Message
                if image is not None and len(text) <= CAPTION_LIMIT:
                    message = await self.app.bot.send_photo(
                        _chat_ref(chat_id),
                        image,
                        caption=text or None,
                        parse_mode=mode,
                        reply_markup=keyboard,
                    )
                else:  # no chart, or a caption too long for one: the text alone
                    message = await self.app.bot.send_message(
                        _chat_ref(chat_id), text, parse_mode=mode, reply_markup=keyboard
                    )
                return str(message.message_id)
            except RetryAfter as err:
                if not await waits.wait_out(err, chat_id):
                    delay = retry_seconds(err)
                    raise DeliveryError(
                        f"flood control, retry in {delay:g}s", retry_after=delay
                    ) from err
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
                if mode is None or plain is None:
                    raise DeliveryError(f"bad request: {err.message}", permanent=True) from err
                log.error(
                    "telegram: chat %s rejected %r as HTML (%s); sending it as plain text",
                    chat_id,
                    plain[:60],
                    err.message,
                )
                text, mode = plain, None
            except NetworkError as err:  # after BadRequest and TimedOut's own subclasses
                raise DeliveryError(f"network: {self._describe(err)}") from err
            except TelegramError as err:  # InvalidToken, Conflict, ...: never the chat's fault
                raise DeliveryError(f"telegram: {self._describe(err)}") from err

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
                is_admin=await self.admins.is_admin(chat, message),
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
            log.warning("telegram: could not answer in chat %s: %s", chat.id, self._describe(err))
        except Exception:
            log.exception("telegram: command %r in chat %s failed", message.text[:40], chat.id)
            with contextlib.suppress(TelegramError):
                await self._answer(chat.id, SORRY)

    async def _on_edit(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """An edited command is not run (an edit must not add an alert twice): say so, once per
        message, when the command is ours to answer."""
        message, chat = update.effective_message, update.effective_chat
        if message is None or chat is None or not message.text:
            return
        if not self._addressed_to_me(message.text):
            return
        key = (chat.id, message.message_id)
        if key in self._edits:
            return
        self._edits[key] = None
        if len(self._edits) > EDITS_KEPT:
            del self._edits[next(iter(self._edits))]
        async with self._turns.hold(chat.id):
            try:
                await self._answer(chat.id, EDITED if self._allowed(chat.id) else REFUSAL)
            except TelegramError as err:
                log.warning(
                    "telegram: could not answer in chat %s: %s", chat.id, self._describe(err)
                )

    async def _on_press(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A button under an alert: answered at once, then the message shows what was done."""
        query = update.callback_query
        if query is None or query.message is None:
            return
        chat = query.message.chat
        async with self._turns.hold(chat.id):
            try:
                await self._press(query, chat)
            except TelegramError as err:
                log.warning(
                    "telegram: could not answer a button in chat %s: %s",
                    chat.id,
                    self._describe(err),
                )
            except Exception:
                log.exception("telegram: a button in chat %s failed", chat.id)
                with contextlib.suppress(TelegramError):
                    await query.answer(SORRY)

    async def _press(self, query: CallbackQuery, chat: TelegramChat) -> None:
        if not self._allowed(chat.id):
            await query.answer(REFUSAL)
            return
        caller = Caller(
            platform=self.name,
            chat_id=str(chat.id),
            chat_kind=chat.type,
            user_id=str(query.from_user.id),
            is_admin=await self.admins.user_is_admin(chat, query.from_user),
        )
        result = await self.commands.press(caller, query.data or "", _name(query.from_user))
        if isinstance(result, Refusal):
            await query.answer(refusal_text(result)[:TOAST_LIMIT])
            return
        assert isinstance(result, Pressed)
        note = pressed_note(result)
        await query.answer(note[:TOAST_LIMIT])
        message = query.message
        assert message is not None
        had_chart = isinstance(message, Message) and bool(message.photo)
        stored = await self.store.find_chat(self.name, str(chat.id))
        assert stored is not None
        ref = Ref(result.row, result.rule_id)
        buttons = await self.commands.buttons(
            stored, ref, result.alert, had_chart, frozenset(result.used)
        )
        keyboard = _keyboard(buttons)
        if result.action is Action.CHART:
            image = await self.commands.pressed_chart(result)
            if image is None:  # the button stays, for when there is history
                missing = refusal_text(NoHistory(result.alert.symbol))
                await self.app.bot.send_message(
                    chat.id, missing, reply_to_message_id=message.message_id
                )
                return
            await self.app.bot.edit_message_reply_markup(
                chat.id, message.message_id, reply_markup=keyboard
            )
            await self.app.bot.send_photo(
                chat.id, image, caption=note, reply_to_message_id=message.message_id
            )
            return
        text = f"{render.alert_html(result.alert)}\n{html.escape(note)}"
        if had_chart and len(text) <= CAPTION_LIMIT:
            await self.app.bot.edit_message_caption(
                chat.id, message.message_id, caption=text, parse_mode=ParseMode.HTML,
                reply_markup=keyboard,
            )  # fmt: skip
        elif had_chart:  # no room for the note in the caption: the buttons say it
            await self.app.bot.edit_message_reply_markup(
                chat.id, message.message_id, reply_markup=keyboard
            )
        else:
            await self.app.bot.edit_message_text(
                text, chat.id, message.message_id, parse_mode=ParseMode.HTML,
                reply_markup=keyboard,
            )  # fmt: skip

    async def _on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Point plain text in a private chat at /help."""
        chat = update.effective_chat
        if chat is None:
            return
        async with self._turns.hold(chat.id):
            try:
                await self._answer(chat.id, HINT if self._allowed(chat.id) else REFUSAL)
            except TelegramError as err:
                log.warning(
                    "telegram: could not answer in chat %s: %s", chat.id, self._describe(err)
                )

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

    # --- helpers ---

    async def _answer(self, chat_id: int, html: str) -> Message:
        """Send one HTML message, waiting out a short flood-control delay once."""
        waits = FloodWaits(1, self.max_retry_wait, self.sleep)
        while True:
            try:
                message: Message = await self.app.bot.send_message(
                    chat_id, html, parse_mode=ParseMode.HTML
                )
                return message
            except RetryAfter as err:
                if not await waits.wait_out(err, chat_id):
                    raise

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
