"""Run a stage 10 worker as a process of its own: ``python -m reference_app.events relay|notifier``.

``make start`` (through ``python -m workbook app up``) starts both. Each is a plain loop in the main thread
(pika's blocking connections, psycopg's synchronous ones), so a clean stop needs no event loop: SIGINT or
SIGTERM only *sets* the ``stop`` event, and the worker sees it within one poll (well under a second), closes
its connections and returns. Nothing is cut off halfway through a batch or a delivery.

- **relay**: moves committed rows of chat.outbox to the exchange ``settings.rabbitmq.exchange``.
- **notifier**: consumes ``message.created`` events and records notifications for offline recipients. Its
  durable queue is named after the exchange, so two copies of the app on one broker (a learner's app and the
  end-to-end tests, say) each get their own queue instead of taking each other's events.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from contextlib import ExitStack
from types import FrameType

import redis
from loguru import logger

from ..config import ConfigError, Settings, load_settings
from ..gateway.presence import Presence
from ..logger import configure_logging
from .notifications_pg import PostgresChatMembers, PostgresNotifications, open_pool
from .notifier import Notifier
from .notifier_consumer import NotifierConsumer
from .relay import OutboxRelay

# Runs until ``stop`` is set; builds its worker from the settings and closes what it opened before returning.
Work = Callable[[Settings, threading.Event], None]


def notifier_queue(exchange: str) -> str:
    """The notifier's queue for the events of ``exchange``: one queue per copy of the app on a broker."""
    return f"{exchange}.notifier"


def run_relay(settings: Settings, stop: threading.Event) -> None:
    relay = OutboxRelay(settings.postgres.url, settings.rabbitmq.url, settings.rabbitmq.exchange, name="relay")
    relay.run_forever(stop)
    logger.info("relay published {} events in {} sessions", relay.published, relay.sessions)


def run_notifier(settings: Settings, stop: threading.Event) -> None:
    with ExitStack() as stack:
        pool = stack.enter_context(open_pool(settings.postgres.url))
        client = redis.Redis.from_url(settings.redis.url, socket_timeout=2.0, socket_connect_timeout=2.0)
        stack.callback(client.close)
        # The gateway's presence, read with the gateway's key prefix: "online" means what the gateway says.
        presence = Presence.from_settings(client, settings.redis)
        notifier = Notifier(PostgresChatMembers(pool), presence, PostgresNotifications(pool))
        consumer = NotifierConsumer(
            settings.rabbitmq.url,
            settings.rabbitmq.exchange,
            notifier.handle,
            queue=notifier_queue(settings.rabbitmq.exchange),
            name="notifier",
        )
        consumer.run_forever(stop)
        logger.info("notifier settled {} deliveries in {} sessions", consumer.settled, consumer.sessions)


WORKERS: dict[str, Work] = {"relay": run_relay, "notifier": run_notifier}


def run_worker(name: str, work: Work) -> None:
    """The main of a worker process: settings, logging, then ``work`` until SIGINT or SIGTERM asks it to stop.

    A broken configuration stops it with one line naming the variable, and exit status 2 (as run_service does
    for the gRPC services).
    """
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"{name}: configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log, service=name)
    stop = threading.Event()

    def ask_to_stop(signum: int, frame: FrameType | None) -> None:
        logger.info("{} received: stopping", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, ask_to_stop)
    work(settings, stop)
    logger.info("stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m reference_app.events", description="Run a stage 10 worker.")
    parser.add_argument("worker", choices=sorted(WORKERS))
    name = parser.parse_args(argv).worker
    run_worker(name, WORKERS[name])


if __name__ == "__main__":
    main()
