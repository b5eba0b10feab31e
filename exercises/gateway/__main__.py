"""Run the gateway: ``python -m reference_app.gateway`` (``make start`` does it for you).

uvicorn serves the app on ``settings.http.host:port``. Its own logging is switched off (``log_config=None``) and
its loggers are routed through ours, so every line of the process has the same format and the request id.
"""

from __future__ import annotations

import logging
import re
import sys

import uvicorn

from ..config import ConfigError, load_settings
from ..logger import configure_logging
from .app import create_app
from .hub import WsLimits

SERVICE = "gateway"
# uvicorn writes each request's path WITH its query string into its log lines ("WebSocket /ws?token=…").
QUERY_STRING = re.compile(r"\?[^\s\"]*")


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


def main() -> None:
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"{SERVICE}: configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log, service=SERVICE)
    hide_query_strings()
    # ws_max_size: the websockets library refuses a bigger frame (close 1009) before reading it into memory.
    uvicorn.run(
        create_app(settings),
        host=settings.http.host,
        port=settings.http.port,
        log_config=None,
        ws_max_size=WsLimits().max_frame_bytes,
    )


if __name__ == "__main__":
    main()
