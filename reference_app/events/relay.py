"""The outbox relay: publish the rows of chat.outbox to RabbitMQ, and mark each one only once it is confirmed.

The chat service writes a message and its event (a row of chat.outbox) in ONE transaction, so the event exists
exactly when the message does, whatever the broker is doing. The relay then moves events from the table to the
broker:

1. lock a small batch of unpublished rows, oldest first (``FOR UPDATE SKIP LOCKED``: rows another relay has
   locked are skipped, not waited for, so two relays never publish the same row at the same time);
2. publish each and wait for its confirm;
3. mark the confirmed rows published, and commit (which releases the locks).

A nack or a broken connection stops the batch: the rows confirmed so far are marked, the rest stay unpublished
and are published in a later round. A crash between 2 and 3 publishes a row twice. Delivery is therefore
*at least once*, and every consumer must be idempotent by event id.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg
from loguru import logger
from psycopg.rows import TupleRow

from .broker import close_quietly, connect
from .envelope import Event
from .ports import EventPublisher, PublishFailed, PublishRefused
from .publisher import RabbitPublisher
from .reconnect import Backoff, run_with_reconnect
from .topology import declare_events_exchange

Connection = psycopg.Connection[TupleRow]

CLAIM_BATCH = """
    SELECT id, event_id, topic, payload, created_at
    FROM chat.outbox
    WHERE published_at IS NULL
    ORDER BY id
    LIMIT %s
    FOR UPDATE SKIP LOCKED
"""
MARK_PUBLISHED = "UPDATE chat.outbox SET published_at = now() WHERE id = ANY(%s)"
# The channel migration 0004's trigger notifies after every insert into chat.outbox.
OUTBOX_CHANNEL = "chat_outbox"


def event_from_row(row: TupleRow) -> Event:
    """An outbox row (id, event_id, topic, payload, created_at) as the event it carries."""
    _, event_id, topic, payload, created_at = row
    return Event(event_id=event_id, topic=topic, payload=payload, occurred_at=created_at)


def relay_batch(db: Connection, publisher: EventPublisher, *, batch_size: int = 50) -> int:
    """Publish one batch of unpublished outbox rows; return how many were confirmed and marked.

    ``db`` must be in autocommit mode: the batch is one transaction of its own, committed here. Raises the
    PublishFailed that stopped the batch, after the rows confirmed before it were marked and committed.
    """
    if not db.autocommit:
        raise ValueError("relay_batch needs a connection in autocommit mode: psycopg.connect(url, autocommit=True)")
    # exercise 10.3: relay one batch: lock, publish, and mark only what the broker confirmed
    # hint: Inside `with db.transaction():` run CLAIM_BATCH with (batch_size,): the rows stay locked until the block ends, so no other relay can take them meanwhile.
    # hint: Publish each row with publisher.publish(event_from_row(row)), in order. Keep the ids that returned (confirmed); on PublishFailed remember the error and stop publishing.
    # hint: Still inside the transaction, run MARK_PUBLISHED with (confirmed_ids,) if there are any. Raise the remembered error only after the with block, or the rollback would unmark the confirmed rows too.
    confirmed: list[int] = []
    failure: PublishFailed | None = None
    with db.transaction():
        for row in db.execute(CLAIM_BATCH, (batch_size,)).fetchall():
            try:
                publisher.publish(event_from_row(row))
            except PublishFailed as error:
                failure = error
                break
            confirmed.append(row[0])
        if confirmed:
            db.execute(MARK_PUBLISHED, (confirmed,))
    if failure is not None:
        raise failure
    return len(confirmed)
    # end exercise


def relay_pending(db: Connection, publisher: EventPublisher, *, batch_size: int = 50) -> int:
    """Publish batch after batch until a batch comes back short: everything committed before the call."""
    total = 0
    while True:
        published = relay_batch(db, publisher, batch_size=batch_size)
        total += published
        if published < batch_size:
            return total


class TracedPublisher:
    """An EventPublisher that logs each confirmed event at DEBUG: one line per event to follow a message by its
    event id (notebook 11). At INFO, the level services run at by default, it costs nothing."""

    def __init__(self, publisher: EventPublisher) -> None:
        self._publisher = publisher

    def publish(self, event: Event) -> None:
        self._publisher.publish(event)
        chat_id, seq = event.payload.get("chat_id"), event.payload.get("seq")
        logger.debug("published {} event {} (chat {}, seq {})", event.topic, event.event_id, chat_id, seq)


class OutboxRelay:
    """The relay as a long-running worker: ``run_forever(stop)`` in a thread of its own."""

    def __init__(
        self,
        postgres_url: str,
        rabbitmq_url: str,
        exchange: str,
        *,
        batch_size: int = 50,
        poll_seconds: float = 0.5,
        backoff: Backoff | None = None,
        name: str = "outbox-relay",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1; got {batch_size}")
        self._postgres_url = postgres_url
        self._rabbitmq_url = rabbitmq_url
        self._exchange = exchange
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._backoff = backoff or Backoff()
        self.name = name
        self.sessions = 0  # how many sessions have started: 1, then one more per reconnect
        self.published = 0  # events confirmed and marked, over all sessions

    def run_forever(self, stop: threading.Event, *, give_up_after: int | None = None) -> None:
        """Relay until ``stop`` is set, reconnecting to PostgreSQL and RabbitMQ whenever either breaks."""
        run_with_reconnect(
            self._open,
            lambda session: self._work(session, stop),
            stop=stop,
            backoff=self._backoff,
            what=self.name,
            give_up_after=give_up_after,
        )

    @contextmanager
    def _open(self) -> Iterator[tuple[Connection, Any]]:
        with ExitStack() as stack:
            db = stack.enter_context(psycopg.connect(self._postgres_url, autocommit=True, connect_timeout=5))
            broker = connect(self._rabbitmq_url, name=self.name)
            stack.callback(close_quietly, broker)
            yield db, broker

    def _work(self, session: tuple[Connection, Any], stop: threading.Event) -> None:
        db, broker = session
        db.execute(f"LISTEN {OUTBOX_CHANNEL}")
        channel = broker.channel()
        declare_events_exchange(channel, self._exchange)
        publisher = TracedPublisher(RabbitPublisher(channel, self._exchange))
        self.sessions += 1
        while not stop.is_set():
            try:
                while not stop.is_set():  # batch after batch, until one comes back short
                    published = relay_batch(db, publisher, batch_size=self._batch_size)
                    self.published += published
                    if published < self._batch_size:
                        break
            except PublishRefused as error:
                logger.warning("{}: {}; trying again in {} s", self.name, error, self._poll_seconds)
                # A full poll interval, not until the next NOTIFY: in a busy chat that comes at once, and the
                # relay would hammer a broker that is refusing with the same rows.
                broker.process_data_events(time_limit=self._poll_seconds)
                continue
            # Answer the broker's heartbeats, and notice at once if it closed the connection.
            broker.process_data_events(time_limit=0)
            wait_for_outbox(db, self._poll_seconds)


def wait_for_outbox(db: Connection, seconds: float) -> None:
    """Sleep until new outbox rows are committed (a NOTIFY on OUTBOX_CHANNEL) or ``seconds`` pass.

    Waking on the notification takes the relay's share of a message's latency from half a poll interval on
    average to about a millisecond; the timeout keeps the poll as a safety net. Notifications that arrived while
    the relay was busy are waiting already, and end the wait at once.
    """
    for _ in db.notifies(timeout=seconds, stop_after=1):
        pass
