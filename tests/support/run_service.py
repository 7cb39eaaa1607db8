"""Run the real service in a subprocess for crash tests: `python run_service.py DB URL CSV SPEED`.

Alerts of the console chat go over HTTP to URL (the test's slow fake receiver) instead of
stdout, so the test can see exactly what was delivered when it kills this process.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp

from alerts.models import Alert
from bot.actions import Ref
from feeds.replay import ReplayFeed, read_candles
from storage.db import Chat
from tickerbell import app
from tickerbell.settings import Settings


class HttpNotifier:
    """Posts each alert as JSON to one URL."""

    name = "console"

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = aiohttp.ClientSession()

    async def send(
        self, chat: Chat, alert: Alert, image: bytes | None = None, ref: Ref | None = None
    ) -> str | None:
        body = {"rule": alert.rule_text, "time": alert.time.isoformat()}
        async with self.session.post(self.url, json=body) as response:
            response.raise_for_status()
        return None

    async def close(self) -> None:
        await self.session.close()


async def main(db: str, url: str, csv: str, speed: float) -> int:
    settings = Settings(db=Path(db), max_quote_age_seconds=10**9)
    _, candles = read_candles(Path(csv))
    feed = ReplayFeed({"XAG": candles})
    return await app.run(settings, replay=feed, replay_speed=speed, notifiers=[HttpNotifier(url)])


if __name__ == "__main__":
    app.setup_logging("INFO")
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]))))
