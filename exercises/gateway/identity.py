"""Who is calling: the one place the gateway turns an access token into a user id (REST and WebSocket alike).

The gateway verifies the token itself, with the auth service's PUBLIC key (stage 09): no call to the auth
service per request, and no private key here. The deny-list check asks Redis; if Redis cannot answer, the
request is refused with 503 (fail closed): a revoked token must never get through because a cache was down.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import redis
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from loguru import logger

from ..auth.credentials import AccessClaims, InvalidToken
from ..grpc_api.clients import acting_for
from .problems import UNAUTHENTICATED, UNAVAILABLE, Problem

if TYPE_CHECKING:
    from .app import Gateway

# auto_error=False: a missing header becomes OUR problem document below, not FastAPI's default 403.
bearer = HTTPBearer(auto_error=False, description="An access token from POST /api/v1/auth/login")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="messenger"'}


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def claims_for_token(gateway: Gateway, token: str) -> AccessClaims:
    """The claims (user, expiry) of a valid access token; a Problem (401, or 503) for anything else."""
    try:
        # The verifier asks Redis with a blocking client: off the event loop, so other requests keep moving.
        return await asyncio.to_thread(gateway.verifier.verify, token)
    except InvalidToken as error:
        # The reason (expired, bad signature, revoked …) goes to the log; the client learns only "not valid".
        logger.info("refused an access token: {}", error.reason)
        raise Problem(UNAUTHENTICATED, str(error), headers=CHALLENGE) from None
    except redis.RedisError:
        raise Problem(UNAVAILABLE, "cannot check the token right now; try again shortly") from None


async def bearer_token(credentials: Credentials) -> str:
    """A dependency: the raw access token from ``Authorization: Bearer <access token>``."""
    if credentials is None:
        raise Problem(UNAUTHENTICATED, "send an access token: Authorization: Bearer <token>", headers=CHALLENGE)
    return credentials.credentials


async def current_user(request: Request, token: Annotated[str, Depends(bearer_token)]) -> int:
    """A dependency: the caller's user id. The rest of the request forwards the token to the services (stage 12)."""
    user_id = (await claims_for_token(gateway_of(request), token)).user_id
    acting_for(token)
    return user_id
