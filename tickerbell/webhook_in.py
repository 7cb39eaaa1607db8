"""Webhooks in: TradingView alert posts over HTTP, delivered to a chat like our own alerts.

Off unless TICKERBELL_WEBHOOK_PORT is set. A chat's URL, `<base>/tv/<secret>`, comes from
`/webhook in`; the secret may instead be sent in a JSON body's "secret" field (to `<base>/tv`).
The body is the alert's message as TradingView sends it, placeholders already filled in: plain
text, or a JSON object whose "message" (or "text") is shown, with an optional "ticker" (or
"symbol") as its subject; a JSON object with neither is shown as sent, less its secret. The post
becomes one outbox row for the chat (and one per webhook of that chat), committed before the
answer, so it is delivered like any alert: in order, retried, once.

Answers: 200 once stored; 403 for a missing or unknown secret; 413 for a body over MAX_BODY
bytes; 400 for a body that is not UTF-8, empty, malformed JSON or a message over MAX_TEXT
characters (the reason in the answer); 429 past `per_minute` posts a minute for one chat (with
Retry-After); 503 while the store fails. Nothing is stored from a refused post, and nothing of
a post (its path holds the secret) reaches the log.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web

from alerts.models import Alert, Condition, Direction, Rule
from alerts.text import printable
from bot.serving import serve
from storage.api import Storage, StorageUnavailable, utcnow

log = logging.getLogger(__name__)

MAX_BODY = 8 * 1024  # bytes; TradingView's own message limit is well under this
MAX_TEXT = 2000  # characters shown: an alert, not a document (Telegram's limit is 4096)
MAX_SUBJECT = 40
PER_MINUTE = 30
RULE_TEXT = "TradingView alert"  # what the alert says it came from, where a rule would be


class Refused(Exception):
    """A post that is not taken: the HTTP status and the reason, fit to send back."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Post:
    """What a post says: the secret it carries in its body (if any), its subject and text."""

    secret: str | None
    subject: str
    text: str


def parse(body: bytes, content_type: str = "") -> Post:
    """A post's body as TradingView sends it; raises Refused (400) saying what is wrong."""
    try:
        decoded = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "the body is not UTF-8 text") from None
    text = decoded.strip()
    if not text:
        raise Refused(400, "the body is empty: send the alert's message, as text or JSON")
    secret, subject = None, "TradingView"
    if content_type == "application/json" or text.startswith("{"):
        fields = _json_object(text)
        secret = _text_field(fields, "secret")
        subject = _text_field(fields, "ticker", "symbol") or subject
        message = _text_field(fields, "message", "text")
        if message is None:
            rest = {key: value for key, value in fields.items() if key != "secret"}
            message = json.dumps(rest, ensure_ascii=False)
        text = message.strip()
    shown = "\n".join(printable(line, MAX_TEXT + 1) for line in text.splitlines()).strip()
    if not shown:
        raise Refused(400, "the message is empty: give the alert a message")
    if len(shown) > MAX_TEXT:
        raise Refused(400, f"the message is over {MAX_TEXT} characters")
    return Post(secret, printable(subject, MAX_SUBJECT) or "TradingView", shown)


def _json_object(text: str) -> dict[str, object]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise Refused(
            400, f"malformed JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from None
    except RecursionError:
        raise Refused(400, "malformed JSON: nested too deep") from None
    if not isinstance(value, dict):
        raise Refused(400, 'JSON must be an object, e.g. {"message": "BTC crossed 90000"}')
    return value


def _text_field(fields: dict[str, object], *names: str) -> str | None:
    """The first of these fields that is present, as text; a number is taken as written."""
    for name in names:
        value = fields.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise Refused(400, f'"{name}" must be text, e.g. {{"{name}": "BTC crossed 90000"}}')
        return str(value)
    return None


def alert_of(post: Post, now: datetime) -> Alert:
    """The post as an alert from outside: its text shown as sent, under its subject."""
    rule = Rule(symbol=post.subject, condition=Condition.MOVE)
    return Alert(RULE_TEXT, rule, Direction.EITHER, 0.0, None, 0.0, now, note=post.text)


class Inbound:
    """The endpoint's work: find the chat, check the rate, store the alert, wake delivery."""

    def __init__(
        self,
        store: Storage,
        wake: Callable[[], None] = lambda: None,
        *,
        per_minute: int = PER_MINUTE,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.wake = wake
        self.per_minute = per_minute
        self.clock = clock
        self.monotonic = monotonic
        self._recent: dict[int, deque[float]] = defaultdict(deque)

    def app(self) -> web.Application:
        """The aiohttp application: POST /tv/{secret} and POST /tv."""
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/tv", self.handle)
        app.router.add_post("/tv/{secret}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        """Answer one post; never raises (an unexpected error is logged, without the post)."""
        try:
            await self.take(request)
        except Refused as refused:
            headers = {}
            if refused.status == 429:
                headers["Retry-After"] = str(math.ceil(60 / self.per_minute))
            return web.Response(status=refused.status, text=refused.reason, headers=headers)
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413, text=f"the body is over {MAX_BODY} bytes")
        except StorageUnavailable:
            log.error("webhook in: the store fails; a post was refused (503)")
            return web.Response(status=503, text="cannot store alerts just now; try again")
        except Exception:
            log.exception("webhook in: a post failed")
            return web.Response(status=500, text="something went wrong on our side")
        return web.Response(text="ok")

    async def take(self, request: web.Request) -> None:
        """Check and store one post; raises Refused for one that is not taken."""
        if (request.content_length or 0) > MAX_BODY:
            raise Refused(413, f"the body is over {MAX_BODY} bytes")
        in_path = request.match_info.get("secret")
        chat = await self.store.inbound_chat(in_path) if in_path else None
        if in_path and chat is None:
            raise Refused(403, "unknown secret: use the URL /webhook in gave")
        post = parse(await request.read(), request.content_type)
        if chat is None:
            if not post.secret:
                raise Refused(403, "no secret: use the URL /webhook in gave")
            chat = await self.store.inbound_chat(post.secret)
            if chat is None:
                raise Refused(403, "unknown secret: use the URL /webhook in gave")
        elif post.secret is not None and post.secret != in_path:
            raise Refused(403, "the secret in the body is not the one in the URL")
        if self._too_fast(chat.id):
            raise Refused(429, f"over {self.per_minute} posts a minute for this chat")
        await self.store.commit_tick({}, [(None, chat.id, alert_of(post, self.clock()))])
        self.wake()

    def _too_fast(self, chat: int) -> bool:
        now = self.monotonic()
        recent = self._recent[chat]
        while recent and now - recent[0] >= 60:
            recent.popleft()
        if len(recent) >= self.per_minute:
            return True
        recent.append(now)
        return False


async def start(inbound: Inbound, host: str, port: int) -> web.AppRunner:
    """Serve the endpoint; the caller awaits `runner.cleanup()` on shutdown. No access log:
    a post's path holds its chat's secret."""
    return await serve(inbound.app(), host, port)
