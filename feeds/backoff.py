"""Exponential backoff with jitter for feeds, driven by an injected clock (no sleeping).

A feed asks `ready(now)` before each request. When the request fails it calls `failure(now)`,
which returns the time of the next attempt; when it succeeds it calls `success()`. The
outage helpers make "log once per outage" easy::

    if not backoff.ready(now):
        return {}                      # still waiting: send nothing
    try:
        data = await fetch()
    except SomeError as err:
        backoff.failure(now)
        if backoff.outage_started:     # first failure of this outage
            log.warning("feed down: %s", err)
        raise
    if backoff.success():              # an outage just ended
        log.info("feed recovered")

The n-th consecutive failure waits `min(cap, base * 2 ** (n - 1))` seconds, of which the second
half is random ("equal jitter"): never less than half the nominal delay, so a feed cannot hammer
a venue, and feeds that failed together do not retry in lockstep.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta


class Backoff:
    """Retry timing for one source: `failures` consecutive failures, next try at `retry_at`."""

    def __init__(
        self, base: float = 1.0, cap: float = 300.0, rng: random.Random | None = None
    ) -> None:
        if base <= 0 or cap < base:
            raise ValueError("backoff needs 0 < base <= cap")
        self.base = base
        self.cap = cap
        self.rng = rng or random.Random()
        self.failures = 0
        self.retry_at: datetime | None = None

    def delay(self, failures: int) -> float:
        """The nominal (jitter-free) delay in seconds after `failures` consecutive failures."""
        if failures <= 0:
            return 0.0
        # The exponent is capped so that a very long outage cannot overflow the float.
        return min(self.cap, self.base * 2.0 ** min(failures - 1, 64))

    def failure(self, now: datetime, at_least: float = 0.0) -> datetime:
        """Record a failure at `now`; return when to try next (never before `at_least` seconds).

        `at_least` carries a server's Retry-After so a rate limit is honoured exactly.
        """
        self.failures += 1
        nominal = self.delay(self.failures)
        wait = max(nominal / 2 + self.rng.uniform(0, nominal / 2), at_least)
        self.retry_at = now + timedelta(seconds=wait)
        return self.retry_at

    def success(self) -> bool:
        """Record a success; True when it ends an outage (the caller logs recovery once)."""
        ended = self.failures > 0
        self.failures = 0
        self.retry_at = None
        return ended

    def ready(self, now: datetime) -> bool:
        """Whether a request may be sent at `now` (always, unless backing off)."""
        return self.retry_at is None or now >= self.retry_at

    @property
    def outage_started(self) -> bool:
        """True right after the first failure of an outage (the caller logs it once)."""
        return self.failures == 1

    @property
    def in_outage(self) -> bool:
        """True while the last attempt failed."""
        return self.failures > 0
