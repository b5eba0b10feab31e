"""Stage 06 — Redis. These tests grade the exercises of stage 06 in whichever app root is mounted as `app`.

Every test runs against the real Redis, under a key prefix of its own, and deletes its keys afterwards. Only
the profile source (the users table under the cache) is faked, in memory: it is the layer above Redis here.
"""

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from app.auth.domain import InvalidProfile, Profile, ProfileNotFound
from app.auth.profile_cache import ProfileCache
from app.auth.token_denylist import TokenDenylist
from app.config import load_settings
from app.config.settings import mask_url_password
from app.gateway.presence import Presence
from app.gateway.rate_limit import RateLimiter

exercise = pytest.mark.exercise
FIX = "Fix: python -m workbook services up"
WAIT_LIMIT_SECONDS = 6.0  # the longest a test waits for a key to expire; a bound, not a speed requirement

ADA = Profile(id=1, username="ada", display_name="Ada Lovelace")
GRACE = Profile(id=2, username="grace", display_name="Grace Hopper ⚓")


# Fixtures ----------------------------------------------------------------------------------------------------


def connect(client_class: type[redis.Redis] = redis.Redis) -> redis.Redis:
    url = load_settings().redis.url
    client = client_class.from_url(url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as error:
        pytest.fail(f"Redis does not answer at {mask_url_password(url)}: {error}. {FIX}")
    return client


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    client = connect()
    yield client
    client.close()


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    """A key prefix no other test uses; every key under it is deleted after the test."""
    prefix = f"stage06:{uuid.uuid4().hex[:12]}:"
    yield prefix
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)


class CountingRedis(redis.Redis):
    """A client that counts its round trips to Redis: one per command sent alone, one per pipeline sent."""

    round_trips = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.round_trips += 1
        return super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        send = pipe.execute

        def counted_execute(raise_on_error: bool = True) -> Any:
            self.round_trips += 1
            return send(raise_on_error)

        pipe.execute = counted_execute  # type: ignore[method-assign]
        return pipe


@pytest.fixture
def counting_client() -> Iterator[CountingRedis]:
    client = connect(CountingRedis)
    assert isinstance(client, CountingRedis)
    yield client
    client.close()


class Pause:
    """A point where a call stops until the test lets it go on: it forces one exact interleaving of two threads."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()

    def stop_here(self) -> None:
        self.reached.set()
        if not self.release.wait(timeout=10):
            raise TimeoutError("the test never let the paused call go on")


class InMemoryProfiles:
    """The profile source, faked: a dict, a count of reads, and optional pauses inside get() and update()."""

    def __init__(self, *profiles: Profile) -> None:
        self.rows = {profile.id: profile for profile in profiles}
        self.reads = 0
        self.pause_in_get: Pause | None = None  # after the row is read, before it is returned
        self.pause_in_update: Pause | None = None  # before the new row is written

    def get(self, user_id: int) -> Profile | None:
        self.reads += 1
        row = self.rows.get(user_id)
        if self.pause_in_get is not None:
            self.pause_in_get.stop_here()
        return row

    def update(self, user_id: int, *, display_name: str) -> Profile:
        if user_id not in self.rows:
            raise ProfileNotFound(f"there is no user {user_id}")
        new_row = dataclasses.replace(self.rows[user_id], display_name=display_name)
        if self.pause_in_update is not None:
            self.pause_in_update.stop_here()
        self.rows[user_id] = new_row
        return new_row


class RefusingSource:
    """A source that must not be asked: the answer has to come from Redis."""

    def get(self, user_id: int) -> Profile | None:
        raise AssertionError(f"profile {user_id} was read from the source, though another reader had cached it")

    def update(self, user_id: int, *, display_name: str) -> Profile:
        raise AssertionError("this test does not update")


class Background:
    """Run a call in a thread; join() gives its result or raises what it raised."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self.result = call()
        except BaseException as error:
            self.error = error

    def join(self) -> Any:
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "a call in the background never finished"
        if self.error is not None:
            raise self.error
        return self.result

    def wait_until(self, pause: Pause, what: str) -> None:
        deadline = time.monotonic() + 5
        while not pause.reached.wait(timeout=0.05):
            if not self.thread.is_alive():
                self.join()  # raises what the call raised
                pytest.fail(f"{what} finished without reaching the source")
            if time.monotonic() > deadline:
                pytest.fail(f"{what} never reached the source")


def eventually(condition: Callable[[], bool], seconds: float = WAIT_LIMIT_SECONDS) -> bool:
    """Poll until the condition holds or the time is up; True if it held."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def redis_now(client: redis.Redis) -> int:
    seconds, _ = client.time()
    return seconds


# 06.1 — cache-aside read with a TTL --------------------------------------------------------------------------


@exercise("06.1")
def test_a_miss_loads_from_the_source_and_the_next_read_comes_from_redis(client: redis.Redis, prefix: str) -> None:
    source = InMemoryProfiles(ADA)
    cache = ProfileCache(client, source, ttl_seconds=120, prefix=prefix)
    first, second = cache.get(ADA.id), cache.get(ADA.id)
    assert first == ADA, f"the first read must return the source's profile {ADA}; got {first}"
    assert second == ADA, f"the second read must return the cached profile {ADA}; got {second}"
    assert source.reads == 1, (
        f"two reads of one profile must ask the source once (then Redis); it was asked {source.reads} times"
    )


@exercise("06.1")
def test_the_cached_copy_lives_in_redis_for_every_reader(client: redis.Redis, prefix: str) -> None:
    ProfileCache(client, InMemoryProfiles(GRACE), ttl_seconds=120, prefix=prefix).get(GRACE.id)
    other_node = ProfileCache(client, RefusingSource(), ttl_seconds=120, prefix=prefix)
    got = other_node.get(GRACE.id)
    assert got == GRACE, (
        f"a second cache over the same Redis (another gateway node) must read {GRACE} from Redis; got {got}"
    )


@exercise("06.1")
def test_a_cached_profile_has_a_ttl(client: redis.Redis, prefix: str) -> None:
    cache = ProfileCache(client, InMemoryProfiles(ADA), ttl_seconds=120, prefix=prefix)
    cache.get(ADA.id)
    ttl = client.ttl(cache.entry_key(ADA.id))
    assert ttl != -2, f"after a miss the profile must be cached under {cache.entry_key(ADA.id)!r}; the key is missing"
    assert 0 < ttl <= 120, f"a cached profile must expire within ttl_seconds=120; its TTL is {ttl} (-1 means never)"


@exercise("06.1")
def test_an_unknown_user_is_none_and_nothing_is_cached(client: redis.Redis, prefix: str) -> None:
    cache = ProfileCache(client, InMemoryProfiles(ADA), ttl_seconds=120, prefix=prefix)
    got = cache.get(999)
    assert got is None, f"a user the source does not know must give None; got {got}"
    keys = sorted(client.scan_iter(match=prefix + "*"))
    assert not keys, f"nothing may be cached for a user who does not exist; found {keys}"


# 06.2 — update, then invalidate without a race ---------------------------------------------------------------


@exercise("06.2")
def test_after_an_update_readers_get_the_new_profile(client: redis.Redis, prefix: str) -> None:
    cache = ProfileCache(client, InMemoryProfiles(ADA), ttl_seconds=120, prefix=prefix)
    assert cache.get(ADA.id) == ADA  # now cached
    updated = cache.update(ADA.id, display_name="Countess of Lovelace")
    assert updated.display_name == "Countess of Lovelace", f"update must return the new profile; got {updated}"
    got = cache.get(ADA.id)
    assert got == updated, f"once update() returns, a read must give the new profile {updated}; got the stale {got}"


@exercise("06.1")
@exercise("06.2")
def test_a_reader_that_loaded_the_old_row_before_the_update_cannot_cache_it(client: redis.Redis, prefix: str) -> None:
    source = InMemoryProfiles(ADA)
    cache = ProfileCache(client, source, ttl_seconds=120, prefix=prefix)
    # The reader misses, loads the OLD row from the source, and stops there...
    source.pause_in_get = pause = Pause()
    reader = Background(lambda: cache.get(ADA.id))
    reader.wait_until(pause, "the reader's cache.get()")
    source.pause_in_get = None
    # ...while the writer updates and invalidates. Only then does the reader go on and try to cache the old row.
    updated = cache.update(ADA.id, display_name="Countess of Lovelace")
    pause.release.set()
    assert reader.join() == ADA, "the slow reader started before the update, so the old profile is a fair answer for it"
    got = cache.get(ADA.id)
    assert got == updated, (
        f"a reader that loaded the old row before the update stored it after the invalidation: the cache now "
        f"serves the stale {got} instead of {updated}. Check the version when storing (06.1) and bump it (06.2)"
    )


@exercise("06.2")
def test_update_changes_the_source_before_it_invalidates(client: redis.Redis, prefix: str) -> None:
    source = InMemoryProfiles(ADA)
    cache = ProfileCache(client, source, ttl_seconds=120, prefix=prefix)
    # The writer stops inside source.update(), before the new row is written; a reader comes in meanwhile.
    source.pause_in_update = pause = Pause()
    writer = Background(lambda: cache.update(ADA.id, display_name="Countess of Lovelace"))
    writer.wait_until(pause, "cache.update()")
    cache.get(ADA.id)  # the update has not returned yet, so the old profile is still a fair answer here
    pause.release.set()
    updated = writer.join()
    got = cache.get(ADA.id)
    assert got == updated, (
        f"update() invalidated before the source changed, so a reader cached the old row in between: the cache "
        f"serves the stale {got} instead of {updated}"
    )


@exercise("06.2")
def test_a_refused_update_keeps_the_old_profile(client: redis.Redis, prefix: str) -> None:
    source = InMemoryProfiles(ADA)
    cache = ProfileCache(client, source, ttl_seconds=120, prefix=prefix)
    cache.get(ADA.id)
    with pytest.raises(InvalidProfile):
        cache.update(ADA.id, display_name="x" * 65)
    got = cache.get(ADA.id)
    assert got == ADA, f"a display name of 65 characters is refused, so the profile stays {ADA}; got {got}"


# 06.3 — heartbeats ---------------------------------------------------------------------------------------------


@exercise("06.3")
def test_a_heartbeat_makes_a_user_online_for_the_ttl(client: redis.Redis, prefix: str) -> None:
    presence = Presence(client, ttl_seconds=30, prefix=prefix)
    presence.heartbeat(ADA.id)
    assert presence.is_online(ADA.id), "right after a heartbeat the user must be online"
    assert not presence.is_online(GRACE.id), "a user who sent no heartbeat must not be online"
    ttl = client.ttl(presence.online_key(ADA.id))
    assert 0 < ttl <= 30, f"the presence key must expire within ttl_seconds=30; its TTL is {ttl} (-1 means never)"


@exercise("06.3")
def test_each_heartbeat_starts_the_ttl_again(client: redis.Redis, prefix: str) -> None:
    presence = Presence(client, ttl_seconds=30, prefix=prefix)
    presence.heartbeat(ADA.id)
    client.pexpire(presence.online_key(ADA.id), 2000)  # as if most of the TTL had run out
    presence.heartbeat(ADA.id)
    remaining = client.pttl(presence.online_key(ADA.id))
    assert remaining > 2000, (
        f"a new heartbeat must set the TTL back to 30 s; {remaining} ms were left (set nx or keepttl would not renew it)"
    )


@exercise("06.3")
def test_presence_expires_without_heartbeats_but_last_seen_stays(client: redis.Redis, prefix: str) -> None:
    presence = Presence(client, ttl_seconds=1, prefix=prefix)
    assert presence.last_seen(ADA.id) is None, "a user never seen has no last-seen time"
    seen_at = datetime(2030, 5, 17, 12, 30, 15, 250000, tzinfo=UTC)
    presence.heartbeat(ADA.id, at=seen_at)
    assert eventually(lambda: not presence.is_online(ADA.id)), (
        f"with ttl_seconds=1 and no more heartbeats the user must go offline; still online after {WAIT_LIMIT_SECONDS} s"
    )
    got = presence.last_seen(ADA.id)
    assert got == seen_at, f"last seen must outlive the presence key and equal the heartbeat time {seen_at}; got {got}"


# 06.4 — who is online, in one round trip -----------------------------------------------------------------------


@exercise("06.4")
def test_online_among_names_exactly_the_online_users(client: redis.Redis, prefix: str) -> None:
    presence = Presence(client, ttl_seconds=30, prefix=prefix)
    online = {3, 7, 11, 42}
    for user_id in online:
        presence.heartbeat(user_id)
    asked = [*range(1, 50), 7, 42]  # with duplicates
    got = presence.online_among(asked)
    assert got == online, f"online among users 1..49 must be {sorted(online)}; got {sorted(got)}"
    assert presence.online_among([]) == set(), "nobody is online among no users"


@exercise("06.4")
def test_online_among_asks_redis_once(counting_client: CountingRedis, prefix: str) -> None:
    presence = Presence(counting_client, ttl_seconds=30, prefix=prefix)
    presence.heartbeat(5)
    counting_client.round_trips = 0
    got = presence.online_among(range(200))
    trips = counting_client.round_trips
    assert got == {5}, f"among users 0..199 only user 5 is online; got {sorted(got)}"
    assert trips == 1, f"asking about 200 users must cost one round trip to Redis (MGET or a pipeline); it cost {trips}"


@exercise("06.4")
def test_online_among_leaves_out_users_whose_presence_expired(client: redis.Redis, prefix: str) -> None:
    Presence(client, ttl_seconds=30, prefix=prefix).heartbeat(ADA.id)
    Presence(client, ttl_seconds=1, prefix=prefix).heartbeat(GRACE.id)
    presence = Presence(client, ttl_seconds=30, prefix=prefix)
    assert eventually(lambda: presence.online_among([ADA.id, GRACE.id]) == {ADA.id}), (
        f"after user {GRACE.id}'s presence expired, only user {ADA.id} is online; "
        f"got {sorted(presence.online_among([ADA.id, GRACE.id]))}"
    )


# 06.5 — the rate limiter ---------------------------------------------------------------------------------------


@exercise("06.5")
def test_exactly_limit_actions_are_allowed_then_the_next_is_refused(client: redis.Redis, prefix: str) -> None:
    limiter = RateLimiter(client, limit=5, window_seconds=60, prefix=prefix)
    decisions = [limiter.hit(ADA.id) for _ in range(5)]
    allowed = sum(decision.allowed for decision in decisions)
    assert allowed == 5, f"with limit=5 the first 5 actions in a window must be allowed; {allowed} were"
    refused = limiter.hit(ADA.id)
    assert not refused.allowed, "the 6th action inside the window must be refused"
    assert 0 < refused.retry_after_seconds <= 60, (
        f"a refusal must say how long to wait: more than 0 and at most the 60 s window; got {refused.retry_after_seconds}"
    )
    assert limiter.hit(GRACE.id).allowed, "another user has a limit of their own: their first action must be allowed"


@exercise("06.5")
def test_an_action_is_allowed_again_after_the_window(client: redis.Redis, prefix: str) -> None:
    limiter = RateLimiter(client, limit=2, window_seconds=1, prefix=prefix)
    decision = limiter.hit(ADA.id)
    for _ in range(20):
        if not decision.allowed:
            break
        decision = limiter.hit(ADA.id)
    assert not decision.allowed, "with limit=2 per second, 20 quick actions must meet a refusal"
    assert 0 < decision.retry_after_seconds <= 1, (
        f"the wait must be within the 1 s window; got {decision.retry_after_seconds}"
    )
    time.sleep(decision.retry_after_seconds)
    assert eventually(lambda: limiter.hit(ADA.id).allowed), (
        f"after the window has passed, an action must be allowed again; still refused after {WAIT_LIMIT_SECONDS} s"
    )


@exercise("06.5")
def test_the_limiter_key_expires_by_itself(client: redis.Redis, prefix: str) -> None:
    limiter = RateLimiter(client, limit=3, window_seconds=60, prefix=prefix)
    limiter.hit(ADA.id)
    remaining = client.pttl(limiter.key(ADA.id))
    assert remaining != -2, f"an allowed action must be recorded under {limiter.key(ADA.id)!r}; the key is missing"
    assert 0 < remaining <= 60_000, (
        f"the key must expire within the 60 s window; its TTL is {remaining} ms (-1 means never)"
    )


@exercise("06.5")
def test_concurrent_actions_never_exceed_the_limit(client: redis.Redis, prefix: str) -> None:
    limiter = RateLimiter(client, limit=10, window_seconds=60, prefix=prefix)
    start = threading.Barrier(4)

    def burst() -> int:
        start.wait(timeout=5)
        return sum(limiter.hit(ADA.id).allowed for _ in range(10))

    workers = [Background(burst) for _ in range(4)]
    allowed = sum(worker.join() for worker in workers)
    assert allowed == 10, f"40 actions from 4 threads at once with limit=10: exactly 10 may pass; {allowed} did"


# 06.6 — the token deny-list ------------------------------------------------------------------------------------


@exercise("06.6")
def test_a_denied_token_is_refused_until_its_own_expiry(client: redis.Redis, prefix: str) -> None:
    denylist = TokenDenylist(client, prefix=prefix)
    expires_at = redis_now(client) + 600
    assert denylist.deny("token-1", expires_at) is True, "denying a token that has not expired must return True"
    assert denylist.is_denied("token-1"), "a denied token must be refused"
    assert not denylist.is_denied("token-2"), "a token that was never denied must not be refused"
    expiry = client.expiretime(denylist.key("token-1"))
    assert abs(expiry - expires_at) <= 1, (
        f"the entry must expire when the token does (exp={expires_at}); it expires at {expiry} (-1 means never)"
    )


@exercise("06.6")
def test_an_expired_token_is_not_stored(client: redis.Redis, prefix: str) -> None:
    denylist = TokenDenylist(client, prefix=prefix)
    now = redis_now(client)
    for jti, expires_at in [("long-gone", now - 3600), ("just-expired", now)]:
        assert denylist.deny(jti, expires_at) is False, (
            f"a token whose exp ({expires_at}) is not after now ({now}) must give False"
        )
        assert not client.exists(denylist.key(jti)), f"nothing may be stored for the expired token {jti!r}"


@exercise("06.6")
def test_the_entry_disappears_when_the_token_expires(client: redis.Redis, prefix: str) -> None:
    denylist = TokenDenylist(client, prefix=prefix)
    expires_at = redis_now(client) + 4
    assert denylist.deny("short-lived", expires_at) is True, "a token 4 s from expiry can still be denied"
    assert denylist.is_denied("short-lived"), "a denied token must be refused"
    assert eventually(lambda: not denylist.is_denied("short-lived"), seconds=WAIT_LIMIT_SECONDS + 4), (
        "after the token's exp the entry must be gone by itself (expire it at exp)"
    )
