"""What every storage backend offers: the stored values and one small Protocol per concern.

The layers above depend on these names only, so a backend (SQLite in `storage.db`, memory in
`storage.memory`, PostgreSQL in `storage.postgres`) is a new module, not an edit of its callers. The
docstrings are the contract a backend must honour; tests/test_storage.py checks it against
each backend. No driver type crosses these interfaces.

Ids are positive integers given by the store, increasing in the order rows are made. The
times a store keeps in its own fields (when a chat is muted until, when a rule or an outbox row
was made, a quote's time) come back as the same instants in UTC; alerts and rule states come
back equal to what was stored. A write that names a chat or rule that does not exist, or takes
a chat id in use, raises the backend's integrity error (SQLite: sqlite3.IntegrityError;
PostgreSQL: psycopg.IntegrityError; memory: ValueError) and changes nothing. A store that cannot
work at all for now raises `StorageUnavailable` (every backend translates its driver's
operational errors into it).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import NamedTuple, Protocol, runtime_checkable

from alerts.models import Alert, Quote, RuleState

Clock = Callable[[], datetime]
WEBHOOK = "webhook"  # the platform (and chat kind) of outgoing webhooks


def utcnow() -> datetime:
    return datetime.now(UTC)


class LimitReached(Exception):
    """A chat already has as many rules as it may."""


class Fenced(Exception):
    """The engine's write was refused, changing nothing: another process took the engine
    over (a later epoch, `EngineFence`) since this one took it. It must stop running it."""


class StorageUnavailable(Exception):
    """The store cannot be read or written just now (a full disk, an I/O error, a lost
    connection): the call changed nothing, and the same call may work later. Callers hold
    their work and retry; they never treat it as a verdict on the data."""


@dataclass(frozen=True, slots=True)
class Chat:
    """A place alerts go: a Telegram chat, a Discord channel, or the console."""

    id: int
    platform: str
    chat_id: str
    kind: str
    active: bool
    muted_until: datetime | None
    charts: bool = True


class StoredRule(NamedTuple):
    """A rule row: canonical text plus its saved engine state (None before the first tick),
    and until when it is snoozed (None: not; a time past means the snooze is over). A named
    tuple, not a frozen dataclass: a start-up makes a million, and a frozen dataclass takes
    3.8 us each to make (every field set through object.__setattr__), a named tuple 0.4 us."""

    id: int
    chat: int
    text: str
    created_by: str
    created_at: datetime
    state: RuleState | None
    snoozed_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class RuleChanges:
    """What changed since a revision, as it is now: the changed rules that are active (new
    ones, with their states) and the ids of those that are not (removed), each once however
    often it changed; and whether any subscription was added or dropped."""

    revision: int
    rules: tuple[StoredRule, ...] = ()
    removed: tuple[int, ...] = ()
    subscriptions: bool = False


@dataclass(frozen=True, slots=True)
class DigestSetting:
    """When a chat wants its daily digest: a local time of day in an IANA time zone, every
    day or on weekdays only (Monday to Friday in that zone)."""

    at: time
    zone: str
    weekdays_only: bool = False


@dataclass(frozen=True, slots=True)
class ChatDigest:
    """A chat's digest as stored: its setting, since when it holds (a digest due before
    `since` is not sent) and the chat's local day of the last digest put in the outbox."""

    chat: int
    setting: DigestSetting
    since: datetime
    last_day: date | None = None


@dataclass(frozen=True, slots=True)
class DigestDue:
    """A daily digest in the outbox: the chat's local `day` and the instant (UTC) it was
    `due`. Its words (prices, the day's alerts, the chart) are made when it is sent."""

    day: date
    due: datetime


@dataclass(frozen=True, slots=True)
class Webhook:
    """An outgoing webhook: a chat of its own (platform 'webhook', `id` its chat's store id)
    that hears the alerts of the chat that added it (`owner`), posted to `url` and signed with
    `secret`."""

    id: int
    owner: int
    url: str
    secret: str


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One decided alert (or a daily digest) waiting for (or done with) delivery to one chat;
    `actions` are the codes of the buttons already used on its message (see
    `OutboxStore.mark_action`; a digest has no buttons)."""

    id: int
    rule: int | None
    chat: Chat
    alert: Alert | DigestDue
    attempts: int
    actions: frozenset[str] = frozenset()


class ChatStore(Protocol):
    """Chats by (platform, platform's chat id). Chats are never deleted: a chat that is gone
    is made inactive, so its rules and history stay."""

    async def chat(self, platform: str, chat_id: str, kind: str = "private") -> Chat:
        """The chat with this platform id, created on first sight (active, not muted, charts
        on, of this kind); an existing chat keeps its kind."""

    async def find_chat(self, platform: str, chat_id: str) -> Chat | None:
        """The chat if it exists, without creating it."""

    async def get_chat(self, chat: int) -> Chat:
        """The chat with this store id; KeyError when there is none."""

    async def set_chat_active(self, chat: int, active: bool) -> None:
        """An inactive chat's new alerts are recorded as 'inactive' and never delivered.
        An unknown id changes nothing."""

    async def set_muted(self, chat: int, until: datetime | None) -> None:
        """Until `until` (exclusive) the chat's new alerts are recorded as 'muted' and never
        delivered; None unmutes. An unknown id changes nothing."""

    async def set_charts(self, chat: int, on: bool) -> None:
        """Whether this chat's alerts carry a chart. An unknown id changes nothing."""

    async def move_chat(self, platform: str, old_id: str, new_id: str) -> None:
        """A chat changed its platform id (a Telegram group became a supergroup): it keeps its
        store id, rules, subscriptions and outbox. No chat with `old_id`: nothing changes;
        `new_id` already taken by another chat: raises, nothing changes."""

    async def import_chats(self, platform: str, chat_ids: list[str], kind: str) -> list[Chat]:
        """Create many chats at once (as `chat` would, all or none); return each named chat
        once, new or existing, ordered by platform chat id."""


class RuleStore(Protocol):
    """Rules of chats and their engine states. A removed rule is kept but inactive: it is no
    longer listed, and its id is never reused."""

    async def add_rule(
        self, chat: int, text: str, created_by: str, limit: int, state: RuleState | None = None
    ) -> int:
        """Insert a rule (its canonical text) and return its id; `state`, when given, is saved
        with it (what it learned from the price the person saw when adding it). Raises
        LimitReached, adding nothing, when the chat already has `limit` active rules; raises
        when the chat does not exist."""

    async def import_rules(self, rows: list[tuple[int, str, str]]) -> None:
        """Insert many (chat, canonical text, created_by) rules, all or none, with no limit;
        raises when a chat does not exist."""

    async def remove_rule(self, chat: int, rule: int) -> bool:
        """Deactivate one of this chat's active rules and mark the rule's alerts for this chat
        and its webhooks still pending 'removed' (never delivered); False when the chat has no
        such active rule."""

    async def remove_all_rules(self, chat: int) -> int:
        """Deactivate every active rule of this chat and mark the pending alerts that came
        from them (for the chat and its webhooks) 'removed' (digest alerts, with no rule,
        stay); return how many rules."""

    async def remove_rules_created_by(self, chat: int, created_by: str) -> int:
        """Deactivate a chat's active rules made by one author (the rules of a finished
        `run --rule`); their pending alerts stay. Return how many rules."""

    async def snooze_rule(self, chat: int, rule: int, until: datetime | None) -> bool:
        """Snooze one of this chat's active rules until `until` (None: end a snooze): the
        service leaves it out while snoozed. Its stored state becomes `RuleState.relearned()`,
        so when it comes back it learns the market first. Counts as a change of the rule
        (`rule_changes` lists it). False, changing nothing, when the chat has no such active
        rule."""

    async def rules(self, chat: int | None = None) -> list[StoredRule]:
        """Active rules with their last committed states, by id: one chat's, or everyone's."""

    async def rules_page(self, after: int, limit: int) -> list[StoredRule]:
        """Up to `limit` active rules with ids above `after`, by id, with their states: all
        rules read page by page (each page one read), so a million never sit in memory as
        rows at once."""

    async def rules_revision(self) -> int:
        """A counter that grows by one for each rule added or deactivated and each
        subscription added or dropped (what the service watches): a cheap 'did anything
        change'. Starts at 0 in a new store; nothing else moves it."""

    async def rule_changes(self, since: int) -> RuleChanges | None:
        """What changed after revision `since` (a revision `rules_revision` gave), read at
        once, rules by id, and the revision that brings the reader to: `since` itself when
        nothing did.

        The store remembers at least the last 10,000 changes. None when it no longer knows
        everything since then (older changes were forgotten, or `since` is ahead of the
        store: a database restored from a backup): the caller reads all rules again.
        """

    async def commit_tick(
        self,
        states: dict[int, RuleState],
        alerts: Sequence[tuple[int | None, int, Alert]],
        epoch: int | None = None,
    ) -> int:
        """Save rule states (replacing earlier ones) and enqueue (rule or None, chat, alert)
        in one transaction: all of it lands, or none of it. With `epoch` (the engine's, from
        `EngineFence.take_engine`) it lands only while that is still the engine's epoch, else
        it raises Fenced and nothing lands; a store without epochs (SQLite, memory: one
        process) ignores it.

        Each alert becomes one outbox row, in the given order, stamped with the clock's now:
        'muted' when its chat is muted past now, else 'inactive' when the chat is inactive,
        else 'pending'; right after it, one row (same rule) for each active webhook of that
        chat, by webhook id: 'muted' or 'inactive' as its owner is, else 'inactive' when the
        webhook's own chat is, else 'pending'. Returns how many rows of this tick are pending.
        A state or alert naming a rule or chat that does not exist raises, and nothing lands.
        """


class OutboxStore(Protocol):
    """Decided alerts and their delivery. A row's status is 'pending' until delivered,
    'delivered', 'failed' (for good), or one set when it was made or its rule removed:
    'muted', 'inactive', 'removed'. Only pending rows are ever delivered."""

    async def pending(self, limit: int = 500) -> list[OutboxRow]:
        """Up to `limit` pending rows that are due, oldest (lowest id) first, each with its
        chat as it is now. A chat's pending row waiting for its retry time holds back that
        chat's later rows (not its earlier ones, nor other chats'), so each chat gets its
        alerts in order."""

    async def claim(
        self, limit: int = 500, platforms: Collection[str] | None = None
    ) -> list[OutboxRow]:
        """The rows one delivery loop sends in a round: what `pending` would give, except that
        only chats of `platforms` (None: all) that this store could claim are in it
        (PostgreSQL: no other store on the database holds them), and it claims them; rows read
        after the claims were taken, so a chat's rows delivered by its last holder are not
        among them. A claimed chat is this store's alone until `release`, or until the store or
        its process ends (then another store may claim it at once). A store in one process only
        (SQLite, memory) claims every chat: `claim` is `pending` of those platforms.

        While the claims are lost (PostgreSQL: their session ended), `mark_delivered`,
        `mark_retry` and `mark_failed` raise StorageUnavailable, changing nothing, until
        `release`: a loop that sent a row which another store may send too stops after it."""

    async def release(self) -> None:
        """End every claim of this store (the round is over). Never raises."""

    def on_queued(self, wake: Callable[[], None]) -> None:
        """Call `wake` whenever pending rows are put in the outbox from now on (by
        `commit_tick` or `enqueue_digest`): after their transaction committed, on the event
        loop; PostgreSQL also for rows queued by any other process on the database, and once
        each time its listening connection starts listening (for rows queued before: at the
        start, and after an outage)."""

    async def outbox_row(self, row: int) -> OutboxRow | None:
        """One row by id, whatever its status, with its chat as it is now; None when there is
        no such row (never made, or pruned)."""

    async def mark_action(self, row: int, action: str) -> bool:
        """Record that the button `action` (a one-letter code) was used on the row's message:
        True the first time, False (changing nothing) when it was recorded already or there
        is no such row."""

    async def unmark_action(self, row: int, action: str) -> None:
        """Forget that the button `action` was used on the row's message (it did nothing, so
        it stays offered). An unknown row, or a button not recorded, changes nothing."""

    async def mark_delivered(self, row: int, message_id: str | None) -> None:
        """The row went out (as platform message `message_id`): delivered, one more attempt.
        An unknown id changes nothing."""

    async def mark_retry(self, row: int, error: str, next_attempt: datetime) -> None:
        """A sending attempt failed for now: one more attempt, the error kept (its first 500
        characters), and the row is not due before `next_attempt`. Its status stays. An unknown
        id changes nothing."""

    async def mark_failed(self, row: int, error: str) -> None:
        """A permanent failure: 'failed', one more attempt, never retried; keeps its error.
        An unknown id changes nothing."""

    async def outbox_counts(self) -> dict[str, int]:
        """Rows per status, for the statuses that have rows."""

    async def history(self, chat: int, limit: int = 20) -> list[tuple[str, Alert]]:
        """A chat's last `limit` alerts of any status, newest first, with their status
        (digests are not alerts: they are left out)."""

    async def prune_outbox(self, before: datetime) -> int:
        """Forget rows that are not pending and were made before `before`, so the outbox and
        the history stay bounded; pending rows stay whatever their age. Returns how many."""


class WebhookStore(Protocol):
    """Outgoing webhooks of chats, and each chat's inbound (TradingView) secret."""

    async def add_webhook(self, owner: int, url: str, secret: str) -> tuple[Webhook, bool]:
        """Make `url` a webhook of chat `owner` (its chat made, or made active again), signed
        with `secret`; True when it is new or was removed before, False when the chat already
        had it (its secret is replaced all the same). Raises when the owner does not exist."""

    async def remove_webhook(self, owner: int, webhook: int) -> bool:
        """Stop one of this chat's webhooks and mark its rows still pending 'removed'; False
        when the chat has no such active webhook."""

    async def webhooks(self, owner: int | None = None) -> list[Webhook]:
        """Active webhooks, one chat's or all, by id."""

    async def webhook(self, chat: int) -> Webhook | None:
        """The active webhook whose chat this is, or None."""

    async def set_inbound_secret(self, chat: int, secret: str | None) -> None:
        """Give a chat its inbound secret (replacing any it had), or (None) take it away.
        Raises when the chat does not exist or the secret is another chat's."""

    async def inbound_secret(self, chat: int) -> str | None:
        """The chat's inbound secret, if it has one."""

    async def inbound_chat(self, secret: str) -> Chat | None:
        """The chat whose inbound secret this is, or None."""


class SubscriptionStore(Protocol):
    """Chats subscribed to a symbol's notable-move digest: at most one per (chat, symbol)."""

    async def subscribe(self, chat: int, symbol: str) -> bool:
        """Subscribe a chat to a symbol; False, changing nothing, if it already was. Raises
        when the chat does not exist."""

    async def unsubscribe(self, chat: int, symbol: str | None = None) -> int:
        """Drop one subscription, or all of a chat's; return how many."""

    async def subscriptions(self, chat: int | None = None) -> list[tuple[int, str]]:
        """(chat, symbol) pairs, one chat's or all, ordered by chat then symbol."""


class DigestStore(Protocol):
    """Daily digests: at most one setting per chat, and at most one digest per chat and local
    day in the outbox (the day is recorded in the same transaction that enqueues it)."""

    async def set_digest(self, chat: int, setting: DigestSetting | None) -> None:
        """Set a chat's daily digest from now on (`since` is the clock's now), or turn it off
        (None). The last day sent is kept through every change, so a chat never gets two
        digests for one local day. Raises when the chat does not exist (turning off a digest
        that is not there changes nothing)."""

    async def digests(self, chat: int | None = None) -> list[ChatDigest]:
        """The digests that are on: one chat's, or everyone's, by chat."""

    async def enqueue_digest(self, chat: int, digest: DigestDue) -> bool:
        """In one transaction: record `digest.day` as the chat's last digest day and put the
        digest in the outbox ('muted', 'inactive' or 'pending', as `commit_tick` stamps an
        alert), unless the chat's digest is off or already went out for that day or a later
        one: then nothing changes and it returns False."""


class QuoteStore(Protocol):
    """Recent good quotes, one per (symbol, time): they warm the market after a restart."""

    async def save_quotes(self, quotes: Iterable[Quote]) -> None:
        """Record quotes; one with the same symbol and time as a stored one replaces it. What
        comes back is symbol, last, time (in UTC), bid, ask and source."""

    async def prune_quotes(self, before: datetime) -> int:
        """Drop quotes of every symbol older than `before`; return how many."""

    async def recent_quotes(
        self, symbol: str, since: datetime | None = None, limit: int = 20_000
    ) -> list[Quote]:
        """A symbol's newest `limit` stored quotes at or after `since`, oldest first."""


class SecretStore(Protocol):
    """Per-installation secrets (the key that signs button data), made once and kept."""

    async def secret(self, name: str) -> str:
        """The secret by this name: 64 random hex digits, made on first use and the same
        ever after (concurrent first uses agree)."""


@dataclass(frozen=True, slots=True)
class Slots:
    """Sending slots booked in a shared budget: `count` of them, `interval` seconds apart,
    the first at `first` (the database server's clock), which was `wait` seconds after the
    server's now when they were booked (0 or less: at once)."""

    first: datetime
    wait: float
    interval: float
    count: int

    def times(self) -> list[datetime]:
        """Each slot's time (the server's clock)."""
        step = timedelta(seconds=self.interval)
        return [self.first + i * step for i in range(self.count)]


@runtime_checkable
class BudgetStore(Protocol):
    """A send budget shared by every process on one database (PostgreSQL only: SQLite and
    memory serve one process, which paces itself). A budget is a grid of sending slots on
    the server's clock: each booking takes the next `count` slots after every slot booked
    before it, by any process, and none earlier than now. So slots are `interval` apart
    across all processes (no burst) and, booked a few at a time, cost a round trip per few
    sends. Nothing is held: a process that dies leaves at most the slots it booked unused,
    and slots in the past are never handed out."""

    async def take_slots(self, name: str, count: int, interval: float) -> Slots:
        """Book the next `count` (>= 1) slots of budget `name` (made on first use), spaced
        `interval` seconds (> 0) apart. StorageUnavailable when the server does not answer."""


@runtime_checkable
class EngineFence(Protocol):
    """The engine's fencing token, for stores shared by processes (PostgreSQL only). The
    engine runs in one process at a time (under a lease), but a process that lost its lease
    finds out only at its next check: a tick it commits meanwhile would decide again what its
    successor decided. So each start of the engine takes a new epoch, and its ticks carry it
    (`commit_tick(..., epoch)`): a tick of an older epoch is refused."""

    async def take_engine(self) -> int:
        """Take the engine's next epoch (1 in a new store) and return it. It waits for a tick
        of the previous holder that is committing, so every tick committed before can be read
        once this returns. StorageUnavailable when the server does not answer."""


class Storage(
    ChatStore,
    RuleStore,
    OutboxStore,
    SubscriptionStore,
    DigestStore,
    QuoteStore,
    SecretStore,
    WebhookStore,
    Protocol,
):
    """Everything the service, delivery and chat front ends need of a store. Each backend
    opens with its own async context manager factory, taking a `clock` (the store's now)."""
