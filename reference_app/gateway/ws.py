"""The WebSocket endpoint, ``/ws``: authenticate by the first frame, then read commands until the socket closes.

Each connection runs two tasks. The *reader* (a :class:`Session`) receives frames one at a time, checks their
size and rate, parses them (frames.py) and does the command, with the same actions as REST (actions.py): the
same send rate limit, the same membership checks (the chat service answers NOT_FOUND to a non-member on every
call). The *writer* (Connection.run_writer) is the only one that sends on the socket: answers and pushes are
offered to the connection's bounded queue. When either task ends, the other is stopped.

A socket does not outlive its token: at the token's ``exp`` the connection is closed with 4401, and the
client reconnects with a fresh token (so a revoked token also stops working within one token lifetime).

The protocol is written down in docs/websocket_protocol.md.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import grpc
from fastapi import WebSocket
from loguru import logger

from ..auth.credentials import AccessClaims
from ..grpc_api import chat_pb2
from ..grpc_api.clients import acting_for
from ..grpc_api.timestamps import from_timestamp
from . import frames
from .actions import mark_read, send_message
from .connection import (
    CLOSE_INTERNAL,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    CLOSE_TRY_LATER,
    CLOSE_UNAUTHENTICATED,
    Connection,
    TokenBucket,
    frame_bytes,
)
from .frames import SENDS, Auth, Command, Delete, Edit, FrameError, Ping, Read, Reply, Send, Sync, Typing
from .identity import claims_for_token
from .problems import (
    CONFLICT,
    FORBIDDEN,
    INVALID,
    NOT_FOUND,
    TIMEOUT,
    TOO_MANY,
    UNAUTHENTICATED,
    UNAVAILABLE,
    Problem,
    ProblemKind,
    problem_for_rpc_error,
)
from .schemas import MessageOut

if TYPE_CHECKING:
    from .app import Gateway

WS_PATH = "/ws"

# A token in the URL is refused, not ignored: the client must learn at once that it leaks its token to logs.
URL_TOKEN_PARAMETERS = ("token", "access_token")
# The error code a client gets for each kind of problem the shared actions (and the services) raise.
CODE_OF_PROBLEM: dict[ProblemKind, str] = {
    NOT_FOUND: frames.NOT_FOUND,
    FORBIDDEN: frames.FORBIDDEN,
    INVALID: frames.INVALID,
    CONFLICT: frames.CONFLICT,
    TOO_MANY: frames.RATE_LIMITED,
    UNAVAILABLE: frames.UNAVAILABLE,
    TIMEOUT: frames.UNAVAILABLE,
}


def message_json(message: chat_pb2.Message) -> dict[str, Any]:
    """A message as it appears in frames: the REST shape (MessageOut), as JSON values."""
    return MessageOut.from_proto(message).model_dump(mode="json")


def error_for_problem(problem: Problem, command: Command) -> dict[str, Any]:
    code = CODE_OF_PROBLEM.get(problem.kind, frames.INTERNAL)
    if code == frames.INTERNAL:
        logger.error("a WebSocket {} failed: {} {}", type(command).__name__, problem.kind.status, problem.detail)
    retry_after = problem.headers.get("Retry-After")
    return frames.error_frame(
        code,
        problem.detail,
        command.ref,
        retry_after=int(retry_after) if retry_after is not None else None,
        client_message_id=command.client_message_id if isinstance(command, SENDS) else None,
    )


class Session:
    """The reader side of one connection: authentication, then each frame in turn."""

    def __init__(self, gateway: Gateway, websocket: WebSocket, connection: Connection) -> None:
        self._gateway = gateway
        self._websocket = websocket
        self._connection = connection
        self._limits = gateway.hub.limits
        self._bucket = TokenBucket(self._limits.frames_per_second, self._limits.frame_burst)
        self._refused_in_a_row = 0
        self.user_id: int | None = None
        self._expiry: asyncio.TimerHandle | None = None  # the close at the token's exp

    def end(self) -> None:
        """The connection has ended: forget the pending close at the token's exp."""
        if self._expiry is not None:
            self._expiry.cancel()

    def _reply(self, frame: dict[str, Any]) -> None:
        self._connection.offer(frames.encode(frame))

    async def _receive(self) -> tuple[str | None, int] | None:
        """The next frame's text (None for a binary frame) and size in bytes; None once the client has gone."""
        message = await self._websocket.receive()
        if message["type"] == "websocket.disconnect":
            return None
        text: str | None = message.get("text")
        if text is not None:
            return text, len(text.encode("utf-8"))
        return None, len(message.get("bytes") or b"")

    def _too_big(self, size: int) -> bool:
        if size <= self._limits.max_frame_bytes:
            return False
        self._connection.close(CLOSE_TOO_BIG, f"a frame is at most {self._limits.max_frame_bytes} bytes")
        return True

    async def run(self) -> None:
        if any(name in self._websocket.query_params for name in URL_TOKEN_PARAMETERS):
            self._connection.close(CLOSE_UNAUTHENTICATED, "never put the token in the URL; send an auth frame")
            return
        if not await self._authenticate():
            return
        while (received := await self._receive()) is not None:
            text, size = received
            if self._too_big(size):
                return
            if not await self._handle(text):
                return

    async def _authenticate(self) -> bool:
        """Wait for the auth frame; on success the connection is registered and told `ready`."""
        close = self._connection.close
        try:
            async with asyncio.timeout(self._limits.auth_timeout_seconds):
                received = await self._receive()
        except TimeoutError:
            close(CLOSE_UNAUTHENTICATED, f"no auth frame within {self._limits.auth_timeout_seconds:g} s")
            return False
        if received is None:
            return False
        text, size = received
        if self._too_big(size):
            return False
        try:
            command = frames.parse_frame(text) if text is not None else None
        except FrameError:
            command = None
        if not isinstance(command, Auth):
            close(CLOSE_UNAUTHENTICATED, 'the first frame must be {"type": "auth", "token": ...}')
            return False
        claims = await self._verify(command.token)
        if claims is None:
            return False
        user_id = self.user_id = claims.user_id
        acting_for(command.token)  # this reader task's calls prove the user with it (stage 12)
        ready = frames.encode(
            {"type": "ready", "ref": command.ref, "user_id": user_id, "limits": self._limits.public()}
        )
        try:
            await self._gateway.hub.connect(user_id, self._connection, ready)
        except grpc.aio.AioRpcError as error:
            logger.warning("user {}: cannot load the chats of a new connection: {}", user_id, error.code().name)
            close(CLOSE_TRY_LATER, "cannot load your chats right now; try again shortly")
            return False
        # The socket lives as long as its token: at exp, close with 4401; the client reconnects with a new one.
        seconds_left = max(0.0, claims.expires_at - time.time())
        reason = "token expired; reconnect with a fresh access token"
        self._expiry = asyncio.get_running_loop().call_later(seconds_left, close, CLOSE_UNAUTHENTICATED, reason)
        return True

    async def _verify(self, token: str) -> AccessClaims | None:
        """The token's claims (the user and the expiry); None after closing the connection for a bad token."""
        try:
            return await claims_for_token(self._gateway, token)
        except Problem as problem:
            if problem.kind is UNAUTHENTICATED:
                self._connection.close(CLOSE_UNAUTHENTICATED, "the access token is not valid; log in or refresh it")
            else:
                self._connection.close(CLOSE_TRY_LATER, "cannot check the token right now; try again shortly")
        return None

    async def _handle(self, text: str | None) -> bool:
        """Do one frame; False when the connection must close (a sustained flood)."""
        wait = self._bucket.take()
        command: Command | None = None
        try:
            if text is None:
                raise FrameError(frames.BAD_FRAME, "only text frames are accepted: JSON in UTF-8 text")
            command = frames.parse_frame(text)
        except FrameError as error:
            refused: FrameError | None = error
        else:
            refused = None
        ref = command.ref if command is not None else refused.ref if refused is not None else None
        # An error that answers a send names its message, even one refused while parsing (a body too long).
        cmid = command.client_message_id if isinstance(command, SENDS) else None
        if refused is not None and text is not None:
            cmid = frames.client_message_id_in(text)
        if wait > 0:
            self._refused_in_a_row += 1
            if self._refused_in_a_row >= self._limits.flood_close_after:
                self._connection.close(CLOSE_POLICY, "too many frames; slow down")
                return False
            message = f"more than {self._limits.frames_per_second:g} frames a second; this one was not done"
            retry_after = max(0.01, round(wait, 2))
            self._reply(
                frames.error_frame(frames.RATE_LIMITED, message, ref, retry_after=retry_after, client_message_id=cmid)
            )
            return True
        self._refused_in_a_row = 0
        if command is None:
            assert refused is not None
            self._reply(frames.error_frame(refused.code, refused.message, refused.ref, client_message_id=cmid))
            return True
        await self._execute(command)
        return True

    async def _execute(self, command: Command) -> None:
        try:
            answer = await self._answer(command)
        except FrameError as error:
            cmid = command.client_message_id if isinstance(command, SENDS) else None
            answer = frames.error_frame(error.code, error.message, command.ref, client_message_id=cmid)
        except Problem as problem:
            answer = error_for_problem(problem, command)
        except grpc.aio.AioRpcError as error:
            refused = problem_for_rpc_error(error)
            if refused.kind is UNAUTHENTICATED:
                # The services no longer accept this socket's token (revoked at logout): the socket ends with it,
                # as it does at the token's expiry. The client logs in again and reconnects.
                self._connection.close(CLOSE_UNAUTHENTICATED, "the access token is no longer valid; log in again")
                return
            answer = error_for_problem(refused, command)
        if answer is not None:
            self._reply(answer)

    async def _answer(self, command: Command) -> dict[str, Any] | None:
        """Do a command for the connection's user; the frame that answers it (None: no answer)."""
        gateway, user_id = self._gateway, self.user_id
        assert user_id is not None, "commands are only done after authentication"
        match command:
            case Auth():
                raise FrameError(frames.BAD_FRAME, "this connection is authenticated already", command.ref)
            case Send() | Reply():
                reply_to_seq = command.reply_to_seq if isinstance(command, Reply) else None
                message = await send_message(
                    gateway, user_id, command.chat_id, command.client_message_id, command.body, reply_to_seq
                )
                created_at = from_timestamp(message.created_at).isoformat()
                return frames.ack_frame(
                    command, chat_id=command.chat_id, client_message_id=str(command.client_message_id),
                    seq=message.seq, created_at=created_at,
                )  # fmt: skip
            case Edit(chat_id=chat_id, seq=seq, body=body):
                message = await gateway.chats.edit_message(user_id, chat_id, seq, body)
                return frames.ack_frame(command, chat_id=chat_id, seq=message.seq)
            case Delete(chat_id=chat_id, seq=seq):
                message = await gateway.chats.delete_message(user_id, chat_id, seq)
                return frames.ack_frame(command, chat_id=chat_id, seq=message.seq)
            case Read(chat_id=chat_id, seq=seq):
                last_read_seq = await mark_read(gateway, user_id, chat_id, seq)
                return frames.ack_frame(command, chat_id=chat_id, last_read_seq=last_read_seq)
            case Typing(chat_id=chat_id):
                if not await gateway.hub.typing(user_id, chat_id):
                    message_text = f"chat {chat_id} does not exist, or you are not one of its members"
                    raise FrameError(frames.NOT_FOUND, message_text, command.ref)
                return None
            case Sync():
                return await self._sync(user_id, command)
            case Ping():
                return {"type": "pong", "ref": command.ref}
        raise AssertionError(f"a parsed command without a handler: {command!r}")

    async def _sync(self, user_id: int, command: Sync) -> dict[str, Any]:
        """The messages after ``after_seq``, page after page of History, oldest first.

        Two bounds, whichever comes first: sync_max_messages messages, and sync_max_bytes of encoded messages
        (500 messages of 4000 four-byte characters would be 8 MB in one frame). Each message is encoded once
        here, to measure it, between the awaits of the pages: the loop is never held for more than a page's
        worth of encoding, and the answer's final encoding is bounded by sync_max_bytes. At least one message
        is always included, so that asking again always makes progress.
        """
        most, most_bytes = self._limits.sync_max_messages, self._limits.sync_max_bytes
        page_size = self._gateway.settings.postgres.history_page_max
        messages: list[dict[str, Any]] = []
        size = 0
        after, has_more, full = command.after_seq, True, False
        while has_more and not full:
            limit = min(page_size, most - len(messages))
            page = await self._gateway.chats.history(user_id, command.chat_id, after_seq=after, limit=limit)
            has_more = page.has_more and len(page.messages) > 0
            for message in page.messages:
                item = message_json(message)
                item_size = frame_bytes(frames.encode(item)) + 1  # and its comma
                if messages and size + item_size > most_bytes:
                    full = has_more = True  # this one and those after it: in the next answer
                    break
                messages.append(item)
                size += item_size
                after = message.seq
            full = full or len(messages) >= most
        return {
            "type": "messages", "ref": command.ref, "chat_id": command.chat_id, "after_seq": command.after_seq,
            "has_more": has_more, "messages": messages,
        }  # fmt: skip


async def websocket_endpoint(websocket: WebSocket) -> None:
    """One client connection, from accept to close. See docs/websocket_protocol.md."""
    gateway: Gateway = websocket.app.state.gateway
    limits = gateway.hub.limits
    await websocket.accept()
    connection = Connection(
        websocket,
        queue_frames=limits.outgoing_queue_frames,
        queue_bytes=limits.outgoing_queue_bytes,
        send_timeout_seconds=limits.send_timeout_seconds,
    )
    session = Session(gateway, websocket, connection)
    writer = asyncio.create_task(connection.run_writer(), name="ws-writer")
    reader = asyncio.create_task(session.run(), name="ws-reader")
    try:
        done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        error = reader.exception() if reader in done else None
        if error is not None:
            logger.opt(exception=error).error("user {}: the WebSocket reader failed", session.user_id)
            connection.close(CLOSE_INTERNAL, "internal error; reconnect")
        if reader in done and connection.closing:
            # The reader asked to close (too big, flood, auth): let the writer send what is queued, then close.
            await asyncio.wait({writer}, timeout=limits.send_timeout_seconds)
    finally:
        session.end()
        gateway.hub.disconnect(connection)  # first, and without awaiting: the endpoint may be being cancelled
        for task in (reader, writer):
            task.cancel()
        # asyncio.wait, not gather: it never raises what a task raised. A CancelledError that came out of a task
        # instead of our own cancellation would confuse the server's (anyio's) cancel scopes.
        await asyncio.wait({reader, writer})
        for task in (reader, writer):
            if not task.cancelled():
                task.exception()  # retrieved: a client that went away mid-send is not an error worth a log line
