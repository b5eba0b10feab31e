"""Small async clients of the auth, chat and content services, as the gateway calls them.

Every call carries two things, and ``call_options`` is the one place that adds them:

- a **deadline** (``timeout=`` seconds, from ``settings.grpc.deadline_seconds``). A call without one waits
  forever for a server that hangs, holding the browser's request, a socket and memory; enough of them and the
  gateway falls over too. With one, the call fails with DEADLINE_EXCEEDED and the gateway can answer the user.
  The server sees the deadline as well (``context.time_remaining()``) and stops working on a call nobody waits for.
- the **caller's id** in the ``x-user-id`` metadata (see ``identity.py``): the gateway acts for many users over
  one channel, so the user is named per call;
- from stage 12, the **proof**: that user's own access token, ``authorization: Bearer <token>``. The gateway
  checks a request's token once, then ``acting_for(token)`` keeps it for the rest of that request (a context
  variable: each asyncio task has its own value, so two users' requests never mix) and every call adds it.

The auth service's anonymous calls (sign-up, sign-in, refresh, sign-out, the token check) carry the deadline
and NO ``x-user-id``: nobody is signed in yet, or the token itself says who it is (``anonymous_options``).

A channel is one HTTP/2 connection (re-opened when it drops) that carries many calls at once. Open one per
service at start-up and share it; never one per call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import TypedDict
from uuid import UUID

import grpc

from ..config import Settings
from ..tls import grpc_client_tls
from . import auth_pb2, auth_pb2_grpc, chat_pb2, chat_pb2_grpc, content_pb2, content_pb2_grpc
from .identity import AUTHORIZATION_KEY, BEARER_PREFIX, USER_ID_KEY

# The size of each piece of an upload, well under gRPC's default 4 MiB limit per message.
UPLOAD_CHUNK_BYTES = 64 * 1024


# The access token of the user the running request acts for; None outside a request (and in stage 08's tests).
_acting_token: ContextVar[str | None] = ContextVar("acting_token", default=None)


def acting_for(access_token: str) -> None:
    """From now on, in this request (this asyncio task and the tasks it starts), calls carry ``access_token``."""
    _acting_token.set(access_token)


def with_proof(options: CallOptions) -> CallOptions:
    """``options`` plus the acting user's access token, when there is one. Without it a service started by its
    entry point refuses the call (UNAUTHENTICATED): forgetting ``acting_for`` fails closed, never open."""
    token = _acting_token.get()
    if token is None:
        return options
    return {**options, "metadata": (*options["metadata"], (AUTHORIZATION_KEY, BEARER_PREFIX + token))}


class CallOptions(TypedDict):
    timeout: float
    metadata: tuple[tuple[str, str], ...]


class AnonymousCallOptions(TypedDict):
    timeout: float


def call_options(user_id: int, deadline_seconds: float) -> CallOptions:
    """The keyword arguments of every call: its deadline and the caller's id."""
    # exercise 08.6: give every call a deadline and the caller's id
    # hint: Every generated method takes timeout= (seconds, a float) and metadata= (a sequence of (key, value) pairs of str).
    # hint: The key is USER_ID_KEY; metadata values are text, so send str(user_id).
    # hint: Return both in one dict: the clients below call stub.Method(request, **call_options(...)), so no call can forget either.
    return {"timeout": deadline_seconds, "metadata": ((USER_ID_KEY, str(user_id)),)}
    # end exercise


def anonymous_options(deadline_seconds: float) -> AnonymousCallOptions:
    """The keyword arguments of a call made for nobody in particular: its deadline only."""
    return {"timeout": deadline_seconds}


class AuthClient:
    def __init__(self, channel: grpc.aio.Channel, *, deadline_seconds: float) -> None:
        self._stub = auth_pb2_grpc.AuthServiceStub(channel)
        self._deadline_seconds = deadline_seconds

    def _anonymous(self) -> AnonymousCallOptions:
        return anonymous_options(self._deadline_seconds)

    def _options(self, user_id: int) -> CallOptions:
        return with_proof(call_options(user_id, self._deadline_seconds))

    async def register(self, username: str, email: str, password: str, display_name: str = "") -> auth_pb2.User:
        request = auth_pb2.RegisterRequest(username=username, email=email, password=password, display_name=display_name)
        return (await self._stub.Register(request, **self._anonymous())).user

    async def login(self, username: str, password: str) -> auth_pb2.TokenPair:
        request = auth_pb2.LoginRequest(username=username, password=password)
        return (await self._stub.Login(request, **self._anonymous())).tokens

    async def refresh(self, refresh_token: str) -> auth_pb2.TokenPair:
        request = auth_pb2.RefreshRequest(refresh_token=refresh_token)
        return (await self._stub.Refresh(request, **self._anonymous())).tokens

    async def logout(self, access_token: str, refresh_token: str = "") -> None:
        request = auth_pb2.LogoutRequest(access_token=access_token, refresh_token=refresh_token)
        await self._stub.Logout(request, **self._anonymous())

    async def authenticate(self, access_token: str) -> int:
        """The id of the user the access token belongs to; UNAUTHENTICATED when it is not valid."""
        request = auth_pb2.AuthenticateRequest(access_token=access_token)
        return (await self._stub.Authenticate(request, **self._anonymous())).user_id

    async def get_user(self, caller_id: int, user_id: int) -> auth_pb2.User:
        request = auth_pb2.GetUserRequest(user_id=user_id)
        return (await self._stub.GetUser(request, **self._options(caller_id))).user

    async def search_users(self, caller_id: int, query: str, limit: int = 0) -> list[auth_pb2.User]:
        request = auth_pb2.SearchUsersRequest(query=query, limit=limit)
        return list((await self._stub.SearchUsers(request, **self._options(caller_id))).users)


class ChatClient:
    def __init__(self, channel: grpc.aio.Channel, *, deadline_seconds: float) -> None:
        self._stub = chat_pb2_grpc.ChatServiceStub(channel)
        self._deadline_seconds = deadline_seconds

    def _options(self, user_id: int) -> CallOptions:
        return with_proof(call_options(user_id, self._deadline_seconds))

    async def open_chat(self, user_id: int, other_user_id: int) -> chat_pb2.Chat:
        request = chat_pb2.OpenChatRequest(other_user_id=other_user_id)
        return (await self._stub.OpenChat(request, **self._options(user_id))).chat

    async def send_message(
        self, user_id: int, chat_id: int, client_message_id: UUID, body: str, reply_to_seq: int | None = None
    ) -> chat_pb2.Message:
        request = chat_pb2.SendMessageRequest(
            chat_id=chat_id, client_message_id=str(client_message_id), body=body, reply_to_seq=reply_to_seq
        )
        return (await self._stub.SendMessage(request, **self._options(user_id))).message

    async def edit_message(self, user_id: int, chat_id: int, seq: int, body: str) -> chat_pb2.Message:
        request = chat_pb2.EditMessageRequest(chat_id=chat_id, seq=seq, body=body)
        return (await self._stub.EditMessage(request, **self._options(user_id))).message

    async def delete_message(self, user_id: int, chat_id: int, seq: int) -> chat_pb2.Message:
        request = chat_pb2.DeleteMessageRequest(chat_id=chat_id, seq=seq)
        return (await self._stub.DeleteMessage(request, **self._options(user_id))).message

    async def history(
        self, user_id: int, chat_id: int, *, before_seq: int | None = None, after_seq: int | None = None, limit: int = 0
    ) -> chat_pb2.HistoryResponse:
        request = chat_pb2.HistoryRequest(chat_id=chat_id, limit=limit)
        # A oneof holds one field: setting the second would silently clear the first.
        if before_seq is not None and after_seq is not None:
            raise ValueError("ask for the messages before a seq or after one, not both")
        if before_seq is not None:
            request.before_seq = before_seq
        if after_seq is not None:
            request.after_seq = after_seq
        return await self._stub.History(request, **self._options(user_id))

    async def mark_read(self, user_id: int, chat_id: int, seq: int) -> int:
        request = chat_pb2.MarkReadRequest(chat_id=chat_id, seq=seq)
        return (await self._stub.MarkRead(request, **self._options(user_id))).last_read_seq

    async def list_chats(self, user_id: int) -> list[chat_pb2.ChatSummary]:
        response = await self._stub.ListChats(chat_pb2.ListChatsRequest(), **self._options(user_id))
        return list(response.chats)

    async def list_notifications(self, user_id: int, limit: int = 0) -> list[chat_pb2.Notification]:
        request = chat_pb2.ListNotificationsRequest(limit=limit)
        return list((await self._stub.ListNotifications(request, **self._options(user_id))).notifications)


class ContentClient:
    def __init__(self, channel: grpc.aio.Channel, *, deadline_seconds: float) -> None:
        self._stub = content_pb2_grpc.ContentServiceStub(channel)
        self._deadline_seconds = deadline_seconds

    def _options(self, user_id: int) -> CallOptions:
        return with_proof(call_options(user_id, self._deadline_seconds))

    async def create_post(self, user_id: int, text: str, media_ids: list[str] | None = None) -> content_pb2.Post:
        request = content_pb2.CreatePostRequest(text=text, media_ids=media_ids or [])
        return (await self._stub.CreatePost(request, **self._options(user_id))).post

    async def get_post(self, user_id: int, post_id: str) -> content_pb2.Post:
        request = content_pb2.GetPostRequest(post_id=post_id)
        return (await self._stub.GetPost(request, **self._options(user_id))).post

    async def feed(
        self, user_id: int, *, cursor: str = "", limit: int = 0, author_id: int | None = None
    ) -> content_pb2.FeedResponse:
        request = content_pb2.FeedRequest(cursor=cursor, limit=limit, author_id=author_id)
        return await self._stub.Feed(request, **self._options(user_id))

    async def add_comment(self, user_id: int, post_id: str, text: str) -> content_pb2.Comment:
        request = content_pb2.AddCommentRequest(post_id=post_id, text=text)
        return (await self._stub.AddComment(request, **self._options(user_id))).comment

    async def list_comments(
        self, user_id: int, post_id: str, *, cursor: str = "", limit: int = 0
    ) -> content_pb2.ListCommentsResponse:
        request = content_pb2.ListCommentsRequest(post_id=post_id, cursor=cursor, limit=limit)
        return await self._stub.ListComments(request, **self._options(user_id))

    async def like(self, user_id: int, post_id: str) -> bool:
        return (await self._stub.Like(content_pb2.LikeRequest(post_id=post_id), **self._options(user_id))).added

    async def unlike(self, user_id: int, post_id: str) -> bool:
        request = content_pb2.UnlikeRequest(post_id=post_id)
        return (await self._stub.Unlike(request, **self._options(user_id))).removed

    async def upload_media(
        self, user_id: int, data: bytes, *, filename: str, content_type: str
    ) -> content_pb2.MediaRef:
        """Stream a file up: the header, then the bytes in pieces. The deadline covers the whole stream."""

        async def parts() -> AsyncIterator[content_pb2.UploadMediaRequest]:
            header = content_pb2.UploadMediaRequest.Header(filename=filename, content_type=content_type)
            yield content_pb2.UploadMediaRequest(header=header)
            for start in range(0, len(data), UPLOAD_CHUNK_BYTES):
                yield content_pb2.UploadMediaRequest(chunk=data[start : start + UPLOAD_CHUNK_BYTES])

        return (await self._stub.UploadMedia(parts(), **self._options(user_id))).media

    async def download_media(self, user_id: int, media_id: str) -> tuple[content_pb2.MediaRef, bytes]:
        """A file's description and its bytes, streamed down in pieces. The deadline covers the whole stream."""
        call = self._stub.DownloadMedia(content_pb2.DownloadMediaRequest(media_id=media_id), **self._options(user_id))
        ref, data = content_pb2.MediaRef(), bytearray()
        async for part in call:
            if part.WhichOneof("part") == "media":
                ref = part.media
            else:
                data += part.chunk
        return ref, bytes(data)


def open_channel(settings: Settings, host: str, port: int) -> grpc.aio.Channel:
    """A channel to ``host:port``: TLS that trusts only our authority when ``grpc.tls_ca_file`` is set, else plain."""
    credentials = grpc_client_tls(settings.grpc)
    if credentials is None:
        return grpc.aio.insecure_channel(f"{host}:{port}")
    return grpc.aio.secure_channel(f"{host}:{port}", credentials)


@asynccontextmanager
async def auth_client(settings: Settings) -> AsyncIterator[AuthClient]:
    """A client of the auth service at ``settings.grpc.auth_host:auth_port``; its channel closes when the block ends."""
    async with open_channel(settings, settings.grpc.auth_host, settings.grpc.auth_port) as channel:
        yield AuthClient(channel, deadline_seconds=settings.grpc.deadline_seconds)


@asynccontextmanager
async def chat_client(settings: Settings) -> AsyncIterator[ChatClient]:
    """A client of the chat service at ``settings.grpc.chat_host:chat_port``; its channel closes when the block ends."""
    async with open_channel(settings, settings.grpc.chat_host, settings.grpc.chat_port) as channel:
        yield ChatClient(channel, deadline_seconds=settings.grpc.deadline_seconds)


@asynccontextmanager
async def content_client(settings: Settings) -> AsyncIterator[ContentClient]:
    """A client of the content service at ``settings.grpc.content_host:content_port``; closed when the block ends."""
    async with open_channel(settings, settings.grpc.content_host, settings.grpc.content_port) as channel:
        yield ContentClient(channel, deadline_seconds=settings.grpc.deadline_seconds)
