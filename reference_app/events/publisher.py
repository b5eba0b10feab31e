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
        # hint: self._channel.basic_publish(exchange=..., routing_key=event.topic, body=encode_event(event), properties=pika.BasicProperties(...)). The channel is in confirm mode (see __init__), so this call waits for the ack.
        # hint: The properties: delivery_mode=DeliveryMode.Persistent (2: written to disk in a durable queue), message_id=str(event.event_id), content_type=CONTENT_TYPE, and type=event.topic if you like.
        # hint: Translate pika's errors into ours, keeping the cause (`raise ... from error`): pika.exceptions.NackError → PublishRefused; the LOST errors → BrokerUnavailable. Name the event id and topic in each message.
        properties = pika.BasicProperties(
            delivery_mode=DeliveryMode.Persistent,
            message_id=str(event.event_id),
            content_type=CONTENT_TYPE,
            type=event.topic,
            timestamp=int(event.occurred_at.timestamp()),
        )
        try:
            self._channel.basic_publish(
                exchange=self._exchange, routing_key=event.topic, body=encode_event(event), properties=properties
            )
        except pika.exceptions.NackError as error:
            raise PublishRefused(
                f"the broker refused (nacked) event {event.event_id} ({event.topic}); it stays unpublished"
            ) from error
        except LOST as error:
            raise BrokerUnavailable(
                f"the connection to the broker broke while publishing event {event.event_id} ({event.topic}): {error!r}"
            ) from error
        # end exercise
