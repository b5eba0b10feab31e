"""Runs of the app that share the machine's services but none of anyone's data.

The end-to-end tests, the stage tests, notebook 07 and the WebSocket benchmark all start (parts of) the app while
a learner's own app may be running with ``make start``. Each run therefore gets its own PostgreSQL database, its
own MongoDB database, its own exchange (and with it its own notifier queue), its own Redis database and free
ports. Redis has only databases 0-15, so each kind of run owns a number, written down here once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

import pika
import redis
from pymongo import MongoClient

from reference_app.config import Settings, load_settings
from reference_app.events.__main__ import notifier_queue
from reference_app.events.topology import delete_notifier_queue

from .balancer import HaproxyMissing
from .databases import throwaway_database
from .messenger import MigrationFailed, Ports, up
from .processes import PortTaken, ProcessFailed, ProcessRunner, free_port
from .tls import local_tls

# The app itself uses database 0.
REDIS_DB_NOTEBOOK_07 = 8
REDIS_DB_STAGE_TESTS = 9
REDIS_DB_END_TO_END = 10
REDIS_DB_NOTEBOOK_11 = 11
REDIS_DB_BROWSER = 12
REDIS_DB_ATTACKS = 13
REDIS_DB_BENCHMARK = 14
REDIS_DB_FAULTS = 15


def with_redis_db(url: str, number: int) -> str:
    """The Redis URL ``url`` with database ``number``."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{number}"))


def drop_leftovers(settings: Settings, mongo_database: str, exchange: str) -> None:
    """Drop what a run made outside PostgreSQL: its MongoDB database, its exchange and its notifier queues.

    Deleting an exchange or a queue that was never made is not an error, so any run may call this.
    """
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


@dataclass(frozen=True)
class IsolatedApp:
    """A running app: the settings its processes see, where it listens, and the runner that stops it."""

    settings: Settings
    ports: Ports
    runner: ProcessRunner
    env: Mapping[str, str]  # every process's settings on top of the defaults: a process started again needs them
    ca_file: Path | None = None  # with TLS: the authority a client must trust

    @property
    def base_url(self) -> str:
        return f"{'https' if self.ca_file else 'http'}://127.0.0.1:{self.ports.http}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.ca_file else 'ws'}://127.0.0.1:{self.ports.http}/ws"


@contextmanager
def isolated_app(
    app_root: Path,
    *,
    run_id: str,
    redis_db: int,
    state_dir: Path,
    env: Mapping[str, str] | None = None,
    gateways: int = 1,
    tls: bool = False,
) -> Iterator[IsolatedApp]:
    """The app's six processes on free ports with data of their own; stopped and removed when the block ends.

    ``run_id`` names the database, the MongoDB database and the exchange; Redis database ``redis_db`` is emptied
    first (presence and rate-limit counters of an earlier run). ``env`` adds settings for every process.
    ``gateways``: two or more run as nodes behind the load balancer, which listens on ``ports.http``. ``tls``: every
    server speaks TLS only, with an authority of the run's own (``IsolatedApp.ca_file``).
    """
    base = load_settings()
    exchange = f"{run_id}.events"
    redis_url = with_redis_db(base.redis.url, redis_db)
    ports = Ports(http=free_port(), auth=free_port(), chat=free_port(), content=free_port()).with_nodes(gateways)
    with ExitStack() as cleanup:
        postgres_url = cleanup.enter_context(throwaway_database(base.postgres.url, run_id))
        redis.Redis.from_url(redis_url, socket_timeout=5).flushdb()
        cleanup.callback(drop_leftovers, base, run_id, exchange)
        runner = ProcessRunner(state_dir)
        cleanup.callback(runner.stop)
        own = {
            "APP_POSTGRES__URL": postgres_url,
            "APP_MONGO__DATABASE": run_id,
            "APP_RABBITMQ__EXCHANGE": exchange,
            "APP_REDIS__URL": redis_url,
        }
        env = {**(env or {}), **own}
        up(
            app_root,
            state_dir=state_dir,
            ports=ports,
            env=env,
            runner=runner,
            gateways=gateways,
            tls=tls,
        )
        settings = base.model_copy(
            update={
                "postgres": base.postgres.model_copy(update={"url": postgres_url}),
                "mongo": base.mongo.model_copy(update={"database": run_id}),
                "rabbitmq": base.rabbitmq.model_copy(update={"exchange": exchange}),
                "redis": base.redis.model_copy(update={"url": redis_url}),
            }
        )
        yield IsolatedApp(settings, ports, runner, env, local_tls(state_dir).ca_file if tls else None)


class AppDidNotStart(Exception):
    """The isolated app could not be started; the message says why and, for a missing service, the fix."""


@contextmanager
def isolated_app_or_reason(
    app_root: Path,
    *,
    run_id: str,
    redis_db: int,
    state_dir: Path,
    env: Mapping[str, str] | None = None,
    gateways: int = 1,
    tls: bool = False,
) -> Iterator[IsolatedApp]:
    """:func:`isolated_app`, with every reason it could not start turned into one AppDidNotStart sentence.

    For test fixtures: they fail with that sentence (a process that died quotes its log; a service that does not
    answer names the fix) instead of a traceback.
    """
    with ExitStack() as stack:
        try:
            app = stack.enter_context(
                isolated_app(
                    app_root,
                    run_id=run_id,
                    redis_db=redis_db,
                    state_dir=state_dir,
                    env=env,
                    gateways=gateways,
                    tls=tls,
                )
            )
        except (ProcessFailed, PortTaken, MigrationFailed, HaproxyMissing) as error:
            raise AppDidNotStart(f"the app did not start: {error}") from error
        except Exception as error:
            raise AppDidNotStart(f"{error}. Fix: start the services with `python -m workbook services up`") from error
        yield app


@contextmanager
def started_or_fail(
    starting: AbstractContextManager[IsolatedApp], fail: Callable[[str], NoReturn]
) -> Iterator[IsolatedApp]:
    """Enter ``starting`` (an ``isolated_app_or_reason(...)``); an app that does not start calls ``fail`` with the
    reason (a fixture passes ``pytest.fail``). Whatever happens after the start passes through untouched."""
    with ExitStack() as stack:
        try:
            app = stack.enter_context(starting)
        except AppDidNotStart as error:
            fail(str(error))
        yield app
