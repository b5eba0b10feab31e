"""The chat service is killed (``kill -9``) while three pairs of users are chatting, and started again.

Meanwhile the gateway answers a send ``unavailable`` and a REST call 503 (never ``internal``, never a hang). The
runner does not restart a process by itself (workbook/processes.py starts, reports and stops; it does not watch),
so the test starts the chat service again through a runner, with the command and environment ``app up`` gave it.
The gateway recovers without being restarted (same pid): sends are acked again within seconds. The clients resend
what was not acked with the same client_message_id; nothing acked is lost, nothing is held twice.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from counting import Load, assert_nothing_lost_nor_doubled, count, make_pairs, report, wait_until
from fault_app import FaultApp

FAULT = "chat_service_kill"
PAIRS = 3
BEFORE = 15
DEAD_SECONDS = 2.0  # how long the chat service stays dead before the test starts it again
RECOVERY_SECONDS = 20.0  # every sender acked again within this long after the chat service is ready
ALLOWED_REFUSALS = {"unavailable"}


async def chat_through(app: FaultApp) -> tuple[Load, dict[str, Any]]:
    running = app.running
    load = Load(running, make_pairs(running, PAIRS))
    user = load.pairs[0].first
    gateway = app.pid("gateway")
    await load.start()
    try:
        await wait_until(lambda: all(s.sent >= BEFORE for s in load.senders), "the first messages to be sent")
        app.kill("chat")  # and waits until it is gone: alive afterwards would mean someone started it again
        try:
            refused_before = sum(load.answers()[code] for code in ALLOWED_REFUSALS)
            async with httpx.AsyncClient(base_url=running.base_url, timeout=30) as http:
                rest = await http.get("/api/v1/chats", headers=user.headers)
            await asyncio.sleep(DEAD_SECONDS)
            refused_while_dead = sum(load.answers()[code] for code in ALLOWED_REFUSALS) - refused_before
            restarted_by_runner = app.alive("chat")
            start_seconds = await asyncio.to_thread(app.start_again, "chat")
        finally:
            if not app.alive("chat"):  # whatever failed above, the next tests need a chat service
                await asyncio.to_thread(app.start_again, "chat")
        ready_at = time.monotonic()
        recovery = await load.sending_again(ready_at)
        await load.settle(running.postgres_url)
    finally:
        await load.close()
    return load, {
        "dead_seconds": DEAD_SECONDS,
        "restarted_by_the_runner_itself": restarted_by_runner,
        "start_seconds": round(start_seconds, 1),
        "recovery_seconds": round(recovery, 1),
        "refused_while_dead": refused_while_dead,
        "rest_while_dead": {"status": rest.status_code, "content_type": rest.headers.get("content-type")},
        "gateway_restarted": app.pid("gateway") != gateway,
    }


def test_after_the_chat_service_is_killed_and_started_again_nothing_acked_is_lost(fault_app: FaultApp) -> None:
    load, details = asyncio.run(chat_through(fault_app))

    counts = count(FAULT, load, fault_app.running.postgres_url, **details)
    report(FAULT, counts)

    refusals = {code for code in counts["answers"] if code != "ack"}
    assert refusals <= ALLOWED_REFUSALS, f"a send while the chat service is dead should be `unavailable`: {refusals}"
    assert details["refused_while_dead"] > 0, "sends while the chat service was dead should have been refused"
    assert details["rest_while_dead"]["status"] == 503, "a REST call while the chat service is dead should be a 503"
    assert details["rest_while_dead"]["content_type"] == "application/problem+json"
    assert not details["gateway_restarted"], "the gateway should recover without being restarted"
    assert details["recovery_seconds"] < RECOVERY_SECONDS, "sends should be acked again soon after chat is back"
    assert_nothing_lost_nor_doubled(counts)
