"""The JSON shapes of the REST API: what a request must look like, and what a response looks like.

Request models refuse a wrong shape before any service is called (FastAPI answers 422 with a problem document
that names the field). Response models are the public contract, written down in the OpenAPI document; each has a
``from_proto`` that copies a gRPC message into it, so the gRPC messages of the services never leak to the web
(their field names and int64-as-string JSON are not a public API we want to promise).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from ..grpc_api import auth_pb2, chat_pb2, content_pb2
from ..grpc_api.timestamps import from_timestamp

# A message body, a post and a comment: the services check the exact rules; this only stops absurd sizes early.
MAX_TEXT_CHARS = 10_000
# Ids and seqs are PostgreSQL bigints. A bigger number cannot name anything, and protobuf refuses to carry it:
# it is refused here, as a 422, instead of crashing deeper down.
MAX_ID = 2**63 - 1
# Text from a client holds no NUL character (U+0000), as this pattern says in the OpenAPI document.
NO_NUL_PATTERN = "^[^\\u0000]*$"


def without_nul(text: str) -> str:
    if "\x00" in text:
        raise ValueError("must not contain the NUL character (U+0000)")
    return text


# A post's or a media file's id is 24 hex digits (a MongoDB ObjectId), which the content service checks; this
# bound only keeps absurd ones out: the service quotes a wrong id in its NOT_FOUND message, and a 10 000-character
# id made that message larger than gRPC allows in metadata (RESOURCE_EXHAUSTED, a 500 instead of a 404).
MAX_CONTENT_ID_CHARS = 64


# Every text field of a request. Nobody types a NUL, and PostgreSQL cannot store one in a text column: a NUL in a
# username, an e-mail address or a message body reached the auth or chat service and came back as a 500. It is
# refused here (422, naming the field) for every field alike, the content service's too, so the API has one rule.
Text = Annotated[str, AfterValidator(without_nul), Field(json_schema_extra={"pattern": NO_NUL_PATTERN})]
ContentIdText = Annotated[
    str,
    StringConstraints(max_length=MAX_CONTENT_ID_CHARS),
    AfterValidator(without_nul),
    Field(json_schema_extra={"pattern": NO_NUL_PATTERN}),
]


class Request(BaseModel):
    """A request body: unknown fields are refused (a typo in a field name must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid")


def time_of(timestamp: Timestamp) -> datetime:
    return from_timestamp(timestamp)


# Auth ------------------------------------------------------------------------------------------------------


class RegisterBody(Request):
    username: Text = Field(max_length=200)
    email: Text = Field(max_length=320)
    password: Text = Field(max_length=1024)
    display_name: Text = Field(default="", max_length=200)


class LoginBody(Request):
    username: Text = Field(max_length=200)
    password: Text = Field(max_length=1024)


class RefreshBody(Request):
    refresh_token: Text = Field(max_length=1024)


class LogoutBody(Request):
    refresh_token: Text = Field(default="", max_length=1024)


class TokenPairOut(BaseModel):
    access_token: str
    access_expires_at: datetime
    refresh_token: str
    token_type: str = "Bearer"

    @classmethod
    def from_proto(cls, pair: auth_pb2.TokenPair) -> TokenPairOut:
        return cls(
            access_token=pair.access_token,
            access_expires_at=time_of(pair.access_expires_at),
            refresh_token=pair.refresh_token,
        )


class UserOut(BaseModel):
    id: int
    username: str
    display_name: str
    created_at: datetime

    @classmethod
    def from_proto(cls, user: auth_pb2.User) -> UserOut:
        return cls(
            id=user.id, username=user.username, display_name=user.display_name, created_at=time_of(user.created_at)
        )


# Chats -----------------------------------------------------------------------------------------------------


class OpenChatBody(Request):
    other_user_id: int = Field(ge=1, le=MAX_ID)


class SendMessageBody(Request):
    # Chosen by the client once per message and sent again unchanged on a retry: a retry stores nothing new.
    client_message_id: UUID
    body: Text = Field(max_length=MAX_TEXT_CHARS)
    reply_to_seq: int | None = Field(default=None, ge=1, le=MAX_ID)  # an earlier message of the same chat


class EditMessageBody(Request):
    body: Text = Field(max_length=MAX_TEXT_CHARS)


class MarkReadBody(Request):
    seq: int = Field(ge=0, le=MAX_ID)


class ChatOut(BaseModel):
    id: int
    other_user_id: int
    last_seq: int
    created_at: datetime

    @classmethod
    def from_proto(cls, chat: chat_pb2.Chat) -> ChatOut:
        return cls(
            id=chat.id, other_user_id=chat.other_user_id, last_seq=chat.last_seq, created_at=time_of(chat.created_at)
        )


class QuoteOut(BaseModel):
    """What a reply shows of the message it answers, as that message reads now."""

    seq: int
    sender_id: int
    body: str  # empty when the quoted message was deleted
    deleted: bool


class MessageOut(BaseModel):
    chat_id: int
    seq: int
    sender_id: int
    client_message_id: UUID
    body: str
    created_at: datetime
    edited_at: datetime | None
    deleted_at: datetime | None
    reply_to_seq: int | None = None  # the message this one answers
    reply_to: QuoteOut | None = None

    @classmethod
    def from_proto(cls, message: chat_pb2.Message) -> MessageOut:
        quote = message.reply_to
        return cls(
            chat_id=message.chat_id,
            seq=message.seq,
            sender_id=message.sender_id,
            client_message_id=UUID(message.client_message_id),
            body=message.body,
            created_at=time_of(message.created_at),
            edited_at=time_of(message.edited_at) if message.HasField("edited_at") else None,
            deleted_at=time_of(message.deleted_at) if message.HasField("deleted_at") else None,
            reply_to_seq=message.reply_to_seq if message.HasField("reply_to_seq") else None,
            reply_to=QuoteOut(seq=quote.seq, sender_id=quote.sender_id, body=quote.body, deleted=quote.deleted)
            if message.HasField("reply_to")
            else None,
        )


class ChatSummaryOut(BaseModel):
    chat_id: int
    other_user_id: int
    last_message: MessageOut | None
    unread_count: int

    @classmethod
    def from_proto(cls, summary: chat_pb2.ChatSummary) -> ChatSummaryOut:
        last = MessageOut.from_proto(summary.last_message) if summary.HasField("last_message") else None
        return cls(
            chat_id=summary.chat_id,
            other_user_id=summary.other_user_id,
            last_message=last,
            unread_count=summary.unread_count,
        )


class HistoryOut(BaseModel):
    messages: list[MessageOut]  # oldest first
    has_more: bool

    @classmethod
    def from_proto(cls, page: chat_pb2.HistoryResponse) -> HistoryOut:
        return cls(messages=[MessageOut.from_proto(message) for message in page.messages], has_more=page.has_more)


class ReadMarkOut(BaseModel):
    chat_id: int
    last_read_seq: int


class NotificationOut(BaseModel):
    event_id: str
    chat_id: int
    seq: int
    preview: str
    created_at: datetime

    @classmethod
    def from_proto(cls, notification: chat_pb2.Notification) -> NotificationOut:
        return cls(
            event_id=notification.event_id,
            chat_id=notification.chat_id,
            seq=notification.seq,
            preview=notification.preview,
            created_at=time_of(notification.created_at),
        )


# Content ---------------------------------------------------------------------------------------------------


class CreatePostBody(Request):
    text: Text = Field(max_length=MAX_TEXT_CHARS)
    media_ids: list[ContentIdText] = Field(default_factory=list, max_length=10)


class CommentBody(Request):
    text: Text = Field(max_length=MAX_TEXT_CHARS)


class PostOut(BaseModel):
    id: str
    author_id: int
    text: str
    media_ids: list[str]
    created_at: datetime
    like_count: int

    @classmethod
    def from_proto(cls, post: content_pb2.Post) -> PostOut:
        return cls(
            id=post.id,
            author_id=post.author_id,
            text=post.text,
            media_ids=list(post.media_ids),
            created_at=time_of(post.created_at),
            like_count=post.like_count,
        )


class FeedOut(BaseModel):
    posts: list[PostOut]  # newest first
    next_cursor: str  # empty on the last page

    @classmethod
    def from_proto(cls, page: content_pb2.FeedResponse) -> FeedOut:
        return cls(posts=[PostOut.from_proto(post) for post in page.posts], next_cursor=page.next_cursor)


class CommentOut(BaseModel):
    id: str
    post_id: str
    author_id: int
    text: str
    created_at: datetime

    @classmethod
    def from_proto(cls, comment: content_pb2.Comment) -> CommentOut:
        return cls(
            id=comment.id,
            post_id=comment.post_id,
            author_id=comment.author_id,
            text=comment.text,
            created_at=time_of(comment.created_at),
        )


class CommentsOut(BaseModel):
    comments: list[CommentOut]  # newest first
    next_cursor: str  # empty on the last page

    @classmethod
    def from_proto(cls, page: content_pb2.ListCommentsResponse) -> CommentsOut:
        return cls(comments=[CommentOut.from_proto(comment) for comment in page.comments], next_cursor=page.next_cursor)


class LikeOut(BaseModel):
    post_id: str
    changed: bool  # false when the like was already there (or, for a removal, was not)


class MediaOut(BaseModel):
    id: str
    filename: str
    content_type: str
    length: int

    @classmethod
    def from_proto(cls, ref: content_pb2.MediaRef) -> MediaOut:
        return cls(id=ref.id, filename=ref.filename, content_type=ref.content_type, length=ref.length)
