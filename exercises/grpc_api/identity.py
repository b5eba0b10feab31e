"""Who makes a call: the user id in the ``x-user-id`` metadata entry, proven by that user's access token.

gRPC metadata is a list of key-value pairs sent with a call, like HTTP headers (on HTTP/2 they ARE headers).
The gateway authenticates every browser request (with a JWT from stage 09 on), and only then calls the chat
and content services, putting the user's id into ``x-user-id``.

Stage 08 trusts that entry because "only the gateway can reach these ports". That is a wish, not a check: any
process on the machine (or on the network, once a service listens on 0.0.0.0 in a container) can write
``x-user-id: 7`` and read user 7's chats. From stage 12 on, a service started by its entry point also requires
PROOF: the gateway forwards the user's own access token in ``authorization: Bearer <token>``, and the service
verifies it with the auth service's PUBLIC key (stage 09), exactly as the gateway did. A call that names a
user must carry a valid token for THAT user, or it is refused with UNAUTHENTICATED before any use case runs.
(Why a forwarded token rather than mutual TLS: lessons/12_measure_and_harden.md.)

So a call without a well-formed ``x-user-id`` did not come through the gateway, or the gateway has a bug:
either way it is refused with UNAUTHENTICATED, before any use case runs.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

import grpc
import redis

from ..auth.credentials import AccessClaims, InvalidToken
from .handlers import StreamedResponse, UnaryResponse, wrap_handler

USER_ID_KEY = "x-user-id"  # metadata keys are lower case: gRPC refuses upper-case ones
AUTHORIZATION_KEY = "authorization"  # the proof: "Bearer <the user's access token>", as in HTTP
BEARER_PREFIX = "Bearer "
USER_ID_MAX = 2**63 - 1  # an int64 in the .proto, a bigint in PostgreSQL
DECIMAL_ID = re.compile(r"[1-9][0-9]{0,18}")  # at most 19 digits: int() refuses strings over 4300 digits


class Unauthenticated(Exception):
    """The call does not say, in a form this service accepts, which user makes it (or cannot prove it)."""


class ProofUnavailable(Exception):
    """The proof cannot be checked right now (the token deny-list in Redis does not answer): refuse, and say so."""


def user_id_from_metadata(metadata: Iterable[tuple[str, str | bytes]]) -> int:
    """The caller's user id: the one ``x-user-id`` entry, a positive whole number in plain decimal digits."""
    # exercise 08.2: read the caller's user id from the call's metadata
    raise NotImplementedError("exercise 08.2 is yours to write: see notebooks/08_grpc.ipynb, section 'Exercise 08.2'. Stuck? python -m workbook hint 08.2")
    # end exercise


def caller_id(context: grpc.aio.ServicerContext[Any, Any]) -> int:
    """The id of the user a call acts for; raises Unauthenticated (→ UNAUTHENTICATED) when it is not given."""
    return user_id_from_metadata(context.invocation_metadata() or ())


# Proof (stage 12) ---------------------------------------------------------------------------------------------

Verify = Callable[[str], Awaitable[AccessClaims]]


async def proven_user_id(metadata: Sequence[tuple[str, str | bytes]], verify: Verify) -> int | None:
    """The user a call names in ``x-user-id``, proven by their access token; None when the call names nobody.

    ``verify`` checks a token and returns its claims, or raises InvalidToken (``ForwardedTokenVerifier.verify``).
    """
    # No x-user-id: the call acts for nobody (sign-up, sign-in, health). A method that needs a user refuses it
    # itself, through caller_id. Otherwise exactly one "Bearer <token>", valid, and of THAT user: a valid token
    # of user B with x-user-id of user A is the attack this stops.
    if not any(key == USER_ID_KEY for key, _ in metadata):
        return None
    user_id = user_id_from_metadata(metadata)
    proofs = [value for key, value in metadata if key == AUTHORIZATION_KEY]
    if len(proofs) != 1 or not isinstance(proofs[0], str) or not proofs[0].startswith(BEARER_PREFIX):
        raise Unauthenticated(
            f"a call for user {user_id} must carry exactly one {AUTHORIZATION_KEY}: {BEARER_PREFIX}<access token>"
        )
    try:
        claims = await verify(proofs[0].removeprefix(BEARER_PREFIX))
    except InvalidToken:
        raise Unauthenticated("the access token is not valid") from None
    if claims.user_id != user_id:
        raise Unauthenticated(f"the access token is not user {user_id}'s")
    return user_id


async def prove_caller(context: grpc.aio.ServicerContext[Any, Any], verify: Verify) -> None:
    """Refuse a call that names a user it cannot prove. A deny-list (Redis) that does not answer refuses the call
    (fail closed), with UNAVAILABLE."""
    try:
        await proven_user_id(tuple(context.invocation_metadata() or ()), verify)
    except redis.RedisError:
        raise ProofUnavailable("cannot check the access token right now; try again shortly") from None


def _prove_unary_response(behaviour: UnaryResponse, verify: Verify) -> UnaryResponse:
    async def proven(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await prove_caller(context, verify)
        return await behaviour(request, context)

    return proven


def _prove_streamed_response(behaviour: StreamedResponse, verify: Verify) -> StreamedResponse:
    async def proven(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        await prove_caller(context, verify)
        async for response in behaviour(request, context):
            yield response

    return proven


class ProvenCallers(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Every call of our services that names a user must prove it (``proven_user_id``) before the method runs.

    Put it AFTER ``StatusFromErrors`` in the server's interceptors, so that its Unauthenticated becomes the
    UNAUTHENTICATED status. Health and reflection name no user, so they pass untouched.
    """

    def __init__(self, verify: Verify) -> None:
        self._verify = verify

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        verify = self._verify
        return wrap_handler(
            handler,
            lambda unary: _prove_unary_response(unary, verify),
            lambda streamed: _prove_streamed_response(streamed, verify),
        )
