# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# The watchdog's ledger on the target: one JSON line per decision, the pause switch beside it,
# and what a circuit breaker reads from them. Pure functions (no AnsibleModule): the module
# watchdog_ledger does the file work, the unit tests call these directly.
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ansible_collections.quantum.redis_streams.plugins.module_utils.textfile import Sample, render

LEDGER_NAME = "decisions.jsonl"
PAUSE_NAME = "paused"
# What a watchdog run decided, once it had one snapshot's verdicts.
DECISIONS = (
    "nothing_to_do",  # every stage OK (quiet included): nothing to heal
    "recover",  # the recovery ran (it counts against the circuit breaker, healed or not)
    "paused",  # the pause switch held it back
    "breaker_open",  # the circuit breaker held it back
    "mode_refused",  # LIVE or UNKNOWN: evidence and plan only
    "check_mode",  # --check: the plan only
    "failed",  # the run stopped before it could decide (or its recovery could not start)
)
# Outcomes of the report (run_summary) that count as a healed recovery.
SUCCESS_OUTCOMES = ("HEALED", "HEALTHY (nothing to do)")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def name_problem(name: Any, names: str = "the watchdog's directory under root") -> str | None:
    """Why a pipeline name cannot name a file or directory (`names` says which), or None: one
    path component of letters, digits, '.', '_' or '-' (the same rule as the run lock's file name)."""
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        return f"pipeline {name!r} must be letters, digits, '.', '_' or '-' (it names {names})."
    return None


def parse_records(lines: Iterable[str]) -> tuple[list[dict[str, Any]], int]:
    """The ledger's records in file order, and how many lines were not a JSON object (a line
    torn by a full disk is skipped, never a reason to stop watching)."""
    records: list[dict[str, Any]] = []
    bad = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(record, dict) and isinstance(record.get("time"), (int, float)):
            records.append(record)
        else:
            bad += 1
    return records, bad


def recoveries_within(
    records: Iterable[Mapping[str, Any]], now_s: float, window_s: int
) -> list[Mapping[str, Any]]:
    """The automatic recoveries (decision `recover`) of the last `window_s` seconds, oldest first."""
    since = now_s - window_s
    return [r for r in records if r.get("decision") == "recover" and float(r["time"]) > since]


def hold_reason(
    paused_by: str | None,
    pause_note: str | None,
    recent: list[Mapping[str, Any]],
    max_recoveries: int,
    window_s: int,
) -> str:
    """The one sentence that holds the watchdog's recovery back this run, or "" when none does.
    `paused_by` names the switch that is on (the variable or the file); the circuit breaker is
    open once `max_recoveries` recoveries ran within `window_s`."""
    if paused_by:
        note = f" ({pause_note})" if pause_note else ""
        return f"The watchdog is paused by {paused_by}{note}: automatic healing is off"
    if len(recent) >= max_recoveries:
        last = recent[-1] if recent else {}
        return (
            f"The circuit breaker is open: {len(recent)} automatic recoveries within the last "
            f"{window_s} s reach watchdog_max_recoveries={max_recoveries} (last: run "
            f"{last.get('run_id', '?')}, {last.get('outcome', 'outcome unknown')}); a person must look"
        )
    return ""


def kept_records(records: list[dict[str, Any]], now_s: float, retention_s: int) -> list[dict[str, Any]]:
    """The records younger than `retention_s`, and always the last recovery (the metrics read it)."""
    since = now_s - retention_s
    kept = [r for r in records if float(r["time"]) > since]
    last = last_recovery(records)
    if last is not None and last not in kept:
        kept.insert(0, last)
    return kept


def last_recovery(records: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The latest record whose decision was `recover`, or None."""
    last = None
    for record in records:
        if record.get("decision") == "recover":
            last = record
    return last


# The last recovery's figures: the metric's suffix, the record's key.
RECOVERY_COUNTS = (
    ("duration_seconds", "duration_s"),
    ("entries_moved", "entries_moved"),
    ("consumers_retired", "consumers_retired"),
    ("units_restarted", "units_restarted"),
)
# name: help, in the order they are written (every one a gauge).
RUN_METRICS: dict[str, str] = {
    "quantum_remediation_watchdog_last_run_timestamp_seconds": "When the watchdog last decided (Unix time).",
    "quantum_remediation_watchdog_last_decision": "The watchdog's last decision (1 on its decision label).",
    "quantum_remediation_watchdog_paused": "1 when a pause switch holds automatic healing back.",
    "quantum_remediation_breaker_open": "1 when the circuit breaker holds automatic healing back.",
    "quantum_remediation_recoveries_last_hour": "Automatic recoveries within watchdog_window_s (1 h).",
    "quantum_remediation_last_recovery_timestamp_seconds": "When the last automatic recovery ended.",
    "quantum_remediation_last_recovery_success": "1 when the last automatic recovery healed, else 0.",
    "quantum_remediation_last_recovery_info": "The last automatic recovery's outcome and run id (1).",
    "quantum_remediation_last_recovery_duration_seconds": "How long the last automatic recovery ran.",
    "quantum_remediation_last_recovery_entries_moved": "Entries it moved to live consumers.",
    "quantum_remediation_last_recovery_consumers_retired": "Dead consumers it retired.",
    "quantum_remediation_last_recovery_units_restarted": "Units it restarted.",
}


def run_metrics(
    pipeline: str, records: list[Mapping[str, Any]], now_s: float, window_s: int, paused: bool, hold: str
) -> str:
    """The watchdog's own metrics in node_exporter's textfile format (every metric gauge)."""
    samples: dict[str, list[Sample]] = {name: [] for name in RUN_METRICS}
    base = {"pipeline": pipeline}
    if records:
        last = records[-1]
        samples["quantum_remediation_watchdog_last_run_timestamp_seconds"].append((base, last["time"]))
        samples["quantum_remediation_watchdog_last_decision"].append(
            ({**base, "decision": last.get("decision", "unknown")}, 1)
        )
    samples["quantum_remediation_watchdog_paused"].append((base, int(paused)))
    samples["quantum_remediation_breaker_open"].append((base, int(bool(hold) and not paused)))
    samples["quantum_remediation_recoveries_last_hour"].append(
        (base, len(recoveries_within(records, now_s, window_s)))
    )
    recovery = last_recovery(records)
    if recovery is not None:
        outcome = str(recovery.get("outcome") or "unknown")
        samples["quantum_remediation_last_recovery_timestamp_seconds"].append((base, recovery["time"]))
        samples["quantum_remediation_last_recovery_success"].append((base, int(outcome in SUCCESS_OUTCOMES)))
        samples["quantum_remediation_last_recovery_info"].append(
            ({**base, "outcome": outcome, "run_id": recovery.get("run_id") or ""}, 1)
        )
        for suffix, key in RECOVERY_COUNTS:
            value = recovery.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                samples[f"quantum_remediation_last_recovery_{suffix}"].append((base, value))
    return render(RUN_METRICS, samples)
