"""Staying far from Discord's ban: it bans a bot for a while after 10,000 invalid requests
(401, 403, 429) in ten minutes; `InvalidRequests` counts them so delivery can pause well before."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

INVALID_LIMIT = 1000  # Discord bans at 10,000 invalid requests in 10 minutes
INVALID_WINDOW = 600.0


class InvalidRequests:
    """Counts 401, 403 and 429 answers over a sliding window, as Discord's ban does.

    A 429 with `X-RateLimit-Scope: shared` is not counted (Discord does not count it either).
    """

    def __init__(self, limit: int, window: float, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._times: deque[float] = deque()

    def record(self, status: int, scope: str | None = None) -> None:
        """Note one HTTP answer."""
        if status in (401, 403) or (status == 429 and scope != "shared"):
            self._times.append(self.clock())

    def count(self) -> int:
        """Invalid answers within the window."""
        horizon = self.clock() - self.window
        while self._times and self._times[0] <= horizon:
            self._times.popleft()
        return len(self._times)

    def pause_left(self) -> float:
        """Seconds until the count falls below the limit again (0: sending is fine)."""
        if self.limit <= 0 or self.count() < self.limit:
            return 0.0
        return self._times[-self.limit] + self.window - self.clock()
