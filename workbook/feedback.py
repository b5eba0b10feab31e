"""What a learner runs: check, hint, status, watch, catch-up."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from .exercises import Exercise, Region, discover, reference_body, replace_regions
from .paths import EXERCISES_ROOT, REFERENCE_ROOT, STATE_DIR
from .results import ExerciseResult, Status, run_exercises

CHECK_TIMEOUT_SECONDS = 300
MARK = {Status.PASSED: "✓", Status.FAILED: "✗", Status.NOT_STARTED: "·", Status.WAITING: "·"}


def exercises_of(stage: str | None = None) -> list[Exercise]:
    return [exercise for exercise in discover() if stage is None or exercise.stage == stage]


def stages() -> list[str]:
    return sorted({exercise.stage for exercise in discover()})


def find_exercise(exercise_id: str) -> Exercise:
    for exercise in discover():
        if exercise.id == exercise_id:
            return exercise
    known = ", ".join(exercise.id for exercise in discover())
    raise SystemExit(f"There is no exercise {exercise_id}. The exercises are: {known}")


def describe(results: Iterable[ExerciseResult]) -> str:
    lines: list[str] = []
    for result in results:
        exercise = result.exercise
        state = result.failures[0].message if result.status is Status.WAITING else result.status.value
        lines.append(f"  {MARK[result.status]} {exercise.id} {exercise.title} — {state}")
        if result.status is Status.FAILED:
            for failure in result.failures[:3]:
                first, *rest = failure.message.splitlines() or [""]
                lines.append(f"      {first}")
                lines += [f"        {line}" for line in rest[:4]]
                lines.append(f"      ({failure.test})")
    return "\n".join(lines)


def next_step(results: list[ExerciseResult], app_root: Path) -> str:
    todo = next((result for result in results if not result.passed), None)
    if todo is None:
        return "Every exercise checked here passes. On to the next notebook!"
    exercise = todo.exercise
    return (
        f"Next: exercise {exercise.id} ({exercise.title})\n"
        f"  write it in {app_root.name}/{exercise.path}:{exercise.line}\n"
        f"  it is taught in {exercise.where_taught()}\n"
        f"  stuck? python -m workbook hint {exercise.id}"
    )


def check(stage: str | None = None, app_root: Path = EXERCISES_ROOT) -> bool:
    """Check one stage, or the first stage that is not done yet. Print plain words. True when all pass."""
    chosen = [stage] if stage else stages()
    for current in chosen:
        results = run_exercises(app_root, exercises_of(current), timeout=CHECK_TIMEOUT_SECONDS)
        if stage or not all(result.passed for result in results) or current == chosen[-1]:
            passed = sum(result.passed for result in results)
            print(f"Stage {current}: {passed} of {len(results)} exercises pass\n{describe(results)}\n")
            print(next_step(results, app_root))
            return passed == len(results)
    return True


def hint(exercise_id: str) -> None:
    exercise = find_exercise(exercise_id)
    print(f"Exercise {exercise.id}: {exercise.title}")
    print(f"  where: exercises/{exercise.path}:{exercise.line}")
    print(f"  taught in: {exercise.where_taught()}")
    for number, text in enumerate(exercise.hints, start=1):
        print(f"  hint {number}: {text}")


def status(app_root: Path = EXERCISES_ROOT) -> None:
    results = run_exercises(app_root, exercises_of(), timeout=CHECK_TIMEOUT_SECONDS)
    for stage in stages():
        of_stage = [result for result in results if result.exercise.stage == stage]
        passed = sum(result.passed for result in of_stage)
        bar = "".join(MARK[result.status] for result in of_stage)
        print(f"  stage {stage}  {bar:<10} {passed}/{len(of_stage)}")
    print()
    print(next_step(results, app_root))


def current_stage(app_root: Path = EXERCISES_ROOT) -> str:
    for stage in stages():
        results = run_exercises(app_root, exercises_of(stage), timeout=CHECK_TIMEOUT_SECONDS)
        if not all(result.passed for result in results):
            return stage
    return stages()[-1]


def watch(app_root: Path = EXERCISES_ROOT) -> None:
    """Re-check the current stage every time a Python file under the app root is saved. Ctrl+C stops."""
    from watchfiles import PythonFilter
    from watchfiles import watch as watch_files

    stage = current_stage(app_root)
    check(stage, app_root)
    print(f"\nWatching {app_root} — save a file to re-check stage {stage}. Ctrl+C stops.")
    for _changes in watch_files(app_root, watch_filter=PythonFilter()):
        print("\n" + "─" * 60)
        if check(stage, app_root):
            stage = current_stage(app_root)
            print(f"\nNow checking stage {stage}.")


def _body_from(bodies: dict[str, list[str]]) -> Callable[[Region], list[str]]:
    return lambda region: bodies[region.exercise.id]


def catch_up(stage: str, app_root: Path = EXERCISES_ROOT) -> list[str]:
    """Fill every exercise of the stages before ``stage`` with the reference code. Saves the learner's files first."""
    earlier = {exercise.id for exercise in discover() if exercise.stage < stage}
    backup = STATE_DIR / "saved" / time.strftime("%Y%m%d-%H%M%S")
    filled: list[str] = []
    for path in sorted({exercise.path for exercise in discover() if exercise.id in earlier}):
        learner_file = app_root / path
        reference = reference_body((REFERENCE_ROOT / path).read_text(encoding="utf-8"), path)
        text = learner_file.read_text(encoding="utf-8")
        updated = replace_regions(text, path, _body_from(reference), only=earlier)
        if updated != text:
            (backup / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(learner_file, backup / path)
            learner_file.write_text(updated, encoding="utf-8")
            filled.append(str(path))
    if filled:
        print(f"Filled the exercises of stages before {stage} in: {', '.join(filled)}")
        print(f"Your own versions are saved in {backup}")
    else:
        print(f"Nothing to fill: the exercises before stage {stage} already hold the reference code.")
    return filled
