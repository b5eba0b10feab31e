"""Stage 07: the gateway's REST API, against real services.

Each test starts the auth, chat and content gRPC services (on a fresh database, MongoDB database, Redis database
and exchange of its own: the ``gateway`` fixture of conftest.py) and talks to the gateway app over HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Any

import grpc
import pytest
from app.config import Settings
from app.gateway.problems import MEDIA_TYPE, problem_for_rpc_error
from app.gateway.request_ids import request_id_from
from fastapi.testclient import TestClient
from httpx import Response

API = "/api/v1"
PROBLEM_KEYS = {"type", "title", "status", "detail", "instance", "request_id"}
# The smallest valid PNG: 1x1 pixel.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000100e5270de40000000049454e44ae426082"
)


def problem_of(response: Response, status: int, what: str) -> dict[str, Any]:
    """The problem document of an error response, after checking its status and shape."""
    assert response.status_code == status, (
        f"{what}: the gateway must answer {status}; it answered {response.status_code}: {response.text[:300]}"
    )
    assert response.headers.get("content-type", "").startswith(MEDIA_TYPE), (
        f"{what}: an error must be an RFC 9457 problem document ({MEDIA_TYPE});"
        f" got {response.headers.get('content-type')}"
    )
    document: dict[str, Any] = response.json()
    assert set(document) >= PROBLEM_KEYS, f"{what}: a problem document needs {sorted(PROBLEM_KEYS)}; got {document}"
    assert document["status"] == status, f"{what}: the document's status must match the response's: {document}"
    assert document["request_id"] == response.headers.get("x-request-id"), (
        f"{what}: the problem's request_id must be the X-Request-ID of the response: {document}"
    )
    return document


def sign_up(client: TestClient, name: str) -> tuple[int, dict[str, str]]:
    """Register and log in a user; return their id and the Authorization header to act as them."""
    username = f"{name}_{uuid.uuid4().hex[:6]}"
    registered = client.post(
        f"{API}/auth/register",
        json={"username": username, "email": f"{username}@example.com", "password": "correct horse battery"},
    )
    assert registered.status_code == 201, f"registering {username} failed: {registered.text}"
    tokens = client.post(f"{API}/auth/login", json={"username": username, "password": "correct horse battery"})
    assert tokens.status_code == 200, f"logging in as {username} failed: {tokens.text}"
    return registered.json()["id"], {"Authorization": f"Bearer {tokens.json()['access_token']}"}


def open_chat(client: TestClient, headers: dict[str, str], other_id: int) -> int:
    response = client.post(f"{API}/chats", json={"other_user_id": other_id}, headers=headers)
    assert response.status_code == 200, f"opening a chat failed: {response.text}"
    chat_id: int = response.json()["id"]
    return chat_id


def send(client: TestClient, headers: dict[str, str], chat_id: int, body: str) -> Response:
    payload = {"client_message_id": str(uuid.uuid4()), "body": body}
    return client.post(f"{API}/chats/{chat_id}/messages", json=payload, headers=headers)


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


# Exercise 07.1: one error shape -------------------------------------------------------------------------------


@pytest.mark.exercise("07.1")
@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 422),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.ALREADY_EXISTS, 409),
        (grpc.StatusCode.UNAUTHENTICATED, 401),
        (grpc.StatusCode.FAILED_PRECONDITION, 409),
        (grpc.StatusCode.UNIMPLEMENTED, 501),
    ],
)
def test_a_service_refusal_keeps_its_message(code: grpc.StatusCode, status: int) -> None:
    problem = problem_for_rpc_error(rpc_error(code, "chat 7 does not exist"))
    assert problem.kind.status == status, f"gRPC {code.name} must become HTTP {status}, not {problem.kind.status}"
    assert problem.detail == "chat 7 does not exist", (
        f"the service wrote {code.name}'s message for the user: show it as the detail; got {problem.detail!r}"
    )


@pytest.mark.exercise("07.1")
@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.INTERNAL, 500),
        (grpc.StatusCode.UNKNOWN, 500),
        (grpc.StatusCode.DATA_LOSS, 500),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 500),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
    ],
)
def test_a_service_failure_hides_its_message(code: grpc.StatusCode, status: int) -> None:
    secret = 'Traceback (most recent call last): File "/srv/chat.py", password=hunter2'
    problem = problem_for_rpc_error(rpc_error(code, secret))
    assert problem.kind.status == status, f"gRPC {code.name} must become HTTP {status}, not {problem.kind.status}"
    assert "hunter2" not in problem.detail and "Traceback" not in problem.detail, (
        f"the text of a {code.name} may hold internals: never show it to the client; got {problem.detail!r}"
    )
    assert problem.detail, "the detail must still say something to the user"


@pytest.mark.exercise("07.1")
def test_a_stranger_gets_a_404_problem_for_a_chat(gateway: TestClient) -> None:
    _alice, alice_headers = sign_up(gateway, "alice")
    bob, _ = sign_up(gateway, "bob")
    _, carol_headers = sign_up(gateway, "carol")
    chat_id = open_chat(gateway, alice_headers, bob)
    response = gateway.get(f"{API}/chats/{chat_id}/messages", headers=carol_headers)
    document = problem_of(response, 404, "carol reads the chat of alice and bob")
    assert document["instance"] == f"{API}/chats/{chat_id}/messages", f"instance is the request's path: {document}"
    assert document["type"].endswith("/not-found"), f"type names the kind of problem: {document}"


# Exercise 07.2: the send rate limit ---------------------------------------------------------------------------


@pytest.mark.exercise("07.2")
def test_sending_too_fast_is_refused_with_retry_after(gateway: TestClient) -> None:
    limit = gateway.app.state.gateway.settings.redis.send_rate_limit  # type: ignore[attr-defined]
    _alice, alice_headers = sign_up(gateway, "alice")
    bob, _ = sign_up(gateway, "bob")
    chat_id = open_chat(gateway, alice_headers, bob)
    statuses = [send(gateway, alice_headers, chat_id, f"message {n}").status_code for n in range(limit)]
    assert statuses == [201] * limit, f"the first {limit} messages are within the limit; got statuses {statuses}"
    refused = send(gateway, alice_headers, chat_id, "one too many")
    problem_of(refused, 429, f"message {limit + 1} inside the window")
    retry_after = refused.headers.get("retry-after", "")
    assert retry_after.isdigit() and int(retry_after) >= 1, (
        f"a 429 says when to try again: Retry-After in whole seconds, at least 1; got {retry_after!r}"
    )
    history = gateway.get(f"{API}/chats/{chat_id}/messages", params={"limit": 100}, headers=alice_headers).json()
    assert len(history["messages"]) == limit, "a refused message must not be stored"


@pytest.mark.exercise("07.2")
def test_the_limit_is_per_user(gateway: TestClient) -> None:
    limit = gateway.app.state.gateway.settings.redis.send_rate_limit  # type: ignore[attr-defined]
    _alice, alice_headers = sign_up(gateway, "alice")
    bob, bob_headers = sign_up(gateway, "bob")
    chat_id = open_chat(gateway, alice_headers, bob)
    for n in range(limit + 1):
        send(gateway, alice_headers, chat_id, f"alice {n}")
    answer = send(gateway, bob_headers, chat_id, "bob is not alice")
    assert answer.status_code == 201, f"alice's limit must not stop bob: {answer.status_code} {answer.text}"


# Exercise 07.3: request ids -----------------------------------------------------------------------------------


@pytest.mark.exercise("07.3")
def test_a_sensible_client_request_id_is_kept() -> None:
    assert request_id_from([(b"x-request-id", b"lb-1234abcd")]) == "lb-1234abcd", (
        "a client's sensible X-Request-ID (a load balancer's) is kept, so one id follows the request everywhere"
    )
    assert request_id_from([(b"X-Request-ID", b"lb-1234abcd")]) == "lb-1234abcd", "header names ignore case"


@pytest.mark.exercise("07.3")
@pytest.mark.parametrize(
    "sent", [b"", b"short", b"x" * 65, b"abc\ndef-injected-log-line", b"has space 1234", "\u00e9t\u00e9-2024".encode()]
)
def test_an_unsafe_request_id_is_replaced(sent: bytes) -> None:
    made = request_id_from([(b"x-request-id", sent)])
    assert made.encode() != sent, f"{sent!r} is not a safe id (8-64 of A-Z a-z 0-9 . _ -): make a new one"
    assert re.fullmatch(r"[A-Za-z0-9._-]{8,64}", made), f"a new id must itself be safe; got {made!r}"
    assert request_id_from([]) != request_id_from([]), "each request without an id gets a new one"


@pytest.mark.exercise("07.3")
def test_every_response_carries_its_request_id(gateway: TestClient) -> None:
    kept = gateway.get("/openapi.json", headers={"X-Request-ID": "trace-0001-abcd"})
    assert kept.headers.get("x-request-id") == "trace-0001-abcd", "the client's id comes back in X-Request-ID"
    made = [gateway.get(f"{API}/chats").headers.get("x-request-id") for _ in range(2)]
    assert all(made) and made[0] != made[1], f"each response has its own X-Request-ID, errors too; got {made}"


# The rest of the API (not exercises) --------------------------------------------------------------------------


def test_openapi_describes_every_route(gateway: TestClient) -> None:
    document = gateway.get("/openapi.json").json()
    paths = set(document["paths"])
    for path in (
        "/auth/register",
        "/auth/login",
        "/auth/refresh",
        "/auth/logout",
        "/users/me",
        "/users/search",
        "/chats",
        "/chats/{chat_id}/messages",
        "/chats/{chat_id}/messages/{seq}",
        "/chats/{chat_id}/read",
        "/notifications",
        "/posts",
        "/posts/{post_id}",
        "/posts/{post_id}/comments",
        "/posts/{post_id}/like",
        "/media",
        "/media/{media_id}",
    ):
        assert API + path in paths, f"the OpenAPI document lacks {API}{path}"
    assert gateway.get("/docs").status_code == 200, "the interactive docs are served at /docs"


def test_requests_without_a_valid_token_are_refused(gateway: TestClient) -> None:
    missing = problem_of(gateway.get(f"{API}/chats"), 401, "no Authorization header")
    assert missing["detail"], missing
    assert "Bearer" in gateway.get(f"{API}/chats").headers.get("www-authenticate", ""), "a 401 names the scheme"
    problem_of(gateway.get(f"{API}/chats", headers={"Authorization": "Bearer not.a.token"}), 401, "a garbage token")


def test_register_login_me_refresh_and_logout(gateway: TestClient) -> None:
    username = f"dora_{uuid.uuid4().hex[:6]}"
    body = {"username": username, "email": f"{username}@example.com", "password": "correct horse battery"}
    assert gateway.post(f"{API}/auth/register", json=body).status_code == 201
    problem_of(gateway.post(f"{API}/auth/register", json=body), 409, "registering a taken username")
    wrong = {"username": username, "password": "wrong password!"}
    problem_of(gateway.post(f"{API}/auth/login", json=wrong), 401, "a wrong password")
    tokens = gateway.post(f"{API}/auth/login", json={"username": username, "password": body["password"]}).json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    me = gateway.get(f"{API}/users/me", headers=headers)
    assert me.status_code == 200 and me.json()["username"] == username, f"/users/me names the caller: {me.text}"
    renewed = gateway.post(f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert renewed.status_code == 200, f"a refresh token buys a new pair: {renewed.text}"
    reused = gateway.post(f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    problem_of(reused, 401, "a refresh token used a second time")
    out = gateway.post(f"{API}/auth/logout", json={}, headers=headers)
    assert out.status_code == 204, f"logout answers 204: {out.status_code} {out.text}"
    problem_of(gateway.get(f"{API}/users/me", headers=headers), 401, "the access token after logout")


def test_user_search_finds_by_prefix(gateway: TestClient) -> None:
    _, headers = sign_up(gateway, "searcher")
    found_id, _ = sign_up(gateway, "zelda")
    answer = gateway.get(f"{API}/users/search", params={"q": "ZEL"}, headers=headers)
    assert answer.status_code == 200, answer.text
    assert found_id in [user["id"] for user in answer.json()], f"searching 'ZEL' must find zelda: {answer.json()}"
    problem_of(gateway.get(f"{API}/users/search", params={"q": ""}, headers=headers), 422, "an empty search")


def test_a_conversation_over_rest(gateway: TestClient) -> None:
    alice, alice_headers = sign_up(gateway, "alice")
    bob, bob_headers = sign_up(gateway, "bob")
    chat_id = open_chat(gateway, alice_headers, bob)
    assert open_chat(gateway, bob_headers, alice) == chat_id, "both members open the same chat"
    sent = send(gateway, alice_headers, chat_id, "hello bob")
    assert sent.status_code == 201 and sent.json()["seq"] == 1, f"the first message gets seq 1: {sent.text}"
    retry = gateway.post(
        f"{API}/chats/{chat_id}/messages",
        json={"client_message_id": sent.json()["client_message_id"], "body": "hello bob"},
        headers=alice_headers,
    )
    assert retry.json()["seq"] == 1, "a retry with the same client_message_id returns the stored message"
    send(gateway, bob_headers, chat_id, "hi alice")
    chats = gateway.get(f"{API}/chats", headers=alice_headers).json()
    assert chats[0]["chat_id"] == chat_id and chats[0]["unread_count"] == 1, f"alice has one unread message: {chats}"
    assert chats[0]["last_message"]["body"] == "hi alice", f"the list shows the last message: {chats}"
    read = gateway.post(f"{API}/chats/{chat_id}/read", json={"seq": 2}, headers=alice_headers)
    assert read.json() == {"chat_id": chat_id, "last_read_seq": 2}, read.text
    edited = gateway.patch(f"{API}/chats/{chat_id}/messages/1", json={"body": "hello, bob"}, headers=alice_headers)
    assert edited.status_code == 200 and edited.json()["edited_at"], f"an edit is stamped: {edited.text}"
    problem_of(
        gateway.patch(f"{API}/chats/{chat_id}/messages/1", json={"body": "mine now"}, headers=bob_headers),
        403,
        "bob edits alice's message",
    )
    deleted = gateway.delete(f"{API}/chats/{chat_id}/messages/1", headers=alice_headers)
    assert deleted.json()["body"] == "" and deleted.json()["deleted_at"], (
        f"a deleted message loses its text: {deleted.text}"
    )
    page = gateway.get(f"{API}/chats/{chat_id}/messages", params={"after_seq": 1}, headers=bob_headers).json()
    assert [message["seq"] for message in page["messages"]] == [2], f"after seq 1 comes exactly seq 2: {page}"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/chats/{chat}/messages", None),
        ("POST", "/chats/{chat}/messages", {"client_message_id": str(uuid.uuid4()), "body": "let me in"}),
        ("PATCH", "/chats/{chat}/messages/1", {"body": "rewritten"}),
        ("DELETE", "/chats/{chat}/messages/1", None),
        ("POST", "/chats/{chat}/read", {"seq": 1}),
    ],
)
def test_a_stranger_can_neither_read_nor_write_a_chat(
    gateway: TestClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    _alice, alice_headers = sign_up(gateway, "alice")
    bob, _ = sign_up(gateway, "bob")
    _, carol_headers = sign_up(gateway, "carol")
    chat_id = open_chat(gateway, alice_headers, bob)
    send(gateway, alice_headers, chat_id, "for bob only")
    response = gateway.request(method, API + path.format(chat=chat_id), json=body, headers=carol_headers)
    document = problem_of(response, 404, f"carol: {method} {path}")
    assert "for bob only" not in response.text, f"nothing of the chat may leak in the error: {document}"
    page = gateway.get(f"{API}/chats/{chat_id}/messages", headers=alice_headers).json()["messages"]
    assert [(m["seq"], m["body"]) for m in page] == [(1, "for bob only")], f"carol changed nothing: {page}"


def test_malformed_bodies_get_a_422_that_names_the_field(gateway: TestClient) -> None:
    _alice, alice_headers = sign_up(gateway, "alice")
    bob, _ = sign_up(gateway, "bob")
    chat_id = open_chat(gateway, alice_headers, bob)
    bad_id = {"client_message_id": "not-a-uuid", "body": "hi"}
    document = problem_of(
        gateway.post(f"{API}/chats/{chat_id}/messages", json=bad_id, headers=alice_headers), 422, "a bad uuid"
    )
    assert "client_message_id" in document["detail"], f"the detail names the field: {document}"
    broken = gateway.post(
        f"{API}/chats/{chat_id}/messages",
        content=b"{not json",
        headers=alice_headers | {"Content-Type": "application/json"},
    )
    problem_of(broken, 422, "a body that is not JSON")
    extra = {"client_message_id": str(uuid.uuid4()), "body": "hi", "sender_id": 1}
    problem_of(
        gateway.post(f"{API}/chats/{chat_id}/messages", json=extra, headers=alice_headers), 422, "an unknown field"
    )


def test_an_id_too_big_for_a_bigint_is_a_422_not_a_crash(gateway: TestClient) -> None:
    _, headers = sign_up(gateway, "alice")
    huge = 2**70
    problem_of(gateway.get(f"{API}/chats/{huge}/messages", headers=headers), 422, "a chat id over 2**63-1")
    problem_of(gateway.get(f"{API}/chats/1/messages", params={"after_seq": huge}, headers=headers), 422, "a huge seq")
    problem_of(gateway.post(f"{API}/chats", json={"other_user_id": huge}, headers=headers), 422, "a huge user id")


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/auth/login", {"username": "ada\x00", "password": "correct horse battery"}, "username"),
        ("POST", "/auth/register", {"username": "ada", "email": "a\x00@example.com", "password": "x" * 12}, "email"),
        ("POST", "/auth/register", {"username": "ada", "email": "a@b.c", "password": "x" * 12, "display_name": "\x00"},
         "display_name"),
        ("GET", "/users/search?q=ad%00a", None, "q"),
        ("POST", "/chats/{chat}/messages", {"client_message_id": str(uuid.uuid4()), "body": "hi\x00"}, "body"),
        ("PATCH", "/chats/{chat}/messages/1", {"body": "\x00"}, "body"),
        ("POST", "/posts", {"text": "a\x00b"}, "text"),
        ("GET", "/posts?cursor=%00", None, "cursor"),
    ],
)  # fmt: skip
def test_a_nul_in_any_text_is_a_422_not_a_500(
    gateway: TestClient, method: str, path: str, body: dict[str, Any] | None, field: str
) -> None:
    """Found by tests/attacks: PostgreSQL cannot store a NUL, and one in a username, an address, a search or a
    message reached the auth or chat service and came back as a 500."""
    _alice, headers = sign_up(gateway, "alice")
    bob, _ = sign_up(gateway, "bob")
    chat_id = open_chat(gateway, headers, bob)
    send(gateway, headers, chat_id, "first")
    response = gateway.request(method, API + path.format(chat=chat_id), json=body, headers=headers)
    document = problem_of(response, 422, f"a NUL in {field}")
    assert field in document["detail"] and "NUL" in document["detail"], f"the detail names the field: {document}"


def test_an_id_too_long_to_be_a_content_id_is_a_422_not_a_500(gateway: TestClient) -> None:
    """Found by tests/attacks: the content service quotes a wrong id in its NOT_FOUND message, and a long id made
    that message larger than gRPC metadata may be (RESOURCE_EXHAUSTED, answered 500)."""
    _, headers = sign_up(gateway, "alice")
    problem_of(gateway.get(f"{API}/posts/{'a' * 20_000}", headers=headers), 422, "a post id of 20 000 characters")
    long_media = {"text": "a post", "media_ids": ["\x01" * 5_000]}
    problem_of(gateway.post(f"{API}/posts", json=long_media, headers=headers), 422, "a media id of 5000 characters")
    missing = gateway.get(f"{API}/posts/{'f' * 24}", headers=headers)
    problem_of(missing, 404, "an id of the right length that names nothing is still a 404")


def test_every_error_response_is_documented_as_a_problem_document(gateway: TestClient) -> None:
    """The OpenAPI document says what an error looks like, so a client (and schemathesis) can check it."""
    document = gateway.get("/openapi.json").json()
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == PROBLEM_KEYS, f"the Problem schema requires every member: {problem}"
    for path, item in document["paths"].items():
        for method, operation in item.items():
            content = operation["responses"]["default"].get("content", {})
            assert list(content) == [MEDIA_TYPE], f"{method.upper()} {path}: errors are {MEDIA_TYPE}: {content}"
            assert content[MEDIA_TYPE]["schema"] == {"$ref": "#/components/schemas/Problem"}, (method, path)
    refused = gateway.get(f"{API}/chats")
    assert set(refused.json()) >= set(problem["required"]), "and a real error has what the schema requires"


def test_a_token_in_a_url_never_reaches_the_gateway_log() -> None:
    from app.gateway.__main__ import HideQueryStrings

    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" [accepted]',
        ("1.2.3.4:5", "/ws?token=ey.J9"),
        None,
    )
    assert HideQueryStrings().filter(record), "the line is kept, only its query string goes"
    assert "ey.J9" not in record.getMessage() and "/ws" in record.getMessage(), record.getMessage()


def test_a_chunked_body_is_cut_off_at_the_limit() -> None:
    """Drive the middleware with a body in many chunks: it must stop reading at the limit and answer 413."""
    from app.gateway.request_ids import GatewayMiddleware

    chunk, limit = b"x" * 1000, 4500
    handed_out, read_by_app = 0, 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal handed_out
        handed_out += 1
        return {"type": "http.request", "body": chunk, "more_body": True}  # a client that never stops

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal read_by_app
        while (message := await receive())["type"] == "http.request":
            read_by_app += len(message["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"read it all"})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/v1/posts", "headers": []}
    asyncio.run(GatewayMiddleware(app, body_limit_for=lambda path: limit)(scope, receive, send))  # type: ignore[arg-type]
    assert handed_out == limit // len(chunk) + 1, (
        f"reading must stop at the chunk that passes the limit; read {handed_out}"
    )
    assert read_by_app <= limit, f"the app must never see more than the limit; it saw {read_by_app} bytes"
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [413], f"one 413 answer: {sent}"


def test_a_body_over_the_limit_is_refused_before_it_is_read(gateway: TestClient) -> None:
    limit = gateway.app.state.gateway.settings.http.max_body_bytes  # type: ignore[attr-defined]
    _, headers = sign_up(gateway, "alice")
    huge = b'{"text": "' + b"x" * limit + b'"}'
    problem_of(
        gateway.post(f"{API}/posts", content=huge, headers=headers | {"Content-Type": "application/json"}),
        413,
        "a body over the limit with a Content-Length",
    )

    def chunks() -> Any:
        yield b'{"text": "'
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    chunked = gateway.post(f"{API}/posts", content=chunks(), headers=headers | {"Content-Type": "application/json"})
    problem_of(chunked, 413, "a body over the limit sent in chunks, without a Content-Length")


def test_a_post_with_an_image(gateway: TestClient) -> None:
    alice, headers = sign_up(gateway, "alice")
    uploaded = gateway.post(f"{API}/media", files={"file": ("dot.png", PNG, "image/png")}, headers=headers)
    assert uploaded.status_code == 201, f"uploading a PNG failed: {uploaded.text}"
    media_id = uploaded.json()["id"]
    post = gateway.post(f"{API}/posts", json={"text": "a dot", "media_ids": [media_id]}, headers=headers)
    assert post.status_code == 201, post.text
    read = gateway.get(f"{API}/posts/{post.json()['id']}", headers=headers).json()
    assert read["media_ids"] == [media_id] and read["author_id"] == alice, f"the post reads back: {read}"
    image = gateway.get(f"{API}/media/{media_id}", headers=headers)
    assert image.content == PNG and image.headers["content-type"] == "image/png", "the image reads back byte for byte"
    assert image.headers.get("x-content-type-options") == "nosniff", "a download forbids content sniffing"
    text = gateway.post(f"{API}/media", files={"file": ("a.html", b"<script>", "text/html")}, headers=headers)
    problem_of(text, 422, "uploading HTML as media")


def test_an_image_is_its_uploaders_until_a_post_carries_it(gateway: TestClient) -> None:
    """An id that leaked is not enough: someone else's upload is a 404, exactly like an id nobody uploaded."""
    _, alice = sign_up(gateway, "alice")
    _, bob = sign_up(gateway, "bob")
    media_id = gateway.post(f"{API}/media", files={"file": ("dot.png", PNG, "image/png")}, headers=alice).json()["id"]
    missing = "0" * 24

    def detail(response: Response, status: int, what: str, media: str) -> str:
        return str(problem_of(response, status, what)["detail"]).replace(media, "<id>")

    def attach(headers: dict[str, str], media: str) -> Response:
        return gateway.post(f"{API}/posts", json={"text": "a dot", "media_ids": [media]}, headers=headers)

    unknown = detail(attach(bob, missing), 404, "bob posts an id nobody uploaded", missing)
    theirs = detail(attach(bob, media_id), 404, "bob posts alice's image", media_id)
    assert theirs == unknown, f"alice's image in bob's post must read like an unknown id ({unknown!r}); got {theirs!r}"
    unknown = detail(gateway.get(f"{API}/media/{missing}", headers=bob), 404, "bob downloads a missing id", missing)
    theirs = detail(gateway.get(f"{API}/media/{media_id}", headers=bob), 404, "bob downloads alice's image", media_id)
    assert theirs == unknown, f"alice's image in no post must look missing to bob ({unknown!r}); got {theirs!r}"
    own = gateway.get(f"{API}/media/{media_id}", headers=alice)
    assert own.status_code == 200 and own.content == PNG, f"alice downloads her own image: {own.status_code}"

    assert attach(alice, media_id).status_code == 201, "alice posts her own image"
    for who, headers in (("bob", bob), ("alice", alice)):
        image = gateway.get(f"{API}/media/{media_id}", headers=headers)
        assert image.status_code == 200 and image.content == PNG, f"{who} downloads the posted image: {image.text}"
    detail(attach(bob, media_id), 404, "bob posts alice's image once she posted it", media_id)


def test_a_reply_over_rest_shows_its_quote_and_a_reply_to_nothing_is_a_409(gateway: TestClient) -> None:
    """Replies (stage 11) through the REST door: reply_to_seq in, the quote out."""
    alice, alice_headers = sign_up(gateway, "alice")
    bob, bob_headers = sign_up(gateway, "bob")
    chat_id = open_chat(gateway, alice_headers, bob)
    question = send(gateway, alice_headers, chat_id, "tea?").json()["seq"]
    payload = {"client_message_id": str(uuid.uuid4()), "body": "yes please", "reply_to_seq": question}
    reply = gateway.post(f"{API}/chats/{chat_id}/messages", json=payload, headers=bob_headers)
    assert reply.status_code == 201, reply.text
    assert reply.json()["reply_to"] == {"seq": question, "sender_id": alice, "body": "tea?", "deleted": False}
    assert send(gateway, bob_headers, chat_id, "plain").json()["reply_to"] is None, "no reply, no quote"
    payload = {"client_message_id": str(uuid.uuid4()), "body": "?", "reply_to_seq": 999}
    missing = gateway.post(f"{API}/chats/{chat_id}/messages", json=payload, headers=bob_headers)
    assert "cannot be replied to" in problem_of(missing, 409, "a reply to a message the chat does not have")["detail"]


def test_password_guessing_is_slowed_per_account_and_per_address(grpc_services: Settings) -> None:
    """A burst of wrong passwords gets 429 with Retry-After; after the window, the holder's right password works."""
    from app.gateway.app import create_app

    window = 2
    redis_settings = grpc_services.redis.model_copy(
        update={"sign_in_rate_limit": 3, "sign_in_address_rate_limit": 6, "sign_in_rate_window_seconds": window}
    )
    with TestClient(create_app(grpc_services.model_copy(update={"redis": redis_settings}))) as gateway:
        username = f"ada_{uuid.uuid4().hex[:6]}"
        body = {"username": username, "email": f"{username}@example.com", "password": "correct horse battery"}
        assert gateway.post(f"{API}/auth/register", json=body).status_code == 201  # one attempt of this account
        guesses = [
            gateway.post(f"{API}/auth/login", json={"username": username, "password": f"guess {n}"}) for n in range(3)
        ]
        assert [guess.status_code for guess in guesses] == [401, 401, 429], "3 attempts per account per window"
        refused = problem_of(guesses[-1], 429, "a fourth attempt on one account")
        assert int(guesses[-1].headers["retry-after"]) >= 1 and "sign-in attempts" in refused["detail"]
        right = gateway.post(f"{API}/auth/login", json={"username": username, "password": "correct horse battery"})
        assert right.status_code == 429, "inside the window even the right password waits: a guess must not be told"
        others = [
            gateway.post(f"{API}/auth/login", json={"username": f"nobody_{n}", "password": "x" * 12}).status_code
            for n in range(3)
        ]
        assert others == [401, 429, 429], "and 6 attempts per client address, whatever the account"
        time.sleep(window + 0.2)  # the window is the rule under test: waiting it out is the point
        right = gateway.post(f"{API}/auth/login", json={"username": username, "password": "correct horse battery"})
        assert right.status_code == 200, f"after the window the account holder signs in: {right.text}"


def test_comments_likes_and_the_feed(gateway: TestClient) -> None:
    _, alice_headers = sign_up(gateway, "alice")
    _, bob_headers = sign_up(gateway, "bob")
    post_id = gateway.post(f"{API}/posts", json={"text": "first"}, headers=alice_headers).json()["id"]
    comment = gateway.post(f"{API}/posts/{post_id}/comments", json={"text": "nice"}, headers=bob_headers)
    assert comment.status_code == 201 and comment.json()["post_id"] == post_id, comment.text
    for text in ("second", "third"):
        gateway.post(f"{API}/posts/{post_id}/comments", json={"text": text}, headers=alice_headers)
    first_page = gateway.get(f"{API}/posts/{post_id}/comments", params={"limit": 2}, headers=alice_headers).json()
    assert [c["text"] for c in first_page["comments"]] == ["third", "second"], f"newest first: {first_page}"
    rest = gateway.get(
        f"{API}/posts/{post_id}/comments", params={"cursor": first_page["next_cursor"]}, headers=bob_headers
    ).json()
    assert [c["text"] for c in rest["comments"]] == ["nice"] and rest["next_cursor"] == "", f"the last page: {rest}"
    problem_of(gateway.get(f"{API}/posts/000000000000000000000000/comments", headers=bob_headers), 404, "no post")
    problem_of(
        gateway.get(f"{API}/posts/{post_id}/comments", params={"cursor": "not-ours"}, headers=bob_headers),
        422,
        "a cursor the service never gave out",
    )
    assert gateway.put(f"{API}/posts/{post_id}/like", headers=bob_headers).json()["changed"] is True
    assert gateway.put(f"{API}/posts/{post_id}/like", headers=bob_headers).json()["changed"] is False, "likes once"
    assert gateway.get(f"{API}/posts/{post_id}", headers=alice_headers).json()["like_count"] == 1
    assert gateway.delete(f"{API}/posts/{post_id}/like", headers=bob_headers).json()["changed"] is True
    feed = gateway.get(f"{API}/posts", headers=bob_headers).json()
    assert [post["id"] for post in feed["posts"]] == [post_id], f"the feed shows the post: {feed}"
    problem_of(gateway.get(f"{API}/posts/000000000000000000000000", headers=alice_headers), 404, "a missing post")


def test_notifications_are_the_callers_own(gateway: TestClient) -> None:
    from app.events.notifications import NewNotification
    from app.events.notifications_pg import PostgresNotifications, open_pool

    _alice, alice_headers = sign_up(gateway, "alice")
    bob, bob_headers = sign_up(gateway, "bob")
    chat_id = open_chat(gateway, alice_headers, bob)
    settings = gateway.app.state.gateway.settings  # type: ignore[attr-defined]
    pool = open_pool(settings.postgres.url)
    try:
        store = PostgresNotifications(pool)
        for seq in (1, 2):
            store.record(
                NewNotification(user_id=bob, event_id=uuid.uuid4(), chat_id=chat_id, seq=seq, preview=f"note {seq}")
            )
    finally:
        pool.close()
    bobs = gateway.get(f"{API}/notifications", headers=bob_headers)
    assert bobs.status_code == 200, bobs.text
    assert [n["seq"] for n in bobs.json()] == [2, 1], f"bob sees his notifications, newest first: {bobs.json()}"
    assert gateway.get(f"{API}/notifications", headers=alice_headers).json() == [], "alice has none"
