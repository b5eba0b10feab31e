"""The notifier as a RabbitMQ consumer: every delivery ends acked, retried, or dead-lettered.

The queue is shared work: one notifier or ten, each message is handled by one of them. Three outcomes:

- **ack**: handled (or nothing to do). Handling twice is harmless, since the use case is idempotent.
- **retry** (reject with requeue): it failed, perhaps for a passing reason (the database restarting). The
  quorum queue counts deliveries in the ``x-delivery-count`` header, so the consumer knows how often it tried.
- **dead-letter** (reject without requeue): it can never work (a malformed body, an unknown chat), or it failed
  ``max_attempts`` times. The broker moves it to ``notifier.dead``, where a person can look at it, and the
  queue moves on. A poison message must never hold the queue up, nor go round it forever.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loguru import logger

from .broker import Delivery
from .consumer import QueueConsumer
from .envelope import Event, EventRefused, MalformedEvent, decode_event
from .reconnect import TRANSIENT_ERRORS, Backoff
from .topology import NOTIFIER_DELIVERY_LIMIT, declare_events_exchange, declare_notifier_queue

# The use case, as the consumer sees it: Notifier.handle, or a stand-in.
HandleEvent = Callable[[Event], object]


class NotifierConsumer(QueueConsumer):
    def __init__(
        self,
        rabbitmq_url: str,
        exchange: str,
        handle: HandleEvent,
        *,
        queue: str = "notifier",
        max_attempts: int = 5,
        name: str = "notifier",
        prefetch: int = 20,
        backoff: Backoff | None = None,
    ) -> None:
        if not 1 <= max_attempts <= NOTIFIER_DELIVERY_LIMIT:
            raise ValueError(
                f"max_attempts must be between 1 and the queue's delivery limit {NOTIFIER_DELIVERY_LIMIT}; got {max_attempts}"
            )
        self._exchange = exchange
        self._queue_name = queue
        self._handle = handle
        self.max_attempts = max_attempts
        self.settled = 0  # deliveries settled (acked, retried or dead-lettered) since start
        super().__init__(
            rabbitmq_url, name=name, declare=self._declare_queue, on_delivery=self._settle_and_count,
            prefetch=prefetch, backoff=backoff, ack_in_batches=True,
        )  # fmt: skip

    def _declare_queue(self, channel: Any) -> str:
        declare_events_exchange(channel, self._exchange)
        declare_notifier_queue(channel, self._exchange, self._queue_name)
        return self._queue_name

    def _settle_and_count(self, delivery: Delivery) -> None:
        self.settle(delivery)
        self.settled += 1

    def settle(self, delivery: Delivery) -> None:
        """Decode and handle one delivery, then ack it, retry it, or dead-letter it: exactly one of the three."""
        # exercise 10.6: settle a delivery: ack, retry, or dead-letter
        raise NotImplementedError("exercise 10.6 is yours to write: see notebooks/10_rabbitmq.ipynb, section 'Exercise 10.6'. Stuck? python -m workbook hint 10.6")
        # end exercise
