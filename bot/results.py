"""What a command did, as typed values: the command layer returns them, each platform puts
them into words (bot.replies for chat text, bot.discord.render for embeds).

Refusals share a base class, so a renderer tells "did not do it" from "done" without knowing
every kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from enum import Enum

from alerts.models import Alert, RuleError


class Command(Enum):
    """The commands, named as people type them in a chat (`/alert`, `/alerts`, ...)."""

    START = "start"
    HELP = "help"
    STATUS = "status"
    ALERT = "alert"
    ALERTS = "alerts"
    REMOVE = "remove"
    MUTE = "mute"
    UNMUTE = "unmute"
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    CHART = "chart"
    ROTATION = "rotation"
    CHARTS = "charts"
    SNOOZE = "snooze"
    DIGEST = "digest"
    WEBHOOK = "webhook"


@dataclass(frozen=True, slots=True)
class Typed:
    """A command as someone would type it, with its arguments: words (`3`, `1h`) or
    placeholders (`ID`, `[DURATION]` for an optional one). Each platform spells it
    (bot.replies.Spelling): `/snooze 3 1h` on Telegram, `/snooze alert: 3 duration: 1h` on
    Discord."""

    command: Command
    args: tuple[str, ...] = ()


class CommandError(RuleError):
    """A RuleError whose example is a command: answered as a Problem, so that each platform
    spells the example its own way. `message` ends where `e.g. ` would follow."""

    def __init__(self, message: str, example: Typed) -> None:
        super().__init__(f"{message}e.g. /{' '.join((example.command.value, *example.args))}")
        self.message = message
        self.example = example


class Action(Enum):
    """The buttons under an alert, by the one-letter code their signed data carries."""

    SNOOZE = "s"  # Snooze 1h
    MUTE = "m"  # Mute rule: quiet until `/snooze ID off`
    REMOVE = "r"
    CHART = "c"  # the alert's chart, for an alert sent without one


# --- refusals: nothing was done ---


@dataclass(frozen=True, slots=True)
class Refusal:
    """Base of every answer that did nothing and says why."""


@dataclass(frozen=True, slots=True)
class NotACommand(Refusal):
    """Chat text that does not start with '/'."""


@dataclass(frozen=True, slots=True)
class UnknownCommand(Refusal):
    """A '/word' that is no command; `suggestion` is the closest one, if any is close."""

    name: str
    suggestion: str | None = None


@dataclass(frozen=True, slots=True)
class TooFast(Refusal):
    """The caller is over the commands-per-minute limit."""

    per_minute: int


@dataclass(frozen=True, slots=True)
class AdminsOnly(Refusal):
    """A change asked for in a group by someone who is not an admin there."""


@dataclass(frozen=True, slots=True)
class Usage(Refusal):
    """The command's arguments are malformed: the answer is its usage with an example."""

    command: Command


@dataclass(frozen=True, slots=True)
class Problem(Refusal):
    """A user-facing error whose message is already fit to show (a RuleError's); with an
    `example`, the message ends where `e.g. ` and the example, spelled per platform, follow."""

    message: str
    example: Typed | None = None


@dataclass(frozen=True, slots=True)
class Expired(Refusal):
    """A rule whose `expires` day is past; `rule` is its text without the expiry."""

    rule: str
    expires: date
    suggested_year: int


@dataclass(frozen=True, slots=True)
class Duplicate(Refusal):
    """The chat already has this rule (not yet done) as alert `rule_id`."""

    rule_id: int
    rule: str


@dataclass(frozen=True, slots=True)
class AtLimit(Refusal):
    """The chat has as many rules as it may; `reason` is the store's sentence."""

    reason: str


@dataclass(frozen=True, slots=True)
class NoSuchAlert(Refusal):
    """No alert with this id in the chat."""

    rule_id: int


@dataclass(frozen=True, slots=True)
class BadButton(Refusal):
    """Button data that does not check out (tampered with, or from another chat)."""


@dataclass(frozen=True, slots=True)
class StaleButton(Refusal):
    """A button whose alert is too old or no longer known."""


@dataclass(frozen=True, slots=True)
class AlreadyDone(Refusal):
    """This button was used on this message already: nothing more is done."""

    action: Action


@dataclass(frozen=True, slots=True)
class NoHistory(Refusal):
    """Nothing to draw a chart from yet."""

    symbol: str


@dataclass(frozen=True, slots=True)
class NoSuchWebhook(Refusal):
    """No webhook with this id in the chat."""

    webhook_id: int


@dataclass(frozen=True, slots=True)
class InboundOff(Refusal):
    """`/webhook in` while this bot serves no inbound endpoint (no TICKERBELL_WEBHOOK_PORT)."""


# --- answers ---


@dataclass(frozen=True, slots=True)
class Help:
    """The commands and the rule language; `greeting` adds the one-line introduction."""

    greeting: bool = False


@dataclass(frozen=True, slots=True)
class Book:
    """The order book's top: bid, ask, the spread in percent of the mid, and the usual spread
    (the median) in price units when known."""

    bid: float
    ask: float
    spread_pct: float
    median_spread: float | None = None


@dataclass(frozen=True, slots=True)
class Nearby:
    """One of the chat's price levels on the symbol and how far the price is from it."""

    rule: str
    away_pct: float


@dataclass(frozen=True, slots=True)
class Status:
    """A symbol's price (None: no quote yet), day change, book, N-day range, the chat's nearest
    levels and where the price comes from."""

    symbol: str
    feed_note: str
    price: float | None = None
    day_change_pct: float | None = None
    book: Book | None = None
    range_days: int = 20
    day_range: tuple[float, float] | None = None  # (low, high) over range_days
    nearest: tuple[Nearby, ...] = ()


@dataclass(frozen=True, slots=True)
class AlertAdded:
    """A stored rule: its id, canonical text, and the value that already meets it, if any."""

    rule_id: int
    rule: str
    already_true: float | None = None


@dataclass(frozen=True, slots=True)
class NeedsConfirmation:
    """A level far from the price (a typo?): nothing stored until confirmed.

    `subject` is what the level is compared with (`BTC`, `ETH/BTC ratio`), `factor` how far off
    counts as far (10: over 10x or under a tenth)."""

    rule: str
    subject: str
    now: float
    level: float
    factor: float


FOREVER = datetime(9999, 1, 1, tzinfo=UTC)  # "until unmuted", for a chat or a rule


class AlertState(Enum):
    """Where a stored rule stands."""

    NEW = "new"
    ARMED = "armed"
    WAITING = "waiting"  # fired, waits to re-arm
    HOLDS = "holds"  # already true when set (never fired): waits for the next crossing
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Listed:
    """One stored rule as the chat's list shows it; `snoozed_until` while snoozed or muted
    (`FOREVER`)."""

    rule_id: int
    rule: str
    state: AlertState
    snoozed_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class AlertList:
    """The chat's rules, oldest first."""

    alerts: tuple[Listed, ...]


@dataclass(frozen=True, slots=True)
class RemoveAllAsked:
    """`remove all` without the confirmation: how many it would remove."""

    count: int


@dataclass(frozen=True, slots=True)
class RemovedAll:
    """Every rule of the chat removed."""

    count: int


@dataclass(frozen=True, slots=True)
class Removed:
    """One rule removed."""

    rule_id: int


@dataclass(frozen=True, slots=True)
class Muted:
    """Alerts paused until a time, or (None) until unmuted."""

    until: datetime | None


@dataclass(frozen=True, slots=True)
class Unmuted:
    """Alerts on again; `was_muted` False when they were on already (no mute, or it ran out)."""

    was_muted: bool = True


@dataclass(frozen=True, slots=True)
class Subscribed:
    """Following a symbol's notable moves (`all`: every watched symbol); `added` False when
    the chat already did."""

    symbol: str
    added: bool


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    """How many subscriptions were removed."""

    count: int


@dataclass(frozen=True, slots=True)
class Chart:
    """A price chart over `span` with its first and last price."""

    symbol: str
    span: str
    first: float
    last: float
    image: bytes


@dataclass(frozen=True, slots=True)
class Moves:
    """One symbol's changes over the rotation windows and since the year began (None: no
    price to compare with)."""

    symbol: str
    changes: tuple[float | None, ...]
    year: float | None


@dataclass(frozen=True, slots=True)
class Ratio:
    """The price of `symbol` in units of `other`, and its changes over the rotation windows
    and since the year began (None: no prices to compare with)."""

    symbol: str
    other: str
    value: float
    changes: tuple[float | None, ...] = ()
    year: float | None = None


@dataclass(frozen=True, slots=True)
class Rotation:
    """Gold, silver, BTC and ETH side by side: changes per window, gold ratios, a chart."""

    windows: tuple[str, ...]
    moves: tuple[Moves, ...]
    ratios: tuple[Ratio, ...]
    image: bytes | None = None


@dataclass(frozen=True, slots=True)
class Snoozed:
    """A rule quiet until `until`, or until woken (`until` is FOREVER: muted)."""

    rule_id: int
    until: datetime


@dataclass(frozen=True, slots=True)
class Woken:
    """A snoozed or muted rule back on (it waits for a fresh crossing)."""

    rule_id: int


@dataclass(frozen=True, slots=True)
class Pressed:
    """A button under an alert did its action on its message (outbox `row`). `used`: every
    button used on that message so far, this one included; `by`: who pressed it, as the
    platform names people; `until`: a snooze's end (FOREVER: muted). Chart's image is drawn
    after the press is answered (`Commands.alert_chart`)."""

    action: Action
    row: int
    rule_id: int | None
    alert: Alert
    used: frozenset[Action]
    by: str
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class DigestPlan:
    """The chat's daily digest: at `at` local time in `zone`, every day or on weekdays only;
    the next one is due at `next_at`. `changed`: this command set it."""

    at: time
    zone: str
    weekdays_only: bool
    next_at: datetime
    changed: bool = False


@dataclass(frozen=True, slots=True)
class DigestOff:
    """No daily digest here; `was_on`: this command turned it off."""

    was_on: bool = False


@dataclass(frozen=True, slots=True)
class DailyDigest:
    """A daily digest as sent: the chat's local `day`, the rotation, and the chat's alerts of
    the 24 hours before it was due (oldest first; `more` older ones not listed)."""

    day: date
    rotation: Rotation
    alerts: tuple[Alert, ...] = ()
    more: int = 0


@dataclass(frozen=True, slots=True)
class ChartsSet:
    """Charts with the chat's alerts on or off."""

    on: bool


@dataclass(frozen=True, slots=True)
class WebhookAdded:
    """A webhook now hears this chat's alerts: its id, kind (JSON, Slack, Discord), where it
    posts (scheme and host only), the key that signs JSON posts (None for Slack and Discord),
    and whether it is new (False: the chat had it; its key was renewed)."""

    webhook_id: int
    kind: str
    target: str
    secret: str | None
    added: bool


@dataclass(frozen=True, slots=True)
class ListedWebhook:
    """One webhook as the chat's list shows it."""

    webhook_id: int
    kind: str
    target: str
    working: bool = True  # False: it answered as a deleted webhook does; nothing is posted


@dataclass(frozen=True, slots=True)
class WebhookList:
    """The chat's webhooks, oldest first."""

    webhooks: tuple[ListedWebhook, ...]


@dataclass(frozen=True, slots=True)
class WebhookRemoved:
    """One webhook removed."""

    webhook_id: int


@dataclass(frozen=True, slots=True)
class InboundUrl:
    """The URL TradingView posts this chat's alerts to; `new` when just made."""

    url: str
    new: bool


@dataclass(frozen=True, slots=True)
class InboundStopped:
    """The chat's inbound URL no longer works; `had` False when it had none."""

    had: bool


Done = (
    Help
    | Status
    | AlertAdded
    | NeedsConfirmation
    | AlertList
    | RemoveAllAsked
    | RemovedAll
    | Removed
    | Muted
    | Unmuted
    | Subscribed
    | Unsubscribed
    | Chart
    | Rotation
    | ChartsSet
    | Snoozed
    | Woken
    | Pressed
    | DigestPlan
    | DigestOff
    | DailyDigest
    | WebhookAdded
    | WebhookList
    | WebhookRemoved
    | InboundUrl
    | InboundStopped
)
Result = Done | Refusal
