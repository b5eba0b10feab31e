"""Sends into one busy chat are written together (chat/adapters/hot_chats.py), and each still gets exactly the
answer a lone send would: its own gap-free seq, its outbox row, a retry's original message, a refusal of its own.

Against a real PostgreSQL (a throwaway database), as the chat service runs it. The first send into a quiet chat
is written at once; the ones started while it is on its way wait, and go in one statement together.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from reference_app.chat.adapters.hot_chats import GroupingChatStore, HotChats, runs
from reference_app.chat.domain import ChatNotFound, Message, MessageDraft, ReplyNotFound
from reference_app.config import Settings
from reference_app.db import apply_migrations
from reference_app.db.pool import open_pool
from workbook.databases import throwaway_database

ALICE, BOB, MALLORY = 1, 2, 3
NOW = datetime.now(UTC)


@pytest.fixture
def database_url(settings: Settings) -> Iterator[str]:
    with throwaway_database(settings.postgres.url, f"hot_chats_test_{uuid.uuid4().hex[:10]}") as url:
        apply_migrations(url)
        yield url


def draft(chat_id: int, sender: int, body: str, *, reply_to_seq: int | None = None) -> MessageDraft:
    return MessageDraft(chat_id, sender, uuid.uuid4(), body, reply_to_seq)


def run(settings: Settings, url: str, scenario: Any) -> Any:
    """Run ``scenario(store, chat_id)`` with a grouping store on its own pool, in a fresh event loop."""

    async def main() -> Any:
        sized = settings.postgres.model_copy(update={"url": url, "pool_min_size": 2, "pool_max_size": 8})
        async with open_pool(sized, name="hot-chats-test") as pool:
            store = GroupingChatStore(pool)
            chat = await store.open_chat(ALICE, BOB)
            return await scenario(store, chat.id)

    return asyncio.run(main())


def outbox_seqs(url: str, chat_id: int) -> list[int]:
    with psycopg.connect(url) as db:
        rows = db.execute(
            "SELECT (payload->>'seq')::bigint FROM chat.outbox WHERE (payload->>'chat_id')::bigint = %s ORDER BY id",
            (chat_id,),
        ).fetchall()
    return [row[0] for row in rows]


def test_concurrent_sends_into_one_chat_go_together_and_keep_every_guarantee(
    settings: Settings, database_url: str
) -> None:
    async def scenario(store: GroupingChatStore, chat_id: int) -> tuple[list[MessageDraft], list[Message], int]:
        drafts = [draft(chat_id, ALICE if n % 2 else BOB, f"message {n}") for n in range(40)]
        messages = await asyncio.gather(*(store.append_message(d) for d in drafts))
        return drafts, list(messages), store.hot_chats.group_statements

    drafts, messages, groups = run(settings, database_url, scenario)
    assert sorted(m.seq for m in messages) == list(range(1, 41)), "every send its own seq, without a gap"
    for sent, stored in zip(drafts, messages, strict=True):
        assert (stored.sender_id, stored.client_message_id, stored.body) == (
            sent.sender_id,
            sent.client_message_id,
            sent.body,
        ), "each caller gets its own message back"
    assert [m.seq for m in messages] == sorted(m.seq for m in messages), "seqs in the order the sends came"
    assert 1 <= groups < 40, f"the sends that waited went in groups, not one statement each ({groups} groups)"
    chat_id = messages[0].chat_id
    assert outbox_seqs(database_url, chat_id) == list(range(1, 41)), "one outbox row per message, in seq order"
    with psycopg.connect(database_url) as db:
        marks = dict(db.execute("SELECT user_id, last_read_seq FROM chat.read_state WHERE chat_id = %s", (chat_id,)))
        last_seq = db.execute("SELECT last_seq FROM chat.private_chats WHERE id = %s", (chat_id,)).fetchone()
    assert last_seq == (40,)
    assert marks == {
        ALICE: max(m.seq for m in messages if m.sender_id == ALICE),
        BOB: max(m.seq for m in messages if m.sender_id == BOB),
    }, "each sender has read up to their own last message"


def test_a_retry_in_a_group_returns_the_first_message_and_takes_no_seq(settings: Settings, database_url: str) -> None:
    async def scenario(store: GroupingChatStore, chat_id: int) -> tuple[Message, list[Message]]:
        first = await store.append_message(draft(chat_id, ALICE, "first"))
        retry = MessageDraft(chat_id, ALICE, first.client_message_id, "first", None)
        others = [draft(chat_id, BOB, f"new {n}") for n in range(4)]
        results = await asyncio.gather(*(store.append_message(d) for d in [others[0], retry, *others[1:]]))
        return first, list(results)

    first, results = run(settings, database_url, scenario)
    assert results[1].seq == first.seq == 1, "the retry is answered with the message its first try stored"
    assert sorted(m.seq for m in results if m is not results[1]) == [2, 3, 4, 5], "no seq used by the retry"
    assert outbox_seqs(database_url, first.chat_id) == [1, 2, 3, 4, 5], "and no second outbox row"


def test_a_non_member_in_a_group_is_refused_alone(settings: Settings, database_url: str) -> None:
    async def scenario(store: GroupingChatStore, chat_id: int) -> list[Any]:
        drafts = [draft(chat_id, ALICE, "a"), draft(chat_id, BOB, "b"), draft(chat_id, MALLORY, "m")]
        drafts.append(draft(chat_id, ALICE, "c"))
        return list(await asyncio.gather(*(store.append_message(d) for d in drafts), return_exceptions=True))

    results = run(settings, database_url, scenario)
    assert isinstance(results[2], ChatNotFound), f"an outsider learns nothing of the chat: {results[2]!r}"
    assert [m.seq for m in (results[0], results[1], results[3])] == [1, 2, 3], "the members' sends are stored"


def test_replies_in_a_group_keep_their_quote_and_a_bad_one_is_refused(settings: Settings, database_url: str) -> None:
    async def scenario(store: GroupingChatStore, chat_id: int) -> list[Any]:
        await store.append_message(draft(chat_id, ALICE, "question"))
        drafts = [
            draft(chat_id, BOB, "lead"),
            draft(chat_id, BOB, "answer", reply_to_seq=1),
            draft(chat_id, ALICE, "to the future", reply_to_seq=99),
            draft(chat_id, ALICE, "plain"),
        ]
        return list(await asyncio.gather(*(store.append_message(d) for d in drafts), return_exceptions=True))

    lead, answer, bad, plain = run(settings, database_url, scenario)
    assert answer.reply_to is not None and answer.reply_to.body == "question", "a reply comes with its quote"
    assert isinstance(bad, ReplyNotFound), f"a reply to no message is refused as when sent alone: {bad!r}"
    assert sorted([lead.seq, answer.seq, plain.seq]) == [2, 3, 4], "the refused reply took no seq"


# The queueing alone, with fakes --------------------------------------------------------------------------------


class FakeWrites:
    """Records what was written how; the first write waits for ``release`` so that the others queue."""

    def __init__(self, group_error: Exception | None = None) -> None:
        self.release = asyncio.Event()
        self.alone: list[str] = []
        self.groups: list[list[str]] = []
        self.group_error = group_error
        self.seq = 0

    def message(self, d: MessageDraft) -> Message:
        self.seq += 1
        return Message(d.chat_id, self.seq, d.sender_id, d.client_message_id, d.body, NOW, None, None)

    async def one(self, d: MessageDraft) -> Message:
        self.alone.append(d.body)
        await self.release.wait()
        return self.message(d)

    async def group(self, chat_id: int, drafts: Any) -> list[Message]:
        self.groups.append([d.body for d in drafts])
        if self.group_error is not None:
            raise self.group_error
        return [self.message(d) for d in drafts]


def test_a_database_error_in_a_group_reaches_every_send_of_it() -> None:
    async def main() -> list[Any]:
        writes = FakeWrites(group_error=psycopg.OperationalError("the server closed the connection"))
        hot = HotChats(writes.one, writes.group)
        tasks = [asyncio.create_task(hot.append(draft(7, ALICE, body))) for body in "abc"]
        await asyncio.sleep(0)
        writes.release.set()
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    first, *rest = asyncio.run(main())
    assert isinstance(first, Message)
    assert all(isinstance(r, psycopg.OperationalError) for r in rest), f"told the database is down: {rest}"


def test_a_send_that_stopped_waiting_is_not_written_and_other_chats_do_not_wait() -> None:
    async def main() -> tuple[FakeWrites, list[Any]]:
        writes = FakeWrites()
        hot = HotChats(writes.one, writes.group)
        leader = asyncio.create_task(hot.append(draft(7, ALICE, "leader")))
        await asyncio.sleep(0)
        gone = asyncio.create_task(hot.append(draft(7, ALICE, "gone")))
        kept = [asyncio.create_task(hot.append(draft(7, BOB, body))) for body in ("x", "y")]
        elsewhere = asyncio.create_task(hot.append(draft(8, BOB, "other chat")))
        await asyncio.sleep(0)
        gone.cancel()
        assert writes.alone == ["leader", "other chat"], "another chat's send is written at once, not queued"
        writes.release.set()
        return writes, list(await asyncio.gather(leader, *kept, elsewhere))

    writes, results = asyncio.run(main())
    assert writes.groups == [["x", "y"]], f"the cancelled send was left out of the group: {writes.groups}"
    assert [m.body for m in results] == ["leader", "x", "y", "other chat"]


def test_a_group_is_cut_around_replies_and_repeated_sends_in_order() -> None:
    a, b, c = draft(7, ALICE, "a"), draft(7, BOB, "b"), draft(7, BOB, "c")
    reply = draft(7, ALICE, "reply", reply_to_seq=1)
    a_again = MessageDraft(7, ALICE, a.client_message_id, "a", None)
    loop = asyncio.new_event_loop()
    future: asyncio.Future[Message] = loop.create_future()
    cut = runs([(d, future) for d in (a, b, reply, c, a_again, c)])
    loop.close()
    assert [[d.body for d, _ in run] for run in cut] == [["a", "b"], ["reply"], ["c", "a"], ["c"]], (
        "a reply goes alone, a send repeated within a run starts the next one, and the order is kept"
    )
