"""Exercise regions: find them in reference_app/, turn them into stubs, write exercises/.

A region in the reference code looks like this::

    # exercise 01.1: choose the environment from APP_ENV
    # hint: Look in os.environ first ...
    ...the reference code...
    # end exercise

In exercises/ the same region keeps its two marker lines and holds one ``raise NotImplementedError(...)``.
Hints stay out of exercises/; ``workbook hint`` reads them from reference_app/.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .paths import NOTEBOOKS_DIR, REFERENCE_ROOT

START = re.compile(r"^(?P<indent>[ \t]*)# exercise (?P<id>\d{2}\.\d+): (?P<title>.+?)\s*$")
HINT = re.compile(r"^[ \t]*# hint: (?P<text>.+?)\s*$")
END = re.compile(r"^[ \t]*# end exercise\s*$")
CACHE_DIRS = {"__pycache__", ".mypy_cache", ".pytest_cache"}  # never part of an app root's content
IGNORED = shutil.ignore_patterns(*CACHE_DIRS, "*.pyc")


class MarkupError(Exception):
    """An exercise region is not well formed."""


@dataclass(frozen=True)
class Exercise:
    id: str
    title: str
    hints: tuple[str, ...]
    path: Path  # relative to the application root
    line: int  # 1-based line of the "# exercise" marker

    @property
    def stage(self) -> str:
        return self.id.split(".")[0]

    @property
    def sort_key(self) -> tuple[int, int]:
        stage, number = self.id.split(".")
        return int(stage), int(number)

    @property
    def notebook(self) -> str:
        return notebook_for_stage(self.stage)

    def where_taught(self) -> str:
        return f"{self.notebook}, section 'Exercise {self.id}'"


@dataclass(frozen=True)
class Region:
    exercise: Exercise
    start: int  # index of the "# exercise" line
    end: int  # index of the "# end exercise" line
    indent: str


BodyFor = Callable[[Region], list[str]]


def notebook_for_stage(stage: str) -> str:
    matches = sorted(NOTEBOOKS_DIR.glob(f"{stage}_*.ipynb"))
    return f"notebooks/{matches[0].name}" if matches else f"notebooks/{stage}_*.ipynb"


def find_regions(lines: list[str], path: Path) -> list[Region]:
    regions: list[Region] = []
    open_at: int | None = None
    for index, line in enumerate(lines):
        if START.match(line):
            if open_at is not None:
                raise MarkupError(
                    f"{path}:{index + 1}: exercise starts inside the exercise opened at line {open_at + 1}"
                )
            open_at = index
        elif END.match(line):
            if open_at is None:
                raise MarkupError(f"{path}:{index + 1}: '# end exercise' without an opening '# exercise' line")
            regions.append(_region(lines, path, open_at, index))
            open_at = None
    if open_at is not None:
        raise MarkupError(f"{path}:{open_at + 1}: exercise is never closed with '# end exercise'")
    return regions


def _region(lines: list[str], path: Path, start: int, end: int) -> Region:
    match = START.match(lines[start])
    assert match is not None
    hints = tuple(hint.group("text") for line in lines[start + 1 : end] if (hint := HINT.match(line)))
    exercise = Exercise(match.group("id"), match.group("title"), hints, path, start + 1)
    return Region(exercise, start, end, match.group("indent"))


def python_files(root: Path) -> Iterable[Path]:
    return (path for path in sorted(root.rglob("*.py")) if "__pycache__" not in path.parts)


def discover(root: Path = REFERENCE_ROOT) -> list[Exercise]:
    """Every exercise in an application root, in course order. Ids must be unique."""
    exercises: dict[str, Exercise] = {}
    for path in python_files(root):
        relative = path.relative_to(root)
        for region in find_regions(path.read_text(encoding="utf-8").splitlines(), relative):
            if region.exercise.id in exercises:
                raise MarkupError(
                    f"{relative}: exercise {region.exercise.id} is also in {exercises[region.exercise.id].path}"
                )
            exercises[region.exercise.id] = region.exercise
    return sorted(exercises.values(), key=lambda exercise: exercise.sort_key)


def stub_line(exercise: Exercise, indent: str) -> str:
    message = f"exercise {exercise.id} is yours to write: see {exercise.where_taught()}. Stuck? python -m workbook hint {exercise.id}"
    return f"{indent}raise NotImplementedError({message!r})"


def stub_source(text: str, path: Path, only: set[str] | None = None) -> str:
    """The source with its exercise regions (all, or those in ``only``) replaced by stubs."""
    return replace_regions(text, path, lambda region: [stub_line(region.exercise, region.indent)], only)


def replace_regions(text: str, path: Path, body_for: BodyFor, only: set[str] | None = None) -> str:
    lines = text.splitlines()
    output: list[str] = []
    cursor = 0
    for region in find_regions(lines, path):
        if only is not None and region.exercise.id not in only:
            continue
        output += lines[cursor : region.start + 1]
        output += body_for(region)
        cursor = region.end
    output += lines[cursor:]
    return "\n".join(output) + ("\n" if text.endswith("\n") else "")


def reference_body(reference_text: str, path: Path) -> dict[str, list[str]]:
    """Each exercise's reference code, without its hint lines."""
    lines = reference_text.splitlines()
    return {
        region.exercise.id: [line for line in lines[region.start + 1 : region.end] if not HINT.match(line)]
        for region in find_regions(lines, path)
    }


@dataclass(frozen=True)
class Composed:
    """A learner's file with every other exercise filled in, and where each of its lines came from."""

    text: str
    learner_line: list[int | None]  # for each line (0-based index), its 1-based line in the learner's file

    def line_in_learner_file(self, line: int) -> int | None:
        """The learner's line for a 1-based line of the composed text; the nearest one above a filled region."""
        for index in range(min(line, len(self.learner_line)) - 1, -1, -1):
            if self.learner_line[index] is not None:
                return self.learner_line[index]
        return None


def fill_other_regions(learner_text: str, reference_text: str, path: Path, keep: str) -> Composed:
    """The learner's file with every exercise region but ``keep`` replaced by the reference code.

    This is how one exercise is judged alone: its verdict then depends on its own region (and the learner's
    imports and helpers outside the regions), never on the state of the other exercises in the same file.
    """
    reference = reference_body(reference_text, path)
    lines = learner_text.splitlines()
    text: list[str] = []
    origin: list[int | None] = []
    cursor = 0
    for region in find_regions(lines, path):
        if region.exercise.id == keep or region.exercise.id not in reference:
            continue
        text += lines[cursor : region.start + 1]
        origin += range(cursor + 1, region.start + 2)
        body = reference[region.exercise.id]
        text += body
        origin += [None] * len(body)
        cursor = region.end
    text += lines[cursor:]
    origin += range(cursor + 1, len(lines) + 1)
    return Composed("\n".join(text) + "\n", origin)


def region_body(text: str, path: Path, exercise_id: str) -> list[str] | None:
    """The lines between the markers of one exercise, or None when its markers are not in the text."""
    lines = text.splitlines()
    for region in find_regions(lines, path):
        if region.exercise.id == exercise_id:
            return lines[region.start + 1 : region.end]
    return None


def is_stub(body: list[str], exercise: Exercise) -> bool:
    """True when a region still holds only its stub: the learner has not started it."""
    code = [line for line in body if line.strip() and not line.strip().startswith("#")]
    return [line.strip() for line in code] == [stub_line(exercise, "").strip()]


def build(source: Path, target: Path, only: set[str] | None = None) -> None:
    """Write ``target`` as a copy of ``source`` with exercise regions stubbed (all, or those in ``only``).

    The copy is made beside the target and swapped in at the end, so a markup error leaves the target as it was.
    """
    staging = target.with_name(f".{target.name}.building")
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(source, staging, ignore=IGNORED)
    try:
        for path in python_files(staging):
            text = path.read_text(encoding="utf-8")
            stubbed = stub_source(text, path.relative_to(staging), only)
            if stubbed != text:
                path.write_text(stubbed, encoding="utf-8")
    except MarkupError:
        shutil.rmtree(staging)
        raise
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)


def written_exercises(app_root: Path) -> list[str]:
    """The exercises in an app root whose region holds something other than its stub: a learner's work."""
    written = []
    for path in python_files(app_root):
        lines = path.read_text(encoding="utf-8").splitlines()
        for region in find_regions(lines, path.relative_to(app_root)):
            if lines[region.start + 1 : region.end] != [stub_line(region.exercise, region.indent)]:
                written.append(f"{region.exercise.id} in {region.exercise.path}")
    return written


def tree_differences(expected: Path, actual: Path) -> list[str]:
    """Files that differ between two trees, ignoring caches. Empty when they are the same."""

    def files(root: Path) -> dict[Path, bytes]:
        if not root.is_dir():
            return {}
        return {
            path.relative_to(root): path.read_bytes()
            for path in root.rglob("*")
            if path.is_file() and not CACHE_DIRS & set(path.parts) and path.suffix != ".pyc"
        }

    want, have = files(expected), files(actual)
    problems = [f"missing: {path}" for path in sorted(want.keys() - have.keys())]
    problems += [f"not built from reference_app/: {path}" for path in sorted(have.keys() - want.keys())]
    problems += [f"differs: {path}" for path in sorted(want.keys() & have.keys()) if want[path] != have[path]]
    return problems
