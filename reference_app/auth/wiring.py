"""Build the auth use cases from the settings: the one place that knows which adapter fills which port.

The auth service's entry point calls ``build_auth_service``; every other service only checks tokens and calls
``build_token_verifier`` (the gateway) or ``forwarded_token_verifier`` (the services), which never load the private
key when ``APP_JWT__PUBLIC_KEY`` is set.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
import redis.asyncio

from ..config.settings import Settings
from ..db.pool import Pool
from .accounts import PostgresAccounts
from .passwords import PasswordHashing
from .service import AuthService
from .sessions import PostgresSessions
from .token_denylist import DEFAULT_PREFIX, AsyncTokenDenylist, TokenDenylist
from .tokens import ForwardedTokenVerifier, TokenIssuer, TokenVerifier


def build_token_verifier(settings: Settings, client: redis.Redis, *, prefix: str = DEFAULT_PREFIX) -> TokenVerifier:
    return TokenVerifier.from_settings(settings, TokenDenylist(client, prefix=prefix))


def redis_for_tokens(settings: Settings) -> redis.Redis:
    """The Redis client of the token deny-list, with a time limit on every call: a hung Redis must fail requests
    (closed), not hold them for ever."""
    return redis.Redis.from_url(settings.redis.url, socket_timeout=2, socket_connect_timeout=2)


@asynccontextmanager
async def forwarded_token_verifier(settings: Settings) -> AsyncIterator[ForwardedTokenVerifier]:
    """A verifier with an asyncio Redis client of its own, closed when the block ends: what every service needs to
    check the access tokens the gateway forwards (stage 12), on each call, without leaving the event loop."""
    # A BLOCKING pool: a burst of calls (every client reconnecting at once) waits its turn for a connection,
    # instead of being refused "too many connections" and answered UNAVAILABLE while Redis is fine.
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        settings.redis.url, max_connections=64, timeout=2, socket_timeout=2, socket_connect_timeout=2
    )
    client = redis.asyncio.Redis(connection_pool=pool)
    try:
        yield ForwardedTokenVerifier.from_settings(settings, AsyncTokenDenylist(client))
    finally:
        await client.aclose()
        await pool.aclose()


def build_auth_service(
    settings: Settings,
    pool: Pool,
    client: redis.Redis,
    *,
    prefix: str = DEFAULT_PREFIX,
    passwords: PasswordHashing | None = None,
) -> AuthService:
    denylist = TokenDenylist(client, prefix=prefix)
    return AuthService(
        PostgresAccounts(pool),
        PostgresSessions(pool, ttl_seconds=settings.jwt.refresh_ttl_seconds),
        passwords=passwords or PasswordHashing(),
        issuer=TokenIssuer.from_settings(settings),
        verifier=TokenVerifier.from_settings(settings, denylist),
        denylist=denylist,
    )
