"""Stage 04 — PostgreSQL with psycopg 3: users, private chats, messages, history, the chat list.

Every test gets a fresh database with the app's migrations (the `postgres_url` fixture of conftest.py) and
drives the real code against it: the service, the PostgreSQL store, a pool of async connections. The async
code runs in plain test functions through asyncio.run, so no pytest plugin is needed.
"""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import psycopg
import pytest
from app.auth.users import InvalidUser, PostgresUsers, UserAlreadyExists
from app.chat.adapters.postgres import PostgresChatStore
from app.chat.domain import (
    ChatNotFound,
    InvalidMessage,
    InvalidRequest,
    MessageNotFound,
    NotAuthor,
)
from app.chat.service import ChatService
from app.config import load_settings
from app.config.settings import PostgresSettings
from app.db.pool import open_pool
from psycopg_pool import AsyncConnectionPool

exercise = pytest.mark.exercise
T = TypeVar("T")

PAGE_MAX = 10  # small, so that a test can see the bound
ALICE, BOB, CAROL, DAVE = 1, 2, 3, 4


@dataclass
class App:
    chats: ChatService
    users: PostgresUsers


@pytest.fixture
def settings(postgres_url: str) -> PostgresSettings:
    # All 20 connections are open before a test starts, so concurrent tasks really run at the same moment
    # (a pool that grows lazily would serve them one after the other and hide every race).
    return load_settings().postgres.model_copy(
        update={"url": postgres_url, "pool_min_size": 20, "pool_max_size": 20, "history_page_max": PAGE_MAX}
    )


def run(settings: PostgresSettings, scenario: Callable[[App], Awaitable[T]]) -> T:
    """Run one async scenario against the real app, with a pool opened and closed around it."""

    async def main() -> T:
        async with open_pool(settings) as pool:
            app = App(
                ChatService(PostgresChatStore(pool), history_page_max=settings.history_page_max), PostgresUsers(pool)
            )
            return await scenario(app)

    return asyncio.run(main())


def query(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """What the database holds, read directly: the tests check the tables, not only what the code returns."""
    with psycopg.connect(url) as connection:
        return connection.execute(sql, params).fetchall()  # type: ignore[arg-type]


def new_id() -> uuid.UUID:
    return uuid.uuid4()


async def chat_with_messages(app: App, count: int, *, senders: tuple[int, int] = (ALICE, BOB)) -> int:
    """A chat of ALICE and BOB with `count` messages, sent in turn by each (bodies "m1", "m2", …)."""
    chat = await app.chats.open_chat(ALICE, BOB)
    for number in range(1, count + 1):
        await app.chats.send_message(senders[(number - 1) % 2], chat.id, new_id(), f"m{number}")
    return chat.id


def test_a_connection_the_server_ended_is_replaced_before_it_is_lent(settings: PostgresSettings) -> None:
    """Regression (found by tests/faults/test_postgres_restart.py): after a PostgreSQL restart the first request
    of each pooled connection failed (the auth service refused sign-ups until its dead connections were used up).
    The pool checks a connection before lending it, so the next request after a restart works."""

    small = settings.model_copy(update={"pool_min_size": 3, "pool_max_size": 3})

    async def scenario() -> list[int]:
        async with open_pool(small) as pool:
            with psycopg.connect(small.url, autocommit=True) as admin:
                # What a restart does to every connection of the pool: the server ends them.
                ended = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchone()
            assert ended == (3,), f"the pool's three connections should have been ended: {ended}"
            answers = []
            for _ in range(4):  # more than the pool holds: every dead one is met
                async with pool.connection() as connection:
                    answers.append((await (await connection.execute("SELECT 1")).fetchone())[0])  # type: ignore[index]
            return answers

    assert asyncio.run(scenario()) == [1, 1, 1, 1]


# 04.1 — users --------------------------------------------------------------------------------------------------


@exercise("04.1")
def test_a_created_user_can_be_read_back_by_id_and_by_username(settings: PostgresSettings) -> None:
    async def scenario(app: App) -> None:
        user = await app.users.create("alice", "alice@example.org", "hash-of-a-password", display_name="Alice")
        assert user.id > 0 and user.username == "alice", f"create must return the stored user, got {user!r}"
        assert await app.users.get(user.id) == user, "get(id) must return the user that create returned"
        assert await app.users.find_by_username("alice") == user, "find_by_username must find the new user"
        assert await app.users.find_by_username("nobody") is None, "an unknown username must give None"
        assert await app.users.get(user.id + 1000) is None, "an unknown id must give None"

    run(settings, scenario)


@exercise("04.1")
def test_a_taken_username_is_refused_and_named(settings: PostgresSettings) -> None:
    async def scenario(app: App) -> None:
        await app.users.create("alice", "alice@example.org", "hash")
        with pytest.raises(UserAlreadyExists) as refused:
            await app.users.create("alice", "other@example.org", "hash")
        assert refused.value.field == "username", f"the error must name the username, it named {refused.value.field!r}"

    run(settings, scenario)
    assert query(settings.url, "SELECT count(*) FROM auth.users") == [(1,)], "a refused user must not be stored"


@exercise("04.1")
def test_a_taken_email_is_refused_and_named_whatever_its_case(settings: PostgresSettings) -> None:
    async def scenario(app: App) -> None:
        await app.users.create("alice", "alice@example.org", "hash")
        with pytest.raises(UserAlreadyExists) as refused:
            await app.users.create("alice2", "ALICE@example.org", "hash")
        assert refused.value.field == "email", f"the error must name the email, it named {refused.value.field!r}"

    run(settings, scenario)


@exercise("04.1")
def test_a_bad_username_is_refused_in_plain_words(settings: PostgresSettings) -> None:
    async def scenario(app: App) -> None:
        with pytest.raises(InvalidUser, match="username"):
            await app.users.create("Alice Smith", "alice@example.org", "hash")

    run(settings, scenario)


# 04.2 — opening a private chat ---------------------------------------------------------------------------------


@exercise("04.2")
def test_both_members_open_the_same_chat(settings: PostgresSettings) -> None:
    async def scenario(app: App) -> None:
        first = await app.chats.open_chat(ALICE, BOB)
        second = await app.chats.open_chat(BOB, ALICE)
        again = await app.chats.open_chat(ALICE, BOB)
        assert first.id == second.id == again.id, "(a, b) and (b, a) must open one and the same chat"
        assert (first.user_low, first.user_high, first.last_seq) == (ALICE, BOB, 0), f"a new chat: {first!r}"

    run(settings, scenario)
    assert query(settings.url, "SELECT count(*) FROM chat.private_chats") == [(1,)], "only one chat may be stored"


@exercise("04.2")
def test_many_opens_at_the_same_moment_create_one_chat(settings: PostgresSettings) -> None:
    async def scenario(app: App) -> set[int]:
        pairs = [(ALICE, BOB) if number % 2 else (BOB, ALICE) for number in range(12)]
        chats = await asyncio.gather(*(app.chats.open_chat(*pair) for pair in pairs))
        return {chat.id for chat in chats}

    ids = run(settings, scenario)
    assert len(ids) == 1, f"12 concurrent opens of one pair must all get the same chat, they got chats {sorted(ids)}"
    assert query(settings.url, "SELECT count(*) FROM chat.private_chats") == [(1,)], "only one chat may be stored"


@exercise("04.2")
def test_a_chat_with_oneself_is_refused(settings: PostgresSettings) -> None:
    async def scenario(app: App) -> None:
        with pytest.raises(InvalidRequest):
            await app.chats.open_chat(ALICE, ALICE)

    run(settings, scenario)
    assert query(settings.url, "SELECT count(*) FROM chat.private_chats") == [(0,)], "no chat with oneself is stored"


# 04.3 — sending ------------------------------------------------------------------------------------------------


@exercise("04.3")
def test_messages_get_seq_one_two_three_and_an_outbox_row_each(settings: PostgresSettings) -> None:
    client_ids = [new_id() for _ in range(3)]

    async def scenario(app: App) -> tuple[int, list[int]]:
        chat = await app.chats.open_chat(ALICE, BOB)
        sent = [await app.chats.send_message(ALICE, chat.id, client_id, "hello") for client_id in client_ids]
        return chat.id, [message.seq for message in sent]

    chat_id, seqs = run(settings, scenario)
    assert seqs == [1, 2, 3], f"the first three messages of a chat must get seq 1, 2, 3; they got {seqs}"
    assert query(settings.url, "SELECT last_seq FROM chat.private_chats") == [(3,)], "last_seq must follow the seqs"
    events = query(settings.url, "SELECT event_id, topic, payload FROM chat.outbox ORDER BY id")
    assert len(events) == 3, f"each message must write one outbox row; found {len(events)}"
    assert {topic for _, topic, _ in events} == {"message.created"}, "a new message's event is message.created"
    assert len({event_id for event_id, _, _ in events}) == 3, "every event needs its own event_id"
    payload = events[1][2]
    want = {"chat_id": chat_id, "seq": 2, "sender_id": ALICE, "body": "hello", "client_message_id": str(client_ids[1])}
    got = {key: payload.get(key) for key in want}
    assert got == want, f"the event payload must describe the message; got {payload}"
    assert payload.get("created_at"), f"the event payload needs created_at; got {payload}"


@exercise("04.3")
def test_twenty_concurrent_senders_get_seqs_one_to_twenty(settings: PostgresSettings) -> None:
    async def scenario(app: App) -> list[int]:
        chat = await app.chats.open_chat(ALICE, BOB)
        sends = [app.chats.send_message((ALICE, BOB)[n % 2], chat.id, new_id(), f"m{n}") for n in range(20)]
        return sorted(message.seq for message in await asyncio.gather(*sends))

    seqs = run(settings, scenario)
    assert seqs == list(range(1, 21)), f"20 concurrent sends must get exactly the seqs 1..20, no gap, no twin: {seqs}"
    stored = [seq for (seq,) in query(settings.url, "SELECT seq FROM chat.messages ORDER BY seq")]
    assert stored == list(range(1, 21)), f"the table must hold seqs 1..20 once each, it holds {stored}"
    assert query(settings.url, "SELECT count(*) FROM chat.outbox") == [(20,)], "20 messages need 20 outbox rows"


@exercise("04.3")
def test_the_sender_has_read_their_own_message(settings: PostgresSettings) -> None:
    async def scenario(app: App) -> tuple[int, int]:
        chat_id = await chat_with_messages(app, 3, senders=(ALICE, ALICE))
        return await app.chats.unread_count(ALICE, chat_id), await app.chats.unread_count(BOB, chat_id)

    alice_unread, bob_unread = run(settings, scenario)
    marks = query(settings.url, "SELECT user_id, last_read_seq FROM chat.read_state")
    assert marks == [(ALICE, 3)], f"sending must move the sender's own read mark to the message; read_state: {marks}"
    assert (alice_unread, bob_unread) == (0, 3), f"unread: the sender 0, the other 3; got {alice_unread}, {bob_unread}"


@exercise("04.3")
def test_an_outsider_cannot_send_into_a_chat(settings: PostgresSettings) -> None:
    async def scenario(app: App) -> None:
        chat = await app.chats.open_chat(ALICE, BOB)
        with pytest.raises(ChatNotFound):
            await app.chats.send_message(CAROL, chat.id, new_id(), "let me in")
        with pytest.raises(ChatNotFound):
            await app.chats.send_message(ALICE, chat.id + 1000, new_id(), "no such chat")

    run(settings, scenario)
    assert query(settings.url, "SELECT count(*) FROM chat.messages") == [(0,)], "a refused send must store nothing"
    assert query(settings.url, "SELECT last_seq FROM chat.private_chats") == [(0,)], "a refused send takes no seq"
    assert query(settings.url, "SELECT count(*) FROM chat.outbox") == [(0,)], "a refused send writes no event"


class TouchNothing:
    """A store that fails the test if the service reaches it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a bad message must be refused before any I/O, but the service called store.{name}")


@exercise("04.3")
@pytest.mark.parametrize("body", ["", "   \n\t", "x" * 4001], ids=["empty", "whitespace", "too-long"])
def test_a_bad_body_is_refused_before_any_io(body: str) -> None:
    chats = ChatService(TouchNothing(), history_page_max=PAGE_MAX)  # type: ignore[arg-type]
    with pytest.raises(InvalidMessage):
        asyncio.run(chats.send_message(ALICE, 1, new_id(), body))


# 04.4 — a retried send -----------------------------------------------------------------------------------------


@exercise("04.4")
def test_a_retry_returns_the_original_and_creates_nothing(settings: PostgresSettings) -> None:
    client_id = new_id()

    async def scenario(app: App) -> None:
        chat = await app.chats.open_chat(ALICE, BOB)
        first = await app.chats.send_message(ALICE, chat.id, client_id, "hello")
        retry = await app.chats.send_message(ALICE, chat.id, client_id, "hello (sent again)")
        assert retry == first, f"a retry must return the original message {first!r}, it returned {retry!r}"
        after = await app.chats.send_message(ALICE, chat.id, new_id(), "next")
        assert after.seq == 2, f"a retry must not take a seq: the next message must get seq 2, it got {after.seq}"

    run(settings, scenario)
    assert query(settings.url, "SELECT count(*) FROM chat.messages") == [(2,)], "the retry must not store a message"
    assert query(settings.url, "SELECT count(*) FROM chat.outbox") == [(2,)], "the retry must not write an event"


@exercise("04.4")
def test_ten_concurrent_retries_make_one_message(settings: PostgresSettings) -> None:
    client_id = new_id()

    async def scenario(app: App) -> set[int]:
        chat = await app.chats.open_chat(ALICE, BOB)
        sent = await asyncio.gather(*(app.chats.send_message(ALICE, chat.id, client_id, "hi") for _ in range(10)))
        return {message.seq for message in sent}

    seqs = run(settings, scenario)
    assert seqs == {1}, f"10 copies of one send must all get the one message with seq 1; they got seqs {sorted(seqs)}"
    assert query(settings.url, "SELECT count(*) FROM chat.messages") == [(1,)], "10 retries must store one message"
    assert query(settings.url, "SELECT count(*) FROM chat.outbox") == [(1,)], "10 retries must write one event"
    assert query(settings.url, "SELECT last_seq FROM chat.private_chats") == [(1,)], "10 retries must take one seq"


@exercise("04.4")
def test_the_same_client_id_from_the_other_member_is_another_message(settings: PostgresSettings) -> None:
    client_id = new_id()

    async def scenario(app: App) -> list[int]:
        chat = await app.chats.open_chat(ALICE, BOB)
        mine = await app.chats.send_message(ALICE, chat.id, client_id, "from alice")
        theirs = await app.chats.send_message(BOB, chat.id, client_id, "from bob")
        mine_again = await app.chats.send_message(ALICE, chat.id, client_id, "from alice")
        return [mine.seq, theirs.seq, mine_again.seq]

    seqs = run(settings, scenario)
    assert seqs == [1, 2, 1], (
        f"a client message id is unique per sender, not per chat: expected seqs [1, 2, 1], got {seqs}"
    )


# 04.5 — history ------------------------------------------------------------------------------------------------


@exercise("04.5")
def test_walking_back_page_by_page_sees_every_message_once(settings: PostgresSettings) -> None:
    async def scenario(app: App) -> list[tuple[list[int], bool]]:
        chat_id = await chat_with_messages(app, 23)
        pages = [await app.chats.history(ALICE, chat_id, limit=10)]
        while pages[-1].has_more:
            pages.append(await app.chats.history(ALICE, chat_id, before_seq=pages[-1].oldest_seq, limit=10))
        return [([message.seq for message in page.messages], page.has_more) for page in pages]

    pages = run(settings, scenario)
    want = [(list(range(14, 24)), True), (list(range(4, 14)), True), ([1, 2, 3], False)]
    assert pages == want, f"23 messages in pages of 10, newest page first, each oldest first: want {want}, got {pages}"


@exercise("04.5")
def test_after_seq_returns_exactly_the_missing_messages(settings: PostgresSettings) -> None:
    async def scenario(app: App) -> tuple[list[int], bool, list[str], list[int]]:
        chat_id = await chat_with_messages(app, 8)
        page = await app.chats.history(BOB, chat_id, after_seq=5)
        nothing = await app.chats.history(BOB, chat_id, after_seq=8)
        return [m.seq for m in page.messages], page.has_more, [m.body for m in page.messages], list(nothing.messages)

    seqs, has_more, bodies, nothing = run(settings, scenario)
    assert seqs == [6, 7, 8], f"after seq 5 of 8 come exactly 6, 7, 8; got {seqs}"
    assert bodies == ["m6", "m7", "m8"], f"the page must carry the messages' text; got {bodies}"
    assert not has_more and nothing == [], "after the newest message there is nothing more"


@exercise("04.5")
def test_the_page_size_is_bounded_by_the_settings(settings: PostgresSettings) -> None:
    async def scenario(app: App) -> tuple[int, int, int]:
        chat_id = await chat_with_messages(app, PAGE_MAX + 5)
        huge = await app.chats.history(ALICE, chat_id, limit=1000)
        default = await app.chats.history(ALICE, chat_id)
        small = await app.chats.history(ALICE, chat_id, limit=3)
        return len(huge.messages), len(default.messages), len(small.messages)

    sizes = run(settings, scenario)
    assert sizes == (PAGE_MAX, PAGE_MAX, 3), (
        f"history_page_max={PAGE_MAX}: limit 1000 and no limit give {PAGE_MAX}, limit 3 gives 3; got {sizes}"
    )


@exercise("04.5")
def test_paging_back_while_messages_arrive_skips_and_repeats_nothing(settings: PostgresSettings) -> None:
    async def scenario(app: App) -> tuple[list[int], int]:
        chat_id = await chat_with_messages(app, 40)
        arrived = asyncio.Event()

        async def keep_sending() -> None:
            for number in range(30):
                await app.chats.send_message(BOB, chat_id, new_id(), f"new {number}")
                arrived.set()

        async def walk_back() -> tuple[list[int], int]:
            page = await app.chats.history(ALICE, chat_id, limit=4)
            newest = page.newest_seq or 0
            seen = [m.seq for m in page.messages]
            while page.has_more:
                await arrived.wait()  # let new messages land between the pages
                page = await app.chats.history(ALICE, chat_id, before_seq=page.oldest_seq, limit=4)
                seen = [m.seq for m in page.messages] + seen
            return seen, newest

        _, walked = await asyncio.gather(keep_sending(), walk_back())
        return walked

    seen, newest = run(settings, scenario)
    assert seen == list(range(1, newest + 1)), (
        f"walking back from seq {newest} while others send must see every seq down to 1 exactly once; saw {seen}"
    )


@exercise("04.5")
def test_a_deleted_message_keeps_its_place_in_history(settings: PostgresSettings) -> None:
    async def scenario(app: App) -> int:
        return await chat_with_messages(app, 3)

    chat_id = run(settings, scenario)
    with psycopg.connect(settings.url) as connection:  # delete it directly: this test is about history only
        connection.execute(
            "UPDATE chat.messages SET body = '', deleted_at = now() WHERE chat_id = %s AND seq = 2", (chat_id,)
        )

    async def read(app: App) -> list[tuple[int, str, bool]]:
        page = await app.chats.history(BOB, chat_id)
        return [(m.seq, m.body, m.deleted) for m in page.messages]

    rows = run(settings, read)
    want = [(1, "m1", False), (2, "", True), (3, "m3", False)]
    assert rows == want, (
        f"a deleted message keeps its seq, with an empty body and the deleted flag: want {want}, got {rows}"
    )


@exercise("04.5")
def test_an_outsider_cannot_read_the_history(settings: PostgresSettings) -> None:
    async def scenario(app: App) -> None:
        chat_id = await chat_with_messages(app, 2)
        for attempt in ({}, {"after_seq": 0}, {"before_seq": 3}):
            with pytest.raises(ChatNotFound):
                await app.chats.history(CAROL, chat_id, **attempt)
        with pytest.raises(ChatNotFound):
            await app.chats.history(ALICE, chat_id + 1000)
        with pytest.raises(InvalidRequest):
            await app.chats.history(ALICE, chat_id, before_seq=3, after_seq=1)

    run(settings, scenario)


# 04.6 — the chat list ------------------------------------------------------------------------------------------


@exercise("04.6")
def test_the_chat_list_shows_the_last_message_and_unread_counts(settings: PostgresSettings) -> None:
    async def scenario(app: App) -> None:
        with_bob = await app.chats.open_chat(ALICE, BOB)
        with_dave = await app.chats.open_chat(DAVE, ALICE)
        quiet = await app.chats.open_chat(ALICE, CAROL)
        for number in range(1, 6):  # bob: 5 messages, alice has read up to 2 of them
            await app.chats.send_message(BOB, with_bob.id, new_id(), f"bob {number}")
        await app.chats.mark_read(ALICE, with_bob.id, 2)
        await app.chats.send_message(DAVE, with_dave.id, new_id(), "dave 1")
        await app.chats.send_message(ALICE, with_dave.id, new_id(), "alice answers dave")
        await app.chats.send_message(DAVE, with_dave.id, new_id(), "dave 2")

        got = {
            s.chat_id: (s.other_user_id, s.last_message and s.last_message.body, s.unread_count)
            for s in await app.chats.list_chats(ALICE)
        }
        want = {with_bob.id: (BOB, "bob 5", 3), with_dave.id: (DAVE, "dave 2", 1), quiet.id: (CAROL, None, 0)}
        assert got == want, f"alice's list as (other user, last message, unread): want {want}, got {got}"
        order = [summary.chat_id for summary in await app.chats.list_chats(ALICE)]
        assert order[:2] == [with_dave.id, with_bob.id], f"the most recently active chat comes first; order {order}"
        bob_view = [(s.other_user_id, s.unread_count) for s in await app.chats.list_chats(BOB)]
        assert bob_view == [(ALICE, 0)], f"bob's list: one chat, with alice, nothing unread; got {bob_view}"

    run(settings, scenario)


class CountingCursor(psycopg.AsyncCursor[Any]):
    statements: ClassVar[list[str]] = []

    async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> "CountingCursor":
        CountingCursor.statements.append(str(query))
        await super().execute(query, params, **kwargs)
        return self


@exercise("04.6")
def test_the_chat_list_is_one_query_however_many_chats(settings: PostgresSettings) -> None:
    async def scenario(app: App) -> None:
        for other in (BOB, CAROL, DAVE):
            chat = await app.chats.open_chat(ALICE, other)
            await app.chats.send_message(other, chat.id, new_id(), "hi")

    run(settings, scenario)

    async def count_list_queries() -> tuple[int, int]:
        options: dict[str, Any] = {"autocommit": True, "cursor_factory": CountingCursor}
        async with AsyncConnectionPool(settings.url, min_size=1, max_size=2, kwargs=options, open=False) as pool:
            store = PostgresChatStore(pool)  # type: ignore[arg-type]
            CountingCursor.statements.clear()
            summaries = await store.chat_summaries(ALICE)
            return len(CountingCursor.statements), len(summaries)

    statements, chats = asyncio.run(count_list_queries())
    assert chats == 3, f"alice has 3 chats, the list gave {chats}"
    assert statements == 1, f"the chat list must take ONE query, whatever the number of chats; it took {statements}"


@exercise("04.6")
def test_an_outsider_sees_nothing_of_the_chat(settings: PostgresSettings) -> None:
    async def scenario(app: App) -> None:
        chat_id = await chat_with_messages(app, 2)
        assert await app.chats.list_chats(CAROL) == [], "carol is in no chat: her list must be empty"
        with pytest.raises(ChatNotFound):
            await app.chats.mark_read(CAROL, chat_id, 2)
        with pytest.raises(ChatNotFound):
            await app.chats.unread_count(CAROL, chat_id)

    run(settings, scenario)
    marks = query(settings.url, "SELECT user_id FROM chat.read_state WHERE user_id = %s", CAROL)
    assert marks == [], "an outsider's mark_read must store nothing"


@exercise("04.6")
def test_a_read_mark_never_moves_back_nor_past_the_last_message(settings: PostgresSettings) -> None:
    async def scenario(app: App) -> list[int]:
        chat_id = await chat_with_messages(app, 6, senders=(BOB, BOB))
        marks = [await app.chats.mark_read(ALICE, chat_id, seq) for seq in (4, 2, 100)]
        return [*marks, await app.chats.unread_count(ALICE, chat_id)]

    got = run(settings, scenario)
    assert got == [4, 4, 6, 0], (
        f"marks 4, then 2 (stays 4), then 100 (stops at the last seq, 6), then 0 unread; got {got}"
    )


# 04.7 — edit and delete ----------------------------------------------------------------------------------------


def events_of(url: str, topic: str) -> list[dict[str, Any]]:
    return [payload for (payload,) in query(url, "SELECT payload FROM chat.outbox WHERE topic = %s ORDER BY id", topic)]


@exercise("04.7")
def test_the_author_edits_and_the_edit_is_announced(settings: PostgresSettings) -> None:
    async def scenario(app: App) -> None:
        chat_id = await chat_with_messages(app, 2)
        edited = await app.chats.edit_message(ALICE, chat_id, 1, "m1, corrected")
        assert (edited.seq, edited.body) == (1, "m1, corrected"), f"the edit must return the new text: {edited!r}"
        assert edited.edited_at is not None, "an edited message needs edited_at"
        same = await app.chats.edit_message(ALICE, chat_id, 1, "m1, corrected")
        assert same == edited, "repeating the same edit changes nothing"
        page = await app.chats.history(BOB, chat_id)
        assert page.messages[0].body == "m1, corrected", "the history must show the edited text"

    run(settings, scenario)
    edits = events_of(settings.url, "message.edited")
    assert len(edits) == 1, f"one edit, one message.edited event (a repeat announces nothing); found {len(edits)}"
    assert (edits[0]["seq"], edits[0]["body"]) == (1, "m1, corrected"), f"the event carries the new text: {edits[0]}"


@exercise("04.7")
def test_the_author_deletes_and_the_message_keeps_its_seq(settings: PostgresSettings) -> None:
    async def scenario(app: App) -> None:
        chat_id = await chat_with_messages(app, 3)
        gone = await app.chats.delete_message(ALICE, chat_id, 3)
        assert (gone.seq, gone.body, gone.deleted) == (3, "", True), f"deleted: same seq, empty body, flag: {gone!r}"
        again = await app.chats.delete_message(ALICE, chat_id, 3)
        assert again == gone, "deleting twice must not fail, and changes nothing"
        with pytest.raises(MessageNotFound):
            await app.chats.edit_message(ALICE, chat_id, 3, "back from the dead")
        with pytest.raises(MessageNotFound):
            await app.chats.delete_message(ALICE, chat_id, 99)

    run(settings, scenario)
    deletes = events_of(settings.url, "message.deleted")
    assert len(deletes) == 1, f"one delete, one message.deleted event; found {len(deletes)}"
    assert (deletes[0]["seq"], deletes[0]["body"]) == (3, ""), f"the event must not carry the text: {deletes[0]}"


@exercise("04.7")
def test_the_other_member_can_neither_edit_nor_delete(settings: PostgresSettings) -> None:
    async def scenario(app: App) -> None:
        chat_id = await chat_with_messages(app, 1)  # message 1 is alice's
        with pytest.raises(NotAuthor):
            await app.chats.edit_message(BOB, chat_id, 1, "bob rewrites alice")
        with pytest.raises(NotAuthor):
            await app.chats.delete_message(BOB, chat_id, 1)

    run(settings, scenario)
    assert query(settings.url, "SELECT body, deleted_at FROM chat.messages") == [("m1", None)], "refused: unchanged"
    assert query(settings.url, "SELECT topic FROM chat.outbox") == [("message.created",)], "a refusal writes no event"


@exercise("04.7")
def test_an_outsider_can_neither_edit_nor_delete(settings: PostgresSettings) -> None:
    async def scenario(app: App) -> None:
        chat_id = await chat_with_messages(app, 1)
        with pytest.raises(ChatNotFound):
            await app.chats.edit_message(CAROL, chat_id, 1, "carol was here")
        with pytest.raises(ChatNotFound):
            await app.chats.delete_message(CAROL, chat_id, 1)
        with pytest.raises(ChatNotFound):  # not MessageNotFound: that would tell carol the chat exists
            await app.chats.delete_message(CAROL, chat_id, 99)

    run(settings, scenario)
    assert query(settings.url, "SELECT body, deleted_at FROM chat.messages") == [("m1", None)], "refused: unchanged"
