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
        # hint: decode_event(delivery.body) first: a MalformedEvent can never succeed, so delivery.dead_letter() at once and return. Then self._handle(event); success → delivery.ack().
        # hint: From the handler, an EventRefused (an unknown chat, a payload without its fields) can never succeed either: dead_letter() at once, without trying again.
        # hint: A TRANSIENT_ERRORS exception (the database is down) is not the event's fault: delivery.retry(), then re-raise so the reconnect loop backs off.
        # hint: Any other exception from the handler is a failed attempt. This was attempt delivery.delivery_count + 1: when that reaches self.max_attempts, dead_letter(); otherwise retry(). Log each case (logger.warning / logger.error) with the error.
        try:
            event = decode_event(delivery.body)
        except MalformedEvent as error:
            logger.error("{}: dead-lettering a malformed message on {}: {}", self.name, delivery.routing_key, error)
            delivery.dead_letter()
            return
        try:
            self._handle(event)
        except EventRefused as error:
            logger.error("{}: dead-lettering event {}: {}", self.name, event.event_id, error)
            delivery.dead_letter()
            return
        except TRANSIENT_ERRORS:
            # The database (not the event) is failing: hand the event back and let the reconnect loop back off,
            # so a short outage does not spend every attempt in a few milliseconds and dead-letter good events.
            delivery.retry()
            raise
        except Exception as error:
            attempt = delivery.delivery_count + 1
            if attempt >= self.max_attempts:
                logger.error(
                    "{}: event {} failed {} times ({!r}); dead-lettering", self.name, event.event_id, attempt, error
                )
                delivery.dead_letter()
            else:
                logger.warning(
                    "{}: event {} failed on attempt {} ({!r}); it comes again",
                    self.name,
                    event.event_id,
                    attempt,
                    error,
                )
                delivery.retry()
            return
        delivery.ack()
        # end exercise
