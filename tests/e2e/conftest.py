"""The app, really running: its six processes started by the workbook's runner, on free ports, for this session.

Everything the app touches is its own, so the tests never meet a learner's running app (``make start``) nor
another test run: a throwaway PostgreSQL database, a MongoDB database, a RabbitMQ exchange (and with it the
notifier's queue), a Redis database number, and ports the system says are free. The processes run the same
application root the stage tests import (``--app-root``; reference_app/ by default).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pika
import pytest
import redis
from messenger_client import RunningApp
from pymongo import MongoClient

from reference_app.config import Settings, load_settings
from reference_app.events.__main__ import notifier_queue
from reference_app.events.topology import delete_notifier_queue
from workbook.databases import throwaway_database
from workbook.messenger import MigrationFailed, Ports, up
from workbook.processes import PortTaken, ProcessFailed, ProcessRunner

FIX = "start the services with `python -m workbook services up`"
E2E_REDIS_DB = 10


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end tests against the app's real processes (select: -m e2e)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def with_redis_db(url: str, number: int) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{number}"))


@pytest.fixture(scope="session")
def running_app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    base = load_settings()
    run_id = f"e2e_{os.getpid()}"
    # Redis has databases 0-15, each with an owner: the app 0, notebook 07 8, the stage tests 9, these tests 10,
    # the WebSocket benchmark 14. This app lives until the session ends, while the stage tests run, so it must
    # not share theirs. FLUSHDB at the start removes what an earlier run left (presence, rate-limit counters).
    redis_url = with_redis_db(base.redis.url, E2E_REDIS_DB)
    exchange = f"{run_id}.events"
    app_root = Path(request.config.getoption("app_root")).resolve()
    env = {
        "APP_MONGO__DATABASE": run_id,
        "APP_RABBITMQ__EXCHANGE": exchange,
        "APP_REDIS__URL": redis_url,
        "APP_REDIS__SEND_RATE_LIMIT": "1000000",  # the broker-restart test sends fast; rate limits are tested elsewhere
        "APP_LOG__LEVEL": "INFO",
    }
    ports = Ports(http=free_port(), auth=free_port(), chat=free_port(), content=free_port())
    state_dir = tmp_path_factory.mktemp("app-state")
    runner = ProcessRunner(state_dir)
    with ExitStack() as cleanup:
        try:
            postgres_url = cleanup.enter_context(throwaway_database(base.postgres.url, run_id))
            redis.Redis.from_url(redis_url, socket_timeout=5).flushdb()
        except Exception as error:
            pytest.fail(f"{error}. Fix: {FIX}")
        cleanup.callback(_clean_up, base, run_id, exchange)
        cleanup.callback(runner.stop)
        try:
            up(
                app_root,
                state_dir=state_dir,
                ports=ports,
                env={**env, "APP_POSTGRES__URL": postgres_url},
                runner=runner,
            )
        except (ProcessFailed, PortTaken, MigrationFailed) as error:
            pytest.fail(f"the app did not start: {error}")
        settings = base.model_copy(
            update={
                "postgres": base.postgres.model_copy(update={"url": postgres_url}),
                "mongo": base.mongo.model_copy(update={"database": run_id}),
                "rabbitmq": base.rabbitmq.model_copy(update={"exchange": exchange}),
                "redis": base.redis.model_copy(update={"url": redis_url}),
            }
        )
        yield RunningApp(
            f"http://127.0.0.1:{ports.http}", f"ws://127.0.0.1:{ports.http}/ws", postgres_url, settings, runner
        )


def _clean_up(settings: Settings, mongo_database: str, exchange: str) -> None:
    """Drop what the run made outside PostgreSQL: its MongoDB database, its exchange and notifier queue."""
    client: MongoClient[dict[str, object]] = MongoClient(settings.mongo.url, serverSelectionTimeoutMS=5000)
    with client:
        client.drop_database(mongo_database)
    connection = pika.BlockingConnection(pika.URLParameters(settings.rabbitmq.url))
    try:
        channel = connection.channel()
        delete_notifier_queue(channel, notifier_queue(exchange))
        channel.exchange_delete(exchange=exchange)
    finally:
        connection.close()
