"""The mode gate and the run lock, as pure functions: what a mode file says, and whether a
run may take the lock it found. Only an explicit, unambiguous TESTNET allows a change."""

from __future__ import annotations

import re
from typing import Any

TESTNET = "TESTNET"
LIVE = "LIVE"
UNKNOWN = "UNKNOWN"

_ASSIGNMENT = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")
_RUN_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{4,8}$")


def _unquote(raw: str) -> str | None:
    """The value of an env-file right-hand side, or None when it cannot be read unambiguously
    (an unterminated quote, text after the closing quote)."""
    raw = raw.strip()
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        end = raw.find(quote, 1)
        if end < 0:
            return None
        rest = raw[end + 1 :].strip()
        if rest and not rest.startswith("#"):
            return None
        return raw[1:end]
    # An unquoted value ends at a comment introduced by whitespace, as in a shell.
    return re.split(r"\s+#", raw, maxsplit=1)[0].strip()


def mode_assignments(content: str | None, variable: str) -> list[dict[str, Any]]:
    """Every assignment of `variable` in an env file: [{line, value}], value None when the
    right-hand side is unreadable."""
    found: list[dict[str, Any]] = []
    for number, line in enumerate((content or "").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        match = _ASSIGNMENT.match(text)
        if match and match.group(1) == variable:
            found.append({"line": number, "value": _unquote(match.group(2))})
    return found


def mode_gate(
    content: str | None, variable: str, source: str = "the mode file", error: str | None = None
) -> dict[str, Any]:
    """What the mode file says: {mode: TESTNET|LIVE|UNKNOWN, reason, changes_allowed,
    assignments}. `content` None means the file is missing or unreadable. TESTNET only when
    every assignment of `variable` says exactly `true`; LIVE when every one says `false`;
    anything else is UNKNOWN, with the reason in one sentence (`error`: why it could not be
    read, when known)."""

    def verdict(mode: str, reason: str, found: list[dict[str, Any]]) -> dict[str, Any]:
        return {"mode": mode, "reason": reason, "changes_allowed": mode == TESTNET, "assignments": found}

    if content is None:
        detail = f" ({error.strip().rstrip('.')})" if error else ""
        return verdict(UNKNOWN, f"{source} is missing or unreadable{detail}", [])
    found = mode_assignments(content, variable)
    if not found:
        return verdict(UNKNOWN, f"{source} does not assign {variable}", found)
    unreadable = [item["line"] for item in found if item["value"] is None]
    if unreadable:
        reason = f"{variable} on line {unreadable[0]} of {source} has an unreadable value"
        return verdict(UNKNOWN, reason, found)
    values = sorted({item["value"] for item in found})
    where = ", ".join(f"line {item['line']}: {item['value']!r}" for item in found)
    if len(values) > 1:
        return verdict(UNKNOWN, f"{source} assigns {variable} contradicting values ({where})", found)
    value = values[0]
    lines = "line " + ", ".join(str(item["line"]) for item in found)
    if value == "true":
        return verdict(TESTNET, f"{variable}=true in {source} ({lines})", found)
    if value == "false":
        return verdict(LIVE, f"{variable}=false in {source} ({lines})", found)
    return verdict(UNKNOWN, f"{variable}={value!r} in {source} is neither true nor false", found)


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
    """The mode gate and the run lock."""

    def filters(self) -> dict[str, Any]:
        return {
            "mode_gate": mode_gate,
            "mode_assignments": mode_assignments,
            "run_lock_decision": run_lock_decision,
            "is_run_id": is_run_id,
        }
