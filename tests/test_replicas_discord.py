"""Two replicas with one Discord bot token on one PostgreSQL schema, through `tickerbell.app.run`.

Only the replica holding the "discord" role connects to the gateway (one connection per token);
every replica can send through the REST API. Each replica says which roles it runs on its own
metrics endpoint (`tickerbell_role`), as an operator would read it. The fake Discord and the fake
Binance are shared, as behind one token. discord.py reads its URLs from globals (one bot per
process, bot/discord/sync.py): a replica that stops puts back the URLs it found, so the fake holds
them for the whole test, as they would stay in the other replica's own process. The test needs
`TICKERBELL_TEST_DATABASE_URL` and skips without it (tests/support/postgres.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from fake_discord import FakeDiscord, Guild
from fake_exchange import FakeExchange
from support.local_server import held_port
from support.waiting import until
from test_journeys_discord import GUILD, RULE, TOKEN, Answer, World

from tickerbell import app
from tickerbell.settings import Settings

pytestmark = pytest.mark.slow

HOLDS_DISCORD = 'tickerbell_role{role="discord"} 1.0'
FELL = f"{RULE}: BTC fell below 85,000 (now 84,000)"


@dataclass
class Replica:
    """One `app.run` with its own stop and its own metrics port."""

    name: str
    metrics_port: int
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[int] | None = None

    async def metrics(self) -> str:
        """Its /metrics page ("" while it does not answer)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            async with aiohttp.ClientSession() as http, http.get(url) as response:
                return await response.text() if response.status == 200 else ""
        except aiohttp.ClientError:
            return ""

    async def holds_discord(self) -> bool:
        return HOLDS_DISCORD in await self.metrics()


@asynccontextmanager
async def replicas(world: World, url: str, *names: str) -> AsyncIterator[dict[str, Replica]]:
    """The replicas, started together; those still running are stopped cleanly on exit."""
    running: dict[str, Replica] = {}
    with held_port() as port_a, held_port() as port_b:
        for name, port in zip(names, (port_a, port_b), strict=True):
            settings = Settings(  # type: ignore[call-arg]
                _env_file=None,
                DISCORD_BOT_TOKEN=TOKEN,
                DISCORD_API_BASE_URL=world.discord.base_url,
                DISCORD_GATEWAY_URL=world.discord.gateway_url,
                db=world.db.with_name(f"{name}.db"),  # unused: the data is in PostgreSQL
                database_url=url,
                exchange_options={"binance": world.exchange.ccxt_options()},
                venue_mode={"binance": "poll"},
                poll_crypto_seconds=0.2,
                metrics_port=port,
            )
            replica = running[name] = Replica(name, port)
            replica.task = asyncio.create_task(app.run(settings, stop=replica.stop))
        try:
            yield running
        finally:
            for replica in running.values():
                await stopped(replica)


async def stopped(replica: Replica) -> None:
    """Stop a replica; it must end cleanly."""
    replica.stop.set()
    assert replica.task is not None
    assert await asyncio.wait_for(replica.task, 30) == 0


async def test_the_other_replica_takes_the_discord_gateway_over_and_answers_and_alerts(
    tmp_path: Path, postgres_url: str
) -> None:
    """One replica connects to the gateway and answers; stopped, the other connects within
    the lease's time, answers the next command and posts an alert decided after once."""
    async with AsyncExitStack() as stack:
        discord = await stack.enter_async_context(FakeDiscord(TOKEN, guilds=[Guild(GUILD)]))
        exchange = await stack.enter_async_context(FakeExchange())
        stack.enter_context(discord.pointed_at())
        world = World(discord, exchange, tmp_path / "unused.db")
        world.price(86000)
        async with replicas(world, postgres_url, "a", "b") as running:

            async def holders() -> list[str]:
                return [r.name for r in running.values() if await r.holds_discord()]

            async def both_up() -> bool:
                return all([await r.metrics() for r in running.values()])

            await until(both_up, timeout=30)
            await until(lambda: discord.identified and discord.open_gateways() == 1, 30)
            await until(holders, timeout=30)
            (first,) = await holders()
            assert discord.open_gateways() == 1 and len(discord.identified) == 1
            assert await world.say("alert add", rule=RULE) == Answer(
                "Alert #1 set: BTC below 85000", False
            )

            await stopped(running.pop(first))
            (second,) = running

            async def taken_over() -> bool:
                return (
                    len(discord.identified) == 2
                    and discord.open_gateways() == 1
                    and await holders() == [second]
                )

            await until(taken_over, timeout=30)
            listed = await world.say("alert list")
            assert RULE in listed.text and not listed.private
            await world.ticks()  # the engine runs on the second replica now, above the level
            world.price(84000)
            await until(lambda: world.alerts(), timeout=30)
            await world.ticks()
            assert len(discord.identified) == 2  # nobody else connected meanwhile
    assert world.alerts() == [FELL]
