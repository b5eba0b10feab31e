"""Refresh tokens in PostgreSQL (table ``auth.sessions`` of migration 0001): rotated on every use, reuse detected.

A refresh token is opaque: random bytes that mean nothing, so the only way to check one is to look it up. The
table keeps its SHA-256, never the token. One sign-in starts a **family**; every refresh marks the token it used
as rotated (``rotated_at``) and adds the next token of the same family. So at any moment a family has one live
token, and each token works exactly once.

Why once? A refresh token lives for weeks. If a thief copies it, both the thief and the real client will use
it sooner or later, and the second use of an already rotated token is the alarm: one of the two is not who
they claim to be, and the server cannot tell which. So it revokes the whole family (``revoked_at``), and both
must sign in again, which only the real user can.

Each method is one transaction on one pooled connection. ``rotate`` locks the token's row (``FOR UPDATE``), so
two refreshes with one token run one after the other: the second finds the token rotated, as it should.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection
from psycopg.rows import TupleRow, class_row

from ..db.pool import Pool
from .credentials import RefreshRefused, Rotation, new_refresh_token, refresh_token_digest

Connection = AsyncConnection[TupleRow]


@dataclass(frozen=True)
class SessionRow:
    """One refresh token as the table holds it (without its hash)."""

    id: uuid.UUID
    user_id: int
    family_id: uuid.UUID
    expired: bool  # computed by PostgreSQL with its own clock: expires_at <= now()
    rotated_at: datetime | None
    revoked_at: datetime | None


class PostgresSessions:
    """The SessionStore port of auth/service.py, on PostgreSQL."""

    def __init__(self, pool: Pool, *, ttl_seconds: int) -> None:
        if ttl_seconds <= 0:
            raise ValueError(f"a refresh token lives at least 1 second; got {ttl_seconds}")
        self._pool = pool
        self._ttl_seconds = ttl_seconds

    async def start(self, user_id: int) -> str:
        """The first refresh token of a new family (a new sign-in). The token itself is never stored."""
        token = new_refresh_token()
        async with self._pool.connection() as connection:
            await _insert_token(connection, user_id, uuid.uuid4(), token, self._ttl_seconds)
        return token

    async def rotate(self, token: str) -> Rotation:
        """Use ``token`` once: mark it rotated and return the next token of its family.

        Raises RefreshRefused with the reason "unknown", "revoked", "reused" or "expired". A reused token (one
        that was already rotated) also revokes its whole family, the token it was rotated into included.
        """
        async with self._pool.connection() as connection:
            # exercise 09.4: rotate a refresh token, and revoke its family when it is reused
            # hint: In ONE transaction (async with connection.transaction():) read the row by its hash with SELECT ... FOR UPDATE (see _lock_token): a second refresh of the same token then waits for the first to commit, and sees it rotated.
            # hint: In this order: no row → "unknown"; revoked_at set → "revoked"; rotated_at set → reuse: revoke the family (_revoke_family), "reused"; expired → "expired".
            # hint: Raising inside the transaction block rolls it back, and the family's revocation with it. Keep the error in `refused` and raise it after the block has committed.
            # hint: The good case: set rotated_at = now() on the row, and _insert_token(...) a new token in the SAME family_id; return Rotation(row.user_id, new_token).
            refused: RefreshRefused | None = None
            async with connection.transaction():
                row = await _lock_token(connection, token)
                if row is None:
                    refused = RefreshRefused("unknown")
                elif row.revoked_at is not None:
                    refused = RefreshRefused("revoked")
                elif row.rotated_at is not None:
                    await _revoke_family(connection, row.family_id)
                    refused = RefreshRefused("reused")
                elif row.expired:
                    refused = RefreshRefused("expired")
                else:
                    await connection.execute("UPDATE auth.sessions SET rotated_at = now() WHERE id = %s", (row.id,))
                    new_token = new_refresh_token()
                    await _insert_token(connection, row.user_id, row.family_id, new_token, self._ttl_seconds)
                    return Rotation(row.user_id, new_token)
            assert refused is not None, "every branch that does not return sets it"
            raise refused  # only now: the family's revocation above is committed
            # end exercise

    async def revoke_family(self, token: str, user_id: int) -> int:
        """Revoke every token of the family ``token`` belongs to, if it is ``user_id``'s; how many were live.

        An unknown token, or another user's, revokes nothing: logging out twice is not an error.
        """
        async with self._pool.connection() as connection:
            cursor = await connection.execute(
                """
                UPDATE auth.sessions SET revoked_at = now()
                WHERE revoked_at IS NULL AND family_id = (
                    SELECT family_id FROM auth.sessions WHERE token_hash = %s AND user_id = %s)
                """,
                (refresh_token_digest(token), user_id),
            )
            return cursor.rowcount


async def _insert_token(connection: Connection, user_id: int, family_id: uuid.UUID, token: str, ttl: int) -> None:
    await connection.execute(
        """
        INSERT INTO auth.sessions (id, user_id, family_id, token_hash, expires_at)
        VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s))
        """,
        (uuid.uuid4(), user_id, family_id, refresh_token_digest(token), ttl),
    )


async def _lock_token(connection: Connection, token: str) -> SessionRow | None:
    """The row of ``token``, locked until the end of the transaction; None when no row has its hash."""
    cursor = connection.cursor(row_factory=class_row(SessionRow))
    await cursor.execute(
        "SELECT id, user_id, family_id, expires_at <= now() AS expired, rotated_at, revoked_at"
        " FROM auth.sessions WHERE token_hash = %s FOR UPDATE",
        (refresh_token_digest(token),),
    )
    return await cursor.fetchone()


async def _revoke_family(connection: Connection, family_id: uuid.UUID) -> None:
    await connection.execute(
        "UPDATE auth.sessions SET revoked_at = now() WHERE family_id = %s AND revoked_at IS NULL", (family_id,)
    )
