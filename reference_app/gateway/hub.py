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

Presence is kept across nodes (presence.py): each node heartbeats an entry, under its own node id, for every
user connected to it, and a user's contacts are told "offline" only when the user's last socket on any node
has closed. When the node shuts down (SIGTERM), ``going_away`` closes every socket with 1001 first: the clients
reconnect, through the load balancer, to another node.

The protocol is written down in docs/websocket_protocol.md.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
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
MESSAGE_KEYS = (
    "chat_id", "seq", "sender_id", "client_message_id", "body", "created_at", "edited_at", "deleted_at",
    "reply_to_seq", "reply_to",
)  # fmt: skip
PUSHED_TOPICS = frozenset({MESSAGE_CREATED, MESSAGE_EDITED, MESSAGE_DELETED})
# How long start() waits for the broker subscriptions before it lets the gateway serve without them.
START_WAIT_SECONDS = 10.0
STOP_WAIT_SECONDS = 5.0
# A chat id missing from a connected user's cached chats asks the chat service again (a chat opened since), but
# not more often than this per user: a client that sends `typing` for someone else's chat 20 times a second
# must not cost 20 full ListChats calls a second. A chat opened in the last seconds may wait that long.
CHATS_RELOAD_SECONDS = 3.0

C = TypeVar("C")
T = TypeVar("T")


def new_node_id(name: str | None = None) -> str:
    """An id for this gateway node that no other node has, nor this one after a restart: name (or host), pid, random."""
    return f"{name or socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class WsLimits:
    """The WebSocket limits of docs/websocket_protocol.md ("Limits"). A connection reads them when it opens."""

    max_frame_bytes: int = 64 * 1024
    auth_timeout_seconds: float = 5.0
    frames_per_second: float = 20.0
    frame_burst: int = 40
    flood_close_after: int = 50  # frames in a row refused by the frame rate
    outgoing_queue_frames: int = 256
    outgoing_queue_bytes: int = 4 * 1024 * 1024
    send_timeout_seconds: float = 10.0
    sync_max_messages: int = 500
    sync_max_bytes: int = 1024 * 1024  # a sync answer stops adding messages once it is this big

    def public(self) -> dict[str, Any]:
        """What the `ready` frame tells the client."""
        return {
            "max_frame_bytes": self.max_frame_bytes,
            "frames_per_second": self.frames_per_second,
            "frame_burst": self.frame_burst,
            "outgoing_queue_frames": self.outgoing_queue_frames,
            "outgoing_queue_bytes": self.outgoing_queue_bytes,
            "sync_max_messages": self.sync_max_messages,
            "sync_max_bytes": self.sync_max_bytes,
        }


def local_recipients(event: Event, sockets: Mapping[int, Collection[C]]) -> list[C]:
    """The connections on this node that get ``event``: every socket of every user the event is for."""
    # exercise 07.6: which local connections receive an event
    # hint: A message event (topic starting "message.") is for the users in payload["members"]; a signal (topic starting "signal.") for those in payload["audience"]. Any other topic, or a value that is not a list: nobody.
    # hint: The payload comes from the network: keep only real ints (type(x) is int: True is an int in Python), and each user once, even if named twice.
    # hint: sockets.get(user_id, ()) is the user's connections here; a user connected to another node has none. Every one of them gets the event: the sender's other devices too.
    if event.topic.startswith("message."):
        audience = event.payload.get("members")
    elif event.topic.startswith("signal."):
        audience = event.payload.get("audience")
    else:
        return []
    if not isinstance(audience, list):
        return []
    user_ids = dict.fromkeys(user_id for user_id in audience if type(user_id) is int)
    return [connection for user_id in user_ids for connection in sockets.get(user_id, ())]
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
        self,
        settings: Settings,
        *,
        chats: ChatClient,
        presence: Presence,
        limits: WsLimits | None = None,
        node: str | None = None,
    ) -> None:
        self._settings = settings
        self.node = node or new_node_id()  # this node's entry in each connected user's set of nodes (presence)
        self._chats = chats
        self._presence = presence
        # Tests may replace it (dataclasses.replace) before connecting: each connection reads it when it opens.
        self.limits = limits or WsLimits()
        self._sockets: dict[int, set[Connection]] = {}
        # user id → {chat id: the other member}, for the users connected here (typing and read receipts need it).
        self._chats_of: dict[int, dict[int, int]] = {}
        self._chats_loaded_at: dict[int, float] = {}  # user id → when their chats were last asked (monotonic)
        # Presence writes of one user must land in the order they were decided: a heartbeat decided before a
        # disconnect must not reach Redis after the disconnect's "offline". One lock keeps them in order.
        self._presence_lock = asyncio.Lock()
        self._all_gone = asyncio.Event()  # set while no connection is registered (stop() waits for it)
        self._all_gone.set()
        self._going_away = False  # set by going_away(): a connection that authenticates now is closed at once
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._heartbeats: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        url, exchange = settings.rabbitmq.url, settings.rabbitmq.exchange
        self.signals = SignalPublisher(url, exchange)
        self.nodes = (
            GatewayNode(
                url, exchange, on_events=self._from_broker, name="gateway-node-messages", binding=MESSAGE_EVENTS
            ),
            GatewayNode(url, exchange, on_events=self._from_broker, name="gateway-node-signals", binding=SIGNAL_EVENTS),
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

    async def going_away(self) -> None:
        """Close every connection with 1001 (going away) and wait, at most STOP_WAIT_SECONDS, for them to end.

        The server calls this as soon as it is told to stop (SIGTERM), after it stopped accepting connections:
        the clients reconnect to another node while this one finishes. Each endpoint's ``disconnect`` starts the
        user's presence write. A connection that authenticates from now on is closed with 1001 at once.
        """
        self._going_away = True
        for connections in list(self._sockets.values()):
            for connection in list(connections):
                connection.close(CLOSE_GOING_AWAY, "the gateway is shutting down; reconnect")
        try:
            async with asyncio.timeout(STOP_WAIT_SECONDS):
                await self._all_gone.wait()
        except TimeoutError:
            logger.warning(
                "{} users still connected after {:g} s; stopping anyway", len(self._sockets), STOP_WAIT_SECONDS
            )

    async def stop(self) -> None:
        """Shut down in an order that loses nothing on the way out.

        1. Stop the heartbeats. 2. Close every connection with 1001 and wait (at most STOP_WAIT_SECONDS) for
        the endpoints to end (``going_away``; done already when the server called it first): each one's
        ``disconnect`` starts the user's presence write, which tells the contacts when the user is offline.
        3. Wait for those writes (they need the Redis client, which is closed after the hub). 4. Only then stop
        the broker threads: the signal publisher sends what is still pending before it ends.
        """
        if self._heartbeats is not None:
            self._heartbeats.cancel()
            await asyncio.gather(self._heartbeats, return_exceptions=True)
        await self.going_away()
        if self._background:
            await asyncio.wait(set(self._background), timeout=STOP_WAIT_SECONDS)
        self._stop.set()
        await asyncio.to_thread(self._join_threads)

    def _join_threads(self) -> None:
        for thread in self._threads:
            thread.join(timeout=STOP_WAIT_SECONDS)

    # The registry ----------------------------------------------------------------------------------------------

    def connections_of(self, user_id: int) -> frozenset[Connection]:
        return frozenset(self._sockets.get(user_id, ()))

    async def connect(self, user_id: int, connection: Connection, greeting: str) -> None:
        """Register an authenticated connection, then tell it ``greeting`` (``ready``) and who is online.

        The user's chats are loaded first: if the chat service cannot answer, the error reaches the caller and
        nothing was registered or said. Registering and offering the greeting happen with no ``await`` between
        them, so the greeting is the connection's first frame: no push can come before it. Then the user's
        contacts learn that the user is online (when this is the user's first connection on any node), and the
        connection gets a presence frame for each contact who is online.
        """
        if self._going_away:
            connection.close(CLOSE_GOING_AWAY, "the gateway is shutting down; reconnect")
            return
        chats = await self._fetch_chats(user_id)
        connection.user_id = user_id
        first = user_id not in self._sockets
        self._sockets.setdefault(user_id, set()).add(connection)
        self._all_gone.clear()
        self._remember_chats(user_id, chats)
        connection.offer(greeting)
        contacts = set(chats.values())
        if first:
            came_online = True  # when Redis cannot say, the contacts are told anyway: a state may arrive twice
            async with self._presence_lock:
                if user_id in self._sockets:  # it may have gone while the lock was busy
                    came_online = await self._presence_call(self._presence.node_heartbeat, user_id, default=True)
            if came_online:
                self._publish(PRESENCE, contacts, presence_frame(user_id, online=True))
        try:
            online = await asyncio.to_thread(self._presence.online_among, contacts)
        except redis.RedisError as error:
            logger.warning("cannot read presence for user {}: {}", user_id, error)
            online = set()
        for contact in sorted(online):
            connection.offer(encode(presence_frame(contact, online=True)))

    def disconnect(self, connection: Connection) -> None:
        """Forget a connection; when it was the user's last one here, this node lets go of the user in Redis, and
        if no other node holds a socket of theirs, the user is offline and the contacts are told.

        Not a coroutine on purpose: it runs in the endpoint's ``finally``, often while the endpoint is being
        cancelled, where an ``await`` would be cancelled too and the registry would keep a dead connection. The
        Redis write (and the signal, which waits for its answer) runs in a task of the hub's own.
        """
        user_id = connection.user_id
        connections = self._sockets.get(user_id) if user_id is not None else None
        if user_id is None or connections is None or connection not in connections:
            return
        connections.discard(connection)
        if connections:
            return
        del self._sockets[user_id]
        if not self._sockets:
            self._all_gone.set()
        chats = self._chats_of.pop(user_id, {})
        self._chats_loaded_at.pop(user_id, None)
        task = asyncio.get_running_loop().create_task(self._went_offline(user_id, set(chats.values())))
        self._background.add(task)  # a reference, or the task may be garbage-collected before it runs
        task.add_done_callback(self._background.discard)

    async def _fetch_chats(self, user_id: int) -> dict[int, int]:
        """The user's chats (chat id → other member), asked of the chat service."""
        return {summary.chat_id: summary.other_user_id for summary in await self._chats.list_chats(user_id)}

    def _remember_chats(self, user_id: int, chats: dict[int, int]) -> None:
        """Keep a connected user's chats (typing and read receipts need them); nobody else's."""
        if user_id in self._sockets:
            self._chats_of[user_id] = chats
            self._chats_loaded_at[user_id] = time.monotonic()

    async def other_member(self, user_id: int, chat_id: int, *, known_member: bool = False) -> int | None:
        """The other member of a chat of ``user_id``; None if the user is not a member (or it does not exist).

        Answered from the cache of a connected user's chats. A miss may be a chat opened since, so it asks the
        chat service again, but at most once per CHATS_RELOAD_SECONDS per user: a miss soon after the last ask
        is answered None at once. ``known_member`` (the chat service has just accepted the user in this chat)
        skips that wait: the miss is certainly a new chat, and a reload is worth it.
        """
        chats = self._chats_of.get(user_id)
        if chats is not None and chat_id in chats:
            return chats[chat_id]
        loaded_at = self._chats_loaded_at.get(user_id)
        recently = loaded_at is not None and time.monotonic() - loaded_at < CHATS_RELOAD_SECONDS
        if chats is not None and recently and not known_member:
            return None
        chats = await self._fetch_chats(user_id)
        self._remember_chats(user_id, chats)
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
        """A read receipt: both members' sockets learn the reader's new read mark (REST and WebSocket alike).

        Best effort, and never an error: it runs after the read mark is stored, so the caller's request has
        succeeded. A receipt that cannot be sent (the chat service does not answer who the other member is,
        say) is logged and dropped, like any other ephemeral signal.
        """
        try:
            other = await self.other_member(reader_id, chat_id, known_member=True)
            audience = {reader_id} if other is None else {reader_id, other}
            frame = {"type": "read", "chat_id": chat_id, "user_id": reader_id, "last_read_seq": last_read_seq}
            self._publish(READ, audience, frame)
        except Exception as error:  # a lost receipt must never turn a stored read mark into an error
            logger.warning("user {}: no read receipt for chat {}: {!r}", reader_id, chat_id, error)

    def _publish(self, topic: str, audience: Collection[int], frame: dict[str, Any]) -> None:
        if audience:
            self.signals.publish(new_event(topic, {"audience": sorted(audience), "frame": frame}))

    # Delivery --------------------------------------------------------------------------------------------------

    def _from_broker(self, events: list[Event]) -> None:
        """Runs in a consumer thread: hand a batch of events to the loop, where the registry lives, in ONE hop.
        Never blocks."""
        loop = self._loop
        if loop is not None and not self._stop.is_set():
            loop.call_soon_threadsafe(self.deliver_all, events)

    def deliver_all(self, events: list[Event]) -> None:
        """:meth:`deliver` each event, in order. On the loop. One that fails is logged; the rest still go."""
        for event in events:
            try:
                self.deliver(event)
            except Exception:
                logger.exception(
                    "could not deliver event {} ({}); the clients catch up by seq", event.event_id, event.topic
                )

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
            await self.heartbeat_connected()

    async def heartbeat_connected(self) -> None:
        """One heartbeat for each user connected here now.

        A user who disconnects while the round runs must not be written online again after their offline
        write: each user is checked right before their own write, under the presence lock that the offline
        write takes too. (One pipelined batch would be fewer round trips, but Presence writes one user at a
        time, and the check must come right before each write anyway.)
        """
        for user_id in list(self._sockets):
            async with self._presence_lock:
                if user_id in self._sockets:
                    await self._presence_call(self._presence.node_heartbeat, user_id, default=False)

    async def _went_offline(self, user_id: int, contacts: set[int]) -> None:
        """This node lets go of a user whose last connection here closed (skipped if they came back meanwhile).
        The contacts are told "offline" only if no other node holds a socket of the user."""
        async with self._presence_lock:
            if user_id in self._sockets:
                return
            # When Redis cannot say, the contacts are told anyway (as a node alone always did).
            offline = await self._presence_call(self._presence.node_left, user_id, default=True)
        if offline:
            self._publish(PRESENCE, contacts, presence_frame(user_id, online=False))

    async def _presence_call(self, call: Callable[[int, str], T], user_id: int, *, default: T) -> T:
        """A presence write for this node, off the loop (blocking Redis). A failure is logged and answered with
        ``default``: presence is not worth a crash."""
        try:
            return await asyncio.to_thread(call, user_id, self.node)
        except redis.RedisError as error:
            logger.warning("presence update for user {} failed: {}", user_id, error)
            return default
