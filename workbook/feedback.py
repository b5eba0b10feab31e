"""What a learner runs: check, hint, reset, status, watch, catch-up."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from .exercises import Exercise, Region, discover, find_regions, reference_body, replace_regions, stub_source
from .paths import EXERCISES_ROOT, REFERENCE_ROOT, STATE_DIR
from .results import STUB_MESSAGE, EndToEnd, ExerciseResult, Status, judge_alone, judge_end_to_end, judge_together

# Alone, each exercise has its own child run with this bound; together, each stage's run has it.
CHECK_TIMEOUT_SECONDS = 120
# Stage 11 checks the learner's whole app end to end: its own six processes started, then driven like a client.
END_TO_END_STAGE = "11"
END_TO_END_TIMEOUT_SECONDS = 600
MARK = {
    Status.PASSED: "✓",
    Status.FAILED: "✗",
    Status.TIMED_OUT: "✗",
    Status.NOT_STARTED: "·",
    Status.WAITING: "·",
}
SHOWN_FAILURES = 3


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


def verdicts(app_root: Path, exercises: list[Exercise], *, together: bool = False) -> list[ExerciseResult]:
    how = judge_together if together else judge_alone
    return how(app_root, exercises, timeout=CHECK_TIMEOUT_SECONDS)


def describe(results: Iterable[ExerciseResult]) -> str:
    """One line per exercise; under a failed one, each different reason once, with the tests that gave it."""
    lines: list[str] = []
    for result in results:
        exercise = result.exercise
        state = result.failures[0].message if result.status is Status.WAITING else result.status.value
        if result.tests_run and result.status is Status.FAILED:
            state += f" ({result.tests_passed} of {result.tests_run} tests pass)"
        lines.append(f"  {MARK[result.status]} {exercise.id} {exercise.title} — {state}")
        if result.status not in (Status.FAILED, Status.TIMED_OUT):
            continue
        reasons: dict[str, list[str]] = {}
        for failure in result.failures:
            reasons.setdefault(failure.message, []).append(failure.test)
        for message, tests in list(reasons.items())[:SHOWN_FAILURES]:
            first, *rest = message.splitlines() or [""]
            lines.append(f"      {first}")
            lines += [f"        {line}" for line in rest[:4]]
            more = f" and {len(tests) - 1} more with the same reason" if len(tests) > 1 else ""
            lines.append(f"      ({tests[0]}{more})")
        if len(reasons) > SHOWN_FAILURES:
            lines.append(f"      …and {len(reasons) - SHOWN_FAILURES} other reasons")
    return "\n".join(lines)


def line_in(app_root: Path, exercise: Exercise) -> int:
    """Where the exercise starts in the learner's own file (their line numbers differ from the reference's)."""
    path = app_root / exercise.path
    try:
        regions = find_regions(path.read_text(encoding="utf-8").splitlines(), exercise.path)
    except (OSError, ValueError):
        return exercise.line
    return next((region.start + 1 for region in regions if region.exercise.id == exercise.id), exercise.line)


def next_step(results: list[ExerciseResult], app_root: Path) -> str:
    todo = next((result for result in results if not result.passed), None)
    if todo is None:
        if results and results[-1].exercise.stage == stages()[-1]:
            return (
                f"Every exercise passes. Now run your whole app end to end: python -m workbook check {END_TO_END_STAGE}"
            )
        return "Every exercise checked here passes. On to the next notebook!"
    exercise = todo.exercise
    return (
        f"Next: exercise {exercise.id} ({exercise.title})\n"
        f"  write it in {app_root.name}/{exercise.path}:{line_in(app_root, exercise)}\n"
        f"  it is taught in {exercise.where_taught()}\n"
        f"  stuck? python -m workbook hint {exercise.id}"
    )


def describe_end_to_end(result: EndToEnd) -> str:
    """What worked and what broke. A failure shows its first line and the end of what it quotes (a log's last
    lines, a traceback's exception), once for all the tests it stopped; a stub that ran is named first."""
    lines = [f"  ✓ {sentence}" for sentence in result.passed]
    reasons: dict[str, list[str]] = {}
    for failure in result.failures:
        reasons.setdefault(failure.message, []).append(failure.test)
    for message, tests in reasons.items():
        first, *rest = message.splitlines() or [""]
        lines += [f"  ✗ {test}" for test in tests]
        stubs = sorted(set(STUB_MESSAGE.findall(message)))
        if stubs:
            lines.append(
                f"      needs {', '.join(stubs)}: your app ran that stub (python -m workbook check --together)"
            )
        lines.append(f"      {first}")
        shown = rest if len(rest) <= 12 else ["…", *rest[-10:]]
        lines += [f"        {line.strip()}" for line in shown if line.strip()]
    return "\n".join(lines)


def check_end_to_end(app_root: Path = EXERCISES_ROOT) -> bool:
    """Stage 11: start the learner's own app and drive it like a client, end to end. True when it all works."""
    print(f"Stage {END_TO_END_STAGE}: your whole app ({app_root.name}/) started and used end to end, together…")
    result = judge_end_to_end(app_root, timeout=END_TO_END_TIMEOUT_SECONDS)
    print(describe_end_to_end(result) + "\n")
    if result.ok:
        print("Your own messenger works end to end. Well done!")
    else:
        print(
            "Fix the first problem above. Each process's log tells more: python -m workbook app logs\n"
            f"  (start your app yourself with: make start APP_ROOT={app_root.name})\n"
            f"  which exercise blocks? python -m workbook check --together"
        )
    return result.ok


def check(stage: str | None = None, app_root: Path = EXERCISES_ROOT, *, together: bool = False) -> bool:
    """Check one stage, or the first stage that is not done yet. Print plain words. True when all pass."""
    if stage == END_TO_END_STAGE:  # its exercises, then the whole app end to end
        exercises_pass = _check_stage(stage, app_root, together=together)
        print()
        return check_end_to_end(app_root) and exercises_pass
    chosen = [stage] if stage else stages()
    how = _judged(together)
    for current in chosen:
        results = verdicts(app_root, exercises_of(current), together=together)
        if stage or not all(result.passed for result in results) or current == chosen[-1]:
            _print_stage(current, results, app_root, how)
            return all(result.passed for result in results)
    return True


def _judged(together: bool) -> str:
    return "together (your whole app as it is)" if together else "alone (each exercise on its own)"


def _check_stage(stage: str, app_root: Path, *, together: bool) -> bool:
    """The exercises of one stage, before the end-to-end run of stage 11 (which says itself what comes next)."""
    results = verdicts(app_root, exercises_of(stage), together=together)
    all_pass = all(result.passed for result in results)
    _print_stage(stage, results, app_root, _judged(together), show_next=not all_pass)
    return all_pass


def _print_stage(
    stage: str, results: list[ExerciseResult], app_root: Path, how: str, *, show_next: bool = True
) -> None:
    passed = sum(result.passed for result in results)
    print(f"Stage {stage}: {passed} of {len(results)} exercises pass, judged {how}\n{describe(results)}\n")
    if show_next:
        print(next_step(results, app_root))


# Hints, one at a time -----------------------------------------------------------------------------------------


def hints_seen(state_dir: Path | None = None) -> dict[str, int]:
    """How many hints of each exercise a learner has looked at (kept in .workbook/hints.json)."""
    try:
        seen = json.loads(((state_dir or STATE_DIR) / "hints.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(key): int(value) for key, value in seen.items()} if isinstance(seen, dict) else {}


def hint(exercise_id: str, *, show_all: bool = False, app_root: Path = EXERCISES_ROOT) -> None:
    """Show the next hint not seen yet (all of them with ``show_all``), and remember how many were shown."""
    exercise = find_exercise(exercise_id)
    seen = hints_seen()
    shown = len(exercise.hints) if show_all else min(seen.get(exercise.id, 0) + 1, len(exercise.hints))
    print(f"Exercise {exercise.id}: {exercise.title}")
    print(f"  where: {app_root.name}/{exercise.path}:{line_in(app_root, exercise)}")
    print(f"  taught in: {exercise.where_taught()}")
    for number, text in enumerate(exercise.hints[:shown], start=1):
        print(f"  hint {number} of {len(exercise.hints)}: {text}")
    if shown < len(exercise.hints):
        print(f"  Still stuck? Run the same command again for hint {shown + 1} (or add --all).")
    else:
        print("  That was the last hint. The worked solution is in solutions/ once you have tried.")
    if shown > seen.get(exercise.id, 0):
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        seen[exercise.id] = shown
        (STATE_DIR / "hints.json").write_text(json.dumps(seen, indent=2, sort_keys=True) + "\n", encoding="utf-8")


# Progress -----------------------------------------------------------------------------------------------------


def status(app_root: Path = EXERCISES_ROOT) -> None:
    results = verdicts(app_root, exercises_of())
    seen = hints_seen()
    for stage in stages():
        of_stage = [result for result in results if result.exercise.stage == stage]
        passed = sum(result.passed for result in of_stage)
        bar = "".join(MARK[result.status] for result in of_stage)
        hints = sum(seen.get(result.exercise.id, 0) for result in of_stage)
        hints_note = f"  {hints} hint{'s' * (hints != 1)} used" if hints else ""
        print(f"  stage {stage}  {bar:<10} {passed}/{len(of_stage)}{hints_note}")
    print()
    print(next_step(results, app_root))


def current_stage(app_root: Path = EXERCISES_ROOT) -> str:
    for stage in stages():
        if not all(result.passed for result in verdicts(app_root, exercises_of(stage))):
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


# Putting reference code or stubs back -------------------------------------------------------------------------


def _body_from(bodies: dict[str, list[str]]) -> Callable[[Region], list[str]]:
    return lambda region: bodies[region.exercise.id]


def _save_aside(app_root: Path, paths: Iterable[Path]) -> Path:
    """Copy the learner's files to .workbook/saved/<time>/ before the workbook changes them."""
    backup = STATE_DIR / "saved" / time.strftime("%Y%m%d-%H%M%S")
    for path in paths:
        (backup / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(app_root / path, backup / path)
    return backup


def reference_filled(app_root: Path, exercise_ids: set[str]) -> dict[Path, str]:
    """The learner's files that would change if ``exercise_ids`` held the reference code, with their new text."""
    updates: dict[Path, str] = {}
    for path in sorted({exercise.path for exercise in discover() if exercise.id in exercise_ids}):
        reference = reference_body((REFERENCE_ROOT / path).read_text(encoding="utf-8"), path)
        text = (app_root / path).read_text(encoding="utf-8")
        updated = replace_regions(text, path, _body_from(reference), only=exercise_ids)
        if updated != text:
            updates[path] = updated
    return updates


def catch_up(stage: str, app_root: Path = EXERCISES_ROOT) -> list[str]:
    """Fill every exercise of the stages before ``stage`` with the reference code. Saves the learner's files first."""
    updates = reference_filled(app_root, {exercise.id for exercise in discover() if exercise.stage < stage})
    if not updates:
        print(f"Nothing to fill: the exercises before stage {stage} already hold the reference code.")
        return []
    backup = _save_aside(app_root, updates)
    for path, updated in updates.items():
        (app_root / path).write_text(updated, encoding="utf-8")
    print(f"Filled the exercises of stages before {stage} in: {', '.join(map(str, updates))}")
    print(f"Your own versions are saved in {backup}")
    return [str(path) for path in updates]


def reset(exercise_id: str, app_root: Path = EXERCISES_ROOT) -> bool:
    """Put one exercise back to its stub. The learner's file is saved aside first. True when something changed."""
    exercise = find_exercise(exercise_id)
    path = app_root / exercise.path
    text = path.read_text(encoding="utf-8")
    stubbed = stub_source(text, exercise.path, only={exercise.id})
    if stubbed == text:
        print(f"Exercise {exercise.id} already holds its stub: nothing to reset.")
        return False
    backup = _save_aside(app_root, [exercise.path])
    path.write_text(stubbed, encoding="utf-8")
    print(f"Exercise {exercise.id} is a stub again in {app_root.name}/{exercise.path}:{line_in(app_root, exercise)}")
    print(f"Your version is saved in {backup / exercise.path}")
    return True
