"""Evidence shaping, pure functions: systemd unit states from `systemctl show`, and results
made safe to write (no connection, no password, no module invocation)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SECRET_KEYS = frozenset({"invocation", "connection", "password", "redis"})

UNIT_PROPERTIES = (
    "Id",
    "LoadState",
    "ActiveState",
    "SubState",
    "MainPID",
    "ExecMainStartTimestamp",
    "NRestarts",
    "FragmentPath",
    "DropInPaths",
)


def systemd_show(stdout: str | None) -> dict[str, str]:
    """`systemctl show` output (`Key=value` lines) as a dict; values keep any `=` they hold."""
    properties: dict[str, str] = {}
    for line in (stdout or "").splitlines():
        key, sep, value = line.partition("=")
        if sep and key:
            properties[key.strip()] = value.strip()
    return properties


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def unit_state(properties: Mapping[str, str], unit: str | None = None) -> dict[str, Any]:
    """One unit's state from its `systemctl show` properties: {unit, load_state, active_state,
    sub_state, main_pid, started_at, restarts, fragment_path, drop_in_paths}. Empty values
    (a unit never started, no drop-ins) are null or an empty list."""
    drop_ins = (properties.get("DropInPaths") or "").split()
    return {
        "unit": unit or properties.get("Id"),
        "load_state": properties.get("LoadState") or None,
        "active_state": properties.get("ActiveState") or None,
        "sub_state": properties.get("SubState") or None,
        "main_pid": _int(properties.get("MainPID")),
        "started_at": properties.get("ExecMainStartTimestamp") or None,
        "restarts": _int(properties.get("NRestarts")),
        "fragment_path": properties.get("FragmentPath") or None,
        "drop_in_paths": drop_ins,
    }


def unit_states(results: Any, readable_only: bool = False) -> dict[str, dict[str, Any]]:
    """`{unit: state}` from the registered results of a `systemctl show` loop whose `item` is
    the unit name. A unit that could not be read has `error` set (and is left out with
    `readable_only`, so that it is not judged on a state nobody saw)."""
    states: dict[str, dict[str, Any]] = {}
    for result in (results or {}).get("results", []) if isinstance(results, Mapping) else results or []:
        unit = str(result.get("item"))
        if result.get("rc", 1) != 0 or result.get("failed"):
            if readable_only:
                continue
            error = (result.get("stderr") or result.get("msg") or "systemctl show failed").strip()
            error = "; ".join(line.strip() for line in error.splitlines() if line.strip())
            states[unit] = {**unit_state({}, unit), "error": error}
            continue
        states[unit] = unit_state(systemd_show(result.get("stdout")), unit)
    return states


def unit_show_results(result: Any, units: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The registered result of one `systemctl show --property=... UNIT...` for several units,
    as the results of a loop over `units` (`{results: [{item, rc, stdout, stderr}]}`) that
    `unit_states` reads: systemctl prints one block of properties per unit, in the order
    asked, separated by an empty line. When the command failed, or the blocks do not match the
    units one for one, every unit carries the error (none is judged on a guess)."""
    result = result if isinstance(result, Mapping) else {}
    units = [str(unit) for unit in units or []]
    blocks = [block for block in (result.get("stdout") or "").split("\n\n") if block.strip()]
    rc = result.get("rc", 1)
    if rc == 0 and not result.get("failed") and len(blocks) == len(units):
        pairs = zip(units, blocks, strict=True)
        return {"results": [{"item": unit, "rc": 0, "stdout": block} for unit, block in pairs]}
    error = (result.get("stderr") or result.get("msg") or "").strip()
    if rc == 0:
        count = f"systemctl show printed {len(blocks)} blocks of properties for {len(units)} units"
        error = f"{count}: {error}" if error else count
    return {"results": [{"item": unit, "rc": rc or 1, "stdout": "", "stderr": error} for unit in units]}


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
            "systemd_show": systemd_show,
            "unit_state": unit_state,
            "unit_states": unit_states,
            "unit_show_results": unit_show_results,
            "scrub_secrets": scrub_secrets,
            "unit_files": unit_files,
            "backup_entries": backup_entries,
            "backup_copies": backup_copies,
        }
