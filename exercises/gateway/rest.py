"""The REST API under /api/v1: each route checks who calls and what they send, then calls one service.

A route is deliberately thin. The rules live in the services (a non-member gets NOT_FOUND from the chat service
on every call, whatever the gateway does), and errors become problem documents in one place (problems.py). What
a route adds is HTTP: the method and path, status codes (201 for something created, 204 for nothing to say),
and the response model that is the public contract in the OpenAPI document at /docs and /openapi.json.
"""

from __future__ import annotations

from typing import Annotated
from uuid import uuid4

from fastapi import APIRouter, Depends, Path, Query, Request, Response, UploadFile, status
from pydantic import AfterValidator

from .actions import check_sign_in_rate, mark_read, send_message
from .identity import bearer_token, current_user, gateway_of
from .problems import INVALID, UNSUPPORTED_MEDIA, Problem
from .schemas import (
    MAX_CONTENT_ID_CHARS,
    MAX_ID,
    NO_NUL_PATTERN,
    ChatOut,
    ChatSummaryOut,
    CommentBody,
    CommentOut,
    CommentsOut,
    CreatePostBody,
    EditMessageBody,
    FeedOut,
    HistoryOut,
    LikeOut,
    LoginBody,
    LogoutBody,
    MarkReadBody,
    MediaOut,
    MessageOut,
    NotificationOut,
    OpenChatBody,
    PostOut,
    ReadMarkOut,
    RefreshBody,
    RegisterBody,
    SendMessageBody,
    TokenPairOut,
    UserOut,
    without_nul,
)

MEDIA_PATH = "/media"
# Read an upload in pieces of this size: the body limit already bounds the total.
UPLOAD_READ_BYTES = 64 * 1024

router = APIRouter()
User = Annotated[int, Depends(current_user)]
Limit = Annotated[int, Query(ge=1, le=100, description="at most this many items")]
# An id in a path: a positive bigint. Anything else is a 422 before any service is called.
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
# A post's or a media file's id in a path (bounded: see MAX_CONTENT_ID_CHARS).
ContentId = Annotated[str, Path(min_length=1, max_length=MAX_CONTENT_ID_CHARS)]
# A page cursor, as the content service handed it out (a NUL is refused like in any text: see schemas.Text).
Cursor = Annotated[
    str, AfterValidator(without_nul), Query(max_length=200, json_schema_extra={"pattern": NO_NUL_PATTERN})
]


# Auth ------------------------------------------------------------------------------------------------------


def client_address(request: Request) -> str:
    """The address of the peer that sent the request (a proxy's, behind one)."""
    return request.client.host if request.client is not None else "unknown"


@router.post("/auth/register", status_code=status.HTTP_201_CREATED, tags=["auth"])
async def register(body: RegisterBody, request: Request) -> UserOut:
    await check_sign_in_rate(gateway_of(request), address=client_address(request), account=body.username)
    user = await gateway_of(request).auth.register(body.username, body.email, body.password, body.display_name)
    return UserOut.from_proto(user)


@router.post("/auth/login", tags=["auth"])
async def login(body: LoginBody, request: Request) -> TokenPairOut:
    """Sign in. Attempts are limited per account and per client address: past that, 429 with Retry-After."""
    await check_sign_in_rate(gateway_of(request), address=client_address(request), account=body.username)
    return TokenPairOut.from_proto(await gateway_of(request).auth.login(body.username, body.password))


@router.post("/auth/refresh", tags=["auth"])
async def refresh(body: RefreshBody, request: Request) -> TokenPairOut:
    await check_sign_in_rate(gateway_of(request), address=client_address(request))
    return TokenPairOut.from_proto(await gateway_of(request).auth.refresh(body.refresh_token))


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT, tags=["auth"])
async def logout(body: LogoutBody, request: Request, token: Annotated[str, Depends(bearer_token)]) -> None:
    await gateway_of(request).auth.logout(token, body.refresh_token)


# Users -----------------------------------------------------------------------------------------------------


@router.get("/users/me", tags=["users"])
async def me(user_id: User, request: Request) -> UserOut:
    return UserOut.from_proto(await gateway_of(request).auth.get_user(user_id, user_id))


@router.get("/users/search", tags=["users"])
async def search_users(
    user_id: User,
    request: Request,
    q: Annotated[
        str,
        AfterValidator(without_nul),
        Query(min_length=1, max_length=32, json_schema_extra={"pattern": NO_NUL_PATTERN}),
    ],
    limit: Limit = 20,
) -> list[UserOut]:
    users = await gateway_of(request).auth.search_users(user_id, q, limit)
    return [UserOut.from_proto(user) for user in users]


@router.get("/users/{other_id}", tags=["users"])
async def user(other_id: Id, user_id: User, request: Request) -> UserOut:
    return UserOut.from_proto(await gateway_of(request).auth.get_user(user_id, other_id))


# Chats and messages ----------------------------------------------------------------------------------------


@router.post("/chats", tags=["chats"])
async def open_chat(body: OpenChatBody, user_id: User, request: Request) -> ChatOut:
    """Open the private chat with another user (created on first use; opening it again is not an error)."""
    return ChatOut.from_proto(await gateway_of(request).chats.open_chat(user_id, body.other_user_id))


@router.get("/chats", tags=["chats"])
async def list_chats(user_id: User, request: Request) -> list[ChatSummaryOut]:
    """The caller's chats with their last message and unread count, most recently active first."""
    return [ChatSummaryOut.from_proto(summary) for summary in await gateway_of(request).chats.list_chats(user_id)]


@router.get("/chats/{chat_id}/messages", tags=["chats"])
async def history(
    chat_id: Id,
    user_id: User,
    request: Request,
    before_seq: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    after_seq: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
    limit: Limit = 50,
) -> HistoryOut:
    """One page of history, oldest first: the newest messages, those before a seq (paging back), or after one."""
    if before_seq is not None and after_seq is not None:
        raise Problem(INVALID, "ask for the messages before a seq or after one, not both")
    page = await gateway_of(request).chats.history(
        user_id, chat_id, before_seq=before_seq, after_seq=after_seq, limit=limit
    )
    return HistoryOut.from_proto(page)


@router.post("/chats/{chat_id}/messages", status_code=status.HTTP_201_CREATED, tags=["chats"])
async def send(chat_id: Id, body: SendMessageBody, user_id: User, request: Request) -> MessageOut:
    """Send a message (a reply with reply_to_seq). A retry with the same client_message_id returns the stored
    message and stores nothing."""
    message = await send_message(
        gateway_of(request), user_id, chat_id, body.client_message_id, body.body, body.reply_to_seq
    )
    return MessageOut.from_proto(message)


@router.patch("/chats/{chat_id}/messages/{seq}", tags=["chats"])
async def edit(chat_id: Id, seq: Id, body: EditMessageBody, user_id: User, request: Request) -> MessageOut:
    return MessageOut.from_proto(await gateway_of(request).chats.edit_message(user_id, chat_id, seq, body.body))


@router.delete("/chats/{chat_id}/messages/{seq}", tags=["chats"])
async def delete(chat_id: Id, seq: Id, user_id: User, request: Request) -> MessageOut:
    """Delete one of your messages: it keeps its seq and loses its text. Deleting twice is not an error."""
    return MessageOut.from_proto(await gateway_of(request).chats.delete_message(user_id, chat_id, seq))


@router.post("/chats/{chat_id}/read", tags=["chats"])
async def read(chat_id: Id, body: MarkReadBody, user_id: User, request: Request) -> ReadMarkOut:
    """Mark the chat read up to a seq. The mark never moves back; the other member gets a read receipt."""
    return ReadMarkOut(chat_id=chat_id, last_read_seq=await mark_read(gateway_of(request), user_id, chat_id, body.seq))


@router.get("/notifications", tags=["chats"])
async def notifications(user_id: User, request: Request, limit: Limit = 20) -> list[NotificationOut]:
    """Messages that arrived while you were offline, newest first."""
    found = await gateway_of(request).chats.list_notifications(user_id, limit)
    return [NotificationOut.from_proto(notification) for notification in found]


# Content ---------------------------------------------------------------------------------------------------


@router.post("/posts", status_code=status.HTTP_201_CREATED, tags=["content"])
async def create_post(body: CreatePostBody, user_id: User, request: Request) -> PostOut:
    return PostOut.from_proto(await gateway_of(request).content.create_post(user_id, body.text, body.media_ids))


@router.get("/posts", tags=["content"])
async def feed(
    user_id: User,
    request: Request,
    cursor: Cursor = "",
    limit: Limit = 20,
    author_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> FeedOut:
    """The newest posts first; pass next_cursor back as cursor for the next page."""
    page = await gateway_of(request).content.feed(user_id, cursor=cursor, limit=limit, author_id=author_id)
    return FeedOut.from_proto(page)


@router.get("/posts/{post_id}", tags=["content"])
async def get_post(post_id: ContentId, user_id: User, request: Request) -> PostOut:
    return PostOut.from_proto(await gateway_of(request).content.get_post(user_id, post_id))


@router.post("/posts/{post_id}/comments", status_code=status.HTTP_201_CREATED, tags=["content"])
async def comment(post_id: ContentId, body: CommentBody, user_id: User, request: Request) -> CommentOut:
    return CommentOut.from_proto(await gateway_of(request).content.add_comment(user_id, post_id, body.text))


@router.get("/posts/{post_id}/comments", tags=["content"])
async def comments(
    post_id: ContentId,
    user_id: User,
    request: Request,
    cursor: Cursor = "",
    limit: Limit = 20,
) -> CommentsOut:
    """A post's comments, newest first; pass next_cursor back as cursor for the next page."""
    page = await gateway_of(request).content.list_comments(user_id, post_id, cursor=cursor, limit=limit)
    return CommentsOut.from_proto(page)


@router.put("/posts/{post_id}/like", tags=["content"])
async def like(post_id: ContentId, user_id: User, request: Request) -> LikeOut:
    """Like a post. PUT, because liking twice is the same as liking once."""
    return LikeOut(post_id=post_id, changed=await gateway_of(request).content.like(user_id, post_id))


@router.delete("/posts/{post_id}/like", tags=["content"])
async def unlike(post_id: ContentId, user_id: User, request: Request) -> LikeOut:
    return LikeOut(post_id=post_id, changed=await gateway_of(request).content.unlike(user_id, post_id))


@router.post(MEDIA_PATH, status_code=status.HTTP_201_CREATED, tags=["content"])
async def upload(file: UploadFile, user_id: User, request: Request) -> MediaOut:
    """Upload an image (multipart/form-data, field ``file``). The content service checks its type and size."""
    if not file.content_type:
        raise Problem(UNSUPPORTED_MEDIA, "the file part needs a Content-Type, such as image/png")
    data = bytearray()
    while piece := await file.read(UPLOAD_READ_BYTES):
        data += piece
    ref = await gateway_of(request).content.upload_media(
        user_id, bytes(data), filename=file.filename or f"upload-{uuid4().hex}", content_type=file.content_type
    )
    return MediaOut.from_proto(ref)


@router.get(MEDIA_PATH + "/{media_id}", tags=["content"], response_class=Response)
async def download(media_id: ContentId, user_id: User, request: Request) -> Response:
    """The file's bytes, with its content type. ``nosniff``: a browser must not guess another type from them."""
    ref, data = await gateway_of(request).content.download_media(user_id, media_id)
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"}
    return Response(data, media_type=ref.content_type, headers=headers)
