"""The WebSocket hub: who is connected to this gateway node, and getting events to their sockets.

The hub holds a registry, user id → that user's open connections on this node (a phone and a laptop are two).
Everything that should reach a user arrives as an event from the broker, on a consumer thread:

- ``message.created`` / ``edited`` / ``deleted`` from the chat service's outbox (via the relay), whose payload
  names the chat's two ``members``;
- ``signal.typing`` / ``signal.read`` / ``signal.presence`` published by the gateway nodes themselves (see
  signals.py), whose payload names its ``audience`` and carries the ready-made frame.

The consumer thread hands each event to the event loop (``call_soon_threadsafe``); there the hub finds the local
connections of the users the event is for and *offers* the frame to each (a bounded queue that never waits, see
connection.py). Every change to the registry and every delivery runs on the loop, in one thread: no locks.

Even a signal for a user connected to this very node goes through the broker: one road for every event, the
same on one node as on ten.

The protocol is written down in docs/websocket_protocol.md.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import redis
from loguru import logger

from ..chat.domain import MESSAGE_CREATED, MESSAGE_DELETED, MESSAGE_EDITED
from ..config import Settings
from ..events.envelope import Event, new_event
from ..events.gateway_node import GatewayNode
from ..events.topology import MESSAGE_EVENTS
from ..grpc_api.clients import ChatClient
from .connection import CLOSE_GOING_AWAY, Connection
from .frames import encode
from .presence import Presence
from .signals import PRESENCE, READ, SIGNAL_EVENTS, TYPING, SignalPublisher

# The fields of a message in a push frame: the event payload without `members` (that is for routing).
MESSAGE_KEYS = ("chat_id", "seq", "sender_id", "client_message_id", "body", "created_at", "edited_at", "deleted_at")
PUSHED_TOPICS = frozenset({MESSAGE_CREATED, MESSAGE_EDITED, MESSAGE_DELETED})
# How long start() waits for the broker subscriptions before it lets the gateway serve without them.
START_WAIT_SECONDS = 10.0
STOP_WAIT_SECONDS = 5.0

C = TypeVar("C")


@dataclass(frozen=True)
class WsLimits:
    """The WebSocket limits of docs/websocket_protocol.md ("Limits"). A connection reads them when it opens."""

    max_frame_bytes: int = 64 * 1024
    auth_timeout_seconds: float = 5.0
    frames_per_second: float = 20.0
    frame_burst: int = 40
    flood_close_after: int = 50  # frames in a row refused by the frame rate
    outgoing_queue_frames: int = 256
    send_timeout_seconds: float = 10.0
    sync_max_messages: int = 500

    def public(self) -> dict[str, Any]:
        """What the `ready` frame tells the client."""
        return {
            "max_frame_bytes": self.max_frame_bytes,
            "frames_per_second": self.frames_per_second,
            "frame_burst": self.frame_burst,
            "outgoing_queue_frames": self.outgoing_queue_frames,
            "sync_max_messages": self.sync_max_messages,
        }


def local_recipients(event: Event, sockets: Mapping[int, Collection[C]]) -> list[C]:
    """The connections on this node that get ``event``: every socket of every user the event is for."""
    # exercise 07.6: which local connections receive an event
    raise NotImplementedError("exercise 07.6 is yours to write: see notebooks/07_http_websocket.ipynb, section 'Exercise 07.6'. Stuck? python -m workbook hint 07.6")
    # end exercise


def push_frame(event: Event) -> dict[str, Any] | None:
    """The frame a client gets for an event; None for an event that is not pushed (or is malformed)."""
    if event.topic in PUSHED_TOPICS:
        return {"type": event.topic, "message": {key: event.payload.get(key) for key in MESSAGE_KEYS}}
    frame = event.payload.get("frame")
    if event.topic.startswith("signal.") and isinstance(frame, dict) and isinstance(frame.get("type"), str):
        return frame
    return None


def presence_frame(user_id: int, online: bool, last_seen: datetime | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "presence", "user_id": user_id, "online": online}
    if not online:
        frame["last_seen"] = (last_seen or datetime.now(UTC)).isoformat()
    return frame


class Hub:
    """This node's connections by user, its subscriptions to the broker, and the signals it publishes."""

    def __init__(
        self, settings: Settings, *, chats: ChatClient, presence: Presence, limits: WsLimits | None = None
    ) -> None:
        self._settings = settings
        self._chats = chats
        self._presence = presence
        # Tests may replace it (dataclasses.replace) before connecting: each connection reads it when it opens.
        self.limits = limits or WsLimits()
        self._sockets: dict[int, set[Connection]] = {}
        # user id → {chat id: the other member}, for the users connected here (typing and read receipts need it).
        self._chats_of: dict[int, dict[int, int]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._heartbeats: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        url, exchange = settings.rabbitmq.url, settings.rabbitmq.exchange
        self.signals = SignalPublisher(url, exchange)
        self.nodes = (
            GatewayNode(url, exchange, self._from_broker, name="gateway-node-messages", binding=MESSAGE_EVENTS),
            GatewayNode(url, exchange, self._from_broker, name="gateway-node-signals", binding=SIGNAL_EVENTS),
        )

    # Lifecycle -------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to the broker (threads of their own) and start the presence heartbeats."""
        self._loop = asyncio.get_running_loop()
        for worker in (*self.nodes, self.signals):
            thread = threading.Thread(target=worker.run_forever, args=(self._stop,), name=worker.name, daemon=True)
            thread.start()
            self._threads.append(thread)
        # Wait for the queues to be bound, so that no event published after start() is missed. A broker that is
        # down must not stop the gateway from serving REST: the nodes keep trying, and clients sync later.
        if not await asyncio.to_thread(self._consuming, START_WAIT_SECONDS):
            logger.warning("the hub is not subscribed to the broker yet; WebSocket pushes start when it is")
        self._heartbeats = asyncio.create_task(self._heartbeat_forever())

    def _consuming(self, seconds: float) -> bool:
        return all(node.consuming.wait(seconds) for node in self.nodes)

    async def stop(self) -> None:
        """Close every connection (1001), stop the heartbeats and the broker threads."""
        self._stop.set()
        if self._heartbeats is not None:
            self._heartbeats.cancel()
            await asyncio.gather(self._heartbeats, return_exceptions=True)
        for connections in list(self._sockets.values()):
            for connection in list(connections):
                connection.close(CLOSE_GOING_AWAY, "the gateway is shutting down; reconnect")
        await asyncio.gather(*self._background, return_exceptions=True)
        await asyncio.to_thread(self._join_threads)

    def _join_threads(self) -> None:
        for thread in self._threads:
            thread.join(timeout=STOP_WAIT_SECONDS)

    # The registry ----------------------------------------------------------------------------------------------

    def connections_of(self, user_id: int) -> frozenset[Connection]:
        return frozenset(self._sockets.get(user_id, ()))

    async def connect(self, user_id: int, connection: Connection) -> None:
        """Register an authenticated connection; tell the user's contacts when it is their first one here.

        The connection then gets a presence frame for each of its contacts who is online.
        """
        connection.user_id = user_id
        first = user_id not in self._sockets
        self._sockets.setdefault(user_id, set()).add(connection)
        contacts = set((await self._load_chats(user_id)).values())
        if first:
            await self._presence_call(self._presence.heartbeat, user_id)
            self._publish(PRESENCE, contacts, presence_frame(user_id, online=True))
        try:
            online = await asyncio.to_thread(self._presence.online_among, contacts)
        except redis.RedisError as error:
            logger.warning("cannot read presence for user {}: {}", user_id, error)
            online = set()
        for contact in sorted(online):
            connection.offer(encode(presence_frame(contact, online=True)))

    def disconnect(self, connection: Connection) -> None:
        """Forget a connection; when it was the user's last one here, the user is offline (and contacts told).

        Not a coroutine on purpose: it runs in the endpoint's ``finally``, often while the endpoint is being
        cancelled, where an ``await`` would be cancelled too and the registry would keep a dead connection. The
        Redis write runs in a task of the hub's own.
        """
        user_id = connection.user_id
        connections = self._sockets.get(user_id) if user_id is not None else None
        if user_id is None or connections is None or connection not in connections:
            return
        connections.discard(connection)
        if connections:
            return
        del self._sockets[user_id]
        chats = self._chats_of.pop(user_id, {})
        self._publish(PRESENCE, set(chats.values()), presence_frame(user_id, online=False))
        task = asyncio.get_running_loop().create_task(self._presence_call(self._presence.disconnect, user_id))
        self._background.add(task)  # a reference, or the task may be garbage-collected before it runs
        task.add_done_callback(self._background.discard)

    async def _load_chats(self, user_id: int) -> dict[int, int]:
        """The user's chats (chat id → other member), asked of the chat service; kept while the user is here."""
        chats = {summary.chat_id: summary.other_user_id for summary in await self._chats.list_chats(user_id)}
        if user_id in self._sockets:
            self._chats_of[user_id] = chats
        return chats

    async def other_member(self, user_id: int, chat_id: int) -> int | None:
        """The other member of a chat of ``user_id``; None if the user is not a member (or it does not exist).

        Answered from the cache of the user's chats; a miss asks the chat service again (a chat opened since).
        """
        chats = self._chats_of.get(user_id)
        if chats is None or chat_id not in chats:
            chats = await self._load_chats(user_id)
        return chats.get(chat_id)

    # Signals ---------------------------------------------------------------------------------------------------

    async def typing(self, user_id: int, chat_id: int) -> bool:
        """Tell the other member that ``user_id`` is typing; False if ``user_id`` is not a member of the chat."""
        other = await self.other_member(user_id, chat_id)
        if other is None:
            return False
        self._publish(TYPING, {other}, {"type": "typing", "chat_id": chat_id, "user_id": user_id})
        return True

    async def chat_read(self, reader_id: int, chat_id: int, last_read_seq: int) -> None:
        """A read receipt: both members' sockets learn the reader's new read mark (REST and WebSocket alike)."""
        other = await self.other_member(reader_id, chat_id)
        audience = {reader_id} if other is None else {reader_id, other}
        frame = {"type": "read", "chat_id": chat_id, "user_id": reader_id, "last_read_seq": last_read_seq}
        self._publish(READ, audience, frame)

    def _publish(self, topic: str, audience: Collection[int], frame: dict[str, Any]) -> None:
        if audience:
            self.signals.publish(new_event(topic, {"audience": sorted(audience), "frame": frame}))

    # Delivery --------------------------------------------------------------------------------------------------

    def _from_broker(self, event: Event) -> None:
        """Runs in a consumer thread: hand the event to the loop, where the registry lives. Never blocks."""
        loop = self._loop
        if loop is not None and not self._stop.is_set():
            loop.call_soon_threadsafe(self.deliver, event)

    def deliver(self, event: Event) -> int:
        """Offer an event's frame to every local connection it is for; returns how many took it. On the loop."""
        recipients = local_recipients(event, self._sockets)
        frame = push_frame(event) if recipients else None
        if frame is None:
            return 0
        text = encode(frame)  # once, however many sockets get it
        return sum(connection.offer(text) for connection in recipients)

    # Presence --------------------------------------------------------------------------------------------------

    async def _heartbeat_forever(self) -> None:
        """Keep every user connected here online: a heartbeat well within the presence TTL."""
        interval = max(1.0, self._settings.redis.presence_ttl_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            for user_id in list(self._sockets):
                await self._presence_call(self._presence.heartbeat, user_id)

    async def _presence_call(self, call: Callable[[int], None], user_id: int) -> None:
        """A presence write, off the loop (blocking Redis). A failure is logged: presence is not worth a crash."""
        try:
            await asyncio.to_thread(call, user_id)
        except redis.RedisError as error:
            logger.warning("presence update for user {} failed: {}", user_id, error)
