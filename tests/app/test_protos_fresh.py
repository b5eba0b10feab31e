"""The generated gRPC code in reference_app/grpc_api/ is exactly what protos/ generates today.

A .proto edited without regenerating would leave the servers and clients speaking the old messages, and
nothing else would notice until a field went missing at run time.
"""

import subprocess
import sys
from pathlib import Path

from workbook.paths import REPO_ROOT

GENERATOR = REPO_ROOT / "scripts" / "gen_protos.py"
COMMITTED = REPO_ROOT / "reference_app" / "grpc_api"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def generated_files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.name.endswith(GENERATED_SUFFIXES)}


def test_the_committed_generated_code_matches_the_protos(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--out", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"scripts/gen_protos.py failed: {result.stderr.strip()}"
    fresh, committed = generated_files(tmp_path), generated_files(COMMITTED)
    assert fresh, "the generator wrote nothing: are there .proto files in protos/messenger/v1/?"
    missing = sorted(fresh.keys() - committed.keys())
    extra = sorted(committed.keys() - fresh.keys())
    stale = sorted(name for name in fresh.keys() & committed.keys() if fresh[name] != committed[name])
    assert not (missing or extra or stale), (
        f"reference_app/grpc_api/ is out of date with protos/ (missing {missing}, left over {extra}, differ {stale}): "
        "run make protos"
    )


def test_generated_modules_import_each_other_relatively() -> None:
    # The same files are imported as reference_app.grpc_api and as app.grpc_api: an absolute import would break one.
    for name, content in generated_files(COMMITTED).items():
        assert b"from messenger.v1 import" not in content, f"{name} imports messenger.v1 absolutely: run make protos"
