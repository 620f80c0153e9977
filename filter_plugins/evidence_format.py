"""Evidence shaping, pure functions: the files that define the units (from pipeline_snapshot's
`units`), the backup's copies, and results made safe to write (no connection, no password,
no module invocation)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SECRET_KEYS = frozenset({"invocation", "connection", "password", "redis"})

def unit_files(states: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The files that define each unit, as `[{unit, path, kind}]` (`kind`: fragment or
    drop-in), in unit order, each path once; a unit without a fragment (not installed) has
    none."""
    files: list[dict[str, Any]] = []
    seen: set[str] = set()
    for unit, state in (states or {}).items():
        paths = [("fragment", state.get("fragment_path"))]
        paths += [("drop-in", path) for path in state.get("drop_in_paths") or []]
        for kind, path in paths:
            if path and path not in seen:
                seen.add(path)
                files.append({"unit": unit, "path": path, "kind": kind})
    return files


def backup_copies(files: Any) -> dict[str, dict[str, Any]]:
    """evidence_files' `copies` for the unit backup, in the order of `files` (from `unit_files`):
    each file kept at its own path under the backup directory (backup/etc/systemd/system/x.service),
    its manifest entry's fields its `unit`, `kind` and `path` (evidence_files adds `checksum`,
    `backup` and `saved`)."""
    return {
        str(f["path"]).lstrip("/"): {
            "src": str(f["path"]),
            "fields": {"unit": f.get("unit"), "kind": f.get("kind"), "path": f["path"]},
        }
        for f in files or []
        if f.get("path")
    }


def under(files: Mapping[str, Any], directory: str) -> dict[str, Any]:
    """`{name: content}` with each name moved under `directory` (`{'a.txt': x}` under `after`:
    `{'after/a.txt': x}`): a phase's files, relative to the run's directory."""
    return {f"{directory.rstrip('/')}/{name}": content for name, content in files.items()}


def scrub_secrets(value: Any) -> Any:
    """A copy of `value` without module invocations, connection options or passwords, at any
    depth: what may be written to evidence."""
    if isinstance(value, Mapping):
        return {
            key: scrub_secrets(item)
            for key, item in value.items()
            if key not in SECRET_KEYS and not str(key).startswith("_ansible")
        }
    if isinstance(value, (list, tuple)):
        return [scrub_secrets(item) for item in value]
    return value


class FilterModule:
    """Evidence shaping."""

    def filters(self) -> dict[str, Any]:
        return {
            "scrub_secrets": scrub_secrets,
            "unit_files": unit_files,
            "backup_copies": backup_copies,
            "under": under,
        }
