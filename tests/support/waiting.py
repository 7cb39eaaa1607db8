"""Waiting in tests without fixed sleeps: poll a condition until it holds or time runs out."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


async def until(predicate: Callable[[], Any], timeout: float = 8.0) -> None:
    """Wait for a condition (sync or async) to hold; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)
