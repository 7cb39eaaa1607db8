"""`tickerbell discord-sync`: push the Discord slash commands now, without starting the bot.

The running bot syncs by itself only when its commands changed since the last sync; this is for
the first set-up, for a new server id, and for cleaning up after moving between global and
server-only registration. It logs in over REST (no gateway), syncs, and logs out.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TextIO

import aiohttp
import discord

from bot.discord.sync import point_discord_py, sync_commands, sync_file_for
from bot.discord.tree import TickerClient, make_tree

log = logging.getLogger(__name__)


async def discord_sync(
    token: str,
    *,
    db_path: Path | str,
    guild_id: int | None = None,
    clear_global: bool = False,
    api_base_url: str | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Log in, push the slash commands (to `guild_id` only, if given), log out; an exit status.

    `clear_global` also removes the global commands, for a bot moved to one server's commands
    (otherwise that server would list each command twice). `api_base_url` is
    DISCORD_API_BASE_URL (None: discord.py's own).
    """
    client = TickerClient(intents=discord.Intents(guilds=True))
    tree = make_tree(client, guild_id)
    state = sync_file_for(db_path)
    restore_url = point_discord_py(api_base_url)
    try:
        await client.login(token)
        await sync_commands(tree, guild_id, state, force=True)
        where = f"server {guild_id}" if guild_id is not None else "every server"
        print(f"discord: slash commands synced to {where} as {client.user}", file=out)
        if clear_global and guild_id is not None:
            tree.clear_commands(guild=None)
            await sync_commands(tree, None, state, force=True)
            print("discord: global slash commands removed", file=out)
    except discord.LoginFailure:
        print("discord: the bot token was refused (check DISCORD_BOT_TOKEN)", file=out)
        return 1
    except discord.HTTPException as err:
        print(f"discord: sync failed: {err}", file=out)
        if err.status == 403 and guild_id is not None:
            print(
                f"discord: is the bot in server {guild_id}, invited with the "
                "applications.commands scope?",
                file=out,
            )
        return 1
    except (aiohttp.ClientError, OSError, TimeoutError) as err:
        print(f"discord: cannot reach Discord: {type(err).__name__}: {err}", file=out)
        return 1
    finally:
        await client.close()
        restore_url()
    return 0
