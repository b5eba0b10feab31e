"""What the attack tests share besides fixtures: the gateway served by uvicorn, and a collector of ERROR logs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workbook.isolated import free_port


@dataclass
class ErrorLog:
    """What was logged at ERROR or above while it was attached: loguru's records and the standard library's."""

    lines: list[str] = field(default_factory=list)

    def clear(self) -> None:
        self.lines.clear()


class _Collect(logging.Handler):
    def __init__(self, log: ErrorLog) -> None:
        super().__init__(level=logging.ERROR)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        self.log.lines.append(f"{record.name}: {record.getMessage()}")


def collect_errors(log: ErrorLog) -> logging.Handler:
    """A standard-library logging handler that adds every record at ERROR or above to ``log``."""
    return _Collect(log)


class CloseCodes:
    """An ASGI wrapper that notes the code of every WebSocket close the server hands the app, in order.

    The server's side of a close, for the tests: when uvicorn refuses a frame (over the size limit, not UTF-8) it
    writes its close frame and closes the TCP connection at once, with the rest of the client's frame unread. The
    kernel then answers with a reset, and a client still sending may lose the close frame: it sees no code at all.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.codes: list[int] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return

        async def noting_the_close() -> Message:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.codes.append(int(message.get("code", 1005)))
            return message

        await self.app(scope, noting_the_close, send)


@dataclass(frozen=True)
class Served:
    """A gateway app served by uvicorn on a free port of 127.0.0.1; ``closes``: the WebSocket close codes it saw."""

    app: FastAPI
    port: int
    closes: list[int]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


@contextmanager
def serve(app: FastAPI, *, ws_max_size: int) -> Iterator[Served]:
    """Serve ``app`` with uvicorn from a thread, with the options ``python -m reference_app.gateway`` uses (its frame
    limit, no per-message compression, uvloop and httptools; plain HTTP, no access log)."""
    port = free_port()
    watched = CloseCodes(app)
    config = uvicorn.Config(
        watched,
        host="127.0.0.1",
        port=port,
        log_config=None,
        ws_max_size=ws_max_size,
        ws_per_message_deflate=False,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="attack-gateway", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("the gateway did not start under uvicorn (its log is above)")
            time.sleep(0.02)
        yield Served(app, port, watched.codes)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
