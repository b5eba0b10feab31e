"""Fixtures of the generated attacks: one stack for the whole folder, and the gateway served on a real socket.

The attacks need what the stage 07 tests need (the auth, chat and content gRPC services on a database, MongoDB
database, Redis database and exchange of their own), but once: starting the stack per generated case would cost
more than the cases. So the stack and the gateway live for the session (Redis database REDIS_DB_ATTACKS, emptied
before and after). The gateway is served by uvicorn from a thread, as ``python -m reference_app.gateway`` serves
it: a text frame of invalid UTF-8 or a frame over the size limit only means something to a real WebSocket server
(the ASGI test client hands the app Python strings), and schemathesis over the socket measured as fast as over
ASGI in-process (940 cases: 7.9 s and 7.7 s), so both files share the one server.

Every user signs in from the same address and sends as fast as the generator asks: the sign-in and send limits are
raised here, as the other fixtures do; they are tested on their own in tests/stages.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis
from app.config import Settings, load_settings
from attack_harness import ErrorLog, Served, collect_errors, serve
from loguru import logger

from workbook.databases import throwaway_database
from workbook.in_thread import serving_in_a_thread
from workbook.isolated import REDIS_DB_ATTACKS, drop_leftovers, free_port, with_redis_db

RAISED_LIMIT = 1_000_000


@pytest.fixture(scope="session")
def attack_settings() -> Iterator[Settings]:
    """Settings of the attacks' own stack: a migrated database, its MongoDB database, Redis database 13, exchange."""
    from app.db import apply_migrations

    base = load_settings()
    tag = f"attacks_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    redis_url = with_redis_db(base.redis.url, REDIS_DB_ATTACKS)
    with throwaway_database(base.postgres.url, tag) as postgres_url:
        apply_migrations(postgres_url)
        settings = base.model_copy(
            update={
                "postgres": base.postgres.model_copy(update={"url": postgres_url}),
                "mongo": base.mongo.model_copy(update={"database": tag}),
                "redis": base.redis.model_copy(
                    update={
                        "url": redis_url,
                        "sign_in_rate_limit": RAISED_LIMIT,
                        "sign_in_address_rate_limit": RAISED_LIMIT,
                        "send_rate_limit": RAISED_LIMIT,
                    }
                ),
                "rabbitmq": base.rabbitmq.model_copy(update={"exchange": f"{tag}.events"}),
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


@pytest.fixture(scope="session")
def attack_stack(attack_settings: Settings) -> Iterator[Settings]:
    """The auth, chat and content gRPC services of ``attack_settings``, served from a background thread's loop."""
    from app.auth.grpc_server import serve as serve_auth
    from app.chat.grpc_server import serve as serve_chat
    from app.content.grpc_server import serve as serve_content

    services = {
        "auth service": (serve_auth, attack_settings.grpc.auth_port),
        "chat service": (serve_chat, attack_settings.grpc.chat_port),
        "content service": (serve_content, attack_settings.grpc.content_port),
    }
    with serving_in_a_thread(attack_settings, services, name="attack-grpc"):
        yield attack_settings


@pytest.fixture
def error_log() -> Iterator[ErrorLog]:
    """Everything logged at ERROR while the test runs (the gateway, the services, uvicorn): a test asserts it empty."""
    log = ErrorLog()
    sink = logger.add(lambda message: log.lines.append(str(message).rstrip()), level="ERROR", format="{message}")
    handler = collect_errors(log)
    logging.getLogger().addHandler(handler)
    try:
        yield log
    finally:
        logging.getLogger().removeHandler(handler)
        logger.remove(sink)


@pytest.fixture(scope="session")
def attack_gateway(attack_stack: Settings) -> Iterator[Served]:
    """The gateway app on the attacks' stack, served by uvicorn for the session (both attack files use it).

    The WebSocket frame rate is raised for the connections it opens (the fuzzer sends a thousand frames as fast
    as it can; the rate limit is tested in tests/stages); every other limit is the protocol's default.
    """
    from app.gateway.__main__ import demote_client_mistakes, hide_query_strings
    from app.gateway.app import create_app
    from app.gateway.hub import WsLimits

    hide_query_strings()  # the logging filters python -m reference_app.gateway installs
    demote_client_mistakes()
    limits = WsLimits()
    app = create_app(attack_stack)
    with serve(app, ws_max_size=limits.max_frame_bytes) as served:
        hub = app.state.gateway.hub
        hub.limits = replace(hub.limits, frames_per_second=100_000.0, frame_burst=100_000)
        yield served
