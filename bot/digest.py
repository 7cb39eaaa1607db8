"""Daily digests: the setting people type (`08:00 Europe/London weekdays`), when each digest is
due, and its contents, made when delivery sends it.

A digest is due at its local time on each local day (weekdays only: Monday to Friday in its
zone), so 08:00 Europe/London is 08:00 on both sides of a clock change. On the day the clocks
change, a time the clock skips (01:30 when 01:00 jumps to 02:00) is due as far after the jump
as it was meant after 01:00 (02:30 local), and a time that happens twice (01:30 when 02:00 falls
back to 01:00) is due at the first of the two. Either way it goes once that day.
"""

from __future__ import annotations

import asyncio
import difflib
import re
import zoneinfo
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import TYPE_CHECKING

from alerts.models import Alert
from bot import views
from bot.charts import ChartCache
from bot.replies import DIGEST_AT, Reply, reply
from bot.results import Command, CommandError, DailyDigest, Rotation, Typed
from storage.api import Chat, ChatDigest, DigestDue, DigestSetting, Storage

if TYPE_CHECKING:
    from bot.commands import MarketView

EXAMPLE = Typed(Command.DIGEST, DIGEST_AT)  # what a bad setting's error shows
TIME = re.compile(r"([0-9]{1,2})[:.h]([0-9]{2})", re.ASCII)
EVERY_DAY, WEEKDAYS = ("daily", "everyday", "all"), ("weekdays", "workdays")
SHOWN_ALERTS = 15  # the day's alerts a digest lists; more are counted
HISTORY = 200  # recent alerts of a chat read to find the day's


def setting(at: str, zone: str, days: str = "daily") -> DigestSetting:
    """A setting from what people type: `08:00`, `Europe/London`, `weekdays` or `daily`;
    RuleError with an example when one is malformed."""
    choice = days.strip().lower()
    if choice not in EVERY_DAY + WEEKDAYS:
        raise CommandError(
            f"'{days[:20]}' is not a choice of days: add weekdays (Monday to Friday) or "
            "nothing (every day), ",
            Typed(EXAMPLE.command, (*EXAMPLE.args, "weekdays")),
        )
    return DigestSetting(parse_time(at), zone_name(zone), choice in WEEKDAYS)


def parse_time(text: str) -> time:
    """`08:00` (24 hours; `8:00` and `08.00` too) as a time of day; RuleError otherwise."""
    found = TIME.fullmatch(text.strip())
    if found is None or int(found[1]) > 23 or int(found[2]) > 59:
        raise CommandError(f"'{text[:20]}' is not a time of day: give HH:MM in 24 hours, ", EXAMPLE)
    return time(int(found[1]), int(found[2]))


def zone_name(text: str) -> str:
    """An IANA time zone's name as the database spells it (any case: `europe/london`), or a
    RuleError naming the closest zones."""
    name = _zones().get(text.strip().lower())
    if name is not None:
        return name
    close = difflib.get_close_matches(text.strip().lower(), list(_zones()), n=2, cutoff=0.6)
    hint = " or ".join(_zones()[c] for c in close)
    suggestion = f"did you mean {hint}? Give" if hint else "give"
    raise CommandError(
        f"unknown time zone '{text[:40]}': {suggestion} an IANA name (Region/City), ", EXAMPLE
    )


def zone_choices(typed: str, limit: int) -> list[str]:
    """Up to `limit` zone names containing what the user typed, those starting with it first
    (for autocomplete)."""
    wanted = typed.strip().lower()
    names = sorted(_zones().values(), key=lambda name: (not name.lower().startswith(wanted), name))
    return [name for name in names if wanted in name.lower()][:limit]


@cache
def _zone(name: str) -> zoneinfo.ZoneInfo:
    """A zone by name, kept: zoneinfo's own cache holds few strongly, and reading one again
    from the time zone database costs 50 µs (10,000 digests to look at: half a second)."""
    return zoneinfo.ZoneInfo(name)


@cache
def _zones() -> dict[str, str]:
    """Every IANA zone this system knows, by its lower-case name."""
    return {name.lower(): name for name in zoneinfo.available_timezones()}


def due_at(setting: DigestSetting, day: date) -> datetime | None:
    """When the digest of local `day` is due (UTC), or None when it skips that day.

    Built with `fold=0`: a local time the clock skips is read with the offset from before the
    jump (so it lands as far after the jump), and one that happens twice is its first."""
    if setting.weekdays_only and day.weekday() >= 5:
        return None
    local = datetime.combine(day, setting.at, _zone(setting.zone))
    return local.astimezone(UTC)


def due_now(digest: ChatDigest, now: datetime) -> DigestDue | None:
    """The digest a chat should get now: today's (local) once its time has come, if it was
    set before then and today's has not gone yet. A day missed (the bot was down all its
    local day) is never sent later."""
    today = now.astimezone(_zone(digest.setting.zone)).date()
    if digest.last_day is not None and digest.last_day >= today:
        return None
    due = due_at(digest.setting, today)
    if due is None or now < due or due < digest.since:
        return None
    return DigestDue(today, due)


def next_due(setting: DigestSetting, now: datetime) -> datetime:
    """The next time the digest is due after `now` (for telling people)."""
    day = now.astimezone(_zone(setting.zone)).date()
    while True:
        due = due_at(setting, day)
        if due is not None and due > now:
            return due
        day += timedelta(days=1)


class Digests:
    """Makes a digest's reply when delivery sends it: the rotation of gold, silver, BTC and
    ETH with the gold ratios and the normalised chart, and the chat's alerts of the 24 hours
    before the digest was due. The rotation is made once a minute and shared by every digest
    sent in that minute (a thousand chats at 08:00 cost one set of price requests and one
    chart)."""

    def __init__(
        self,
        store: Storage,
        view: MarketView,
        charts: ChartCache,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.view = view
        self.charts = charts
        self.clock = clock
        self._shared: tuple[datetime, asyncio.Future[Rotation]] | None = None

    async def compose(self, chat: Chat, digest: DigestDue) -> Reply:
        """The digest for `chat`, with the market as it is now."""
        rotation = await self._rotation()
        since = digest.due - timedelta(days=1)
        fired: list[Alert] = [
            alert
            for status, alert in reversed(await self.store.history(chat.id, HISTORY))
            if status != "removed" and since <= alert.time < digest.due
        ]
        shown = tuple(fired[-SHOWN_ALERTS:])
        return reply(DailyDigest(digest.day, rotation, shown, len(fired) - len(shown)))

    async def _rotation(self) -> Rotation:
        """This minute's rotation, made by the first digest that asks (a failed one is made
        again by the next)."""
        now = self.clock()
        minute = now.replace(second=0, microsecond=0)
        shared = self._shared
        if shared is None or shared[0] != minute or _failed(shared[1]):
            made = asyncio.ensure_future(views.rotation(self.view, self.charts, now))
            shared = self._shared = (minute, made)
        return await asyncio.shield(shared[1])


def _failed(future: asyncio.Future[Rotation]) -> bool:
    return future.done() and (future.cancelled() or future.exception() is not None)
