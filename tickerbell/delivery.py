"""Delivery: drain the outbox to the chat platforms, in order per chat, each platform isolated.

A row is marked delivered only after its platform accepted it, so a crash between decision and
delivery leaves it pending and it is sent after the restart (at most the one message per chat
that was in flight at the crash can arrive twice). Transient failures are retried with backoff;
a permanent one marks the row failed (and the chat inactive when the chat itself is gone). One
platform that is down or slow never holds up another: each drains in its own task, and within
a platform up to `parallel_chats` chats are served at once, each strictly in order; the
adapters keep themselves within their platform's rate limits.

When the store fails (a full disk), delivery holds: a message that went out but could not be
marked delivered is remembered in memory and never sent again by this process, no chat gets
another message, and the round is retried with backoff (logged once) until the store works.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta

from alerts.models import Alert
from bot.notifier import DeliveryError, Notifier
from bot.wording import sentence
from feeds.backoff import Backoff
from storage.api import Chat, OutboxRow, Storage, StorageUnavailable, utcnow

log = logging.getLogger(__name__)

ROW_RETRY = Backoff(base=2.0, cap=600.0)  # a failed send: 2 s, 4 s, ... 10 minutes
STORE_RETRY_CAP = 30.0


class StoreFailing(Exception):
    """Recording a delivery outcome failed: hold delivery until the store works again."""


class ConsoleNotifier:
    """The console chat: prints each alert on stdout."""

    name = "console"

    def __init__(self, write: Callable[[str], None] | None = None) -> None:
        self._write = write or (lambda line: print(line, flush=True))

    async def send(self, chat: Chat, alert: Alert, image: bytes | None = None) -> str | None:
        stamp = alert.time.strftime("%Y-%m-%d %H:%M:%S UTC")
        self._write(f"[{stamp}] ALERT {sentence(alert)}  ({alert.rule_text})")
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
        charts: Callable[[Alert], Awaitable[bytes | None]] | None = None,
        batch: int = 500,
        parallel_chats: int = 32,
        store_retry: float = 1.0,
    ) -> None:
        self.store = store
        self.notifiers = dict(notifiers)
        self.clock = clock
        self.interval = interval
        self.on_result = on_result or (lambda platform, outcome: None)
        self.charts = charts
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
            except StoreFailing as err:
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
        await self._record_unrecorded()
        self._store_down = False
        rows = await self.store.pending(self.batch)
        by_platform: dict[str, list[OutboxRow]] = {}
        for row in rows:
            by_platform.setdefault(row.chat.platform, []).append(row)
        results = await asyncio.gather(
            *(self._drain_platform(name, rows) for name, rows in by_platform.items()),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return len(rows)

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
            image = await self._chart(row) if notifier.name != "console" else None
            message_id = await notifier.send(row.chat, row.alert, image=image)
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

    async def _chart(self, row: OutboxRow) -> bytes | None:
        """The alert's chart when the chat wants charts; a chart that fails is left out."""
        if self.charts is None or not row.chat.charts:
            return None
        try:
            return await self.charts(row.alert)
        except Exception:
            log.exception("chart for outbox row %s failed; sending text only", row.id)
            return None

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
