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
    raise NotImplementedError("exercise 08.2 is yours to write: see notebooks/08_grpc.ipynb, section 'Exercise 08.2'. Stuck? python -m workbook hint 08.2")
    # end exercise


def caller_id(context: grpc.aio.ServicerContext[Any, Any]) -> int:
    """The id of the user a call acts for; raises Unauthenticated (→ UNAUTHENTICATED) when it is not given."""
    return user_id_from_metadata(context.invocation_metadata() or ())
