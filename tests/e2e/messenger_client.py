"""A small client of the messenger for the end-to-end tests: REST with httpx, the WebSocket with ``websockets``.

The WebSocket side follows docs/websocket_protocol.md as a real client would: authenticate with the first
frame, match answers to commands by ``ref``, keep every message of one chat by seq (a push it already has is a
duplicate, counted and dropped), and ``sync`` from the highest seq it holds without a gap whenever a pushed seq
jumps ahead, after a reconnect, or when asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from reference_app.config import Settings
from workbook.processes import ProcessRunner

ANSWER_SECONDS = 30.0  # a fail-safe, not a measurement: a missing answer fails the test instead of hanging it
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

    def __post_init__(self) -> None:
        self._socket: ClientConnection | None = None
        self._refs = (str(number) for number in itertools.count(1))
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._needs_sync = asyncio.Event()
        self._arrived = asyncio.Condition()

    # -- connection ------------------------------------------------------------------------------------------

    async def connect(self) -> dict[str, Any]:
        """Connect, authenticate with the first frame, start reading; return the ``ready`` frame."""
        self._socket = await websockets.connect(self.ws_url, max_size=2**20)
        self.connections += 1
        await self._socket.send(json.dumps({"type": "auth", "ref": "hello", "token": self.user.token}))
        ready = json.loads(await asyncio.wait_for(self._socket.recv(), ANSWER_SECONDS))
        assert ready.get("type") == "ready", f"the answer to auth should be a ready frame, not {ready}"
        assert ready["user_id"] == self.user.id, "the connection should belong to the user of the token"
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._sync_on_gaps())]
        return dict(ready)

    async def close(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
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
        assert self._socket is not None
        async for raw in self._socket:
            frame = json.loads(raw)
            waiting = self._waiting.get(frame.get("ref") or "")
            if waiting is not None and not waiting.done():
                waiting.set_result(frame)
            elif frame.get("type") == "message.created":
                await self._keep(frame["message"], pushed=True)
            else:
                self.other_frames.append(frame)

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
        while True:
            await self._needs_sync.wait()
            self._needs_sync.clear()
            await self.sync()

    async def wait_for_seq(self, seq: int) -> dict[str, Any]:
        """Wait until the message with this seq is held (pushed or synced); a fail-safe limit, not a timing."""
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: seq in self.messages), ANSWER_SECONDS)
        return self.messages[seq]
