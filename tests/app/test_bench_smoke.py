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


def test_the_websocket_benchmark_runs_and_writes_its_results(tmp_path: Path) -> None:
    output = tmp_path / "websocket.json"
    command = [sys.executable, "bench/websocket.py", "--clients", "6", "--rate", "20", "--seconds", "2"]
    result = subprocess.run(
        [*command, "--output", str(output)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = json.loads(output.read_text())["results"]
    assert row["clients"] == 6 and row["sent"] == 40, f"6 clients sent 20/s for 2 s: {row}"
    assert row["acked"] == row["sent"], f"every send is acked: {row}"
    assert row["delivered"] == row["sent"], f"every message reaches the other member: {row}"
    assert row["p50_ms"] > 0 and row["gateway_kib_per_client"] is not None, row
