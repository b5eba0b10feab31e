"""Access tokens: JWTs signed with Ed25519 (EdDSA) by the auth service, verified by every service.

Signing needs the PRIVATE key, and only the auth service has it (``signing_key`` in the settings). Verifying
needs only the PUBLIC key (``public_key``), which is no secret: a gateway node that is broken into can read
it, and still cannot make a single token. With one shared HMAC secret instead, every service that can check
a token could also forge one.

A token says who it is for (``aud``), who made it (``iss``), whom it is about (``sub``, the user id as a
string), when it was made and until when it holds (``iat``, ``exp``), and its own id (``jti``, the key of the
deny-list). The verifier requires every one of them and trusts nothing in the token's header: the algorithm
list is pinned here, in code, so the token cannot choose how it is checked.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from loguru import logger

from ..config.settings import Environment, JwtSettings, Settings, env_var_name
from .credentials import AccessClaims, AccessToken, InvalidToken, user_id_from_subject

# The one algorithm this service signs with and accepts. Never read it from a token: see TokenVerifier.
ALGORITHM = "EdDSA"
ALLOWED_ALGORITHMS = [ALGORITHM]
REQUIRED_CLAIMS = ["sub", "exp", "iat", "iss", "aud", "jti"]

# How far the clocks of two servers may disagree. A token is accepted until exp + LEEWAY_SECONDS, so a
# deny-list entry must last that long too (see AuthService.logout).
LEEWAY_SECONDS = 5

log = logger.bind(logger="auth.tokens")


class SigningKeyError(Exception):
    """The key in the settings cannot be used. The message names the variable to fix, never the key."""


class DeniedTokens(Protocol):
    """The deny-list, as the verifier needs it (auth/token_denylist.py, stage 06, is one)."""

    def is_denied(self, jti: str) -> bool: ...


class DeniedTokensAsync(Protocol):
    """The deny-list asked without blocking the event loop (``AsyncTokenDenylist``)."""

    async def is_denied(self, jti: str) -> bool: ...


class NothingDenied:
    """A deny-list that refuses nothing: for a verifier whose caller asks the real deny-list itself."""

    def is_denied(self, jti: str) -> bool:
        return False


# Keys ---------------------------------------------------------------------------------------------------------


def load_signing_key(settings: JwtSettings, env: Environment) -> Ed25519PrivateKey:
    """The private key of the settings; in ``local`` and ``dev`` without one, this process's ephemeral key."""
    if settings.signing_key is None:
        if env is Environment.PROD:  # the settings refuse this already; a second lock costs nothing
            raise SigningKeyError(f"{env_var_name('jwt', 'signing_key')} is required when APP_ENV=prod")
        return ephemeral_signing_key()
    pem = settings.signing_key.get_secret_value().encode()
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise SigningKeyError(
            f"{env_var_name('jwt', 'signing_key')} is not a PEM private key without a password"
            " (make one with: openssl genpkey -algorithm ed25519)"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{env_var_name('jwt', 'signing_key')} must be an Ed25519 key, not {type(key).__name__}")
    if settings.public_key is not None and public_key_pem(key.public_key()) != public_key_pem(
        load_public_key_pem(settings.public_key)
    ):
        raise SigningKeyError(f"{env_var_name('jwt', 'public_key')} is not the public key of the signing key")
    return key


def load_public_key(settings: JwtSettings, env: Environment) -> Ed25519PublicKey:
    """The key a service verifies tokens with: ``public_key``, or else the public half of the signing key."""
    if settings.public_key is not None:
        return load_public_key_pem(settings.public_key)
    return load_signing_key(settings, env).public_key()


def load_public_key_pem(pem: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError):
        raise SigningKeyError(f"{env_var_name('jwt', 'public_key')} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{env_var_name('jwt', 'public_key')} must be an Ed25519 key, not {type(key).__name__}")
    return key


def public_key_pem(key: Ed25519PublicKey) -> str:
    """The public key as PEM text: what the auth service can hand to the other services."""
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def private_key_pem(key: Ed25519PrivateKey) -> str:
    """The private key as PEM text (PKCS #8, no password): the format ``signing_key`` expects."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@functools.cache
def ephemeral_signing_key() -> Ed25519PrivateKey:
    """A key pair made at start-up, for local and dev only; the same one for the whole process.

    Tokens signed with it die with the process, and no other process can verify them unless it is handed
    the public key. Fine on your machine; in prod the settings refuse to start without a real key.
    """
    log.warning(
        "no {} is set: signing tokens with an ephemeral key; every token becomes invalid when this process stops",
        env_var_name("jwt", "signing_key"),
    )
    return Ed25519PrivateKey.generate()


# Issuing (the auth service only) ------------------------------------------------------------------------------


class TokenIssuer:
    """Signs access tokens. Holds the private key: only the auth service builds one."""

    def __init__(
        self,
        private_key: Ed25519PrivateKey,
        *,
        issuer: str,
        audience: str,
        ttl_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError(f"an access token lives at least 1 second; got {ttl_seconds}")
        self._private_key = private_key
        self._issuer = issuer
        self._audience = audience
        self._ttl_seconds = ttl_seconds
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenIssuer:
        jwt_settings = settings.jwt
        return cls(
            load_signing_key(jwt_settings, settings.env),
            issuer=jwt_settings.issuer,
            audience=jwt_settings.audience,
            ttl_seconds=jwt_settings.access_ttl_seconds,
        )

    def issue(self, user_id: int) -> AccessToken:
        """A new access token for ``user_id``, valid for ``ttl_seconds`` from now, with an id of its own."""
        # exercise 09.2: sign an access token with every claim a verifier requires
        # hint: The claims: sub (the user id as a STRING: the JWT standard says so, and PyJWT refuses a number), iat (now), exp (now + ttl), iss, aud, jti.
        # hint: Whole seconds: now = int(self._clock()). A fresh jti each time: uuid.uuid4().hex. It is the key the deny-list refuses a token by.
        # hint: jwt.encode(claims, self._private_key, algorithm=ALGORITHM) signs; return AccessToken(token, jti, exp).
        now = int(self._clock())
        claims: dict[str, Any] = {
            "sub": str(user_id),
            "iat": now,
            "exp": now + self._ttl_seconds,
            "iss": self._issuer,
            "aud": self._audience,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(claims, self._private_key, algorithm=ALGORITHM)
        return AccessToken(token=token, jti=claims["jti"], expires_at=claims["exp"])
        # end exercise


# Verifying (every service) ------------------------------------------------------------------------------------


class TokenVerifier:
    """Checks access tokens. Holds only the public key, so a service that verifies can never sign."""

    def __init__(self, public_key: Ed25519PublicKey, *, issuer: str, audience: str, denylist: DeniedTokens) -> None:
        if not isinstance(public_key, Ed25519PublicKey):
            # A private key would work here too (it can verify), and would then sit in every service's memory.
            raise TypeError(f"a verifier holds an Ed25519 PUBLIC key, not a {type(public_key).__name__}")
        self._public_key = public_key
        self._issuer = issuer
        self._audience = audience
        self._denylist = denylist

    @classmethod
    def from_settings(cls, settings: Settings, denylist: DeniedTokens) -> TokenVerifier:
        return cls(
            load_public_key(settings.jwt, settings.env),
            issuer=settings.jwt.issuer,
            audience=settings.jwt.audience,
            denylist=denylist,
        )

    def verify(self, token: str) -> AccessClaims:
        """The claims of a valid access token; raises InvalidToken for anything else, and only InvalidToken.

        Valid means: signed with our key by EdDSA, every claim of REQUIRED_CLAIMS present, made by our issuer
        for our audience, not expired, and not on the deny-list. Redis errors are not caught: a deny-list that
        cannot be asked must refuse the request (fail closed), not wave the token through.
        """
        # exercise 09.3: verify an access token with a pinned algorithm and required claims
        # hint: jwt.decode(token, self._public_key, algorithms=ALLOWED_ALGORITHMS, ...) – the list comes from HERE, never from the token's header: that is what refuses "alg": "none" and an HS256 token made with the public key as its secret.
        # hint: Also pass issuer=..., audience=..., leeway=LEEWAY_SECONDS and options={"require": REQUIRED_CLAIMS, "strict_aud": True}: PyJWT only checks a claim that is there, unless it is required.
        # hint: Catch jwt.PyJWTError (the base of all of PyJWT's errors) and raise InvalidToken(str(error)) from None; callers must never see PyJWT's exceptions.
        # hint: Then user_id_from_subject(claims["sub"]), and refuse a jti on the deny-list (self._denylist.is_denied) with InvalidToken("the token was revoked").
        try:
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=ALLOWED_ALGORITHMS,
                issuer=self._issuer,
                audience=self._audience,
                leeway=LEEWAY_SECONDS,
                options={"require": REQUIRED_CLAIMS, "strict_aud": True},
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(f"{type(error).__name__}: {error}") from None
        user_id = user_id_from_subject(claims["sub"])
        # Asked only now: a forged or expired token costs no round trip to Redis.
        if self._denylist.is_denied(claims["jti"]):
            raise InvalidToken("the token was revoked")
        return AccessClaims(user_id=user_id, jti=claims["jti"], issued_at=claims["iat"], expires_at=claims["exp"])
        # end exercise


class ForwardedTokenVerifier:
    """Checks the access tokens the gateway forwards with every service call (stage 12), on the event loop.

    The same token comes with call after call, and what its signature proves never changes: so each token's
    signature and claims are checked once, and the result is kept for the last ``cache_size`` tokens. What
    does change is checked on every call: the clock (``exp``) and the deny-list (a logout), asked without
    blocking. Only tokens that passed are kept; a bad one is checked, and refused, every time it comes.
    """

    def __init__(
        self,
        public_key: Ed25519PublicKey,
        *,
        issuer: str,
        audience: str,
        denylist: DeniedTokensAsync,
        cache_size: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if cache_size < 1:
            raise ValueError(f"the cache keeps at least 1 token; got {cache_size}")
        signatures = TokenVerifier(public_key, issuer=issuer, audience=audience, denylist=NothingDenied())
        self._signed_claims = functools.lru_cache(maxsize=cache_size)(signatures.verify)
        self._denylist = denylist
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, denylist: DeniedTokensAsync) -> ForwardedTokenVerifier:
        return cls(
            load_public_key(settings.jwt, settings.env),
            issuer=settings.jwt.issuer,
            audience=settings.jwt.audience,
            denylist=denylist,
        )

    async def verify(self, token: str) -> AccessClaims:
        """The claims of a valid access token, as ``TokenVerifier.verify``; raises InvalidToken for anything else.

        Redis errors are not caught: a deny-list that cannot be asked refuses the call (fail closed).
        """
        claims = self._signed_claims(token)
        if self._clock() >= claims.expires_at + LEEWAY_SECONDS:  # what jwt.decode would say now
            raise InvalidToken("the token expired")
        if await self._denylist.is_denied(claims.jti):
            raise InvalidToken("the token was revoked")
        return claims
