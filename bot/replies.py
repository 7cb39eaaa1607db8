"""Results in words: `reply(result, spelling)` turns a command's typed result into a
platform-neutral `Reply` (title, lines, table, chart), writing every command it points to the
way people type it where they asked (`/snooze 3 1h` on Telegram, `/snooze alert: 3 duration: 1h`
on Discord, `tickerbell cmd "/snooze 3 1h"` in the CLI): one `Spelling` per platform.

Markup and escaping are the platform renderers' (bot.render, bot.discord.render).
"""

from __future__ import annotations

import textwrap
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from typing import assert_never

from alerts import rules
from alerts.models import Alert
from alerts.text import count, money, number, pct, printable
from bot.charts import RANGES
from bot.results import (
    FOREVER,
    Action,
    AdminsOnly,
    AlertAdded,
    AlertList,
    AlertState,
    AlreadyDone,
    AtLimit,
    BadButton,
    Chart,
    ChartsSet,
    Command,
    DailyDigest,
    DigestOff,
    DigestPlan,
    Duplicate,
    Expired,
    Help,
    InboundOff,
    InboundStopped,
    InboundUrl,
    Listed,
    Muted,
    NeedsConfirmation,
    NoHistory,
    NoSuchAlert,
    NoSuchWebhook,
    NotACommand,
    Pressed,
    Problem,
    Refusal,
    RemoveAllAsked,
    Removed,
    RemovedAll,
    Result,
    Rotation,
    Snoozed,
    StaleButton,
    Status,
    Subscribed,
    TooFast,
    Typed,
    UnknownCommand,
    Unmuted,
    Unsubscribed,
    Usage,
    WebhookAdded,
    WebhookList,
    WebhookRemoved,
    Woken,
)
from bot.webhook_urls import SIGNATURE, TIMESTAMP
from bot.wording import sentence


@dataclass(frozen=True, slots=True)
class Reply:
    """A platform-neutral answer: a title, plain lines, an optional table, and whether it is
    an error. Renderers escape and mark it up per platform."""

    lines: tuple[str, ...]
    title: str | None = None
    table: tuple[tuple[str, ...], ...] = ()
    ok: bool = True
    image: bytes | None = None
    private: bool = False  # shown only to who asked, where the platform can (a secret in it)


def error(message: str) -> Reply:
    """A one-line error reply."""
    return Reply((message,), ok=False)


@dataclass(frozen=True, slots=True)
class Spelling:
    """How a platform writes the commands a reply points people to: `spell(Typed(...))`, or
    `spelling(Command.SNOOZE, "3", "1h")`, gives the text to type there; `admins` says who
    may change alerts in a group, in the platform's words."""

    spell: Callable[[Typed], str]
    admins: str = "only admins change alerts in a group"

    def __call__(self, command: Command, *args: str) -> str:
        return self.spell(Typed(command, args))


def chat_command(typed: Typed) -> str:
    """A command as typed in a Telegram chat (and after `tickerbell cmd`): `/snooze 3 1h`."""
    return " ".join((f"/{typed.command.value}", *typed.args))


def console_command(typed: Typed) -> str:
    """A command as typed in a shell: the CLI's own commands for adding, listing and removing
    alerts (`tickerbell alert add "XAG above 50"`), `tickerbell cmd "/..."` for the rest."""
    words = " ".join(typed.args)
    match typed.command:
        case Command.ALERT:
            return f'tickerbell alert add "{words}"'
        case Command.ALERTS:
            return "tickerbell alerts"
        case Command.REMOVE:
            return f"tickerbell alert remove {words}"
    chat = chat_command(typed)
    return f'tickerbell cmd "{chat}"' if typed.args else f"tickerbell cmd {chat}"


CHAT = Spelling(chat_command)  # Telegram
CONSOLE = Spelling(console_command)  # the CLI (`tickerbell alerts`, `tickerbell cmd ...`)

DIGEST_AT = ("08:00", "Europe/London")  # the digest setting examples show
LISTED_NOTE = 200  # characters of a TradingView post a digest lists
GREETING = "I watch gold, silver and crypto and tell you when a rule fires."
_STATES = {
    AlertState.NEW: "new",
    AlertState.ARMED: "armed",
    AlertState.WAITING: "fired, waiting to re-arm",
    AlertState.HOLDS: "already true, waiting for the next crossing",
    AlertState.DONE: "done",
}
BUTTONS = {  # the labels of the buttons under an alert
    Action.SNOOZE: "Snooze 1h",
    Action.MUTE: "Mute rule",
    Action.REMOVE: "Remove",
    Action.CHART: "Chart",
}


def help_lines(spelling: Spelling) -> tuple[str, ...]:
    """The commands and the rule language with examples."""
    s, c = spelling, Command
    hooks = f"{s(c.WEBHOOK, 'add', 'URL')}, {s(c.WEBHOOK, 'list')}, {s(c.WEBHOOK, 'remove', 'ID')}"
    return (
        "Commands:",
        f"{s(c.STATUS, 'SYM')} — price, day change, spread, nearest alerts "
        f"(e.g. {s(c.STATUS, 'XAG')})",
        f"{s(c.ALERT, 'RULE')} — add an alert (e.g. {s(c.ALERT, 'XAG above 50')})",
        f"{s(c.ALERTS)} — this chat's alerts with ids",
        f"{s(c.REMOVE, 'ID')} — remove one ({s(c.REMOVE, 'all')} removes every alert)",
        f"{s(c.MUTE, '[DURATION]')} — pause alerts (e.g. {s(c.MUTE, '2h')}); {s(c.UNMUTE)}",
        f"{s(c.SNOOZE, 'ID', 'DURATION')} — quiet one alert (e.g. {s(c.SNOOZE, '3', '1h')}; "
        "forever, or off)",
        f"{s(c.SUBSCRIBE, 'SYM|all')} — notable moves of a symbol; {s(c.UNSUBSCRIBE, '[SYM]')}",
        f"{s(c.CHART, 'SYM', f'[{_RANGES}]')} — a price chart (e.g. {s(c.CHART, 'XAU', '3m')})",
        f"{s(c.ROTATION)} — gold, silver, BTC and ETH side by side",
        f"{s(c.CHARTS, 'on|off')} — charts with this chat's alerts",
        f"{s(c.DIGEST, *_DIGEST_FORM)} — a daily digest (e.g. {s(c.DIGEST, *DIGEST_AT)}); "
        f"{s(c.DIGEST, 'off')}",
        f"{hooks} — post this chat's alerts to a URL (Slack, Discord, JSON)",
        f"{s(c.WEBHOOK, 'in', '[new|off]')} — the URL TradingView alerts post to, to arrive here",
        "",
        "Rules:",
        *(f"  {example}" for example in rules.EXAMPLES),
        "Also: XAG > 50 (above), BTC < 85k (below), gold/silver ratio below 80.",
        "Options: confirm N, cooldown 1h, once, expires 2026-12-31.",
        "Symbols: BTC, ETH, XAU (gold), XAG (silver), binance:SOL/USDT, yf:^GSPC.",
    )


_RANGES = "|".join(RANGES)
_DIGEST_FORM = ("HH:MM", "ZONE", "[weekdays]")
WEBHOOK_EXAMPLE = "https://hooks.slack.com/services/T0/B0/XYZ"


def usage(command: Command, spelling: Spelling) -> str:
    """The command's usage line with an example."""
    s, c = spelling, command
    listing = s(Command.ALERTS)
    match command:
        case Command.ALERT:
            return f"usage: {s(c, 'RULE')}, e.g. {s(c, 'XAG above 50')}"
        case Command.STATUS:
            return f"usage: {s(c, 'SYM')}, e.g. {s(c, 'BTC')}"
        case Command.REMOVE:
            return f"usage: {s(c, 'ID')} (see {listing}), e.g. {s(c, '3')}"
        case Command.MUTE:
            return f"usage: {s(c, '[DURATION]')}, e.g. {s(c, '2h')}"
        case Command.UNMUTE | Command.ROTATION:
            return f"usage: {s(c)} (no arguments)"
        case Command.SUBSCRIBE:
            return f"usage: {s(c, 'SYM|all')}, e.g. {s(c, 'XAU')}"
        case Command.UNSUBSCRIBE:
            return f"usage: {s(c, '[SYM]')}, e.g. {s(c, 'XAU')}"
        case Command.CHART:
            return f"usage: {s(c, 'SYM', f'[{_RANGES}]')}, e.g. {s(c, 'XAU', '3m')}"
        case Command.CHARTS:
            return f"usage: {s(c, 'on|off')}, e.g. {s(c, 'off')}"
        case Command.SNOOZE:
            return (
                f"usage: {s(c, 'ID', 'DURATION|forever|off')} (see {listing}), "
                f"e.g. {s(c, '3', '1h')}"
            )
        case Command.DIGEST:
            return (
                f"usage: {s(c, *_DIGEST_FORM)} or {s(c, 'off')}, "
                f"e.g. {s(c, *DIGEST_AT, 'weekdays')}"
            )
        case Command.WEBHOOK:
            return (
                f"usage: {s(c, 'add', 'URL')}, {s(c, 'list')}, {s(c, 'remove', 'ID')} or "
                f"{s(c, 'in', '[new|off]')}, e.g. {s(c, 'add', WEBHOOK_EXAMPLE)}"
            )
        case _:  # start, help and alerts take whatever follows
            return f"usage: {s(c)}"


def reply(result: Result, spelling: Spelling = CHAT) -> Reply:
    """The result as a platform-neutral reply, with commands written as `spelling` says."""
    if isinstance(result, Refusal):
        return error(refusal_text(result, spelling))
    match result:
        case Help(greeting=greeting):
            lines = help_lines(spelling)
            return Reply((GREETING, *lines)) if greeting else Reply(lines, title="Tickerbell help")
        case Status():
            return _status(result)
        case AlertAdded(rule_id=rule_id, rule=rule, already_true=value):
            added = f"Alert #{rule_id} set: {rule}"
            if value is None:
                return Reply((added,))
            return Reply(
                (
                    added,
                    f"That is already true now ({number(value)}): it fires on the next crossing.",
                )
            )
        case NeedsConfirmation():
            far = (
                f"more than {result.factor:g}x"
                if result.level > result.now
                else "less than a tenth of"
            )
            again = spelling(Command.ALERT, result.rule, "confirm")
            return Reply(
                (
                    f"{result.subject} is {number(result.now)} now and {number(result.level)} is "
                    f"{far} that, so nothing is stored yet. If you mean it, send {again}",
                )
            )
        case AlertList(alerts=alerts):
            if not alerts:
                return Reply(
                    (f"No alerts yet. Add one, e.g. {spelling(Command.ALERT, 'XAG above 50')}",)
                )
            rows = tuple((f"#{a.rule_id}", a.rule, _listed_state(a, spelling)) for a in alerts)
            return Reply((), title=count(len(alerts), "alert"), table=rows)
        case RemoveAllAsked(count=n):
            stored = count(n, "alert")
            confirm = spelling(Command.REMOVE, "all", "confirm")
            return Reply((f"This removes all {stored} here. Send {confirm} to do it.",))
        case RemovedAll(count=n):
            return Reply((f"Removed {count(n, 'alert')}.",))
        case Removed(rule_id=rule_id):
            return Reply((f"Removed alert #{rule_id}.",))
        case Muted(until=until):
            when = (
                f"until you send {spelling(Command.UNMUTE)}"
                if until is None
                else f"until {until:%Y-%m-%d %H:%M} UTC"
            )
            return Reply((f"Muted {when}. Alerts meanwhile are kept in the history, not sent.",))
        case Unmuted(was_muted=was_muted):
            return Reply(
                ("Alerts are on again." if was_muted else "Alerts were not muted: they are on.",)
            )
        case Subscribed(symbol=symbol, added=added):
            return Reply(
                (f"Subscribed to {symbol}." if added else f"Already subscribed to {symbol}.",)
            )
        case Unsubscribed(count=n):
            return Reply((f"Unsubscribed ({n})." if n else "No such subscription here.",))
        case Chart():
            summary = (
                f"{result.symbol} {result.span}: {number(result.first)} → {number(result.last)}"
            )
            if result.first > 0:
                summary += f" ({pct((result.last / result.first - 1) * 100)})"
            return Reply((summary,), image=result.image)
        case Rotation():
            return _rotation(result)
        case ChartsSet(on=on):
            return Reply(
                ("Alerts here come with a chart." if on else "Alerts here are text only.",)
            )
        case Snoozed(rule_id=rule_id, until=until):
            if until == FOREVER:
                wake = spelling(Command.SNOOZE, str(rule_id), "off")
                return Reply((f"Alert #{rule_id} is muted until {wake}.",))
            return Reply(
                (
                    f"Alert #{rule_id} snoozed until {until:%Y-%m-%d %H:%M} UTC; then it waits "
                    "for a fresh crossing.",
                )
            )
        case Woken(rule_id=rule_id):
            return Reply((f"Alert #{rule_id} is on again; it waits for a fresh crossing.",))
        case Pressed():
            return Reply((pressed_note(result, spelling),))
        case DigestPlan():
            return _digest_plan(result, spelling)
        case DigestOff(was_on=was_on):
            if was_on:
                return Reply(("Daily digest off.",))
            return Reply(
                (f"No daily digest here. Set one, e.g. {spelling(Command.DIGEST, *DIGEST_AT)}",)
            )
        case DailyDigest():
            return _daily_digest(result)
        case WebhookAdded():
            return _webhook_added(result)
        case WebhookList(webhooks=hooks):
            add = spelling(Command.WEBHOOK, "add", "URL")
            if not hooks:
                return Reply(
                    (
                        f"No webhooks here. Add one, e.g. {spelling(Command.WEBHOOK, 'add', 'https://...')}",
                    )
                )
            stopped = f"stopped: it answered as if deleted; {add} again to resume"
            listed = tuple((f"#{h.webhook_id}", h.kind, h.target, "" if h.working else stopped)
                           for h in hooks)  # fmt: skip
            return Reply((), title=count(len(hooks), "webhook"), table=listed)
        case WebhookRemoved(webhook_id=webhook_id):
            return Reply((f"Removed webhook #{webhook_id}.",))
        case InboundUrl(url=url, new=new):
            return Reply(
                (
                    f"TradingView alerts {'can now' if new else 'can'} reach this chat: in the "
                    "alert's Notifications, tick Webhook URL and give it",
                    url,
                    "The alert's message is shown here as sent: plain text, or JSON with a "
                    '"message" (and optionally "ticker"). Anyone with the URL can post here: keep '
                    f"it secret. {spelling(Command.WEBHOOK, 'in', 'new')} makes a new one, "
                    f"{spelling(Command.WEBHOOK, 'in', 'off')} stops it.",
                ),
                private=True,
            )
        case InboundStopped(had=had):
            return Reply(
                ("TradingView posts to this chat stopped." if had else "No inbound URL here.",)
            )
        case _:
            assert_never(result)


def pressed_note(pressed: Pressed, spelling: Spelling = CHAT) -> str:
    """What a button did, by whom: the line added to its alert message."""
    by = pressed.by
    match pressed.action:
        case Action.SNOOZE:
            until = pressed.until
            when = f"{until:%H:%M} UTC" if until is not None else "later"
            return f"Snoozed until {when} by {by}"
        case Action.MUTE:
            return (
                f"Muted by {by} ({spelling(Command.SNOOZE, str(pressed.rule_id), 'off')} to resume)"
            )
        case Action.REMOVE:
            return f"Removed by {by}"
        case Action.CHART:
            return f"{pressed.alert.symbol} chart for {by}"
    assert_never(pressed.action)


def _listed_state(listed: Listed, spelling: Spelling) -> str:
    until = listed.snoozed_until
    if until is None:
        return _STATES[listed.state]
    if until == FOREVER:
        return f"muted ({spelling(Command.SNOOZE, str(listed.rule_id), 'off')})"
    return f"snoozed until {until:%Y-%m-%d %H:%M} UTC"


def refusal_text(refusal: Refusal, spelling: Spelling = CHAT) -> str:
    """Why nothing was done, in one line."""
    s = spelling
    listing = s(Command.ALERTS)
    match refusal:
        case NotACommand():
            return (
                f"commands start with '/'. Try {s(Command.HELP)}, e.g. {s(Command.STATUS, 'BTC')}"
            )
        case UnknownCommand(name=name, suggestion=suggestion):
            hint = f" — did you mean {s(Command(suggestion))}?" if suggestion else ""
            return f"unknown command '/{printable(name)}'{hint or '.'} Try {s(Command.HELP)}."
        case TooFast(per_minute=per_minute):
            return f"slow down: at most {per_minute} commands a minute."
        case AdminsOnly():
            return f"{s.admins}; everyone can use {s(Command.STATUS)} and {listing}."
        case Usage(command=command):
            return usage(command, spelling)
        case Problem(message=message, example=example):
            return message if example is None else f"{message}e.g. {s.spell(example)}"
        case Expired():
            again = f"{refusal.rule} expires {refusal.suggested_year}-12-31"
            return (
                f"that rule expired on {refusal.expires}; give a later day, e.g. "
                f"{s(Command.ALERT, again)}"
            )
        case Duplicate(rule_id=rule_id, rule=rule):
            return f"alert #{rule_id} here is already {rule} (see {listing})."
        case AtLimit(reason=reason):
            return f"{reason}; remove one first, e.g. {s(Command.REMOVE, '3')} (see {listing})."
        case NoSuchAlert(rule_id=rule_id):
            return f"no alert #{rule_id} here — see {listing}."
        case NoHistory(symbol=symbol):
            return f"no price history for {symbol} yet; try again in a minute."
        case BadButton():
            return f"that button does not check out; use the commands (see {listing})."
        case StaleButton():
            return f"that button has expired; use the commands (see {listing})."
        case AlreadyDone(action=action):
            return f"{BUTTONS[action]}: done already."
        case NoSuchWebhook(webhook_id=webhook_id):
            return f"no webhook #{webhook_id} here — see {s(Command.WEBHOOK, 'list')}."
        case InboundOff():
            return (
                "this bot takes no TradingView posts: its owner can turn them on with "
                "TICKERBELL_WEBHOOK_PORT, e.g. TICKERBELL_WEBHOOK_PORT=8081"
            )
    raise TypeError(f"no words for {refusal!r}")


def _webhook_added(added: WebhookAdded) -> Reply:
    again = "" if added.added else " (it was already; its key is new)"
    how = "as JSON" if added.secret else f"in {added.kind}'s format"
    lines = [f"Webhook #{added.webhook_id} set{again}: this chat's alerts are posted {how} to "
             f"{added.target}"]  # fmt: skip
    if added.secret is not None:
        lines += [
            f"Each post is signed: {SIGNATURE} is sha256= and the hex HMAC-SHA256 of "
            f"{TIMESTAMP}, a dot and the body, keyed by (keep it secret):",
            added.secret,
        ]
    return Reply(tuple(lines), private=True)


def _status(status: Status) -> Reply:
    if status.price is None:
        return Reply((f"no price for {status.symbol} yet.", status.feed_note), title=status.symbol)
    change = status.day_change_pct
    day = f" ({pct(change)} today)" if change is not None else ""
    lines = [f"{number(status.price)}{day}"]
    book = status.book
    if book is not None:
        text = (
            f"bid {number(book.bid)} / ask {number(book.ask)}, "
            f"spread {money(book.ask - book.bid)} ({pct(book.spread_pct, signed=False)})"
        )
        if book.median_spread is not None:
            text += f", median {money(book.median_spread)}"
        lines.append(text)
    if status.day_range is not None:
        low, high = status.day_range
        lines.append(f"{status.range_days}-day range {number(low)} – {number(high)}")
    for level in status.nearest:
        lines.append(f"alert {level.rule}: {pct(level.away_pct)} away")
    lines.append(status.feed_note)
    return Reply(tuple(lines), title=status.symbol)


def _rotation(rotation: Rotation, title: str = "Rotation") -> Reply:
    def cell(change: float | None) -> str:
        return "–" if change is None else pct(change)

    rows = [("", *rotation.windows, "YTD")]
    rows += [(m.symbol, *map(cell, m.changes), cell(m.year)) for m in rotation.moves]
    rows += [
        (f"{r.symbol}/{r.other}", *map(cell, r.changes or (None,) * len(rotation.windows)),
         cell(r.year))
        for r in rotation.ratios
    ]  # fmt: skip
    lines = tuple(f"{r.symbol}/{r.other} ratio {number(r.value)}" for r in rotation.ratios)
    return Reply(lines, title=title, table=tuple(rows), image=rotation.image)


def _digest_plan(plan: DigestPlan, spelling: Spelling) -> Reply:
    days = "on weekdays (Monday to Friday)" if plan.weekdays_only else "every day"
    local = plan.next_at.astimezone(zoneinfo.ZoneInfo(plan.zone))
    when = f"{local:%a} {local.day} {local:%b %H:%M %Z}"
    head = "Daily digest set" if plan.changed else "Daily digest"
    return Reply(
        (
            f"{head}: {plan.at:%H:%M} {plan.zone}, {days}. The next: {when}.",
            f"Turn it off with {spelling(Command.DIGEST, 'off')}.",
        )
    )


def _listed(alert: Alert) -> str:
    """An alert as a digest lists it: its sentence; a TradingView post's text (any length,
    any lines) on one line, cut to LISTED_NOTE characters."""
    if alert.note is None:
        return sentence(alert)
    return textwrap.shorten(sentence(alert), LISTED_NOTE, placeholder=" …")


def _daily_digest(digest: DailyDigest) -> Reply:
    day = digest.day
    rotation = _rotation(digest.rotation, f"Daily digest, {day:%a} {day.day} {day:%b %Y}")
    if not digest.alerts:
        said = ["No alerts here in the 24 hours before."]
    else:
        said = [f"Alerts here in the 24 hours before ({len(digest.alerts) + digest.more}):"]
        said += [f"{a.time:%H:%M} UTC {_listed(a)}" for a in digest.alerts]
        if digest.more:
            said.append(f"… and {digest.more} earlier.")
    return Reply((*rotation.lines, *said), rotation.title, rotation.table, image=rotation.image)
