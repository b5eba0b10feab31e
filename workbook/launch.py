"""``python -m workbook.launch ROOT MODULE [ARGS…]``: run ``MODULE`` of an application root as a program.

The root (reference_app/, exercises/ or a learner's copy) is mounted as the package ``app`` first, exactly as
the stage tests mount it, so ``python -m workbook.launch exercises auth.grpc_server`` runs the learner's auth
service the way ``python -m reference_app.auth.grpc_server`` runs the reference one.
"""

import runpy
import sys
from pathlib import Path

from .approot import APP_PACKAGE, mount_app


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit("usage: python -m workbook.launch ROOT MODULE [ARGS...]")
    root, module, *arguments = sys.argv[1:]
    mount_app(Path(root).resolve())
    sys.argv = [f"{APP_PACKAGE}.{module}", *arguments]
    runpy.run_module(f"{APP_PACKAGE}.{module}", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
