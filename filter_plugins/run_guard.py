"""The run's guards, as pure functions: whether a run may take the lock it found, and
whether a run id is safe to build paths from."""

from __future__ import annotations

import re
from typing import Any

_RUN_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{4,8}$")


def run_lock_decision(
    owner: dict[str, Any] | None,
    exists: bool,
    age_s: float | int | None,
    stale_s: float | int,
    run_id: str,
) -> dict[str, Any]:
    """What to do with the run lock as found: {action, holder, age_s, message}.
    action: `free` (nobody holds it), `ours` (this run holds it), `stale` (held longer than
    `stale_s`: may be taken over, with a warning) or `held` (another run holds it: stop)."""
    holder = str((owner or {}).get("run_id") or "an unknown run")
    age = None if age_s is None else int(age_s)
    if not exists:
        return {"action": "free", "holder": None, "age_s": None, "message": "The run lock is free."}
    if owner and owner.get("run_id") == run_id:
        message = f"Run {run_id} holds the run lock."
        return {"action": "ours", "holder": holder, "age_s": age, "message": message}
    if age is not None and age > int(stale_s):
        return {
            "action": "stale",
            "holder": holder,
            "age_s": age,
            "message": (
                f"Taking over a stale run lock held by {holder} for {age} s "
                f"(older than {int(stale_s)} s): that run is assumed dead."
            ),
        }
    age_text = "at an unknown time" if age is None else f"{age} s ago"
    return {
        "action": "held",
        "holder": holder,
        "age_s": age,
        "message": (
            f"Another run ({holder}) holds the run lock, taken {age_text}: wait for it to finish, "
            f"or remove the lock directory if that run is gone."
        ),
    }


def is_run_id(value: Any) -> bool:
    """Whether `value` is a run id (YYYYmmddTHHMMSSZ-xxxx): safe to use in a path."""
    return isinstance(value, str) and bool(_RUN_ID.match(value))


class FilterModule:
    """The run lock and the run id."""

    def filters(self) -> dict[str, Any]:
        return {
            "run_lock_decision": run_lock_decision,
            "is_run_id": is_run_id,
        }
