"""Tokens out of logs: records of any logger, formatted by any handler, present or added later.

Secrets stay redacted for the rest of the process, so each test uses its own.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from bot.redaction import MASK, Redaction, install, redact, scrub


@pytest.fixture
def secret(request: pytest.FixtureRequest) -> str:
    """A fresh secret, redacted from now on (before the test body and its capture)."""
    made = f"SECRET-{request.node.name}-7f3a9c"
    redact(made)
    return made


@pytest.fixture
def later_handler(secret: str) -> Iterator[logging.StreamHandler[io.StringIO]]:
    """The root's only handler, added after the secret's redaction was installed (as
    basicConfig adds one when the root has none); pytest's own handlers are set aside."""
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    root.handlers = [handler]
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.handlers = saved
        root.setLevel(level)


def log_everything(secret: str, name: str) -> None:
    """A library's logger writes the secret in its arguments, a chained exception and a stack."""
    library = logging.getLogger(name)
    library.debug("GET https://api.telegram.org/bot1:%s/getMe", secret)
    try:
        try:
            raise ValueError(f"The token `1:{secret}` was rejected")
        except ValueError as err:
            raise RuntimeError("start failed") from err
    except RuntimeError:
        library.exception("unexpected %s", "failure", stack_info=True)


def test_a_handler_added_later_gets_clean_records(
    secret: str, later_handler: logging.StreamHandler[io.StringIO]
) -> None:
    assert later_handler.filters == []  # it was never given the filter
    log_everything(secret, "httpx")
    text = later_handler.stream.getvalue()
    assert f"bot1:{MASK}/getMe" in text
    assert f"The token `1:{MASK}` was rejected" in text  # in the chained traceback
    assert "Traceback" in text and "Stack (most recent call last)" in text
    assert secret not in text


def test_pytests_own_capture_handler_is_covered(
    secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    log_everything(secret, "telegram.ext.ExtBot")
    assert f"bot1:{MASK}/getMe" in caplog.text
    assert secret not in caplog.text
    assert all(secret not in r.getMessage() for r in caplog.records)


def test_a_logger_that_does_not_propagate_is_covered(secret: str) -> None:
    stream = io.StringIO()
    alone = logging.getLogger("tests.redaction.alone")
    alone.propagate = False
    alone.addHandler(logging.StreamHandler(stream))
    alone.setLevel(logging.DEBUG)
    try:
        alone.warning("token %s", secret)
    finally:
        alone.removeHandler(alone.handlers[0])
    assert stream.getvalue() == f"token {MASK}\n"


def test_root_handlers_carry_the_filter_for_records_made_without_the_factory(
    secret: str, later_handler: logging.StreamHandler[io.StringIO]
) -> None:
    """A record rebuilt from a dict (a socket or queue listener's) never met the factory."""
    install()  # as an adapter starting now would: the handler added before gets the filter
    assert [type(f) for f in later_handler.filters] == [Redaction]
    record = logging.makeLogRecord(
        {"name": "httpx", "levelno": logging.INFO, "levelname": "INFO", "msg": f"url {secret}"}
    )
    logging.getLogger("httpx").handle(record)
    assert later_handler.stream.getvalue() == f"INFO httpx: url {MASK}\n"


def test_a_filter_on_the_root_logger_alone_would_miss_propagated_records(secret: str) -> None:
    """Why the filter goes on handlers: a logger's filters see only its own records."""
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    only_root = Redaction()
    only_root.add("visible-unless-filtered")
    root = logging.getLogger()
    keep = Keep()
    root.addFilter(only_root)
    root.addHandler(keep)
    try:
        logging.getLogger("httpx").warning("a child's visible-unless-filtered")
        root.warning("the root's visible-unless-filtered")
    finally:
        root.removeFilter(only_root)
        root.removeHandler(keep)
    assert seen == ["a child's visible-unless-filtered", f"the root's {MASK}"]


def test_scrub_replaces_every_secret() -> None:
    assert scrub("a x b y", ("x", "y")) == f"a {MASK} b {MASK}"
