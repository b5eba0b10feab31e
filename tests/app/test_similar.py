"""workbook/similar.py: copies are found through renamed names and moved statements; independent work is not."""

import shutil
import textwrap
from pathlib import Path

from workbook.exercises import IGNORED, Region, discover, reference_body, replace_regions
from workbook.grade import learner_names
from workbook.paths import EXERCISES_ROOT, REFERENCE_ROOT
from workbook.similar import DEFAULT_THRESHOLD, find_similar, format_pairs

EXERCISES = {exercise.id: exercise for exercise in discover()}

ANN_LOADS_MIGRATIONS = """
found = []
seen = set()
for file in sorted(directory.iterdir()):
    if file.suffix != ".sql":
        continue
    parts = FILE_NAME.match(file.name)
    if not parts:
        raise MigrationError("bad migration file name: " + file.name)
    version = parts.group("version")
    if version in seen:
        raise MigrationError("duplicate version " + version)
    seen.add(version)
    text = file.read_text(encoding="utf-8")
    found.append(Migration(version, parts.group("name"), text))
return found
"""

# Ann's code with every name changed and her first two (independent) statements swapped.
BOB_COPIES_ANN = """
versions_seen = set()
result = []
for candidate in sorted(directory.iterdir()):
    if candidate.suffix != ".sql":
        continue
    matched = FILE_NAME.match(candidate.name)
    if not matched:
        raise MigrationError("bad migration file name: " + candidate.name)
    number = matched.group("version")
    if number in versions_seen:
        raise MigrationError("duplicate version " + number)
    versions_seen.add(number)
    sql = candidate.read_text(encoding="utf-8")
    result.append(Migration(number, matched.group("name"), sql))
return result
"""

ANN_PENDING = """
known = {}
for migration in available:
    known[migration.version] = migration
for version in sorted(applied):
    if version not in known:
        raise MigrationError(f"applied migration {version} has no file")
    if known[version].checksum != applied[version]:
        raise MigrationError(f"migration {version} was edited after it ran")
pending = []
for migration in available:
    if migration.version not in applied:
        pending.append(migration)
return pending
"""

BOB_PENDING = """
files = {m.version: m for m in available}
missing = sorted(set(applied) - set(files))
if missing:
    raise MigrationError("applied but without a file: " + ", ".join(missing))
edited = [files[v].file_name for v, checksum in applied.items() if files[v].checksum != checksum]
if edited:
    raise MigrationError("changed after they were applied: " + ", ".join(sorted(edited)))
return sorted((m for m in available if m.version not in applied), key=lambda m: m.version)
"""


def make_clone(root: Path) -> Path:
    """A learner's clone as it is before any work: the stubbed exercises/ folder."""
    shutil.copytree(EXERCISES_ROOT, root / "exercises", ignore=IGNORED)
    return root


def write_solution(clone: Path, exercise_id: str, code: str) -> None:
    relative = EXERCISES[exercise_id].path
    path = clone / "exercises" / relative

    def body(region: Region) -> list[str]:
        return textwrap.indent(textwrap.dedent(code).strip("\n"), region.indent).splitlines()

    path.write_text(replace_regions(path.read_text(encoding="utf-8"), relative, body, {exercise_id}), encoding="utf-8")


def reference_code(exercise_id: str) -> str:
    relative = EXERCISES[exercise_id].path
    return "\n".join(reference_body((REFERENCE_ROOT / relative).read_text(encoding="utf-8"), relative)[exercise_id])


def test_a_copy_with_new_names_and_two_statements_swapped_is_reported(tmp_path: Path) -> None:
    ann, bob = make_clone(tmp_path / "ann"), make_clone(tmp_path / "bob")
    write_solution(ann, "03.1", ANN_LOADS_MIGRATIONS)
    write_solution(bob, "03.1", BOB_COPIES_ANN)

    pairs = find_similar([ann, bob])

    assert [(pair.exercise_id, pair.first, pair.second) for pair in pairs] == [("03.1", "ann", "bob")]
    assert pairs[0].score >= DEFAULT_THRESHOLD
    report = format_pairs(pairs)
    assert "03.1" in report and f"{pairs[0].score:.2f}" in report
    assert "versions_seen = set()" in report and "seen = set()" in report


def test_two_independent_solutions_are_not_reported(tmp_path: Path) -> None:
    ann, bob = make_clone(tmp_path / "ann"), make_clone(tmp_path / "bob")
    write_solution(ann, "03.2", ANN_PENDING)
    write_solution(bob, "03.2", BOB_PENDING)

    assert find_similar([ann, bob]) == []


def test_a_pasted_reference_is_reported_against_the_reference(tmp_path: Path) -> None:
    ann, bob = make_clone(tmp_path / "ann"), make_clone(tmp_path / "bob")
    write_solution(ann, "06.4", reference_code("06.4"))

    pairs = find_similar([ann, bob])

    assert [(pair.exercise_id, pair.first, pair.second, pair.score) for pair in pairs] == [
        ("06.4", "ann", "reference", 1.0)
    ]
    assert find_similar([ann, bob], against_reference=False) == []


def test_stubs_are_never_compared(tmp_path: Path) -> None:
    pristine = [make_clone(tmp_path / "ann"), make_clone(tmp_path / "bob")]

    assert find_similar(pristine, threshold=0.0) == []


def test_clones_that_share_a_folder_name_keep_apart(tmp_path: Path) -> None:
    first, second = make_clone(tmp_path / "group-a" / "ann"), make_clone(tmp_path / "group-b" / "ann")
    for clone in (first, second):
        write_solution(clone, "03.1", ANN_LOADS_MIGRATIONS)

    pairs = find_similar([first, second], against_reference=False)

    names = learner_names([first, second])
    assert len(set(names)) == 2, names
    assert [(pair.first, pair.second) for pair in pairs] == [tuple(names)]
