"""Where the project is, and how a test or the benchmark imports one of its files directly.
Kept free of pytest so the benchmark's worker process measures the module, not the tests."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

PROJECT_ROOT = Path(__file__).resolve().parent.parent
COLLECTION = "quantum.redis_streams"
COLLECTION_DIR = PROJECT_ROOT / "collections/ansible_collections/quantum/redis_streams"

# The collection's modules import their module_utils as
# ansible_collections.quantum.redis_streams.plugins.module_utils.<name>, the way AnsiballZ
# packages them; with collections/ on the path a test imports the very same objects.
if str(PROJECT_ROOT / "collections") not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT / "collections"))


def load_project_file(relative_path: str) -> ModuleType:
    """A filter plugin of this project, imported directly (once)."""
    name = "under_test_" + relative_path.replace("/", "_").removesuffix(".py")
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, PROJECT_ROOT / relative_path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def collection_module(name: str) -> ModuleType:
    """A module of the collection, by its short name or FQCN, imported as Ansible packages it."""
    short = name.removeprefix(COLLECTION + ".")
    return importlib.import_module(f"ansible_collections.{COLLECTION}.plugins.modules.{short}")


def collection_util(name: str) -> ModuleType:
    """A module_utils file of the collection (the same object its modules import)."""
    return importlib.import_module(f"ansible_collections.{COLLECTION}.plugins.module_utils.{name}")
