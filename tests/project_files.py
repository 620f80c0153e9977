"""Where the project is, and how a test or the benchmark imports one of its files directly.
Kept free of pytest so the benchmark's worker process measures the module, not the tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import ansible.module_utils

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Our modules import module_utils as ansible.module_utils.<name>, the way AnsiballZ packages
# them; extending the package path gives the same import when a test loads a module in-process.
if str(PROJECT_ROOT / "module_utils") not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(PROJECT_ROOT / "module_utils"))


def load_project_file(relative_path: str) -> ModuleType:
    """A module, filter plugin or module_utils file of this project, imported directly (once)."""
    name = "under_test_" + relative_path.replace("/", "_").removesuffix(".py")
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, PROJECT_ROOT / relative_path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]
