"""Notebooks are committed without outputs, and each stage with exercises has its notebook sections."""

import json
from pathlib import Path

import pytest

from workbook.exercises import Exercise, discover
from workbook.paths import NOTEBOOKS_DIR

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    cells = json.loads(path.read_text())["cells"]
    dirty = [index for index, cell in enumerate(cells) if cell.get("outputs") or cell.get("execution_count")]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them (Edit → Clear Outputs of All Cells)"


@pytest.mark.parametrize("exercise", discover(), ids=lambda exercise: exercise.id)
def test_every_exercise_has_a_section_in_its_notebook(exercise: Exercise) -> None:
    notebook = NOTEBOOKS_DIR.parent / exercise.notebook
    assert notebook.exists(), f"stage {exercise.stage} has no notebook"
    text = "".join("".join(cell["source"]) for cell in json.loads(notebook.read_text())["cells"])
    assert f"## Exercise {exercise.id}" in text, f"{notebook.name} needs a section '## Exercise {exercise.id}'"
