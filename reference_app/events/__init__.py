"""Stage 10: the messenger's events over RabbitMQ.

``envelope`` is the event and its JSON form; ``topology`` the exchange, queues and bindings; ``publisher``
publishes with confirms; ``relay`` moves chat.outbox to the broker; ``gateway_node`` fans events out to every
gateway node; ``notifier`` (the use case) and ``notifier_consumer`` record notifications for offline users;
``reconnect`` keeps each worker alive across broken connections. Everything pika-specific stays in
``broker``, ``publisher``, ``consumer`` and the two consumers.
"""

from .envelope import Event, EventRefused, MalformedEvent, decode_event, encode_event, new_event

__all__ = ["Event", "EventRefused", "MalformedEvent", "decode_event", "encode_event", "new_event"]
