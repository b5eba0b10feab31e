"""``python -m workbook app up|down|status|logs``: the messenger as the six processes it is made of.

The processes, in the order they start (each ready before the next):

======== ======================================== ==========================================
auth     ``auth.grpc_server``                      gRPC health on ``settings.grpc.auth_port``
chat     ``chat.grpc_server``                      gRPC health on ``settings.grpc.chat_port``
content  ``content.grpc_server``                   gRPC health on ``settings.grpc.content_port``
gateway  ``gateway`` (FastAPI + uvicorn)           HTTP GET /openapi.json on ``settings.http.port``
relay    ``events relay`` (outbox → RabbitMQ)      stays up (it has no port)
notifier ``events notifier``                       stays up (it has no port)
======== ======================================== ==========================================

The migrations of the database run first. Any application root runs this way: reference_app/ (the default)
or a learner's exercises/ (``--app-root exercises``), mounted as the package ``app`` by workbook.launch.

**Two or more gateway nodes** (``--gateways N``). The processes are then ``gateway-1`` … ``gateway-N``, each on
a free port of its own, and one more, ``haproxy`` (workbook/balancer.py), started after them: the load balancer
listens on ``settings.http.port``, the address users open, and spreads the clients over the nodes. Its
configuration is written into the state directory (``haproxy.cfg``). With one gateway (the default) there is no
balancer: the gateway listens on ``settings.http.port`` itself.

**One key pair for all of them.** Tokens are signed by auth and verified by the others, so every process must
know the same key. Unless the settings give a signing key already, an Ed25519 pair is made once and kept in
the state directory (the private key readable by its owner only, 0600). Only auth receives the private key;
the others receive the public key, and their ``APP_JWT__SIGNING_KEY`` is set empty, which also hides a key kept
in ``.env`` from them (the environment beats .env).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from reference_app.auth.tokens import load_signing_key, private_key_pem, public_key_pem
from reference_app.config import Settings, env_var_name, load_settings

from .balancer import (
    HEALTH_PATH,
    BalancerTls,
    HaproxyMissing,
    Node,
    haproxy_binary,
    haproxy_command,
    haproxy_config,
)
from .paths import REPO_ROOT, STATE_DIR
from .processes import (
    PortTaken,
    ProbeKind,
    ProcessFailed,
    ProcessRunner,
    ProcessSpec,
    Readiness,
    free_port,
    log_tail,
)
from .tls import LocalTls, local_tls

APP_STATE_DIR = STATE_DIR / "app"
PROCESS_NAMES = ("auth", "chat", "content", "gateway", "relay", "notifier")
SIGNING_KEY_FILE = "jwt_signing_key.pem"
PUBLIC_KEY_FILE = "jwt_public_key.pem"
MIGRATION_TIMEOUT_SECONDS = 120
SIGNING_KEY_VARIABLE = env_var_name("jwt", "signing_key")
PUBLIC_KEY_VARIABLE = env_var_name("jwt", "public_key")
BALANCER = "haproxy"
BALANCER_CONFIG_FILE = "haproxy.cfg"
NODE_VARIABLE = "MESSENGER_GATEWAY_NODE"  # read by reference_app/gateway/__main__.py


def gateway_names(count: int) -> list[str]:
    """The gateway processes' names: ``gateway`` alone, or ``gateway-1`` … ``gateway-N`` behind the balancer."""
    if count < 1:
        raise ValueError(f"the app needs at least one gateway; got {count}")
    return ["gateway"] if count == 1 else [f"gateway-{number}" for number in range(1, count + 1)]


def process_names(gateways: int = 1) -> list[str]:
    """Every process of the app, in start order."""
    balancer = [BALANCER] if gateways > 1 else []
    return ["auth", "chat", "content", *gateway_names(gateways), *balancer, "relay", "notifier"]


@dataclass(frozen=True)
class Ports:
    """Where the app listens. Defaults come from the settings; tests pass free ports of their own.

    ``nodes``: with two or more gateway nodes, each node's own port; the balancer listens on ``http`` then.
    """

    http: int
    auth: int
    chat: int
    content: int
    nodes: tuple[int, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> Ports:
        grpc = settings.grpc
        return cls(settings.http.port, grpc.auth_port, grpc.chat_port, grpc.content_port)

    def with_nodes(self, count: int) -> Ports:
        """These ports with ``count`` gateway nodes: none for one gateway, else a free port for each node."""
        if count <= 1:
            return replace(self, nodes=())
        if len(self.nodes) == count:
            return self
        return replace(self, nodes=tuple(free_port() for _ in range(count)))

    def environment(self) -> dict[str, str]:
        """The variables that give these ports to every process (each needs all of them: the gateway calls the rest)."""
        return {
            env_var_name("http", "port"): str(self.http),
            env_var_name("grpc", "auth_port"): str(self.auth),
            env_var_name("grpc", "chat_port"): str(self.chat),
            env_var_name("grpc", "content_port"): str(self.content),
        }


@dataclass(frozen=True)
class KeyPair:
    private_pem: str
    public_pem: str


def key_pair(state_dir: Path, settings: Settings) -> KeyPair:
    """The JWT key pair of the app: the one in the settings if there is one, else the one kept in ``state_dir``."""
    if settings.jwt.signing_key is not None:
        key = load_signing_key(settings.jwt, settings.env)
        return KeyPair(settings.jwt.signing_key.get_secret_value(), public_key_pem(key.public_key()))
    private_file = state_dir / SIGNING_KEY_FILE
    if not private_file.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        # Written to a temporary file created with mode 0600 from the first byte (never readable by others, not
        # even for a moment), then renamed into place: an interrupted run leaves no half-written key behind.
        partial = private_file.with_name(f".{SIGNING_KEY_FILE}.{os.getpid()}")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as sink:
            sink.write(private_key_pem(key))
        os.replace(partial, private_file)
    private_pem = private_file.read_text()
    stored = load_pem_private_key(private_pem.encode(), password=None)
    if not isinstance(stored, Ed25519PrivateKey):
        raise ValueError(f"{private_file} does not hold an Ed25519 private key; delete it to make a new pair")
    # The public half is derived, never read from a second file that could disagree with it.
    public_pem = public_key_pem(stored.public_key())
    state_dir.joinpath(PUBLIC_KEY_FILE).write_text(public_pem)  # for people and tools that want to see it
    return KeyPair(private_pem, public_pem)


def launch(app_root: Path, module: str, *arguments: str) -> list[str]:
    return [sys.executable, "-m", "workbook.launch", str(app_root), module, *arguments]


def app_processes(
    app_root: Path,
    ports: Ports,
    keys: KeyPair,
    settings: Settings,
    *,
    env: Mapping[str, str] | None = None,
    balancer_config: Path | None = None,
    tls: LocalTls | None = None,
) -> list[ProcessSpec]:
    """The six processes of the app, in start order; with ``ports.nodes``, a gateway per node and the balancer
    (which runs with the configuration file ``balancer_config``). With ``tls``, every server speaks TLS only."""
    common = {**(env or {}), **ports.environment(), PUBLIC_KEY_VARIABLE: keys.public_pem}
    if tls is not None:
        common.update(tls.environment())
    grpc_host, http_host = _reachable(settings.grpc.bind_host), _reachable(settings.http.host)
    ca_file = None if tls is None else str(tls.ca_file)

    def probe(kind: ProbeKind, host: str = "127.0.0.1", port: int = 0, path: str = "/") -> Readiness:
        """How to tell a process is ready; over TLS, trusting our authority, when the app runs with TLS."""
        return Readiness(kind, host, port, path, ca_file=ca_file)

    def verifier(
        name: str, module: str, readiness: Readiness, *arguments: str, extra: Mapping[str, str] | None = None
    ) -> ProcessSpec:
        """A process that only verifies tokens: the public key, and never the private one."""
        command = launch(app_root, module, *arguments)
        # Set to empty, not only left out: the environment beats .env, so a key kept in .env stays out too.
        env = {**common, SIGNING_KEY_VARIABLE: "", **(extra or {})}
        return ProcessSpec(name, command, readiness, env=env, cwd=REPO_ROOT)

    def gateways() -> list[ProcessSpec]:
        if not ports.nodes:
            return [verifier("gateway", "gateway", probe("http", http_host, ports.http, "/openapi.json"))]
        if balancer_config is None:
            raise ValueError("two or more gateway nodes need the balancer's configuration file")
        nodes = [
            verifier(
                name,
                "gateway",
                probe("http", http_host, port, "/openapi.json"),
                extra={env_var_name("http", "port"): str(port), NODE_VARIABLE: name},
            )
            for name, port in zip(gateway_names(len(ports.nodes)), ports.nodes, strict=True)
        ]
        # Ready when a request through it reaches a node: both the balancer and a node answer then.
        balancer = ProcessSpec(
            BALANCER,
            haproxy_command(balancer_config),
            probe("http", http_host, ports.http, HEALTH_PATH),
            cwd=balancer_config.parent,
        )
        return [*nodes, balancer]

    signer = {**common, SIGNING_KEY_VARIABLE: keys.private_pem}
    return [
        ProcessSpec(
            "auth",
            launch(app_root, "auth.grpc_server"),
            probe("grpc", grpc_host, ports.auth),
            signer,
            cwd=REPO_ROOT,
        ),
        verifier("chat", "chat.grpc_server", probe("grpc", grpc_host, ports.chat)),
        verifier("content", "content.grpc_server", probe("grpc", grpc_host, ports.content)),
        *gateways(),
        verifier("relay", "events", probe("alive"), "relay"),
        verifier("notifier", "events", probe("alive"), "notifier"),
    ]


def balancer_nodes(ports: Ports, host: str) -> list[Node]:
    """The gateway nodes as the balancer reaches them."""
    return [Node(name, host, port) for name, port in zip(gateway_names(len(ports.nodes)), ports.nodes, strict=True)]


def _reachable(host: str) -> str:
    """Where to probe a server that listens on ``host``: "every interface" is reachable on the loopback."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


class MigrationFailed(Exception):
    pass


def migrate(app_root: Path, env: Mapping[str, str] | None = None) -> str:
    """Apply the app's migrations to the database of the settings (``python -m …db``); return what it said."""
    result = subprocess.run(
        launch(app_root, "db"),
        env={**os.environ, **(env or {})},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=MIGRATION_TIMEOUT_SECONDS,
    )
    said = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        raise MigrationFailed(f"the migrations failed (status {result.returncode}):\n    {said[-2000:]}")
    return said.splitlines()[-1] if said else ""


def up(
    app_root: Path,
    *,
    state_dir: Path = APP_STATE_DIR,
    ports: Ports | None = None,
    env: Mapping[str, str] | None = None,
    runner: ProcessRunner | None = None,
    say: Callable[[str], object] = lambda line: None,
    gateways: int = 1,
    tls: bool = False,
) -> ProcessRunner:
    """Migrate, then start the six processes, each ready before the next. Raises ProcessFailed, PortTaken,
    HaproxyMissing…

    ``env`` adds settings for every process (tests give their own database, exchange and Redis this way);
    it is also in force while the settings are read here. ``gateways``: how many gateway nodes; two or more
    run behind the balancer (free ports for the nodes unless ``ports.nodes`` names them). ``tls``: HTTPS and
    wss:// at the edge, TLS between the processes, with a local authority kept in the state directory.
    """
    settings = _settings_with(env or {})
    ports = (ports or Ports.from_settings(settings)).with_nodes(gateways)
    certificates = local_tls(state_dir) if tls else None
    config = None
    if ports.nodes:
        config = write_balancer_config(state_dir, ports, settings, certificates)
        haproxy_binary()  # HaproxyMissing now, before the migrations and the other processes
    runner = runner or ProcessRunner(state_dir)
    say(f"  ✓ migrations: {migrate(app_root, env)}")
    runner.start(
        app_processes(
            app_root,
            ports,
            key_pair(state_dir, settings),
            settings,
            env=env,
            balancer_config=config,
            tls=certificates,
        )
    )
    return runner


def write_balancer_config(state_dir: Path, ports: Ports, settings: Settings, tls: LocalTls | None = None) -> Path:
    """The balancer's configuration for these ports, written into the state directory (anew at every start)."""
    host = _reachable(settings.http.host)
    state_dir.mkdir(parents=True, exist_ok=True)
    config = state_dir / BALANCER_CONFIG_FILE
    balancer_tls = None if tls is None else BalancerTls(tls.combined_file, tls.ca_file)
    config.write_text(haproxy_config(settings.http.host, ports.http, balancer_nodes(ports, host), tls=balancer_tls))
    return config


def _settings_with(env: Mapping[str, str]) -> Settings:
    """The settings as the processes will see them: this environment plus ``env``, and the repository's .env."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        return load_settings(REPO_ROOT / ".env")
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# The command line: python -m workbook app … -----------------------------------------------------------------


def command_up(
    app_root: Path, ports: Ports | None, state_dir: Path = APP_STATE_DIR, *, gateways: int = 1, tls: bool = False
) -> bool:
    """Start the app and print where it listens; on failure print why (with the log's last lines)."""
    print(f"starting the app from {app_root} (logs in {state_dir / 'logs'})")
    try:
        runner = up(app_root, state_dir=state_dir, ports=ports, say=print, gateways=gateways, tls=tls)
    except (ProcessFailed, PortTaken, MigrationFailed, HaproxyMissing) as error:
        print(f"  ✗ {error}")
        if isinstance(error, PortTaken):
            print("      fix: python -m workbook app status / down; or choose other ports (--http-port …)")
        return False
    _print_status(runner)
    if tls:
        print(
            f"  TLS everywhere: open https://…; the local authority to trust is {local_tls(state_dir).ca_file}"
            " (curl --cacert it; a browser: import it, or accept the warning once)"
        )
    if gateways > 1:
        print(
            f"  the balancer ({BALANCER}) spreads the clients over {gateways} gateway nodes; "
            f"its configuration: {state_dir / BALANCER_CONFIG_FILE}"
        )
    return True


def command_down(state_dir: Path = APP_STATE_DIR) -> bool:
    runner = ProcessRunner(state_dir)
    names = [record.name for record in runner.records() if runner.is_running(record)]
    killed = runner.stop()
    if not names:
        print("the app is not running")
    for name in names:
        print(f"  {name}: stopped" + (" (needed SIGKILL)" if name in killed else ""))
    return True


def command_status(state_dir: Path = APP_STATE_DIR) -> bool:
    runner = ProcessRunner(state_dir)
    if not runner.records():
        print("the app is not running (start it: python -m workbook app up)")
        return False
    return _print_status(runner)


def _print_status(runner: ProcessRunner) -> bool:
    healthy = True
    for process in runner.status():
        healthy &= process.ready
        if process.ready:
            print(f"  ✓ {process.name:<9} pid {process.pid:<8} {process.readiness.describe()}")
        else:
            state = "running but not answering" if process.running else "not running"
            print(f"  ✗ {process.name:<9} {state}; last lines of {process.log}:")
            print("\n".join(f"      {line}" for line in log_tail(process.log, 10)))
    return healthy


def command_logs(names: list[str], lines: int, follow: bool, state_dir: Path = APP_STATE_DIR) -> bool:
    """Print the end of each log, every line prefixed with its process name; with ``follow``, keep printing."""
    runner = ProcessRunner(state_dir)
    logs = {name: runner.log_path(name) for name in (names or known_names(runner)) if runner.log_path(name).exists()}
    if not logs:
        print(f"no logs in {runner.log_dir}")
        return False
    width = max(map(len, logs))
    for name, log in logs.items():
        for line in log_tail(log, lines):
            print(f"{name:<{width}} | {line}")
    if follow:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl+C is how one stops following
            follow_logs(logs, width)
    return True


def known_names(runner: ProcessRunner) -> Sequence[str]:
    """The processes whose logs ``logs`` shows by default: those running now, else every one that left a log."""
    recorded = [record.name for record in runner.records()]
    if recorded:
        return recorded
    return sorted((log.stem for log in runner.log_dir.glob("*.log")), key=_start_order)


def _start_order(name: str) -> tuple[int, int, str]:
    """Sorts process names in start order (gateway-2 before gateway-10)."""
    kinds = process_names(gateways=2)
    kind = "gateway-1" if name.startswith("gateway") else name
    return (kinds.index(kind) if kind in kinds else len(kinds), len(name), name)


def follow_logs(logs: Mapping[str, Path], width: int) -> None:
    """Print lines as they are appended to the logs, until interrupted (``tail -f`` for several files)."""
    offsets = {name: log.stat().st_size for name, log in logs.items()}
    while True:
        for name, log in logs.items():
            with log.open("rb") as source:
                source.seek(offsets[name])
                for raw in source:
                    if not raw.endswith(b"\n"):
                        break  # half a line: read it whole next round
                    offsets[name] += len(raw)
                    print(f"{name:<{width}} | {raw.decode(errors='replace').rstrip()}", flush=True)
        time.sleep(0.2)
