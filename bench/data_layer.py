"""Benchmark of the chat's data layer: sends per second, against what the same machine can do at best.

    python bench/data_layer.py            # 2000 sends per configuration, about a minute
    python bench/data_layer.py --quick    # 200 sends per configuration, a smoke run

Each configuration sends a bounded number of messages through the real ChatService and PostgreSQL store, with
1, 8 or 32 concurrent writers, either all into ONE hot chat or spread over 100 chats. Beside it, the same
number of plain single-row INSERTs go into a copy of chat.messages (same columns, indexes and checks), one
transaction each, at the same concurrency, on the same server with the same synchronous_commit: that is the
ceiling, the most any send could reach here. The ratio says how close the send gets. The two sides run in
alternating rounds, so that a disturbance from another program on the machine hits both alike.

It creates its own database, drops it at the end, writes bench/results/data_layer.json and prints a Markdown
table. It is not a test: the numbers depend on the machine and on whatever else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from plot import plot  # bench/plot.py: this script runs with bench/ on its path
from psycopg import sql

from reference_app.chat.adapters.hot_chats import GroupingChatStore
from reference_app.chat.adapters.postgres import PostgresChatStore
from reference_app.chat.service import ChatService
from reference_app.config import load_settings
from reference_app.config.settings import PostgresSettings
from reference_app.db import apply_migrations
from reference_app.db.pool import Pool, open_pool
from workbook.databases import throwaway_database

DATABASE = "bench_data_layer"
RESULTS = Path(__file__).parent / "results" / "data_layer.json"
WRITERS = (1, 8, 32)
SPREAD_CHATS = 100
BODY = "a message of an ordinary length, about sixty characters long."

CEILING_TABLE = "CREATE TABLE public.ceiling_messages (LIKE chat.messages INCLUDING ALL)"
CEILING_INSERT = (
    "INSERT INTO public.ceiling_messages (chat_id, seq, sender_id, client_message_id, body) VALUES (%s, %s, %s, %s, %s)"
)

# The ceiling's rows need a unique (chat_id, seq) too; a counter in memory gives one with no lock at all.
CEILING_SEQ = itertools.count(1)

Operation = Callable[[int], Awaitable[object]]  # one send or one insert; the argument numbers it

# Each side runs in this many alternating rounds (ceiling, send, ceiling, send, …).
ROUNDS = 4


@dataclass
class Measured:
    count: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def add(self, count: int, seconds: float, latencies: list[float]) -> None:
        self.count += count
        self.seconds += seconds
        self.latencies += latencies

    @property
    def per_second(self) -> float:
        return self.count / self.seconds

    def percentile_ms(self, percent: int) -> float:
        return round(statistics.quantiles(self.latencies, n=100)[percent - 1] * 1000, 2)


@dataclass(frozen=True)
class Result:
    configuration: str
    writers: int
    chats: int
    sends: int
    sends_per_s: float
    ceiling_per_s: float
    ratio: float
    send_p50_ms: float
    send_p99_ms: float
    ceiling_p50_ms: float


async def timed(operation: Operation, count: int, writers: int) -> tuple[float, list[float]]:
    """Run ``count`` operations with ``writers`` concurrent tasks; return the seconds taken and each latency."""
    numbers = iter(range(count))
    latencies: list[float] = []

    async def writer() -> None:
        for number in numbers:  # the shared iterator hands each number to exactly one task
            started = time.perf_counter()
            await operation(number)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    return time.perf_counter() - started, latencies


async def compare(ceiling: Operation, send: Operation, count: int, writers: int) -> tuple[Measured, Measured]:
    """Measure both sides in alternating rounds, so a disturbance from outside hits both alike."""
    # A short untimed warm-up: every connection prepares its statements, caches fill.
    await timed(ceiling, writers * 6, writers)
    await timed(send, writers * 6, writers)
    sides: list[Measured] = [Measured(), Measured()]
    per_round = max(count // ROUNDS, writers)
    for _ in range(ROUNDS):
        for side, operation in zip(sides, (ceiling, send), strict=True):
            seconds, latencies = await timed(operation, per_round, writers)
            side.add(per_round, seconds, latencies)
    return sides[0], sides[1]


async def run_configuration(settings: PostgresSettings, chat_ids: list[int], writers: int, sends: int) -> Result:
    sized = settings.model_copy(update={"pool_min_size": writers, "pool_max_size": writers})
    async with open_pool(sized, name=f"bench-{writers}") as pool:
        # The store the chat service runs: sends into a busy chat are written together.
        service = ChatService(GroupingChatStore(pool), history_page_max=settings.history_page_max)

        async def plain_insert(number: int) -> None:
            async with pool.connection() as connection:
                chat_id = chat_ids[number % len(chat_ids)]
                await connection.execute(CEILING_INSERT, (chat_id, next(CEILING_SEQ), 1, uuid.uuid4(), BODY))

        async def send(number: int) -> None:
            chat_id = chat_ids[number % len(chat_ids)]
            # Every chat is (1, x): in each chat, user 1 and the other member take turns.
            sender = 1 if (number // len(chat_ids)) % 2 else other_member[chat_id]
            await service.send_message(sender, chat_id, uuid.uuid4(), BODY)

        other_member = await other_members(pool, chat_ids)
        ceiling, sent = await compare(plain_insert, send, sends, writers)
    layout = "one hot chat" if len(chat_ids) == 1 else f"spread over {len(chat_ids)} chats"
    return Result(
        configuration=f"{writers} writer{'s' if writers > 1 else ''}, {layout}",
        writers=writers,
        chats=len(chat_ids),
        sends=sent.count,
        sends_per_s=round(sent.per_second, 1),
        ceiling_per_s=round(ceiling.per_second, 1),
        ratio=round(sent.per_second / ceiling.per_second, 2),
        send_p50_ms=sent.percentile_ms(50),
        send_p99_ms=sent.percentile_ms(99),
        ceiling_p50_ms=ceiling.percentile_ms(50),
    )


async def other_members(pool: Pool, chat_ids: list[int]) -> dict[int, int]:
    async with pool.connection() as connection:
        cursor = await connection.execute(
            "SELECT id, user_high FROM chat.private_chats WHERE id = ANY(%s)", (chat_ids,)
        )
        return {chat_id: user for chat_id, user in await cursor.fetchall()}


async def open_chats(settings: PostgresSettings) -> tuple[list[int], list[int]]:
    async with open_pool(settings, name="bench-setup") as pool:
        service = ChatService(PostgresChatStore(pool), history_page_max=settings.history_page_max)
        hot = await service.open_chat(1, 2)
        spread = [await service.open_chat(1, 1000 + number) for number in range(SPREAD_CHATS)]
    return [hot.id], [chat.id for chat in spread]


def check_sequences(url: str) -> str:
    """Every chat's seqs must be exactly 1..last_seq: the benchmark is worthless if sends were wrong."""
    with psycopg.connect(url) as connection:
        broken = connection.execute(
            "SELECT c.id FROM chat.private_chats c LEFT JOIN chat.messages m ON m.chat_id = c.id"
            " GROUP BY c.id HAVING count(m.seq) <> max(c.last_seq) OR count(DISTINCT m.seq) <> count(m.seq)"
            " OR coalesce(max(m.seq), 0) <> max(c.last_seq)"
        ).fetchall()
        messages, events = connection.execute(
            "SELECT (SELECT count(*) FROM chat.messages), (SELECT count(*) FROM chat.outbox)"
        ).fetchone() or (0, 0)
    if broken or messages != events:
        raise SystemExit(f"sends were wrong: chats with gaps {broken}, {messages} messages but {events} events")
    return f"{messages} messages, {events} outbox rows, every chat's seqs exactly 1..last_seq"


def server_facts(url: str) -> dict[str, str]:
    with psycopg.connect(url) as connection:
        return {
            name: str((connection.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone() or ("?",))[0])
            for name in ("server_version", "synchronous_commit", "fsync", "shared_buffers", "max_connections")
        }


def markdown(results: list[Result]) -> str:
    lines = [
        "| configuration | sends/s | ceiling/s | ratio | send p50 ms | send p99 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r.configuration} | {r.sends_per_s:.0f} | {r.ceiling_per_s:.0f} | {r.ratio:.2f} "
        f"| {r.send_p50_ms:.2f} | {r.send_p99_ms:.2f} |"
        for r in results
    ]
    return "\n".join(lines)


async def main(sends: int, output: Path) -> None:
    server = load_settings().postgres
    with throwaway_database(server.url, DATABASE) as url:
        settings = server.model_copy(update={"url": url})
        apply_migrations(url)
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(CEILING_TABLE)
        hot, spread = await open_chats(settings)
        results = []
        for writers in WRITERS:
            for chat_ids in (hot, spread):
                result = await run_configuration(settings, chat_ids, writers, sends)
                print(f"  {result.configuration}: {result.sends_per_s:.0f} sends/s", file=sys.stderr, flush=True)
                results.append(result)
        checked = check_sequences(url)
        facts = server_facts(url)
    document = {
        "benchmark": "data_layer",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "sends_per_configuration": sends,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "postgres": facts,
        "check": checked,
        "results": [asdict(result) for result in results],
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(markdown(results))
    print(f"\n{checked}. PostgreSQL {facts['server_version']}, synchronous_commit={facts['synchronous_commit']}.")
    print(f"Written to {output} and {plot(output)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="200 sends per configuration instead of 2000")
    parser.add_argument("--sends", type=int, help="sends per configuration (overrides --quick)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"the JSON file to write (default: {RESULTS})")
    arguments = parser.parse_args()
    count = arguments.sends or (200 if arguments.quick else 2000)
    asyncio.run(main(count, arguments.output))
