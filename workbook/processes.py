"""Run a set of long-lived processes: start each and wait until it is ready, report on them, stop them all.

A small process manager, just enough for ``python -m workbook app``; nothing here knows about the messenger.

- **Logs.** Each process writes stdout and stderr to ``<state dir>/logs/<name>.log`` (appended, a header line
  per start). When a process dies, the error quotes the end of its log: that is where the reason is.
- **Ready, not just started.** A process is started, then its readiness is probed (a TCP port, gRPC health, an
  HTTP GET) until it answers, while checking that it is still alive. The next process starts only after that,
  so a process that depends on an earlier one finds it running.
- **No orphans.** Each process gets a session and process group of its own: Ctrl+C at the terminal reaches
  the runner, not the children, and the runner stops them in order. Stopping signals the whole group
  (whatever the process started itself goes too): SIGTERM, then SIGKILL after a grace period.
- **A record on disk.** ``<state dir>/processes.json`` lists what runs, so ``status`` and ``down`` work from
  another terminal. A pid is only signalled if the process still has the start time recorded for it: a pid
  the system has since given to someone else is left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shlex
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

READY_TIMEOUT_SECONDS = 90.0  # generous: a cold start on a busy CI machine can be slow
GRACE_SECONDS = 10.0  # the usual SIGTERM → SIGKILL wait of process managers
ALIVE_SECONDS = 2.0  # a process without a port is "ready" once it has stayed up this long
TAIL_LINES = 30
POLL_SECONDS = 0.1

ProbeKind = Literal["tcp", "grpc", "http", "alive"]


@dataclass(frozen=True)
class Readiness:
    """How to tell that a process is ready. Plain data, so it can be kept in the state file for ``status``."""

    kind: ProbeKind
    host: str = "127.0.0.1"
    port: int = 0
    path: str = "/"  # for http
    ca_file: str | None = None  # TLS (make start TLS=1): probe over TLS, trusting this authority only

    def describe(self) -> str:
        tls = " (TLS)" if self.ca_file else ""
        scheme = "https" if self.ca_file else "http"
        return {
            "tcp": f"TCP port {self.host}:{self.port}",
            "grpc": f"gRPC health on {self.host}:{self.port}{tls}",
            "http": f"HTTP GET {scheme}://{self.host}:{self.port}{self.path}",
            "alive": f"staying up for {ALIVE_SECONDS:.0f} s",
        }[self.kind]


def is_ready(readiness: Readiness, *, age_seconds: float) -> bool:
    """One probe. Never raises: anything that goes wrong means "not ready yet"."""
    try:
        match readiness.kind:
            case "alive":
                return age_seconds >= ALIVE_SECONDS
            case "tcp":
                with socket.create_connection((readiness.host, readiness.port), timeout=1.0):
                    return True
            case "grpc":
                target = f"{readiness.host}:{readiness.port}"
                if readiness.ca_file is None:
                    channel = grpc.insecure_channel(target)
                else:
                    trusted = grpc.ssl_channel_credentials(root_certificates=Path(readiness.ca_file).read_bytes())
                    channel = grpc.secure_channel(target, trusted)
                with channel:
                    answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)
            case "http":
                scheme = "http" if readiness.ca_file is None else "https"
                url = f"{scheme}://{readiness.host}:{readiness.port}{readiness.path}"
                verify = ssl.create_default_context(cafile=readiness.ca_file) if readiness.ca_file else True
                return httpx.get(url, timeout=2.0, verify=verify).status_code == 200
    except Exception:
        return False
    return False


@dataclass(frozen=True)
class ProcessSpec:
    """One process to run: its name (also its log file's), command, extra environment, readiness."""

    name: str
    command: Sequence[str]
    readiness: Readiness
    env: Mapping[str, str] = field(default_factory=dict)  # on top of the runner's own environment
    cwd: Path | None = None

    def port(self) -> int | None:
        return self.readiness.port if self.readiness.kind != "alive" else None


@dataclass
class Record:
    """A started process, as the state file keeps it."""

    name: str
    pid: int
    start_time: str | None  # the kernel's start time of the pid (Linux); guards against a reused pid
    log: str
    readiness: Readiness
    started_at: str

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Record:
        readiness = Readiness(**data.pop("readiness"))  # type: ignore[arg-type]
        return cls(readiness=readiness, **data)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ProcessStatus:
    name: str
    pid: int
    running: bool
    ready: bool
    readiness: Readiness
    log: Path


class ProcessFailed(Exception):
    """A process died or never became ready. The message names it and quotes the end of its log."""

    def __init__(self, name: str, what: str, log: Path) -> None:
        self.name, self.what, self.log = name, what, log
        tail = log_tail(log)
        quoted = "\n".join(f"    {line}" for line in tail) if tail else "    (the log is empty)"
        super().__init__(f"{name}: {what}\n  last lines of {log}:\n{quoted}")


class PortTaken(Exception):
    """A port a process needs is in use already, most often by a copy of the app that still runs."""


def log_tail(log: Path, lines: int = TAIL_LINES) -> list[str]:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    return text.splitlines()[-lines:]


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 on (state, ppid, pgrp, …); None where there is no /proc or no such pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after the last ")".
    return stat.rsplit(")", 1)[1].split()


def _kernel_start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat: the start time in clock ticks since boot. None where there is no /proc."""
    fields = _stat_fields(pid)
    return None if fields is None else fields[19]


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PORT = 10000
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port nobody uses right now, and below the range of ephemeral ports where there is one (Linux).

    Not the one the operating system picks for port 0: that comes from the ephemeral range, which is also where
    every outgoing connection takes its local port. A process started earlier (connecting to PostgreSQL, say)
    may take it as its source port before the server meant to listen there starts, which then cannot bind.
    """
    try:
        lowest_ephemeral = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        lowest_ephemeral = 0  # no such file (macOS): let the system pick
    for _ in range(100 if lowest_ephemeral > LOWEST_PORT + 1000 else 0):
        port = random.randrange(LOWEST_PORT, lowest_ephemeral)
        if port in _handed_out:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


class ProcessRunner:
    """Starts, reports on and stops the processes recorded in one state directory."""

    def __init__(
        self,
        state_dir: Path,
        *,
        ready_timeout: float = READY_TIMEOUT_SECONDS,
        grace_seconds: float = GRACE_SECONDS,
    ) -> None:
        self.state_dir = state_dir
        self.log_dir = state_dir / "logs"
        self.state_file = state_dir / "processes.json"
        self.ready_timeout = ready_timeout
        self.grace_seconds = grace_seconds
        self._children: dict[int, subprocess.Popen[bytes]] = {}  # the ones this runner started, to reap them

    # -- the record ----------------------------------------------------------------------------------------

    def records(self) -> list[Record]:
        if not self.state_file.exists():
            return []
        return [Record.from_json(item) for item in json.loads(self.state_file.read_text())]

    def _write(self, records: Sequence[Record]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps([asdict(record) for record in records], indent=2) + "\n")

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    # -- start ---------------------------------------------------------------------------------------------

    def start(self, specs: Sequence[ProcessSpec]) -> list[Record]:
        """Start every process in order, each one ready before the next starts.

        If one dies or is not ready in time, the ones already started are stopped again and ProcessFailed is
        raised: a half-started app is worse than none. PortTaken is raised before anything starts.
        """
        running = [record.name for record in self.records() if self.is_running(record)]
        if running:
            raise PortTaken(f"already running here: {', '.join(running)} (stop them first: down)")
        for spec in specs:
            port = spec.port()
            if port is not None and _port_in_use(spec.readiness.host, port):
                raise PortTaken(f"{spec.name} needs port {port}, and something listens there already")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        records: list[Record] = []
        try:
            for spec in specs:
                record = self._spawn(spec)
                records.append(record)
                self._write(records)
                self._wait_ready(record)
        except BaseException:  # KeyboardInterrupt included: never leave half an app behind
            self.stop()
            raise
        return records

    def _spawn(self, spec: ProcessSpec) -> Record:
        log = self.log_path(spec.name)
        env = {**os.environ, **spec.env}
        env["PYTHONUNBUFFERED"] = "1"  # lines reach the log as they are written, not when a buffer fills
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with log.open("ab") as sink:
            shown = shlex.join(spec.command).replace("\n", "\\n")  # the header stays one line
            sink.write(f"----- {spec.name} started {now}: {shown}\n".encode())
            sink.flush()
            process = subprocess.Popen(
                list(spec.command),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=spec.cwd,
                start_new_session=True,  # its own session and process group: see the module docstring
            )
        self._children[process.pid] = process
        return Record(spec.name, process.pid, _kernel_start_time(process.pid), str(log), spec.readiness, now)

    def _wait_ready(self, record: Record) -> None:
        started = time.monotonic()
        deadline = started + self.ready_timeout
        log = Path(record.log)
        while True:
            if not self.is_running(record):
                code = self._exit_code(record.pid)
                status = f" with status {code}" if code is not None else ""
                raise ProcessFailed(
                    record.name, f"exited{status} before it was ready ({record.readiness.describe()})", log
                )
            if is_ready(record.readiness, age_seconds=time.monotonic() - started):
                return
            if time.monotonic() > deadline:
                raise ProcessFailed(
                    record.name,
                    f"not ready after {self.ready_timeout:.0f} s: nothing answered at {record.readiness.describe()}",
                    log,
                )
            time.sleep(POLL_SECONDS)

    # -- status --------------------------------------------------------------------------------------------

    def is_running(self, record: Record) -> bool:
        """True while the recorded process lives (a zombie of ours counts as ended, and is reaped here)."""
        self._reap(record.pid)
        try:
            os.kill(record.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return False  # the pid belongs to another user now: not ours
        fields = _stat_fields(record.pid)
        if fields is None:
            return record.start_time is None  # no /proc (macOS): trust the pid
        return fields[0] != "Z" and (record.start_time is None or fields[19] == record.start_time)

    def status(self) -> list[ProcessStatus]:
        statuses = []
        for record in self.records():
            running = self.is_running(record)
            ready = running and is_ready(record.readiness, age_seconds=ALIVE_SECONDS)
            statuses.append(ProcessStatus(record.name, record.pid, running, ready, record.readiness, Path(record.log)))
        return statuses

    # -- stop ----------------------------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Stop every recorded process, the last started first; return the names of those that needed SIGKILL."""
        killed = []
        for record in reversed(self.records()):
            # The group too: a leader that died may have left children in it.
            alive = self.is_running(record) or _group_alive(record.pid)
            if alive and not self._stop_group(record):
                killed.append(record.name)
        if self.state_file.exists():
            self.state_file.unlink()
        return killed

    def _stop_group(self, record: Record) -> bool:
        """SIGTERM to the process group, SIGKILL after the grace period. True when SIGTERM was enough."""
        group = record.pid  # start_new_session=True: the process leads a group of the same number
        _signal_group(group, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_seconds
        while time.monotonic() < deadline:
            self._reap(record.pid)
            if not _group_alive(group):
                return True
            time.sleep(POLL_SECONDS)
        _signal_group(group, signal.SIGKILL)
        deadline = time.monotonic() + self.grace_seconds  # SIGKILL cannot be refused; this only bounds the wait
        while _group_alive(group) and time.monotonic() < deadline:
            self._reap(record.pid)
            time.sleep(POLL_SECONDS)
        return False

    def _reap(self, pid: int) -> None:
        """Collect the exit status of a child of ours, so it does not linger as a zombie."""
        child = self._children.get(pid)
        if child is not None:
            child.poll()

    def _exit_code(self, pid: int) -> int | None:
        child = self._children.get(pid)
        return None if child is None else child.poll()


def _signal_group(group: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signum)


def _group_alive(group: int) -> bool:
    """True while a live (not zombie) process is in the group.

    A zombie has ended; only its parent's wait() removes it, and its parent may be busy or be us. On Linux the
    group's members are read from /proc; elsewhere signal 0 to the group tells (and counts zombies as alive).
    """
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return False
        return True
    for entry in proc.iterdir():
        fields = _stat_fields(int(entry.name)) if entry.name.isdigit() else None
        if fields is not None and int(fields[2]) == group and fields[0] != "Z":
            return True  # (a process that ended while we looked gave None)
    return False
