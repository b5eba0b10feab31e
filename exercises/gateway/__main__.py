"""Run the gateway: ``python -m reference_app.gateway`` (``make start`` does it for you).

uvicorn serves the app on ``settings.http.host:port``. Its own logging is switched off (``log_config=None``) and
its loggers are routed through ours, so every line of the process has the same format and the request id.
"""

from __future__ import annotations

import sys

import uvicorn

from ..config import ConfigError, load_settings
from ..logger import configure_logging
from .app import create_app
from .hub import WsLimits

SERVICE = "gateway"


def main() -> None:
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"{SERVICE}: configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log, service=SERVICE)
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
