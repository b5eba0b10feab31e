"""Keep a worker running across broken connections: reconnect, with a backoff that grows and is capped.

pika never reconnects by itself, and neither does psycopg. A relay or a consumer therefore runs in *sessions*:
open the connections, work until told to stop or until a connection breaks, close, wait, open again.

The wait matters. Retrying at once, in a loop, while the broker is down turns every client into a small
denial-of-service attack on the broker the moment it comes back (and fills the log). Waiting longer after each
failure (0.2 s, 0.4 s, 0.8 s, ... never more than ``maximum``) is gentle; the jitter keeps a hundred clients
that lost the broker at the same instant from all coming back at the same instant too.

Only errors that a new connection can cure are retried. Anything else (a bug, a queue declared with other
settings) ends the loop and reaches the caller: retrying it forever would hide it.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TypeVar

import pika.exceptions
import psycopg
from loguru import logger

from .ports import BrokerUnavailable

# Errors that mean "the connection is gone": a new session may well work.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    pika.exceptions.AMQPConnectionError,
    BrokerUnavailable,
    psycopg.OperationalError,
)

Session = TypeVar("Session")


class Backoff:
    """Delays that grow by ``factor`` after each failure, capped at ``maximum``; ``reset`` after a success."""

    def __init__(
        self, *, initial: float = 0.2, maximum: float = 10.0, factor: float = 2.0, jitter: float = 0.2
    ) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError(f"a backoff needs 0 < initial <= maximum; got initial={initial}, maximum={maximum}")
        if factor < 1:
            raise ValueError(f"a backoff must not shrink: factor >= 1; got {factor}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter is the fraction a delay may be cut by, 0 <= jitter < 1; got {jitter}")
        self.initial, self.maximum, self.factor, self.jitter = initial, maximum, factor, jitter
        self._failures = 0

    def next_delay(self) -> float:
        """The wait before the next attempt. Each call counts one more failure."""
        delay = min(self.maximum, self.initial * self.factor**self._failures)
        self._failures += 1
        return delay * (1 - random.uniform(0, self.jitter))

    def reset(self) -> None:
        self._failures = 0


def run_with_reconnect(
    open_session: Callable[[], AbstractContextManager[Session]],
    work: Callable[[Session], None],
    *,
    stop: threading.Event,
    backoff: Backoff,
    what: str,
    give_up_after: int | None = None,
) -> None:
    """Run ``work`` in a session from ``open_session`` again and again, until ``stop`` is set.

    ``open_session()`` connects (its ``with`` block closes again); ``work(session)`` returns when ``stop`` is
    set, or raises when a connection breaks. A TRANSIENT_ERRORS error from either is logged, waited out with
    the backoff (a ``stop`` during the wait ends it at once), and followed by a new session; the backoff starts
    from the beginning again after each session that connected. After ``give_up_after`` failures in a row the
    last error is raised; None means never give up. Any other error is raised at once.
    """
    # exercise 10.4: reconnect with a bounded backoff until told to stop
    # hint: A loop `while not stop.is_set():` around `with open_session() as session: ... work(session)`, in a try that catches TRANSIENT_ERRORS only.
    # hint: Inside the with block, the connection worked: backoff.reset() and set the count of failures in a row to 0. In the except: count one more failure, re-raise when give_up_after is reached, else log a warning (logger.warning) and wait backoff.next_delay().
    # hint: Wait with stop.wait(delay), not time.sleep(delay): it returns as soon as stop is set, so a stopped worker never sleeps out a 10 s backoff.
    failures = 0
    while not stop.is_set():
        connected = False
        try:
            with open_session() as session:
                connected = True
                backoff.reset()
                failures = 0
                logger.info("{} connected", what)
                work(session)
        except TRANSIENT_ERRORS as error:
            failures += 1
            if give_up_after is not None and failures >= give_up_after:
                logger.error("{} gives up after {} failures in a row: {!r}", what, failures, error)
                raise
            delay = backoff.next_delay()
            state = "lost its connection" if connected else "could not connect"
            logger.warning("{} {} ({!r}); trying again in {:.2f} s", what, state, error, delay)
            stop.wait(delay)
    # end exercise
