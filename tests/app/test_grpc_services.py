"""The gRPC services as processes run them: `serve(settings)` until cancelled, and the auth service end to end.

The stage tests (tests/stages/test_08_grpc.py) grade the exercises on in-process servers; these check the
reference app's entry points and the auth server, which no exercise covers.
"""

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import grpc
import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import SecretStr
from pymongo import MongoClient

from reference_app.auth.grpc_server import start_auth_server
from reference_app.auth.wiring import build_auth_service
from reference_app.chat import grpc_server as chat_grpc
from reference_app.config import Settings
from reference_app.content import grpc_server as content_grpc
from reference_app.db import apply_migrations
from reference_app.db.pool import open_pool
from reference_app.grpc_api import auth_pb2, auth_pb2_grpc
from workbook.databases import throwaway_database

DEADLINE = 5.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def health(port: int, service: str) -> str:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        request = health_pb2.HealthCheckRequest(service=service)
        response = await health_pb2_grpc.HealthStub(channel).Check(request, timeout=DEADLINE, wait_for_ready=True)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


async def run_until_healthy_then_cancel(serve: Awaitable[None], port: int, service: str) -> tuple[str, Any]:
    """Start `serve` as a task, ask its health once it answers, cancel it; (status, the task's outcome)."""
    task = asyncio.ensure_future(serve)
    try:
        status = await health(port, service)
    finally:
        task.cancel()
        outcome = await asyncio.gather(task, return_exceptions=True)
    return status, outcome[0]


@pytest.mark.parametrize("module", [chat_grpc, content_grpc], ids=["chat", "content"])
def test_serve_answers_health_and_stops_cleanly_when_cancelled(settings: Settings, module: Any) -> None:
    port = free_port()
    grpc_settings = settings.grpc.model_copy(update={"chat_port": port, "content_port": port})
    mongo_settings = settings.mongo.model_copy(update={"database": f"grpc_serve_{uuid.uuid4().hex}"})
    configured = settings.model_copy(update={"grpc": grpc_settings, "mongo": mongo_settings})

    async def scenario() -> tuple[str, Any, grpc.StatusCode | None]:
        status, outcome = await run_until_healthy_then_cancel(module.serve(configured), port, module.SERVICE_NAME)
        # The C core may still be closing the listener for a moment after stop() returns (calls then come back
        # CANCELLED): ask again briefly, until the port is closed or the attempts run out.
        after: grpc.StatusCode | None = None
        for _ in range(30):
            try:
                async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                    await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
                after = None
            except grpc.aio.AioRpcError as error:
                after = error.code()
            if after == grpc.StatusCode.UNAVAILABLE:
                break
            await asyncio.sleep(0.1)
        return status, outcome, after

    try:
        status, outcome, after = asyncio.run(scenario())
    finally:
        with MongoClient(settings.mongo.url, serverSelectionTimeoutMS=5000) as mongo:
            mongo.drop_database(mongo_settings.database)
    assert status == "SERVING", f"a started {module.SERVICE_NAME} must be SERVING; it was {status}"
    assert isinstance(outcome, asyncio.CancelledError), (
        f"serve() must end by its cancellation; it ended with {outcome!r}"
    )
    assert after == grpc.StatusCode.UNAVAILABLE, f"after the stop nothing may answer on the port; got {after}"


@pytest.fixture
def auth_database(settings: Settings) -> Iterator[str]:
    with throwaway_database(settings.postgres.url, f"grpc_auth_{uuid.uuid4().hex[:12]}") as url:
        apply_migrations(url)
        yield url


def test_the_auth_service_signs_up_signs_in_and_out_over_grpc(settings: Settings, auth_database: str) -> None:
    key = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    configured = settings.model_copy(
        update={
            "postgres": settings.postgres.model_copy(update={"url": auth_database}),
            "jwt": settings.jwt.model_copy(update={"signing_key": SecretStr(key.decode()), "public_key": None}),
        }
    )
    prefix = f"grpc_auth_test:{uuid.uuid4().hex[:12]}:"
    client = redis.Redis.from_url(settings.redis.url, socket_timeout=5)

    async def scenario(call: Callable[..., Any]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        registered = await call(
            "Register", auth_pb2.RegisterRequest(username="ada", email="ada@example.org", password="correct horse")
        )
        seen["user"] = registered.user
        tokens = (await call("Login", auth_pb2.LoginRequest(username="ada", password="correct horse"))).tokens
        seen["authenticated"] = (
            await call("Authenticate", auth_pb2.AuthenticateRequest(access_token=tokens.access_token))
        ).user_id
        seen["wrong password"] = await call(
            "Login", auth_pb2.LoginRequest(username="ada", password="wrong horse"), refused=True
        )
        fresh = (await call("Refresh", auth_pb2.RefreshRequest(refresh_token=tokens.refresh_token))).tokens
        seen["reused refresh"] = await call(
            "Refresh", auth_pb2.RefreshRequest(refresh_token=tokens.refresh_token), refused=True
        )
        logout = auth_pb2.LogoutRequest(access_token=fresh.access_token, refresh_token=fresh.refresh_token)
        await call("Logout", logout)
        seen["after logout"] = await call(
            "Authenticate", auth_pb2.AuthenticateRequest(access_token=fresh.access_token), refused=True
        )
        return seen  # fmt: skip

    async def main() -> dict[str, Any]:
        async with open_pool(configured.postgres) as pool:
            server = await start_auth_server(
                build_auth_service(configured, pool, client, prefix=prefix), host="127.0.0.1", port=0
            )
            try:
                async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                    stub = auth_pb2_grpc.AuthServiceStub(channel)

                    async def call(method: str, request: Any, refused: bool = False) -> Any:
                        try:
                            response = await getattr(stub, method)(request, timeout=DEADLINE)
                        except grpc.aio.AioRpcError as error:
                            if refused:
                                return error.code()
                            pytest.fail(f"{method} failed with {error.code().name}: {error.details()}")
                        assert not refused, f"{method} must be refused; it answered {response}"
                        return response

                    return await scenario(call)
            finally:
                await server.stop(0)

    try:
        seen = asyncio.run(main())
    finally:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()
    assert seen["user"].username == "ada" and seen["user"].id > 0, (
        f"Register must answer the new user; got {seen['user']}"
    )
    assert seen["authenticated"] == seen["user"].id, "Authenticate must name the user the token was issued to"
    for case in ("wrong password", "reused refresh", "after logout"):
        assert seen[case] == grpc.StatusCode.UNAUTHENTICATED, f"{case} must be UNAUTHENTICATED; got {seen[case]}"


@pytest.mark.parametrize("service", ["auth", "chat", "content"])
def test_a_service_with_a_broken_configuration_stops_with_one_line(service: str) -> None:
    environment = {name: value for name, value in os.environ.items() if not name.startswith("APP_")}
    result = subprocess.run(
        [sys.executable, "-m", f"reference_app.{service}.grpc_server"],
        env={**environment, "APP_ENV": "prod"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"{service}: configuration error: APP_JWT__SIGNING_KEY is required when APP_ENV=prod"
    ]
