"""An in-memory `storage.api.Storage`: the SQLite store's behaviour without a file.

For tests of the layers above (swap `Store.open(path, clock=...)` for
`MemoryStore.open(clock=...)`) and as the reference a new backend is compared with. Nothing
survives the context. Each method runs without awaiting anything, so on one event loop every
call is atomic: a write lands whole or, when it raises, not at all. Where SQLite refuses a write
with an IntegrityError (a chat or rule that does not exist, a chat id taken), this store raises
ValueError.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime

from alerts.models import Alert, Quote, RuleState
from storage.api import (
    WEBHOOK,
    Chat,
    ChatDigest,
    Clock,
    DigestDue,
    DigestSetting,
    LimitReached,
    OutboxRow,
    RuleChanges,
    Storage,
    StoredRule,
    Webhook,
    utcnow,
)

CHANGES_KEPT = 10_000  # as SQLite's log keeps (migration 5): the last 10,000 to 10,999


@dataclass(slots=True)
class _Rule:
    id: int
    chat: int
    text: str
    created_by: str
    created_at: datetime
    active: bool = True
    snoozed_until: datetime | None = None


@dataclass(slots=True)
class _Row:
    """One outbox row with the bookkeeping SQLite keeps in its columns."""

    id: int
    rule: int | None
    chat: int
    alert: Alert | DigestDue
    created_at: datetime
    status: str
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None
    message_id: str | None = None
    actions: str = ""


class MemoryStore:
    """Chats, rules, outbox, subscriptions and quotes in dicts; each method keeps the contract
    written in storage.api. Open with `async with MemoryStore.open(clock=...) as store`."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._chats: dict[int, Chat] = {}
        self._chat_ids: dict[tuple[str, str], int] = {}
        self._rules: dict[int, _Rule] = {}
        self._rule_ids: list[int] = []  # ascending: ids only grow and rules are never deleted
        self._states: dict[int, RuleState] = {}
        self._revision = 0
        self._changes: list[tuple[int, int | None]] = []  # (revision, rule or None), ascending
        self._outbox: dict[int, _Row] = {}
        self._subscriptions: set[tuple[int, str]] = set()
        self._quotes: dict[tuple[str, datetime], Quote] = {}
        self._secrets: dict[str, str] = {}
        self._digests: dict[int, tuple[ChatDigest, bool]] = {}  # chat -> (digest, on)
        self._webhooks: dict[int, tuple[Webhook, bool]] = {}  # chat -> (webhook, active)
        self._inbound: dict[int, str] = {}  # chat -> its inbound secret
        self._woken: list[Callable[[], None]] = []  # on_queued's callbacks

    @classmethod
    @asynccontextmanager
    async def open(cls, clock: Clock = utcnow) -> AsyncIterator[MemoryStore]:
        """A new empty store, dropped on exit."""
        yield cls(clock)

    def _now(self) -> datetime:
        return self._clock().astimezone(UTC)

    def _check_chat(self, chat: int) -> None:
        """A write naming a chat that does not exist is refused (SQLite: a foreign key)."""
        if chat not in self._chats:
            raise ValueError(f"no chat {chat}")

    # --- chats ---

    async def chat(self, platform: str, chat_id: str, kind: str = "private") -> Chat:
        return self._chat(platform, chat_id, kind)

    def _chat(self, platform: str, chat_id: str, kind: str) -> Chat:
        found = self._chat_ids.get((platform, chat_id))
        if found is not None:
            return self._chats[found]
        made = Chat(_next_id(self._chats), platform, chat_id, kind, True, None)
        self._chats[made.id] = made
        self._chat_ids[(platform, chat_id)] = made.id
        return made

    async def find_chat(self, platform: str, chat_id: str) -> Chat | None:
        found = self._chat_ids.get((platform, chat_id))
        return None if found is None else self._chats[found]

    async def get_chat(self, chat: int) -> Chat:
        if chat not in self._chats:
            raise KeyError(f"no chat {chat}")
        return self._chats[chat]

    async def set_chat_active(self, chat: int, active: bool) -> None:
        if chat in self._chats:
            self._chats[chat] = replace(self._chats[chat], active=active)

    async def set_muted(self, chat: int, until: datetime | None) -> None:
        if chat in self._chats:
            muted_until = None if until is None else until.astimezone(UTC)
            self._chats[chat] = replace(self._chats[chat], muted_until=muted_until)

    async def set_charts(self, chat: int, on: bool) -> None:
        if chat in self._chats:
            self._chats[chat] = replace(self._chats[chat], charts=on)

    async def move_chat(self, platform: str, old_id: str, new_id: str) -> None:
        moving = self._chat_ids.get((platform, old_id))
        if moving is None:
            return
        taken = self._chat_ids.get((platform, new_id))
        if taken is not None and taken != moving:
            raise ValueError(f"{platform} chat {new_id} exists already")
        del self._chat_ids[(platform, old_id)]
        self._chat_ids[(platform, new_id)] = moving
        self._chats[moving] = replace(self._chats[moving], chat_id=new_id)

    async def import_chats(self, platform: str, chat_ids: list[str], kind: str) -> list[Chat]:
        chats = {chat_id: self._chat(platform, chat_id, kind) for chat_id in chat_ids}
        return [chats[chat_id] for chat_id in sorted(chats)]

    # --- rules ---

    async def add_rule(
        self, chat: int, text: str, created_by: str, limit: int, state: RuleState | None = None
    ) -> int:
        count = sum(1 for rule in self._rules.values() if rule.chat == chat and rule.active)
        if count >= limit:
            raise LimitReached(f"this chat already has {count} rules (the limit is {limit})")
        self._check_chat(chat)
        rule = self._add_rule(chat, text, created_by, self._now())
        if state is not None:
            self._states[rule] = state
        return rule

    def _add_rule(self, chat: int, text: str, created_by: str, created_at: datetime) -> int:
        rule = _Rule(_next_id(self._rules), chat, text, created_by, created_at)
        self._rules[rule.id] = rule
        self._rule_ids.append(rule.id)
        self._changed(rule.id)
        return rule.id

    def _changed(self, rule: int | None) -> None:
        """One more revision, logged with the rule it changed (None: a subscription)."""
        self._revision += 1
        self._changes.append((self._revision, rule))
        if self._revision % 1000 == 0:
            cut = self._revision - CHANGES_KEPT
            del self._changes[: bisect.bisect_right(self._changes, (cut, math.inf))]

    async def import_rules(self, rows: list[tuple[int, str, str]]) -> None:
        for chat, _, _ in rows:
            self._check_chat(chat)
        now = self._now()
        for chat, text, created_by in rows:
            self._add_rule(chat, text, created_by, now)

    async def remove_rule(self, chat: int, rule: int) -> bool:
        found = self._rules.get(rule)
        removed = self._deactivate([found] if found is not None and found.chat == chat else [])
        for each in (chat, *(hook for hook, (w, _) in self._webhooks.items() if w.owner == chat)):
            self._mark_removed(each, lambda row_rule: row_rule == rule)
        return removed > 0

    async def remove_all_rules(self, chat: int) -> int:
        removed = self._deactivate([r for r in self._rules.values() if r.chat == chat])
        for each in (chat, *(hook for hook, (w, _) in self._webhooks.items() if w.owner == chat)):
            self._mark_removed(each, lambda row_rule: row_rule is not None)
        return removed

    async def remove_rules_created_by(self, chat: int, created_by: str) -> int:
        return self._deactivate(
            [r for r in self._rules.values() if r.chat == chat and r.created_by == created_by]
        )

    def _deactivate(self, rules: Iterable[_Rule]) -> int:
        """Deactivate the active ones of `rules`; return how many."""
        count = 0
        for rule in rules:
            if rule.active:
                rule.active = False
                self._changed(rule.id)
                count += 1
        return count

    def _mark_removed(self, chat: int, of_rule: Callable[[int | None], bool]) -> None:
        for row in self._outbox.values():
            if row.chat == chat and row.status == "pending" and of_rule(row.rule):
                row.status = "removed"

    async def snooze_rule(self, chat: int, rule: int, until: datetime | None) -> bool:
        found = self._rules.get(rule)
        if found is None or found.chat != chat or not found.active:
            return False
        found.snoozed_until = None if until is None else until.astimezone(UTC)
        if rule in self._states:
            self._states[rule] = self._states[rule].relearned()
        self._changed(rule)
        return True

    async def rules(self, chat: int | None = None) -> list[StoredRule]:
        return [
            self._stored(r)
            for r in sorted(self._rules.values(), key=lambda rule: rule.id)
            if r.active and (chat is None or r.chat == chat)
        ]

    def _stored(self, r: _Rule) -> StoredRule:
        state = self._states.get(r.id)
        return StoredRule(r.id, r.chat, r.text, r.created_by, r.created_at, state, r.snoozed_until)

    async def rules_page(self, after: int, limit: int) -> list[StoredRule]:
        page: list[StoredRule] = []
        at = bisect.bisect_right(self._rule_ids, after)
        while at < len(self._rule_ids) and len(page) < limit:
            r = self._rules[self._rule_ids[at]]
            if r.active:
                page.append(self._stored(r))
            at += 1
        return page

    async def rules_revision(self) -> int:
        return self._revision

    async def rule_changes(self, since: int) -> RuleChanges | None:
        if since == self._revision:
            return RuleChanges(since)
        first = self._changes[0][0] if self._changes else self._revision + 1
        if since > self._revision or since + 1 < first:
            return None
        newer = self._changes[since + 1 - first :]
        changed = [self._rules[rule] for rule in sorted({r for _, r in newer if r is not None})]
        return RuleChanges(
            self._revision,
            tuple(self._stored(r) for r in changed if r.active),
            tuple(r.id for r in changed if not r.active),
            subscriptions=any(rule is None for _, rule in newer),
        )

    async def commit_tick(
        self,
        states: dict[int, RuleState],
        alerts: Sequence[tuple[int | None, int, Alert]],
        epoch: int | None = None,  # one process: one engine, nothing to fence
    ) -> int:
        unknown = {*states, *(rule for rule, _, _ in alerts if rule is not None)} - set(self._rules)
        if unknown:
            raise ValueError(f"no rule {min(unknown)}")
        for _, chat, _ in alerts:
            self._check_chat(chat)
        now = self._clock()
        self._states.update(states)
        queued = 0
        for rule, chat, alert in alerts:
            own = self._enqueue(rule, chat, alert, now)
            queued += own == "pending"
            for hook in self._active_webhooks(chat):  # a webhook hears as its owner does
                status = self._enqueue(rule, hook.id, alert, now, None if own == "pending" else own)
                queued += status == "pending"
        if queued:
            self._queued()
        return queued

    def on_queued(self, wake: Callable[[], None]) -> None:
        self._woken.append(wake)

    def _queued(self) -> None:
        for wake in self._woken:
            wake()

    def _enqueue(
        self,
        rule: int | None,
        chat: int,
        message: Alert | DigestDue,
        now: datetime,
        status: str | None = None,
    ) -> str:
        """Put one row in the outbox, stamped as its chat stands now (or with the status
        given); return its status."""
        status = status or self._delivery_status(self._chats[chat], now)
        row = _Row(_next_row_id(self._outbox), rule, chat, message, now.astimezone(UTC), status)
        self._outbox[row.id] = row
        return status

    @staticmethod
    def _delivery_status(chat: Chat, now: datetime) -> str:
        if chat.muted_until is not None and chat.muted_until > now:
            return "muted"
        return "pending" if chat.active else "inactive"

    # --- the outbox ---

    async def pending(self, limit: int = 500) -> list[OutboxRow]:
        return await self.claim(limit)

    async def claim(
        self, limit: int = 500, platforms: Collection[str] | None = None
    ) -> list[OutboxRow]:
        """The pending rows (of these platforms): one process, so every chat is this store's."""
        now = self._clock()
        rows = sorted(
            (
                row
                for row in self._outbox.values()
                if row.status == "pending"
                and (platforms is None or self._chats[row.chat].platform in platforms)
            ),
            key=lambda row: row.id,
        )
        held_from: dict[int, int] = {}  # chat -> its first row waiting for its retry time
        for row in rows:
            if row.next_attempt_at is not None and row.next_attempt_at > now:
                held_from.setdefault(row.chat, row.id)
        due = [row for row in rows if row.id < held_from.get(row.chat, math.inf)]
        return [self._outbox_row(row) for row in due[:limit]]

    async def release(self) -> None:
        return None

    def _outbox_row(self, row: _Row) -> OutboxRow:
        chat = self._chats[row.chat]
        return OutboxRow(row.id, row.rule, chat, row.alert, row.attempts, frozenset(row.actions))

    async def outbox_row(self, row: int) -> OutboxRow | None:
        found = self._outbox.get(row)
        return None if found is None else self._outbox_row(found)

    async def mark_action(self, row: int, action: str) -> bool:
        found = self._outbox.get(row)
        if found is None or action in found.actions:
            return False
        found.actions += action
        return True

    async def unmark_action(self, row: int, action: str) -> None:
        found = self._outbox.get(row)
        if found is not None:
            found.actions = found.actions.replace(action, "")

    async def mark_delivered(self, row: int, message_id: str | None) -> None:
        found = self._outbox.get(row)
        if found is not None:
            found.status = "delivered"
            found.delivered_at = self._now()
            found.message_id = message_id
            found.attempts += 1

    async def mark_retry(self, row: int, error: str, next_attempt: datetime) -> None:
        found = self._outbox.get(row)
        if found is not None:
            found.attempts += 1
            found.last_error = error[:500]
            found.next_attempt_at = next_attempt.astimezone(UTC)

    async def mark_failed(self, row: int, error: str) -> None:
        found = self._outbox.get(row)
        if found is not None:
            found.status = "failed"
            found.attempts += 1
            found.last_error = error[:500]

    async def outbox_counts(self) -> dict[str, int]:
        counts = Counter(row.status for row in self._outbox.values())
        return dict(sorted(counts.items()))

    async def history(self, chat: int, limit: int = 20) -> list[tuple[str, Alert]]:
        rows = sorted(
            (row for row in self._outbox.values() if row.chat == chat),
            key=lambda row: row.id,
            reverse=True,
        )
        alerts = [(row.status, row.alert) for row in rows if isinstance(row.alert, Alert)]
        return alerts[:limit]

    async def prune_outbox(self, before: datetime) -> int:
        gone = [
            row.id
            for row in self._outbox.values()
            if row.status != "pending" and row.created_at < before
        ]
        for row_id in gone:
            del self._outbox[row_id]
        return len(gone)

    # --- webhooks ---

    def _active_webhooks(self, owner: int | None) -> list[Webhook]:
        return [
            hook
            for _, (hook, active) in sorted(self._webhooks.items())
            if active and (owner is None or hook.owner == owner)
        ]

    async def add_webhook(self, owner: int, url: str, secret: str) -> tuple[Webhook, bool]:
        self._check_chat(owner)
        chat_id = f"{owner}:{hashlib.sha256(url.encode()).hexdigest()[:16]}"
        chat = self._chat(WEBHOOK, chat_id, WEBHOOK)
        self._chats[chat.id] = replace(chat, active=True)
        _, was_active = self._webhooks.get(chat.id, (None, False))
        hook = Webhook(chat.id, owner, url, secret)
        self._webhooks[chat.id] = (hook, True)
        return hook, not was_active

    async def remove_webhook(self, owner: int, webhook: int) -> bool:
        hook, active = self._webhooks.get(webhook, (None, False))
        if hook is None or not active or hook.owner != owner:
            return False
        self._webhooks[webhook] = (hook, False)
        self._mark_removed(webhook, lambda row_rule: True)
        return True

    async def webhooks(self, owner: int | None = None) -> list[Webhook]:
        return self._active_webhooks(owner)

    async def webhook(self, chat: int) -> Webhook | None:
        hook, active = self._webhooks.get(chat, (None, False))
        return hook if active else None

    async def set_inbound_secret(self, chat: int, secret: str | None) -> None:
        self._check_chat(chat)
        if secret is not None and self._inbound_owner(secret) not in (None, chat):
            raise ValueError("that inbound secret is another chat's")
        self._inbound.pop(chat, None)
        if secret is not None:
            self._inbound[chat] = secret

    def _inbound_owner(self, secret: str) -> int | None:
        return next((chat for chat, known in self._inbound.items() if known == secret), None)

    async def inbound_secret(self, chat: int) -> str | None:
        return self._inbound.get(chat)

    async def inbound_chat(self, secret: str) -> Chat | None:
        chat = self._inbound_owner(secret)
        return None if chat is None else self._chats[chat]

    # --- subscriptions ---

    async def subscribe(self, chat: int, symbol: str) -> bool:
        self._check_chat(chat)
        if (chat, symbol) in self._subscriptions:
            return False
        self._subscriptions.add((chat, symbol))
        self._changed(None)
        return True

    async def unsubscribe(self, chat: int, symbol: str | None = None) -> int:
        gone = {
            (c, s) for c, s in self._subscriptions if c == chat and (symbol is None or s == symbol)
        }
        self._subscriptions -= gone
        for _ in gone:
            self._changed(None)
        return len(gone)

    async def subscriptions(self, chat: int | None = None) -> list[tuple[int, str]]:
        return sorted(pair for pair in self._subscriptions if chat is None or pair[0] == chat)

    # --- secrets ---

    async def secret(self, name: str) -> str:
        return self._secrets.setdefault(name, secrets.token_hex(32))

    # --- daily digests ---

    async def set_digest(self, chat: int, setting: DigestSetting | None) -> None:
        known = self._digests.get(chat)
        if setting is None:
            if known is not None:
                self._digests[chat] = (known[0], False)
            return
        self._check_chat(chat)
        last_day = None if known is None else known[0].last_day
        self._digests[chat] = (ChatDigest(chat, setting, self._now(), last_day), True)

    async def digests(self, chat: int | None = None) -> list[ChatDigest]:
        return [
            digest
            for key, (digest, on) in sorted(self._digests.items())
            if on and (chat is None or key == chat)
        ]

    async def enqueue_digest(self, chat: int, digest: DigestDue) -> bool:
        known = self._digests.get(chat)
        if known is None or not known[1]:
            return False
        last: date | None = known[0].last_day
        if last is not None and last >= digest.day:
            return False
        self._digests[chat] = (replace(known[0], last_day=digest.day), True)
        if self._enqueue(None, chat, digest, self._clock()) == "pending":
            self._queued()
        return True

    # --- recent quotes ---

    async def save_quotes(self, quotes: Iterable[Quote]) -> None:
        for q in quotes:
            ts = q.ts.astimezone(UTC)
            self._quotes[(q.symbol, ts)] = Quote(
                q.symbol, q.last, ts, bid=q.bid, ask=q.ask, source=q.source
            )

    async def prune_quotes(self, before: datetime) -> int:
        gone = [key for key in self._quotes if key[1] < before]
        for key in gone:
            del self._quotes[key]
        return len(gone)

    async def recent_quotes(
        self, symbol: str, since: datetime | None = None, limit: int = 20_000
    ) -> list[Quote]:
        kept = sorted(
            (
                quote
                for (stored, ts), quote in self._quotes.items()
                if stored == symbol and (since is None or ts >= since)
            ),
            key=lambda quote: quote.ts,
        )
        return kept[-limit:] if limit > 0 else []


def _next_id(ids: Iterable[int]) -> int:
    """One past the highest id in use, as SQLite numbers rows (a pruned last id comes again)."""
    return max(ids, default=0) + 1


def _next_row_id(rows: dict[int, _Row]) -> int:
    """`_next_id` of the outbox in constant time: its rows are kept in the order of their ids."""
    return next(reversed(rows), 0) + 1


_MEMORY_STORE_IS_STORAGE: type[Storage] = MemoryStore  # mypy checks that it keeps the contract
