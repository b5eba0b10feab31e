"""Chat actions that do more than one call, shared by REST and the WebSocket so both paths behave the same.

Sending is rate limited per user (stage 06's sliding window), whichever way the message arrives: a client must
not dodge the limit by switching from the WebSocket to REST. Marking a chat read also tells the other member
(a read receipt), whichever way it was marked.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING
from uuid import UUID

import redis

from ..grpc_api import chat_pb2
from .problems import TOO_MANY, UNAVAILABLE, Problem

if TYPE_CHECKING:
    from .app import Gateway


async def send_message(
    gateway: Gateway, user_id: int, chat_id: int, client_message_id: UUID, body: str, reply_to_seq: int | None = None
) -> chat_pb2.Message:
    """Send a message (a reply, with ``reply_to_seq``) for ``user_id`` if the rate limit allows it; a Problem
    (429 with Retry-After) if not."""
    # exercise 07.2: rate-limit a send before it reaches the chat service
    raise NotImplementedError("exercise 07.2 is yours to write: see notebooks/07_http_websocket.ipynb, section 'Exercise 07.2'. Stuck? python -m workbook hint 07.2")
    # end exercise


async def check_sign_in_rate(gateway: Gateway, *, address: str, account: str | None = None) -> None:
    """Refuse a sign-in attempt (register, login, refresh) past its limits, per client address and per account,
    with 429 and Retry-After. Each attempt costs the auth service an Argon2 hash: guessing must be slow.

    The address is the peer the gateway sees: behind a load balancer, that is the balancer (stage 12).
    The address is checked first: an attempt the account limit refuses still counts for its address. Redis down
    refuses too (503), as for sending: unchecked is not allowed.
    """
    limits = [(gateway.sign_in_per_address, address)]
    if account is not None:
        limits.append((gateway.sign_in_per_account, account.strip().lower()[:64]))
    for limiter, subject in limits:
        try:
            decision = await asyncio.to_thread(limiter.hit, subject)
        except redis.RedisError:
            raise Problem(UNAVAILABLE, "cannot check sign-in attempts right now; try again shortly") from None
        if not decision.allowed:
            wait = max(1, math.ceil(decision.retry_after_seconds))
            detail = f"too many sign-in attempts; try again in {wait} s"
            raise Problem(TOO_MANY, detail, headers={"Retry-After": str(wait)})


async def mark_read(gateway: Gateway, user_id: int, chat_id: int, seq: int) -> int:
    """Move the caller's read mark in a chat, tell the other member, and return the mark now."""
    last_read_seq = await gateway.chats.mark_read(user_id, chat_id, seq)
    await gateway.hub.chat_read(user_id, chat_id, last_read_seq)
    return last_read_seq
