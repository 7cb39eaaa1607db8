"""Delivery by several replicas on one PostgreSQL database (tickerbell.delivery over the store's
claims, storage.postgres): loops on separate stores (separate pools, claims and listeners),
sending over real HTTP to a receiver that records who sent what; one loop in a subprocess
killed with SIGKILL while its messages are in flight.

The tests need `TICKERBELL_TEST_DATABASE_URL` and skip without it (tests/support/postgres.py)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from aiohttp import web
from support.local_server import serve_locally
from support.postgres import Relay
from support.run_delivery import PLATFORM, delivering
from support.scripted import T0
from support.waiting import until

from alerts import rules
from alerts.models import Alert, Direction
from storage.api import Chat
from storage.postgres import PostgresStore

ROOT = Path(__file__).resolve().parents[1]


def alert(seq: int) -> Alert:
    rule = rules.parse("XAG above 50")
    made = Alert("XAG above 50", rule, Direction.UP, 50.5, 50.0, 50.5, T0, 50.49, 50.5)
    return replace(made, rule_text=str(seq))  # the chat's n-th alert, as the receiver sees it


@dataclass
class Receiver:
    """The far side: records each message as it arrives (a platform may have taken a message
    whose answer never came back), as (by, chat, seq); a loop named in `hold` gets answers to
    that many messages, then none until the test ends."""

    received: list[tuple[str, str, int]] = field(default_factory=list)
    hold: dict[str, int] = field(default_factory=dict)
    held: list[tuple[str, int]] = field(default_factory=list)  # (chat, seq) never answered
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        by, chat, seq = body["by"], body["chat"], int(body["rule"])
        before = sum(1 for sender, _, _ in self.received if sender == by)
        self.received.append((by, chat, seq))
        if by in self.hold and before >= self.hold[by]:
            self.held.append((chat, seq))
            await self.ended.wait()
        return web.json_response({"ok": True})

    def by_chat(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for _, chat, seq in self.received:
            out.setdefault(chat, []).append(seq)
        return out


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    application = web.Application()
    application.router.add_post("/alert", found.handle)
    runner, port = await serve_locally(application)
    found.url = f"http://127.0.0.1:{port}/alert"
    try:
        yield found
    finally:
        found.ended.set()
        await runner.cleanup()


async def queue(store: PostgresStore, chats: list[Chat], rounds: range) -> None:
    """One tick per round, each with the round's alert for every chat."""
    for seq in rounds:
        await store.commit_tick({}, [(None, chat.id, alert(seq)) for chat in chats])


async def make_chats(store: PostgresStore, count: int) -> list[Chat]:
    return await store.import_chats(PLATFORM, [f"c{i:03d}" for i in range(count)], "private")


async def test_three_loops_deliver_every_row_once_and_each_chat_in_order(
    postgres_url: str, receiver: Receiver
) -> None:
    chats_n, rows_n = 60, 8
    async with PostgresStore.open(postgres_url) as store, AsyncExitStack() as loops:
        chats = await make_chats(store, chats_n)
        await queue(store, chats, range(1, 3))
        for name in ("a", "b", "c"):  # small rounds, so the loops share the chats
            await loops.enter_async_context(delivering(postgres_url, receiver.url, name, batch=7))
        await queue(store, chats, range(3, rows_n + 1))  # queued while they deliver
        await until(lambda: _all_delivered(store, chats_n * rows_n), timeout=120)
    assert len(receiver.received) == chats_n * rows_n  # nothing twice
    assert receiver.by_chat() == {chat.chat_id: list(range(1, rows_n + 1)) for chat in chats}


async def _all_delivered(store: PostgresStore, rows: int) -> bool:
    return await store.outbox_counts() == {"delivered": rows}


async def _answers_recorded(store: PostgresStore, receiver: Receiver) -> bool:
    """Every message answered is marked delivered (no mark can land without an answer)."""
    counts = await store.outbox_counts()
    return counts.get("delivered", 0) == len(receiver.received) - len(receiver.held)


async def test_a_loop_killed_mid_send_leaves_one_duplicate_per_chat_in_flight(
    postgres_url: str, receiver: Receiver
) -> None:
    """Loop A (a subprocess) sends until its messages get no answer, then is killed with
    SIGKILL while they are in flight; loop B, which meanwhile delivered the chats A did not
    hold, takes A's chats: every row arrives, in order, and the only ones that come twice are
    the ones A had in flight, once each."""
    chats_n, rows_n = 30, 6
    receiver.hold["A"] = 15
    async with PostgresStore.open(postgres_url) as store:
        chats = await make_chats(store, chats_n)
        await queue(store, chats, range(1, rows_n + 1))
        script = ROOT / "tests" / "support" / "run_delivery.py"
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
        a = await asyncio.create_subprocess_exec(
            sys.executable, str(script), postgres_url, receiver.url, "A", "10",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT,
        )  # fmt: skip
        try:
            await until(lambda: receiver.held, timeout=60)  # A is mid-send
            async with delivering(postgres_url, receiver.url, "B"):
                await until(lambda: any(by == "B" for by, _, _ in receiver.received), timeout=60)
                await until(lambda: _answers_recorded(store, receiver), timeout=60)
                a.kill()  # only the messages it has in flight are not marked delivered
                _, err = await a.communicate()
                await until(lambda: _all_delivered(store, chats_n * rows_n), timeout=60)
        finally:
            if a.returncode is None:
                a.kill()
                await a.wait()
    assert a.returncode == -9, err.decode()[-2000:]
    by_chat = receiver.by_chat()
    twice = Counter(
        (chat, seq) for chat, seqs in by_chat.items() for seq, n in Counter(seqs).items()
        for _ in range(n - 1)
    )  # fmt: skip
    assert twice == Counter(receiver.held)  # exactly the messages A had in flight, once more
    for chat in chats:
        seqs = by_chat[chat.chat_id]
        firsts = [seq for i, seq in enumerate(seqs) if i == 0 or seqs[i - 1] != seq]
        assert firsts == list(range(1, rows_n + 1)), (chat.chat_id, seqs)  # in order


async def test_rows_queued_elsewhere_wake_a_loop_with_a_long_interval(
    postgres_url: str, receiver: Receiver
) -> None:
    async with PostgresStore.open(postgres_url) as store:
        [chat] = await make_chats(store, 1)
        await queue(store, [chat], range(1, 2))
        async with delivering(postgres_url, receiver.url, "a", interval=3600):
            await until(lambda: len(receiver.received) == 1, timeout=30)  # its first round
            await until(lambda: _all_delivered(store, 1), timeout=30)
            await queue(store, [chat], range(2, 3))  # only its listener can wake it now
            await until(lambda: len(receiver.received) == 2, timeout=30)
    assert receiver.by_chat() == {chat.chat_id: [1, 2]}


async def test_a_loop_cut_off_from_the_database_delivers_again_once_it_is_back(
    postgres_url: str, receiver: Receiver
) -> None:
    async with PostgresStore.open(postgres_url) as store, Relay(postgres_url) as relay:
        chats = await make_chats(store, 3)
        async with delivering(relay.url, receiver.url, "a", interval=0.2):
            await queue(store, chats, range(1, 2))
            await until(lambda: _all_delivered(store, 3), timeout=30)
            await relay.cut()  # its pool, claims session and listener: all lost
            await queue(store, chats, range(2, 4))
            await relay.restore()
            await until(lambda: _all_delivered(store, 9), timeout=60)
    assert receiver.by_chat() == {chat.chat_id: [1, 2, 3] for chat in chats}
