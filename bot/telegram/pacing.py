"""Pacing sends below Telegram's flood limits: `SendLimiter`, PTB's rate limiter for
message-sending calls (overall, per private chat, per group), built on `Pacer` (even spacing and
a count per window, per key) and `KeyedLocks` (one FIFO lock per key); and `FloodWaits`, the one
place a sender waits out Telegram's flood control (RetryAfter) when it comes anyway.

On PostgreSQL several processes send for one bot: the overall limit is then shared through the
database (bot.budget), while each chat's limit stays local (a chat is delivered by one process
at a time)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Hashable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter
from telegram.warnings import PTBDeprecationWarning

from bot.budget import SharedBudget
from storage.api import BudgetStore

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
BUDGET = "telegram"  # the shared budget's name (storage.api.BudgetStore): one bot per database


@dataclass(frozen=True, slots=True)
class Rates:
    """Telegram's flood limits as we respect them; 0 turns a limit off."""

    overall_per_second: float = 30.0
    chat_per_second: float = 1.0
    group_per_minute: float = 20.0


class KeyedLocks:
    """One asyncio.Lock per key (FIFO), kept only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        """Hold the key's lock for the block."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users > 1:
                self._locks[key] = (lock, users - 1)
            else:
                del self._locks[key]


class Pacer:
    """Spaces requests at least `interval` seconds apart per key, first come first served, and
    keeps at most `limit` of them in any `window` seconds as the far side counts them.

    The far side counts a request when it has arrived, which is some moment between our start
    and its answer: a photo's upload takes longer than a text, and unevenly, so requests spaced
    evenly at their start can arrive bunched (spaced at 0.95 of the limit, 20 ms of jitter is
    enough for a 31st in some second). So each request holds a place in its key's window from
    its start until `window` seconds after its answer, and a request starts only while fewer
    than `limit` places are held: then no window of the far side's can see more than `limit`,
    however long each took. Spacing stays too, so there are no bursts: slots are booked one at
    a time, when the previous request went, so a stalled event loop slows sends down instead of
    releasing a backlog at once, and they stay on their grid (a late wake-up does not push
    every later slot back).
    """

    def __init__(self, clock: Callable[[], float], sleep: Sleep) -> None:
        self.clock = clock
        self.sleep = sleep
        self._next: dict[Hashable, float] = {}
        self._windows: dict[Hashable, _Window] = {}
        self._locks = KeyedLocks()

    @contextlib.asynccontextmanager
    async def hold(
        self, key: Hashable, interval: float, limit: int = 0, window: float = 0.0
    ) -> AsyncIterator[None]:
        """Wait until `key` may go (its slot, then a place in its window), and hold the place
        for the block: the request, until its answer."""
        places = None
        async with self._locks.hold(key):
            await self._slot(key, interval)
            if limit > 0:
                places = self._places(key, window)
                await places.enter(limit, self.clock, self.sleep)
        try:
            yield
        finally:
            if places is not None:
                places.leave(self.clock())

    async def _slot(self, key: Hashable, interval: float) -> None:
        if interval <= 0:
            return
        now = self.clock()
        slot = max(now, self._next.get(key, now))
        self._next[key] = slot + interval
        if len(self._next) > 4096:  # forget keys whose interval has passed
            self._next = {k: t for k, t in self._next.items() if t > now}
        if slot > now:
            await self.sleep(slot - now)

    def _places(self, key: Hashable, window: float) -> _Window:
        places = self._windows.get(key)
        if places is None:
            if len(self._windows) > 4096:  # forget keys that hold no place
                now = self.clock()
                self._windows = {k: w for k, w in self._windows.items() if w.held(now)}
            places = self._windows[key] = _Window(window)
        return places


class _Window:
    """One key's held places: its requests in flight, and the answer times of its finished
    requests still inside the window."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.flying = 0
        self.answered: deque[float] = deque()
        self._landed = asyncio.Event()

    def held(self, now: float) -> int:
        while self.answered and self.answered[0] <= now - self.window:
            self.answered.popleft()
        return self.flying + len(self.answered)

    async def enter(self, limit: int, clock: Callable[[], float], sleep: Sleep) -> None:
        """Wait for a free place and take it (under the key's lock: first come, first served)."""
        while True:
            now = clock()
            if self.held(now) < limit:
                break
            if self.answered:  # the oldest answer leaves the window first
                await sleep(self.answered[0] + self.window - now)
            else:  # every place is in flight: wait for an answer
                self._landed.clear()
                await self._landed.wait()
        self.flying += 1

    def leave(self, now: float) -> None:
        self.flying -= 1
        self.answered.append(now)
        self._landed.set()


class SendLimiter(BaseRateLimiter[int]):
    """PTB rate limiter: overall, per private chat and per group, for message-sending calls.

    PTB's AIORateLimiter has no per-private-chat bucket and allows bursts of the full rate; this
    one spaces sends evenly, at `HEADROOM` of each limit (spaced at exactly the limit, the
    smallest network jitter puts N+1 arrivals in some window of Telegram's), and counts each
    send against its windows until Telegram answered it (see `Pacer`). Other calls
    (getUpdates, getChatMember, ...) are not limited. A RetryAfter is not retried here:
    `TelegramBot` decides (it knows what is being sent).
    """

    HEADROOM = 0.95

    def __init__(
        self,
        rates: Rates,
        clock: Callable[[], float],
        sleep: Sleep,
        budgets: BudgetStore | None = None,
    ) -> None:
        self.rates = rates
        self.pacer = Pacer(clock, sleep)
        self.shared: SharedBudget | None = None
        if budgets is not None and rates.overall_per_second > 0:
            interval = _interval(rates.overall_per_second)
            self.shared = SharedBudget(budgets, BUDGET, interval, clock, sleep)

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Stop booking shared slots (booking starts again with the next send)."""
        if self.shared is not None:
            await self.shared.close()

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, Any]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> Any:
        """Wait for the chat's slot and place, then the bot's, and make the call holding both
        places until it is answered."""
        chat_id = data.get("chat_id")
        if chat_id is None or not endpoint.startswith(("send", "copy", "forward")):
            return await callback(*args, **kwargs)
        if _is_group(chat_id):
            per_chat, window = self.rates.group_per_minute, 60.0
        else:
            per_chat, window = self.rates.chat_per_second, 1.0
        async with (
            self.pacer.hold(str(chat_id), _interval(per_chat / window), _places(per_chat), window),
            self._overall(),
        ):
            return await callback(*args, **kwargs)

    @contextlib.asynccontextmanager
    async def _overall(self) -> AsyncIterator[None]:
        """The bot's place: spaced by this process alone, or (`shared`) by the slots every
        process on the database books, and in both cases at most `overall` places in this
        process's window (see `Pacer`)."""
        overall = self.rates.overall_per_second
        interval = _interval(overall)
        if self.shared is not None:
            await self.shared.slot()
            interval = 0.0
        async with self.pacer.hold(None, interval, _places(overall), 1.0):
            yield


def _interval(per_second: float) -> float:
    return 1 / (per_second * SendLimiter.HEADROOM) if per_second > 0 else 0.0


def _places(per_window: float) -> int:
    """How many requests one window may see: the limit itself (spacing keeps the headroom)."""
    return max(1, int(per_window)) if per_window > 0 else 0


def _is_group(chat_id: object) -> bool:
    """Groups, supergroups and channels have negative ids (or an @username)."""
    try:
        return int(str(chat_id)) < 0
    except ValueError:
        return True


def retry_seconds(err: RetryAfter) -> float:
    """RetryAfter's delay in seconds (its `retry_after` type is changing in PTB 22.x)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = err.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class FloodWaits:
    """Telegram's flood control (RetryAfter) waited out in place: at most `times` times for
    one send, and only delays of at most `longest` seconds. The sender asks on each RetryAfter
    and, told no, gives up its own way."""

    def __init__(self, times: int, longest: float, sleep: Sleep) -> None:
        self.left = times
        self.longest = longest
        self.sleep = sleep

    async def wait_out(self, err: RetryAfter, chat_id: object) -> bool:
        """Sleep the delay and say True; False, without waiting, when it is too long or the
        waits are used up."""
        delay = retry_seconds(err)
        if self.left <= 0 or delay > self.longest:
            return False
        self.left -= 1
        log.info("telegram: flood control in chat %s; waiting %gs", chat_id, delay)
        await self.sleep(delay)
        return True
