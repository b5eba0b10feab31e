"""The message path's batching, without a broker or a database: each saving keeps what the slow path promised.

- the notifier reads a chat's members from the event (the chat service puts them there) instead of asking
  PostgreSQL for every message; an event without them is still looked up;
- a gateway node hands a burst of events to the hub in one call and acks them with one frame (multiple=True),
  while a malformed event in the burst is still rejected on its own and never acked.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from reference_app.events.broker import Delivery
from reference_app.events.consumer import AcksAtTheEnd
from reference_app.events.envelope import Event, encode_event
from reference_app.events.gateway_node import GatewayNode
from reference_app.events.notifications import NewNotification, Notification
from reference_app.events.notifier import Notifier

ADA, LINUS = 11, 12


def created(chat_id: int = 7, *, members: list[int] | None = None) -> Event:
    payload: dict[str, Any] = {"chat_id": chat_id, "seq": 1, "sender_id": ADA, "body": "hello"}
    if members is not None:
        payload["members"] = members
    return Event(event_id=uuid.uuid4(), topic="message.created", payload=payload, occurred_at=datetime.now(UTC))


class CountingMembers:
    def __init__(self) -> None:
        self.asked = 0

    def members(self, chat_id: int) -> tuple[int, int] | None:
        self.asked += 1
        return (ADA, LINUS)


class Offline:
    def is_online(self, user_id: int) -> bool:
        return False


class Kept:
    def __init__(self) -> None:
        self.kept: list[NewNotification] = []

    def record(self, notification: NewNotification) -> bool:
        self.kept.append(notification)
        return True

    def list_for(self, user_id: int, *, limit: int = 20) -> list[Notification]:
        return []


def test_the_notifier_takes_the_members_from_the_event_without_a_query() -> None:
    members, kept = CountingMembers(), Kept()
    notifier = Notifier(members, Offline(), kept)
    notified = notifier.handle(created(members=[ADA, LINUS]))
    assert notified is not None and notified.user_id == LINUS, "the recipient is the member who did not send"
    assert members.asked == 0, "the event named the members: no query"


def test_an_event_without_members_is_still_looked_up() -> None:
    members = CountingMembers()
    notified = Notifier(members, Offline(), Kept()).handle(created())
    assert notified is not None and notified.user_id == LINUS
    assert members.asked == 1


@pytest.mark.parametrize("broken", [[ADA], [ADA, "12"], [ADA, True], [ADA, 0], "11,12"])
def test_members_that_are_not_two_ids_are_looked_up_instead(broken: Any) -> None:
    members = CountingMembers()
    Notifier(members, Offline(), Kept()).handle(created(members=broken))
    assert members.asked == 1, f"a payload's members {broken!r} must not be believed"


class Channel:
    """What a consumer does to the broker's channel, written down."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, bool]] = []

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self.calls.append(("ack", delivery_tag, multiple))

    def basic_reject(self, delivery_tag: int, requeue: bool) -> None:
        self.calls.append(("reject", delivery_tag, requeue))


def delivery(channel: Channel, tag: int, body: bytes) -> Delivery:
    return Delivery(channel, tag, "message.created", body, {}, False)


def test_a_burst_is_handed_over_in_one_call_and_acked_with_one_frame() -> None:
    handed: list[list[Event]] = []
    node = GatewayNode("amqp://unused", "x", on_events=handed.append)
    channel = Channel()
    events = [created(chat_id=n) for n in (1, 2, 3)]
    node._deliver_batch([delivery(channel, tag, encode_event(event)) for tag, event in enumerate(events, start=1)])
    assert [[event.event_id for event in batch] for batch in handed] == [[event.event_id for event in events]]
    assert channel.calls == [("ack", 3, True)], "one ack for all three"


def test_a_malformed_event_in_a_burst_is_rejected_alone_and_never_acked() -> None:
    handed: list[list[Event]] = []
    node = GatewayNode("amqp://unused", "x", on_events=handed.append)
    channel = Channel()
    good = created()
    node._deliver_batch([delivery(channel, 1, encode_event(good)), delivery(channel, 2, b"not json")])
    assert [event.event_id for event in handed[0]] == [good.event_id]
    assert channel.calls == [("reject", 2, False), ("ack", 1, True)], (
        "the malformed one is rejected; the ack covers only up to the last good one (acking 2 again would close"
        " the channel)"
    )


def test_a_node_takes_one_handler_or_the_other() -> None:
    with pytest.raises(ValueError):
        GatewayNode("amqp://unused", "x")
    with pytest.raises(ValueError):
        GatewayNode("amqp://unused", "x", print, on_events=print)


def test_a_bursts_acks_leave_as_one_frame_after_its_rejections() -> None:
    channel = Channel()
    acks = AcksAtTheEnd(channel)
    for tag, settle in ((1, "ack"), (2, "retry"), (3, "ack"), (4, "dead"), (5, "ack")):
        seen = delivery(acks, tag, b"{}")  # type: ignore[arg-type]
        {"ack": seen.ack, "retry": seen.retry, "dead": seen.dead_letter}[settle]()
    assert channel.calls == [("reject", 2, True), ("reject", 4, False)], "rejections go at once, acks wait"
    acks.flush()
    assert channel.calls[-1] == ("ack", 5, True), "one frame acks 1, 3 and 5 (2 and 4 are no longer outstanding)"
    acks.flush()
    assert len(channel.calls) == 3, "nothing more to ack: no second frame"
