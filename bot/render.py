"""Text per platform: plain (console), Telegram HTML. Every dynamic value is escaped here."""

from __future__ import annotations

import html

from alerts.models import Alert, Direction
from bot.replies import Reply
from bot.wording import parts, sentence

TELEGRAM_LIMIT = 4096
_ARROWS = {Direction.UP: "🟢▲", Direction.DOWN: "🔴▼", Direction.WIDER: "🟠↔"}


def plain(reply: Reply) -> str:
    """The reply as plain text, exactly what the console prints."""
    parts = [reply.title] if reply.title else []
    parts.extend(reply.lines)
    parts.extend(_table_lines(reply.table))
    return "\n".join(parts)


def telegram_html(reply: Reply) -> list[str]:
    """The reply as Telegram HTML messages, each within the 4096-character limit."""
    lines = [f"<b>{html.escape(reply.title)}</b>"] if reply.title else []
    prefix = "⚠️ " if not reply.ok else ""
    lines.extend(prefix + html.escape(line) if i == 0 else html.escape(line)
                 for i, line in enumerate(reply.lines))  # fmt: skip
    if reply.table:
        lines.append("<pre>" + html.escape("\n".join(_table_lines(reply.table))) + "</pre>")
    return split_messages("\n".join(lines))


def alert_plain(alert: Alert) -> str:
    """An alert as one plain line."""
    stamp = alert.time.strftime("%Y-%m-%d %H:%M UTC")
    return f"{sentence(alert)} — {alert.rule_text} ({stamp})"


def alert_html(alert: Alert) -> str:
    """An alert as a Telegram HTML message: its subject, named once, in bold."""
    arrow = _ARROWS.get(alert.direction, "🔔")
    stamp = alert.time.strftime("%Y-%m-%d %H:%M UTC")
    words = parts(alert)
    headline = f"<b>{html.escape(words.subject)}</b> {html.escape(words.rest)}"
    return f"{arrow} {headline}\n<i>{html.escape(alert.rule_text)}</i> · {stamp}"


def split_messages(text: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Split on line boundaries so no message exceeds `limit` (a longer line is cut).

    A `<pre>` block that straddles a split is closed and reopened, so every part is valid HTML.
    """
    room = max(1, limit - len("<pre></pre>"))
    messages: list[str] = []
    current: list[str] = []
    size = 0
    in_pre = False
    for raw in text.split("\n"):
        line = raw[:room]
        if current and size + 1 + len(line) + (len("</pre>") if in_pre else 0) > limit:
            messages.append("\n".join(current) + ("</pre>" if in_pre else ""))
            current, size = [], 0
            if in_pre:
                line = "<pre>" + line
        size += len(line) + (1 if current else 0)
        current.append(line)
        if "<pre>" in raw:
            in_pre = True
        if "</pre>" in raw:
            in_pre = False
    if current:
        messages.append("\n".join(current))
    return messages


def _table_lines(rows: tuple[tuple[str, ...], ...]) -> list[str]:
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows]  # fmt: skip
