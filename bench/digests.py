"""Benchmark: the service's look for daily digests that are due, with 10,000 chats.

The real store (a temporary database, WAL, synchronous=FULL) and the real `Service.send_digests`
on a simulated clock. 10,000 chats have a digest, spread over 24 zones and 4 times of day.
Printed: the time of one look when nothing is due (what every look costs, every 15 s), then of
the look at 08:00 UTC that puts the digests due then in the outbox (one transaction each, with
its fsync), and of the look after it (nothing left to do). Run: .venv/bin/python -m bench.digests
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import UTC, datetime
from datetime import time as clock_time
from pathlib import Path

from alerts.sanity import Limits
from feeds.base import Feed
from feeds.catalogue import Catalogue
from storage.api import DigestSetting
from storage.db import Store
from tickerbell.market_data import MarketData
from tickerbell.service import Service

CHATS = 10_000
ZONES = ("UTC", "Europe/London", "America/New_York", "Asia/Tokyo", "Australia/Sydney", *(
    f"Etc/GMT{offset:+d}" for offset in range(-9, 10) if offset
))  # fmt: skip
TIMES = (clock_time(8), clock_time(12), clock_time(18), clock_time(22))
T0 = datetime(2026, 3, 2, 0, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def no_feed(source: str) -> Feed:
    raise AssertionError("looking for digests fetches no prices")


async def main() -> None:
    clock = Clock()
    with tempfile.TemporaryDirectory() as folder:
        async with Store.open(Path(folder) / "digests.db", clock=clock) as store:
            chats = await store.import_chats("telegram", [str(n) for n in range(CHATS)], "private")
            for n, chat in enumerate(chats):
                zone = "UTC" if n % 4 == 0 else ZONES[n % len(ZONES)]
                at = TIMES[0] if n % 4 == 0 else TIMES[n % len(TIMES)]
                await store.set_digest(chat.id, DigestSetting(at, zone))
            data = MarketData(Catalogue(), no_feed, Limits(), clock=clock)
            service = Service(store, data, band=0.0025, poll_interval=lambda source: 10.0)
            for label, now in (
                ("nothing due", datetime(2026, 3, 2, 0, 1, tzinfo=UTC)),
                ("08:00 UTC", datetime(2026, 3, 2, 8, 0, tzinfo=UTC)),
                ("08:00 UTC again", datetime(2026, 3, 2, 8, 0, 15, tzinfo=UTC)),
            ):
                clock.now = now
                started = time.perf_counter()
                queued = await service.send_digests()
                seconds = time.perf_counter() - started
                print(f"{label:>16}: {queued:5d} digests queued in {seconds * 1000:8.1f} ms")
            counts = await store.outbox_counts()
            print(f"outbox: {counts}")


if __name__ == "__main__":
    asyncio.run(main())
