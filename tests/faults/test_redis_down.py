"""Redis stops for a few seconds while three pairs of users are chatting.

Redis holds the token deny-list, the rate-limit counters and presence. Without it the gateway fails closed: a new
WebSocket that authenticates is closed with 1013 ("try again later") and a REST call is a 503, never let through
unchecked; a send is refused ``unavailable`` (its rate cannot be checked). When Redis is back everything recovers by
itself: sends are acked again, and presence frames flow again (a contact who connects is announced online).
Nothing acked is lost, nothing is held twice.

Redis is the machine's server, shared by every app and test run (the app only has a database number in it):
it is started again in a ``finally``, whatever happens.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import websockets
from counting import Load, assert_nothing_lost_nor_doubled, count, make_pairs, report, wait_until
from fault_app import FaultApp, service_down
from messenger_client import ChatClient, User

FAULT = "redis_down"
PAIRS = 3
BEFORE = 15
DOWN_SECONDS = 3.0
RECOVERY_SECONDS = 20.0
ALLOWED_REFUSALS = {"unavailable"}
CLOSE_TRY_LATER = 1013


async def authenticate(ws_url: str, user: User) -> dict[str, Any]:
    """A new WebSocket's first frame; return how the gateway answered: the frame, or the close code."""
    async with websockets.connect(ws_url) as socket:
        await socket.send(json.dumps({"type": "auth", "ref": "hello", "token": user.token}))
        try:
            return {"frame": json.loads(await asyncio.wait_for(socket.recv(), 30))}
        except websockets.ConnectionClosed as closed:
            return {"close_code": closed.rcvd.code if closed.rcvd else None}


async def chat_through(app: FaultApp) -> tuple[Load, dict[str, Any]]:
    running = app.running
    pairs = make_pairs(running, PAIRS + 1)
    load, watcher = Load(running, pairs[:PAIRS]), pairs[PAIRS]  # the last pair only watches presence
    await load.start()
    try:
        await wait_until(lambda: all(s.sent >= BEFORE for s in load.senders), "the first messages to be sent")
        async with httpx.AsyncClient(base_url=running.base_url, timeout=30) as http:
            with service_down("redis"):
                stopped_at = time.monotonic()
                refused_before = sum(load.answers()[code] for code in ALLOWED_REFUSALS)
                new_socket = await authenticate(running.ws_url, watcher.first)
                rest = await http.get("/api/v1/chats", headers=watcher.first.headers)
                await asyncio.sleep(DOWN_SECONDS)
                refused_while_down = sum(load.answers()[code] for code in ALLOWED_REFUSALS) - refused_before
            back_at = time.monotonic()
        recovery = await load.sending_again(back_at)
        # Presence again: the watcher's first user is online; when the second connects, the first is told.
        first = ChatClient(running.ws_url, watcher.first, watcher.chat_id)
        second = ChatClient(running.ws_url, watcher.second, watcher.chat_id)
        await first.connect()
        await second.connect()
        try:
            presence_seconds = await wait_until(
                lambda: any(
                    frame.get("type") == "presence" and frame.get("user_id") == watcher.second.id and frame["online"]
                    for frame in first.other_frames
                ),
                "a presence frame after Redis came back",
                seconds=RECOVERY_SECONDS,
            )
        finally:
            await first.close()
            await second.close()
        await load.settle(running.postgres_url)
    finally:
        await load.close()
    return load, {
        "down_seconds": round(back_at - stopped_at, 1),
        "recovery_seconds": round(recovery, 1),
        "presence_seconds": round(presence_seconds, 1),
        "refused_while_down": refused_while_down,
        "new_socket_while_down": new_socket,
        "rest_while_down": {"status": rest.status_code, "content_type": rest.headers.get("content-type")},
    }


def test_while_redis_is_down_the_gateway_fails_closed_and_recovers_when_it_is_back(fault_app: FaultApp) -> None:
    load, details = asyncio.run(chat_through(fault_app))

    counts = count(FAULT, load, fault_app.running.postgres_url, **details)
    report(FAULT, counts)

    assert details["new_socket_while_down"] == {"close_code": CLOSE_TRY_LATER}, (
        "a new WebSocket should be closed with 1013 while its token cannot be checked, never let in"
    )
    assert details["rest_while_down"]["status"] == 503, "a REST call whose token cannot be checked should be a 503"
    assert details["rest_while_down"]["content_type"] == "application/problem+json"
    refusals = {code for code in counts["answers"] if code != "ack"}
    assert refusals <= ALLOWED_REFUSALS, f"a send while Redis is down should be refused `unavailable`: {refusals}"
    assert details["refused_while_down"] > 0, "sends while Redis was down should have been refused"
    assert details["recovery_seconds"] < RECOVERY_SECONDS, "sends should be acked again soon after Redis is back"
    assert_nothing_lost_nor_doubled(counts)
