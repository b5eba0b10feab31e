"""The gRPC services as processes run them: `serve(settings)` until cancelled, and the auth service end to end.

The stage tests (tests/stages/test_08_grpc.py) grade the exercises on in-process servers; these check the
reference app's entry points and the auth server, which no exercise covers.
"""

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import psycopg
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
from reference_app.chat.adapters.postgres import PostgresChatStore
from reference_app.chat.service import ChatService
from reference_app.config import Settings
from reference_app.content import grpc_server as content_grpc
from reference_app.content.adapters.mongo import MongoContentStore
from reference_app.db import apply_migrations
from reference_app.db.pool import open_pool
from reference_app.grpc_api import auth_pb2, auth_pb2_grpc, chat_pb2, chat_pb2_grpc
from reference_app.grpc_api.clients import AuthClient, ChatClient, ContentClient
from workbook.databases import throwaway_database
from workbook.isolated import free_port

DEADLINE = 5.0


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
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"{service}: configuration error: APP_JWT__SIGNING_KEY is required when APP_ENV=prod"), line


# Reads for the gateway: users by id and by name, notifications, and who is in a chat ----------------------------


def auth_settings(settings: Settings, database_url: str) -> Settings:
    """The settings with this test's database and a fresh signing key (the auth service needs one to start)."""
    key = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return settings.model_copy(
        update={
            "postgres": settings.postgres.model_copy(update={"url": database_url}),
            "jwt": settings.jwt.model_copy(update={"signing_key": SecretStr(key.decode()), "public_key": None}),
        }
    )


@asynccontextmanager
async def auth_channel(configured: Settings) -> AsyncIterator[grpc.aio.Channel]:
    """The real auth server on a free port, over the test's database, and a channel to it."""
    client = redis.Redis.from_url(configured.redis.url, socket_timeout=5)  # these calls never reach Redis
    try:
        async with open_pool(configured.postgres) as pool:
            auth = build_auth_service(configured, pool, client, prefix=f"grpc_read_test:{uuid.uuid4().hex[:12]}:")
            server = await start_auth_server(auth, host="127.0.0.1", port=0)
            try:
                async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                    yield channel
            finally:
                await server.stop(0)
    finally:
        client.close()


@asynccontextmanager
async def chat_channel(configured: Settings) -> AsyncIterator[grpc.aio.Channel]:
    """The real chat server on a free port, over the test's database, and a channel to it."""
    async with open_pool(configured.postgres) as pool:
        chats = ChatService(PostgresChatStore(pool), history_page_max=50)
        server = await chat_grpc.start_chat_server(chats, host="127.0.0.1", port=0)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                yield channel
        finally:
            await server.stop(0)


def add_users(url: str, usernames: list[str]) -> dict[str, int]:
    """Users straight into auth.users (a sign-up would spend Argon2 time on each); their ids by username."""
    with psycopg.connect(url) as connection:
        rows = [
            connection.execute(
                "INSERT INTO auth.users (username, email, password_hash) VALUES (%s, %s, 'not a real hash')"
                " RETURNING id",
                (name, f"{name}@example.org"),
            ).fetchone()
            for name in usernames
        ]
    return {name: row[0] for name, row in zip(usernames, rows, strict=True) if row is not None}


async def status_of(call: Awaitable[Any]) -> grpc.StatusCode:
    """The status code a call ends with; OK when it succeeds."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def test_get_user_finds_a_user_and_refuses_unknown_ids_and_anonymous_callers(
    settings: Settings, auth_database: str
) -> None:
    ids = add_users(auth_database, ["ada", "bob"])

    async def scenario() -> dict[str, Any]:
        async with auth_channel(auth_settings(settings, auth_database)) as channel:
            client = AuthClient(channel, deadline_seconds=DEADLINE)
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            return {
                "found": await client.get_user(ids["bob"], ids["ada"]),
                "unknown": await status_of(client.get_user(ids["bob"], 987_654)),
                "anonymous": await status_of(stub.GetUser(auth_pb2.GetUserRequest(user_id=ids["ada"]), timeout=DEADLINE)),
            }  # fmt: skip

    seen = asyncio.run(scenario())
    user = seen["found"]
    assert (user.id, user.username) == (ids["ada"], "ada"), f"GetUser must answer ada; got {user}"
    assert user.HasField("created_at"), "the user's created_at must be set"
    assert seen["unknown"] == grpc.StatusCode.NOT_FOUND, f"an unknown user id must be NOT_FOUND; got {seen['unknown']}"
    assert seen["anonymous"] == grpc.StatusCode.UNAUTHENTICATED, (
        f"GetUser without x-user-id must be UNAUTHENTICATED; got {seen['anonymous']}"
    )


def test_search_users_matches_the_start_of_usernames_ignoring_case_in_order(
    settings: Settings, auth_database: str
) -> None:
    ids = add_users(auth_database, ["adele", "bob", "ada", "adam", "badam"])
    with psycopg.connect(auth_database) as connection:  # 60 users named zz001 … zz060, to see the limits
        connection.execute(
            "INSERT INTO auth.users (username, email, password_hash)"
            " SELECT 'zz' || lpad(n::text, 3, '0'), 'zz' || n || '@example.org', 'x' FROM generate_series(1, 60) n"
        )

    async def scenario() -> dict[str, list[str]]:
        async with auth_channel(auth_settings(settings, auth_database)) as channel:
            client = AuthClient(channel, deadline_seconds=DEADLINE)

            async def names(query: str, limit: int = 0) -> list[str]:
                return [user.username for user in await client.search_users(ids["bob"], query, limit)]

            return {
                "ad": await names("ad"),
                "AD": await names("  AD "),
                "ad, 2": await names("ad", 2),
                "zz": await names("zz"),
                "zz, 500": await names("zz", 500),
                "nobody": await names("nobody"),
            }

    seen = asyncio.run(scenario())
    assert seen["ad"] == ["ada", "adam", "adele"], (
        f"'ad' must find the usernames that start with it, by username (not badam, which only contains it); got {seen['ad']}"
    )
    assert seen["AD"] == seen["ad"], f"the search must ignore case and the blanks around the query; got {seen['AD']}"
    assert seen["ad, 2"] == ["ada", "adam"], f"limit 2 must give the first two; got {seen['ad, 2']}"
    assert seen["zz"] == [f"zz{n:03}" for n in range(1, 21)], (
        f"without a limit a search must give the first 20; got {len(seen['zz'])} users"
    )
    assert len(seen["zz, 500"]) == 50, (
        f"a search gives at most 50 users, whatever the limit; got {len(seen['zz, 500'])}"
    )
    assert seen["nobody"] == [], f"a query no username starts with must find nobody; got {seen['nobody']}"


def test_search_users_takes_like_wildcards_literally_and_refuses_bad_queries(
    settings: Settings, auth_database: str
) -> None:
    ids = add_users(auth_database, ["a_bc", "axbc", "carol"])

    async def scenario() -> dict[str, Any]:
        async with auth_channel(auth_settings(settings, auth_database)) as channel:
            client = AuthClient(channel, deadline_seconds=DEADLINE)
            stub = auth_pb2_grpc.AuthServiceStub(channel)

            async def names(query: str) -> list[str]:
                return [user.username for user in await client.search_users(ids["carol"], query)]

            return {
                "a_b": await names("a_b"),
                "%": await names("%"),
                "a%c": await names("a%c"),
                "backslash": await names("\\"),
                "empty": await status_of(client.search_users(ids["carol"], "")),
                "blank": await status_of(client.search_users(ids["carol"], "   ")),
                "33 characters": await status_of(client.search_users(ids["carol"], "a" * 33)),
                "negative limit": await status_of(client.search_users(ids["carol"], "a", -1)),
                "anonymous": await status_of(stub.SearchUsers(auth_pb2.SearchUsersRequest(query="a"), timeout=DEADLINE)),
            }  # fmt: skip

    seen = asyncio.run(scenario())
    assert seen["a_b"] == ["a_bc"], f"'_' must match only an underscore, not any character (axbc); got {seen['a_b']}"
    assert seen["%"] == [], f"'%' must match only a percent sign, which no username has; got {seen['%']}"
    assert seen["a%c"] == [], f"'a%c' must not match a_bc or axbc; got {seen['a%c']}"
    assert seen["backslash"] == [], (
        f"a backslash is a plain character, neither an error nor an escape; got {seen['backslash']}"
    )
    for case in ("empty", "blank", "33 characters", "negative limit"):
        assert seen[case] == grpc.StatusCode.INVALID_ARGUMENT, (
            f"a search with {case} query must be INVALID_ARGUMENT; got {seen[case]}"
        )
    assert seen["anonymous"] == grpc.StatusCode.UNAUTHENTICATED, (
        f"SearchUsers without x-user-id must be UNAUTHENTICATED; got {seen['anonymous']}"
    )


class RecordingAuth(auth_pb2_grpc.AuthServiceServicer):
    """An auth service that answers empty responses and remembers, per method, the x-user-id values and deadline."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[list[str], bool]] = {}

    def record(self, method: str, context: Any) -> None:
        user_ids = [value for key, value in context.invocation_metadata() or () if key == "x-user-id"]
        self.seen[method] = (user_ids, context.time_remaining() is not None)

    async def Register(self, request: Any, context: Any) -> Any:
        self.record("register", context)
        return auth_pb2.RegisterResponse()

    async def Login(self, request: Any, context: Any) -> Any:
        self.record("login", context)
        return auth_pb2.LoginResponse()

    async def Refresh(self, request: Any, context: Any) -> Any:
        self.record("refresh", context)
        return auth_pb2.RefreshResponse()

    async def Logout(self, request: Any, context: Any) -> Any:
        self.record("logout", context)
        return auth_pb2.LogoutResponse()

    async def Authenticate(self, request: Any, context: Any) -> Any:
        self.record("authenticate", context)
        return auth_pb2.AuthenticateResponse(user_id=7)

    async def GetUser(self, request: Any, context: Any) -> Any:
        self.record("get_user", context)
        return auth_pb2.GetUserResponse()

    async def SearchUsers(self, request: Any, context: Any) -> Any:
        self.record("search_users", context)
        return auth_pb2.SearchUsersResponse()


def test_the_auth_client_names_the_caller_only_on_signed_in_calls_and_always_sets_a_deadline() -> None:
    recorder = RecordingAuth()

    async def scenario() -> int:
        server = grpc.aio.server()
        auth_pb2_grpc.add_AuthServiceServicer_to_server(recorder, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                client = AuthClient(channel, deadline_seconds=DEADLINE)
                await client.register("ada", "ada@example.org", "correct horse")
                await client.login("ada", "correct horse")
                await client.refresh("refresh")
                await client.logout("access", "refresh")
                user_id = await client.authenticate("access")
                await client.get_user(42, 7)
                await client.search_users(42, "ad")
                return user_id
        finally:
            await server.stop(0)

    assert asyncio.run(scenario()) == 7, "authenticate must return the user id the service answered"
    for method in ("register", "login", "refresh", "logout", "authenticate"):
        assert recorder.seen[method] == ([], True), (
            f"{method} is an anonymous call: a deadline and no x-user-id; the server saw {recorder.seen[method]}"
        )
    for method in ("get_user", "search_users"):
        assert recorder.seen[method] == (["42"], True), (
            f"{method} must carry the caller's id 42 and a deadline; the server saw {recorder.seen[method]}"
        )


def add_notification(url: str, user_id: int, seq: int, minutes_ago: int, *, read: bool = False) -> str:
    """One row of notify.notifications, as the notifier writes it; its event id."""
    event_id = str(uuid.uuid4())
    with psycopg.connect(url) as connection:
        connection.execute(
            "INSERT INTO notify.notifications (user_id, event_id, chat_id, seq, preview, created_at, read_at)"
            " VALUES (%s, %s, 1, %s, %s, now() - make_interval(mins => %s),"
            " CASE WHEN %s THEN now() END)",
            (user_id, event_id, seq, f"message {seq}", minutes_ago, read),
        )
    return event_id


def test_list_notifications_gives_the_callers_own_newest_first_within_the_limit(
    settings: Settings, auth_database: str
) -> None:
    alice, bob, carol = 11, 12, 13
    older = add_notification(auth_database, alice, seq=1, minutes_ago=30, read=True)
    add_notification(auth_database, bob, seq=2, minutes_ago=20)
    newest = add_notification(auth_database, alice, seq=4, minutes_ago=1)
    add_notification(auth_database, alice, seq=3, minutes_ago=10)
    with psycopg.connect(auth_database) as connection:  # 120 for carol, to see the default and the maximum page
        connection.execute(
            "INSERT INTO notify.notifications (user_id, event_id, chat_id, seq, preview)"
            " SELECT %s, gen_random_uuid(), 2, n, 'hi' FROM generate_series(1, 120) n",
            (carol,),
        )

    async def scenario() -> dict[str, Any]:
        async with chat_channel(auth_settings(settings, auth_database)) as channel:
            client = ChatClient(channel, deadline_seconds=DEADLINE)
            stub = chat_pb2_grpc.ChatServiceStub(channel)
            return {
                "alice": await client.list_notifications(alice),
                "alice, 2": await client.list_notifications(alice, limit=2),
                "bob": await client.list_notifications(bob),
                "carol": await client.list_notifications(carol),
                "carol, 500": await client.list_notifications(carol, limit=500),
                "negative": await status_of(client.list_notifications(alice, limit=-1)),
                "anonymous": await status_of(stub.ListNotifications(chat_pb2.ListNotificationsRequest(), timeout=DEADLINE)),
            }  # fmt: skip

    seen = asyncio.run(scenario())
    assert [n.seq for n in seen["alice"]] == [4, 3, 1], (
        f"alice must get her three notifications, newest first (seq 4, 3, 1), and none of bob's; got {[n.seq for n in seen['alice']]}"
    )
    first, last = seen["alice"][0], seen["alice"][-1]
    assert (first.event_id, first.chat_id, first.preview) == (newest, 1, "message 4"), (
        f"the fields must be the row's; got {first}"
    )
    assert first.HasField("created_at") and not first.HasField("read_at"), "an unread notification has no read_at"
    assert last.event_id == older and last.HasField("read_at"), f"a read notification has its read_at; got {last}"
    assert [n.seq for n in seen["alice, 2"]] == [4, 3], f"limit 2 must give the two newest; got {seen['alice, 2']}"
    assert [n.seq for n in seen["bob"]] == [2], f"bob must get only his own notification; got {seen['bob']}"
    assert len(seen["carol"]) == 20, f"without a limit the page holds 20; got {len(seen['carol'])}"
    assert len(seen["carol, 500"]) == 100, (
        f"a page holds at most 100, whatever the limit; got {len(seen['carol, 500'])}"
    )
    assert seen["negative"] == grpc.StatusCode.INVALID_ARGUMENT, (
        f"a negative limit must be INVALID_ARGUMENT; got {seen['negative']}"
    )
    assert seen["anonymous"] == grpc.StatusCode.UNAUTHENTICATED, (
        f"ListNotifications without x-user-id must be UNAUTHENTICATED; got {seen['anonymous']}"
    )


def test_every_message_event_names_both_members_of_the_chat(settings: Settings, auth_database: str) -> None:
    low, high = 21, 34

    async def scenario() -> int:
        async with chat_channel(auth_settings(settings, auth_database)) as channel:
            client = ChatClient(channel, deadline_seconds=DEADLINE)
            chat = await client.open_chat(high, low)
            message = await client.send_message(high, chat.id, uuid.uuid4(), "hello")
            await client.edit_message(high, chat.id, message.seq, "hello again")
            await client.delete_message(high, chat.id, message.seq)
            return int(chat.id)

    chat_id = asyncio.run(scenario())
    with psycopg.connect(auth_database) as connection:
        events = connection.execute("SELECT topic, payload FROM chat.outbox ORDER BY id").fetchall()
    assert len(events) == 3, f"sending, editing and deleting must write three events; found {len(events)}"
    for topic, payload in events:
        assert payload.get("members") == [low, high], (
            f"the {topic} event of chat {chat_id} must name its members [{low}, {high}]; its payload is {payload}"
        )


def test_an_outsider_gets_not_found_from_every_chat_call_and_changes_nothing(
    settings: Settings, auth_database: str
) -> None:
    """Membership over gRPC, call by call (the stage 08 tests cover History and SendMessage; here: all of them)."""
    alice, bob, carol = 3, 5, 8

    async def scenario() -> dict[str, grpc.StatusCode]:
        async with chat_channel(auth_settings(settings, auth_database)) as channel:
            client = ChatClient(channel, deadline_seconds=DEADLINE)
            chat = await client.open_chat(alice, bob)
            await client.send_message(alice, chat.id, uuid.uuid4(), "for bob only")
            calls = {
                "History": client.history(carol, chat.id),
                "History after a seq": client.history(carol, chat.id, after_seq=0),
                "SendMessage": client.send_message(carol, chat.id, uuid.uuid4(), "let me in"),
                "EditMessage": client.edit_message(carol, chat.id, 1, "rewritten"),
                "DeleteMessage": client.delete_message(carol, chat.id, 1),
                "MarkRead": client.mark_read(carol, chat.id, 1),
            }
            return {name: await status_of(call) for name, call in calls.items()}

    codes = asyncio.run(scenario())
    assert codes == dict.fromkeys(codes, grpc.StatusCode.NOT_FOUND), f"an outsider gets NOT_FOUND from each: {codes}"
    with psycopg.connect(auth_database) as connection:
        messages = connection.execute("SELECT seq, body, edited_at, deleted_at FROM chat.messages").fetchall()
        marks = connection.execute("SELECT user_id FROM chat.read_state WHERE user_id = %s", (carol,)).fetchall()
    assert messages == [(1, "for bob only", None, None)], f"the outsider changed nothing: {messages}"
    assert marks == [], "the outsider got no read mark in the chat"


# Media has an owner --------------------------------------------------------------------------------------------


@asynccontextmanager
async def content_channel(settings: Settings) -> AsyncIterator[grpc.aio.Channel]:
    """The real content server on a free port, over a MongoDB database of its own (dropped at the end)."""
    with MongoClient(settings.mongo.url, serverSelectionTimeoutMS=5000) as mongo:
        database = mongo[f"grpc_media_{uuid.uuid4().hex}"]
        try:
            store = MongoContentStore(database, settings.mongo)
            store.ensure_indexes()
            server = await content_grpc.start_content_server(
                store, max_media_bytes=settings.mongo.max_media_bytes, host="127.0.0.1", port=0
            )
            try:
                async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                    yield channel
            finally:
                await server.stop(0)
        finally:
            mongo.drop_database(database.name)


async def refusal(call: Awaitable[Any], media_id: str) -> tuple[grpc.StatusCode, str]:
    """The status code and message a call ends with (OK and "" when it succeeds), the media id in it blanked out."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code(), (error.details() or "").replace(media_id, "<id>")
    return grpc.StatusCode.OK, ""


def test_media_is_its_uploaders_until_a_post_carries_it(settings: Settings) -> None:
    """Someone else's upload is refused exactly like a file that does not exist, until its uploader posts it."""
    alice, bob = 3, 5
    picture = b"\x89PNG\r\n\x1a\n" + os.urandom(4 * 1024)
    missing = "0" * 24

    async def scenario() -> tuple[dict[str, Any], list[str]]:
        async with content_channel(settings) as channel:
            client = ContentClient(channel, deadline_seconds=DEADLINE)
            media = await client.upload_media(alice, picture, filename="cat.png", content_type="image/png")
            seen: dict[str, Any] = {
                "bob attaches it": await refusal(client.create_post(bob, "found it", [media.id]), media.id),
                "bob attaches a missing id": await refusal(client.create_post(bob, "found it", [missing]), missing),
                "bob downloads it": await refusal(client.download_media(bob, media.id), media.id),
                "bob downloads a missing id": await refusal(client.download_media(bob, missing), missing),
                "alice downloads it": (await client.download_media(alice, media.id))[1],
            }
            post = await client.create_post(alice, "my cat", [media.id])
            seen["bob downloads it from the post"] = (await client.download_media(bob, post.media_ids[0]))[1]
            seen["alice downloads it from the post"] = (await client.download_media(alice, media.id))[1]
            seen["bob attaches it once it is posted"] = await refusal(
                client.create_post(bob, "mine now", [media.id]), media.id
            )
            feed = await client.feed(bob)
            return seen, [p.text for p in feed.posts]

    seen, feed = asyncio.run(scenario())
    not_found = seen["bob attaches a missing id"]
    assert not_found[0] == grpc.StatusCode.NOT_FOUND, f"an unknown media id in a post is NOT_FOUND: {not_found}"
    assert seen["bob attaches it"] == not_found, (
        f"alice's file in bob's post must get the answer of an unknown id, {not_found}; got {seen['bob attaches it']}"
    )
    assert seen["bob attaches it once it is posted"] == not_found, "a posted file is read by all, attached by its owner"
    missing_file = seen["bob downloads a missing id"]
    assert missing_file[0] == grpc.StatusCode.NOT_FOUND, f"an unknown media id is NOT_FOUND: {missing_file}"
    assert seen["bob downloads it"] == missing_file, (
        f"alice's file in no post must look missing to bob, {missing_file}; got {seen['bob downloads it']}"
    )
    for what in ("alice downloads it", "bob downloads it from the post", "alice downloads it from the post"):
        assert seen[what] == picture, f"{what}: the bytes must come back unchanged"
    assert feed == ["my cat"], f"bob's refused posts must not be stored; the feed holds {feed}"
