"""The consuming loop that gateway nodes and the notifier share: connect, declare, consume, reconnect.

Each session opens a connection, declares the topology it needs (so a broker that lost it gets it back), asks
for at most ``prefetch`` unacknowledged messages at a time, and hands every delivery to ``on_delivery``. The
loop waits in ``process_data_events`` with a short time limit and looks at the ``stop`` event in between: so
stopping needs no call into pika from another thread at all.

Messages not yet acknowledged when a connection breaks go back to their queue, and the broker delivers them
again (``redelivered`` set): one more reason why every consumer must be idempotent.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pika.exceptions

from .broker import Delivery, close_quietly, connect
from .reconnect import Backoff, run_with_reconnect

# Declares the queue (and whatever it needs) on a channel, and returns the queue's name.
DeclareQueue = Callable[[Any], str]
DeliveryHandler = Callable[[Delivery], None]
# Takes every delivery that one wait brought, in order: a consumer that can settle them together (one ack for all).
BatchHandler = Callable[[list[Delivery]], None]


class AcksAtTheEnd:
    """The channel as one burst of deliveries sees it: their acks wait for the end of the burst, then go as ONE
    frame (multiple=True); rejections (retry, dead-letter) go at once.

    Every delivery of a burst is settled before the burst ends (the handler runs for each, in order), so one ack of
    the highest acked tag covers exactly the acked ones: a rejected delivery is no longer outstanding, and is not
    acked with them.
    """

    def __init__(self, channel: Any) -> None:
        self._channel = channel
        self._last_acked: int | None = None

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self._last_acked = max(self._last_acked or 0, delivery_tag)

    def basic_reject(self, delivery_tag: int, requeue: bool) -> None:
        self._channel.basic_reject(delivery_tag=delivery_tag, requeue=requeue)

    def flush(self) -> None:
        if self._last_acked is not None:
            self._channel.basic_ack(delivery_tag=self._last_acked, multiple=True)
            self._last_acked = None


class QueueConsumer:
    """Consumes one queue in sessions, until stopped; ``queue`` and ``sessions`` say what it is doing.

    ``ack_in_batches``: ``on_delivery`` still settles each delivery, but the acks of one burst leave together
    (``AcksAtTheEnd``): the notifier's handling is idempotent, so a crash before the frame only means a redelivery.
    """

    def __init__(
        self,
        rabbitmq_url: str,
        *,
        name: str,
        declare: DeclareQueue,
        on_delivery: DeliveryHandler | None = None,
        on_batch: BatchHandler | None = None,
        prefetch: int = 20,
        poll_seconds: float = 0.2,
        backoff: Backoff | None = None,
        ack_in_batches: bool = False,
    ) -> None:
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1; got {prefetch}")
        if (on_delivery is None) == (on_batch is None):
            raise ValueError("give a consumer on_delivery (one at a time) or on_batch (what each wait brought)")
        if ack_in_batches and on_batch is not None:
            raise ValueError("ack_in_batches is for on_delivery: an on_batch handler settles its batch itself")
        self._rabbitmq_url = rabbitmq_url
        self._declare = declare
        self._on_delivery = on_delivery
        self._on_batch = on_batch
        self._ack_in_batches = ack_in_batches
        self._prefetch = prefetch
        self._poll_seconds = poll_seconds
        self._backoff = backoff or Backoff()
        self.name = name
        self.queue: str | None = None  # the queue of the current session
        self.sessions = 0  # sessions that reached the point of consuming: 1, then one more per reconnect
        self.consuming = threading.Event()  # set while a session consumes; cleared when it ends

    def run_forever(self, stop: threading.Event, *, give_up_after: int | None = None) -> None:
        run_with_reconnect(
            self._open,
            lambda connection: self._consume(connection, stop),
            stop=stop,
            backoff=self._backoff,
            what=self.name,
            give_up_after=give_up_after,
        )

    @contextmanager
    def _open(self) -> Iterator[Any]:
        connection = connect(self._rabbitmq_url, name=self.name)
        try:
            yield connection
        finally:
            self.consuming.clear()
            close_quietly(connection)

    def _consume(self, connection: Any, stop: threading.Event) -> None:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=self._prefetch)
        self.queue = self._declare(channel)

        arrived: list[Delivery] = []
        acks = AcksAtTheEnd(channel) if self._ack_in_batches else None

        def deliver(channel: Any, method: Any, properties: Any, body: bytes) -> None:
            delivery = Delivery.from_pika(acks or channel, method, properties, body)
            if self._on_delivery is not None:
                self._on_delivery(delivery)
            else:
                arrived.append(delivery)

        channel.basic_consume(queue=self.queue, on_message_callback=deliver)
        self.sessions += 1
        self.consuming.set()
        while not stop.is_set():
            # Returns as soon as deliveries arrived (or the time is up), after handing each to deliver().
            try:
                connection.process_data_events(time_limit=self._poll_seconds)
            except BaseException:
                if acks is not None:  # a handler raised: what was handled before it stays handled, if we can say so
                    with contextlib.suppress(pika.exceptions.AMQPError):
                        acks.flush()
                raise
            if acks is not None:
                acks.flush()
            if arrived and self._on_batch is not None:
                batch = arrived.copy()
                arrived.clear()
                self._on_batch(batch)
