"""RabbitMQ restarts while two users are chatting: afterwards every committed message reached both, once each.

The chat service commits a message and its outbox row together, whatever the broker does; the relay publishes
the rows once the broker is back; the gateway's consumer reconnects. Pushes published while the gateway's queue
was gone are lost on the way, which the protocol allows: a client that sees a seq jump syncs from the highest
seq it holds (docs/websocket_protocol.md, "message.created"). So the promise checked here is the client's view:
after deduplicating by seq, each member holds exactly the committed messages, none missing, none extra.

The broker is restarted the way ``python -m workbook services up`` started it (Debian's rabbitmq-server, or
docker compose). The counts (sent, committed, delivered, duplicates, …) are printed; with
``BROKER_RESTART_RESULTS=bench/results/broker_restart.json`` in the environment they are also written there (a test
run must not change tracked files unless asked).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
from messenger_client import ChatClient, RunningApp, User, open_chat, register_and_log_in

from workbook.paths import REPO_ROOT
from workbook.services import _compose, _read_state, native
from workbook.services.probes import probe_rabbitmq, wait_until_ready

pytestmark = pytest.mark.e2e

RESULTS_VARIABLE = "BROKER_RESTART_RESULTS"
SEND_PAUSE_SECONDS = 0.05  # each sender's pace: about 20 messages a second each
BEFORE_RESTART = 20  # messages each sender sends before the broker goes down
DELIVERY_FAIL_SAFE_SECONDS = 120.0  # not a measurement: only keeps a broken run from hanging


def restart_rabbitmq(url: str) -> str:
    """Stop and start the broker the way the workbook started it; return how."""
    method = _read_state().get("rabbitmq")
    if method == "native":
        native.stop_rabbitmq(url)
        native.start_rabbitmq(url)
    elif method == "docker":
        _compose("restart", "rabbitmq")
    else:
        pytest.skip(f"RabbitMQ was not started by the workbook ({method or 'unknown'}): it is not ours to restart")
    wait_until_ready(probe_rabbitmq, url, 90)
    return method


@pytest.fixture
def chat(running_app: RunningApp) -> Iterator[tuple[User, User, int]]:
    with httpx.Client(base_url=running_app.base_url, timeout=30) as http:
        ada = register_and_log_in(http, f"ada_{uuid.uuid4().hex[:8]}")
        linus = register_and_log_in(http, f"linus_{uuid.uuid4().hex[:8]}")
        yield ada, linus, open_chat(http, ada, linus)


class Sender:
    """Sends messages from one client at a steady pace until told to stop; remembers what was acked."""

    def __init__(self, client: ChatClient) -> None:
        self.client = client
        self.sent = 0
        self.acked: dict[int, str] = {}  # seq → client_message_id
        self.stop = asyncio.Event()

    async def run(self) -> None:
        while not self.stop.is_set():
            await self.send_one()
            await asyncio.sleep(SEND_PAUSE_SECONDS)

    async def send_one(self) -> int:
        message_id = str(uuid.uuid4())
        self.sent += 1
        ack = await self.client.send(f"{self.client.user.username} #{self.sent}", message_id)
        self.acked[int(ack["seq"])] = message_id
        return int(ack["seq"])


async def wait_until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + DELIVERY_FAIL_SAFE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        await asyncio.sleep(0.1)


async def chat_through_a_broker_restart(app: RunningApp, ada: User, linus: User, chat_id: int) -> dict[str, Any]:
    clients = [ChatClient(app.ws_url, ada, chat_id), ChatClient(app.ws_url, linus, chat_id)]
    for client in clients:
        await client.connect()
    senders = [Sender(client) for client in clients]
    tasks = [asyncio.create_task(sender.run()) for sender in senders]
    try:
        await wait_until(lambda: all(s.sent >= BEFORE_RESTART for s in senders), "the first messages to be sent")
        restarted_at = time.monotonic()
        how = await asyncio.to_thread(restart_rabbitmq, app.settings.rabbitmq.url)
        restart_seconds = time.monotonic() - restarted_at
        # Keep talking until pushes flow again: a message acked now must reach both as a PUSH (the relay and
        # the gateway's consumer are back). Any push lost meanwhile shows as a gap, and the client syncs.
        after_restart = max(seq for sender in senders for seq in sender.acked)
        await wait_until(
            lambda: all(client.last_pushed_seq > after_restart for client in clients),
            "pushes to flow again after the restart",
        )
        for sender in senders:
            sender.stop.set()
        await asyncio.gather(*tasks)
        # One last message each, sent when everything runs: any push lost before it is now a visible gap.
        for sender in senders:
            await sender.send_one()
        acked = {seq for sender in senders for seq in sender.acked}
        await wait_until(lambda: all(acked <= set(client.messages) for client in clients), "every acked message")
        await asyncio.sleep(1.0)  # let a late duplicate push arrive, so that it is counted
        with psycopg.connect(app.postgres_url) as db:
            committed = {
                int(seq): str(message_id)
                for seq, message_id in db.execute(
                    "SELECT seq, client_message_id FROM chat.messages WHERE chat_id = %s", (chat_id,)
                ).fetchall()
            }
        return {
            "how": how,
            "restart_seconds": round(restart_seconds, 1),
            "senders": senders,
            "clients": clients,
            "committed": committed,
        }
    finally:
        for sender in senders:
            sender.stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in clients:
            await client.close()


def test_after_a_broker_restart_every_committed_message_reached_every_member_exactly_once(
    running_app: RunningApp, chat: tuple[User, User, int]
) -> None:
    ada, linus, chat_id = chat

    run = asyncio.run(chat_through_a_broker_restart(running_app, ada, linus, chat_id))

    senders: list[Sender] = run["senders"]
    clients: list[ChatClient] = run["clients"]
    committed: dict[int, str] = run["committed"]
    acked = {seq: message_id for sender in senders for seq, message_id in sender.acked.items()}
    counts = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "pytest tests/e2e/test_broker_restart.py -s",
        "broker_restarted_with": run["how"],
        "broker_restart_seconds": run["restart_seconds"],
        "sent": sum(sender.sent for sender in senders),
        "acked": len(acked),
        "committed": len(committed),
        "members": {
            client.user.username.split("_")[0]: {
                "delivered": len(set(client.messages) & set(committed)),
                "by_push": client.pushed,
                "by_sync": client.synced,
                "duplicates": client.duplicates,
                "gaps_seen": client.gaps,
            }
            for client in clients
        },
    }
    counts["delivered"] = sum(member["delivered"] for member in counts["members"].values())
    counts["duplicates"] = sum(member["duplicates"] for member in counts["members"].values())
    if results := os.environ.get(RESULTS_VARIABLE):
        path = REPO_ROOT / results
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(counts, indent=2) + "\n")
    print("\nbroker restart:", json.dumps(counts, indent=2))

    assert acked == committed, "every acked message should be committed, and nothing else (no double send)"
    assert sorted(committed) == list(range(1, len(committed) + 1)), "the chat's seqs should have no gaps"
    for client in clients:
        held = {seq: message["client_message_id"] for seq, message in client.messages.items()}
        missing = sorted(set(committed) - set(held))
        assert not missing, f"{client.user.username} never received seqs {missing[:20]}"
        assert held == committed, f"{client.user.username} should hold exactly the committed messages"
