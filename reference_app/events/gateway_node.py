"""One gateway node's subscription to the message events: fan-out to every node.

A user's WebSocket is connected to one gateway node, and the other member of the chat may be connected to any
other. So every node must see every message event and push it to the sockets it holds. Each node declares its
own exclusive queue bound to ``message.*``; the topic exchange puts a copy of each event into every such queue.

The queue lives only as long as the node's connection. After a reconnect the node has a new, empty queue: what
was published in between is not in it. That is acceptable here because a WebSocket client that reconnects (or
sees a gap in seq) asks the chat service for everything after its last seq. The events are a push, not the
record: the record is PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loguru import logger

from .broker import Delivery
from .consumer import QueueConsumer
from .envelope import Event, MalformedEvent, decode_event
from .reconnect import Backoff
from .topology import MESSAGE_EVENTS, declare_events_exchange, declare_node_queue

EventHandler = Callable[[Event], None]
EventsHandler = Callable[[list[Event]], None]


class GatewayNode(QueueConsumer):
    """Hands every message event to ``on_event`` (later: the WebSocket registry), then acks it.

    ``on_event`` runs in the consumer's thread. An asyncio registry must hop to its own loop from there, with
    ``loop.call_soon_threadsafe``; it must not block, or the node falls behind.

    **In batches.** Events arrive in bursts, and each hop to the loop and each ack costs the same for one event as
    for fifty. With ``on_events`` instead, the node hands over everything one wait on the broker brought, in
    order, in ONE call, and acks it with ONE frame (``multiple=True``). The gateway's hub uses that.
    """

    def __init__(
        self,
        rabbitmq_url: str,
        exchange: str,
        on_event: EventHandler | None = None,
        *,
        on_events: EventsHandler | None = None,
        name: str = "gateway-node",
        binding: str = MESSAGE_EVENTS,
        prefetch: int = 100,
        backoff: Backoff | None = None,
    ) -> None:
        if (on_event is None) == (on_events is None):
            raise ValueError("give a gateway node on_event (one event at a time) or on_events (a batch at a time)")
        self._exchange = exchange
        self._binding = binding
        self._on_event = on_event
        self._on_events = on_events
        super().__init__(
            rabbitmq_url, name=name, declare=self._declare_queue,
            on_delivery=self._deliver if on_event is not None else None,
            on_batch=self._deliver_batch if on_events is not None else None,
            prefetch=prefetch, backoff=backoff,
        )  # fmt: skip

    def _declare_queue(self, channel: Any) -> str:
        declare_events_exchange(channel, self._exchange)
        return declare_node_queue(channel, self._exchange, self._binding)

    def _decoded(self, delivery: Delivery) -> Event | None:
        """The delivery's event; None after dropping a malformed one (a node queue has no dead-letter exchange)."""
        try:
            event = decode_event(delivery.body)
        except MalformedEvent as error:
            logger.warning("{} dropped a malformed event on {}: {}", self.name, delivery.routing_key, error)
            delivery.dead_letter()
            return None
        logger.debug(
            "{} received {} event {} (chat {}, seq {})",
            self.name, event.topic, event.event_id, event.payload.get("chat_id"), event.payload.get("seq"),
        )  # fmt: skip
        return event

    def _deliver_batch(self, deliveries: list[Delivery]) -> None:
        assert self._on_events is not None
        decoded = [(delivery, self._decoded(delivery)) for delivery in deliveries]
        events = [event for _, event in decoded if event is not None]
        if not events:
            return  # every one was malformed, and rejected already
        try:
            self._on_events(events)
        except Exception:
            logger.exception("{} could not hand {} events over; dropped", self.name, len(events))
        # Settled either way (see _deliver): one frame acks every outstanding delivery up to the last good one.
        # (A malformed one was rejected already: it is no longer outstanding, and must not be acked again.)
        last_good = next(delivery for delivery, event in reversed(decoded) if event is not None)
        last_good.ack_up_to_here()

    def _deliver(self, delivery: Delivery) -> None:
        assert self._on_event is not None
        event = self._decoded(delivery)
        if event is None:
            return
        try:
            self._on_event(event)
        except Exception:
            # Requeueing would hand the same event to the same failing callback, forever. Drop it and say so:
            # the client catches up by seq.
            logger.exception("{} could not hand event {} ({}) over; dropped", self.name, event.event_id, event.topic)
            delivery.dead_letter()
            return
        delivery.ack()
