"""The services' token check (stage 12), made cheap: each token's signature is checked once, while its expiry and
the deny-list are still checked on every call.

A service sees the same access token with call after call (the gateway forwards it). Verifying the Ed25519
signature again each time, and asking Redis from a thread, was most of what proving a caller cost. What a cache
must not do: accept a token after its exp, after a logout, or a bad token because a good one came before.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import jwt
import pytest
import redis
import redis.asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from reference_app.auth.credentials import InvalidToken
from reference_app.auth.token_denylist import AsyncTokenDenylist, TokenDenylist
from reference_app.auth.tokens import LEEWAY_SECONDS, ForwardedTokenVerifier, TokenIssuer
from reference_app.config import Settings

KEY = Ed25519PrivateKey.generate()
ISSUER, AUDIENCE = "messenger-auth", "messenger"


class Clock:
    """Now, until a test moves it on. PyJWT reads the real clock: the first check of a token happens now."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class CountingDenylist:
    """Says "denied" for the ids in ``denied``, and counts how often it was asked."""

    def __init__(self) -> None:
        self.denied: set[str] = set()
        self.asked = 0

    async def is_denied(self, jti: str) -> bool:
        self.asked += 1
        return jti in self.denied


def issuer(clock: Clock, key: Ed25519PrivateKey = KEY) -> TokenIssuer:
    return TokenIssuer(key, issuer=ISSUER, audience=AUDIENCE, ttl_seconds=60, clock=clock)


def verifier(clock: Clock, denylist: CountingDenylist) -> ForwardedTokenVerifier:
    return ForwardedTokenVerifier(KEY.public_key(), issuer=ISSUER, audience=AUDIENCE, denylist=denylist, clock=clock)


def test_a_good_token_is_verified_once_and_the_deny_list_asked_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, denylist = Clock(), CountingDenylist()
    check = verifier(clock, denylist)
    token = issuer(clock).issue(7).token
    decoded: list[str] = []
    real_decode = jwt.decode

    def counting_decode(token: str, *args: Any, **kwargs: Any) -> Any:
        decoded.append(token)
        return real_decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting_decode)

    for _ in range(5):
        assert asyncio.run(check.verify(token)).user_id == 7
    assert len(decoded) == 1, "the signature of a token already checked is not checked again"
    assert denylist.asked == 5, "a logout must be seen at the very next call: the deny-list is asked every time"


def test_a_kept_token_is_refused_after_its_exp_and_after_a_logout() -> None:
    clock, denylist = Clock(), CountingDenylist()
    check = verifier(clock, denylist)
    access = issuer(clock).issue(7)
    assert asyncio.run(check.verify(access.token)).user_id == 7

    denylist.denied.add(access.jti)
    with pytest.raises(InvalidToken):
        asyncio.run(check.verify(access.token))
    denylist.denied.clear()

    clock.now = access.expires_at + LEEWAY_SECONDS - 1  # the last second it is accepted, as jwt.decode would
    assert asyncio.run(check.verify(access.token)).user_id == 7
    clock.now += 1
    with pytest.raises(InvalidToken):
        asyncio.run(check.verify(access.token))


def test_a_bad_token_is_never_kept() -> None:
    clock, denylist = Clock(), CountingDenylist()
    check = verifier(clock, denylist)
    good = issuer(clock).issue(7).token
    forged = issuer(clock, Ed25519PrivateKey.generate()).issue(7).token
    assert asyncio.run(check.verify(good)).user_id == 7
    for _ in range(2):
        with pytest.raises(InvalidToken):
            asyncio.run(check.verify(forged))
    header, payload, signature = good.split(".")
    with pytest.raises(InvalidToken):
        asyncio.run(check.verify(f"{header}.{payload}.{signature[:-4]}AAAA"))
    assert denylist.asked == 1, "a token refused for its signature costs no round trip to Redis"


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex[:8]}:"


def test_the_async_deny_list_reads_what_the_auth_service_writes(
    redis_client: redis.Redis, settings: Settings, prefix: str
) -> None:
    TokenDenylist(redis_client, prefix=prefix).deny("revoked-jti", int(redis_client.time()[0]) + 60)

    async def main() -> tuple[bool, bool]:
        client = redis.asyncio.Redis.from_url(settings.redis.url)
        try:
            denylist = AsyncTokenDenylist(client, prefix=prefix)
            return await denylist.is_denied("revoked-jti"), await denylist.is_denied("another-jti")
        finally:
            await client.aclose()

    assert asyncio.run(main()) == (True, False)
    redis_client.delete(f"{prefix}denied_token:revoked-jti")
