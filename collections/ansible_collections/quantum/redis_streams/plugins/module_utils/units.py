# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# The one reader of the pipeline's systemd units: one `systemctl show` for every unit, then the
# kernel's view of each main process (/proc/PID/stat), because systemd says "active (running)"
# for a process stopped by SIGSTOP, the seed incident's hang.
from __future__ import annotations

import os
from typing import Any

# What a verdict or a report needs of a unit, in one call.
UNIT_PROPERTIES = (
    "Id",
    "LoadState",
    "ActiveState",
    "SubState",
    "MainPID",
    "NRestarts",
    "ActiveEnterTimestampMonotonic",
    # The files that define the unit (what a backup copies).
    "FragmentPath",
    "DropInPaths",
)

# The kernel's process states (proc(5)); T and t are a stopped or traced process, which does
# nothing until SIGCONT.
PROCESS_STATES = {
    "R": "running",
    "S": "sleeping",
    "D": "disk sleep",
    "T": "stopped",
    "t": "tracing stop",
    "Z": "zombie",
    "X": "dead",
    "I": "idle",
    "P": "parked",
    "W": "paging",
}
STOPPED_STATES = ("T", "t")


def systemctl_show_argv(systemctl: str, units: list[str]) -> list[str]:
    return [systemctl, "show", "--property=" + ",".join(UNIT_PROPERTIES), "--", *units]


def _matches(unit: str, unit_id: str | None) -> bool:
    # `systemctl show router` answers Id=router.service.
    return unit_id is not None and unit_id in (unit, f"{unit}.service")


def parse_systemctl_show(text: str, units: list[str]) -> dict[str, dict[str, str]]:
    """`systemctl show` of several units prints one block of KEY=VALUE lines per unit, in the
    order asked, separated by a blank line. Returns {unit: {property: value}}; a block whose Id is
    not the unit's (systemd answered in another order, or left one out) raises ValueError."""
    blocks: list[dict[str, str]] = [{}]
    for line in text.splitlines():
        if not line.strip():
            if blocks[-1]:
                blocks.append({})
            continue
        key, sep, value = line.partition("=")
        if sep:
            blocks[-1][key] = value
    blocks = [block for block in blocks if block]
    if len(blocks) != len(units):
        raise ValueError(f"systemctl show answered {len(blocks)} blocks for {len(units)} units")
    for unit, block in zip(units, blocks, strict=True):
        if not _matches(unit, block.get("Id")):
            raise ValueError(f"systemctl show answered Id={block.get('Id')} where {unit} was asked")
    return dict(zip(units, blocks, strict=True))


def boot_time_s(proc: str = "/proc") -> int:
    """The boot time (seconds since the epoch), from /proc/stat's btime."""
    with open(os.path.join(proc, "stat"), encoding="ascii") as handle:
        for line in handle:
            if line.startswith("btime "):
                return int(line.split()[1])
    raise ValueError(f"no btime in {proc}/stat")


def process_status(pid: int, boot_s: int, proc: str = "/proc") -> dict[str, Any] | None:
    """The kernel's state letter of a process and when it started (ms since the epoch), or None
    when it does not exist (any more)."""
    try:
        with open(os.path.join(proc, str(pid), "stat"), encoding="utf-8", errors="replace") as handle:
            stat = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ")": split after the last.
    fields = stat[stat.rindex(")") + 2 :].split()
    state, start_ticks = fields[0], int(fields[19])
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    return {"state": state, "started_ms": boot_s * 1000 + start_ticks * 1000 // ticks_per_s}


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "", "[not set]") else None
    except ValueError:
        return None


def unit_state(shown: dict[str, str], boot_s: int, proc: str = "/proc") -> dict[str, Any]:
    """One unit's state as the snapshot reports it (see pipeline_snapshot's RETURN)."""
    main_pid = _int_or_none(shown.get("MainPID")) or 0
    process = process_status(main_pid, boot_s, proc) if main_pid > 0 else None
    active_since_us = _int_or_none(shown.get("ActiveEnterTimestampMonotonic")) or 0
    state = process["state"] if process else None
    return {
        "exists": shown.get("LoadState") not in (None, "not-found"),
        "load_state": shown.get("LoadState"),
        "active_state": shown.get("ActiveState"),
        "sub_state": shown.get("SubState"),
        "main_pid": main_pid,
        "n_restarts": _int_or_none(shown.get("NRestarts")),
        # The monotonic clock counts from boot: boot time plus it is when the unit became active.
        "active_since_ms": boot_s * 1000 + active_since_us // 1000 if active_since_us else None,
        "process_state": state,
        "process_state_name": PROCESS_STATES.get(state) if state else None,
        "process_stopped": state in STOPPED_STATES,
        "process_started_ms": process["started_ms"] if process else None,
        "fragment_path": shown.get("FragmentPath") or None,
        # systemd separates the drop-ins with spaces (a path with a space is not a valid drop-in).
        "drop_in_paths": (shown.get("DropInPaths") or "").split(),
    }
