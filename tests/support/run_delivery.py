"""One delivery loop over PostgreSQL, as a replica runs it, sending over HTTP to a test's
receiver: in the test's process (`delivering`), or in a subprocess to be killed
(`python run_delivery.py DATABASE_URL RECEIVER_URL NAME [BATCH]`, until SIGTERM or SIGKILL).

Each alert is posted as JSON {"by": NAME, "chat": the chat's platform id, "rule": its rule
text}; chats of platform "http" are the ones it delivers to.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from alerts.models import Alert
from bot.actions import Ref
from bot.notifier import DeliveryError
from bot.replies import Reply
from storage.api import Chat
from storage.postgres import PostgresStore
from tickerbell.delivery import Delivery

PLATFORM = "http"


class HttpNotifier:
    """Posts each alert as JSON to one URL, saying who sent it."""

    name = PLATFORM

    def __init__(self, url: str, by: str) -> None:
        self.url = url
        self.by = by
        self.session = aiohttp.ClientSession()

    async def send(
        self, chat: Chat, alert: Alert, image: bytes | None = None, ref: Ref | None = None
    ) -> str | None:
        body = {"by": self.by, "chat": chat.chat_id, "rule": alert.rule_text}
        try:
            async with self.session.post(self.url, json=body) as response:
                response.raise_for_status()
        except aiohttp.ClientError as err:
            raise DeliveryError(str(err)) from err
        return None

    async def post(self, chat: Chat, reply: Reply) -> str | None:
        raise DeliveryError("no digests here", permanent=True)

    async def close(self) -> None:
        await self.session.close()


@asynccontextmanager
async def delivering(
    url: str, receiver: str, by: str, interval: float = 1.0, batch: int = 500
) -> AsyncIterator[Delivery]:
    """A running delivery loop on a store of its own (its own pool, claims and listener),
    woken by rows queued anywhere on the database; stopped after the row in flight on exit."""
    async with PostgresStore.open(url) as store:
        notifier = HttpNotifier(receiver, by)
        delivery = Delivery(store, {PLATFORM: notifier}, interval=interval, batch=batch)
        store.on_queued(delivery.wake)
        task = asyncio.create_task(delivery.run(), name=f"delivery {by}")
        try:
            yield delivery
        finally:
            delivery.stop()
            await task
            await notifier.close()


async def main(url: str, receiver: str, by: str, batch: int) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with delivering(url, receiver, by, batch=batch):
        await stop.wait()


if __name__ == "__main__":
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 500
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], batch))
