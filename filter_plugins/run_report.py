"""The run's report as data: what was stuck, what was done (or, without the mode gate's
consent, what would have been done), the figures before and after, and what was not done.
Every input may be missing (a run that failed half-way reports what it did): the function
takes the facts as they are and never assumes a step ran."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

STEPS = (
    ("preflight", "preflight_mode"),
    ("evidence before", "evidence_result.before"),
    ("unit backup", "unit_backup_files"),
    ("consumer recovery", "consumer_recovery_results"),
    ("governor", "governor_result"),
    ("service restart", "service_restart_result.results"),
    ("stream verification", "stream_verify_ok"),
    ("evidence after", "evidence_result.after"),
)
# What recover.yml skips when the diagnosis before found every stage OK: there is nothing to
# change, so nothing to back up, act on or verify.
NOT_NEEDED_WHEN_HEALTHY = (
    "unit backup",
    "consumer recovery",
    "governor",
    "service restart",
    "stream verification",
    "evidence after",
)


def _mapping(value: Any) -> Mapping:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else []


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _given(value: Any) -> bool:
    """Whether a fact was set by its step (the report passes default(none) for a step that
    did not run; an empty result of a step that ran, such as no stage to reclaim, counts)."""
    return value is not None and value != ""


def run_started_at(run_id: Any) -> datetime | None:
    """The run's start, read from its id (YYYYmmddTHHMMSSZ-xxxx)."""
    try:
        return datetime.strptime(str(run_id)[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _verdict_names(verdicts: Any) -> dict[str, str]:
    return {str(name): str(_mapping(v).get("verdict")) for name, v in _mapping(verdicts).items()}


def _live_pending(snapshot: Any, stage: Mapping) -> int | None:
    """The stage's live consumer's pending count in a redis_stream_info result, or None."""
    stream = _mapping(_mapping(_mapping(snapshot).get("streams")).get(stage.get("input_stream")))
    consumers = _mapping(_mapping(_mapping(stream.get("groups")).get(stage.get("group"))).get("consumers"))
    if stage.get("consumer") not in consumers:
        return None
    return _int(_mapping(consumers[stage.get("consumer")]).get("pending"))


def _stage_recovery(stage: Mapping, result: Mapping, restarted: bool, snapshots: list[Any]) -> dict[str, Any]:
    """What consumer recovery did on one stage, and what its restart replayed. `snapshots`:
    the redis_stream_info results to read the live consumer's PEL before the reclaim from,
    best first (the evidence window's end, then its start)."""
    totals = _mapping(result.get("totals"))
    consumers = _mapping(result.get("consumers"))
    live = result.get("claim_to") or stage.get("consumer")
    live_result = _mapping(consumers.get(live))
    moved = _int(totals.get("moved")) or 0
    # The live consumer's PEL before the reclaim: the module's own count when the live
    # consumer was listed (a dead-letter policy), else the evidence snapshot's.
    live_before = _int(live_result.get("pending_before"))
    for snapshot in snapshots:
        if live_before is not None:
            break
        live_before = _live_pending(snapshot, stage)
    live_left = max((live_before or 0) - (_int(live_result.get("dead_lettered")) or 0), 0)
    ran = bool(result) and not result.get("skipped")
    # Entries in the live consumer's PEL once the reclaim is done (its own not dead-lettered,
    # plus those moved to it) are replayed when its service restarts (the consumer contract),
    # whether or not the stage was in the reclaim plan; without a restart they wait.
    in_pel = moved + live_left
    return {
        "stage": stage.get("name"),
        "live_consumer": live,
        "ran": ran,
        "failed": bool(result.get("failed")),
        "message": result.get("msg") if result.get("failed") else None,
        "moved": moved,
        "dead_lettered": _int(totals.get("dead_lettered")) or 0,
        "retired": sorted(name for name, r in consumers.items() if _mapping(r).get("retired")),
        "restarted": restarted,
        "live_pending_before": live_before,
        "replayed": in_pel if restarted else 0,
        "waiting_for_restart": 0 if restarted or not ran else in_pel,
    }


GENERIC_LOOP_FAILURE = "One or more items failed"


def _failed_task(failed_task: Mapping, per_stage: list[dict]) -> dict | None:
    """The task that stopped the run; a loop's generic sentence ("One or more items failed")
    gives way to the failed stages' own module sentences."""
    if not failed_task:
        return None
    task = dict(failed_task)
    msg = str(task.get("msg") or "").strip()
    failed = [r for r in per_stage if r["failed"] and r["message"]]
    own = "; ".join(f"{r['stage']}: {str(r['message']).strip()}" for r in failed)
    if own and msg.startswith(GENERIC_LOOP_FAILURE):
        rest = msg[len(GENERIC_LOOP_FAILURE) :].lstrip(".").strip()
        task["msg"] = f"{own} {rest}" if rest else own
    return task


def _figures(before: Any, after: Any, pipeline: Mapping) -> list[dict[str, Any]]:
    """Before/after rows: each stream's length, and each stage group's pending and lag."""
    rows: list[dict[str, Any]] = []
    streams_before = _mapping(_mapping(before).get("streams"))
    streams_after = _mapping(_mapping(after).get("streams"))
    for stage in _list(_mapping(pipeline).get("stages")):
        stage = _mapping(stage)
        output = stage.get("output_stream")
        if output:
            rows.append(
                {
                    "what": f"{output} length",
                    "before": _mapping(streams_before.get(output)).get("length"),
                    "after": _mapping(streams_after.get(output)).get("length"),
                }
            )
        source, group = stage.get("input_stream"), stage.get("group")
        if source and group:
            gb = _mapping(_mapping(_mapping(streams_before.get(source)).get("groups")).get(group))
            ga = _mapping(_mapping(_mapping(streams_after.get(source)).get("groups")).get(group))
            for field in ("pending", "lag"):
                rows.append({"what": f"{group} {field}", "before": gb.get(field), "after": ga.get(field)})
            live = stage.get("consumer")
            cb = _mapping(_mapping(gb.get("consumers")).get(live))
            ca = _mapping(_mapping(ga.get("consumers")).get(live))
            rows.append({"what": f"{live} idle ms", "before": cb.get("idle_ms"), "after": ca.get("idle_ms")})
    return rows


def _governor(result: Any, pipeline: Mapping, changes_allowed: bool) -> dict[str, Any] | None:
    result = _mapping(result)
    if not result or result.get("skipped"):
        return None
    state = _mapping(result.get("governor"))
    reset = bool(result.get("reset"))
    return {
        "key": state.get("key") or _mapping(_mapping(pipeline).get("governor")).get("key"),
        "count_before": _mapping(result.get("before")).get("count", state.get("count")),
        "count_after": _mapping(result.get("after")).get("count") if reset else state.get("count"),
        "limit": state.get("limit"),
        "results_today": result.get("results_today"),
        "reset": reset and changes_allowed,
        "reset_planned": reset and not changes_allowed,
        "left_alone_because": result.get("reset_skipped_reason"),
        "failed": bool(result.get("failed")),
    }


def _changed_anything(per_stage: list[dict], governor: Mapping | None, restarted: list) -> bool:
    """Whether the run changed the pipeline: entries moved or dead-lettered, a consumer retired,
    the governor reset, a unit restarted."""
    reclaimed = any(r["moved"] or r["dead_lettered"] or r["retired"] for r in per_stage)
    return reclaimed or bool(governor and governor["reset"]) or bool(restarted)


def run_summary(facts: Mapping) -> dict[str, Any]:
    """The run's summary (summary.json, set_stats, REPORT.md) from the facts the roles set.

    `facts` holds: inventory_hostname, pipeline, preflight_run_id, preflight_mode,
    preflight_mode_reason, preflight_changes_allowed, preflight_hold_reason, check_mode,
    evidence_result (the evidence role's result: `before` and `after`, each phase's judgement,
    and `dir`), unit_backup_files,
    consumer_recovery_results, consumer_recovery_restart_stages, governor_result,
    service_restart_result (`units` planned, `results`), stream_verify_ok, stream_verify_verdicts,
    stream_verify_findings, failed_task (name, msg), diagnosis_only, now (epoch seconds).
    Any of them may be missing or None.

    When the diagnosis found every stage OK (its stop point's verdict OK), the steps after
    it that did not run are `steps_not_needed`, not `steps_not_done`, and a run that changed
    nothing is `HEALTHY (nothing to do)` without a verification. A run that may change nothing
    (check mode, LIVE, UNKNOWN) does not verify and has no after phase: not needed either.
    `steps_not_needed_because` says why.

    Per consumer stage (`recovery`): what the reclaim moved, dead-lettered and retired (also
    when it failed half-way: its result's totals, and its own sentence as `message`), and
    `replayed`: for a restarted stage, the entries in its live consumer's PEL at the restart
    = its pending before the reclaim (the module's count, else the diagnosis's snapshot a window
    later, else its first) + moved to it - dead-lettered from it, whether or not the stage was in
    the reclaim plan. A failed task whose message is a loop's generic "One or more items
    failed" is told with the failed stages' own sentences instead."""
    pipeline = _mapping(facts.get("pipeline"))
    evidence = _mapping(facts.get("evidence_result"))
    before, after = _mapping(evidence.get("before")), _mapping(evidence.get("after"))
    stages = [_mapping(s) for s in _list(pipeline.get("stages"))]
    mode = facts.get("preflight_mode") or "UNKNOWN"
    check_mode = bool(facts.get("check_mode"))
    diagnosis_only = bool(facts.get("diagnosis_only"))
    changes_allowed = bool(facts.get("preflight_changes_allowed")) and not check_mode and not diagnosis_only
    # The caller's reason to change nothing (the watchdog's pause switch or circuit breaker).
    hold_reason = str(facts.get("preflight_hold_reason") or "") or None
    run_id = facts.get("preflight_run_id")
    started = run_started_at(run_id)
    now = facts.get("now")
    finished = datetime.fromtimestamp(float(now), tz=UTC) if now is not None else None

    restart = _mapping(facts.get("service_restart_result"))
    restart_results = [_mapping(r) for r in _list(restart.get("results"))]
    restarted_units = [r.get("unit") for r in restart_results if r.get("restarted")]
    failed_units = [r.get("unit") for r in restart_results if r.get("failed")]
    planned_units = _list(restart.get("units"))
    recovery = _mapping(facts.get("consumer_recovery_results"))
    restarted_names = {str(unit).removesuffix(".service") for unit in restarted_units}
    snapshots = [before.get("t1"), before.get("t0")]
    per_stage = [
        _stage_recovery(
            stage,
            _mapping(recovery.get(stage.get("name"))),
            str(stage.get("unit")).removesuffix(".service") in restarted_names,
            snapshots,
        )
        for stage in stages
        if stage.get("input_stream")
    ]
    governor = _governor(facts.get("governor_result"), pipeline, changes_allowed)
    verify_ok = facts.get("stream_verify_ok")
    failed_task = _failed_task(_mapping(facts.get("failed_task")), per_stage)

    results = {
        **facts,
        "evidence_result.before": before or None,
        "evidence_result.after": after or None,
        "service_restart_result.results": restart.get("results"),
    }
    done = [name for name, result in STEPS if _given(results.get(result))]
    not_done = [name for name, result in STEPS if not _given(results.get(result))]
    if diagnosis_only:
        not_done = [n for n in not_done if n in ("preflight", "evidence before")]
    # The diagnosis found every stage OK: the steps after it were not needed, not left undone.
    # A run that may change nothing (--check, LIVE, UNKNOWN) has no recovery to verify.
    stop = _mapping(before.get("stop_point"))
    nothing_to_do = stop.get("verdict") == "OK"
    if nothing_to_do:
        # A stage held by its governor at the daily limit is no stop point: the reason names it.
        plain = stop.get("reason") in (None, "every stage is OK")
        reason = "every stage was OK" if plain else f"nothing to heal: {stop['reason']}"
        not_needed_because = f"{reason} before"
        skipped = NOT_NEEDED_WHEN_HEALTHY
    elif not changes_allowed and not diagnosis_only:
        not_needed_because = "nothing was changed: " + (
            "check mode" if check_mode else ("held back by the watchdog" if hold_reason else f"mode {mode}")
        )
        skipped = ("stream verification", "evidence after")
    else:
        not_needed_because, skipped = None, ()
    not_needed = [n for n in not_done if n in skipped]
    not_done = [n for n in not_done if n not in not_needed]

    if failed_task:
        outcome = "FAILED"
    elif diagnosis_only:
        outcome = "DIAGNOSED"
    elif check_mode:
        outcome = "PLAN (check mode)"
    elif not changes_allowed:
        outcome = "PLAN ONLY (HELD)" if hold_reason else f"PLAN ONLY ({mode})"
    elif (verify_ok is True or (verify_ok is None and nothing_to_do)) and not _changed_anything(
        per_stage, governor, restarted_units
    ):
        # Nothing was stuck (or it unstuck itself): "HEALED" would tell an incident channel
        # that something had been broken and was fixed.
        outcome = "HEALTHY (nothing to do)"
    elif verify_ok is True:
        outcome = "HEALED"
    elif verify_ok is False:
        outcome = "NOT HEALED"
    else:
        outcome = "INCOMPLETE"

    plan: list[str] = []
    if not changes_allowed and not diagnosis_only:
        for line in _list(facts.get("consumer_recovery_lines")):
            plan.append(f"consumers: {line}")
        if governor and governor["reset_planned"]:
            plan.append(
                f"governor: reset {governor['key']} count {governor['count_before']} -> "
                f"{governor['count_after']} (limit {governor['limit']})"
            )
        if planned_units:
            plan.append(f"restart, downstream first: {', '.join(map(str, planned_units))}")
        if not plan:
            plan.append("nothing: no stage needed a change")

    evidence_dir = evidence.get("dir")
    return {
        "run_id": run_id,
        "host": facts.get("inventory_hostname"),
        "pipeline": pipeline.get("name"),
        "mode": mode,
        "mode_reason": facts.get("preflight_mode_reason"),
        "hold_reason": hold_reason,
        "changes_allowed": changes_allowed,
        "check_mode": check_mode,
        "diagnosis_only": diagnosis_only,
        "outcome": outcome,
        "failed_task": failed_task,
        "started_at": started.strftime("%Y-%m-%dT%H:%M:%SZ") if started else None,
        "finished_at": finished.strftime("%Y-%m-%dT%H:%M:%SZ") if finished else None,
        "duration_s": int((finished - started).total_seconds()) if started and finished else None,
        "stop_point": _mapping(before.get("stop_point")) or None,
        "stop_point_after": _mapping(after.get("stop_point")) or None,
        "layers": _mapping(before.get("layers")) or None,
        "verdicts_before": _verdict_names(before.get("verdicts")),
        "verdicts_after": _verdict_names(facts.get("stream_verify_verdicts") or after.get("verdicts")),
        "recovery": per_stage,
        "replayed_total": sum(r["replayed"] for r in per_stage),
        "governor": governor,
        "units_restarted": restarted_units,
        "units_failed": failed_units,
        "units_planned": planned_units,
        "restart_stages": _list(facts.get("consumer_recovery_restart_stages")),
        "backup_files": len(_list(facts.get("unit_backup_files"))),
        "verification": {
            "ok": verify_ok,
            "findings": _list(facts.get("stream_verify_findings")),
        },
        "figures": _figures(before.get("t0"), after.get("t0"), pipeline),
        "plan": plan,
        "steps_done": done,
        "steps_not_done": not_done,
        "steps_not_needed": not_needed,
        "steps_not_needed_because": not_needed_because if not_needed else None,
        "evidence_dir": evidence_dir,
        "rollback_command": (
            f"ansible-playbook playbooks/rollback.yml -e rollback_run_id={run_id}"
            if run_id and changes_allowed and _list(facts.get("unit_backup_files"))
            else None
        ),
    }


def run_ending(
    failed_task: Any,
    summary: Any = None,
    run_id: Any = None,
    mode: Any = None,
    mode_reason: Any = None,
    changes_allowed: Any = False,
    hold_reason: Any = None,
) -> str:
    """The sentence a playbook (recover.yml, rollback.yml) ends with after its report and the
    lock release, or "" when it ends well: the failure that stopped the run (the summary's
    telling of it first), else the mode gate's refusal, so that a LIVE or UNKNOWN run exits
    non-zero, or the caller's reason to change nothing (`hold_reason`: the watchdog's pause
    switch or circuit breaker). `run_id`: only a valid one (is_run_id), else None."""
    failed = _mapping(failed_task)
    if failed:
        named = f" {run_id}" if run_id else ""
        told = _mapping(_mapping(summary).get("failed_task")).get("msg") or failed.get("msg")
        told = str(told or "see the task output above").strip()
        return f'The run{named} stopped at "{failed.get("name") or "a step"}": {told}'
    if not changes_allowed and hold_reason:
        return f"{hold_reason}: nothing was changed; the plan above is what the recovery would do."
    if not changes_allowed:
        return (
            f"Mode is {mode or 'UNKNOWN'} ({mode_reason or 'the mode was not read'}): nothing was "
            "changed; the plan above is what a TESTNET run would do."
        )
    return ""


class FilterModule:
    """The run's report."""

    def filters(self) -> dict[str, Any]:
        return {"run_summary": run_summary, "run_ending": run_ending}
