"""Results in words: each platform's spelling of the commands a reply points to."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from support.scripted import an_alert

from bot.replies import CHAT, CONSOLE, Spelling, reply
from bot.results import (
    AdminsOnly,
    AlertList,
    AtLimit,
    Command,
    DailyDigest,
    Duplicate,
    Expired,
    Moves,
    Muted,
    NeedsConfirmation,
    NoSuchAlert,
    Ratio,
    RemoveAllAsked,
    Result,
    Rotation,
    Usage,
)

DISCORDISH = Spelling(
    add="/alert add",
    list="/alert list",
    remove="/alert remove",
    confirm_add="/alert add {rule} confirm",
    confirm_remove_all="/alert remove all confirm",
)


@pytest.mark.parametrize(
    ("result", "chat", "console", "discord"),
    [
        (AlertList(()), "No alerts yet. Add one, e.g. /alert XAG above 50", None,
         "No alerts yet. Add one, e.g. /alert add XAG above 50"),
        (NoSuchAlert(7), "no alert #7 here — see /alerts.", None,
         "no alert #7 here — see /alert list."),
        (Duplicate(2, "BTC below 85000"),
         "alert #2 here is already BTC below 85000 (see /alerts).", None,
         "alert #2 here is already BTC below 85000 (see /alert list)."),
        (AtLimit("the limit is 3"),
         "the limit is 3; remove one first, e.g. /remove 3 (see /alerts).", None,
         "the limit is 3; remove one first, e.g. /alert remove 3 (see /alert list)."),
        (Usage(Command.REMOVE), "usage: /remove ID (see /alerts), e.g. /remove 3", None,
         "usage: /alert remove ID (see /alert list), e.g. /alert remove 3"),
        (Usage(Command.ALERT), "usage: /alert RULE, e.g. /alert XAG above 50", None,
         "usage: /alert add RULE, e.g. /alert add XAG above 50"),
        (AdminsOnly(),
         "only admins change alerts in a group; everyone can use /status and /alerts.", None,
         "only admins change alerts in a group; everyone can use /status and /alert list."),
        (Expired("BTC above 1", date(2001, 1, 1), 2027),
         "that rule expired on 2001-01-01; give a later day, e.g. /alert BTC above 1 expires "
         "2027-12-31", None,
         "that rule expired on 2001-01-01; give a later day, e.g. /alert add BTC above 1 expires "
         "2027-12-31"),
        (RemoveAllAsked(1), "This removes all 1 alert here. Send /remove all confirm to do it.",
         "This removes all 1 alert here. Send tickerbell alert remove all confirm to do it.",
         "This removes all 1 alert here. Send /alert remove all confirm to do it."),
        (NeedsConfirmation("XAG above 500", "XAG", 50, 500, 10),
         "XAG is 50 now and 500 is more than 10x that, so nothing is stored yet. If you mean it, "
         "send /alert XAG above 500 confirm",
         "XAG is 50 now and 500 is more than 10x that, so nothing is stored yet. If you mean it, "
         'send tickerbell alert add "XAG above 500 confirm"',
         "XAG is 50 now and 500 is more than 10x that, so nothing is stored yet. If you mean it, "
         "send /alert add XAG above 500 confirm"),
        (Muted(None),
         "Muted until you /unmute. Alerts meanwhile are kept in the history, not sent.",
         None, None),
        (Muted(datetime(2026, 3, 2, 14, tzinfo=UTC)),
         "Muted until 2026-03-02 14:00 UTC. Alerts meanwhile are kept in the history, not sent.",
         None, None),
    ],
)  # fmt: skip
def test_each_platform_spells_the_commands_it_points_to(
    result: Result, chat: str, console: str | None, discord: str | None
) -> None:
    for spelling, expected in ((CHAT, chat), (CONSOLE, console), (DISCORDISH, discord)):
        assert reply(result, spelling).lines == (expected or chat,)


def test_a_digest_lists_the_latest_alerts_and_counts_the_rest() -> None:
    alert = an_alert(time=datetime(2026, 3, 2, 7, 5, tzinfo=UTC))
    rotation = Rotation(("1d",), (Moves("XAU", (1.5,), None),), (Ratio("XAU", "XAG", 80.0),))
    said = reply(DailyDigest(date(2026, 3, 2), rotation, (alert, alert), more=3))
    assert said.title == "Daily digest, Mon 2 Mar 2026"
    assert said.lines == (
        "XAU/XAG ratio 80",
        "Alerts here in the 24 hours before (5):",
        "07:05 UTC BTC fell below 85,000 (now 84,000)",
        "07:05 UTC BTC fell below 85,000 (now 84,000)",
        "… and 3 earlier.",
    )
    assert said.table == (("", "1d", "YTD"), ("XAU", "+1.50%", "–"), ("XAU/XAG", "–", "–"))
