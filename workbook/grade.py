"""What a mentor runs: ``workbook grade CLONE…`` writes a Markdown and a JSON report per learner.

Each exercise is judged alone (its score) and the learner's app together (a second column that shows whether
the pieces work with each other). The tests come from this repository, never from the learner's copy, and each
run is a time-limited child process: an endless loop or a crash costs only what it touches. Several clones (or a
folder of clones) also get a class summary in Markdown and CSV.
"""

from __future__ import annotations

import csv
import json
import time
import tomllib
from pathlib import Path
from typing import Any

from .exercises import Exercise, discover
from .feedback import hints_seen
from .paths import STAGE_TESTS_DIR
from .results import EndToEnd, ExerciseResult, Status, judge_alone, judge_end_to_end, judge_together

GRADE_TIMEOUT_SECONDS = 60
END_TO_END_TIMEOUT_SECONDS = 600
POINTS_FILE = STAGE_TESTS_DIR / "points.toml"


def points_of(exercises: list[Exercise], points_file: Path = POINTS_FILE) -> dict[str, float]:
    """Points per exercise: 1 unless tests/stages/points.toml says otherwise."""
    listed = tomllib.loads(points_file.read_text(encoding="utf-8")).get("points", {}) if points_file.is_file() else {}
    unknown = set(listed) - {exercise.id for exercise in exercises}
    if unknown and len(exercises) == len(discover()):
        raise SystemExit(f"{points_file} names exercises that do not exist: {', '.join(sorted(unknown))}")
    return {exercise.id: float(listed.get(exercise.id, 1)) for exercise in exercises}


def app_root_of(path: Path) -> Path:
    """A learner's clone holds its app in exercises/; a bare app root is accepted as it is."""
    for candidate in (path / "exercises", path):
        if (candidate / "__init__.py").is_file():
            return candidate
    raise SystemExit(f"{path} holds no application: expected {path / 'exercises' / '__init__.py'}")


def clones_in(paths: list[Path]) -> list[Path]:
    """The clones named, where a folder that holds no app itself stands for every clone inside it."""
    clones: list[Path] = []
    for path in paths:
        path = path.resolve()
        if (path / "exercises" / "__init__.py").is_file() or (path / "__init__.py").is_file():
            clones.append(path)
            continue
        inside = sorted(child for child in path.iterdir() if child.is_dir() and (child / "exercises").is_dir())
        if not inside:
            raise SystemExit(f"{path} is neither a learner's clone nor a folder of clones (no exercises/ found)")
        clones += inside
    return clones


def learner_names(clones: list[Path]) -> list[str]:
    """A name per clone: its folder's name, with its parent's added where two folders share a name."""
    names = [clone.name if clone.name != "exercises" else clone.parent.name for clone in clones]
    return [
        f"{clone.parent.name}-{name}" if names.count(name) > 1 else name
        for clone, name in zip(clones, names, strict=True)
    ]


def grade(
    paths: list[Path],
    out_dir: Path,
    timeout: float = GRADE_TIMEOUT_SECONDS,
    stages: set[str] | None = None,
    *,
    extra_tests: Path | None = None,
    together: bool = True,
    end_to_end: bool = False,
) -> list[dict[str, Any]]:
    """Grade every exercise (or those of ``stages``) of each clone; write each report and, for several, a summary."""
    clones = clones_in(paths)
    chosen = [exercise for exercise in discover() if stages is None or exercise.stage in stages]
    points = points_of(chosen)
    out_dir.mkdir(parents=True, exist_ok=True)
    reports = []
    for clone, name in zip(clones, learner_names(clones), strict=True):
        started = time.monotonic()
        app_root = app_root_of(clone)
        alone = judge_alone(app_root, chosen, timeout=timeout, extra_tests=extra_tests)
        with_others = judge_together(app_root, chosen, timeout=timeout, extra_tests=extra_tests) if together else []
        state_dir = clone / ".workbook" if app_root != clone else clone.parent / ".workbook"
        report = _report(name, app_root, alone, with_others, points, hints_seen(state_dir))
        if end_to_end:
            report["end_to_end"] = _end_to_end(judge_end_to_end(app_root, timeout=END_TO_END_TIMEOUT_SECONDS))
        report["seconds"] = round(time.monotonic() - started, 1)
        _write(out_dir / f"grade-{name}", report, _markdown(report))
        print(_markdown(report))
        reports.append(report)
    if len(reports) > 1:
        _write_class_summary(out_dir, reports)
    return reports


def _write(stem: Path, report: dict[str, Any], markdown: str) -> None:
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    stem.with_suffix(".md").write_text(markdown, encoding="utf-8")
    print(f"Written: {stem}.md and {stem}.json")


def _end_to_end(result: EndToEnd) -> dict[str, Any]:
    return {
        "ok": result.ok,
        "passed": result.passed,
        "failures": [{"test": failure.test, "message": failure.message} for failure in result.failures],
    }


def _together_note(alone: ExerciseResult, together: ExerciseResult | None) -> str:
    if together is None:
        return ""
    if together.passed:
        return "passes"
    if together.status is Status.WAITING:
        return together.failures[0].message.split(":")[0]  # "needs 01.2"
    if alone.passed:  # right on its own, wrong with the learner's other pieces
        return f"fails with the other pieces: {together.failures[0].message.splitlines()[0]}"
    return together.status.value


def _report(
    name: str,
    app_root: Path,
    alone: list[ExerciseResult],
    together: list[ExerciseResult],
    points: dict[str, float],
    hints: dict[str, int],
) -> dict[str, Any]:
    together_of = {result.exercise.id: result for result in together}
    exercises: list[dict[str, Any]] = []
    for result in alone:
        exercise = result.exercise
        share = 1.0 if result.passed else result.share_passed if result.status is Status.FAILED else 0.0
        reasons = list(dict.fromkeys(failure.message for failure in result.failures))
        exercises.append(
            {
                "id": exercise.id,
                "stage": exercise.stage,
                "title": exercise.title,
                "status": result.status.value,
                "tests_passed": result.tests_passed,
                "tests_run": result.tests_run,
                "points": round(points[exercise.id] * share, 2),
                "max_points": points[exercise.id],
                "together": _together_note(result, together_of.get(exercise.id)),
                "hints_used": hints.get(exercise.id, 0),
                "failures": [{"test": failure.test, "message": failure.message} for failure in result.failures],
                "reasons": reasons,
            }
        )
    stages: dict[str, dict[str, Any]] = {}
    for item in exercises:
        stage = stages.setdefault(item["stage"], {"points": 0.0, "max_points": 0.0, "passed": 0, "exercises": 0})
        stage["points"] = round(stage["points"] + item["points"], 2)
        stage["max_points"] += item["max_points"]
        stage["passed"] += item["status"] == Status.PASSED
        stage["exercises"] += 1
    score: float = round(sum(item["points"] for item in exercises), 2)
    total: float = sum(item["max_points"] for item in exercises)
    return {
        "learner": name,
        "app_root": str(app_root),
        "graded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "score": score,
        "max_score": total,
        "percent": round(100 * score / total) if total else 0,
        "passed": sum(item["status"] == Status.PASSED for item in exercises),
        "hints_used": sum(hints.get(str(item["id"]), 0) for item in exercises),
        "stages": stages,
        "exercises": exercises,
    }


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _number(value: float) -> str:
    return f"{value:g}"


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# {report['learner']}: {_number(report['score'])} / {_number(report['max_score'])} ({report['percent']}%)",
        "",
        f"Graded `{report['app_root']}` at {report['graded_at']}: {report['passed']} of "
        f"{len(report['exercises'])} exercises pass on their own; {report['hints_used']} hints used.",
        "",
        "Each exercise is judged **alone** (the reference app with only this exercise's region the learner's), which"
        " gives the points; a share of its tests passed gives partial credit. **Together** is the learner's app as it"
        " is: it shows whether their pieces work with each other, and what blocks.",
        "",
        "| stage | points | exercises passed |",
        "| --- | ---: | ---: |",
    ]
    for stage, subtotal in report["stages"].items():
        lines.append(
            f"| {stage} | {_number(subtotal['points'])} / {_number(subtotal['max_points'])} | "
            f"{subtotal['passed']} / {subtotal['exercises']} |"
        )
    lines += [
        "",
        "| exercise | alone | tests | points | together | hints | why it failed |",
        "| --- | --- | ---: | ---: | --- | ---: | --- |",
    ]
    for item in report["exercises"]:
        tests = f"{item['tests_passed']}/{item['tests_run']}" if item["tests_run"] else ""
        why = "; ".join(reason.splitlines()[0] for reason in item["reasons"][:2])
        lines.append(
            f"| {item['id']} {_cell(item['title'])} | {item['status']} | {tests} | "
            f"{_number(item['points'])}/{_number(item['max_points'])} | {_cell(item['together'])} | "
            f"{item['hints_used'] or ''} | {_cell(why)} |"
        )
    if "end_to_end" in report:
        end_to_end = report["end_to_end"]
        lines += ["", f"## End to end (stage 11): {'works' if end_to_end['ok'] else 'broken'}", ""]
        lines += [f"- ✓ {sentence}" for sentence in end_to_end["passed"]]
        lines += [f"- ✗ {failure['test']}: {_cell(failure['message'])}" for failure in end_to_end["failures"]]
    return "\n".join(lines) + "\n"


def _write_class_summary(out_dir: Path, reports: list[dict[str, Any]]) -> None:
    """One row per learner, one column per exercise: the points, in Markdown and CSV."""
    ids = [item["id"] for item in reports[0]["exercises"]]
    header = ["learner", "score", "max_score", "percent", "hints_used", *ids]
    rows = [
        [
            report["learner"],
            _number(report["score"]),
            _number(report["max_score"]),
            str(report["percent"]),
            str(report["hints_used"]),
            *(_number(item["points"]) for item in report["exercises"]),
        ]
        for report in reports
    ]
    with (out_dir / "class-summary.csv").open("w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows([header, *rows])
    passed_by = {
        exercise_id: sum(report["exercises"][index]["status"] == Status.PASSED for report in reports)
        for index, exercise_id in enumerate(ids)
    }
    hardest = sorted(ids, key=lambda exercise_id: passed_by[exercise_id])[:5]
    lines = [
        f"# Class summary: {len(reports)} learners",
        "",
        "| learner | score | % | hints |",
        "| --- | ---: | ---: | ---: |",
        *(f"| {row[0]} | {row[1]} / {row[2]} | {row[3]} | {row[4]} |" for row in rows),
        "",
        "Fewest learners passed: "
        + ", ".join(f"{exercise_id} ({passed_by[exercise_id]}/{len(reports)})" for exercise_id in hardest),
        "",
        "Points per exercise (learner × exercise): `class-summary.csv`.",
    ]
    (out_dir / "class-summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"Written: {out_dir / 'class-summary.md'} and {out_dir / 'class-summary.csv'}")
