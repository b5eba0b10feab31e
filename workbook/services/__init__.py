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
    settings = load_settings(REPO_ROOT / ".env")
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


def _describe(service: Service, method: str | None) -> str:
    """How a service came up, in words. The state file keeps only the method: native, docker or environment."""
    return {
        "native": service.native_how,
        "docker": "docker compose",
        "environment": "from the environment",
    }.get(method or "", "started outside the workbook")


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
    method = "docker" if to_start and docker_engine_answers() else "native"
    try:
        if to_start and method == "docker":
            _compose("up", "-d", "--wait", *(service.name for service in to_start))
        elif to_start:
            native.ensure_packages([service.name for service in to_start])
    except native.NativeError as error:
        tried = "docker compose up" if method == "docker" else "installing its packages"
        errors += [ServiceError(service, str(error), tried, error.fix) for service in to_start]
    for service in SERVICES:
        url = urls[service.name]
        if any(error.service is service for error in errors):
            continue
        if service not in down:
            how = f"already running ({_describe(service, state.get(service.name))})"
            lines.append(_line(service, _answers(service, url) or "?", how, url))
            continue
        started_by = method if service in to_start else "environment"
        try:
            version = _bring_up(service, url, started_by)
        except ServiceError as error:
            errors.append(error)
            continue
        state[service.name] = started_by
        lines.append(_line(service, version, f"started now ({_describe(service, started_by)})", url))
    _write_state(state)
    print("\n".join(lines + [error.explain() for error in errors]))
    return not errors


def _line(service: Service, version: str, how: str, url: str) -> str:
    return f"  ✓ {service.label:<10} {version:<45} {how}\n      {mask_url_password(url)}"


def _bring_up(service: Service, url: str, method: str) -> str:
    """Start one service the given way (unless it comes from the environment) and wait until it answers."""
    tried, fix, timeout = {
        "environment": (f"the URL in {env_var_name(service.name, 'url')}", "start that server, or unset the variable", GIVEN_TIMEOUT_SECONDS),
        "docker": ("docker compose up", f"docker compose logs {service.name}", READY_TIMEOUT_SECONDS),
        "native": (service.native_how, "read the error above", READY_TIMEOUT_SECONDS),
    }[method]  # fmt: skip
    if method == "native":
        try:
            service.start_native(url)
        except native.NativeError as error:
            raise ServiceError(service, str(error), tried, error.fix) from error
    try:
        return wait_until_ready(service.probe, url, timeout)
    except Exception as error:
        raise ServiceError(service, f"does not answer at {mask_url_password(url)}: {error}", tried, fix) from error


def down() -> bool:
    """Stop what ``up`` started. Services from the environment are left alone. True when all stopped."""
    state, urls = _read_state(), service_urls()
    failures = 0
    if "docker" in state.values():
        try:
            _compose("down")
        except native.NativeError as error:
            print(f"  ✗ docker compose down: {error}")
            failures += 1
    for service in SERVICES:
        method = state.pop(service.name, None)
        if method == "native":
            try:
                service.stop_native(urls[service.name])
            except native.NativeError as error:
                print(f"  ✗ {service.label}: {error}")
                failures += 1
                state[service.name] = method
                continue
        if method is not None:
            verb = "left alone" if method == "environment" else "stopped"
            print(f"  {service.label}: {verb} ({_describe(service, method)})")
    _write_state(state)
    return failures == 0


def status() -> bool:
    urls, state = service_urls(), _read_state()
    healthy = True
    for service in SERVICES:
        version = _answers(service, urls[service.name])
        healthy &= version is not None
        if version:
            print(_line(service, version, _describe(service, state.get(service.name)), urls[service.name]))
        else:
            print(f"  ✗ {service.label:<10} not answering\n      {mask_url_password(urls[service.name])}")
    if not healthy:
        print("  fix: python -m workbook services up")
    return healthy


def _compose(*arguments: str) -> None:
    compose = ["docker", "compose", "-f", str(REPO_ROOT / "docker-compose.yml"), *arguments]
    native.run(compose, timeout=600)
