"""The auth service's model of signing in: password rules, tokens as values, and the errors a caller can expect.

No I/O here. Hashing (passwords.py), signing (tokens.py) and storage (sessions.py, accounts.py) are adapters
around these values; service.py puts them together into use cases.

Every error a client may see says as little as possible: "wrong username or password", never which of the two;
"the access token is not valid", never why. The why is kept in ``reason``, for the logs.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from dataclasses import dataclass, field

# The length rule of a new password, in characters (after normalisation, see normalize_password).
# Long passphrases are welcome; the upper bound only stops a request from making the server hash megabytes.
PASSWORD_MIN_CHARS = 8
PASSWORD_MAX_CHARS = 128

# 32 random bytes: a refresh token nobody can guess. token_urlsafe makes it about 43 characters of base64url.
REFRESH_TOKEN_BYTES = 32

# A user id as a token's "sub" claim: a positive number, written in ASCII digits (at most a bigint).
SUBJECT_FORMAT = re.compile(r"[1-9][0-9]{0,18}")


class AuthError(Exception):
    """A sign-up, sign-in or token cannot be accepted. The message is safe to show to the client."""


class InvalidPassword(AuthError):
    """A new password breaks a rule (its length)."""


class InvalidCredentials(AuthError):
    """Wrong username or password. One error, one message for both: the client must not learn which."""

    def __init__(self) -> None:
        super().__init__("wrong username or password")


class InvalidToken(AuthError):
    """An access token is refused, whatever the cause. ``reason`` is for the logs, never for the client."""

    def __init__(self, reason: str) -> None:
        super().__init__("the access token is not valid")
        self.reason = reason


class RefreshRefused(AuthError):
    """A refresh token is refused: unknown, expired, revoked, or reused. ``reason`` is one of those words."""

    def __init__(self, reason: str) -> None:
        super().__init__("the refresh token is not valid; sign in again")
        self.reason = reason


def normalize_password(password: str) -> str:
    """The same password typed on two keyboards may arrive as different code points ("é" as one or two).

    NFKC turns both into one form, so the hash of the one matches the other (NIST SP 800-63B advises it).
    """
    return unicodedata.normalize("NFKC", password)


def check_new_password(password: str) -> str:
    """The normalised password, if a new account may use it; raises InvalidPassword otherwise."""
    normalized = normalize_password(password)
    if not PASSWORD_MIN_CHARS <= len(normalized) <= PASSWORD_MAX_CHARS:
        raise InvalidPassword(
            f"a password has {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters; this one has {len(normalized)}"
        )
    return normalized


def user_id_from_subject(subject: str) -> int:
    """The user id in a token's "sub" claim; raises InvalidToken when it is not one."""
    if not SUBJECT_FORMAT.fullmatch(subject):
        raise InvalidToken("the subject is not a user id")
    return int(subject)


def new_refresh_token() -> str:
    """A new opaque refresh token: random, meaningless, and shown to the client only once."""
    return secrets.token_urlsafe(REFRESH_TOKEN_BYTES)


def refresh_token_digest(token: str) -> bytes:
    """What the database keeps of a refresh token: its SHA-256.

    A stolen copy of the table then holds no usable token. A fast hash is enough here (unlike for passwords):
    the token is 256 random bits, so there is nothing to guess from its hash.
    """
    return hashlib.sha256(token.encode("utf-8")).digest()


@dataclass(frozen=True)
class AccessToken:
    """A signed access token, and what its issuer knows about it."""

    token: str = field(repr=False)  # the compact JWT; a token in a log line is a password in a log line
    jti: str
    expires_at: int  # the "exp" claim, seconds since the epoch


@dataclass(frozen=True)
class AccessClaims:
    """What a verified access token says: who, which token, and until when."""

    user_id: int
    jti: str
    issued_at: int
    expires_at: int


@dataclass(frozen=True)
class Rotation:
    """The outcome of a refresh: whose session it is, and the refresh token that replaces the one used."""

    user_id: int
    refresh_token: str = field(repr=False)


@dataclass(frozen=True)
class TokenPair:
    """What sign-in and refresh give a client: a short-lived access token and a long-lived refresh token."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: int  # when the access token expires, seconds since the epoch
    token_type: str = "Bearer"
