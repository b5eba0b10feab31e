"""Stage 10 — RabbitMQ. These tests grade the exercises of stage 10 in whichever app root is mounted as `app`.

Every test runs against the real RabbitMQ, with an exchange and queues named for that test alone (deleted
afterwards), a freshly migrated PostgreSQL database, and Redis under a key prefix of its own. Workers (the
relay, the consumers) run in threads of their own, each with its own connections, and every wait is bounded.
"""

import json
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import psycopg
import pytest
import redis
from app.chat.domain import MESSAGE_CREATED, MESSAGE_EDITED
from app.config import load_settings
from app.config.settings import mask_url_password
from app.events.broker import close_quietly, connect
from app.events.envelope import Event, MalformedEvent, decode_event, encode_event, new_event
from app.events.gateway_node import GatewayNode
from app.events.notifications import NewNotification, UnknownChat
from app.events.notifications_pg import PostgresChatMembers, PostgresNotifications, open_pool
from app.events.notifier import Notifier
from app.events.notifier_consumer import NotifierConsumer
from app.events.ports import BrokerUnavailable, PublishRefused
from app.events.publisher import RabbitPublisher
from app.events.reconnect import Backoff, run_with_reconnect
from app.events.relay import OutboxRelay, relay_batch, relay_pending
from app.events.topology import declare_events_exchange, delete_notifier_queue
from app.gateway.presence import Presence

exercise = pytest.mark.exercise
FIX = "Fix: python -m workbook services up"
WAIT_SECONDS = 10.0  # the longest a test waits for something to happen; a bound, not a speed requirement
REPO_ROOT = Path(__file__).resolve().parents[2]


# Fixtures ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rabbitmq_url() -> str:
    url = load_settings().rabbitmq.url
    try:
        close_quietly(connect(url, name="stage10-probe"))
    except pika.exceptions.AMQPError as error:
        pytest.fail(f"RabbitMQ does not answer at {mask_url_password(url)}: {error!r}. {FIX}")
    return url


class Broker:
    """The test's own view of RabbitMQ: names for this test alone, a connection to look and clean with."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = f"stage10.{uuid.uuid4().hex[:10]}"
        self.exchange = f"{self.prefix}.events"
        self.notifier_queue = f"{self.prefix}.notifier"
        self.queues: list[str] = []
        self._connection: Any = None
        self._channel: Any = None

    @property
    def channel(self) -> Any:
        """A channel on the test's connection, opened again if the broker closed it."""
        if self._connection is None or not self._connection.is_open:
            self._connection = connect(self.url, name=f"{self.prefix}-test")
            self._channel = None
        if self._channel is None or not self._channel.is_open:
            self._channel = self._connection.channel()
        return self._channel

    def declare_exchange(self) -> None:
        declare_events_exchange(self.channel, self.exchange)

    def queue(self, suffix: str, binding: str = "#", arguments: dict[str, Any] | None = None) -> str:
        """A queue of this test, bound to its exchange, deleted after the test."""
        name = f"{self.prefix}.{suffix}"
        self.declare_exchange()
        self.channel.queue_declare(queue=name, arguments=arguments)
        self.channel.queue_bind(queue=name, exchange=self.exchange, routing_key=binding)
        self.queues.append(name)
        return name

    def drain(self, queue: str, count: int) -> list[tuple[Any, Any, bytes]]:
        """Take messages from a queue until there are `count` of them or WAIT_SECONDS have passed."""
        got: list[tuple[Any, Any, bytes]] = []
        deadline = time.monotonic() + WAIT_SECONDS
        while len(got) < count and time.monotonic() < deadline:
            method, properties, body = self.channel.basic_get(queue=queue, auto_ack=True)
            if method is None:
                time.sleep(0.05)
            else:
                got.append((method, properties, body))
        return got

    def take_all(self, queue: str) -> list[tuple[Any, Any, bytes]]:
        """Take every message waiting in a queue now, without waiting for more."""
        got: list[tuple[Any, Any, bytes]] = []
        while True:
            method, properties, body = self.channel.basic_get(queue=queue, auto_ack=True)
            if method is None:
                return got
            got.append((method, properties, body))

    def waiting_in(self, queue: str) -> int:
        """How many messages wait (ready, not being handled) in a queue."""
        return int(self.channel.queue_declare(queue=queue, passive=True).method.message_count)

    def cleanup(self) -> None:
        channel = self.channel
        for queue in self.queues:
            channel.queue_delete(queue=queue)
        delete_notifier_queue(channel, self.notifier_queue)
        channel.exchange_delete(exchange=self.exchange)
        close_quietly(self._connection)


@pytest.fixture
def broker(rabbitmq_url: str) -> Iterator[Broker]:
    broker = Broker(rabbitmq_url)
    yield broker
    broker.cleanup()


@pytest.fixture
def db(postgres_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def presence() -> Iterator[Presence]:
    url = load_settings().redis.url
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as error:
        pytest.fail(f"Redis does not answer at {mask_url_password(url)}: {error}. {FIX}")
    prefix = f"stage10:{uuid.uuid4().hex[:12]}:"
    yield Presence(client, ttl_seconds=60, prefix=prefix)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


# Data --------------------------------------------------------------------------------------------------------


def add_chat(db: psycopg.Connection[Any], user_low: int, user_high: int) -> int:
    row = db.execute(
        "INSERT INTO chat.private_chats (user_low, user_high) VALUES (%s, %s) RETURNING id", (user_low, user_high)
    ).fetchone()
    assert row is not None
    return int(row[0])


def message_payload(chat_id: int, seq: int, sender_id: int, body: str) -> dict[str, Any]:
    """What the chat service writes for message.created."""
    return {
        "chat_id": chat_id,
        "seq": seq,
        "sender_id": sender_id,
        "body": body,
        "client_message_id": str(uuid.uuid4()),
        "created_at": datetime.now(UTC).isoformat(),
    }


def add_outbox_row(
    db: psycopg.Connection[Any], chat_id: int, seq: int, *, sender_id: int = 1, topic: str = MESSAGE_CREATED
) -> uuid.UUID:
    """One event in chat.outbox, as the chat service writes it with a message; returns its event id."""
    event_id = uuid.uuid4()
    payload = message_payload(chat_id, seq, sender_id, f"message {seq}")
    db.execute(
        "INSERT INTO chat.outbox (event_id, topic, payload) VALUES (%s, %s, %s)",
        (event_id, topic, json.dumps(payload)),
    )
    return event_id


def unpublished(db: psycopg.Connection[Any]) -> list[uuid.UUID]:
    rows = db.execute("SELECT event_id FROM chat.outbox WHERE published_at IS NULL ORDER BY id").fetchall()
    return [row[0] for row in rows]


def notification_count(db: psycopg.Connection[Any]) -> int:
    row = db.execute("SELECT count(*) FROM notify.notifications").fetchone()
    assert row is not None
    return int(row[0])


def created_event(chat_id: int, seq: int, sender_id: int, body: str = "hello") -> Event:
    return new_event(MESSAGE_CREATED, message_payload(chat_id, seq, sender_id, body))


def event_ids(messages: list[tuple[Any, Any, bytes]]) -> list[uuid.UUID]:
    return [decode_event(body).event_id for _, _, body in messages]


# Threads -----------------------------------------------------------------------------------------------------


class Background:
    """Run a call in a thread; join() gives its result or raises what it raised."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self.result = call()
        except BaseException as error:
            self.error = error

    def check(self) -> None:
        """Raise what the call raised, if it has."""
        if self.error is not None:
            raise self.error

    def join(self, what: str, seconds: float = WAIT_SECONDS) -> Any:
        self.thread.join(timeout=seconds)
        if self.thread.is_alive():
            pytest.fail(f"{what} did not finish within {seconds:.0f} s")
        if self.error is not None:
            raise self.error
        return self.result


class Worker(Background):
    """A `run_forever(stop)` in a thread of its own, with the stop event that ends it."""

    def __init__(self, run_forever: Callable[[threading.Event], None], what: str) -> None:
        self.stop_event = threading.Event()
        self.what = what
        super().__init__(lambda: run_forever(self.stop_event))

    def check(self) -> None:
        """Raise what the worker raised, if it died; fail if it returned without being stopped."""
        super().check()
        if not self.thread.is_alive() and not self.stop_event.is_set():
            pytest.fail(f"{self.what} returned on its own; run_forever must run until its stop event is set")

    def stop(self) -> None:
        self.stop_event.set()
        self.join(f"{self.what}, asked to stop,")


def wait_until(condition: Callable[[], bool], what: str, workers: tuple[Background, ...] = ()) -> None:
    """Poll until the condition holds; fail (or raise what a worker raised) if it does not within WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        for worker in workers:
            worker.check()
        if condition():
            return
        time.sleep(0.05)
    for worker in workers:
        worker.check()
    if not condition():
        pytest.fail(f"{what}: still not so after {WAIT_SECONDS:.0f} s")


def stop_all(workers: list[Worker]) -> None:
    errors: list[BaseException] = []
    for worker in workers:
        try:
            worker.stop()
        except BaseException as error:
            errors.append(error)
    if errors:
        raise errors[0]


class Pause:
    """A point where a call stops until the test lets it go on: it forces one exact interleaving of two threads."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()

    def stop_here(self) -> None:
        self.reached.set()
        if not self.release.wait(timeout=WAIT_SECONDS):
            raise TimeoutError("the test never let the paused call go on")


class PausingPublisher:
    """A publisher that stops before its first publish until released; then publishes as the real one does."""

    def __init__(self, real: RabbitPublisher, pause: Pause) -> None:
        self.real = real
        self.pause: Pause | None = pause

    def publish(self, event: Event) -> None:
        pause, self.pause = self.pause, None
        if pause is not None:
            pause.stop_here()
        self.real.publish(event)


class StubAware:
    """Wraps a handler: a NotImplementedError (another exercise still a stub) is kept, so the test can raise it."""

    def __init__(self, handle: Callable[[Event], object]) -> None:
        self.handle_event = handle
        self.stub_error: NotImplementedError | None = None

    def __call__(self, event: Event) -> object:
        try:
            return self.handle_event(event)
        except NotImplementedError as error:
            self.stub_error = error
            raise

    def check(self) -> None:
        if self.stub_error is not None:
            raise self.stub_error


def relay_once(postgres_url: str, rabbitmq_url: str, exchange: str, publisher_for: Callable[[Any], Any]) -> int:
    """One relay pass with connections of its own (so it can run in a thread): publish everything pending."""
    with psycopg.connect(postgres_url, autocommit=True) as db:
        connection = connect(rabbitmq_url, name="stage10-relay")
        try:
            channel = connection.channel()
            declare_events_exchange(channel, exchange)
            return relay_pending(db, publisher_for(channel), batch_size=10)
        finally:
            close_quietly(connection)


def close_all_connections() -> None:
    """Make the broker drop every client connection, as a broker restart or a network cut would."""
    ctl = shutil.which("rabbitmqctl") or shutil.which("rabbitmqctl", path="/usr/sbin:/usr/local/sbin")
    if ctl is not None:
        command = [ctl, "close_all_connections", "stage 10 test: drop every connection"]
    elif shutil.which("docker") is not None:
        command = ["docker", "compose", "exec", "-T", "rabbitmq", "rabbitmqctl", "close_all_connections", "test"]
    else:
        pytest.fail(f"this test needs rabbitmqctl (the broker's own tool) or docker to drop connections. {FIX}")
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(command[:2])} failed: {done.stderr.strip() or done.stdout.strip()}")


# 10.1 — the event envelope -------------------------------------------------------------------------------------


@exercise("10.1")
def test_an_event_comes_back_from_its_json_unchanged() -> None:
    event = new_event(
        MESSAGE_CREATED,
        {"chat_id": 7, "seq": 12, "sender_id": 1, "body": "Привет, Grace ⚓", "tags": ["a", {"b": None}], "x": 1.5},
    )
    body = encode_event(event)
    got = decode_event(body)
    assert got == event, f"decode_event(encode_event(e)) must give e back; sent {event}, got {got}"
    assert got.payload == event.payload, f"the payload must come back as it was; got {got.payload}"
    document = json.loads(body)
    assert document["event_id"] == str(event.event_id), f"the body's event_id must be the id as text; got {document}"


def envelope(**changes: Any) -> bytes:
    """A well-formed event body with some keys changed (None removes the key)."""
    document = {
        "event_id": str(uuid.uuid4()),
        "topic": "message.created",
        "payload": {},
        "occurred_at": "2030-01-01T00:00:00+00:00",
    }
    document.update(changes)
    return json.dumps({key: value for key, value in document.items() if value is not None}).encode()


MALFORMED = {
    "not UTF-8": b"\xff\xfe\x00garbage",
    "not JSON": b"{event_id: 1",
    "a JSON list": b"[1, 2, 3]",
    "JSON null": b"null",
    "an empty object": b"{}",
    "a missing occurred_at": envelope(occurred_at=None),
    "an unknown key": envelope(admin=True),
    "an event_id that is not a UUID": envelope(event_id="42"),
    "an event_id that is a number": envelope(event_id=42),
    "a topic with a wildcard": envelope(topic="message.*"),
    "a topic that is not text": envelope(topic=5),
    "a payload that is a list": envelope(payload=[1]),
    "a time without a time zone": envelope(occurred_at="2030-01-01T00:00:00"),
    "a time that is not a time": envelope(occurred_at="yesterday"),
    "a body of a megabyte": envelope(payload={"pad": "x" * 1024 * 1024}),
}


@exercise("10.1")
@pytest.mark.parametrize("what", MALFORMED)
def test_a_body_that_is_not_an_event_is_refused_with_malformed_event(what: str) -> None:
    try:
        got = decode_event(MALFORMED[what])
    except MalformedEvent:
        return
    except Exception as error:
        pytest.fail(f"a body with {what} must raise MalformedEvent, not {type(error).__name__}: {error}")
    pytest.fail(f"a body with {what} must be refused with MalformedEvent; it was accepted as {got}")


@exercise("10.1")
def test_the_refusal_says_what_is_wrong() -> None:
    with pytest.raises(MalformedEvent) as missing:
        decode_event(json.dumps({"event_id": str(uuid.uuid4()), "topic": "message.created", "payload": {}}).encode())
    assert "occurred_at" in str(missing.value), (
        f"the error for a missing key must name it (occurred_at); it said: {missing.value}"
    )
    bad_id = {"event_id": "not-a-uuid", "topic": "message.created", "payload": {}, "occurred_at": "2030-01-01T00:00Z"}
    with pytest.raises(MalformedEvent) as wrong:
        decode_event(json.dumps(bad_id).encode())
    assert "event_id" in str(wrong.value), f"the error for a bad event_id must name event_id; it said: {wrong.value}"


# 10.2 — publish with confirms ---------------------------------------------------------------------------------


@exercise("10.2")
def test_a_published_event_arrives_persistent_with_its_id_as_message_id(broker: Broker) -> None:
    queue = broker.queue("all")
    event = created_event(3, 1, 1, "persist me")
    RabbitPublisher(broker.channel, broker.exchange).publish(event)
    [(method, properties, body)] = broker.drain(queue, 1) or [(None, None, b"")]
    assert method is not None, "a published event must arrive in a queue bound to the exchange with '#'"
    assert method.routing_key == MESSAGE_CREATED, f"the routing key must be the topic; got {method.routing_key!r}"
    assert properties.delivery_mode == 2, (
        f"the message must be persistent (delivery_mode 2) to survive a broker restart; got {properties.delivery_mode}"
    )
    assert properties.message_id == str(event.event_id), (
        f"message_id must be the event id {event.event_id}; got {properties.message_id!r}"
    )
    assert properties.content_type == "application/json", f"content_type must be application/json; got {properties}"
    assert decode_event(body) == event, "the body must be the event, encoded with encode_event"


@exercise("10.2")
def test_a_nack_from_the_broker_raises_publish_refused(broker: Broker) -> None:
    # A queue that holds nothing and refuses what it cannot hold: the broker nacks every message routed to it.
    broker.queue("full", binding=MESSAGE_EDITED, arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    publisher = RabbitPublisher(broker.channel, broker.exchange)
    publisher.publish(created_event(1, 1, 1))  # routed elsewhere (nowhere): acked
    edited = new_event(MESSAGE_EDITED, {"chat_id": 1, "seq": 1})
    with pytest.raises(PublishRefused) as refused:
        publisher.publish(edited)
    assert str(edited.event_id) in str(refused.value), (
        f"the PublishRefused message must name the event id {edited.event_id}; it said: {refused.value}"
    )


@exercise("10.2")
def test_publishing_on_a_lost_connection_raises_broker_unavailable(broker: Broker) -> None:
    broker.declare_exchange()
    connection = connect(broker.url, name=f"{broker.prefix}-doomed")
    publisher = RabbitPublisher(connection.channel(), broker.exchange)
    connection.close()  # as if the network had broken
    with pytest.raises(BrokerUnavailable):
        publisher.publish(created_event(1, 1, 1))


# 10.3 — the outbox relay ---------------------------------------------------------------------------------------


@exercise("10.3")
def test_a_pass_publishes_every_committed_row_once_in_order_and_marks_it(
    broker: Broker, db: psycopg.Connection[Any]
) -> None:
    queue = broker.queue("all")
    written = [add_outbox_row(db, chat_id=1, seq=seq) for seq in range(1, 26)]
    publisher = RabbitPublisher(broker.channel, broker.exchange)
    count = relay_pending(db, publisher, batch_size=10)
    assert count == 25, f"a pass over 25 pending rows, 10 at a time, must publish 25; it said {count}"
    got = event_ids(broker.take_all(queue))
    assert got == written, (
        f"each of the 25 rows must be published exactly once, in id order; got {len(got)} messages, "
        f"{len(set(got))} distinct"
    )
    assert unpublished(db) == [], "every confirmed row must be marked published (published_at set)"
    assert relay_pending(db, publisher, batch_size=10) == 0, "a second pass has nothing left to publish"
    assert broker.take_all(queue) == [], "a second pass must not publish a row again"


@exercise("10.3")
def test_a_row_is_published_only_once_its_transaction_has_committed(
    broker: Broker, db: psycopg.Connection[Any], postgres_url: str
) -> None:
    queue = broker.queue("all")
    publisher = RabbitPublisher(broker.channel, broker.exchange)
    with psycopg.connect(postgres_url) as writer:  # a transaction that is still open
        pending = add_outbox_row(writer, chat_id=1, seq=1)
        committed = add_outbox_row(db, chat_id=2, seq=1)
        relay_pending(db, publisher, batch_size=10)
        got = event_ids(broker.take_all(queue))
        assert got == [committed], f"only the committed row may be published while the other is uncommitted; got {got}"
    # The `with` block committed the writer's transaction.
    relay_pending(db, publisher, batch_size=10)
    assert event_ids(broker.take_all(queue)) == [pending], "once committed, the row is published in the next pass"


@exercise("10.3")
def test_a_row_the_broker_nacks_stays_unpublished_with_the_rows_after_it(
    broker: Broker, db: psycopg.Connection[Any]
) -> None:
    full = broker.queue("full", binding=MESSAGE_EDITED, arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    first = add_outbox_row(db, chat_id=1, seq=1)
    refused = add_outbox_row(db, chat_id=1, seq=1, topic=MESSAGE_EDITED)
    after = add_outbox_row(db, chat_id=1, seq=2)
    publisher = RabbitPublisher(broker.channel, broker.exchange)
    with pytest.raises(PublishRefused):
        relay_pending(db, publisher, batch_size=10)
    left = unpublished(db)
    assert left == [refused, after], (
        "the row before the nack was confirmed, so it is marked; the nacked row and the rows after it stay "
        f"unpublished for the next round. Unpublished now: {left} (first={first}, nacked={refused}, after={after})"
    )
    broker.channel.queue_delete(queue=full)  # the queue that refused is gone: the next round goes through
    assert relay_pending(db, publisher, batch_size=10) == 2, "the next round must publish the two rows left"
    assert unpublished(db) == [], "after the next round every row is marked"


@exercise("10.3")
def test_rows_confirmed_before_a_lost_connection_are_marked_and_the_rest_are_not(
    broker: Broker, db: psycopg.Connection[Any]
) -> None:
    broker.declare_exchange()
    written = [add_outbox_row(db, chat_id=1, seq=seq) for seq in range(1, 6)]
    connection = connect(broker.url, name=f"{broker.prefix}-breaking")
    real = RabbitPublisher(connection.channel(), broker.exchange)

    class BreaksBeforeThird:
        calls = 0

        def publish(self, event: Event) -> None:
            self.calls += 1
            if self.calls == 3:
                connection.close()  # the connection breaks before the third publish
            real.publish(event)

    with pytest.raises(BrokerUnavailable):
        relay_batch(db, BreaksBeforeThird(), batch_size=10)
    left = unpublished(db)
    assert left == written[2:], (
        f"the two rows confirmed before the connection broke must be marked, the other three not; unpublished: {left}"
    )


@exercise("10.3")
def test_two_relays_at_once_never_publish_the_same_row(
    broker: Broker, db: psycopg.Connection[Any], postgres_url: str
) -> None:
    queue = broker.queue("all")
    written = [add_outbox_row(db, chat_id=1, seq=seq) for seq in range(1, 31)]
    pause = Pause()
    # Relay A locks its first batch and stops before publishing it...
    first = Background(
        lambda: relay_once(
            postgres_url,
            broker.url,
            broker.exchange,
            lambda ch: PausingPublisher(RabbitPublisher(ch, broker.exchange), pause),
        )
    )
    try:
        if not pause.reached.wait(timeout=WAIT_SECONDS):
            first.join("the first relay")
            pytest.fail("the first relay never published anything")
        # ...while relay B runs a whole pass.
        second = Background(
            lambda: relay_once(
                postgres_url, broker.url, broker.exchange, lambda ch: RabbitPublisher(ch, broker.exchange)
            )
        )
        second.thread.join(timeout=5)  # a pass over 20 rows takes well under a second
        assert not second.thread.is_alive(), (
            "the second relay waited for the rows the first one holds: skip locked rows (FOR UPDATE SKIP LOCKED)"
        )
        by_second = second.join("the second relay")
    finally:
        pause.release.set()
    by_first = first.join("the first relay")
    got = event_ids(broker.take_all(queue))
    twice = sorted({event_id for event_id in got if got.count(event_id) > 1}, key=str)
    assert not twice, f"{len(twice)} rows were published twice by two relays running at once"
    assert sorted(got, key=str) == sorted(written, key=str), f"all 30 rows must be published; got {len(got)}"
    assert (by_first, by_second) == (10, 20), (
        f"the first relay holds one batch of 10, so the second publishes the other 20; they published {by_first} "
        f"and {by_second}"
    )
    assert unpublished(db) == [], "every row must be marked published"


# 10.4 — reconnect with a bounded backoff -------------------------------------------------------------------------


class RecordingStop(threading.Event):
    """A stop event whose wait() returns at once and remembers how long it was asked to wait."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(-1.0 if timeout is None else timeout)
        return self.is_set()


class ScriptedSessions:
    """Sessions that follow a script: 'refuse' (cannot connect), 'lose' (connects, then breaks), 'stop', 'bug'."""

    def __init__(self, stop: threading.Event, script: list[str]) -> None:
        self.stop, self.script = stop, list(script)
        self.opened = 0
        self.worked = 0

    def open(self) -> Any:
        self.opened += 1
        step = self.script.pop(0) if self.script else "refuse"
        if step == "refuse":
            raise pika.exceptions.AMQPConnectionError("connection refused")
        return nullcontext(step)

    def work(self, step: str) -> None:
        self.worked += 1
        if step == "lose":
            raise pika.exceptions.ConnectionClosedByBroker(320, "CONNECTION_FORCED")
        if step == "bug":
            raise KeyError("a bug, not a lost connection")
        self.stop.set()


@exercise("10.4")
def test_failures_are_retried_after_growing_delays_until_a_session_works() -> None:
    stop = RecordingStop()
    sessions = ScriptedSessions(stop, ["refuse", "refuse", "refuse", "stop"])
    backoff = Backoff(initial=0.1, maximum=0.3, jitter=0)
    run_with_reconnect(sessions.open, sessions.work, stop=stop, backoff=backoff, what="test worker")
    assert sessions.opened == 4, (
        f"three refused connections, then one that works: 4 attempts; there were {sessions.opened}"
    )
    assert sessions.worked == 1, f"work runs once, in the session that connected; it ran {sessions.worked} times"
    assert stop.waits == pytest.approx([0.1, 0.2, 0.3]), (
        f"wait backoff.next_delay() after each failure, with stop.wait: 0.1, 0.2, then capped at 0.3; waited {stop.waits}"
    )


@exercise("10.4")
def test_a_lost_session_is_reopened_and_the_backoff_starts_over_after_a_good_connection() -> None:
    stop = RecordingStop()
    sessions = ScriptedSessions(stop, ["refuse", "refuse", "lose", "refuse", "stop"])
    run_with_reconnect(
        sessions.open, sessions.work, stop=stop, backoff=Backoff(initial=0.1, maximum=5, jitter=0), what="test worker"
    )
    assert sessions.opened == 5, f"each failure is followed by a new attempt: 5 in all; there were {sessions.opened}"
    assert stop.waits == pytest.approx([0.1, 0.2, 0.1, 0.2]), (
        f"after a session that connected, the backoff starts again from its first delay (backoff.reset()); waited {stop.waits}"
    )


@exercise("10.4")
def test_it_gives_up_after_the_given_failures_in_a_row_and_never_retries_a_bug() -> None:
    stop = RecordingStop()
    sessions = ScriptedSessions(stop, [])
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        run_with_reconnect(
            sessions.open, sessions.work, stop=stop, backoff=Backoff(jitter=0), what="test worker", give_up_after=3
        )
    assert sessions.opened == 3, f"give_up_after=3 means three attempts, then the error; there were {sessions.opened}"
    bug = ScriptedSessions(stop, ["bug"])
    with pytest.raises(KeyError):
        run_with_reconnect(bug.open, bug.work, stop=stop, backoff=Backoff(), what="test worker")
    assert bug.opened == 1, (
        "an error that is not a lost connection (a bug) must reach the caller at once, not be retried"
    )


@exercise("10.4")
def test_stop_ends_the_loop_during_a_long_backoff() -> None:
    stop = threading.Event()
    sessions = ScriptedSessions(stop, [])
    loop = Background(
        lambda: run_with_reconnect(
            sessions.open, sessions.work, stop=stop, backoff=Backoff(initial=60, maximum=60), what="test worker"
        )
    )
    wait_until(lambda: sessions.opened >= 1, "the loop tried to connect", (loop,))
    stop.set()
    loop.join("the loop, stopped during a 60 s backoff (wait with stop.wait, not time.sleep),", seconds=5)


@contextmanager
def a_port_nothing_listens_on() -> Iterator[int]:
    """A port bound but never listening: connecting is refused, and nothing else can take it meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@exercise("10.4")
def test_a_relay_that_cannot_reach_the_broker_keeps_its_rows(db: psycopg.Connection[Any], postgres_url: str) -> None:
    written = add_outbox_row(db, chat_id=1, seq=1)
    with a_port_nothing_listens_on() as port:
        nowhere = f"amqp://messenger:messenger@127.0.0.1:{port}/%2F"  # a port that accepts nothing
        relay = OutboxRelay(postgres_url, nowhere, "stage10.unused", backoff=Backoff(initial=0.01, maximum=0.05))
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            relay.run_forever(threading.Event(), give_up_after=3)
    assert unpublished(db) == [written], "a relay that never reached the broker must leave its rows unpublished"


@exercise("10.4")
def test_every_gateway_node_gets_every_message_event_and_nothing_else(broker: Broker) -> None:
    nodes: list[GatewayNode] = []
    received: list[list[Event]] = [[], []]
    for got in received:
        nodes.append(GatewayNode(broker.url, broker.exchange, got.append, name=f"{broker.prefix}-node"))
    workers = [Worker(node.run_forever, f"gateway node {n}") for n, node in enumerate(nodes, start=1)]
    try:
        wait_until(lambda: all(node.consuming.is_set() for node in nodes), "both gateway nodes consuming", (*workers,))
        publisher = RabbitPublisher(broker.channel, broker.exchange)
        sent = [created_event(1, 1, 1), new_event(MESSAGE_EDITED, {"chat_id": 1, "seq": 1}), created_event(1, 2, 2)]
        for event in [sent[0], new_event("user.renamed", {"user_id": 1}), sent[1], sent[2]]:
            publisher.publish(event)
        wait_until(lambda: all(len(got) >= len(sent) for got in received), "each node has 3 events", (*workers,))
        time.sleep(0.2)  # a user.renamed that was wrongly delivered would arrive by now
        for n, got in enumerate(received, start=1):
            assert got == sent, (
                f"gateway node {n} must get every message.* event, in order, as Event objects, and no user.* "
                f"event; it got {[event.topic for event in got]}"
            )
        queues = [node.queue for node in nodes]
        assert queues[0] != queues[1], f"each node needs a queue of its own; both used {queues[0]}"
    finally:
        stop_all(workers)


@exercise("10.4")
def test_after_the_broker_drops_every_connection_the_workers_reconnect_and_lose_nothing(
    broker: Broker, db: psycopg.Connection[Any], postgres_url: str, presence: Presence
) -> None:
    chat = add_chat(db, 1, 2)  # user 2 is offline: every message from user 1 gives a notification
    backoff = {"initial": 0.1, "maximum": 1.0}
    relay = OutboxRelay(
        postgres_url, broker.url, broker.exchange, batch_size=10, poll_seconds=0.1, backoff=Backoff(**backoff)
    )
    pushed: list[Event] = []
    node = GatewayNode(broker.url, broker.exchange, pushed.append, backoff=Backoff(**backoff))
    pool = open_pool(postgres_url)
    notifier = Notifier(PostgresChatMembers(pool), presence, PostgresNotifications(pool))
    handler = StubAware(notifier.handle)
    consumer = NotifierConsumer(
        broker.url, broker.exchange, handler, queue=broker.notifier_queue, backoff=Backoff(**backoff)
    )
    workers = [Worker(node.run_forever, "the gateway node"), Worker(consumer.run_forever, "the notifier")]
    try:
        wait_until(
            lambda: node.consuming.is_set() and consumer.consuming.is_set(), "both consumers consuming", (*workers,)
        )
        workers.append(Worker(relay.run_forever, "the relay"))

        def delivered(expected: list[uuid.UUID], to_node: list[uuid.UUID]) -> None:
            def everywhere() -> bool:
                handler.check()
                node_got = {event.event_id for event in pushed}
                return not unpublished(db) and notification_count(db) == len(expected) and set(to_node) <= node_got

            wait_until(everywhere, f"{len(expected)} events published, notified and pushed", (*workers,))

        before = [add_outbox_row(db, chat, seq) for seq in range(1, 6)]
        delivered(before, before)
        sessions = (relay.sessions, node.sessions, consumer.sessions)
        assert sessions == (1, 1, 1), f"each worker needs one session before the test cuts them; they had {sessions}"

        close_all_connections()
        during = [add_outbox_row(db, chat, seq) for seq in range(6, 11)]  # committed while connections are down
        wait_until(
            lambda: min(relay.sessions, node.sessions, consumer.sessions) >= 2,
            "the relay, the gateway node and the notifier each reconnect (a second session)",
            (*workers,),
        )
        after = [add_outbox_row(db, chat, seq) for seq in range(11, 16)]
        delivered(before + during + after, before + after)
        assert notification_count(db) == 15, (
            f"15 messages to an offline user give 15 notifications, even if an event was delivered twice; "
            f"there are {notification_count(db)}"
        )
    finally:
        try:
            stop_all(workers)
        finally:
            pool.close()


# 10.5 — idempotent notifications ---------------------------------------------------------------------------------


@pytest.fixture
def pool(postgres_url: str) -> Iterator[Any]:
    pool = open_pool(postgres_url)
    yield pool
    pool.close()


@exercise("10.5")
def test_recording_the_same_notification_twice_keeps_one(pool: Any, db: psycopg.Connection[Any]) -> None:
    store = PostgresNotifications(pool)
    notification = NewNotification(user_id=2, event_id=uuid.uuid4(), chat_id=1, seq=1, preview="hi")
    assert store.record(notification) is True, "the first record() of a notification stores it and returns True"
    assert store.record(notification) is False, "recording the same user and event again stores nothing: False"
    assert notification_count(db) == 1, f"one notification per user and event; there are {notification_count(db)}"
    other_user = NewNotification(user_id=3, event_id=notification.event_id, chat_id=1, seq=1, preview="hi")
    assert store.record(other_user) is True, "another user may be notified of the same event"
    [listed] = store.list_for(2)
    assert (listed.event_id, listed.chat_id, listed.seq, listed.preview) == (notification.event_id, 1, 1, "hi"), (
        f"the stored notification must carry what was recorded; got {listed}"
    )


@exercise("10.5")
def test_two_deliveries_of_one_event_at_the_same_moment_record_one_notification(
    pool: Any, db: psycopg.Connection[Any]
) -> None:
    store = PostgresNotifications(pool)
    notification = NewNotification(user_id=2, event_id=uuid.uuid4(), chat_id=1, seq=1, preview="hi")
    start = threading.Barrier(4)

    def deliver() -> bool:
        start.wait(timeout=WAIT_SECONDS)
        return store.record(notification)

    racers = [Background(deliver) for _ in range(4)]
    results = [racer.join("a concurrent record()") for racer in racers]
    assert sorted(results) == [False, False, False, True], (
        f"four deliveries at once: exactly one stores the notification (True), the others find it there; got {results}"
    )
    assert notification_count(db) == 1, f"one notification per user and event; there are {notification_count(db)}"


@exercise("10.5")
def test_the_offline_recipient_is_notified_once_and_the_online_one_not_at_all(
    pool: Any, db: psycopg.Connection[Any], presence: Presence
) -> None:
    to_offline, to_online = add_chat(db, 1, 2), add_chat(db, 1, 3)
    presence.heartbeat(3)
    notifier = Notifier(PostgresChatMembers(pool), presence, PostgresNotifications(pool))
    event = created_event(to_offline, 1, 1, "  are you\n there?  ")
    recorded = notifier.handle(event)
    assert recorded is not None and recorded.user_id == 2, (
        f"user 1 wrote to offline user 2: user 2 (not the sender) gets a notification; got {recorded}"
    )
    assert notifier.handle(created_event(to_online, 1, 1)) is None, "user 3 is online: no notification"
    assert notifier.handle(event) is None, "the same event delivered again records nothing new"
    listed = PostgresNotifications(pool).list_for(2)
    assert [(n.event_id, n.chat_id, n.seq, n.preview) for n in listed] == [
        (event.event_id, to_offline, 1, "are you there?")
    ], f"user 2 has exactly one notification, for that event, with the message's start as preview; got {listed}"
    assert PostgresNotifications(pool).list_for(3) == [], "online user 3 has no notification"


@exercise("10.5")
def test_a_users_notifications_come_newest_first_and_bounded(pool: Any) -> None:
    store = PostgresNotifications(pool)
    for seq in range(1, 6):
        store.record(NewNotification(user_id=2, event_id=uuid.uuid4(), chat_id=1, seq=seq, preview=f"m{seq}"))
    got = [notification.seq for notification in store.list_for(2, limit=3)]
    assert got == [5, 4, 3], f"the newest three, newest first; got seqs {got}"
    with pytest.raises(ValueError):
        store.list_for(2, limit=10_000)


# 10.6 — ack, retry, or dead-letter ------------------------------------------------------------------------------


class CountingHandler:
    """A stand-in for Notifier.handle: fails the first `failures` calls per event, then succeeds."""

    def __init__(self, failures: int = 0, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or RuntimeError("the database is restarting")
        self.calls: list[uuid.UUID] = []
        self.lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self.lock:
            self.calls.append(event.event_id)
            if self.calls.count(event.event_id) <= self.failures:
                raise self.error


def start_notifier(
    broker: Broker, handle: Callable[[Event], object], max_attempts: int = 3
) -> tuple[NotifierConsumer, Worker]:
    consumer = NotifierConsumer(
        broker.url, broker.exchange, handle, queue=broker.notifier_queue, max_attempts=max_attempts
    )
    worker = Worker(consumer.run_forever, "the notifier")
    wait_until(consumer.consuming.is_set, "the notifier consuming", (worker,))
    return consumer, worker


def death_reason(message: tuple[Any, Any, bytes]) -> str:
    """Why the broker dead-lettered a message: "rejected" (by a consumer) or "delivery_limit" (by the broker)."""
    _, properties, _ = message
    deaths = (properties.headers or {}).get("x-death") or [{}]
    return str(deaths[0].get("reason"))


def publish_raw(broker: Broker, body: bytes, routing_key: str = MESSAGE_CREATED) -> None:
    broker.channel.basic_publish(exchange=broker.exchange, routing_key=routing_key, body=body)


@exercise("10.6")
def test_a_handled_event_is_acked_once_and_leaves_the_queue(broker: Broker) -> None:
    handler = CountingHandler()
    consumer, worker = start_notifier(broker, handler)
    event = created_event(1, 1, 1)
    try:
        RabbitPublisher(broker.channel, broker.exchange).publish(event)
        wait_until(lambda: consumer.settled >= 1, "the notifier settled the event", (worker,))
    finally:
        worker.stop()
    assert handler.calls == [event.event_id], f"the event must be handled once; the handler saw {handler.calls}"
    waiting = broker.waiting_in(broker.notifier_queue)
    assert waiting == 0, f"a handled event must be acked: after the notifier stopped, {waiting} message(s) came back"
    assert broker.take_all(f"{broker.notifier_queue}.dead") == [], "a handled event must not be dead-lettered"


@exercise("10.6")
def test_a_malformed_body_goes_to_the_dead_letter_queue_and_the_next_event_is_handled(broker: Broker) -> None:
    handler = CountingHandler()
    consumer, worker = start_notifier(broker, handler)
    good = created_event(1, 1, 1)
    try:
        publish_raw(broker, b"this is not an event")
        RabbitPublisher(broker.channel, broker.exchange).publish(good)
        wait_until(lambda: consumer.settled >= 2, "the notifier settled both messages", (worker,))
    finally:
        worker.stop()
    dead = broker.drain(f"{broker.notifier_queue}.dead", 1)
    assert [body for _, _, body in dead] == [b"this is not an event"], (
        f"a malformed body must be rejected without requeue, into {broker.notifier_queue}.dead; found {dead}"
    )
    assert death_reason(dead[0]) == "rejected", (
        f"a malformed body must be dead-lettered at once by the consumer (reject, requeue=False), not retried until "
        f"the broker's delivery limit; it was dead-lettered for: {death_reason(dead[0])}"
    )
    assert handler.calls == [good.event_id], (
        f"the malformed body must never reach the handler, and the good event after it must; handler saw {handler.calls}"
    )
    assert broker.waiting_in(broker.notifier_queue) == 0, "nothing may stay in the queue: settle every delivery"


@exercise("10.6")
def test_an_event_that_keeps_failing_is_tried_max_attempts_times_then_dead_lettered(broker: Broker) -> None:
    handler = CountingHandler(failures=1_000)
    _consumer, worker = start_notifier(broker, handler, max_attempts=3)
    event = created_event(1, 1, 1)
    try:
        RabbitPublisher(broker.channel, broker.exchange).publish(event)
        dead = broker.drain(f"{broker.notifier_queue}.dead", 1)
    finally:
        worker.stop()
    assert len(handler.calls) == 3, (
        f"with max_attempts=3 a failing event is handled 3 times (retry, retry, dead-letter); it was {len(handler.calls)}"
    )
    assert [decode_event(body).event_id for _, _, body in dead] == [event.event_id], (
        f"after 3 failed attempts the event must be in {broker.notifier_queue}.dead; found {len(dead)} message(s)"
    )
    assert death_reason(dead[0]) == "rejected", (
        f"the consumer itself must dead-letter the event after max_attempts (reject, requeue=False), not leave it "
        f"to the broker's delivery limit; it was dead-lettered for: {death_reason(dead[0])}"
    )


@exercise("10.6")
def test_a_database_outage_spends_no_attempts_and_loses_no_event(broker: Broker) -> None:
    handler = CountingHandler(failures=4, error=psycopg.OperationalError("the database is restarting"))
    consumer, worker = start_notifier(broker, handler, max_attempts=2)
    event = created_event(1, 1, 1)
    try:
        RabbitPublisher(broker.channel, broker.exchange).publish(event)
        wait_until(
            lambda: len(handler.calls) >= 5 and consumer.settled >= 1, "the event handled after the outage", (worker,)
        )
    finally:
        worker.stop()
    assert broker.take_all(f"{broker.notifier_queue}.dead") == [], (
        "an outage of the database is not the event's fault: it must not be dead-lettered after max_attempts"
    )
    assert handler.calls == [event.event_id] * 5, (
        f"four failures during the outage, then success; got {len(handler.calls)}"
    )


@exercise("10.6")
def test_a_passing_failure_is_retried_until_it_works(broker: Broker) -> None:
    handler = CountingHandler(failures=2)
    consumer, worker = start_notifier(broker, handler, max_attempts=5)
    event = created_event(1, 1, 1)
    try:
        RabbitPublisher(broker.channel, broker.exchange).publish(event)
        wait_until(lambda: consumer.settled >= 3, "the notifier settled the event three times", (worker,))
    finally:
        worker.stop()
    assert handler.calls == [event.event_id] * 3, (
        f"two failures, then success: the handler runs 3 times; it ran {len(handler.calls)} times"
    )
    assert broker.take_all(f"{broker.notifier_queue}.dead") == [], "an event that finally worked is not dead-lettered"
    assert broker.waiting_in(broker.notifier_queue) == 0, "the event that worked must be acked"


@exercise("10.6")
def test_an_event_no_retry_can_fix_is_dead_lettered_at_once(broker: Broker) -> None:
    handler = CountingHandler(failures=1_000, error=UnknownChat("chat 999 does not exist"))
    _consumer, worker = start_notifier(broker, handler, max_attempts=5)
    try:
        RabbitPublisher(broker.channel, broker.exchange).publish(created_event(999, 1, 1))
        dead = broker.drain(f"{broker.notifier_queue}.dead", 1)
    finally:
        worker.stop()
    assert len(dead) == 1, f"an EventRefused from the handler (an unknown chat) must be dead-lettered; found {dead}"
    assert death_reason(dead[0]) == "rejected", (
        f"dead-lettered by the consumer, not the broker; {death_reason(dead[0])}"
    )
    assert len(handler.calls) == 1, f"an EventRefused must not be retried; the handler ran {len(handler.calls)} times"


@exercise("10.5")
@exercise("10.6")
def test_the_notifier_end_to_end_one_notification_per_offline_recipient_and_event(
    broker: Broker, db: psycopg.Connection[Any], pool: Any, presence: Presence
) -> None:
    to_offline, to_online = add_chat(db, 1, 2), add_chat(db, 1, 3)
    presence.heartbeat(3)
    handler = StubAware(Notifier(PostgresChatMembers(pool), presence, PostgresNotifications(pool)).handle)
    consumer, worker = start_notifier(broker, handler)
    offline_event, online_event = created_event(to_offline, 1, 1), created_event(to_online, 1, 1)
    try:
        publisher = RabbitPublisher(broker.channel, broker.exchange)
        for event in (offline_event, online_event, offline_event):  # the last one: a redelivery of the first
            publisher.publish(event)
        wait_until(lambda: consumer.settled >= 3, "the notifier settled three deliveries", (worker,))
        handler.check()
    finally:
        worker.stop()
    rows = db.execute("SELECT user_id, event_id FROM notify.notifications").fetchall()
    assert rows == [(2, offline_event.event_id)], (
        f"offline user 2 gets one notification (the redelivery adds none), online user 3 none; found {rows}"
    )
    assert broker.take_all(f"{broker.notifier_queue}.dead") == [], "no event here may be dead-lettered"
