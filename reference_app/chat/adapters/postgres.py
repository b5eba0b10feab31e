"""The chat store in PostgreSQL: the ``chat`` schema of migration 0002, through a pool of async connections.

Every method is one use case's transaction, on one connection borrowed from the pool:

- a use case of several statements runs them inside :func:`unit_of_work` (BEGIN … COMMIT, or ROLLBACK on
  any error);
- a use case of ONE statement just sends it: PostgreSQL runs every statement outside BEGIN … COMMIT as a
  transaction of its own, all of it or nothing. Sending a message is such a statement, on purpose: wrapping
  it in BEGIN and COMMIT would cost two more round trips, and the chat row would stay locked until the
  COMMIT arrived (about 0.75 ms per send instead of 0.5 ms, measured with one writer).

Every use case checks membership in its SQL (``%(user_id)s IN (user_low, user_high)``): a user who is not
one of the two members gets ChatNotFound, exactly like for a chat that does not exist, and never any data.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from psycopg import AsyncConnection
from psycopg.errors import CheckViolation, ForeignKeyViolation, UniqueViolation
from psycopg.rows import TupleRow, class_row, dict_row

from ...db.pool import Pool
from ...events.notifications import Notification
from ..domain import (
    MESSAGE_CREATED,
    ChatNotFound,
    ChatSummary,
    HistoryPage,
    HistoryQuery,
    Message,
    MessageDraft,
    MessageNotFound,
    PrivateChat,
    ReplyNotFound,
    quote_of,
)
from ..service import DecideChange

Connection = AsyncConnection[TupleRow]

# The columns of a Message, in the order of its fields: with class_row(Message) a row becomes a Message.
MESSAGE_COLUMNS = "chat_id, seq, sender_id, client_message_id, body, created_at, edited_at, deleted_at, reply_to_seq"
CHAT_COLUMNS = "id, user_low, user_high, last_seq, created_at"

# The payload of every message event, built from a row source named `message` (a CTE or a table alias).
# Built by PostgreSQL, so the event says exactly what was stored, created_at included. `members` names the
# chat's two users: every gateway node knows whom to push the event to without asking the chat service.
# `reply_to` is the quote of the message a reply answers, built by the same rule as chat.domain.quote_of (a
# deleted message is quoted without its text): a pushed reply shows its quote without another request.
EVENT_PAYLOAD = """jsonb_build_object(
    'chat_id', message.chat_id, 'seq', message.seq, 'sender_id', message.sender_id,
    'client_message_id', message.client_message_id, 'body', message.body,
    'created_at', message.created_at, 'edited_at', message.edited_at, 'deleted_at', message.deleted_at,
    'reply_to_seq', message.reply_to_seq,
    'reply_to', (SELECT jsonb_build_object('seq', q.seq, 'sender_id', q.sender_id, 'deleted', q.deleted_at IS NOT NULL,
                                           'body', CASE WHEN q.deleted_at IS NULL THEN q.body ELSE '' END)
                 FROM chat.messages q WHERE q.chat_id = message.chat_id AND q.seq = message.reply_to_seq),
    'members', (SELECT jsonb_build_array(c.user_low, c.user_high)
                FROM chat.private_chats c WHERE c.id = message.chat_id))"""

# The columns of a stored notification (notify.notifications, migration 0003), in the order of its fields.
NOTIFICATION_COLUMNS = "id, user_id, event_id, chat_id, seq, preview, created_at, read_at"

# The unique key that recognises a retried send: one sender, one chat, one client message id.
CLIENT_MESSAGE_KEY = "messages_client_message_key"
# The constraints of migration 0005 that refuse a reply: to no message of this chat, or to a later one. Seqs
# have no gaps, so in practice the CHECK (messages_reply_earlier) refuses first; the foreign key is the safety
# net that makes "the same chat" a fact of the schema, whatever code writes the row.
REPLY_CONSTRAINTS = frozenset({"messages_reply_same_chat", "messages_reply_earlier"})

MAX_BIGINT = 2**63 - 1


@asynccontextmanager
async def unit_of_work(pool: Pool) -> AsyncIterator[Connection]:
    """One use case's work: a connection from the pool and one transaction on it.

    The transaction commits when the block ends normally and rolls back when anything inside raises, a
    domain error included: a use case that refuses a request leaves no half-done change behind.
    """
    async with pool.connection() as connection, connection.transaction():
        yield connection


class PostgresChatStore:
    """The ChatStore port of chat/service.py, on PostgreSQL."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def open_chat(self, user_low: int, user_high: int) -> PrivateChat:
        async with unit_of_work(self._pool) as connection:
            return await _get_or_create_chat(connection, user_low, user_high)

    async def append_message(self, draft: MessageDraft) -> Message:
        async with self._pool.connection() as connection:
            try:
                message = await _insert_message(connection, draft)
            except (ForeignKeyViolation, CheckViolation) as error:
                # exercise 11.2: a reply to a message the chat does not have is refused, and nothing is stored
                # hint: Migration 0005 lets PostgreSQL refuse such a reply inside the send statement itself: messages_reply_same_chat (no such seq in this chat) or messages_reply_earlier (itself or a later one). REPLY_CONSTRAINTS names both.
                # hint: error.diag.constraint_name says which constraint refused the row. One of ours: raise ReplyNotFound(draft.chat_id, draft.reply_to_seq) from None. Any other: re-raise, it is a bug.
                # hint: Nothing to undo: the statement failed as a whole, so the chat's last_seq did not move and no outbox row was written.
                if error.diag.constraint_name not in REPLY_CONSTRAINTS or draft.reply_to_seq is None:
                    raise
                raise ReplyNotFound(draft.chat_id, draft.reply_to_seq) from None
                # end exercise
            except UniqueViolation as error:
                # exercise 04.4: a retried send returns the original message
                # hint: The statement of 04.3 failed as a whole, so the retry created nothing: no seq, no outbox row. Now find what the first attempt stored.
                # hint: Re-raise any other unique violation: compare error.diag.constraint_name with CLIENT_MESSAGE_KEY.
                # hint: Read the message by (chat_id, sender_id, client_message_id) with a cursor made by connection.cursor(row_factory=class_row(Message)).
                if error.diag.constraint_name != CLIENT_MESSAGE_KEY:
                    raise
                cursor = connection.cursor(row_factory=class_row(Message))
                await cursor.execute(
                    f"SELECT {MESSAGE_COLUMNS} FROM chat.messages"
                    " WHERE chat_id = %s AND sender_id = %s AND client_message_id = %s",
                    (draft.chat_id, draft.sender_id, draft.client_message_id),
                )
                message = await cursor.fetchone()
                # end exercise
            if message is None:
                raise ChatNotFound(draft.chat_id)
            [quoted] = await _with_quotes(connection, draft.chat_id, [message])
        return quoted

    async def change_message(self, chat_id: int, seq: int, user_id: int, decide: DecideChange) -> Message:
        async with unit_of_work(self._pool) as connection:
            message = await _change_message(connection, chat_id, seq, user_id, decide)
            [quoted] = await _with_quotes(connection, chat_id, [message])
            return quoted

    async def history(self, chat_id: int, user_id: int, query: HistoryQuery) -> HistoryPage:
        async with unit_of_work(self._pool) as connection:
            await _member_chat(connection, chat_id, user_id)
            page = await _history_page(connection, chat_id, query)
            messages = await _with_quotes(connection, chat_id, list(page.messages))
            return replace(page, messages=tuple(messages))

    async def mark_read(self, chat_id: int, user_id: int, seq: int) -> int:
        async with self._pool.connection() as connection:
            # GREATEST keeps the mark from moving back (a late, stale request); LEAST stops it past the last
            # message, where it would silently count future messages as read.
            cursor = await connection.execute(
                """
                INSERT INTO chat.read_state (chat_id, user_id, last_read_seq)
                SELECT id, %(user_id)s, LEAST(%(seq)s, last_seq) FROM chat.private_chats
                WHERE id = %(chat_id)s AND %(user_id)s IN (user_low, user_high)
                ON CONFLICT (chat_id, user_id) DO UPDATE
                    SET last_read_seq = GREATEST(chat.read_state.last_read_seq, excluded.last_read_seq)
                RETURNING last_read_seq
                """,
                {"chat_id": chat_id, "user_id": user_id, "seq": seq},
            )
            row = await cursor.fetchone()
        if row is None:
            raise ChatNotFound(chat_id)
        return int(row[0])

    async def unread_count(self, chat_id: int, user_id: int) -> int:
        async with self._pool.connection() as connection:
            cursor = await connection.execute(
                """
                SELECT (SELECT count(*) FROM chat.messages m
                        WHERE m.chat_id = c.id AND m.seq > COALESCE(r.last_read_seq, 0)
                          AND m.sender_id <> %(user_id)s AND m.deleted_at IS NULL)
                FROM chat.private_chats c
                LEFT JOIN chat.read_state r ON r.chat_id = c.id AND r.user_id = %(user_id)s
                WHERE c.id = %(chat_id)s AND %(user_id)s IN (c.user_low, c.user_high)
                """,
                {"chat_id": chat_id, "user_id": user_id},
            )
            row = await cursor.fetchone()
        if row is None:
            raise ChatNotFound(chat_id)
        return int(row[0])

    async def chat_summaries(self, user_id: int) -> list[ChatSummary]:
        async with self._pool.connection() as connection:
            return await _chat_summaries(connection, user_id)

    async def notifications(self, user_id: int, limit: int) -> list[Notification]:
        """The user's notifications, newest first. The table is the notifier's (stage 10); the chat service
        only reads it, so that the gateway can show what a user missed through the service it already calls.
        The index notifications_user_newest_idx serves this exact order."""
        async with self._pool.connection() as connection:
            cursor = connection.cursor(row_factory=class_row(Notification))
            await cursor.execute(
                f"SELECT {NOTIFICATION_COLUMNS} FROM notify.notifications"
                " WHERE user_id = %s ORDER BY created_at DESC, id DESC LIMIT %s",
                (user_id, limit),
            )
            return await cursor.fetchall()


async def _member_chat(connection: Connection, chat_id: int, user_id: int) -> PrivateChat:
    """The chat, if ``user_id`` is one of its members; ChatNotFound otherwise."""
    cursor = connection.cursor(row_factory=class_row(PrivateChat))
    await cursor.execute(
        f"SELECT {CHAT_COLUMNS} FROM chat.private_chats WHERE id = %(chat_id)s AND %(user_id)s IN (user_low, user_high)",
        {"chat_id": chat_id, "user_id": user_id},
    )
    chat = await cursor.fetchone()
    if chat is None:
        raise ChatNotFound(chat_id)
    return chat


async def _get_or_create_chat(connection: Connection, user_low: int, user_high: int) -> PrivateChat:
    # exercise 04.2: open the chat of two users, once, even when both open it at the same moment
    # hint: INSERT … ON CONFLICT (user_low, user_high) DO NOTHING RETURNING … gives a row only when this call created the chat.
    # hint: No row means another transaction created it. ON CONFLICT waited for that one to commit, so a NEW statement (SELECT … WHERE user_low = … AND user_high = …) sees it.
    # hint: connection.cursor(row_factory=class_row(PrivateChat)) turns rows into PrivateChat objects; CHAT_COLUMNS lists the columns in field order.
    cursor = connection.cursor(row_factory=class_row(PrivateChat))
    pair = {"user_low": user_low, "user_high": user_high}
    await cursor.execute(
        f"INSERT INTO chat.private_chats (user_low, user_high) VALUES (%(user_low)s, %(user_high)s)"
        f" ON CONFLICT (user_low, user_high) DO NOTHING RETURNING {CHAT_COLUMNS}",
        pair,
    )
    chat = await cursor.fetchone()
    if chat is None:
        await cursor.execute(
            f"SELECT {CHAT_COLUMNS} FROM chat.private_chats WHERE user_low = %(user_low)s AND user_high = %(user_high)s",
            pair,
        )
        chat = await cursor.fetchone()
    assert chat is not None, "ON CONFLICT DO NOTHING skipped the insert, so the chat exists"
    return chat
    # end exercise


async def _insert_message(connection: Connection, draft: MessageDraft) -> Message | None:
    """Bump the chat's last_seq, store the message with it, write its outbox row and the sender's read mark.

    ONE statement, so one transaction: all four changes commit together, or none does. None when the chat
    does not exist or the sender is not a member. A retry fails on CLIENT_MESSAGE_KEY and changes nothing.
    """
    # exercise 04.3: send a message: the next seq, the message, its outbox row and the sender's read mark, in one statement
    # hint: Start with UPDATE chat.private_chats SET last_seq = last_seq + 1 WHERE id = … AND sender IN (user_low, user_high) RETURNING id, last_seq. It locks the chat row: concurrent senders queue there, and each one reads the last_seq committed before it.
    # hint: Chain data-modifying CTEs: WITH chat AS (UPDATE …), message AS (INSERT INTO chat.messages … SELECT … FROM chat RETURNING …), event AS (INSERT INTO chat.outbox … SELECT … FROM message), read_mark AS (…) SELECT … FROM message.
    # hint: The outbox row: gen_random_uuid() as event_id, MESSAGE_CREATED as topic, EVENT_PAYLOAD as payload. The read mark: INSERT INTO chat.read_state … ON CONFLICT (chat_id, user_id) DO UPDATE SET last_read_seq = GREATEST(…).
    cursor = connection.cursor(row_factory=class_row(Message))
    await cursor.execute(
        f"""
        WITH chat AS (
            UPDATE chat.private_chats SET last_seq = last_seq + 1
            WHERE id = %(chat_id)s AND %(sender_id)s IN (user_low, user_high)
            RETURNING id, last_seq
        ), message AS (
            INSERT INTO chat.messages (chat_id, seq, sender_id, client_message_id, body, reply_to_seq)
            SELECT id, last_seq, %(sender_id)s, %(client_message_id)s, %(body)s, %(reply_to_seq)s FROM chat
            RETURNING {MESSAGE_COLUMNS}
        ), event AS (
            INSERT INTO chat.outbox (event_id, topic, payload)
            SELECT gen_random_uuid(), %(topic)s, {EVENT_PAYLOAD} FROM message
        ), read_mark AS (
            INSERT INTO chat.read_state (chat_id, user_id, last_read_seq)
            SELECT chat_id, sender_id, seq FROM message
            ON CONFLICT (chat_id, user_id) DO UPDATE
                SET last_read_seq = GREATEST(chat.read_state.last_read_seq, excluded.last_read_seq)
        )
        SELECT {MESSAGE_COLUMNS} FROM message
        """,
        {
            "chat_id": draft.chat_id,
            "sender_id": draft.sender_id,
            "client_message_id": draft.client_message_id,
            "body": draft.body,
            "reply_to_seq": draft.reply_to_seq,
            "topic": MESSAGE_CREATED,
        },
    )
    return await cursor.fetchone()
    # end exercise


async def insert_messages(connection: Connection, chat_id: int, drafts: Sequence[MessageDraft]) -> list[Message]:
    """Several sends into ONE chat in one statement: the statement of _insert_message, for many rows at once.

    The chat's row is locked, and its commit flushed, once for all of them. Each message gets the next seq in the
    order of ``drafts``, its own outbox row (in the same order) and its sender's read mark. A draft whose sender
    is not a member is left out and gets no seq; so are all of them when the chat does not exist. Like the one-row
    statement, it fails AS A WHOLE on a retried client message id or a reply to a missing message: nothing is
    stored then, and the caller sends them one by one to learn which.
    """
    cursor = connection.cursor(row_factory=class_row(Message))
    await cursor.execute(
        f"""
        WITH input AS (
            SELECT t.sender_id, t.client_message_id, t.body, t.reply_to_seq, row_number() OVER (ORDER BY t.n) AS n
            FROM unnest(%(sender_ids)s::bigint[], %(client_message_ids)s::uuid[], %(bodies)s::text[],
                        %(reply_to_seqs)s::bigint[])
                 WITH ORDINALITY AS t(sender_id, client_message_id, body, reply_to_seq, n)
            JOIN chat.private_chats c ON c.id = %(chat_id)s AND t.sender_id IN (c.user_low, c.user_high)
        ), chat AS (
            UPDATE chat.private_chats SET last_seq = last_seq + (SELECT count(*) FROM input)
            WHERE id = %(chat_id)s AND EXISTS (SELECT FROM input)
            RETURNING id, last_seq
        ), message AS (
            INSERT INTO chat.messages (chat_id, seq, sender_id, client_message_id, body, reply_to_seq)
            SELECT chat.id, chat.last_seq - (SELECT count(*) FROM input) + input.n,
                   input.sender_id, input.client_message_id, input.body, input.reply_to_seq
            FROM chat CROSS JOIN input
            RETURNING {MESSAGE_COLUMNS}
        ), event AS (
            INSERT INTO chat.outbox (event_id, topic, payload)
            SELECT gen_random_uuid(), %(topic)s, {EVENT_PAYLOAD} FROM message ORDER BY message.seq
        ), read_mark AS (
            INSERT INTO chat.read_state (chat_id, user_id, last_read_seq)
            SELECT chat_id, sender_id, max(seq) FROM message GROUP BY chat_id, sender_id
            ON CONFLICT (chat_id, user_id) DO UPDATE
                SET last_read_seq = GREATEST(chat.read_state.last_read_seq, excluded.last_read_seq)
        )
        SELECT {MESSAGE_COLUMNS} FROM message ORDER BY seq
        """,
        {
            "chat_id": chat_id,
            "sender_ids": [draft.sender_id for draft in drafts],
            "client_message_ids": [draft.client_message_id for draft in drafts],
            "bodies": [draft.body for draft in drafts],
            "reply_to_seqs": [draft.reply_to_seq for draft in drafts],
            "topic": MESSAGE_CREATED,
        },
    )
    return await _with_quotes(connection, chat_id, await cursor.fetchall())


async def _change_message(
    connection: Connection, chat_id: int, seq: int, user_id: int, decide: DecideChange
) -> Message:
    # exercise 04.7: edit or delete a message under a row lock, with its outbox row
    # hint: First _member_chat(connection, chat_id, user_id): an outsider gets ChatNotFound before anything else.
    # hint: SELECT the message … FOR UPDATE: a second edit or delete of the same message waits here until this transaction ends, then reads its result. No row: MessageNotFound(chat_id, seq).
    # hint: change = decide(message) applies the domain rules (NotAuthor, …); None means there is nothing to write. Otherwise one statement: UPDATE body, edited_at or deleted_at (change.deletes) and INSERT the outbox row (change.topic, EVENT_PAYLOAD).
    await _member_chat(connection, chat_id, user_id)
    cursor = connection.cursor(row_factory=class_row(Message))
    await cursor.execute(
        f"SELECT {MESSAGE_COLUMNS} FROM chat.messages WHERE chat_id = %s AND seq = %s FOR UPDATE", (chat_id, seq)
    )
    message = await cursor.fetchone()
    if message is None:
        raise MessageNotFound(chat_id, seq)
    change = decide(message)
    if change is None:
        return message
    await cursor.execute(
        f"""
        WITH message AS (
            UPDATE chat.messages
            SET body = %(body)s,
                edited_at = CASE WHEN %(deletes)s THEN edited_at ELSE now() END,
                deleted_at = CASE WHEN %(deletes)s THEN now() ELSE deleted_at END
            WHERE chat_id = %(chat_id)s AND seq = %(seq)s
            RETURNING {MESSAGE_COLUMNS}
        ), event AS (
            INSERT INTO chat.outbox (event_id, topic, payload)
            SELECT gen_random_uuid(), %(topic)s, {EVENT_PAYLOAD} FROM message
        )
        SELECT {MESSAGE_COLUMNS} FROM message
        """,
        {"chat_id": chat_id, "seq": seq, "body": change.body, "deletes": change.deletes, "topic": change.topic},
    )
    changed = await cursor.fetchone()
    assert changed is not None, "the message is locked by this transaction, so the update found it"
    return changed
    # end exercise


async def _history_page(connection: Connection, chat_id: int, query: HistoryQuery) -> HistoryPage:
    # exercise 04.5: keyset pagination of a chat's history
    # hint: Never OFFSET: a message sent while someone pages would shift every later page by one. Continue from a seq instead: WHERE chat_id = … AND seq < before_seq (or seq > after_seq).
    # hint: Forwards (query.after_seq set): ORDER BY seq LIMIT …. Backwards: ORDER BY seq DESC LIMIT …, then reverse the rows so the page reads oldest first. The index behind messages_chat_seq_key serves both.
    # hint: Ask for query.limit + 1 rows: a row beyond the limit means has_more, and is not returned.
    cursor = connection.cursor(row_factory=class_row(Message))
    if query.after_seq is not None:
        await cursor.execute(
            f"SELECT {MESSAGE_COLUMNS} FROM chat.messages WHERE chat_id = %s AND seq > %s ORDER BY seq LIMIT %s",
            (chat_id, query.after_seq, query.limit + 1),
        )
        rows = await cursor.fetchall()
        return HistoryPage(tuple(rows[: query.limit]), has_more=len(rows) > query.limit)
    # No before_seq: start above every seq there is, at the newest message.
    before_seq = query.before_seq if query.before_seq is not None else MAX_BIGINT
    await cursor.execute(
        f"SELECT {MESSAGE_COLUMNS} FROM chat.messages WHERE chat_id = %s AND seq < %s ORDER BY seq DESC LIMIT %s",
        (chat_id, before_seq, query.limit + 1),
    )
    rows = await cursor.fetchall()
    return HistoryPage(tuple(reversed(rows[: query.limit])), has_more=len(rows) > query.limit)
    # end exercise


async def _with_quotes(connection: Connection, chat_id: int, messages: list[Message]) -> list[Message]:
    """The messages, each reply with the quote of the message it answers (as that message is now)."""
    # exercise 11.3: fill in the quotes of a page's replies with one query
    # hint: Collect the reply_to_seq of every message that has one. None? Return the messages as they are: no query at all.
    # hint: ONE query for the whole page, never one per reply (N + 1): SELECT {MESSAGE_COLUMNS} FROM chat.messages WHERE chat_id = %s AND seq = ANY(%s), with class_row(Message).
    # hint: The rule of what a quote shows is the domain's: quote_of(message). dataclasses.replace(message, reply_to=…) gives the reply with its quote.
    wanted = sorted({message.reply_to_seq for message in messages if message.reply_to_seq is not None})
    if not wanted:
        return messages
    cursor = connection.cursor(row_factory=class_row(Message))
    await cursor.execute(
        f"SELECT {MESSAGE_COLUMNS} FROM chat.messages WHERE chat_id = %s AND seq = ANY(%s)", (chat_id, wanted)
    )
    quotes = {quoted.seq: quote_of(quoted) for quoted in await cursor.fetchall()}
    return [
        replace(message, reply_to=quotes.get(message.reply_to_seq)) if message.reply_to_seq is not None else message
        for message in messages
    ]
    # end exercise


async def _chat_summaries(connection: Connection, user_id: int) -> list[ChatSummary]:
    # exercise 04.6: a user's chat list, with last message and unread count, in one query
    # hint: One query, whatever the number of chats: a query per chat (N + 1 queries) is what this exercise forbids. FROM chat.private_chats c WHERE user_id IN (c.user_low, c.user_high).
    # hint: LEFT JOIN LATERAL (SELECT … FROM chat.messages m WHERE m.chat_id = c.id ORDER BY m.seq DESC LIMIT 1) last ON true: a subquery that runs per chat and may see c. LEFT keeps chats with no message.
    # hint: Unread: another LATERAL with count(*) of messages after the user's read mark (LEFT JOIN chat.read_state, COALESCE(…, 0)), sent by the other member, not deleted.
    # hint: connection.cursor(row_factory=dict_row) gives each row as a dict; build Message only when the last message's seq is not NULL. Most recent chat first.
    cursor = connection.cursor(row_factory=dict_row)
    await cursor.execute(
        """
        SELECT c.id AS chat_id,
               CASE WHEN c.user_low = %(user_id)s THEN c.user_high ELSE c.user_low END AS other_user_id,
               unread.count AS unread_count,
               last.seq, last.sender_id, last.client_message_id, last.body,
               last.created_at, last.edited_at, last.deleted_at
        FROM chat.private_chats c
        LEFT JOIN chat.read_state r ON r.chat_id = c.id AND r.user_id = %(user_id)s
        LEFT JOIN LATERAL (
            SELECT * FROM chat.messages m WHERE m.chat_id = c.id ORDER BY m.seq DESC LIMIT 1
        ) last ON true
        CROSS JOIN LATERAL (
            SELECT count(*) AS count FROM chat.messages m
            WHERE m.chat_id = c.id AND m.seq > COALESCE(r.last_read_seq, 0)
              AND m.sender_id <> %(user_id)s AND m.deleted_at IS NULL
        ) unread
        WHERE %(user_id)s IN (c.user_low, c.user_high)
        ORDER BY COALESCE(last.created_at, c.created_at) DESC, c.id DESC
        """,
        {"user_id": user_id},
    )
    return [
        ChatSummary(
            chat_id=row["chat_id"],
            other_user_id=row["other_user_id"],
            last_message=None if row["seq"] is None else _last_message(row),
            unread_count=row["unread_count"],
        )
        for row in await cursor.fetchall()
    ]
    # end exercise


def _last_message(row: dict[str, Any]) -> Message:
    return Message(
        chat_id=row["chat_id"],
        seq=row["seq"],
        sender_id=row["sender_id"],
        client_message_id=row["client_message_id"],
        body=row["body"],
        created_at=row["created_at"],
        edited_at=row["edited_at"],
        deleted_at=row["deleted_at"],
    )
