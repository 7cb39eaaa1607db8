"""The live service: poll each feed on a schedule, evaluate rules, commit, and wake delivery.

Each poll job fetches the quotes of every symbol some active rule needs from one feed, once
(`MarketData.fetch`); every rule of those symbols is evaluated against that one snapshot; the
changed rule states and the decided alerts are written in one transaction; then delivery is
woken. `RuleSync` applies the rule changes the store lists since its last look, so a rule added
by a chat command or the CLI is live within one tick.

A feed can exist before any rule needs it (`/status` of a symbol nobody watches creates it);
it is polled from the moment a rule needs it. A tick that is still running when the next is
due (a venue that hangs until its timeout) is skipped quietly: the feed logs the outage once.
A tick whose commit fails (a full disk) is reverted in memory, so its crossings are decided
again on the next tick instead of being lost; the failure is logged once until a commit works.

Daily digests are put in the outbox by a job of the same scheduler that looks every
`digest_every` seconds (and once at start) for the chats whose digest is due (bot.digest): the
day is recorded in the transaction that enqueues it, so a digest due while the bot was down
goes once on start if it is still that local day, and never twice.

A venue that streams (`stream_for` gives a `Stream`, feeds.stream_feed) is subscribed to the
symbols its rules need and resubscribed when they change. Its quotes take the polled quotes'
path (guard, rule book, one commit, then delivery is woken) in one task per venue: quotes that
arrive while a batch is decided and committed wait, the latest per symbol only, and go together
into the next batch, so a burst costs one commit and leaves no backlog. While a stream is up its
symbols are not polled; the moment it goes down a poll starts, and polling goes on until the
stream delivers again. Recent quotes are stored at most every `QUOTE_SAVE_EVERY`.

A stopped service can start again (on PostgreSQL, a replica that lost the engine's lease and
took it back): each start builds its rule book afresh, so the rules and their states are read
from the store as the replica before it committed them, never from this process's memory.
On PostgreSQL each start first takes the engine's next epoch (storage.api.EngineFence) and
every tick carries it: a replica that lost its lease but has not noticed yet cannot commit a
tick once another has started (the tick is reverted, the service stops ticking and says so
with `fenced`, and its owner, app.Roles, stops it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from alerts.book import RuleBook
from alerts.indicators import TICK_MEMORY
from alerts.models import Alert, Quote
from bot import digest
from storage.api import EngineFence, Fenced, Storage, StorageUnavailable, utcnow
from tickerbell.market_data import MarketData
from tickerbell.rule_sync import RuleSync

log = logging.getLogger(__name__)

QUOTE_RETENTION = timedelta(days=2)
QUOTE_PRUNE_EVERY = timedelta(hours=1)
RULES_REFRESH_SECONDS = 2.0
DIGEST_EVERY_SECONDS = 15.0  # a digest goes within this long after its time
QUOTE_SAVE_EVERY = timedelta(seconds=5)  # recent quotes are stored at most this often
# New rules a tick looks at for the first time, at most: an import of a million rules learns
# the market over a few dozen ticks (each holding the event loop ~0.1 s) instead of one tick
# holding it for seconds.
LEARN_PER_TICK = 20_000


class Stream(Protocol):
    """A venue's live quotes (feeds.stream_feed.StreamFeed), in the venue's own symbols."""

    name: str

    @property
    def up(self) -> bool: ...

    def covered(self) -> frozenset[str]:
        """The symbols it delivers now (none while down)."""
        ...

    def want(self, symbols: Iterable[str]) -> None: ...

    def start(
        self, on_quotes: Callable[[list[Quote]], None], on_down: Callable[[], None]
    ) -> None: ...

    async def close(self) -> None: ...


class Service:
    """Runs the ticks: owns the rule book and the scheduler; one instance per process, running
    while this process runs the engine.

    `wake` is called after a tick committed alerts (delivery's `wake`). `rules_changed` is set
    by the command layer of this process after it wrote a rule or subscription: the rule book
    is brought in line at once. Writes by another process (the CLI) are found by the timed
    look every `rules_refresh_seconds`; each look costs one small read when nothing changed.
    """

    def __init__(
        self,
        store: Storage,
        data: MarketData,
        *,
        band: float,
        poll_interval: Callable[[str], float],
        wake: Callable[[], None] = lambda: None,
        rules_changed: asyncio.Event | None = None,
        rules_refresh_seconds: float = RULES_REFRESH_SECONDS,
        digest_every: float = DIGEST_EVERY_SECONDS,
        stream_for: Callable[[str], Stream | None] = lambda source: None,
    ) -> None:
        self.store = store
        self.data = data
        self.market = data.market
        self.stats = data.stats
        self.clock = data.clock
        self.band = band
        self.poll_interval = poll_interval
        self.wake = wake
        self.rules_changed = rules_changed
        self.rules_refresh_seconds = rules_refresh_seconds
        self.digest_every = digest_every
        self._digests_failing = False
        self._follower: asyncio.Task[None] | None = None
        self._store_failing = False
        self._rules_failing = False
        self._quotes_pruned: datetime | None = None
        self._quotes_failing = False
        self.stream_for = stream_for
        self._fresh()

    def _fresh(self) -> None:
        """What one run holds: an empty rule book (the first refresh reads the rules and their
        states), no feed polled or streamed, a new scheduler."""
        self.book = RuleBook(self.band, learn_per_tick=LEARN_PER_TICK)
        self.rules = RuleSync(self.store, self.book, self.data.canonical, clock=self.clock)
        self._polled: set[str] = set()
        self._ticks: dict[str, asyncio.Task[None]] = {}
        self._quotes_saved: datetime | None = None
        self._unsaved: dict[str, Quote] = {}
        self.streams: dict[str, Stream] = {}
        self._pending: dict[str, dict[str, Quote]] = {}  # source -> native -> latest quote
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self._stopping = False
        self._epoch: int | None = None  # the engine's epoch taken at start (PostgreSQL)
        self.fenced = False  # a tick was refused: another process runs the engine now

    @property
    def running(self) -> bool:
        """Whether it runs: started, and not stopped since."""
        return bool(self.scheduler.running) and not self._stopping

    async def refresh_rules(self) -> None:
        """Bring the rule book in line with the store, and poll every source it now needs."""
        if not await self.rules.refresh():
            return
        self.data.need_history(self.rules.history_days())
        for source in {self.data.instrument(s).source for s in self.book.symbols()} - self._polled:
            self._poll_feed(source)
        watched = self.book.symbols()
        for source, stream in self.streams.items():
            stream.want(i.native for i in self.data.watched(source, watched))
        if len(self.book):
            symbols = ", ".join(sorted(self.book.symbols()))
            log.info("watching %d rules over %s", len(self.book), symbols)
        else:
            log.info('no rules yet: add one with `tickerbell alert add "XAG above 50"` or /alert')

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
        await self._refresh_or_go_on()
        started = time.perf_counter()
        stream = self.streams.get(source)
        streamed = stream.covered if stream is not None else frozenset
        good = await self.data.fetch(source, self.book.symbols(), streamed)
        if good:  # else nothing watched here, every quote refused, or the feed is down (it logs)
            await self._decide(source, good, started)

    def _streamed(self, source: str, quotes: list[Quote]) -> None:
        """A stream's quotes: kept, the latest per symbol, for the source's decider task."""
        pending = self._pending.setdefault(source, {})
        for quote in quotes:
            pending[quote.symbol] = quote
        self._start_task(f"stream:{source}", lambda: self._decide_streamed(source))

    async def _decide_streamed(self, source: str) -> None:
        """Decide on what a stream sent, batch after batch, until nothing waits."""
        try:
            while batch := self._pending.pop(source, None):
                started = time.perf_counter()
                watched = self.data.watched(source, self.book.symbols())
                good = self.data.ingest(source, batch.values(), watched)
                if good:
                    await self._decide(source, good, started)
        except Exception:
            log.exception("deciding on streamed quotes of %s failed", source)

    def _stream_down(self, source: str) -> None:
        """A stream went down: poll at once, not at the poll job's next turn."""
        self._start_task(f"poll:{source}", lambda: self.poll(source))

    async def _decide(self, source: str, good: list[Quote], started: float) -> None:
        """Evaluate the rules of the good quotes, commit states and alerts in one transaction,
        and wake delivery; a failed commit is undone in memory, decided again later."""
        now = self.clock()
        fetched = time.perf_counter()
        evaluation = self.book.evaluate(self.market, {q.symbol for q in good}, now)
        alerts: list[tuple[int | None, int, Alert]] = [
            (rule_id, chat, fire.alert)
            for fire in evaluation.fires
            for rule_id, chat in self.rules.recipients(fire)
        ]
        changed = {rule_id: state for rule_id, state in evaluation.changed.items() if rule_id > 0}
        evaluated = time.perf_counter()
        try:
            if changed or alerts:
                await self.store.commit_tick(changed, alerts, self._epoch)
        except Fenced:
            self.book.revert(evaluation)  # another process decides from here on
            self.fenced = self._stopping = True  # no more ticks; the owner stops the rest
            return
        except Exception as err:
            self.book.revert(evaluation)  # decided again next tick, not lost
            self.stats.feed(source).failures += 1
            if not self._store_failing:
                log.error(
                    "cannot save a tick of %s (%s); its alerts are decided again", source, err
                )
            self._store_failing = True
            return
        if self._store_failing:
            log.info("saving ticks works again")
            self._store_failing = False
        committed = time.perf_counter()
        if alerts:
            self.stats.alerts_decided += len(alerts)
            self.wake()
        self.stats.last_tick = {
            "fetch": fetched - started,
            "evaluate": evaluated - fetched,
            "commit": committed - evaluated,
        }
        await self._keep_quotes(good, now)

    async def _keep_quotes(self, good: list[Quote], now: datetime) -> None:
        """Store the tick's good quotes (they warm the market after a restart) and drop old
        ones hourly. Best effort: the tick's decisions are committed already, so a failure
        here must not undo them."""
        self._unsaved.update((q.symbol, q) for q in good)
        if self._quotes_saved is not None and now - self._quotes_saved < QUOTE_SAVE_EVERY:
            return
        self._quotes_saved = now
        good, self._unsaved = list(self._unsaved.values()), {}
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

    # --- daily digests ---

    async def send_digests(self) -> int:
        """Put in the outbox every daily digest due now (each chat's once a local day) and
        wake delivery; returns how many. A chat whose setting is unreadable (a zone the time
        zone database no longer has) is skipped and logged."""
        now = self.clock()
        queued = 0
        for chat_digest in await self.store.digests():
            try:
                due = digest.due_now(chat_digest, now)
            except (ValueError, LookupError) as err:  # ZoneInfoNotFoundError is a KeyError
                log.error("daily digest of chat %s skipped: %r", chat_digest.chat, err)
                continue
            if due is not None and await self.store.enqueue_digest(chat_digest.chat, due):
                queued += 1
                self.wake()  # each goes at once: thousands take seconds to record
        if queued:
            log.info("%d daily digests queued", queued)
        return queued

    async def _digests_job(self) -> None:
        self._start_task("digests", self._digests_safely)

    async def _digests_safely(self) -> None:
        try:
            await self.send_digests()
        except Exception as err:
            if not self._digests_failing:
                log.exception("daily digests failed (%s); trying again", err)
            self._digests_failing = True
            return
        if self._digests_failing:
            log.info("daily digests work again")
            self._digests_failing = False

    # --- life cycle ---

    def _poll_feed(self, source: str) -> None:
        """Schedule the poll job of a source the rules need."""
        self.data.feed(source)
        self._polled.add(source)
        seconds = self.poll_interval(source)
        self._schedule(f"poll:{source}", self._poll_job, seconds, source)
        stream = self.stream_for(source)
        if stream is None:
            log.info("polling %s every %gs", source, seconds)
            return
        self.streams[source] = stream
        stream.start(
            lambda quotes: self._streamed(source, quotes), lambda: self._stream_down(source)
        )
        log.info("streaming %s (polling every %gs while the stream is down)", source, seconds)

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
        """Load the rules, then poll each needed feed on its own job; re-read rules on a timer.
        After a stop, everything starts afresh from the store."""
        if self._stopping:
            self._fresh()
        if isinstance(self.store, EngineFence):  # before the rules and states are read
            self._epoch = await self.store.take_engine()
        self.scheduler.start()
        await self.refresh_rules()
        await self._warm_market()
        self._schedule("rules", self._rules_job, self.rules_refresh_seconds)
        self._schedule("digests", self._digests_job, self.digest_every)
        if self.rules_changed is not None:
            self._follower = asyncio.create_task(
                self._follow(self.rules_changed), name="rule changes"
            )

    async def _warm_market(self) -> None:
        """Restore the recent quotes of the watched symbols (short windows, spread baselines,
        the jump guard's reference) so a restart does not start from an empty memory."""
        since = self.clock() - TICK_MEMORY
        for symbol in sorted(self.book.symbols()):
            self.market.restore(await self.store.recent_quotes(symbol, since))

    async def _rules_job(self) -> None:
        self._start_task("rules", self._refresh_safely)

    async def _follow(self, changed: asyncio.Event) -> None:
        """Re-read the rules each time this process's commands changed them; a re-read that
        was already running may have missed the change, so one more starts after it."""
        while True:
            await changed.wait()
            changed.clear()
            running = self._ticks.get("rules")
            if running is not None and not running.done():
                await asyncio.wait([running])
            self._start_task("rules", self._refresh_safely)

    async def _refresh_safely(self) -> None:
        try:
            await self._refresh_or_go_on()
        except Exception:
            log.exception("reloading rules failed")

    async def _refresh_or_go_on(self) -> None:
        """Refresh the rules; while the store is unavailable, go on with the rules known
        (logged once per outage)."""
        try:
            await self.refresh_rules()
        except StorageUnavailable as err:
            if not self._rules_failing:
                log.error("cannot read rule changes (%s); going on with the rules known", err)
            self._rules_failing = True
            return
        if self._rules_failing:
            log.info("reading rule changes works again")
        self._rules_failing = False

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop scheduling polls and let a poll that is running finish its commit."""
        self._stopping = True
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
        if self.scheduler.running:
            # A job only starts a task; one just started would be cancelled by the shutdown,
            # which APScheduler logs as an error with a traceback. Paused, none starts, and
            # the ones started already finish within one turn of the loop.
            self.scheduler.pause()
            await asyncio.sleep(0)
            self.scheduler.shutdown(wait=False)
        for stream in self.streams.values():
            try:
                await stream.close()
            except Exception:
                log.exception("closing the %s stream failed", stream.name)
        running = [task for task in self._ticks.values() if not task.done()]
        if running:
            _, late = await asyncio.wait(running, timeout=timeout)
            if late:
                log.warning("a poll was still running at shutdown; cancelling it")
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
