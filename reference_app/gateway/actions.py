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
    # hint: gateway.send_limiter.hit(user_id) asks Redis with a blocking client: call it with asyncio.to_thread. A redis.RedisError means the limit cannot be checked: refuse with Problem(UNAVAILABLE, ...), do not let the message through unchecked.
    # hint: A refused hit: raise Problem(TOO_MANY, <a sentence>, headers={"Retry-After": <whole seconds, rounded UP, at least 1>}).
    # hint: An allowed hit: return await gateway.chats.send_message(user_id, chat_id, client_message_id, body, reply_to_seq).
    try:
        decision = await asyncio.to_thread(gateway.send_limiter.hit, user_id)
    except redis.RedisError:
        raise Problem(UNAVAILABLE, "cannot check the send rate right now; try again shortly") from None
    if not decision.allowed:
        wait = max(1, math.ceil(decision.retry_after_seconds))
        raise Problem(TOO_MANY, f"too many messages; send again in {wait} s", headers={"Retry-After": str(wait)})
    return await gateway.chats.send_message(user_id, chat_id, client_message_id, body, reply_to_seq)
    # end exercise


async def mark_read(gateway: Gateway, user_id: int, chat_id: int, seq: int) -> int:
    """Move the caller's read mark in a chat, tell the other member, and return the mark now."""
    last_read_seq = await gateway.chats.mark_read(user_id, chat_id, seq)
    await gateway.hub.chat_read(user_id, chat_id, last_read_seq)
    return last_read_seq
