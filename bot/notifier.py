"""What a chat platform offers delivery: the Notifier protocol and the one error it raises.

It lives on the chat floor so that adapters (bot/) and the delivery worker (tickerbell/) share
it without bot/ importing the application above it.
"""

from __future__ import annotations

from typing import Protocol

from alerts.models import Alert
from bot.actions import Ref
from bot.replies import Reply
from storage.api import Chat


class Notifier(Protocol):
    """A chat platform as delivery sees it. `name` matches `Chat.platform`."""

    name: str

    async def send(
        self, chat: Chat, alert: Alert, image: bytes | None = None, ref: Ref | None = None
    ) -> str | None:
        """Deliver one alert (with its chart as a PNG, when given); return the platform's
        message id. Raise DeliveryError on failure. `ref` names the alert's outbox row and rule:
        a platform with buttons puts the alert's actions under it (bot.actions)."""
        ...

    async def post(self, chat: Chat, reply: Reply) -> str | None:
        """Deliver a composed message (a daily digest: lines, a table, a chart), written the
        platform's way; return the platform's id of its first message. Raise DeliveryError
        on failure."""
        ...

    async def close(self) -> None: ...


def ready(notifier: Notifier) -> bool:
    """Whether a notifier can send now. A chat platform says so with a `ready()` of its own
    (False while it connects); delivery leaves that platform's chats alone meanwhile, so that
    a replica still connecting neither holds them nor pushes their rows into backoff."""
    check = getattr(notifier, "ready", None)
    return bool(check()) if callable(check) else True


class DeliveryError(Exception):
    """A send failed.

    Transient by default (delivery retries with backoff, not before `retry_after` seconds).
    `permanent`: this message will never go through (the platform refused its content).
    `chat_gone`: the chat itself is unreachable (blocked, kicked, deleted): delivery marks it
    inactive and sends nothing more there.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        retry_after: float = 0.0,
        chat_gone: bool = False,
    ) -> None:
        super().__init__(message)
        self.permanent = permanent or chat_gone
        self.retry_after = retry_after
        self.chat_gone = chat_gone
