"""A fake Telegram Bot API over real HTTP on 127.0.0.1, for the Telegram adapter's tests and bench.

It answers `/bot<TOKEN>/<method>` the way the Bot API does (`{"ok": true, "result": ...}`, or
`{"ok": false, "error_code": ..., "description": ..., "parameters": ...}`) for the methods the
adapter uses: getMe, getUpdates (long poll, capped short, served from a queue the test fills),
setMyCommands, sendMessage, sendPhoto, getChatMember, close and logOut; and for
the buttons under alerts: inline keyboards on sends (callback_data checked for Telegram's 1 to
64 bytes), button presses queued as callback queries (`press`), answerCallbackQuery (each query
answered once, as Telegram allows), editMessageText, editMessageCaption and
editMessageReplyMarkup (refused like Telegram when nothing would change), each recorded.

Every call is recorded (method, parameters as sent, arrival time); accepted messages separately.
Messages are checked like Telegram checks them: HTML must use only Telegram's tags, balanced,
with `<`, `>` and `&` escaped elsewhere, and the text must fit 4096 characters. Faults can be
injected per chat (on sends) or per method: 429 with retry_after, 403, 400 with
migrate_to_chat_id, 400 chat not found, 400 can't parse entities, 401, 500, 502; and the whole
fake can go down (connections refused) and come up again on the same port. Optionally the fake
enforces flood limits (per bot, per private chat, per group; sliding windows) and answers 429
past them, counting each, for photos as for texts. A send counts when it has fully arrived, as
a server can only count it then: `slow_uploads` makes the next photos take that many seconds
each to arrive (an upload's time varies; requests sent evenly can arrive bunched).

Webhooks as Telegram keeps them: setWebhook (an https URL, a secret token of Telegram's
characters), deleteWebhook and getWebhookInfo; while a webhook is set, getUpdates answers 409
Conflict, as Telegram does. Telegram would then post each update to the webhook URL; here the
test does, as `post_update` (with the secret token registered), to wherever the bot listens.
`webhook_failure` plays Telegram failing to post to the URL: getWebhookInfo reports a newer
last_error_date on each call meanwhile, with the reason.

The token is masked in the fake's own access log (that log is Telegram's side, not ours).

    async with FakeTelegram(TOKEN) as fake:
        bot = TelegramBot(token=TOKEN, base_url=fake.base_url, ...)
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import re
import time
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from support.local_server import serve_locally

BOT_ID = 7_000_001
ANONYMOUS_ADMIN = {"id": 1087968824, "is_bot": True, "first_name": "Group",
                   "username": "GroupAnonymousBot"}  # fmt: skip
TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a",
     "tg-emoji", "code", "pre", "blockquote"}
)  # fmt: skip
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z-]*)(\s[^<>]*)?>")
_ENTITY = re.compile(r"&(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")
SEND_METHODS = frozenset({"sendMessage", "sendPhoto"})
MAX_TEXT = 4096
MAX_CALLBACK_DATA = 64  # bytes
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)


class Fault(Enum):
    """What the fake answers instead of success."""

    RETRY_AFTER = "retry_after"  # 429 with parameters.retry_after
    FORBIDDEN = "forbidden"  # 403: bot was blocked by the user
    MIGRATED = "migrated"  # 400 with parameters.migrate_to_chat_id
    CHAT_NOT_FOUND = "chat_not_found"  # 400: chat not found
    BAD_ENTITIES = "bad_entities"  # 400: can't parse entities
    BAD_GATEWAY = "bad_gateway"  # 502
    UNAUTHORIZED = "unauthorized"  # 401, what Telegram answers a revoked token
    INTERNAL = "internal"  # 500


@dataclass(frozen=True, slots=True)
class Call:
    """One request the fake received: the method, its parameters as sent, and when."""

    method: str
    params: dict[str, str]
    at: float


@dataclass(frozen=True, slots=True)
class Sent:
    """One message the fake accepted."""

    chat_id: int
    text: str
    parse_mode: str | None
    message_id: int
    at: float  # when the request had fully arrived (a photo's upload included)
    method: str = "sendMessage"
    keyboard: tuple[tuple[str, str], ...] = ()  # (label, callback_data) of its buttons
    reply_to: int | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """One answerCallbackQuery: the query it answers, the text shown, and when."""

    query_id: str
    text: str
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class Edit:
    """One accepted edit: the method, the message, its new text (None: unchanged) and
    buttons."""

    method: str
    chat_id: int
    message_id: int
    text: str | None
    keyboard: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Limits:
    """Flood limits the fake enforces: per bot and per private chat a second, per group a minute."""

    overall_per_second: float = 30.0
    chat_per_second: float = 1.0
    group_per_minute: float = 20.0

    def scaled(self, factor: float) -> Limits:
        """The same limits `factor` times higher (a benchmark that finishes in seconds)."""
        return Limits(
            self.overall_per_second * factor,
            self.chat_per_second * factor,
            self.group_per_minute * factor,
        )


@dataclass(slots=True)
class _Injection:
    fault: Fault
    times: int | None  # None: until healed
    migrate_to: int | None = None
    retry_after: int = 1


@dataclass(slots=True)
class _Windows:
    """Arrival times of accepted sends per key, for sliding-window limits."""

    times: dict[object, deque[float]] = field(default_factory=dict)

    def full(self, key: object, limit: float, window: float, now: float) -> bool:
        recent = self.times.setdefault(key, deque())
        while recent and recent[0] <= now - window:
            recent.popleft()
        return len(recent) >= limit

    def add(self, key: object, now: float) -> None:
        self.times.setdefault(key, deque()).append(now)


def html_problem(text: str) -> str | None:
    """Why Telegram would refuse `text` in HTML parse mode, or None when it is fine."""
    stack: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "<":
            match = _TAG.match(text, i)
            if match is None or match.group(2).lower() not in TAGS:
                return f"Can't parse entities: unsupported start tag at byte offset {i}"
            name = match.group(2).lower()
            if match.group(1):
                if not stack or stack.pop() != name:
                    return f"Can't parse entities: unexpected end tag at byte offset {i}"
            else:
                stack.append(name)
            i = match.end()
        elif char == "&":
            match = _ENTITY.match(text, i)
            if match is None:
                return f"Can't parse entities: unsupported character entity at byte offset {i}"
            i = match.end()
        elif char == ">":
            return f"Can't parse entities: unexpected '>' at byte offset {i}"
        else:
            i += 1
    if stack:
        return f"Can't parse entities: can't find end tag corresponding to start tag {stack[-1]}"
    return None


def plain(text: str) -> str:
    """What a user sees of an HTML message: tags dropped, entities decoded."""
    return html.unescape(_TAG.sub("", text))


class FakeTelegram:
    """A local Bot API for one bot token. Use as an async context manager."""

    def __init__(
        self,
        token: str,
        *,
        username: str = "tickerbell_test_bot",
        poll_cap: float = 0.5,
        limits: Limits | None = None,
    ) -> None:
        self.token = token
        self.username = username
        self.poll_cap = poll_cap
        self.limits = limits
        self.calls: list[Call] = []
        self.messages: list[Sent] = []
        self.admins: dict[int, dict[int, str]] = {}  # chat -> user -> "creator"/"administrator"
        self.chat_types: dict[int, str] = {}
        self.commands: list[dict[str, str]] = []
        self.rate_limited = 0  # 429s from limit enforcement (not injected ones)
        self.slow_uploads: list[float] = []  # seconds the next sendPhoto calls take to arrive
        self._chat_faults: dict[int, _Injection] = {}
        self._method_faults: dict[str, _Injection] = {}
        self.answers: list[Answer] = []
        self.edits: list[Edit] = []
        self._shown: dict[int, dict[str, Any]] = {}  # message id -> the message as it is now
        self._queries: dict[str, bool] = {}  # callback query id -> answered
        self._updates: list[dict[str, Any]] = []
        self._pushed: dict[int, int] = {}  # update id -> its message's id
        self._allowed: list[str] | None = None  # getUpdates' allowed_updates, kept as Telegram does
        self.webhook: dict[str, Any] | None = None  # url, secret_token, allowed_updates
        self.webhook_failure: str | None = None  # why posts to the webhook fail, while they do
        self._webhook_errors: list[int] = []  # the dates of failed posts, as Telegram keeps them
        self._webhook_message = ""
        self._next_update = 1
        self._next_message = 1000
        self._arrived = asyncio.Event()
        self._windows = _Windows()
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def __aenter__(self) -> FakeTelegram:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner, self.port = await serve_locally(app, access_log_class=_MaskedAccessLog)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._wake_pollers()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        """What to give PTB as base_url (it appends the token and the method)."""
        return f"http://127.0.0.1:{self.port}/bot"

    # --- what tests do ---

    def push(
        self,
        text: str,
        *,
        chat_id: int,
        user_id: int | None = None,
        chat_type: str = "private",
        anonymous_admin: bool = False,
        edit_of: int | None = None,
    ) -> int:
        """Queue a message from a user as an update (with `edit_of`: an edit of that message,
        its new text `text`); return its update_id."""
        update = self.update(
            text,
            chat_id=chat_id,
            user_id=user_id,
            chat_type=chat_type,
            anonymous_admin=anonymous_admin,
            edit_of=edit_of,
        )
        self._updates.append(update)
        self._wake_pollers()
        return int(update["update_id"])

    def message_of(self, update_id: int) -> int:
        """The message id of a pushed update's message (what an edit of it names)."""
        return self._pushed[update_id]

    def update(
        self,
        text: str,
        *,
        chat_id: int,
        user_id: int | None = None,
        chat_type: str = "private",
        anonymous_admin: bool = False,
        edit_of: int | None = None,
    ) -> dict[str, Any]:
        """A message from a user as an update, not queued (for `post_update`); with `edit_of`,
        an `edited_message` update for that message id."""
        self.chat_types[chat_id] = chat_type
        chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            chat["first_name"] = f"User{chat_id}"
        else:
            chat["title"] = f"Group {chat_id}"
        message: dict[str, Any] = {
            "message_id": self._message_id() if edit_of is None else edit_of,
            "date": int(time.time()),
            "chat": chat,
            "text": text,
        }
        if edit_of is not None:
            message["edit_date"] = int(time.time())
        if anonymous_admin:
            message["from"], message["sender_chat"] = ANONYMOUS_ADMIN, chat
        else:
            uid = user_id if user_id is not None else chat_id
            message["from"] = {"id": uid, "is_bot": False, "first_name": f"User{uid}"}
        if text.startswith("/"):
            word = text.split(maxsplit=1)[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(word)}]
        update_id = self._next_update
        self._next_update += 1
        self._pushed[update_id] = int(message["message_id"])
        return {"update_id": update_id, "message" if edit_of is None else "edited_message": message}

    async def post_update(
        self, to: str, update: dict[str, Any] | bytes, secret: str | None = None
    ) -> int:
        """Post an update (or any body) to `to` as Telegram posts to a webhook: with the secret
        token setWebhook registered (or `secret`); the answer's status."""
        headers = {"Content-Type": "application/json"}
        token = secret if secret is not None else (self.webhook or {}).get("secret_token")
        if token:
            headers["X-Telegram-Bot-Api-Secret-Token"] = token
        body = update if isinstance(update, bytes) else json.dumps(update).encode()
        async with aiohttp.ClientSession() as http, http.post(to, data=body, headers=headers) as r:
            return r.status

    def press(
        self,
        message_id: int,
        label: str,
        *,
        user_id: int,
        username: str | None = None,
        data: str | None = None,
    ) -> str:
        """Queue a press of the button `label` under a message the bot sent, by a user, as a
        callback query (`data` instead of the button's own: tampered data); return its id."""
        message = self._shown[message_id]
        if data is None:
            data = dict(self.keyboard(message_id))[label]
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"}
        if username:
            user["username"] = username
        query_id = str(len(self._queries) + 1)
        self._queries[query_id] = False
        query = {
            "id": query_id,
            "from": user,
            "message": {k: v for k, v in message.items() if v is not None},
            "chat_instance": str(message["chat"]["id"]),
            "data": data,
        }
        self._updates.append({"update_id": self._next_update, "callback_query": query})
        self._next_update += 1
        self._wake_pollers()
        return query_id

    def keyboard(self, message_id: int) -> tuple[tuple[str, str], ...]:
        """The (label, callback_data) of the buttons under a message now."""
        return _buttons(self._shown[message_id].get("reply_markup"))

    def shown(self, message_id: int) -> str:
        """A message's text (or caption) as users see it now."""
        message = self._shown[message_id]
        return str(message.get("text", message.get("caption", "")))

    def answer_to(self, query_id: str) -> str | None:
        """The text a callback query was answered with (None: not answered)."""
        return next((a.text for a in self.answers if a.query_id == query_id), None)

    def migrate(self, old: int, new: int) -> None:
        """Queue the service message Telegram posts when a group becomes a supergroup."""
        message = {
            "message_id": self._message_id(),
            "date": int(time.time()),
            "chat": {"id": old, "type": "group", "title": f"Group {old}"},
            "from": {"id": 1, "is_bot": False, "first_name": "Owner"},
            "migrate_to_chat_id": new,
        }
        self._updates.append({"update_id": self._next_update, "message": message})
        self._next_update += 1
        self._wake_pollers()

    def fail_chat(
        self,
        chat_id: int,
        fault: Fault,
        times: int | None = 1,
        *,
        migrate_to: int | None = None,
        retry_after: int = 1,
    ) -> None:
        """Answer the next `times` sends to this chat (None: all of them) with `fault`."""
        self._chat_faults[chat_id] = _Injection(fault, times, migrate_to, retry_after)

    def fail_method(self, method: str, fault: Fault, times: int | None = 1) -> None:
        """Answer the next `times` calls of `method` (None: all of them) with `fault`."""
        self._method_faults[method] = _Injection(fault, times)

    def heal(self) -> None:
        """Stop every injected fault."""
        self._chat_faults.clear()
        self._method_faults.clear()

    async def go_down(self) -> None:
        """Stop listening and drop open connections: connections are refused until `come_up`."""
        assert self._runner is not None and self._runner.server is not None
        self._wake_pollers()
        for site in list(self._runner.sites):
            await site.stop()
        await self._runner.server.shutdown(0.1)

    async def come_up(self) -> None:
        """Listen again on the same port (the port number is the one `base_url` names)."""
        assert self._runner is not None
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def texts(self, chat_id: int) -> list[str]:
        """The messages this chat received, in order, as sent (HTML)."""
        return [m.text for m in self.messages if m.chat_id == chat_id]

    def count(self, method: str) -> int:
        """How many times `method` was called (successful or not)."""
        return sum(1 for c in self.calls if c.method == method)

    # --- HTTP ---

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await _params(request)
        self.calls.append(Call(method, params, time.perf_counter()))
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        fault = self._take(self._method_faults, method)
        if fault is None and method in SEND_METHODS and "chat_id" in params:
            fault = self._take(self._chat_faults, _int(params["chat_id"]))
        if fault is not None:
            return _fault(fault)
        if method == "sendPhoto" and self.slow_uploads:
            await asyncio.sleep(self.slow_uploads.pop(0))
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            return _error(404, "Not Found: method not found")
        result = handler(params) if method != "getUpdates" else await self._api_getUpdates(params)
        if isinstance(result, web.Response):
            return result
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    def _take(faults: dict[Any, _Injection], key: Any) -> _Injection | None:
        injection = faults.get(key)
        if injection is None:
            return None
        if injection.times is not None:
            injection.times -= 1
            if injection.times <= 0:
                del faults[key]
        return injection

    def _api_getMe(self, params: dict[str, str]) -> dict[str, Any]:
        return {
            "id": BOT_ID,
            "is_bot": True,
            "first_name": "Tickerbell",
            "username": self.username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _api_getUpdates(self, params: dict[str, str]) -> list[dict[str, Any]] | web.Response:
        if self.webhook is not None:
            return _error(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = _int(params.get("offset", "0"))
        if "allowed_updates" in params:  # kept for later calls that do not say
            self._allowed = json.loads(params["allowed_updates"]) or None
        # Telegram never delivers a kind the poller did not ask for
        self._updates = [
            u
            for u in self._updates
            if u["update_id"] >= offset
            and (self._allowed is None or any(kind in u for kind in self._allowed))
        ]
        if not self._updates:
            timeout = min(float(params.get("timeout", "0")), self.poll_cap)
            if timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), timeout)
        limit = _int(params.get("limit", "100"))
        return self._updates[:limit]

    def _api_deleteWebhook(self, params: dict[str, str]) -> bool:
        self.webhook = None
        if params.get("drop_pending_updates") == "true":
            self._updates.clear()
        return True

    def _api_setWebhook(self, params: dict[str, str]) -> bool | web.Response:
        url, secret = params.get("url", ""), params.get("secret_token")
        if not url.startswith("https://"):
            return _error(
                400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
            )
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            return _error(400, "Bad Request: secret token contains unallowed characters")
        allowed = json.loads(params["allowed_updates"]) if "allowed_updates" in params else None
        self.webhook = {"url": url, "secret_token": secret, "allowed_updates": allowed}
        if params.get("drop_pending_updates") == "true":
            self._updates.clear()
        return True

    def _api_getWebhookInfo(self, params: dict[str, str]) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": self.webhook["url"] if self.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self.webhook and self.webhook_failure is not None:  # Telegram tried again since
            self._webhook_errors.append(int(time.time()) + len(self._webhook_errors))
            self._webhook_message = self.webhook_failure
        if self._webhook_errors:
            info["last_error_date"] = self._webhook_errors[-1]
            info["last_error_message"] = self._webhook_message
        if self.webhook and self.webhook["allowed_updates"] is not None:
            info["allowed_updates"] = self.webhook["allowed_updates"]
        return info

    def _api_setMyCommands(self, params: dict[str, str]) -> bool | web.Response:
        commands = json.loads(params.get("commands", "[]"))
        for command in commands:
            name, description = command.get("command", ""), command.get("description", "")
            if not re.fullmatch(r"[a-z0-9_]{1,32}", name) or not 1 <= len(description) <= 256:
                return _error(400, "Bad Request: BOT_COMMAND_INVALID")
        self.commands = commands
        return True

    def _api_sendMessage(self, params: dict[str, str]) -> dict[str, Any] | web.Response:
        text = params.get("text", "")
        if (problem := _markup_problem(params)) is not None:
            return _error(400, problem)
        mode = params.get("parse_mode")
        if mode == "HTML" and (problem := html_problem(text)):
            return _error(400, f"Bad Request: {problem}")
        shown = plain(text) if mode == "HTML" else text
        if not shown.strip():
            return _error(400, "Bad Request: message text is empty")
        if len(shown.encode("utf-16-le")) // 2 > MAX_TEXT:
            return _error(400, "Bad Request: message is too long")
        return self._deliver("sendMessage", params, text, mode, {"text": shown})

    def _api_sendPhoto(self, params: dict[str, str]) -> dict[str, Any] | web.Response:
        caption = params.get("caption", "")
        if len(caption) > 1024:
            return _error(400, "Bad Request: message caption is too long")
        if (problem := _markup_problem(params)) is not None:
            return _error(400, problem)
        photo = [{"file_id": "photo1", "file_unique_id": "u1", "width": 800, "height": 400}]
        return self._deliver(
            "sendPhoto", params, caption, params.get("parse_mode"), {"photo": photo}
        )

    def _deliver(
        self,
        method: str,
        params: dict[str, str],
        text: str,
        mode: str | None,
        body: dict[str, Any],
    ) -> dict[str, Any] | web.Response:
        """Accept a send (sendMessage and sendPhoto alike) unless it breaks a flood limit."""
        chat_id = _int(params["chat_id"])
        now = time.perf_counter()
        if self.limits is not None and (wait := self._over_limit(chat_id, now)):
            self.rate_limited += 1
            return _error(429, f"Too Many Requests: retry after {wait}", retry_after=wait)
        if self.limits is not None:
            self._windows.add(None, now)
            self._windows.add(chat_id, now)
        message_id = self._message_id()
        markup = json.loads(params["reply_markup"]) if "reply_markup" in params else None
        reply_to = _reply_to(params)
        self.messages.append(
            Sent(chat_id, text, mode, message_id, now, method, _buttons(markup), reply_to)
        )
        kind = self.chat_types.get(chat_id, "private" if chat_id > 0 else "supergroup")
        chat = {"id": chat_id, "type": kind}
        bot = {"id": BOT_ID, "is_bot": True, "first_name": "Tickerbell", "username": self.username}
        message = {"message_id": message_id, "date": int(time.time()), "chat": chat, **body}
        if method == "sendPhoto" and text:
            message["caption"] = plain(text) if mode == "HTML" else text
        self._shown[message_id] = {**message, "from": bot, "reply_markup": markup}
        return message

    # --- buttons ---

    def _api_answerCallbackQuery(self, params: dict[str, str]) -> bool | web.Response:
        query_id = params.get("callback_query_id", "")
        if self._queries.get(query_id, True):  # unknown, or answered already
            return _error(400, "Bad Request: query is too old and response timeout expired "
                               "or query ID is invalid")  # fmt: skip
        text = params.get("text", "")
        if len(text) > 200:
            return _error(400, "Bad Request: MESSAGE_TOO_LONG")
        self._queries[query_id] = True
        self.answers.append(Answer(query_id, text, time.perf_counter()))
        return True

    def _api_editMessageText(self, params: dict[str, str]) -> dict[str, Any] | web.Response:
        return self._edit("editMessageText", params, "text")

    def _api_editMessageCaption(self, params: dict[str, str]) -> dict[str, Any] | web.Response:
        return self._edit("editMessageCaption", params, "caption")

    def _api_editMessageReplyMarkup(self, params: dict[str, str]) -> dict[str, Any] | web.Response:
        return self._edit("editMessageReplyMarkup", params, None)

    def _edit(
        self, method: str, params: dict[str, str], field: str | None
    ) -> dict[str, Any] | web.Response:
        """Change a message's text or caption (`field`) and its buttons, as Telegram does."""
        chat_id, message_id = _int(params.get("chat_id", "")), _int(params.get("message_id", ""))
        message = self._shown.get(message_id)
        if message is None or message["chat"]["id"] != chat_id:
            return _error(400, "Bad Request: message to edit not found")
        if (problem := _markup_problem(params)) is not None:
            return _error(400, problem)
        markup = json.loads(params["reply_markup"]) if "reply_markup" in params else None
        updated = {**message, "reply_markup": markup}
        text = None
        if field is not None:
            if field == "text" and "photo" in message:
                return _error(400, "Bad Request: there is no text in the message to edit")
            if field == "caption" and "photo" not in message:
                return _error(400, "Bad Request: there is no caption in the message to edit")
            text = params.get(field, "")
            mode = params.get("parse_mode")
            if mode == "HTML" and (problem := html_problem(text)):
                return _error(400, f"Bad Request: {problem}")
            updated[field] = plain(text) if mode == "HTML" else text
        if _buttons(updated["reply_markup"]) == _buttons(message.get("reply_markup")) and all(
            updated.get(k) == message.get(k) for k in ("text", "caption")
        ):
            return _error(400, NOT_MODIFIED)
        self._shown[message_id] = updated
        self.edits.append(Edit(method, chat_id, message_id, text, _buttons(markup)))
        return {k: v for k, v in updated.items() if v is not None}

    def _over_limit(self, chat_id: int, now: float) -> int:
        """Seconds to wait when this send would break a limit, else 0."""
        assert self.limits is not None
        if self._windows.full(None, self.limits.overall_per_second, 1.0, now):
            return 1
        if chat_id < 0:
            if self._windows.full(chat_id, self.limits.group_per_minute, 60.0, now):
                return 60
        elif self._windows.full(chat_id, self.limits.chat_per_second, 1.0, now):
            return 1
        return 0

    def _api_getChatMember(self, params: dict[str, str]) -> dict[str, Any]:
        chat_id, user_id = _int(params["chat_id"]), _int(params["user_id"])
        status = self.admins.get(chat_id, {}).get(user_id, "member")
        user = {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"}
        member: dict[str, Any] = {"status": status, "user": user}
        if status == "creator":
            member["is_anonymous"] = False
        elif status == "administrator":
            rights = ("can_be_edited", "is_anonymous", "can_manage_chat", "can_delete_messages",
                      "can_manage_video_chats", "can_restrict_members", "can_promote_members",
                      "can_change_info", "can_invite_users", "can_post_stories",
                      "can_edit_stories", "can_delete_stories")  # fmt: skip
            member.update({name: name == "can_manage_chat" for name in rights})
        return member

    def _api_close(self, params: dict[str, str]) -> bool:
        return True

    def _api_logOut(self, params: dict[str, str]) -> bool:
        return True

    def _message_id(self) -> int:
        self._next_message += 1
        return self._next_message

    def _wake_pollers(self) -> None:
        self._arrived.set()
        self._arrived = asyncio.Event()


class _MaskedAccessLog(AbstractAccessLogger):
    """aiohttp's access log without the token in the path."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        path = re.sub(r"^/bot[^/]+/", "/bot<token>/", request.path)
        self.logger.info("%s %s %s %.4fs", request.method, path, response.status, time)


async def _params(request: web.Request) -> dict[str, str]:
    """The call's parameters as strings, from the query, a form, multipart or JSON."""
    params = dict(request.query)
    if request.content_type == "application/json":
        body = await request.json()
        params.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()})
    elif request.can_read_body:
        form = await request.post()
        params.update({k: v if isinstance(v, str) else _file(v) for k, v in form.items()})
    return params


def _file(field: Any) -> str:
    """An uploaded file as the calls record it: its size, and whether it is a PNG."""
    data = field.file.read()
    kind = " png" if data.startswith(b"\x89PNG") else ""
    return f"<file {len(data)} bytes{kind}>"


def _buttons(markup: dict[str, Any] | None) -> tuple[tuple[str, str], ...]:
    """An inline keyboard's (label, callback_data), row by row."""
    if not markup:
        return ()
    rows = markup.get("inline_keyboard", [])
    return tuple((b["text"], b.get("callback_data", "")) for row in rows for b in row)


def _markup_problem(params: dict[str, str]) -> str | None:
    """Why Telegram would refuse the call's inline keyboard, or None."""
    if "reply_markup" not in params:
        return None
    for _, data in _buttons(json.loads(params["reply_markup"])):
        if not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA:
            return "Bad Request: BUTTON_DATA_INVALID"
    return None


def _reply_to(params: dict[str, str]) -> int | None:
    """The message a send replies to (reply_parameters, or the older reply_to_message_id)."""
    if "reply_parameters" in params:
        return int(json.loads(params["reply_parameters"])["message_id"])
    return _int(params["reply_to_message_id"]) if "reply_to_message_id" in params else None


def _int(value: str) -> int:
    return int(value) if value.lstrip("-").isdigit() else 0


def _error(code: int, description: str, **parameters: int) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=code)


def _fault(injection: _Injection) -> web.Response:
    fault = injection.fault
    if fault is Fault.RETRY_AFTER:
        wait = injection.retry_after
        return _error(429, f"Too Many Requests: retry after {wait}", retry_after=wait)
    if fault is Fault.FORBIDDEN:
        return _error(403, "Forbidden: bot was blocked by the user")
    if fault is Fault.MIGRATED:
        assert injection.migrate_to is not None
        return _error(
            400,
            "Bad Request: group chat was upgraded to a supergroup chat",
            migrate_to_chat_id=injection.migrate_to,
        )
    if fault is Fault.CHAT_NOT_FOUND:
        return _error(400, "Bad Request: chat not found")
    if fault is Fault.BAD_ENTITIES:
        return _error(400, "Bad Request: can't parse entities: unsupported start tag")
    if fault is Fault.UNAUTHORIZED:
        return _error(401, "Unauthorized")
    if fault is Fault.INTERNAL:
        return _error(500, "Internal Server Error")
    return _error(502, "Bad Gateway")
