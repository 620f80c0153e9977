"""Every conditional in the project's YAML (`when`, `failed_when`, `changed_when`, `until`, an
assert's `that`) is a string. A plain scalar holding ": " parses as a mapping, which yamllint and
ansible-lint accept and ansible-core 2.19 refuses only when the task runs ("Conditional
expressions must be strings"), which for a Molecule verify step is at the end of a 2-minute run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from project_files import PROJECT_ROOT

CONDITIONAL_KEYS = ("when", "failed_when", "changed_when", "until")
YAML_DIRS = ("roles", "playbooks", "molecule")


def _yaml_files() -> list[Path]:
    files = [PROJECT_ROOT / "recover.yml"]
    for folder in YAML_DIRS:
        files += sorted((PROJECT_ROOT / folder).rglob("*.yml"))
    return files


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _conditionals(node: Any, where: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from _conditionals(item, f"{where}[{index}]")
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in CONDITIONAL_KEYS:
                yield from ((f"{where}.{key}", item) for item in _as_list(value))
            elif key in ("ansible.builtin.assert", "assert") and isinstance(value, dict) and "that" in value:
                yield from ((f"{where}.assert.that", item) for item in _as_list(value["that"]))
            else:
                yield from _conditionals(value, f"{where}.{key}")


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_every_conditional_is_a_string(path: Path) -> None:
    document = yaml.safe_load(path.read_text())
    bad = [where for where, item in _conditionals(document, path.name) if not isinstance(item, (str, bool))]
    assert not bad, f"not a string (a ': ' in a plain scalar?): {bad}"


def test_the_check_finds_a_mapping_conditional() -> None:
    for text in (
        "- ansible.builtin.assert:\n    that:\n      - x is search('a: b')\n",
        "- name: t\n  ansible.builtin.debug:\n  when:\n    - x is search('a: b',\n        'c')\n",
    ):
        found = [item for _, item in _conditionals(yaml.safe_load(text), "t")]
        assert len(found) == 1 and isinstance(found[0], dict), text
