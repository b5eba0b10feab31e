"""Notifications for offline users: what one says, and the rules that need no database. No I/O here."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .envelope import EventRefused, MalformedEvent

# The same limit as the notifications_preview_length check of migration 0003.
PREVIEW_CHARS = 100
# The longest page of notifications one call returns.
LIST_LIMIT_MAX = 100


class UnknownChat(EventRefused):
    """The event names a chat that does not exist, or a sender who is not in it: no retry can fix that."""


@dataclass(frozen=True)
class CreatedMessage:
    """The parts of a message.created payload the notifier reads."""

    chat_id: int
    seq: int
    sender_id: int
    body: str
    # The chat's two users, when the event carries them (the chat service's events do: EVENT_PAYLOAD). A private
    # chat's members never change, so the notifier needs no query to learn them.
    members: tuple[int, int] | None = None

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> CreatedMessage:
        """Read the payload, refusing one that lacks a field or has a wrong type (a MalformedEvent)."""
        numbers = {}
        for name in ("chat_id", "seq", "sender_id"):
            value = payload.get(name)
            # bool is an int in Python, and JSON's true is not an id.
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise MalformedEvent(f"a message.created payload needs {name} as a positive integer; got {value!r}")
            numbers[name] = value
        body = payload.get("body")
        if not isinstance(body, str):
            raise MalformedEvent(f"a message.created payload needs body as a string; got {body!r}")
        members = payload.get("members")
        pair = None
        if isinstance(members, list) and len(members) == 2 and all(_is_id(member) for member in members):
            pair = (int(members[0]), int(members[1]))
        return cls(
            chat_id=numbers["chat_id"], seq=numbers["seq"], sender_id=numbers["sender_id"], body=body, members=pair
        )


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def recipient_of(members: tuple[int, int], sender_id: int, chat_id: int) -> int:
    """The member of a private chat who did not send the message."""
    if sender_id not in members:
        raise UnknownChat(f"user {sender_id} is not a member of chat {chat_id}, yet the event says they sent to it")
    low, high = members
    return high if sender_id == low else low


def preview_of(body: str) -> str:
    """One line for the notification: whitespace folded, at most PREVIEW_CHARS characters (… when cut)."""
    line = " ".join(body.split())
    return line if len(line) <= PREVIEW_CHARS else line[: PREVIEW_CHARS - 1] + "…"


@dataclass(frozen=True)
class NewNotification:
    """What the notifier asks the store to keep."""

    user_id: int
    event_id: uuid.UUID
    chat_id: int
    seq: int
    preview: str


@dataclass(frozen=True)
class Notification:
    """A stored notification, as a user's list shows it."""

    id: int
    user_id: int
    event_id: uuid.UUID
    chat_id: int
    seq: int
    preview: str
    created_at: datetime
    read_at: datetime | None
