"""The auth service's use cases: register, log in, refresh, log out, and authenticate a request.

The use cases depend on ports (the protocols below), not on PostgreSQL or Redis: ``accounts.py``,
``sessions.py`` and ``token_denylist.py`` are one implementation of each, wired in ``wiring.py``, and a test
may hand in others. Hashing and signing are plain computations, so the service holds them directly.

Argon2 costs tens of milliseconds of CPU by design. It runs in a worker thread (``asyncio.to_thread``): on the
event loop it would stall every other request of this process for that long.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from loguru import logger

from .credentials import InvalidCredentials, InvalidToken, RefreshRefused, Rotation, TokenPair, check_new_password
from .passwords import PasswordHashing
from .tokens import LEEWAY_SECONDS, TokenIssuer, TokenVerifier
from .users import User, UserNotFound, search_terms

log = logger.bind(logger="auth.service")


class UserStore(Protocol):
    """Where users live. ``create`` raises users.InvalidUser or users.UserAlreadyExists."""

    async def create(self, username: str, email: str, password_hash: str, display_name: str = "") -> User: ...

    async def find_by_username(self, username: str) -> User | None: ...

    async def get(self, user_id: int) -> User | None: ...

    async def search(self, prefix: str, limit: int) -> list[User]:
        """At most ``limit`` users whose username starts with ``prefix`` (taken literally), by username."""
        ...

    async def set_password_hash(self, user_id: int, password_hash: str) -> None: ...


class SessionStore(Protocol):
    """Where refresh tokens live (only as hashes). Each method is one transaction."""

    async def start(self, user_id: int) -> str:
        """The first refresh token of a new family."""
        ...

    async def rotate(self, token: str) -> Rotation:
        """Use a token once, get the next one; raises RefreshRefused (a reuse revokes the family)."""
        ...

    async def revoke_family(self, token: str, user_id: int) -> int:
        """Revoke the family of the user's token; how many live tokens that ended (0 is no error)."""
        ...


class TokenDenier(Protocol):
    """The deny-list, as logout needs it (auth/token_denylist.py, stage 06)."""

    def deny(self, jti: str, expires_at: int) -> bool: ...


class AuthService:
    def __init__(
        self,
        users: UserStore,
        sessions: SessionStore,
        *,
        passwords: PasswordHashing,
        issuer: TokenIssuer,
        verifier: TokenVerifier,
        denylist: TokenDenier,
    ) -> None:
        self._users = users
        self._sessions = sessions
        self._passwords = passwords
        self._issuer = issuer
        self._verifier = verifier
        self._denylist = denylist

    async def register(self, username: str, email: str, password: str, display_name: str = "") -> User:
        """A new user. Raises InvalidPassword, users.InvalidUser, or users.UserAlreadyExists naming the field."""
        password = check_new_password(password)
        password_hash = await asyncio.to_thread(self._passwords.hash, password)
        return await self._users.create(username, email, password_hash, display_name)

    async def login(self, username: str, password: str) -> TokenPair:
        """A token pair for the right password; InvalidCredentials, the same for every wrong case, otherwise."""
        user = await self._users.find_by_username(username)
        # An unknown user is verified against a dummy hash: the same work, the same time, the same error.
        stored_hash = user.password_hash if user is not None else None
        matched = await asyncio.to_thread(self._passwords.verify, stored_hash, password)
        if user is None or not matched:
            raise InvalidCredentials()
        if self._passwords.needs_rehash(user.password_hash):
            new_hash = await asyncio.to_thread(self._passwords.hash, password)
            await self._users.set_password_hash(user.id, new_hash)
        return self._pair(user.id, await self._sessions.start(user.id))

    async def refresh(self, refresh_token: str) -> TokenPair:
        """A new token pair for a refresh token, which is spent. Raises RefreshRefused."""
        try:
            rotation = await self._sessions.rotate(refresh_token)
        except RefreshRefused as refused:
            if refused.reason == "reused":
                log.warning("a rotated refresh token was used again: its family is revoked")
            raise
        return self._pair(rotation.user_id, rotation.refresh_token)

    async def logout(self, access_token: str, refresh_token: str | None = None) -> None:
        """End a sign-in at once: its refresh family is revoked, and its access token refused until it expires.

        Logging out is a signed-in request: a refused access token raises InvalidToken and changes nothing.
        """
        # exercise 09.5: log out: revoke the refresh family and deny-list the access token
        # hint: Verify the access token first (self._verifier.verify, in asyncio.to_thread: it asks Redis, a blocking call): its claims give the user id, the jti and the exp.
        # hint: Revoke the refresh token's family for that user (self._sessions.revoke_family) BEFORE the deny-list: if Redis then fails, a retried logout still passes the verify.
        # hint: Deny the jti until the token would stop being accepted: exp + LEEWAY_SECONDS, since the verifier accepts a token that long. An entry that ends at exp leaves a gap.
        claims = await asyncio.to_thread(self._verifier.verify, access_token)
        if refresh_token is not None:
            await self._sessions.revoke_family(refresh_token, claims.user_id)
        await asyncio.to_thread(self._denylist.deny, claims.jti, claims.expires_at + LEEWAY_SECONDS)
        # end exercise

    async def authenticate(self, access_token: str) -> int:
        """The id of the user an access token belongs to; raises InvalidToken when it is not valid."""
        try:
            # The verifier asks Redis (the deny-list) with a blocking client: keep it off the event loop.
            return (await asyncio.to_thread(self._verifier.verify, access_token)).user_id
        except InvalidToken as refused:
            log.info("access token refused: {reason}", reason=refused.reason)
            raise

    async def get_user(self, user_id: int) -> User:
        """The user with this id; raises users.UserNotFound."""
        user = await self._users.get(user_id)
        if user is None:
            raise UserNotFound(user_id)
        return user

    async def search_users(self, query: str, limit: int | None = None) -> list[User]:
        """Users whose username starts with ``query``, ignoring case, by username; users.InvalidUser for a bad query."""
        prefix, rows = search_terms(query, limit)
        return await self._users.search(prefix, rows)

    def _pair(self, user_id: int, refresh_token: str) -> TokenPair:
        access = self._issuer.issue(user_id)
        return TokenPair(access_token=access.token, refresh_token=refresh_token, expires_at=access.expires_at)
