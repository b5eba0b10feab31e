"""The single-source exercise machinery: build, drift check, per-exercise stub check, catch-up and grading."""

import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from workbook import exercises, feedback
from workbook.exercises import MarkupError, build, discover, find_regions, stub_source, tree_differences
from workbook.paths import EXERCISES_ROOT, REFERENCE_ROOT, REPO_ROOT
from workbook.results import Status, judge_together

ALL_EXERCISES = discover()
TIMEOUT = 120


def test_every_stage_so_far_has_at_least_three_exercises_with_hints() -> None:
    for stage in ("01", "02", "03", "04", "05", "06"):
        of_stage = [exercise for exercise in ALL_EXERCISES if exercise.stage == stage]
        assert len(of_stage) >= 3, f"stage {stage} has {len(of_stage)} exercises"
        assert all(exercise.hints for exercise in of_stage), f"every exercise of stage {stage} has a hint"


def test_a_region_becomes_a_stub_that_keeps_its_markers_and_drops_its_hints() -> None:
    source = (
        "def f() -> int:\n    # exercise 09.9: return one\n    # hint: a secret\n    return 1\n    # end exercise\n"
    )
    stubbed = stub_source(source, Path("demo.py"))
    assert "# exercise 09.9: return one" in stubbed and "# end exercise" in stubbed
    assert "a secret" not in stubbed and "return 1" not in stubbed
    assert '    raise NotImplementedError("exercise 09.9 is yours to write' in stubbed
    namespace: dict[str, object] = {}
    exec(compile(stubbed, "demo.py", "exec"), namespace)
    with pytest.raises(NotImplementedError, match=r"workbook hint 09\.9"):
        namespace["f"]()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("# exercise 01.1: a\nx = 1\n", "never closed"),
        ("x = 1\n# end exercise\n", "without an opening"),
        ("# exercise 01.1: a\n# exercise 01.2: b\n# end exercise\n", "starts inside"),
    ],
)
def test_broken_markup_is_refused_with_its_line(source: str, problem: str) -> None:
    with pytest.raises(MarkupError, match=problem):
        find_regions(source.splitlines(), Path("demo.py"))


def test_exercises_folder_is_exactly_what_the_build_writes(tmp_path: Path) -> None:
    build(REFERENCE_ROOT, tmp_path / "exercises")
    assert tree_differences(tmp_path / "exercises", EXERCISES_ROOT) == [], "run: python -m workbook exercises build"


def test_the_drift_check_notices_an_edit(tmp_path: Path) -> None:
    build(REFERENCE_ROOT, tmp_path / "a")
    build(REFERENCE_ROOT, tmp_path / "b")
    (tmp_path / "b" / "logger.py").write_text("# edited by hand\n")
    (tmp_path / "b" / "stray.py").write_text("")
    assert tree_differences(tmp_path / "a", tmp_path / "b") == [
        "not built from reference_app/: stray.py",
        "differs: logger.py",
    ]


def test_every_exercise_passes_on_the_reference() -> None:
    results = judge_together(REFERENCE_ROOT, ALL_EXERCISES, timeout=TIMEOUT)
    failing = {result.exercise.id: result.failures for result in results if not result.passed}
    assert not failing, f"the reference must pass every stage test: {failing}"


def test_every_exercise_waits_for_the_learner_on_the_pristine_stubs() -> None:
    """Together, each exercise fails on its own stub or on an earlier one's; a crash or a passing stub is a bug."""
    results = judge_together(EXERCISES_ROOT, ALL_EXERCISES, timeout=TIMEOUT)
    unexpected = {
        r.exercise.id: (r.status, r.failures[:1])
        for r in results
        if r.status not in (Status.NOT_STARTED, Status.WAITING)
    }
    assert not unexpected


@pytest.mark.parametrize("exercise", ALL_EXERCISES, ids=lambda exercise: exercise.id)
def test_stubbing_only_this_exercise_fails_one_of_its_tests(exercise: exercises.Exercise, tmp_path: Path) -> None:
    """A test that passes on a stub tests nothing: each exercise must be caught on its own."""
    build(REFERENCE_ROOT, tmp_path / "app", only={exercise.id})
    [result] = judge_together(tmp_path / "app", [exercise], timeout=TIMEOUT)
    assert not result.passed, f"with only {exercise.id} stubbed, every one of its {result.tests_run} tests still passes"
    assert result.tests_run >= 2, f"{exercise.id} is graded by {result.tests_run} test(s); give it at least two"


def replace_stub(source: str, exercise_id: str, code: str) -> str:
    """Put a learner's ``code`` where the stub of one exercise stands."""
    stub = re.compile(
        rf"^(?P<indent>[ ]*)raise NotImplementedError\(\"exercise {re.escape(exercise_id)} .*$", re.MULTILINE
    )
    match = stub.search(source)
    assert match, f"no stub of {exercise_id}"
    return source[: match.start()] + match["indent"] + code.format(indent=match["indent"]) + source[match.end() :]


def test_catch_up_fills_earlier_stages_and_saves_the_learners_files(
    learner_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feedback, "STATE_DIR", learner_copy / ".workbook")
    app_root = learner_copy / "exercises"
    settings_file = app_root / "config" / "settings.py"
    mine = settings_file.read_text().replace("# end exercise", "# my own attempt\n    # end exercise", 1)
    settings_file.write_text(mine)

    filled = feedback.catch_up("02", app_root)

    assert filled == ["config/settings.py"]
    chosen = [exercise for exercise in ALL_EXERCISES if exercise.stage in {"01", "02"}]
    results = {result.exercise.id: result for result in judge_together(app_root, chosen, timeout=TIMEOUT)}
    assert all(results[exercise_id].passed for exercise_id in ("01.1", "01.2", "01.3", "01.4"))
    assert not any(results[exercise_id].passed for exercise_id in ("02.1", "02.2", "02.3", "02.4"))
    [saved] = (learner_copy / ".workbook" / "saved").glob("*/config/settings.py")
    assert saved.read_text() == mine, "the learner's own version is kept"


def test_check_names_the_failing_assertion_and_the_next_exercise(learner_copy: Path) -> None:
    app_root = learner_copy / "exercises"
    settings_file = app_root / "config" / "settings.py"
    settings_file.write_text(
        replace_stub(settings_file.read_text(), "01.1", "return Environment.LOCAL  # wrong on purpose")
    )

    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from workbook.feedback import check; from pathlib import Path; check('01', Path({str(app_root)!r}))",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert "✗ 01.1" in result.stdout
    assert "APP_ENV=dev in the environment must choose 'dev'" in result.stdout, result.stdout
    assert "Traceback" not in result.stdout
    assert "Next: exercise 01.1" in result.stdout and "python -m workbook hint 01.1" in result.stdout


def test_hint_shows_one_hint_at_a_time_and_remembers(
    learner_copy: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feedback, "STATE_DIR", learner_copy / ".workbook")
    [exercise] = [exercise for exercise in ALL_EXERCISES if exercise.id == "02.3"]
    first, second, third = exercise.hints
    feedback.hint("02.3", app_root=learner_copy / "exercises")
    output = capsys.readouterr().out
    assert first in output and second not in output, "the first call shows the first hint only"
    feedback.hint("02.3", app_root=learner_copy / "exercises")
    output = capsys.readouterr().out
    assert first in output and second in output and third not in output
    assert feedback.hints_seen(learner_copy / ".workbook") == {"02.3": 2}
    feedback.hint("02.3", show_all=True, app_root=learner_copy / "exercises")
    assert third in capsys.readouterr().out
    assert feedback.hints_seen(learner_copy / ".workbook") == {"02.3": 3}


def test_hint_gives_the_line_of_the_learners_own_file(
    learner_copy: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """exercises/ has no hint lines, so its regions sit higher than the reference's: the learner's line counts."""
    monkeypatch.setattr(feedback, "STATE_DIR", learner_copy / ".workbook")
    [exercise] = [exercise for exercise in ALL_EXERCISES if exercise.id == "04.6"]
    learner_file = learner_copy / "exercises" / exercise.path
    line = learner_file.read_text().splitlines().index(f"    # exercise 04.6: {exercise.title}") + 1
    assert line != exercise.line, "the test needs a region whose line differs between the two copies"
    feedback.hint("04.6", app_root=learner_copy / "exercises")
    assert f"exercises/{exercise.path}:{line}\n" in capsys.readouterr().out


def test_reset_puts_back_the_stub_and_saves_the_learners_version(
    learner_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feedback, "STATE_DIR", learner_copy / ".workbook")
    app_root = learner_copy / "exercises"
    settings_file = app_root / "config" / "settings.py"
    pristine = settings_file.read_text()
    mine = replace_stub(pristine, "01.1", "return Environment.LOCAL  # my attempt")
    settings_file.write_text(mine)

    assert feedback.reset("01.1", app_root) is True
    assert settings_file.read_text() == pristine, "the region holds its stub again, the rest is untouched"
    [saved] = (learner_copy / ".workbook" / "saved").glob("*/config/settings.py")
    assert saved.read_text() == mine
    assert feedback.reset("01.1", app_root) is False, "a stub is left alone"


def test_watch_checks_again_when_a_file_is_saved(learner_copy: Path) -> None:
    app_root = learner_copy / "exercises"
    settings_file = app_root / "config" / "settings.py"
    command = [sys.executable, "-u", "-m", "workbook", "watch", "--app-root", str(app_root)]
    watcher = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    done = threading.Event()

    def keep_saving() -> None:  # saves until the watcher reacts: it may start watching a moment after it says so
        while not done.wait(1):
            settings_file.write_text(settings_file.read_text() + "\n")

    saver = threading.Thread(target=keep_saving)
    killer = threading.Timer(TIMEOUT, watcher.kill)
    seen: list[str] = []
    try:
        killer.start()
        assert watcher.stdout is not None
        for line in watcher.stdout:
            seen.append(line)
            if line.startswith("Watching"):
                saver.start()
            if sum(line.startswith("Stage 01:") for line in seen) == 2:
                break
    finally:
        done.set()
        killer.cancel()
        watcher.kill()
        watcher.wait()
        if saver.is_alive():
            saver.join()
    assert sum(line.startswith("Stage 01:") for line in seen) == 2, "a save must trigger a second check:\n" + "".join(
        seen
    )


def test_a_build_would_not_silently_replace_a_learners_code(learner_copy: Path) -> None:
    app_root = learner_copy / "exercises"
    assert exercises.written_exercises(app_root) == [], "pristine stubs are not a learner's work"
    settings_file = app_root / "config" / "settings.py"
    settings_file.write_text(replace_stub(settings_file.read_text(), "01.1", "return Environment.LOCAL"))
    assert exercises.written_exercises(app_root) == ["01.1 in config/settings.py"]


def test_together_a_stage_that_cannot_be_imported_costs_only_that_stage(learner_copy: Path) -> None:
    app_root = learner_copy / "exercises"
    (app_root / "logger.py").write_text("this is not python\n")
    results = {
        r.exercise.id: r
        for r in judge_together(app_root, [e for e in ALL_EXERCISES if e.stage in {"01", "02"}], timeout=TIMEOUT)
    }
    assert results["02.1"].status is Status.FAILED and "could not be imported" in results["02.1"].failures[0].message
    assert results["01.1"].status is Status.NOT_STARTED, "stage 01 is still judged on its own tests"
