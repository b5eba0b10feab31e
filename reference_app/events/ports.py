"""What the relay and the notifier need from the world, with no word about pika, psycopg or Redis.

The use cases (``relay.py``, ``notifications.py``) depend on these protocols; the adapters (``publisher.py``,
``notifications_pg.py``, the gateway's ``Presence``) are the real ones, and a test may hand in its own.
"""

from __future__ import annotations

from typing import Protocol

from .envelope import Event
from .notifications import NewNotification, Notification


class PublishFailed(Exception):
    """An event was not confirmed by the broker. It must stay in the outbox, to be published again later."""


class PublishRefused(PublishFailed):
    """The broker answered with a nack: it did not take responsibility for the event (a full queue, an error)."""


class BrokerUnavailable(PublishFailed):
    """The connection or channel is gone, so no confirm can arrive: reconnect, then publish again."""


class EventPublisher(Protocol):
    def publish(self, event: Event) -> None:
        """Return only once the broker has confirmed the event; raise PublishFailed otherwise."""
        ...


class ChatMembers(Protocol):
    def members(self, chat_id: int) -> tuple[int, int] | None:
        """The two members of a private chat, or None if there is no such chat."""
        ...


class OnlineCheck(Protocol):
    def is_online(self, user_id: int) -> bool: ...


class NotificationStore(Protocol):
    def record(self, notification: NewNotification) -> bool:
        """Store it unless this user already has one for this event; True when it was stored now."""
        ...

    def list_for(self, user_id: int, *, limit: int = 20) -> list[Notification]: ...
