"""Rule sync: keeps the in-memory rule book in line with the stored rules and subscriptions.

Stored rules are read again when the store's rules revision changes (a chat command, the CLI
in another process), parsed and resolved once. Subscriptions become built-in digest rules,
one set per subscribed symbol shared by its chats; they have negative ids and keep their
state in memory only: after a restart they learn the market again, so they never repeat an
alert (they may miss one that happened while the service was down).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from alerts import rules
from alerts.book import Fire, RuleBook
from alerts.indicators import bars_needed
from alerts.models import Rule, RuleError
from storage.api import Storage

log = logging.getLogger(__name__)

# What a `/subscribe SYM` chat hears about: a big day move and a 20-day high or low.
DIGEST_RULES = ("move 3% 1d", "breakout 20d", "breakdown 20d")
DIGEST_ALL = ("XAU", "XAG", "BTC", "ETH")  # what `/subscribe all` means


class RuleSync:
    """The rule book's contents: which rule belongs to which chat, and who hears a digest."""

    def __init__(self, store: Storage, book: RuleBook, canonical: Callable[[Rule], Rule]) -> None:
        self.store = store
        self.book = book
        self.canonical = canonical
        self.rule_chat: dict[int, int] = {}
        self.digest_chats: dict[str, set[int]] = {}
        self._digest_ids: dict[tuple[str, str], int] = {}
        self._revision = -1

    async def refresh(self) -> bool:
        """Bring the book in line with the store; False when nothing changed since last time."""
        revision = await self.store.rules_revision()
        if revision == self._revision:
            return False
        stored = {r.id: r for r in await self.store.rules()}
        for rule_id in {i for i in self.book.rules if i > 0} - set(stored):
            self.book.remove(rule_id)
            self.rule_chat.pop(rule_id, None)
        for rule_id, row in stored.items():
            if rule_id in self.book.rules:
                continue
            try:
                rule = self.canonical(rules.parse(row.text))
            except RuleError as err:
                log.error("rule %s %r cannot be loaded: %s", rule_id, row.text, err)
                continue
            self.book.add(rule_id, rule, row.state)
            self.rule_chat[rule_id] = row.chat
        await self._refresh_digest()
        self._revision = revision
        return True

    async def _refresh_digest(self) -> None:
        """Keep one set of digest rules per subscribed symbol, shared by its chats."""
        chats: dict[str, set[int]] = {}
        for chat, symbol in await self.store.subscriptions():
            for each in DIGEST_ALL if symbol == "all" else (symbol,):
                chats.setdefault(each, set()).add(chat)
        wanted = {(symbol, text) for symbol in chats for text in DIGEST_RULES}
        for key, rule_id in list(self._digest_ids.items()):
            if key not in wanted:
                self.book.remove(rule_id)
                del self._digest_ids[key]
        for symbol, text in sorted(wanted - set(self._digest_ids)):
            rule_id = -(len(self._digest_ids) + 1)
            while rule_id in self.book.rules:
                rule_id -= 1
            self.book.add(rule_id, self.canonical(rules.parse(f"{symbol} {text}")))
            self._digest_ids[(symbol, text)] = rule_id
        self.digest_chats = chats

    def recipients(self, fire: Fire) -> list[tuple[int | None, int]]:
        """(rule id, chat) for each chat a fire goes to: the rule's own chat, or for a digest
        rule (no stored rule) every subscriber of the symbol."""
        if fire.rule_id > 0:
            return [(fire.rule_id, self.rule_chat[fire.rule_id])]
        subscribers = sorted(self.digest_chats.get(fire.alert.symbol, ()))
        return [(None, chat) for chat in subscribers]

    def history_days(self) -> dict[str, int]:
        """Per symbol, how many days of daily bars its rules look back (0: none)."""
        days: dict[str, int] = {}
        for rule in self.book.rules.values():
            need = bars_needed(rule)
            if rule.window is not None and rule.window % timedelta(days=1) == timedelta(0):
                need = max(need, rule.window.days)
            if need:
                for symbol in rule.symbols:
                    days[symbol] = max(days.get(symbol, 0), need)
        return days
