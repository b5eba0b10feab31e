"""Publishing an event to RabbitMQ and knowing that the broker has it: publisher confirms.

``basic_publish`` on its own only writes bytes to a socket. If the broker crashes a moment later, or refuses
the message, the publisher never hears of it. With confirms switched on for the channel, the broker answers
every publish with an *ack* (it has the message, and for a persistent message routed to durable queues, on
disk) or a *nack* (it does not). pika's BlockingChannel waits for that answer inside ``basic_publish``: it
returns on an ack and raises ``NackError`` on a nack.

Only after the ack may the outbox row be marked published. That is the whole point of the relay.
"""

from __future__ import annotations

from typing import Any

import pika
import pika.exceptions
from pika.delivery_mode import DeliveryMode

from .envelope import CONTENT_TYPE, Event, encode_event
from .ports import BrokerUnavailable, PublishRefused

# pika errors that mean the channel or the connection is gone: nothing published on it can be confirmed now.
LOST = (pika.exceptions.AMQPConnectionError, pika.exceptions.ChannelClosed, pika.exceptions.ChannelWrongStateError)


class RabbitPublisher:
    """Publishes events to one exchange on one channel, and waits for each confirm. Owns its channel."""

    def __init__(self, channel: Any, exchange: str) -> None:
        self._channel = channel
        self._exchange = exchange
        # From now on the broker acks or nacks every message published on this channel.
        channel.confirm_delivery()

    def publish(self, event: Event) -> None:
        """Publish one event, persistent, and return once the broker has confirmed it.

        Raises PublishRefused on a nack and BrokerUnavailable when the connection or channel is lost: in both
        cases the event may or may not have reached a queue, so it must be published again (at least once).
        """
        # exercise 10.2: publish one persistent event and wait for the broker's confirm
        raise NotImplementedError("exercise 10.2 is yours to write: see notebooks/10_rabbitmq.ipynb, section 'Exercise 10.2'. Stuck? python -m workbook hint 10.2")
        # end exercise
