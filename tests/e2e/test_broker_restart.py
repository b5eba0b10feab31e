"""RabbitMQ restarts while two users are chatting: afterwards every committed message reached both, once each.

The chat service commits a message and its outbox row together, whatever the broker does; the relay publishes
the rows once the broker is back; the gateway's consumer reconnects. Pushes published while the gateway's queue
was gone are lost on the way, which the protocol allows: a client that sees a seq jump syncs from the highest
seq it holds (docs/websocket_protocol.md, "message.created"). So the promise checked here is the client's view:
after deduplicating by seq, each member holds exactly the committed messages, none missing, none extra.

The broker is restarted the way ``python -m workbook services up`` started it (Debian's rabbitmq-server, or
docker compose). The counts (sent, committed, delivered, duplicates, lost, …; counted by tests/faults/counting.py,
shared with the fault tests) are printed; with ``FAULT_RESULTS=1`` (or ``BROKER_RESTART_RESULTS=<path>``) in the
environment they are also written to bench/results/broker_restart.json (a test run must not change tracked files
unless asked). At the end the outbox must be drained: the relay published every row it held.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from messenger_client import RunningApp

from workbook.paths import REPO_ROOT
from workbook.services import _compose, _read_state, native
from workbook.services.probes import probe_rabbitmq, wait_until_ready

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "faults"))  # the counting shared with tests/faults
from counting import (
    Load,
    assert_nothing_lost_nor_doubled,
    count,
    make_pairs,
    report,
    wait_for_outbox_drained,
    wait_until,
)

pytestmark = pytest.mark.e2e

FAULT = "broker_restart"
RESULTS_VARIABLE = "BROKER_RESTART_RESULTS"  # a path; FAULT_RESULTS=1 writes bench/results/broker_restart.json
PAIRS = 1
BEFORE_RESTART = 20  # messages each sender sends before the broker goes down


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


async def chat_through_a_broker_restart(app: RunningApp) -> tuple[Load, dict[str, Any]]:
    load = Load(app, make_pairs(app, PAIRS))
    await load.start()
    try:
        await wait_until(lambda: all(s.sent >= BEFORE_RESTART for s in load.senders), "the first messages to be sent")
        restarted_at = time.monotonic()
        how = await asyncio.to_thread(restart_rabbitmq, app.settings.rabbitmq.url)
        restart_seconds = time.monotonic() - restarted_at
        # Keep talking until pushes flow again: a message acked now must reach both as a PUSH (the relay and
        # the gateway's consumer are back). Any push lost meanwhile shows as a gap, and the client syncs.
        after_restart = max(seq for sender in load.senders for seq in sender.acked)
        await wait_until(
            lambda: all(client.last_pushed_seq > after_restart for client in load.clients),
            "pushes to flow again after the restart",
        )
        await load.settle(app.postgres_url)
        drain_seconds = await wait_for_outbox_drained(app.postgres_url)
    finally:
        await load.close()
    return load, {
        "broker_restarted_with": how,
        "broker_restart_seconds": round(restart_seconds, 1),
        "outbox_drain_seconds": round(drain_seconds, 1),
    }


def test_after_a_broker_restart_every_committed_message_reached_every_member_exactly_once(
    running_app: RunningApp,
) -> None:
    load, details = asyncio.run(chat_through_a_broker_restart(running_app))

    counts = count(FAULT, load, running_app.postgres_url, **details)
    counts["command"] = "pytest tests/e2e/test_broker_restart.py -s"
    report(FAULT, counts)
    if results := os.environ.get(RESULTS_VARIABLE):
        path = REPO_ROOT / results
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(counts, indent=2) + "\n")

    assert_nothing_lost_nor_doubled(counts)
    assert counts["unpublished_events"] == 0, "the relay should have published every outbox row (drained)"
