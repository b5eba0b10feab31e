"""Capacity: the offered rate steps up until p99 passes 250 ms or delivery falls below 90 %, through the real app.

    python bench/capacity.py                                   # 200 clients, two gateway nodes, TLS, 10 s a step
    python bench/capacity.py --baseline bench/results/capacity-before.json   # and the ratios to an earlier run
    python bench/capacity.py --app-root ../baseline/reference_app --output bench/results/capacity-before.json

The app runs as ``make start GATEWAYS=2 TLS=1`` runs it (every guarantee and every defence in place: TLS, callers
proven, two nodes behind HAProxy), on free ports with data of its own; ``--app-root`` runs another copy of the app
(an older commit checked out into a worktree), so that two versions are measured by the same load in one session.
Each step is one run of bench/websocket.py's load (N clients in private chats, a fixed total rate, latency from
when each message was due) at a higher offered rate. CPU per message is the CPU time of every process on the
path over the step, our six and PostgreSQL, RabbitMQ and Redis too, divided by the messages delivered.

Capacity is the highest delivered rate of a step that met the target: p99 ≤ 250 ms, at least 90 % delivered,
nothing lost or doubled. It writes the JSON, a plot of p50 and p99 against the offered rate (PNG beside it), and a
table; with ``--baseline``, the ratio of capacity and of CPU per message to that run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import ssl
import sys
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed: write a file
import matplotlib.pyplot as plt

from bench.profile import cpu_seconds
from bench.websocket import LOAD_ENV, app_token_issuer, run_one
from workbook.isolated import REDIS_DB_BENCHMARK, isolated_app
from workbook.paths import REPO_ROOT

OUTPUT = REPO_ROOT / "bench" / "results" / "capacity.json"
RATES = [100, 200, 300, 400, 500, 600, 700, 800, 1000, 1200, 1500]
P99_TARGET_MS = 250.0
DELIVERED_AT_LEAST = 0.9
# The machine's shared services on the message path: every process of each (PostgreSQL has one per connection).
SERVICE_PROCESSES = ("postgres", "beam.smp", "redis-server", "haproxy")


def service_pids() -> list[int]:
    """Every process of PostgreSQL, RabbitMQ (the Erlang VM), Redis and HAProxy on this machine."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name = stat.read_text().split("(", 1)[1].split(")", 1)[0]
        except (OSError, IndexError):
            continue
        if name.startswith(SERVICE_PROCESSES):
            found.append(int(stat.parent.name))
    return found


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):  # a PostgreSQL backend that ended meanwhile
            total += cpu_seconds(pid)
    return total


def met_target(row: dict[str, float]) -> bool:
    return (
        row["p99_ms"] <= P99_TARGET_MS
        and row["delivered"] >= DELIVERED_AT_LEAST * row["sent"]
        and row["duplicates"] == 0
        and row["acked"] == row["sent"]
    )


def plot(document: dict[str, object], path: Path) -> Path:
    steps = document["steps"]
    assert isinstance(steps, list)
    figure, axes = plt.subplots(figsize=(8, 4.5))
    offered = [step["rate_per_s"] for step in steps]
    axes.plot(offered, [step["p50_ms"] for step in steps], marker="o", label="p50")
    axes.plot(offered, [step["p99_ms"] for step in steps], marker="o", label="p99")
    axes.axhline(P99_TARGET_MS, linestyle="--", color="grey", label=f"target p99 {P99_TARGET_MS:g} ms")
    axes.set_yscale("log")
    axes.set_xlabel("offered rate, messages per second")
    axes.set_ylabel("latency, ms (log scale)")
    axes.set_title(f"{document['label']}: capacity {document['capacity_per_s']} delivered/s")
    axes.legend()
    figure.tight_layout()
    png = path.with_suffix(".png")
    figure.savefig(png, dpi=100)
    plt.close(figure)
    return png


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each step sends")
    parser.add_argument("--rates", type=int, nargs="+", default=RATES, help="the offered rates, in order")
    parser.add_argument("--gateways", type=int, default=2)
    parser.add_argument("--no-tls", action="store_true", help="plain text (the default measures with TLS)")
    parser.add_argument("--app-root", type=Path, default=REPO_ROOT / "reference_app")
    parser.add_argument("--label", default="this commit")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--baseline", type=Path, help="an earlier capacity JSON: print the ratios to it")
    arguments = parser.parse_args()
    steps: list[dict[str, float]] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-capacity-") as workdir,
        isolated_app(
            arguments.app_root.resolve(),
            run_id=f"bench_capacity_{os.getpid()}",
            redis_db=REDIS_DB_BENCHMARK,
            state_dir=Path(workdir),
            env=LOAD_ENV,
            gateways=arguments.gateways,
            tls=not arguments.no_tls,
        ) as app,
    ):
        ours = [record.pid for record in app.runner.records() if record.name != "haproxy"]
        gateway_pid = next(record.pid for record in app.runner.records() if record.name.startswith("gateway"))
        issuer = app_token_issuer(Path(workdir), app.settings)
        ssl_context = None if app.ca_file is None else ssl.create_default_context(cafile=str(app.ca_file))
        for rate in arguments.rates:
            before: dict[str, float] = {}

            def start(before: dict[str, float] = before) -> None:
                before["ours"], before["services"] = cpu_of(ours), cpu_of(service_pids())

            row = asdict(
                asyncio.run(
                    run_one(
                        arguments.clients,
                        rate,
                        arguments.seconds,
                        app.ws_url,
                        issuer,
                        app.settings.postgres.url,
                        gateway_pid,
                        on_sending=start,
                        ssl_context=ssl_context,
                    )
                )
            )
            delivered = max(row["delivered"], 1)
            row["cpu_ms_ours"] = round(1000 * (cpu_of(ours) - before["ours"]) / delivered, 2)
            row["cpu_ms_all"] = round(
                row["cpu_ms_ours"] + 1000 * (cpu_of(service_pids()) - before["services"]) / delivered, 2
            )
            row["met_target"] = met_target(row)
            steps.append(row)
            print(
                f"{rate:5} offered: {row['delivered_per_s']:7.1f} delivered/s, p50 {row['p50_ms']} ms,"
                f" p99 {row['p99_ms']} ms, lost {row['sent'] - row['delivered']}, duplicates {row['duplicates']},"
                f" CPU {row['cpu_ms_all']} ms/message ({row['cpu_ms_ours']} in ours)"
            )
            if not row["met_target"]:
                break
    passing = [step for step in steps if step["met_target"]]
    capacity = max((step["delivered_per_s"] for step in passing), default=0.0)
    at_capacity = max(passing, key=lambda step: step["delivered_per_s"]) if passing else None
    document: dict[str, object] = {
        "label": arguments.label,
        "command": "python " + " ".join(["bench/capacity.py", *sys.argv[1:]]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "clients": arguments.clients,
        "gateways": arguments.gateways,
        "tls": not arguments.no_tls,
        "capacity_per_s": capacity,
        "cpu_ms_per_message_at_capacity": at_capacity["cpu_ms_all"] if at_capacity else None,
        "steps": steps,
    }
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"capacity: {capacity} delivered/s (p99 ≤ {P99_TARGET_MS:g} ms); written to {arguments.output}")
    print(f"plot: {plot(document, arguments.output)}")
    if arguments.baseline is not None:
        before_document = json.loads(arguments.baseline.read_text())
        if before_document["capacity_per_s"]:
            print(f"capacity: {capacity / before_document['capacity_per_s']:.2f} × the baseline's")
        if before_document.get("cpu_ms_per_message_at_capacity") and at_capacity:
            ratio = at_capacity["cpu_ms_all"] / before_document["cpu_ms_per_message_at_capacity"]
            print(f"CPU per message at capacity: {ratio:.2f} × the baseline's")


if __name__ == "__main__":
    main()
