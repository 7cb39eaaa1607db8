"""Bot tokens never reach a log: `redact(secret)` blanks a secret out of every log record for
the rest of the process: the message with its arguments, the traceback (exception chains
included) and the stack. httpx and PTB log Telegram URLs, which contain the token; PTB's
InvalidToken quotes it.

The work is one `logging.Filter`, `Redaction`. Where it runs matters: a logger's own filters see
only the records logged on that logger, not those propagated from its children (`httpx`,
`telegram.ext`, `discord.http`, ...), so the filter goes on handlers, where every propagated
record passes: on each handler of the root logger when logging is set up (`install`, called by
`tickerbell.app.setup_logging` at process start), and again whenever an adapter adds its secret.

A handler added after that never had the filter attached: pytest's capture handlers (put on
the root around each test phase), a handler `basicConfig` adds after a bot was made, a handler
on a library's own logger (called before the root's) or on a logger that does not propagate.
What covers those is running the same filter on each record as it is made, through a thin log
record factory, so every handler, present or future, gets a clean record. The handler filters
in turn cover what the factory cannot see: records built without it (`logging.makeLogRecord`,
e.g. from a socket or queue listener) or changed after they were made.

Installed once per process and never removed: records are made after a bot is closed too
(app.py logs a failed start's exception), and a token once held stays secret.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

MASK = "<token>"


def scrub(text: str, secrets: Iterable[str]) -> str:
    """The text with every secret replaced by MASK."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


class Redaction(logging.Filter):
    """A filter that blanks its secrets out of each record it sees and lets every record
    through."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: tuple[str, ...] = ()

    def add(self, secret: str) -> None:
        """Redact `secret` from now on (an empty one is ignored)."""
        if secret and secret not in self.secrets:
            self.secrets = (*self.secrets, secret)  # one assignment: threads log too

    def filter(self, record: logging.LogRecord) -> bool:
        """Clean the record in place; never drop it."""
        secrets = self.secrets
        if not secrets:
            return True
        try:
            message = record.getMessage()
            clean = scrub(message, secrets)
            if clean != message:
                record.msg, record.args = clean, None
            if record.exc_info and record.exc_info[1] is not None:
                # Formatted here, as a Formatter would (it uses exc_text when set): an
                # exception's own text is not ours to change.
                text = logging.Formatter().formatException(record.exc_info)
                record.exc_text = scrub(text, secrets)
            elif record.exc_text:
                record.exc_text = scrub(record.exc_text, secrets)
            if record.stack_info:
                record.stack_info = scrub(record.stack_info, secrets)
        except Exception:  # a malformed record is logging's to report, not ours
            pass
        return True


class _CleanRecords:
    """The log record factory, with the redaction run on each record it makes."""

    def __init__(self, inner: Callable[..., logging.LogRecord], redaction: Redaction) -> None:
        self.inner = inner
        self.redaction = redaction

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        self.redaction.filter(record)
        return record


def install() -> Redaction:
    """The process's one Redaction, on every handler of the root logger (and on logging's last
    resort, used when there is none) and on each record as it is made. Safe to call again: it
    only attaches the filter to handlers that lack it."""
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _CleanRecords):
        factory = _CleanRecords(factory, Redaction())
        logging.setLogRecordFactory(factory)
    redaction = factory.redaction
    for handler in (*logging.getLogger().handlers, logging.lastResort):
        if handler is not None and redaction not in handler.filters:
            handler.addFilter(redaction)
    return redaction


def redact(secret: str) -> None:
    """Keep `secret` out of every log record from now on, for the rest of the process."""
    install().add(secret)
