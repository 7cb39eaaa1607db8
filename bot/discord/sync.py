"""Deliberate command sync: push the slash commands only when they changed since the last
sync (a hash per application and scope, kept in a small file beside the database), or when
forced (`tickerbell discord-sync`); and where discord.py sends its requests."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import discord
import yarl
from discord.gateway import DiscordWebSocket

from bot.discord.tree import CommandTree

log = logging.getLogger(__name__)


def sync_file_for(db_path: Path | str) -> Path:
    """Where the hash of the last synced commands lives: beside the database."""
    db = Path(db_path)
    return db.with_name(f"{db.name}.discord-commands.json")


def tree_digest(tree: CommandTree, guild_id: int | None) -> str:
    """A hash of exactly what a sync would send for this scope."""
    guild = discord.Object(id=guild_id) if guild_id is not None else None
    payload = [command.to_dict(tree) for command in tree.get_commands(guild=guild)]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


async def sync_commands(
    tree: CommandTree, guild_id: int | None, state: Path | None, force: bool = False
) -> bool:
    """Push the commands when they differ from the last sync (or when forced); True if pushed.

    Call after login. Global commands can take a while to show up in every server; guild
    commands (`guild_id`) appear at once.
    """
    application = tree.client.application_id
    key = f"{application}:{guild_id if guild_id is not None else 'global'}"
    digest = tree_digest(tree, guild_id)
    synced = _read_json(state)
    if not force and synced.get(key) == digest:
        log.debug("discord: slash commands unchanged since the last sync")
        return False
    guild = discord.Object(id=guild_id) if guild_id is not None else None
    pushed = await tree.sync(guild=guild)
    where = f"server {guild_id}" if guild_id is not None else "every server (global)"
    log.info("discord: synced %d slash commands to %s", len(pushed), where)
    if state is not None:
        synced[key] = digest
        temporary = state.with_name(state.name + ".tmp")
        temporary.write_text(json.dumps(synced, indent=1, sort_keys=True))
        temporary.replace(state)
    return True


def point_discord_py(
    api_base_url: str | None = None, gateway_url: str | None = None
) -> Callable[[], None]:
    """Send discord.py's REST calls and gateway connections to these URLs (None: as they are).

    discord.py reads both from globals (`Route.BASE`, `DiscordWebSocket.DEFAULT_GATEWAY`), which
    is fine with one Discord bot per process. Returns a function that puts back the old values
    (each only if nobody changed it since).
    """
    old_base, old_gateway = discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    base = api_base_url.rstrip("/") if api_base_url else old_base
    gateway = yarl.URL(gateway_url) if gateway_url else old_gateway
    discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = base, gateway

    def restore() -> None:
        if base == discord.http.Route.BASE:
            discord.http.Route.BASE = old_base
        if gateway == DiscordWebSocket.DEFAULT_GATEWAY:
            DiscordWebSocket.DEFAULT_GATEWAY = old_gateway

    return restore


def _read_json(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
