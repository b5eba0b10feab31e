"""Generate the messenger's gRPC code from protos/ into reference_app/grpc_api/. Run it with `make protos`.

For each ``protos/messenger/v1/<name>.proto`` it writes four files: ``<name>_pb2.py`` (the messages),
``<name>_pb2_grpc.py`` (the client stub and the servicer base class), and their type stubs ``.pyi`` from
mypy-protobuf, so that mypy knows every field and every method.

protoc writes imports as if ``messenger`` were a top-level package (``from messenger.v1 import chat_pb2``).
Ours is not: the same files are imported as ``reference_app.grpc_api`` and, from exercises/, as
``app.grpc_api``. So those imports are rewritten to package-relative ones (``from . import chat_pb2``).
Nothing else is changed: the files stay exactly what protoc wrote, and tests/app/test_protos_fresh.py checks
that the committed ones are what this script writes today.

Usage: python scripts/gen_protos.py [--out DIR]   (default: reference_app/grpc_api)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = REPO_ROOT / "protos"
PROTO_PACKAGE = Path("messenger", "v1")
DEFAULT_TARGET = REPO_ROOT / "reference_app" / "grpc_api"

# Every file protoc and the plugins write: <name>_pb2.py, <name>_pb2.pyi, <name>_pb2_grpc.py, <name>_pb2_grpc.pyi.
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
ABSOLUTE_IMPORT = re.compile(r"^from messenger\.v1 import (\w+_pb2) as ", re.MULTILINE)


def is_generated(path: Path) -> bool:
    return path.name.endswith(GENERATED_SUFFIXES)


def run_protoc(output: Path) -> None:
    """protoc with the Python, gRPC and mypy-protobuf generators, all writing under ``output``."""
    # The plugins live beside this interpreter (.venv/bin), which need not be on the PATH.
    scripts = Path(sysconfig.get_path("scripts"))
    protos = sorted(str(path.relative_to(PROTO_ROOT)) for path in (PROTO_ROOT / PROTO_PACKAGE).glob("*.proto"))
    command = [
        sys.executable, "-m", "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--plugin=protoc-gen-mypy={scripts / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={scripts / 'protoc-gen-mypy_grpc'}",
        f"--python_out={output}",
        f"--grpc_python_out={output}",
        f"--mypy_out={output}",
        f"--mypy_grpc_out={output}",
        *protos,
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"protoc failed:\n{result.stderr.strip()}")


def make_imports_relative(source: str) -> str:
    """``from messenger.v1 import chat_pb2 as x`` → ``from . import chat_pb2 as x``."""
    return ABSOLUTE_IMPORT.sub(r"from . import \1 as ", source)


def generate(target: Path) -> list[Path]:
    """Write the generated files into ``target``, replacing the old ones; return the paths written."""
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="protos-") as scratch:
        run_protoc(Path(scratch))
        fresh = sorted(path for path in (Path(scratch) / PROTO_PACKAGE).iterdir() if is_generated(path))
        # A .proto that was deleted or renamed must not leave its old modules behind.
        for stale in target.iterdir():
            if is_generated(stale):
                stale.unlink()
        written = []
        for path in fresh:
            destination = target / path.name
            destination.write_text(make_imports_relative(path.read_text(encoding="utf-8")), encoding="utf-8")
            written.append(destination)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_TARGET, help="where to write (default: %(default)s)")
    arguments = parser.parse_args()
    for path in generate(arguments.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
