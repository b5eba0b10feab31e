"""The auth service's model of a user's public profile, and the port through which it is loaded and changed.

No I/O here. Adapters (PostgreSQL, the Redis cache) store and load these values; this module says what a
valid profile is and names the errors a caller can expect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# The same limit as the users_display_name_length check in the database, so a bad name fails before any I/O.
DISPLAY_NAME_MAX_CHARS = 64


class ProfileError(Exception):
    """A profile cannot be read or changed as asked. The message says why, in one sentence."""


class InvalidProfile(ProfileError):
    """A value breaks a rule of the profile, e.g. a display name that is too long."""


class ProfileNotFound(ProfileError):
    """No user has this id."""


@dataclass(frozen=True)
class Profile:
    """What other users may see of a user: the part of the user that the gateway shows next to a message."""

    id: int
    username: str
    display_name: str

    def __post_init__(self) -> None:
        if len(self.display_name) > DISPLAY_NAME_MAX_CHARS:
            raise InvalidProfile(
                f"a display name has at most {DISPLAY_NAME_MAX_CHARS} characters; this one has {len(self.display_name)}"
            )


class ProfileSource(Protocol):
    """Where profiles really live (the users table). The cache sits in front of it and never replaces it."""

    def get(self, user_id: int) -> Profile | None:
        """The profile of ``user_id``, or None when there is no such user."""
        ...

    def update(self, user_id: int, *, display_name: str) -> Profile:
        """Change the display name and return the new profile; raise ProfileNotFound or InvalidProfile."""
        ...
