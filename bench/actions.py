"""Benchmark: the buttons under alerts, through the real Telegram adapter.

Real: SQLite (a temporary database), the command layer, the TelegramBot adapter (PTB, httpx)
and its polling; the far side is tests/fake_telegram.py over HTTP on 127.0.0.1. N alerts of N
rules are delivered to one private chat, each with its keyboard; then the Snooze 1h button of
each is pressed, one after another, and the time from the press being queued at the fake to
its answerCallbackQuery arriving, and to the message's edit arriving, is measured (the
adapter's long poll, capped at 0.05 s by the fake, is part of it). Also: what signing and
checking one button's data costs, and what a keyboard adds to a send.

Run: .venv/bin/python -m bench.actions [--alerts 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import timeit
from datetime import UTC, datetime
from pathlib import Path

from alerts import rules
from alerts.models import Alert, Direction
from alerts.sanity import Limits
from bench.fanout import NoFeed
from bot.actions import Signer, parse
from bot.commands import Commands
from bot.results import Action
from bot.telegram.adapter import TelegramBot
from bot.telegram.pacing import Rates
from feeds.catalogue import Catalogue
from storage.db import Store
from tickerbell.delivery import Delivery
from tickerbell.market_data import MarketData

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fake_telegram import FakeTelegram

TOKEN = "123456789:AAF-bench_token"
CHAT = 4242
FAST = Rates(overall_per_second=10_000, chat_per_second=10_000, group_per_minute=600_000)


def alert(level: int) -> Alert:
    """A synthetic alert of `XAG above <level>`, stamped now."""
    text = f"XAG above {level}"
    return Alert(text, rules.parse(text), Direction.UP, level + 0.5, float(level), level + 0.5,
                 datetime.now(UTC))  # fmt: skip


def signing() -> None:
    signer = Signer(bytes(32))
    now = datetime.now(UTC)
    data = signer.data("telegram", "4242", 123_456, Action.SNOOZE, now)
    parsed = parse(data)
    assert parsed is not None
    runs = 100_000
    sign = timeit.timeit(
        lambda: signer.data("telegram", "4242", 123_456, Action.SNOOZE, now), number=runs
    )
    check = timeit.timeit(
        lambda: signer.valid("telegram", "4242", parse(data) or parsed, now), number=runs
    )
    print(f"button data: {len(data.encode())} bytes (Telegram allows 64), e.g. {data}")
    print(f"sign one: {sign / runs * 1e6:.1f} us; parse and check one: {check / runs * 1e6:.1f} us")


async def presses(count: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        async with (
            FakeTelegram(TOKEN, poll_cap=0.05) as fake,
            Store.open(Path(scratch) / "bench.db") as store,
        ):
            data = MarketData(Catalogue(), lambda source: NoFeed(), Limits())
            commands = Commands(store, data, commands_per_minute=10 * count)
            bot = TelegramBot(token=TOKEN, base_url=fake.base_url, commands=commands,
                              store=store, rates=FAST)  # fmt: skip
            delivery = Delivery(store, {bot.name: bot})
            await bot.start()
            try:
                while not bot.listening():
                    await asyncio.sleep(0.01)
                chat = await store.chat("telegram", str(CHAT))
                for level in range(count):
                    rule = await store.add_rule(chat.id, f"XAG above {level + 1}", "b", count)
                    await store.commit_tick({}, [(rule, chat.id, alert(level + 1))])
                started = time.perf_counter()
                await delivery.drain()
                sent = time.perf_counter() - started
                messages = [m.message_id for m in fake.messages]
                assert len(messages) == count
                answered, edited = [], []
                for message in messages:
                    edits = len(fake.edits)
                    pressed = time.perf_counter()
                    query = fake.press(message, "Snooze 1h", user_id=CHAT)
                    while fake.answer_to(query) is None or len(fake.edits) == edits:
                        await asyncio.sleep(0.001)
                    answer = next(a for a in fake.answers if a.query_id == query)
                    answered.append(answer.at - pressed)
                    edited.append(time.perf_counter() - pressed)
                snoozed = sum(1 for r in await store.rules() if r.snoozed_until is not None)
            finally:
                await bot.close()
        print(f"{count} alerts with keyboards delivered in {sent:.2f} s "
              f"({sent / count * 1000:.1f} ms each, one chat, pacing off)")  # fmt: skip
        for name, times in (("answered", answered), ("message edited", edited)):
            ms = sorted(t * 1000 for t in times)
            p95 = ms[int(0.95 * (len(ms) - 1))]
            print(f"press -> {name}: median {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms, "
                  f"max {ms[-1]:.1f} ms")  # fmt: skip
        print(f"rules snoozed: {snoozed} of {count}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=200)
    args = parser.parse_args()
    signing()
    asyncio.run(presses(args.alerts))


if __name__ == "__main__":
    main()
