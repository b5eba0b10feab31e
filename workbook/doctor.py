"""``workbook doctor``: is this machine ready for the course? Every problem is printed with its fix."""

from __future__ import annotations

import socket
import sys
from importlib import metadata

from packaging.requirements import InvalidRequirement, Requirement

from reference_app.config import load_settings

from .paths import REPO_ROOT
from .services import SERVICES, service_urls

INSTALL_FIX = "make install   (or: .venv/bin/pip install -r requirements.txt)"


def pinned_packages() -> dict[str, str]:
    """Each package pinned with == in requirements.txt and meant for this machine (its marker, if any, holds)."""
    pins: dict[str, str] = {}
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        try:
            requirement = Requirement(line.split("#")[0].strip())
        except InvalidRequirement:
            continue  # a comment or an empty line
        exact = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        if exact and (requirement.marker is None or requirement.marker.evaluate()):
            pins[requirement.name] = exact[0]
    return pins


def check_python() -> list[str]:
    # Nothing older can get this far: reference_app needs 3.11, and the Makefile says so before installing.
    print(f"  ✓ Python {'.'.join(map(str, sys.version_info[:3]))} ({sys.executable})")
    return []


def check_packages() -> list[str]:
    problems = []
    pins = pinned_packages()
    for name, wanted in pins.items():
        try:
            found = metadata.version(name)
        except metadata.PackageNotFoundError:
            problems.append(f"  ✗ package {name} is not installed (want {wanted})\n      fix: {INSTALL_FIX}")
            continue
        if found != wanted:
            problems.append(f"  ✗ package {name} is {found}, want {wanted}\n      fix: {INSTALL_FIX}")
    if not problems:
        print(f"  ✓ all {len(pins)} pinned packages installed at their pinned versions")
    return problems


def check_services() -> list[str]:
    problems = []
    urls = service_urls()
    for service in SERVICES:
        try:
            print(f"  ✓ {service.label:<10} {service.probe(urls[service.name])}")
        except Exception as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            problems.append(f"  ✗ {service.label} does not answer: {reason}\n      fix: python -m workbook services up")
    return problems


def check_ports() -> list[str]:
    settings = load_settings(REPO_ROOT / ".env")
    wanted = {
        "APP_HTTP__PORT": settings.http.port,
        "APP_GRPC__AUTH_PORT": settings.grpc.auth_port,
        "APP_GRPC__CHAT_PORT": settings.grpc.chat_port,
        "APP_GRPC__CONTENT_PORT": settings.grpc.content_port,
    }
    problems = []
    for variable, port in wanted.items():
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                problems.append(
                    f"  ✗ port {port} ({variable}) is taken\n      fix: stop what listens there, or set {variable}"
                )
    if not problems:
        print(f"  ✓ the app's ports are free: {', '.join(str(port) for port in wanted.values())}")
    return problems


def doctor() -> bool:
    problems: list[str] = []
    for title, check in (
        ("Python", check_python),
        ("Packages", check_packages),
        ("Services", check_services),
        ("Ports", check_ports),
    ):
        print(title)
        found = check()
        problems += found
        for problem in found:
            print(problem)
    print(f"\n{'Ready to go.' if not problems else f'{len(problems)} problem(s): fix them from the top, then rerun.'}")
    return not problems
