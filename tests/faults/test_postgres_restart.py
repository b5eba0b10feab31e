"""PostgreSQL restarts while three pairs of users are chatting.

While it is down a send is answered ``unavailable`` (never ``internal``) and a REST read 503 or 504 with a problem; nothing
is half written (each committed message has its one outbox event, each chat's seqs have no gap); every process
recovers by itself: sends are acked again soon after PostgreSQL is back, without restarting anything. The clients
resend what was not acked with the same client_message_id; then every committed message is held exactly once by
each member, and nothing acked is lost.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from counting import Load, assert_nothing_lost_nor_doubled, count, make_pairs, report, wait_until
from fault_app import FaultApp, service_down

FAULT = "postgres_restart"
PAIRS = 3
BEFORE = 25  # messages each sender sends before PostgreSQL goes down
DOWN_SECONDS = 3.0
RECOVERY_SECONDS = 20.0  # every sender acked again within this long after PostgreSQL answers again
ALLOWED_REFUSALS = {"unavailable"}


async def chat_through(app: FaultApp) -> tuple[Load, dict[str, Any]]:
    running = app.running
    load = Load(running, make_pairs(running, PAIRS))
    user = load.pairs[0].first
    await load.start()
    try:
        await wait_until(lambda: all(s.sent >= BEFORE for s in load.senders), "the first messages to be sent")
        async with httpx.AsyncClient(base_url=running.base_url, timeout=30) as http:
            with service_down("postgres"):
                stopped_at = time.monotonic()
                refused_before = sum(load.answers()[code] for code in ALLOWED_REFUSALS)
                rest = await http.get("/api/v1/chats", headers=user.headers)
                await asyncio.sleep(DOWN_SECONDS)
                refused_while_down = sum(load.answers()[code] for code in ALLOWED_REFUSALS) - refused_before
            back_at = time.monotonic()
        recovery = await load.sending_again(back_at)
        # The other services recover too, at the first request: auth (sign up, log in) and chat (open a chat).
        await asyncio.to_thread(make_pairs, running, 1)
        await asyncio.sleep(2.0)  # and a little more load, everything running again
        await load.settle(running.postgres_url)
    finally:
        await load.close()
    return load, {
        "down_seconds": round(back_at - stopped_at, 1),
        "recovery_seconds": round(recovery, 1),
        "refused_while_down": refused_while_down,
        "rest_while_down": {"status": rest.status_code, "content_type": rest.headers.get("content-type")},
    }


def test_after_a_postgres_restart_nothing_acked_is_lost_and_every_member_holds_each_message_once(
    fault_app: FaultApp,
) -> None:
    load, details = asyncio.run(chat_through(fault_app))

    counts = count(FAULT, load, fault_app.running.postgres_url, **details)
    report(FAULT, counts)

    refusals = {code for code in counts["answers"] if code != "ack"}
    assert refusals <= ALLOWED_REFUSALS, f"a send while PostgreSQL is down should be refused `unavailable`: {refusals}"
    assert details["refused_while_down"] > 0, "sends while PostgreSQL was down should have been refused"
    # 503 when the chat service answered UNAVAILABLE, 504 when the gateway's deadline passed first (the service
    # waited for a connection from its pool): both say "try again", neither is a 500.
    assert details["rest_while_down"]["status"] in (503, 504), "a REST read while PostgreSQL is down: 503 or 504"
    assert details["rest_while_down"]["content_type"] == "application/problem+json"
    assert details["recovery_seconds"] < RECOVERY_SECONDS, "sends should be acked again soon after PostgreSQL is back"
    assert_nothing_lost_nor_doubled(counts)
