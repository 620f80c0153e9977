"""The collection's module documentation parses (what `ansible-doc <fqcn>` renders). The full
check is `ansible-test sanity` (scripts/sanity.sh, in `make lint`); this one is a second's
work, so a broken DOCUMENTATION string fails `make unit` too."""

from __future__ import annotations

import pytest
import yaml
from project_files import COLLECTION_DIR, collection_module

MODULES = sorted(
    path.stem for path in (COLLECTION_DIR / "plugins/modules").glob("*.py") if path.stem != "__init__"
)


def test_every_module_is_found():
    assert {"redis_stream_info", "redis_stream_reclaim", "redis_governor", "evidence_files"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_documentation_examples_and_return_are_yaml(name):
    module = collection_module(name)
    documentation = yaml.safe_load(module.DOCUMENTATION)
    assert documentation["module"] == name
    # An option may be completed by a doc fragment (connection): its own part must still parse.
    assert all(isinstance(spec, dict) for spec in documentation.get("options", {}).values())
    assert isinstance(yaml.safe_load(module.EXAMPLES), list)
    assert isinstance(yaml.safe_load(module.RETURN), dict)
