"""The mode gate, as pure functions: what a mode file says. Only an explicit, unambiguous
TESTNET allows a change."""

from __future__ import annotations

import re
from typing import Any

TESTNET = "TESTNET"
LIVE = "LIVE"
UNKNOWN = "UNKNOWN"

_ASSIGNMENT = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


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


class FilterModule:
    """The mode gate."""

    def filters(self) -> dict[str, Any]:
        return {
            "mode_gate": mode_gate,
            "mode_assignments": mode_assignments,
        }
