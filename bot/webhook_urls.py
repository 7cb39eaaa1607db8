"""What a webhook URL is: its kind (Slack, Discord or our signed JSON), how it may be shown
(scheme and host: the rest can be a token), and whether it may be posted to (`Targets`: http(s)
to public addresses, plus the networks a person allowed). Light to import: the command layer and
the settings use it; the notifier (bot.webhook) and its aiohttp come only when a name is
resolved.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from yarl import URL

if TYPE_CHECKING:
    from aiohttp.abc import AbstractResolver

    from bot.webhook import GuardedResolver

SIGNATURE = "X-Tickerbell-Signature"  # the headers of a signed JSON post
TIMESTAMP = "X-Tickerbell-Timestamp"
MAX_URL = 2000
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_DISCORD_HOSTS = frozenset(
    {"discord.com", "discordapp.com", "canary.discord.com", "ptb.discord.com"}
)
_DISCORD_PATH = re.compile(r"/api(/v\d+)?/webhooks/\d+/[\w-]+/?")
_SLACK_PATH = re.compile(r"/services/[\w/-]+")


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
        import aiohttp

        from bot.webhook import GuardedResolver

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
        address = literal(parsed.host)
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
        if literal(parsed.host or "") is not None:
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


def literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
