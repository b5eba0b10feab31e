"""Who is online, and when each user was last seen.

A connected client sends a heartbeat every few seconds. Each heartbeat sets the user's presence key with a
TTL, so the key lives only while heartbeats keep coming: a client that crashes or loses its network sends no
"goodbye", and its key simply expires. Nothing has to clean up after it.

Each heartbeat also writes the time into one hash of last-seen times, which has no TTL: "last seen 5 minutes
ago" must still be known after the presence key is gone.

**Several gateway nodes.** A user may have a socket on node 1 and another on node 2. When the last socket on
node 1 closes, the user is still online through node 2. So each node that holds a socket of the user keeps an
entry in the user's sorted set of nodes (member: the node's id, score: when that entry expires), refreshed by
the node's heartbeats like the presence key. A node whose last socket of the user closes removes its entry, and
the user goes offline only when no live entry is left, checked and done in one Lua script (atomic: two nodes
letting go at the same moment cannot both see the other's entry). A node that is killed never removes its
entries; they expire with its heartbeats, like the presence key of a client that crashed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import redis

from ..config.settings import RedisSettings

DEFAULT_PREFIX = "messenger:"

# KEYS: the user's nodes (sorted set), the presence key, the last-seen hash.
# ARGV: this node, now (seconds since the epoch: the last-seen time too), the user's field in the last-seen hash.
# Returns 1 when the user went offline (no other node holds a live entry), else 0.
LEAVE_NODE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) > 0 then
    return 0
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[2])
return 1
"""


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
        self._leave_node = client.register_script(LEAVE_NODE)

    @classmethod
    def from_settings(cls, client: redis.Redis, settings: RedisSettings, *, prefix: str = DEFAULT_PREFIX) -> Presence:
        return cls(client, ttl_seconds=settings.presence_ttl_seconds, prefix=prefix)

    def online_key(self, user_id: int) -> str:
        return f"{self._prefix}presence:{user_id}"

    def nodes_key(self, user_id: int) -> str:
        """The user's gateway nodes: a sorted set, member = node id, score = when the entry expires (epoch s)."""
        return f"{self._prefix}presence:nodes:{user_id}"

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
        """The client said goodbye: offline at once, without waiting for the TTL.

        On one node only: this ignores the user's other nodes. The hub, which may be one of several, uses
        ``node_left`` instead.
        """
        seen = _timestamp(at)
        with self._client.pipeline(transaction=False) as pipe:
            pipe.delete(self.online_key(user_id))
            pipe.hset(self.last_seen_key, str(user_id), repr(seen))
            pipe.execute()

    def node_heartbeat(self, user_id: int, node: str, *, at: datetime | None = None) -> bool:
        """Gateway node ``node`` holds a socket of the user: its entry lives ``ttl`` more seconds, and the user is
        online (a heartbeat). True when the user was offline just before (this is their first socket anywhere).

        The entry is written before the presence key: a node letting go at the same moment then finds this entry
        and leaves the user online.
        """
        seen = _timestamp(at)
        nodes = self.nodes_key(user_id)
        with self._client.pipeline(transaction=True) as pipe:
            pipe.exists(self.online_key(user_id))
            pipe.zadd(nodes, {node: seen + self._ttl_seconds})
            pipe.expire(nodes, self._ttl_seconds)
            was_online = pipe.execute()[0]
        self.heartbeat(user_id, at=at)
        return not was_online

    def node_left(self, user_id: int, node: str, *, at: datetime | None = None) -> bool:
        """The last socket of the user on gateway node ``node`` closed. True when that made the user offline: no
        other node holds a live entry (the presence key is then deleted and the last-seen time written)."""
        seen = _timestamp(at)
        keys = [self.nodes_key(user_id), self.online_key(user_id), self.last_seen_key]
        return bool(self._leave_node(keys=keys, args=[node, repr(seen), str(user_id)]))

    def nodes_of(self, user_id: int, *, at: datetime | None = None) -> set[str]:
        """The gateway nodes that hold a socket of the user now (their entries have not expired)."""
        members = self._client.zrangebyscore(self.nodes_key(user_id), f"({_timestamp(at)!r}", "+inf")
        return {member.decode() if isinstance(member, bytes) else str(member) for member in members}

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
