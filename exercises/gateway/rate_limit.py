"""How often a user may do something (send a message): at most ``limit`` times in any ``window_seconds``.

The limiter is a sliding-window log. Each user has a sorted set of the moments of their recent allowed
actions (score = time in milliseconds). To decide on a new action: drop the moments older than the window,
count the rest, and add the new one if the count is below the limit.

Those steps must run as one: two gateway nodes that both count 19 of 20 would both add, and the user gets
21. A Lua script runs inside Redis with no other command in between, and it costs one round trip. It also
reads the time from Redis itself, so every gateway node uses the same clock.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

import redis

from ..config.settings import RedisSettings

DEFAULT_PREFIX = "messenger:"


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after_seconds: float  # 0 when allowed; when refused, how long until the next action is allowed


def rate_limit_script() -> str:
    """The Lua source of the limiter.

    KEYS[1]: the user's sorted set. ARGV[1]: the limit, ARGV[2]: the window in milliseconds, ARGV[3]: a unique
    member for this action. Returns {1, 0} when allowed, {0, milliseconds to wait} when refused.
    """
    # exercise 06.5: an atomic sliding-window rate limiter in lua
    raise NotImplementedError("exercise 06.5 is yours to write: see notebooks/06_redis.ipynb, section 'Exercise 06.5'. Stuck? python -m workbook hint 06.5")
    # end exercise


class RateLimiter:
    """At most ``limit`` actions per user in any ``window_seconds``; refused actions are not counted."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        limit: int,
        window_seconds: float,
        name: str = "send",
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        if limit <= 0:
            raise ValueError(f"a rate limit allows at least 1 action per window; got {limit}")
        if window_seconds * 1000 < 1:
            raise ValueError(f"a rate limit window is at least 1 millisecond; got {window_seconds} seconds")
        self._limit = limit
        self._window_ms = round(window_seconds * 1000)
        self._name = name
        self._prefix = prefix
        # Registered once: every call then sends only the SHA1 of the script (EVALSHA), not its text.
        self._script = client.register_script(rate_limit_script())

    @classmethod
    def for_sending(cls, client: redis.Redis, settings: RedisSettings, *, prefix: str = DEFAULT_PREFIX) -> RateLimiter:
        """The limiter on sending messages, as the settings describe it."""
        return cls(
            client,
            limit=settings.send_rate_limit,
            window_seconds=settings.send_rate_window_seconds,
            name="send",
            prefix=prefix,
        )

    @classmethod
    def for_signing_in(
        cls,
        client: redis.Redis,
        settings: RedisSettings,
        *,
        per: Literal["account", "address"],
        prefix: str = DEFAULT_PREFIX,
    ) -> RateLimiter:
        """The limiter on sign-in attempts ``per`` "account" or per "address", as the settings describe it."""
        limit = settings.sign_in_rate_limit if per == "account" else settings.sign_in_address_rate_limit
        return cls(
            client,
            limit=limit,
            window_seconds=settings.sign_in_rate_window_seconds,
            name=f"sign-in:{per}",
            prefix=prefix,
        )

    def key(self, subject: int | str) -> str:
        return f"{self._prefix}rate:{self._name}:{subject}"

    def hit(self, subject: int | str) -> RateDecision:
        """Ask to act now, for a user id (or another subject: an account name, a client address). Allowed actions
        are counted; refused ones are not."""
        # A unique member per action: two actions in the same millisecond must not collapse into one.
        allowed, wait_ms = self._script(keys=[self.key(subject)], args=[self._limit, self._window_ms, uuid.uuid4().hex])
        return RateDecision(allowed=int(allowed) == 1, retry_after_seconds=int(wait_ms) / 1000)
