"""Generated attacks on the WebSocket at /ws (docs/websocket_protocol.md): a hypothesis fuzzer of client frames.

Measured on the 2-core development machine: 1202 generated frames (1100 recoverable ones on one connection, each
followed by a ping; 40 first frames, 30 text frames of invalid UTF-8, 30 frames over 64 KiB, 2 at the limit) in
6 s of tests, 10 s wall for `.venv/bin/pytest tests/attacks/test_websocket_fuzz.py` (the stack's start included).
The whole folder, `.venv/bin/pytest tests/attacks`: 42 s wall.

The gateway runs under uvicorn (conftest.py), so the frames cross a real WebSocket server: a text frame of invalid
UTF-8 or a frame over the size limit is handled as in production. What the protocol says, and what is asserted:

- Every frame after `auth` that the protocol calls recoverable (not JSON, not an object, a wrong, missing or
  unknown field, a wrong type, an unknown type, a binary frame, an empty frame, a chat the user is not in, a
  field that is too long, numbers too long to read, nesting too deep) is answered by exactly one `error` frame
  with the documented code and the frame's ref, and the connection stays: the `ping` sent after it gets its
  `pong`. A frame that may be valid gets at most one answer, never an `internal` error.
- A frame over 64 KiB closes the connection with 1009; a text frame that is not UTF-8 closes it with 1007 (the
  code the client received, or the one the server sent when a reset beat the close frame: attack_harness.CloseCodes).
- A first frame that is not a valid `auth` frame closes the connection with 4401.
- Never: an `internal` error frame, a 1011 close, anything logged at ERROR.

Hypothesis is derandomized (the same frames every run) and has no deadline.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from attack_harness import ErrorLog, Served
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

API = "/api/v1"
PASSWORD = "correct horse battery"
WAIT_SECONDS = 10.0
MAX_ID = 2**63 - 1
MAX_FRAME_BYTES = 64 * 1024
# The protocol's commands and their fields (docs/websocket_protocol.md, "Client frames").
COMMANDS: dict[str, tuple[str, ...]] = {
    "auth": ("token",),
    "send": ("chat_id", "client_message_id", "body"),
    "reply": ("chat_id", "client_message_id", "body", "reply_to_seq"),
    "edit": ("chat_id", "seq", "body"),
    "delete": ("chat_id", "seq"),
    "read": ("chat_id", "seq"),
    "typing": ("chat_id",),
    "sync": ("chat_id", "after_seq"),
    "ping": (),
}
MAX_BODY_CHARS = 10_000
# Frames nobody asked for: skipped when looking for the answer to a command.
PUSHES = {"message.created", "message.edited", "message.deleted", "read", "typing", "presence"}
ANSWERS = {"ack", "messages", "pong", "error"}
RECOVERABLE_EXAMPLES = 1100
FIRST_FRAME_EXAMPLES = 40
INVALID_UTF8_EXAMPLES = 30
OVERSIZED_EXAMPLES = 30
FUZZ_SETTINGS = settings(
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
# Close codes of the protocol ("Close codes").
CLOSE_INVALID_DATA = 1007  # the WebSocket standard's code for a text frame that is not UTF-8
CLOSE_TOO_BIG = 1009
CLOSE_UNAUTHENTICATED = 4401


@dataclass(frozen=True)
class Frame:
    """One frame to send, and what must answer it.

    ``codes``: the error codes one of which must answer it (exactly one error frame); None when the frame may be
    valid (then at most one answer, never ``internal``). ``refs``: the refs that error may carry.
    """

    payload: str | bytes
    codes: frozenset[str] | None = None
    refs: tuple[str | None, ...] = (None,)
    as_text: bool = False  # bytes sent as a text frame (invalid UTF-8) instead of a binary one

    def __repr__(self) -> str:  # hypothesis prints the failing frame: keep it readable
        shown = self.payload if len(self.payload) <= 300 else self.payload[:300]
        return f"Frame({shown!r}{'…' if len(self.payload) > 300 else ''}, codes={self.codes}, refs={self.refs})"


def bad(codes: str, ref: str | None = None, *more_refs: str | None) -> dict[str, Any]:
    return {"codes": frozenset(codes.split()), "refs": (ref, *more_refs)}


# Values ----------------------------------------------------------------------------------------------------------

refs = st.one_of(st.none(), st.text(max_size=64))
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
# A value that is not an id (ids are JSON integers from 1, seqs from 0, up to 2**63 - 1).
not_an_id = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(),
    st.integers(max_value=0),
    st.integers(min_value=MAX_ID + 1, max_value=2**200),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
not_a_seq = st.one_of(not_an_id.filter(lambda value: value != 0 or type(value) is not int), st.integers(max_value=-1))
not_text = json_values.filter(lambda value: not isinstance(value, str))


def not_a_uuid_text(value: Any) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return True
    return False


not_a_uuid = st.one_of(not_text, st.text(max_size=40).filter(not_a_uuid_text))


def valid_value(field: str, chat_ids: list[int]) -> st.SearchStrategy[Any]:
    """A value of the right type for a field (not necessarily naming anything that exists)."""
    if field == "chat_id":
        return st.one_of(st.sampled_from(chat_ids), st.integers(min_value=1, max_value=MAX_ID))
    if field in ("seq", "reply_to_seq"):
        return st.integers(min_value=1, max_value=MAX_ID)
    if field == "after_seq":
        return st.integers(min_value=0, max_value=MAX_ID)
    if field == "client_message_id":
        return st.uuids().map(str)
    return st.text(min_size=1, max_size=40)  # body, token


def wrong_value(field: str) -> st.SearchStrategy[Any]:
    if field == "after_seq":
        return not_a_seq
    if field in ("chat_id", "seq", "reply_to_seq"):
        return not_an_id
    if field == "client_message_id":
        return not_a_uuid
    return not_text


def is_json(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


# Frames the protocol calls recoverable: each is answered by one error frame --------------------------------------


@st.composite
def not_json(draw: st.DrawFn) -> Frame:
    text = draw(
        st.one_of(
            st.sampled_from(["", " ", "{", '{"type":', "[1,", "{'type': 'ping'}", "undefined", "\ufeff{}", "nul\x00"]),
            st.text(max_size=200).filter(lambda text: not is_json(text)),
        )
    )
    return Frame(text, **bad("bad_frame"))


@st.composite
def not_an_object(draw: st.DrawFn) -> Frame:
    value = draw(json_values.filter(lambda value: not isinstance(value, dict)))
    return Frame(json.dumps(value), **bad("bad_frame"))


@st.composite
def a_bad_ref(draw: st.DrawFn) -> Frame:
    ref = draw(st.one_of(json_values.filter(lambda value: value is not None and not isinstance(value, str)),
                         st.text(min_size=65, max_size=300)))  # fmt: skip
    document = {"type": draw(st.sampled_from(sorted(COMMANDS))), "ref": ref}
    return Frame(json.dumps(document), **bad("bad_frame"))


@st.composite
def no_type(draw: st.DrawFn) -> Frame:
    ref = draw(refs)
    document: dict[str, Any] = draw(st.dictionaries(st.text(max_size=8).filter(lambda key: key not in ("type", "ref")),
                                                    json_values, max_size=4))  # fmt: skip
    if draw(st.booleans()):
        document["type"] = draw(json_values.filter(lambda value: not isinstance(value, str)))
    document["ref"] = ref
    return Frame(json.dumps(document), **bad("bad_frame", ref))


@st.composite
def unknown_type(draw: st.DrawFn) -> Frame:
    ref = draw(refs)
    kind = draw(st.one_of(st.text(max_size=60), st.sampled_from(["PING", "ping ", "sned", "message.created", "ack"])))
    if kind in COMMANDS:
        kind += "?"
    document = {"type": kind, "ref": ref} | draw(st.dictionaries(st.sampled_from(["chat_id", "seq", "body", "x"]),
                                                                 json_values, max_size=3))  # fmt: skip
    return Frame(json.dumps(document), **bad("unknown_type", ref))


@st.composite
def command_with(draw: st.DrawFn, kind: str, chat_ids: list[int]) -> dict[str, Any]:
    document: dict[str, Any] = {"type": kind, "ref": draw(refs)}
    for field in COMMANDS[kind]:
        document[field] = draw(valid_value(field, chat_ids))
    return document


@st.composite
def an_unknown_field(draw: st.DrawFn, chat_ids: list[int]) -> Frame:
    kind = draw(st.sampled_from(sorted(set(COMMANDS) - {"auth"})))
    document = draw(command_with(kind, chat_ids))
    name = draw(st.one_of(st.text(min_size=1, max_size=20), st.sampled_from(["chatid", "Chat_id", "seq ", "user_id"])))
    if name in (*COMMANDS[kind], "type", "ref"):
        name += "_"
    document[name] = draw(json_values)
    return Frame(json.dumps(document), **bad("bad_frame", document["ref"]))


@st.composite
def a_wrong_field(draw: st.DrawFn, chat_ids: list[int]) -> Frame:
    kind = draw(st.sampled_from(sorted(set(COMMANDS) - {"auth", "ping"})))
    document = draw(command_with(kind, chat_ids))
    field = draw(st.sampled_from(COMMANDS[kind]))
    if draw(st.integers(0, 4)) == 0:
        del document[field]
    else:
        document[field] = draw(wrong_value(field))
    return Frame(json.dumps(document), **bad("bad_frame", document["ref"]))


@st.composite
def text_too_long(draw: st.DrawFn, chat_ids: list[int]) -> Frame:
    kind = draw(st.sampled_from(["send", "reply", "edit"]))
    document = draw(command_with(kind, chat_ids))
    document["body"] = draw(st.sampled_from("xé中")) * draw(st.integers(MAX_BODY_CHARS + 1, 20_000))
    return Frame(json.dumps(document, ensure_ascii=False), **bad("too_large", document["ref"]))


@st.composite
def hostile_text(draw: st.DrawFn, chat_ids: list[int]) -> Frame:
    """A body with a NUL or a lone surrogate (the JSON escape \\ud800), or a field name holding one."""
    kind = draw(st.sampled_from(["send", "reply", "edit"]))
    document = draw(command_with(kind, chat_ids))
    bad_char = draw(st.sampled_from(["\x00", "\ud800", "\udfff", "\udbff"]))
    text = draw(st.text(max_size=20))
    cut = draw(st.integers(0, len(text)))
    if draw(st.booleans()):
        document["body"] = text[:cut] + bad_char + text[cut:]
    else:
        document[text[:cut] + bad_char] = 1
    return Frame(json.dumps(document), **bad("bad_frame", document["ref"]))


@st.composite
def huge_number(draw: st.DrawFn) -> Frame:
    """A number of more digits than Python reads (4300), where an id goes, in the ref or deep in a field."""
    digits = draw(st.sampled_from("123456789")) * draw(st.integers(4301, 20_000))
    sign = draw(st.sampled_from(["", "-"]))
    ref = draw(refs)
    where = draw(st.sampled_from(["chat_id", "ref", "extra"]))
    if where == "chat_id":
        text = f'{{"type":"sync","ref":{json.dumps(ref)},"chat_id":{sign}{digits},"after_seq":0}}'
    elif where == "ref":
        text = f'{{"type":"ping","ref":{sign}{digits}}}'
    else:
        text = f'{{"type":"ping","ref":{json.dumps(ref)},"x":[[{{"y":{sign}{digits}}}]]}}'
    return Frame(text, **bad("bad_frame"))


@st.composite
def deep_nesting(draw: st.DrawFn) -> Frame:
    """Arrays or objects nested from a hundred to thousands deep (as deep as a frame under 64 KiB allows), as a
    field's value or as the whole frame."""
    opening, closing = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    depth = draw(st.integers(100, 60_000 // len(opening + closing)))
    nested = opening * depth + "1" + closing * depth
    ref = draw(refs)
    if draw(st.booleans()):
        return Frame(f'{{"type":"typing","ref":{json.dumps(ref)},"chat_id":{nested}}}', **bad("bad_frame", ref, None))
    return Frame(nested, **bad("bad_frame"))


@st.composite
def binary(draw: st.DrawFn) -> Frame:
    data = draw(
        st.one_of(
            st.binary(max_size=2000),
            st.just(b""),
            st.sampled_from([b'{"type":"ping"}', b"\xff\xfe\x00", b"\xed\xa0\x80", "é".encode()]),
        )
    )
    return Frame(data, **bad("bad_frame"))


@st.composite
def second_auth(draw: st.DrawFn) -> Frame:
    ref = draw(refs)
    token = draw(st.one_of(st.text(max_size=100), st.just("eyJhbGciOiJFZERTQSJ9.e30.c2ln")))
    return Frame(json.dumps({"type": "auth", "ref": ref, "token": token}), **bad("bad_frame", ref))


@st.composite
def not_their_chat(draw: st.DrawFn, chat_ids: list[int]) -> Frame:
    """A well-formed command on a chat that does not exist or is someone else's: not_found, and nothing more."""
    kind = draw(st.sampled_from(["send", "reply", "edit", "delete", "read", "typing", "sync"]))
    document = draw(command_with(kind, chat_ids))
    document["chat_id"] = draw(st.integers(min_value=1, max_value=MAX_ID).filter(lambda chat: chat not in chat_ids))
    if "body" in document:  # a body the chat service takes (it judges the body before the membership)
        document["body"] = draw(
            st.text(alphabet=st.characters(categories=["L", "N", "P", "S"]), min_size=1, max_size=40)
        )
    return Frame(json.dumps(document), **bad("not_found", document["ref"]))


# Frames that may be valid: any answer but an internal error ----------------------------------------------------


@st.composite
def maybe_valid(draw: st.DrawFn, chat_ids: list[int]) -> Frame:
    kind = draw(st.sampled_from(sorted(set(COMMANDS) - {"auth"})))
    document = draw(command_with(kind, chat_ids))
    if "chat_id" in document and draw(st.booleans()):
        document["chat_id"] = draw(st.sampled_from(chat_ids))
    for field in COMMANDS[kind]:
        if draw(st.integers(0, 5)) == 0:
            document[field] = draw(json_values)
    if draw(st.integers(0, 3)) == 0:  # a ref JSON can carry but UTF-8 cannot: it must come back as it was sent
        document["ref"] = draw(st.sampled_from(["\ud800", "a\udfffb", "\udbff\udbff"]))
    return Frame(json.dumps(document))


def recoverable_frames(chat_ids: list[int]) -> st.SearchStrategy[Frame]:
    return st.one_of(
        not_json(),
        not_an_object(),
        a_bad_ref(),
        no_type(),
        unknown_type(),
        an_unknown_field(chat_ids),
        a_wrong_field(chat_ids),
        text_too_long(chat_ids),
        hostile_text(chat_ids),
        huge_number(),
        deep_nesting(),
        binary(),
        second_auth(),
        not_their_chat(chat_ids),
        maybe_valid(chat_ids),
    )


# The connection ----------------------------------------------------------------------------------------------------


class Socket:
    """One authenticated WebSocket of the fuzzing user, opened again after a frame that closed it."""

    def __init__(self, url: str, token: str, server_closes: list[int]) -> None:
        self.url = url
        self.token = token
        self.server_closes = server_closes
        self.probes = 0
        self.connections = ExitStack()
        self.ws = self.open()

    def open(self) -> ClientConnection:
        self.connections.close()  # the one before, if any
        ws = self.connections.enter_context(
            connect(self.url, max_size=None, open_timeout=WAIT_SECONDS, close_timeout=2)
        )
        ws.send(json.dumps({"type": "auth", "ref": "hello", "token": self.token}))
        ready = json.loads(ws.recv(timeout=WAIT_SECONDS))
        assert ready.get("type") == "ready", f"a valid auth frame must be answered with ready; got {ready}"
        return ws

    def close(self) -> None:
        self.connections.close()

    def send(self, frame: Frame) -> None:
        if isinstance(frame.payload, bytes):
            self.ws.send(frame.payload, text=frame.as_text)
        else:
            self.ws.send(frame.payload)

    def answers_before_pong(self, frame: Frame) -> list[dict[str, Any]]:
        """Send the frame, then a ping: every answer (pushes skipped) that came before the ping's pong."""
        self.probes += 1
        probe = f"probe-{self.probes}"
        try:
            self.send(frame)
            self.ws.send(json.dumps({"type": "ping", "ref": probe}))
            answers: list[dict[str, Any]] = []
            while True:
                answer = json.loads(self.ws.recv(timeout=WAIT_SECONDS))
                if answer == {"type": "pong", "ref": probe}:
                    return answers
                if answer.get("type") not in PUSHES:
                    answers.append(answer)
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
            self.ws = self.open()
            pytest.fail(f"{frame!r} is recoverable, but the gateway closed the connection ({code})")
        except TimeoutError:
            self.ws = self.open()
            pytest.fail(f"after {frame!r} the ping got no pong within {WAIT_SECONDS:g} s")

    def close_code_after(self, frame: Frame) -> int | None:
        """Send a frame that must close the connection: the code it was closed with (None: it stayed open).

        The code of the close frame the client received; when the connection was reset before that frame could be
        read (see attack_harness.CloseCodes), the code the server closed it with.
        """
        closes_before = len(self.server_closes)
        try:
            self.send(frame)
            while True:
                self.ws.recv(timeout=WAIT_SECONDS)
        except ConnectionClosed as closed:
            self.ws = self.open()
            if closed.rcvd is not None:
                return closed.rcvd.code
            deadline = time.monotonic() + WAIT_SECONDS
            while len(self.server_closes) == closes_before and time.monotonic() < deadline:
                time.sleep(0.01)
            return self.server_closes[closes_before] if len(self.server_closes) > closes_before else None
        except TimeoutError:
            return None


@dataclass(frozen=True)
class Fuzzing:
    url: str
    token: str
    chat_ids: list[int]
    server_closes: list[int]


def sign_up(http: httpx.Client, name: str) -> tuple[int, str]:
    username = f"{name}_{uuid.uuid4().hex[:8]}"
    registered = http.post(
        f"{API}/auth/register", json={"username": username, "email": f"{username}@example.com", "password": PASSWORD}
    )
    assert registered.status_code == 201, f"registering {username} failed: {registered.text}"
    tokens = http.post(f"{API}/auth/login", json={"username": username, "password": PASSWORD})
    assert tokens.status_code == 200, f"logging in as {username} failed: {tokens.text}"
    return registered.json()["id"], tokens.json()["access_token"]


@pytest.fixture(scope="module")
def fuzzing(attack_gateway: Served) -> Iterator[Fuzzing]:
    """A user with two chats (one with a message in it): frames that name them may be done, not only refused."""
    with httpx.Client(base_url=attack_gateway.base_url, timeout=30) as http:
        _, token = sign_up(http, "fuzzer")
        headers = {"Authorization": f"Bearer {token}"}
        chat_ids = []
        for name in ("ana", "ben"):
            other_id, _ = sign_up(http, name)
            chat = http.post(f"{API}/chats", json={"other_user_id": other_id}, headers=headers)
            assert chat.status_code == 200, chat.text
            chat_ids.append(chat.json()["id"])
        message = {"client_message_id": str(uuid.uuid4()), "body": "hello"}
        sent = http.post(f"{API}/chats/{chat_ids[0]}/messages", json=message, headers=headers)
        assert sent.status_code == 201, sent.text
    yield Fuzzing(attack_gateway.ws_url, token, chat_ids, attack_gateway.closes)


@pytest.fixture
def socket(fuzzing: Fuzzing) -> Iterator[Socket]:
    socket = Socket(fuzzing.url, fuzzing.token, fuzzing.server_closes)
    yield socket
    socket.close()


# The tests ---------------------------------------------------------------------------------------------------------


def test_recoverable_frames_get_one_answer_and_keep_the_connection(
    fuzzing: Fuzzing, socket: Socket, error_log: ErrorLog
) -> None:
    sent = 0

    @settings(FUZZ_SETTINGS, max_examples=RECOVERABLE_EXAMPLES)
    @given(frame=recoverable_frames(fuzzing.chat_ids))
    def attack(frame: Frame) -> None:
        nonlocal sent
        sent += 1
        error_log.clear()
        answers = socket.answers_before_pong(frame)
        internal = [answer for answer in answers if answer.get("code") == "internal"]
        assert not internal, f"{frame!r} was answered with an internal error: {internal}"
        assert not error_log.lines, f"{frame!r} logged at ERROR: {error_log.lines}"
        if frame.codes is None:
            assert len(answers) <= 1, f"{frame!r} got more than one answer: {answers}"
            assert all(answer.get("type") in ANSWERS for answer in answers), f"{frame!r} got {answers}"
            if answers:
                ref = json.loads(frame.payload).get("ref")
                expected = ref if ref is None or (isinstance(ref, str) and len(ref) <= 64) else None
                assert answers[0].get("ref") == expected, f"the answer to {frame!r} must carry its ref: {answers}"
            return
        assert len(answers) == 1, f"{frame!r} must get exactly one error frame; got {answers}"
        (error,) = answers
        assert error.get("type") == "error" and error.get("code") in frame.codes, (
            f"{frame!r} must be answered with an error {sorted(frame.codes)}; got {error}"
        )
        assert error.get("ref") in frame.refs, f"the error must carry the ref {frame.refs}; got {error}"
        assert isinstance(error.get("message"), str) and error["message"], f"an error says what is wrong: {error}"

    attack()
    assert sent >= 1000, f"only {sent} frames were sent; the fuzzer is meant to send at least 1000"
    print(f"\n{sent} frames sent, each followed by a ping")


def test_a_frame_of_exactly_the_limit_is_answered_and_one_byte_more_closes_1009(
    fuzzing: Fuzzing, socket: Socket
) -> None:
    def frame_of(size: int) -> Frame:
        head = json.dumps({"type": "edit", "ref": "big", "chat_id": fuzzing.chat_ids[0], "seq": 1, "body": ""})[:-2]
        return Frame(head + "x" * (size - len(head) - 2) + '"}', **bad("too_large", "big"))

    at_the_limit = frame_of(MAX_FRAME_BYTES)
    assert len(at_the_limit.payload) == MAX_FRAME_BYTES
    answers = socket.answers_before_pong(at_the_limit)
    assert [(answer["code"], answer["ref"]) for answer in answers] == [("too_large", "big")], answers
    assert socket.close_code_after(frame_of(MAX_FRAME_BYTES + 1)) == CLOSE_TOO_BIG


@pytest.mark.parametrize("kind", ["text", "binary", "multi-byte text"])
def test_a_frame_over_64_kib_closes_1009(fuzzing: Fuzzing, socket: Socket, error_log: ErrorLog, kind: str) -> None:
    @settings(FUZZ_SETTINGS, max_examples=OVERSIZED_EXAMPLES // 3)
    @given(size=st.integers(MAX_FRAME_BYTES + 1, 4 * MAX_FRAME_BYTES))
    def attack(size: int) -> None:
        payload: str | bytes
        if kind == "binary":
            payload = b"\x00" * size
        elif kind == "text":
            payload = '{"type":"ping","ref":"' + "x" * size + '"}'
        else:  # fewer characters than the limit, more bytes: the limit counts bytes of UTF-8
            payload = "é" * (size // 2 + 1)
            assert len(payload) < size <= len(payload.encode())
        error_log.clear()
        code = socket.close_code_after(Frame(payload))
        assert code == CLOSE_TOO_BIG, f"a {kind} frame of {size} bytes must close with 1009; got {code}"
        assert not error_log.lines, f"a frame too big logged at ERROR: {error_log.lines}"

    attack()


def test_a_text_frame_of_invalid_utf8_closes_1007(socket: Socket, error_log: ErrorLog) -> None:
    invalid = st.sampled_from(
        [b"\xff", b"\xfe\xff", b"\x80", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc3"]
    )

    @settings(FUZZ_SETTINGS, max_examples=INVALID_UTF8_EXAMPLES)
    @given(
        before=st.binary(max_size=40).filter(lambda data: data.isascii()), bad_bytes=invalid, after=st.text(max_size=20)
    )
    def attack(before: bytes, bad_bytes: bytes, after: str) -> None:
        error_log.clear()
        code = socket.close_code_after(Frame(before + bad_bytes + after.encode(), as_text=True))
        assert code == CLOSE_INVALID_DATA, f"a text frame that is not UTF-8 must close with 1007; got {code}"
        assert not error_log.lines, f"invalid UTF-8 logged at ERROR: {error_log.lines}"

    attack()


def test_a_first_frame_that_is_not_a_valid_auth_closes_4401(fuzzing: Fuzzing, error_log: ErrorLog) -> None:
    first_frames = st.one_of(
        not_json(),
        not_an_object(),
        huge_number(),
        deep_nesting(),
        binary(),
        an_unknown_field(fuzzing.chat_ids),
        st.builds(lambda token: Frame(json.dumps({"type": "auth", "token": token})), not_text),
        st.sampled_from(["\ud800", "tok\x00en", "x" * (8 * 1024 + 1)]).map(
            lambda token: Frame(json.dumps({"type": "auth", "token": token}))
        ),
    )

    @settings(FUZZ_SETTINGS, max_examples=FIRST_FRAME_EXAMPLES)
    @given(frame=first_frames)
    def attack(frame: Frame) -> None:
        error_log.clear()
        with connect(fuzzing.url, max_size=None, open_timeout=WAIT_SECONDS, close_timeout=2) as ws:
            if isinstance(frame.payload, bytes):
                ws.send(frame.payload, text=False)
            else:
                ws.send(frame.payload)
            try:
                extra = ws.recv(timeout=WAIT_SECONDS)
                pytest.fail(f"a first frame {frame!r} must close the connection; it was answered: {extra[:200]}")
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
        assert code == CLOSE_UNAUTHENTICATED, f"a first frame {frame!r} must close with 4401; got {code}"
        assert not error_log.lines, f"{frame!r} logged at ERROR: {error_log.lines}"

    attack()
