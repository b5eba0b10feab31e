"""Services from the operating system, for machines without a Docker engine (CI and the development machines).

PostgreSQL, Redis and RabbitMQ come from Debian's packages; the MongoDB wire protocol comes from FerretDB v1,
built once with Go and run on its SQLite backend. Everything here needs root on Debian or Ubuntu.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..paths import MACHINE_STATE_DIR

FERRETDB_VERSION = "v1.24.2"
FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "messenger-workbook"
FERRETDB_BINARY = CACHE_DIR / f"ferretdb-{FERRETDB_VERSION}"

DEBIAN_PACKAGES = {"postgres": ["postgresql"], "redis": ["redis-server"], "rabbitmq": ["rabbitmq-server"], "mongo": []}


class NativeError(Exception):
    def __init__(self, what: str, fix: str) -> None:
        super().__init__(what)
        self.fix = fix


def run(
    command: list[str],
    *,
    input_text: str | None = None,
    timeout: float = 120,
    check: bool = True,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise with its own words. Secrets go in ``input_text`` or ``env``, never in ``command``."""
    shown = " ".join(command[:3])  # enough to name the command, never its arguments
    try:
        result = subprocess.run(
            command, input=input_text, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd
        )
    except FileNotFoundError as error:
        raise NativeError(
            f"{command[0]} is not installed", f"install the package that provides {command[0]}"
        ) from error
    except subprocess.TimeoutExpired as error:
        raise NativeError(f"`{shown} …` did not finish in {timeout:.0f} s", "look at the service's own log") from error
    if check and result.returncode != 0:
        output = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise NativeError(f"`{shown} …` failed: {' / '.join(output)}", "read the message above; rerun with the fix")
    return result


def ensure_packages(services: list[str]) -> list[str]:
    """Install the Debian packages the services need. Returns what was installed."""
    wanted = [package for service in services for package in DEBIAN_PACKAGES[service]]
    missing = [package for package in wanted if not _installed(package)]
    if not missing:
        return []
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise NativeError(
            f"missing packages {', '.join(missing)} and no way to install them (needs root on Debian/Ubuntu)",
            f"sudo apt-get install {' '.join(missing)}; or start Docker and rerun; or set APP_*__URL to running services",
        )
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], env=environment, timeout=900)
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=environment, timeout=900)
    return missing


def _installed(package: str) -> bool:
    if not shutil.which("dpkg-query"):
        return False  # not Debian: ensure_packages explains what to do instead
    result = run(["dpkg-query", "-W", "-f=${Status}", package], check=False)
    return result.returncode == 0 and result.stdout == "install ok installed"


# PostgreSQL ------------------------------------------------------------------------------------------------------


def start_postgres(url: str) -> None:
    parts = urlsplit(url)
    port = parts.port or 5432
    version, cluster_port, status = _postgres_cluster()
    if cluster_port != port:
        raise NativeError(
            f"the PostgreSQL cluster {version}/main listens on port {cluster_port}, the settings ask for {port}",
            f"set APP_POSTGRES__URL to use port {cluster_port}",
        )
    if status != "online":
        run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"])
    user, password = unquote(parts.username or "postgres"), unquote(parts.password or "")
    database = parts.path.lstrip("/") or user
    # Idempotent: create the role and the database only when missing; keep the password in step with the settings.
    # The values travel in the environment (psql's \\getenv), never on a command line that `ps` shows to everyone.
    script = """
\\getenv user WORKBOOK_USER
\\getenv password WORKBOOK_PASSWORD
\\getenv database WORKBOOK_DATABASE
SELECT format('CREATE ROLE %I LOGIN CREATEDB', :'user') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \\gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'user', :'password') \\gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'database', :'user') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'database') \\gexec
"""
    environment = {**os.environ, "WORKBOOK_USER": user, "WORKBOOK_PASSWORD": password, "WORKBOOK_DATABASE": database}
    command = ["runuser", "-u", "postgres", "--", "psql", "-p", str(port), "-q", "-v", "ON_ERROR_STOP=1"]
    _retry(lambda: run(command, input_text=script, timeout=30, env=environment), seconds=30)


def _postgres_cluster() -> tuple[str, int, str]:
    """(version, port, status) of the 'main' cluster, created when there is none."""
    clusters = [line.split() for line in run(["pg_lsclusters", "--no-header"]).stdout.splitlines() if line.strip()]
    main = [cluster for cluster in clusters if cluster[1] == "main"]
    if not main:
        versions = sorted(Path("/usr/lib/postgresql").iterdir(), key=lambda path: int(path.name))
        run(["pg_createcluster", versions[-1].name, "main"])
        return _postgres_cluster()
    version, _, port, status = main[-1][:4]
    return version, int(port), status


def stop_postgres(url: str) -> None:
    version, _, status = _postgres_cluster()
    if status == "online":
        run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "stop"])


# Redis -----------------------------------------------------------------------------------------------------------


def start_redis(url: str) -> None:
    port = urlsplit(url).port or 6379
    directory = MACHINE_STATE_DIR / "redis"
    directory.mkdir(parents=True, exist_ok=True)
    run(
        [
            "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", str(port),
            "--dir", str(directory), "--pidfile", str(directory / "redis.pid"), "--logfile", str(directory / "redis.log"),
        ]
    )  # fmt: skip


def stop_redis(url: str) -> None:
    run(["redis-cli", "-u", url, "shutdown"])


# RabbitMQ --------------------------------------------------------------------------------------------------------


def start_rabbitmq(url: str) -> None:
    run(["rabbitmq-plugins", "enable", "--offline", "rabbitmq_management"])
    if run(["rabbitmqctl", "status"], check=False, timeout=60).returncode != 0:
        run(["rabbitmq-server", "-detached"])
    # The node takes a few seconds to boot; until then every rabbitmqctl command fails at once.
    _retry(lambda: run(["rabbitmqctl", "await_startup", "--timeout", "60"], timeout=70), seconds=90)
    parts = urlsplit(url)
    user, password = unquote(parts.username or "guest"), unquote(parts.password or "guest")
    vhost = unquote(parts.path.lstrip("/")) or "/"
    run(["rabbitmqctl", "add_vhost", vhost], check=False)  # already there is fine
    if user != "guest":
        existing = run(["rabbitmqctl", "list_users", "--quiet", "--no-table-headers"]).stdout.split()
        # Without a password argument rabbitmqctl reads it from stdin, so it never shows in `ps`.
        action = "change_password" if user in existing else "add_user"
        run(["rabbitmqctl", action, user], input_text=password)
        run(["rabbitmqctl", "set_user_tags", user, "administrator"])
    run(["rabbitmqctl", "set_permissions", "-p", vhost, user, ".*", ".*", ".*"])


def stop_rabbitmq(url: str) -> None:
    run(["rabbitmqctl", "stop"], timeout=60)


# FerretDB (the MongoDB wire protocol) ----------------------------------------------------------------------------


def build_ferretdb() -> Path:
    """Build FerretDB once per machine into the user's cache. A second call returns at once."""
    if FERRETDB_BINARY.exists():
        return FERRETDB_BINARY
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        raise NativeError("Go is not installed, and FerretDB is built with it", "install Go 1.24 or newer, then rerun")
    environment = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    # `go install ...@v1.24.2` builds a binary that panics at start: the module archive lacks the
    # build/version/version.txt file that FerretDB's release process writes. So build from a copy with it.
    source = run(
        [go, "mod", "download", "-json", f"{FERRETDB_MODULE}@{FERRETDB_VERSION}"], timeout=600, env=environment
    )
    module_dir = Path(json.loads(source.stdout)["Dir"])
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ferretdb-src-", dir=CACHE_DIR) as scratch:
        tree = Path(scratch) / "FerretDB"
        shutil.copytree(module_dir, tree)
        for path in tree.rglob("*"):
            path.chmod(path.stat().st_mode | 0o200)
        (tree / "build" / "version" / "version.txt").write_text(FERRETDB_VERSION + "\n")
        partial = FERRETDB_BINARY.with_suffix(".partial")
        build = [go, "build", "-trimpath", "-o", str(partial), "./cmd/ferretdb"]
        result = run(build, cwd=tree, env=environment, timeout=1200, check=False)
        if result.returncode != 0 and "linkname" in result.stderr:
            # Newer Go linkers refuse some go:linkname uses in FerretDB's dependencies unless told not to check.
            build.insert(3, "-ldflags=-checklinkname=0")
            result = run(build, cwd=tree, env=environment, timeout=1200, check=False)
        if result.returncode != 0:
            raise NativeError(
                f"building FerretDB failed: {result.stderr.strip()[-500:]}", "check Go (1.24+) and the Go module proxy"
            )
        partial.rename(FERRETDB_BINARY)
    return FERRETDB_BINARY


def start_ferretdb(url: str) -> None:
    parts = urlsplit(url)
    binary = build_ferretdb()
    directory = MACHINE_STATE_DIR / "ferretdb"
    (directory / "data").mkdir(parents=True, exist_ok=True)
    with (directory / "ferretdb.log").open("ab") as log:
        process = subprocess.Popen(
            [
                str(binary), "--handler=sqlite", f"--sqlite-url=file:{directory / 'data'}/",
                f"--listen-addr={parts.hostname or '127.0.0.1'}:{parts.port or 27017}",
                f"--state-dir={directory}", "--debug-addr=-", "--telemetry=disable", "--log-level=warn",
            ],
            stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
    time.sleep(0.2)
    if process.poll() is not None:
        raise NativeError(
            f"FerretDB exited at once with status {process.returncode}",
            f"read {directory / 'ferretdb.log'}; is port {parts.port or 27017} taken?",
        )
    (directory / "ferretdb.pid").write_text(str(process.pid))


def stop_ferretdb(url: str) -> None:
    pid_file = MACHINE_STATE_DIR / "ferretdb" / "ferretdb.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    # The pid may have been reused since: only signal a process that runs our FerretDB binary.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/exe").resolve() == FERRETDB_BINARY.resolve():
            os.kill(pid, signal.SIGTERM)
    pid_file.unlink()


def _retry(action: Callable[[], object], *, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            action()
            return
        except NativeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
