"""TLS everywhere, as ``make start TLS=1`` runs it, against the app's real processes and a real HAProxy.

One app, started by the runner with ``tls=True`` and two gateway nodes: HTTPS and wss:// at the balancer, TLS from
the balancer to each node (its health checks too), TLS from the gateway to the gRPC services, all with a
certificate authority of the run's own. A client that trusts that authority signs up, chats over wss:// and gets
its message pushed; a client that speaks plain text, or trusts nobody, gets nothing; the gRPC services refuse a
plain-text channel.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import websockets
from grpc_health.v1 import health_pb2, health_pb2_grpc

from workbook.isolated import REDIS_DB_END_TO_END, IsolatedApp, isolated_app_or_reason, started_or_fail

pytestmark = pytest.mark.e2e

ENV = {
    "APP_REDIS__SIGN_IN_RATE_LIMIT": "1000000",
    "APP_REDIS__SIGN_IN_ADDRESS_RATE_LIMIT": "1000000",
    "APP_LOG__LEVEL": "INFO",
}
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IsolatedApp]:
    app_root = Path(request.config.getoption("app_root")).resolve()
    with started_or_fail(
        isolated_app_or_reason(
            app_root,
            run_id=f"e2e_tls_{os.getpid()}",
            redis_db=REDIS_DB_END_TO_END,
            state_dir=tmp_path_factory.mktemp("tls-app-state"),
            env=ENV,
            gateways=2,
            tls=True,
        ),
        pytest.fail,
    ) as started:
        yield started


def trusting(app: IsolatedApp) -> ssl.SSLContext:
    assert app.ca_file is not None, "the app runs with TLS"
    return ssl.create_default_context(cafile=str(app.ca_file))


def sign_up(http: httpx.Client, name: str) -> tuple[int, str]:
    username = f"{name}_{uuid.uuid4().hex[:6]}"
    user = http.post(
        "/api/v1/auth/register", json={"username": username, "email": f"{username}@x.org", "password": PASSWORD}
    )
    assert user.status_code == 201, user.text
    tokens = http.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert tokens.status_code == 200, tokens.text
    return int(user.json()["id"]), str(tokens.json()["access_token"])


def test_a_client_that_trusts_the_authority_chats_over_https_and_wss(app: IsolatedApp) -> None:
    assert app.base_url.startswith("https://") and app.ws_url.startswith("wss://")
    with httpx.Client(base_url=app.base_url, verify=trusting(app), timeout=10) as http:
        ada_id, ada_token = sign_up(http, "ada")
        linus_id, linus_token = sign_up(http, "linus")
        chat = http.post(
            "/api/v1/chats", json={"other_user_id": linus_id}, headers={"Authorization": f"Bearer {ada_token}"}
        )
        assert chat.status_code == 200, chat.text
        chat_id = chat.json()["id"]

    async def chat_over_wss() -> dict[str, object]:
        async with websockets.connect(app.ws_url, ssl=trusting(app)) as linus:
            await linus.send(json.dumps({"type": "auth", "token": linus_token}))
            while json.loads(await asyncio.wait_for(linus.recv(), 10))["type"] != "ready":
                pass
            async with websockets.connect(app.ws_url, ssl=trusting(app)) as ada:
                await ada.send(json.dumps({"type": "auth", "token": ada_token}))
                while json.loads(await asyncio.wait_for(ada.recv(), 10))["type"] != "ready":
                    pass
                send = {"type": "send", "chat_id": chat_id, "client_message_id": str(uuid.uuid4()), "body": "over TLS"}
                await ada.send(json.dumps(send))
                while True:
                    frame: dict[str, object] = json.loads(await asyncio.wait_for(linus.recv(), 10))
                    if frame["type"] == "message.created":
                        return frame

    pushed = asyncio.run(chat_over_wss())
    message = pushed["message"]
    assert isinstance(message, dict) and message["body"] == "over TLS" and message["sender_id"] == ada_id


def test_plain_text_and_an_untrusting_client_get_nothing(app: IsolatedApp) -> None:
    plain = app.base_url.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):
        httpx.get(plain + "/healthz", timeout=5).raise_for_status()
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(app.base_url + "/healthz", timeout=5)  # the system's authorities never signed our certificate


def test_the_grpc_services_refuse_plain_text_and_answer_over_tls(app: IsolatedApp) -> None:
    assert app.ca_file is not None
    trusted = grpc.ssl_channel_credentials(root_certificates=app.ca_file.read_bytes())

    async def health(secure: bool) -> str:
        target = f"127.0.0.1:{app.ports.chat}"
        channel = grpc.aio.secure_channel(target, trusted) if secure else grpc.aio.insecure_channel(target)
        async with channel:
            try:
                answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
            except grpc.aio.AioRpcError as error:
                return error.code().name
            return health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)

    assert asyncio.run(health(secure=False)) == "UNAVAILABLE", "the chat service must not speak plain text"
    assert asyncio.run(health(secure=True)) == "SERVING"
