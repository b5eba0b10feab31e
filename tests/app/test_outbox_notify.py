"""The outbox relay wakes on PostgreSQL's NOTIFY (migration 0004) instead of waiting for its next poll."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator

import pika
import psycopg
import pytest

from reference_app.config import Settings
from reference_app.db import apply_migrations
from reference_app.events.relay import OUTBOX_CHANNEL, OutboxRelay
from workbook.databases import throwaway_database

WAIT_SECONDS = 20.0


@pytest.fixture
def migrated_url(settings: Settings) -> Iterator[str]:
    with throwaway_database(settings.postgres.url, f"notify_test_{uuid.uuid4().hex[:10]}") as url:
        apply_migrations(url)
        yield url


def add_outbox_row(url: str) -> uuid.UUID:
    event_id = uuid.uuid4()
    with psycopg.connect(url) as db:
        db.execute(
            "INSERT INTO chat.outbox (event_id, topic, payload) VALUES (%s, 'message.created', %s)",
            (event_id, json.dumps({"chat_id": 1, "seq": 1})),
        )
    return event_id


def test_a_committed_outbox_row_notifies_and_an_uncommitted_one_does_not(migrated_url: str) -> None:
    with psycopg.connect(migrated_url, autocommit=True) as listener, psycopg.connect(migrated_url) as writer:
        listener.execute(f"LISTEN {OUTBOX_CHANNEL}")
        writer.execute(
            "INSERT INTO chat.outbox (event_id, topic, payload) VALUES (%s, 'message.created', '{}')", (uuid.uuid4(),)
        )
        assert list(listener.notifies(timeout=0.5, stop_after=1)) == [], "NOTIFY must wait for the commit"
        writer.commit()
        heard = list(listener.notifies(timeout=WAIT_SECONDS, stop_after=1))
        assert [notify.channel for notify in heard] == [OUTBOX_CHANNEL], "a committed insert notifies the relay"


def test_the_relay_publishes_a_new_row_long_before_its_next_poll(migrated_url: str, settings: Settings) -> None:
    exchange = f"notify_test.{uuid.uuid4().hex[:10]}"
    connection = pika.BlockingConnection(pika.URLParameters(settings.rabbitmq.url))
    channel = connection.channel()
    channel.exchange_declare(exchange=exchange, exchange_type="topic", durable=True)
    queue = channel.queue_declare(queue="", exclusive=True).method.queue
    channel.queue_bind(queue=queue, exchange=exchange, routing_key="#")
    # A poll every 10 minutes: only the notification can make the relay publish within the wait below.
    relay = OutboxRelay(migrated_url, settings.rabbitmq.url, exchange, poll_seconds=600, name="notify-test-relay")
    stop = threading.Event()
    thread = threading.Thread(target=relay.run_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while relay.sessions == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert relay.sessions == 1, "the relay did not connect"
        time.sleep(0.5)  # past its first pass: now it waits
        event_id = add_outbox_row(migrated_url)
        body = None
        while body is None and time.monotonic() < deadline:
            _, _, body = channel.basic_get(queue=queue, auto_ack=True)
            time.sleep(0.05)
        assert body is not None, f"the relay did not publish a new row within {WAIT_SECONDS:.0f} s: is it listening?"
        assert json.loads(body)["event_id"] == str(event_id)
    finally:
        stop.set()
        add_outbox_row(migrated_url)  # a notification wakes it to see the stop (its poll is 10 minutes away)
        thread.join(timeout=WAIT_SECONDS)
        channel.exchange_delete(exchange=exchange)
        connection.close()
