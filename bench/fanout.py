"""Benchmark: one alert fanned out to N subscribed Telegram chats, as production delivers it.

Real: the outbox in SQLite (a temporary database, WAL, synchronous=FULL), the Delivery worker
draining it, and the TelegramBot adapter's `send` (PTB, httpx, its send pacing). The far side is
tests/fake_telegram.py over HTTP on 127.0.0.1, enforcing Telegram's flood limits (30 msg/s per
bot, 1/s per private chat, 20/min per group) scaled up by a factor so the run takes seconds; the
bot is configured with the same scaled limits. One alert is committed to the outbox for every
chat in one transaction (the decision), then delivery is woken.

The default factor is 5 (150 msg/s): the fake and the bot share one process and one core,
and near 500 msg/s that core, not the bot's pacing, sets the pace.

Prints the achieved send rate as a fraction of the scaled overall limit, the 429s the fake
answered, messages lost, and the time from the decision (commit) to each send returning.
`--direct` skips the Delivery worker and calls `send` for every chat at once, to show what
the adapter alone sustains (the worker sends one row at a time).
Run: .venv/bin/python -m bench.fanout [--chats 2000] [--scale 20] [--direct]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alerts import rules
from alerts.models import Alert, Candle, Direction, Quote
from alerts.sanity import Limits as QuoteLimits
from bot.commands import Commands
from bot.telegram.adapter import TelegramBot
from bot.telegram.pacing import Rates
from feeds.base import FeedHealth
from feeds.catalogue import Catalogue
from storage.db import Chat, Store
from tickerbell.delivery import Delivery
from tickerbell.market_data import MarketData

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fake_telegram import FakeTelegram, Limits

TOKEN = "123456789:AAF-bench_token"
FIRST_CHAT = 100_000_000
ALERT = Alert(
    rule_text="XAU up 2% 1d",
    rule=rules.parse("XAU up 2% 1d"),
    direction=Direction.UP,
    price=4110.0,
    reference=4029.4,
    observed=2.0,
    time=datetime(2026, 3, 2, 14, 30, tzinfo=UTC),
)  # synthetic figures


class NoFeed:
    """The bench sends only; no command asks for a price."""

    name = "none"

    def __init__(self) -> None:
        self.health = FeedHealth()

    async def quotes(self, symbols: list[str]) -> dict[str, Quote]:
        raise AssertionError("no prices in this bench")

    async def candles(self, symbol: str, timeframe: str, since: datetime) -> list[Candle]:
        raise AssertionError("no prices in this bench")

    async def close(self) -> None:
        return None


class Timed:
    """The adapter as delivery sees it, noting when each send returned."""

    def __init__(self, bot: TelegramBot) -> None:
        self.bot = bot
        self.name = bot.name
        self.returned: list[float] = []
        self.durations: list[float] = []

    async def send(self, chat: Chat, alert: Alert, image: bytes | None = None) -> str | None:
        started = time.perf_counter()
        message_id = await self.bot.send(chat, alert, image)
        self.returned.append(time.perf_counter())
        self.durations.append(self.returned[-1] - started)
        return message_id

    async def close(self) -> None:
        await self.bot.close()


async def main(chats: int, scale: float, direct: bool, interval: float) -> None:
    limits = Limits().scaled(scale)
    rates = Rates(limits.overall_per_second, limits.chat_per_second, limits.group_per_minute)
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            FakeTelegram(TOKEN, limits=limits) as fake,
            Store.open(Path(tmp) / "fanout.db") as store,
        ):
            ids = [str(FIRST_CHAT + i) for i in range(chats)]
            subscribed = await store.import_chats("telegram", ids, "private")
            for chat in subscribed:
                await store.subscribe(chat.id, "XAU")
            data = MarketData(
                Catalogue(), lambda source: NoFeed(), QuoteLimits(max_age=timedelta(minutes=10))
            )
            bot = TelegramBot(
                token=TOKEN,
                base_url=fake.base_url,
                commands=Commands(store, data),
                store=store,
                rates=rates,
            )
            timed = Timed(bot)
            delivery = Delivery(store, {timed.name: timed}, interval=interval)
            await bot.start()
            worker = None if direct else asyncio.create_task(delivery.run())
            try:
                await store.commit_tick({}, [(None, chat.id, ALERT) for chat in subscribed])
                decided = time.perf_counter()
                if direct:
                    await asyncio.gather(*(timed.send(chat, ALERT) for chat in subscribed))
                else:
                    delivery.wake()
                    deadline = decided + 600
                    while len(timed.returned) < chats and time.perf_counter() < deadline:
                        await asyncio.sleep(0.05)
            finally:
                delivery.stop()
                if worker is not None:
                    await worker
                await bot.close()
            counts = await store.outbox_counts()
    mode = "send() for every chat at once" if direct else f"Delivery (pause {interval:g} s)"
    print(f"fan-out of one alert to {chats} private chats via {mode}, limits x{scale:g}")
    report(chats, limits, fake, timed, decided, counts)


def report(
    chats: int,
    limits: Limits,
    fake: FakeTelegram,
    timed: Timed,
    decided: float,
    counts: dict[str, int],
) -> None:
    """Print the figures."""
    received = Counter(m.chat_id for m in fake.messages)
    lost = sum(1 for i in range(chats) if received[FIRST_CHAT + i] == 0)
    duplicated = sum(n - 1 for n in received.values() if n > 1)
    arrivals = sorted(m.at for m in fake.messages)
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
    rate = (len(arrivals) - 1) / span if span else 0.0
    latencies = sorted(t - decided for t in timed.returned)
    p95 = statistics.quantiles(latencies, n=20)[-1] if len(latencies) > 1 else float("nan")
    print(
        f"  limits enforced: {limits.overall_per_second:g} msg/s per bot, "
        f"{limits.chat_per_second:g}/s per private chat, {limits.group_per_minute:g}/min per group"
    )
    print(
        f"  achieved {rate:.1f} msg/s = {rate / limits.overall_per_second:.2f} of the limit "
        f"(first to last arrival, {span:.2f} s)"
    )
    print(f"  429 answers: {fake.rate_limited}")
    print(f"  lost: {lost}, duplicated: {duplicated}, outbox: {counts}")
    if timed.durations:
        print(f"  one send() call: mean {statistics.mean(timed.durations) * 1000:.2f} ms")
    if latencies:
        print(
            f"  decision -> send returned: p50 {statistics.median(latencies):.2f} s, "
            f"p95 {p95:.2f} s, max {latencies[-1]:.2f} s"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=2000, help="subscribed chats (2000)")
    parser.add_argument("--scale", type=float, default=5, help="limits multiplied by (5)")
    parser.add_argument("--direct", action="store_true", help="bypass the Delivery worker")
    parser.add_argument(
        "--interval", type=float, default=1.0, help="Delivery's pause between rounds (1.0)"
    )
    args = parser.parse_args()
    asyncio.run(main(args.chats, args.scale, args.direct, args.interval))
