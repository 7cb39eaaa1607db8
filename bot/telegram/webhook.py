"""Telegram's webhook posts in: an aiohttp endpoint that hands each update to the Application.

Webhook mode (TELEGRAM_WEBHOOK_URL) replaces long polling when several processes serve one bot:
Telegram allows one poller per token, but posts each update once to the webhook URL, and a load
balancer may send it to any process. Each post must carry the secret token registered with
setWebhook in `X-Telegram-Bot-Api-Secret-Token`; the header is compared in constant time before
the body is read, so a forged post costs us nothing. A post is answered as soon as its update is
on the Application's queue (Telegram waits for the answer before the next posts, and retries
what is not answered 200): the command runs after.

Answers: 200 once queued; 403 without the right secret; 413 for a body over MAX_BODY bytes; 400
for a body that is not a JSON update (the reason in the answer). Nothing of a post reaches the
log: it is a user's message.

With no TELEGRAM_WEBHOOK_SECRET, the secret is derived from the bot token (HMAC-SHA256), so every
process with the same token registers and accepts the same one without being told: whoever
could forge it holds the token, and with the token could set any webhook anyway.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from telegram import Bot, Update

from bot.serving import serve

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_BODY = 1024 * 1024  # bytes; an update is a few KB (a message is at most 4096 characters)
WARN_EVERY = 600.0  # seconds between warnings about refused posts (a scanner posts often)
_DERIVATION = b"tickerbell telegram webhook secret v1"


@dataclass(frozen=True, slots=True)
class Webhook:
    """Where Telegram posts (`url`, public, https) and where we listen for it (behind a proxy
    or load balancer `host:port` differs from the URL's); `secret` None: derived from the
    token."""

    url: str
    host: str = "0.0.0.0"
    port: int = 8443
    secret: str | None = None

    @property
    def path(self) -> str:
        """The path we serve: the URL's (a proxy must pass it on unchanged)."""
        return urlsplit(self.url).path or "/"


def derived_secret(token: str) -> str:
    """The secret token every process with this bot token agrees on: 64 hex characters (Telegram
    allows 1 to 256 of A-Z, a-z, 0-9, _ and -)."""
    return hmac.new(token.encode(), _DERIVATION, hashlib.sha256).hexdigest()


class Refused(Exception):
    """A post that is not taken: the HTTP status and the reason, fit to send back."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Endpoint:
    """Takes the posts of one bot's webhook onto its Application's update queue."""

    def __init__(
        self,
        bot: Bot,
        queue: asyncio.Queue[object],
        secret: str,
        path: str = "/",
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bot = bot
        self.queue = queue
        self._secret = secret.encode()
        self.path = path
        self.monotonic = monotonic
        self.refused = 0  # posts refused for their secret since the last warning
        self._warned_at: float | None = None
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        """The aiohttp application: POST to the webhook's path."""
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post(self.path, self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        """Answer one post; never raises (an unexpected error is logged, without the post)."""
        try:
            update = await self.take(request)
        except Refused as refused:
            return web.Response(status=refused.status, text=refused.reason)
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413, text=f"the body is over {MAX_BODY} bytes")
        except Exception:
            log.exception("telegram: a webhook post failed")
            return web.Response(status=500, text="something went wrong on our side")
        await self.queue.put(update)
        return web.Response(text="ok")

    async def take(self, request: web.Request) -> Update:
        """The update a post carries; raises Refused for one that is not taken."""
        given = request.headers.get(SECRET_HEADER, "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, self._secret):
            self._note_refusal()
            raise Refused(403, "forbidden")
        if (request.content_length or 0) > MAX_BODY:
            raise Refused(413, f"the body is over {MAX_BODY} bytes")
        body = await request.read()
        try:
            data: Any = json.loads(body)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise Refused(400, "malformed JSON: expected a Telegram update") from None
        if not isinstance(data, dict) or type(data.get("update_id")) is not int:
            raise Refused(400, 'not a Telegram update: expected {"update_id": ..., ...}')
        try:
            update = Update.de_json(data, self.bot)
        except Exception as err:  # a field of the wrong shape: say which kind, not the post
            log.warning("telegram: a webhook post is not an update we can read (%r)", err)
            raise Refused(400, "not a Telegram update we can read") from None
        return update

    def _note_refusal(self) -> None:
        """Warn about posts without the right secret at most every WARN_EVERY seconds: one
        that is seen by Telegram's posts means processes disagree on the secret."""
        self.refused += 1
        now = self.monotonic()
        if self._warned_at is None or now - self._warned_at >= WARN_EVERY:
            log.warning(
                "telegram: refused %d webhook post(s) without the right secret token (all "
                "processes of this bot need the same TELEGRAM_WEBHOOK_SECRET, or none)",
                self.refused,
            )
            self._warned_at, self.refused = now, 0

    async def start(self, host: str, port: int) -> None:
        """Listen on host:port; raises OSError when it cannot (the port is taken, say)."""
        self._runner = await serve(self.app(), host, port)

    @property
    def serving(self) -> bool:
        return self._runner is not None

    async def close(self) -> None:
        """Stop listening, after answering the posts in flight."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
