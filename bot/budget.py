"""A chat platform's overall rate limit shared by every process on one database.

Telegram (about 30 messages/s) and Discord (50 requests/s) count per bot, not per process: when
several replicas deliver at once, each pacing itself at the full rate would send several times
too much. `SharedBudget` books sending slots on a grid kept in PostgreSQL
(storage.api.BudgetStore: slots `interval` apart across all processes, on the server's
clock) and hands them to this process's sends in arrival order.

Booking costs a round trip, so slots are booked a few at a time: as many as sends are waiting,
at most `ahead` seconds' worth, and the next batch only once the last slot of the previous one
is due. So a process never holds more than a batch of slots ahead: one that stalls or dies
leaves at most that many unused (nothing is held that must be given back), and a stalled event
loop releases at most a batch at once. At 30/s a batch is 4 slots; a lone waiting send costs one
round trip (a millisecond or so on a LAN, against 35 ms between slots).

When the database does not answer (or answers too slowly) the process paces itself alone at
the full rate until it does, logged once: sends are never held up by the budget's store. While
the database is away delivery holds anyway (it cannot record what it sent), so what goes
meanwhile is mostly command replies. SQLite and memory stores run one process and keep their
local pacing (bot.telegram.pacing); this module is used only on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from storage.api import BudgetStore, StorageUnavailable

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

AHEAD_SECONDS = 0.15  # the most slots one booking takes, in seconds of the rate
STORE_SECONDS = 2.0  # a booking not answered this fast: pace alone for now
RETRY_SECONDS = 5.0  # after a failed booking, pace alone this long before asking again


class SharedBudget:
    """Slots of one budget (`name`, e.g. "telegram") for this process's sends, `interval`
    seconds apart across every process on the database."""

    def __init__(
        self,
        store: BudgetStore,
        name: str,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        ahead: float = AHEAD_SECONDS,
        store_seconds: float = STORE_SECONDS,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self.store = store
        self.name = name
        self.interval = interval
        self.clock = clock
        self.sleep = sleep
        self.batch = max(1, int(ahead / interval))
        self.store_seconds = store_seconds
        self.retry_seconds = retry_seconds
        self._waiting: deque[asyncio.Future[float]] = deque()
        self._booker: asyncio.Task[None] | None = None
        self._alone_until = 0.0  # pacing alone (the store failed) until then
        self._alone_next = 0.0  # the next slot of the local grid
        self._failing = False

    async def slot(self) -> None:
        """Wait for this process's next slot (first come, first served)."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        if self._booker is None or self._booker.done():
            self._booker = asyncio.create_task(self._book(), name=f"{self.name} budget")
        at = await future
        delay = at - self.clock()
        if delay > 0:
            await self.sleep(delay)

    async def close(self) -> None:
        """Stop booking; sends still waiting for a slot are cancelled."""
        booker, self._booker = self._booker, None
        if booker is not None:
            booker.cancel()
            await asyncio.wait({booker})
        while self._waiting:
            self._waiting.popleft().cancel()

    async def _book(self) -> None:
        """Book slots for the waiting sends, a batch at a time, until none is waiting."""
        while self._waiting:
            times = await self._times(min(len(self._waiting), self.batch))
            for at in times:
                while self._waiting and self._waiting[0].done():  # given up (cancelled)
                    self._waiting.popleft()
                if not self._waiting:
                    break  # a slot nobody wants: it goes unused
                self._waiting.popleft().set_result(at)
            delay = times[-1] - self.clock()
            if delay > 0:  # the next batch once this one is due: never more booked ahead
                await self.sleep(delay)

    async def _times(self, count: int) -> list[float]:
        """The times (on `clock`) of `count` slots: booked in the database, or on the local
        grid while the database fails."""
        if self.clock() >= self._alone_until:
            try:
                async with asyncio.timeout(self.store_seconds):
                    slots = await self.store.take_slots(self.name, count, self.interval)
            except (StorageUnavailable, TimeoutError) as err:
                self._alone(str(err) or "no answer in time")
            except Exception as err:  # a bug here must not stop sending
                log.exception("%s: booking send slots failed", self.name)
                self._alone(repr(err))
            else:
                if self._failing:
                    log.info("%s: sharing the send rate through the database again", self.name)
                self._failing = False
                first = self.clock() + slots.wait
                self._alone_next = first + count * self.interval
                return [first + i * self.interval for i in range(count)]
        first = max(self.clock(), self._alone_next)
        self._alone_next = first + count * self.interval
        return [first + i * self.interval for i in range(count)]

    def _alone(self, reason: str) -> None:
        self._alone_until = self.clock() + self.retry_seconds
        if not self._failing:
            log.warning(
                "%s: cannot share the send rate through the database (%s); this process "
                "paces itself at the full rate until it answers",
                self.name,
                reason,
            )
        self._failing = True
