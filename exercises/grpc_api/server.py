"""A gRPC server of the messenger: its own service, the standard health and reflection services, a clean stop.

- **Health** (``grpc.health.v1.Health``) answers "can you serve ``messenger.v1.ChatService``?" with SERVING or
  NOT_SERVING. Load balancers, Kubernetes probes and ``grpc_health_probe`` ask it; so do our tests.
- **Reflection** (``grpc.reflection.v1alpha.ServerReflection``) lets a tool ask the server which services and
  messages it has, so ``grpcurl -plaintext 127.0.0.1:50052 list`` works without the .proto files at hand.
- **A clean stop**: health turns NOT_SERVING first (a balancer stops sending new calls), then the server
  refuses new calls and gives the running ones ``GRACE_SECONDS`` to finish before it cancels them.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import uvloop
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import SERVICE_NAME as HEALTH_SERVICE_NAME
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]  # grpc-stubs predate health.aio
from grpc_reflection.v1alpha import reflection
from loguru import logger

from ..config import ConfigError, Settings, load_settings
from ..logger import configure_logging
from ..tls import grpc_server_tls, require_tls_in_production
from .errors import StatusFromErrors
from .identity import ProvenCallers, Verify

# How long a stopping server lets the calls already running finish. Shorter than the usual 10 s a process
# manager waits between SIGTERM and SIGKILL, so the stop stays clean.
GRACE_SECONDS = 5.0

Register = Callable[[grpc.aio.Server], None]


@dataclass
class RunningServer:
    """A started server, the port it really listens on (the OS picks one when asked for port 0), its health."""

    server: grpc.aio.Server
    port: int
    health: Any  # grpc_health.v1.health.aio.HealthServicer

    async def stop(self, grace: float = GRACE_SECONDS) -> None:
        await self.health.enter_graceful_shutdown()  # every service NOT_SERVING, from now on
        await self.server.stop(grace)

    async def wait_then_stop(self) -> None:
        """Serve until the task running this is cancelled (Ctrl+C, SIGTERM, the end of a test), then stop cleanly."""
        try:
            await self.server.wait_for_termination()
        finally:
            await self.stop()


async def add_health_and_reflection(server: grpc.aio.Server, service_names: Sequence[str]) -> Any:
    """Register health (each of ``service_names`` SERVING) and reflection on ``server``; return the health servicer."""
    # exercise 08.1: add the standard health and reflection services
    raise NotImplementedError("exercise 08.1 is yours to write: see notebooks/08_grpc.ipynb, section 'Exercise 08.1'. Stuck? python -m workbook hint 08.1")
    # end exercise


async def start_server(
    register: Register,
    service_names: Sequence[str],
    *,
    host: str,
    port: int,
    verify: Verify | None = None,
    credentials: grpc.ServerCredentials | None = None,
) -> RunningServer:
    """Build a server with the error interceptor, ``register`` our servicer on it, add health and reflection, start.

    ``port=0`` lets the operating system choose a free port: tests and notebooks use that, and read
    ``RunningServer.port`` to connect. With ``verify`` (a token verifier's ``verify``), every call that names a
    user must prove it with that user's access token (stage 12, see identity.py); the services' entry points
    always pass it. Without it the server trusts ``x-user-id`` as stage 08 does: for tests and notebooks only.
    With ``credentials`` (reference_app/tls.py) it listens with TLS; without, in plain text.
    """
    interceptors: list[grpc.aio.ServerInterceptor] = [StatusFromErrors()]  # type: ignore[type-arg]
    if verify is not None:
        interceptors.append(ProvenCallers(verify))  # after StatusFromErrors: its refusals become statuses
    server = grpc.aio.server(interceptors=interceptors)
    register(server)
    health = await add_health_and_reflection(server, service_names)
    if credentials is None:  # plain text: local only (stage 12 explains why prod refuses it)
        bound_port = server.add_insecure_port(f"{host}:{port}")
    else:
        bound_port = server.add_secure_port(f"{host}:{port}", credentials)
    await server.start()
    how = "plain text" if credentials is None else "TLS"
    logger.info("gRPC server for {} listening on {}:{} ({})", ", ".join(service_names), host, bound_port, how)
    return RunningServer(server, bound_port, health)


def run_service(name: str, serve: Callable[[Settings], Coroutine[Any, Any, None]]) -> None:
    """The main of a service process: settings, logging, then ``serve`` until SIGINT or SIGTERM (a clean stop).

    A broken configuration stops it with one line naming the variable, and exit status 2.
    """
    try:
        settings = load_settings()
        require_tls_in_production(settings, serves_http=False)
        grpc_server_tls(settings.grpc)  # a key readable by others, or a missing file, stops it here
    except ConfigError as error:
        print(f"{name}: configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log, service=name)

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, task.cancel)
        try:
            await serve(settings)
        except asyncio.CancelledError:
            logger.info("stopped")

    # uvloop: libuv's event loop, the one the gateway runs on too (grpc.aio's callbacks are most of a call's cost).
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
