"""Tokens refused before their time: a deny-list keyed by the token's id (the ``jti`` claim).

An access token is valid until its ``exp`` claim, and nobody can take a signed token back. To log a user out
at once, the gateway keeps the ids of revoked tokens and refuses those. An entry is needed exactly as long as
its token would otherwise be accepted: after ``exp`` the signature check refuses the token anyway. So each
entry expires at the token's own ``exp`` (SET ... EXAT), and the list never grows beyond the tokens that are
still alive.
"""

from __future__ import annotations

import redis
import redis.asyncio

DEFAULT_PREFIX = "messenger:"


def denied_token_key(prefix: str, jti: str) -> str:
    return f"{prefix}denied_token:{jti}"


class TokenDenylist:
    def __init__(self, client: redis.Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        self._client = client
        self._prefix = prefix

    def key(self, jti: str) -> str:
        return denied_token_key(self._prefix, jti)

    def deny(self, jti: str, expires_at: int) -> bool:
        """Refuse the token ``jti`` until ``expires_at`` (its ``exp`` claim, seconds since the epoch).

        Returns False, and stores nothing, when the token has already expired: it is refused anyway.
        """
        if not jti:
            raise ValueError("a token without an id (jti) cannot be put on the deny-list")
        # exercise 06.6: a deny-list entry that expires with its token
        raise NotImplementedError("exercise 06.6 is yours to write: see notebooks/06_redis.ipynb, section 'Exercise 06.6'. Stuck? python -m workbook hint 06.6")
        # end exercise

    def is_denied(self, jti: str) -> bool:
        return self._client.exists(self.key(jti)) == 1


class AsyncTokenDenylist:
    """The same deny-list, read with redis.asyncio: for a service that asks it on every call (stage 12)."""

    def __init__(self, client: redis.asyncio.Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        self._client = client
        self._prefix = prefix

    async def is_denied(self, jti: str) -> bool:
        return bool(await self._client.exists(denied_token_key(self._prefix, jti)) == 1)
