"""Who may change alerts in a Telegram group: its creator and administrators (an anonymous
admin posts as the group itself). Telegram is asked once per user and group every few minutes;
private chats need no asking."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from telegram import Chat as TelegramChat
from telegram import ChatMember, Message, User
from telegram.constants import ChatMemberStatus, ChatType
from telegram.error import TelegramError

log = logging.getLogger(__name__)

ADMIN_STATUSES = frozenset({ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR})
GROUP_KINDS = frozenset({ChatType.GROUP, ChatType.SUPERGROUP})
KEPT = 4096  # cached answers kept before the stale ones are dropped


class Admins:
    """Answers "is the sender an admin here?", remembering Telegram's answer for a while.

    `member(chat_id, user_id)` is the Bot API's getChatMember; `describe` turns its error into
    log text (without the token).
    """

    def __init__(
        self,
        member: Callable[[int, int], Awaitable[ChatMember]],
        clock: Callable[[], float],
        cache_seconds: float,
        describe: Callable[[Exception], str],
    ) -> None:
        self.member = member
        self.clock = clock
        self.cache_seconds = cache_seconds
        self.describe = describe
        self._known: dict[tuple[int, int], tuple[bool, float]] = {}

    async def is_admin(self, chat: TelegramChat, message: Message) -> bool:
        """Private chats: yes. Groups: the sender is the creator or an administrator."""
        if chat.type not in GROUP_KINDS:
            return True
        if message.sender_chat is not None and message.sender_chat.id == chat.id:
            return True  # an anonymous admin, posting as the group itself
        return await self.user_is_admin(chat, message.from_user)

    async def user_is_admin(self, chat: TelegramChat, user: User | None) -> bool:
        """Private chats: yes. Groups: the user is the creator or an administrator (a button
        press comes from a user, never from an anonymous admin)."""
        if chat.type not in GROUP_KINDS:
            return True
        if user is None:
            return False
        key, now = (chat.id, user.id), self.clock()
        cached = self._known.get(key)
        if cached is not None and now - cached[1] < self.cache_seconds:
            return cached[0]
        try:
            member = await self.member(chat.id, user.id)
        except TelegramError as err:
            log.warning(
                "telegram: cannot check admin rights in chat %s: %s", chat.id, self.describe(err)
            )
            return False
        is_admin = member.status in ADMIN_STATUSES
        if len(self._known) > KEPT:
            self._known = {k: v for k, v in self._known.items() if now - v[1] < self.cache_seconds}
        self._known[key] = (is_admin, now)
        return is_admin
