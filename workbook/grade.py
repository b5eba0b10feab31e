"""What a mentor runs: ``workbook grade PATH`` on a learner's copy writes a Markdown and a JSON report.

The tests come from this repository, never from the learner's copy, and each exercise runs in its own
child process with a time limit: an endless loop or a crash costs only that exercise.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .exercises import discover
from .results import ExerciseResult, run_exercises

POINTS_PER_EXERCISE = 1
GRADE_TIMEOUT_SECONDS = 60


def app_root_of(path: Path) -> Path:
    """A learner's clone holds its app in exercises/; a bare app root is accepted as it is."""
    for candidate in (path / "exercises", path):
        if (candidate / "__init__.py").is_file():
            return candidate
    raise SystemExit(f"{path} holds no application: expected {path / 'exercises' / '__init__.py'}")


def grade(
    path: Path, out_dir: Path, timeout: float = GRADE_TIMEOUT_SECONDS, stages: set[str] | None = None
) -> dict[str, Any]:
    """Grade every exercise, or only those of ``stages`` (a pull request for one stage)."""
    app_root = app_root_of(path.resolve())
    chosen = [exercise for exercise in discover() if stages is None or exercise.stage in stages]
    results = run_exercises(app_root, chosen, timeout=timeout, one_by_one=True)
    report = _report(app_root, results)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, markdown_path = (out_dir / f"grade-{path.resolve().name}.{suffix}" for suffix in ("json", "md"))
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    markdown_path.write_text(_markdown(report), encoding="utf-8")
    print(_markdown(report))
    print(f"Written: {markdown_path} and {json_path}")
    return report


def _report(app_root: Path, results: list[ExerciseResult]) -> dict[str, Any]:
    exercises = [
        {
            "id": result.exercise.id,
            "title": result.exercise.title,
            "status": result.status.value,
            "points": POINTS_PER_EXERCISE if result.passed else 0,
            "max_points": POINTS_PER_EXERCISE,
            "failures": [{"test": failure.test, "message": failure.message} for failure in result.failures],
        }
        for result in results
    ]
    score = POINTS_PER_EXERCISE * sum(result.passed for result in results)
    total = POINTS_PER_EXERCISE * len(results)
    return {
        "app_root": str(app_root),
        "graded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "score": score,
        "max_score": total,
        "percent": round(100 * score / total) if total else 0,
        "exercises": exercises,
    }


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Grade: {report['score']} / {report['max_score']} ({report['percent']}%)",
        "",
        f"Graded `{report['app_root']}` at {report['graded_at']}.",
        "",
        "| exercise | result | points | why it failed |",
        "| --- | --- | --- | --- |",
    ]
    for exercise in report["exercises"]:
        why = "; ".join(
            failure["message"].splitlines()[0] for failure in exercise["failures"][:2] if failure["message"]
        )
        why = why.replace("|", "\\|")
        lines.append(
            f"| {exercise['id']} {exercise['title']} | {exercise['status']} | "
            f"{exercise['points']}/{exercise['max_points']} | {why} |"
        )
    return "\n".join(lines) + "\n"
