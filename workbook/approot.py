"""Import an application root (reference_app/, exercises/ or a learner's copy) under the one name ``app``.

The stage tests say ``from app.config import load_settings`` and so run unchanged against any root. The
code inside a root imports its own modules relatively, which is what makes this work.
"""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

APP_PACKAGE = "app"


def mount_app(root: Path) -> ModuleType:
    init = root / "__init__.py"
    if not init.is_file():
        raise FileNotFoundError(f"{root} is not an application root: it has no __init__.py")
    spec = importlib.util.spec_from_file_location(APP_PACKAGE, init, submodule_search_locations=[str(root)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[APP_PACKAGE] = module
    spec.loader.exec_module(module)
    return module
