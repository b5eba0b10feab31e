"""The dependency rule of clean architecture, on the app's own code: the inner layers know nothing of the outer ones.

A domain module (entities and rules) imports only the standard library and other domain modules: no database
driver, no web or RPC framework, no adapter. A use-case module imports the domain and ports, never an adapter
or a framework. Lesson 11 explains why; this test keeps it true as the code grows.
"""

import ast
import sys
from pathlib import Path

import pytest

from workbook.paths import REFERENCE_ROOT

DOMAIN_MODULES = sorted(REFERENCE_ROOT.glob("*/domain.py"))
USE_CASE_MODULES = [REFERENCE_ROOT / "chat" / "service.py", REFERENCE_ROOT / "content" / "ports.py"]
FRAMEWORKS = {
    "fastapi",
    "starlette",
    "grpc",
    "psycopg",
    "psycopg_pool",
    "pymongo",
    "gridfs",
    "redis",
    "pika",
    "uvicorn",
}


def imported(source: str) -> list[tuple[str, int]]:
    """Each import of a module as (name, level): level 0 is absolute, 1 is `.name`, 2 is `..name`."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level))
    return found


def domain_violations(source: str) -> list[str]:
    """What a domain module imports beyond the standard library and other domain modules."""
    wrong = []
    for name, level in imported(source):
        if level == 0 and name.split(".")[0] not in sys.stdlib_module_names | {"__future__"}:
            wrong.append(name)
        elif level > 0 and name.split(".")[-1] != "domain":
            wrong.append("." * level + name)
    return wrong


def use_case_violations(source: str) -> list[str]:
    """What a use-case module imports that belongs to an outer layer: a framework, a driver or an adapter."""
    return [
        "." * level + name
        for name, level in imported(source)
        if (level == 0 and name.split(".")[0] in FRAMEWORKS) or "adapters" in name.split(".") or "grpc_api" in name
    ]


def test_the_checks_catch_what_they_forbid() -> None:
    assert domain_violations("import psycopg\nfrom ..adapters.postgres import X\nfrom .domain import Y\n") == [
        "psycopg",
        "..adapters.postgres",
    ]
    assert use_case_violations(
        "from fastapi import FastAPI\nfrom .adapters.mongo import Store\nfrom .domain import Post\n"
    ) == [
        "fastapi",
        ".adapters.mongo",
    ]


@pytest.mark.parametrize("module", DOMAIN_MODULES, ids=lambda path: str(path.relative_to(REFERENCE_ROOT)))
def test_a_domain_module_imports_only_the_standard_library(module: Path) -> None:
    wrong = domain_violations(module.read_text(encoding="utf-8"))
    assert not wrong, f"{module.relative_to(REFERENCE_ROOT)} is domain code; it must not import {wrong}"


@pytest.mark.parametrize("module", USE_CASE_MODULES, ids=lambda path: str(path.relative_to(REFERENCE_ROOT)))
def test_a_use_case_module_imports_no_adapter_and_no_framework(module: Path) -> None:
    wrong = use_case_violations(module.read_text(encoding="utf-8"))
    assert not wrong, f"{module.relative_to(REFERENCE_ROOT)} holds use cases; it must not import {wrong}"


def test_there_is_a_domain_module_per_service() -> None:
    assert {path.parent.name for path in DOMAIN_MODULES} >= {"auth", "chat", "content"}
