"""Outgoing webhooks, a chat platform of their own: each alert posted to a URL as JSON (signed
with HMAC-SHA256), or in Slack's or Discord's incoming-webhook format when the URL is theirs.

Delivery treats a webhook like any chat (the outbox: retries with backoff, order, a row marked
delivered once the receiver answered 2xx). Targets are guarded against server-side request
forgery: only http(s), and only public addresses unless a network is allowed by the settings
(TICKERBELL_WEBHOOK_ALLOW_NETWORKS). The check is made on the addresses the connection really
uses (a resolver that refuses, so a name that resolves differently later gains nothing) and on
every redirect, which is followed only when it keeps the method (307, 308) and only to an
allowed target. A URL never reaches a log or an error message (Slack's and Discord's carry
their token): a webhook is named by its id.

The JSON body (version 1) and its signature are documented in the README ("Webhooks").
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from alerts.models import Alert, Direction
from bot.actions import Ref
from bot.notifier import DeliveryError
from bot.replies import Reply
from bot.webhook_urls import SIGNATURE, TIMESTAMP, Kind, Refused, Targets, kind_of
from bot.wording import parts, sentence
from storage.api import WEBHOOK, Chat, Storage, Webhook

SCHEMA_VERSION = 1
MAX_REDIRECTS = 3
TIMEOUT = 10.0
_ARROWS = {Direction.UP: "🟢▲", Direction.DOWN: "🔴▼", Direction.WIDER: "🟠↔"}


class GuardedResolver(AbstractResolver):
    """A resolver that refuses a host with any address `targets` does not permit, so the
    connection can only go where the check said."""

    def __init__(self, targets: Targets, inner: AbstractResolver) -> None:
        self.targets = targets
        self.inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        for result in found:
            if not self.targets.permits(ipaddress.ip_address(result["host"])):
                raise Refused(f"{host} resolves to a private, loopback or link-local address")
        return found

    async def close(self) -> None:
        await self.inner.close()


class WebhookNotifier:
    """Delivers alerts to webhooks (chats of platform 'webhook'), each found in the store by its
    chat, posting only where `targets` permit; `clock` gives the signature's Unix time."""

    name = WEBHOOK

    def __init__(
        self,
        store: Storage,
        targets: Targets | None = None,
        *,
        timeout: float = TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.targets = targets or Targets()
        self.timeout = timeout
        self.clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def send(
        self, chat: Chat, alert: Alert, image: bytes | None = None, ref: Ref | None = None
    ) -> str | None:
        """Post the alert to the chat's webhook; DeliveryError says whether to retry. A
        webhook has no chart and no buttons: `image` and `ref` are not used."""
        hook = await self.store.webhook(chat.id)
        if hook is None:
            raise DeliveryError(f"webhook #{chat.id} was removed", permanent=True)
        body, headers = request(hook, alert, int(self.clock()))
        await self._post(hook, body, headers)
        return None

    async def post(self, chat: Chat, reply: Reply) -> str | None:
        """Webhooks take alerts only: a daily digest goes to the chat, never to its webhooks
        (the store queues none for them), so one here is refused for good."""
        raise DeliveryError(f"webhook #{chat.id} takes alerts only", permanent=True)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            guard = self.targets.guard()
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=guard, use_dns_cache=False),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                trust_env=False,  # no proxy from the environment: it would skip the guard
            )
        return self._session

    async def _post(self, hook: Webhook, body: bytes, headers: dict[str, str]) -> None:
        """One post, following up to MAX_REDIRECTS redirects that keep the method."""
        name = f"webhook #{hook.id}"
        url = hook.url
        for _ in range(MAX_REDIRECTS + 1):
            problem = self.targets.problem(url)
            if problem is not None:
                raise DeliveryError(f"{name}: refused: {problem}", chat_gone=True)
            try:
                async with self._client().post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    status = response.status
                    location = response.headers.get("Location")
                    retry_after = _seconds(response.headers.get("Retry-After"))
            except Refused as err:
                raise DeliveryError(f"{name}: refused: {err}", chat_gone=True) from None
            except aiohttp.InvalidURL:
                raise DeliveryError(f"{name}: not a URL aiohttp can use", chat_gone=True) from None
            except aiohttp.ClientConnectorError as err:  # our resolver's refusal comes wrapped
                if isinstance(err.os_error, Refused):
                    raise DeliveryError(
                        f"{name}: refused: {err.os_error}", chat_gone=True
                    ) from None
                raise DeliveryError(f"{name}: {type(err).__name__}") from None
            except (aiohttp.ClientError, OSError, TimeoutError) as err:
                raise DeliveryError(f"{name}: {type(err).__name__}") from None
            if status in (307, 308) and location:
                url = str(URL(url).join(URL(location)))
                continue
            _judge(name, status, retry_after)
            return
        raise DeliveryError(f"{name}: more than {MAX_REDIRECTS} redirects", permanent=True)


def _judge(name: str, status: int, retry_after: float) -> None:
    """Raise the DeliveryError a status means; return for success (2xx)."""
    if 200 <= status < 300:
        return
    said = f"{name} answered {status}"
    if status == 429:
        raise DeliveryError(said, retry_after=retry_after)
    if status in (401, 403, 404, 410):  # the webhook was deleted, or its token revoked
        raise DeliveryError(said, chat_gone=True)
    if 300 <= status < 400:
        raise DeliveryError(f"{said} (a redirect that changes the method)", permanent=True)
    if status >= 500 or status == 408:
        raise DeliveryError(said, retry_after=retry_after)
    raise DeliveryError(said, permanent=True)


def request(hook: Webhook, alert: Alert, now: int) -> tuple[bytes, dict[str, str]]:
    """The body and headers of the post of `alert` to `hook`, at Unix time `now`."""
    kind = kind_of(hook.url)
    if kind is Kind.SLACK:
        data: dict[str, Any] = {"text": slack_text(alert)}
    elif kind is Kind.DISCORD:
        from bot.discord.render import alert_embed

        data = {"embeds": [alert_embed(alert).to_dict()], "allowed_mentions": {"parse": []}}
    else:
        data = payload(hook, alert)
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json"}
    if kind is Kind.JSON:
        headers[TIMESTAMP] = str(now)
        headers[SIGNATURE] = "sha256=" + signature(hook.secret, now, body)
    return body, headers


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """HMAC-SHA256, keyed by the secret, of `<timestamp>.` followed by the raw body, in hex."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def payload(hook: Webhook, alert: Alert) -> dict[str, Any]:
    """The JSON body, schema version 1 (README, "Webhooks"). `id` is the same on every retry
    of one alert to one webhook, so a receiver can drop a repeat."""
    outside = alert.note is not None
    stored = json.dumps([hook.id, alert.rule_text, alert.time.isoformat(), alert.note,
                         alert.price, alert.observed])  # fmt: skip
    return {
        "version": SCHEMA_VERSION,
        "id": hashlib.sha256(stored.encode()).hexdigest()[:32],
        "source": "tradingview" if outside else "rule",
        "symbol": alert.symbol,
        "kind": "external" if outside else alert.kind,
        "direction": None if outside else alert.direction.value,
        "rule": None if outside else alert.rule_text,
        "price": None if outside else alert.price,
        "reference": None if outside else alert.reference,
        "observed": None if outside else alert.observed,
        "bid": alert.bid,
        "ask": alert.ask,
        "time": alert.time.isoformat(),
        "text": sentence(alert),
    }


def slack_text(alert: Alert) -> str:
    """The alert in Slack's mrkdwn: the subject in bold, the rule in italics (escaped)."""
    words = parts(alert)
    arrow = _ARROWS.get(alert.direction, "🔔")
    stamp = alert.time.strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{arrow} *{_slack(words.subject)}* {_slack(words.rest)}\n"
        f"_{_slack(alert.rule_text)}_ · {stamp}"
    )


def _slack(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _seconds(value: str | None) -> float:
    """A Retry-After in seconds (0 when absent or a date)."""
    try:
        return max(0.0, float(value or 0))
    except ValueError:
        return 0.0
