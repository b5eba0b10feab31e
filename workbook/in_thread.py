"""The app's gRPC services served from a background thread's event loop, inside a test's own process.

For fixtures that call the services as the gateway does without starting processes: the stage tests (against a
learner's copy) and the generated attacks.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

S = TypeVar("S")  # the settings of the copy of the app being served
Serve = Callable[[S], Coroutine[Any, Any, None]]


def wait_for_port(port: int, what: str, *, seconds: float = 15.0) -> None:
    """Return once something listens on 127.0.0.1:``port``; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"the {what} did not start listening on port {port} in {seconds:g} s") from None
            time.sleep(0.05)


@contextmanager
def serving_in_a_thread(settings: S, services: Mapping[str, tuple[Serve[S], int]], *, name: str) -> Iterator[S]:
    """Run each ``serve(settings)`` of ``services`` (a name: its serve function and port) until the block ends.

    The block starts once every port listens. At its end each service is cancelled, which stops its server and
    closes its pool or client.
    """
    stop = threading.Event()

    async def serve_until_stopped() -> None:
        tasks = [asyncio.create_task(serve(settings)) for serve, _ in services.values()]
        await asyncio.to_thread(stop.wait)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    thread = threading.Thread(target=asyncio.run, args=(serve_until_stopped(),), name=name, daemon=True)
    thread.start()
    try:
        for what, (_, port) in services.items():
            wait_for_port(port, what)
        yield settings
    finally:
        stop.set()
        thread.join(timeout=15)
