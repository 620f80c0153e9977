# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# The controller's half of the run lock: who this controller process is, and whether the holder
# of a lock found on the target is a process of this controller that no longer runs. Only the
# controller can tell (the target cannot see its processes), and only for its own processes:
# a lock held from another controller (an AWX job's) is left to the stale rule. The one
# definition, used by the action plugins of run_lock and pipeline_snapshot (which may take the
# lock in the same call as its read).
from __future__ import annotations

import os
import socket
from typing import Any


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return None


def proc_start_ticks(stat: str | None) -> int | None:
    """A process's start time (clock ticks since boot) from its /proc/<pid>/stat text: with
    the pid it names the process uniquely (a pid may be reused, never with the same start)."""
    if not stat or ")" not in stat:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    # After "pid (comm)": state is field 3, starttime field 22.
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None


def this_controller() -> dict[str, Any]:
    """This controller's ansible-playbook (or ansible) process: the parent of this worker."""
    pid = os.getppid()
    return {
        "host": socket.gethostname(),
        "boot_id": (_read("/proc/sys/kernel/random/boot_id") or "").strip(),
        "pid": pid,
        "started": proc_start_ticks(_read(f"/proc/{pid}/stat")),
    }


def holder_gone(owner: Any, here: dict[str, Any]) -> bool:
    """Whether the lock's holder is a process of this very controller (same host, same boot)
    that no longer runs: only then is its death a fact, not a guess."""
    held_by = owner.get("controller") if isinstance(owner, dict) else None
    if not isinstance(held_by, dict) or not held_by.get("pid"):
        return False
    if held_by.get("host") != here["host"]:
        return False
    if not here["boot_id"] or held_by.get("boot_id") != here["boot_id"]:
        return False
    try:
        pid = int(held_by["pid"])
    except (TypeError, ValueError):
        return False
    return proc_start_ticks(_read(f"/proc/{pid}/stat")) != held_by.get("started")


def orphaned_token(lock: Any, here: dict[str, Any]) -> str | None:
    """The token of the lock a module found (its run_lock-shaped result) when another run holds
    it and that run's process, of this controller, is gone: the token to take it over with."""
    if not isinstance(lock, dict) or lock.get("found") != "held":
        return None
    owner = lock.get("owner")
    return owner.get("token") if holder_gone(owner, here) and owner.get("token") else None
