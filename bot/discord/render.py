"""Discord's words and looks: replies and alerts as embeds (within Discord's limits), the
commands spelled the Discord way, and autocomplete choices."""

from __future__ import annotations

from collections.abc import Sequence

import discord
from discord.app_commands import Choice

from alerts import rules
from alerts.models import Alert, Direction
from bot import render
from bot.replies import BUTTONS, Reply, Spelling
from bot.results import Action, Command, Typed
from bot.wording import sentence
from feeds.catalogue import COMMON_CRYPTO
from storage.api import StoredRule

GREEN = discord.Colour(0x2ECC71)
RED = discord.Colour(0xE74C3C)
AMBER = discord.Colour(0xF39C12)
BLURPLE = discord.Colour(0x5865F2)
COLOURS = {Direction.UP: GREEN, Direction.DOWN: RED, Direction.WIDER: AMBER}

TITLE_LIMIT, DESCRIPTION_LIMIT, FOOTER_LIMIT = 256, 4096, 2048
CHOICES = 25  # Discord shows at most 25 autocomplete choices of at most 100 characters
CHOICE_LENGTH = 100
SYMBOLS: tuple[str, ...] = tuple(dict.fromkeys(("XAU", "XAG", "BTC", "ETH", *COMMON_CRYPTO)))
CHART = "chart.png"  # a chart's attachment name, shown as its embed's image

SORRY = "Sorry, something went wrong on my side. Please try again in a minute."
STOPPING = "Tickerbell is restarting; please try again in a minute."
CANNOT_POST = (
    "I can't post in this channel, so its alerts can't arrive: give me View Channel, "
    "Send Messages, Embed Links and Attach Files here."
)

# Each chat command as the slash command people type on Discord (bot.discord.tree): its name,
# some within a group, and its options' names in order. /webhook's first word picks its command.
SLASH: dict[Command, tuple[str, tuple[str, ...]]] = {
    Command.START: ("help", ()),
    Command.HELP: ("help", ()),
    Command.STATUS: ("status", ("symbol",)),
    Command.ALERT: ("alert add", ("rule",)),
    Command.ALERTS: ("alert list", ()),
    Command.REMOVE: ("alert remove", ("alert",)),
    Command.MUTE: ("mute", ("duration",)),
    Command.UNMUTE: ("unmute", ()),
    Command.SUBSCRIBE: ("subscribe", ("symbol",)),
    Command.UNSUBSCRIBE: ("unsubscribe", ("symbol",)),
    Command.CHART: ("chart", ("symbol", "range")),
    Command.ROTATION: ("rotation", ()),
    Command.CHARTS: ("charts", ("setting",)),
    Command.SNOOZE: ("snooze", ("alert", "duration")),
    Command.DIGEST: ("digest", ("time", "zone", "days")),
}
WEBHOOK: dict[str, tuple[str, ...]] = {"add": ("url",), "list": (), "remove": ("webhook",),
                                       "in": ("action",)}  # fmt: skip


def slash_command(typed: Typed) -> str:
    """A command as typed on Discord: `/snooze alert: 3 duration: 1h`. Each argument names its
    option; the last option takes the remaining words (`/alert add rule: XAG above 50`), and
    an optional placeholder `[DURATION]` reads `[duration: DURATION]`."""
    args = typed.args
    if typed.command is Command.WEBHOOK:
        verb = args[0] if args else "list"
        name, options, args = f"webhook {verb}", WEBHOOK[verb], args[1:]
    else:
        name, options = SLASH[typed.command]
    words = [f"/{name}"]
    for at, option in enumerate(options):
        value = " ".join(args[at:] if at == len(options) - 1 else args[at : at + 1])
        if not value:
            break
        optional = value.startswith("[") and value.endswith("]")
        words.append(f"[{option}: {value[1:-1]}]" if optional else f"{option}: {value}")
    return " ".join(words)


SPELLING = Spelling(
    slash_command,
    admins="in a server only those with Manage Server or the admin role change alerts",
)


def reply_embeds(reply: Reply, limit: int = DESCRIPTION_LIMIT) -> list[discord.Embed]:
    """The reply as embeds, one per message: title, lines, the table in a code block."""
    colour = GREEN if reply.ok else RED
    lines = [discord.utils.escape_markdown(line) for line in reply.lines]
    if not reply.ok and lines:
        lines[0] = "⚠️ " + lines[0]
    rows = render.plain(Reply((), table=reply.table)).split("\n") if reply.table else []
    rows = [row.replace("`", "ˋ") for row in rows]
    pages = ["\n".join(group) for group in _pack(lines, limit)]
    pages += ["```\n" + "\n".join(group) + "\n```" for group in _pack(rows, limit - 8)]
    merged: list[str] = []
    for page in pages:
        if merged and len(merged[-1]) + 1 + len(page) <= limit:
            merged[-1] += "\n" + page
        else:
            merged.append(page)
    embeds = [discord.Embed(description=page or None, colour=colour) for page in merged or [""]]
    if reply.title:
        embeds[0].title = _cut(reply.title, TITLE_LIMIT)
    return embeds


def alert_embed(alert: Alert) -> discord.Embed:
    """An alert as an embed: coloured by direction, the symbol, the message, rule and time."""
    embed = discord.Embed(
        title=_cut(alert.symbol, TITLE_LIMIT),
        description=_cut(discord.utils.escape_markdown(sentence(alert)), DESCRIPTION_LIMIT),
        colour=COLOURS.get(alert.direction, BLURPLE),
        timestamp=alert.time,
    )
    embed.set_footer(text=_cut(alert.rule_text, FOOTER_LIMIT))
    return embed


def action_view(buttons: list[tuple[Action, str]]) -> discord.ui.View | None:
    """The buttons under an alert (custom_id: their signed data) as a view to send, or None.

    The view is stopped before it is sent, so discord.py keeps no state per message: presses
    arrive as component interactions (bot.discord.answers.SlashAnswers.press)."""
    if not buttons:
        return None
    view = discord.ui.View(timeout=None)
    for action, data in buttons:
        style = (
            discord.ButtonStyle.danger if action is Action.REMOVE else discord.ButtonStyle.secondary
        )
        view.add_item(discord.ui.Button(label=BUTTONS[action], custom_id=data, style=style))
    view.stop()
    return view


def pressed_embed(alert: Alert, note: str, image_url: str | None = None) -> discord.Embed:
    """An alert's embed after a button: the alert, then a line saying what was done."""
    embed = alert_embed(alert)
    text = f"{embed.description}\n*{discord.utils.escape_markdown(note)}*"
    embed.description = _cut(text, DESCRIPTION_LIMIT)
    if image_url:
        embed.set_image(url=image_url)
    return embed


def _pack(items: list[str], limit: int) -> list[list[str]]:
    """Consecutive items in groups whose newline-joined length stays within `limit`."""
    groups: list[list[str]] = []
    size = 0
    for raw in items:
        item = _cut(raw, limit)
        if groups and size + 1 + len(item) <= limit:
            groups[-1].append(item)
            size += 1 + len(item)
        else:
            groups.append([item])
            size = len(item)
    return groups


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def symbol_choices(current: str, symbols: Sequence[str] = SYMBOLS) -> list[Choice[str]]:
    """Known symbols matching what the user typed (prefix first), led by the text itself."""
    typed = current.strip()[:CHOICE_LENGTH]
    wanted = typed.upper()
    names = [s for s in symbols if s.startswith(wanted)]
    names += [s for s in symbols if wanted in s and not s.startswith(wanted)]
    if typed and wanted not in names:
        names.insert(0, typed)
    return [Choice(name=name, value=name) for name in names[:CHOICES]]


def rule_choices(current: str) -> list[Choice[str]]:
    """What the user typed, then the rule examples that start with it (all when none do)."""
    typed = current.strip()[:CHOICE_LENGTH]
    examples = [e for e in rules.EXAMPLES if e.lower().startswith(typed.lower())]
    names = [typed] if typed and typed not in examples else []
    names += examples or list(rules.EXAMPLES)
    return [Choice(name=_cut(name, CHOICE_LENGTH), value=name) for name in names[:CHOICES]]


def alert_choices(stored: Sequence[StoredRule], current: str) -> list[Choice[str]]:
    """A channel's alerts matching what the user typed, as `#id rule` choices, then `all`."""
    typed = current.strip().lstrip("#").lower()
    choices = [
        Choice(name=_cut(f"#{r.id} {r.text}", CHOICE_LENGTH), value=str(r.id))
        for r in stored
        if typed in f"{r.id} {r.text}".lower()
    ][: CHOICES - 2]
    if "all".startswith(typed[:3]):
        choices.append(Choice(name="all (asks first)", value="all"))
        choices.append(Choice(name="all confirm — remove every alert here", value="all confirm"))
    return choices
