"""Connecting to RabbitMQ with pika, and one delivered message as a small object.

pika's rules shape everything in this package:

- a connection (and its channels) belongs to ONE thread; the only call another thread may make is
  ``connection.add_callback_threadsafe(fn)``, which asks the owning thread to run ``fn``;
- it never reconnects by itself: a closed connection stays closed (see ``reconnect.py``);
- a ``BlockingConnection`` does network I/O only inside its own calls. Between them nothing answers the
  broker's heartbeats, so an idle loop waits in ``process_data_events(time_limit=...)``, never in ``sleep``.

So each relay and consumer owns one connection, opened and used in its own thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
from loguru import logger

# A publish blocked by the broker (memory or disk alarm) fails after this long instead of hanging forever.
BLOCKED_CONNECTION_TIMEOUT_SECONDS = 30
HEARTBEAT_SECONDS = 30


def connect(url: str, *, name: str) -> Any:
    """A new BlockingConnection to ``url``, named so that ``rabbitmqctl list_connections`` shows who it is.

    One attempt only: retrying with a backoff is the caller's job (``run_with_reconnect``), which can also stop.
    """
    parameters = pika.URLParameters(url)
    parameters.connection_attempts = 1
    parameters.heartbeat = HEARTBEAT_SECONDS
    parameters.blocked_connection_timeout = BLOCKED_CONNECTION_TIMEOUT_SECONDS
    parameters.client_properties = {"connection_name": name}
    return pika.BlockingConnection(parameters)


def close_quietly(connection: Any) -> None:
    """Close a connection that may already be closed (by the broker, or by a broken network)."""
    try:
        if connection.is_open:
            connection.close()
    except pika.exceptions.AMQPError as error:  # closing a half-dead connection is not worth a crash
        logger.debug("closing a RabbitMQ connection failed: {}", error)


@dataclass(frozen=True)
class Delivery:
    """One message handed to a consumer, and the three ways to settle it on the channel it came from."""

    channel: Any
    delivery_tag: int
    routing_key: str
    body: bytes
    headers: Mapping[str, Any]
    redelivered: bool

    @classmethod
    def from_pika(cls, channel: Any, method: Any, properties: Any, body: bytes) -> Delivery:
        return cls(
            channel=channel,
            delivery_tag=int(method.delivery_tag),
            routing_key=str(method.routing_key),
            body=body,
            headers=dict(properties.headers or {}),
            redelivered=bool(method.redelivered),
        )

    @property
    def delivery_count(self) -> int:
        """How many times the broker delivered this message before (a quorum queue counts; 0 elsewhere)."""
        count = self.headers.get("x-delivery-count", 0)
        return count if isinstance(count, int) else 0

    def ack(self) -> None:
        """Done: the broker forgets the message."""
        self.channel.basic_ack(delivery_tag=self.delivery_tag)

    def ack_up_to_here(self) -> None:
        """Done, with every delivery before it on this channel: one ack frame for a whole batch (multiple=True)."""
        self.channel.basic_ack(delivery_tag=self.delivery_tag, multiple=True)

    def retry(self) -> None:
        """Not done: the broker delivers the message again (to this or another consumer)."""
        self.channel.basic_reject(delivery_tag=self.delivery_tag, requeue=True)

    def dead_letter(self) -> None:
        """Never doable: the broker moves the message to the queue's dead-letter exchange (or drops it if none)."""
        self.channel.basic_reject(delivery_tag=self.delivery_tag, requeue=False)
