"""Who makes a call: the user id in the ``x-user-id`` metadata entry.

gRPC metadata is a list of key-value pairs sent with a call, like HTTP headers (on HTTP/2 they ARE headers).
The gateway authenticates every browser request (with a JWT from stage 09 on), and only then calls the chat
and content services, putting the user's id into ``x-user-id``. These services trust that entry because only
the gateway can reach them: they listen on an internal network, never on the internet. (A production setup
also proves the caller is the gateway, e.g. with mutual TLS between the services.)

So a call without a well-formed ``x-user-id`` did not come through the gateway, or the gateway has a bug:
either way it is refused with UNAUTHENTICATED, before any use case runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import grpc

USER_ID_KEY = "x-user-id"  # metadata keys are lower case: gRPC refuses upper-case ones
USER_ID_MAX = 2**63 - 1  # an int64 in the .proto, a bigint in PostgreSQL
DECIMAL_ID = re.compile(r"[1-9][0-9]{0,18}")  # at most 19 digits: int() refuses strings over 4300 digits


class Unauthenticated(Exception):
    """The call does not say, in a form this service accepts, which user makes it."""


def user_id_from_metadata(metadata: Iterable[tuple[str, str | bytes]]) -> int:
    """The caller's user id: the one ``x-user-id`` entry, a positive whole number in plain decimal digits."""
    # exercise 08.2: read the caller's user id from the call's metadata
    # hint: Metadata is a sequence of (key, value) pairs, and a key may appear more than once. Collect the values whose key is USER_ID_KEY.
    # hint: Exactly one value, or raise Unauthenticated: none means the call did not come through the gateway, two means someone added one on the way.
    # hint: Accept only a str that DECIMAL_ID.fullmatch()es and is at most USER_ID_MAX. int() alone would let " 7", "+7", "0" and "7_000" through.
    values = [value for key, value in metadata if key == USER_ID_KEY]
    if not values:
        raise Unauthenticated(f"the call has no {USER_ID_KEY} metadata: calls reach this service through the gateway")
    if len(values) > 1:
        raise Unauthenticated(f"the call has {len(values)} {USER_ID_KEY} entries; it must have exactly one")
    value = values[0]
    if not isinstance(value, str) or not DECIMAL_ID.fullmatch(value) or int(value) > USER_ID_MAX:
        raise Unauthenticated(f"{USER_ID_KEY} must be a user id, a positive whole number; got {value[:40]!r}")
    return int(value)
    # end exercise


def caller_id(context: grpc.aio.ServicerContext[Any, Any]) -> int:
    """The id of the user a call acts for; raises Unauthenticated (→ UNAUTHENTICATED) when it is not given."""
    return user_id_from_metadata(context.invocation_metadata() or ())
