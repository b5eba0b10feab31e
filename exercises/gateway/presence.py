"""Who is online, and when each user was last seen.

A connected client sends a heartbeat every few seconds. Each heartbeat sets the user's presence key with a
TTL, so the key lives only while heartbeats keep coming: a client that crashes or loses its network sends no
"goodbye", and its key simply expires. Nothing has to clean up after it.

Each heartbeat also writes the time into one hash of last-seen times, which has no TTL: "last seen 5 minutes
ago" must still be known after the presence key is gone.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import redis

from ..config.settings import RedisSettings

DEFAULT_PREFIX = "messenger:"


def _timestamp(at: datetime | None) -> float:
    """Seconds since the epoch, for a moment given with its time zone (now when None)."""
    if at is None:
        return datetime.now(UTC).timestamp()
    if at.tzinfo is None:
        raise ValueError("a heartbeat time needs a time zone (e.g. datetime.now(UTC)); a naive time is ambiguous")
    return at.timestamp()


class Presence:
    """Online while heartbeats arrive; last seen kept after that."""

    def __init__(self, client: redis.Redis, *, ttl_seconds: int, prefix: str = DEFAULT_PREFIX) -> None:
        if ttl_seconds <= 0:
            raise ValueError(f"the presence TTL must be at least 1 second; got {ttl_seconds}")
        self._client = client
        self._ttl_seconds = ttl_seconds
        self._prefix = prefix

    @classmethod
    def from_settings(cls, client: redis.Redis, settings: RedisSettings, *, prefix: str = DEFAULT_PREFIX) -> Presence:
        return cls(client, ttl_seconds=settings.presence_ttl_seconds, prefix=prefix)

    def online_key(self, user_id: int) -> str:
        return f"{self._prefix}presence:{user_id}"

    @property
    def last_seen_key(self) -> str:
        """One hash for every user: field = user id, value = seconds since the epoch."""
        return f"{self._prefix}presence:last_seen"

    def heartbeat(self, user_id: int, *, at: datetime | None = None) -> None:
        """The user is online now (or at ``at``): refresh the presence TTL and the last-seen time."""
        seen = _timestamp(at)
        # exercise 06.3: a heartbeat: online for ttl seconds, last seen kept
        raise NotImplementedError("exercise 06.3 is yours to write: see notebooks/06_redis.ipynb, section 'Exercise 06.3'. Stuck? python -m workbook hint 06.3")
        # end exercise

    def disconnect(self, user_id: int, *, at: datetime | None = None) -> None:
        """The client said goodbye: offline at once, without waiting for the TTL."""
        seen = _timestamp(at)
        with self._client.pipeline(transaction=False) as pipe:
            pipe.delete(self.online_key(user_id))
            pipe.hset(self.last_seen_key, str(user_id), repr(seen))
            pipe.execute()

    def is_online(self, user_id: int) -> bool:
        return self._client.exists(self.online_key(user_id)) == 1

    def online_among(self, user_ids: Iterable[int]) -> set[int]:
        """Which of these users are online, asked in one round trip however many there are."""
        # exercise 06.4: who is online among many users, in one round trip
        raise NotImplementedError("exercise 06.4 is yours to write: see notebooks/06_redis.ipynb, section 'Exercise 06.4'. Stuck? python -m workbook hint 06.4")
        # end exercise

    def last_seen(self, user_id: int) -> datetime | None:
        """When the user's last heartbeat (or goodbye) arrived; None if never."""
        value = self._client.hget(self.last_seen_key, str(user_id))
        return None if value is None else datetime.fromtimestamp(float(value), UTC)
