"""Evidence shaping, pure functions: the files that define the units (from pipeline_snapshot's
`units`), the backup's entries, and results made safe to write (no connection, no password,
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


def backup_copies(files: Any) -> dict[str, str]:
    """`{relative name: path}` for evidence_files' `copies`: each file of `unit_files` kept at its
    own path under the backup directory (backup/etc/systemd/system/x.service)."""
    return {str(f["path"]).lstrip("/"): str(f["path"]) for f in files or [] if f.get("path")}


def backup_entries(files: Any, copied: Mapping | None, backup_dir: str) -> list[dict[str, Any]]:
    """`[{unit, kind, path, checksum, backup, saved}]` for the manifest, from `unit_files` and
    evidence_files' `copied` (its `copies` result). `saved` is true for a file copied and
    verified; a file that vanished before the copy is left out. Without `copied` (check mode:
    nothing is copied) every file is listed, unsaved, without a checksum."""
    entries: list[dict[str, Any]] = []
    for item in files or []:
        name = str(item["path"]).lstrip("/")
        done = (copied or {}).get(name)
        if copied is not None and done is None:
            continue
        entries.append(
            {
                "unit": item.get("unit"),
                "kind": item.get("kind"),
                "path": item["path"],
                "checksum": done.get("sha256") if done else None,
                "backup": f"{backup_dir.rstrip('/')}/{name}",
                "saved": done is not None,
            }
        )
    return entries


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
            "backup_entries": backup_entries,
            "backup_copies": backup_copies,
        }
