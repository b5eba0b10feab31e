"""Connections to the real services. A service that does not answer FAILS the test that needs it: never a skip."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pika
import psycopg
import pytest
import redis
from pymongo import MongoClient
from pymongo.database import Database

from reference_app.config import Settings, load_settings
from workbook.paths import EXERCISES_ROOT

FIX = "start the services with `python -m workbook services up` (or `make start`)"


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture
def postgres(settings: Settings) -> Iterator[psycopg.Connection]:
    try:
        connection = psycopg.connect(settings.postgres.url, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL does not answer: {error}. Fix: {FIX}")
    with connection:
        yield connection


@pytest.fixture
def mongo(settings: Settings) -> Iterator[Database]:
    client: MongoClient = MongoClient(settings.mongo.url, serverSelectionTimeoutMS=5000)
    try:
        client.admin.command("ping")
    except Exception as error:
        pytest.fail(f"MongoDB does not answer: {error}. Fix: {FIX}")
    database = client[f"{settings.mongo.database}_tests"]
    yield database
    client.drop_database(database.name)
    client.close()


@pytest.fixture
def redis_client(settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis.url, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as error:
        pytest.fail(f"Redis does not answer: {error}. Fix: {FIX}")
    yield client
    client.close()


@pytest.fixture
def rabbitmq(settings: Settings) -> Iterator[pika.BlockingConnection]:
    try:
        connection = pika.BlockingConnection(pika.URLParameters(settings.rabbitmq.url))
    except pika.exceptions.AMQPError as error:
        pytest.fail(f"RabbitMQ does not answer: {error!r}. Fix: {FIX}")
    yield connection
    connection.close()


@pytest.fixture
def learner_copy(tmp_path: Path) -> Path:
    """A learner's clone: the pristine exercises/ folder, with nothing done yet."""
    shutil.copytree(EXERCISES_ROOT, tmp_path / "learner" / "exercises")
    return tmp_path / "learner"
