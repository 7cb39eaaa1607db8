"""The composition root: builds every part from Settings, runs them, and shuts down in reverse.

Start-up: database (migrated) -> notifiers -> delivery -> service (scheduler, feeds on demand)
-> Telegram (when a token is set). Shutdown on SIGINT/SIGTERM (or the end of a replay): stop
taking Telegram commands, stop polling, stop delivery after the row in flight (the rest stay
pending in the outbox), close feeds, close notifiers, close the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from alerts import rules
from alerts.sanity import Limits
from bot.charts import AlertCharts, ChartCache
from bot.commands import Commands
from feeds.base import Feed
from feeds.catalogue import Catalogue
from feeds.replay import SOURCE as REPLAY
from feeds.replay import ReplayCatalogue, ReplayFeed
from storage.db import Store, utcnow
from tickerbell import metrics
from tickerbell.delivery import ConsoleNotifier, Delivery, Notifier
from tickerbell.service import Resolver, Service
from tickerbell.settings import Settings

log = logging.getLogger("tickerbell")

CONSOLE = ("console", "console")
RUN_RULE = "run"  # created_by of rules given with `tickerbell run --rule`
SHUTDOWN_SECONDS = 5.0


def setup_logging(level: str) -> None:
    """Log to stderr; keep httpx quiet (its INFO lines carry the Telegram token in URLs)."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("httpx", "httpcore", "apscheduler", "telegram.ext.Updater"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # yfinance logs every failed request itself; our feed logs each outage once
    logging.getLogger("yfinance").setLevel(logging.CRITICAL)


def catalogue_for(settings: Settings) -> Catalogue:
    """The symbol catalogue for the configured venue, quote currency and metals source."""
    return Catalogue(settings.exchange, settings.quote_currency, settings.metals)


def live_feed_factory(settings: Settings, clock: Callable[[], datetime]) -> Callable[[str], Feed]:
    """Builds the feed for a source name: `ccxt:<venue>` or `yahoo`."""

    def make(source: str) -> Feed:
        if source == "yahoo":
            from feeds.yahoo_feed import YahooFeed

            return YahooFeed(clock)
        from feeds.ccxt_feed import CcxtFeed

        venue = source.removeprefix("ccxt:")
        return CcxtFeed(venue, settings.exchange_options.get(venue), clock=clock)

    return make


class FrontEnd(Notifier, Protocol):
    """A chat platform: takes commands while started, and delivers alerts as a Notifier."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def make_front_ends(settings: Settings, store: Store, commands: Commands) -> list[FrontEnd]:
    """Telegram and/or Discord, for whichever tokens are set."""
    front_ends: list[FrontEnd] = []
    if settings.telegram_bot_token is not None:
        from bot.telegram_bot import Rates, TelegramBot

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
                rates=rates,
            )
        )
    if settings.discord_bot_token is not None:
        from bot.discord_bot import build

        front_ends.append(
            build(
                token=settings.discord_bot_token.get_secret_value(),
                commands=commands,
                store=store,
                db_path=settings.db,
                guild_id=settings.discord_guild_id,
                admin_role=settings.discord_admin_role,
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
    """Run the bot until stopped (or until a replay is played and delivered)."""
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
    async with Store.open(settings.db, clock=clock) as store:
        console = await store.chat(*CONSOLE)
        await store.remove_rules_created_by(console.id, RUN_RULE)  # left by a killed run
        for text in once_rules:
            rule = rules.parse(text)
            for symbol in rule.symbols:
                catalogue.resolve(symbol)
            await store.add_rule(console.id, rules.format(rule), RUN_RULE, settings.rules_per_chat)
        by_name: dict[str, Notifier] = {"console": ConsoleNotifier()}
        by_name.update({n.name: n for n in notifiers})
        delivery = Delivery(store, by_name, clock=utcnow)
        limits = Limits(
            max_age=settings.max_quote_age,
            max_jump_pct=settings.max_jump_pct,
            source_max_age=settings.max_quote_age_by_source,
        )
        service = Service(
            store,
            catalogue,
            feed_for,
            delivery,
            limits=limits,
            band=settings.hysteresis_pct / 100,
            poll_interval=poll_interval(settings, replay_speed),
            clock=clock,
        )
        delivery.on_result = service.stats.delivery
        chart_cache = ChartCache()
        delivery.charts = AlertCharts(service.market, chart_cache, service.currency).for_alert
        commands = Commands(
            store,
            service,
            rules_per_chat=settings.rules_per_chat,
            commands_per_minute=settings.commands_per_minute,
            charts=chart_cache,
        )
        front_ends = make_front_ends(settings, store, commands)
        for front_end in front_ends:
            by_name[front_end.name] = delivery.notifiers[front_end.name] = front_end
        status = 0
        log.info("tickerbell starting: database %s, chats on %s", settings.db, ", ".join(by_name))
        delivery_task = asyncio.create_task(delivery.run())
        await service.start()
        for front_end in front_ends:
            try:
                await front_end.start()
            except Exception as err:
                log.error("%s: cannot start (%r); shutting down", front_end.name, err)
                stop.set()
                status = 1
        endpoint = None
        if settings.metrics_port:
            endpoint = await metrics.start(
                service, store, settings.metrics_host, settings.metrics_port
            )
            log.info("metrics on %s:%s", settings.metrics_host, settings.metrics_port)
        watcher = asyncio.create_task(_stop_after_replay(replay, store, stop)) if replay else None
        await stop.wait()
        log.info("shutting down")
        for front_end in front_ends:
            with contextlib.suppress(Exception):
                await front_end.stop()  # no new commands; sends still work until closed below
        await service.stop()
        delivery.stop()
        try:
            await asyncio.wait_for(delivery_task, SHUTDOWN_SECONDS)
        except TimeoutError:
            log.warning("delivery did not stop in time; pending alerts stay in the outbox")
        if watcher:
            watcher.cancel()
        await service.close_feeds()
        if endpoint is not None:
            await endpoint.cleanup()
        for notifier in by_name.values():
            with contextlib.suppress(Exception):
                await notifier.close()
        await store.remove_rules_created_by(console.id, RUN_RULE)
    return status


async def _stop_after_replay(replay: ReplayFeed, store: Store, stop: asyncio.Event) -> None:
    """End the run once the replay is played out and its alerts are delivered."""
    while not stop.is_set():
        await asyncio.sleep(0.2)
        if replay.finished and (await store.outbox_counts()).get("pending", 0) == 0:
            stop.set()
