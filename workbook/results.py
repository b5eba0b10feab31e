"""Judge exercises by running the stage tests against an application root in a child process.

Two ways to judge, as DESIGN.md ("Grading: alone and together") describes:

- **alone** (the default): exercise X runs in a copy of ``reference_app/`` in which only the learner's file that
  holds X is theirs, with every *other* exercise region of that file filled with the reference code. X's verdict
  then depends on X alone (and on the learner's imports and helpers around it).
- **together**: the learner's app as it is, one stage per run. It shows whether their pieces work with each other,
  and names the exercise that blocks ("needs 01.2").

A child process keeps the learner's code away from the tool: an endless loop costs a time-out, a crash costs a
failed run, and neither takes the workbook down with it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from .exercises import IGNORED, Composed, Exercise, MarkupError, fill_other_regions, is_stub, region_body
from .paths import END_TO_END_TESTS, REFERENCE_ROOT, REPO_ROOT, STAGE_TESTS_DIR

PER_TEST_TIMEOUT_SECONDS = 20


class Status(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    TIMED_OUT = "timed out"
    NOT_STARTED = "not started"
    WAITING = "waits for another exercise"


STUB_MESSAGE = re.compile(r"exercise (\d{2}\.\d+) is yours to write")
TIMEOUT_MESSAGE = re.compile(r"^Failed: Timeout")


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
    tests_passed: int = 0

    @property
    def passed(self) -> bool:
        return self.status is Status.PASSED

    @property
    def share_passed(self) -> float:
        """The share of the exercise's tests that passed: partial credit."""
        return self.tests_passed / self.tests_run if self.tests_run else 0.0


def stage_test_files(stages: set[str]) -> list[Path]:
    return [path for path in sorted(STAGE_TESTS_DIR.glob("test_*.py")) if path.name[5:7] in stages]


# Where a failure happened, in the names the learner knows ----------------------------------------------------


@dataclass(frozen=True)
class Places:
    """Turns the paths of the root a run used back into paths the learner knows.

    In an alone run the root is a scratch copy of reference_app/ with one learner file in it: that file is shown
    as the learner's (``exercises/chat/service.py``) with the learner's own line numbers, and every other file
    as ``reference_app/…``, the code the learner's piece ran with.
    """

    root: Path  # the root the tests ran against
    shown_as: str  # what the root is called when shown
    learner_file: Path | None = None  # alone runs: the learner's file, relative to the root
    learner_shown_as: str = ""
    composed: Composed | None = None

    def place(self, path: str, line: int) -> str | None:
        """``file:line`` as the learner knows it, or None when the path is not in the app (a test, a library)."""
        try:
            relative = Path(path).resolve().relative_to(self.root.resolve())
        except ValueError:
            return None
        if relative == self.learner_file and self.composed is not None:
            learner_line = self.composed.line_in_learner_file(line)
            return f"{self.learner_shown_as}/{relative}:{learner_line}"
        return f"{self.shown_as}/{relative}:{line}"

    def text(self, text: str) -> str:
        """Free text (an error message, a traceback) with the root's paths and lines rewritten."""

        def colon_form(match: re.Match[str]) -> str:
            return self.place(match["path"], int(match["line"])) or match[0]

        def quoted_form(match: re.Match[str]) -> str:
            shown = self.place(match["path"], int(match["line"]))
            return f'File "{shown.rsplit(":", 1)[0]}", line {shown.rsplit(":", 1)[1]}' if shown else match[0]

        root = re.escape(str(self.root))
        text = re.sub(rf'File "(?P<path>{root}/[^"]+)", line (?P<line>\d+)', quoted_form, text)
        text = re.sub(rf"(?P<path>{root}/[\w./-]+\.py):(?P<line>\d+)", colon_form, text)
        return text.replace(f"{self.root}/", f"{self.shown_as}/")

    def innermost(self, locations: list[tuple[str, int]]) -> str | None:
        """The deepest place of a traceback inside the app: the learner's file first, else the app's code."""
        shown = [self.place(path, line) for path, line in locations]
        in_app = [place for place in shown if place]
        mine = [place for place in in_app if self.learner_shown_as and place.startswith(self.learner_shown_as + "/")]
        chosen = mine or in_app
        return chosen[-1] if chosen else None


# Running the tests --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """What one child run left: its report, or why there is none."""

    report: dict[str, Any] | None
    timed_out: bool = False
    crash: str = ""


def run_tests(
    app_root: Path,
    exercises: list[Exercise],
    *,
    timeout: float,
    extra_tests: Path | None = None,
) -> Run:
    """Run the tests that grade ``exercises`` against ``app_root`` in a child process bounded by ``timeout``.

    Only tests marked with one of the exercises run: a stage test that grades no exercise is not part of it.
    """
    files = stage_test_files({exercise.stage for exercise in exercises})
    with tempfile.TemporaryDirectory(prefix="workbook-") as scratch:
        paths = [str(path) for path in files]
        if extra_tests is not None:
            paths.append(str(_with_stage_fixtures(extra_tests, Path(scratch))))
        if not paths:
            return Run({"tests": [], "collection_errors": []})
        selection = [option for exercise in exercises for option in ("--exercise", exercise.id)]
        return _pytest(app_root, [*paths, *selection], Path(scratch), timeout, PER_TEST_TIMEOUT_SECONDS)


def _pytest(app_root: Path, arguments: list[str], scratch: Path, timeout: float, per_test: float) -> Run:
    report_path = scratch / "report.json"
    command = [
        sys.executable, "-m", "pytest", *arguments,
        "--app-root", str(app_root.resolve()),
        "--workbook-report", str(report_path),
        "--timeout", str(per_test),
        "-q", "--no-header", "-p", "no:cacheprovider", "--continue-on-collection-errors",
    ]  # fmt: skip
    finished, errors = _run_bounded(command, timeout)
    if not finished:
        return Run(None, timed_out=True)
    if not report_path.exists():
        return Run(None, crash=errors)
    return Run(json.loads(report_path.read_text(encoding="utf-8")))


def _with_stage_fixtures(extra_tests: Path, scratch: Path) -> Path:
    """A copy of a mentor's own tests beside the stage tests' fixtures, so they can ask for ``gateway`` & co."""
    folder = scratch / "extra"
    shutil.copytree(extra_tests, folder / extra_tests.name, ignore=IGNORED)
    shutil.copy2(STAGE_TESTS_DIR / "conftest.py", folder / "conftest.py")
    return folder / extra_tests.name


def _run_bounded(command: list[str], timeout: float) -> tuple[bool, str]:
    """Run a command in its own process group, killed whole at the time limit.

    Returns whether it finished, and the last lines of its stderr: what a crash says about itself.
    """
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=_child_environment(),
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


# Alone ---------------------------------------------------------------------------------------------------------


def judge_alone(
    app_root: Path, exercises: list[Exercise], *, timeout: float, extra_tests: Path | None = None
) -> list[ExerciseResult]:
    """Judge each exercise on its own: in reference_app/ with only its learner's file, the others filled in."""
    with _scratch_reference() as scratch:
        return [_alone(app_root, scratch, exercise, timeout, extra_tests) for exercise in exercises]


@contextmanager
def _scratch_reference() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="workbook-alone-") as scratch:
        root = Path(scratch) / "app"
        shutil.copytree(REFERENCE_ROOT, root, ignore=IGNORED)
        yield root


def _alone(
    app_root: Path, scratch: Path, exercise: Exercise, timeout: float, extra_tests: Path | None
) -> ExerciseResult:
    shown = f"{app_root.name}/{exercise.path}"
    learner_file = app_root / exercise.path
    if not learner_file.is_file():
        return _failed(exercise, "your file", f"{shown} is missing: the exercise lives there")
    text = learner_file.read_text(encoding="utf-8", errors="replace")
    try:
        body = region_body(text, exercise.path, exercise.id)
    except MarkupError as error:
        return _failed(exercise, "your file", f"{app_root.name}/{error}")
    if body is None:
        return _failed(
            exercise,
            "your file",
            f"{shown} has lost the markers of exercise {exercise.id}: put back its "
            f"'# exercise {exercise.id}: …' and '# end exercise' lines around your code",
        )
    if is_stub(body, exercise):
        return ExerciseResult(exercise, Status.NOT_STARTED)
    reference_text = (REFERENCE_ROOT / exercise.path).read_text(encoding="utf-8")
    composed = fill_other_regions(text, reference_text, exercise.path, keep=exercise.id)
    places = Places(scratch, REFERENCE_ROOT.name, exercise.path, app_root.name, composed)
    try:
        compile(composed.text, str(scratch / exercise.path), "exec")
    except SyntaxError as error:
        line = composed.line_in_learner_file(error.lineno or 1)
        source = (error.text or "").strip()
        message = f"{shown}:{line}: {type(error).__name__}: {error.msg}" + (f"\n    {source}" if source else "")
        return _failed(exercise, "your file", f"your code could not be compiled: {message}")
    target = scratch / exercise.path
    target.write_text(composed.text, encoding="utf-8")
    try:
        run = run_tests(scratch, [exercise], timeout=timeout, extra_tests=extra_tests)
    finally:
        shutil.copy2(REFERENCE_ROOT / exercise.path, target)
    return verdict(exercise, run, places, timeout=timeout)


# Together -----------------------------------------------------------------------------------------------------


def judge_together(
    app_root: Path, exercises: list[Exercise], *, timeout: float, extra_tests: Path | None = None
) -> list[ExerciseResult]:
    """Judge the learner's app as it is, one stage per child run (bounded by ``timeout`` each)."""
    places = Places(app_root, app_root.name, learner_shown_as=app_root.name)
    results: list[ExerciseResult] = []
    for stage in sorted({exercise.stage for exercise in exercises}):
        of_stage = [exercise for exercise in exercises if exercise.stage == stage]
        run = run_tests(app_root, of_stage, timeout=timeout, extra_tests=extra_tests)
        results += [verdict(exercise, run, places, timeout=timeout, together=True) for exercise in of_stage]
    return results


# End to end ---------------------------------------------------------------------------------------------------

END_TO_END_PER_TEST_SECONDS = 120  # starting six processes and talking to them is slower than a unit test


@dataclass(frozen=True)
class EndToEnd:
    """The learner's whole app, started as ``make start`` does, and driven like a client: what worked."""

    passed: list[str]  # the sentences of the tests that passed
    failures: list[Failure]

    @property
    def ok(self) -> bool:
        return bool(self.passed) and not self.failures


def judge_end_to_end(app_root: Path, *, timeout: float) -> EndToEnd:
    """Start the learner's app (the six processes) and run the end-to-end tests against it, together."""
    places = Places(app_root, app_root.name, learner_shown_as=app_root.name)
    with tempfile.TemporaryDirectory(prefix="workbook-e2e-") as scratch:
        run = _pytest(app_root, [str(END_TO_END_TESTS)], Path(scratch), timeout, END_TO_END_PER_TEST_SECONDS)
    if run.timed_out:
        return EndToEnd([], [Failure("the whole run", f"timed out after {timeout:.0f} s")])
    if run.report is None:
        return EndToEnd([], [Failure("the whole run", f"the test run crashed: {places.text(run.crash)}")])
    errors = [
        Failure(str(error["nodeid"]), f"could not be imported: {import_error(error['message'], places)}")
        for error in run.report["collection_errors"]
    ]
    tests = run.report["tests"]
    passed = [str(test["sentence"]) for test in tests if test["outcome"] == "passed"]
    failed = [Failure(str(test["sentence"]), explain(test, places)) for test in tests if test["outcome"] != "passed"]
    return EndToEnd(passed, errors + failed)


# Reading a run ------------------------------------------------------------------------------------------------


def _failed(exercise: Exercise, test: str, why: str, status: Status = Status.FAILED) -> ExerciseResult:
    return ExerciseResult(exercise, status, [Failure(test, why)])


def verdict(exercise: Exercise, run: Run, places: Places, *, timeout: float, together: bool = False) -> ExerciseResult:
    """One exercise's verdict from a run's report."""
    if run.timed_out:
        return _failed(
            exercise, "the whole run", f"timed out after {timeout:.0f} s (an endless loop?)", Status.TIMED_OUT
        )
    if run.report is None:
        return _failed(exercise, "the whole run", f"the test run crashed: {places.text(run.crash)}")
    broken = run.report["collection_errors"]
    if together:  # a stage's tests that cannot import the learner's code cost that stage only
        broken = [error for error in broken if f"/test_{exercise.stage}_" in str(error["nodeid"])]
    if broken:
        failures = [
            Failure(str(error["nodeid"]), f"your code could not be imported: {import_error(error['message'], places)}")
            for error in broken
        ]
        return ExerciseResult(exercise, Status.FAILED, failures)
    tests = [test for test in run.report["tests"] if exercise.id in test["exercises"]]
    if not tests:
        return _failed(exercise, "no test", "no test grades this exercise")
    failed = [test for test in tests if test["outcome"] != "passed"]
    ran, passed = len(tests), len(tests) - len(failed)
    if not failed:
        return ExerciseResult(exercise, Status.PASSED, tests_run=ran, tests_passed=passed)
    stubs = [STUB_MESSAGE.search(str(test["message"])) for test in failed]
    if all(stubs):
        needs = sorted({match.group(1) for match in stubs if match} - {exercise.id})
        if needs:
            failure = Failure("its tests", f"needs {', '.join(needs)}: its tests call that stub")
            return ExerciseResult(exercise, Status.WAITING, [failure], ran, passed)
        return ExerciseResult(exercise, Status.NOT_STARTED, [], ran, passed)
    failures = [Failure(str(test["nodeid"]), explain(test, places)) for test in failed]
    if any(TIMEOUT_MESSAGE.match(str(test["message"])) for test in failed):
        return ExerciseResult(exercise, Status.TIMED_OUT, failures, ran, passed)
    return ExerciseResult(exercise, Status.FAILED, failures, ran, passed)


def explain(test: dict[str, Any], places: Places) -> str:
    """A failed test in words: the test's own sentence, or what it checks and the exception the code raised."""
    message = places.text(str(test["message"])).strip()
    first, *rest = message.splitlines() or [""]
    sentence = str(test.get("sentence") or test["nodeid"])
    where = places.innermost([(str(path), int(line)) for path, line in test.get("locations", [])])
    at = f" (at {where})" if where else ""
    if TIMEOUT_MESSAGE.match(first):
        return f"{sentence}: it did not finish in {PER_TEST_TIMEOUT_SECONDS} s (an endless loop?){at}"
    raised_in_app = places.place(str(test.get("crash_path", "")), 1) is not None
    if not raised_in_app and first.startswith("AssertionError: "):
        return "\n".join([first.removeprefix("AssertionError: "), *rest])
    if not raised_in_app and first.startswith("Failed: ") and "DID NOT RAISE" not in first:
        return "\n".join([first.removeprefix("Failed: "), *rest])
    if first.startswith("assert ") or "DID NOT RAISE" in first:
        return f"{sentence}: {message}"
    return f"{sentence}: the code raised {first}{at}"


IMPORT_PLACE = re.compile(r'(?P<path>/[^\s"]+\.py)(?::(?P<line>\d+)|", line (?P<qline>\d+))')


def import_error(longrepr: str, places: Places) -> str:
    """The cause of a failed import, with the learner's file and line: pytest's own text is a whole traceback."""
    errors = [line[1:].strip() for line in longrepr.splitlines() if line.startswith("E ")]
    cause = next((line for line in reversed(errors) if re.match(r"^\w+(Error|Exception)\b", line)), None)
    found = [(match["path"], int(match["line"] or match["qline"])) for match in IMPORT_PLACE.finditer(longrepr)]
    where = places.innermost(found)
    if cause is None:
        return places.text(longrepr.strip().splitlines()[-1] if longrepr.strip() else "unknown error")
    return f"{where}: {places.text(cause)}" if where else places.text(cause)
