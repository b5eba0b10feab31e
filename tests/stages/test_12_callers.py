"""Stage 12 — every caller proven. The chat, content and auth services no longer trust a bare ``x-user-id``.

Any process that can reach a service's port could write ``x-user-id: 7`` and read user 7's chats. Started by
their entry points, the services now require the user's own access token beside the id (the gateway forwards
it), and verify it with the auth service's public key. These tests play the other process: they call the
services directly, with and without that proof.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
import pytest
import redis
from app.auth.credentials import AccessClaims, InvalidToken
from app.config import Settings, load_settings
from app.grpc_api import auth_pb2, auth_pb2_grpc, chat_pb2, chat_pb2_grpc, content_pb2, content_pb2_grpc
from app.grpc_api.identity import Unauthenticated, proven_user_id
from app.grpc_api.server import start_server
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from test_07_http import API, open_chat, send, sign_up

T = TypeVar("T")
PASSWORD = "correct horse battery"


def claims(user_id: int) -> AccessClaims:
    return AccessClaims(user_id=user_id, jti="j", issued_at=0, expires_at=2**40)


def verify_as(tokens: dict[str, int]) -> Callable[[str], Awaitable[AccessClaims]]:
    """A verifier that knows a few tokens by heart: enough to test the rule, not the signature."""

    async def verify(token: str) -> AccessClaims:
        if token not in tokens:
            raise InvalidToken("not one of ours")
        return claims(tokens[token])

    return verify


# The rule, alone ------------------------------------------------------------------------------------------------

VERIFY = verify_as({"token-of-7": 7, "token-of-8": 8})


def test_a_call_that_names_nobody_needs_no_proof() -> None:
    assert asyncio.run(proven_user_id([("x-request-id", "r1")], VERIFY)) is None


def test_a_user_id_with_that_users_token_is_proven() -> None:
    assert asyncio.run(proven_user_id([("x-user-id", "7"), ("authorization", "Bearer token-of-7")], VERIFY)) == 7


@pytest.mark.parametrize(
    ("metadata", "why"),
    [
        ([("x-user-id", "7")], "a bare x-user-id: the attack this stage closes"),
        ([("x-user-id", "7"), ("authorization", "Bearer token-of-8")], "another user's valid token"),
        ([("x-user-id", "7"), ("authorization", "Bearer forged")], "a token the verifier refuses"),
        ([("x-user-id", "7"), ("authorization", "token-of-7")], "no Bearer scheme"),
        ([("x-user-id", "7"), ("authorization", "Bearer token-of-7"), ("authorization", "Bearer token-of-7")], "two"),
        ([("x-user-id", "7"), ("authorization", b"Bearer token-of-7")], "bytes, not text"),
        ([("x-user-id", "7"), ("x-user-id", "8"), ("authorization", "Bearer token-of-7")], "two user ids"),
    ],
)
def test_a_user_id_without_its_proof_is_refused(metadata: Sequence[tuple[str, str | bytes]], why: str) -> None:
    with pytest.raises(Unauthenticated):
        asyncio.run(proven_user_id(metadata, VERIFY))
        pytest.fail(f"accepted {why}: {metadata}")


# The services, as their entry points start them ----------------------------------------------------------------


def call(settings: Settings, use: Callable[[grpc.aio.Channel], Awaitable[T]], port: int) -> T:
    async def main() -> T:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            return await use(channel)

    return asyncio.run(main())


def code_of(settings: Settings, port: int, use: Callable[[grpc.aio.Channel], Awaitable[Any]]) -> grpc.StatusCode:
    try:
        call(settings, use, port)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def history(chat_id: int, metadata: Sequence[tuple[str, str]]) -> Callable[[grpc.aio.Channel], Awaitable[Any]]:
    async def use(channel: grpc.aio.Channel) -> Any:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        return await stub.History(chat_pb2.HistoryRequest(chat_id=chat_id), metadata=metadata, timeout=5)

    return use


def bearer(headers: dict[str, str]) -> tuple[str, str]:
    return ("authorization", headers["Authorization"])


def test_another_process_cannot_read_a_chat_with_a_bare_user_id(gateway: TestClient, grpc_services: Settings) -> None:
    alice, as_alice = sign_up(gateway, "alice")
    bob, _ = sign_up(gateway, "bob")
    chat_id = open_chat(gateway, as_alice, bob)
    assert send(gateway, as_alice, chat_id, "for bob only").status_code == 201, "the gateway forwards the token"
    port = grpc_services.grpc.chat_port
    me = ("x-user-id", str(alice))

    assert code_of(grpc_services, port, history(chat_id, [me])) is grpc.StatusCode.UNAUTHENTICATED, (
        "a bare x-user-id must not read a chat: any local process could write it"
    )
    mallory, as_mallory = sign_up(gateway, "mallory")
    assert (
        code_of(grpc_services, port, history(chat_id, [me, bearer(as_mallory)])) is grpc.StatusCode.UNAUTHENTICATED
    ), "a valid token of ANOTHER user proves nothing about alice"
    page = call(grpc_services, history(chat_id, [me, bearer(as_alice)]), port)
    assert [m.body for m in page.messages] == ["for bob only"], "alice's own token opens her own chat"

    gateway.post(f"{API}/auth/logout", json={}, headers=as_alice)
    assert code_of(grpc_services, port, history(chat_id, [me, bearer(as_alice)])) is grpc.StatusCode.UNAUTHENTICATED, (
        "a token revoked at logout must not be accepted by the services either"
    )
    assert mallory != alice


def test_the_content_and_auth_services_want_proof_too(gateway: TestClient, grpc_services: Settings) -> None:
    alice, as_alice = sign_up(gateway, "alice")
    me = ("x-user-id", str(alice))

    def feed(metadata: Sequence[tuple[str, str]]) -> Callable[[grpc.aio.Channel], Awaitable[Any]]:
        async def use(channel: grpc.aio.Channel) -> Any:
            return await content_pb2_grpc.ContentServiceStub(channel).Feed(
                content_pb2.FeedRequest(), metadata=metadata, timeout=5
            )

        return use

    def get_user(metadata: Sequence[tuple[str, str]]) -> Callable[[grpc.aio.Channel], Awaitable[Any]]:
        async def use(channel: grpc.aio.Channel) -> Any:
            return await auth_pb2_grpc.AuthServiceStub(channel).GetUser(
                auth_pb2.GetUserRequest(user_id=alice), metadata=metadata, timeout=5
            )

        return use

    content, auth = grpc_services.grpc.content_port, grpc_services.grpc.auth_port
    assert code_of(grpc_services, content, feed([me])) is grpc.StatusCode.UNAUTHENTICATED
    assert code_of(grpc_services, content, feed([me, bearer(as_alice)])) is grpc.StatusCode.OK
    assert code_of(grpc_services, auth, get_user([me])) is grpc.StatusCode.UNAUTHENTICATED
    assert code_of(grpc_services, auth, get_user([me, bearer(as_alice)])) is grpc.StatusCode.OK

    async def login(channel: grpc.aio.Channel) -> Any:
        request = auth_pb2.LoginRequest(username="nobody_" + uuid.uuid4().hex[:6], password=PASSWORD)
        return await auth_pb2_grpc.AuthServiceStub(channel).Login(request, timeout=5)

    assert code_of(grpc_services, auth, login) is grpc.StatusCode.UNAUTHENTICATED, "a wrong login, as before"


def test_a_deny_list_that_cannot_be_asked_refuses_the_call() -> None:
    async def verify(token: str) -> AccessClaims:
        raise redis.ConnectionError("Redis is down")

    async def main() -> grpc.StatusCode:
        def register(server: grpc.aio.Server) -> None:
            chat_pb2_grpc.add_ChatServiceServicer_to_server(chat_pb2_grpc.ChatServiceServicer(), server)

        running = await start_server(register, ["messenger.v1.ChatService"], host="127.0.0.1", port=0, verify=verify)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                metadata = [("x-user-id", "7"), ("authorization", "Bearer t")]
                try:
                    await chat_pb2_grpc.ChatServiceStub(channel).ListChats(
                        chat_pb2.ListChatsRequest(), metadata=metadata, timeout=5
                    )
                except grpc.aio.AioRpcError as error:
                    return error.code()
                return grpc.StatusCode.OK
        finally:
            await running.stop(0)

    assert asyncio.run(main()) is grpc.StatusCode.UNAVAILABLE, "fail closed, and say it is worth retrying"


def test_binding_and_connecting_are_separate_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_GRPC__BIND_HOST", "0.0.0.0")
    monkeypatch.setenv("APP_GRPC__CHAT_HOST", "chat.internal")
    settings = load_settings()
    assert settings.grpc.bind_host == "0.0.0.0", "a container listens on every interface"
    assert settings.grpc.chat_host == "chat.internal", "and the gateway connects to the chat service by its name"
    assert settings.grpc.auth_host == "127.0.0.1", "each service has its own address"


def test_a_socket_whose_token_was_revoked_is_closed_not_answered_internal(
    gateway: TestClient, grpc_services: Settings
) -> None:
    _, as_alice = sign_up(gateway, "alice")
    bob, _ = sign_up(gateway, "bob")
    chat_id = open_chat(gateway, as_alice, bob)
    token = as_alice["Authorization"].removeprefix("Bearer ")
    with gateway.websocket_connect("/ws") as socket:
        socket.send_json({"type": "auth", "token": token})
        while socket.receive_json()["type"] != "ready":
            pass
        assert gateway.post(f"{API}/auth/logout", json={}, headers=as_alice).status_code == 204
        frame = {"type": "send", "ref": "r1", "chat_id": chat_id, "client_message_id": str(uuid.uuid4()), "body": "hi"}
        socket.send_json(frame)
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                answer = socket.receive_json()
                assert answer.get("code") != "internal", f"a revoked token is not our bug: {answer}"
    assert closed.value.code == 4401, "the socket ends with its token, as at the token's expiry"
