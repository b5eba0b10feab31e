"""The messenger end to end, against its real processes (gateway, auth, chat, content, relay, notifier).

Two users register and log in over REST, open a private chat, talk over WebSocket in real time, read the
history over REST; one disconnects, messages arrive meanwhile, it reconnects and syncs exactly the missed
ones. A post with an image is uploaded and read back. The waits are fail-safes (a message that never comes
fails the test instead of hanging it), never measurements.
"""

from __future__ import annotations

import asyncio
import struct
import uuid
import zlib
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from messenger_client import ChatClient, RunningApp, User, open_chat, register_and_log_in

from workbook.processes import log_tail

pytestmark = pytest.mark.e2e


@pytest.fixture
def http(running_app: RunningApp) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=running_app.base_url, timeout=30) as client:
        yield client


def unique(name: str) -> str:
    return f"{name}_{uuid.uuid4().hex[:8]}"


def tiny_png() -> bytes:
    """A real 1×1 PNG (the content service looks at the bytes, not only at the declared type)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1×1, 8 bits, RGB
    pixels = zlib.compress(b"\x00\xff\x80\x00")  # filter byte 0, one orange pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_users_register_log_in_open_a_chat_and_read_its_history_over_rest(http: httpx.Client) -> None:
    ada, linus = register_and_log_in(http, unique("ada")), register_and_log_in(http, unique("linus"))

    me = http.get("/api/v1/users/me", headers=ada.headers)
    assert me.status_code == 200 and me.json()["id"] == ada.id, "the token from login should say who the caller is"
    chat_id = open_chat(http, ada, linus)
    assert open_chat(http, linus, ada) == chat_id, "both users should reach the same private chat"
    for number in range(1, 4):
        sent = http.post(
            f"/api/v1/chats/{chat_id}/messages",
            json={"client_message_id": str(uuid.uuid4()), "body": f"rest {number}"},
            headers=ada.headers,
        )
        assert sent.status_code == 201, f"sending over REST should work: {sent.text}"
        assert sent.json()["seq"] == number, "seqs in a new chat should be 1, 2, 3 without gaps"

    history = http.get(f"/api/v1/chats/{chat_id}/messages", headers=linus.headers)

    assert history.status_code == 200, history.text
    assert [message["body"] for message in history.json()["messages"]] == ["rest 1", "rest 2", "rest 3"], (
        "the other member should read the whole history, oldest first"
    )


def test_a_post_with_an_image_is_uploaded_and_read_back(http: httpx.Client) -> None:
    author, reader = register_and_log_in(http, unique("grace")), register_and_log_in(http, unique("alan"))
    image = tiny_png()

    uploaded = http.post("/api/v1/media", files={"file": ("dot.png", image, "image/png")}, headers=author.headers)
    assert uploaded.status_code == 201, f"uploading a PNG should work: {uploaded.text}"
    media_id = uploaded.json()["id"]
    created = http.post("/api/v1/posts", json={"text": "a dot", "media_ids": [media_id]}, headers=author.headers)
    assert created.status_code == 201, f"creating a post with the image should work: {created.text}"

    post = http.get(f"/api/v1/posts/{created.json()['id']}", headers=reader.headers)
    assert post.status_code == 200, post.text
    assert post.json()["text"] == "a dot" and post.json()["media_ids"] == [media_id], (
        "another user should read the post back with its image"
    )
    download = http.get(f"/api/v1/media/{media_id}", headers=reader.headers)
    assert download.status_code == 200, download.text
    assert download.content == image, "the image should come back byte for byte"
    assert download.headers["content-type"] == "image/png"


def where_the_push_stopped(app: RunningApp, chat_id: int, seq: int) -> str:
    """Which part of the path a message that never arrived got to: the database, the relay, or the gateway."""
    with psycopg.connect(app.postgres_url, connect_timeout=5) as connection:
        stored = connection.execute(
            "SELECT 1 FROM chat.messages WHERE chat_id = %s AND seq = %s", (chat_id, seq)
        ).fetchone()
        published = connection.execute(
            "SELECT published_at IS NOT NULL FROM chat.outbox"
            " WHERE topic = 'message.created' AND (payload->>'chat_id')::bigint = %s AND (payload->>'seq')::bigint = %s",
            (chat_id, seq),
        ).fetchone()
    if stored is None:
        where, process = f"message {seq} was acked but is not in chat.messages", "chat"
    elif published is None:
        where, process = f"message {seq} was stored but has no outbox row, so no event could leave", "chat"
    elif not published[0]:
        where, process = f"message {seq} was stored but its outbox row was never published to RabbitMQ", "relay"
    else:
        where = f"message {seq} was stored and published to RabbitMQ but never reached the other member's socket"
        process = "gateway"
    tail = "\n".join(f"    {line}" for line in log_tail(app.runner.log_path(process), lines=8)) or "    (empty)"
    return f"{where}: look at the {process} process's log. Its last lines:\n{tail}"


async def pushed(app: RunningApp, receiver: ChatClient, chat_id: int, seq: int) -> dict[str, object]:
    """The message with this seq once pushed to ``receiver``; if it never comes, where along the path it stopped."""
    try:
        return await receiver.wait_for_seq(seq)
    except TimeoutError:
        pytest.fail(await asyncio.to_thread(where_the_push_stopped, app, chat_id, seq))


async def conversation(app: RunningApp, ada: User, linus: User, chat_id: int) -> None:
    ada_ws, linus_ws = ChatClient(app.ws_url, ada, chat_id), ChatClient(app.ws_url, linus, chat_id)
    await ada_ws.connect()
    await linus_ws.connect()
    try:
        # Real time: each message reaches the other member as a push, without asking.
        ack = await ada_ws.send("hello Linus")
        to_linus = await pushed(app, linus_ws, chat_id, ack["seq"])
        assert (to_linus["body"], to_linus["sender_id"]) == ("hello Linus", ada.id), "Linus should get Ada's message"
        reply = await linus_ws.send("hi Ada")
        assert reply["seq"] == ack["seq"] + 1, "the reply should take the next seq"
        assert (await pushed(app, ada_ws, chat_id, reply["seq"]))["body"] == "hi Ada", "Ada should get the reply pushed"
        assert linus_ws.synced == 0 and ada_ws.synced == 0, "nothing should have needed a sync yet"

        async with httpx.AsyncClient(base_url=app.base_url, timeout=30) as http:
            history = await http.get(f"/api/v1/chats/{chat_id}/messages", headers=ada.headers)
        assert history.status_code == 200, history.text
        assert [(m["seq"], m["body"]) for m in history.json()["messages"]] == [
            (ack["seq"], "hello Linus"),
            (reply["seq"], "hi Ada"),
        ], "the REST history should hold what was said over the WebSocket"

        # Linus goes away; Ada keeps writing.
        await linus_ws.close()
        missed = [(await ada_ws.send(f"while you were away {number}"))["seq"] for number in range(3)]
        assert missed == [reply["seq"] + 1, reply["seq"] + 2, reply["seq"] + 3]

        # Once Ada's own push of the last one arrived, every push of these has been handed out: none can reach
        # Linus's new socket and make the sync below look short.
        await ada_ws.wait_for_seq(missed[-1])
        # Linus comes back and asks for everything after the last message he has: exactly the missed ones.
        await linus_ws.connect()
        caught_up = await linus_ws.sync()
        assert [message["seq"] for message in caught_up] == missed, "sync should return exactly the missed seqs"
        assert [message["body"] for message in caught_up] == [f"while you were away {n}" for n in range(3)]
        assert sorted(linus_ws.messages) == [ack["seq"], reply["seq"], *missed], "Linus should now hold them all"
    finally:
        await ada_ws.close()
        await linus_ws.close()


def test_two_users_chat_in_real_time_and_a_reconnect_syncs_exactly_the_missed_messages(
    running_app: RunningApp, http: httpx.Client
) -> None:
    ada, linus = register_and_log_in(http, unique("ada")), register_and_log_in(http, unique("linus"))
    chat_id = open_chat(http, ada, linus)

    asyncio.run(conversation(running_app, ada, linus, chat_id))
