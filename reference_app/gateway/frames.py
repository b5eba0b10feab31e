"""The WebSocket frames: a client frame parsed into a typed command, and the frames the gateway sends.

A frame from the network is input like any other: it may be cut short, hand-written, or from a buggy client.
:func:`parse_frame` turns the text into exactly one command object, or raises :class:`FrameError` with the
machine code the client gets in its ``error`` frame. Nothing after parsing has to look at raw JSON again: a
``Send`` has an int ``chat_id`` and a UUID ``client_message_id``, or it does not exist.

The protocol is written down in docs/websocket_protocol.md; the names below are its words.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

# Error codes of the `error` frame (docs/websocket_protocol.md, "Errors").
BAD_FRAME = "bad_frame"
UNKNOWN_TYPE = "unknown_type"
NOT_FOUND = "not_found"
FORBIDDEN = "forbidden"
INVALID = "invalid"
CONFLICT = "conflict"
TOO_LARGE = "too_large"
RATE_LIMITED = "rate_limited"
UNAVAILABLE = "unavailable"
INTERNAL = "internal"

MAX_REF_CHARS = 64
MAX_TOKEN_CHARS = 8 * 1024
# The chat service allows 4000 characters and answers `invalid` above; this only stops absurd sizes early.
MAX_BODY_CHARS = 10_000
MAX_ID = 2**63 - 1  # ids and seqs are PostgreSQL bigints


class FrameError(Exception):
    """A frame that cannot be done: ``code`` for programs, the message for people, ``ref`` of the frame."""

    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


# The commands --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Auth:
    token: str
    ref: str | None = None


@dataclass(frozen=True)
class Send:
    chat_id: int
    client_message_id: UUID
    body: str
    ref: str | None = None


@dataclass(frozen=True)
class Reply:
    """A send that answers an earlier message of the same chat. A type of its own, so that every field of a frame
    stays required and a client that never replies never meets the field."""

    chat_id: int
    client_message_id: UUID
    body: str
    reply_to_seq: int
    ref: str | None = None


@dataclass(frozen=True)
class Edit:
    chat_id: int
    seq: int
    body: str
    ref: str | None = None


@dataclass(frozen=True)
class Delete:
    chat_id: int
    seq: int
    ref: str | None = None


@dataclass(frozen=True)
class Read:
    chat_id: int
    seq: int
    ref: str | None = None


@dataclass(frozen=True)
class Typing:
    chat_id: int
    ref: str | None = None


@dataclass(frozen=True)
class Sync:
    chat_id: int
    after_seq: int
    ref: str | None = None


@dataclass(frozen=True)
class Ping:
    ref: str | None = None


Command = Auth | Send | Reply | Edit | Delete | Read | Typing | Sync | Ping
# The commands that send a message: they carry a client_message_id, which every answer to them names.
SENDS = (Send, Reply)


# Field rules: each takes the raw JSON value and returns the typed one, or raises ValueError saying what is wrong.


def positive_id(value: Any) -> int:
    # bool is a subclass of int in Python: without the type() check, `true` would be chat 1.
    if type(value) is not int or not 1 <= value <= MAX_ID:
        raise ValueError(f"must be a whole number from 1 to {MAX_ID}")
    return value


def seq_or_zero(value: Any) -> int:
    if type(value) is not int or not 0 <= value <= MAX_ID:
        raise ValueError(f"must be a whole number from 0 to {MAX_ID}")
    return value


def uuid_text(value: Any) -> UUID:
    if not isinstance(value, str):
        raise ValueError("must be a UUID string")
    try:
        return UUID(value)
    except ValueError:
        raise ValueError("must be a UUID string such as 0b6f8a52-3c1e-4d07-9a51-2f1d6f0c9e11") from None


def text_up_to(limit: int) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError("must be a string")
        if len(value) > limit:
            raise OverflowError(f"is {len(value)} characters; the most accepted is {limit}")
        # A NUL cannot be stored (PostgreSQL) and a lone surrogate ("\\ud800" in the JSON) cannot be sent on as
        # UTF-8 (gRPC): either would fail a service call with an internal error. Neither is text a person wrote.
        if "\x00" in value:
            raise ValueError("must not contain the NUL character (U+0000)")
        if not is_unicode_text(value):
            raise ValueError("must be Unicode text; it holds a lone surrogate (such as \\ud800)")
        return value

    return check


def is_unicode_text(text: str) -> bool:
    """False for a string that holds a lone surrogate, which JSON can carry (``"\\ud800"``) but UTF-8 cannot."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


FieldRule = Callable[[Any], Any]

# Each command type: the class it becomes and the rule of each of its fields (all required; `ref` is optional).
COMMANDS: Mapping[str, tuple[type[Command], Mapping[str, FieldRule]]] = {
    "auth": (Auth, {"token": text_up_to(MAX_TOKEN_CHARS)}),
    "send": (Send, {"chat_id": positive_id, "client_message_id": uuid_text, "body": text_up_to(MAX_BODY_CHARS)}),
    "reply": (
        Reply,
        {
            "chat_id": positive_id,
            "client_message_id": uuid_text,
            "body": text_up_to(MAX_BODY_CHARS),
            "reply_to_seq": positive_id,
        },
    ),
    "edit": (Edit, {"chat_id": positive_id, "seq": positive_id, "body": text_up_to(MAX_BODY_CHARS)}),
    "delete": (Delete, {"chat_id": positive_id, "seq": positive_id}),
    "read": (Read, {"chat_id": positive_id, "seq": positive_id}),
    "typing": (Typing, {"chat_id": positive_id}),
    "sync": (Sync, {"chat_id": positive_id, "after_seq": seq_or_zero}),
    "ping": (Ping, {}),
}


def parse_frame(text: str) -> Command:
    """The command in one text frame; raises FrameError (never anything else) for a frame that is not one."""
    # exercise 07.4: turn a client's text frame into a typed command, or an error code
    # hint: In this order: json.loads (a json.JSONDecodeError is BAD_FRAME, and so are a ValueError, a number of over 4300 digits, and a RecursionError, arrays nested a thousand deep: valid JSON that Python will not hold), a dict (else BAD_FRAME), then `ref`: absent/None, or a str of at most MAX_REF_CHARS (else BAD_FRAME). From here on, pass the ref into every FrameError: the client matches the error to its frame by it.
    # hint: `type` must be a str (BAD_FRAME) and a key of COMMANDS (UNKNOWN_TYPE). COMMANDS[type] gives the command class and its field rules; a key that is neither a field, "type" nor "ref" is BAD_FRAME, and so is a missing field.
    # hint: Run each rule on its value: a ValueError is BAD_FRAME, an OverflowError is TOO_LARGE; name the field in the message (f"{name} {error}"). Then build the class with the checked values and ref=ref.
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise FrameError(BAD_FRAME, f"a frame must be JSON; this one is not ({error.msg} at {error.pos})") from None
    except (ValueError, RecursionError):
        raise FrameError(
            BAD_FRAME, "a frame must be JSON with no number over 4300 digits and no nesting this deep"
        ) from None
    if not isinstance(document, dict):
        raise FrameError(BAD_FRAME, f"a frame must be a JSON object; got {type(document).__name__}")
    ref = document.get("ref")
    if ref is not None and not (isinstance(ref, str) and len(ref) <= MAX_REF_CHARS):
        raise FrameError(BAD_FRAME, f"ref must be a string of at most {MAX_REF_CHARS} characters")
    kind = document.get("type")
    if not isinstance(kind, str):
        raise FrameError(BAD_FRAME, 'every frame needs "type", a string such as "send"', ref)
    if kind not in COMMANDS:
        raise FrameError(UNKNOWN_TYPE, f"unknown frame type {kind[:40]!r}; known: {', '.join(COMMANDS)}", ref)
    command_class, rules = COMMANDS[kind]
    unknown = sorted(set(document) - set(rules) - {"type", "ref"})
    if unknown:
        raise FrameError(BAD_FRAME, f"a {kind} frame has no field(s) {', '.join(unknown)[:200]}", ref)
    values: dict[str, Any] = {}
    for name, rule in rules.items():
        if name not in document:
            raise FrameError(BAD_FRAME, f"a {kind} frame needs {name}", ref)
        try:
            values[name] = rule(document[name])
        except OverflowError as error:
            raise FrameError(TOO_LARGE, f"{name} {error}", ref) from None
        except ValueError as error:
            raise FrameError(BAD_FRAME, f"{name} {error}", ref) from None
    return command_class(**values, ref=ref)
    # end exercise


def client_message_id_in(text: str) -> UUID | None:
    """The valid ``client_message_id`` of a ``send`` (or ``reply``) frame that parse_frame refused (for another field), if any.

    An error that answers a send names its message, so that a client without refs knows which one failed; a
    body that is too long, say, leaves the client_message_id perfectly good. Only called for a refused frame:
    the text is parsed a second time, which costs little next to the frame limit.
    """
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or JSON that Python will not hold (see parse_frame)
        return None
    if not isinstance(document, dict) or document.get("type") not in ("send", "reply"):
        return None
    try:
        return uuid_text(document.get("client_message_id"))
    except ValueError:
        return None


# The frames the gateway sends ----------------------------------------------------------------------------------


def encode(frame: Mapping[str, Any]) -> str:
    """A frame as the text sent on the socket (compact JSON, UTF-8 characters kept as they are).

    What a client sent may come back in a frame: its ``ref``, or a field name in an error's message. A lone
    surrogate there cannot be written as UTF-8, so such a frame is written with every non-ASCII character escaped
    (``\\ud800``, as the client itself sent it): still the same JSON, and a frame the socket can send.
    """
    text = json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
    if is_unicode_text(text):
        return text
    return json.dumps(frame, separators=(",", ":"))


def error_frame(
    code: str, message: str, ref: str | None, *, retry_after: float | None = None, client_message_id: UUID | None = None
) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "ref": ref, "code": code, "message": message}
    if retry_after is not None:
        frame["retry_after"] = retry_after
    if client_message_id is not None:
        frame["client_message_id"] = str(client_message_id)
    return frame


def ack_frame(command: Command, **fields: Any) -> dict[str, Any]:
    """The answer to a command that was done: which command (`for`) and what the client needs of the result."""
    kind = next(name for name, (command_class, _) in COMMANDS.items() if isinstance(command, command_class))
    return {"type": "ack", "ref": command.ref, "for": kind, **fields}
