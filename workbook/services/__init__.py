"""``workbook services up|down|status``: make PostgreSQL, MongoDB, Redis and RabbitMQ reachable, and say how.

Each service comes up the first of three ways that applies:

1. its URL is given in the environment (``APP_POSTGRES__URL`` …): used as it is;
2. a Docker engine answers: ``docker compose up --wait`` with the project's docker-compose.yml;
3. otherwise native, as root on Debian/Ubuntu: Debian's packages, and FerretDB for the MongoDB protocol.

A service that already answers is left alone, so a second ``up`` is fast.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from dotenv import dotenv_values

from reference_app.config import env_var_name, load_settings
from reference_app.config.settings import mask_url_password

from ..paths import MACHINE_STATE_DIR, REPO_ROOT
from . import native
from .probes import Probe, probe_mongo, probe_postgres, probe_rabbitmq, probe_redis, wait_until_ready

STATE_FILE = MACHINE_STATE_DIR / "services.json"
READY_TIMEOUT_SECONDS = 90  # a server we started may need this long to boot (RabbitMQ is the slowest)
GIVEN_TIMEOUT_SECONDS = 10  # a server given by URL should already be running


@dataclass(frozen=True)
class Service:
    name: str  # the settings section, and the docker-compose service
    label: str
    probe: Probe
    start_native: Callable[[str], None]
    stop_native: Callable[[str], None]
    native_how: str


SERVICES = (
    Service("postgres", "PostgreSQL", probe_postgres, native.start_postgres, native.stop_postgres, "Debian package postgresql"),
    Service("mongo", "MongoDB", probe_mongo, native.start_ferretdb, native.stop_ferretdb, f"FerretDB {native.FERRETDB_VERSION} on SQLite"),
    Service("redis", "Redis", probe_redis, native.start_redis, native.stop_redis, "Debian package redis-server"),
    Service("rabbitmq", "RabbitMQ", probe_rabbitmq, native.start_rabbitmq, native.stop_rabbitmq, "Debian package rabbitmq-server"),
)  # fmt: skip


class ServiceError(Exception):
    def __init__(self, service: Service, what: str, tried: str, fix: str) -> None:
        super().__init__(f"{service.label}: {what}")
        self.service, self.what, self.tried, self.fix = service, what, tried, fix

    def explain(self) -> str:
        return f"  ✗ {self.service.label}: {self.what}\n      tried: {self.tried}\n      fix:   {self.fix}"


def service_urls() -> dict[str, str]:
    settings = load_settings()
    return {service.name: getattr(settings, service.name).url for service in SERVICES}


def given_in_environment(service: Service) -> bool:
    variable = env_var_name(service.name, "url")
    return variable in os.environ or variable in dotenv_values(REPO_ROOT / ".env")


def docker_engine_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=15).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _answers(service: Service, url: str) -> str | None:
    try:
        return service.probe(url)
    except Exception:
        return None


def _read_state() -> dict[str, str]:
    return json.loads(STATE_FILE.read_text()) if STATE_FILE.exists() else {}


def _write_state(state: dict[str, str]) -> None:
    MACHINE_STATE_DIR.mkdir(parents=True, exist_ok=True)
    STATE_FILE.write_text(json.dumps(state, indent=2) + "\n")


def up() -> bool:
    """Bring every service up. Prints one line per service; True when all answer."""
    urls, state = service_urls(), _read_state()
    lines, errors = [], []
    down = [service for service in SERVICES if _answers(service, urls[service.name]) is None]
    to_start = [service for service in down if not given_in_environment(service)]
    use_docker = bool(to_start) and docker_engine_answers()
    try:
        if use_docker:
            _compose("up", "-d", "--wait", *(service.name for service in to_start))
        elif to_start:
            native.ensure_packages([service.name for service in to_start])
    except native.NativeError as error:
        errors += [ServiceError(service, str(error), "installing its packages", error.fix) for service in to_start]
        to_start = []
    for service in SERVICES:
        url = urls[service.name]
        if any(error.service is service for error in errors):
            continue
        try:
            how, version = _bring_up(service, url, service in down, service in to_start, use_docker, state)
        except ServiceError as error:
            errors.append(error)
            continue
        lines.append(f"  ✓ {service.label:<10} {version:<45} {how}\n      {mask_url_password(url)}")
    _write_state(state)
    print("\n".join(lines + [error.explain() for error in errors]))
    return not errors


def _bring_up(
    service: Service, url: str, was_down: bool, start: bool, use_docker: bool, state: dict[str, str]
) -> tuple[str, str]:
    if not was_down:
        version = _answers(service, url) or "?"
        return f"already running ({state.get(service.name, 'started outside the workbook')})", version
    if not start:
        how, tried, fix = (
            "environment",
            f"the URL in {env_var_name(service.name, 'url')}",
            "start that server, or unset the variable",
        )
    elif use_docker:
        how, tried, fix = "docker", "docker compose up", f"docker compose logs {service.name}"
    else:
        how, tried, fix = "native", service.native_how, "read the error above"
        try:
            service.start_native(url)
        except native.NativeError as error:
            raise ServiceError(service, str(error), tried, error.fix) from error
    try:
        version = wait_until_ready(service.probe, url, READY_TIMEOUT_SECONDS if start else GIVEN_TIMEOUT_SECONDS)
    except Exception as error:
        raise ServiceError(service, f"does not answer at {mask_url_password(url)}: {error}", tried, fix) from error
    state[service.name] = {
        "native": service.native_how,
        "docker": "docker compose",
        "environment": "from the environment",
    }[how]
    return f"started now ({state[service.name]})", version


def down() -> None:
    """Stop what ``up`` started. Services from the environment are left alone."""
    state, urls = _read_state(), service_urls()
    if "docker compose" in state.values():
        _compose("down")
    for service in SERVICES:
        how = state.pop(service.name, None)
        if how == service.native_how:
            service.stop_native(urls[service.name])
        if how is not None:
            print(f"  {service.label}: {'left alone' if how == 'from the environment' else 'stopped'} ({how})")
    _write_state(state)


def status() -> bool:
    urls, state = service_urls(), _read_state()
    healthy = True
    for service in SERVICES:
        version = _answers(service, urls[service.name])
        healthy &= version is not None
        how = state.get(service.name, "started outside the workbook")
        line = f"  ✓ {service.label:<10} {version:<45} {how}" if version else f"  ✗ {service.label:<10} not answering"
        print(line + f"\n      {mask_url_password(urls[service.name])}")
    if not healthy:
        print("  fix: python -m workbook services up")
    return healthy


def _compose(*arguments: str) -> None:
    subprocess.run(
        ["docker", "compose", "-f", str(REPO_ROOT / "docker-compose.yml"), *arguments], check=True, timeout=600
    )
