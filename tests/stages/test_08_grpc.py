"""Stage 08 — gRPC: the chat and content services behind real grpc.aio servers, called through real channels.

Every test starts the servers it needs in-process, on a free port (port 0: the operating system picks one),
against a fresh migrated PostgreSQL database (the `postgres_url` fixture of conftest.py) and a fresh MongoDB
database `grpc_test_<random hex>`, dropped afterwards. The async code runs in plain test functions through
asyncio.run, so no pytest plugin is needed.

Each call below has a deadline (`timeout=`): a test must never wait forever for a server, and neither must
the gateway.
"""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import grpc
import psycopg
import pytest
from app.auth.users import InvalidUser, UserAlreadyExists, UserNotFound
from app.chat.adapters.postgres import PostgresChatStore
from app.chat.domain import ChatNotFound, InvalidMessage, MessageNotFound, NotAuthor
from app.chat.grpc_server import SERVICE_NAME as CHAT_SERVICE
from app.chat.grpc_server import start_chat_server
from app.chat.service import ChatService
from app.config import load_settings
from app.content.adapters.mongo import MongoContentStore
from app.content.domain import MediaTooLarge, NotFound
from app.content.grpc_server import SERVICE_NAME as CONTENT_SERVICE
from app.content.grpc_server import start_content_server
from app.db.pool import open_pool
from app.grpc_api import chat_pb2, chat_pb2_grpc, content_pb2, content_pb2_grpc
from app.grpc_api.clients import ChatClient, ContentClient, call_options
from app.grpc_api.errors import INTERNAL_MESSAGE, UNAVAILABLE_MESSAGE, status_for
from app.grpc_api.identity import Unauthenticated, user_id_from_metadata
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from loguru import logger
from pymongo import MongoClient
from pymongo.database import Database

exercise = pytest.mark.exercise
FIX = "Fix: python -m workbook services up"
T = TypeVar("T")
Code = grpc.StatusCode

HOST = "127.0.0.1"
DEADLINE = 5.0  # every call of these tests; a healthy local server answers in milliseconds
PAGE_MAX = 10  # the chat server's largest history page, small so that a test can see the bound
ALICE, BOB, CAROL = 1, 2, 3
KIB = 1024


def as_user(user_id: int | str) -> dict[str, Any]:
    """The keyword arguments of a call made for `user_id`, with a deadline."""
    return {"metadata": (("x-user-id", str(user_id)),), "timeout": DEADLINE}


async def ok(call: Awaitable[T], what: str) -> T:
    """The response of a call that must succeed; a failed call fails the test with its status, in plain words."""
    try:
        return await call
    except grpc.aio.AioRpcError as error:
        pytest.fail(f"{what} failed with {error.code().name}: {error.details()}")


async def refused(call: Awaitable[Any], what: str) -> grpc.aio.AioRpcError:
    """The error of a call that must fail."""
    try:
        response = await call
    except grpc.aio.AioRpcError as error:
        return error
    pytest.fail(f"{what} succeeded, but must be refused; it answered: {str(response).strip()[:200]!r}")


def expect_code(error: grpc.aio.AioRpcError, want: grpc.StatusCode, what: str) -> None:
    assert error.code() == want, (
        f"{what} must end with {want.name}; it ended with {error.code().name}: {error.details()}"
    )


def new_id() -> str:
    return str(uuid.uuid4())


# Servers -------------------------------------------------------------------------------------------------------


@asynccontextmanager
async def chat_channel(postgres_url: str, service: ChatService | None = None) -> AsyncIterator[grpc.aio.Channel]:
    """A chat server on a free port, over the real store (or over `service`), and a channel to it."""
    settings = load_settings().postgres.model_copy(update={"url": postgres_url, "history_page_max": PAGE_MAX})
    async with open_pool(settings) as pool:
        chats = service or ChatService(PostgresChatStore(pool), history_page_max=PAGE_MAX)
        server = await start_chat_server(chats, host=HOST, port=0)
        try:
            async with grpc.aio.insecure_channel(f"{HOST}:{server.port}") as channel:
                yield channel
        finally:
            await server.stop(0)


@pytest.fixture(scope="module")
def mongo() -> Iterator[MongoClient[dict[str, Any]]]:
    client: MongoClient[dict[str, Any]] = MongoClient(load_settings().mongo.url, serverSelectionTimeoutMS=5000)
    try:
        client.admin.command("ping")
    except Exception as error:
        pytest.fail(f"MongoDB does not answer at {load_settings().mongo.url}: {error}. {FIX}")
    yield client
    client.close()


@pytest.fixture
def database(mongo: MongoClient[dict[str, Any]]) -> Iterator[Database[dict[str, Any]]]:
    db = mongo[f"grpc_test_{uuid.uuid4().hex}"]
    yield db
    mongo.drop_database(db.name)


@asynccontextmanager
async def content_channel(
    database: Database[dict[str, Any]], *, max_media_bytes: int = 5 * 1024 * KIB
) -> AsyncIterator[grpc.aio.Channel]:
    """A content server on a free port, over the real store in this test's database, and a channel to it."""
    store = MongoContentStore(database, load_settings().mongo)
    store.ensure_indexes()
    server = await start_content_server(store, max_media_bytes=max_media_bytes, host=HOST, port=0)
    try:
        async with grpc.aio.insecure_channel(f"{HOST}:{server.port}") as channel:
            yield channel
    finally:
        await server.stop(0)


class HangingChat(chat_pb2_grpc.ChatServiceServicer):
    """A chat service that accepts every call and never answers: a stuck database, a deadlock, a lost packet."""

    async def OpenChat(self, request: Any, context: Any) -> Any:
        await asyncio.Event().wait()


class HangingContent(content_pb2_grpc.ContentServiceServicer):
    async def UploadMedia(self, request_iterator: Any, context: Any) -> Any:
        await asyncio.Event().wait()


@asynccontextmanager
async def hanging_channel() -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server()
    chat_pb2_grpc.add_ChatServiceServicer_to_server(HangingChat(), server)
    content_pb2_grpc.add_ContentServiceServicer_to_server(HangingContent(), server)
    port = server.add_insecure_port(f"{HOST}:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"{HOST}:{port}") as channel:
            yield channel
    finally:
        await server.stop(0)


async def chat_with_messages(stub: Any, count: int) -> int:
    """A chat of ALICE and BOB with `count` messages from ALICE, bodies "m1", "m2", …; its id."""
    opened = await ok(stub.OpenChat(chat_pb2.OpenChatRequest(other_user_id=BOB), **as_user(ALICE)), "OpenChat")
    for number in range(1, count + 1):
        request = chat_pb2.SendMessageRequest(chat_id=opened.chat.id, client_message_id=new_id(), body=f"m{number}")
        await ok(stub.SendMessage(request, **as_user(ALICE)), "SendMessage")
    return int(opened.chat.id)


def seqs(response: chat_pb2.HistoryResponse) -> list[int]:
    return [message.seq for message in response.messages]


# 08.1 — health and reflection ----------------------------------------------------------------------------------


async def health_of(channel: grpc.aio.Channel, service: str) -> str:
    stub = health_pb2_grpc.HealthStub(channel)
    response = await ok(
        stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=DEADLINE), f"Check({service!r})"
    )
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


async def reflected_services(channel: grpc.aio.Channel) -> list[str]:
    """What `grpcurl -plaintext HOST:PORT list` prints: the services the server's reflection lists."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    names: list[str] = []
    try:
        async for response in stub.ServerReflectionInfo(ask(), timeout=DEADLINE):
            names += [service.name for service in response.list_services_response.service]
    except grpc.aio.AioRpcError as error:
        pytest.fail(f"reflection failed with {error.code().name}: {error.details()}")
    return sorted(names)


@exercise("08.1")
def test_health_says_serving_for_each_service(postgres_url: str, database: Database[dict[str, Any]]) -> None:
    async def scenario() -> dict[str, str]:
        async with chat_channel(postgres_url) as chat, content_channel(database) as content:
            return {
                f"chat {CHAT_SERVICE}": await health_of(chat, CHAT_SERVICE),
                "chat, the server as a whole": await health_of(chat, ""),
                f"content {CONTENT_SERVICE}": await health_of(content, CONTENT_SERVICE),
            }

    for what, status in asyncio.run(scenario()).items():
        assert status == "SERVING", f"health of {what} must be SERVING; it is {status}"


@exercise("08.1")
def test_reflection_lists_the_services(postgres_url: str, database: Database[dict[str, Any]]) -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        async with chat_channel(postgres_url) as chat, content_channel(database) as content:
            return await reflected_services(chat), await reflected_services(content)

    chat, content = asyncio.run(scenario())
    standard = ["grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"]
    assert chat == sorted([CHAT_SERVICE, *standard]), (
        f"the chat server must list its service, health and reflection; it lists {chat}"
    )
    assert content == sorted([CONTENT_SERVICE, *standard]), (
        f"the content server must list {CONTENT_SERVICE} too; it lists {content}"
    )


@exercise("08.1")
def test_reflection_describes_the_messages(postgres_url: str) -> None:
    async def scenario() -> int:
        async with chat_channel(postgres_url) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)

            async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
                yield reflection_pb2.ServerReflectionRequest(file_containing_symbol="messenger.v1.HistoryRequest")

            files = 0
            async for response in stub.ServerReflectionInfo(ask(), timeout=DEADLINE):
                if response.HasField("error_response"):
                    pytest.fail(f"reflection could not describe messenger.v1.HistoryRequest: {response.error_response}")
                files += len(response.file_descriptor_response.file_descriptor_proto)
            return files

    assert asyncio.run(scenario()), (
        "reflection must answer with the .proto file that defines messenger.v1.HistoryRequest"
    )


# 08.2 — the caller's id from the metadata ----------------------------------------------------------------------


@exercise("08.2")
def test_user_id_from_metadata_reads_the_one_entry() -> None:
    metadata = [("user-agent", "grpc-python"), ("x-user-id", "42"), ("x-request-id", "abc")]
    assert user_id_from_metadata(metadata) == 42, "x-user-id: 42 must give the user id 42"


@exercise("08.2")
@pytest.mark.parametrize("value", ["", "abc", "0", "-1", " 7", "+7", "7.0", "0x7", "007", "9" * 20, "٣"])
def test_a_malformed_user_id_is_refused(value: str) -> None:
    with pytest.raises(Unauthenticated):
        user_id_from_metadata([("x-user-id", value)])


@exercise("08.2")
def test_two_user_ids_are_refused() -> None:
    with pytest.raises(Unauthenticated):
        user_id_from_metadata([("x-user-id", "1"), ("x-user-id", "2")])


@exercise("08.2")
def test_calls_without_a_user_id_are_unauthenticated(postgres_url: str, database: Database[dict[str, Any]]) -> None:
    async def scenario() -> list[tuple[str, grpc.aio.AioRpcError]]:
        errors = []
        async with chat_channel(postgres_url) as chat, content_channel(database) as content:
            chat_stub = chat_pb2_grpc.ChatServiceStub(chat)
            content_stub = content_pb2_grpc.ContentServiceStub(content)
            calls = [
                ("ListChats without x-user-id", chat_stub.ListChats(chat_pb2.ListChatsRequest(), timeout=DEADLINE)),
                ("OpenChat with x-user-id 'bob'", chat_stub.OpenChat(chat_pb2.OpenChatRequest(other_user_id=2), **as_user("bob"))),
                ("Feed without x-user-id", content_stub.Feed(content_pb2.FeedRequest(), timeout=DEADLINE)),
                ("CreatePost with x-user-id '0'", content_stub.CreatePost(content_pb2.CreatePostRequest(text="x"), **as_user(0))),
            ]  # fmt: skip
            for what, call in calls:
                errors.append((what, await refused(call, what)))
        return errors

    for what, error in asyncio.run(scenario()):
        expect_code(error, Code.UNAUTHENTICATED, what)


@exercise("08.2")
def test_chat_calls_act_for_the_caller(postgres_url: str) -> None:
    async def scenario() -> tuple[Any, Any, Any]:
        async with chat_channel(postgres_url) as channel:
            stub = chat_pb2_grpc.ChatServiceStub(channel)
            opened = await ok(stub.OpenChat(chat_pb2.OpenChatRequest(other_user_id=BOB), **as_user(ALICE)), "OpenChat")
            request = chat_pb2.SendMessageRequest(chat_id=opened.chat.id, client_message_id=new_id(), body="hi Bob")
            sent = await ok(stub.SendMessage(request, **as_user(ALICE)), "SendMessage")
            bobs_chats = await ok(stub.ListChats(chat_pb2.ListChatsRequest(), **as_user(BOB)), "ListChats as BOB")
            return opened.chat, sent.message, bobs_chats.chats

    chat, message, bobs_chats = asyncio.run(scenario())
    assert chat.other_user_id == BOB, f"ALICE opened a chat with BOB; other_user_id is {chat.other_user_id}"
    assert message.sender_id == ALICE, f"ALICE sent the message; sender_id is {message.sender_id}"
    assert message.seq == 1 and message.body == "hi Bob", f"the first message has seq 1 and its body; got {message}"
    assert message.HasField("created_at") and not message.HasField("edited_at"), "created_at is set, edited_at is not"
    assert [(c.chat_id, c.other_user_id, c.unread_count) for c in bobs_chats] == [(chat.id, ALICE, 1)], (
        f"BOB's chat list must show the chat with ALICE and 1 unread message; got {list(bobs_chats)}"
    )


@exercise("08.2")
def test_a_post_is_written_by_the_caller(database: Database[dict[str, Any]]) -> None:
    async def scenario() -> tuple[Any, Any, Any]:
        async with content_channel(database) as channel:
            stub = content_pb2_grpc.ContentServiceStub(channel)
            created = await ok(
                stub.CreatePost(content_pb2.CreatePostRequest(text="first!"), **as_user(ALICE)), "CreatePost"
            )
            comment = await ok(
                stub.AddComment(content_pb2.AddCommentRequest(post_id=created.post.id, text="nice"), **as_user(BOB)),
                "AddComment",
            )
            feed = await ok(stub.Feed(content_pb2.FeedRequest(limit=5), **as_user(CAROL)), "Feed")
            return created.post, comment.comment, feed

    post, comment, feed = asyncio.run(scenario())
    assert post.author_id == ALICE, f"ALICE created the post; author_id is {post.author_id}"
    assert comment.author_id == BOB, f"BOB wrote the comment; author_id is {comment.author_id}"
    assert [p.id for p in feed.posts] == [post.id] and feed.next_cursor == "", (
        f"the feed must hold the one post and no next cursor; got {list(feed.posts)}, cursor {feed.next_cursor!r}"
    )


# 08.3 — domain errors become status codes ----------------------------------------------------------------------


@exercise("08.3")
def test_each_domain_error_has_its_status_code() -> None:
    cases = [
        (InvalidMessage("a message needs some text"), Code.INVALID_ARGUMENT),
        (ChatNotFound(7), Code.NOT_FOUND),
        (MessageNotFound(7, 3), Code.NOT_FOUND),
        (NotAuthor(7, 3), Code.PERMISSION_DENIED),
        (NotFound("no post with id 'x'"), Code.NOT_FOUND),
        (MediaTooLarge("the file is too large"), Code.INVALID_ARGUMENT),  # a subclass of InvalidInput
        (UserAlreadyExists("username"), Code.ALREADY_EXISTS),
        (UserNotFound(7), Code.NOT_FOUND),
        (InvalidUser("a username has 3 to 32 characters"), Code.INVALID_ARGUMENT),
        (Unauthenticated("no x-user-id"), Code.UNAUTHENTICATED),
    ]
    for error, want in cases:
        code, message = status_for(error)
        assert code == want, f"{type(error).__name__} must become {want.name}; status_for gave {code.name}"
        assert message == str(error), (
            f"{type(error).__name__} must keep its own message {str(error)!r}; got {message!r}"
        )


@exercise("08.3")
def test_an_unknown_exception_becomes_internal_and_tells_nothing() -> None:
    code, message = status_for(KeyError("password=hunter2"))
    assert code == Code.INTERNAL, f"an unexpected exception must become INTERNAL; status_for gave {code.name}"
    assert "hunter2" not in message and "KeyError" not in message, (
        f"the message of an unexpected exception must say nothing about it; it said {message!r}"
    )


@exercise("08.3")
def test_an_empty_message_is_invalid_argument(postgres_url: str) -> None:
    async def scenario() -> grpc.aio.AioRpcError:
        async with chat_channel(postgres_url) as channel:
            stub = chat_pb2_grpc.ChatServiceStub(channel)
            chat_id = await chat_with_messages(stub, 0)
            request = chat_pb2.SendMessageRequest(chat_id=chat_id, client_message_id=new_id(), body="   ")
            return await refused(stub.SendMessage(request, **as_user(ALICE)), "sending a message of only spaces")

    error = asyncio.run(scenario())
    expect_code(error, Code.INVALID_ARGUMENT, "sending a message of only spaces")
    assert "empty" in (error.details() or ""), (
        f"the status must carry the domain's message; it said {error.details()!r}"
    )


@exercise("08.3")
def test_an_unknown_chat_is_not_found(postgres_url: str) -> None:
    async def scenario() -> grpc.aio.AioRpcError:
        async with chat_channel(postgres_url) as channel:
            stub = chat_pb2_grpc.ChatServiceStub(channel)
            request = chat_pb2.SendMessageRequest(chat_id=4242, client_message_id=new_id(), body="hello?")
            return await refused(stub.SendMessage(request, **as_user(ALICE)), "sending into chat 4242")

    expect_code(asyncio.run(scenario()), Code.NOT_FOUND, "sending into a chat that does not exist")


@exercise("08.3")
def test_an_outsider_gets_not_found_and_never_the_messages(postgres_url: str) -> None:
    async def scenario() -> tuple[grpc.aio.AioRpcError, grpc.aio.AioRpcError]:
        async with chat_channel(postgres_url) as channel:
            stub = chat_pb2_grpc.ChatServiceStub(channel)
            chat_id = await chat_with_messages(stub, 2)
            read = await refused(
                stub.History(chat_pb2.HistoryRequest(chat_id=chat_id), **as_user(CAROL)),
                "CAROL reading a chat of two others",
            )
            request = chat_pb2.SendMessageRequest(chat_id=chat_id, client_message_id=new_id(), body="let me in")
            send = await refused(stub.SendMessage(request, **as_user(CAROL)), "CAROL sending into a chat of two others")
            return read, send

    read, send = asyncio.run(scenario())
    expect_code(read, Code.NOT_FOUND, "reading a chat one is not a member of")
    expect_code(send, Code.NOT_FOUND, "sending into a chat one is not a member of")
    assert "m1" not in (read.details() or ""), f"an outsider must learn nothing of the chat; got {read.details()!r}"


@exercise("08.3")
def test_editing_the_other_members_message_is_permission_denied(postgres_url: str) -> None:
    async def scenario() -> grpc.aio.AioRpcError:
        async with chat_channel(postgres_url) as channel:
            stub = chat_pb2_grpc.ChatServiceStub(channel)
            chat_id = await chat_with_messages(stub, 1)
            request = chat_pb2.EditMessageRequest(chat_id=chat_id, seq=1, body="BOB was here")
            return await refused(stub.EditMessage(request, **as_user(BOB)), "BOB editing ALICE's message")

    expect_code(asyncio.run(scenario()), Code.PERMISSION_DENIED, "editing the other member's message")


@exercise("08.3")
def test_a_duplicate_username_is_already_exists(postgres_url: str) -> None:
    from app.auth.grpc_server import start_auth_server
    from app.auth.wiring import build_auth_service
    from app.grpc_api import auth_pb2, auth_pb2_grpc
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from pydantic import SecretStr
    from redis import Redis

    key = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    base = load_settings()
    settings = base.model_copy(
        update={
            "postgres": base.postgres.model_copy(update={"url": postgres_url}),
            "jwt": base.jwt.model_copy(update={"signing_key": SecretStr(key.decode()), "public_key": None}),
        }
    )

    async def scenario() -> grpc.aio.AioRpcError:
        redis_client = Redis.from_url(settings.redis.url)  # sign-up never uses it: it only completes the wiring
        async with open_pool(settings.postgres) as pool:
            auth = build_auth_service(settings, pool, redis_client, prefix=f"stage08:{uuid.uuid4().hex[:12]}:")
            server = await start_auth_server(auth, host=HOST, port=0)
            try:
                async with grpc.aio.insecure_channel(f"{HOST}:{server.port}") as channel:
                    stub = auth_pb2_grpc.AuthServiceStub(channel)
                    request = auth_pb2.RegisterRequest(
                        username="ada", email="ada@example.org", password="correct horse"
                    )
                    await ok(stub.Register(request, timeout=DEADLINE), "registering ada")
                    again = auth_pb2.RegisterRequest(
                        username="ada", email="other@example.org", password="battery staple"
                    )
                    return await refused(stub.Register(again, timeout=DEADLINE), "registering a second ada")
            finally:
                await server.stop(0)
                redis_client.close()

    error = asyncio.run(scenario())
    expect_code(error, Code.ALREADY_EXISTS, "registering a username that is taken")
    assert "username" in (error.details() or ""), f"the status must name the taken field; it said {error.details()!r}"


@exercise("08.3")
def test_a_second_like_is_not_an_error_and_counts_once(database: Database[dict[str, Any]]) -> None:
    async def scenario() -> tuple[bool, bool, int, grpc.aio.AioRpcError]:
        async with content_channel(database) as channel:
            stub = content_pb2_grpc.ContentServiceStub(channel)
            post = (
                await ok(stub.CreatePost(content_pb2.CreatePostRequest(text="hi"), **as_user(ALICE)), "CreatePost")
            ).post
            first = await ok(stub.Like(content_pb2.LikeRequest(post_id=post.id), **as_user(BOB)), "the first Like")
            second = await ok(stub.Like(content_pb2.LikeRequest(post_id=post.id), **as_user(BOB)), "a retried Like")
            read = await ok(stub.GetPost(content_pb2.GetPostRequest(post_id=post.id), **as_user(BOB)), "GetPost")
            unknown = await refused(
                stub.Like(content_pb2.LikeRequest(post_id="0" * 24), **as_user(BOB)),
                "liking a post that does not exist",
            )
            return first.added, second.added, read.post.like_count, unknown

    first, second, like_count, unknown = asyncio.run(scenario())
    assert (first, second) == (True, False), f"a retried Like must answer added=False, not fail; got {first}, {second}"
    assert like_count == 1, f"two Likes by one user must count once; like_count is {like_count}"
    expect_code(unknown, Code.NOT_FOUND, "liking a post that does not exist")


@exercise("08.3")
def test_a_post_or_a_file_that_does_not_exist_is_not_found(database: Database[dict[str, Any]]) -> None:
    async def drain(call: Any) -> list[Any]:
        return [part async for part in call]

    async def scenario() -> list[tuple[str, grpc.aio.AioRpcError]]:
        async with content_channel(database) as channel:
            stub = content_pb2_grpc.ContentServiceStub(channel)
            missing = "0" * 24
            cases = [
                ("GetPost of a post that does not exist", stub.GetPost(content_pb2.GetPostRequest(post_id=missing), **as_user(ALICE))),
                ("GetPost with an id that is no id", stub.GetPost(content_pb2.GetPostRequest(post_id="nope"), **as_user(ALICE))),
                ("DownloadMedia of a file that does not exist (a streamed response)",
                 drain(stub.DownloadMedia(content_pb2.DownloadMediaRequest(media_id=missing), **as_user(ALICE)))),
            ]  # fmt: skip
            return [(what, await refused(call, what)) for what, call in cases]

    for what, error in asyncio.run(scenario()):
        expect_code(error, Code.NOT_FOUND, what)


@exercise("08.3")
def test_an_unexpected_error_is_internal_logged_and_not_sent(postgres_url: str) -> None:
    class BrokenStore:
        """A store with a bug: what it raises carries details the caller must never see."""

        async def open_chat(self, user_low: int, user_high: int) -> Any:
            raise RuntimeError("connection to db.internal:5432 failed, password=hunter2")

    logged: list[str] = []
    sink = logger.add(lambda message: logged.append(str(message)), level="ERROR", format="{message}")

    async def scenario() -> grpc.aio.AioRpcError:
        service = ChatService(BrokenStore(), history_page_max=PAGE_MAX)  # type: ignore[arg-type]
        async with chat_channel(postgres_url, service) as channel:
            stub = chat_pb2_grpc.ChatServiceStub(channel)
            return await refused(
                stub.OpenChat(chat_pb2.OpenChatRequest(other_user_id=BOB), **as_user(ALICE)), "OpenChat"
            )

    try:
        error = asyncio.run(scenario())
    finally:
        logger.remove(sink)
    expect_code(error, Code.INTERNAL, "a call that hits a bug")
    details = error.details() or ""
    for secret in ("hunter2", "db.internal", "RuntimeError", "Traceback"):
        assert secret not in details, f"the client must not see {secret!r}; the status said {details!r}"
    assert details == INTERNAL_MESSAGE, f"a bug must answer with INTERNAL_MESSAGE; it said {details!r}"
    assert any("hunter2" in line for line in logged), (
        "the unexpected error must be logged, with its text, on the server"
    )


def test_a_database_that_cannot_be_reached_is_unavailable_and_names_no_host(postgres_url: str) -> None:
    """Regression (found by tests/faults/test_postgres_restart.py): a PostgreSQL restart ended the pool's
    connections and the calls in flight were answered INTERNAL, so the gateway told clients "internal" instead of
    "try again". A connection the server ended is not a bug: UNAVAILABLE, with a message that names no host."""

    class RestartingDatabase:
        def __init__(self, error: Exception) -> None:
            self.error = error

        async def open_chat(self, user_low: int, user_high: int) -> Any:
            raise self.error

    async def scenario(error: Exception) -> grpc.aio.AioRpcError:
        service = ChatService(RestartingDatabase(error), history_page_max=PAGE_MAX)  # type: ignore[arg-type]
        async with chat_channel(postgres_url, service) as channel:
            stub = chat_pb2_grpc.ChatServiceStub(channel)
            return await refused(
                stub.OpenChat(chat_pb2.OpenChatRequest(other_user_id=BOB), **as_user(ALICE)), "OpenChat"
            )

    for raised in (
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.OperationalError('connection to server at "db.internal", port 5432 failed: Connection refused'),
    ):
        error = asyncio.run(scenario(raised))
        expect_code(error, Code.UNAVAILABLE, f"a call that met {type(raised).__name__}")
        details = error.details() or ""
        assert details == UNAVAILABLE_MESSAGE, f"the caller should get the fixed message; it got {details!r}"


# 08.4 — a servicer method: History -----------------------------------------------------------------------------


@exercise("08.4")
def test_history_pages_back_from_the_newest(postgres_url: str) -> None:
    async def scenario() -> list[tuple[list[int], bool]]:
        async with chat_channel(postgres_url) as channel:
            stub = chat_pb2_grpc.ChatServiceStub(channel)
            chat_id = await chat_with_messages(stub, 5)
            pages = []
            request = chat_pb2.HistoryRequest(chat_id=chat_id, limit=2)
            for _ in range(4):
                page = await ok(stub.History(request, **as_user(BOB)), "History")
                pages.append((seqs(page), page.has_more))
                if not page.has_more:
                    break
                request = chat_pb2.HistoryRequest(chat_id=chat_id, limit=2, before_seq=page.messages[0].seq)
            return pages

    pages = asyncio.run(scenario())
    want = [([4, 5], True), ([2, 3], True), ([1], False)]
    assert pages == want, f"paging back 2 at a time over 5 messages must give {want} as (seqs, has_more); got {pages}"


@exercise("08.4")
def test_history_after_seq_returns_exactly_what_was_missed(postgres_url: str) -> None:
    async def scenario() -> tuple[Any, Any]:
        async with chat_channel(postgres_url) as channel:
            stub = chat_pb2_grpc.ChatServiceStub(channel)
            chat_id = await chat_with_messages(stub, 5)
            missed = await ok(
                stub.History(chat_pb2.HistoryRequest(chat_id=chat_id, after_seq=3), **as_user(BOB)), "History"
            )
            everything = await ok(
                stub.History(chat_pb2.HistoryRequest(chat_id=chat_id, after_seq=0), **as_user(BOB)), "History"
            )
            return missed, everything

    missed, everything = asyncio.run(scenario())
    assert seqs(missed) == [4, 5] and not missed.has_more, (
        f"after_seq=3 must give seqs [4, 5] and has_more False; got {seqs(missed)}, {missed.has_more}"
    )
    assert [m.body for m in missed.messages] == ["m4", "m5"], f"the bodies must come along; got {list(missed.messages)}"
    assert seqs(everything) == [1, 2, 3, 4, 5], (
        f"after_seq=0 means from the first message (0 is set, not missing); got {seqs(everything)}"
    )


@exercise("08.4")
def test_history_limit_zero_means_the_servers_page(postgres_url: str) -> None:
    async def scenario() -> tuple[Any, grpc.aio.AioRpcError]:
        async with chat_channel(postgres_url) as channel:
            stub = chat_pb2_grpc.ChatServiceStub(channel)
            chat_id = await chat_with_messages(stub, PAGE_MAX + 2)
            page = await ok(stub.History(chat_pb2.HistoryRequest(chat_id=chat_id), **as_user(ALICE)), "History")
            bad = await refused(
                stub.History(chat_pb2.HistoryRequest(chat_id=chat_id, limit=-1), **as_user(ALICE)), "a negative limit"
            )
            return page, bad

    page, bad = asyncio.run(scenario())
    want = list(range(3, PAGE_MAX + 3))
    assert seqs(page) == want and page.has_more, (
        f"no limit (0) must give the newest {PAGE_MAX} messages, seqs {want}, and has_more; got {seqs(page)}, {page.has_more}"
    )
    expect_code(bad, Code.INVALID_ARGUMENT, "History with limit -1")


# 08.5 — a client-streamed upload -------------------------------------------------------------------------------


def upload_parts(header: tuple[str, str] | None, chunks: list[bytes]) -> AsyncIterator[content_pb2.UploadMediaRequest]:
    async def parts() -> AsyncIterator[content_pb2.UploadMediaRequest]:
        if header is not None:
            name, kind = header
            yield content_pb2.UploadMediaRequest(
                header=content_pb2.UploadMediaRequest.Header(filename=name, content_type=kind)
            )
        for chunk in chunks:
            yield content_pb2.UploadMediaRequest(chunk=chunk)

    return parts()


def stored_files(database: Database[dict[str, Any]]) -> int:
    return database["media.files"].count_documents({}) + database["media.chunks"].count_documents({})


@exercise("08.5")
def test_an_upload_in_chunks_comes_back_byte_for_byte(database: Database[dict[str, Any]]) -> None:
    payload = os.urandom(300 * KIB + 7)
    chunks = [payload[start : start + 50 * KIB] for start in range(0, len(payload), 50 * KIB)]

    async def scenario() -> tuple[Any, list[Any]]:
        async with content_channel(database) as channel:
            stub = content_pb2_grpc.ContentServiceStub(channel)
            uploaded = await ok(
                stub.UploadMedia(upload_parts(("cat.png", "image/png"), chunks), **as_user(ALICE)), "UploadMedia"
            )
            # In no post yet, the file is its uploader's alone: ALICE downloads it (BOB would get NOT_FOUND).
            download = stub.DownloadMedia(
                content_pb2.DownloadMediaRequest(media_id=uploaded.media.id), **as_user(ALICE)
            )
            try:
                parts = [part async for part in download]
            except grpc.aio.AioRpcError as error:
                pytest.fail(
                    f"ALICE could not download her own upload ({error.code().name}: {error.details()}): "
                    "store it with self._store.upload_media_by, which records the caller as its uploader"
                )
            return uploaded.media, parts

    media, parts = asyncio.run(scenario())
    assert (media.filename, media.content_type, media.length) == ("cat.png", "image/png", len(payload)), (
        f"the upload must answer the file's name, type and length ({len(payload)} bytes); got {media}"
    )
    downloaded = b"".join(part.chunk for part in parts[1:])
    assert downloaded == payload, (
        f"the file must come back byte for byte; {len(downloaded)} of {len(payload)} bytes came back"
    )


@exercise("08.5")
def test_an_upload_that_does_not_start_with_its_header_is_refused(database: Database[dict[str, Any]]) -> None:
    async def scenario() -> list[tuple[str, grpc.aio.AioRpcError]]:
        async with content_channel(database) as channel:
            stub = content_pb2_grpc.ContentServiceStub(channel)
            cases = [
                ("an upload with no header", upload_parts(None, [b"\x89PNG...."])),
                ("an upload with no message at all", upload_parts(None, [])),
            ]
            return [(what, await refused(stub.UploadMedia(parts, **as_user(ALICE)), what)) for what, parts in cases]

    for what, error in asyncio.run(scenario()):
        expect_code(error, Code.INVALID_ARGUMENT, what)
    assert stored_files(database) == 0, "a refused upload must store nothing"


@exercise("08.5")
def test_a_second_header_is_refused(database: Database[dict[str, Any]]) -> None:
    async def scenario() -> grpc.aio.AioRpcError:
        async with content_channel(database) as channel:
            stub = content_pb2_grpc.ContentServiceStub(channel)

            async def parts() -> AsyncIterator[content_pb2.UploadMediaRequest]:
                header = content_pb2.UploadMediaRequest.Header(filename="a.png", content_type="image/png")
                yield content_pb2.UploadMediaRequest(header=header)
                yield content_pb2.UploadMediaRequest(chunk=b"\x89PNG")
                yield content_pb2.UploadMediaRequest(header=header)

            return await refused(stub.UploadMedia(parts(), **as_user(ALICE)), "an upload with two headers")

    expect_code(asyncio.run(scenario()), Code.INVALID_ARGUMENT, "an upload with two headers")
    assert stored_files(database) == 0, "a refused upload must store nothing"


@exercise("08.5")
def test_an_upload_over_the_limit_is_refused_while_it_streams(database: Database[dict[str, Any]]) -> None:
    # The store alone would accept this file (its own limit is the settings' 5 MiB): only the servicer's
    # bound of 64 KiB refuses it, which is what keeps a client from filling the server's memory.
    async def scenario() -> grpc.aio.AioRpcError:
        async with content_channel(database, max_media_bytes=64 * KIB) as channel:
            stub = content_pb2_grpc.ContentServiceStub(channel)
            parts = upload_parts(("big.png", "image/png"), [b"\x00" * (16 * KIB)] * 6)
            return await refused(stub.UploadMedia(parts, **as_user(ALICE)), "a 96 KiB upload with a limit of 64 KiB")

    error = asyncio.run(scenario())
    expect_code(error, Code.INVALID_ARGUMENT, "an upload over the limit")
    assert stored_files(database) == 0, "a refused upload must store nothing"


# 08.6 — every client call has a deadline -----------------------------------------------------------------------


async def fails_within(call: Awaitable[Any], deadline: float) -> grpc.aio.AioRpcError:
    """The error of a call to a server that never answers. Far past the deadline, the test gives up waiting."""
    try:
        await asyncio.wait_for(call, timeout=deadline + 10)
    except grpc.aio.AioRpcError as error:
        return error
    except TimeoutError:
        pytest.fail(
            f"the call had no deadline: {deadline + 10:.0f} s later it was still waiting for a server that never answers"
        )
    pytest.fail("a server that never answers cannot have answered")


@exercise("08.6")
def test_call_options_carry_the_deadline_and_the_caller() -> None:
    options = call_options(7, 2.5)
    assert options["timeout"] == 2.5, f"timeout must be the deadline in seconds, 2.5; got {options.get('timeout')!r}"
    assert ("x-user-id", "7") in list(options["metadata"]), (
        f"metadata must hold ('x-user-id', '7'); got {options.get('metadata')!r}"
    )


@exercise("08.6")
def test_a_chat_call_to_a_server_that_never_answers_ends_with_deadline_exceeded() -> None:
    async def scenario() -> grpc.aio.AioRpcError:
        async with hanging_channel() as channel:
            return await fails_within(ChatClient(channel, deadline_seconds=0.5).open_chat(ALICE, BOB), 0.5)

    error = asyncio.run(scenario())
    expect_code(error, Code.DEADLINE_EXCEEDED, "a call to a server that never answers")


@exercise("08.6")
def test_an_upload_to_a_server_that_never_answers_ends_with_deadline_exceeded() -> None:
    async def scenario() -> grpc.aio.AioRpcError:
        async with hanging_channel() as channel:
            client = ContentClient(channel, deadline_seconds=0.5)
            upload = client.upload_media(ALICE, b"\x89PNG" * 100, filename="a.png", content_type="image/png")
            return await fails_within(upload, 0.5)

    expect_code(asyncio.run(scenario()), Code.DEADLINE_EXCEEDED, "a streamed upload to a server that never answers")


@exercise("08.6")
def test_the_clients_act_for_the_user_they_are_given(postgres_url: str, database: Database[dict[str, Any]]) -> None:
    async def scenario() -> tuple[Any, Any, Any, tuple[Any, bytes]]:
        async with chat_channel(postgres_url) as chat_ch, content_channel(database) as content_ch:
            chats = ChatClient(chat_ch, deadline_seconds=DEADLINE)
            content = ContentClient(content_ch, deadline_seconds=DEADLINE)
            as_alice = await ok(chats.open_chat(ALICE, BOB), "ChatClient.open_chat for ALICE")
            as_bob = await ok(chats.open_chat(BOB, ALICE), "ChatClient.open_chat for BOB")
            post = await ok(content.create_post(CAROL, "hello"), "ContentClient.create_post for CAROL")
            ref = await ok(
                content.upload_media(CAROL, b"GIF89a" * 50, filename="a.gif", content_type="image/gif"), "upload"
            )
            return as_alice, as_bob, post, await ok(content.download_media(CAROL, ref.id), "download by its uploader")

    as_alice, as_bob, post, (ref, data) = asyncio.run(scenario())
    assert as_alice.id == as_bob.id, "ALICE and BOB must get the same chat"
    assert (as_alice.other_user_id, as_bob.other_user_id) == (BOB, ALICE), (
        f"each must see the other as other_user_id; got {as_alice.other_user_id} and {as_bob.other_user_id}"
    )
    assert post.author_id == CAROL, f"the post was created for CAROL; author_id is {post.author_id}"
    assert (ref.content_type, data) == ("image/gif", b"GIF89a" * 50), "the uploaded file must download unchanged"
