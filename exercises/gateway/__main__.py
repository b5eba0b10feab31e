"""Run the gateway: ``python -m reference_app.gateway`` (``make start`` does it for you).

uvicorn serves the app on ``settings.http.host:port``. Its own logging is switched off (``log_config=None``) and
its loggers are routed through ours, so every line of the process has the same format and the request id.

**A node among several.** ``MESSENGER_GATEWAY_NODE`` names this node when a load balancer spreads clients over
several (``python -m workbook app up --gateways 2`` sets it): the name goes into the X-Gateway-Node header and
into the node's id in Redis. **Stopping** (SIGTERM, Ctrl+C): the node stops accepting connections, so the
balancer's next health check fails; then every WebSocket client is told 1001 (going away) and reconnects through
the balancer to another node; only then does uvicorn finish the requests in flight and the app close.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys

import uvicorn
from fastapi import FastAPI

from ..config import ConfigError, load_settings
from ..logger import configure_logging
from ..tls import require_tls_in_production, uvicorn_tls_options
from .app import HEALTH_PATH, create_app
from .hub import WsLimits

SERVICE = "gateway"
# uvicorn writes each request's path WITH its query string into its log lines ("WebSocket /ws?token=…").
QUERY_STRING = re.compile(r"\?[^\s\"]*")
NODE_VARIABLE = "MESSENGER_GATEWAY_NODE"


class HideQueryStrings(logging.Filter):
    """Cut the query string out of uvicorn's log lines: a client that put a token there must not leak it to us.

    The WebSocket refuses such a token (close 4401), but uvicorn logs the handshake before our code runs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                QUERY_STRING.sub("?…", arg) if isinstance(arg, str) and arg.startswith("/") else arg
                for arg in record.args
            )
        return True


def hide_query_strings() -> None:
    for name in ("uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).addFilter(HideQueryStrings())


# What uvicorn logs at ERROR, with a traceback, about a client's mistake it has already answered: a WebSocket text
# frame that is not UTF-8 (uvicorn closes the connection with 1007). Anyone could fill our error log with them.
CLIENT_MISTAKES = frozenset({"Invalid UTF-8 sequence received from client."})


class ClientMistakesAreWarnings(logging.Filter):
    """Log a client's mistake (CLIENT_MISTAKES) as a WARNING without a traceback: ERROR is for our own faults."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.msg in CLIENT_MISTAKES:
            record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
            record.exc_info = record.exc_text = None
        return True


def demote_client_mistakes() -> None:
    logging.getLogger("uvicorn.error").addFilter(ClientMistakesAreWarnings())


class SkipHealthChecks(logging.Filter):
    """No access-log line for the balancer's health check: it comes every second and says nothing new."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn's access record: (client address, method, path, HTTP version, status)
        return not (isinstance(args, tuple) and len(args) >= 3 and args[2] == HEALTH_PATH)


class GatewayServer(uvicorn.Server):
    """uvicorn's server with one step more when it is told to stop: the WebSocket clients are told 1001 first.

    uvicorn alone would close the WebSockets with 1012 (service restart) and only then run the app's shutdown.
    """

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Stop accepting first (uvicorn does it again, which does no harm): no new socket comes to a node that
        # is going, and the load balancer's next health check finds the port closed.
        for server in self.servers:
            server.close()
        gateway = getattr(self._app.state, "gateway", None)
        if gateway is not None:
            await gateway.hub.going_away()
        await super().shutdown(sockets)


def main() -> None:
    try:
        settings = load_settings()
        require_tls_in_production(settings, serves_http=True)
        tls = uvicorn_tls_options(settings.http)  # HTTPS and wss:// when a certificate is set
    except ConfigError as error:
        print(f"{SERVICE}: configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log, service=SERVICE)
    hide_query_strings()
    demote_client_mistakes()
    logging.getLogger("uvicorn.access").addFilter(SkipHealthChecks())
    app = create_app(settings, node_name=os.environ.get(NODE_VARIABLE) or None)
    # ws_max_size: the websockets library refuses a bigger frame (close 1009) before reading it into memory.
    config = uvicorn.Config(
        app,
        host=settings.http.host,
        port=settings.http.port,
        log_config=None,
        ws_max_size=WsLimits().max_frame_bytes,
        # No per-message compression. Each socket would keep a deflate context (about 49 of its 89 KiB), and
        # compressing every frame was 12-15 % of a node's CPU; chat frames are a few hundred bytes. Measured with
        # bench/websocket.py at 1,000 clients and 200 msg/s: the p99 is the same with it or without it (57-59 ms
        # against 55-68 ms, two runs each, in one session).
        ws_per_message_deflate=False,
        # uvloop (libuv's event loop) and httptools (Node's HTTP parser): the same asyncio and HTTP, in C.
        loop="uvloop",
        http="httptools",
        # The client's address (per-address sign-in limits) from X-Forwarded-For, believed only from these.
        forwarded_allow_ips=settings.http.forwarded_allow_ips,
        **tls,  # type: ignore[arg-type]  # str paths: uvicorn's own types
    )
    GatewayServer(config, app).run()


if __name__ == "__main__":
    main()
