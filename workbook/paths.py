"""Where things live in the repository."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_ROOT = REPO_ROOT / "reference_app"
EXERCISES_ROOT = REPO_ROOT / "exercises"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
STAGE_TESTS_DIR = REPO_ROOT / "tests" / "stages"
# What stage 11 runs against a learner's whole app (the broker-restart test restarts the machine's RabbitMQ: not here).
END_TO_END_TESTS = REPO_ROOT / "tests" / "e2e" / "test_end_to_end.py"
# This copy's own state: saved copies of a learner's code. Never committed.
STATE_DIR = REPO_ROOT / ".workbook"
# The machine's state: data, logs and pid files of the services the workbook starts. Services belong to the
# machine, not to one clone: a second clone (or a deleted one) must find them as they are.
MACHINE_STATE_DIR = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "messenger-workbook"
