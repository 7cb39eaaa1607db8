"""The live service: poll each feed on a schedule, evaluate rules, commit, and wake delivery.

Each poll job fetches the quotes of every symbol some active rule needs from one feed, once;
every rule of those symbols is evaluated against that one snapshot; the changed rule states
and the decided alerts are written in one transaction; then delivery is woken. Rules are
re-read from the database when its rules revision changes, so a rule added by a chat command
or the CLI is live within one tick.

A feed can exist before any rule needs it (`/status` of a symbol nobody watches creates it);
it is polled from the moment a rule needs it. A tick that is still running when the next is
due (a venue that hangs until its timeout) is skipped quietly: the feed logs the outage once.
A tick whose commit fails (a full disk) is reverted in memory, so its crossings are decided
again on the next tick instead of being lost; the failure is logged once until a commit works.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from alerts import rules
from alerts.book import RuleBook
from alerts.indicators import TICK_MEMORY, Market, bars_needed
from alerts.models import Alert, Candle, Quote, Rule, RuleError
from alerts.sanity import Limits
from feeds.base import Feed, FeedError
from feeds.catalogue import Instrument, canonical_rule
from storage.db import Store, utcnow
from tickerbell.delivery import Delivery

log = logging.getLogger(__name__)

QUOTE_RETENTION = timedelta(days=2)
QUOTE_PRUNE_EVERY = timedelta(hours=1)
# What a `/subscribe SYM` chat hears about: a big day move and a 20-day high or low.
DIGEST_RULES = ("move 3% 1d", "breakout 20d", "breakdown 20d")
DIGEST_ALL = ("XAU", "XAG", "BTC", "ETH")  # what `/subscribe all` means
RULES_REFRESH_SECONDS = 2.0


class Resolver(Protocol):
    """Maps a symbol to where its price comes from (feeds.catalogue.Catalogue, or replay's)."""

    def resolve(self, text: str) -> Instrument: ...


@dataclass(slots=True)
class FeedStats:
    """Per-feed figures for /metrics and /healthz."""

    polls: int = 0
    failures: int = 0
    last_good: datetime | None = None
    rejected: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Stats:
    """What the service counts; the metrics endpoint reads it."""

    feeds: dict[str, FeedStats] = field(default_factory=dict)
    alerts_decided: int = 0
    last_tick: dict[str, float] = field(default_factory=dict)
    deliveries: dict[tuple[str, str], int] = field(default_factory=dict)

    def delivery(self, platform: str, outcome: str) -> None:
        key = (platform, outcome)
        self.deliveries[key] = self.deliveries.get(key, 0) + 1


class Service:
    """Owns the market memory, the rule book and the scheduler; one instance per process."""

    def __init__(
        self,
        store: Store,
        catalogue: Resolver,
        feed_for: Callable[[str], Feed],
        delivery: Delivery,
        *,
        limits: Limits,
        band: float,
        poll_interval: Callable[[str], float],
        clock: Callable[[], datetime] = utcnow,
        stats: Stats | None = None,
    ) -> None:
        self.store = store
        self.catalogue = catalogue
        self.feed_for = feed_for
        self.feeds: dict[str, Feed] = {}
        self._polled: set[str] = set()
        self._ticks: dict[str, asyncio.Task[None]] = {}
        self._rejecting: dict[str, str] = {}
        self._store_failing = False
        self._quotes_pruned: datetime | None = None
        self._quotes_failing = False
        self.delivery = delivery
        self.limits = limits
        self.poll_interval = poll_interval
        self.clock = clock
        self.stats = stats or Stats()
        self.market = Market(limits)
        self.book = RuleBook(band)
        self.rule_chat: dict[int, int] = {}
        self.instruments: dict[str, Instrument] = {}
        self._revision = -1
        self._history_day: dict[str, date] = {}
        self._history_failing: set[str] = set()
        self._days_needed: dict[str, int] = {}
        self._digest_ids: dict[tuple[str, str], int] = {}
        self.digest_chats: dict[str, set[int]] = {}
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self._stopping = False

    # --- rules ---

    async def refresh_rules(self) -> None:
        """Bring the rule book in line with the database when the rules changed."""
        revision = await self.store.rules_revision()
        if revision == self._revision:
            return
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
        needed = self._history_days()
        for symbol, days in needed.items():
            if days > self._days_needed.get(symbol, 0):
                self._history_day.pop(symbol, None)  # a new rule looks further back: load again
        self._days_needed = needed
        for source in {self.instrument(s).source for s in self.book.symbols()} - self._polled:
            self._poll_feed(source)
        if len(self.book):
            symbols = ", ".join(sorted(self.book.symbols()))
            log.info("watching %d rules over %s", len(self.book), symbols)
        else:
            log.info('no rules yet: add one with `tickerbell alert add "XAG above 50"` or /alert')

    async def _refresh_digest(self) -> None:
        """Keep one set of built-in digest rules per subscribed symbol, shared by its chats.

        Digest rules have negative ids and keep their state in memory only: after a restart
        they learn the market again, so they never repeat an alert (they may miss one that
        happened while the service was down).
        """
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

    def canonical(self, rule: Rule) -> Rule:
        """The rule with its symbols as the catalogue names them (GOLD -> XAU)."""
        return canonical_rule(rule, self.instrument)

    def instrument(self, symbol: str) -> Instrument:
        found = self.instruments.get(symbol)
        if found is None:
            found = self.instruments[symbol] = self.catalogue.resolve(symbol)
        return found

    # --- one tick ---

    async def poll(self, source: str) -> None:
        """One tick of one feed. Never raises: the scheduler must keep running."""
        if self._stopping:
            return
        try:
            await self._poll(source)
        except Exception:
            log.exception("poll of %s failed", source)

    async def _poll_job(self, source: str) -> None:
        """The scheduler's job: start a tick unless the last one is still running."""
        self._start_task(f"poll:{source}", lambda: self.poll(source))

    def _start_task(self, name: str, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run a job's work as our own task, unless its last run is still going. The
        scheduler's jobs only start work: shutting the scheduler down (which cancels running
        jobs) never cuts a tick or a rules reload in the middle; `stop` waits for them."""
        running = self._ticks.get(name)
        if self._stopping or (running is not None and not running.done()):
            return
        self._ticks[name] = asyncio.create_task(work(), name=name)

    async def _poll(self, source: str) -> None:
        await self.refresh_rules()
        feed = self.feed(source)
        wanted = [i for s in self.book.symbols() if (i := self.instrument(s)).source == source]
        if not wanted:
            return
        stats = self.stats.feeds.setdefault(source, FeedStats())
        stats.polls += 1
        await self._load_history(feed, wanted)
        started = time.perf_counter()
        try:
            raw = await feed.quotes([i.native for i in wanted])
        except FeedError:
            stats.failures += 1
            return  # the feed logged it once per outage and backs off
        now = self.clock()
        by_native = {i.native: i.symbol for i in wanted}
        good: list[Quote] = []
        for native, quote in raw.items():
            symbol = by_native.get(native)
            if symbol is None:
                continue
            quote = replace(quote, symbol=symbol)
            problem = self.market.ingest(quote, now)
            if problem is None:
                good.append(quote)
                if self._rejecting.pop(symbol, None) is not None:
                    log.info("%s: good %s quotes again (%s)", source, symbol, quote.price)
            else:
                stats.rejected[problem.value] = stats.rejected.get(problem.value, 0) + 1
                if symbol not in self._rejecting:  # once per run of bad quotes
                    log.warning(
                        "%s: rejecting %s quotes (%s: %s); no rule sees them",
                        source,
                        symbol,
                        problem.value,
                        quote.price,
                    )
                self._rejecting[symbol] = problem.value
        if good:
            stats.last_good = now
        fetched = time.perf_counter()
        evaluation = self.book.evaluate(self.market, {q.symbol for q in good}, now)
        alerts: list[tuple[int | None, int, Alert]] = []
        for fire in evaluation.fires:
            if fire.rule_id > 0:
                alerts.append((fire.rule_id, self.rule_chat[fire.rule_id], fire.alert))
            else:  # a digest rule: every subscriber of the symbol
                subscribers = sorted(self.digest_chats.get(fire.alert.symbol, ()))
                alerts.extend((None, chat, fire.alert) for chat in subscribers)
        changed = {rule_id: state for rule_id, state in evaluation.changed.items() if rule_id > 0}
        evaluated = time.perf_counter()
        try:
            if changed or alerts:
                await self.store.commit_tick(changed, alerts)
        except Exception as err:
            self.book.revert(evaluation)  # decided again next tick, not lost
            stats.failures += 1
            if not self._store_failing:
                log.error(
                    "cannot save a tick of %s (%s); its alerts are decided again", source, err
                )
            self._store_failing = True
            return
        if self._store_failing:
            log.info("saving ticks works again")
            self._store_failing = False
        await self._keep_quotes(good, now)
        committed = time.perf_counter()
        self.stats.last_tick = {
            "fetch": fetched - started,
            "evaluate": evaluated - fetched,
            "commit": committed - evaluated,
        }
        if alerts:
            self.stats.alerts_decided += len(alerts)
            self.delivery.wake()

    async def _keep_quotes(self, good: list[Quote], now: datetime) -> None:
        """Store the tick's good quotes (they warm the market after a restart) and drop old
        ones hourly. Best effort: the tick's decisions are committed already, so a failure
        here must not undo them."""
        try:
            if good:
                await self.store.save_quotes(good)
            if self._quotes_pruned is None or now - self._quotes_pruned > QUOTE_PRUNE_EVERY:
                await self.store.prune_quotes(now - QUOTE_RETENTION)
                self._quotes_pruned = now
        except Exception as err:
            if not self._quotes_failing:
                log.warning("cannot save recent quotes (%s); alerts are not affected", err)
            self._quotes_failing = True
            return
        self._quotes_failing = False

    async def _load_history(self, feed: Feed, wanted: list[Instrument], days: int = 0) -> None:
        """Daily candles for rules that look back in days, fetched at most once a day."""
        today = self.clock().date()
        for instrument in wanted:
            if self._history_day.get(instrument.symbol) == today:
                continue
            days = max(days, self._days_needed.get(instrument.symbol, 0))
            if not days:
                continue
            # N bars of a market closed at weekends and holidays span about 3/2 N calendar days
            since = self.clock() - timedelta(days=days * 3 // 2 + 10)
            try:
                candles = await feed.candles(instrument.native, "1d", since)
            except FeedError as err:
                if instrument.symbol not in self._history_failing:
                    log.warning("history for %s unavailable: %s", instrument.symbol, err)
                    self._history_failing.add(instrument.symbol)
                continue
            self._history_failing.discard(instrument.symbol)
            self.market.add_candles(instrument.symbol, candles)
            self._history_day[instrument.symbol] = today

    def _history_days(self) -> dict[str, int]:
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

    # --- what chat commands read (bot.commands.MarketView) ---

    async def fresh_quote(self, symbol: str) -> Quote | None:
        """The current quote; a symbol no rule watches is fetched once, now."""
        now = self.clock()
        quote = self.market.quote(symbol, now)
        if quote is not None:
            return quote
        instrument = self.instrument(symbol)
        feed = self.feed(instrument.source)
        try:
            raw = await feed.quotes([instrument.native])
            await self._load_history(feed, [instrument], days=20)
        except FeedError:
            return None
        if instrument.native in raw:
            self.market.ingest(replace(raw[instrument.native], symbol=symbol), now)
        return self.market.quote(symbol, now)

    async def daily(self, symbol: str, days: int) -> list[Candle]:
        """Daily bars of the last `days` days (loaded from the feed if not in memory yet)."""
        instrument = self.instrument(symbol)
        feed = self.feed(instrument.source)
        have = self.market.history(symbol).candles
        start = self.clock().date() - timedelta(days=days)
        if not have or have[0].day > start:
            self._history_day.pop(symbol, None)
            await self._load_history(feed, [instrument], days=days)
        return [c for c in self.market.history(symbol).candles if c.day >= start]

    def currency(self, symbol: str) -> str:
        """The quote currency of a pair (`BTC/USDT` -> USDT); Yahoo's metals are in USD."""
        try:
            native = self.instrument(symbol).native
        except RuleError:
            return "USD"  # a ratio or an unknown symbol: no currency of its own
        return native.rsplit("/", 1)[1] if "/" in native else "USD"

    def feed_note(self, symbol: str) -> str:
        """Where the price comes from and how fresh it is, for /status."""
        instrument = self.instrument(symbol)
        feed = self.feeds.get(instrument.source)
        hist = self.market.history(symbol)
        closed: set[str] = getattr(feed, "market_closed", set())
        if instrument.native in closed:
            return f"{instrument.source} {instrument.native}: market closed"
        venue = instrument.source.removeprefix("ccxt:")
        health = feed.health if feed is not None else None
        if health is not None and health.down_since is not None:
            since = f"{health.down_since:%H:%M} UTC"
            return f"{venue} {health.cause or 'is failing'} since {since}; retrying."
        parts = [f"{instrument.source} {instrument.native}"]
        note = getattr(feed, "book_note", None)
        if note:
            parts[0] += f" ({note})"
        if hist.last is not None:
            age = (self.clock() - hist.last.ts).total_seconds()
            parts.append(f"quote {age:.0f}s old")
        if symbol in self._rejecting:
            parts.append(f"its quotes are being rejected ({self._rejecting[symbol]})")
        return ", ".join(parts)

    # --- life cycle ---

    def feed(self, source: str) -> Feed:
        """The one feed of a source, created on first use (polled only once a rule needs it)."""
        found = self.feeds.get(source)
        if found is None:
            found = self.feeds[source] = self.feed_for(source)
        return found

    def _poll_feed(self, source: str) -> None:
        """Schedule the poll job of a source the rules need."""
        self.feed(source)
        self._polled.add(source)
        seconds = self.poll_interval(source)
        self._schedule(f"poll:{source}", self._poll_job, seconds, source)
        log.info("polling %s every %gs", source, seconds)

    def _schedule(self, job_id: str, func: Callable[..., Any], seconds: float, *args: Any) -> None:
        self.scheduler.add_job(
            func,
            "interval",
            args=list(args),
            seconds=seconds,
            id=job_id,
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=30,
            next_run_time=utcnow(),
        )

    async def start(self) -> None:
        """Load the rules, then poll each needed feed on its own job; re-read rules on a timer."""
        self.scheduler.start()
        await self.refresh_rules()
        await self._warm_market()
        self._schedule("rules", self._rules_job, RULES_REFRESH_SECONDS)

    async def _warm_market(self) -> None:
        """Restore the recent quotes of the watched symbols (short windows, spread baselines,
        the jump guard's reference) so a restart does not start from an empty memory."""
        since = self.clock() - TICK_MEMORY
        for symbol in sorted(self.book.symbols()):
            self.market.restore(await self.store.recent_quotes(symbol, since))

    async def _rules_job(self) -> None:
        self._start_task("rules", self._refresh_safely)

    async def _refresh_safely(self) -> None:
        try:
            await self.refresh_rules()
        except Exception:
            log.exception("reloading rules failed")

    async def close_feeds(self) -> None:
        for feed in self.feeds.values():
            try:
                await feed.close()
            except Exception:
                log.exception("closing %s failed", feed.name)

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop scheduling polls and let a poll that is running finish its commit."""
        self._stopping = True
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        running = [task for task in self._ticks.values() if not task.done()]
        if running:
            _, late = await asyncio.wait(running, timeout=timeout)
            if late:
                log.warning("a poll was still running at shutdown; cancelling it")
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)

    def healthy(self) -> bool:
        """True when some feed produced a good quote within the staleness limit."""
        now = self.clock()
        for source, stats in self.stats.feeds.items():
            limit = self.limits.age_limit(source)
            if limit is None or (stats.last_good is not None and now - stats.last_good <= limit):
                return True
        return False
