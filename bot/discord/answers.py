"""Answering slash commands: who is asking (and whether they may change alerts), the typed
operation run for them, and its result as embeds within Discord's three seconds (a slow one is
deferred first); refusals and errors only to the caller."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

import discord
from discord.app_commands import Choice

from bot import replies
from bot.actions import Ref
from bot.commands import Caller, Commands
from bot.discord import render
from bot.discord.render import (
    CANNOT_POST,
    CHART,
    SORRY,
    SPELLING,
    STOPPING,
    action_view,
    pressed_embed,
    reply_embeds,
)
from bot.discord.tree import Call, Interaction
from bot.replies import Reply
from bot.results import Action, NoHistory, Pressed, Refusal, Result
from storage.api import Storage

log = logging.getLogger(__name__)

DEFER_AFTER = 2.0  # Discord wants a first answer within 3 s


class SlashAnswers:
    """Runs each slash command through the command layer and answers it.

    `reachable(channel_id)` is told of a channel where the bot may post again, so delivery
    writes to it again.
    """

    def __init__(
        self,
        *,
        platform: str,
        commands: Commands,
        store: Storage,
        admin_role: str = "",
        symbols: Sequence[str] = render.SYMBOLS,
        defer_after: float = DEFER_AFTER,
        reachable: Callable[[str], None] = lambda channel_id: None,
    ) -> None:
        self.platform = platform
        self.commands = commands
        self.store = store
        self.admin_role = admin_role.strip()
        self.symbols = tuple(symbols)
        self.defer_after = defer_after
        self.reachable = reachable
        self.accepting = True  # False while stopping: commands get a short "restarting"

    async def answer(self, interaction: Interaction, call: Call, posts_here: bool = False) -> None:
        """Run one typed operation of the command layer and answer with its result as embeds."""
        try:
            if not self.accepting:
                await self._respond(interaction, Reply((STOPPING,), ok=False))
                return
            caller = self.caller(interaction)
            await self._reactivate(interaction, caller)
            reply = await self._run_in_time(interaction, caller, call)
            if posts_here and reply.ok and not can_post(interaction):
                reply = replace(reply, lines=(*reply.lines, CANNOT_POST))
            await self._respond(interaction, reply)
        except discord.HTTPException as err:
            log.warning("discord: could not answer /%s: %s", _name(interaction), err)
        except Exception:
            log.exception("discord: /%s failed", _name(interaction))
            with contextlib.suppress(discord.HTTPException):
                await self._respond(interaction, Reply((SORRY,), ok=False))

    async def press(self, interaction: Interaction) -> None:
        """A button under an alert: done through the command layer and answered within
        Discord's three seconds (a slow one is deferred first), by editing the alert to say what
        was done; a refusal only to the one who pressed."""
        try:
            if not self.accepting:
                await self._respond(interaction, Reply((STOPPING,), ok=False))
                return
            raw: dict[str, object] = dict(interaction.data or {})
            data = str(raw.get("custom_id", ""))
            caller = self.caller(interaction)
            work = asyncio.ensure_future(self._press(caller, data, f"@{interaction.user.name}"))
            try:
                result = await asyncio.wait_for(asyncio.shield(work), self.defer_after)
            except TimeoutError:
                await interaction.response.defer()  # for a button: "the message will change"
                result = await work
            await self._show_press(interaction, caller, *result)
        except discord.HTTPException as err:
            log.warning("discord: could not answer a button: %s", err)
        except Exception:
            log.exception("discord: a button failed")
            with contextlib.suppress(discord.HTTPException):
                await self._respond(interaction, Reply((SORRY,), ok=False))

    async def _press(self, caller: Caller, data: str, by: str) -> tuple[Result, bytes | None]:
        """The press's result, and for Chart the chart (None: nothing to draw)."""
        result = await self.commands.press(caller, data, by)
        if isinstance(result, Pressed) and result.action is Action.CHART:
            return result, await self.commands.pressed_chart(result)
        return result, None

    async def _show_press(
        self, interaction: Interaction, caller: Caller, result: Result, image: bytes | None
    ) -> None:
        if isinstance(result, Pressed) and result.action is Action.CHART and image is None:
            result = NoHistory(result.alert.symbol)
        if isinstance(result, Refusal):
            text = replies.refusal_text(result, SPELLING)
            await self._respond(interaction, Reply((text,), ok=False))
            return
        assert isinstance(result, Pressed)
        message = interaction.message
        image_url = None
        if message is not None and message.embeds and message.embeds[0].image.url:
            image_url = message.embeds[0].image.url
        chat = await self.store.find_chat(self.platform, caller.chat_id)
        assert chat is not None
        buttons = await self.commands.buttons(
            chat,
            Ref(result.row, result.rule_id),
            result.alert,
            has_chart=image_url is not None,
            used=result.used,
        )
        view = action_view(buttons)
        files = []
        if image is not None:
            image_url = f"attachment://{CHART}"
            files.append(discord.File(io.BytesIO(image), filename=CHART))
        embed = pressed_embed(result.alert, replies.pressed_note(result, SPELLING), image_url)
        if not interaction.response.is_done():
            if files:
                await interaction.response.edit_message(embed=embed, view=view, attachments=files)
            else:
                await interaction.response.edit_message(embed=embed, view=view)
        elif files:
            await interaction.edit_original_response(embed=embed, view=view, attachments=files)
        else:
            await interaction.edit_original_response(embed=embed, view=view)

    def caller(self, interaction: Interaction) -> Caller:
        """Who is asking, from which channel, and whether they may change alerts."""
        in_guild = interaction.guild_id is not None
        return Caller(
            platform=self.platform,
            chat_id=str(interaction.channel_id),
            chat_kind="guild" if in_guild else "private",
            user_id=str(interaction.user.id),
            is_admin=self.is_admin(interaction),
        )

    def is_admin(self, interaction: Interaction) -> bool:
        """DMs: yes. Servers: Manage Server (or Administrator), or the admin role if set.

        The role is matched by name or id against the member's cached roles (the gateway's
        `guilds` intent fills that cache).
        """
        if interaction.guild_id is None:
            return True
        rights = interaction.permissions
        if rights.administrator or rights.manage_guild:
            return True
        if not self.admin_role or not isinstance(interaction.user, discord.Member):
            return False
        return any(self.admin_role in (role.name, str(role.id)) for role in interaction.user.roles)

    async def alert_choices(self, interaction: Interaction, current: str) -> list[Choice[str]]:
        """This channel's alerts as `#id rule` choices, then `all`."""
        chat = await self.store.find_chat(self.platform, str(interaction.channel_id))
        stored = [] if chat is None else await self.store.rules(chat.id)
        return render.alert_choices(stored, current)

    async def _run_in_time(self, interaction: Interaction, caller: Caller, call: Call) -> Reply:
        """The command's reply; past `defer_after` seconds, tell Discord we are working on it."""
        work = asyncio.ensure_future(call(self.commands, caller))
        try:
            result = await asyncio.wait_for(asyncio.shield(work), self.defer_after)
        except TimeoutError:
            await interaction.response.defer(thinking=True)
            result = await work
        return replies.reply(result, SPELLING)

    async def _respond(self, interaction: Interaction, reply: Reply) -> None:
        """Send the embeds (a chart on the first); refusals and errors only to the caller."""
        embeds = reply_embeds(reply)
        private = not reply.ok or reply.private
        files = []
        if reply.image is not None:
            embeds[0].set_image(url=f"attachment://{CHART}")
            files.append(discord.File(io.BytesIO(reply.image), filename=CHART))
        if not interaction.response.is_done():
            await interaction.response.send_message(embed=embeds[0], files=files, ephemeral=private)
            embeds = embeds[1:]
        elif private and interaction.type is discord.InteractionType.component:
            pass  # a button's deferred answer left its message as it was: only the follow-up
        elif private:  # a public "thinking…" must not turn into a public error
            await interaction.delete_original_response()
        else:
            await interaction.edit_original_response(embed=embeds[0], attachments=files)
            embeds = embeds[1:]
        for embed in embeds:
            await interaction.followup.send(embed=embed, ephemeral=private)

    async def _reactivate(self, interaction: Interaction, caller: Caller) -> None:
        """A channel that failed before is written to again once we may post there."""
        if not can_post(interaction):
            return
        self.reachable(caller.chat_id)
        stored = await self.store.find_chat(self.platform, caller.chat_id)
        if stored is not None and not stored.active:
            await self.store.set_chat_active(stored.id, True)
            log.info("discord: channel %s is reachable again; delivering to it", caller.chat_id)


def can_post(interaction: Interaction) -> bool:
    """Whether the bot may post alert embeds (with a chart) in the interaction's channel."""
    if interaction.guild_id is None:
        return True
    rights = interaction.app_permissions
    in_thread = isinstance(interaction.channel, discord.Thread)
    send = rights.send_messages_in_threads if in_thread else rights.send_messages
    return rights.view_channel and send and rights.embed_links and rights.attach_files


def _name(interaction: Interaction) -> str:
    """The slash command's name as people type it (`alert add`), for the log."""
    command = interaction.command
    return command.qualified_name if command is not None else "?"
