"""Rule sync: keeps the in-memory rule book in line with the stored rules and subscriptions.

The first refresh reads every stored rule, page by page (the event loop runs between pages),
each distinct text parsed and resolved once. Every later refresh asks the store what changed
since the revision it has (`RuleStore.rule_changes`) and applies only that, whoever wrote it (a
chat command, the CLI in another process); when the store no longer remembers that far back, it
reads everything again, keeping the rules it has. Subscriptions become built-in digest rules,
one set per subscribed symbol shared by its chats; they have negative ids and keep their state
in memory only: after a restart they learn the market again, so they never repeat an alert
(they may miss one that happened while the service was down).

A snoozed rule (`/snooze`, or a Snooze or Mute button) stays out of the book until its snooze
ends, so it decides nothing meanwhile; it then comes back relearning (`RuleState.relearned`):
like a new rule it first learns where the market is, so a level that was crossed during the
snooze, and is still crossed when it ends, waits for the next real crossing instead of firing
a stale one. The end of a snooze is noticed by the first refresh after it (every tick).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from alerts import rules
from alerts.book import Fire, RuleBook
from alerts.indicators import bars_needed
from alerts.models import Rule, RuleError, RuleState
from storage.api import Storage, StoredRule, utcnow

log = logging.getLogger(__name__)

# What a `/subscribe SYM` chat hears about: a big day move and a 20-day high or low.
DIGEST_RULES = ("move 3% 1d", "breakout 20d", "breakdown 20d")
DIGEST_ALL = ("XAU", "XAG", "BTC", "ETH")  # what `/subscribe all` means
PAGE = 1_000  # rules read and added to the book between two turns of the event loop
FREEZE_FROM = 100_000  # rules after a full read from which the collector skips what exists

Parsed = dict[str, Rule | RuleError]  # rule text -> its rule, or why it no longer parses


class RuleSync:
    """The rule book's contents: which rule belongs to which chat, and who hears a digest."""

    def __init__(
        self,
        store: Storage,
        book: RuleBook,
        canonical: Callable[[Rule], Rule],
        page: int = PAGE,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.book = book
        self.canonical = canonical
        self.page = page
        self.clock = clock
        self.rule_chat: dict[int, int] = {}
        self.snoozed: dict[int, StoredRule] = {}  # out of the book until `snoozed_until`
        self.digest_chats: dict[str, set[int]] = {}
        self._digest_ids: dict[tuple[str, str], int] = {}
        self._revision: int | None = None  # None: nothing read yet
        self._shapes: Parsed = {}  # `SUBJECT above 1` -> its rule (see rules.split_level)
        self._history = Counter[tuple[str, int]]()  # (symbol, days back) -> how many rules
        self._lock = asyncio.Lock()  # one refresh at a time: a tick waits for a running one

    async def refresh(self) -> bool:
        """Bring the book in line with the store; False when nothing changed since last time."""
        async with self._lock:
            if self._revision is None:
                await self._read_all()
                return True
            woke = self._wake_snoozed()
            changes = await self.store.rule_changes(self._revision)
            if changes is None:
                log.info("the store no longer lists every rule change since; reading all rules")
                await self._read_all()
                return True
            if changes.revision == self._revision:
                return woke
            for rule_id in changes.removed:
                self._remove(rule_id)
            self._add_rows(changes.rules, {})
            if changes.subscriptions:
                await self._refresh_digest()
            self._revision = changes.revision
            return True

    async def _read_all(self) -> None:
        """Every stored rule into the book, page by page; rules no longer stored leave it.

        The revision is read first: a change that lands while the pages are read is applied
        again by the next refresh, which does no harm (a rule already in the book stays as it
        is, one already gone is not there to remove).
        """
        revision = await self.store.rules_revision()
        stale = {rule_id for rule_id in self.book.rules if rule_id > 0} | set(self.snoozed)
        parsed: Parsed = {}
        collecting = gc.isenabled()
        gc.disable()  # each full collection would walk the growing book: ~1 s at 1M rules
        # The next page is asked for before this one is added: the database reads it (its
        # thread, or the server) while this page goes into the book.
        reading: asyncio.Future[list[StoredRule]] | None = None
        try:
            reading = asyncio.ensure_future(self.store.rules_page(0, self.page))
            while reading is not None:
                page = await reading
                reading = None
                if len(page) == self.page:
                    reading = asyncio.ensure_future(self.store.rules_page(page[-1].id, self.page))
                if stale:
                    stale.difference_update(row.id for row in page)
                self._add_rows(page, parsed)
                await asyncio.sleep(0)  # a turn of the event loop for everyone else
        finally:
            if reading is not None and not reading.cancel():  # this page failed: not the next
                reading.exception()  # done already: its own failure, if any, is not news
            if len(self.book) >= FREEZE_FROM:
                # The book lives as long as the process: its objects (and all others of
                # now) are left out of later collections too; reference counting still
                # frees one dropped later, unless it is in a cycle.
                gc.freeze()
            if collecting:
                gc.enable()
        for rule_id in stale:
            self._remove(rule_id)
        await self._refresh_digest()
        self._revision = revision

    def _add_rows(self, rows: Iterable[StoredRule], parsed: Parsed) -> None:
        """Add the rules the book does not have yet (one it has keeps its state in memory,
        which may be newer than the stored one), each distinct text parsed once."""
        now = self.clock()
        snoozed, in_book, rule_chat = self.snoozed, self.book.rules, self.rule_chat
        for row in rows:
            state = row.state
            if row.snoozed_until is not None and row.snoozed_until > now:
                self._remove(row.id)
                snoozed[row.id] = row
                continue
            if snoozed and snoozed.pop(row.id, None) is not None and state is not None:
                state = state.relearned()  # woken before its time (`/snooze ID off`)
            elif row.id in in_book:
                continue
            rule = parsed.get(row.text)
            if rule is None:
                rule = parsed[row.text] = self._parse(row.text)
            if isinstance(rule, RuleError):
                log.error("rule %s %r cannot be loaded: %s", row.id, row.text, rule)
                continue
            rule_chat[row.id] = row.chat
            self._add(row.id, rule, state)

    def _wake_snoozed(self) -> bool:
        """Bring back the rules whose snooze has ended, relearning; True if any came back."""
        now = self.clock()
        over = [
            row for row in self.snoozed.values() if row.snoozed_until and row.snoozed_until <= now
        ]
        for row in over:
            del self.snoozed[row.id]
            state = row.state.relearned() if row.state is not None else None
            self._add_rows([row._replace(snoozed_until=None, state=state)], {})
        return bool(over)

    def _parse(self, text: str) -> Rule | RuleError:
        level = rules.split_level(text)
        if level is not None:
            shape, value = level
            template = self._shapes.get(shape)
            if template is None:
                template = self._shapes[shape] = self._parse_text(shape)
            if isinstance(template, Rule):
                return template.at(value)
        return self._parse_text(text)

    def _parse_text(self, text: str) -> Rule | RuleError:
        try:
            return self.canonical(rules.parse(text))
        except RuleError as err:
            return err

    def _add(self, rule_id: int, rule: Rule, state: RuleState | None = None) -> None:
        self.book.add(rule_id, rule, state)
        needs = _history_needs(rule)
        if needs:
            self._history.update(needs)

    def _remove(self, rule_id: int) -> None:
        """Take a rule out of the book, if it is there."""
        rule = self.book.rules.get(rule_id)
        if rule is not None:
            self.book.remove(rule_id)
            needs = _history_needs(rule)
            if needs:
                self._history.subtract(needs)
        self.rule_chat.pop(rule_id, None)
        self.snoozed.pop(rule_id, None)

    async def _refresh_digest(self) -> None:
        """Keep one set of digest rules per subscribed symbol, shared by its chats."""
        chats: dict[str, set[int]] = {}
        for chat, symbol in await self.store.subscriptions():
            for each in DIGEST_ALL if symbol == "all" else (symbol,):
                chats.setdefault(each, set()).add(chat)
        wanted = {(symbol, text) for symbol in chats for text in DIGEST_RULES}
        for key, rule_id in list(self._digest_ids.items()):
            if key not in wanted:
                self._remove(rule_id)
                del self._digest_ids[key]
        for symbol, text in sorted(wanted - set(self._digest_ids)):
            rule_id = -(len(self._digest_ids) + 1)
            while rule_id in self.book.rules:
                rule_id -= 1
            self._add(rule_id, self.canonical(rules.parse(f"{symbol} {text}")))
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
        """Per symbol, how many days of daily bars its rules look back (0: none); kept as the
        rules come and go, so asking costs nothing with a million rules."""
        days: dict[str, int] = {}
        for (symbol, need), count in self._history.items():
            if count > 0:
                days[symbol] = max(days.get(symbol, 0), need)
        return days


def _history_needs(rule: Rule) -> tuple[tuple[str, int], ...]:
    """(symbol, days of daily bars) for each symbol of a rule that looks back in days; kept
    per kind of reading (a start-up asks it a million times, of a few hundred kinds)."""
    key = (rule.symbol, rule.other, rule.indicator, rule.days, rule.window)
    needs = _NEEDS.get(key)
    if needs is None:
        if len(_NEEDS) >= 65_536:  # kinds of reading are few; never let odd ones pile up
            _NEEDS.clear()
        need = bars_needed(rule)
        if rule.window is not None and rule.window % timedelta(days=1) == timedelta(0):
            need = max(need, rule.window.days)
        needs = _NEEDS[key] = tuple((symbol, need) for symbol in rule.symbols) if need else ()
    return needs


_NEEDS: dict[tuple[object, ...], tuple[tuple[str, int], ...]] = {}
