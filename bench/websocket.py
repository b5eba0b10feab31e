"""End-to-end benchmark: N WebSocket clients in private chats, a fixed send rate, through the real processes.

    python bench/websocket.py                          # N = 100 and 1000, 200 messages/s for 20 s each
    python bench/websocket.py --clients 20 --seconds 3 # a smoke run

The app runs as it does under ``make start``: six processes started by the workbook's runner (gateway, auth,
chat, content, relay, notifier), here on free ports with a database, MongoDB database, Redis database and
exchange of their own. The clients run in this process, on one asyncio loop.

For each N: N users in N/2 private chats (made straight in the database, with tokens signed by the app's key:
registering a thousand users through Argon2 would measure Argon2), each client connected and authenticated.
Then one sender of each chat sends in turn, at a fixed total rate. A message counts as delivered when the
OTHER member's socket receives its ``message.created`` push; its latency is from the moment the schedule said
to send it to that moment. The path measured is the whole one: the WebSocket frame, the gateway, gRPC, the chat
service's PostgreSQL transaction, the outbox relay (woken by NOTIFY), RabbitMQ, the gateway node's queue, the push.

Reported per N: messages sent, acked, delivered, delivered per second, latency p50/p95/p99, and the gateway's
resident memory per connected client (its RSS with N idle clients connected, minus its RSS before any, over N;
each N gets a fresh app, warmed up by one chat of two before the first reading). Latency counts from when each
message was due by the schedule, so a client that falls behind cannot hide the delay; the achieved send rate and
the duplicate pushes are reported too.

It writes bench/results/websocket.json and prints a Markdown table. Not a test: the numbers depend on the
machine, and the clients share its two cores with the app.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import ssl
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import websockets
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from websockets.asyncio.client import ClientConnection

from reference_app.auth.passwords import PasswordHashing
from reference_app.auth.tokens import TokenIssuer
from reference_app.config import Settings
from workbook.isolated import REDIS_DB_BENCHMARK, isolated_app
from workbook.messenger import key_pair
from workbook.paths import REPO_ROOT

RESULTS = REPO_ROOT / "bench" / "results" / "websocket.json"
CONNECT_BATCH = 50  # clients connecting at once: a thousand at the same instant would measure the accept queue
SETTLE_SECONDS = 3.0  # after the last send: pushes still on their way
ANSWER_SECONDS = 30.0
# The settings of an app under load (here, bench/profile.py and bench/capacity.py): limits out of the way.
LOAD_ENV = {
    "APP_REDIS__SEND_RATE_LIMIT": "1000000",  # the per-user limit is not what is measured here
    "APP_REDIS__SIGN_IN_ADDRESS_RATE_LIMIT": "1000000",  # N clients sign in from one address
    "APP_LOG__LEVEL": "WARNING",
}


def rss_bytes(pid: int) -> int:
    """The resident memory of a process (Linux: VmRSS in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] if ordered else float("nan")


@dataclass
class Row:
    clients: int
    rate_per_s: int
    seconds: float
    sent: int
    sent_per_s: float  # achieved: below rate_per_s when the clients could not keep the schedule
    acked: int
    duplicates: int
    delivered: int
    delivered_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    gateway_rss_idle_mib: float
    gateway_rss_connected_mib: float
    gateway_kib_per_client: float


@dataclass
class Client:
    user_id: int
    chat_id: int
    socket: ClientConnection


class Measurement:
    """Send times by client message id, and when the other member received each."""

    def __init__(self) -> None:
        self.sent_at: dict[str, float] = {}
        self.latencies: list[float] = []
        self.acked = 0
        self.duplicates = 0
        self.errors: list[dict[str, Any]] = []
        self.last_delivery = 0.0

    async def read(self, client: Client) -> None:
        async for raw in client.socket:
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "message.created":
                message = frame["message"]
                if message["sender_id"] != client.user_id:
                    # pop: a second push of the same message (delivery is at least once) is a duplicate, and
                    # must neither count as a delivery nor add a latency.
                    sent = self.sent_at.pop(message["client_message_id"], None)
                    if sent is None:
                        self.duplicates += 1
                    else:
                        now = time.perf_counter()
                        self.latencies.append(now - sent)
                        self.last_delivery = now
            elif kind == "ack":
                self.acked += 1
            elif kind == "error":
                self.errors.append(frame)


def make_users_and_chats(postgres_url: str, count: int) -> list[tuple[int, int]]:
    """``count`` users in count/2 private chats, written straight into the database: (user id, chat id) each."""
    password_hash = PasswordHashing().hash("benchmark password")  # one hash for all: Argon2 is not measured
    tag = uuid.uuid4().hex[:6]
    with psycopg.connect(postgres_url) as db:
        ids = [
            row[0]
            for row in db.execute(
                "INSERT INTO auth.users (username, email, password_hash)"
                " SELECT 'b' || %s || '_' || n, 'b' || %s || '_' || n || '@example.com', %s"
                " FROM generate_series(1, %s) AS n RETURNING id",
                (tag, tag, password_hash, count),
            ).fetchall()
        ]
        ids.sort()
        pairs = [(ids[i], ids[i + 1]) for i in range(0, len(ids) - 1, 2)]
        placed: list[tuple[int, int]] = []
        for low, high in pairs:
            (chat_id,) = db.execute(
                "INSERT INTO chat.private_chats (user_low, user_high) VALUES (%s, %s) RETURNING id", (low, high)
            ).fetchone() or (0,)
            placed += [(low, chat_id), (high, chat_id)]
    return placed


def app_token_issuer(state_dir: Path, settings: Settings) -> TokenIssuer:
    """An issuer with the app's own key (kept in its state directory): tokens without a sign-in each."""
    keys = key_pair(state_dir, settings)
    private_key = load_pem_private_key(keys.private_pem.encode(), password=None)
    assert isinstance(private_key, Ed25519PrivateKey)
    return TokenIssuer(private_key, issuer=settings.jwt.issuer, audience=settings.jwt.audience, ttl_seconds=3600)


async def connect(ws_url: str, token: str, ssl_context: ssl.SSLContext | None = None) -> ClientConnection:
    socket_ = await websockets.connect(ws_url, max_size=2**20, open_timeout=ANSWER_SECONDS, ssl=ssl_context)
    await socket_.send(json.dumps({"type": "auth", "token": token}))
    while True:
        frame = json.loads(await asyncio.wait_for(socket_.recv(), ANSWER_SECONDS))
        if frame["type"] == "ready":
            return socket_
        if frame["type"] not in ("presence",):
            raise RuntimeError(f"the gateway refused a client: {frame}")


async def warm_up(
    ws_url: str, issuer: TokenIssuer, postgres_url: str, ssl_context: ssl.SSLContext | None = None
) -> None:
    """One chat, one message, both sockets closed: the gateway's one-time costs are paid before memory is read."""
    (sender, chat_id), (receiver, _) = make_users_and_chats(postgres_url, 2)
    sockets = [await connect(ws_url, issuer.issue(user_id).token, ssl_context) for user_id in (sender, receiver)]
    frame = {"type": "send", "chat_id": chat_id, "client_message_id": str(uuid.uuid4()), "body": "warm-up"}
    await sockets[0].send(json.dumps(frame))
    while json.loads(await asyncio.wait_for(sockets[1].recv(), ANSWER_SECONDS))["type"] != "message.created":
        pass
    for socket_ in sockets:
        await socket_.close()
    await asyncio.sleep(0.5)


async def run_one(
    clients_wanted: int,
    rate: int,
    seconds: float,
    ws_url: str,
    issuer: TokenIssuer,
    postgres_url: str,
    gateway_pid: int,
    on_sending: Callable[[], object] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Row:
    placed = make_users_and_chats(postgres_url, clients_wanted)
    await warm_up(ws_url, issuer, postgres_url, ssl_context)
    rss_idle = rss_bytes(gateway_pid)
    clients: list[Client] = []
    for start in range(0, len(placed), CONNECT_BATCH):
        batch = placed[start : start + CONNECT_BATCH]
        sockets = await asyncio.gather(
            *(connect(ws_url, issuer.issue(user_id).token, ssl_context) for user_id, _ in batch)
        )
        clients += [Client(user_id, chat_id, s) for (user_id, chat_id), s in zip(batch, sockets, strict=True)]
    await asyncio.sleep(1.0)  # presence pushes settle
    rss_connected = rss_bytes(gateway_pid)

    measurement = Measurement()
    readers = [asyncio.create_task(measurement.read(client)) for client in clients]
    senders = clients[::2]  # one member of each chat sends; the other receives
    total = int(rate * seconds)
    if on_sending is not None:
        on_sending()  # the profiler starts here: connecting is not what it should see
    started = time.perf_counter()
    for n in range(total):
        # A fixed schedule: message n leaves at started + n / rate, whatever happened to the ones before.
        delay = started + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sender = senders[n % len(senders)]
        client_message_id = str(uuid.uuid4())
        # Latency counts from when the message was DUE, not from when this loop got round to it: a client that
        # falls behind its schedule must not hide the delay from the numbers (coordinated omission).
        measurement.sent_at[client_message_id] = started + n / rate
        frame = {"type": "send", "chat_id": sender.chat_id, "client_message_id": client_message_id, "body": f"m{n}"}
        await sender.socket.send(json.dumps(frame))
    sending_seconds = time.perf_counter() - started
    deadline = time.perf_counter() + SETTLE_SECONDS + seconds
    while measurement.sent_at and time.perf_counter() < deadline:
        await asyncio.sleep(0.1)
    for client in clients:
        await client.socket.close()
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    if measurement.errors:
        print(f"  {len(measurement.errors)} error frames, first: {measurement.errors[0]}", file=sys.stderr)

    latencies_ms = [value * 1000 for value in measurement.latencies]
    elapsed = (measurement.last_delivery or time.perf_counter()) - started
    return Row(
        clients=len(clients),
        rate_per_s=rate,
        seconds=seconds,
        sent=total,
        sent_per_s=round(total / sending_seconds, 1),
        acked=measurement.acked,
        duplicates=measurement.duplicates,
        delivered=len(latencies_ms),
        delivered_per_s=round(len(latencies_ms) / elapsed, 1),
        p50_ms=round(percentile(latencies_ms, 0.50), 1),
        p95_ms=round(percentile(latencies_ms, 0.95), 1),
        p99_ms=round(percentile(latencies_ms, 0.99), 1),
        gateway_rss_idle_mib=round(rss_idle / 2**20, 1),
        gateway_rss_connected_mib=round(rss_connected / 2**20, 1),
        gateway_kib_per_client=round((rss_connected - rss_idle) / len(clients) / 1024, 1),
    )


def table(rows: list[Row]) -> str:
    lines = [
        "| clients | sent (rate × s) | sent/s | acked | delivered | duplicates | delivered/s | p50 ms | p95 ms | p99 ms"
        " | gateway KiB per client |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row.clients} | {row.sent} ({row.rate_per_s} × {row.seconds:g}) | {row.sent_per_s} | {row.acked}"
            f" | {row.delivered} | {row.duplicates} | {row.delivered_per_s} | {row.p50_ms} | {row.p95_ms} | {row.p99_ms} | {row.gateway_kib_per_client} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 1000], help="N values (even numbers)")
    parser.add_argument("--rate", type=int, default=200, help="messages per second, all senders together")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long each N sends")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--app-root", type=Path, default=REPO_ROOT / "reference_app", help="another copy of the app")
    arguments = parser.parse_args()
    # A thousand sockets on each side: raise this process's open-file limit (the app's processes inherit it).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))

    rows: list[Row] = []
    for count in arguments.clients:
        # A fresh app for each N: the gateway's memory per client must not depend on what an earlier N left in
        # its heap, nor include the one-time cost of its first connections.
        with (
            tempfile.TemporaryDirectory(prefix="bench-ws-") as workdir,
            isolated_app(
                arguments.app_root.resolve(),
                run_id=f"bench_ws_{os.getpid()}",
                redis_db=REDIS_DB_BENCHMARK,
                state_dir=Path(workdir),
                env=LOAD_ENV,
            ) as app,
        ):
            issuer = app_token_issuer(Path(workdir), app.settings)
            gateway_pid = next(record.pid for record in app.runner.records() if record.name == "gateway")
            print(f"N = {count}: connecting, then {arguments.rate} messages/s for {arguments.seconds:g} s …")
            row = asyncio.run(
                run_one(
                    count, arguments.rate, arguments.seconds, app.ws_url, issuer, app.settings.postgres.url, gateway_pid
                )
            )
            print(f"  {asdict(row)}")
            rows.append(row)

    document = {
        "command": "python " + " ".join(["bench/websocket.py", *sys.argv[1:]]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()},
        "results": [asdict(row) for row in rows],
    }
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(document, indent=2) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
