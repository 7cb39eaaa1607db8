"""Results in words: each platform's spelling of the commands a reply points to."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest
from support.scripted import an_alert

from bot.discord.render import SPELLING
from bot.replies import CHAT, CONSOLE, Spelling, reply
from bot.results import (
    FOREVER,
    AdminsOnly,
    AlertList,
    AtLimit,
    Command,
    DailyDigest,
    DigestOff,
    Duplicate,
    Expired,
    Help,
    Moves,
    Muted,
    NeedsConfirmation,
    NoSuchAlert,
    NoSuchWebhook,
    NotACommand,
    Problem,
    Ratio,
    RemoveAllAsked,
    Result,
    Rotation,
    Snoozed,
    Typed,
    UnknownCommand,
    Usage,
    WebhookList,
)


@pytest.mark.parametrize(
    ("result", "chat", "console", "discord"),
    [
        (AlertList(()), "No alerts yet. Add one, e.g. /alert XAG above 50",
         'No alerts yet. Add one, e.g. tickerbell alert add "XAG above 50"',
         "No alerts yet. Add one, e.g. /alert add rule: XAG above 50"),
        (NoSuchAlert(7), "no alert #7 here — see /alerts.",
         "no alert #7 here — see tickerbell alerts.",
         "no alert #7 here — see /alert list."),
        (Duplicate(2, "BTC below 85000"),
         "alert #2 here is already BTC below 85000 (see /alerts).",
         "alert #2 here is already BTC below 85000 (see tickerbell alerts).",
         "alert #2 here is already BTC below 85000 (see /alert list)."),
        (AtLimit("the limit is 3"),
         "the limit is 3; remove one first, e.g. /remove 3 (see /alerts).",
         "the limit is 3; remove one first, e.g. tickerbell alert remove 3 (see tickerbell "
         "alerts).",
         "the limit is 3; remove one first, e.g. /alert remove alert: 3 (see /alert list)."),
        (Usage(Command.REMOVE), "usage: /remove ID (see /alerts), e.g. /remove 3",
         "usage: tickerbell alert remove ID (see tickerbell alerts), e.g. tickerbell alert "
         "remove 3",
         "usage: /alert remove alert: ID (see /alert list), e.g. /alert remove alert: 3"),
        (Usage(Command.ALERT), "usage: /alert RULE, e.g. /alert XAG above 50",
         'usage: tickerbell alert add "RULE", e.g. tickerbell alert add "XAG above 50"',
         "usage: /alert add rule: RULE, e.g. /alert add rule: XAG above 50"),
        (Usage(Command.SNOOZE),
         "usage: /snooze ID DURATION|forever|off (see /alerts), e.g. /snooze 3 1h",
         'usage: tickerbell cmd "/snooze ID DURATION|forever|off" (see tickerbell alerts), '
         'e.g. tickerbell cmd "/snooze 3 1h"',
         "usage: /snooze alert: ID duration: DURATION|forever|off (see /alert list), "
         "e.g. /snooze alert: 3 duration: 1h"),
        (Usage(Command.MUTE), "usage: /mute [DURATION], e.g. /mute 2h",
         'usage: tickerbell cmd "/mute [DURATION]", e.g. tickerbell cmd "/mute 2h"',
         "usage: /mute [duration: DURATION], e.g. /mute duration: 2h"),
        (Usage(Command.CHART), "usage: /chart SYM [1d|1w|1m|3m|1y], e.g. /chart XAU 3m",
         'usage: tickerbell cmd "/chart SYM [1d|1w|1m|3m|1y]", e.g. tickerbell cmd "/chart XAU 3m"',
         "usage: /chart symbol: SYM [range: 1d|1w|1m|3m|1y], e.g. /chart symbol: XAU range: 3m"),
        (Usage(Command.DIGEST),
         "usage: /digest HH:MM ZONE [weekdays] or /digest off, e.g. /digest 08:00 Europe/London "
         "weekdays",
         'usage: tickerbell cmd "/digest HH:MM ZONE [weekdays]" or tickerbell cmd "/digest off", '
         'e.g. tickerbell cmd "/digest 08:00 Europe/London weekdays"',
         "usage: /digest time: HH:MM zone: ZONE [days: weekdays] or /digest time: off, "
         "e.g. /digest time: 08:00 zone: Europe/London days: weekdays"),
        (Usage(Command.WEBHOOK),
         "usage: /webhook add URL, /webhook list, /webhook remove ID or /webhook in [new|off], "
         "e.g. /webhook add https://hooks.slack.com/services/T0/B0/XYZ",
         'usage: tickerbell cmd "/webhook add URL", tickerbell cmd "/webhook list", tickerbell '
         'cmd "/webhook remove ID" or tickerbell cmd "/webhook in [new|off]", e.g. tickerbell '
         'cmd "/webhook add https://hooks.slack.com/services/T0/B0/XYZ"',
         "usage: /webhook add url: URL, /webhook list, /webhook remove webhook: ID or /webhook "
         "in [action: new|off], e.g. /webhook add url: https://hooks.slack.com/services/T0/B0/XYZ"),
        (AdminsOnly(),
         "only admins change alerts in a group; everyone can use /status and /alerts.",
         "only admins change alerts in a group; everyone can use tickerbell cmd /status and "
         "tickerbell alerts.",
         "in a server only those with Manage Server or the admin role change alerts; everyone "
         "can use /status and /alert list."),
        (Expired("BTC above 1", date(2001, 1, 1), 2027),
         "that rule expired on 2001-01-01; give a later day, e.g. /alert BTC above 1 expires "
         "2027-12-31",
         "that rule expired on 2001-01-01; give a later day, e.g. tickerbell alert add "
         '"BTC above 1 expires 2027-12-31"',
         "that rule expired on 2001-01-01; give a later day, e.g. /alert add rule: BTC above 1 "
         "expires 2027-12-31"),
        (RemoveAllAsked(1), "This removes all 1 alert here. Send /remove all confirm to do it.",
         "This removes all 1 alert here. Send tickerbell alert remove all confirm to do it.",
         "This removes all 1 alert here. Send /alert remove alert: all confirm to do it."),
        (NeedsConfirmation("XAG above 500", "XAG", 50, 500, 10),
         "XAG is 50 now and 500 is more than 10x that, so nothing is stored yet. If you mean it, "
         "send /alert XAG above 500 confirm",
         "XAG is 50 now and 500 is more than 10x that, so nothing is stored yet. If you mean it, "
         'send tickerbell alert add "XAG above 500 confirm"',
         "XAG is 50 now and 500 is more than 10x that, so nothing is stored yet. If you mean it, "
         "send /alert add rule: XAG above 500 confirm"),
        (Muted(None),
         "Muted until you send /unmute. Alerts meanwhile are kept in the history, not sent.",
         "Muted until you send tickerbell cmd /unmute. Alerts meanwhile are kept in the "
         "history, not sent.",
         None),
        (Muted(datetime(2026, 3, 2, 14, tzinfo=UTC)),
         "Muted until 2026-03-02 14:00 UTC. Alerts meanwhile are kept in the history, not sent.",
         None, None),
        (Snoozed(3, FOREVER), "Alert #3 is muted until /snooze 3 off.",
         'Alert #3 is muted until tickerbell cmd "/snooze 3 off".',
         "Alert #3 is muted until /snooze alert: 3 duration: off."),
        (DigestOff(), "No daily digest here. Set one, e.g. /digest 08:00 Europe/London",
         'No daily digest here. Set one, e.g. tickerbell cmd "/digest 08:00 Europe/London"',
         "No daily digest here. Set one, e.g. /digest time: 08:00 zone: Europe/London"),
        (WebhookList(()), "No webhooks here. Add one, e.g. /webhook add https://...",
         'No webhooks here. Add one, e.g. tickerbell cmd "/webhook add https://..."',
         "No webhooks here. Add one, e.g. /webhook add url: https://..."),
        (NoSuchWebhook(4), "no webhook #4 here — see /webhook list.",
         'no webhook #4 here — see tickerbell cmd "/webhook list".',
         "no webhook #4 here — see /webhook list."),
        (NotACommand(), "commands start with '/'. Try /help, e.g. /status BTC",
         "commands start with '/'. Try tickerbell cmd /help, e.g. tickerbell cmd \"/status BTC\"",
         "commands start with '/'. Try /help, e.g. /status symbol: BTC"),
        (UnknownCommand("stauts", "status"),
         "unknown command '/stauts' — did you mean /status? Try /help.",
         "unknown command '/stauts' — did you mean tickerbell cmd /status? Try tickerbell cmd "
         "/help.",
         None),
        (Problem("'2x' is not a duration. ", Typed(Command.MUTE, ("2h",))),
         "'2x' is not a duration. e.g. /mute 2h",
         "'2x' is not a duration. e.g. tickerbell cmd \"/mute 2h\"",
         "'2x' is not a duration. e.g. /mute duration: 2h"),
    ],
)  # fmt: skip
def test_each_platform_spells_the_commands_it_points_to(
    result: Result, chat: str, console: str | None, discord: str | None
) -> None:
    for spelling, expected in ((CHAT, chat), (CONSOLE, console), (SPELLING, discord)):
        assert reply(result, spelling).lines == (expected or chat,)


@pytest.mark.parametrize("spelling", [CHAT, CONSOLE, SPELLING])
def test_help_spells_every_command_for_the_platform(spelling: Spelling) -> None:
    """No line of help on one platform shows another's form: the CLI's names no bare
    `/command`, Discord's names no option without its name."""
    text = "\n".join(reply(Help(), spelling).lines)
    assert spelling(Command.ALERT, "XAG above 50") in text
    assert spelling(Command.SNOOZE, "3", "1h") in text
    assert spelling(Command.DIGEST, "off") in text
    if spelling is CONSOLE:
        assert re.findall(r"(?<![\"\w])/(?:alert|alerts|remove)\b", text) == []
        assert " /" not in text.replace("tickerbell cmd /", "").replace('tickerbell cmd "/', "")
    if spelling is SPELLING:
        assert "/snooze 3" not in text and "/mute 2h" not in text and "/alert XAG" not in text


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
