"""The live service in-process: ticks, restarts, outages and delivery isolation.

The feed here is a scripted stand-in for a venue (the far side of the wire) with synthetic
prices; everything of ours (catalogue, market, rule book, SQLite store, delivery) is real.
Ticks are driven by calling `poll` directly, with a clock the test moves.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from support.charts import PRICES, T1, StandInRenderer, synthetic_market
from support.full_disk import small_disk
from support.scripted import (
    T0,
    Clock,
    Recorder,
    ScriptedVenue,
    an_alert,
    enqueue,
    make_service,
    service,
)
from support.waiting import until

from alerts import rules
from alerts.models import Alert, Candle, Direction
from bot.charts import AlertCharts, ChartCache, ChartSpec
from bot.digest import Digests
from bot.wording import sentence
from storage.api import DigestDue, DigestSetting, RuleChanges, Storage, StoredRule
from storage.db import Store, utcnow
from storage.memory import MemoryStore
from tickerbell.delivery import ConsoleNotifier, Delivery, DeliveryError
from tickerbell.service import Service


async def add_rule(store: Storage, platform: str, chat_id: str, text: str) -> int:
    chat = await store.chat(platform, chat_id)
    return await store.add_rule(chat.id, text, "test", limit=50)


async def test_tick_fires_once_and_delivers(tmp_path: Path) -> None:
    clock, venue, tg = Clock(), ScriptedVenue(Clock()), Recorder("telegram")
    venue.clock = clock
    async with service(tmp_path / "a.db", clock, venue, tg) as (svc, store, delivery):
        await add_rule(store, "telegram", "42", "BTC below 85000")
        for price in (86000, 84900, 84800, 84700):
            venue.prices["BTC/USDT"] = price
            await svc.poll("ccxt:binance")
            clock.tick()
        await delivery.drain()
        assert tg.sent == [("42", "BTC fell below 85,000 (now 84,900)")]
        assert venue.requests == 4  # one request per tick for the venue
        assert svc.stats.alerts_decided == 1


async def test_restart_neither_repeats_nor_loses(tmp_path: Path) -> None:
    db, clock, tg = tmp_path / "b.db", Clock(), Recorder("telegram")
    venue = ScriptedVenue(clock)
    async with service(db, clock, venue, tg) as (svc, store, delivery):
        await add_rule(store, "telegram", "1", "BTC below 85000")
        await add_rule(store, "telegram", "2", "ETH above 5000")
        venue.prices.update({"BTC/USDT": 86000.0, "ETH/USDT": 4900.0})
        await svc.poll("ccxt:binance")
        clock.tick()
        venue.prices["BTC/USDT"] = 84000.0  # BTC fires before the restart
        await svc.poll("ccxt:binance")
        await delivery.drain()
    assert tg.sent == [("1", "BTC fell below 85,000 (now 84,000)")]
    # down for an hour: BTC stays below (no repeat), ETH crosses 5000 meanwhile (fires once)
    clock.tick(3600)
    venue.prices.update({"BTC/USDT": 83500.0, "ETH/USDT": 5100.0})
    async with service(db, clock, venue, tg) as (svc, store, delivery):
        for _ in range(3):
            await svc.poll("ccxt:binance")
            clock.tick()
        await delivery.drain()
    assert tg.sent[1:] == [("2", "ETH rose above 5,000 (now 5,100)")]


async def test_alert_decided_but_not_delivered_survives_restart(tmp_path: Path) -> None:
    db, clock = tmp_path / "c.db", Clock()
    venue = ScriptedVenue(clock)
    async with service(db, clock, venue) as (svc, store, _):  # no notifier: nothing delivered
        await add_rule(store, "telegram", "1", "BTC below 85000")
        for price in (86000.0, 84000.0):
            venue.prices["BTC/USDT"] = price
            await svc.poll("ccxt:binance")
            clock.tick()
        assert (await store.outbox_counts()) == {"pending": 1}
    tg = Recorder("telegram")
    async with service(db, clock, venue, tg) as (_, store, delivery):
        await delivery.drain()
        await delivery.drain()
        assert tg.sent == [("1", "BTC fell below 85,000 (now 84,000)")]
        assert (await store.outbox_counts()) == {"delivered": 1}


async def test_outage_fires_nothing_and_health_follows(tmp_path: Path) -> None:
    clock, tg = Clock(), Recorder("telegram")
    venue = ScriptedVenue(clock)
    async with service(tmp_path / "d.db", clock, venue, tg) as (svc, store, delivery):
        await add_rule(store, "telegram", "1", "BTC below 85000")
        venue.prices["BTC/USDT"] = 86000.0
        await svc.poll("ccxt:binance")
        assert svc.data.healthy()
        venue.down = True
        for _ in range(30):  # five minutes of failures
            clock.tick()
            await svc.poll("ccxt:binance")
        assert not svc.data.healthy()
        assert svc.stats.feeds["ccxt:binance"].failures == 30
        venue.down = False
        venue.prices["BTC/USDT"] = 85500.0  # recovered, still above the level
        clock.tick()
        await svc.poll("ccxt:binance")
        assert svc.data.healthy()
        await delivery.drain()
        assert tg.sent == []


async def test_stopping_cancels_no_scheduled_job(caplog: pytest.LogCaptureFixture) -> None:
    """A stop while the scheduler was starting a poll job cancelled it, and APScheduler logged
    that as an error with a traceback (4 stops in 40 at a poll every 0.2 ms, as a fast replay
    polls)."""
    clock = Clock()
    venue = ScriptedVenue(clock)
    venue.prices["BTC/USDT"] = 86000.0
    for _ in range(20):
        async with MemoryStore.open(clock=clock) as store:
            delivery = Delivery(store, {}, clock=clock)
            svc = make_service(store, delivery, venue, clock, poll_seconds=0.0002)
            await add_rule(store, "telegram", "42", "BTC below 85000")
            await svc.start()
            polls = venue.requests
            await until(lambda: venue.requests > polls + 5)  # noqa: B023 (awaited at once)
            await svc.stop()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_failing_platform_does_not_stop_the_others(tmp_path: Path) -> None:
    clock = Clock()
    venue = ScriptedVenue(clock)
    broken = Recorder("discord", DeliveryError("503 from the platform"))
    tg = Recorder("telegram")
    async with service(tmp_path / "e.db", clock, venue, broken, tg) as (svc, store, delivery):
        await add_rule(store, "discord", "c1", "BTC below 85000")
        await add_rule(store, "telegram", "t1", "BTC below 85000")
        for price in (86000.0, 84000.0):
            venue.prices["BTC/USDT"] = price
            await svc.poll("ccxt:binance")
            clock.tick()
        await delivery.drain()
        assert tg.sent == [("t1", "BTC fell below 85,000 (now 84,000)")]
        counts = await store.outbox_counts()
        assert counts == {"delivered": 1, "pending": 1}  # the discord row waits for a retry
        clock.tick(3600)
        broken.failure = None
        await delivery.drain()
        assert broken.sent == [("c1", "BTC fell below 85,000 (now 84,000)")]


async def test_a_chat_that_blocked_the_bot_is_deactivated(tmp_path: Path) -> None:
    clock = Clock()
    venue = ScriptedVenue(clock)
    gone = Recorder("telegram", DeliveryError("Forbidden: bot was blocked", chat_gone=True))
    async with service(tmp_path / "f.db", clock, venue, gone) as (svc, store, delivery):
        await add_rule(store, "telegram", "t1", "BTC below 85000")
        for price in (86000.0, 84000.0):
            venue.prices["BTC/USDT"] = price
            await svc.poll("ccxt:binance")
            clock.tick()
        await delivery.drain()
        assert await store.outbox_counts() == {"failed": 1}
        chat = await store.find_chat("telegram", "t1")
        assert chat is not None and not chat.active


@pytest.mark.parametrize("text", ["XAU above 5000", "ETH/BTC below 0.02"])
async def test_rules_added_while_running_are_picked_up_within_a_tick(
    tmp_path: Path, text: str
) -> None:
    clock = Clock()
    venue = ScriptedVenue(clock)
    async with service(tmp_path / "g.db", clock, venue) as (svc, store, _):
        await svc.refresh_rules()
        assert len(svc.book) == 0
        await add_rule(store, "console", "console", text)
        await svc.poll("ccxt:binance")
        assert len(svc.book) == 1


async def test_a_rule_written_by_this_process_is_in_the_book_at_once(tmp_path: Path) -> None:
    """The command layer sets `rules_changed` after its write: no wait for the timed re-read
    (an hour here) and no tick needed."""
    from tickerbell.service import Service

    clock = Clock()
    venue = ScriptedVenue(clock)
    async with service(tmp_path / "n.db", clock, venue) as (ticking, store, _):
        changed = asyncio.Event()
        svc = Service(
            store,
            ticking.data,
            band=0.0025,
            poll_interval=lambda source: 3600.0,
            rules_changed=changed,
            rules_refresh_seconds=3600.0,
        )
        await svc.start()
        try:
            assert len(svc.book) == 0
            await add_rule(store, "telegram", "1", "BTC below 85000")
            changed.set()
            await until(lambda: len(svc.book) == 1)
            await add_rule(store, "telegram", "1", "ETH above 5000")
            changed.set()
            await until(lambda: len(svc.book) == 2)
        finally:
            await svc.stop()


async def test_metrics_and_healthz_over_http(tmp_path: Path) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from tickerbell.metrics import make_app

    clock = Clock()
    venue = ScriptedVenue(clock)
    async with service(tmp_path / "h.db", clock, venue) as (svc, store, _):
        await add_rule(store, "telegram", "1", "BTC below 85000")
        async with TestClient(TestServer(make_app(svc, store))) as client:
            assert (await client.get("/healthz")).status == 503  # nothing polled yet
            for price in (86000.0, 84000.0, 0.0):
                venue.prices["BTC/USDT"] = price
                await svc.poll("ccxt:binance")
                clock.tick()
            assert (await client.get("/healthz")).status == 200
            text = await (await client.get("/metrics")).text()
            assert 'tickerbell_polls_total{feed="ccxt:binance"} 3.0' in text
            assert (
                'tickerbell_quotes_rejected_total{feed="ccxt:binance",reason="not_positive"} 1.0'
                in text
            )
            assert "tickerbell_alerts_decided_total 1.0" in text
            assert 'tickerbell_outbox_rows{status="pending"} 1.0' in text
            assert 'tickerbell_feed_age_seconds{feed="ccxt:binance"} 20.0' in text


async def test_subscribers_get_the_notable_move_digest(tmp_path: Path) -> None:
    clock, tg = Clock(), Recorder("telegram")
    venue = ScriptedVenue(clock)
    # synthetic history: 25 flat days at 80,000 up to yesterday
    first = clock.now.date() - timedelta(days=25)
    venue.history["BTC/USDT"] = [
        Candle(first + timedelta(days=i), 80000.0, 80100.0, 79900.0, 80000.0) for i in range(25)
    ]
    async with service(tmp_path / "s.db", clock, venue, tg) as (svc, store, delivery):
        one, two = [await store.chat("telegram", c) for c in ("1", "2")]
        await store.chat("telegram", "3")  # not subscribed: hears nothing
        await store.subscribe(one.id, "BTC")
        await store.subscribe(two.id, "all")
        for price in (80050.0, 82500.0, 82600.0):  # +3.1%: a big day move and a 20-day high
            venue.prices["BTC/USDT"] = price
            await svc.poll("ccxt:binance")
            clock.tick()
        await delivery.drain()
        messages = sorted(tg.sent)
        assert messages == [
            ("1", "BTC +3.12% over 1d (now 82,500, was 80,000)"),
            ("1", "BTC broke above its 20-day high 80,100 (now 82,500)"),
            ("2", "BTC +3.12% over 1d (now 82,500, was 80,000)"),
            ("2", "BTC broke above its 20-day high 80,100 (now 82,500)"),
        ]
        await store.unsubscribe(one.id)
        await svc.refresh_rules()
        assert svc.rules.digest_chats["BTC"] == {two.id}


async def test_alerts_carry_a_chart_unless_the_chat_turned_charts_off(tmp_path: Path) -> None:
    clock, tg = Clock(), Recorder("telegram")
    venue = ScriptedVenue(clock)
    async with service(tmp_path / "p.db", clock, venue, tg) as (svc, store, delivery):
        delivery.charts = AlertCharts(svc.market, ChartCache())
        delivery.chart_wait = 60  # the first render imports matplotlib: not this test's point
        await add_rule(store, "telegram", "pics", "BTC below 85000")
        await add_rule(store, "telegram", "text", "BTC below 85000")
        text_only = await store.find_chat("telegram", "text")
        assert text_only is not None
        await store.set_charts(text_only.id, False)
        for i in range(12):  # synthetic path: drifts down through the level
            venue.prices["BTC/USDT"] = 86000.0 - 150 * i
            await svc.poll("ccxt:binance")
            clock.tick(60)
        await delivery.drain()
        sent = dict(zip((chat for chat, _ in tg.sent), tg.images, strict=True))
        assert sent["pics"] is not None and sent["pics"].startswith(b"\x89PNG")
        assert sent["text"] is None


def fired(symbol: str, level: float) -> Alert:
    """A synthetic alert of `symbol above level` just after T1 (made-up price)."""
    price = PRICES[symbol]
    return an_alert(
        f"{symbol} above {level}",
        direction=Direction.UP,
        price=price,
        reference=level,
        observed=price,
        time=T1 + timedelta(seconds=5),
    )


async def chats_with_alerts(store: Store, count: int, alerts: list[Alert]) -> None:
    """`count` chats, each with `alerts` in the outbox in this order (one tick)."""
    for i in range(count):
        chat = await store.chat("telegram", str(100 + i))
        await store.commit_tick({}, [(None, chat.id, alert) for alert in alerts])


async def test_past_the_bound_the_text_goes_alone_and_no_chart_follows(tmp_path: Path) -> None:
    """A render that takes longer than `chart_wait` (held here until the test lets it go):
    every chat still gets exactly one message per alert, in order, as text; the chart, once
    drawn, goes with the next alert of its symbol and minute, never after the earlier ones."""
    renderer, tg = StandInRenderer(held=True), Recorder("telegram")
    alerts = [fired("BTC", 83_000), fired("XAG", 49), fired("BTC", 83_500)]
    async with Store.open(tmp_path / "slow.db") as store:
        charts = AlertCharts(synthetic_market(), ChartCache(renderer))
        delivery = Delivery(store, {"telegram": tg}, charts=charts, chart_wait=0.05)
        await chats_with_alerts(store, 4, alerts)
        await delivery.drain()
        words = [sentence(a) for a in alerts]
        for i in range(4):
            assert [text for chat, text in tg.sent if chat == str(100 + i)] == words
        assert tg.images == [None] * 12
        assert delivery.chart_waits.late == 12
        assert len(renderer.specs) == 2  # started ahead, one per symbol, while texts went
        assert (await store.outbox_counts()) == {"delivered": 12}
        renderer.released.set()
        await until(lambda: renderer.drawn == 2)
        await delivery.drain()
        assert len(tg.sent) == 12  # nothing more for the alerts that went as text
        await chats_with_alerts(store, 1, [fired("XAG", 49.2)])
        await delivery.drain()
    assert tg.sent[-1] == ("100", sentence(fired("XAG", 49.2)))
    assert tg.images[-1] is not None and tg.images[-1].startswith(b"\x89PNG")
    assert charts.cache.renders == 2


async def test_charts_start_before_the_first_send_and_are_shared_per_symbol(
    tmp_path: Path,
) -> None:
    renderer, tg = StandInRenderer(), Recorder("telegram")
    events: list[str] = []
    drawing = renderer.__call__

    async def noted(spec: ChartSpec) -> bytes:
        events.append("render")
        return await drawing(spec)

    tg.after_send = lambda sent: events.append("send")
    alerts = [fired("BTC", 83_000 + i) for i in range(3)] + [fired("ETH", 2_990)]
    async with Store.open(tmp_path / "ahead.db") as store:
        charts = AlertCharts(synthetic_market(), ChartCache(noted))
        # a bound no render here reaches (the first one imports matplotlib)
        delivery = Delivery(store, {"telegram": tg}, charts=charts, chart_wait=60)
        await chats_with_alerts(store, 5, alerts)
        await delivery.drain()
    assert events[:2] == ["render", "render"] and events.count("render") == 2
    assert len(tg.sent) == 20 and delivery.chart_waits.late == 0
    by_alert = dict(zip((text for _, text in tg.sent), tg.images, strict=True))
    btc = {by_alert[sentence(a)] for a in alerts[:3]}
    assert len(btc) == 1 and by_alert[sentence(alerts[3])] not in btc
    assert all(image is not None and image.startswith(b"\x89PNG") for image in tg.images)


@pytest.mark.parametrize(
    ("symbol", "currency"),
    [("BTC", "USDT"), ("kraken:XBT/EUR", "EUR"), ("XAU", "USD"), ("yf:EURUSD=X", "USD")],
)
async def test_chart_axes_name_the_quote_currency(
    tmp_path: Path, symbol: str, currency: str
) -> None:
    clock = Clock()
    async with service(tmp_path / "cur.db", clock, ScriptedVenue(clock)) as (svc, _, _):
        assert svc.data.currency(symbol) == currency


@pytest.mark.parametrize("look_first", ["fresh_quote", "daily"])
async def test_a_symbol_looked_at_before_its_rule_is_polled_once_the_rule_exists(
    tmp_path: Path, look_first: str
) -> None:
    """`/status BTC` (or `/chart BTC`) and then `/alert BTC below 85000`: the alert fires."""
    venue, tg = ScriptedVenue(utcnow), Recorder("telegram")  # type: ignore[arg-type]
    async with Store.open(tmp_path / "h.db") as store:
        delivery = Delivery(store, {"telegram": tg})
        svc = make_service(store, delivery, venue, poll_seconds=0.05)
        await svc.start()
        delivering = asyncio.create_task(delivery.run())
        try:
            venue.prices["BTC/USDT"] = 86000.0
            if look_first == "fresh_quote":
                assert await svc.data.fresh_quote("BTC") is not None
            else:
                await svc.data.daily("BTC", 30)
            await add_rule(store, "telegram", "42", "BTC below 85000")
            await svc.refresh_rules()
            seen = venue.requests
            await until(lambda: venue.requests >= seen + 3)  # polled on its schedule
            venue.prices["BTC/USDT"] = 84000.0
            await until(lambda: tg.sent)
            assert tg.sent == [("42", "BTC fell below 85,000 (now 84,000)")]
        finally:
            await svc.stop()
            delivery.stop()
            await delivering


@pytest.mark.slow
async def test_a_tick_that_cannot_be_saved_is_decided_again_when_the_disk_has_room(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock, tg = Clock(), Recorder("telegram")
    venue = ScriptedVenue(clock)
    with small_disk(tmp_path / "disk") as disk:
        async with service(disk.path / "i.db", clock, venue, tg) as (svc, store, delivery):
            await add_rule(store, "telegram", "42", "BTC below 85000")
            venue.prices["BTC/USDT"] = 86000.0
            await svc.poll("ccxt:binance")
            disk.fill()
            venue.prices["BTC/USDT"] = 84000.0
            for _ in range(3):  # the crossing is decided, and cannot be saved, three times
                clock.tick()
                await svc.poll("ccxt:binance")
            assert await store.outbox_counts() == {}
            disk.free()
            clock.tick()
            await svc.poll("ccxt:binance")
            await delivery.drain()
            assert tg.sent == [("42", "BTC fell below 85,000 (now 84,000)")]
    failures = [r for r in caplog.records if "cannot save a tick" in r.getMessage()]
    assert len(failures) == 1  # once per outage, not once per tick


@pytest.mark.slow
async def test_a_full_disk_mid_fan_out_sends_no_chat_a_second_copy(tmp_path: Path) -> None:
    clock, tg = Clock(), Recorder("telegram")
    with small_disk(tmp_path / "disk") as disk:
        async with Store.open(disk.path / "j.db", clock=clock) as store:
            for n in range(20):
                chat = await store.chat("telegram", str(n))
                for k in range(3):
                    await enqueue(store, chat, an_alert(price=100.0 * n + k + 1))
            tg.after_send = lambda sent: disk.fill() if sent == 3 else None
            delivery = Delivery(store, {"telegram": tg}, clock=clock, store_retry=0.05)
            delivering = asyncio.create_task(delivery.run())
            try:
                await until(lambda: len(tg.sent) >= 3)
                await asyncio.sleep(0.5)  # several held rounds while the disk is full
                held = len(tg.sent)
                disk.free()
                await until(lambda: _delivered(store, 60))
            finally:
                delivery.stop()
                await delivering
    assert held <= 20 + 3  # each chat stopped after the message in flight when the disk filled
    copies = Counter(tg.sent)
    assert len(copies) == 60 and set(copies.values()) == {1}
    for n in range(20):  # and each chat still got its alerts in order
        assert [m for c, m in tg.sent if c == str(n)] == [
            f"BTC fell below 85,000 (now {100 * n + k + 1:,})" for k in range(3)
        ]


async def _delivered(store: Store, count: int) -> bool:
    return (await store.outbox_counts()).get("delivered") == count


async def test_a_chat_waiting_for_its_retry_gets_nothing_else_meanwhile(tmp_path: Path) -> None:
    clock, tg = Clock(), Recorder("telegram")
    async with Store.open(tmp_path / "k.db", clock=clock) as store:
        chat = await store.chat("telegram", "42")
        for price in (84000.0, 83000.0):
            await enqueue(store, chat, an_alert(price=price))
        tg.failures = [DeliveryError("flood control", retry_after=30)]
        delivery = Delivery(store, {"telegram": tg}, clock=clock)
        await delivery.drain()
        await delivery.drain()
        assert tg.sent == []  # the second alert does not overtake the first
        clock.tick(31)
        await delivery.drain()
        assert tg.sent == [
            ("42", "BTC fell below 85,000 (now 84,000)"),
            ("42", "BTC fell below 85,000 (now 83,000)"),
        ]


async def test_zero_prices_are_counted_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    venue = ScriptedVenue(clock)
    async with service(tmp_path / "l.db", clock, venue) as (svc, store, _):
        await add_rule(store, "telegram", "42", "BTC below 85000")
        venue.prices["BTC/USDT"] = 0.0
        for _ in range(5):
            await svc.poll("ccxt:binance")
            clock.tick()
        assert svc.stats.feeds["ccxt:binance"].rejected == {"not_positive": 5}
        assert not svc.data.healthy()
        assert "rejected" in svc.data.feed_note("BTC")
        venue.prices["BTC/USDT"] = 86000.0
        await svc.poll("ccxt:binance")
        assert "rejected" not in svc.data.feed_note("BTC")
    lines = [r.getMessage() for r in caplog.records if "BTC" in r.getMessage()]
    assert sum("rejecting BTC quotes" in line for line in lines) == 1
    assert sum("good BTC quotes again" in line for line in lines) == 1


async def test_a_quote_older_than_the_last_good_one_is_counted_but_not_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing is wrong with a symbol whose stream and covering poll hand in quotes out of
    order: the older one is dropped and counted, with no warning and nothing said in /status."""
    caplog.set_level(logging.INFO)
    clock = Clock()
    venue = ScriptedVenue(clock)
    async with service(tmp_path / "s.db", clock, venue) as (svc, store, _):
        await add_rule(store, "telegram", "42", "BTC below 85000")
        venue.prices["BTC/USDT"] = 86000.0
        await svc.poll("ccxt:binance")
        clock.tick(-1)  # the venue's next answer is stamped a second before the last one
        await svc.poll("ccxt:binance")
        assert svc.stats.feeds["ccxt:binance"].rejected == {"superseded": 1}
        assert "rejected" not in svc.data.feed_note("BTC")
    assert not [r for r in caplog.records if "rejecting" in r.getMessage()]


async def test_status_says_plainly_when_the_venue_is_down_and_forgets_it_after(
    tmp_path: Path,
) -> None:
    clock = Clock()
    venue = ScriptedVenue(clock)
    async with service(tmp_path / "m.db", clock, venue) as (svc, store, _):
        await add_rule(store, "telegram", "42", "BTC below 85000")
        venue.prices["BTC/USDT"] = 86000.0
        await svc.poll("ccxt:binance")
        venue.down = True
        venue.health.failed(clock(), "binance GET https://api.binance.com/... timed out", "is x")
        clock.tick()
        await svc.poll("ccxt:binance")
        assert svc.data.feed_note("BTC") == "binance is x since 12:00 UTC; retrying."
        venue.health.failed(clock(), "binance timed out", "does not answer in time — check it")
        assert svc.data.feed_note("BTC") == (
            "binance does not answer in time since 12:00 UTC — check it; retrying."
        )
        venue.down = False
        venue.health.ok(clock())
        clock.tick()
        await svc.poll("ccxt:binance")
        assert "since" not in svc.data.feed_note("BTC") and "http" not in svc.data.feed_note("BTC")


async def test_after_a_restart_a_short_window_rule_sees_the_minutes_before_it(
    tmp_path: Path,
) -> None:
    """The market's recent quotes are stored and restored: a 3% fall over 15 minutes that
    spans the restart fires on the first tick after it (synthetic prices)."""
    db, clock, tg = tmp_path / "w.db", Clock(), Recorder("telegram")
    venue = ScriptedVenue(clock)
    venue.prices["BTC/USDT"] = 86000.0
    async with service(db, clock, venue, tg) as (svc, store, _):
        await add_rule(store, "telegram", "42", "BTC down 3% 15m")
        for _ in range(20):
            await svc.poll("ccxt:binance")
            clock.tick(60)
    venue.prices["BTC/USDT"] = 83000.0  # -3.5% against 15 minutes ago
    async with service(db, clock, venue, tg) as (svc, store, delivery):
        await svc.start()
        try:
            await svc.poll("ccxt:binance")
            await delivery.drain()
        finally:
            await svc.stop()
    assert tg.sent == [("42", "BTC -3.49% over 15m (now 83,000, was 86,000)")]


class AskedStore(MemoryStore):
    """The in-memory store, answering as it always does, that records what the rule sync
    asked of it: (method, rows it answered)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.asked: list[tuple[str, int]] = []

    async def rules(self, chat: int | None = None) -> list[StoredRule]:
        found = await super().rules(chat)
        self.asked.append(("rules", len(found)))
        return found

    async def rules_page(self, after: int, limit: int) -> list[StoredRule]:
        page = await super().rules_page(after, limit)
        self.asked.append(("rules_page", len(page)))
        return page

    async def rule_changes(self, since: int) -> RuleChanges | None:
        changes = await super().rule_changes(since)
        rows = -1 if changes is None else len(changes.rules) + len(changes.removed)
        self.asked.append(("rule_changes", rows))
        return changes


async def asked_service(
    clock: Clock, venue: ScriptedVenue, rules: int
) -> tuple[Service, AskedStore, list[int]]:
    """A service over an AskedStore holding `rules` synthetic BTC levels, loaded and ticked
    once (every rule learnt the market), in pages of 10."""
    store = AskedStore(clock)
    chat = await store.chat("telegram", "1")
    await store.import_rules([(chat.id, f"BTC above {90000 + i}", "") for i in range(rules)])
    svc = make_service(store, Delivery(store, {}, clock=clock), venue, clock)
    svc.rules.page = 10
    venue.prices["BTC/USDT"] = 86000.0
    await svc.poll("ccxt:binance")
    assert store.asked == [("rules_page", 10)] * (rules // 10) + [("rules_page", rules % 10)]
    ids = [r.id for r in await store.rules()]
    store.asked.clear()
    return svc, store, ids


async def test_a_rule_added_or_removed_while_running_is_all_that_is_read() -> None:
    clock = Clock()
    venue = ScriptedVenue(clock)
    svc, store, ids = await asked_service(clock, venue, 25)
    learnt = svc.book.states[ids[0]]
    assert learnt.armed is True
    chat = await store.chat("telegram", "2")
    added = await store.add_rule(chat.id, "ETH above 5000", "u", limit=50)
    await svc.refresh_rules()
    assert store.asked == [("rule_changes", 1)]  # the new rule alone
    assert svc.book.rules[added] == rules.parse("ETH above 5000")
    assert svc.rules.rule_chat[added] == chat.id
    owner = (await store.chat("telegram", "1")).id
    assert await store.remove_rule(owner, ids[3])
    await svc.refresh_rules()
    await svc.refresh_rules()  # nothing new: one small question
    assert store.asked[1:] == [("rule_changes", 1), ("rule_changes", 0)]
    assert ids[3] not in svc.book.rules and ids[3] not in svc.rules.rule_chat
    assert len(svc.book) == 25 and svc.book.states[ids[0]] is learnt  # the others untouched
    await store.subscribe(owner, "BTC")
    await svc.refresh_rules()
    assert svc.rules.digest_chats == {"BTC": {owner}}
    assert len(svc.book) == 28  # the three digest rules of BTC
    assert svc.rules.history_days() == {"BTC": 20}  # the digest's 20-day high and low
    await store.unsubscribe(owner)
    await svc.refresh_rules()
    assert (len(svc.book), svc.rules.history_days()) == (25, {})


async def test_a_reader_too_far_behind_reads_every_rule_again() -> None:
    clock = Clock()
    venue = ScriptedVenue(clock)
    svc, store, ids = await asked_service(clock, venue, 25)
    learnt = svc.book.states[ids[0]]
    chat = (await store.chat("telegram", "1")).id
    await store.remove_rule(chat, ids[1])  # then more changes than the store remembers
    await store.import_rules([(chat, f"ETH above {6000 + i}", "") for i in range(11_000)])
    await svc.refresh_rules()
    assert store.asked[0] == ("rule_changes", -1)  # too far behind: told to read all
    assert store.asked[1:] == [("rules_page", 10)] * 1102 + [("rules_page", 4)]
    assert sorted(svc.book.rules) == [r.id for r in await store.rules()]
    assert svc.book.states[ids[0]] is learnt  # a rule it had keeps its state in memory
    store.asked.clear()
    await svc.refresh_rules()
    assert store.asked == [("rule_changes", 0)]  # and it follows the log again


@pytest.mark.parametrize("writer", ["this connection", "another connection (the CLI)"])
async def test_rules_from_anyone_arrive_and_a_restart_reads_them_all_with_their_states(
    tmp_path: Path, writer: str
) -> None:
    db, clock = tmp_path / "r.db", Clock()
    venue = ScriptedVenue(clock)
    venue.prices.update({"BTC/USDT": 86000.0, "ETH/USDT": 4900.0})
    async with service(db, clock, venue) as (svc, store, _):
        svc.rules.page = 2
        for level in (85000, 84000, 83000):
            await add_rule(store, "telegram", "1", f"BTC below {level}")
        await svc.poll("ccxt:binance")
        if writer == "this connection":
            added = await add_rule(store, "telegram", "2", "ETH above 5000")
        else:
            async with Store.open(db, clock=clock) as cli:
                added = await add_rule(cli, "telegram", "2", "ETH above 5000")
        chat = await store.chat("telegram", "3")
        await store.subscribe(chat.id, "ETH")
        await svc.poll("ccxt:binance")
        assert added in svc.book.rules and svc.rules.digest_chats == {"ETH": {chat.id}}
        states = dict(svc.book.states)
    async with service(db, clock, venue) as (again, _, _):
        again.rules.page = 2
        await again.refresh_rules()
        assert again.book.rules.keys() == svc.book.rules.keys()
        stored = {rule: state for rule, state in states.items() if rule > 0}
        assert {rule: again.book.states[rule] for rule in stored} == stored
        assert again.rules.rule_chat == svc.rules.rule_chat
        assert again.rules.digest_chats == {"ETH": {chat.id}}


async def test_a_snoozed_rule_is_quiet_then_waits_for_a_fresh_crossing(tmp_path: Path) -> None:
    db, clock, tg = tmp_path / "snooze.db", Clock(), Recorder("telegram")
    venue = ScriptedVenue(clock)

    async def ticks(svc: Service, *prices: float) -> None:
        for price in prices:
            venue.prices["BTC/USDT"] = price
            await svc.poll("ccxt:binance")
            clock.tick()

    async with service(db, clock, venue, tg) as (svc, store, delivery):
        rule = await add_rule(store, "telegram", "1", "BTC below 85000")
        await ticks(svc, 86000, 84000, 86000)  # learns, fires, re-arms: armed when snoozed
        chat = await store.chat("telegram", "1")
        assert await store.snooze_rule(chat.id, rule, clock.now + timedelta(hours=1))
        await ticks(svc, 86000, 84000, 86000, 84500)  # re-arms and crosses: snoozed, quiet
        assert rule not in svc.book.rules
    # a restart during the snooze keeps it
    async with service(db, clock, venue, tg) as (svc, store, delivery):
        await ticks(svc, 86000, 84000)
        assert rule not in svc.book.rules
        clock.tick(3600)  # the snooze is over; BTC is still below 85,000: a stale crossing
        await ticks(svc, 84000, 83900)
        assert rule in svc.book.rules
        await ticks(svc, 86000, 84100)  # a fresh crossing fires as usual
        await delivery.drain()
    assert tg.sent == [
        ("1", "BTC fell below 85,000 (now 84,000)"),
        ("1", "BTC fell below 85,000 (now 84,100)"),
    ]


async def test_a_snooze_ended_early_relearns_too() -> None:
    clock, tg = Clock(), Recorder("telegram")
    venue = ScriptedVenue(clock)
    async with service(None, clock, venue, tg) as (svc, store, delivery):
        rule = await add_rule(store, "telegram", "1", "ETH above 5000")
        chat = await store.chat("telegram", "1")
        for price in (4900.0, 4950.0):
            venue.prices["ETH/USDT"] = price
            await svc.poll("ccxt:binance")
            clock.tick()
        assert await store.snooze_rule(chat.id, rule, clock.now + timedelta(days=1))
        await svc.refresh_rules()
        venue.prices["ETH/USDT"] = 5100.0  # crosses while snoozed
        await svc.poll("ccxt:binance")
        assert await store.snooze_rule(chat.id, rule, None)  # `/snooze ID off`
        for price in (5100.0, 5200.0, 4900.0, 5050.0):
            venue.prices["ETH/USDT"] = price
            await svc.poll("ccxt:binance")
            clock.tick()
        await delivery.drain()
    assert tg.sent == [("1", "ETH rose above 5,000 (now 5,050)")]


# --- daily digests (synthetic clock; 2026 BST: 29 March to 25 October) ---

LONDON_8 = DigestSetting(time(8, 0), "Europe/London")


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


async def test_a_digest_due_while_down_goes_once_on_start_the_same_day(tmp_path: Path) -> None:
    db, clock, tg = tmp_path / "d.db", Clock(), Recorder("telegram")
    venue = ScriptedVenue(clock)
    clock.now = at(2026, 3, 2, 7)  # Monday, 07:00 in London (GMT)
    async with service(db, clock, venue, tg) as (svc, store, _):
        chat = await store.chat("telegram", "42")
        await store.set_digest(chat.id, LONDON_8)
        assert await svc.send_digests() == 0  # not yet
    clock.now = at(2026, 3, 2, 9, 30)  # down over 08:00
    async with service(db, clock, venue, tg) as (svc, store, delivery):
        await svc.start()  # the digest job runs at once
        try:
            await until(lambda: store.outbox_counts())
        finally:
            await svc.stop()
        [row] = await store.pending()
        assert row.alert == DigestDue(date(2026, 3, 2), at(2026, 3, 2, 8))
        await delivery.drain()
    assert [(chat_id, reply.title) for chat_id, reply in tg.posts] == [
        ("42", "Daily digest, Mon 2 Mar 2026")
    ]
    clock.now = at(2026, 3, 2, 23, 59)
    async with service(db, clock, venue, tg) as (svc, store, delivery):
        assert await svc.send_digests() == 0  # never twice the same day
        await delivery.drain()
    assert len(tg.posts) == 1


async def test_a_digest_missed_all_its_day_is_not_sent_the_next(tmp_path: Path) -> None:
    db, clock, tg = tmp_path / "d.db", Clock(), Recorder("telegram")
    venue = ScriptedVenue(clock)
    clock.now = at(2026, 3, 2, 7)
    async with service(db, clock, venue, tg) as (svc, store, _):
        await store.set_digest((await store.chat("telegram", "42")).id, LONDON_8)
    clock.now = at(2026, 3, 3, 7, 30)  # down all Monday, back on Tuesday before 08:00
    async with service(db, clock, venue, tg) as (svc, store, delivery):
        assert await svc.send_digests() == 0
        clock.now = at(2026, 3, 3, 8)
        assert await svc.send_digests() == 1
        await delivery.drain()
        assert await store.outbox_counts() == {"delivered": 1}
    assert [reply.title for _, reply in tg.posts] == ["Daily digest, Tue 3 Mar 2026"]


@pytest.mark.parametrize(
    ("setting", "start", "days", "expected"),
    [
        (  # spring forward: 08:00 local is 08:00 GMT, then 07:00 UTC (BST)
            LONDON_8,
            at(2026, 3, 27, 12),
            4,
            [at(2026, 3, 28, 8), at(2026, 3, 29, 7), at(2026, 3, 30, 7), at(2026, 3, 31, 7)],
        ),
        (  # fall back: 08:00 BST (07:00 UTC), then 08:00 GMT
            LONDON_8,
            at(2026, 10, 23, 12),
            4,
            [at(2026, 10, 24, 7), at(2026, 10, 25, 8), at(2026, 10, 26, 8), at(2026, 10, 27, 8)],
        ),
        (  # 01:30 is skipped on 29 March (sent at 02:30 BST) and happens twice on 25 October
            DigestSetting(time(1, 30), "Europe/London"),
            at(2026, 3, 28, 12),
            2,
            [at(2026, 3, 29, 1, 30), at(2026, 3, 30, 0, 30)],
        ),
        (
            DigestSetting(time(1, 30), "Europe/London"),
            at(2026, 10, 24, 12),
            2,
            [at(2026, 10, 25, 0, 30), at(2026, 10, 26, 1, 30)],  # once, at the first 01:30
        ),
    ],
)
async def test_a_digest_keeps_its_local_time_across_a_clock_change(
    setting: DigestSetting, start: datetime, days: int, expected: list[datetime]
) -> None:
    clock, tg = Clock(), Recorder("telegram")
    clock.now = start
    async with service(None, clock, ScriptedVenue(clock), tg) as (svc, store, _):
        await store.set_digest((await store.chat("telegram", "42")).id, setting)
        queued_at = []
        for _ in range(days * 24 * 4):  # every 15 minutes, as the job would look
            clock.tick(15 * 60)
            if await svc.send_digests():
                queued_at.append(clock.now)
        assert queued_at == expected
        due = [row.alert for row in await store.pending()]
        assert [d.due for d in due if isinstance(d, DigestDue)] == expected


async def test_a_digest_that_fails_to_send_is_retried_and_arrives_once(tmp_path: Path) -> None:
    clock, tg = Clock(), Recorder("telegram")
    tg.failures = [DeliveryError("telegram down")]
    async with service(tmp_path / "r.db", clock, ScriptedVenue(clock), tg) as (svc, store, dl):
        chat = await store.chat("telegram", "42")
        await store.set_digest(chat.id, DigestSetting(time(12, 5), "UTC"))
        clock.tick(5 * 60)  # 12:05 UTC
        assert await svc.send_digests() == 1
        await dl.drain()
        assert tg.posts == [] and await store.outbox_counts() == {"pending": 1}
        clock.tick(60)  # past the retry's backoff
        await dl.drain()
        await dl.drain()
        assert [reply.title for _, reply in tg.posts] == ["Daily digest, Mon 2 Mar 2026"]
        assert await store.outbox_counts() == {"delivered": 1}


async def test_a_digest_without_a_maker_fails_alone_and_the_console_prints_one() -> None:
    clock, lines = Clock(), list[str]()
    async with MemoryStore.open(clock=clock) as store:
        console = await store.chat("console", "console")
        await store.set_digest(console.id, DigestSetting(time(12, 0), "UTC"))
        assert await store.enqueue_digest(console.id, DigestDue(T0.date(), T0))
        await enqueue(store, console, an_alert())
        delivery = Delivery(store, {"console": ConsoleNotifier(lines.append)}, clock=clock)
        await delivery.drain()  # the digest fails for good; the alert behind it waits a round
        await delivery.drain()
        assert await store.outbox_counts() == {"delivered": 1, "failed": 1}
        assert len(lines) == 1 and "ALERT BTC fell below 85,000" in lines[0]
        async with service(None, clock, ScriptedVenue(clock)) as (svc, _, _):
            maker = Digests(store, svc.data, ChartCache(), clock)
            next_day = DigestDue(T0.date() + timedelta(days=1), T0 + timedelta(days=1))
            assert await store.enqueue_digest(console.id, next_day)
            console_only = {"console": ConsoleNotifier(lines.append)}
            await Delivery(store, console_only, clock=clock, digests=maker).drain()
        assert lines[1].startswith(
            "Daily digest, Tue 3 Mar 2026\nAlerts here in the 24 hours before (1):\n"
            "12:00 UTC BTC fell below 85,000 (now 84,000)\n     1d  1w  1m  YTD\nXAU  –"
        )
