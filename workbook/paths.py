"""Where things live in the repository."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_ROOT = REPO_ROOT / "reference_app"
EXERCISES_ROOT = REPO_ROOT / "exercises"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
STAGE_TESTS_DIR = REPO_ROOT / "tests" / "stages"
# Machine-local state: service data and logs, pid files, saved copies of a learner's code. Never committed.
STATE_DIR = REPO_ROOT / ".workbook"
