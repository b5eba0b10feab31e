"""Each service answers real work over a real connection, with the settings the course uses."""

import uuid

import pika
import psycopg
import redis


def test_postgres_runs_a_transaction(postgres: psycopg.Connection) -> None:
    with postgres.transaction():
        postgres.execute("CREATE TEMPORARY TABLE probe (id int PRIMARY KEY, body text NOT NULL)")
        postgres.execute("INSERT INTO probe VALUES (1, 'hello')")
        row = postgres.execute("SELECT body FROM probe WHERE id = 1").fetchone()
    assert row == ("hello",)


def test_redis_stores_a_value_with_a_ttl(redis_client: redis.Redis) -> None:
    key = f"test:{uuid.uuid4()}"
    redis_client.set(key, "value", ex=30)
    assert redis_client.get(key) == b"value"
    assert 0 < redis_client.ttl(key) <= 30
    redis_client.delete(key)


def test_rabbitmq_round_trips_a_persistent_message(rabbitmq: pika.BlockingConnection) -> None:
    channel = rabbitmq.channel()
    channel.confirm_delivery()
    queue = channel.queue_declare(queue="", exclusive=True).method.queue
    channel.basic_publish("", queue, b"ping", pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent))
    method, _properties, body = channel.basic_get(queue, auto_ack=True)
    assert method is not None and body == b"ping"
