"""Sends into one busy chat, written together: one statement, one lock, one commit for a whole group.

Every send bumps its chat's ``last_seq``, and so holds the chat's row locked until its commit is on disk. Sends
into different chats run side by side. Sends into ONE chat queue at that lock, and each waits for the flush of
the one before it: with 32 members writing at once, a chat reached a fifth of the inserts the disk could take
(bench/data_layer.py, "32 writers, one hot chat").

So the chat service lets only one write per chat be on its way at a time. The sends that come meanwhile wait
here, not at the lock, and go together in the next statement (``insert_messages``): each with its own seq, in
the order they came, its own outbox row and its sender's read mark. A send into a quiet chat is written at once,
exactly as before. A reply is written alone, and a group the statement refuses as a whole (it holds a retried
client message id) one by one, through the one-send path: every answer, a refusal included,
is the one a lone send would get. A send the statement leaves out is an outsider's: ChatNotFound, as alone.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from uuid import UUID

from psycopg.errors import CheckViolation, ForeignKeyViolation, UniqueViolation

from ...db.pool import Pool
from ..domain import ChatNotFound, Message, MessageDraft
from .postgres import PostgresChatStore, insert_messages

WriteOne = Callable[[MessageDraft], Awaitable[Message]]
# The messages a group statement stored (drafts it left out are missing), or OneByOne.
WriteGroup = Callable[[int, Sequence[MessageDraft]], Awaitable[list[Message]]]
Waiting = tuple[MessageDraft, "asyncio.Future[Message]"]

MOST_PER_STATEMENT = 100


class OneByOne(Exception):
    """The group statement refused the group as a whole (a retry, a bad reply): write each send alone."""


class HotChats:
    """One write per chat at a time; the sends that arrive meanwhile are written together, next."""

    def __init__(self, write_one: WriteOne, write_group: WriteGroup, *, most: int = MOST_PER_STATEMENT) -> None:
        if most < 1:
            raise ValueError(f"a group holds at least 1 send; got {most}")
        self._write_one = write_one
        self._write_group = write_group
        self._most = most
        self._waiting: dict[int, deque[Waiting]] = {}  # a chat is here while a write of it is on its way
        self._writers: set[asyncio.Task[None]] = set()
        self.group_statements = 0  # how many groups went in one statement (tests and benchmarks read it)

    async def append(self, draft: MessageDraft) -> Message:
        waiting = self._waiting.get(draft.chat_id)
        if waiting is None:  # a quiet chat: write now; the sends that come meanwhile wait for this one
            self._waiting[draft.chat_id] = deque()
            try:
                return await self._write_one(draft)
            finally:
                self._write_next(draft.chat_id)
        answer: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        waiting.append((draft, answer))
        return await answer

    def _write_next(self, chat_id: int) -> None:
        """Start writing the chat's next group, or mark the chat quiet when nobody waits."""
        waiting = self._waiting[chat_id]
        group: list[Waiting] = []
        while waiting and len(group) < self._most:
            draft, answer = waiting.popleft()
            if not answer.done():  # a caller that gave up (cancelled) wants nothing written
                group.append((draft, answer))
        if not group:
            del self._waiting[chat_id]
            return
        task = asyncio.get_running_loop().create_task(self._write(chat_id, group))
        self._writers.add(task)
        task.add_done_callback(self._writers.discard)

    async def _write(self, chat_id: int, group: list[Waiting]) -> None:
        try:
            await self._write_together_or_each(chat_id, group)
        except asyncio.CancelledError:  # the service is stopping: nobody waiting for this chat gets an answer
            for _, answer in [*group, *self._waiting.pop(chat_id, ())]:
                answer.cancel()
            raise
        self._write_next(chat_id)

    async def _write_together_or_each(self, chat_id: int, group: list[Waiting]) -> None:
        for run in runs(group):
            if len(run) == 1:
                await self._write_alone(*run[0])
                continue
            try:
                messages = await self._write_group(chat_id, [draft for draft, _ in run])
            except OneByOne:
                for draft, answer in run:
                    await self._write_alone(draft, answer)
                continue
            except Exception as error:  # the database does not answer: every send still waiting is told so
                for _, answer in group:
                    settle(answer, error=error)
                return
            self.group_statements += 1
            stored = {(message.sender_id, message.client_message_id): message for message in messages}
            for draft, answer in run:
                message = stored.get((draft.sender_id, draft.client_message_id))
                # Left out: the sender is not a member, or there is no such chat (members never change).
                settle(answer, message, error=None if message is not None else ChatNotFound(chat_id))

    async def _write_alone(self, draft: MessageDraft, answer: asyncio.Future[Message]) -> None:
        if answer.done():
            return  # the caller gave up (its deadline passed): write nothing for it
        try:
            settle(answer, await self._write_one(draft))
        except Exception as error:  # ChatNotFound, ReplyNotFound …: the caller raises it, as for a lone send
            settle(answer, error=error)


def settle(answer: asyncio.Future[Message], message: Message | None = None, *, error: Exception | None = None) -> None:
    """Give a waiting send its answer, unless it stopped waiting (cancelled)."""
    if answer.done():
        return
    if error is not None:
        answer.set_exception(error)
    else:
        assert message is not None
        answer.set_result(message)


def runs(group: list[Waiting]) -> list[list[Waiting]]:
    """The group in order, cut into runs that can each go in one statement. A reply goes alone (it may quote a
    message of its own group, which the statement cannot see yet); a send repeated in a run (a client retrying
    while its first try waits here) starts the next run."""
    cut: list[list[Waiting]] = []
    run: list[Waiting] = []
    keys: set[tuple[int, UUID]] = set()
    for draft, answer in group:
        key = (draft.sender_id, draft.client_message_id)
        if draft.reply_to_seq is not None or key in keys:
            if run:
                cut.append(run)
            run, keys = [], set()
            if draft.reply_to_seq is not None:
                cut.append([(draft, answer)])
                continue
        run.append((draft, answer))
        keys.add(key)
    if run:
        cut.append(run)
    return cut


class GroupingChatStore(PostgresChatStore):
    """The PostgreSQL chat store, with the sends into a busy chat written together (what the service runs)."""

    def __init__(self, pool: Pool, *, most_per_statement: int = MOST_PER_STATEMENT) -> None:
        super().__init__(pool)
        self.hot_chats = HotChats(super().append_message, self._append_group, most=most_per_statement)

    async def append_message(self, draft: MessageDraft) -> Message:
        return await self.hot_chats.append(draft)

    async def _append_group(self, chat_id: int, drafts: Sequence[MessageDraft]) -> list[Message]:
        async with self._pool.connection() as connection:
            try:
                return await insert_messages(connection, chat_id, drafts)
            except (UniqueViolation, ForeignKeyViolation, CheckViolation):
                raise OneByOne from None
