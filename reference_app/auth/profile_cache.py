"""Cache-aside for user profiles: Redis in front of the users table, with a TTL and race-free invalidation.

Read: look in Redis; on a miss, load the profile from the source and keep it for ``ttl_seconds``.
Write: change the source first, then invalidate the cached copy.

Deleting the cached copy is not enough on its own. This interleaving would put the old row back:

    reader                                  writer
    cache miss
    loads the OLD row from the source
                                            updates the row in the source
                                            deletes the cached copy, returns
    stores the OLD row in the cache         ← served to everyone until the TTL runs out

So every user has a version counter beside the cached copy. A reader notes the version *before* it loads
the row, and stores the row only if the version is still the same. One Lua script does that check and the
write, so nothing can happen between them. The writer bumps the version *after* the source has changed: a
row loaded before the change carries an old version, and the script refuses to store it.

The counter has no TTL on purpose: if it expired while a reader was in flight, later updates could count up
to the very number that reader saw, and its old row would pass the check.
"""

from __future__ import annotations

import json

import redis

from ..config.settings import RedisSettings
from .domain import Profile, ProfileSource

DEFAULT_PREFIX = "messenger:"

# KEYS[1]: the cached profile, KEYS[2]: the same user's version counter.
# ARGV[1]: the version the reader saw before it loaded the row, ARGV[2]: the profile as JSON, ARGV[3]: the TTL.
# Returns 1 when stored, 0 when the profile was invalidated in the meantime (a missing counter counts as 0).
STORE_IF_UNCHANGED = """
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current ~= tonumber(ARGV[1]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""


def encode_profile(profile: Profile) -> str:
    return json.dumps(
        {"id": profile.id, "username": profile.username, "display_name": profile.display_name}, ensure_ascii=False
    )


def decode_profile(data: bytes | str) -> Profile:
    fields = json.loads(data)
    return Profile(id=int(fields["id"]), username=fields["username"], display_name=fields["display_name"])


class ProfileCache:
    """Profiles by user id, from Redis when cached, else from the source (and then cached)."""

    def __init__(
        self, client: redis.Redis, source: ProfileSource, *, ttl_seconds: int, prefix: str = DEFAULT_PREFIX
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError(f"the cache TTL must be at least 1 second; got {ttl_seconds}")
        self._client = client
        self._source = source
        self._ttl_seconds = ttl_seconds
        self._prefix = prefix
        # Registered once: redis-py then sends only the script's SHA1 (EVALSHA) and loads the text when needed.
        self._store_if_unchanged = client.register_script(STORE_IF_UNCHANGED)

    @classmethod
    def from_settings(
        cls, client: redis.Redis, source: ProfileSource, settings: RedisSettings, *, prefix: str = DEFAULT_PREFIX
    ) -> ProfileCache:
        return cls(client, source, ttl_seconds=settings.profile_cache_ttl_seconds, prefix=prefix)

    def entry_key(self, user_id: int) -> str:
        return f"{self._prefix}profile:{user_id}"

    def version_key(self, user_id: int) -> str:
        return f"{self._prefix}profile:{user_id}:version"

    def get(self, user_id: int) -> Profile | None:
        """The profile of ``user_id``, or None when there is no such user (a missing user is not cached)."""
        # exercise 06.1: cache-aside read with a ttl
        # hint: One round trip reads the cached copy and the version together: self._client.mget([entry_key, version_key]). A hit is decode_profile(entry).
        # hint: On a miss, keep the version you just read (None counts as 0): it was read BEFORE you ask self._source.get, and that is the point.
        # hint: Store a found profile with self._store(user_id, profile, seen_version=...): it writes with the TTL, unless someone invalidated in between.
        entry, version = self._client.mget([self.entry_key(user_id), self.version_key(user_id)])
        if entry is not None:
            return decode_profile(entry)
        profile = self._source.get(user_id)
        if profile is not None:
            self._store(user_id, profile, seen_version=int(version or 0))
        return profile
        # end exercise

    def update(self, user_id: int, *, display_name: str) -> Profile:
        """Change the display name in the source. Once this returns, no reader gets the old profile."""
        # exercise 06.2: update, then invalidate without a race
        # hint: Order matters. Invalidate before self._source.update(...) and a reader can load the old row in between and cache it.
        # hint: Invalidating = bump the version (INCR) and delete the cached copy. A reader that loaded the row earlier saw the old version, so _store refuses it.
        # hint: Send both in one round trip with nothing in between: with self._client.pipeline(transaction=True) as pipe: ... pipe.execute()
        profile = self._source.update(user_id, display_name=display_name)
        with self._client.pipeline(transaction=True) as pipe:
            pipe.incr(self.version_key(user_id))
            pipe.delete(self.entry_key(user_id))
            pipe.execute()
        return profile
        # end exercise

    def _store(self, user_id: int, profile: Profile, *, seen_version: int) -> bool:
        """Cache ``profile`` for the TTL if its version is still ``seen_version``. True when stored."""
        stored = self._store_if_unchanged(
            keys=[self.entry_key(user_id), self.version_key(user_id)],
            args=[seen_version, encode_profile(profile), self._ttl_seconds],
        )
        return bool(stored)
