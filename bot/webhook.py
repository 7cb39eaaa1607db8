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
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from alerts.models import Alert, Direction
from bot.notifier import DeliveryError
from bot.wording import parts, sentence
from storage.api import WEBHOOK, Chat, Storage, Webhook

SCHEMA_VERSION = 1
SIGNATURE = "X-Tickerbell-Signature"
TIMESTAMP = "X-Tickerbell-Timestamp"
MAX_URL = 2000
MAX_REDIRECTS = 3
TIMEOUT = 10.0
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_DISCORD_HOSTS = frozenset(
    {"discord.com", "discordapp.com", "canary.discord.com", "ptb.discord.com"}
)
_DISCORD_PATH = re.compile(r"/api(/v\d+)?/webhooks/\d+/[\w-]+/?")
_SLACK_PATH = re.compile(r"/services/[\w/-]+")
_ARROWS = {Direction.UP: "🟢▲", Direction.DOWN: "🔴▼", Direction.WIDER: "🟠↔"}


class Kind(Enum):
    """What a webhook URL expects: our JSON, or Slack's or Discord's message format."""

    JSON = "JSON"
    SLACK = "Slack"
    DISCORD = "Discord"


def kind_of(url: str) -> Kind:
    """Slack and Discord incoming-webhook URLs by their host and path; anything else is ours."""
    parsed = URL(url)
    host = (parsed.host or "").lower()
    if host == "hooks.slack.com" and _SLACK_PATH.fullmatch(parsed.path):
        return Kind.SLACK
    if host in _DISCORD_HOSTS and _DISCORD_PATH.fullmatch(parsed.path):
        return Kind.DISCORD
    return Kind.JSON


def shown(url: str) -> str:
    """A URL as chats and logs may show it: scheme and host only (the rest may be a token)."""
    parsed = URL(url)
    port = "" if parsed.is_default_port() else f":{parsed.port}"
    return f"{parsed.scheme}://{parsed.host}{port}/…"


@dataclass(frozen=True, slots=True)
class Targets:
    """Where webhooks may post: public addresses over http(s), plus the `allowed` networks
    (private, loopback or link-local ones a person chose to allow, e.g. 10.0.0.0/8). Names are
    resolved by `resolver` (aiohttp's threaded resolver, the system's, by default)."""

    allowed: tuple[IPNetwork, ...] = ()
    resolver: AbstractResolver | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, text: str, resolver: AbstractResolver | None = None) -> Targets:
        """From a comma-separated list of networks or addresses (`10.0.0.0/8, 127.0.0.1`);
        ValueError names a bad one."""
        nets = [ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",")
                if part.strip()]  # fmt: skip
        return cls(tuple(nets), resolver)

    def guard(self) -> GuardedResolver:
        """A resolver that refuses the names this does not permit."""
        return GuardedResolver(self, self.resolver or aiohttp.ThreadedResolver())

    def permits(self, address: IPAddress) -> bool:
        """A public address, or one in an allowed network."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in net for net in self.allowed if net.version == address.version):
            return True
        return address.is_global and not address.is_multicast

    def problem(self, url: str) -> str | None:
        """Why this URL can never be a webhook (its form, or a literal address that is not
        permitted), or None. Names are checked when resolved (`check`, and on each post)."""
        if len(url) > MAX_URL:
            return f"that URL is over {MAX_URL} characters"
        try:
            parsed = URL(url)
        except ValueError:
            return "that is not a URL"
        if parsed.scheme not in ("http", "https") or not parsed.host:
            return "a webhook URL starts with https:// (or http://) and names a host"
        if parsed.user is not None or parsed.password is not None:
            return "a webhook URL must not carry a user name or password"
        address = _literal(parsed.host)
        if address is not None and not self.permits(address):
            return f"{parsed.host} is a private, loopback or link-local address"
        return None

    async def check(self, url: str) -> str | None:
        """`problem`, then the host resolved now: None when every address it has is
        permitted; otherwise why not (no such host, or a private address)."""
        found = self.problem(url)
        if found is not None:
            return found
        parsed = URL(url)
        if _literal(parsed.host or "") is not None:
            return None
        guard = self.guard()
        try:
            await guard.resolve(parsed.host or "", parsed.port or 0, socket.AF_UNSPEC)
        except Refused as err:
            return str(err)
        except OSError:
            return f"{parsed.host} cannot be resolved (no such host?)"
        finally:
            await guard.close()
        return None


class Refused(OSError):
    """A target that is not permitted (a private, loopback or link-local address)."""


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

    async def send(self, chat: Chat, alert: Alert, image: bytes | None = None) -> str | None:
        """Post the alert to the chat's webhook; DeliveryError says whether to retry."""
        hook = await self.store.webhook(chat.id)
        if hook is None:
            raise DeliveryError(f"webhook #{chat.id} was removed", permanent=True)
        body, headers = request(hook, alert, int(self.clock()))
        await self._post(hook, body, headers)
        return None

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


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _seconds(value: str | None) -> float:
    """A Retry-After in seconds (0 when absent or a date)."""
    try:
        return max(0.0, float(value or 0))
    except ValueError:
        return 0.0
