"""Where the CPU goes: every process of the app sampled by py-spy while the WebSocket benchmark loads it.

    python bench/profile.py                              # 200 clients, 400 messages/s, 15 s, two nodes, TLS
    python bench/profile.py --rate 200 --gateways 1      # another load

The app runs as under ``make start GATEWAYS=2 TLS=1`` (its processes on free ports, data of its own). When the senders
start, py-spy samples each process of ours (100 times a second, without pausing it: ``--nonblocking``) and
``/proc/PID/stat`` gives each one's CPU time over the same window. It writes, under bench/results/profile/:

- ``<process>.txt``: py-spy's raw output, one line per distinct stack with its number of samples (open it in
  https://www.speedscope.app or read it with ``sort -k2 -n``);
- ``summary.json`` and a printed table: CPU per process (share of one core, and milliseconds per delivered
  message), and each process's top functions.

How to read the top functions: **own** is the share of a process's samples in which the function itself was
running; **total** the share in which it was anywhere on the stack (itself or something it called). A function
with a high total and a low own is a caller: look at what it calls. One with a high own is where the time goes.
py-spy needs ptrace: run it as root, or allow it (``sysctl kernel.yama.ptrace_scope=0``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from bench.websocket import LOAD_ENV, app_token_issuer, run_one
from workbook.isolated import REDIS_DB_BENCHMARK, isolated_app
from workbook.paths import REPO_ROOT

OUTPUT = REPO_ROOT / "bench" / "results" / "profile"
PY_SPY = Path(sys.executable).parent / "py-spy"
OURS = ("gateway", "auth", "chat", "content", "relay", "notifier")  # haproxy is not Python
TOP = 12


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux: fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def top_functions(raw: Path, count: int = TOP) -> list[dict[str, object]]:
    """The functions with the most samples of their own, with their own and total shares, from py-spy's raw file."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        frames = [frame for frame in stack.split(";") if not frame.startswith("process ")]
        hits = int(number)
        samples += hits
        if frames:
            own[frames[-1]] += hits
        for frame in set(frames):
            total[frame] += hits
    return [
        {"function": name, "own": round(hits / samples, 3), "total": round(total[name] / samples, 3)}
        for name, hits in own.most_common(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rate", type=int, default=400, help="messages per second, all senders together")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--gateways", type=int, default=2)
    parser.add_argument("--no-tls", action="store_true", help="plain text (the default profiles with TLS)")
    parser.add_argument("--app-root", type=Path, default=REPO_ROOT / "reference_app", help="another copy of the app")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    arguments = parser.parse_args()
    arguments.output.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="bench-profile-") as workdir,
        isolated_app(
            arguments.app_root.resolve(),
            run_id=f"bench_profile_{os.getpid()}",
            redis_db=REDIS_DB_BENCHMARK,
            state_dir=Path(workdir),
            env=LOAD_ENV,
            gateways=arguments.gateways,
            tls=not arguments.no_tls,
        ) as app,
    ):
        pids = {record.name: record.pid for record in app.runner.records() if record.name.startswith(OURS)}
        issuer = app_token_issuer(Path(workdir), app.settings)
        spies: list[subprocess.Popen[bytes]] = []
        before: dict[str, float] = {}
        window = max(1, int(arguments.seconds) - 1)

        def start_sampling() -> None:
            for name, pid in pids.items():
                before[name] = cpu_seconds(pid)
                command = [str(PY_SPY), "record", "--pid", str(pid), "--duration", str(window), "--rate", "100"]
                command += [
                    "--nonblocking",
                    "--gil",
                    "--format",
                    "raw",
                    "--output",
                    str(arguments.output / f"{name}.txt"),
                ]
                spies.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            before["_at"] = time.perf_counter()

        gateway_pid = pids.get("gateway", pids.get("gateway-1", 0))
        print(f"{arguments.clients} clients, {arguments.rate} messages/s for {arguments.seconds:g} s, sampled …")
        row = asyncio.run(
            run_one(
                arguments.clients,
                arguments.rate,
                arguments.seconds,
                app.ws_url,
                issuer,
                app.settings.postgres.url,
                gateway_pid,
                on_sending=start_sampling,
                ssl_context=None if app.ca_file is None else ssl.create_default_context(cafile=str(app.ca_file)),
            )
        )
        for spy in spies:
            spy.wait(timeout=60)
        elapsed = time.perf_counter() - before["_at"]
        spent = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}

    delivered = max(row.delivered, 1)
    processes = {
        name: {
            "core_share": round(seconds / elapsed, 3),
            "ms_per_message": round(1000 * seconds / delivered, 3),
            "top": top_functions(arguments.output / f"{name}.txt"),
        }
        for name, seconds in sorted(spent.items(), key=lambda item: -item[1])
    }
    summary = {
        "command": "python " + " ".join(["bench/profile.py", *sys.argv[1:]]),
        "load": asdict(row),
        "ms_per_message_all": round(1000 * sum(spent.values()) / delivered, 3),
        "processes": processes,
    }
    (arguments.output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"delivered {row.delivered}/{row.sent}, p50 {row.p50_ms} ms, p99 {row.p99_ms} ms")
    print("| process | share of a core | ms CPU per message | top function (own share) |")
    print("| --- | ---: | ---: | --- |")
    for name, facts in processes.items():
        top = facts["top"][0] if facts["top"] else {"function": "-", "own": 0}  # type: ignore[index]
        print(f"| {name} | {facts['core_share']} | {facts['ms_per_message']} | {top['function']} ({top['own']}) |")
    print(f"| all of ours | | {summary['ms_per_message_all']} | |")


if __name__ == "__main__":
    main()
