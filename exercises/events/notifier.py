"""The notifier's use case: a message was created; if its recipient is offline, record a notification.

It depends only on ports: who is in a chat (``ChatMembers``), who is online (``OnlineCheck``, the gateway's
Presence in Redis), and where notifications are kept (``NotificationStore``). Delivery is at least once, so
the same event may arrive twice: the store records a notification once per user and event, which makes
handling an event twice the same as handling it once.
"""

from __future__ import annotations

from ..chat.domain import MESSAGE_CREATED
from .envelope import Event
from .notifications import CreatedMessage, NewNotification, UnknownChat, preview_of, recipient_of
from .ports import ChatMembers, NotificationStore, OnlineCheck


class Notifier:
    def __init__(self, chats: ChatMembers, presence: OnlineCheck, notifications: NotificationStore) -> None:
        self._chats = chats
        self._presence = presence
        self._notifications = notifications

    def handle(self, event: Event) -> NewNotification | None:
        """Record a notification for the recipient of a new message if they are offline; return it if recorded.

        Other topics are none of the notifier's business (None). Raises EventRefused for an event that can never
        be handled: a payload without its fields, a chat that does not exist.
        """
        if event.topic != MESSAGE_CREATED:
            return None
        message = CreatedMessage.from_payload(event.payload)
        # The event names the members (one query less per message); an older event without them is looked up.
        members = message.members or self._chats.members(message.chat_id)
        if members is None:
            raise UnknownChat(f"event {event.event_id} is about chat {message.chat_id}, which does not exist")
        recipient = recipient_of(members, message.sender_id, message.chat_id)
        # Presence is read now, not when the message was sent. An event that waited in the queue while the
        # recipient came online gives no notification: they will see the message itself.
        if self._presence.is_online(recipient):
            return None
        notification = NewNotification(
            user_id=recipient,
            event_id=event.event_id,
            chat_id=message.chat_id,
            seq=message.seq,
            preview=preview_of(message.body),
        )
        return notification if self._notifications.record(notification) else None
