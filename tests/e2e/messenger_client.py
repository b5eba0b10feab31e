"""A small client of the messenger for the end-to-end tests: REST with httpx, the WebSocket with ``websockets``.

The WebSocket side follows docs/websocket_protocol.md as a real client would: authenticate with the first
frame, match answers to commands by ``ref``, keep every message of one chat by seq (a push it already has is a
duplicate, counted and dropped), and ``sync`` from the highest seq it holds without a gap whenever a pushed seq
jumps ahead, after a reconnect, or when asked.

With ``auto_reconnect``, a socket the server closes (1001 from a gateway node that is shutting down, or any other
code) is opened again with backoff, as the web client does, and the chat is synced; every close code is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from reference_app.config import Settings
from workbook.processes import ProcessRunner

ANSWER_SECONDS = 30.0  # a fail-safe, not a measurement: a missing answer fails the test instead of hanging it
RECONNECT_FIRST_DELAY = 0.1  # then doubled after each failed attempt, up to RECONNECT_MAX_DELAY
RECONNECT_MAX_DELAY = 2.0
NODE_HEADER = "X-Gateway-Node"  # which gateway node answered (set when the app runs several behind a balancer)
PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class RunningApp:
    """Where the app under test listens, and the settings its processes run with."""

    base_url: str
    ws_url: str
    postgres_url: str
    settings: Settings
    runner: ProcessRunner


@dataclass
class User:
    id: int
    username: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def register_and_log_in(http: httpx.Client, username: str) -> User:
    """Register over REST, then log in: the token comes from the login, as a real client gets it."""
    registered = http.post(
        "/api/v1/auth/register",
        json={"username": username, "email": f"{username}@example.com", "password": PASSWORD},
    )
    assert registered.status_code == 201, f"registering {username} should work: {registered.text}"
    login = http.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert login.status_code == 200, f"logging in as {username} should work: {login.text}"
    return User(registered.json()["id"], username, login.json()["access_token"])


def open_chat(http: httpx.Client, user: User, other: User) -> int:
    response = http.post("/api/v1/chats", json={"other_user_id": other.id}, headers=user.headers)
    assert response.status_code == 200, f"opening a private chat should work: {response.text}"
    return int(response.json()["id"])


@dataclass
class ChatClient:
    """One user's WebSocket to the gateway, following one chat."""

    ws_url: str
    user: User
    chat_id: int
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)  # seq → message, each seq once
    pushed: int = 0  # message.created pushes that brought a seq we did not have
    duplicates: int = 0  # pushes of a seq we had already (at-least-once delivery)
    synced: int = 0  # seqs that came by sync rather than by push
    gaps: int = 0  # times a pushed seq jumped ahead and a sync was asked for
    last_pushed_seq: int = 0  # the seq of the latest push (new or duplicate)
    connections: int = 0
    other_frames: list[dict[str, Any]] = field(default_factory=list)
    auto_reconnect: bool = False  # open the socket again (with backoff) whenever the server closes it
    nodes: list[str | None] = field(default_factory=list)  # each connection's gateway node (X-Gateway-Node)
    close_codes: list[int | None] = field(default_factory=list)  # how each connection ended (None: no close frame)

    def __post_init__(self) -> None:
        self._socket: ClientConnection | None = None
        self._refs = (str(number) for number in itertools.count(1))
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._needs_sync = asyncio.Event()
        self._arrived = asyncio.Condition()
        self._closing = False

    @property
    def node(self) -> str | None:
        """The gateway node of the current (or last) connection, as its handshake said."""
        return self.nodes[-1] if self.nodes else None

    # -- connection ------------------------------------------------------------------------------------------

    async def connect(self) -> dict[str, Any]:
        """Connect, authenticate with the first frame, start reading; return the ``ready`` frame."""
        self._closing = False
        ready = await self._open()
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._sync_on_gaps())]
        return ready

    async def _open(self) -> dict[str, Any]:
        socket = await websockets.connect(self.ws_url, max_size=2**20)
        try:
            await socket.send(json.dumps({"type": "auth", "ref": "hello", "token": self.user.token}))
            ready = json.loads(await asyncio.wait_for(socket.recv(), ANSWER_SECONDS))
        except BaseException:
            await socket.close()
            raise
        assert ready.get("type") == "ready", f"the answer to auth should be a ready frame, not {ready}"
        assert ready["user_id"] == self.user.id, "the connection should belong to the user of the token"
        self._socket = socket
        self.nodes.append(socket.response.headers.get(NODE_HEADER) if socket.response is not None else None)
        self.connections += 1
        async with self._arrived:
            self._arrived.notify_all()
        return dict(ready)

    async def _reconnect(self) -> None:
        """Open the socket again, with backoff, until it works (or ANSWER_SECONDS have passed); then sync."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ANSWER_SECONDS
        delay = RECONNECT_FIRST_DELAY
        while True:
            await asyncio.sleep(delay)
            try:
                await self._open()
            except (OSError, TimeoutError, websockets.WebSocketException):
                if loop.time() > deadline:
                    raise
                delay = min(2 * delay, RECONNECT_MAX_DELAY)
                continue
            self._needs_sync.set()  # what was pushed while no socket was open comes by sync
            return

    async def wait_for_connections(self, count: int) -> None:
        """Wait until ``count`` connections have been made (a reconnect included); a fail-safe limit."""
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: self.connections >= count), ANSWER_SECONDS)

    async def close(self) -> None:
        self._closing = True
        # The tasks first: a sync waiting for its answer while the closing socket fails that answer could swallow
        # its cancellation (asyncio.wait_for of Python 3.11) and wait for the next gap for ever.
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._socket is not None:
            await self._socket.close()
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send a command and wait for the frame that answers it (same ``ref``)."""
        assert self._socket is not None, "connect first"
        ref = next(self._refs)
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ref] = answer
        await self._socket.send(json.dumps({**frame, "ref": ref}))
        try:
            return await asyncio.wait_for(answer, ANSWER_SECONDS)
        finally:
            self._waiting.pop(ref, None)

    async def _read(self) -> None:
        while True:
            socket = self._socket
            assert socket is not None
            with contextlib.suppress(websockets.ConnectionClosed):
                async for raw in socket:
                    await self._take(json.loads(raw))
            self.close_codes.append(socket.close_code)
            for future in self._waiting.values():  # their answers will never come on this socket
                if not future.done():
                    future.set_exception(ConnectionError(f"the socket closed ({socket.close_code}) before the answer"))
            if self._closing or not self.auto_reconnect:
                return
            await self._reconnect()

    async def _take(self, frame: dict[str, Any]) -> None:
        waiting = self._waiting.get(frame.get("ref") or "")
        if waiting is not None and not waiting.done():
            waiting.set_result(frame)
        elif frame.get("type") == "message.created":
            await self._keep(frame["message"], pushed=True)
        else:
            self.other_frames.append(frame)
            async with self._arrived:
                self._arrived.notify_all()

    async def wait_for_frame(self, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Wait until a frame that is not an answer nor a message (presence, typing…) matches; a fail-safe limit."""

        def found() -> dict[str, Any] | None:
            return next((frame for frame in self.other_frames if match(frame)), None)

        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: found() is not None), ANSWER_SECONDS)
        frame = found()
        assert frame is not None
        return frame

    # -- messages --------------------------------------------------------------------------------------------

    async def send(self, body: str, client_message_id: str | None = None) -> dict[str, Any]:
        """Send one message; return the ack. Retries with the same client_message_id while the answer is
        ``unavailable`` (the protocol's rule: the retry can never store a second copy)."""
        message_id = client_message_id or str(uuid.uuid4())
        frame = {"type": "send", "chat_id": self.chat_id, "client_message_id": message_id, "body": body}
        for _ in range(20):
            answer = await self.request(frame)
            if answer.get("code") != "unavailable":
                break
            await asyncio.sleep(0.5)
        assert answer.get("type") == "ack", f"sending should be acked, not answered {answer}"
        return answer

    def contiguous_seq(self) -> int:
        """The highest seq such that every seq from 1 up to it is held: where a sync starts."""
        seq = 0
        while seq + 1 in self.messages:
            seq += 1
        return seq

    async def sync(self) -> list[dict[str, Any]]:
        """Ask for everything after the highest seq held without a gap, page after page; return what came."""
        received: list[dict[str, Any]] = []
        while True:
            after = received[-1]["seq"] if received else self.contiguous_seq()
            answer = await self.request({"type": "sync", "chat_id": self.chat_id, "after_seq": after})
            assert answer.get("type") == "messages", f"sync should be answered with messages, not {answer}"
            received += answer["messages"]
            for message in answer["messages"]:
                await self._keep(message, pushed=False)
            if not answer["has_more"]:
                return received

    async def _keep(self, message: dict[str, Any], *, pushed: bool) -> None:
        if message["chat_id"] != self.chat_id:
            return
        seq = int(message["seq"])
        if pushed:
            self.last_pushed_seq = max(self.last_pushed_seq, seq)
        if seq in self.messages:
            if pushed:
                self.duplicates += 1
            return
        if pushed and seq > self.contiguous_seq() + 1:
            self.gaps += 1
            self._needs_sync.set()
        self.messages[seq] = message
        if pushed:
            self.pushed += 1
        else:
            self.synced += 1
        async with self._arrived:
            self._arrived.notify_all()

    async def _sync_on_gaps(self) -> None:
        while not self._closing:
            await self._needs_sync.wait()
            self._needs_sync.clear()
            # A socket that closes during the sync ends it; a reconnect asks for another.
            with contextlib.suppress(ConnectionError, websockets.ConnectionClosed):
                await self.sync()

    async def wait_for_seq(self, seq: int) -> dict[str, Any]:
        """Wait until the message with this seq is held (pushed or synced); a fail-safe limit, not a timing."""
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: seq in self.messages), ANSWER_SECONDS)
        return self.messages[seq]
