"""Fixtures the stage tests share: throwaway PostgreSQL databases, and for stage 07 the whole service stack.

Each test that asks for one gets a database of its own, dropped afterwards. A server that does not answer fails
the test: it is never skipped.
"""

import uuid
from collections.abc import Iterator

import pytest
import redis
from app.config import Settings, load_settings
from fastapi.testclient import TestClient

from workbook.databases import throwaway_database
from workbook.in_thread import serving_in_a_thread
from workbook.isolated import REDIS_DB_STAGE_TESTS, drop_leftovers, free_port, with_redis_db


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """The URL of a new, empty database, dropped after the test."""
    with throwaway_database(load_settings().postgres.url, f"stage_test_{uuid.uuid4().hex[:12]}") as url:
        yield url


@pytest.fixture
def postgres_url(empty_postgres_url: str) -> str:
    """The URL of a new database with the app's migrations applied (stage 03), dropped after the test."""
    from app.db import apply_migrations

    apply_migrations(empty_postgres_url)
    return empty_postgres_url


# The whole stack behind the gateway, for stage 07 ------------------------------------------------------------


@pytest.fixture
def stack_settings(postgres_url: str) -> Iterator[Settings]:
    """Settings for one test's own stack: its database, MongoDB database, Redis database, exchange and ports.

    The stage tests' Redis database is emptied first: user ids start at 1 in every fresh database, so rate limits
    and presence of an earlier test's user 1 must not leak into this one.
    """
    base = load_settings()
    tag = uuid.uuid4().hex[:12]
    redis_url = with_redis_db(base.redis.url, REDIS_DB_STAGE_TESTS)
    settings = base.model_copy(
        update={
            "postgres": base.postgres.model_copy(update={"url": postgres_url}),
            "mongo": base.mongo.model_copy(update={"database": f"stage_test_{tag}"}),
            # Every user of a test signs in from the same TestClient address: the sign-in limits are tested alone.
            "redis": base.redis.model_copy(
                update={"url": redis_url, "sign_in_rate_limit": 10_000, "sign_in_address_rate_limit": 10_000}
            ),
            "rabbitmq": base.rabbitmq.model_copy(update={"exchange": f"stage_test.{tag}"}),
            "grpc": base.grpc.model_copy(
                update={"auth_port": free_port(), "chat_port": free_port(), "content_port": free_port()}
            ),
        }
    )
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    try:
        yield settings
    finally:
        client.flushdb()
        client.close()
        drop_leftovers(settings, settings.mongo.database, settings.rabbitmq.exchange)


@pytest.fixture
def grpc_services(stack_settings: Settings) -> Iterator[Settings]:
    """The auth, chat and content gRPC services of ``stack_settings``, served from a background thread's loop."""
    from app.auth.grpc_server import serve as serve_auth
    from app.chat.grpc_server import serve as serve_chat
    from app.content.grpc_server import serve as serve_content

    services = {
        "auth service": (serve_auth, stack_settings.grpc.auth_port),
        "chat service": (serve_chat, stack_settings.grpc.chat_port),
        "content service": (serve_content, stack_settings.grpc.content_port),
    }
    with serving_in_a_thread(stack_settings, services, name="grpc-services"):
        yield stack_settings


@pytest.fixture
def gateway(grpc_services: Settings) -> Iterator[TestClient]:
    """An HTTP client of a started gateway app (WebSockets too: ``gateway.websocket_connect("/ws")``)."""
    from app.gateway.app import create_app

    with TestClient(create_app(grpc_services)) as client:
        yield client
