"""The users repository as the sign-in needs it: stage 04's PostgresUsers, plus the one write it lacks.

Stage 04's repository never sees a password and never changes a hash. Signing in sometimes must: a hash
made with older Argon2 parameters is replaced, while the password is in hand, by one made with today's.
"""

from __future__ import annotations

from .users import PostgresUsers


class PostgresAccounts(PostgresUsers):
    """The UserStore port of auth/service.py, on PostgreSQL."""

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        if not password_hash:
            raise ValueError("a user needs a password hash")
        async with self._pool.connection() as connection:
            await connection.execute("UPDATE auth.users SET password_hash = %s WHERE id = %s", (password_hash, user_id))
