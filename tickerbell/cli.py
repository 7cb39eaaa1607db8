"""The `tickerbell` command line: run, replay, the console chat (`alert`, `alerts`, `cmd`),
backup, migrate-db and discord-sync.

Each command imports what it needs when it runs (matplotlib, ccxt, APScheduler and the chat
libraries take seconds to import), so `--help`, `--version` and a bad setting answer at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tickerbell import __version__

if TYPE_CHECKING:
    from alerts.models import Candle
    from feeds.replay import ReplayFeed
    from tickerbell.market_data import MarketData
    from tickerbell.settings import Settings

CONSOLE = ("console", "console", "console", "console")  # the console chat's Caller
CHART_FILE = Path("tickerbell-chart.png")  # where `tickerbell cmd "/chart ..."` puts the picture
MAX_REPLAY_SPEED = 1000.0  # bars a second for `run --feed replay` (see `_speed`)
REPLAY_MAX_JUMP_PCT = 15.0  # alerts.sanity.Limits' default, kept here so --help imports nothing


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tickerbell` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    # psycopg_pool logs each failed try to connect (a warning, four in ten seconds, through
    # Python's last-resort handler when nothing is configured); the command then says it once.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    try:
        return int(args.handler(args))
    except _user_errors() as err:  # evaluated only once something was raised
        problems = getattr(err, "problems", None) or [f"tickerbell: {err}"]
        print("\n".join(problems), file=sys.stderr)
        return 2
    except BrokenPipeError:  # `tickerbell cmd /help | head`: the reader left, not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the exit-time flush does not fail again
        return 0


def _user_errors() -> tuple[type[Exception], ...]:
    """What a person can fix: shown as one line (no traceback) and exit code 2."""
    from alerts.models import RuleError
    from feeds.replay import ReplayError
    from storage.api import LimitReached, StorageUnavailable
    from tickerbell.settings import SettingsError

    return (RuleError, ReplayError, LimitReached, SettingsError, StorageUnavailable)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tickerbell",
        description="Market alerts for gold, silver and crypto. Settings come from the "
        "environment and $TICKERBELL_HOME/.env (default ~/.tickerbell/.env); see .env.example.",
    )
    parser.add_argument("--version", action="version", version=f"tickerbell {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    rp = sub.add_parser(
        "replay",
        help="run rules over daily OHLC history and print what would have fired",
        description="Run rules over daily OHLC(V) CSV files and print every fire.",
    )
    rp.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="[SYM=]PATH",
        help="a CSV with date,open,high,low,close[,volume]; SYM defaults to a symbol column "
        "or the file name's first word",
    )
    rp.add_argument("--rule", action="append", required=True, help='e.g. "XAG above 50"')
    rp.add_argument("--from", dest="start", type=_day, help="first day (YYYY-MM-DD)")
    rp.add_argument("--to", dest="end", type=_day, help="last day (YYYY-MM-DD)")
    rp.add_argument("--json", action="store_true", help="one JSON object per fire on stdout")
    rp.add_argument(
        "--max-jump",
        type=_positive,
        default=REPLAY_MAX_JUMP_PCT,
        metavar="PCT",
        help="an isolated move larger than this is held until the next price confirms it",
    )
    rp.add_argument("--plot", type=Path, metavar="PNG", help="draw the series with every fire")
    rp.set_defaults(handler=_replay)

    run = sub.add_parser(
        "run",
        help="run the bot (console output when no chat token is set)",
        description="Run the live service: poll prices, evaluate rules, deliver alerts.",
    )
    run.add_argument("--rule", action="append", default=[], help="a rule for this run only")
    run.add_argument(
        "--feed", choices=("live", "replay"), default="live", help="where prices come from"
    )
    run.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="[SYM=]PATH",
        help="history files for --feed replay",
    )
    run.add_argument(
        "--speed",
        type=_speed,
        default=10.0,
        help=f"replay bars per second (more than 0, at most {MAX_REPLAY_SPEED:g})",
    )
    run.add_argument("--from", dest="start", type=_day, help="replay from this day")
    run.set_defaults(handler=_run)

    alert = sub.add_parser("alert", help="manage the console's alert rules")
    alert_sub = alert.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = alert_sub.add_parser("add", help='add a rule, e.g. tickerbell alert add "XAG above 50"')
    add.add_argument("rule", nargs="+")
    add.set_defaults(handler=_alert_add)
    remove = alert_sub.add_parser(
        "remove", help="remove a rule by id (see `tickerbell alerts`), or `all confirm`"
    )
    remove.add_argument("id", nargs="+", metavar="ID")
    remove.set_defaults(handler=_alert_remove)
    alerts = sub.add_parser("alerts", help="list the console's alert rules")
    alerts.set_defaults(handler=_alerts)
    cmd = sub.add_parser(
        "cmd", help='answer a chat command as the console chat, e.g. tickerbell cmd "/status BTC"'
    )
    cmd.add_argument("text", nargs="+")
    cmd.set_defaults(handler=_cmd)
    sync = sub.add_parser("discord-sync", help="push the Discord slash commands now")
    sync.add_argument(
        "--clear-global",
        action="store_true",
        help="also remove global commands (after setting DISCORD_GUILD_ID)",
    )
    sync.set_defaults(handler=_discord_sync)
    backup = sub.add_parser(
        "backup",
        help="copy the database to PATH, safely while the bot runs",
        description="Copy the database with SQLite's online backup: a consistent snapshot, "
        "safe while the bot runs. PATH is a new file, or a folder to put a dated copy in. "
        "Restore: stop the bot, delete the database's -wal and -shm files if any, copy the "
        "backup over the database.",
    )
    backup.add_argument("path", type=Path, metavar="PATH")
    backup.set_defaults(handler=_backup)
    migrate = sub.add_parser(
        "migrate-db",
        help="copy this installation's data from SQLite into an empty PostgreSQL database",
        description="Copy chats, subscriptions, rules with their states, the outbox and the "
        "recent quotes from a SQLite database into an empty PostgreSQL database, ids kept, in "
        "one transaction. Stop the bot first (what it decides after the copy stays behind), "
        "then set TICKERBELL_DATABASE_URL to the target and start it.",
    )
    migrate.add_argument("--from", dest="source", required=True, metavar="sqlite:PATH")
    migrate.add_argument("--to", dest="target", required=True, metavar="postgresql://...")
    migrate.set_defaults(handler=_migrate_db)
    return parser


def _positive(text: str) -> float:
    """A number over 0 (`--speed 0` would never move, a negative one would spin the scheduler)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number more than 0, e.g. 50, not {text!r}")
    return value


def _speed(text: str) -> float:
    """Bars a second for `run --feed replay`: each bar is four polls of the live service, whose
    scheduler keeps up to about 200 bars a second here; far more only thrashes it (100,000 took
    ten times longer than 1,000, and 1,000,000 never finished)."""
    value = _positive(text)
    if value > MAX_REPLAY_SPEED:
        raise argparse.ArgumentTypeError(
            f"expected at most {MAX_REPLAY_SPEED:g} bars a second, not {text!r} (for every bar"
            " at once: tickerbell replay)"
        )
    return value


def _day(text: str) -> date:
    """A day as YYYY-MM-DD."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a day: expected YYYY-MM-DD, e.g. 2025-01-31"
        ) from None


def _settings() -> Settings:
    """This run's settings (SettingsError names each bad one); the database's folder exists."""
    from tickerbell.settings import SettingsError, load

    settings = load()
    folder = settings.db.parent
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:  # a file in the way, no permission
        exists = isinstance(err, FileExistsError)
        reason = "a file of that name is in the way" if exists else err.strerror or str(err)
        raise SettingsError(
            [f"cannot create the folder {folder} for the database {settings.db}: {reason}"]
        ) from None
    return settings


def load_series(specs: Sequence[str]) -> dict[str, list[Candle]]:
    """Read `[SYM=]PATH` specs into candles per canonical symbol."""
    from feeds.replay import ReplayError, canonical_symbol, read_candles, symbol_from_name

    series: dict[str, list[Candle]] = {}
    for spec in specs:
        name, sep, raw_path = spec.partition("=")
        path = Path(raw_path if sep else spec)
        if not path.is_file():
            raise ReplayError(f"no such file: {path}")
        column_symbol, candles = read_candles(path)
        symbol = canonical_symbol(name if sep else (column_symbol or symbol_from_name(path)))
        if symbol in series:
            raise ReplayError(f"--data names {symbol} twice ({spec}); give one file per symbol")
        series[symbol] = candles
    return series


def _replay(args: argparse.Namespace) -> int:
    import json
    from collections import Counter

    from alerts import rules
    from alerts.sanity import Limits
    from alerts.text import number
    from bot.wording import sentence
    from feeds.catalogue import canonical_rule
    from feeds.replay import REPLAY_MAX_AGE, ReplayCatalogue, ReplayError, replay

    out = sys.stdout
    if args.start and args.end and args.start > args.end:
        raise ReplayError(f"--from {args.start} is after --to {args.end}")
    if args.plot and not args.plot.parent.is_dir():
        raise ReplayError(f"--plot {args.plot}: no folder {args.plot.parent}")
    series = load_series(args.data)
    _check_overlap(series, args.start, args.end)
    catalogue = ReplayCatalogue(frozenset(series))
    parsed = [canonical_rule(rules.parse(text), catalogue.resolve) for text in args.rule]
    result = replay(series, parsed, args.start, args.end, Limits(REPLAY_MAX_AGE, args.max_jump))
    counts: Counter[str] = Counter()
    for fire in result.fires:
        alert = fire.alert
        counts[alert.rule_text] += 1
        if args.json:
            record = {
                "time": alert.time.isoformat(),
                "symbol": alert.symbol,
                "rule": alert.rule_text,
                "kind": alert.kind,
                "price": alert.price,
                "message": sentence(alert),
            }
            print(json.dumps(record), file=out)
        else:
            day = alert.time.date().isoformat()
            line = f"{day}  {alert.symbol:<8} {alert.rule_text:<28} {number(alert.price):>12}"
            print(f"{line}  {sentence(alert)}", file=out)
    if args.plot:
        alerts = [fire.alert for fire in result.fires]
        window = {
            symbol: [c for c in bars if (not args.start or c.day >= args.start)
                     and (not args.end or c.day <= args.end)]
            for symbol, bars in series.items()
        }  # fmt: skip
        from bot import charts

        args.plot.write_bytes(charts.render(charts.replay_spec(window, parsed, alerts)))
    summary = sys.stderr if args.json else out
    print(f"-- {len(result.fires)} fires, {len(result.rejected)} quotes rejected", file=summary)
    for rule in parsed:
        text = rules.format(rule)
        print(f"   {counts[text]:>4}  {text}", file=summary)
    return 0


def _check_overlap(series: dict[str, list[Candle]], start: date | None, end: date | None) -> None:
    """Refuse --from/--to that miss every file's bars: a typo, not a quiet '0 fires'."""
    from feeds.replay import ReplayError

    days = [c.day for bars in series.values() for c in bars]
    if not days or any((not start or day >= start) and (not end or day <= end) for day in days):
        return
    asked = f"from {start}" if end is None else f"up to {end}" if start is None else ""
    asked = asked or f"from {start} to {end}"
    raise ReplayError(f"no bars {asked}: the data runs from {min(days)} to {max(days)}")


def _run(args: argparse.Namespace) -> int:
    import asyncio

    from feeds.replay import ReplayError, ReplayFeed
    from tickerbell import app
    from tickerbell.settings import check_exchanges

    settings = _settings()
    app.setup_logging(settings.log_level)
    if args.feed == "replay":
        if not args.data:
            raise ReplayError("--feed replay needs --data [SYM=]PATH")
        feed = ReplayFeed(load_series(args.data), args.start)
        return asyncio.run(_replay_run(settings, feed, args.rule, args.speed))
    if args.data:
        raise ReplayError("--data is for --feed replay")
    check_exchanges(settings)
    return asyncio.run(app.run(settings, once_rules=args.rule))


async def _replay_run(
    settings: Settings, feed: ReplayFeed, once_rules: Sequence[str], speed: float
) -> int:
    """The live service over history, on a throwaway database and the console only.

    The console's own rules are read from the real database (opened read-only, never written)
    where their symbols have data; no chat platform starts, so years-old alerts reach no chat.
    """
    import tempfile

    from alerts import rules
    from alerts.models import RuleError
    from feeds.catalogue import canonical_rule
    from feeds.replay import ReplayCatalogue, check_replayable
    from storage.backend import open_read_only
    from tickerbell import app

    catalogue = ReplayCatalogue(frozenset(feed.symbols))
    kept: list[str] = []
    async with open_read_only(settings.db, settings.database_url_value) as real:
        console = None if real is None else await real.find_chat(*app.CONSOLE)
        if real is not None and console is not None:
            for stored in await real.rules(console.id):
                try:
                    check_replayable(canonical_rule(rules.parse(stored.text), catalogue.resolve))
                except RuleError as err:
                    print(f"replay: skipping console rule #{stored.id} ({err})", file=sys.stderr)
                    continue
                if not app.is_run_rule(stored.created_by):
                    kept.append(stored.text)
    with tempfile.TemporaryDirectory(prefix="tickerbell-replay-") as scratch:
        throwaway = settings.model_copy(
            update={
                "db": Path(scratch) / "replay.db",
                "database_url": None,
                "telegram_bot_token": None,
                "discord_bot_token": None,
                "metrics_port": 0,
            }
        )
        for text in once_rules:
            check_replayable(canonical_rule(rules.parse(text), catalogue.resolve))
        return await app.run(
            throwaway, once_rules=[*kept, *once_rules], replay=feed, replay_speed=speed
        )


class _MarketOnDemand:
    """Stands in for the market data in a console command and builds it on first use: /help,
    /alerts and /remove need no market, so they import no ccxt or feed."""

    def __init__(self, build: Callable[[], MarketData]) -> None:
        self._build = build
        self._data: MarketData | None = None

    def __getattr__(self, name: str) -> Any:
        if self._data is None:
            self._data = self._build()
        return getattr(self._data, name)

    async def close_feeds(self) -> None:
        if self._data is not None:
            await self._data.close_feeds()


def _console_command(text: str) -> int:
    """Answer one command as the console chat, exactly as a chat user would get it.

    The reply is the whole answer: a price source that is down is said in it (`/status`), so
    the feeds' outage warnings and yfinance's own lines are not printed beside it.
    """
    import asyncio

    from bot.commands import Caller, Commands
    from bot.render import plain
    from bot.replies import CONSOLE as SPELLING
    from bot.webhook_urls import Targets
    from storage.api import utcnow
    from storage.backend import open_store

    settings = _settings()
    logging.basicConfig(level=logging.ERROR, format="tickerbell: %(levelname)s %(message)s")
    logging.getLogger("yfinance").setLevel(logging.CRITICAL)

    async def go() -> int:
        async with open_store(settings.db, settings.database_url_value) as store:

            def build() -> MarketData:
                from tickerbell import app
                from tickerbell.market_data import MarketData
                from tickerbell.settings import check_exchanges

                check_exchanges(settings)
                return MarketData(
                    app.catalogue_for(settings),
                    app.live_feed_factory(settings, utcnow),
                    app.limits_for(settings),
                )

            data = _MarketOnDemand(build)
            commands = Commands(
                store,
                data,
                rules_per_chat=settings.rules_per_chat,
                webhook_targets=Targets.parse(settings.webhook_allow_networks),
                inbound_url=settings.inbound_url,
            )
            try:
                reply = await commands.handle(Caller(*CONSOLE), text, SPELLING)
            finally:
                await data.close_feeds()
        print(plain(reply), file=sys.stdout if reply.ok else sys.stderr)
        if reply.image is not None:
            CHART_FILE.write_bytes(reply.image)
            print(f"chart saved to {CHART_FILE}")
        return 0 if reply.ok else 2

    return asyncio.run(go())


def _discord_sync(args: argparse.Namespace) -> int:
    settings = _settings()
    if settings.discord_bot_token is None:
        print("tickerbell: set DISCORD_BOT_TOKEN first (see .env.example)", file=sys.stderr)
        return 2
    import asyncio

    from tickerbell.app import setup_logging
    from tickerbell.discord_sync import discord_sync

    setup_logging(settings.log_level)

    token = settings.discord_bot_token.get_secret_value()
    return asyncio.run(
        discord_sync(
            token,
            db_path=settings.db,
            guild_id=settings.discord_guild_id,
            clear_global=args.clear_global,
            api_base_url=settings.discord_api_base_url,
        )
    )


def _cmd(args: argparse.Namespace) -> int:
    return _console_command(" ".join(args.text))


def _alert_add(args: argparse.Namespace) -> int:
    return _console_command("/alert " + " ".join(args.rule))


def _alert_remove(args: argparse.Namespace) -> int:
    return _console_command("/remove " + " ".join(args.id))


def _alerts(args: argparse.Namespace) -> int:
    return _console_command("/alerts")


def _backup(args: argparse.Namespace) -> int:
    import asyncio
    import sqlite3

    from storage.db import backup

    settings = _settings()
    if settings.database_url is not None:
        print(
            "tickerbell: backup copies the SQLite database; with TICKERBELL_DATABASE_URL set, "
            "back up PostgreSQL with its own tools, e.g. pg_dump",
            file=sys.stderr,
        )
        return 2
    target = args.path.expanduser().resolve()
    if target.is_dir():
        target /= f"tickerbell-{datetime.now(UTC):%Y%m%d-%H%M%S}.db"
    try:
        asyncio.run(backup(settings.db, target))
    except (FileNotFoundError, FileExistsError) as err:
        print(f"tickerbell: {err}", file=sys.stderr)
        return 2
    except sqlite3.Error as err:
        print(f"tickerbell: backup of {settings.db} failed: {err}", file=sys.stderr)
        return 1
    size = target.stat().st_size
    print(f"backed up {settings.db} to {target} ({size / 1e6:.1f} MB)")
    return 0


def _migrate_db(args: argparse.Namespace) -> int:
    import asyncio

    from storage.postgres import TargetNotEmpty, is_postgres_url, safe_url
    from storage.transfer import sqlite_to_postgres

    kind, _, path = args.source.partition(":")
    problems = []
    if kind != "sqlite" or not path:
        problems.append("--from takes sqlite:PATH, e.g. --from sqlite:~/.tickerbell/tickerbell.db")
    if not is_postgres_url(args.target):
        problems.append(
            "--to takes a PostgreSQL URL, e.g. --to postgresql://tickerbell@127.0.0.1:5432/tickerbell"
        )
    if problems:
        print("\n".join(f"tickerbell: {problem}" for problem in problems), file=sys.stderr)
        return 2
    source, target = Path(path).expanduser().resolve(), safe_url(args.target)
    try:
        counts = asyncio.run(sqlite_to_postgres(source, args.target))
    except FileNotFoundError as err:
        print(f"tickerbell: {err}", file=sys.stderr)
        return 2
    except TargetNotEmpty as err:
        print(
            f"tickerbell: nothing copied: {err}; migrate-db copies into an empty database only "
            "(name a new database, or a new schema with ?options=-c%20search_path%3DNAME)",
            file=sys.stderr,
        )
        return 2
    copied = ", ".join(f"{count} {table}" for table, count in counts.items())
    print(f"copied {source} to {target}: {copied}")
    print("to use it: TICKERBELL_DATABASE_URL=<that URL> in the environment or .env")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
