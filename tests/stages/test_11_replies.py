"""Stage 11 — one feature through every layer: replies. These tests grade the exercises of stage 11.

A message may answer an earlier message of the same chat. The rule lives in the domain (11.1: what a quote shows),
PostgreSQL enforces "same chat, earlier message" in the send statement (migration 0005; 11.2 turns its refusal into
the domain's error), the store fills in the quotes of a page with one query (11.3), and the gRPC contract carries
them in fields old clients never see (11.4). Every test that stores something gets a fresh, migrated database.
"""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
import pytest
from app.chat.adapters.postgres import PostgresChatStore
from app.chat.domain import Message, Quote, ReplyNotFound, quote_of
from app.chat.grpc_server import message_message, quote_message
from app.chat.service import ChatService
from app.config import load_settings
from app.db.pool import open_pool
from app.grpc_api import chat_pb2

exercise = pytest.mark.exercise
T = TypeVar("T")
ALICE, BOB, CAROL = 1, 2, 3
NOW = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


def message(seq: int = 3, *, body: str = "the original text", deleted: bool = False, edited: bool = False) -> Message:
    return Message(
        chat_id=7,
        seq=seq,
        sender_id=BOB,
        client_message_id=uuid.uuid4(),
        body="" if deleted else body,
        created_at=NOW,
        edited_at=NOW if edited else None,
        deleted_at=NOW if deleted else None,
    )


def run(postgres_url: str, scenario: Callable[[ChatService], Awaitable[T]]) -> T:
    async def main() -> T:
        settings = load_settings().postgres.model_copy(update={"url": postgres_url})
        async with open_pool(settings) as pool:
            return await scenario(ChatService(PostgresChatStore(pool), history_page_max=50))

    return asyncio.run(main())


def query(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as connection:
        return connection.execute(sql, params).fetchall()  # type: ignore[arg-type]


# 11.1 — the domain: what a quote shows -------------------------------------------------------------------------


@exercise("11.1")
def test_a_quote_shows_the_message_as_it_reads() -> None:
    assert quote_of(message(body="see you at 5")) == Quote(seq=3, sender_id=BOB, body="see you at 5", deleted=False), (
        "a quote carries the answered message's seq, sender and text"
    )
    assert quote_of(message(body="see you at 6", edited=True)).body == "see you at 6", (
        "an edited message is quoted as it reads now"
    )


@exercise("11.1")
def test_a_deleted_message_is_quoted_as_deleted_without_its_text() -> None:
    stale = Message(**{**message().__dict__, "deleted_at": NOW, "body": "a secret the sender took back"})
    quote = quote_of(stale)
    assert quote.deleted is True, "a reply to a deleted message shows it as deleted"
    assert quote.body == "", "a quote of a deleted message carries no text, whatever the message object still holds"
    assert (quote.seq, quote.sender_id) == (3, BOB), "it still says which message it was"


# 11.2 and 11.3 — the store: the reply's rule in the send statement, quotes in one query ---------------------------


@exercise("11.2")
def test_a_reply_to_a_message_the_chat_does_not_have_is_refused_and_stores_nothing(postgres_url: str) -> None:
    async def scenario(chats: ChatService) -> None:
        chat = await chats.open_chat(ALICE, BOB)
        await chats.send_message(ALICE, chat.id, uuid.uuid4(), "first")
        for missing in (2, 99):  # itself (the next seq would be 2) and a seq the chat never had
            with pytest.raises(ReplyNotFound):
                await chats.send_message(BOB, chat.id, uuid.uuid4(), "answer", reply_to_seq=missing)

    run(postgres_url, scenario)
    assert query(postgres_url, "SELECT last_seq FROM chat.private_chats") == [(1,)], "a refused reply takes no seq"
    assert query(postgres_url, "SELECT count(*) FROM chat.outbox") == [(1,)], "and announces nothing"


@exercise("11.2")
def test_a_reply_cannot_quote_another_chat(postgres_url: str) -> None:
    async def scenario(chats: ChatService) -> Message:
        other = await chats.open_chat(ALICE, CAROL)
        for number in range(5):
            await chats.send_message(CAROL, other.id, uuid.uuid4(), f"carol {number}")
        chat = await chats.open_chat(ALICE, BOB)
        for number in range(1, 4):
            await chats.send_message(ALICE, chat.id, uuid.uuid4(), f"to Bob {number}")
        with pytest.raises(ReplyNotFound, match="cannot be replied to"):
            await chats.send_message(BOB, chat.id, uuid.uuid4(), "what Carol said", reply_to_seq=5)  # Carol's only
        return await chats.send_message(BOB, chat.id, uuid.uuid4(), "answer", reply_to_seq=3)

    reply = run(postgres_url, scenario)
    assert reply.reply_to_seq == 3, "a reply to an earlier message of the same chat is stored"
    assert reply.reply_to == Quote(3, ALICE, "to Bob 3", False), "seq 3 of THIS chat, never Carol's chat's seq 3"


@exercise("11.3")
def test_history_carries_each_replys_quote_as_it_reads_now(postgres_url: str) -> None:
    async def scenario(chats: ChatService) -> list[Message]:
        chat = await chats.open_chat(ALICE, BOB)
        for number in range(1, 4):
            await chats.send_message(ALICE, chat.id, uuid.uuid4(), f"question {number}")
        sent = await chats.send_message(BOB, chat.id, uuid.uuid4(), "answer to 1", reply_to_seq=1)
        assert sent.reply_to == Quote(1, ALICE, "question 1", False), "the sender gets the quote back at once"
        await chats.send_message(BOB, chat.id, uuid.uuid4(), "answer to 3", reply_to_seq=3)
        await chats.edit_message(ALICE, chat.id, 1, "question 1, corrected")
        await chats.delete_message(ALICE, chat.id, 3)
        return list((await chats.history(BOB, chat.id)).messages)

    page = {item.seq: item for item in run(postgres_url, scenario)}
    assert page[4].reply_to == Quote(1, ALICE, "question 1, corrected", False), "quoted as it reads now: edited"
    assert page[5].reply_to == Quote(3, ALICE, "", True), "a deleted message is quoted as deleted"
    assert page[2].reply_to is None and page[2].reply_to_seq is None, "a message that answers nothing has no quote"


@exercise("11.3")
def test_the_quotes_of_a_page_cost_one_query(postgres_url: str) -> None:
    async def write(chats: ChatService) -> int:
        chat = await chats.open_chat(ALICE, BOB)
        for number in range(1, 11):
            await chats.send_message(ALICE, chat.id, uuid.uuid4(), f"root {number}")
        for number in range(1, 11):  # each reply quotes another message: one query per quote would show
            await chats.send_message(BOB, chat.id, uuid.uuid4(), f"reply {number}", reply_to_seq=number)
        return chat.id

    chat_id = run(postgres_url, write)

    async def read(chats: ChatService) -> list[Message]:
        return list((await chats.history(ALICE, chat_id)).messages)

    messages, sent = count_queries(postgres_url, read)
    replies = [m for m in messages if m.seq > 10]
    assert [m.reply_to for m in replies] == [Quote(n, ALICE, f"root {n}", False) for n in range(1, 11)], "all quoted"
    assert sent <= 3, f"reading a page of 10 replies sent {sent} queries: one for all the quotes, not one each"


def count_queries(postgres_url: str, scenario: Callable[[ChatService], Awaitable[T]]) -> tuple[T, int]:
    """What a scenario returns, and how many statements it sent to PostgreSQL (counted on the client side).

    The pool's check of a connection before lending it (an empty statement) is not one of the scenario's queries.
    """
    sent = 0
    original = psycopg.AsyncCursor.execute

    async def counting(self: psycopg.AsyncCursor[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal sent
        sent += query != ""
        return await original(self, query, *args, **kwargs)

    psycopg.AsyncCursor.execute = counting  # type: ignore[method-assign]
    try:
        result = run(postgres_url, scenario)
    finally:
        psycopg.AsyncCursor.execute = original  # type: ignore[method-assign]
    return result, sent


# 11.4 — the contract: the quote on the wire, in fields old clients never see ---------------------------------------


@exercise("11.4")
def test_a_reply_carries_its_quote_on_the_wire() -> None:
    reply = Message(
        **{**message(seq=5).__dict__, "reply_to_seq": 3, "reply_to": Quote(3, ALICE, "the question", False)}
    )
    wire = message_message(reply)
    assert wire.HasField("reply_to_seq") and wire.reply_to_seq == 3, "the reply names the message it answers"
    assert wire.HasField("reply_to"), "and carries its quote"
    assert (wire.reply_to.seq, wire.reply_to.sender_id, wire.reply_to.body, wire.reply_to.deleted) == (
        3,
        ALICE,
        "the question",
        False,
    )
    deleted = quote_message(Quote(3, ALICE, "", True))
    assert deleted is not None and deleted.deleted is True and deleted.body == "", "a deleted quote says so"


@exercise("11.4")
def test_a_message_that_answers_nothing_leaves_the_new_fields_unset() -> None:
    plain = message_message(message())
    assert not plain.HasField("reply_to_seq") and not plain.HasField("reply_to"), (
        "no reply: both fields stay unset, so the message is byte for byte what it was before replies existed"
    )
    assert quote_message(None) is None


def test_replies_took_new_field_numbers_so_old_clients_keep_working() -> None:
    """Not an exercise: the contract itself. A client built before replies reads fields 1-8 as before."""
    fields = {field.name: field.number for field in chat_pb2.Message.DESCRIPTOR.fields}
    assert fields == {
        "chat_id": 1, "seq": 2, "sender_id": 3, "client_message_id": 4, "body": 5,
        "created_at": 6, "edited_at": 7, "deleted_at": 8, "reply_to_seq": 9, "reply_to": 10,
    }  # fmt: skip
