"""Market data: the feeds, where each symbol's price comes from, daily history and the live
`Market` that ticks feed and chat commands read.

One object owns it all, so a feed is created in one place whether a tick or `/status` asks
first, and a bad quote is counted and logged in one place. It is `bot.commands.MarketView`:
the command layer reads prices through it, never through the service that runs the ticks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Protocol

from alerts import rules
from alerts.engine import evaluate
from alerts.indicators import Market, observe
from alerts.models import Candle, Quote, Rule, RuleError, RuleState
from alerts.sanity import Limits, Reject
from feeds.base import Feed, FeedError
from feeds.catalogue import Instrument, canonical_rule
from storage.api import utcnow

log = logging.getLogger(__name__)

# How old the last traded price may be for a new price level to start from it: a weekend and a
# holiday (metals close Friday evening until Sunday evening, UTC).
LAST_TRADED_FOR = timedelta(days=4)


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

    def feed(self, source: str) -> FeedStats:
        return self.feeds.setdefault(source, FeedStats())


class MarketData:
    """Feeds (one per source, created on first use), instruments, history and the Market."""

    def __init__(
        self,
        catalogue: Resolver,
        feed_for: Callable[[str], Feed],
        limits: Limits,
        *,
        clock: Callable[[], datetime] = utcnow,
        stats: Stats | None = None,
    ) -> None:
        self.catalogue = catalogue
        self.feed_for = feed_for
        self.limits = limits
        self.clock = clock
        self.stats = stats or Stats()
        self.market = Market(limits)
        self.feeds: dict[str, Feed] = {}
        self.instruments: dict[str, Instrument] = {}
        self.rejecting: dict[str, str] = {}  # symbol -> why its quotes are refused now
        self._history_day: dict[str, date] = {}
        self._history_failing: set[str] = set()
        self._days_needed: dict[str, int] = {}

    # --- symbols and feeds ---

    def canonical(self, rule: Rule) -> Rule:
        """The rule with its symbols as the catalogue names them (GOLD -> XAU)."""
        return canonical_rule(rule, self.instrument)

    def symbol(self, text: str) -> str:
        """One symbol as the catalogue names it (gold -> XAU); RuleError for a malformed,
        unknown or paired one."""
        return self.instrument(rules.parse_symbol(text)).symbol

    def first_look(self, rule: Rule) -> tuple[RuleState, float | None] | None:
        """What the engine would decide for a new rule at the current price (it learns where
        the price is: armed, or waiting for a real crossing when its condition already holds),
        and the value it saw (None when that is not a current price); None without a price.

        A price level set while its market is closed (silver on a Saturday) or its feed is
        down starts from the last price traded, up to LAST_TRADED_FOR ago: set below Friday's
        close, `XAG above 50` then fires on a Sunday open above 50, as the person expects,
        where learning at the open would take it as already true."""
        now = self.clock()
        obs = observe(rule, self.market, now)
        if obs is not None:
            return evaluate(rule, RuleState(), obs, now)[0], obs.value
        if not rule.is_price_level:
            return None
        quotes = [self.market.history(symbol).last for symbol in rule.symbols]
        if not all(quotes):
            return None
        at = max(quote.ts for quote in quotes if quote is not None)
        traded = observe(rule, self.market, at) if now - at <= LAST_TRADED_FOR else None
        return None if traded is None else (evaluate(rule, RuleState(), traded, now)[0], None)

    def instrument(self, symbol: str) -> Instrument:
        found = self.instruments.get(symbol)
        if found is None:
            found = self.instruments[symbol] = self.catalogue.resolve(symbol)
        return found

    def feed(self, source: str) -> Feed:
        """The one feed of a source, created on first use."""
        found = self.feeds.get(source)
        if found is None:
            found = self.feeds[source] = self.feed_for(source)
        return found

    async def close_feeds(self) -> None:
        for feed in self.feeds.values():
            try:
                await feed.close()
            except Exception:
                log.exception("closing %s failed", feed.name)

    # --- what a tick does with a feed ---

    async def fetch(
        self,
        source: str,
        symbols: Iterable[str],
        streamed: Callable[[], Collection[str]] = frozenset,
    ) -> list[Quote] | None:
        """One round of quotes of `symbols` from `source`, ingested into the market: the good
        ones (an empty list when every quote was refused), or None when the feed failed (it
        logs the outage once and backs off). Symbols whose native name `streamed` lists (a live
        stream delivers them) are not asked for, and not taken when the stream came up while
        the request ran: a polled book may be older than a streamed one. Their daily history
        is still loaded here."""
        wanted = self.watched(source, symbols)
        if not wanted:
            return []
        feed = self.feed(source)
        stats = self.stats.feed(source)
        await self.load_history(feed, wanted)
        covered = streamed()
        asked = [i for i in wanted if i.native not in covered]
        if not asked:
            return []
        stats.polls += 1
        try:
            raw = await feed.quotes(list(dict.fromkeys(i.native for i in asked)))
        except FeedError:
            stats.failures += 1
            return None
        covered = streamed()
        return self.ingest(source, [q for q in raw.values() if q.symbol not in covered], asked)

    def ingest(
        self, source: str, raw: Iterable[Quote], wanted: Iterable[Instrument]
    ) -> list[Quote]:
        """A feed's quotes (named natively, `BTC/USDT`) into the market under the names rules
        use (`BTC`; every watched name of the native one): the good ones. Polled and streamed
        quotes alike come through here."""
        names: dict[str, list[str]] = {}
        for instrument in wanted:
            names.setdefault(instrument.native, []).append(instrument.symbol)
        now = self.clock()
        good: list[Quote] = []
        for quote in raw:
            for symbol in names.get(quote.symbol, ()):
                ingested = self._ingest(source, replace(quote, symbol=symbol), now)
                if ingested:
                    good.append(ingested)
        if good:
            self.stats.feed(source).last_good = now
        return good

    def watched(self, source: str, symbols: Iterable[str]) -> list[Instrument]:
        """The instruments of `symbols` whose prices come from `source`."""
        return [i for s in symbols if (i := self.instrument(s)).source == source]

    def _ingest(self, source: str, quote: Quote, now: datetime) -> Quote | None:
        """The quote into the market, or None when the guard refuses it (logged once per run of
        bad quotes, counted by reason; one older than the symbol's last good quote is only
        counted)."""
        symbol = quote.symbol
        problem = self.market.ingest(quote, now)
        if problem is None:
            if self.rejecting.pop(symbol, None) is not None:
                log.info("%s: good %s quotes again (%s)", source, symbol, quote.price)
            return quote
        rejected = self.stats.feed(source).rejected
        rejected[problem.value] = rejected.get(problem.value, 0) + 1
        if problem is Reject.SUPERSEDED:
            return None  # a newer price is in already: nothing wrong with the symbol's quotes
        if symbol not in self.rejecting:
            log.warning(
                "%s: rejecting %s quotes (%s: %s); no rule sees them",
                source,
                symbol,
                problem.value,
                quote.price,
            )
        self.rejecting[symbol] = problem.value
        return None

    def need_history(self, days: dict[str, int]) -> None:
        """Per symbol, how many days of daily bars the rules look back; a symbol that now
        looks further back than before is loaded again."""
        for symbol, wanted in days.items():
            if wanted > self._days_needed.get(symbol, 0):
                self._history_day.pop(symbol, None)
        self._days_needed = dict(days)

    async def load_history(self, feed: Feed, wanted: list[Instrument], days: int = 0) -> None:
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
            if instrument.native not in raw:
                return None  # no price, no use for its history (the feed logs an outage once)
            await self.load_history(feed, [instrument], days=20)
        except FeedError:
            return None
        self.market.ingest(replace(raw[instrument.native], symbol=symbol), now)
        return self.market.quote(symbol, now)

    async def daily(self, symbol: str, days: int) -> list[Candle]:
        """Daily bars of the last `days` days (loaded from the feed if not in memory yet)."""
        instrument = self.instrument(symbol)
        have = self.market.history(symbol).candles
        start = self.clock().date() - timedelta(days=days)
        if not have or have[0].day > start:
            self._history_day.pop(symbol, None)
            await self.load_history(self.feed(instrument.source), [instrument], days=days)
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
            # "is unreachable — check the network": the advice goes after the time
            what, _, advice = (health.cause or "is failing").partition(" — ")
            down = f"{venue} {what} since {health.down_since:%H:%M} UTC"
            return f"{down} — {advice}; retrying." if advice else f"{down}; retrying."
        parts = [f"{instrument.source} {instrument.native}"]
        note = getattr(feed, "book_note", None)
        if note:
            parts[0] += f" ({note})"
        if hist.last is not None:
            age = (self.clock() - hist.last.ts).total_seconds()
            parts.append(f"quote {age:.0f}s old")
        if symbol in self.rejecting:
            parts.append(f"its quotes are being rejected ({self.rejecting[symbol]})")
        return ", ".join(parts)

    def healthy(self) -> bool:
        """True when some feed produced a good quote within the staleness limit."""
        now = self.clock()
        for source, stats in self.stats.feeds.items():
            limit = self.limits.age_limit(source)
            if limit is None or (stats.last_good is not None and now - stats.last_good <= limit):
                return True
        return False
