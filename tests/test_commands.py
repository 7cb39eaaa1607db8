"""The command layer over a real service and store (scripted venue, synthetic prices)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from fake_dns import FakeDns
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.scripted import T0, Clock, ScriptedVenue, an_alert, service

from alerts import rules
from alerts.models import Candle
from bot import actions
from bot.actions import Ref, Signer
from bot.commands import Caller, Commands
from bot.render import plain, split_messages, telegram_html
from bot.replies import CONSOLE as CONSOLE_SPELLING
from bot.replies import Reply, reply
from bot.results import (
    Action,
    AdminsOnly,
    AlertAdded,
    AlreadyDone,
    BadButton,
    Command,
    Duplicate,
    Help,
    Muted,
    Nearby,
    NoSuchAlert,
    Pressed,
    Problem,
    Removed,
    Snoozed,
    StaleButton,
    Status,
    TooFast,
    Usage,
)
from bot.wording import sentence
from storage.api import DigestDue
from storage.db import Store
from tickerbell.market_data import MarketData
from tickerbell.service import Service
from tickerbell.webhook_in import alert_of, parse

ME = Caller("telegram", "42", "private", "u1")
GROUP_ADMIN = Caller("telegram", "-7", "supergroup", "u1", is_admin=True)
GROUP_MEMBER = Caller("telegram", "-7", "supergroup", "u2", is_admin=False)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[Commands, Store, ScriptedVenue, Clock]]:
    clock = Clock()
    venue = ScriptedVenue(clock)
    venue.prices.update(
        {"BTC/USDT": 86000.0, "ETH/USDT": 4000.0, "XAU/USD": 4100.0, "XAG/USD": 52.0}
    )
    for native, price in venue.prices.items():  # synthetic daily history: a slow climb
        start = clock.now.date() - timedelta(days=120)
        venue.history[native] = [
            Candle(start + timedelta(days=i), price * (0.8 + i / 600), price * (0.81 + i / 600),
                   price * (0.79 + i / 600), price * (0.8 + i / 600))
            for i in range(120)
        ]  # fmt: skip
    async with service(None, clock, venue) as (svc, store, _):  # the in-memory store
        yield (
            Commands(store, svc.data, rules_per_chat=3, commands_per_minute=30, clock=clock),
            store,
            venue,
            clock,
        )


async def say(cmds: Commands, text: str, caller: Caller = ME) -> str:
    return plain(await cmds.handle(caller, text))


async def test_alert_list_remove_round_trip(
    env: tuple[Commands, Store, ScriptedVenue, Clock],
) -> None:
    cmds, _, _, _ = env
    assert (
        await say(cmds, "/alert btc below 85k cooldown 60m")
        == "Alert #1 set: BTC below 85000 cooldown 1h"
    )
    assert await say(cmds, "/alert@TickerbellBot GOLD above 5000") == "Alert #2 set: XAU above 5000"
    listing = await say(cmds, "/alerts")
    # each learned where the price is when it was set (86,000 and 5,000 at the scripted venue)
    assert "#1  BTC below 85000 cooldown 1h  armed" in listing and "#2  XAU above 5000" in listing
    assert await say(cmds, "/remove 1") == "Removed alert #1."
    assert await say(cmds, "/remove 1") == "no alert #1 here — see /alerts."
    assert "removes all 1 alert here" in await say(cmds, "/remove all")
    assert await say(cmds, "/remove all confirm") == "Removed 1 alert."
    assert await say(cmds, "/alerts") == "No alerts yet. Add one, e.g. /alert XAG above 50"


async def test_alert_that_is_already_true_says_so(
    env: tuple[Commands, Store, ScriptedVenue, Clock],
) -> None:
    cmds, _, _, _ = env
    await say(cmds, "/status BTC")  # fetches BTC once: 86,000
    reply = await say(cmds, "/alert BTC above 80000")
    assert reply.endswith("That is already true now (86,000): it fires on the next crossing.")
    listing = await say(cmds, "/alerts")
    assert "#1  BTC above 80000  already true, waiting for the next crossing" in listing


async def test_status(env: tuple[Commands, Store, ScriptedVenue, Clock]) -> None:
    cmds, _, _, _ = env
    await say(cmds, "/alert BTC below 85000")
    text = await say(cmds, "/status btc")
    # synthetic history: yesterday closed at 86000 x 0.99833, the 20 bars before today span
    # 86000 x 0.95667 .. 86000 x 1.00833
    assert text.splitlines() == [
        "BTC",
        "86,000 (+0.17% today)",
        "20-day range 82,273.33 – 86,716.67",
        "alert BTC below 85000: -1.16% away",
        "ccxt:binance BTC/USDT, quote 0s old",
    ]


async def test_full_width_text_reads_as_ascii(
    env: tuple[Commands, Store, ScriptedVenue, Clock],
) -> None:
    """As an East Asian keyboard may type it: in chat, and as a typed operation's arguments
    (Discord's slash-command options)."""
    cmds, store, _, _ = env
    assert (await say(cmds, "/status ＢＴＣ")).startswith("BTC\n86,000")
    assert await say(cmds, "/alert ＢＴＣ ａｂｏｖｅ ９００００") == "Alert #1 set: BTC above 90000"
    # a superscript is not folded into 52
    assert await say(cmds, "/alert BTC below 5²") == "'5²' is not a price. e.g. XAG above 50"
    status = await cmds.status(ME, "ｂｔｃ")
    assert isinstance(status, Status) and status.symbol == "BTC"
    added = await cmds.add_alert(ME, "ＥＴＨ ｂｅｌｏｗ ３９００")
    assert isinstance(added, AlertAdded) and added.rule == "ETH below 3900"
    assert [r.text for r in await store.rules()] == ["BTC above 90000", "ETH below 3900"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "commands start with '/'"),
        ("hello", "commands start with '/'"),
        ("/alrets", "did you mean /alerts?"),
        ("/alert", "usage: /alert RULE, e.g. /alert XAG above 50"),
        ("/alert XAG abov 50", "did you mean 'above'?"),
        ("/alert BTX above 5", "unknown symbol 'BTX' — did you mean BTC"),
        ("/status", "usage: /status SYM, e.g. /status BTC"),
        ("/status BTC ETH", "usage: /status SYM"),
        ("/status XAU/XAG", "'XAU/XAG' is a pair; give one symbol"),
        ("/chart BTX", "unknown symbol 'BTX' — did you mean BTC"),
        ("/subscribe <b>", "'<b>' is not a valid symbol"),
        ("/remove", "usage: /remove ID"),
        ("/remove abc", "usage: /remove ID"),
        ("/remove 99999999999999999999", "usage: /remove ID"),
        ("/mute 2x", "is not a duration"),
        ("/mute 1h 2h", "usage: /mute [DURATION]"),
        ("/subscribe", "usage: /subscribe SYM|all"),
        ("/unmute now", "usage: /unmute"),
        ("/snooze", "usage: /snooze ID DURATION|forever|off (see /alerts), e.g. /snooze 3 1h"),
        ("/snooze 1", "usage: /snooze ID"),
        ("/snooze x 1h", "usage: /snooze ID"),
        ("/snooze 1 2x", "usage: /snooze ID"),
        ("/snooze 1 1h 2h", "usage: /snooze ID"),
    ],
)
async def test_malformed_commands_get_a_usage_reply(
    env: tuple[Commands, Store, ScriptedVenue, Clock], text: str, needle: str
) -> None:
    cmds, store, _, _ = env
    reply = await cmds.handle(ME, text)
    assert not reply.ok and needle in plain(reply)
    assert await store.rules() == []


async def test_rule_limit(env: tuple[Commands, Store, ScriptedVenue, Clock]) -> None:
    cmds, _, _, _ = env
    for level in (1, 2, 3):
        await say(cmds, f"/alert ETH above {level}000")
    assert "the limit is 3" in await say(cmds, "/alert ETH above 9000")


async def test_group_permissions(env: tuple[Commands, Store, ScriptedVenue, Clock]) -> None:
    cmds, store, _, _ = env
    refused = await cmds.handle(GROUP_MEMBER, "/alert BTC below 85000")
    assert not refused.ok and "only admins" in plain(refused)
    assert await store.find_chat("telegram", "-7") is None  # nothing written
    assert (await cmds.handle(GROUP_ADMIN, "/alert BTC below 85000")).ok
    assert (await cmds.handle(GROUP_MEMBER, "/alerts")).ok
    assert (await cmds.handle(GROUP_MEMBER, "/status BTC")).ok


async def test_mute_subscribe(env: tuple[Commands, Store, ScriptedVenue, Clock]) -> None:
    cmds, _, _, clock = env
    assert await say(cmds, "/unmute") == "Alerts were not muted: they are on."
    assert await say(cmds, "/mute 2h") == (
        "Muted until 2026-03-02 14:00 UTC. Alerts meanwhile are kept in the history, not sent."
    )
    assert await say(cmds, "/unmute") == "Alerts are on again."
    assert await say(cmds, "/unmute") == "Alerts were not muted: they are on."
    await say(cmds, "/mute 1h")
    clock.now += timedelta(hours=2)  # the mute ran out by itself
    assert await say(cmds, "/unmute") == "Alerts were not muted: they are on."
    assert await say(cmds, "/subscribe silver") == "Subscribed to XAG."
    assert await say(cmds, "/subscribe XAG") == "Already subscribed to XAG."
    assert await say(cmds, "/unsubscribe") == "Unsubscribed (1)."


async def test_commands_per_minute(env: tuple[Commands, Store, ScriptedVenue, Clock]) -> None:
    cmds, _, _, clock = env
    for _ in range(30):
        assert (await cmds.handle(ME, "/help")).ok
    assert "slow down" in await say(cmds, "/help")
    clock.tick(61)
    assert (await cmds.handle(ME, "/help")).ok


junk = st.one_of(
    st.text(max_size=300),
    st.text(min_size=1, max_size=50).map(lambda t: "/alert " + t * 200),  # up to 10k chars
    st.lists(
        st.sampled_from(
            ["/alert", "/remove", "/status", "/mute", "/subscribe", "BTC", "XAG", "above", "1e308",
             "99999999999999999999999", "<b>", "&amp;", "all", "confirm", "-5", "💥", "\x00", "50k"]
        ),
        max_size=8,
    ).map(" ".join),
)  # fmt: skip


async def test_a_press_on_a_daily_digest_s_row_is_refused(
    env: tuple[Commands, Store, ScriptedVenue, Clock],
) -> None:
    cmds, store, _, clock = env
    await say(cmds, "/digest 12:00 UTC")
    chat = await store.chat("telegram", "42")
    assert await store.enqueue_digest(chat.id, DigestDue(clock.now.date(), clock.now))
    [row] = await store.pending()
    signer = Signer(bytes.fromhex(await store.secret(actions.SECRET_NAME)))
    for action in Action:  # well signed over the digest's time: still no button of it works
        data = signer.data("telegram", "42", row.id, action, clock.now)
        assert await cmds.press(ME, data, "@me") == BadButton()
    assert await store.outbox_row(row.id) == row and row.actions == frozenset()


async def test_a_tradingview_post_has_no_buttons_and_a_press_on_one_is_refused(
    env: tuple[Commands, Store, ScriptedVenue, Clock],
) -> None:
    cmds, store, _, clock = env
    chat = await store.chat("telegram", "42")
    post = alert_of(parse(b"BTC crossed 90000"), clock.now)
    await store.commit_tick({}, [(None, chat.id, post)])
    [row] = await store.pending()
    assert await cmds.buttons(chat, Ref(row.id, None), post, has_chart=False) == []
    signer = Signer(bytes.fromhex(await store.secret(actions.SECRET_NAME)))
    for action in Action:  # well signed: still no button of it works (no rule, no chart)
        data = signer.data("telegram", "42", row.id, action, clock.now)
        assert await cmds.press(ME, data, "@me") == BadButton()
    assert await store.outbox_row(row.id) == row and row.actions == frozenset()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=junk)
async def test_any_text_gets_a_reply_and_never_an_invalid_rule(
    env: tuple[Commands, Store, ScriptedVenue, Clock], text: str
) -> None:
    cmds, store, _, clock = env
    clock.tick(3)  # stay under the per-minute limit
    reply = await cmds.handle(ME, text)
    assert isinstance(reply, Reply) and (reply.lines or reply.table)
    for part in telegram_html(reply):
        assert len(part) <= 4096
    for stored in await store.rules():
        assert rules.format(rules.parse(stored.text)) == stored.text


def test_long_replies_split_on_line_boundaries() -> None:
    rows = tuple((f"#{i}", "XAG above 50 " + "x" * 60, "armed") for i in range(200))
    parts = telegram_html(Reply((), title="many", table=rows))
    assert len(parts) > 1
    for part in parts:
        assert len(part) <= 4096
        assert part.count("<pre>") == part.count("</pre>")
    assert split_messages("a\nb", limit=10) == ["a\nb"]
    assert telegram_html(Reply(("1 < 2 & 3 > 2",))) == ["1 &lt; 2 &amp; 3 &gt; 2"]


async def test_chart_rotation_and_the_charts_switch(
    env: tuple[Commands, Store, ScriptedVenue, Clock],
) -> None:
    from PIL import Image

    cmds, store, _, _ = env
    await say(cmds, "/alert XAU above 4200")
    reply = await cmds.handle(ME, "/chart gold 3m")
    assert reply.ok and reply.image is not None
    assert Image.open(io.BytesIO(reply.image)).size == (1200, 700)
    assert plain(reply).startswith("XAU 3m: ")
    again = await cmds.handle(ME, "/chart XAU 3m")
    assert again.image == reply.image and cmds.charts.renders == 1  # same minute: reused
    assert "usage: /chart SYM" in await say(cmds, "/chart XAU 5y")
    rotation = await cmds.handle(ME, "/rotation")
    assert rotation.image is not None
    table = plain(rotation)
    assert "XAU/XAG ratio 78.85" in table and "XAU/BTC ratio" in table
    assert [row[0] for row in rotation.table] == [
        "",
        *("XAU", "XAG", "BTC", "ETH"),
        *("XAU/XAG", "XAU/BTC"),  # the ratios' changes
    ]
    assert await say(cmds, "/charts off") == "Alerts here are text only."
    chat = await store.find_chat("telegram", "42")
    assert chat is not None and not chat.charts


@pytest.mark.parametrize("text", ["/remove ①", "/remove ²", "/remove #٣", "/remove 1٣"])
async def test_remove_with_digits_that_are_not_ascii_gets_the_usage(
    env: tuple[Commands, Store, ScriptedVenue, Clock], text: str
) -> None:
    cmds, _, _, _ = env
    reply = await cmds.handle(ME, text)
    assert not reply.ok and plain(reply) == "usage: /remove ID (see /alerts), e.g. /remove 3"


async def test_an_alert_that_has_already_expired_is_refused_and_not_stored(
    env: tuple[Commands, Store, ScriptedVenue, Clock],
) -> None:
    cmds, store, _, _ = env
    reply = await cmds.handle(ME, "/alert BTC above 90002 expires 2001-01-01")
    assert not reply.ok
    assert plain(reply) == (
        "that rule expired on 2001-01-01; give a later day, e.g. "
        "/alert BTC above 90002 expires 2027-12-31"
    )
    assert await store.rules() == []


async def test_an_unknown_command_is_echoed_without_control_or_direction_characters(
    env: tuple[Commands, Store, ScriptedVenue, Clock],
) -> None:
    cmds, _, _, _ = env
    reply = plain(await cmds.handle(ME, "/ab\u202ecd\x1b[31mef\u0007"))
    assert reply.startswith("unknown command '/abcd[31mef'")
    assert not any(ch in reply for ch in "\u202e\x1b\u0007")


async def test_counts_are_singular_for_one(
    env: tuple[Commands, Store, ScriptedVenue, Clock],
) -> None:
    cmds, _, _, _ = env
    await say(cmds, "/alert BTC below 85000")
    assert (await say(cmds, "/alerts")).startswith("1 alert\n")
    await say(cmds, "/alert ETH above 5000")
    assert (await say(cmds, "/alerts")).startswith("2 alerts\n")


ELSEWHERE = Caller("telegram", "43", "private", "u3")
CONSOLE = Caller("console", "console", "console", "console")


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("/alert btc > 90k", "BTC above 90000"),
        ("/alert ETH<=3500", "ETH below 3500"),
        ("/alert BTC crosses 87000", "BTC crosses 87000"),
        ("/alert gold/silver ratio below 75", "XAU/XAG below 75"),
        ("/alert btc < sma 200d", "BTC below ma 200d"),
        ("/alert ETH above ema 21d", "ETH above ema 21d"),
        ("/alert XAU crosses ma 50d", "XAU crosses ma 50d"),
        ("/alert btc RSI 14 > 70", "BTC rsi 14d above 70"),
    ],
)
async def test_the_forms_traders_type_are_stored_canonically(
    env: tuple[Commands, Store, ScriptedVenue, Clock], text: str, stored: str
) -> None:
    cmds, store, _, _ = env
    assert await say(cmds, text) == f"Alert #1 set: {stored}"
    assert [r.text for r in await store.rules()] == [stored]


async def test_a_duplicate_is_refused_with_the_existing_id(
    env: tuple[Commands, Store, ScriptedVenue, Clock],
) -> None:
    cmds, store, _, _ = env
    await say(cmds, "/alert BTC below 85000")
    await say(cmds, "/alert ETH rsi 14d above 70")
    for again, text in (
        ("/alert btc < 85k", "BTC below 85000"),
        ("/alert ETH RSI 14 > 70", "ETH rsi 14d above 70"),
    ):
        reply = await cmds.handle(ME, again)
        rule_id = 1 if text.startswith("BTC") else 2
        assert not reply.ok
        assert plain(reply) == f"alert #{rule_id} here is already {text} (see /alerts)."
    assert len(await store.rules()) == 2
    assert await say(cmds, "/alert BTC below 85000 cooldown 1h") == (
        "Alert #3 set: BTC below 85000 cooldown 1h"  # another rule: its options differ
    )
    assert await say(cmds, "/alert BTC below 85000", ELSEWHERE) == "Alert #4 set: BTC below 85000"


async def test_a_level_far_from_the_price_asks_for_a_confirmation(
    env: tuple[Commands, Store, ScriptedVenue, Clock],
) -> None:
    cmds, store, _, _ = env  # BTC 86,000, ETH 4,000
    cases = {
        "/alert BTC above 1m": (
            "BTC is 86,000 now and 1,000,000 is more than 10x that, so nothing is stored yet. "
            "If you mean it, send /alert BTC above 1000000 confirm"
        ),
        "/alert btc below 8k confirm 3": (
            "BTC is 86,000 now and 8,000 is less than a tenth of that, so nothing is stored yet. "
            "If you mean it, send /alert BTC below 8000 confirm 3 confirm"
        ),
        "/alert ETH/BTC crosses 1": (
            "ETH/BTC ratio is 0.04651 now and 1 is more than 10x that, so nothing is stored "
            "yet. If you mean it, send /alert ETH/BTC crosses 1 confirm"
        ),
    }
    for text, asked in cases.items():
        reply = await cmds.handle(ME, text)
        assert reply.ok and plain(reply) == asked
    assert await store.rules() == []
    console = plain(await cmds.handle(CONSOLE, "/alert BTC above 1m", CONSOLE_SPELLING))
    assert console.endswith('send tickerbell alert add "BTC above 1000000 confirm"')
    assert await say(cmds, "/alert BTC above 1m confirm") == "Alert #1 set: BTC above 1000000"
    assert await say(cmds, "/alert BTC below 8k confirm 3 confirm") == (
        "Alert #2 set: BTC below 8000 confirm 3"  # `confirm 3` still counts observations
    )
    assert await say(cmds, "/alert BTC above 800k") == "Alert #3 set: BTC above 800000"  # 9.3x
    assert [r.text for r in await store.rules()] == [
        "BTC above 1000000",
        "BTC below 8000 confirm 3",
        "BTC above 800000",
    ]
    assert "usage: /alert RULE" in await say(cmds, "/alert confirm")


async def test_moving_average_and_rsi_alerts_fire_in_the_live_service(
    env: tuple[Commands, Store, ScriptedVenue, Clock],
) -> None:
    """The env's history is a slow climb: BTC's 20-day MA is 86,000 x 0.9825 = 84,495 and its
    RSI near 100 (no down day). A drop to 84,000 crosses the MA; to 80,000 also sends the
    14-day RSI under 30 (by hand: gain 143.33 x 13/14, loss 5,856.67 / 14: RSI 24.1)."""
    cmds, store, venue, clock = env
    assert await say(cmds, "/alert BTC crosses ma 20d") == "Alert #1 set: BTC crosses ma 20d"
    assert await say(cmds, "/alert BTC rsi 14d below 30") == "Alert #2 set: BTC rsi 14d below 30"
    data = cmds.view
    assert isinstance(data, MarketData)  # the live service ticks over the commands' market data
    service = Service(store, data, band=0.0025, poll_interval=lambda source: 10.0)
    for price in (86000.0, 84000.0, 80000.0):
        venue.prices["BTC/USDT"] = price
        await service.poll("ccxt:binance")
        clock.tick()
    messages = [sentence(row.alert) for row in await store.pending()]
    assert messages == [
        "BTC crossed below its 20-day MA 84,495 (now 84,000)",
        "BTC 14-day RSI fell below 30 (24.1, now 80,000)",
    ]


async def test_a_group_caller_whose_rights_are_unknown_is_refused_a_write(
    env: tuple[Commands, Store, ScriptedVenue, Clock],
) -> None:
    cmds, store, _, _ = env
    unknown = Caller("telegram", "-9", "supergroup", "u9")  # the adapter said nothing
    assert not (await cmds.handle(unknown, "/alert BTC below 85000")).ok
    assert (await cmds.handle(Caller("telegram", "9", "private", "u9"), "/alerts")).ok
    assert await store.rules() == []


# --- the typed operations: what Discord calls, behind the same gate as chat text ---


async def test_typed_operations_return_typed_results(
    env: tuple[Commands, Store, ScriptedVenue, Clock],
) -> None:
    cmds, store, _, clock = env
    added = await cmds.add_alert(ME, "btc below 85k")
    assert added == AlertAdded(1, "BTC below 85000")
    assert await cmds.add_alert(ME, rules.parse("BTC below 85000")) == Duplicate(
        1, "BTC below 85000"
    )
    status = await cmds.status(ME, "btc")
    assert isinstance(status, Status) and status.price == 86000.0
    assert status.nearest == (Nearby("BTC below 85000", (85000 / 86000 - 1) * 100),)
    assert await cmds.mute(ME, timedelta(hours=2)) == Muted(clock.now + timedelta(hours=2))
    problem = await cmds.mute(ME, "2x")
    assert isinstance(problem, Problem) and "is not a duration" in problem.message
    assert await cmds.remove(ME, "#1") == Removed(1)
    assert await cmds.remove_alert(ME, 1) == NoSuchAlert(1)
    assert await cmds.chart(ME, "XAU", "5y") == Usage(Command.CHART)
    assert await store.rules() == []


async def test_the_gate_holds_for_typed_calls(
    env: tuple[Commands, Store, ScriptedVenue, Clock],
) -> None:
    cmds, store, _, clock = env
    assert await cmds.add_alert(GROUP_MEMBER, "BTC below 85000") == AdminsOnly()
    assert await cmds.invalid(GROUP_MEMBER, cmds.unmute, Command.UNMUTE) == AdminsOnly()
    assert await cmds.invalid(GROUP_MEMBER, cmds.rotation, Command.ROTATION) == Usage(
        Command.ROTATION
    )
    assert isinstance(await cmds.status(GROUP_MEMBER, "BTC"), Status)
    assert await store.find_chat("telegram", "-7") is None
    for _ in range(30 - 4):  # typed calls and chat text count toward one limit
        assert (await cmds.handle(GROUP_MEMBER, "/help")).ok
    assert await cmds.help(GROUP_MEMBER) == TooFast(30)
    clock.tick(61)
    assert await cmds.help(GROUP_MEMBER) == Help()


async def test_a_write_says_so_at_once_and_a_read_does_not(tmp_path: Path) -> None:
    """`changed` is how the running service hears of this process's writes without waiting
    for its timed re-read of the rules."""
    from support.scripted import service

    clock = Clock()
    calls: list[str] = []
    async with service(tmp_path / "w.db", clock, ScriptedVenue(clock)) as (svc, store, _):
        cmds = Commands(store, svc.data, clock=clock, changed=lambda: calls.append("changed"))
        await cmds.handle(ME, "/alerts")
        await cmds.handle(ME, "/help")
        assert calls == []
        await cmds.handle(ME, "/alert XAG above 50")
        assert calls == ["changed"]
        await cmds.remove_alert(ME, 1)
        assert calls == ["changed", "changed"]


# --- /snooze and the buttons under alerts ---


async def test_snooze_mute_and_wake_one_alert(
    env: tuple[Commands, Store, ScriptedVenue, Clock],
) -> None:
    cmds, store, _, clock = env
    await say(cmds, "/alert BTC below 85k")
    assert await say(cmds, "/snooze 1 1h") == (
        "Alert #1 snoozed until 2026-03-02 13:00 UTC; then it waits for a fresh crossing."
    )
    assert "#1  BTC below 85000  snoozed until 2026-03-02 13:00 UTC" in await say(cmds, "/alerts")
    assert await say(cmds, "/snooze #1 forever") == "Alert #1 is muted until /snooze 1 off."
    assert "muted (/snooze 1 off)" in await say(cmds, "/alerts")
    assert (
        await say(cmds, "/snooze 1 off") == "Alert #1 is on again; it waits for a fresh crossing."
    )
    assert "#1  BTC below 85000  new" in await say(cmds, "/alerts")
    assert await say(cmds, "/snooze 9 1h") == "no alert #9 here — see /alerts."
    assert await cmds.snooze(ME, 1, timedelta(hours=2)) == Snoozed(
        1, clock.now + timedelta(hours=2)
    )
    clock.tick(3 * 3600)
    assert "snoozed" not in await say(cmds, "/alerts")  # over
    assert await cmds.snooze(GROUP_MEMBER, 1, "1h") == AdminsOnly()
    [stored] = await store.rules()
    assert stored.snoozed_until == T0 + timedelta(hours=2)


async def test_a_button_does_its_action_once_and_refuses_what_does_not_check_out(
    env: tuple[Commands, Store, ScriptedVenue, Clock],
) -> None:
    cmds, store, _, clock = env
    await say(cmds, "/alert BTC below 85k")
    chat = await store.chat("telegram", "42")
    fired = an_alert("BTC below 85000", time=clock.now)
    await store.commit_tick({}, [(1, chat.id, fired)])
    [row] = await store.pending()
    buttons = dict(await cmds.buttons(chat, Ref(row.id, 1), fired, has_chart=False))
    assert list(buttons) == [Action.SNOOZE, Action.MUTE, Action.REMOVE, Action.CHART]
    assert all(len(data.encode()) <= 64 for data in buttons.values())
    snooze = buttons[Action.SNOOZE]
    eve = Caller("telegram", "43", "private", "u9")
    assert await cmds.press(eve, snooze, "@eve") == BadButton()  # another chat's button
    tampered = snooze[:-1] + ("A" if snooze[-1] != "A" else "B")
    assert await cmds.press(ME, tampered, "@me") == BadButton()
    assert await cmds.press(ME, "s1.not-ours", "@me") == BadButton()
    done = await cmds.press(ME, snooze, "@me")
    assert isinstance(done, Pressed) and done.until == clock.now + timedelta(hours=1)
    assert done.used == {Action.SNOOZE} and done.by == "@me" and done.rule_id == 1
    assert plain(reply(done)) == "Snoozed until 13:00 UTC by @me"
    assert await cmds.press(ME, snooze, "@me") == AlreadyDone(Action.SNOOZE)  # double press
    [stored] = await store.rules()
    assert stored.snoozed_until == clock.now + timedelta(hours=1)
    removed = await cmds.press(ME, buttons[Action.REMOVE], "@me")
    assert isinstance(removed, Pressed) and removed.used == {Action.SNOOZE, Action.REMOVE}
    assert await store.rules() == []
    assert await cmds.press(ME, buttons[Action.MUTE], "@me") == NoSuchAlert(1)
    clock.tick(8 * 24 * 3600)
    assert await cmds.press(ME, buttons[Action.CHART], "@me") == StaleButton()
    gone = buttons[Action.CHART].replace(f"c{row.id}.", f"c{row.id + 1}.")
    assert await cmds.press(ME, gone, "@me") == StaleButton()  # no such row


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.one_of(st.text(max_size=80), st.from_regex(r"[smrc][0-9]{1,4}\.[A-Za-z0-9_-]{16}")))
async def test_any_button_data_is_refused_without_doing_anything(
    env: tuple[Commands, Store, ScriptedVenue, Clock], data: str
) -> None:
    cmds, store, _, clock = env
    if not await store.rules():  # one rule and one alert of it (row 1), whose buttons exist
        await say(cmds, "/alert BTC below 85k")
        chat = await store.chat("telegram", "42")
        await store.commit_tick({}, [(1, chat.id, an_alert("BTC below 85000", time=clock.now))])
    clock.tick(3)  # stay under the per-minute limit
    result = await cmds.press(ME, data, "@me")
    assert isinstance(result, BadButton | StaleButton)
    assert "that button" in plain(reply(result))
    [rule] = await store.rules()
    row = await store.outbox_row(1)
    assert rule.snoozed_until is None and row is not None and row.actions == frozenset()


# --- /digest ---


async def test_digest_set_shown_and_turned_off(
    env: tuple[Commands, Store, ScriptedVenue, Clock],
) -> None:
    cmds, store, _, _ = env  # Monday 2 March 2026, 12:00 UTC
    assert await say(cmds, "/digest") == (
        "No daily digest here. Set one, e.g. /digest 08:00 Europe/London"
    )
    assert await say(cmds, "/digest 08:00 europe/london") == (
        "Daily digest set: 08:00 Europe/London, every day. The next: Tue 3 Mar 08:00 GMT.\n"
        "Turn it off with /digest off."
    )
    assert await say(cmds, "/digest 7:30 America/New_York weekdays") == (
        "Daily digest set: 07:30 America/New_York, on weekdays (Monday to Friday). "
        "The next: Mon 2 Mar 07:30 EST.\nTurn it off with /digest off."
    )
    assert (await say(cmds, "/digest")).startswith("Daily digest: 07:30 America/New_York")
    chat = await store.find_chat("telegram", "42")
    assert chat is not None and len(await store.digests(chat.id)) == 1
    assert await say(cmds, "/digest OFF") == "Daily digest off."
    assert await say(cmds, "/digest off") == (
        "No daily digest here. Set one, e.g. /digest 08:00 Europe/London"
    )
    assert await store.digests() == []


# --- webhooks ---

PUBLIC_DNS = FakeDns(
    "93.184.215.14", names={"localhost": ("127.0.0.1", "::1"), "no.such.example": ()}
)


def with_webhooks(cmds: Commands, inbound_url: str | None = "https://bot.example/") -> Commands:
    """The same store and market, with the inbound endpoint on, 127.0.0.1 allowed as a
    target, and names resolved by a fake DNS (public names to a public address)."""
    from bot.webhook_urls import Targets

    return Commands(
        cmds.store,
        cmds.view,
        commands_per_minute=100,
        clock=cmds.clock,
        webhook_targets=Targets.parse("127.0.0.1", PUBLIC_DNS),
        inbound_url=inbound_url,
    )


async def test_webhooks_are_added_listed_and_removed(
    env: tuple[Commands, Store, ScriptedVenue, Clock],
) -> None:
    cmds, store = with_webhooks(env[0]), env[1]
    added = await cmds.handle(ME, "/webhook add http://127.0.0.1:9/hook?token=SECRET-T")
    assert added.ok and added.private
    assert added.lines[0] == (
        "Webhook #2 set: this chat's alerts are posted as JSON to http://127.0.0.1:9/…"
    )
    assert "X-Tickerbell-Signature" in added.lines[1] and len(added.lines[2]) >= 32
    slack = await say(cmds, "/webhook add https://hooks.slack.com/services/T0/B0/SECRET-S")
    assert slack == (
        "Webhook #3 set: this chat's alerts are posted in Slack's format to "
        "https://hooks.slack.com/…"
    )
    listing = await say(cmds, "/webhook list")
    assert listing.startswith("2 webhooks") and "#3  Slack  https://hooks.slack.com/…" in listing
    assert "SECRET" not in listing
    await store.set_chat_active(3, False)  # what delivery does when Slack answers 404
    assert "#3  Slack  https://hooks.slack.com/…  stopped: it answered as if deleted" in (
        await say(cmds, "/webhook list")
    )
    assert "is new" in await say(cmds, "/webhook add http://127.0.0.1:9/hook?token=SECRET-T")
    assert await say(cmds, "/webhook remove 2") == "Removed webhook #2."
    assert await say(cmds, "/webhook remove #2") == "no webhook #2 here — see /webhook list."
    assert "1 webhook" in await say(cmds, "/webhook list")
    other = Caller("telegram", "43", "private", "u9")
    assert await say(cmds, "/webhook remove 3", other) == "no webhook #3 here — see /webhook list."
    assert (await say(cmds, "/webhook list", other)).startswith("No webhooks here.")


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("/digest 08:00", "usage: /digest HH:MM ZONE [weekdays] or /digest off, e.g. "),
        ("/digest 08:00 Europe/London weekdays now", "usage: /digest HH:MM ZONE [weekdays]"),
        ("/digest 25:00 Europe/London", "'25:00' is not a time of day: give HH:MM in 24 hours"),
        ("/digest 08:00 Europe/Londn", "did you mean Europe/London or"),
        ("/digest 08:00 Nowhere", "unknown time zone 'Nowhere'"),
        ("/digest 08:00 UTC weekends", "'weekends' is not a choice of days"),
    ],
)
async def test_digest_bad_input_gets_a_short_reply_with_an_example(
    env: tuple[Commands, Store, ScriptedVenue, Clock], text: str, answer: str
) -> None:
    cmds, store, _, _ = env
    reply = await cmds.handle(ME, text)
    assert not reply.ok and answer in plain(reply)
    assert "e.g. /digest 08:00 Europe/London" in plain(reply) and len(reply.lines) == 1
    assert await store.digests() == []


async def test_only_admins_set_a_group_s_digest(
    env: tuple[Commands, Store, ScriptedVenue, Clock],
) -> None:
    cmds, store, _, _ = env
    for text in ("/digest 08:00 Europe/London", "/digest off", "/digest 08:00"):
        reply = await cmds.handle(GROUP_MEMBER, text)
        assert plain(reply).startswith("only admins change alerts in a group")
    assert await cmds.set_digest(GROUP_MEMBER, "08:00", "UTC") == AdminsOnly()
    assert (await say(cmds, "/digest", GROUP_MEMBER)).startswith("No daily digest here")
    assert (await say(cmds, "/digest 08:00 UTC", GROUP_ADMIN)).startswith("Daily digest set")
    assert (await say(cmds, "/digest", GROUP_MEMBER)).startswith("Daily digest: 08:00 UTC")
    assert len(await store.digests()) == 1


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("/webhook", "usage: /webhook add URL"),
        ("/webhook add", "usage: /webhook add URL"),
        ("/webhook add a b", "usage: /webhook add URL"),
        ("/webhook remove x", "usage: /webhook add URL"),
        ("/webhook in later", "usage: /webhook add URL"),
        ("/webhook delete 1", "usage: /webhook add URL"),
        ("/webhook add ftp://example.com/x", "can't post there: a webhook URL starts with https"),
        ("/webhook add http://10.0.0.8/x", "can't post there: 10.0.0.8 is a private"),
        ("/webhook add http://169.254.169.254/", "can't post there: 169.254.169.254 is a"),
        ("/webhook add http://localhost:80/x", "can't post there: localhost resolves to a"),
        ("/webhook add https://no.such.example/x", "can't post there: no.such.example cannot be"),
    ],
)
async def test_malformed_or_refused_webhooks_store_nothing(
    env: tuple[Commands, Store, ScriptedVenue, Clock], text: str, answer: str
) -> None:
    cmds, store = with_webhooks(env[0]), env[1]
    reply = await cmds.handle(ME, text)
    assert not reply.ok and reply.lines[0].startswith(answer)
    assert "e.g." in reply.lines[0]
    assert await store.webhooks() == []


async def test_in_a_group_only_admins_manage_webhooks(
    env: tuple[Commands, Store, ScriptedVenue, Clock],
) -> None:
    cmds = with_webhooks(env[0])
    for text in ("/webhook add http://127.0.0.1:9/x", "/webhook remove 1", "/webhook in"):
        refused = await say(cmds, text, GROUP_MEMBER)
        assert refused.startswith("only admins change alerts in a group")
    assert (await say(cmds, "/webhook add http://127.0.0.1:9/x", GROUP_ADMIN)).startswith(
        "Webhook #"
    )
    assert "1 webhook" in await say(cmds, "/webhook list", GROUP_MEMBER)


async def test_the_inbound_url_is_made_once_renewed_and_stopped(
    env: tuple[Commands, Store, ScriptedVenue, Clock],
) -> None:
    cmds, store = with_webhooks(env[0]), env[1]
    first = await cmds.handle(ME, "/webhook in")
    url = first.lines[1]
    assert first.private and url.startswith("https://bot.example/tv/") and len(url) > 40
    assert (await cmds.handle(ME, "/webhook in")).lines[1] == url  # the same until renewed
    chat = await store.find_chat("telegram", "42")
    assert chat is not None and await store.inbound_chat(url.rsplit("/", 1)[1]) == chat
    renewed = (await cmds.handle(ME, "/webhook in new")).lines[1]
    assert renewed != url and await store.inbound_chat(url.rsplit("/", 1)[1]) is None
    assert await say(cmds, "/webhook in off") == "TradingView posts to this chat stopped."
    assert await store.inbound_secret(chat.id) is None
    assert await say(cmds, "/webhook in off") == "No inbound URL here."
    off = with_webhooks(env[0], inbound_url=None)
    assert (await say(off, "/webhook in")).startswith(
        "this bot takes no TradingView posts: its owner can turn them on with "
        "TICKERBELL_WEBHOOK_PORT, e.g."
    )
