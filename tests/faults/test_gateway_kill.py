"""One of two gateway nodes behind the balancer is killed (``kill -9``) while four pairs of users are chatting.

A crash, not a stop: the node says nothing (no 1001), its sockets simply drop. Its clients reconnect through the
balancer (with backoff, as the web client does), land on the other node, resend every unacked message with the
same client_message_id and sync from the last seq they hold without a gap. Nothing acked is lost, nothing is held
twice, each chat's seqs run without a gap and every message has one outbox event. The clients of the other node
keep their socket. A new connection through the balancer works within seconds of the kill (the balancer retries a
refused connection on the other node until its health checks take the dead one out).

Presence: a user whose only socket was on the killed node, and who does not come back, is offline within the
presence TTL (lowered to a few seconds here): the node's entry and the presence key expire with its heartbeats.
Nobody is pushed an ``offline`` frame for that user (a dead node says nothing: docs/websocket_protocol.md); a
contact sees it at their next connection, whose ``ready`` is no longer followed by an ``online`` frame for them.
A user who did reconnect stays online.

The app of this test has two gateway nodes (a fixture of its own, below); the other fault tests keep their app
with one gateway. It uses the faults' Redis database too: the folder's app is idle between tests, and nothing a
later test needs is kept there across tests (presence, rate-limit counters).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
import websockets
from counting import (
    NO_ANSWER,
    Load,
    Pair,
    Sender,
    assert_nothing_lost_nor_doubled,
    count,
    make_pairs,
    report,
    wait_until,
)
from fault_app import FaultApp
from messenger_client import ChatClient, RunningApp, User

from reference_app.gateway.presence import Presence
from workbook.isolated import REDIS_DB_FAULTS, isolated_app_or_reason, started_or_fail
from workbook.messenger import gateway_names

FAULT = "gateway_kill"
NODES = gateway_names(2)  # gateway-1, gateway-2
PAIRS = 4
# Load.clients is [pair 0 first, pair 0 second, pair 1 first, …], connected in this order. The balancer's leastconn
# gives every second connection to the node with fewer sockets, so pairs 0 and 3 are split over both nodes for sure;
# when it breaks the ties in turn too (round robin among equally loaded nodes), pair 1 is whole on one node and
# pair 2 on the other: the kill then leaves pairs with both members, and pairs with one, to reconnect.
CONNECT_ORDER = (0, 1, 2, 4, 3, 5, 6, 7)
BEFORE = 15  # messages each sender has sent before the kill
PRESENCE_TTL_SECONDS = 3  # instead of 60: a killed node's users go offline within a test's patience
NEW_CONNECTION_SECONDS = 5.0  # a new connection through the balancer works within this long after the kill
RECONNECT_SECONDS = 10.0  # every client of the killed node is connected again within this long
RECOVERY_SECONDS = 15.0  # every sender acked again within this long
OFFLINE_SLACK_SECONDS = 1.5  # polling and scheduling on top of the TTL
CLOSE_ABNORMAL = 1006  # the socket ended without a close frame: a crash (a node that stops says 1001)


@pytest.fixture(scope="module")
def two_gateways(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultApp]:
    """An app of its own with gateway-1 and gateway-2 behind haproxy (the balancer on the app's HTTP port)."""
    state_dir = tmp_path_factory.mktemp("faults-two-gateways-state")
    env = {
        "APP_REDIS__SEND_RATE_LIMIT": "1000000",  # the load is fast on purpose; rate limits are tested elsewhere
        "APP_REDIS__SIGN_IN_RATE_LIMIT": "1000000",  # every user signs in from 127.0.0.1
        "APP_REDIS__SIGN_IN_ADDRESS_RATE_LIMIT": "1000000",
        "APP_REDIS__PRESENCE_TTL_SECONDS": str(PRESENCE_TTL_SECONDS),
        "APP_LOG__LEVEL": "INFO",
    }
    app_root = Path(request.config.getoption("app_root")).resolve()
    with (
        started_or_fail(
            isolated_app_or_reason(
                app_root,
                run_id=f"faults_gateways_{os.getpid()}",
                redis_db=REDIS_DB_FAULTS,
                state_dir=state_dir,
                env=env,
                gateways=2,
            ),
            pytest.fail,
        ) as app,
        ExitStack() as restarted,
    ):
        running = RunningApp(app.base_url, app.ws_url, app.settings.postgres.url, app.settings, app.runner)
        yield FaultApp(running, app, app_root, state_dir, dict(app.env), restarted)


class ResendingSender(Sender):
    """A client of a crashed node: once it can send again, it first resends every unacked message with its own
    client_message_id (the server keeps one copy), then goes on with new ones."""

    def __init__(self, client: ChatClient) -> None:
        super().__init__(client)
        self.resent: dict[str, datetime] = {}  # client_message_id → when the resend that got it acked was sent

    async def run(self) -> None:
        while not self.stop.is_set():
            for message_id in list(self.unacked):
                if self.stop.is_set() or await self.send_one(message_id) is None:
                    break  # no socket yet: the resends again next round
                await asyncio.sleep(self.pause)
            await self.send_one()
            await asyncio.sleep(self.pause)

    async def send_one(self, message_id: str | None = None) -> int | None:
        resent_at = datetime.now(UTC)
        seq = await super().send_one(message_id)
        if seq is not None and message_id is not None:
            self.resent[message_id] = resent_at
        return seq


class TwoNodeLoad(Load):
    """The folder's load, with clients that reconnect (auto_reconnect) and senders that resend."""

    def __init__(self, app: RunningApp, pairs: Sequence[Pair]) -> None:
        super().__init__(app, pairs)
        for client in self.clients:
            client.auto_reconnect = True
        self.resending = [ResendingSender(client) for client in self.clients]
        self.senders = list(self.resending)

    async def start(self) -> None:
        for index in CONNECT_ORDER:
            await self.clients[index].connect()
        self._tasks = [asyncio.create_task(sender.run()) for sender in self.senders]


def committed_before_resend(postgres_url: str, senders: Sequence[ResendingSender]) -> int:
    """Resent messages the server had already stored when the resend went out: its copy was acked again."""
    resent = {message_id: at for sender in senders for message_id, at in sender.resent.items()}
    if not resent:
        return 0
    with psycopg.connect(postgres_url) as db:
        rows = db.execute(
            "SELECT client_message_id::text, created_at FROM chat.messages WHERE client_message_id::text = ANY(%s)",
            (list(resent),),
        ).fetchall()
    return sum(1 for message_id, created_at in rows if created_at < resent[message_id])


def node_ws_url(app: FaultApp, name: str) -> str:
    """The WebSocket of one node itself, past the balancer."""
    port = dict(zip(NODES, app.isolated.ports.nodes, strict=True))[name]
    return f"ws://127.0.0.1:{port}/ws"


async def online_seen_by(ws_url: str, user: User, chat_id: int) -> set[int]:
    """The contacts a new connection of ``user`` is told are online. The presence frames follow ``ready`` before
    the gateway reads any command: the answer to a sync comes after them."""
    client = ChatClient(ws_url, user, chat_id)
    await client.connect()
    try:
        await client.sync()
        return {
            int(frame["user_id"])
            for frame in client.other_frames
            if frame.get("type") == "presence" and frame.get("online")
        }
    finally:
        await client.close()


async def new_connection_after(ws_url: str, user: User, chat_id: int, since: float) -> float:
    """Open a new connection through the balancer until one works; return the seconds from ``since``."""
    while True:
        client = ChatClient(ws_url, user, chat_id)
        try:
            await asyncio.wait_for(client.connect(), 2.0)
        except (OSError, TimeoutError, AssertionError, websockets.WebSocketException) as error:
            assert time.monotonic() - since < NEW_CONNECTION_SECONDS, f"no new connection works: {error!r}"
            await asyncio.sleep(0.1)
            continue
        finally:
            await client.close()
        return time.monotonic() - since


async def chat_through(app: FaultApp) -> tuple[TwoNodeLoad, dict[str, Any]]:
    running = app.running
    pairs = make_pairs(running, PAIRS + 1)
    load, watched = TwoNodeLoad(running, pairs[:PAIRS]), pairs[PAIRS]  # the last pair: presence only
    gone, contact = watched.first, watched.second  # gone: one socket, on the node that dies, and never back
    presence = Presence.from_settings(
        redis.Redis.from_url(running.settings.redis.url, socket_timeout=5), running.settings.redis
    )
    await load.start()
    gone_ws: ChatClient | None = None
    try:
        first_nodes = {client.user.username: client.node for client in load.clients}
        victim = load.clients[2].node  # pair 1's first member's node (pair 1 is likely whole on it)
        assert victim in NODES, f"the handshake should name the node: {victim}"
        survivor = next(node for node in NODES if node != victim)
        on_victim = [client for client in load.clients if client.node == victim]
        on_survivor = [client for client in load.clients if client.node == survivor]
        assert on_victim and on_survivor, f"the members should be spread over both nodes: {first_nodes}"

        gone_ws = ChatClient(node_ws_url(app, victim), gone, watched.chat_id)
        await gone_ws.connect()
        assert gone_ws.node == victim
        online_before = gone.id in await online_seen_by(running.ws_url, contact, watched.chat_id)

        await wait_until(lambda: all(s.sent >= BEFORE for s in load.senders), "the first messages to be sent")
        pid = app.kill(victim)  # SIGKILL, and waits until it is gone
        killed_at = time.monotonic()
        new_connection = await new_connection_after(running.ws_url, contact, watched.chat_id, killed_at)
        async with httpx.AsyncClient(base_url=running.base_url, timeout=10) as http:
            rest = await http.get("/api/v1/chats", headers=contact.headers)
        await wait_until(
            lambda: all(client.connections >= 2 for client in on_victim),
            "the killed node's clients to reconnect",
            seconds=RECONNECT_SECONDS,
        )
        reconnected = time.monotonic() - killed_at
        recovery = await load.sending_again(killed_at)

        await wait_until(
            lambda: not presence.is_online(gone.id),
            "the user of the killed node to go offline",
            seconds=PRESENCE_TTL_SECONDS + 10,
        )
        offline = time.monotonic() - killed_at
        gone_nodes = presence.nodes_of(gone.id)
        online_after = gone.id in await online_seen_by(running.ws_url, contact, watched.chat_id)
        # And one who came back (through the other node) is still online once the dead node's entries are gone.
        back = on_victim[0]
        pair = next(pair for pair in load.pairs if back.user in (pair.first, pair.second))
        partner = pair.second if back.user == pair.first else pair.first
        back_online = back.user.id in await online_seen_by(running.ws_url, partner, pair.chat_id)

        await load.settle(running.postgres_url)
    finally:
        await load.close()
        if gone_ws is not None:
            await gone_ws.close()
    pairs_on = [{first_nodes[pair.first.username], first_nodes[pair.second.username]} for pair in load.pairs]
    return load, {
        "gateways": len(NODES),
        "killed": victim,
        "killed_pid": pid,
        "clients_on_killed_node": len(on_victim),
        "clients_on_other_node": len(on_survivor),
        "pairs_split_over_both_nodes": sum(1 for nodes in pairs_on if len(nodes) == 2),
        "pairs_on_killed_node_only": sum(1 for nodes in pairs_on if nodes == {victim}),
        "new_connection_seconds": round(new_connection, 2),
        "rest_after_kill": rest.status_code,
        "reconnected_seconds": round(reconnected, 1),
        "recovery_seconds": round(recovery, 1),
        "close_codes_on_killed_node": sorted({code for c in on_victim for code in c.close_codes}, key=str),
        "nodes_after_reconnect": sorted({c.node for c in on_victim}, key=str),
        "reconnects_on_other_node": sum(c.connections - 1 for c in on_survivor),
        "resent_and_acked": sum(len(sender.resent) for sender in load.resending),
        "resent_already_committed": committed_before_resend(running.postgres_url, load.resending),
        "presence": {
            "ttl_seconds": PRESENCE_TTL_SECONDS,
            "gone_online_before_kill": online_before,
            "gone_offline_seconds": round(offline, 1),
            "gone_nodes_after": sorted(gone_nodes),
            "gone_seen_online_by_contact_after": online_after,
            "reconnected_user_seen_online_after": back_online,
        },
    }


def test_after_a_gateway_node_is_killed_its_clients_reconnect_to_the_other_and_nothing_is_lost(
    two_gateways: FaultApp,
) -> None:
    load, details = asyncio.run(chat_through(two_gateways))

    counts = count(FAULT, load, two_gateways.running.postgres_url, **details)
    report(FAULT, counts)

    survivor = next(node for node in NODES if node != details["killed"])
    assert details["pairs_split_over_both_nodes"] > 0, "some pairs should have a member on each node"
    assert details["close_codes_on_killed_node"] == [CLOSE_ABNORMAL], (
        "a killed node says nothing: its sockets end without a close frame (1006), never 1001"
    )
    assert details["nodes_after_reconnect"] == [survivor], "its clients should come back on the other node"
    assert details["reconnects_on_other_node"] == 0, "the other node's clients should keep their sockets"
    assert details["new_connection_seconds"] < NEW_CONNECTION_SECONDS
    assert details["rest_after_kill"] == 200, "REST through the balancer should work right after the kill"
    assert details["reconnected_seconds"] < RECONNECT_SECONDS
    assert details["recovery_seconds"] < RECOVERY_SECONDS, "sends should be acked again soon after the kill"
    refusals = {code for code in counts["answers"] if code != "ack"}
    assert refusals <= {NO_ANSWER}, f"the surviving node should refuse nothing: {refusals}"
    presence = details["presence"]
    assert presence["gone_online_before_kill"], "before the kill, a contact should see the user online"
    assert presence["gone_offline_seconds"] <= PRESENCE_TTL_SECONDS + OFFLINE_SLACK_SECONDS, (
        "a user whose only socket was on the killed node should be offline within the presence TTL"
    )
    assert presence["gone_nodes_after"] == [], "the killed node's entry should have expired"
    assert not presence["gone_seen_online_by_contact_after"], "a contact should no longer be told they are online"
    assert presence["reconnected_user_seen_online_after"], "a user who reconnected should stay online"
    assert_nothing_lost_nor_doubled(counts)
