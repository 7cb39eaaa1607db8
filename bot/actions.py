"""The buttons under an alert: which ones a message shows, and their signed data.

A button's data names an action and an outbox row (the alert's message), never a rule's text:
`s123.<mac>` is Snooze 1h on row 123. The MAC is HMAC-SHA256 over the platform, the chat's id,
the row, the action and the alert's time, cut to 12 bytes (16 characters of base64url); its key
is a per-installation secret kept in the store (`SecretStore.secret("actions")`, 32 random
bytes made on first use), so buttons keep working across restarts and token changes. Data
that does not check out, or that names another chat's row, is refused; so is a button whose
alert is older than `FRESH_FOR`, or whose row was pruned (stale). The whole fits Telegram's
64-byte `callback_data` and Discord's 100-character `custom_id`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.results import Action

SECRET_NAME = "actions"
SNOOZE_FOR = timedelta(hours=1)
FRESH_FOR = timedelta(days=7)  # a button on an older alert is stale
MAC_BYTES = 12
_DATA = re.compile(r"([smrc])([1-9][0-9]{0,17})\.([A-Za-z0-9_-]{16})", re.ASCII)
_RULE_ACTIONS = (Action.SNOOZE, Action.MUTE, Action.REMOVE)


@dataclass(frozen=True, slots=True)
class Ref:
    """Which outbox row an alert message comes from, and its rule (None: a /subscribe alert)."""

    row: int
    rule: int | None


@dataclass(frozen=True, slots=True)
class ButtonData:
    """Parsed button data, not yet checked against its row."""

    action: Action
    row: int
    mac: str


def offered(
    rule: int | None, has_chart: bool, used: frozenset[Action] = frozenset()
) -> list[Action]:
    """The buttons a message shows, in order: the rule's (Snooze 1h, Mute rule, Remove) when
    it has one and it is not removed, Chart when it went without one; minus those used."""
    shown: list[Action] = []
    if rule is not None and Action.REMOVE not in used:
        shown += [a for a in _RULE_ACTIONS if a not in used]
        if Action.MUTE in used:
            shown = [a for a in shown if a is not Action.SNOOZE]
    if not has_chart and Action.CHART not in used:
        shown.append(Action.CHART)
    return shown


class Signer:
    """Signs and checks button data with one key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def data(self, platform: str, chat_id: str, row: int, action: Action, time: datetime) -> str:
        """The button's data: action, row and MAC."""
        return f"{action.value}{row}.{self._mac(platform, chat_id, row, action, time)}"

    def valid(self, platform: str, chat_id: str, data: ButtonData, time: datetime) -> bool:
        """Whether `data` was made by `data()` for this chat, row, action and alert time."""
        mac = self._mac(platform, chat_id, data.row, data.action, time)
        return hmac.compare_digest(mac, data.mac)

    def _mac(self, platform: str, chat_id: str, row: int, action: Action, time: datetime) -> str:
        message = f"{platform}\n{chat_id}\n{row}\n{action.value}\n{time.isoformat()}"
        digest = hmac.new(self._key, message.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:MAC_BYTES]).decode()


def parse(data: str) -> ButtonData | None:
    """Button data as its parts, or None when it is not in our form at all."""
    match = _DATA.fullmatch(data)
    if match is None:
        return None
    return ButtonData(Action(match.group(1)), int(match.group(2)), match.group(3))
