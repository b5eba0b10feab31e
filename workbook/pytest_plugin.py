"""The pytest side of the workbook: choose the application root, select exercises, report results as JSON.

Loaded for every test run through ``addopts`` in pyproject.toml.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from .approot import mount_app
from .paths import REFERENCE_ROOT


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("workbook")
    group.addoption(
        "--app-root",
        default=os.environ.get("WORKBOOK_APP_ROOT", str(REFERENCE_ROOT)),
        help="the application root the stage tests import as `app` (default: reference_app/)",
    )
    group.addoption("--exercise", action="append", default=[], help="run only the tests of this exercise id")
    group.addoption("--workbook-report", help="write each test's outcome and failure message to this JSON file")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    # Before any conftest is imported: tests/stages/conftest.py itself imports `app`.
    mount_app(Path(early_config.known_args_namespace.app_root).resolve())


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "exercise(id): the exercise a stage test grades")
    report_path = config.getoption("workbook_report")
    if report_path:
        config.pluginmanager.register(JsonReport(Path(report_path)), "workbook-json-report")


def exercise_ids(item: pytest.Item) -> list[str]:
    return [str(marker.args[0]) for marker in item.iter_markers("exercise")]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = set(config.getoption("exercise"))
    for item in items:
        item.user_properties.append(("exercises", exercise_ids(item)))
        item.user_properties.append(("sentence", test_sentence(item)))
    if wanted:
        selected = [item for item in items if wanted & set(exercise_ids(item))]
        config.hook.pytest_deselected(items=[item for item in items if item not in selected])
        items[:] = selected


def test_sentence(item: pytest.Item) -> str:
    """What a test checks, in words: its docstring's first line, or its name read as a sentence."""
    function = getattr(item, "function", None)
    doc = (getattr(function, "__doc__", None) or "").strip()
    if doc:
        return doc.splitlines()[0].rstrip(".")
    name = getattr(item, "originalname", None) or item.name
    return name.removeprefix("test_").replace("_", " ")


def locations(report: pytest.TestReport | pytest.CollectReport) -> list[tuple[str, int]]:
    """Every file and 1-based line of the failure's traceback, outermost first."""
    found: list[tuple[str, int]] = []
    chain = getattr(report.longrepr, "chain", None) or []
    for traceback, _crash, _description in chain:
        for entry in getattr(traceback, "reprentries", []):
            place = getattr(entry, "reprfileloc", None)
            if place is not None:
                found.append((str(place.path), int(place.lineno)))
    return found


def failure_message(report: pytest.CollectReport | pytest.TestReport) -> str:
    """The failing assertion in plain words: the crash message, not the traceback."""
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message).strip()
    return str(report.longrepr).strip().splitlines()[-1] if report.longrepr else ""


class JsonReport:
    """Each test's outcome for the workbook. A test that times out (an endless loop?) ends the run: the next
    tests of the same exercise would most likely loop too, each costing the whole per-test limit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.session: pytest.Session | None = None
        self.tests: list[dict[str, Any]] = []
        self.collection_errors: list[dict[str, str]] = []

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.session = session

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call" and report.passed:
            return
        if report.failed and self.session is not None and failure_message(report).startswith("Failed: Timeout"):
            self.session.shouldstop = f"{report.nodeid} timed out"
        if report.when == "teardown" and report.failed and any(t["nodeid"] == report.nodeid for t in self.tests):
            return
        properties = dict(report.user_properties)
        crash = getattr(report.longrepr, "reprcrash", None)
        self.tests.append(
            {
                "nodeid": report.nodeid,
                "exercises": properties.get("exercises", []),
                "sentence": properties.get("sentence", ""),
                "outcome": report.outcome,
                "message": failure_message(report) if report.failed else "",
                "crash_path": str(crash.path) if crash is not None else "",
                "locations": locations(report) if report.failed else [],
            }
        )

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collection_errors.append({"nodeid": report.nodeid, "message": str(report.longrepr)})

    def pytest_sessionfinish(self) -> None:
        document = {"tests": self.tests, "collection_errors": self.collection_errors}
        self.path.write_text(json.dumps(document, indent=2), encoding="utf-8")
