"""Two gateway nodes behind a real HAProxy, against the app's real processes (``python -m workbook app up --gateways 2``).

Each test starts an app of its own (the last two stop a node, so no test can leave a broken app to the next):
auth, chat, content, gateway-1 and gateway-2 on free ports, haproxy on the app's HTTP port in front of them,
relay and notifier. Every client goes through the balancer, except where a test needs a socket on a given node.
Which node answered is in the X-Gateway-Node header of every response and WebSocket handshake.

- two users land on different nodes and still chat in real time (the broker carries each message to both nodes);
- presence is one per user across nodes: online while any socket on any node is open, offline after the last;
- SIGTERM to a node: its clients are told 1001 (going away), reconnect through the balancer to the other node,
  and the next message reaches them;
- kill -9 of a node: the balancer's health checks take it out within seconds, and no request meanwhile fails.

The waits are fail-safes (a message that never comes fails the test instead of hanging it), never measurements.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from messenger_client import ChatClient, User, open_chat, register_and_log_in

from reference_app.gateway.presence import Presence
from workbook.isolated import REDIS_DB_END_TO_END, IsolatedApp, isolated_app_or_reason, started_or_fail
from workbook.messenger import gateway_names
from workbook.processes import log_tail

pytestmark = pytest.mark.e2e

NODE_HEADER = "X-Gateway-Node"
NODES = gateway_names(2)  # gateway-1, gateway-2
ENV = {
    "APP_REDIS__SEND_RATE_LIMIT": "1000000",  # rate limits are tested elsewhere
    "APP_REDIS__SIGN_IN_RATE_LIMIT": "1000000",
    "APP_REDIS__SIGN_IN_ADDRESS_RATE_LIMIT": "1000000",
    "APP_LOG__LEVEL": "INFO",
}
WAIT_SECONDS = 15.0  # a fail-safe for things that take a moment (a process that exits, a key that goes)
RUNS = itertools.count(1)


@pytest.fixture
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IsolatedApp]:
    """A fresh app with two gateway nodes behind the balancer, stopped when the test ends."""
    app_root = Path(request.config.getoption("app_root")).resolve()
    with started_or_fail(
        isolated_app_or_reason(
            app_root,
            run_id=f"e2e_gateways_{os.getpid()}_{next(RUNS)}",
            # The end-to-end tests' database: emptied at the start; the session's other app is idle by now.
            redis_db=REDIS_DB_END_TO_END,
            state_dir=tmp_path / "app-state",
            env=ENV,
            gateways=2,
        ),
        pytest.fail,
    ) as started:
        yield started


def unique(name: str) -> str:
    return f"{name}_{uuid.uuid4().hex[:8]}"


def two_users_in_a_chat(app: IsolatedApp) -> tuple[User, User, int]:
    with httpx.Client(base_url=app.base_url, timeout=30) as http:
        ada, linus = register_and_log_in(http, unique("ada")), register_and_log_in(http, unique("linus"))
        return ada, linus, open_chat(http, ada, linus)


def pid_of(app: IsolatedApp, name: str) -> int:
    return next(record.pid for record in app.runner.records() if record.name == name)


def node_ws_url(app: IsolatedApp, name: str) -> str:
    """The WebSocket of one node itself, past the balancer."""
    port = dict(zip(NODES, app.ports.nodes, strict=True))[name]
    return f"ws://127.0.0.1:{port}/ws"


def nodes_answering(app: IsolatedApp, requests: int) -> list[str | None]:
    """Which node answered each of ``requests`` new connections to the balancer."""
    answered = []
    for _ in range(requests):
        with httpx.Client(base_url=app.base_url, timeout=10) as http:  # a new connection each time
            response = http.get("/healthz")
        assert response.status_code == 200, f"the balancer should answer /healthz: {response.status_code}"
        answered.append(response.headers.get(NODE_HEADER))
    return answered


def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {WAIT_SECONDS:g} s"
        time.sleep(0.05)


def presence_of(app: IsolatedApp) -> Presence:
    return Presence.from_settings(redis.Redis.from_url(app.settings.redis.url, socket_timeout=5), app.settings.redis)


# Two users, two nodes ---------------------------------------------------------------------------------------------


def test_two_users_land_on_different_nodes_and_chat_in_real_time(app: IsolatedApp) -> None:
    ada, linus, chat_id = two_users_in_a_chat(app)
    assert set(nodes_answering(app, 6)) == set(NODES), "the balancer should hand new connections to both nodes"

    async def scenario() -> None:
        ada_ws, linus_ws = ChatClient(app.ws_url, ada, chat_id), ChatClient(app.ws_url, linus, chat_id)
        await ada_ws.connect()
        await linus_ws.connect()
        try:
            assert {ada_ws.node, linus_ws.node} == set(NODES), (
                f"with each node holding no socket, the second socket should go to the other node (leastconn); "
                f"Ada is on {ada_ws.node}, Linus on {linus_ws.node}"
            )
            ack = await ada_ws.send("hello from the other node")
            to_linus = await linus_ws.wait_for_seq(ack["seq"])
            assert to_linus["body"] == "hello from the other node"
            reply = await linus_ws.send("and back")
            assert (await ada_ws.wait_for_seq(reply["seq"]))["body"] == "and back"
            await ada_ws.wait_for_seq(ack["seq"])
            await linus_ws.wait_for_seq(reply["seq"])  # (each member gets their own messages too, for other devices)
            assert linus_ws.pushed == 2 and ada_ws.pushed == 2, "both messages should reach both as pushes"
            assert linus_ws.synced == 0 and ada_ws.synced == 0, "nothing should have needed a sync"
        finally:
            await ada_ws.close()
            await linus_ws.close()

    asyncio.run(scenario())


# Presence across nodes ----------------------------------------------------------------------------------------------


def test_a_user_is_online_until_the_last_socket_on_any_node_closes(app: IsolatedApp) -> None:
    ada, linus, chat_id = two_users_in_a_chat(app)
    presence = presence_of(app)

    def is_ada_offline(frame: dict[str, object]) -> bool:
        return frame.get("type") == "presence" and frame.get("user_id") == ada.id and frame.get("online") is False

    async def scenario() -> None:
        linus_ws = ChatClient(app.ws_url, linus, chat_id)  # Linus watches Ada's presence
        on_first = ChatClient(node_ws_url(app, NODES[0]), ada, chat_id)
        on_second = ChatClient(node_ws_url(app, NODES[1]), ada, chat_id)
        await linus_ws.connect()
        try:
            await on_first.connect()
            await on_second.connect()
            assert (on_first.node, on_second.node) == tuple(NODES), "Ada should hold one socket on each node"
            await linus_ws.wait_for_frame(lambda f: f.get("type") == "presence" and f.get("user_id") == ada.id)
            assert presence.is_online(ada.id)
            assert len(presence.nodes_of(ada.id)) == 2, "each node should hold an entry for Ada"

            await on_first.close()

            def let_go() -> bool:  # node 1's entry is gone (or node 1 has, wrongly, made Ada offline)
                return len(presence.nodes_of(ada.id)) < 2 or not presence.is_online(ada.id)

            await asyncio.to_thread(eventually, let_go, "node 1 letting Ada go")
            assert presence.is_online(ada.id), "Ada still has a socket on node 2: she must stay online"
            assert not any(map(is_ada_offline, linus_ws.other_frames)), "Linus must not be told Ada went offline"

            await on_second.close()
            gone = await linus_ws.wait_for_frame(is_ada_offline)
            assert gone.get("last_seen"), f"an offline presence carries last_seen: {gone}"
            assert not presence.is_online(ada.id), "after her last socket closed, Ada is offline"
            assert presence.nodes_of(ada.id) == set()
            offline_frames = [frame for frame in linus_ws.other_frames if is_ada_offline(frame)]
            assert len(offline_frames) == 1, f"Linus should be told once, when the last socket closed: {offline_frames}"
        finally:
            for client in (on_first, on_second, linus_ws):
                await client.close()

    asyncio.run(scenario())


# A node that stops, and one that dies -------------------------------------------------------------------------------


def test_sigterm_tells_the_nodes_clients_1001_and_they_reconnect_to_the_other_node(app: IsolatedApp) -> None:
    ada, linus, chat_id = two_users_in_a_chat(app)

    async def scenario() -> None:
        ada_ws = ChatClient(app.ws_url, ada, chat_id, auto_reconnect=True)
        linus_ws = ChatClient(app.ws_url, linus, chat_id, auto_reconnect=True)
        await ada_ws.connect()
        await linus_ws.connect()
        try:
            stopping, staying = ada_ws.node, linus_ws.node
            assert stopping in NODES and staying in NODES and stopping != staying, (
                f"the two sockets should be on different nodes: {ada_ws.nodes}, {linus_ws.nodes}"
            )
            assert stopping is not None
            record = next(record for record in app.runner.records() if record.name == stopping)
            os.kill(record.pid, signal.SIGTERM)

            await ada_ws.wait_for_connections(2)
            assert ada_ws.close_codes == [1001], f"the stopping node should say 1001 (going away): {ada_ws.close_codes}"
            assert ada_ws.node == staying, f"Ada should come back through the balancer on {staying}: {ada_ws.nodes}"
            await asyncio.to_thread(eventually, lambda: not app.runner.is_running(record), f"{stopping} exiting")

            ack = await linus_ws.send("are you back?")
            assert (await ada_ws.wait_for_seq(ack["seq"]))["body"] == "are you back?"
            reply = await ada_ws.send("yes, on the other node")
            assert (await linus_ws.wait_for_seq(reply["seq"]))["body"] == "yes, on the other node"
            assert linus_ws.connections == 1 and linus_ws.close_codes == [], "Linus's node kept running: no reconnect"
        finally:
            await ada_ws.close()
            await linus_ws.close()

    asyncio.run(scenario())


def test_the_balancer_takes_a_killed_node_out_and_no_request_fails(app: IsolatedApp) -> None:
    victim, survivor = NODES[1], NODES[0]
    down = f"{victim} is DOWN"
    os.kill(pid_of(app, victim), signal.SIGKILL)
    killed_at = time.monotonic()

    answered: list[str | None] = []
    deadline = killed_at + WAIT_SECONDS
    noticed_at: float | None = None
    # New requests all through the kill: until the balancer says the node is out, and a second more.
    while noticed_at is None or time.monotonic() < noticed_at + 1.0:
        assert time.monotonic() < deadline, (
            f"the balancer did not take {victim} out within {WAIT_SECONDS:g} s; its log:\n"
            + "\n".join(log_tail(app.runner.log_path("haproxy"), 20))
        )
        answered += nodes_answering(app, 1)  # fails the test if a request is not answered 200
        if noticed_at is None and any(down in line for line in log_tail(app.runner.log_path("haproxy"), 50)):
            noticed_at = time.monotonic()
        time.sleep(0.05)

    assert noticed_at is not None and noticed_at - killed_at < 5.0, (
        f"{victim} was taken out only after {noticed_at - killed_at:.1f} s"
    )
    assert set(answered) == {survivor}, f"only {survivor} can answer once {victim} is dead: {set(answered)}"
