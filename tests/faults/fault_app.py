"""What the fault tests do to the app and to the machine: kill one process of the app and start it again through a
runner; stop and start PostgreSQL or Redis the way ``python -m workbook services up`` started them."""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from messenger_client import RunningApp

from workbook.isolated import IsolatedApp
from workbook.messenger import app_processes, key_pair
from workbook.processes import ProcessRunner
from workbook.services import _compose, _read_state, native, service_urls
from workbook.services.probes import probe_postgres, probe_redis, wait_until_ready

SERVICE_READY_SECONDS = 90
PROBES = {"postgres": probe_postgres, "redis": probe_redis}


@dataclass
class FaultApp:
    """The running app, and what it takes to start one of its processes again."""

    running: RunningApp
    isolated: IsolatedApp
    app_root: Path
    state_dir: Path
    env: dict[str, str]
    cleanup: ExitStack
    restarts: Iterator[int] = field(default_factory=itertools.count)

    def pid(self, name: str) -> int:
        """The pid of a running process of the app (the latest start of it)."""
        runners = [self.isolated.runner, *self._extra_runners]
        for runner in reversed(runners):
            for record in runner.records():
                if record.name == name and runner.is_running(record):
                    return record.pid
        raise AssertionError(f"no running process {name}")

    def alive(self, name: str) -> bool:
        try:
            self.pid(name)
        except AssertionError:
            return False
        return True

    def kill(self, name: str) -> int:
        """kill -9 the process (its whole group, as a crash of the machine's process would); return its pid."""
        pid = self.pid(name)
        os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and _state(pid) != "Z":
            assert time.monotonic() < deadline, f"{name} (pid {pid}) outlived SIGKILL"
            time.sleep(0.05)
        for runner in [self.isolated.runner, *self._extra_runners]:
            runner._reap(pid)  # collect its status, so it does not linger as a zombie
        return pid

    def start_again(self, name: str) -> float:
        """Start the process again through a runner, the same command and environment as ``app up`` gave it;
        return the seconds it took to be ready. The runner stops it with the rest of the app at the end."""
        settings = self.isolated.settings
        specs = app_processes(
            self.app_root, self.isolated.ports, key_pair(self.state_dir, settings), settings, env=self.env
        )
        spec = next(spec for spec in specs if spec.name == name)
        runner = ProcessRunner(self.state_dir / f"restarted-{next(self.restarts)}")
        self._extra_runners.append(runner)
        self.cleanup.callback(runner.stop)
        started = time.monotonic()
        runner.start([spec])
        return time.monotonic() - started

    def __post_init__(self) -> None:
        self._extra_runners: list[ProcessRunner] = []


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


# The machine's services ------------------------------------------------------------------------------------------


def how_started(service: str) -> str:
    """native or docker; skips a test whose service the workbook did not start (not ours to stop)."""
    method = _read_state().get(service)
    if method not in ("native", "docker"):
        pytest.skip(f"{service} was not started by the workbook ({method or 'unknown'}): it is not ours to stop")
    return method


def _url(service: str) -> str:
    """The machine's service (not the app's own database in it): the URL ``services up`` used."""
    return service_urls()[service]


def stop_service(service: str) -> None:
    if how_started(service) == "docker":
        _compose("stop", service)
    else:
        {"postgres": native.stop_postgres, "redis": native.stop_redis}[service](_url(service))


def start_service(service: str) -> None:
    """Start it again and wait until it answers."""
    if how_started(service) == "docker":
        _compose("start", service)
    else:
        {"postgres": native.start_postgres, "redis": native.start_redis}[service](_url(service))
    wait_until_ready(PROBES[service], _url(service), SERVICE_READY_SECONDS)


def service_answers(service: str) -> bool:
    try:
        PROBES[service](_url(service))
    except Exception:
        return False
    return True


@contextmanager
def service_down(service: str) -> Iterator[None]:
    """The service stopped for the block; started again at its end, whatever happened inside (and checked)."""
    how_started(service)  # skip now, before anything is stopped
    try:
        stop_service(service)
        yield
    finally:
        if not service_answers(service):
            start_service(service)
