"""Delivery: drain the outbox to the chat platforms, in order per chat, each platform isolated.

A row is marked delivered only after its platform accepted it, so a crash between decision and
delivery leaves it pending and it is sent after the restart (at most the one message per chat
that was in flight at the crash can arrive twice). Transient failures are retried with backoff;
a permanent one marks the row failed (and the chat inactive when the chat itself is gone). One
platform that is down or slow never holds up another: each drains in its own task, and within
a platform up to `parallel_chats` chats are served at once, each strictly in order; the
adapters keep themselves within their platform's rate limits.

Charts never hold delivery back: when a round picks its rows, the charts those rows need are
started at once (one per symbol and minute, see bot.charts.AlertCharts) and draw while earlier
messages go out. A message waits at most `chart_wait` seconds for its chart; past that it goes
as text alone, and no chart follows it later (a second message per alert would be noise, and
its place in the chat's order would be wrong). Whoever asks for the same chart afterwards gets
it once drawn.

Several processes on one PostgreSQL database each run a Delivery: a round takes its rows with
the store's `claim`, which gives each chat to one process at a time (and, with SQLite, is just
the pending rows), and lets its chats go at the end (`release`). A process that dies mid-send
leaves at most its one in-flight message per chat to be sent again by another. Rows queued
anywhere wake every process's delivery (`Storage.on_queued`); `interval` is the fallback poll
(rows due for a retry, chats a dead process held).

When the store fails (a full disk), delivery holds: a message that went out but could not be
marked delivered is remembered in memory and never sent again by this process, no chat gets
another message, and the round is retried with backoff (logged once) until the store works.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from alerts.models import Alert
from bot import render
from bot.actions import Ref
from bot.notifier import DeliveryError, Notifier
from bot.replies import Reply
from bot.wording import sentence
from feeds.backoff import Backoff
from storage.api import WEBHOOK, Chat, DigestDue, OutboxRow, Storage, StorageUnavailable, utcnow

log = logging.getLogger(__name__)

ROW_RETRY = Backoff(base=2.0, cap=600.0)  # a failed send: 2 s, 4 s, ... 10 minutes
STORE_RETRY_CAP = 30.0
TEXT_ONLY = frozenset({"console", WEBHOOK})  # platforms whose alerts go without a chart


class Charts(Protocol):
    """Charts for alerts, as delivery needs them (bot.charts.AlertCharts)."""

    def prepare(self, alerts: Sequence[Alert]) -> None:
        """Start drawing the charts these alerts will ask for; returns at once."""

    async def for_alert(self, alert: Alert) -> bytes | None:
        """The alert's chart as a PNG, or None when it has none."""


class Digests(Protocol):
    """Daily digests' words, made as delivery sends them (bot.digest.Digests)."""

    async def compose(self, chat: Chat, digest: DigestDue) -> Reply:
        """The digest for this chat as a reply: text, a table, a chart."""


@dataclass(slots=True)
class ChartWaits:
    """How long sends waited for their charts: `waited` of them at all, `late` past the
    bound (they went as text), the `longest` wait in seconds."""

    waited: int = 0
    late: int = 0
    longest: float = 0.0


class StoreFailing(Exception):
    """Recording a delivery outcome failed: hold delivery until the store works again."""


class ConsoleNotifier:
    """The console chat: prints each alert on stdout."""

    name = "console"

    def __init__(self, write: Callable[[str], None] | None = None) -> None:
        self._write = write or (lambda line: print(line, flush=True))

    async def send(
        self, chat: Chat, alert: Alert, image: bytes | None = None, ref: Ref | None = None
    ) -> str | None:
        stamp = alert.time.strftime("%Y-%m-%d %H:%M:%S UTC")
        self._write(f"[{stamp}] ALERT {sentence(alert)}  ({alert.rule_text})")
        return None

    async def post(self, chat: Chat, reply: Reply) -> str | None:
        self._write(render.plain(reply))
        return None

    async def close(self) -> None:
        return None


class Delivery:
    """Drains pending outbox rows whenever woken (after a tick) and every `interval` seconds."""

    def __init__(
        self,
        store: Storage,
        notifiers: Mapping[str, Notifier],
        clock: Callable[[], datetime] = utcnow,
        interval: float = 1.0,
        on_result: Callable[[str, str], None] | None = None,
        charts: Charts | None = None,
        chart_wait: float = 2.0,
        batch: int = 500,
        parallel_chats: int = 32,
        store_retry: float = 1.0,
        digests: Digests | None = None,
    ) -> None:
        self.store = store
        self.notifiers = dict(notifiers)
        self.clock = clock
        self.interval = interval
        self.on_result = on_result or (lambda platform, outcome: None)
        self.charts = charts
        self.digests = digests
        self.chart_wait = chart_wait
        self.chart_waits = ChartWaits()
        self.batch = batch
        self.parallel_chats = parallel_chats
        self.store_retry = Backoff(base=store_retry, cap=max(store_retry, STORE_RETRY_CAP))
        self._wake = asyncio.Event()
        self._stopping = False
        self._down: dict[str, str] = {}
        self._unrecorded: dict[int, str | None] = {}  # sent, not yet marked delivered
        self._store_down = False

    def wake(self) -> None:
        """Ask for a drain now (called after a tick committed alerts)."""
        self._wake.set()

    async def run(self) -> None:
        """Drain until `stop()`; never raises out (a failed round is logged and retried)."""
        store_failures = 0
        while not self._stopping:
            handled, wait = 0, self.interval
            try:
                handled = await self.drain()
                if store_failures:
                    log.info("delivery: the store works again; delivering")
                store_failures = 0
            except (StoreFailing, StorageUnavailable) as err:  # recording, or reading rows
                if not store_failures:
                    log.error("delivery: cannot record deliveries (%s); holding all sends", err)
                store_failures += 1
                wait = self.store_retry.delay(store_failures)
            except Exception:
                log.exception("delivery round failed; retrying")
            if handled >= self.batch and not store_failures:
                continue  # a full round: more rows are waiting, no pause
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            self._wake.clear()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def drain(self) -> int:
        """One round over up to `batch` due rows, each platform in its own task; returns how
        many rows it took."""
        try:
            await self._record_unrecorded()
            self._store_down = False
            rows = await self.store.claim(self.batch, platforms=tuple(self.notifiers))
            return await self._deliver_rows(rows)
        finally:
            await self.store.release()  # after any failure too: it ends claims that were lost

    async def _deliver_rows(self, rows: list[OutboxRow]) -> int:
        """Send the rows of one round (their chats claimed); returns how many."""
        self._prepare_charts(rows)
        late = self.chart_waits.late
        by_platform: dict[str, list[OutboxRow]] = {}
        for row in rows:
            by_platform.setdefault(row.chat.platform, []).append(row)
        results = await asyncio.gather(
            *(self._drain_platform(name, rows) for name, rows in by_platform.items()),
            return_exceptions=True,
        )
        if self.chart_waits.late > late:
            log.warning(
                "delivery: %d alerts went as text alone: their chart took over %g s",
                self.chart_waits.late - late,
                self.chart_wait,
            )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return len(rows)

    def _prepare_charts(self, rows: Sequence[OutboxRow]) -> None:
        """Start the charts of the rows that will go with one, ahead of their turn."""
        if self.charts is None:
            return
        wanted = [
            row.alert
            for row in rows
            if isinstance(row.alert, Alert) and row.chat.charts and row.chat.active
            and row.chat.platform in self.notifiers and row.chat.platform not in TEXT_ONLY
            and row.alert.note is None
        ]  # fmt: skip
        try:
            self.charts.prepare(wanted)
        except Exception:  # a chart bug must not stop delivery; each send asks again
            log.exception("delivery: preparing charts failed")

    async def _record_unrecorded(self) -> None:
        """Mark delivered what went out while the store was failing."""
        for row_id, message_id in list(self._unrecorded.items()):
            try:
                await self.store.mark_delivered(row_id, message_id)
            except Exception as err:
                raise StoreFailing(str(err)) from err
            del self._unrecorded[row_id]

    async def _drain_platform(self, platform: str, rows: list[OutboxRow]) -> None:
        """Up to `parallel_chats` chats at once; within a chat strictly in order, and a chat
        whose row failed waits for its retry before its later rows go."""
        notifier = self.notifiers.get(platform)
        if notifier is None:
            return  # not configured in this run: rows wait for a run that has it
        by_chat: dict[int, list[OutboxRow]] = {}
        for row in rows:
            by_chat.setdefault(row.chat.id, []).append(row)
        gate = asyncio.Semaphore(self.parallel_chats)

        async def one_chat(chat_rows: list[OutboxRow]) -> None:
            async with gate:
                for row in chat_rows:
                    if self._stopping or self._store_down:
                        return
                    try:
                        if not await self._deliver(platform, notifier, row):
                            return
                    except StoreFailing:
                        self._store_down = True  # no chat gets another message meanwhile
                        raise

        await asyncio.gather(*(one_chat(chat_rows) for chat_rows in by_chat.values()))

    async def _deliver(self, platform: str, notifier: Notifier, row: OutboxRow) -> bool:
        """Send one row and record the outcome; False when the chat's later rows must wait.
        Raises StoreFailing when the outcome cannot be recorded."""
        try:
            return await self._send(platform, notifier, row)
        except StoreFailing:
            raise
        except (StorageUnavailable, OSError) as err:
            raise StoreFailing(str(err)) from err

    async def _send(self, platform: str, notifier: Notifier, row: OutboxRow) -> bool:
        if row.id in self._unrecorded:
            return True  # sent already; only its record is missing
        if not row.chat.active:
            await self.store.mark_failed(row.id, "chat inactive")
            return True  # the chat's later rows go the same way
        try:
            if isinstance(row.alert, DigestDue):
                message_id = await self._post_digest(notifier, row.chat, row.alert)
            else:
                text_only = notifier.name in TEXT_ONLY
                image = None if text_only else await self._chart(row, row.alert)
                ref = Ref(row.id, row.rule)
                message_id = await notifier.send(row.chat, row.alert, image=image, ref=ref)
        except DeliveryError as err:
            await self._failed(platform, row, err)
            return False
        except Exception as err:  # an adapter bug must not stop delivery
            log.exception("%s: unexpected error sending outbox row %s", platform, row.id)
            await self._failed(platform, row, DeliveryError(repr(err)))
            return False
        try:
            await self.store.mark_delivered(row.id, message_id)
        except Exception as err:
            self._unrecorded[row.id] = message_id  # never sent twice by this process
            raise StoreFailing(str(err)) from err
        self.on_result(platform, "delivered")
        if self._down.pop(platform, None) is not None:
            log.info("%s: delivering again", platform)
        return True

    async def _post_digest(self, notifier: Notifier, chat: Chat, digest: DigestDue) -> str | None:
        """Make a daily digest's words now and send them."""
        if self.digests is None:
            raise DeliveryError("daily digests are not made in this run", permanent=True)
        return await notifier.post(chat, await self.digests.compose(chat, digest))

    async def _chart(self, row: OutboxRow, alert: Alert) -> bytes | None:
        """The alert's chart when the chat wants charts and it is ready within `chart_wait`
        seconds; a chart that fails or is late is left out."""
        if self.charts is None or not row.chat.charts or alert.note is not None:
            return None  # an alert from outside has no chart of ours
        started = time.perf_counter()
        try:
            return await asyncio.wait_for(self.charts.for_alert(alert), self.chart_wait)
        except TimeoutError:
            self.chart_waits.late += 1
            return None
        except Exception:
            log.exception("chart for outbox row %s failed; sending text only", row.id)
            return None
        finally:
            self._waited(time.perf_counter() - started)

    def _waited(self, seconds: float) -> None:
        waits = self.chart_waits
        if seconds > 0.005:  # a chart that was ready costs microseconds
            waits.waited += 1
        waits.longest = max(waits.longest, seconds)

    async def _failed(self, platform: str, row: OutboxRow, err: DeliveryError) -> None:
        if err.chat_gone:
            log.warning(
                "%s: chat %s unreachable (%s); deactivating it", platform, row.chat.chat_id, err
            )
            await self.store.mark_failed(row.id, str(err))
            await self.store.set_chat_active(row.chat.id, False)
            self.on_result(platform, "failed")
            return
        if err.permanent:
            log.error("%s: outbox row %s refused for good (%s)", platform, row.id, err)
            await self.store.mark_failed(row.id, str(err))
            self.on_result(platform, "failed")
            return
        if platform not in self._down:
            log.warning("%s: delivery failing (%s); retrying with backoff", platform, err)
        self._down[platform] = str(err)
        delay = max(err.retry_after, ROW_RETRY.delay(row.attempts + 1))
        await self.store.mark_retry(row.id, str(err), self.clock() + timedelta(seconds=delay))
        self.on_result(platform, "retry")
