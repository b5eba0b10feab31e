"""Users of the messenger, and their repository in PostgreSQL (table ``auth.users`` of migration 0001).

A user is created with a password hash that is already computed: how to hash a password is stage 09's
subject, and this module never sees a password. Uniqueness is the database's job: two sign-ups with the same
name at the same moment can both pass any check made beforehand, but only one INSERT passes a unique index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from psycopg.errors import UniqueViolation
from psycopg.rows import class_row

from ..db.pool import Pool
from .domain import DISPLAY_NAME_MAX_CHARS

# The same rules as the checks of auth.users, so a bad value is refused before any I/O, in plain words.
USERNAME_FORMAT = re.compile(r"^[a-z0-9_]{3,32}$")
EMAIL_FORMAT = re.compile(r"^[^@\s]+@[^@\s]+$")
EMAIL_MAX_CHARS = 254

# Which field each unique index of auth.users protects (the index names are in 0001_auth.sql).
UNIQUE_FIELDS = {"users_username_key": "username", "users_email_key": "email"}

USER_COLUMNS = "id, username, email, display_name, password_hash, created_at"

# A search asks for the start of a username, so a query longer than the longest username cannot match.
SEARCH_QUERY_MAX_CHARS = 32
SEARCH_LIMIT_DEFAULT = 20
SEARCH_LIMIT_MAX = 50  # one search stays one cheap query, whatever a client asks for
# The characters LIKE reads as wildcards (% and _) and as its escape character (\), each to be taken literally.
LIKE_SPECIAL = str.maketrans({"\\": "\\\\", "%": "\\%", "_": "\\_"})


class UserError(Exception):
    """A user cannot be created or found as asked. The message says why, in one sentence."""


class InvalidUser(UserError):
    """A value breaks a rule of the users table, e.g. a username with capital letters."""


class UserNotFound(UserError):
    """No user has this id."""

    def __init__(self, user_id: int) -> None:
        super().__init__(f"there is no user {user_id}")
        self.user_id = user_id


class UserAlreadyExists(UserError):
    """Another user already has this username or e-mail address; ``field`` says which."""

    def __init__(self, field: str) -> None:
        super().__init__(f"this {field} is already taken")
        self.field = field


@dataclass(frozen=True)
class User:
    id: int
    username: str
    email: str
    display_name: str
    password_hash: str = field(repr=False)  # never printed: a hash in a log line helps an attacker
    created_at: datetime


def check_new_user(username: str, email: str, display_name: str, password_hash: str) -> None:
    """Raise InvalidUser naming the first value the users table would refuse."""
    if not USERNAME_FORMAT.match(username):
        raise InvalidUser("a username has 3 to 32 characters: lower-case letters, digits and _")
    if not EMAIL_FORMAT.match(email) or len(email) > EMAIL_MAX_CHARS:
        raise InvalidUser(f"an e-mail address looks like name@example.org and has at most {EMAIL_MAX_CHARS} characters")
    if len(display_name) > DISPLAY_NAME_MAX_CHARS:
        raise InvalidUser(f"a display name has at most {DISPLAY_NAME_MAX_CHARS} characters")
    if not password_hash:
        raise InvalidUser("a user needs a password hash")


def search_terms(query: str, limit: int | None) -> tuple[str, int]:
    """The prefix and the row limit of a user search, or InvalidUser naming what is wrong with the request.

    Usernames are lower case (a check of auth.users), so lower-casing the query is all it takes to ignore
    case: the SQL compares the column as it is, with no lower() to evaluate on every row.
    """
    prefix = query.strip().lower()
    if not prefix:
        raise InvalidUser("a search needs the start of a username, not an empty query")
    if len(prefix) > SEARCH_QUERY_MAX_CHARS:
        raise InvalidUser(f"a search query has at most {SEARCH_QUERY_MAX_CHARS} characters, like a username")
    if limit is not None and limit < 1:
        raise InvalidUser("a search returns at least one user: the limit must be positive")
    return prefix, SEARCH_LIMIT_DEFAULT if limit is None else min(limit, SEARCH_LIMIT_MAX)


def like_prefix(prefix: str) -> str:
    """A LIKE pattern that matches text starting with ``prefix``, every character of it taken literally.

    Without the escaping, a search for "a_b" would also find "axb", and "%" would find everyone.
    """
    return prefix.translate(LIKE_SPECIAL) + "%"


class PostgresUsers:
    """The users repository: create, get by id, find by username, search by the start of a username."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def create(self, username: str, email: str, password_hash: str, display_name: str = "") -> User:
        """Store a new user; raises InvalidUser, or UserAlreadyExists naming the field that is taken."""
        check_new_user(username, email, display_name, password_hash)
        async with self._pool.connection() as connection:
            # exercise 04.1: create a user, and say which field is taken
            raise NotImplementedError("exercise 04.1 is yours to write: see notebooks/04_postgres.ipynb, section 'Exercise 04.1'. Stuck? python -m workbook hint 04.1")
            # end exercise

    async def get(self, user_id: int) -> User | None:
        async with self._pool.connection() as connection:
            cursor = connection.cursor(row_factory=class_row(User))
            await cursor.execute(f"SELECT {USER_COLUMNS} FROM auth.users WHERE id = %s", (user_id,))
            return await cursor.fetchone()

    async def find_by_username(self, username: str) -> User | None:
        async with self._pool.connection() as connection:
            cursor = connection.cursor(row_factory=class_row(User))
            await cursor.execute(f"SELECT {USER_COLUMNS} FROM auth.users WHERE username = %s", (username,))
            return await cursor.fetchone()

    async def search(self, prefix: str, limit: int) -> list[User]:
        """At most ``limit`` users whose username starts with ``prefix`` (matched literally), by username."""
        async with self._pool.connection() as connection:
            cursor = connection.cursor(row_factory=class_row(User))
            await cursor.execute(
                f"SELECT {USER_COLUMNS} FROM auth.users WHERE username LIKE %s ESCAPE '\\' ORDER BY username LIMIT %s",
                (like_prefix(prefix), limit),
            )
            return await cursor.fetchall()
