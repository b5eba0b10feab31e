"""The process runner behind ``python -m workbook app``, with small stand-in processes instead of the app.

The stand-ins are one-line Python programs: a server on a TCP port, one that crashes, one that never listens,
one that refuses SIGTERM, one that starts a child of its own. The real app runs in tests/e2e/.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reference_app.auth.tokens import load_public_key_pem, private_key_pem
from reference_app.config import Settings, load_settings
from reference_app.config.settings import JwtSettings
from workbook.balancer import HaproxyMissing, Node, haproxy_binary, haproxy_config
from workbook.isolated import free_port
from workbook.messenger import (
    NODE_VARIABLE,
    PUBLIC_KEY_VARIABLE,
    SIGNING_KEY_VARIABLE,
    KeyPair,
    Ports,
    app_processes,
    command_status,
    key_pair,
    write_balancer_config,
)
from workbook.processes import PortTaken, ProcessFailed, ProcessRunner, ProcessSpec, Readiness

SERVE = """
import socket, sys, time
server = socket.socket(); server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1]))); server.listen()
print("listening on", sys.argv[1], flush=True)
while True:
    time.sleep(1)
"""
CRASH = "import sys; print('connecting to the database'); print('boom: the database is down'); sys.exit(3)"
IGNORE_TERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True)\nwhile True: time.sleep(1)"
WITH_CHILD = "import subprocess, sys, time; child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); print(child.pid, flush=True)\nwhile True: time.sleep(1)"


def python(code: str, *arguments: str) -> list[str]:
    return [sys.executable, "-c", code, *arguments]


def server(name: str) -> ProcessSpec:
    port = free_port()
    return ProcessSpec(name, python(SERVE, str(port)), Readiness("tcp", "127.0.0.1", port))


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[ProcessRunner]:
    runner = ProcessRunner(tmp_path / "state", ready_timeout=30, grace_seconds=2)
    yield runner
    runner.stop()  # whatever a failed test left running


def test_start_waits_until_each_process_is_ready_and_status_reports_them(runner: ProcessRunner) -> None:
    records = runner.start([server("first"), server("second")])

    assert [record.name for record in records] == ["first", "second"], "processes start in the order given"
    statuses = runner.status()
    assert [(status.name, status.running, status.ready) for status in statuses] == [
        ("first", True, True),
        ("second", True, True),
    ], "both processes should be reported running and answering on their ports"
    for name in ("first", "second"):
        log = runner.log_path(name).read_text()
        assert log.startswith(f"----- {name} started"), "each log should begin with a header naming the process"
        assert "listening on" in log, f"what {name} printed should be in its own log file, {name}.log"


def test_status_and_stop_work_from_another_runner_like_a_second_terminal(runner: ProcessRunner) -> None:
    records = runner.start([server("first"), server("second")])
    other_terminal = ProcessRunner(runner.state_dir, grace_seconds=2)

    assert [status.running for status in other_terminal.status()] == [True, True], (
        "a runner reading the same state directory should see the processes the first one started"
    )
    assert other_terminal.stop() == [], "processes that obey SIGTERM should not need SIGKILL"
    assert not any(alive(record.pid) for record in records), "stop should end every recorded process"
    assert other_terminal.records() == [], "after stop nothing should be recorded as running"


def test_stop_ends_the_whole_process_group_children_included(runner: ProcessRunner) -> None:
    spec = ProcessSpec("parent", python(WITH_CHILD), Readiness("alive"))
    (record,) = runner.start([spec])
    child_pid = int(runner.log_path("parent").read_text().splitlines()[-1])
    assert alive(child_pid), "the stand-in should have started a child process"

    runner.stop()

    assert not alive(record.pid), "the process itself should be stopped"
    assert not alive(child_pid), "the child the process started should be stopped too: no orphans"


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period(runner: ProcessRunner) -> None:
    spec = ProcessSpec("stubborn", python(IGNORE_TERM), Readiness("alive"))
    (record,) = runner.start([spec])

    killed = runner.stop()

    assert killed == ["stubborn"], "stop should report that the process needed SIGKILL"
    assert not alive(record.pid), "a process that refuses SIGTERM must still end (SIGKILL)"


def test_a_process_that_dies_is_named_with_the_end_of_its_log(runner: ProcessRunner) -> None:
    first = server("first")
    crashing = ProcessSpec("crasher", python(CRASH), Readiness("tcp", "127.0.0.1", free_port()))

    with pytest.raises(ProcessFailed) as failure:
        runner.start([first, crashing])

    message = str(failure.value)
    assert message.startswith("crasher:"), f"the error should name the process that died; got: {message}"
    assert "status 3" in message, f"the error should give the exit status; got: {message}"
    assert "boom: the database is down" in message, f"the error should quote the end of the log; got: {message}"
    assert runner.records() == [], "after a failed start nothing should be left running (no half-started app)"
    assert runner.status() == []


def test_a_process_that_never_gets_ready_fails_the_start_and_is_stopped(tmp_path: Path) -> None:
    runner = ProcessRunner(tmp_path / "state", ready_timeout=1, grace_seconds=2)
    silent = ProcessSpec("silent", python(IGNORE_TERM), Readiness("tcp", "127.0.0.1", free_port()))

    with pytest.raises(ProcessFailed, match=r"^silent: not ready after 1 s") as failure:
        runner.start([silent])

    last_line = str(failure.value).splitlines()[-1]
    assert last_line.strip() == "ready", f"the log tail should end with what the process printed; got {last_line!r}"
    assert runner.records() == [], "a process that never got ready should be stopped again"


def test_a_taken_port_stops_the_start_before_anything_runs(runner: ProcessRunner) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        spec = ProcessSpec("late", python(SERVE, str(port)), Readiness("tcp", "127.0.0.1", port))

        with pytest.raises(PortTaken, match=f"late needs port {port}"):
            runner.start([server("first"), spec])

    assert runner.records() == [], "nothing should have been started"


def test_a_second_start_in_the_same_state_directory_is_refused(runner: ProcessRunner) -> None:
    runner.start([server("first")])

    with pytest.raises(PortTaken, match="already running here: first"):
        runner.start([server("second")])


@pytest.fixture
def settings_without_key() -> Settings:
    return load_settings().model_copy(update={"jwt": JwtSettings()})


def test_the_key_pair_is_made_once_private_to_its_owner_and_reused(
    tmp_path: Path, settings_without_key: Settings
) -> None:
    first = key_pair(tmp_path, settings_without_key)
    again = key_pair(tmp_path, settings_without_key)

    assert first == again, "a second start should reuse the key pair, or tokens issued before would stop working"
    mode = stat.S_IMODE(os.stat(tmp_path / "jwt_signing_key.pem").st_mode)
    assert mode == 0o600, f"the private key file should be readable by its owner only (0600), not {oct(mode)}"
    assert "PRIVATE KEY" in first.private_pem and "PUBLIC KEY" in first.public_pem
    assert load_public_key_pem(first.public_pem) is not None


def test_only_auth_receives_the_private_key_and_every_process_the_ports(tmp_path: Path) -> None:
    keys = KeyPair(private_pem="PRIVATE", public_pem="PUBLIC")
    ports = Ports(http=18000, auth=18051, chat=18052, content=18053)

    specs = {spec.name: spec for spec in app_processes(tmp_path, ports, keys, load_settings())}

    assert list(specs) == ["auth", "chat", "content", "gateway", "relay", "notifier"]
    assert specs["auth"].env[SIGNING_KEY_VARIABLE] == "PRIVATE", "auth signs tokens: it needs the private key"
    for name, spec in specs.items():
        assert spec.env[PUBLIC_KEY_VARIABLE] == "PUBLIC", f"{name} should receive the public key"
        assert spec.env["APP_HTTP__PORT"] == "18000" and spec.env["APP_GRPC__CHAT_PORT"] == "18052"
        if name != "auth":
            assert spec.env.get(SIGNING_KEY_VARIABLE) == "", (
                f"{name} must not receive the private key, nor read one from .env: its variable is set empty"
            )
    assert specs["gateway"].readiness == Readiness("http", "127.0.0.1", 18000, "/openapi.json")
    assert specs["chat"].readiness == Readiness("grpc", "127.0.0.1", 18052)


def test_two_gateway_nodes_get_ports_and_names_of_their_own_and_the_balancer_the_http_port(tmp_path: Path) -> None:
    keys = KeyPair(private_pem="PRIVATE", public_pem="PUBLIC")
    ports = Ports(http=18000, auth=18051, chat=18052, content=18053, nodes=(18001, 18002))
    settings = load_settings()
    config = write_balancer_config(tmp_path, ports, settings)

    specs = {spec.name: spec for spec in app_processes(tmp_path, ports, keys, settings, balancer_config=config)}

    assert list(specs) == ["auth", "chat", "content", "gateway-1", "gateway-2", "haproxy", "relay", "notifier"]
    for name, port in (("gateway-1", "18001"), ("gateway-2", "18002")):
        assert specs[name].env["APP_HTTP__PORT"] == port, f"{name} listens on its own port"
        assert specs[name].env[NODE_VARIABLE] == name, f"{name} should know its name (X-Gateway-Node)"
        assert specs[name].env.get(SIGNING_KEY_VARIABLE) == "", f"{name} must not receive the private key"
        assert specs[name].readiness == Readiness("http", "127.0.0.1", int(port), "/openapi.json")
    balancer = specs["haproxy"]
    assert balancer.readiness == Readiness("http", "127.0.0.1", 18000, "/healthz"), "ready once it reaches a node"
    assert balancer.command[1:] == ["-db", "-f", str(config)], "haproxy runs in the foreground, for the runner"
    assert not any("KEY" in name for name in balancer.env), "the balancer gets no key at all"
    assert specs["relay"].env["APP_HTTP__PORT"] == "18000"
    text = config.read_text()
    assert "bind 127.0.0.1:18000" in text
    assert "server gateway-1 127.0.0.1:18001" in text and "server gateway-2 127.0.0.1:18002" in text
    for line in ("timeout tunnel 1h", "http-check send meth GET uri /healthz", "balance leastconn"):
        assert line in text, f"the balancer's configuration should say {line!r}"


@pytest.mark.parametrize("resolver", [None, "127.0.0.11:53"])
def test_haproxy_accepts_the_configuration(tmp_path: Path, resolver: str | None) -> None:
    try:
        haproxy = haproxy_binary()
    except HaproxyMissing as error:
        pytest.fail(str(error))
    config = tmp_path / "haproxy.cfg"
    nodes = [Node("gateway-1", "127.0.0.1", 18001), Node("gateway-2", "127.0.0.1", 18002)]
    config.write_text(haproxy_config("127.0.0.1", 18000, nodes, resolver=resolver))

    checked = subprocess.run([haproxy, "-c", "-f", str(config)], capture_output=True, text=True, timeout=30)

    assert checked.returncode == 0, f"haproxy -c refuses the configuration:\n{checked.stdout}{checked.stderr}"
    assert "WARNING" not in checked.stdout + checked.stderr, checked.stdout + checked.stderr
    broken = config.read_text().replace("timeout tunnel 1h", "timeout tunnel one hour")
    config.write_text(broken)
    refused = subprocess.run([haproxy, "-c", "-f", str(config)], capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0, "haproxy -c should refuse a broken configuration (or this test checks nothing)"


def test_a_signing_key_in_the_settings_is_used_instead_of_a_new_one(
    tmp_path: Path, settings_without_key: Settings
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from pydantic import SecretStr

    pem = private_key_pem(Ed25519PrivateKey.generate())
    settings = settings_without_key.model_copy(update={"jwt": JwtSettings(signing_key=SecretStr(pem))})

    keys = key_pair(tmp_path, settings)

    assert keys.private_pem == pem, "a key the settings give should be the one auth signs with"
    assert not (tmp_path / "jwt_signing_key.pem").exists(), "no second key should be made"


def test_status_names_a_process_that_died_after_the_start_with_its_log_tail(
    runner: ProcessRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    records = runner.start([server("first"), server("second")])
    os.kill(records[1].pid, signal.SIGKILL)
    while alive(records[1].pid):  # the kernel delivers the signal a moment later
        time.sleep(0.05)

    healthy = command_status(runner.state_dir)

    printed = capsys.readouterr().out
    assert not healthy, "status should report a problem when a process has died"
    assert "✓ first" in printed, f"the process still running should be reported running; got:\n{printed}"
    assert "✗ second    not running" in printed, f"the dead process should be named; got:\n{printed}"
    assert "listening on" in printed, f"the end of the dead process's log should be shown; got:\n{printed}"
