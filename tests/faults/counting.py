"""Counting what a fault did to the messages: the one place the fault tests (and tests/e2e/test_broker_restart.py)
send under load, read what PostgreSQL committed, count, write the counts and check them.

The promise checked is the client's view (docs/websocket_protocol.md): a client sends with a client_message_id
and resends an unacked message with the same id until it is acked; it keeps messages by seq (a second push of a
seq is dropped) and syncs on a gap or a reconnect. Then, whatever the fault did:

- **lost** = 0: every acked message is committed, and every committed message is held by every member;
- **duplicates** = 0 after deduplicating by seq: no client_message_id committed twice, no member holding a
  message that is not committed. (Pushes of a seq already held, dropped by the client, are counted apart:
  ``duplicate_pushes``, at-least-once delivery allows them.)

PostgreSQL is also asked whether anything was half written: every committed message has exactly one
``message.created`` outbox row, and each chat's seqs run 1…n without a gap.

``FAULT_RESULTS=1`` writes the counts to ``bench/results/<fault>.json`` (a test run must not change tracked files
unless asked).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import websockets
from messenger_client import ChatClient, RunningApp, User, open_chat, register_and_log_in

from workbook.paths import REPO_ROOT

RESULTS_VARIABLE = "FAULT_RESULTS"
RESULTS_DIR = REPO_ROOT / "bench" / "results"
SEND_PAUSE_SECONDS = 0.1  # each sender's pace, resends too: under the gateway's 20 frames a second per socket
FAIL_SAFE_SECONDS = 120.0  # not a measurement: only keeps a broken run from hanging
NO_ANSWER = "no answer"  # the connection closed, or nothing came in time: the send may or may not be committed


@dataclass(frozen=True)
class Pair:
    """Two users and their private chat."""

    first: User
    second: User
    chat_id: int


def make_pairs(app: RunningApp, count: int) -> list[Pair]:
    pairs = []
    with httpx.Client(base_url=app.base_url, timeout=30) as http:
        for _ in range(count):
            first = register_and_log_in(http, f"ada_{uuid.uuid4().hex[:8]}")
            second = register_and_log_in(http, f"linus_{uuid.uuid4().hex[:8]}")
            pairs.append(Pair(first, second, open_chat(http, first, second)))
    return pairs


class Sender:
    """Sends messages from one client at a steady pace until told to stop.

    Remembers what was acked (seq → client_message_id), what was not (to resend with the same id: the server keeps
    one copy whatever happens) and how every attempt was answered (``ack``, an error code, or NO_ANSWER).
    """

    def __init__(self, client: ChatClient, pause: float = SEND_PAUSE_SECONDS) -> None:
        self.client = client
        self.pause = pause
        self.sent = 0  # messages made (each with a client_message_id of its own), resends not counted
        self.acked: dict[int, str] = {}  # seq → client_message_id
        self.unacked: dict[str, str] = {}  # client_message_id → body, until acked
        self.answers: Counter[str] = Counter()
        self.last_ack_at = 0.0  # time.monotonic() of the latest ack
        self.stop = asyncio.Event()

    async def run(self) -> None:
        while not self.stop.is_set():
            await self.send_one()
            await asyncio.sleep(self.pause)

    async def send_one(self, message_id: str | None = None) -> int | None:
        """Send a new message (or resend ``message_id``); return its seq when acked, else None."""
        if message_id is None:
            message_id = str(uuid.uuid4())
            self.sent += 1
            self.unacked[message_id] = f"{self.client.user.username} #{self.sent}"
        frame = {
            "type": "send",
            "chat_id": self.client.chat_id,
            "client_message_id": message_id,
            "body": self.unacked[message_id],
        }
        try:
            answer = await self.client.request(frame)
        except (ConnectionError, TimeoutError, AssertionError, websockets.ConnectionClosed):
            # No socket (AssertionError: not connected yet), a socket that closed, or no answer in time.
            self.answers[NO_ANSWER] += 1
            await asyncio.sleep(0.2)
            return None
        if answer.get("type") != "ack":
            self.answers[str(answer.get("code"))] += 1
            await asyncio.sleep(float(answer.get("retry_after") or 0))  # rate_limited says how long to wait
            return None
        self.answers["ack"] += 1
        self.last_ack_at = time.monotonic()
        seq = int(answer["seq"])
        self.acked[seq] = message_id
        del self.unacked[message_id]
        return seq

    async def resend_unacked(self) -> None:
        """Resend every unacked message with its own client_message_id until each is acked."""
        deadline = time.monotonic() + FAIL_SAFE_SECONDS
        while self.unacked:
            for message_id in list(self.unacked):
                await self.send_one(message_id)
                await asyncio.sleep(self.pause)
            if self.unacked:
                assert time.monotonic() < deadline, f"{len(self.unacked)} messages were never acked on resending"
                await asyncio.sleep(0.5)


class Load:
    """Both members of every pair connected, each sending; started and stopped together."""

    def __init__(self, app: RunningApp, pairs: Sequence[Pair]) -> None:
        self.pairs = pairs
        self.clients = [
            ChatClient(app.ws_url, user, pair.chat_id) for pair in pairs for user in (pair.first, pair.second)
        ]
        self.senders = [Sender(client) for client in self.clients]
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for client in self.clients:
            await client.connect()
        self._tasks = [asyncio.create_task(sender.run()) for sender in self.senders]

    @property
    def sent(self) -> int:
        return sum(sender.sent for sender in self.senders)

    def answers(self) -> Counter[str]:
        return sum((sender.answers for sender in self.senders), Counter())

    async def sending_again(self, since: float) -> float:
        """Wait until every sender has had an ack after ``since`` (time.monotonic()); return the seconds from
        ``since`` until then."""
        await wait_until(lambda: all(s.last_ack_at > since for s in self.senders), "sends to be acked again")
        return max(sender.last_ack_at for sender in self.senders) - since

    async def stop_sending(self) -> None:
        for sender in self.senders:
            sender.stop.set()
        await asyncio.gather(*self._tasks)
        self._tasks = []

    async def settle(self, postgres_url: str) -> None:
        """Resend what is unacked, send one last message each (any push lost before it is now a visible gap),
        then wait until every member holds every committed message of its chat; and a second more, so that a
        late duplicate push is counted."""
        await self.stop_sending()
        await asyncio.gather(*(sender.resend_unacked() for sender in self.senders))
        for sender in self.senders:
            assert await sender.send_one() is not None, "a last message, with everything running, should be acked"
        committed = committed_messages(postgres_url, [pair.chat_id for pair in self.pairs])
        await wait_until(
            lambda: all(set(committed[client.chat_id]) <= set(client.messages) for client in self.clients),
            "every member to hold every committed message",
        )
        await asyncio.sleep(1.0)

    async def close(self) -> None:
        for sender in self.senders:
            sender.stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for client in self.clients:
            await client.close()


async def wait_until(condition: Callable[[], bool], what: str, seconds: float = FAIL_SAFE_SECONDS) -> float:
    """Wait until ``condition()`` holds; return how long it took. Fails after ``seconds`` (a fail-safe)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"gave up waiting: {what}"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


def committed_messages(postgres_url: str, chat_ids: Iterable[int]) -> dict[int, dict[int, str]]:
    """chat_id → seq → client_message_id, as PostgreSQL committed them."""
    chats = list(chat_ids)
    committed: dict[int, dict[int, str]] = {chat_id: {} for chat_id in chats}
    with psycopg.connect(postgres_url) as db:
        rows = db.execute(
            "SELECT chat_id, seq, client_message_id FROM chat.messages WHERE chat_id = ANY(%s)", (chats,)
        ).fetchall()
    for chat_id, seq, message_id in rows:
        committed[int(chat_id)][int(seq)] = str(message_id)
    return committed


def half_written(postgres_url: str, chat_ids: Iterable[int]) -> dict[str, int]:
    """What a crash between two writes would leave: a message without its one outbox event, an event without its
    message, and an outbox row not yet published (the relay's work left undone)."""
    chats = list(chat_ids)
    with psycopg.connect(postgres_url) as db:
        messages_without_event, events_without_message, unpublished = db.execute(
            """
            WITH events AS (
                SELECT (payload->>'chat_id')::bigint AS chat_id, (payload->>'seq')::bigint AS seq, published_at
                FROM chat.outbox WHERE topic = 'message.created'
            )
            SELECT
                (SELECT count(*) FROM chat.messages m WHERE m.chat_id = ANY(%(chats)s)
                   AND (SELECT count(*) FROM events e WHERE e.chat_id = m.chat_id AND e.seq = m.seq) <> 1),
                (SELECT count(*) FROM events e WHERE e.chat_id = ANY(%(chats)s) AND NOT EXISTS
                   (SELECT FROM chat.messages m WHERE m.chat_id = e.chat_id AND m.seq = e.seq)),
                (SELECT count(*) FROM chat.outbox WHERE published_at IS NULL)
            """,
            {"chats": chats},
        ).fetchone()  # type: ignore[misc]
    return {
        "messages_without_one_event": int(messages_without_event),
        "events_without_message": int(events_without_message),
        "unpublished_events": int(unpublished),
    }


async def wait_for_outbox_drained(postgres_url: str) -> float:
    """Wait until the relay has published every outbox row; return how long it took."""
    return await wait_until(
        lambda: half_written(postgres_url, [])["unpublished_events"] == 0, "the relay to drain the outbox"
    )


def count(fault: str, load: Load, postgres_url: str, **details: Any) -> dict[str, Any]:
    """The counts of one run: sent, acked, committed, delivered per member, duplicates, lost; ``details`` (how
    the fault was made, how long recovery took…) are added as they are."""
    chat_ids = [pair.chat_id for pair in load.pairs]
    committed = committed_messages(postgres_url, chat_ids)
    acked = {(sender.client.chat_id, seq): mid for sender in load.senders for seq, mid in sender.acked.items()}
    committed_ids = [mid for chat in committed.values() for mid in chat.values()]
    members: dict[str, dict[str, int]] = {}
    for client in load.clients:
        held = set(client.messages)
        chat = set(committed[client.chat_id])
        members[client.user.username] = {
            "delivered": len(held & chat),
            "missing": len(chat - held),
            "extra": len(held - chat),
            "by_push": client.pushed,
            "by_sync": client.synced,
            "duplicate_pushes": client.duplicates,
            "gaps_seen": client.gaps,
            "connections": client.connections,
        }
    acked_not_committed = sum(1 for (chat_id, seq), mid in acked.items() if committed[chat_id].get(seq) != mid)
    counts: dict[str, Any] = {
        "fault": fault,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f"FAULT_RESULTS=1 pytest tests/faults -k {fault} -s",
        **details,
        "pairs": len(load.pairs),
        "sent": load.sent,
        "answers": dict(load.answers()),
        "acked": len(acked),
        "committed": sum(len(chat) for chat in committed.values()),
        "delivered": sum(member["delivered"] for member in members.values()),
        "duplicate_pushes": sum(member["duplicate_pushes"] for member in members.values()),
        "duplicates": (len(committed_ids) - len(set(committed_ids)))
        + sum(member["extra"] for member in members.values()),
        "lost": acked_not_committed + sum(member["missing"] for member in members.values()),
        "seq_gaps": sum(1 for chat in committed.values() if sorted(chat) != list(range(1, len(chat) + 1))),
        **half_written(postgres_url, chat_ids),
        "members": members,
    }
    return counts


def report(fault: str, counts: dict[str, Any]) -> None:
    """Print the counts; with FAULT_RESULTS=1 also write them to bench/results/<fault>.json."""
    if os.environ.get(RESULTS_VARIABLE) == "1":
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        (RESULTS_DIR / f"{fault}.json").write_text(json.dumps(counts, indent=2) + "\n")
    print(f"\n{fault}:", json.dumps(counts, indent=2))


def assert_nothing_lost_nor_doubled(counts: dict[str, Any]) -> None:
    """The promise, whatever the fault: every acked message committed and held once by every member."""
    assert counts["lost"] == 0, f"{counts['lost']} messages lost (acked but not committed, or never delivered)"
    assert counts["duplicates"] == 0, f"{counts['duplicates']} duplicates after deduplicating by seq"
    assert counts["committed"] == counts["acked"], "every committed message should be acked once resent"
    assert counts["acked"] == counts["sent"], "every message sent should be acked in the end"
    assert counts["seq_gaps"] == 0, "each chat's seqs should run 1…n without a gap"
    assert counts["messages_without_one_event"] == 0, "each committed message should have exactly one outbox event"
    assert counts["events_without_message"] == 0, "no outbox event should name a message that is not committed"
    expected = counts["committed"] * 2  # two members per chat
    assert counts["delivered"] == expected, f"{counts['delivered']} deliveries, expected {expected}"
