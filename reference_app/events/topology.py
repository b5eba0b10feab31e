"""The exchanges, queues and bindings of the messenger's events, each declared idempotently.

Declaring something that already exists with the same settings does nothing, so every process declares what it
uses when it connects, in any order, and a restarted broker (or a deleted queue) is repaired by the next
connection. Declaring it with *different* settings is refused by the broker (PRECONDITION_FAILED): that is a
deployment mistake, and it should stop the process loudly rather than be retried.

    chat.outbox ──relay──▶ exchange "messenger.events" (topic, durable)
                               ├─ message.*       ─▶ one exclusive queue per gateway node ─▶ WebSockets
                               └─ message.created ─▶ "notifier" (durable, quorum) ─▶ notify.notifications
                                                         └─ rejected or failed too often ─▶ "notifier.dead"
"""

from __future__ import annotations

from typing import Any

from ..chat.domain import MESSAGE_CREATED

# Every change to a message, for the gateway nodes: message.created, message.edited, message.deleted, ...
MESSAGE_EVENTS = "message.*"
# A gateway node that falls this far behind drops its oldest events: a client catches up by seq anyway, and a
# slow node must not fill the broker's memory. (drop-head does not nack the publisher; reject-publish would.)
NODE_QUEUE_MAX_LENGTH = 10_000
# The broker's own limit on redeliveries of one notifier message. The consumer gives up earlier, after its
# max_attempts; this limit catches the message that kills the consumer before its code can count.
NOTIFIER_DELIVERY_LIMIT = 10

# pika's channel has no type hints; this alias names what is passed around.
Channel = Any


def declare_events_exchange(channel: Channel, exchange: str) -> None:
    """The topic exchange every domain event is published to. Durable: it survives a broker restart."""
    channel.exchange_declare(exchange=exchange, exchange_type="topic", durable=True)


def declare_node_queue(channel: Channel, exchange: str, binding: str = MESSAGE_EVENTS) -> str:
    """A queue for one gateway node, bound to every message event; returns its name (the broker picks it).

    Exclusive (only this connection may use it) and auto-deleted: when the node goes away, so does its queue.
    Each node has its own queue, so every node gets every event: the exchange copies it into each queue.
    """
    declared = channel.queue_declare(
        queue="", exclusive=True, auto_delete=True, arguments={"x-max-length": NODE_QUEUE_MAX_LENGTH}
    )
    queue = str(declared.method.queue)
    channel.queue_bind(queue=queue, exchange=exchange, routing_key=binding)
    return queue


def dead_letter_name(queue: str) -> str:
    """The dead-letter exchange and queue of a queue: ``notifier`` → ``notifier.dead``."""
    return f"{queue}.dead"


def declare_notifier_queue(channel: Channel, exchange: str, queue: str = "notifier") -> None:
    """The notifier's durable work queue, bound to message.created, and its dead-letter exchange and queue.

    A quorum queue: it is replicated when the broker is a cluster, and it counts the deliveries of each
    message (the ``x-delivery-count`` header), which lets the consumer give up on a message that keeps failing.
    A message rejected without requeue (or delivered more than NOTIFIER_DELIVERY_LIMIT times) moves to the
    dead-letter exchange, whose queue keeps it for a person to look at: it never blocks the work queue.
    """
    dead = dead_letter_name(queue)
    channel.exchange_declare(exchange=dead, exchange_type="fanout", durable=True)
    channel.queue_declare(queue=dead, durable=True)
    channel.queue_bind(queue=dead, exchange=dead)
    channel.queue_declare(
        queue=queue,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": dead,
            "x-delivery-limit": NOTIFIER_DELIVERY_LIMIT,
        },
    )
    channel.queue_bind(queue=queue, exchange=exchange, routing_key=MESSAGE_CREATED)


def delete_notifier_queue(channel: Channel, queue: str = "notifier") -> None:
    """Remove the notifier's queues and dead-letter exchange (tests and notebooks clean up with it)."""
    channel.queue_delete(queue=queue)
    channel.queue_delete(queue=dead_letter_name(queue))
    channel.exchange_delete(exchange=dead_letter_name(queue))
