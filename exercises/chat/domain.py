"""The chat service's model: private chats, their messages, and every rule that needs no database.

No I/O here. The rules below run before the first query, so a bad request costs nothing and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

# The same limit as the messages_body_length check in the database (counted in characters, as char_length does).
MAX_BODY_CHARS = 4000

# The topics (routing keys) of the events a message change writes to the outbox.
MESSAGE_CREATED = "message.created"
MESSAGE_EDITED = "message.edited"
MESSAGE_DELETED = "message.deleted"


class ChatError(Exception):
    """A chat request cannot be done. The message says why, in one sentence a client may see."""


class ChatNotFound(ChatError):
    """No such chat, or the user is not one of its two members: the caller must not learn which."""

    def __init__(self, chat_id: int) -> None:
        super().__init__(f"chat {chat_id} does not exist")
        self.chat_id = chat_id


class MessageNotFound(ChatError):
    """The chat has no message with this seq, or the message was deleted and cannot change any more."""

    def __init__(self, chat_id: int, seq: int, why: str = "does not exist") -> None:
        super().__init__(f"message {seq} of chat {chat_id} {why}")
        self.chat_id = chat_id
        self.seq = seq


class NotAuthor(ChatError):
    """A member tried to change a message that the other member wrote."""

    def __init__(self, chat_id: int, seq: int) -> None:
        super().__init__(f"only its author may change message {seq} of chat {chat_id}")


class ReplyNotFound(ChatError):
    """A reply names a message that its chat does not have (or a later one): there is nothing to quote."""

    def __init__(self, chat_id: int, seq: int) -> None:
        super().__init__(f"message {seq} of chat {chat_id} cannot be replied to: the chat has no such earlier message")
        self.chat_id = chat_id
        self.seq = seq


class InvalidMessage(ChatError):
    """The text of a message breaks a rule: empty, only whitespace, or too long."""


class InvalidRequest(ChatError):
    """The request itself makes no sense: a chat with oneself, a negative seq, two cursors at once."""


def validate_body(body: str) -> str:
    """The body, if a message may carry it; raises InvalidMessage otherwise. The text is kept exactly as sent."""
    if not body.strip():
        raise InvalidMessage("a message needs some text; this one is empty or only whitespace")
    if len(body) > MAX_BODY_CHARS:
        raise InvalidMessage(f"a message has at most {MAX_BODY_CHARS} characters; this one has {len(body)}")
    return body


def member_pair(user_id: int, other_user_id: int) -> tuple[int, int]:
    """The two members of a private chat, lower id first: (a, b) and (b, a) name the same chat."""
    if user_id == other_user_id:
        raise InvalidRequest("a private chat needs two different users; you cannot open one with yourself")
    if min(user_id, other_user_id) < 1:
        raise InvalidRequest("user ids are positive numbers")
    return min(user_id, other_user_id), max(user_id, other_user_id)


@dataclass(frozen=True)
class PrivateChat:
    id: int
    user_low: int
    user_high: int
    last_seq: int  # the seq of the newest message; 0 before the first one
    created_at: datetime

    def has_member(self, user_id: int) -> bool:
        return user_id in (self.user_low, self.user_high)

    def other_member(self, user_id: int) -> int:
        if not self.has_member(user_id):
            raise ChatNotFound(self.id)
        return self.user_high if user_id == self.user_low else self.user_low


@dataclass(frozen=True)
class MessageDraft:
    """What a sender asks to send, already checked. ``client_message_id`` makes a retry recognisable.

    ``reply_to_seq`` names the earlier message of the same chat that this one answers. Whether that message exists
    is a fact about stored data: the store checks it in the same statement as the insert (ReplyNotFound).
    """

    chat_id: int
    sender_id: int
    client_message_id: UUID
    body: str
    reply_to_seq: int | None = None

    def __post_init__(self) -> None:
        validate_body(self.body)
        if self.reply_to_seq is not None and self.reply_to_seq < 1:
            raise InvalidRequest("reply_to_seq names a message: seqs start at 1")


@dataclass(frozen=True)
class MessageChange:
    """What an edit or a delete will write: the new body, and the topic of the event that announces it."""

    topic: str
    body: str

    @property
    def deletes(self) -> bool:
        return self.topic == MESSAGE_DELETED


@dataclass(frozen=True)
class Quote:
    """What a reply shows of the message it answers, as that message is now."""

    seq: int
    sender_id: int
    body: str  # empty when the quoted message was deleted
    deleted: bool


@dataclass(frozen=True)
class Message:
    """One message. (chat_id, seq) names it: seq counts 1, 2, 3 … within its chat, with no gap.

    A reply carries the seq it answers and, once the store has looked it up, the quote of that message.
    """

    chat_id: int
    seq: int
    sender_id: int
    client_message_id: UUID
    body: str
    created_at: datetime
    edited_at: datetime | None
    deleted_at: datetime | None
    reply_to_seq: int | None = None
    reply_to: Quote | None = None

    @property
    def deleted(self) -> bool:
        """A deleted message keeps its seq, so history has no hole, but not its text."""
        return self.deleted_at is not None

    def edit(self, user_id: int, body: str) -> MessageChange | None:
        """The change an edit by ``user_id`` makes, or None when the text is already this one."""
        self._check_author(user_id)
        if self.deleted:
            raise MessageNotFound(self.chat_id, self.seq, "was deleted")
        if body == self.body:
            return None  # a retried edit changes nothing and announces nothing
        return MessageChange(MESSAGE_EDITED, validate_body(body))

    def delete(self, user_id: int) -> MessageChange | None:
        """The change a delete by ``user_id`` makes, or None when the message is already deleted."""
        self._check_author(user_id)
        if self.deleted:
            return None  # deleting twice is not an error: a retry must not fail, nor announce it again
        return MessageChange(MESSAGE_DELETED, "")

    def _check_author(self, user_id: int) -> None:
        if user_id != self.sender_id:
            raise NotAuthor(self.chat_id, self.seq)


def quote_of(message: Message) -> Quote:
    """How a reply shows ``message``: its current text, or "deleted" without any text once it is deleted."""
    # exercise 11.1: quote the message a reply answers; a deleted one is shown as deleted
    raise NotImplementedError("exercise 11.1 is yours to write: see notebooks/11_assembly.ipynb, section 'Exercise 11.1'. Stuck? python -m workbook hint 11.1")
    # end exercise


@dataclass(frozen=True)
class ChatSummary:
    """One line of a user's chat list."""

    chat_id: int
    other_user_id: int
    last_message: Message | None  # None while the chat has no message
    unread_count: int  # messages of the other member after the user's read mark, deleted ones left out


@dataclass(frozen=True)
class HistoryQuery:
    """Which page of a chat's history to read. Build it with :meth:`build`, which checks and bounds it.

    ``after_seq`` reads forwards: the messages after it, oldest first ("what did I miss since seq N?").
    Otherwise it reads backwards: the newest messages before ``before_seq`` (or the newest of all).
    """

    before_seq: int | None
    after_seq: int | None
    limit: int

    @classmethod
    def build(cls, before_seq: int | None, after_seq: int | None, limit: int | None, *, page_max: int) -> HistoryQuery:
        if before_seq is not None and after_seq is not None:
            raise InvalidRequest("ask for the messages before a seq or after one, not both")
        if before_seq is not None and before_seq < 1:
            raise InvalidRequest("before_seq starts at 1: no message comes before seq 1")
        if after_seq is not None and after_seq < 0:
            raise InvalidRequest("after_seq cannot be negative; 0 means from the first message")
        if limit is not None and limit < 1:
            raise InvalidRequest("a page holds at least one message")
        # A client may ask for less than the maximum, never for more: one request must stay cheap.
        return cls(before_seq, after_seq, page_max if limit is None else min(limit, page_max))


@dataclass(frozen=True)
class HistoryPage:
    """Messages in seq order, oldest first, and whether more exist in the direction the query walked."""

    messages: tuple[Message, ...]
    has_more: bool

    @property
    def oldest_seq(self) -> int | None:
        """The ``before_seq`` of the next page back."""
        return self.messages[0].seq if self.messages else None

    @property
    def newest_seq(self) -> int | None:
        """The ``after_seq`` of the next page forward."""
        return self.messages[-1].seq if self.messages else None
