"""Presence across gateway nodes (reference_app/gateway/presence.py), against the real Redis.

A user is online while any node holds a socket of theirs: each node keeps an entry in the user's set of nodes,
and only the last node to let go makes the user offline. A node that dies never lets go; its entry expires.
Each test works under a key prefix of its own and deletes its keys afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis

from reference_app.config import load_settings
from reference_app.gateway.presence import Presence

ADA = 1
TTL = 30


@pytest.fixture
def presence() -> Iterator[Presence]:
    client = redis.Redis.from_url(load_settings().redis.url, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as error:
        pytest.fail(f"Redis does not answer: {error}. Fix: python -m workbook services up")
    prefix = f"test-presence:{uuid.uuid4().hex[:12]}:"
    yield Presence(client, ttl_seconds=TTL, prefix=prefix)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_online_until_the_last_node_lets_go(presence: Presence) -> None:
    assert presence.node_heartbeat(ADA, "node-1") is True, "the first socket anywhere: the user came online"
    assert presence.node_heartbeat(ADA, "node-2") is False, "a socket on a second node: the user was online already"
    assert presence.node_heartbeat(ADA, "node-1") is False, "a later heartbeat changes nothing"
    assert presence.nodes_of(ADA) == {"node-1", "node-2"}

    assert presence.node_left(ADA, "node-1") is False, "node 2 still holds a socket: not offline"
    assert presence.is_online(ADA) and presence.nodes_of(ADA) == {"node-2"}

    left_at = datetime.now(UTC).replace(microsecond=0)
    assert presence.node_left(ADA, "node-2", at=left_at) is True, "the last node let go: offline"
    assert not presence.is_online(ADA)
    assert presence.nodes_of(ADA) == set()
    assert presence.last_seen(ADA) == left_at, "going offline writes the last-seen time"


def test_the_entry_of_a_node_that_died_expires(presence: Presence) -> None:
    now = datetime.now(UTC)
    presence.node_heartbeat(ADA, "killed", at=now - timedelta(seconds=TTL + 1))  # its last heartbeat, long ago
    presence.node_heartbeat(ADA, "alive", at=now)

    assert presence.nodes_of(ADA, at=now) == {"alive"}, "an entry past its TTL no longer counts"
    assert presence.node_left(ADA, "alive", at=now) is True, (
        "the node that died never let go, but its entry expired: the last live node letting go makes the user offline"
    )
    assert not presence.is_online(ADA)


def test_a_node_that_lets_go_of_a_user_it_never_held_changes_nothing_for_the_others(presence: Presence) -> None:
    presence.node_heartbeat(ADA, "node-1")

    assert presence.node_left(ADA, "node-2") is False
    assert presence.is_online(ADA) and presence.nodes_of(ADA) == {"node-1"}
