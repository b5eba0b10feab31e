"""The chat service's use cases, and the port they need from storage.

The service checks every request against the domain rules before any I/O, then asks the store, whose every
method is one transaction. It never sees SQL: ``adapters/postgres.py`` is one implementation of
:class:`ChatStore`, and a test may hand in another.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol
from uuid import UUID

from ..events.notifications import LIST_LIMIT_MAX, Notification
from .domain import (
    ChatSummary,
    HistoryPage,
    HistoryQuery,
    InvalidRequest,
    Message,
    MessageChange,
    MessageDraft,
    PrivateChat,
    member_pair,
    validate_body,
)

# The page of notifications a client gets when it names no limit.
NOTIFICATIONS_PAGE_DEFAULT = 20

# Given the message as it is now, under a lock, say what to write (or None: nothing), or raise a ChatError.
DecideChange = Callable[[Message], MessageChange | None]


class ChatStore(Protocol):
    """Where chats and messages live. Each method is ONE transaction: all of it happens, or nothing does.

    Every method that takes a ``user_id`` checks that the user is a member of the chat, and raises
    ChatNotFound when not, exactly as for a chat that does not exist.
    """

    async def open_chat(self, user_low: int, user_high: int) -> PrivateChat:
        """The chat of these two users (``user_low < user_high``), created on first use."""
        ...

    async def append_message(self, draft: MessageDraft) -> Message:
        """Store a new message with the chat's next seq and announce it; a retry returns the original."""
        ...

    async def change_message(self, chat_id: int, seq: int, user_id: int, decide: DecideChange) -> Message:
        """Lock the message, let ``decide`` rule on it, write and announce the change; return the message."""
        ...

    async def history(self, chat_id: int, user_id: int, query: HistoryQuery) -> HistoryPage:
        """One page of the chat's history."""
        ...

    async def mark_read(self, chat_id: int, user_id: int, seq: int) -> int:
        """Move the user's read mark up to ``seq`` (never back, never past the last message); return it."""
        ...

    async def unread_count(self, chat_id: int, user_id: int) -> int:
        """Messages of the other member after the user's read mark, deleted ones left out."""
        ...

    async def chat_summaries(self, user_id: int) -> list[ChatSummary]:
        """Every chat of the user, with its last message and unread count, most recently active first."""
        ...

    async def notifications(self, user_id: int, limit: int) -> list[Notification]:
        """The user's notifications (written by the notifier of stage 10), newest first, at most ``limit``."""
        ...


class ChatService:
    """The use cases of private chats. ``user_id`` is always the user making the request."""

    def __init__(self, store: ChatStore, *, history_page_max: int) -> None:
        self._store = store
        self._history_page_max = history_page_max

    async def open_chat(self, user_id: int, other_user_id: int) -> PrivateChat:
        """The private chat of two users, the same whichever of them asks; created on first use."""
        return await self._store.open_chat(*member_pair(user_id, other_user_id))

    async def send_message(
        self, user_id: int, chat_id: int, client_message_id: UUID, body: str, reply_to_seq: int | None = None
    ) -> Message:
        """Send a message, or a reply to an earlier one of the same chat (ReplyNotFound when it has none).
        Sending again with the same ``client_message_id`` returns the first one."""
        draft = MessageDraft(chat_id, user_id, client_message_id, validate_body(body), reply_to_seq)
        return await self._store.append_message(draft)

    async def edit_message(self, user_id: int, chat_id: int, seq: int, body: str) -> Message:
        body = validate_body(body)
        return await self._store.change_message(chat_id, seq, user_id, lambda message: message.edit(user_id, body))

    async def delete_message(self, user_id: int, chat_id: int, seq: int) -> Message:
        return await self._store.change_message(chat_id, seq, user_id, lambda message: message.delete(user_id))

    async def history(
        self,
        user_id: int,
        chat_id: int,
        *,
        before_seq: int | None = None,
        after_seq: int | None = None,
        limit: int | None = None,
    ) -> HistoryPage:
        """A page of history: backwards from ``before_seq`` (or the newest), or forwards after ``after_seq``."""
        query = HistoryQuery.build(before_seq, after_seq, limit, page_max=self._history_page_max)
        return await self._store.history(chat_id, user_id, query)

    async def mark_read(self, user_id: int, chat_id: int, seq: int) -> int:
        """Say that the user has read up to ``seq``; returns the read mark, which never moves backwards."""
        if seq < 0:
            raise InvalidRequest("a read mark cannot be negative")
        return await self._store.mark_read(chat_id, user_id, seq)

    async def unread_count(self, user_id: int, chat_id: int) -> int:
        return await self._store.unread_count(chat_id, user_id)

    async def list_chats(self, user_id: int) -> list[ChatSummary]:
        return await self._store.chat_summaries(user_id)

    async def list_notifications(self, user_id: int, limit: int | None = None) -> list[Notification]:
        """The user's notifications, newest first: NOTIFICATIONS_PAGE_DEFAULT, or ``limit`` up to LIST_LIMIT_MAX."""
        if limit is not None and limit < 1:
            raise InvalidRequest("a page holds at least one notification")
        # A client may ask for less than the maximum, never for more: one request must stay cheap.
        rows = NOTIFICATIONS_PAGE_DEFAULT if limit is None else min(limit, LIST_LIMIT_MAX)
        return await self._store.notifications(user_id, rows)
