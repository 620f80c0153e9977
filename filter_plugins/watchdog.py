"""The watchdog's decision, as a pure function of the run's report and its ledger's gate.

playbooks/watchdog.yml runs the recovery's own steps (recover.yml's), held back by the pause
switch or the circuit breaker when the ledger says so (preflight_hold_reason). Once the report
is written, `watchdog_decision` names what the watchdog decided, the record its ledger keeps,
and the sentence the run ends with: a healthy pipeline, or a recovery that healed it, ends
well (exit 0); anything that still needs a person ends non-zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

HEALED = ("HEALED", "HEALTHY (nothing to do)")


def _mapping(value: Any) -> Mapping:
    return value if isinstance(value, Mapping) else {}


def _stop_point(summary: Mapping) -> str:
    stop = _mapping(summary.get("stop_point"))
    if not stop:
        return "the diagnosis did not run"
    if not stop.get("stage"):
        return f"every stage {stop.get('verdict', '?')}"
    return f"{stop['stage']} {stop.get('verdict', '?')}"


def watchdog_decision(
    summary: Any, gate: Any = None, failed_task: Any = None, check_mode: Any = False
) -> dict[str, Any]:
    """`summary`: the report's summary (run_summary), or None when the run stopped before its
    report; `gate`: the ledger's read before the run (hold_reason, paused, breaker_open);
    `failed_task`: what stopped the run (name, msg), if anything.

    Returns `decision` (one of the ledger's DECISIONS), `reason` (one sentence), `ending` (the
    sentence to fail the run with, "" to end well) and `record` (the ledger's line)."""
    summary, gate, failed = _mapping(summary), _mapping(gate), _mapping(failed_task)
    verdict = _mapping(summary.get("stop_point")).get("verdict")
    outcome = summary.get("outcome")
    hold = str(gate.get("hold_reason") or "")
    where = _stop_point(summary)
    failure = str(_mapping(summary.get("failed_task")).get("msg") or failed.get("msg") or "").strip()

    if summary.get("changes_allowed") and verdict and verdict != "OK":
        # The recovery ran (changes allowed, something to heal): it counts against the circuit
        # breaker whether it healed or not.
        decision = "recover"
        if outcome in HEALED:
            reason, ending = f"{where}: the recovery ran, {outcome}.", ""
        else:
            reason = (
                f"{where}: the recovery ran and ended {outcome}" + (f" ({failure})" if failure else "") + "."
            )
            ending = f"The watchdog's recovery did not heal the pipeline ({where}): {outcome}" + (
                f", {failure}" if failure else ""
            )
    elif verdict == "OK" and not failure:
        told = str(_mapping(summary.get("stop_point")).get("reason") or "every stage is OK")
        # "every stage is OK but ai_engine, held by its governor at the daily limit (...)"
        decision, reason, ending = "nothing_to_do", f"{told[0].upper()}{told[1:]}: nothing to heal.", ""
    elif not summary or failure or not verdict:
        decision = "failed"
        told = failure or (str(failed.get("msg") or "").strip()) or "see the task output above"
        reason = f"The run stopped before the watchdog could decide: {told}"
        ending = reason
    elif check_mode:
        decision, reason, ending = "check_mode", f"{where}: check mode, the plan only.", ""
    elif hold:
        decision = "paused" if gate.get("paused") else "breaker_open"
        reason = f"{where}: {hold}."
        ending = (
            f"{hold}. The pipeline needs healing ({where}); nothing was changed, the plan above is "
            "what the recovery would do."
        )
    else:
        decision = "mode_refused"
        mode = summary.get("mode") or "UNKNOWN"
        reason = f"{where}: mode {mode} ({summary.get('mode_reason') or 'not read'}), evidence and plan only."
        ending = (
            f"Mode is {mode}: the pipeline needs healing ({where}) and the watchdog changed nothing; "
            "the plan above is what a TESTNET run would do."
        )

    # What the recovery did; a held or refused run only planned it (its report has the plan).
    recovery = [_mapping(r) for r in summary.get("recovery") or []] if decision == "recover" else []
    record = {
        "run_id": summary.get("run_id"),
        "decision": decision,
        "reason": reason,
        "outcome": outcome,
        "mode": summary.get("mode"),
        "stop_point": where,
        "verdicts": dict(_mapping(summary.get("verdicts_before"))),
        "duration_s": summary.get("duration_s"),
        "entries_moved": sum(int(r.get("moved") or 0) for r in recovery),
        "consumers_retired": sum(len(r.get("retired") or []) for r in recovery),
        "units_restarted": len(summary.get("units_restarted") or []) if decision == "recover" else 0,
        "evidence_dir": summary.get("evidence_dir"),
    }
    return {"decision": decision, "reason": reason, "ending": ending, "record": record}


class FilterModule:
    """The watchdog's decision."""

    def filters(self) -> dict[str, Any]:
        return {"watchdog_decision": watchdog_decision}
