"""Run the stage tests against an application root in a child process and judge each exercise.

A child process keeps the learner's code away from the tool: an endless loop costs a time-out, a crash
costs a failed run, and neither takes the workbook down with it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from .exercises import Exercise
from .paths import REPO_ROOT, STAGE_TESTS_DIR

PER_TEST_TIMEOUT_SECONDS = 20


class Status(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    NOT_STARTED = "not started"
    WAITING = "waits for another exercise"


STUB_MESSAGE = re.compile(r"exercise (\d{2}\.\d+) is yours to write")


@dataclass(frozen=True)
class Failure:
    test: str
    message: str


@dataclass
class ExerciseResult:
    exercise: Exercise
    status: Status
    failures: list[Failure] = field(default_factory=list)
    tests_run: int = 0

    @property
    def passed(self) -> bool:
        return self.status is Status.PASSED


def stage_test_files(stages: set[str]) -> list[Path]:
    return [path for path in sorted(STAGE_TESTS_DIR.glob("test_*.py")) if path.name[5:7] in stages]


def run_exercises(
    app_root: Path, exercises: list[Exercise], *, timeout: float, one_by_one: bool = False
) -> list[ExerciseResult]:
    """Judge each exercise. ``one_by_one`` runs each in its own child, so a hang costs only that exercise."""
    if one_by_one:
        return [result for exercise in exercises for result in _run(app_root, [exercise], timeout)]
    return _run(app_root, exercises, timeout) if exercises else []


def _run(app_root: Path, exercises: list[Exercise], timeout: float) -> list[ExerciseResult]:
    files = stage_test_files({exercise.stage for exercise in exercises})
    if not files:
        return [_failed(exercise, "(none)", "no test grades this exercise") for exercise in exercises]
    with tempfile.TemporaryDirectory(prefix="workbook-") as scratch:
        report_path = Path(scratch) / "report.json"
        command = [
            sys.executable, "-m", "pytest", *map(str, files),
            "--app-root", str(app_root.resolve()),
            "--workbook-report", str(report_path),
            "--timeout", str(PER_TEST_TIMEOUT_SECONDS),
            "-q", "--no-header", "-p", "no:cacheprovider", "--continue-on-collection-errors",
        ]  # fmt: skip
        if len(exercises) == 1:
            command += ["--exercise", exercises[0].id]
        finished, errors = _run_bounded(command, timeout)
        if not finished:
            return [
                _failed(exercise, "(whole run)", f"timed out after {timeout:.0f} s (an endless loop?)")
                for exercise in exercises
            ]
        if not report_path.exists():
            return [_failed(exercise, "(whole run)", f"the test run crashed: {errors}") for exercise in exercises]
        report = json.loads(report_path.read_text(encoding="utf-8"))
    return [_judge(exercise, report) for exercise in exercises]


def _failed(exercise: Exercise, test: str, why: str) -> ExerciseResult:
    return ExerciseResult(exercise, Status.FAILED, [Failure(test, why)])


def _run_bounded(command: list[str], timeout: float) -> tuple[bool, str]:
    """Run a command in its own process group, killed whole at the time limit.

    Returns whether it finished, and the last lines of its stderr: what a crash says about itself.
    """
    environment = _child_environment()
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, errors = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return False, ""
    return True, " / ".join(errors.strip().splitlines()[-3:])


def _child_environment() -> dict[str, str]:
    """What the code under test may see: enough to run and reach the services, not the caller's other secrets.

    This keeps accidents small; it is not a sandbox. Grade code you would run yourself.
    """
    kept = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "XDG_CACHE_HOME", "XDG_STATE_HOME", "CI"}
    environment = {name: value for name, value in os.environ.items() if name in kept or name.endswith("__URL")}
    return {**environment, "PYTHONDONTWRITEBYTECODE": "1"}


def _judge(exercise: Exercise, report: dict[str, list[dict[str, object]]]) -> ExerciseResult:
    stage_file_prefix = f"tests/stages/test_{exercise.stage}_"
    broken = [error for error in report["collection_errors"] if str(error["nodeid"]).startswith(stage_file_prefix)]
    if broken:
        failures = [
            Failure(str(error["nodeid"]), f"your code could not be imported: {error['message']}") for error in broken
        ]
        return ExerciseResult(exercise, Status.FAILED, failures)
    tests = [test for test in report["tests"] if exercise.id in test["exercises"]]  # type: ignore[operator]
    failures = [Failure(str(test["nodeid"]), str(test["message"])) for test in tests if test["outcome"] != "passed"]
    if not tests:
        return _failed(exercise, "(none)", "no test grades this exercise")
    if not failures:
        return ExerciseResult(exercise, Status.PASSED, tests_run=len(tests))
    stubs = [STUB_MESSAGE.search(failure.message) for failure in failures]
    if not all(stubs):
        return ExerciseResult(exercise, Status.FAILED, failures, tests_run=len(tests))
    waits_for = sorted({match.group(1) for match in stubs if match} - {exercise.id})
    if waits_for:
        failure = Failure("(stub)", f"its tests need exercise {', '.join(waits_for)} first")
        return ExerciseResult(exercise, Status.WAITING, [failure], tests_run=len(tests))
    return ExerciseResult(exercise, Status.NOT_STARTED, failures, tests_run=len(tests))
