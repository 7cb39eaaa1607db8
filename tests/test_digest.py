"""Daily digests (bot.digest): the setting as typed, when each digest is due across clock
changes, and what a digest says, over a real service and store with synthetic prices."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta

import pytest
from support.scripted import T0, Clock, ScriptedVenue, an_alert, service

from alerts.models import Candle, RuleError
from bot.charts import ChartCache
from bot.digest import Digests, due_at, due_now, next_due, setting, zone_choices
from bot.render import plain
from storage.api import ChatDigest, DigestDue, DigestSetting

LONDON_8 = DigestSetting(time(8, 0), "Europe/London")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        (("08:00", "Europe/London"), LONDON_8),
        (("8:00", "europe/london", "daily"), LONDON_8),
        (("08.00", "EUROPE/LONDON", "everyday"), LONDON_8),
        (("23:59", "Asia/Tokyo", "Weekdays"), DigestSetting(time(23, 59), "Asia/Tokyo", True)),
        (("00:00", "UTC"), DigestSetting(time(0, 0), "UTC")),
    ],
)
def test_a_setting_as_people_type_it(typed: tuple[str, ...], expected: DigestSetting) -> None:
    assert setting(*typed) == expected


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        (("25:00", "Europe/London"), "'25:00' is not a time of day: give HH:MM in 24 hours"),
        (("8", "Europe/London"), "'8' is not a time of day"),
        (("08:60", "Europe/London"), "is not a time of day"),
        (("8am", "Europe/London"), "is not a time of day"),
        (("08:00", "Europe/Londn"), "unknown time zone 'Europe/Londn': did you mean Europe/London"),
        (("08:00", "Mars/Olympus"), "unknown time zone 'Mars/Olympus': give an IANA name"),
        (("08:00", "BST"), "unknown time zone 'BST'"),
        (("08:00", "Europe/London", "weekends"), "'weekends' is not a choice of days"),
    ],
)
def test_a_bad_setting_says_what_is_wrong_with_an_example(
    typed: tuple[str, ...], said: str
) -> None:
    with pytest.raises(RuleError) as caught:
        setting(*typed)
    assert said in str(caught.value) and "e.g. /digest 08:00 Europe/London" in str(caught.value)


# 2026: British Summer Time from Sunday 29 March (01:00 GMT -> 02:00 BST) to Sunday 25 October
# (02:00 BST -> 01:00 GMT).
@pytest.mark.parametrize(
    ("at", "day", "expected"),
    [
        (time(8, 0), date(2026, 3, 28), utc(2026, 3, 28, 8)),  # GMT
        (time(8, 0), date(2026, 3, 29), utc(2026, 3, 29, 7)),  # the day of the change: BST
        (time(8, 0), date(2026, 3, 30), utc(2026, 3, 30, 7)),
        (time(8, 0), date(2026, 10, 24), utc(2026, 10, 24, 7)),
        (time(8, 0), date(2026, 10, 25), utc(2026, 10, 25, 8)),  # back to GMT
        # 01:30 does not exist on 29 March: as far after the jump as it was meant after 01:00
        (time(1, 30), date(2026, 3, 29), utc(2026, 3, 29, 1, 30)),  # 02:30 BST
        # 01:30 happens twice on 25 October: the first of the two (BST)
        (time(1, 30), date(2026, 10, 25), utc(2026, 10, 25, 0, 30)),
    ],
)
def test_a_digest_is_due_at_its_local_time_across_clock_changes(
    at: time, day: date, expected: datetime
) -> None:
    assert due_at(DigestSetting(at, "Europe/London"), day) == expected


def test_weekdays_only_skips_the_local_weekend() -> None:
    # The zone's own weekday counts: 23:30 on Friday 6 March in Auckland (NZDT, UTC+13) is
    # 10:30 UTC that Friday; 00:00 on Saturday there is still Friday in UTC.
    auckland = DigestSetting(time(23, 30), "Pacific/Auckland", weekdays_only=True)
    assert due_at(auckland, date(2026, 3, 6)) == utc(2026, 3, 6, 10, 30)
    assert due_at(auckland, date(2026, 3, 7)) is None  # Saturday
    assert due_at(auckland, date(2026, 3, 8)) is None  # Sunday
    friday_evening = utc(2026, 3, 6, 11)
    assert next_due(auckland, friday_evening) == utc(2026, 3, 9, 10, 30)  # Monday, 23:30


def test_due_now_once_the_time_has_come_the_same_local_day_and_not_before_it_was_set() -> None:
    digest = ChatDigest(1, LONDON_8, since=utc(2026, 3, 2, 6))
    assert due_now(digest, utc(2026, 3, 2, 7, 59)) is None
    expected = DigestDue(date(2026, 3, 2), utc(2026, 3, 2, 8))
    assert due_now(digest, utc(2026, 3, 2, 8)) == expected
    assert due_now(digest, utc(2026, 3, 2, 23, 59)) == expected  # late, the same local day
    sent = ChatDigest(1, LONDON_8, since=utc(2026, 3, 2, 6), last_day=date(2026, 3, 2))
    assert due_now(sent, utc(2026, 3, 2, 9)) is None
    assert due_now(sent, utc(2026, 3, 3, 7)) is None  # a missed or sent day never comes later
    assert due_now(sent, utc(2026, 3, 3, 8)) == DigestDue(date(2026, 3, 3), utc(2026, 3, 3, 8))
    set_late = ChatDigest(1, LONDON_8, since=utc(2026, 3, 2, 9))
    assert due_now(set_late, utc(2026, 3, 2, 10)) is None  # set after 08:00: from tomorrow
    tokyo = ChatDigest(1, DigestSetting(time(8, 0), "Asia/Tokyo"), since=utc(2026, 3, 1))
    # 23:30 UTC on 2 March is 08:30 on 3 March in Tokyo
    assert due_now(tokyo, utc(2026, 3, 2, 23, 30)) == DigestDue(
        date(2026, 3, 3), utc(2026, 3, 2, 23)
    )


def test_zone_choices_put_what_starts_with_the_text_first() -> None:
    assert zone_choices("europe/lon", 5) == ["Europe/London"]
    found = zone_choices("york", 25)
    assert "America/New_York" in found and len(zone_choices("", 25)) == 25


def scripted_market(clock: Clock) -> ScriptedVenue:
    """A venue with the four rotation symbols and a synthetic daily history."""
    venue = ScriptedVenue(clock)
    venue.prices.update(
        {"BTC/USDT": 86000.0, "ETH/USDT": 4000.0, "XAU/USD": 4100.0, "XAG/USD": 52.0}
    )
    for native, price in venue.prices.items():  # synthetic daily history
        start = clock.now.date() - timedelta(days=120)
        venue.history[native] = [
            Candle(start + timedelta(days=i), price, price, price, price * (0.8 + i / 600))
            for i in range(120)
        ]
    return venue


async def test_a_digest_has_the_rotation_the_day_s_alerts_and_the_chart() -> None:
    clock = Clock()
    async with service(None, clock, scripted_market(clock)) as (svc, store, _):
        chat = await store.chat("telegram", "1")
        due = DigestDue(T0.date(), T0)
        old = an_alert("BTC below 90000", time=T0 - timedelta(days=1, minutes=1))
        fired = [an_alert("BTC below 85000", time=T0 - timedelta(hours=h)) for h in (20, 3)]
        after = an_alert("ETH above 5000", time=T0 + timedelta(minutes=1))
        await store.commit_tick({}, [(None, chat.id, a) for a in (old, *fired, after)])
        digests = Digests(store, svc.data, ChartCache(), clock)
        reply = await digests.compose(chat, due)
    text = plain(reply)
    assert text.startswith("Daily digest, Mon 2 Mar 2026\nXAU/XAG ratio 78.85\nXAU/BTC ratio")
    assert reply.lines[2:] == (  # not the one of the day before, nor one decided after
        "Alerts here in the 24 hours before (2):",
        "16:00 UTC BTC fell below 85,000 (now 84,000)",
        "09:00 UTC BTC fell below 85,000 (now 84,000)",
    )
    assert [row[0] for row in reply.table] == ["", "XAU", "XAG", "BTC", "ETH", "XAU/XAG", "XAU/BTC"]
    assert reply.image is not None and reply.image.startswith(b"\x89PNG")


async def test_digests_sent_in_one_minute_share_one_rotation() -> None:
    clock = Clock()
    venue = scripted_market(clock)
    async with service(None, clock, venue) as (svc, store, _):
        chats = [await store.chat("telegram", str(n)) for n in range(50)]
        digests = Digests(store, svc.data, ChartCache(), clock)
        due = DigestDue(T0.date(), T0)
        replies = await asyncio.gather(*(digests.compose(chat, due) for chat in chats))
        assert venue.requests == 4  # one quote request per symbol, not per chat
        assert len({reply.image for reply in replies}) == 1 and digests.charts.renders == 1
        clock.tick(60)  # the next minute: made again
        await digests.compose(chats[0], due)
        assert digests.charts.renders == 2
