"""The composition root: builds every part from Settings, runs them, and shuts down in reverse.

Each part is given what it needs when it is built and never wired afterwards: database
(migrated) -> market data (feeds on demand) -> command layer -> Telegram and Discord adapters
(when a token is set) -> delivery (every notifier, the chart maker, the stats) -> service (the
ticks; it wakes delivery). Then they start: delivery, service, the adapters, metrics. One
`AsyncExitStack` owns every part as it starts, so whether the run ends by SIGINT/SIGTERM, the
end of a replay or a part that fails to start, everything already started is closed in
reverse: stop taking commands, stop polling, stop delivery after the row in flight (the rest
stay pending in the outbox), close notifiers, close feeds, close the database. A chat platform
that is unreachable at start does not stop the bot: its adapter keeps retrying while
everything else runs.

On PostgreSQL any number of processes (replicas) share one database. Every replica runs the
store, the command layer, delivery, TradingView posts in and metrics, and sends to every chat
platform (sending needs only the platforms' REST APIs). Three parts run on one replica at a
time, each under its own lease (storage.postgres.Lease, an advisory lock on a session of its
own), taken by a small loop per role (`Roles`): "engine" (the Service: every feed and the whole
rule book, under one lease because a ratio or rotation rule joins two feeds and must be decided
in one place), "discord" (the gateway: one connection per bot token) and "telegram" (long
polling: one poller per token). Each replica tries every role's lease every LEASE_SECONDS; the
holder checks it as often, and once its session is gone it stops that part only, logs it, and
tries again like the others. A role that takes over starts its part afresh (the engine reads
the rules and their states from the database). On SQLite one process runs every part; there
are no leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from alerts import rules
from alerts.sanity import Limits
from bot import redaction
from bot.charts import AlertCharts, ChartCache, RenderPool
from bot.commands import Commands
from bot.digest import Digests
from bot.notifier import Notifier
from bot.webhook import WebhookNotifier
from bot.webhook_urls import Targets, shown
from feeds.base import Feed
from feeds.catalogue import Catalogue
from feeds.replay import REPLAY_MAX_AGE, ReplayCatalogue, ReplayFeed
from feeds.replay import SOURCE as REPLAY
from storage.api import WEBHOOK, BudgetStore, Storage, StorageUnavailable, utcnow
from storage.backend import describe, open_store
from tickerbell import metrics, webhook_in
from tickerbell.delivery import TEXT_ONLY, ConsoleNotifier, Delivery
from tickerbell.market_data import MarketData, Resolver
from tickerbell.service import Service, Stream
from tickerbell.settings import Settings
from tickerbell.webhook_in import Inbound

if TYPE_CHECKING:
    from storage.postgres import Lease

log = logging.getLogger("tickerbell")

CONSOLE = ("console", "console")
RUN_RULE = "run"  # created_by of rules given with `tickerbell run --rule`
SHUTDOWN_SECONDS = 5.0
ENGINE, DISCORD, TELEGRAM = "engine", "discord", "telegram"  # the roles (lease names)
LEASE_SECONDS = 1.0  # how often a replica tries a role's lease, and its holder checks it
CHART_WORKERS = 1  # processes drawing charts: alert charts are few (one per symbol and minute)


def setup_logging(level: str) -> None:
    """Log to stderr, bot tokens redacted (bot.redaction); keep httpx quiet (its INFO lines
    carry the Telegram token in URLs)."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    redaction.install()
    for noisy in ("httpx", "httpcore", "apscheduler", "telegram.ext.Updater"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # psycopg's pool logs each attempt to reconnect; the calls that fail meanwhile are logged
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    # yfinance logs every failed request itself; our feed logs each outage once
    logging.getLogger("yfinance").setLevel(logging.CRITICAL)


def catalogue_for(settings: Settings) -> Catalogue:
    """The symbol catalogue for the configured venue, quote currency and metals source."""
    return Catalogue(settings.exchange, settings.quote_currency, settings.metals)


def live_feed_factory(settings: Settings, clock: Callable[[], datetime]) -> Callable[[str], Feed]:
    """Builds the feed for a source name: `ccxt:<venue>`, `yahoo` or `swissquote`. There is one
    Yahoo feed per process (yfinance must be called one call at a time): the spot metals feed
    takes its daily history from it."""
    made: dict[str, Feed] = {}

    def make(source: str) -> Feed:
        if source in made:
            return made[source]
        feed: Feed
        if source == "yahoo":
            from feeds.yahoo_feed import YahooFeed

            feed = YahooFeed(clock)
        elif source == "swissquote":
            from feeds.swissquote_feed import SwissquoteFeed

            feed = SwissquoteFeed(clock, base_url=settings.swissquote_url, history=make("yahoo"))
        else:
            from feeds.ccxt_feed import CcxtFeed

            venue = source.removeprefix("ccxt:")
            feed = CcxtFeed(venue, settings.exchange_options.get(venue), clock=clock)
        made[source] = feed
        return feed

    return make


def live_stream_factory(
    settings: Settings, clock: Callable[[], datetime]
) -> Callable[[str], Stream | None]:
    """Builds the stream of a source, or None: a ccxt venue streams unless TICKERBELL_VENUE_MODE
    says "poll" for it or ccxt.pro has no stream of its books; other sources poll."""

    def make(source: str) -> Stream | None:
        venue = source.removeprefix("ccxt:")
        if venue == source or settings.venue_mode.get(venue, "stream") == "poll":
            return None
        from feeds.stream_feed import StreamFeed, streams

        if not streams(venue):
            return None
        options = settings.exchange_options.get(venue)
        return StreamFeed(venue, options, clock=clock, silence=settings.stream_silence_seconds)

    return make


def limits_for(settings: Settings, replay: bool = False) -> Limits:
    """The quote sanity limits and market memory the settings ask for."""
    return Limits(
        max_age=REPLAY_MAX_AGE if replay else settings.max_quote_age,
        max_jump_pct=settings.max_jump_pct,
        source_max_age=settings.max_quote_age_by_source,
        spread_window=timedelta(hours=settings.spread_baseline_hours),
    )


class FrontEnd(Notifier, Protocol):
    """A chat platform: takes commands while started, and delivers alerts as a Notifier.

    `start` returns promptly and keeps connecting in the background when the platform is
    unreachable; `listening` says whether commands are being received right now (/healthz).
    One built to receive under a role (a replica) only connects for sending at `start`, and
    receives commands between `receive` and `stop_receiving`.
    """

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def listening(self) -> bool: ...

    async def receive(self) -> None: ...

    async def stop_receiving(self) -> None: ...


def make_front_ends(
    settings: Settings, store: Storage, commands: Commands, roles: Roles | None = None
) -> list[FrontEnd]:
    """Telegram and/or Discord, for whichever tokens are set. With `roles` (PostgreSQL) each
    receives commands only under its role (Telegram in webhook mode: always), and shares its
    platform's overall rate limit with the other processes on the database (bot.budget)."""
    front_ends: list[FrontEnd] = []
    budgets = store if isinstance(store, BudgetStore) else None
    if settings.telegram_bot_token is not None:
        from bot.telegram.adapter import TelegramBot
        from bot.telegram.pacing import Rates
        from bot.telegram.webhook import Webhook

        webhook = None  # polling, unless TELEGRAM_WEBHOOK_URL: then every process takes posts
        if settings.telegram_webhook_url:
            secret = settings.telegram_webhook_secret
            webhook = Webhook(
                settings.telegram_webhook_url,
                settings.telegram_webhook_host,
                settings.telegram_webhook_port,
                secret.get_secret_value() if secret is not None else None,
            )
        rates = Rates(
            settings.telegram_overall_per_second,
            settings.telegram_chat_per_second,
            settings.telegram_group_per_minute,
        )
        front_ends.append(
            TelegramBot(
                token=settings.telegram_bot_token.get_secret_value(),
                base_url=settings.telegram_api_base_url,
                commands=commands,
                store=store,
                allowed_chats=settings.allowed_chats,
                webhook=webhook,
                rates=rates,
                budgets=budgets,
                polling=roles is None,
            )
        )
    if settings.discord_bot_token is not None:
        from bot.discord.adapter import build

        front_ends.append(
            build(
                token=settings.discord_bot_token.get_secret_value(),
                commands=commands,
                store=store,
                db_path=settings.db,
                guild_id=settings.discord_guild_id,
                admin_role=settings.discord_admin_role,
                api_base_url=settings.discord_api_base_url,
                gateway_url=settings.discord_gateway_url,
                budgets=budgets,
                gateway=roles is None,
            )
        )
    return front_ends


def poll_interval(settings: Settings, replay_speed: float | None) -> Callable[[str], float]:
    """Seconds between polls per source: Yahoo, replay (four observations a bar), else crypto."""
    special = {"yahoo": settings.poll_yahoo_seconds}
    if replay_speed:
        special[REPLAY] = 1 / (4 * replay_speed)
    return lambda source: special.get(source, settings.poll_crypto_seconds)


async def run(
    settings: Settings,
    *,
    once_rules: Sequence[str] = (),
    replay: ReplayFeed | None = None,
    replay_speed: float | None = None,
    notifiers: Sequence[Notifier] = (),
    stop: asyncio.Event | None = None,
) -> int:
    """Run the bot until stopped (or until a replay is played and delivered); 0 on a clean
    stop, 1 when a part could not start. A replay never starts a chat platform. On PostgreSQL
    the engine, the Discord gateway and Telegram polling run under roles (`Roles`)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    clock: Callable[[], datetime] = replay.clock if replay else utcnow
    if replay is not None:  # polls faster than a commit takes: skipped runs are expected
        logging.getLogger("apscheduler").setLevel(logging.ERROR)
    catalogue: Resolver
    if replay is not None:
        catalogue = ReplayCatalogue(frozenset(replay.symbols))
        feed_for: Callable[[str], Feed] = lambda source: replay  # noqa: E731
    else:
        catalogue = catalogue_for(settings)
        feed_for = live_feed_factory(settings, clock)
    url = settings.database_url_value
    async with contextlib.AsyncExitStack() as parts:
        try:  # on PostgreSQL, replicas starting together migrate once (an advisory lock)
            store = await parts.enter_async_context(open_store(settings.db, url, clock))
        except StorageUnavailable as err:
            log.error("cannot open the database: %s", err)
            return 1
        console = await store.chat(*CONSOLE)
        run_tag, alive = await _run_rules(store, console.id, url, bool(once_rules))
        if alive is not None:
            parts.push_async_callback(alive.close)
        parts.push_async_callback(
            _quietly,
            "removing this run's rules",
            store.remove_rules_created_by,
            console.id,
            run_tag,
        )
        for text in once_rules:
            rule = rules.parse(text)
            for symbol in rule.symbols:
                catalogue.resolve(symbol)
            await store.add_rule(console.id, rules.format(rule), run_tag, settings.rules_per_chat)
        data = MarketData(
            catalogue, feed_for, limits_for(settings, replay=replay is not None), clock=clock
        )
        parts.push_async_callback(data.close_feeds)
        chart_workers = RenderPool(CHART_WORKERS)
        parts.push_async_callback(chart_workers.close)
        chart_cache = ChartCache(chart_workers)
        rules_changed = asyncio.Event()  # set by a command's write, followed by the service
        targets = Targets.parse(settings.webhook_allow_networks)
        commands = Commands(
            store,
            data,
            rules_per_chat=settings.rules_per_chat,
            commands_per_minute=settings.commands_per_minute,
            charts=chart_cache,
            changed=rules_changed.set,
            webhook_targets=targets,
            inbound_url=None if replay is not None else settings.inbound_url,
        )
        roles = Roles(url) if url is not None else None
        front_ends = [] if replay is not None else make_front_ends(settings, store, commands, roles)
        by_name: dict[str, Notifier] = {"console": ConsoleNotifier()}
        if replay is None:  # a replay's alerts are old news: they go to the console only
            await _console_webhooks(settings, store, console.id, targets)
            by_name[WEBHOOK] = WebhookNotifier(store, targets)
        by_name.update({n.name: n for n in (*notifiers, *front_ends)})
        parts.push_async_callback(_close_notifiers, by_name)
        delivery = Delivery(
            store,
            by_name,
            clock=utcnow,
            on_result=data.stats.delivery,
            charts=AlertCharts(data.market, chart_cache, data.currency),
            digests=Digests(store, data, chart_cache, clock),
        )
        store.on_queued(delivery.wake)  # rows queued by any process on the database
        if any(name not in TEXT_ONLY for name in by_name):  # a chat platform: its first
            chart_workers.start()  # alerts' charts must not wait for imports
        service = Service(
            store,
            data,
            band=settings.hysteresis_pct / 100,
            poll_interval=poll_interval(settings, replay_speed),
            wake=delivery.wake,
            rules_changed=rules_changed,
            stream_for=(lambda source: None) if replay else live_stream_factory(settings, clock),
        )
        webhooks = len(await store.webhooks()) if WEBHOOK in by_name else 0
        _log_start(settings, by_name, replay is not None, webhooks)
        housekeeping = [asyncio.create_task(_log_first_prices(service), name="first prices")]
        if replay is None:  # a replay's database is thrown away, and its clock is years ago
            days = settings.outbox_retention_days
            housekeeping.append(asyncio.create_task(_prune_daily(store, days), name="prune"))
        for task in housekeeping:
            parts.push_async_callback(_cancel, task)
        delivery_task = asyncio.create_task(delivery.run(), name="delivery")
        parts.push_async_callback(_stop_delivery, delivery, delivery_task)
        if roles is None:
            await service.start()
            parts.push_async_callback(service.stop)
        else:
            _import_feeds()
            roles.start(ENGINE, service.start, service.stop, lambda: service.fenced)
            parts.push_async_callback(roles.end, ENGINE)
        for front_end in front_ends:
            parts.push_async_callback(_quietly, f"stopping {front_end.name}", front_end.stop)
            try:
                await front_end.start()
            except Exception:  # an adapter bug: the other parts keep running
                log.exception("%s: cannot start; running without it", front_end.name)
                continue
            if roles is not None and front_end.name in _leased(settings):
                roles.start(front_end.name, front_end.receive, front_end.stop_receiving)
                parts.push_async_callback(roles.end, front_end.name)
        if settings.metrics_port:
            try:
                endpoint = await metrics.start(
                    service,
                    store,
                    settings.metrics_host,
                    settings.metrics_port,
                    front_ends,
                    roles.held if roles is not None else None,
                )
            except OSError as err:
                _log_metrics_port(settings, err)
                return 1
            parts.push_async_callback(endpoint.cleanup)
            log.info("metrics on %s:%s", settings.metrics_host, settings.metrics_port)
        if settings.webhook_port and replay is None:
            inbound = Inbound(store, delivery.wake, per_minute=settings.webhook_in_per_minute)
            host, port = settings.webhook_host, settings.webhook_port
            try:
                endpoint = await webhook_in.start(inbound, host, port)
            except OSError as err:
                log.error(
                    "cannot take TradingView posts on %s:%s (%s); set TICKERBELL_WEBHOOK_PORT to "
                    "a free port or 0",
                    host,
                    port,
                    err.strerror or err,
                )
                return 1
            parts.push_async_callback(endpoint.cleanup)
            log.info(
                "TradingView posts taken on %s:%s (/webhook in gives a chat its URL)", host, port
            )
        if replay is not None:
            watcher = asyncio.create_task(_stop_after_replay(replay, store, stop))
            parts.push_async_callback(_cancel, watcher)
        await stop.wait()
        log.info("shutting down")
    return 0


def _import_feeds() -> None:
    """Import the crypto feeds' library now, at start: a replica that takes the engine over
    later must not wait seconds for ccxt's import then (nor hold up delivery and commands:
    an import blocks the event loop). Yahoo's (pandas) is left for when metals need it."""
    import feeds.ccxt_feed
    import feeds.stream_feed  # noqa: F401


def _leased(settings: Settings) -> tuple[str, ...]:
    """The platforms whose commands one replica at a time receives: Discord's gateway, and
    Telegram's long polling (in webhook mode every replica takes Telegram's posts)."""
    return (DISCORD,) if settings.telegram_webhook_url else (DISCORD, TELEGRAM)


def is_run_rule(created_by: str) -> bool:
    """Whether a rule was given with `tickerbell run --rule` (it lives as long as its run)."""
    return created_by == RUN_RULE or created_by.startswith(f"{RUN_RULE}:")


async def _run_rules(
    store: Storage, console: int, url: str | None, wanted: bool
) -> tuple[str, Lease | None]:
    """The author of this run's `--rule` rules, after removing those of runs that are gone (a
    killed run). On SQLite one process runs: every earlier run is gone. On PostgreSQL a run
    with rules (`wanted`) tags them and holds a lease of that name while it lives (returned,
    to close last): a tag whose lease is free belongs to a run that is gone."""
    if url is None:
        await store.remove_rules_created_by(console, RUN_RULE)
        return RUN_RULE, None
    from storage.postgres import Lease

    tags = {r.created_by for r in await store.rules(console) if is_run_rule(r.created_by)}
    for tag in sorted(tags):
        left = Lease(url, tag)
        try:
            if await left.take():
                await store.remove_rules_created_by(console, tag)
        finally:
            await left.close()
    tag = f"{RUN_RULE}:{secrets.token_hex(8)}"
    if not wanted:
        return tag, None
    alive = Lease(url, tag)
    await alive.take()
    return tag, alive


def _log_metrics_port(settings: Settings, err: OSError) -> None:
    log.error(
        "cannot serve metrics on %s:%s (%s); set TICKERBELL_METRICS_PORT to a free port or 0",
        settings.metrics_host,
        settings.metrics_port,
        err.strerror or err,
    )


class Roles:
    """The parts that run on one replica at a time (PostgreSQL), each under its own lease.

    One plain loop per role: take the lease (every LEASE_SECONDS until it is free), start the
    part, check the lease every LEASE_SECONDS; once its session is gone (another replica may
    take it now), or the part says another replica runs it (the engine: a tick of this
    replica refused, see storage.api.EngineFence), stop the part, say so once, and try again
    like any other replica. A part that fails to start lets its lease go, so that another
    replica may try.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._held: dict[str, bool] = {}
        self._loops: dict[str, tuple[asyncio.Task[None], asyncio.Event]] = {}

    def held(self) -> dict[str, bool]:
        """Each role started here, and whether this replica holds it now."""
        return dict(self._held)

    def start(
        self,
        name: str,
        start: Callable[[], Awaitable[None]],
        stop: Callable[[], Awaitable[None]],
        superseded: Callable[[], bool] = lambda: False,
    ) -> None:
        """Start the role's loop (in the background). `superseded` says whether the part found
        that another replica runs it now (the engine: a tick refused by its epoch)."""
        from storage.postgres import Lease

        self._held[name] = False
        quit_ = asyncio.Event()
        task = asyncio.create_task(
            self._hold(name, Lease(self.url, name), start, stop, superseded, quit_),
            name=f"role {name}",
        )
        self._loops[name] = (task, quit_)

    async def end(self, name: str) -> None:
        """Stop the role's part if it runs here, and let its lease go."""
        task, quit_ = self._loops.pop(name)
        quit_.set()
        await task

    async def _hold(
        self,
        name: str,
        lease: Lease,
        start: Callable[[], Awaitable[None]],
        stop: Callable[[], Awaitable[None]],
        superseded: Callable[[], bool],
        quit_: asyncio.Event,
    ) -> None:
        told = unreachable = failing = False
        try:
            while not quit_.is_set():
                try:
                    took = await lease.take()
                except StorageUnavailable as err:
                    if not unreachable:
                        log.warning("%s: cannot try its lease (%s); trying again", name, err)
                    unreachable, took = True, False
                else:
                    unreachable = False
                if took:
                    log.info("%s: %s", name, "taking over" if told else "running on this replica")
                    self._held[name] = True
                    started = False
                    try:
                        await start()
                        started = True
                        while (
                            not await _wait(quit_, LEASE_SECONDS)
                            and not superseded()
                            and await lease.check()
                        ):
                            pass
                    except Exception:
                        if not failing:
                            log.exception("%s: cannot start; letting its lease go", name)
                    finally:
                        self._held[name] = False
                        await _quietly(f"stopping {name}", stop)
                    if quit_.is_set():
                        break
                    failing = not started
                    if failing:
                        await lease.close()  # another replica may try
                    elif superseded():  # asked after the stop: a tick in flight may be refused
                        await lease.close()  # lost already, or taken over without it
                        log.warning(
                            "%s: another replica took it over (this replica's last tick was "
                            "refused): stopped it here; trying to take it again",
                            name,
                        )
                    else:
                        log.error(
                            "%s: lost its lease (its database connection ended): stopped it "
                            "here, so that only one replica runs it; trying to take it again",
                            name,
                        )
                    told = False
                elif not told and not unreachable:
                    log.info(
                        "%s runs on another replica: standing by, to take over within %gs of "
                        "it stopping",
                        name,
                        LEASE_SECONDS,
                    )
                    told = True
                await _wait(quit_, LEASE_SECONDS)
        finally:
            await lease.close()


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Wait for the event at most `seconds`; whether it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
    return event.is_set()


async def _console_webhooks(
    settings: Settings, store: Storage, console: int, targets: Targets
) -> None:
    """When TICKERBELL_WEBHOOKS is set, make the console's webhooks the ones it lists (signed
    with TICKERBELL_WEBHOOK_SECRET); one that can never be posted to is logged and left out.
    When it is not, the console keeps those added with `tickerbell cmd "/webhook add URL"`."""
    if not settings.webhook_urls:
        return
    wanted = []
    for url in settings.webhook_urls:
        problem = targets.problem(url)
        if problem is None:
            wanted.append(url)
        else:
            log.error("TICKERBELL_WEBHOOKS: leaving out %s: %s", shown(url), problem)
    secret = settings.webhook_secret
    for url in wanted:
        key = secret.get_secret_value() if secret is not None else secrets.token_urlsafe(24)
        await store.add_webhook(console, url, key)
    for hook in await store.webhooks(console):
        if hook.url not in wanted:
            await store.remove_webhook(console, hook.id)


async def _quietly(what: str, step: Callable[..., Awaitable[object]], *args: object) -> None:
    """One shutdown step: a failure is logged and the remaining steps still run."""
    try:
        await step(*args)
    except Exception:
        log.exception("%s failed during shutdown", what)


async def _cancel(task: asyncio.Task[None]) -> None:
    """Cancel a background task and wait until it has ended."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _stop_delivery(delivery: Delivery, task: asyncio.Task[None]) -> None:
    """Stop delivery after the row in flight; the rest stay in the outbox for the next start."""
    delivery.stop()
    try:
        await asyncio.wait_for(task, SHUTDOWN_SECONDS)
    except TimeoutError:
        log.warning("delivery did not stop in time; pending alerts stay in the outbox")


async def _close_notifiers(by_name: dict[str, Notifier]) -> None:
    for notifier in by_name.values():
        await _quietly(f"closing {notifier.name}", notifier.close)


async def _stop_after_replay(replay: ReplayFeed, store: Storage, stop: asyncio.Event) -> None:
    """End the run once the replay is played out and its alerts are delivered."""
    while not stop.is_set():
        await asyncio.sleep(0.2)
        if replay.finished and (await store.outbox_counts()).get("pending", 0) == 0:
            stop.set()


def _log_start(
    settings: Settings, chats: dict[str, Notifier], replay: bool, webhooks: int = 0
) -> None:
    """The start-up block: what runs, on which database, serving which chats, priced how.

    The service's own lines follow it (the rules and symbols it watches, each source it polls
    and how often), then each symbol's first good price as it arrives.
    """
    from tickerbell import __version__

    log.info("tickerbell %s starting", __version__)
    log.info("database %s", describe(settings.db, settings.database_url_value))
    if settings.settings_file is not None:
        log.info("settings from %s and the environment", settings.settings_file)
    else:
        log.info("settings from the environment (no %s)", settings.home / ".env")
    for note in settings.notes:
        log.warning(note)
    described = []
    for name in chats:
        if name == "telegram":
            allowed = len(settings.allowed_chats)
            name += f" ({allowed} allowed chats)" if allowed else " (any chat)"
        elif name == "discord":
            guild = settings.discord_guild_id
            name += f" (commands in server {guild})" if guild else " (global commands)"
        elif name == WEBHOOK:
            if not webhooks:
                continue  # none added yet: nothing is posted anywhere
            name = f"{webhooks} webhook{'s' if webhooks > 1 else ''}"
        described.append(name)
    log.info("chats: %s", ", ".join(described))
    if replay:
        log.info("prices: replayed from history")
        return
    metals = (
        "spot from Swissquote"
        if settings.metals == "spot"
        else f"futures from Yahoo every {settings.poll_yahoo_seconds:g}s"
    )
    streamed = settings.venue_mode.get(settings.exchange.lower(), "stream") == "stream"
    log.info(
        "prices: crypto from %s in %s, %s every %gs, metals %s",
        settings.exchange,
        settings.quote_currency,
        "streamed where it can be (else polled)" if streamed else "polled",
        settings.poll_crypto_seconds,
        metals,
    )


async def _log_first_prices(service: Service, every: float = 1.0) -> None:
    """Log each watched symbol's first good price once it arrives (`BTC 91,234.5 from
    binance`): the sign, at start, that prices flow. Outages are the feeds' to log."""
    from alerts.text import number

    seen: set[str] = set()
    while True:
        for symbol in sorted(service.book.symbols() - seen):
            last = service.market.history(symbol).last
            if last is not None:
                seen.add(symbol)
                source = last.source.removeprefix("ccxt:")
                log.info("%s %s from %s", symbol, number(last.price), source)
        await asyncio.sleep(every)


async def _prune_daily(store: Storage, days: int) -> None:
    """Forget finished alerts older than the retention (TICKERBELL_OUTBOX_RETENTION_DAYS; 0
    keeps them all), at start and then once a day."""
    while days:
        try:
            pruned = await store.prune_outbox(utcnow() - timedelta(days=days))
        except Exception:
            log.exception("pruning old alerts failed; trying again tomorrow")
        else:
            if pruned:
                log.info("pruned %d finished alerts older than %d days", pruned, days)
        await asyncio.sleep(24 * 3600)
