"""Chat text into typed calls: how Telegram and the console write the commands (`/alert XAG
above 50`, `/remove all confirm`, `/chart XAU 3m`), parsed into the command layer's operations.
Arguments a typed operation cannot take at all (`/unmute now`) get the command's usage, behind
the same gate as the operation."""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeAlias

from alerts.text import fold
from bot.results import Command, NotACommand, Result, UnknownCommand

if TYPE_CHECKING:
    from bot.commands import Caller, Commands


async def answer(cmds: Commands, caller: Caller, text: str) -> Result:
    """The result of one chat message: a command with its arguments, or why it is none."""
    words = fold(text).split()  # `/status ＢＴＣ` reads as `/status BTC`
    if not words or not words[0].startswith("/"):
        return NotACommand()
    name = words[0][1:].split("@", 1)[0].lower()
    parse = _TEXT.get(name)
    if parse is None:
        close = difflib.get_close_matches(name, list(_TEXT), n=1)
        return UnknownCommand(name, close[0] if close else None)
    return await parse(cmds, caller, words[1:])


TextCommand: TypeAlias = "Callable[[Commands, Caller, list[str]], Awaitable[Result]]"


async def _start(cmds: Commands, caller: Caller, args: list[str]) -> Result:
    return await cmds.help(caller, greeting=True)


async def _help(cmds: Commands, caller: Caller, args: list[str]) -> Result:
    return await cmds.help(caller)


async def _status(cmds: Commands, caller: Caller, args: list[str]) -> Result:
    return await cmds.status(caller, " ".join(args))


async def _alert(cmds: Commands, caller: Caller, args: list[str]) -> Result:
    return await cmds.add_alert(caller, " ".join(args))


async def _alerts(cmds: Commands, caller: Caller, args: list[str]) -> Result:
    return await cmds.list_alerts(caller)


async def _remove(cmds: Commands, caller: Caller, args: list[str]) -> Result:
    return await cmds.remove(caller, " ".join(args))


async def _mute(cmds: Commands, caller: Caller, args: list[str]) -> Result:
    return await cmds.mute(caller, " ".join(args) or None)


async def _unmute(cmds: Commands, caller: Caller, args: list[str]) -> Result:
    if args:
        return await cmds.invalid(caller, cmds.unmute, Command.UNMUTE)
    return await cmds.unmute(caller)


async def _subscribe(cmds: Commands, caller: Caller, args: list[str]) -> Result:
    return await cmds.subscribe(caller, " ".join(args))


async def _unsubscribe(cmds: Commands, caller: Caller, args: list[str]) -> Result:
    return await cmds.unsubscribe(caller, " ".join(args) or None)


async def _chart(cmds: Commands, caller: Caller, args: list[str]) -> Result:
    if not args:
        return await cmds.chart(caller, "")
    return await cmds.chart(caller, args[0], " ".join(args[1:]) or "1m")


async def _rotation(cmds: Commands, caller: Caller, args: list[str]) -> Result:
    if args:
        return await cmds.invalid(caller, cmds.rotation, Command.ROTATION)
    return await cmds.rotation(caller)


async def _charts(cmds: Commands, caller: Caller, args: list[str]) -> Result:
    if len(args) != 1 or args[0].lower() not in ("on", "off"):
        return await cmds.invalid(caller, cmds.set_charts, Command.CHARTS)
    return await cmds.set_charts(caller, args[0].lower() == "on")


async def _snooze(cmds: Commands, caller: Caller, args: list[str]) -> Result:
    if len(args) != 2:
        return await cmds.invalid(caller, cmds.snooze, Command.SNOOZE)
    return await cmds.snooze(caller, args[0], args[1])


async def _digest(cmds: Commands, caller: Caller, args: list[str]) -> Result:
    return await cmds.digest(caller, " ".join(args))


async def _webhook(cmds: Commands, caller: Caller, args: list[str]) -> Result:
    verb, rest = (args[0].lower(), args[1:]) if args else ("", [])
    if verb == "add" and len(rest) == 1:
        return await cmds.add_webhook(caller, rest[0])
    if verb == "list" and not rest:
        return await cmds.list_webhooks(caller)
    if verb == "remove" and len(rest) == 1:
        return await cmds.remove_webhook(caller, rest[0])
    if verb == "in" and len(rest) <= 1:
        return await cmds.inbound(caller, " ".join(rest))
    return await cmds.invalid(caller, cmds.add_webhook, Command.WEBHOOK)


_TEXT: dict[str, TextCommand] = {
    Command.START.value: _start,
    Command.HELP.value: _help,
    Command.STATUS.value: _status,
    Command.ALERT.value: _alert,
    Command.ALERTS.value: _alerts,
    Command.REMOVE.value: _remove,
    Command.MUTE.value: _mute,
    Command.UNMUTE.value: _unmute,
    Command.SUBSCRIBE.value: _subscribe,
    Command.UNSUBSCRIBE.value: _unsubscribe,
    Command.CHART.value: _chart,
    Command.ROTATION.value: _rotation,
    Command.CHARTS.value: _charts,
    Command.SNOOZE.value: _snooze,
    Command.DIGEST.value: _digest,
    Command.WEBHOOK.value: _webhook,
}
