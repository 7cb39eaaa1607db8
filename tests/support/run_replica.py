"""One replica for the kill test, as a process: `python run_replica.py POLL_SECONDS`.

Everything but the poll interval comes from the environment, as for `tickerbell run`
(TICKERBELL_DATABASE_URL, TELEGRAM_BOT_TOKEN, TICKERBELL_EXCHANGE_OPTIONS, ...); the interval
is given here because the environment refuses one under a second (a venue's manners).
"""

from __future__ import annotations

import asyncio
import sys

from tickerbell import app
from tickerbell.settings import Settings


async def main(poll_seconds: float) -> int:
    return await app.run(Settings(poll_crypto_seconds=poll_seconds))


if __name__ == "__main__":
    app.setup_logging("INFO")
    sys.exit(asyncio.run(main(float(sys.argv[1]))))
