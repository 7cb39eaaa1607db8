"""The Telegram adapter: the real PTB stack against a local fake Bot API over HTTP.

Commands arrive as updates the fake serves through getUpdates; replies and alerts are the
sendMessage calls it records. The store is real SQLite, the command layer and the service are
real; market prices come from a scripted feed (synthetic prices), or, end to end, from the fake
Binance through the real ccxt feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fake_exchange import FakeExchange
from fake_telegram import FakeTelegram, Fault, Limits, html_problem, plain
from support.kinds import EVERY_KIND
from support.scripted import Clock, ScriptedVenue, an_alert, enqueue, make_service
from support.waiting import until
from telegram import Bot
from telegram.error import InvalidToken

from alerts.models import Alert, Candle, Condition, Direction, Quote, Rule
from bot.actions import Ref
from bot.charts import ChartCache
from bot.commands import Commands
from bot.digest import Digests
from bot.replies import LISTED_NOTE, Reply
from bot.telegram.adapter import COMMANDS, TelegramBot
from bot.telegram.pacing import Rates, SendLimiter
from feeds.base import FeedHealth
from storage.db import Store
from tickerbell import app
from tickerbell.delivery import Delivery, DeliveryError
from tickerbell.settings import Settings
from tickerbell.webhook_in import alert_of, parse

TOKEN = "123456789:AAF-fake_SECRET_tickerbell_token"
ZERO = timedelta(0)
FAST = Rates(overall_per_second=1000, chat_per_second=1000, group_per_minute=60_000)
USER, GROUP, ADMIN, MEMBER = 4242, -100777, 11, 22

# PTB's own RetryAfter constructor reads its deprecated int-valued `retry_after`.
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


class ScriptedFeed:
    """Every symbol at a fixed synthetic price, stamped now."""

    name = "scripted"

    def __init__(self) -> None:
        self.health = FeedHealth()

    async def quotes(self, symbols: list[str]) -> dict[str, Quote]:
        now = datetime.now(UTC)
        return {s: Quote(s, 48.5, now, bid=48.49, ask=48.51) for s in symbols}

    async def candles(self, symbol: str, timeframe: str, since: datetime) -> list[Candle]:
        return []

    async def close(self) -> None:
        return None


@dataclass
class Rig:
    bot: TelegramBot
    store: Store
    delivery: Delivery


@asynccontextmanager
async def rig(
    db: Path,
    fake: FakeTelegram,
    feed: ScriptedFeed | None = None,
    *,
    connected: bool = True,
    **options: Any,
) -> AsyncIterator[Rig]:
    """A started TelegramBot over a real store, command layer and service; with `connected`,
    once it listens."""
    async with Store.open(db) as store:
        delivery = Delivery(store, {})
        feed = feed or ScriptedFeed()
        service = make_service(store, delivery, feed)
        options.setdefault("rates", FAST)
        options.setdefault("reconnect_base", 0.05)
        options.setdefault("reconnect_cap", 0.2)
        bot = TelegramBot(
            token=TOKEN,
            base_url=fake.base_url,
            commands=Commands(store, service.data),
            store=store,
            **options,
        )
        delivery.notifiers[bot.name] = bot
        try:
            await bot.start()
            if connected:
                await until(bot.listening)
            yield Rig(bot, store, delivery)
        finally:
            await bot.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(TOKEN, poll_cap=0.2) as server:
        yield server


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    """The adapter's own log lines at exactly `level`."""
    return [
        rec.getMessage()
        for rec in caplog.records
        if rec.name == "bot.telegram.adapter" and rec.levelno == level
    ]


def sends_to(fake: FakeTelegram, chat_id: int) -> int:
    wanted = str(chat_id)
    return sum(1 for c in fake.calls if c.method == "sendMessage" and c.params["chat_id"] == wanted)


# --- 1. end to end through the composition root ---


@pytest.mark.slow
async def test_alert_end_to_end_through_app_run(tmp_path: Path, fake: FakeTelegram) -> None:
    db = tmp_path / "e2e.db"
    async with FakeExchange() as exchange, Store.open(db) as probe:
        exchange.set_price("BTCUSDT", 86000.0, 86000.0)
        settings = Settings(
            TELEGRAM_BOT_TOKEN=TOKEN,
            TELEGRAM_API_BASE_URL=fake.base_url,
            db=db,
            exchange_options={"binance": exchange.ccxt_options()},
            poll_crypto_seconds=0.2,
        )
        stop = asyncio.Event()
        running = asyncio.create_task(app.run(settings, stop=stop))
        try:
            await until(lambda: fake.count("getUpdates") > 0)
            assert [c["command"] for c in fake.commands] == [name for name, _ in COMMANDS]
            fake.push("/alert BTC below 85000", chat_id=USER)
            await until(lambda: fake.texts(USER))
            assert fake.texts(USER) == ["Alert #1 set: BTC below 85000"]

            async def armed() -> bool:
                stored = await probe.rules()
                return bool(stored and stored[0].state and stored[0].state.armed)

            await until(armed)  # the engine has seen BTC above the level
            exchange.set_price("BTCUSDT", 84000.0, 84000.0)
            await until(lambda: len(fake.texts(USER)) > 1)
            polls = exchange.count()
            await until(lambda: exchange.count() >= polls + 3)  # later ticks fire nothing
            alerts = fake.texts(USER)[1:]
            assert len(alerts) == 1 and sends_to(fake, USER) == 2
            assert alerts[0].startswith("🔴▼ <b>BTC</b> fell below 85,000 (now 84,000)\n")
            assert "<i>BTC below 85000</i>" in alerts[0]
            stop.set()
            assert await asyncio.wait_for(running, 10) == 0
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(running, 10)
        assert (await probe.outbox_counts()) == {"delivered": 1}


@pytest.mark.slow
async def test_a_rejected_token_is_retried_until_the_run_stops(
    tmp_path: Path, fake: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = Settings(
        TELEGRAM_BOT_TOKEN="999:not-the-token",
        TELEGRAM_API_BASE_URL=fake.base_url,
        db=tmp_path / "bad.db",
    )
    stop = asyncio.Event()
    running = asyncio.create_task(app.run(settings, stop=stop))
    try:
        await until(lambda: fake.count("getMe") >= 2)  # the run goes on, and keeps asking
        assert not running.done()
    finally:
        stop.set()
        status = await asyncio.wait_for(running, 10)
    assert status == 0
    assert {c.method for c in fake.calls} == {"getMe"}
    [warning] = records(caplog, logging.WARNING)
    assert "refused the token" in warning
    assert "not-the-token" not in caplog.text


# --- 2. who may change alerts in a group ---


async def test_group_admins_change_alerts_everyone_reads(
    tmp_path: Path, fake: FakeTelegram
) -> None:
    fake.admins[GROUP] = {ADMIN: "administrator"}
    async with rig(tmp_path / "g.db", fake) as r:
        fake.push("/alert XAG above 50", chat_id=GROUP, user_id=MEMBER, chat_type="supergroup")
        await until(lambda: len(fake.texts(GROUP)) == 1)
        assert "only admins change alerts" in fake.texts(GROUP)[0]
        assert await r.store.find_chat("telegram", str(GROUP)) is None
        assert await r.store.rules() == []

        fake.push("/alert@tickerbell_test_bot XAG above 50", chat_id=GROUP, user_id=ADMIN,
                  chat_type="supergroup")  # fmt: skip
        await until(lambda: len(fake.texts(GROUP)) == 2)
        assert fake.texts(GROUP)[1] == "Alert #1 set: XAG above 50"
        assert [(s.text, s.created_by) for s in await r.store.rules()] == [
            ("XAG above 50", str(ADMIN))
        ]

        fake.push("/status XAG", chat_id=GROUP, user_id=MEMBER, chat_type="supergroup")
        await until(lambda: len(fake.texts(GROUP)) == 3)
        status = plain(fake.texts(GROUP)[2])
        assert status.startswith("XAG\n48.5")
        assert "alert XAG above 50: +3.09% away" in status
        assert fake.count("getChatMember") == 2  # the member's rights came from the cache

        fake.push("/mute 1h", chat_id=GROUP, chat_type="supergroup", anonymous_admin=True)
        fake.push("/help@some_other_bot", chat_id=GROUP, user_id=ADMIN, chat_type="supergroup")
        await until(lambda: len(fake.texts(GROUP)) == 4)
        await asyncio.sleep(0.3)  # the command for another bot stays unanswered
        assert fake.texts(GROUP)[3].startswith("Muted until")
        muted = await r.store.find_chat("telegram", str(GROUP))
        assert muted is not None and muted.muted_until is not None
        assert len(fake.texts(GROUP)) == 4
        assert fake.count("getChatMember") == 2


async def test_an_edited_command_is_not_run_and_says_so_once(
    tmp_path: Path, fake: FakeTelegram
) -> None:
    """A typo fixed by editing the message: the edit is not read (it cannot add an alert
    twice), and the user is told to send the command again, once, and only for our commands."""
    fake.admins[GROUP] = {ADMIN: "administrator"}
    async with rig(tmp_path / "e.db", fake) as r:
        typo = fake.push("/alert XAG abve 50", chat_id=USER)
        await until(lambda: len(fake.texts(USER)) == 1)
        fixed = fake.message_of(typo)
        fake.push("/alert XAG above 50", chat_id=USER, edit_of=fixed)
        await until(lambda: len(fake.texts(USER)) == 2)
        assert fake.texts(USER)[1] == "Edits are not read: send the command again."
        fake.push("/alert XAG above 51", chat_id=USER, edit_of=fixed)  # edited again: no note
        hello = fake.message_of(fake.push("hello", chat_id=USER))
        fake.push("hello there", chat_id=USER, edit_of=hello)  # not a command: nothing
        fake.push("/alerts", chat_id=USER)
        await until(lambda: len(fake.texts(USER)) == 4)
        assert fake.texts(USER)[2] == "I answer commands: try /help, or /status BTC."
        assert "no alerts" in plain(fake.texts(USER)[3]).lower()
        assert await r.store.rules() == []

        def in_group(text: str, edit_of: int | None = None) -> int:
            update = fake.push(
                text, chat_id=GROUP, user_id=ADMIN, chat_type="supergroup", edit_of=edit_of
            )
            return fake.message_of(update)

        theirs = in_group("/help@some_other_bot")
        in_group("/alert@some_other_bot XAG above 50", edit_of=theirs)  # not ours: nothing
        ours = in_group("/alert@tickerbell_test_bot XAG abve 50")
        await until(lambda: len(fake.texts(GROUP)) == 1)
        in_group("/alert@tickerbell_test_bot XAG above 50", edit_of=ours)
        await until(lambda: len(fake.texts(GROUP)) == 2)
        assert fake.texts(GROUP)[1] == "Edits are not read: send the command again."
        in_group("/alerts")
        await until(lambda: len(fake.texts(GROUP)) == 3)
        assert "no alerts" in plain(fake.texts(GROUP)[2]).lower()
        assert await r.store.rules() == []


async def test_full_width_commands_are_read(tmp_path: Path, fake: FakeTelegram) -> None:
    """Typed on a full-width keyboard: the symbol, the keyword and the level read as ASCII."""
    async with rig(tmp_path / "w.db", fake) as r:
        fake.push("/status ＸＡＧ", chat_id=USER)
        await until(lambda: len(fake.texts(USER)) == 1)
        assert plain(fake.texts(USER)[0]).startswith("XAG\n48.5")
        fake.push("/alert ＸＡＧ ａｂｏｖｅ ５０", chat_id=USER)
        await until(lambda: len(fake.texts(USER)) == 2)
        assert fake.texts(USER)[1] == "Alert #1 set: XAG above 50"
        assert [rule.text for rule in await r.store.rules()] == ["XAG above 50"]


async def test_a_tiny_level_is_shown_in_plain_digits(tmp_path: Path, fake: FakeTelegram) -> None:
    """`/alert XAG below 0.0000001`: the reply asks to confirm a level far from the price and
    names it as typed, never as `1e-07`; so does the alert once confirmed."""
    async with rig(tmp_path / "t.db", fake) as r:
        fake.push("/alert XAG below 0.0000001", chat_id=USER)
        await until(lambda: len(fake.texts(USER)) == 1)
        asked = plain(fake.texts(USER)[0])
        assert asked.startswith("XAG is 48.50 now and 0.0000001 is less than a tenth of that")
        fake.push("/alert XAG below 0.0000001 confirm", chat_id=USER)
        await until(lambda: len(fake.texts(USER)) == 2)
        assert fake.texts(USER)[1] == "Alert #1 set: XAG below 0.0000001"
        chat = await r.store.chat("telegram", str(USER))
        await enqueue(r.store, chat, an_alert("XAG below 0.0000001", price=9e-8, reference=1e-7))
        await r.delivery.drain()
        assert plain(fake.texts(USER)[2]).startswith(
            "🔴▼ XAG fell below 0.0000001 (now 0.00000009)"
        )
        assert not any("e-0" in plain(text) for text in fake.texts(USER))


# --- 3. to 5. delivery: flood control, a chat that is gone, a chat that moved ---


async def test_retry_after_is_waited_out_and_sent_once(tmp_path: Path, fake: FakeTelegram) -> None:
    async with rig(tmp_path / "r.db", fake) as r:
        chat = await r.store.chat("telegram", str(USER))
        await enqueue(r.store, chat, an_alert())
        fake.fail_chat(USER, Fault.RETRY_AFTER, retry_after=1)
        started = time.monotonic()
        await r.delivery.drain()
        assert time.monotonic() - started >= 1.0
        assert sends_to(fake, USER) == 2
        assert [plain(t) for t in fake.texts(USER)] == [
            "🔴▼ BTC fell below 85,000 (now 84,000)\nBTC below 85000 · 2026-03-02 12:00 UTC"
        ]
        assert await r.store.outbox_counts() == {"delivered": 1}


async def test_retry_after_past_the_retries_is_handed_back(
    tmp_path: Path, fake: FakeTelegram
) -> None:
    async with rig(tmp_path / "r2.db", fake, retries=0) as r:
        fake.fail_chat(USER, Fault.RETRY_AFTER, times=None, retry_after=7)
        chat = await r.store.chat("telegram", str(USER))
        with pytest.raises(DeliveryError) as caught:
            await r.bot.send(chat, an_alert())
        assert (caught.value.permanent, caught.value.retry_after) == (False, 7.0)


@pytest.mark.parametrize("fault", [Fault.FORBIDDEN, Fault.CHAT_NOT_FOUND])
async def test_a_chat_that_is_gone_is_deactivated(
    tmp_path: Path, fake: FakeTelegram, fault: Fault
) -> None:
    async with rig(tmp_path / "f.db", fake) as r:
        chat = await r.store.chat("telegram", str(USER))
        await r.store.add_rule(chat.id, "BTC below 85000", str(USER), 50)
        fake.fail_chat(USER, fault, times=None)
        await enqueue(r.store, chat, an_alert())
        await r.delivery.drain()
        assert await r.store.outbox_counts() == {"failed": 1}
        found = await r.store.find_chat("telegram", str(USER))
        assert found is not None and not found.active
        await enqueue(r.store, chat, an_alert(price=83000.0))
        await r.delivery.drain()
        assert sends_to(fake, USER) == 1  # nothing more was tried
        assert await r.store.outbox_counts() == {"failed": 1, "inactive": 1}

        fake.heal()  # the user unblocks the bot and talks to it again
        fake.push("/alerts", chat_id=USER)
        await until(lambda: fake.texts(USER))
        found = await r.store.find_chat("telegram", str(USER))
        assert found is not None and found.active


@pytest.mark.parametrize(
    ("fault", "permanent"),
    [(Fault.FORBIDDEN, True), (Fault.CHAT_NOT_FOUND, True), (Fault.BAD_GATEWAY, False)],
)
async def test_send_maps_telegram_errors(
    tmp_path: Path, fake: FakeTelegram, fault: Fault, permanent: bool
) -> None:
    async with rig(tmp_path / "x.db", fake) as r:
        chat = await r.store.chat("telegram", str(USER))
        fake.fail_chat(USER, fault)
        with pytest.raises(DeliveryError) as caught:
            await r.bot.send(chat, an_alert())
        assert (caught.value.permanent, caught.value.retry_after) == (permanent, 0.0)


async def test_html_refused_by_telegram_goes_out_as_plain_text(
    tmp_path: Path, fake: FakeTelegram
) -> None:
    async with rig(tmp_path / "p.db", fake) as r:
        chat = await r.store.chat("telegram", str(USER))
        fake.fail_chat(USER, Fault.BAD_ENTITIES)
        assert await r.bot.send(chat, an_alert()) is not None
        assert [(m.text, m.parse_mode) for m in fake.messages] == [
            ("BTC fell below 85,000 (now 84,000) — BTC below 85000 (2026-03-02 12:00 UTC)", None)
        ]


async def test_a_migrated_group_keeps_its_rules(tmp_path: Path, fake: FakeTelegram) -> None:
    old, new = -4001, -1004001
    async with rig(tmp_path / "m.db", fake) as r:
        chat = await r.store.chat("telegram", str(old), "group")
        await r.store.add_rule(chat.id, "BTC below 85000", "1", 50)
        fake.fail_chat(old, Fault.MIGRATED, migrate_to=new)
        await enqueue(r.store, chat, an_alert())
        await r.delivery.drain()
        assert fake.texts(old) == []
        assert [plain(t).splitlines()[0] for t in fake.texts(new)] == [
            "🔴▼ BTC fell below 85,000 (now 84,000)"
        ]
        assert await r.store.find_chat("telegram", str(old)) is None
        moved = await r.store.find_chat("telegram", str(new))
        assert moved is not None and moved.id == chat.id and moved.active
        assert [s.text for s in await r.store.rules(moved.id)] == ["BTC below 85000"]
        assert await r.store.outbox_counts() == {"delivered": 1}


async def test_a_migration_notice_moves_the_rules_at_once(
    tmp_path: Path, fake: FakeTelegram
) -> None:
    old, new = -4002, -1004002
    async with rig(tmp_path / "m2.db", fake) as r:
        chat = await r.store.chat("telegram", str(old), "group")
        await r.store.add_rule(chat.id, "XAG above 50", "1", 50)
        fake.migrate(old, new)
        await until(lambda: r.store.find_chat("telegram", str(new)))
        assert [s.text for s in await r.store.rules(chat.id)] == ["XAG above 50"]
        assert await r.store.find_chat("telegram", str(old)) is None


ARROWS = {Direction.UP: "🟢▲", Direction.DOWN: "🔴▼", Direction.WIDER: "🟠↔"}


@pytest.mark.parametrize(
    ("alert", "subject", "rest"), EVERY_KIND, ids=[alert.rule_text for alert, _, _ in EVERY_KIND]
)
async def test_an_alert_names_its_symbol_once(
    tmp_path: Path, fake: FakeTelegram, alert: Alert, subject: str, rest: str
) -> None:
    """Every kind of alert: its subject once, in bold, then the rest of its sentence."""
    async with rig(tmp_path / "s.db", fake) as r:
        chat = await r.store.chat("telegram", str(USER))
        assert await r.bot.send(chat, alert) is not None
    [sent] = fake.texts(USER)
    arrow = ARROWS[alert.direction]
    headline = plain(sent).splitlines()[0]
    assert headline == f"{arrow} {subject} {rest}"
    assert headline.count(subject) == 1
    assert sent.startswith(f"{arrow} <b>{subject}</b> ") and sent.count("<b>") == 1


# --- 6. the allowlist ---


async def test_chats_off_the_allowlist_get_no_alerts_whatever_is_stored(
    tmp_path: Path, fake: FakeTelegram
) -> None:
    """Rules made before TELEGRAM_ALLOWED_CHATS was set stay stored, but send nothing."""
    earlier = 5555
    async with rig(tmp_path / "b.db", fake, allowed_chats={str(USER)}) as r:
        for chat_id in (earlier, USER):
            await enqueue(r.store, await r.store.chat("telegram", str(chat_id)), an_alert())
        await r.delivery.drain()
        assert sends_to(fake, earlier) == 0 and sends_to(fake, USER) == 1
        assert await r.store.outbox_counts() == {"delivered": 1, "failed": 1}


async def test_chats_off_the_allowlist_are_refused(tmp_path: Path, fake: FakeTelegram) -> None:
    stranger = 9999
    async with rig(tmp_path / "a.db", fake, allowed_chats={str(USER)}) as r:
        fake.push("/alert XAG above 50", chat_id=stranger)
        fake.push("hello", chat_id=stranger)
        fake.push("/alert XAG above 50", chat_id=USER)
        fake.push("hello", chat_id=USER)
        await until(lambda: len(fake.texts(stranger)) == 2 and len(fake.texts(USER)) == 2)
        assert [plain(t) for t in fake.texts(stranger)] == [
            "Sorry, this bot only answers the chats its owner has allowed."
        ] * 2
        assert await r.store.find_chat("telegram", str(stranger)) is None
        assert fake.texts(USER) == [
            "Alert #1 set: XAG above 50",
            "I answer commands: try /help, or /status BTC.",
        ]


# --- 7. HTML: escaping and splitting ---


async def test_dynamic_values_are_escaped(tmp_path: Path, fake: FakeTelegram) -> None:
    async with rig(tmp_path / "e.db", fake) as r:
        rotation = Rule("A&B<C>", Condition.UP, 3.0, other="X&Y>", window=timedelta(days=1))
        nasty = an_alert(rotation, rule_text="A<B & C>D", price=0.5, reference=0.485, observed=3.0)
        chat = await r.store.chat("telegram", str(USER))
        assert await r.bot.send(chat, nasty) is not None
        fake.push("/alert X&Y above 3", chat_id=USER)
        fake.push("/alert XAG above <b>", chat_id=USER)
        await until(lambda: len(fake.texts(USER)) == 3)
        sent = fake.texts(USER)
        assert all(html_problem(text) is None for text in sent)
        assert sent[0].startswith(
            "🔴▼ <b>A&amp;B&lt;C&gt;</b> outperformed X&amp;Y&gt; by 3.00% over 1d"
            " (ratio 0.5, was 0.485)\n"
        )
        assert plain(sent[0]).startswith(
            "🔴▼ A&B<C> outperformed X&Y> by 3.00% over 1d (ratio 0.5, was 0.485)\nA<B & C>D"
        )
        assert "'X&Y' is not a valid symbol" in plain(sent[1])
        assert "'<b' is not a price" in plain(sent[2])
        assert "&lt;b" in sent[2]


async def test_long_replies_are_split_on_line_boundaries(
    tmp_path: Path, fake: FakeTelegram
) -> None:
    async with rig(tmp_path / "l.db", fake) as r:
        chat = await r.store.chat("telegram", str(USER))
        text = "BTC below 85000 confirm 3 cooldown 1h once expires 2026-12-31"
        await r.store.import_rules([(chat.id, text, "1")] * 250)
        fake.push("/alerts", chat_id=USER)
        await until(lambda: sends_to(fake, USER) >= 5)
        await asyncio.sleep(0.3)  # the last parts
        parts = fake.texts(USER)
        assert len(parts) == sends_to(fake, USER) >= 5  # every part was accepted
        assert all(len(part) <= 4096 and html_problem(part) is None for part in parts)
        lines = [line for part in parts for line in plain(part).splitlines()]
        assert lines[0] == "250 alerts"
        rows = lines[1:]
        assert len(rows) == 250
        assert all(re.fullmatch(rf"#\d+ +{re.escape(text)} +new", row) for row in rows)


# --- 8. the token never reaches a log ---


@contextmanager
def every_logger_at_debug() -> Iterator[None]:
    """Every logger (ours, PTB, httpx, httpcore, aiohttp) at DEBUG; restored afterwards."""
    names = [*logging.root.manager.loggerDict, "httpx", "httpcore", "telegram", "aiohttp.access"]
    saved = {name: logging.getLogger(name).level for name in names}
    try:
        for name in names:
            logging.getLogger(name).setLevel(logging.DEBUG)
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


@contextmanager
def every_line_formatted() -> Iterator[list[str]]:
    """Every record of every logger at DEBUG, as a root handler formats it (tracebacks and
    stacks included), collected in a list."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Keep(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        with every_logger_at_debug():
            yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def refused_token(fake: FakeTelegram) -> InvalidToken:
    """The error PTB raises when Telegram refuses the token at getMe (it quotes the token)."""
    fake.fail_method("getMe", Fault.UNAUTHORIZED)
    bot = Bot(TOKEN, base_url=fake.base_url)
    try:
        await bot.initialize()
    except InvalidToken as err:
        return err
    finally:
        await bot.shutdown()
    raise AssertionError("getMe was not refused")


async def test_the_token_never_reaches_a_log(tmp_path: Path, fake: FakeTelegram) -> None:
    secret = TOKEN.split(":", 1)[1]
    with every_line_formatted() as lines:
        fake.fail_method("getMe", Fault.UNAUTHORIZED, times=2)  # refused at start, twice
        async with rig(tmp_path / "t.db", fake) as r:
            for fault in (Fault.UNAUTHORIZED, Fault.INTERNAL, Fault.BAD_GATEWAY):
                fake.fail_method("getUpdates", fault, times=2)  # polling fails, then recovers
                await until(lambda: not r.bot.listening())
                await until(r.bot.listening)
            fake.push("/help", chat_id=USER)
            fake.push("/alert XAG above 50", chat_id=GROUP, user_id=MEMBER, chat_type="group")
            await until(lambda: fake.texts(USER) and fake.texts(GROUP), timeout=10)
            for chat_id, fault in [(31337, Fault.UNAUTHORIZED), (31338, Fault.INTERNAL)]:
                chat = await r.store.chat("telegram", str(chat_id))
                fake.fail_chat(chat_id, fault)
                await enqueue(r.store, chat, an_alert())
            await r.delivery.drain()
            assert await r.store.outbox_counts() == {"pending": 2}  # both to be retried
        # After close, what app.py logs of a failed start, and a chained traceback with a stack.
        err = await refused_token(fake)
        assert TOKEN in str(err)
        logging.getLogger("tickerbell").error("telegram: cannot start (%r); shutting down", err)
        try:
            raise RuntimeError("start failed") from err
        except RuntimeError:
            logging.getLogger("tickerbell").exception("unexpected", stack_info=True)
    text = "\n".join(lines)
    assert "bot123456789:<token>/getMe" in text  # httpx's URL lines: redacted, not silent
    assert "refused the token" in text
    assert "polling for updates failed" in text
    assert "The token `123456789:<token>` was rejected" in text  # in the message and traceback
    assert "Traceback" in text and "Stack (most recent call last)" in text
    assert secret not in text


# --- 9. Telegram unreachable or refusing: the bot waits for it, and says so once ---


async def test_start_returns_at_once_and_connects_when_telegram_comes_up(
    tmp_path: Path, fake: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.telegram.adapter")
    await fake.go_down()  # connections refused
    fake.fail_method("getMe", Fault.BAD_GATEWAY, times=2)  # and once up, two 502s
    async with rig(tmp_path / "d.db", fake, connected=False) as r:
        assert not r.bot.listening()  # start() returned without Telegram
        await until(lambda: records(caplog, logging.WARNING))
        assert not r.bot.listening()
        chat = await r.store.chat("telegram", str(USER))
        with pytest.raises(DeliveryError) as caught:
            await r.bot.send(chat, an_alert())
        assert not caught.value.permanent
        await fake.come_up()
        await until(r.bot.listening)
        assert fake.count("getMe") == 3
        fake.push("/help", chat_id=USER)
        await until(lambda: fake.texts(USER))
        assert await r.bot.send(chat, an_alert()) is not None
    assert not r.bot.listening()
    [warning] = records(caplog, logging.WARNING)  # one line for the whole outage
    assert "cannot connect" in warning
    assert records(caplog, logging.INFO) == ["telegram: answering as @tickerbell_test_bot"]


async def test_commands_come_back_after_a_burst_of_401s(
    tmp_path: Path, fake: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with rig(tmp_path / "u.db", fake) as r:
        polls = fake.count("getUpdates")
        fake.fail_method("getUpdates", Fault.UNAUTHORIZED, times=None)
        await until(lambda: not r.bot.listening())
        await until(lambda: fake.count("getUpdates") >= polls + 5)  # it keeps asking
        assert not r.bot.listening()
        fake.heal()
        await until(r.bot.listening)
        fake.push("/status XAG", chat_id=USER)
        await until(lambda: fake.texts(USER))
        assert plain(fake.texts(USER)[0]).startswith("XAG\n48.5")
    [warning] = records(caplog, logging.WARNING)
    assert warning.startswith("telegram: polling for updates failed")
    assert "telegram: receiving updates again" in records(caplog, logging.INFO)
    assert "Aborting" not in caplog.text


async def test_a_replica_polls_only_between_receive_and_stop_receiving(
    tmp_path: Path, fake: FakeTelegram
) -> None:
    """On PostgreSQL polling is the "telegram" role's: a replica connects to send, keeps the
    updates waiting (another replica may be about to take them), and polls only while it
    holds the role; an update sent meanwhile is answered once it does."""
    fake.push("/help", chat_id=USER)  # waiting before the replica starts
    async with rig(tmp_path / "r.db", fake, connected=False, polling=False) as r:
        chat = await r.store.chat("telegram", str(USER))
        await until(r.bot.ready)  # connected: it may send
        assert await r.bot.send(chat, an_alert()) is not None
        assert fake.count("getUpdates") == 0 and not r.bot.listening()
        await r.bot.receive()
        await until(lambda: len(fake.texts(USER)) == 2)  # the alert, then /help's answer
        await r.bot.stop_receiving()
        polls = fake.count("getUpdates")
        fake.push("/help", chat_id=USER)
        assert not r.bot.listening()
        await r.bot.receive()  # taken again
        await until(lambda: len(fake.texts(USER)) == 3)
        assert fake.count("getUpdates") > polls


@pytest.mark.parametrize("reachable", [True, False])
async def test_close_leaves_no_task_behind(
    tmp_path: Path, fake: FakeTelegram, caplog: pytest.LogCaptureFixture, reachable: bool
) -> None:
    before = asyncio.all_tasks()
    if not reachable:
        await fake.go_down()
    async with rig(tmp_path / "c.db", fake, connected=reachable) as r:
        if not reachable:
            await until(lambda: records(caplog, logging.WARNING))  # retrying in the background
    assert not r.bot.listening()
    await until(lambda: not asyncio.all_tasks() - before)  # the fake's connections end too
    assert "destroyed" not in caplog.text


# --- the pacing of sends ---


async def test_sends_are_paced_per_chat_per_group_and_overall() -> None:
    now = [0.0]
    ran: list[tuple[str, float]] = []

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = SendLimiter(Rates(10, 1, 30), lambda: now[0], sleep)

    async def call(endpoint: str, chat_id: int) -> None:
        async def callback() -> None:
            ran.append((f"{endpoint} {chat_id}", now[0]))

        await limiter.process_request(callback, (), {}, endpoint, {"chat_id": chat_id}, None)

    for endpoint, chat_id in [
        ("sendMessage", 5),
        ("sendMessage", 5),
        ("sendMessage", -7),
        ("sendMessage", -7),
        ("getChatMember", -7),
        ("sendPhoto", 6),
    ]:
        await call(endpoint, chat_id)
    second = 1 / SendLimiter.HEADROOM  # a little under each limit
    assert ran == [
        ("sendMessage 5", 0.0),
        ("sendMessage 5", pytest.approx(1 * second)),  # 1/s in a private chat
        ("sendMessage -7", pytest.approx(1.1 * second)),  # 10/s overall
        ("sendMessage -7", pytest.approx(3 * second)),  # 30/min in a group
        ("getChatMember -7", pytest.approx(3 * second)),  # not a message: not limited
        ("sendPhoto 6", pytest.approx(3.1 * second)),
    ]


async def test_photos_arriving_bunched_after_uneven_uploads_draw_no_429(tmp_path: Path) -> None:
    """Telegram counts a send when it has arrived, and a photo's upload takes uneven time: the
    first photos here take 0.3 s to arrive, the rest none, so sends spaced evenly at their start
    would arrive bunched. Real limits (30/s overall), enforced by the fake."""
    png = b"\x89PNG\r\n\x1a\n" + b"synthetic" * 10_000
    chats = [USER + i for i in range(45)]
    async with FakeTelegram(TOKEN, limits=Limits()) as fake:
        fake.slow_uploads = [0.3] * 15
        async with rig(tmp_path / "slow.db", fake, rates=Rates()) as r:
            stored = [await r.store.chat("telegram", str(c)) for c in chats]
            ids = await asyncio.gather(*(r.bot.send(c, an_alert(), image=png) for c in stored))
        assert fake.rate_limited == 0
        assert sorted(m.chat_id for m in fake.messages) == chats  # one photo each
        assert len(set(ids)) == len(chats)
        assert {m.method for m in fake.messages} == {"sendPhoto"}


# --- charts (issue 7) ---


async def test_an_alert_with_a_chart_goes_as_a_photo_with_its_caption(
    tmp_path: Path, fake: FakeTelegram
) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"synthetic" * 100
    async with rig(tmp_path / "p.db", fake) as r:
        chat = await r.store.chat("telegram", str(USER))
        assert await r.bot.send(chat, an_alert(), image=png) is not None
        # over the 1024-character caption limit
        long_caption = an_alert(Rule("X" * 1100, Condition.BELOW, 85000.0))
        assert await r.bot.send(chat, long_caption, image=png) is not None
    photos = [c for c in fake.calls if c.method == "sendPhoto"]
    assert len(photos) == 1
    assert photos[0].params["photo"] == f"<file {len(png)} bytes png>"
    assert plain(photos[0].params["caption"]).startswith("🔴▼ BTC fell below 85,000")
    assert [plain(t)[:1] for t in fake.texts(USER)] == ["🔴", "🔴"]  # the long one as text


class FeedWithHistory(ScriptedFeed):
    """The scripted feed plus 40 synthetic daily bars around its price."""

    async def candles(self, symbol: str, timeframe: str, since: datetime) -> list[Candle]:
        today = datetime.now(UTC).date()
        return [
            Candle(today - timedelta(days=40 - i), 48.0, 49.0 + i % 3, 47.0, 48.0 + i % 5 / 10)
            for i in range(40)
        ]


@pytest.mark.usefixtures("charts_warm")  # a cold first chart can outlast the wait
async def test_chart_command_answers_with_a_photo(tmp_path: Path, fake: FakeTelegram) -> None:
    async with rig(tmp_path / "c.db", fake):
        fake.push("/chart XAG 1d", chat_id=USER)
        await until(lambda: fake.count("sendMessage") == 1)
    # the plain scripted feed has no history: a short, specific answer instead of a picture
    assert "no price history for XAG yet" in plain(fake.texts(USER)[0])
    async with rig(tmp_path / "c2.db", fake, feed=FeedWithHistory()):
        fake.push("/chart XAG 1m", chat_id=USER)
        await until(lambda: fake.count("sendPhoto") == 1)
    [photo] = [c for c in fake.calls if c.method == "sendPhoto"]
    assert photo.params["photo"].endswith("png>")
    assert plain(photo.params["caption"]).startswith("XAG 1m: ")


# --- buttons under alerts ---


async def deliver_alert(r: Rig, fake: FakeTelegram, chat_id: int, age: timedelta = ZERO) -> int:
    """A rule `XAG above 50` of the chat and one alert of it, delivered; the message's id."""
    chat = await r.store.chat("telegram", str(chat_id), "private" if chat_id > 0 else "supergroup")
    rule = await r.store.add_rule(chat.id, "XAG above 50", "test", limit=50)
    alert = an_alert("XAG above 50", direction=Direction.UP, price=50.5, reference=50.0,
                     observed=50.5, time=datetime.now(UTC) - age)  # fmt: skip
    await r.store.commit_tick({}, [(rule, chat.id, alert)])
    before = len(fake.messages)
    await r.delivery.drain()
    assert len(fake.messages) == before + 1
    return fake.messages[-1].message_id


async def test_buttons_snooze_once_refuse_tampering_and_remove(
    tmp_path: Path, fake: FakeTelegram
) -> None:
    async with rig(tmp_path / "b.db", fake) as r:
        message = await deliver_alert(r, fake, USER)
        buttons = fake.keyboard(message)
        assert [label for label, _ in buttons] == ["Snooze 1h", "Mute rule", "Remove", "Chart"]
        assert all(len(data.encode()) <= 64 and "XAG" not in data for _, data in buttons)
        # a double press: two callback queries for one button before the first is answered
        first = fake.press(message, "Snooze 1h", user_id=USER, username="ann")
        second = fake.press(message, "Snooze 1h", user_id=USER, username="ann")
        await until(lambda: fake.answer_to(first) and fake.answer_to(second) and fake.edits)
        answers = {fake.answer_to(first), fake.answer_to(second)}
        [note] = [a for a in answers if a and a.startswith("Snoozed until ")]
        assert note.endswith(" UTC by @ann") and "Snooze 1h: done already." in answers
        [edit] = fake.edits
        assert edit.method == "editMessageText" and edit.text is not None
        assert plain(edit.text).endswith("\n" + note)
        assert [label for label, _ in fake.keyboard(message)] == ["Mute rule", "Remove", "Chart"]
        [rule] = await r.store.rules()
        assert rule.snoozed_until is not None
        left = rule.snoozed_until - datetime.now(UTC)
        assert timedelta(minutes=59) < left <= timedelta(hours=1)
        # tampered with: another row's number, or a changed signature
        remove = dict(buttons)["Remove"]
        forged = [
            remove.replace(".", "0.", 1),
            remove[:-2] + ("AA" if remove[-2:] != "AA" else "BB"),
        ]
        for data in forged:
            query = fake.press(message, "Remove", user_id=USER, data=data)
            await until(lambda q=query: fake.answer_to(q))
            assert fake.answer_to(query) in (
                "that button does not check out; use the commands (see /alerts).",
                "that button has expired; use the commands (see /alerts).",
            )
        assert len(await r.store.rules()) == 1 and len(fake.edits) == 1
        removed = fake.press(message, "Remove", user_id=USER)
        await until(lambda: fake.answer_to(removed) and len(fake.edits) == 2)
        assert fake.answer_to(removed) == f"Removed by User{USER}"
        assert await r.store.rules() == []
        assert [label for label, _ in fake.keyboard(message)] == ["Chart"]
        assert plain(fake.shown(message)).endswith(f"Removed by User{USER}")
        # a replay of a used button does nothing more
        replay = fake.press(message, "Remove", user_id=USER, data=remove)
        await until(lambda: fake.answer_to(replay))
        assert fake.answer_to(replay) == "Remove: done already."
        assert len(fake.edits) == 2
        # a button on an alert a week and more old is stale
        old = await deliver_alert(r, fake, USER, age=timedelta(days=8))
        stale = fake.press(old, "Snooze 1h", user_id=USER)
        await until(lambda: fake.answer_to(stale))
        assert fake.answer_to(stale) == "that button has expired; use the commands (see /alerts)."
        assert len(fake.edits) == 2 and len(fake.answers) == 7


@pytest.mark.usefixtures("charts_warm")  # a cold first chart can outlast the wait
async def test_buttons_in_a_group_admins_change_everyone_charts(
    tmp_path: Path, fake: FakeTelegram
) -> None:
    fake.admins[GROUP] = {ADMIN: "administrator"}
    async with rig(tmp_path / "bg.db", fake) as r:
        now = datetime.now(UTC)
        r.bot.commands.view.market.restore(
            [Quote("XAG", 48 + i / 5, now - timedelta(minutes=40 - i)) for i in range(40)]
        )
        message = await deliver_alert(r, fake, GROUP)
        refused = fake.press(message, "Mute rule", user_id=MEMBER, username="bob")
        await until(lambda: fake.answer_to(refused))
        assert fake.answer_to(refused) == (
            "only admins change alerts in a group; everyone can use /status and /alerts."
        )
        assert fake.edits == [] and (await r.store.rules())[0].snoozed_until is None
        muted = fake.press(message, "Mute rule", user_id=ADMIN, username="boss")
        await until(lambda: fake.answer_to(muted) and fake.edits)
        assert fake.answer_to(muted) == "Muted by @boss (/snooze 1 off to resume)"
        assert [label for label, _ in fake.keyboard(message)] == ["Remove", "Chart"]
        [rule] = await r.store.rules()
        assert rule.snoozed_until is not None and rule.snoozed_until.year == 9999
        chart = fake.press(message, "Chart", user_id=MEMBER, username="bob")  # a read
        await until(lambda: fake.answer_to(chart))
        assert fake.answer_to(chart) == "XAG chart for @bob"
        await until(lambda: fake.count("sendPhoto") == 1)
        [photo] = [m for m in fake.messages if m.method == "sendPhoto"]
        assert photo.reply_to == message and photo.chat_id == GROUP
        await until(lambda: len(fake.edits) == 2)
        assert fake.edits[-1].method == "editMessageReplyMarkup"
        assert [label for label, _ in fake.keyboard(message)] == ["Remove"]
        assert plain(fake.shown(message)).endswith("Muted by @boss (/snooze 1 off to resume)")


@pytest.mark.usefixtures("charts_warm")  # a cold first chart can outlast the wait
async def test_chart_with_no_history_keeps_its_button_and_remove_keeps_chart(
    tmp_path: Path, fake: FakeTelegram
) -> None:
    """Chart pressed before there is history to draw: told so, and the button stays; Remove
    then takes the rule's buttons only; once there is history, Chart draws."""
    async with rig(tmp_path / "nh.db", fake) as r:
        message = await deliver_alert(r, fake, USER)
        early = fake.press(message, "Chart", user_id=USER)
        await until(lambda: fake.count("sendMessage") == 2)
        assert fake.answer_to(early) is not None
        assert plain(fake.texts(USER)[-1]).startswith("no price history for XAG yet")
        assert [label for label, _ in fake.keyboard(message)] == [
            *("Snooze 1h", "Mute rule", "Remove", "Chart")
        ]
        removed = fake.press(message, "Remove", user_id=USER)
        await until(lambda: fake.answer_to(removed) and fake.edits)
        assert await r.store.rules() == []
        assert [label for label, _ in fake.keyboard(message)] == ["Chart"]
        now = datetime.now(UTC)
        r.bot.commands.view.market.restore(
            [Quote("XAG", 48 + i / 5, now - timedelta(minutes=40 - i)) for i in range(40)]
        )
        fake.press(message, "Chart", user_id=USER)
        await until(lambda: fake.count("sendPhoto") == 1)
        await until(lambda: fake.keyboard(message) == ())


async def test_an_alert_with_its_chart_has_no_chart_button_and_its_caption_is_edited(
    tmp_path: Path, fake: FakeTelegram
) -> None:
    async with rig(tmp_path / "bp.db", fake) as r:
        chat = await r.store.chat("telegram", str(USER))
        rule = await r.store.add_rule(chat.id, "BTC below 85000", "test", limit=50)
        alert = an_alert(time=datetime.now(UTC))
        await r.store.commit_tick({}, [(rule, chat.id, alert)])
        [row] = await r.store.pending()
        png = b"\x89PNG\r\n\x1a\n" + b"synthetic" * 100
        message = int(await r.bot.send(chat, alert, image=png, ref=Ref(row.id, rule)) or 0)
        assert [label for label, _ in fake.keyboard(message)] == [
            "Snooze 1h",
            "Mute rule",
            "Remove",
        ]
        removed = fake.press(message, "Remove", user_id=USER, username="ann")
        await until(lambda: fake.answer_to(removed) and fake.edits)
        [edit] = fake.edits
        assert edit.method == "editMessageCaption" and edit.keyboard == ()
        assert plain(fake.shown(message)).endswith("\nRemoved by @ann")
        assert await r.store.rules() == []


# --- the daily digest ---

TV_POST = json.dumps(  # a TradingView alert's JSON message, long and on several lines
    {"ticker": "BTCUSDT", "message": "BTC crossed 90000\nclose 90012.5" + " and more" * 60}
).encode()


@pytest.mark.usefixtures("charts_warm")  # a cold first chart can outlast the wait
async def test_a_chat_sets_a_digest_and_gets_it_at_its_local_time(
    tmp_path: Path, fake: FakeTelegram
) -> None:
    """Through the fake Bot API with a synthetic clock: /digest, then at 08:00 London time
    the digest (the rotation, the day's alerts, the chart) arrives as one photo."""
    clock = Clock()
    clock.now = datetime(2026, 3, 2, 7, 58, tzinfo=UTC)  # Monday, GMT
    venue = ScriptedVenue(clock)
    venue.prices.update({"BTC/USDT": 86000.0, "ETH/USDT": 4000.0, "XAU/USD": 4100.0})
    venue.prices["XAG/USD"] = 52.0
    for native, price in venue.prices.items():  # synthetic daily history: a slow climb
        start = clock.now.date() - timedelta(days=90)
        venue.history[native] = [
            Candle(start + timedelta(days=i), price, price, price, price * (0.85 + i / 600))
            for i in range(90)
        ]
    async with Store.open(tmp_path / "digest.db", clock=clock) as store:
        delivery = Delivery(store, {}, clock=clock, interval=0.05)
        service = make_service(store, delivery, venue, clock, digest_every=0.05)
        delivery.digests = Digests(store, service.data, ChartCache(), clock)
        bot = TelegramBot(
            token=TOKEN,
            base_url=fake.base_url,
            commands=Commands(store, service.data, clock=clock),
            store=store,
            rates=FAST,
            reconnect_base=0.05,
            reconnect_cap=0.2,
        )
        delivery.notifiers[bot.name] = bot
        delivering = asyncio.create_task(delivery.run())
        try:
            await bot.start()
            await until(bot.listening)
            await service.start()
            fake.push("/digest 08:00 Europe/London", chat_id=USER)
            await until(lambda: fake.texts(USER))
            assert plain(fake.texts(USER)[0]) == (
                "Daily digest set: 08:00 Europe/London, every day. The next: Mon 2 Mar 08:00 "
                "GMT.\nTurn it off with /digest off."
            )
            chat = await store.find_chat("telegram", str(USER))
            assert chat is not None
            await enqueue(store, chat, an_alert(time=clock.now))  # fired at 07:58
            await until(lambda: len(fake.texts(USER)) == 2)
            clock.tick(30)  # a TradingView post of many lines (no rule, no chart of ours)
            await enqueue(store, chat, alert_of(parse(TV_POST, "application/json"), clock.now))
            await until(lambda: len(fake.texts(USER)) == 3)
            clock.now = datetime(2026, 3, 2, 8, tzinfo=UTC)
            await until(lambda: len(fake.texts(USER)) == 4, timeout=15)
        finally:
            await service.stop()
            delivery.stop()
            await delivering
            await bot.close()
    digest = fake.messages[-1]
    assert digest.method == "sendPhoto" and digest.parse_mode == "HTML"
    assert fake.keyboard(digest.message_id) == ()  # a digest has no buttons
    tradingview = fake.messages[-2]
    assert plain(tradingview.text).startswith("🔔 BTCUSDT BTC crossed 90000\nclose 90012.5")
    assert tradingview.method == "sendMessage" and fake.keyboard(tradingview.message_id) == ()
    assert [label for label, _ in fake.keyboard(fake.messages[-3].message_id)] == ["Chart"]
    text = plain(digest.text)
    assert text.startswith("Daily digest, Mon 2 Mar 2026\nXAU/XAG ratio 78.85\nXAU/BTC ratio")
    assert "Alerts here in the 24 hours before (2):\n07:58 UTC BTC fell below 85,000" in text
    listed = next(line for line in text.splitlines() if line.startswith("07:58 UTC BTCUSDT"))
    assert listed.startswith("07:58 UTC BTCUSDT BTC crossed 90000 close 90012.5 and ")
    assert listed.endswith(" …") and len(listed) < LISTED_NOTE + 20  # one line, cut short
    assert "\nXAU/XAG " in text.split("Alerts here")[1]  # the table, ratios' changes included
    photo = [c for c in fake.calls if c.method == "sendPhoto"][-1]
    assert photo.params["photo"].endswith("bytes png>")


async def test_a_digest_too_long_for_a_caption_goes_as_text_then_the_chart(
    tmp_path: Path, fake: FakeTelegram
) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"synthetic" * 100
    lines = tuple(f"07:{n:02d} UTC XAG <rose> above {n}" for n in range(40))  # ~1,300 chars
    async with rig(tmp_path / "long.db", fake) as r:
        chat = await r.store.chat("telegram", str(USER))
        first = await r.bot.post(chat, Reply(lines, title="Daily digest", image=png))
        short = await r.bot.post(chat, Reply(lines[:2], title="Daily digest", image=png))
    sent = [(m.method, plain(m.text)[:28]) for m in fake.messages]
    assert sent == [
        ("sendMessage", "Daily digest\n07:00 UTC XAG <"),
        ("sendPhoto", ""),
        ("sendPhoto", "Daily digest\n07:00 UTC XAG <"),
    ]
    assert first == str(fake.messages[0].message_id) and short is not None
    assert all(fake.keyboard(m.message_id) == () for m in fake.messages)
    assert "&lt;rose&gt;" in fake.messages[0].text
