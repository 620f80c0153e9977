# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The index of a set of copies, as evidence_files writes it beside them: a checksum file in
`sha256sum` format and a JSON manifest with one entry per copy. Pure functions: no file is
read or written here."""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

# The fields of a manifest entry that evidence_files sets itself; a copy's own fields may not
# name them.
ENTRY_FIELDS = ("checksum", "backup", "saved")


def checksum_line(sha256: str, name: str) -> str:
    """One line of `sha256sum` output for `name` (relative to the directory `sha256sum -c` runs
    in), ending with a newline. A name holding a newline or carriage return is written the way
    GNU sha256sum writes it (a leading backslash, then the name with backslashes, newlines and
    carriage returns escaped); any other name as it is, which `sha256sum -c` reads literally."""
    if "\n" in name or "\r" in name:
        escaped = name.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
        return f"\\{sha256}  {escaped}\n"
    return f"{sha256}  {name}\n"


def checksum_text(sums: Iterable[tuple[str, str]]) -> str:
    """The checksum file of `(name, sha256)` pairs, one line each, in their order."""
    return "".join(checksum_line(sha256, name) for name, sha256 in sums)


def manifest_entry(fields: Mapping[str, Any], checksum: str, backup: str, saved: bool) -> dict[str, Any]:
    """A copy's manifest entry: its caller-given `fields` with its `checksum` (SHA-256),
    `backup` (the copy's path) and `saved`."""
    return {**fields, "checksum": checksum, "backup": backup, "saved": saved}


def manifest_text(content: Mapping[str, Any], key: str, entries: list[dict[str, Any]]) -> str:
    """The manifest as JSON: `content` with the `entries` under `key`, keys sorted, indented by
    four, ending with a newline (what Ansible's `to_nice_json` writes, plus the newline)."""
    return json.dumps({**content, key: entries}, indent=4, sort_keys=True, separators=(",", ": ")) + "\n"
