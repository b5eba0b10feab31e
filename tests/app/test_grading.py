"""Every verdict right: each exercise judged alone, whatever the state of the others; a report a mentor can act on.

A crafted learner's copy stands in for a real one: some exercises pasted from the reference (right), one endless
loop, one syntax error, one off-by-one, the rest untouched stubs. The grader must tell each apart.
"""

import csv
import json
import shutil
from pathlib import Path

import pytest

from workbook import feedback
from workbook.exercises import discover, reference_body, replace_regions
from workbook.feedback import reference_filled
from workbook.grade import grade, points_of
from workbook.paths import EXERCISES_ROOT, REFERENCE_ROOT

ALL = discover()
BY_ID = {exercise.id: exercise for exercise in ALL}

# Right answers: pasted from the reference. 01.2 stays a stub on purpose: every later stage's fixtures call it, and
# judged alone that must not matter. So does 09.2 (09.3's tests sign tokens with it).
PASTED = {
    "01.1", "01.3", "01.4",
    "02.1", "02.2", "02.3", "02.4",
    "03.1", "03.2", "03.3",
    "05.1", "05.2", "05.3", "05.4",
    "06.1", "06.2", "06.3", "06.4",
    "09.1", "09.3",
    "10.1", "10.2", "10.6",
}  # fmt: skip
# Wrong answers: the reference with one edit each.
BROKEN = {
    "06.5": ("< limit then", "<= limit then"),  # off by one: lets limit + 1 through
    "06.6": ("now_seconds, _ = self._client.time()", "while True:\n            pass"),  # an endless loop
    "10.5": ("return row is not None", "return row is not None)"),  # a syntax error
}


def write_exercises(app_root: Path, edits: dict[str, tuple[str, str]]) -> None:
    """Fill each exercise in ``edits`` with the reference code changed by one (old, new) replacement."""
    for exercise_id, (old, new) in edits.items():
        path = BY_ID[exercise_id].path
        bodies = reference_body((REFERENCE_ROOT / path).read_text(), path)
        code = "\n".join(bodies[exercise_id])
        assert old in code, f"the reference of {exercise_id} changed: update this test's edit"
        bodies[exercise_id] = code.replace(old, new).split("\n")
        learner_file = app_root / path
        body = bodies[exercise_id]
        learner_file.write_text(
            replace_regions(learner_file.read_text(), path, lambda _region, body=body: body, {exercise_id})
        )


def paste(app_root: Path, exercise_ids: set[str]) -> None:
    for path, text in reference_filled(app_root, exercise_ids).items():
        (app_root / path).write_text(text)


@pytest.fixture
def crafted_copy(learner_copy: Path) -> Path:
    app_root = learner_copy / "exercises"
    paste(app_root, PASTED)
    write_exercises(app_root, BROKEN)
    return learner_copy


def line_of(path: Path, text: str) -> int:
    return next(number for number, line in enumerate(path.read_text().splitlines(), start=1) if text in line)


def test_grade_gets_every_verdict_of_a_crafted_copy_right(crafted_copy: Path, tmp_path: Path) -> None:
    assert len(PASTED) >= 20
    [report] = grade([crafted_copy], tmp_path / "reports", timeout=60, together=False)
    by_id = {item["id"]: item for item in report["exercises"]}

    wrong = {i: (by_id[i]["status"], by_id[i]["reasons"][:1]) for i in PASTED if by_id[i]["status"] != "passed"}
    assert not wrong, f"every pasted exercise passes alone, whatever the others: {wrong}"

    untouched = set(BY_ID) - PASTED - set(BROKEN)
    started = {i: by_id[i]["status"] for i in untouched if by_id[i]["status"] != "not started"}
    assert not started, f"a stub is 'not started': {started}"

    off_by_one = by_id["06.5"]
    assert off_by_one["status"] == "failed" and 0 < off_by_one["tests_passed"] < off_by_one["tests_run"]
    assert any("must be refused" in reason for reason in off_by_one["reasons"]), off_by_one["reasons"]
    assert 0 < off_by_one["points"] < off_by_one["max_points"], "partial credit: some of its tests pass"

    loop = by_id["06.6"]
    assert loop["status"] == "timed out" and loop["points"] == 0
    loop_line = line_of(crafted_copy / "exercises" / "auth" / "token_denylist.py", "while True:")
    assert f"exercises/auth/token_denylist.py:{loop_line}" in loop["reasons"][0], loop["reasons"]

    syntax = by_id["10.5"]
    bad_line = line_of(crafted_copy / "exercises" / "events" / "notifications_pg.py", "return row is not None)")
    assert syntax["status"] == "failed"
    assert f"exercises/events/notifications_pg.py:{bad_line}: SyntaxError" in syntax["reasons"][0], syntax["reasons"]

    points = points_of(ALL)
    assert report["score"] == pytest.approx(sum(points[i] for i in PASTED) + off_by_one["points"])
    assert report["max_score"] == sum(points.values())
    assert report["stages"]["06"]["passed"] == 4 and report["stages"]["04"]["points"] == 0


def test_a_broken_file_costs_only_its_exercises_and_a_loop_only_its_own(learner_copy: Path, tmp_path: Path) -> None:
    app_root = learner_copy / "exercises"
    paste(app_root, {"06.1", "06.2", "06.3", "06.4", "06.5"})
    write_exercises(app_root, {"06.6": BROKEN["06.6"]})
    presence = app_root / "gateway" / "presence.py"  # 06.3 and 06.4 live here; a helper of the learner's is broken
    presence.write_text(presence.read_text() + "\n\ndef helper(:\n    pass\n")
    broken_line = line_of(presence, "def helper(:")

    [report] = grade([learner_copy], tmp_path / "reports", timeout=60, stages={"06"})
    by_id = {item["id"]: item for item in report["exercises"]}

    assert {i for i, item in by_id.items() if item["status"] == "passed"} == {"06.1", "06.2", "06.5"}
    for exercise_id in ("06.3", "06.4"):
        assert by_id[exercise_id]["status"] == "failed"
        assert f"exercises/gateway/presence.py:{broken_line}: SyntaxError" in by_id[exercise_id]["reasons"][0]
    assert by_id["06.6"]["status"] == "timed out"
    # Together, the learner's app as it is: the broken file stops the whole stage from importing.
    assert by_id["06.1"]["together"].startswith("fails with the other pieces: your code could not be imported")
    markdown = (tmp_path / "reports" / "grade-learner.md").read_text()
    assert "| 06 | 3 / 6 | 3 / 6 |" in markdown and "| 06.6 a deny-list entry" in markdown


def test_together_names_the_exercise_that_blocks(learner_copy: Path, tmp_path: Path) -> None:
    """01.1 pasted, 01.2 a stub: alone 01.3 passes; together its tests reach 01.2's stub, and the report says so."""
    paste(learner_copy / "exercises", {"01.1", "01.3"})
    [report] = grade([learner_copy], tmp_path / "reports", timeout=60, stages={"01"})
    by_id = {item["id"]: item for item in report["exercises"]}
    assert by_id["01.3"]["status"] == "passed" and by_id["01.3"]["together"] == "needs 01.2"
    assert by_id["01.1"]["together"] == "passes"


def test_a_class_gets_a_report_each_a_summary_and_the_mentors_extra_tests(tmp_path: Path) -> None:
    for name, done in (("ann", {"01.1", "01.3"}), ("bob", {"01.1"})):
        shutil.copytree(EXERCISES_ROOT, tmp_path / "class" / name / "exercises")
        paste(tmp_path / "class" / name / "exercises", done)
    (tmp_path / "class" / "bob" / ".workbook").mkdir()
    (tmp_path / "class" / "bob" / ".workbook" / "hints.json").write_text(json.dumps({"01.1": 2}))
    extra = tmp_path / "mentor_tests"
    extra.mkdir()
    (extra / "test_mine.py").write_text(
        "import pytest\nfrom app.config.settings import Environment\n\n\n"
        '@pytest.mark.exercise("01.3")\ndef test_a_hidden_check() -> None:\n'
        '    assert Environment("prod") is Environment.PROD\n\n\n'
        '@pytest.mark.exercise("01.3")\ndef test_a_hidden_check_no_one_passes() -> None:\n'
        '    assert False, "the mentor\'s own sentence"\n'
    )

    reports = grade(
        [tmp_path / "class"], tmp_path / "reports", timeout=60, stages={"01"}, extra_tests=extra, together=False
    )

    assert [report["learner"] for report in reports] == ["ann", "bob"]
    ann = {item["id"]: item for item in reports[0]["exercises"]}
    assert ann["01.3"]["status"] == "failed" and ann["01.3"]["reasons"][0].startswith("the mentor's own sentence")
    assert ann["01.3"]["tests_run"] == ann["01.3"]["tests_passed"] + 1, "the two hidden tests are counted"
    assert reports[1]["hints_used"] == 2
    rows = list(csv.reader((tmp_path / "reports" / "class-summary.csv").open()))
    assert rows[0][:5] == ["learner", "score", "max_score", "percent", "hints_used"] and rows[0][5:] == [
        "01.1",
        "01.2",
        "01.3",
        "01.4",
    ]
    assert [row[0] for row in rows[1:]] == ["ann", "bob"] and rows[2][5] == "1"
    summary = (tmp_path / "reports" / "class-summary.md").read_text()
    assert summary.startswith("# Class summary: 2 learners") and "| bob |" in summary
    assert (tmp_path / "reports" / "grade-ann.md").is_file() and (tmp_path / "reports" / "grade-bob.json").is_file()


# Stage 11: the learner's whole app, end to end -----------------------------------------------------------------


def test_check_11_passes_on_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    assert feedback.check("11", REFERENCE_ROOT) is True, capsys.readouterr().out
    output = capsys.readouterr().out
    assert "✓ two users chat in real time" in output and "✗" not in output


def test_check_11_on_pristine_exercises_names_the_stub_that_stops_the_app(capsys: pytest.CaptureFixture[str]) -> None:
    assert feedback.check("11", EXERCISES_ROOT) is False
    output = capsys.readouterr().out
    assert "needs 01.1: your app ran that stub" in output and "the app did not start" in output, output


def test_check_11_says_where_a_message_stopped(learner_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A relay that crashes on every row: the message is stored, its event never leaves, and check 11 says so."""
    app_root = learner_copy / "exercises"
    paste(app_root, set(BY_ID))
    write_exercises(app_root, {"10.3": ("event_from_row(row)", "event_from_row(row[1:])")})
    assert feedback.check("11", app_root) is False
    output = capsys.readouterr().out
    assert "✓ a post with an image is uploaded and read back" in output, "the rest of the app works"
    assert "was stored but its outbox row was never published to RabbitMQ: look at the relay process's log" in output
    assert 'File "exercises/events/relay.py", line' in output, f"the relay's log is quoted, with its paths: {output}"
