"""Stage 12 — TLS between the gateway and the gRPC services. These tests grade exercises 12.1–12.3.

Each test makes a certificate authority of its own with trustme (a throwaway one, in memory and a temporary
folder), a certificate for 127.0.0.1 signed by it, and a real gRPC server with the health service. A client that
trusts that authority gets an answer; a client that trusts another authority, or speaks plain text, gets none.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import trustme
from app.config import ConfigError
from app.config.settings import GrpcSettings
from app.grpc_api.server import start_server
from app.tls import channel_credentials, grpc_client_tls, grpc_server_tls, read_private_key, server_credentials
from grpc_health.v1 import health_pb2, health_pb2_grpc

exercise = pytest.mark.exercise
SERVICE = "messenger.v1.Probe"


@dataclass
class Authority:
    ca: trustme.CA
    ca_file: Path
    cert_file: Path
    key_file: Path


@pytest.fixture
def authority(tmp_path: Path) -> Iterator[Authority]:
    ca = trustme.CA(organization_name="messenger test authority")
    issued = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    ca.cert_pem.write_to_path(str(ca_file))
    for blob in issued.cert_chain_pems:
        blob.write_to_path(str(cert_file), append=True)
    issued.private_key_pem.write_to_path(str(key_file))
    key_file.chmod(0o600)
    yield Authority(ca, ca_file, cert_file, key_file)


def served(authority: Authority) -> grpc.ServerCredentials:
    return server_credentials(authority.cert_file, authority.key_file)


async def health_over(credentials: grpc.ServerCredentials | None, client: grpc.ChannelCredentials | None) -> str:
    """Start a server with ``credentials``, ask its health over a channel with ``client`` (None: plain text)."""

    def register(server: grpc.aio.Server) -> None:
        pass

    running = await start_server(register, [SERVICE], host="127.0.0.1", port=0, credentials=credentials)
    target = f"127.0.0.1:{running.port}"
    try:
        channel = grpc.aio.insecure_channel(target) if client is None else grpc.aio.secure_channel(target, client)
        async with channel:
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                answer = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=3)
            except grpc.aio.AioRpcError as error:
                return error.code().name
            return health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    finally:
        await running.stop(0)


# 12.1 — a private key only its owner can read ------------------------------------------------------------------


@exercise("12.1")
def test_a_private_key_of_its_owner_only_is_read(authority: Authority) -> None:
    data = read_private_key(authority.key_file, section="grpc")
    assert data.startswith(b"-----BEGIN") and b"PRIVATE KEY" in data, "the PEM bytes of the key file"


@exercise("12.1")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_others_may_read_stops_the_service(authority: Authority, mode: int) -> None:
    authority.key_file.chmod(mode)
    with pytest.raises(ConfigError) as refused:
        read_private_key(authority.key_file, section="grpc")
    message = str(refused.value)
    assert "APP_GRPC__TLS_KEY_FILE" in message, f"name the setting to fix: {message}"
    assert "chmod 600" in message, f"say how to fix it: {message}"
    assert "PRIVATE KEY" not in message, "never echo the key"


@exercise("12.1")
def test_a_missing_key_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="APP_HTTP__TLS_KEY_FILE"):
        read_private_key(tmp_path / "nope.key", section="http")


# 12.2 — the server's credentials -------------------------------------------------------------------------------


def test_no_certificate_means_plain_text() -> None:
    assert grpc_server_tls(GrpcSettings()) is None, "local without TLS files: plain text, as before"
    assert grpc_client_tls(GrpcSettings()) is None
    assert asyncio.run(health_over(None, None)) == "SERVING"


@exercise("12.2")
def test_a_server_with_its_certificate_answers_a_client_that_trusts_the_authority(authority: Authority) -> None:
    client = grpc.ssl_channel_credentials(root_certificates=authority.ca.cert_pem.bytes())
    assert asyncio.run(health_over(served(authority), client)) == "SERVING"


@exercise("12.2")
def test_a_tls_server_refuses_plain_text(authority: Authority) -> None:
    assert asyncio.run(health_over(served(authority), None)) == "UNAVAILABLE"


@exercise("12.2")
def test_a_server_key_others_may_read_is_refused(authority: Authority) -> None:
    os.chmod(authority.key_file, 0o644)
    with pytest.raises(ConfigError, match="APP_GRPC__TLS_KEY_FILE"):
        served(authority)


# 12.3 — the client's credentials -------------------------------------------------------------------------------


@exercise("12.3")
def test_a_client_that_trusts_our_authority_connects(authority: Authority) -> None:
    settings = GrpcSettings(
        tls_cert_file=authority.cert_file, tls_key_file=authority.key_file, tls_ca_file=authority.ca_file
    )
    assert asyncio.run(health_over(grpc_server_tls(settings), grpc_client_tls(settings))) == "SERVING"


@exercise("12.3")
def test_a_client_refuses_a_server_signed_by_another_authority(authority: Authority, tmp_path: Path) -> None:
    impostor = trustme.CA(organization_name="someone else")
    issued = impostor.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "impostor.pem", tmp_path / "impostor.key"
    issued.cert_chain_pems[0].write_to_path(str(cert_file))
    issued.private_key_pem.write_to_path(str(key_file))
    key_file.chmod(0o600)
    impostor_server = server_credentials(cert_file, key_file)
    client = channel_credentials(authority.ca_file)
    assert asyncio.run(health_over(impostor_server, client)) == "UNAVAILABLE", (
        "a client must trust ONLY our authority: a certificate from anyone else is a man in the middle"
    )


@exercise("12.3")
def test_a_missing_authority_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="APP_GRPC__TLS_CA_FILE"):
        channel_credentials(tmp_path / "nope.pem")
