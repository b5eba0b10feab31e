"""Typing, read receipts and presence between gateway nodes: ephemeral events on the events exchange.

User A's socket may be on gateway node 1 and user B's on node 2. When A types, node 1 must tell node 2. The
messages themselves already travel node to node through the broker (the outbox relay publishes them, every
node has its own queue); these *signals* take the same road: node 1 publishes ``signal.typing`` to the events
exchange, and every node's signal queue (bound to ``signal.*``) gets a copy.

Unlike messages, signals are not worth keeping: a typing indicator from a minute ago is wrong, not late. So
they are published non-persistent, without publisher confirms, and dropped (with a log line) when the broker is
down or the local queue of signals waiting to be published is full. Nobody waits for a signal to be published:
``publish`` only puts it in a bounded queue, and a thread of its own, which owns the pika connection, sends it.
When told to stop, that thread first sends what is still queued (if the broker is there), then ends.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pika
from loguru import logger
from pika.delivery_mode import DeliveryMode

from ..events.broker import close_quietly, connect
from ..events.envelope import CONTENT_TYPE, Event, encode_event
from ..events.ports import BrokerUnavailable
from ..events.publisher import LOST
from ..events.reconnect import Backoff, run_with_reconnect
from ..events.topology import declare_events_exchange

SIGNAL_EVENTS = "signal.*"
TYPING = "signal.typing"
READ = "signal.read"
PRESENCE = "signal.presence"

# Signals waiting for the publishing thread. A node that produces more than this while the broker is away
# drops the newest: they would be stale by the time the broker is back.
PENDING_SIGNALS = 1000
POLL_SECONDS = 0.2


class SignalPublisher:
    """Publishes signals from a thread of its own; ``publish`` may be called from any thread and never waits."""

    def __init__(self, rabbitmq_url: str, exchange: str, *, name: str = "gateway-signals-out") -> None:
        self._rabbitmq_url = rabbitmq_url
        self._exchange = exchange
        self._pending: queue.Queue[Event] = queue.Queue(maxsize=PENDING_SIGNALS)
        self.name = name
        self.published = 0
        self.dropped = 0

    def publish(self, event: Event) -> None:
        try:
            self._pending.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            logger.warning("{}: {} signals wait already; dropped a {}", self.name, PENDING_SIGNALS, event.topic)

    def run_forever(self, stop: threading.Event) -> None:
        run_with_reconnect(
            self._open, lambda connection: self._work(connection, stop), stop=stop, backoff=Backoff(), what=self.name
        )

    @contextmanager
    def _open(self) -> Iterator[Any]:
        connection = connect(self._rabbitmq_url, name=self.name)
        try:
            yield connection
        finally:
            close_quietly(connection)

    def _work(self, connection: Any, stop: threading.Event) -> None:
        channel = connection.channel()
        declare_events_exchange(channel, self._exchange)
        while True:
            # Once told to stop, send what is still pending (the offline signals of the last connections,
            # published just before the stop) without waiting for more, then end.
            stopping = stop.is_set()
            try:
                event = self._pending.get(block=not stopping, timeout=None if stopping else POLL_SECONDS)
            except queue.Empty:
                if stopping:
                    return
                # Not idle in a sleep: this answers the broker's heartbeats and notices a closed connection.
                connection.process_data_events(time_limit=0)
                continue
            properties = pika.BasicProperties(
                delivery_mode=DeliveryMode.Transient, content_type=CONTENT_TYPE, message_id=str(event.event_id)
            )
            try:
                channel.basic_publish(
                    exchange=self._exchange, routing_key=event.topic, body=encode_event(event), properties=properties
                )
            except LOST as error:
                self.dropped += 1  # this one is lost; the next session publishes the ones after it
                raise BrokerUnavailable(f"{self.name} lost the broker while publishing a {event.topic}") from error
            self.published += 1
