"""The benchmark still runs (with a handful of sends): benchmarks are not tests, but they must not rot."""

import json
import subprocess
import sys
from pathlib import Path

from workbook.paths import REPO_ROOT


def test_the_data_layer_benchmark_runs_and_writes_its_results(tmp_path: Path) -> None:
    output = tmp_path / "data_layer.json"
    command = [sys.executable, "bench/data_layer.py", "--sends", "40", "--output", str(output)]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    document = json.loads(output.read_text())
    assert len(document["results"]) == 6 and all(row["sends_per_s"] > 0 for row in document["results"])
    assert "seqs exactly 1..last_seq" in document["check"]
    assert output.with_suffix(".png").stat().st_size > 0
