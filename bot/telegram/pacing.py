"""Pacing sends below Telegram's flood limits: `SendLimiter`, PTB's rate limiter for
message-sending calls (overall, per private chat, per group), built on `Pacer` (even spacing per
key) and `KeyedLocks` (one FIFO lock per key); and `FloodWaits`, the one place a sender waits
out Telegram's flood control (RetryAfter) when it comes anyway."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Hashable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter
from telegram.warnings import PTBDeprecationWarning

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


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
    """Spaces events at least `interval` seconds apart per key, first come first served.

    No bursts: slots are booked one at a time, when the previous event went, so a stalled
    event loop slows sends down instead of releasing a backlog at once. Slots stay on their
    grid (a late wake-up does not push every later slot back), and a strict spacing never puts
    more than N in any window of N intervals.
    """

    def __init__(self, clock: Callable[[], float], sleep: Sleep) -> None:
        self.clock = clock
        self.sleep = sleep
        self._next: dict[Hashable, float] = {}
        self._locks = KeyedLocks()

    async def wait(self, key: Hashable, interval: float) -> None:
        """Return when `key` may go again, and start its next interval."""
        if interval <= 0:
            return
        async with self._locks.hold(key):
            now = self.clock()
            slot = max(now, self._next.get(key, now))
            self._next[key] = slot + interval
            if len(self._next) > 4096:  # forget keys whose interval has passed
                self._next = {k: t for k, t in self._next.items() if t > now}
            if slot > now:
                await self.sleep(slot - now)


class SendLimiter(BaseRateLimiter[int]):
    """PTB rate limiter: overall, per private chat and per group, for message-sending calls.

    PTB's AIORateLimiter has no per-private-chat bucket and allows bursts of the full rate; this
    one spaces sends evenly, at `HEADROOM` of each limit: spaced at exactly the limit, the
    smallest network jitter puts N+1 arrivals in some window of Telegram's. Other calls
    (getUpdates, getChatMember, ...) are not limited. A RetryAfter is not retried here:
    `TelegramBot` decides (it knows what is being sent).
    """

    HEADROOM = 0.95

    def __init__(self, rates: Rates, clock: Callable[[], float], sleep: Sleep) -> None:
        self.rates = rates
        self.pacer = Pacer(clock, sleep)

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to release."""

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, Any]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> Any:
        """Wait for the chat's slot, then the bot's, then make the call."""
        chat_id = data.get("chat_id")
        if chat_id is not None and endpoint.startswith(("send", "copy", "forward")):
            if _is_group(chat_id):
                interval = _interval(self.rates.group_per_minute / 60)
            else:
                interval = _interval(self.rates.chat_per_second)
            await self.pacer.wait(str(chat_id), interval)
            await self.pacer.wait(None, _interval(self.rates.overall_per_second))
        return await callback(*args, **kwargs)


def _interval(per_second: float) -> float:
    return 1 / (per_second * SendLimiter.HEADROOM) if per_second > 0 else 0.0


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
