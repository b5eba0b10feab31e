"""Stage 07: the WebSocket at /ws (docs/websocket_protocol.md), against real services and a real broker.

The unit tests at the top need nothing running: parsing a frame (07.4), the bounded outgoing queue (07.5) and
routing an event to local connections (07.6). The rest use the ``gateway`` fixture (the auth, chat and content
services on a database, Redis database and exchange of the test's own) and, for pushed messages, an outbox
relay running in a thread (``relay`` below): messages reach sockets from the chat service's outbox through
RabbitMQ, exactly as in production.

Every wait for a frame is bounded: a missing frame fails the test after WAIT_SECONDS instead of hanging it.
Starlette's test socket has no receive with a timeout, so each socket gets a thread of its own that does the
blocking ``receive()`` (public API) and hands every message to a queue; the test waits on the queue, bounded.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from app.auth.tokens import TokenIssuer
from app.config import load_settings
from app.events.envelope import Event, new_event
from app.events.relay import OutboxRelay
from app.gateway.connection import CLOSE_TRY_LATER, Connection, TokenBucket
from app.gateway.frames import (
    BAD_FRAME,
    TOO_LARGE,
    UNKNOWN_TYPE,
    FrameError,
    Ping,
    Send,
    Sync,
    client_message_id_in,
    encode,
    parse_frame,
)
from app.gateway.hub import Hub, WsLimits, local_recipients
from app.gateway.signals import SignalPublisher
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession

API = "/api/v1"
WAIT_SECONDS = 15.0
A_UUID = "0b6f8a52-3c1e-4d07-9a51-2f1d6f0c9e11"


# Helpers -------------------------------------------------------------------------------------------------------


def sign_up(client: TestClient, name: str) -> tuple[int, str]:
    """Register and log in a user; return their id and access token."""
    username = f"{name}_{uuid.uuid4().hex[:6]}"
    registered = client.post(
        f"{API}/auth/register",
        json={"username": username, "email": f"{username}@example.com", "password": "correct horse battery"},
    )
    assert registered.status_code == 201, f"registering {username} failed: {registered.text}"
    tokens = client.post(f"{API}/auth/login", json={"username": username, "password": "correct horse battery"})
    assert tokens.status_code == 200, f"logging in as {username} failed: {tokens.text}"
    return registered.json()["id"], tokens.json()["access_token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def open_chat(client: TestClient, token: str, other_id: int) -> int:
    response = client.post(f"{API}/chats", json={"other_user_id": other_id}, headers=bearer(token))
    assert response.status_code == 200, f"opening a chat failed: {response.text}"
    chat_id: int = response.json()["id"]
    return chat_id


def rest_send(client: TestClient, token: str, chat_id: int, body: str) -> int:
    payload = {"client_message_id": str(uuid.uuid4()), "body": body}
    response = client.post(f"{API}/chats/{chat_id}/messages", json=payload, headers=bearer(token))
    assert response.status_code == 201, f"sending over REST failed: {response.status_code} {response.text}"
    seq: int = response.json()["seq"]
    return seq


def hub_of(client: TestClient) -> Hub:
    hub: Hub = client.app.state.gateway.hub  # type: ignore[attr-defined]
    return hub


def set_limits(client: TestClient, **changes: Any) -> None:
    """Change the WebSocket limits for the connections opened after this (each reads them when it opens)."""
    hub = hub_of(client)
    hub.limits = replace(hub.limits, **changes)


# Each socket's messages, as a thread of its own receives them (see inbox_of).
INBOXES: weakref.WeakKeyDictionary[WebSocketTestSession, queue.Queue[dict[str, Any]]] = weakref.WeakKeyDictionary()


def inbox_of(ws: WebSocketTestSession) -> queue.Queue[dict[str, Any]]:
    """The queue of what the gateway sent on ``ws``, filled by a daemon thread that calls ``ws.receive()``.

    The thread ends after the close message, or when the socket's session ends (receive then raises).
    """
    inbox = INBOXES.get(ws)
    if inbox is None:
        inbox = INBOXES[ws] = queue.Queue()

        def pump(inbox: queue.Queue[dict[str, Any]] = inbox) -> None:
            try:
                while True:
                    message: dict[str, Any] = ws.receive()
                    inbox.put(message)
                    if message["type"] == "websocket.close":
                        return
            except Exception:  # the test's `with` block closed the socket: nothing more will come
                return

        threading.Thread(target=pump, name="test-ws-inbox", daemon=True).start()
    return inbox


def next_message(ws: WebSocketTestSession, what: str, seconds: float = WAIT_SECONDS) -> dict[str, Any]:
    """The next ASGI message the gateway sent on this socket (a frame or the close), waiting at most ``seconds``."""
    try:
        return inbox_of(ws).get(timeout=seconds)
    except queue.Empty:
        pytest.fail(f"waiting for {what}: the gateway sent nothing within {seconds:.0f} s")


def until(ws: WebSocketTestSession, wanted: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """Read frames until one is ``wanted`` (others, pushes say, are skipped); fail on a close or after the wait."""
    while True:
        message = next_message(ws, what)
        if message["type"] == "websocket.close":
            pytest.fail(f"waiting for {what}: the gateway closed the socket ({message.get('code')})")
        frame: dict[str, Any] = json.loads(message["text"])
        if wanted(frame):
            return frame


def all_of(ws: WebSocketTestSession, wanted: dict[str, Callable[[dict[str, Any]], bool]]) -> dict[str, dict[str, Any]]:
    """Read frames until each of ``wanted`` (by name) has arrived, in whatever order they come."""
    found: dict[str, dict[str, Any]] = {}
    while len(found) < len(wanted):
        missing = [name for name in wanted if name not in found]
        frame = until(
            ws, lambda frame, missing=missing: any(wanted[name](frame) for name in missing), " and ".join(missing)
        )
        found |= {name: frame for name in missing if wanted[name](frame)}
    return found


def frames_until_pong(ws: WebSocketTestSession, ref: str) -> list[dict[str, Any]]:
    """Send a ping and return every frame that arrived before its pong (what was already on its way)."""
    ws.send_json({"type": "ping", "ref": ref})
    seen: list[dict[str, Any]] = []
    while True:
        frame = until(ws, lambda _: True, f"the pong {ref}")
        if frame == {"type": "pong", "ref": ref}:
            return seen
        seen.append(frame)


def close_of(ws: WebSocketTestSession, what: str) -> tuple[int, str]:
    """Read until the gateway closes the socket; its close code and reason."""
    while True:
        message = next_message(ws, what)
        if message["type"] == "websocket.close":
            return int(message.get("code", 1000)), str(message.get("reason") or "")


def of_type(kind: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda frame: frame.get("type") == kind and all(frame.get(key) == value for key, value in fields.items())


def pushed(kind: str, chat_id: int, seq: int) -> Callable[[dict[str, Any]], bool]:
    def match(frame: dict[str, Any]) -> bool:
        message = frame.get("message") or {}
        return frame.get("type") == kind and message.get("chat_id") == chat_id and message.get("seq") == seq

    return match


@contextmanager
def signed_in(client: TestClient, token: str) -> Iterator[WebSocketTestSession]:
    """A WebSocket authenticated by its first frame, after its `ready`."""
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "auth", "ref": "hello", "token": token})
        ready = until(ws, lambda _: True, "the ready frame")
        assert ready.get("type") == "ready" and ready.get("ref") == "hello", (
            f"a valid auth frame must be answered with a ready frame carrying its ref; got {ready}"
        )
        yield ws


@pytest.fixture
def relay(gateway: TestClient) -> Iterator[OutboxRelay]:
    """The outbox relay of the test's database and exchange, in a thread: it turns stored messages into pushes."""
    settings = hub_of(gateway)._settings
    worker = OutboxRelay(settings.postgres.url, settings.rabbitmq.url, settings.rabbitmq.exchange, poll_seconds=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run_forever, args=(stop,), name="test-relay", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        stop.set()
        thread.join(timeout=WAIT_SECONDS)


@pytest.fixture
def pair(gateway: TestClient) -> tuple[tuple[int, str], tuple[int, str], int]:
    """Users A and B with a private chat: ((a_id, a_token), (b_id, b_token), chat_id)."""
    a_id, a_token = sign_up(gateway, "alice")
    b_id, b_token = sign_up(gateway, "bob")
    return (a_id, a_token), (b_id, b_token), open_chat(gateway, a_token, b_id)


# 07.4 — parsing a frame ----------------------------------------------------------------------------------------


@pytest.mark.exercise("07.4")
def test_a_valid_frame_becomes_its_typed_command() -> None:
    text = f'{{"type":"send","ref":"s1","chat_id":7,"client_message_id":"{A_UUID}","body":"hi"}}'
    assert parse_frame(text) == Send(chat_id=7, client_message_id=uuid.UUID(A_UUID), body="hi", ref="s1"), (
        "a send frame must become Send with an int chat_id, a UUID client_message_id, the body and the ref"
    )
    assert parse_frame('{"type":"sync","chat_id":3,"after_seq":0}') == Sync(chat_id=3, after_seq=0), (
        "a sync frame without a ref must become Sync with ref None; after_seq 0 means from the start"
    )
    assert parse_frame('{"type":"ping"}') == Ping(), "a ping frame has no field but type"


@pytest.mark.exercise("07.4")
@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{not json", "text that is not JSON"),
        ("[1, 2]", "JSON that is not an object"),
        ('{"chat_id": 7}', "a frame without a type"),
        ('{"type": 7}', "a type that is not a string"),
        ('{"type":"typing","ref":"r","chat_id":"7"}', "a chat_id given as a string"),
        ('{"type":"typing","ref":"r","chat_id":true}', "a chat_id given as true (a bool is not an id)"),
        ('{"type":"typing","ref":"r","chat_id":7.5}', "a chat_id that is not a whole number"),
        ('{"type":"typing","ref":"r","chat_id":0}', "a chat_id of 0"),
        ('{"type":"typing","ref":"r"}', "a missing chat_id"),
        ('{"type":"typing","ref":"r","chat_id":7,"chatid":7}', "an unknown field"),
        ('{"type":"send","ref":"r","chat_id":7,"client_message_id":"nope","body":"x"}', "a bad UUID"),
        ('{"type":"sync","ref":"r","chat_id":7,"after_seq":-1}', "a negative after_seq"),
        ('{"type":"ping","ref":' + '"' + "r" * 65 + '"}', "a ref longer than 64 characters"),
        ('{"type":"sync","chat_id":' + "7" * 4301 + ',"after_seq":0}', "a number of 4301 digits (Python reads 4300)"),
        ('{"type":"typing","chat_id":' + "[" * 5000 + "]" * 5000 + "}", "arrays nested 5000 deep"),
        (f'{{"type":"send","chat_id":7,"client_message_id":"{A_UUID}","body":"a\\u0000b"}}', "a NUL in the body"),
        (f'{{"type":"send","chat_id":7,"client_message_id":"{A_UUID}","body":"a\\ud800b"}}', "a lone surrogate"),
    ],
)
def test_a_malformed_frame_is_a_bad_frame(text: str, why: str) -> None:
    with pytest.raises(FrameError) as raised:
        parse_frame(text)
    assert raised.value.code == BAD_FRAME, f"{why} must be refused with bad_frame; got {raised.value.code}"


@pytest.mark.exercise("07.4")
def test_an_unknown_type_is_unknown_type_and_keeps_the_ref() -> None:
    with pytest.raises(FrameError) as raised:
        parse_frame('{"type":"sned","ref":"x1","chat_id":7}')
    assert raised.value.code == UNKNOWN_TYPE, f"a type nobody knows must be unknown_type; got {raised.value.code}"
    assert raised.value.ref == "x1", "the error must carry the frame's ref, so the client knows what was refused"
    with pytest.raises(FrameError) as bad_field:
        parse_frame('{"type":"typing","ref":"x2","chat_id":"7"}')
    assert bad_field.value.ref == "x2", "an error about a field must carry the frame's ref too"
    assert "chat_id" in bad_field.value.message, "the message must name the field that is wrong"


@pytest.mark.exercise("07.4")
def test_an_absurdly_long_body_is_too_large() -> None:
    text = f'{{"type":"send","chat_id":7,"client_message_id":"{A_UUID}","body":"{"x" * 10_001}"}}'
    with pytest.raises(FrameError) as raised:
        parse_frame(text)
    assert raised.value.code == TOO_LARGE, f"a body over 10 000 characters must be too_large; got {raised.value.code}"


def test_a_refused_send_frame_still_names_its_valid_client_message_id() -> None:
    too_long = f'{{"type":"send","chat_id":7,"client_message_id":"{A_UUID}","body":"{"x" * 10_001}"}}'
    assert client_message_id_in(too_long) == uuid.UUID(A_UUID), (
        "a send refused for its body still has a good client_message_id: the error must be able to name it"
    )
    assert client_message_id_in('{"type":"send","client_message_id":"nope"}') is None, "a bad UUID names nothing"
    assert client_message_id_in(f'{{"type":"edit","client_message_id":"{A_UUID}"}}') is None, "only a send has one"
    assert client_message_id_in("{not json") is None, "text that is not JSON names nothing"
    assert client_message_id_in('{"type":"send","x":' + "1" * 4301 + "}") is None, "nor JSON Python cannot read"


def test_a_frame_can_carry_back_a_ref_that_utf8_cannot_hold() -> None:
    """A ref with a lone surrogate (the JSON escape \\ud800) is echoed as the client sent it, in a sendable frame."""
    text = encode({"type": "pong", "ref": "a\ud800b"})
    text.encode("utf-8")  # what the socket does with it: it must not raise
    assert json.loads(text) == {"type": "pong", "ref": "a\ud800b"}, f"the ref must come back unchanged: {text}"
    assert encode({"type": "pong", "ref": "é"}) == '{"type":"pong","ref":"é"}', "other text is kept as it is"


def test_uvicorns_error_about_a_clients_invalid_utf8_is_logged_as_a_warning() -> None:
    """uvicorn logs a client's text frame of invalid UTF-8 at ERROR with a traceback; the gateway makes it a WARNING."""
    import logging
    import sys

    from app.gateway.__main__ import ClientMistakesAreWarnings

    try:
        b"\xff".decode()
    except UnicodeDecodeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "uvicorn.error", logging.ERROR, __file__, 1, "Invalid UTF-8 sequence received from client.", None, exc_info
    )
    assert ClientMistakesAreWarnings().filter(record), "the line is kept"
    assert (record.levelno, record.levelname, record.exc_info) == (logging.WARNING, "WARNING", None), record
    ours = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application", None, None)
    assert ClientMistakesAreWarnings().filter(ours) and ours.levelno == logging.ERROR, "our own faults stay errors"


# 07.5 — the bounded outgoing queue -----------------------------------------------------------------------------


class FakeSocket:
    """Records what is sent; ``stalled`` makes send_text wait until released (a client that does not read)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed: tuple[int, str | None] | None = None
        self.stalled = asyncio.Event()

    async def send_text(self, data: str) -> None:
        if self.stalled.is_set():
            await asyncio.Event().wait()  # never returns: the client stopped reading
        self.sent.append(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = (code, reason)


@pytest.mark.exercise("07.5")
def test_a_reader_that_falls_behind_is_closed_with_1013_and_the_queue_never_grows() -> None:
    async def scenario() -> None:
        socket = FakeSocket()
        connection = Connection(socket, queue_frames=3, queue_bytes=1024, send_timeout_seconds=60)
        accepted = [connection.offer(f"frame {n}") for n in range(10)]  # no writer runs: nothing is taken out
        assert accepted == [True, True, True] + [False] * 7, (
            f"a queue of 3 takes 3 frames and refuses the rest without waiting; got {accepted}"
        )
        assert connection.close_code == CLOSE_TRY_LATER, (
            f"the offer that finds the queue full must close the connection with 1013; got {connection.close_code}"
        )
        assert connection.queued <= 3, f"the queue must never hold more than its 3 frames; it holds {connection.queued}"
        await asyncio.wait_for(connection.run_writer(), 5)
        assert socket.closed is not None and socket.closed[0] == CLOSE_TRY_LATER, (
            f"the writer must close the socket with 1013; it closed with {socket.closed}"
        )
        assert socket.sent == [], "the frames of a client that is being dropped are not sent any more"

    asyncio.run(scenario())


@pytest.mark.exercise("07.5")
def test_a_reader_that_keeps_up_gets_every_frame_in_order() -> None:
    async def scenario() -> None:
        socket = FakeSocket()
        connection = Connection(socket, queue_frames=2, queue_bytes=1024, send_timeout_seconds=60)
        writer = asyncio.create_task(connection.run_writer())
        for n in range(20):
            assert connection.offer(f"frame {n}"), f"frame {n} must be taken: the writer empties the queue"
            await asyncio.sleep(0)  # the writer runs
            await asyncio.sleep(0)
        connection.close(1000, "done")
        await asyncio.wait_for(writer, 5)
        assert socket.sent == [f"frame {n}" for n in range(20)], "every frame must be sent, once, in order"
        assert socket.closed == (1000, "done"), "closing sends what was queued, then closes with the given code"
        assert not connection.offer("late"), "a closed connection takes no more frames"

    asyncio.run(scenario())


@pytest.mark.exercise("07.5")
def test_a_client_stuck_on_one_frame_is_dropped_once_its_queue_fills() -> None:
    async def scenario() -> None:
        socket = FakeSocket()
        socket.stalled.set()
        connection = Connection(socket, queue_frames=4, queue_bytes=1024, send_timeout_seconds=60)
        writer = asyncio.create_task(connection.run_writer())
        offers = 0
        while connection.offer("x") and offers < 100:
            offers += 1
            await asyncio.sleep(0)
        assert offers <= 5, f"a stuck client may hold its queue (4) plus the frame being sent; it took {offers}"
        assert connection.close_code == CLOSE_TRY_LATER, "a stuck client must be closed with 1013"
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)

    asyncio.run(scenario())


@pytest.mark.exercise("07.5")
def test_a_reader_whose_queued_frames_pass_the_byte_budget_is_closed_with_1013() -> None:
    async def scenario() -> None:
        socket = FakeSocket()
        connection = Connection(socket, queue_frames=100, queue_bytes=10, send_timeout_seconds=60)
        assert connection.offer("abcdef"), "6 bytes fit in a budget of 10"
        assert not connection.offer("ghijkl"), "6 more bytes would make 12, over the budget of 10: refused"
        assert connection.close_code == CLOSE_TRY_LATER, (
            f"a queue over its byte budget must close the connection with 1013, like a full queue; "
            f"got {connection.close_code}"
        )
        assert connection.queued_bytes == 0, "the frames of a client that is being dropped are dropped at once"
        await asyncio.wait_for(connection.run_writer(), 5)
        assert socket.sent == [] and socket.closed is not None and socket.closed[0] == CLOSE_TRY_LATER, (
            f"nothing more is sent, and the socket is closed with 1013; sent {socket.sent}, closed {socket.closed}"
        )

    asyncio.run(scenario())


@pytest.mark.exercise("07.5")
def test_bytes_are_counted_in_utf8_and_freed_once_sent() -> None:
    async def scenario() -> None:
        socket = FakeSocket()
        connection = Connection(socket, queue_frames=100, queue_bytes=10, send_timeout_seconds=60)
        assert connection.offer("ééé"), "3 characters of 2 bytes each are 6 bytes: they fit in 10"
        assert connection.queued_bytes == 6, f"'ééé' is 6 bytes of UTF-8; counted {connection.queued_bytes}"
        writer = asyncio.create_task(connection.run_writer())
        for n in range(20):
            await asyncio.sleep(0)  # the writer sends what is queued
            assert connection.offer(f"frame {n:02d}"[:8]), f"frame {n}: sent frames must give their bytes back"
        connection.close(1000, "done")
        await asyncio.wait_for(writer, 5)
        assert len(socket.sent) == 21 and connection.queued_bytes == 0, (
            f"every frame is sent and no byte stays counted; sent {len(socket.sent)}, {connection.queued_bytes} left"
        )

    asyncio.run(scenario())


def test_the_frame_bucket_allows_a_burst_then_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2.0, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0], "a full bucket allows a burst of 3"
    assert bucket.take() == pytest.approx(0.5), "an empty bucket must say when the next token comes (1/rate s)"
    now[0] += 0.5
    assert bucket.take() == 0.0, "after 1/rate seconds one more frame is allowed"
    assert bucket.take() > 0, "and then none until the next token"


# 07.6 — routing an event to local connections ------------------------------------------------------------------


def message_event(members: Any, topic: str = "message.created") -> Event:
    payload = {"chat_id": 7, "seq": 1, "sender_id": 1, "body": "hi", "members": members}
    return new_event(topic, payload, occurred_at=datetime.now(UTC))


@pytest.mark.exercise("07.6")
def test_a_message_event_reaches_every_socket_of_both_members_and_no_one_else() -> None:
    sockets = {1: {"a-phone", "a-laptop"}, 2: {"b-phone"}, 3: {"c-phone"}}
    got = local_recipients(message_event([1, 2]), sockets)
    assert sorted(got) == ["a-laptop", "a-phone", "b-phone"], (
        f"both members get it on every device (the sender's other devices too), the stranger on none; got {got}"
    )
    assert local_recipients(message_event([1, 99]), sockets) != [], "a member connected elsewhere is simply skipped"
    assert local_recipients(message_event([4, 5]), sockets) == [], "no member connected here: nobody gets it"


@pytest.mark.exercise("07.6")
def test_a_signal_reaches_its_audience_once() -> None:
    sockets = {1: ["a"], 2: ["b"], 3: ["c"]}
    typing = new_event("signal.typing", {"audience": [2, 2], "frame": {"type": "typing"}})
    assert local_recipients(typing, sockets) == ["b"], "a signal goes to its audience only, each socket once"


@pytest.mark.exercise("07.6")
@pytest.mark.parametrize(
    ("event", "why"),
    [
        (message_event("1,2"), "members that are not a list"),
        (message_event([True, "2", 2.0]), "members that are not ints (True, a string, a float)"),
        (message_event(None), "no members at all"),
        (message_event([1, 2], topic="post.created"), "a topic that is neither message.* nor signal.*"),
        (new_event("signal.typing", {"frame": {"type": "typing"}}), "a signal without an audience"),
    ],
)
def test_a_malformed_event_reaches_nobody(event: Event, why: str) -> None:
    sockets = {1: ["a"], 2: ["b"]}
    assert local_recipients(event, sockets) == [], f"an event with {why} must reach nobody"


# Authentication ------------------------------------------------------------------------------------------------


def test_a_valid_auth_frame_gets_ready_with_the_user_and_limits(gateway: TestClient) -> None:
    user_id, token = sign_up(gateway, "alice")
    with gateway.websocket_connect("/ws") as ws:
        ws.send_json({"type": "auth", "ref": "a", "token": token})
        ready = until(ws, lambda _: True, "the ready frame")
    assert ready["type"] == "ready" and ready["user_id"] == user_id, f"ready must name the user; got {ready}"
    assert ready["limits"]["max_frame_bytes"] == 65536, "ready must tell the client the frame size limit"
    assert ready["limits"]["outgoing_queue_bytes"] == 4 * 1024 * 1024, "ready must tell the outgoing byte budget"
    assert ready["limits"]["sync_max_bytes"] == 1024 * 1024, "ready must tell how big a sync answer may get"


def test_a_token_in_the_url_is_refused(gateway: TestClient) -> None:
    _, token = sign_up(gateway, "alice")
    with gateway.websocket_connect(f"/ws?token={token}") as ws:
        code, reason = close_of(ws, "the close of a socket with a token in its URL")
    assert code == 4401, f"a token in the URL must be refused with 4401, whatever else is sent; got {code} {reason}"


def test_no_auth_frame_in_time_closes_with_4401(gateway: TestClient) -> None:
    set_limits(gateway, auth_timeout_seconds=0.3)
    with gateway.websocket_connect("/ws") as ws:
        code, _ = close_of(ws, "the close of a socket that never authenticates")
    assert code == 4401, f"a socket that sends no auth frame in time must be closed with 4401; got {code}"


@pytest.mark.parametrize(
    ("first", "why"),
    [
        ({"type": "auth", "token": "not-a-token"}, "a token that is not a token"),
        ({"type": "ping"}, "a first frame that is not auth"),
        ({"type": "auth"}, "an auth frame without a token"),
    ],
)
def test_a_bad_first_frame_closes_with_4401(gateway: TestClient, first: dict[str, Any], why: str) -> None:
    with gateway.websocket_connect("/ws") as ws:
        ws.send_json(first)
        code, _ = close_of(ws, f"the close after {why}")
    assert code == 4401, f"{why} must close the socket with 4401; got {code}"


# Commands ------------------------------------------------------------------------------------------------------


def test_send_is_acked_with_its_seq_and_a_retry_gets_the_same_seq(
    gateway: TestClient, pair: tuple[tuple[int, str], tuple[int, str], int]
) -> None:
    (_, a_token), _, chat_id = pair
    client_message_id = str(uuid.uuid4())
    send = {"type": "send", "ref": "s1", "chat_id": chat_id, "client_message_id": client_message_id, "body": "hi"}
    with signed_in(gateway, a_token) as ws:
        ws.send_json(send)
        ack = until(ws, of_type("ack", ref="s1"), "the ack of the send")
        ws.send_json(send | {"ref": "s2"})
        again = until(ws, of_type("ack", ref="s2"), "the ack of the retried send")
    assert ack["for"] == "send" and ack["chat_id"] == chat_id and ack["client_message_id"] == client_message_id, (
        f"the ack must say which send it answers (for, chat_id, client_message_id); got {ack}"
    )
    assert ack["seq"] == 1, f"the first message of a chat has seq 1; the ack says {ack['seq']}"
    assert again["seq"] == ack["seq"], "a retry with the same client_message_id must be acked with the same seq"


def test_a_message_is_pushed_to_the_other_member_and_the_senders_other_device(
    gateway: TestClient, relay: OutboxRelay, pair: tuple[tuple[int, str], tuple[int, str], int]
) -> None:
    (a_id, a_token), (_, b_token), chat_id = pair
    with (
        signed_in(gateway, a_token) as a_phone,
        signed_in(gateway, a_token) as a_laptop,
        signed_in(gateway, b_token) as b,
    ):
        a_phone.send_json(
            {"type": "send", "ref": "s", "chat_id": chat_id, "client_message_id": str(uuid.uuid4()), "body": "hi"}
        )
        seq = until(a_phone, of_type("ack", ref="s"), "the ack")["seq"]
        to_b = until(b, pushed("message.created", chat_id, seq), "the message pushed to B")
        until(a_laptop, pushed("message.created", chat_id, seq), "the message pushed to A's other device")
        rest_seq = rest_send(gateway, b_token, chat_id, "sent over REST")
        until(a_phone, pushed("message.created", chat_id, rest_seq), "a message sent over REST, pushed to A")
    assert to_b["message"]["sender_id"] == a_id and to_b["message"]["body"] == "hi", (
        f"the push must carry the message as stored; got {to_b}"
    )
    assert "members" not in to_b["message"], "the members list is for routing, not part of the pushed message"


def test_a_reply_is_pushed_with_its_quote_and_a_reply_to_nothing_is_refused(
    gateway: TestClient, relay: OutboxRelay, pair: tuple[tuple[int, str], tuple[int, str], int]
) -> None:
    """Replies (stage 11) over the socket: the `reply` command, its push with the quote, and its refusal."""
    (a_id, a_token), (_, b_token), chat_id = pair
    question = rest_send(gateway, a_token, chat_id, "lunch at 12?")
    with signed_in(gateway, a_token) as a, signed_in(gateway, b_token) as b:
        frame = {"type": "reply", "ref": "r", "chat_id": chat_id, "client_message_id": str(uuid.uuid4())}
        b.send_json({**frame, "body": "yes", "reply_to_seq": question})
        seq = until(b, of_type("ack", ref="r"), "the ack of the reply")["seq"]
        to_a = until(a, pushed("message.created", chat_id, seq), "the reply pushed to A")
        b.send_json({**frame, "ref": "r2", "client_message_id": str(uuid.uuid4()), "body": "?", "reply_to_seq": 99})
        refused = until(b, of_type("error", ref="r2"), "the refusal of a reply to a message the chat does not have")
        # The push's quote is built by PostgreSQL (the outbox payload), the history's by quote_of: the same rule.
        taken_back = rest_send(gateway, a_token, chat_id, "a secret")
        gateway.delete(f"/api/v1/chats/{chat_id}/messages/{taken_back}", headers=bearer(a_token))
        b.send_json(
            {**frame, "ref": "r3", "client_message_id": str(uuid.uuid4()), "body": "?", "reply_to_seq": taken_back}
        )
        late = until(b, of_type("ack", ref="r3"), "the ack of a reply to a deleted message")["seq"]
        to_deleted = until(a, pushed("message.created", chat_id, late), "the reply to a deleted message, pushed")
    assert to_a["message"]["reply_to_seq"] == question, f"the push names the answered message: {to_a}"
    assert to_a["message"]["reply_to"] == {"seq": question, "sender_id": a_id, "body": "lunch at 12?", "deleted": False}
    assert refused["code"] == "conflict" and "cannot be replied to" in refused["message"], refused
    history = gateway.get(f"/api/v1/chats/{chat_id}/messages", headers=bearer(a_token)).json()["messages"]
    assert history[1]["reply_to"] == to_a["message"]["reply_to"] and history[0]["reply_to"] is None, history
    deleted_quote = {"seq": taken_back, "sender_id": a_id, "body": "", "deleted": True}
    assert to_deleted["message"]["reply_to"] == deleted_quote == history[-1]["reply_to"], "a deleted message: no text"


def test_edits_and_deletes_are_pushed(
    gateway: TestClient, relay: OutboxRelay, pair: tuple[tuple[int, str], tuple[int, str], int]
) -> None:
    (_, a_token), (_, b_token), chat_id = pair
    seq = rest_send(gateway, a_token, chat_id, "typo")
    with signed_in(gateway, a_token) as a, signed_in(gateway, b_token) as b:
        a.send_json({"type": "edit", "ref": "e", "chat_id": chat_id, "seq": seq, "body": "fixed"})
        ack = until(a, of_type("ack", ref="e"), "the ack of the edit")
        edited = until(b, pushed("message.edited", chat_id, seq), "the edit pushed to B")
        a.send_json({"type": "delete", "ref": "d", "chat_id": chat_id, "seq": seq})
        until(a, of_type("ack", ref="d"), "the ack of the delete")
        deleted = until(b, pushed("message.deleted", chat_id, seq), "the delete pushed to B")
        b.send_json({"type": "edit", "ref": "b-edit", "chat_id": chat_id, "seq": seq, "body": "mine now"})
        refused = until(b, of_type("error", ref="b-edit"), "the refusal of B editing A's message")
    assert ack == {"type": "ack", "ref": "e", "for": "edit", "chat_id": chat_id, "seq": seq}, f"edit ack: {ack}"
    assert edited["message"]["body"] == "fixed" and edited["message"]["edited_at"], f"edited push: {edited}"
    assert deleted["message"]["body"] == "" and deleted["message"]["deleted_at"], f"deleted push: {deleted}"
    assert refused["code"] == "forbidden", f"B is a member but not the author: editing must be forbidden; got {refused}"


def test_read_receipts_and_typing_reach_the_other_member(
    gateway: TestClient, pair: tuple[tuple[int, str], tuple[int, str], int]
) -> None:
    (a_id, a_token), (b_id, b_token), chat_id = pair
    seq = rest_send(gateway, a_token, chat_id, "hello")
    with signed_in(gateway, a_token) as a, signed_in(gateway, b_token) as b:
        b.send_json({"type": "read", "ref": "r", "chat_id": chat_id, "seq": seq})
        ack = until(b, of_type("ack", ref="r"), "the ack of the read")
        receipt = until(a, of_type("read", chat_id=chat_id), "the read receipt pushed to A")
        b.send_json({"type": "typing", "ref": "t", "chat_id": chat_id})
        typing = until(a, of_type("typing", chat_id=chat_id), "the typing signal pushed to A")
        rest = gateway.post(f"{API}/chats/{chat_id}/read", json={"seq": seq}, headers=bearer(a_token))
        assert rest.status_code < 300, f"marking read over REST failed: {rest.status_code} {rest.text}"
        rest_receipt = until(b, of_type("read", chat_id=chat_id, user_id=a_id), "a REST read receipt pushed to B")
    assert ack["last_read_seq"] == seq, f"the read ack must give the read mark now; got {ack}"
    assert receipt == {"type": "read", "chat_id": chat_id, "user_id": b_id, "last_read_seq": seq}, (
        f"A must learn that B has read up to {seq}; got {receipt}"
    )
    assert typing == {"type": "typing", "chat_id": chat_id, "user_id": b_id}, f"A must see B typing; got {typing}"
    assert rest_receipt["last_read_seq"] == seq, "a chat marked read over REST gives the same receipt"


def test_presence_tells_a_contact_when_the_other_comes_and_goes(
    gateway: TestClient, pair: tuple[tuple[int, str], tuple[int, str], int]
) -> None:
    (a_id, a_token), (b_id, b_token), _ = pair
    with signed_in(gateway, a_token) as a:
        with signed_in(gateway, b_token) as b:
            came = until(a, of_type("presence", user_id=b_id), "B's presence pushed to A")
            snapshot = until(b, of_type("presence", user_id=a_id), "A's presence given to B on connecting")
        gone = until(a, of_type("presence", user_id=b_id, online=False), "B going offline, pushed to A")
    assert came["online"] is True, f"A must learn that B came online; got {came}"
    assert snapshot["online"] is True, f"B must learn on connecting that A is online; got {snapshot}"
    assert gone["last_seen"], f"an offline presence carries last_seen; got {gone}"


def test_sync_returns_exactly_the_messages_after_a_seq(
    gateway: TestClient, pair: tuple[tuple[int, str], tuple[int, str], int]
) -> None:
    (_, a_token), (_, b_token), chat_id = pair
    seqs = [rest_send(gateway, a_token, chat_id, f"message {n}") for n in range(1, 8)]
    set_limits(gateway, sync_max_messages=3)
    with signed_in(gateway, b_token) as b:
        got: list[int] = []
        after, rounds = 2, 0
        while True:
            rounds += 1
            b.send_json({"type": "sync", "ref": f"y{rounds}", "chat_id": chat_id, "after_seq": after})
            answer = until(b, of_type("messages", ref=f"y{rounds}"), "the answer to sync")
            got += [message["seq"] for message in answer["messages"]]
            if not answer["has_more"] or rounds > 5:
                break
            after = answer["messages"][-1]["seq"]
        b.send_json({"type": "sync", "ref": "end", "chat_id": chat_id, "after_seq": seqs[-1]})
        empty = until(b, of_type("messages", ref="end"), "the answer to a sync with nothing missing")
    assert got == seqs[2:], f"syncing after seq 2 must return exactly {seqs[2:]} in order; got {got}"
    assert rounds == 2, f"5 missing messages with at most 3 per answer take 2 answers; took {rounds}"
    assert empty["messages"] == [] and empty["has_more"] is False, f"nothing after the last seq; got {empty}"


# Errors and limits ---------------------------------------------------------------------------------------------


def test_a_malformed_frame_gets_an_error_and_the_connection_still_works(
    gateway: TestClient, pair: tuple[tuple[int, str], tuple[int, str], int]
) -> None:
    (_, a_token), _, chat_id = pair
    with signed_in(gateway, a_token) as ws:
        ws.send_text("{this is not json")
        not_json = until(ws, of_type("error"), "the error for text that is not JSON")
        ws.send_json({"type": "sned", "ref": "u"})
        unknown = until(ws, of_type("error", ref="u"), "the error for an unknown type")
        ws.send_json({"type": "typing", "ref": "w", "chat_id": "seven"})
        wrong = until(ws, of_type("error", ref="w"), "the error for a wrongly typed field")
        ws.send_bytes(b'{"type":"ping"}')
        binary = until(ws, of_type("error"), "the error for a binary frame")
        ws.send_json({"type": "ping", "ref": "still"})
        pong = until(ws, of_type("pong"), "the pong after the errors")
        ws.send_json({"type": "send", "ref": "s", "chat_id": chat_id, "client_message_id": str(uuid.uuid4()),
                      "body": "works"})  # fmt: skip
        ack = until(ws, of_type("ack", ref="s"), "an ack after the errors")
    assert not_json["code"] == "bad_frame" and not_json["ref"] is None, f"not JSON: bad_frame, no ref; got {not_json}"
    assert unknown["code"] == "unknown_type", f"an unknown type must be unknown_type; got {unknown}"
    assert wrong["code"] == "bad_frame" and "chat_id" in wrong["message"], f"a wrong field type: {wrong}"
    assert binary["code"] == "bad_frame", f"a binary frame must be bad_frame; got {binary}"
    assert pong == {"type": "pong", "ref": "still"} and ack["seq"] >= 1, "the connection must survive those errors"


def test_frames_python_cannot_read_or_services_cannot_store_get_an_error_not_a_1011(
    gateway: TestClient, pair: tuple[tuple[int, str], tuple[int, str], int]
) -> None:
    """Found by tests/attacks: each of these closed the socket with 1011 or was answered `internal`."""
    (_, a_token), _, chat_id = pair
    with signed_in(gateway, a_token) as ws:
        ws.send_text('{"type":"sync","ref":"n","chat_id":' + "7" * 5000 + ',"after_seq":0}')
        huge = until(ws, of_type("error"), "the error for a number of 5000 digits")
        ws.send_text('{"type":"typing","ref":"d","chat_id":' + "[" * 5000 + "]" * 5000 + "}")
        deep = until(ws, of_type("error"), "the error for nesting 5000 deep")
        ws.send_text('{"type":"ping","ref":"\\ud800"}')
        pong = until(ws, of_type("pong"), "the pong to a ping whose ref holds a lone surrogate")
        ws.send_text('{"type":"ping","ref":"f","\\ud800":1}')
        field = until(ws, of_type("error", ref="f"), "the error naming a field that holds a lone surrogate")
        ws.send_json({"type": "send", "ref": "z", "chat_id": chat_id, "client_message_id": A_UUID, "body": "a\x00b"})
        nul = until(ws, of_type("error", ref="z"), "the error for a NUL in a body")
        ws.send_json({"type": "ping", "ref": "still"})
        still = until(ws, of_type("pong"), "the pong after them all")
    assert (huge["code"], deep["code"], field["code"], nul["code"]) == ("bad_frame",) * 4, [huge, deep, field, nul]
    assert pong["ref"] == "\ud800", f"the ref comes back as it was sent: {pong}"
    assert "body" in nul["message"] and nul["client_message_id"] == A_UUID, nul
    assert still == {"type": "pong", "ref": "still"}, "the connection must survive every one of them"


def test_an_oversized_frame_closes_with_1009(gateway: TestClient) -> None:
    _, token = sign_up(gateway, "alice")
    with signed_in(gateway, token) as ws:
        ws.send_text('{"type":"ping","ref":"' + "x" * (65 * 1024) + '"}')
        code, _ = close_of(ws, "the close after a frame over 64 KiB")
    assert code == 1009, f"a frame over 64 KiB must close the socket with 1009 (message too big); got {code}"


def test_a_frame_flood_gets_rate_errors_then_is_closed_with_1008(gateway: TestClient) -> None:
    set_limits(gateway, frames_per_second=0.001, frame_burst=3, flood_close_after=4)
    _, token = sign_up(gateway, "alice")
    with signed_in(gateway, token) as ws:  # the auth frame is not counted
        for n in range(10):
            ws.send_json({"type": "ping", "ref": f"p{n}"})
        answers = [until(ws, lambda _: True, f"the answer to ping {n}") for n in range(6)]
        code, _ = close_of(ws, "the close of a flooding client")
    kinds = [(frame["type"], frame.get("code"), frame.get("ref")) for frame in answers]
    assert kinds[:3] == [("pong", None, "p0"), ("pong", None, "p1"), ("pong", None, "p2")], (
        f"a burst of 3 frames is allowed; got {kinds}"
    )
    assert kinds[3:6] == [("error", "rate_limited", f"p{n}") for n in (3, 4, 5)], (
        f"frames over the rate must each get a rate_limited error with their ref; got {kinds}"
    )
    assert all(frame.get("retry_after", 0) > 0 for frame in answers[3:]), "a rate_limited error says when to retry"
    assert code == 1008, f"the 4th refused frame in a row must close the socket with 1008; got {code}"


def test_the_per_user_send_limit_applies_to_websocket_sends(
    gateway: TestClient, pair: tuple[tuple[int, str], tuple[int, str], int]
) -> None:
    (_, a_token), _, chat_id = pair
    limit = hub_of(gateway)._settings.redis.send_rate_limit
    for n in range(limit):
        rest_send(gateway, a_token, chat_id, f"over REST {n}")
    client_message_id = str(uuid.uuid4())
    with signed_in(gateway, a_token) as ws:
        ws.send_json({"type": "send", "ref": "s", "chat_id": chat_id, "client_message_id": client_message_id,
                      "body": "one too many"})  # fmt: skip
        refused = until(ws, of_type("error", ref="s"), "the refusal of a send over the user's limit")
    assert refused["code"] == "rate_limited", f"REST and WebSocket sends share one limit; got {refused}"
    assert refused["retry_after"] >= 1 and refused["client_message_id"] == client_message_id, (
        f"the refusal must say when to retry, and which message it refuses; got {refused}"
    )


def test_a_stranger_gets_not_found_everywhere_and_none_of_the_pushes(
    gateway: TestClient, relay: OutboxRelay, pair: tuple[tuple[int, str], tuple[int, str], int]
) -> None:
    (_, a_token), (_, b_token), chat_id = pair
    _, c_token = sign_up(gateway, "carol")
    seq = rest_send(gateway, a_token, chat_id, "private")
    attempts: list[dict[str, Any]] = [
        {"type": "send", "chat_id": chat_id, "client_message_id": str(uuid.uuid4()), "body": "let me in"},
        {"type": "edit", "chat_id": chat_id, "seq": seq, "body": "mine"},
        {"type": "delete", "chat_id": chat_id, "seq": seq},
        {"type": "read", "chat_id": chat_id, "seq": seq},
        {"type": "typing", "chat_id": chat_id},
        {"type": "sync", "chat_id": chat_id, "after_seq": 0},
    ]
    with signed_in(gateway, c_token) as c, signed_in(gateway, a_token) as a, signed_in(gateway, b_token) as b:
        for n, attempt in enumerate(attempts):
            ref = f"c{n}"
            c.send_json(attempt | {"ref": ref})
            answer = until(c, lambda frame, ref=ref: frame.get("ref") == ref, f"the answer to C's {attempt['type']}")
            assert answer["type"] == "error" and answer["code"] == "not_found", (
                f"C is not in the chat of A and B: {attempt['type']} must be an error not_found; got {answer}"
            )
        a.send_json({"type": "send", "ref": "s", "chat_id": chat_id, "client_message_id": str(uuid.uuid4()),
                     "body": "for B only"})  # fmt: skip
        new_seq = until(a, of_type("ack", ref="s"), "A's ack")["seq"]
        a.send_json({"type": "typing", "chat_id": chat_id})
        b.send_json({"type": "read", "ref": "r", "chat_id": chat_id, "seq": new_seq})
        all_of(
            b,
            {
                "A's message pushed to B": pushed("message.created", chat_id, new_seq),
                "A typing, pushed to B": of_type("typing", chat_id=chat_id),
            },
        )
        until(a, of_type("read", chat_id=chat_id), "B's read receipt pushed to A")
        leaked = frames_until_pong(c, "after")
    assert leaked == [], f"C must receive nothing of the chat of A and B; C received {leaked}"


def test_an_error_about_a_send_names_its_message_even_when_the_frame_was_refused(
    gateway: TestClient, pair: tuple[tuple[int, str], tuple[int, str], int]
) -> None:
    (_, a_token), _, chat_id = pair
    client_message_id = str(uuid.uuid4())
    with signed_in(gateway, a_token) as ws:
        ws.send_json({"type": "send", "ref": "big", "chat_id": chat_id, "client_message_id": client_message_id,
                      "body": "x" * 10_001})  # fmt: skip
        refused = until(ws, of_type("error", ref="big"), "the refusal of a body over 10 000 characters")
        ws.send_json({"type": "send", "ref": "bad", "chat_id": chat_id, "client_message_id": "nope", "body": "x"})
        bad_id = until(ws, of_type("error", ref="bad"), "the refusal of a send with a bad client_message_id")
    assert refused["code"] == "too_large" and refused.get("client_message_id") == client_message_id, (
        f"a send refused for its body must still name its (valid) client_message_id; got {refused}"
    )
    assert "client_message_id" not in bad_id, f"an invalid client_message_id is not echoed; got {bad_id}"


def test_sync_answers_stop_at_the_byte_limit_and_say_there_is_more(
    gateway: TestClient, pair: tuple[tuple[int, str], tuple[int, str], int]
) -> None:
    (_, a_token), (_, b_token), chat_id = pair
    seqs = [rest_send(gateway, a_token, chat_id, f"{n} " + "y" * 1000) for n in range(1, 7)]
    set_limits(gateway, sync_max_bytes=3000)  # room for 2 messages of about 1.2 KB, not 3
    with signed_in(gateway, b_token) as b:
        got: list[int] = []
        sizes: list[int] = []
        after, rounds = 0, 0
        while rounds < 10:
            rounds += 1
            b.send_json({"type": "sync", "ref": f"y{rounds}", "chat_id": chat_id, "after_seq": after})
            answer = until(b, of_type("messages", ref=f"y{rounds}"), "the answer to sync")
            got += [message["seq"] for message in answer["messages"]]
            sizes.append(len(answer["messages"]))
            if not answer["has_more"]:
                break
            after = answer["messages"][-1]["seq"]
    assert got == seqs, f"paging by has_more must return every message once, in order: {seqs}; got {got}"
    assert max(sizes) == 2, f"each answer holds as many messages as fit in 3000 bytes (2 here); got {sizes}"


def count_list_chats(gateway: TestClient, monkeypatch: pytest.MonkeyPatch, *, fail: bool = False) -> list[int]:
    """Count the gateway's ListChats calls from now on (the user id of each); ``fail`` makes each one fail."""
    chats = gateway.app.state.gateway.chats  # type: ignore[attr-defined]
    original = chats.list_chats
    calls: list[int] = []

    async def list_chats(user_id: int) -> Any:
        calls.append(user_id)
        if fail:
            metadata = grpc.aio.Metadata()
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, metadata, metadata, details="chat service down")
        return await original(user_id)

    monkeypatch.setattr(chats, "list_chats", list_chats)
    return calls


def test_typing_in_a_chat_that_is_not_yours_does_not_reload_your_chats_every_time(
    gateway: TestClient, pair: tuple[tuple[int, str], tuple[int, str], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, chat_id = pair
    _, c_token = sign_up(gateway, "carol")
    calls = count_list_chats(gateway, monkeypatch)
    with signed_in(gateway, c_token) as c:
        for n in range(10):
            c.send_json({"type": "typing", "ref": f"t{n}", "chat_id": chat_id})
            answer = until(c, of_type("error", ref=f"t{n}"), f"the refusal of typing {n}")
            assert answer["code"] == "not_found", f"C is not in the chat: not_found; got {answer}"
    assert 1 <= len(calls) <= 2, (
        f"10 typing frames for someone else's chat must not each ask the chat service for C's chats again "
        f"(one load on connecting, at most one reload); it was asked {len(calls)} times"
    )


def test_a_read_mark_over_rest_succeeds_even_if_the_read_receipt_cannot_be_sent(
    gateway: TestClient, pair: tuple[tuple[int, str], tuple[int, str], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    (_, a_token), _, chat_id = pair
    seq = rest_send(gateway, a_token, chat_id, "hello")
    calls = count_list_chats(gateway, monkeypatch, fail=True)
    response = gateway.post(f"{API}/chats/{chat_id}/read", json={"seq": seq}, headers=bearer(a_token))
    assert calls, "the receipt needs the other member: the gateway asks the chat service (which fails here)"
    assert response.status_code < 300, (
        f"the read mark was stored: a receipt that cannot be sent must not make it an error; "
        f"got {response.status_code} {response.text}"
    )


def test_no_ready_frame_when_the_chats_cannot_be_loaded(gateway: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    _, token = sign_up(gateway, "alice")
    count_list_chats(gateway, monkeypatch, fail=True)
    with gateway.websocket_connect("/ws") as ws:
        ws.send_json({"type": "auth", "ref": "hello", "token": token})
        first = next_message(ws, "the answer to the auth frame")
    assert first["type"] == "websocket.close", (
        f"a connection whose chats cannot be loaded is not ready: it must be closed, with no ready frame; got {first}"
    )
    assert first.get("code") == 1013, f"the chat service is down: close with 1013 (try again later); got {first}"


def test_a_socket_is_closed_with_4401_when_its_token_expires(gateway: TestClient) -> None:
    user_id, _ = sign_up(gateway, "alice")
    settings = hub_of(gateway)._settings
    short = settings.model_copy(update={"jwt": settings.jwt.model_copy(update={"access_ttl_seconds": 2})})
    token = TokenIssuer.from_settings(short).issue(user_id).token
    with signed_in(gateway, token) as ws:
        code, reason = close_of(ws, "the close at the token's expiry (2 s)")
    assert code == 4401 and "expired" in reason, (
        f"a socket must not outlive its token: at exp it is closed with 4401 'token expired'; got {code} {reason!r}"
    )


# The hub on its own (no services): presence writes and shutdown order ------------------------------------------


class FakeChats:
    """Every user has one chat, id 1, with user 99."""

    async def list_chats(self, user_id: int) -> list[Any]:
        return [type("Summary", (), {"chat_id": 1, "other_user_id": 99})()]


class FakePresence:
    """Who is online, as the writes left it; ``hold`` makes the next heartbeat of that user wait for ``release``."""

    def __init__(self) -> None:
        self.online: set[int] = set()
        self.offline_writes: list[int] = []
        self.hold: int | None = None
        self.slow_offline = False  # an offline write that takes a while, as over a network
        self.held = threading.Event()
        self.release = threading.Event()

    def heartbeat(self, user_id: int) -> None:
        if user_id == self.hold:
            self.held.set()
            self.release.wait(WAIT_SECONDS)
        self.online.add(user_id)

    def disconnect(self, user_id: int) -> None:
        if self.slow_offline:
            time.sleep(0.2)
        self.online.discard(user_id)
        self.offline_writes.append(user_id)

    def online_among(self, user_ids: Any) -> set[int]:
        return self.online & set(user_ids)

    # What the hub calls, as one node among several: here every write is this one node's.
    def node_heartbeat(self, user_id: int, node: str) -> bool:
        came_online = user_id not in self.online
        self.heartbeat(user_id)
        return came_online

    def node_left(self, user_id: int, node: str) -> bool:
        self.disconnect(user_id)
        return True


class FakePublisher:
    def __init__(self) -> None:
        self.topics: list[str] = []

    def publish(self, event: Event) -> None:
        self.topics.append(event.topic)


def offline_hub(presence: FakePresence) -> tuple[Hub, FakePublisher]:
    """A hub that is never started: no broker; its signals are recorded."""
    hub = Hub(load_settings(), chats=FakeChats(), presence=presence, limits=WsLimits())  # type: ignore[arg-type]
    publisher = FakePublisher()
    hub.signals = publisher  # type: ignore[assignment]
    return hub, publisher


def fake_connection() -> tuple[Connection, FakeSocket]:
    socket = FakeSocket()
    return Connection(socket, queue_frames=16, queue_bytes=4096, send_timeout_seconds=5), socket


def test_a_heartbeat_round_never_marks_online_a_user_who_left_during_it() -> None:
    async def scenario() -> None:
        presence = FakePresence()
        hub, _ = offline_hub(presence)
        first, _ = fake_connection()
        second, _ = fake_connection()
        await hub.connect(1, first, "ready")
        await hub.connect(2, second, "ready")
        presence.hold = 1  # the round's write for user 1 waits: user 2 leaves meanwhile
        heartbeats = asyncio.create_task(hub.heartbeat_connected())
        assert await asyncio.to_thread(presence.held.wait, WAIT_SECONDS), "the heartbeat round must write user 1"
        hub.disconnect(second)
        presence.release.set()
        await asyncio.wait_for(heartbeats, WAIT_SECONDS)
        hub.disconnect(first)
        await asyncio.wait_for(hub.stop(), WAIT_SECONDS)  # waits for the offline writes
        assert presence.offline_writes.count(2) == 1, f"user 2's offline write must be done; {presence.offline_writes}"
        assert 2 not in presence.online, (
            "user 2 disconnected during the heartbeat round: the round must not write them online again "
            "(they would look online for a whole presence TTL)"
        )

    asyncio.run(scenario())


def test_stop_closes_sockets_with_1001_and_waits_for_their_offline_writes() -> None:
    async def scenario() -> None:
        presence = FakePresence()
        presence.slow_offline = True
        hub, publisher = offline_hub(presence)
        connection, socket = fake_connection()
        await hub.connect(7, connection, "ready")

        async def endpoint() -> None:  # what /ws does: write until closed, then leave the hub
            await connection.run_writer()
            await asyncio.sleep(0.01)
            hub.disconnect(connection)

        task = asyncio.create_task(endpoint())
        await asyncio.wait_for(hub.stop(), WAIT_SECONDS)
        assert socket.closed is not None and socket.closed[0] == 1001, (
            f"stopping the gateway closes every socket with 1001 (going away); got {socket.closed}"
        )
        assert presence.offline_writes == [7], (
            f"stop must wait for the endpoints to leave and for their offline writes before it returns "
            f"(the Redis client is closed right after); offline writes done: {presence.offline_writes}"
        )
        assert publisher.topics.count("signal.presence") == 2, (
            f"the user's contacts must be told: online, then offline; signals: {publisher.topics}"
        )
        await task

    asyncio.run(scenario())


def test_the_signal_publisher_sends_what_is_pending_before_it_stops(stack_settings: Any) -> None:
    rabbitmq = stack_settings.rabbitmq
    publisher = SignalPublisher(rabbitmq.url, rabbitmq.exchange, name="test-signals-out")
    stop = threading.Event()
    thread = threading.Thread(target=publisher.run_forever, args=(stop,), name="test-signals-out", daemon=True)
    thread.start()
    try:
        publisher.publish(new_event("signal.typing", {"audience": [1], "frame": {"type": "typing"}}))
        deadline = time.monotonic() + WAIT_SECONDS
        while publisher.published < 1 and time.monotonic() < deadline:
            time.sleep(0.05)  # a bounded wait for the thread to connect
        assert publisher.published == 1, "the publisher must connect to RabbitMQ and publish a first signal"
        for n in range(300):
            publisher.publish(new_event("signal.presence", {"audience": [n], "frame": {"type": "presence"}}))
    finally:
        stop.set()
        thread.join(WAIT_SECONDS)
    assert publisher.published == 301, (
        f"signals published just before the stop (the last users' offline presence) must still be sent; "
        f"sent {publisher.published} of 301"
    )
