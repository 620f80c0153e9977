"""Pure functions the remediation roles (consumer_recovery, governor, service_restart,
stream_verify) compute their plans and checks with: what to reclaim, which stages to
restart, what verification found.

No I/O: plain data in (the inventory's `pipeline`, `redis_stream_info` results,
`stage_verdicts`, module results), plain data out. Shapes are in docs/interfaces.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # the functions stay usable without Ansible installed
    AnsibleFilterError = ValueError  # type: ignore[misc,assignment]

# Whether a stream grew, whether a stage replayed: one definition each, shared with the
# collection's pipeline_restart.
from ansible_collections.quantum.redis_streams.plugins.module_utils.progress import (
    stage_replayed,
    stream_grew,
    stream_of,
)

RESTART_VERDICTS = ("STALLED", "STOPPED")


def _mapping(value: Any) -> Mapping:
    return value if isinstance(value, Mapping) else {}


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _stages(pipeline: Any) -> list[Mapping]:
    stages = _mapping(pipeline).get("stages")
    if not isinstance(stages, list):
        raise AnsibleFilterError("pipeline.stages must be a list of stages, upstream first.")
    return [stage for stage in stages if isinstance(stage, Mapping)]


def _group_info(info: Any, stage: Mapping) -> Mapping:
    stream = _mapping(_mapping(_mapping(info).get("streams")).get(stage.get("input_stream")))
    return _mapping(_mapping(stream.get("groups")).get(stage.get("group")))


def _entries(count: int) -> str:
    return f"{count} entry" if count == 1 else f"{count} entries"


# ---------------------------------------------------------------------------------------
# consumer_recovery


def _version(info: Any) -> tuple[int, ...] | None:
    text = str(_mapping(_mapping(info).get("server")).get("version") or "")
    parts = []
    for part in text.split(".")[:2]:
        if not part.isdigit():
            return None
        parts.append(int(part))
    return tuple(parts) if parts else None


def _idle_proves_nothing(info: Any) -> str:
    """Why an idle consumer holding nothing is not proven dead, for this server."""
    version = _version(info)
    if version is not None and version >= (7, 2):
        return (
            "holds nothing, and idle time does not prove a consumer dead (a read blocked on an "
            "empty stream does not reset it)"
        )
    shown = _mapping(_mapping(info).get("server")).get("version") or "7.0"
    return (
        f"holds nothing, and on Redis {shown} idle time does not prove a consumer dead (an "
        "empty read does not reset it)"
    )


def _judge_stage(
    stage: Mapping, info: Mapping, verdicts: Mapping | None, threshold: int
) -> tuple[str | None, list[dict], list[dict]]:
    """`(verdict, dead, left_alone)` for the consumers of a consumer stage other than its live
    one, each `{name, pending, idle_ms, why}`. `verdict` is the stage's verdict name, or None
    when the stage was not judged."""
    live = stage.get("consumer")
    consumers = _mapping(_group_info(info, stage).get("consumers"))
    verdict = _mapping(_mapping(verdicts).get(stage.get("name")))
    dead: list[dict] = []
    left_alone: list[dict] = []
    for name, state in consumers.items():
        if name == live:
            continue
        state = _mapping(state)
        if verdict.get("verdict") == "OK":
            is_dead, why = False, "its stage is OK: nothing is reclaimed or retired on a healthy stage"
        elif verdict.get("verdict"):
            is_dead, why = _judged(name, state, verdict, info, threshold)
        else:
            is_dead, why = _unjudged(state, threshold)
        pending, idle = _int(state.get("pending")) or 0, _int(state.get("idle_ms"))
        judged = {"name": name, "pending": pending, "idle_ms": idle, "why": why}
        (dead if is_dead else left_alone).append(judged)
    return verdict.get("verdict"), dead, left_alone


def _named(items: Any) -> dict[Any, Mapping]:
    return {item.get("name"): item for item in items or [] if isinstance(item, Mapping)}


def _judged(name: str, state: Mapping, verdict: Mapping, info: Mapping, threshold: int) -> tuple[bool, str]:
    """Dead or not, and why, on a stage judged over the evidence window (not OK)."""
    pending, idle = _int(state.get("pending")) or 0, _int(state.get("idle_ms"))
    flagged = _named(verdict.get("dead_consumers")).get(name)
    if flagged is not None:
        return True, (
            f"holds {_entries(pending)} and did not advance across the evidence window; its oldest "
            f"entry was last delivered {_int(flagged.get('oldest_pending_idle_ms'))} ms ago"
        )
    if name in (verdict.get("unproven_holders") or []):
        return False, (
            f"holds {_entries(pending)} delivered too recently to call it dead from one snapshot "
            "(the verification window judges it)"
        )
    if pending:
        return False, (
            f"holds {_entries(pending)} but is not proven stuck: it advanced during the evidence "
            "window, or its oldest entry was delivered within it"
        )
    if name not in _named(verdict.get("silent_consumers")):
        return False, _idle_proves_nothing(info)
    if idle is None or idle < threshold:
        return False, f"holds nothing and made no read in the evidence window, but is idle only {idle} ms"
    return True, (
        f"holds nothing and made no read while entries waited for its group all through the "
        f"evidence window (idle {idle} ms)"
    )


def _unjudged(state: Mapping, threshold: int) -> tuple[bool, str]:
    """Dead or not, and why, from one snapshot (no verdict for the stage)."""
    pending, idle = _int(state.get("pending")) or 0, _int(state.get("idle_ms"))
    if not pending:
        return False, "holds nothing, and without verdicts over a window nothing proves it dead"
    delivered = _int(state.get("oldest_pending_idle_ms"))
    clocks = f"idle {idle} ms, oldest entry last delivered {delivered} ms ago"
    if idle is not None and delivered is not None and min(idle, delivered) >= threshold:
        return True, f"holds {_entries(pending)}, {clocks}"
    return False, f"holds {_entries(pending)} but is not proven stuck without verdicts: {clocks}"


def consumer_recovery_plan(
    pipeline: Mapping,
    info: Mapping,
    verdicts: Mapping | None = None,
    min_idle_ms: int = 60000,
    only: Iterable[str] | None = None,
) -> list[dict]:
    """Per consumer stage that has something to do: `{stage, stream, group, claim_to,
    consumers, dead_letter, dead: [{name, pending, idle_ms, why}], left_alone: [{name,
    pending, idle_ms, why}], summary, live_pending, live_oldest_pending_age_ms}`.

    A stage whose verdict is OK is left out entirely: nothing is reclaimed, retired or
    dead-lettered on a healthy stage. On the others, the dead consumers (never the stage's
    live one) are those the verdicts prove dead, one definition with `stage_verdicts`:
    - holding entries: its `dead_consumers` (did not advance across the evidence window and
      its oldest pending entry was not delivered during it: XPENDING's per-entry delivery
      clock, reset by any re-delivery or claim);
    - holding nothing: its `silent_consumers` (made no read while entries waited undelivered
      for the group all through the window) idle at least `min_idle_ms`.
    Idle time alone never proves a consumer dead: on Redis 7.0 an empty XREADGROUP does not
    reset it (a consumer polling every 200 ms looks idle), and from 7.2 a read blocked on an
    empty stream does not either. Any other consumer is listed in `left_alone` with why.

    Without verdicts for a stage (none given, or the stage not in them), one snapshot is all
    there is: a consumer holding entries is dead when both its idle time and its oldest
    entry's delivery clock are at least `min_idle_ms`; one holding nothing is never retired.

    With a dead-letter policy the live consumer is listed too, so that its own too-old
    entries are dead-lettered. A stage with no dead consumer and no policy is left out: the
    live consumer's own PEL is replayed by its service at restart. `only`, when given, limits
    the plan to those stages (a second pass on what the verification window proved).
    """
    threshold = _int(min_idle_ms)
    if threshold is None or threshold < 0:
        raise AnsibleFilterError(f"min_idle_ms must be a number of milliseconds >= 0, got {min_idle_ms!r}.")
    plan: list[dict] = []
    for stage in _stages(pipeline):
        if not stage.get("input_stream") or (only is not None and stage.get("name") not in only):
            continue
        judged, dead, left_alone = _judge_stage(stage, info, verdicts, threshold)
        if judged == "OK":
            continue
        live = stage.get("consumer")
        dead_letter = stage.get("dead_letter") or None
        if not dead and not dead_letter:
            continue
        live_state = _mapping(_mapping(_group_info(info, stage).get("consumers")).get(live))
        names = [d["name"] for d in dead] + ([live] if dead_letter else [])
        drains = ", ".join(f"{d['name']} ({_entries(d['pending'])})" for d in dead)
        summary = f"{stage.get('name')}: drain {drains} into {live} and retire them" if dead else ""
        if dead_letter:
            target = _mapping(dead_letter).get("stream")
            policy = f"dead-letter to {target} what is too old or too often delivered"
            summary = f"{summary}; {policy}" if summary else f"{stage.get('name')}: {policy} (also on {live})"
        if left_alone:
            summary += "; left alone: " + ", ".join(f"{k['name']} ({k['why']})" for k in left_alone)
        plan.append(
            {
                "stage": stage.get("name"),
                "stream": stage.get("input_stream"),
                "group": stage.get("group"),
                "claim_to": live,
                "consumers": names,
                "dead_letter": dict(dead_letter) if dead_letter else None,
                "dead": dead,
                "left_alone": left_alone,
                "summary": summary,
                "live_pending": _int(live_state.get("pending")) or 0,
                "live_oldest_pending_age_ms": _int(live_state.get("oldest_pending_age_ms")),
            }
        )
    return plan


def consumer_recovery_left_alone(
    pipeline: Mapping, info: Mapping, verdicts: Mapping | None = None, min_idle_ms: int = 60000
) -> list[str]:
    """One line per consumer the plan leaves alone (other than a stage's live one), every
    consumer stage, OK ones too: `"router: router-2 left alone: holds nothing, and on Redis
    7.0.15 idle time does not prove a consumer dead (...)"`. Same rules as
    consumer_recovery_plan."""
    threshold = _int(min_idle_ms)
    if threshold is None or threshold < 0:
        raise AnsibleFilterError(f"min_idle_ms must be a number of milliseconds >= 0, got {min_idle_ms!r}.")
    lines: list[str] = []
    for stage in _stages(pipeline):
        if stage.get("input_stream"):
            for kept in _judge_stage(stage, info, verdicts, threshold)[2]:
                lines.append(f"{stage.get('name')}: {kept['name']} left alone: {kept['why']}")
    return lines


def consumer_recovery_restart_stages(
    pipeline: Mapping,
    info: Mapping,
    results: Mapping | None,
    verdicts: Mapping | None = None,
    min_idle_ms: int = 60000,
    only: Iterable[str] | None = None,
) -> list[str]:
    """Consumer stages whose service must restart, in pipeline order: its live consumer
    received entries, or keeps entries of its own at least `min_idle_ms` old to replay
    (those not dead-lettered), or its verdict is STALLED or STOPPED. `results` maps a stage
    name to the reclaim module's result (real or planned). `only`, when given, limits the
    answer to those stages."""
    threshold = _int(min_idle_ms) or 0
    stages: list[str] = []
    for stage in _stages(pipeline):
        if not stage.get("input_stream") or (only is not None and stage.get("name") not in only):
            continue
        name = stage.get("name")
        live = stage.get("consumer")
        result = _mapping(_mapping(results).get(name))
        per_consumer = _mapping(result.get("consumers"))
        moved = sum(_int(_mapping(r).get("moved")) or 0 for r in per_consumer.values())
        live_result = _mapping(per_consumer.get(live))
        live_state = _mapping(_mapping(_group_info(info, stage).get("consumers")).get(live))
        live_pending = _int(live_state.get("pending")) or 0
        left = live_pending - (_int(live_result.get("dead_lettered")) or 0)
        age = _int(live_state.get("oldest_pending_age_ms"))
        replay = left > 0 and age is not None and age >= threshold
        verdict = _mapping(_mapping(verdicts).get(name)).get("verdict")
        if moved > 0 or replay or verdict in RESTART_VERDICTS:
            stages.append(name)
    return stages


SUMMED = ("moved", "dead_lettered", "deleted")


def _merge_consumer(first: Mapping, second: Mapping) -> dict:
    merged = {**first, **second}
    for key in SUMMED:
        merged[key] = (_int(first.get(key)) or 0) + (_int(second.get(key)) or 0)
    merged["pending_before"] = first.get("pending_before", second.get("pending_before"))
    merged["retired"] = bool(first.get("retired")) or bool(second.get("retired"))
    merged["ids"] = list(first.get("ids") or []) + list(second.get("ids") or [])
    merged["deleted_ids"] = list(first.get("deleted_ids") or []) + list(second.get("deleted_ids") or [])
    return merged


def reclaim_results_by_stage(runs: Any, loop_var: str) -> dict[str, dict]:
    """`{stage: result}` from the results of a loop of redis_stream_reclaim over a plan (the
    stage is `<loop_var>.stage`), without Ansible's own keys. The loop runs with
    `failed_when: false` so that every stage's result is recorded; a result with a module
    message is a failure (the module returns `msg` only when it fails) and keeps
    `failed: true`."""
    by_stage: dict[str, dict] = {}
    for run in runs if isinstance(runs, list) else []:
        run = _mapping(run)
        stage = _mapping(run.get(loop_var)).get("stage")
        if stage is None:
            continue
        result = {
            key: value
            for key, value in run.items()
            if key not in ("invocation", loop_var, "ansible_loop_var", "failed_when_result")
        }
        result["failed"] = bool(run.get("failed") or run.get("msg"))
        by_stage[str(stage)] = result
    return by_stage


def merge_reclaim_results(first: Mapping | None, second: Mapping | None) -> dict:
    """`{stage: reclaim result}` of two passes as one: a stage in both keeps the second pass's
    fields, with its consumers merged (moved, dead-lettered and deleted summed, retired if
    either pass retired it, the first pass's pending count at selection, ids in order), its
    totals summed and `changed` if either changed anything."""
    merged = {str(k): dict(_mapping(v)) for k, v in _mapping(first).items()}
    for stage, result in _mapping(second).items():
        result = dict(_mapping(result))
        earlier = merged.get(str(stage))
        if earlier is None:
            merged[str(stage)] = result
            continue
        consumers = {str(k): dict(_mapping(v)) for k, v in _mapping(earlier.get("consumers")).items()}
        for name, state in _mapping(result.get("consumers")).items():
            key, state = str(name), _mapping(state)
            consumers[key] = _merge_consumer(consumers[key], state) if key in consumers else dict(state)
        totals = dict(_mapping(earlier.get("totals")))
        for key, value in _mapping(result.get("totals")).items():
            totals[key] = (_int(totals.get(key)) or 0) + (_int(value) or 0)
        merged[str(stage)] = {
            **earlier,
            **result,
            "consumers": consumers,
            "totals": totals,
            "changed": bool(earlier.get("changed")) or bool(result.get("changed")),
        }
    return merged


def consumer_recovery_summary(results: Mapping | None) -> list[str]:
    """One line per stage of `{stage: reclaim result}`: moved, dead-lettered, retired. A stage
    whose reclaim failed half-way says what was done before the failure (its result's totals
    and consumers) and the module's own sentence."""
    lines: list[str] = []
    for stage, result in _mapping(results).items():
        result = _mapping(result)
        if result.get("skipped"):
            continue
        totals = _mapping(result.get("totals"))
        consumers = _mapping(result.get("consumers"))
        moved, dead_lettered = _int(totals.get("moved")) or 0, _int(totals.get("dead_lettered")) or 0
        retired = ", ".join(n for n, r in consumers.items() if _mapping(r).get("retired")) or "none"
        if result.get("failed"):
            done = f"{_entries(moved)} moved, {dead_lettered} dead-lettered, retired: {retired}"
            why = str(result.get("msg") or "").strip()
            lines.append(f"{stage}: failed ({done} before the failure): {why}")
            continue
        skipped = [
            f"{n} ({_mapping(r).get('skipped_reason')})"
            for n, r in consumers.items()
            if _mapping(r).get("skipped_reason") and n != result.get("claim_to")
        ]
        line = (
            f"{stage}: {_entries(moved)} moved to {result.get('claim_to')}, {dead_lettered} dead-lettered, "
            f"{_int(totals.get('deleted')) or 0} already deleted from the stream, retired: {retired}"
        )
        if skipped:
            line += f"; left alone: {', '.join(skipped)}"
        lines.append(line)
    return lines


# ---------------------------------------------------------------------------------------
# governor and service_restart


def governed_stage(pipeline: Mapping) -> str | None:
    """The name of the first stage marked `governed: true`, or None."""
    for stage in _stages(pipeline):
        if stage.get("governed"):
            return stage.get("name")
    return None


def governor_restart_stages(result: Mapping | None, pipeline: Mapping) -> list[str]:
    """The governed stage when the governor role's result reset (or, as a plan, would reset) the
    counter: its producer is restarted so that it reads the new counter. Else none."""
    stage = governed_stage(pipeline)
    return [stage] if stage and _mapping(result).get("reset") else []


def governor_summary(result: Mapping | None, spec: Mapping | None, planned: bool = False) -> str:
    """One line about a redis_governor result: what was (or, `planned`, would be) reset."""
    result, spec = _mapping(result), _mapping(spec)
    if not result or result.get("skipped"):
        return "no governor in the pipeline"
    governor = _mapping(result.get("governor"))
    key, field = governor.get("key"), spec.get("count_field", "count")
    if result.get("reset"):
        verb = "PLAN, nothing changed: would reset" if planned else "reset"
        return (
            f"{verb} {key} {field} {_mapping(result.get('before')).get('count')} -> "
            f"{_mapping(result.get('after')).get('count')} (limit {governor.get('limit')}, "
            f"{result.get('results_today')} results today)"
        )
    why = result.get("reset_skipped_reason") or "not asked to reset"
    return f"{key} left alone ({field}={governor.get('count')}, limit {governor.get('limit')}): {why}"


def stages_to_restart(verdicts: Mapping | None, *lists: Iterable[str] | None) -> list[str]:
    """Stage names whose verdict needs a restart, then those of each list, each once."""
    names: list[str] = [
        name for name, verdict in _mapping(verdicts).items() if _mapping(verdict).get("needs_restart")
    ]
    for extra in lists:
        for name in extra or []:
            if name not in names:
                names.append(name)
    return names


# ---------------------------------------------------------------------------------------
# stream_verify


def demand_growth(before_verdicts: Mapping | None, pipeline: Mapping) -> bool:
    """Whether verification must see every stream grow. Not when the producer was quiet and
    not blocked before the run (OK and its output did not grow), or held by a governor
    exactly at its limit (policy, not a fault): a quiet pipeline is healthy, and nothing new
    will flow. Without prior verdicts, growth is demanded."""
    producer = next((s for s in _stages(pipeline) if not s.get("input_stream")), None)
    if producer is None or not before_verdicts:
        return True
    verdict = _mapping(_mapping(before_verdicts).get(producer.get("name")))
    if not verdict:
        return True
    if verdict.get("verdict") == "OK" and not verdict.get("output_grew"):
        return False
    return not _legitimately_blocked(verdict)


def _legitimately_blocked(verdict: Mapping) -> bool:
    """BLOCKED by a governor exactly at its limit: policy, not a fault to fix."""
    governor = _mapping(verdict.get("governor"))
    at_limit = bool(governor.get("at_limit")) and not governor.get("over_limit")
    return verdict.get("verdict") == "BLOCKED" and at_limit


def verify_findings(
    before: Mapping,
    after: Mapping,
    verdicts: Mapping,
    pipeline: Mapping,
    growth_required: bool = True,
    lag_tolerance: int = 0,
) -> list[dict]:
    """What verification found wrong over its window, one `{stage, problem}` per finding,
    in pipeline order; an empty list means the pipeline flows. Per stage: the verdict is
    OK (or LAGGING while the backlog drains, see `_draining`; or BLOCKED by a governor
    exactly at its limit, which is policy); its output stream grew (when `growth_required`
    and no governor holds the producer at its limit now); for a consumer stage its group's
    lag and PEL did not grow by more than `lag_tolerance` (a busy stream has entries in
    flight at any instant: two instants differ by noise) unless the backlog upstream of it
    drains into it, no dead consumer holds entries, and its live consumer's oldest pending
    entry did not stay the same across the window."""
    tolerance = _int(lag_tolerance)
    if tolerance is None or tolerance < 0:
        raise AnsibleFilterError(f"lag_tolerance must be a number of entries >= 0, got {lag_tolerance!r}.")
    findings: list[dict] = []
    if any(_legitimately_blocked(_mapping(v)) for v in _mapping(verdicts).values()):
        # The governor holds the producer at its limit now: nothing new can flow; what
        # already waits is still judged by the verdicts and the lag and PEL checks.
        growth_required = False
    upstream = _upstream_backlogs(before, after, pipeline)
    for stage in _stages(pipeline):
        name = stage.get("name")
        verdict = _mapping(_mapping(verdicts).get(name))
        draining = _draining(verdict, upstream.get(name))
        problems: list[str] = []
        if verdict.get("verdict") not in (None, "OK") and not (draining or _legitimately_blocked(verdict)):
            problems.append(f"{verdict.get('verdict')}: {verdict.get('reason')}")
        output = stage.get("output_stream")
        if growth_required and not stream_grew(stream_of(before, output), stream_of(after, output)):
            problems.append(f"{output} did not grow")
        if stage.get("input_stream"):
            problems.extend(_group_problems(stage, before, after, verdict, tolerance, draining))
        for problem in problems:
            findings.append({"stage": name, "problem": problem})
    return findings


def _backlog(group: Mapping) -> int | None:
    """Entries a group still owes: undelivered (lag) plus delivered and unacknowledged."""
    lag, pending = _int(group.get("lag")), _int(group.get("pending"))
    return None if lag is None or pending is None else lag + pending


def _upstream_backlogs(
    before: Mapping, after: Mapping, pipeline: Mapping
) -> dict[str, tuple[int, int] | None]:
    """Per consumer stage, the backlog of its group and every group upstream of it, summed,
    at both ends of the window: `{stage: (before, after)}`, None where a lag is unknown.
    A stage that drains a stall's backlog moves it downstream: the next stage's lag grows
    while the sum shrinks. The sum is what says whether the pipeline catches up."""
    sums: dict[str, tuple[int, int] | None] = {}
    total: tuple[int, int] | None = (0, 0)
    for stage in _stages(pipeline):
        if not stage.get("input_stream"):
            continue
        ends = (_backlog(_group_info(before, stage)), _backlog(_group_info(after, stage)))
        known = total is not None and ends[0] is not None and ends[1] is not None
        total = (total[0] + ends[0], total[1] + ends[1]) if known else None  # type: ignore[index,operator]
        sums[str(stage.get("name"))] = total
    return sums


def _draining(verdict: Mapping, upstream: tuple[int, int] | None = None) -> bool:
    """A LAGGING stage is catching up, which is recovery, when its own lag shrank across the
    window, or when it reads and the backlog of its group and every group upstream of it
    shrank (the backlog of a stall flowing down the pipeline)."""
    if verdict.get("verdict") != "LAGGING":
        return False
    lag, lag_before = _int(verdict.get("lag")), _int(verdict.get("lag_before"))
    if None not in (lag, lag_before) and lag < lag_before:  # type: ignore[operator]
        return True
    reading = (_int(verdict.get("entries_read_delta")) or 0) > 0
    return reading and upstream is not None and upstream[1] < upstream[0]


def _group_problems(
    stage: Mapping,
    before: Mapping,
    after: Mapping,
    verdict: Mapping,
    tolerance: int = 0,
    draining: bool = False,
) -> list[str]:
    problems: list[str] = []
    group = stage.get("group")
    group_before, group_after = _group_info(before, stage), _group_info(after, stage)
    if not group_after.get("exists", bool(group_after)):
        return [f"group {group} does not exist on {stage.get('input_stream')}"]
    for field, what in (("lag", "lag"), ("pending", "pending count")):
        b, a = _int(group_before.get(field)), _int(group_after.get(field))
        if b is not None and a is not None and a > 0 and a - b > tolerance and not draining:
            problems.append(f"group {group}'s {what} grew from {b} to {a}")
    for dead in verdict.get("dead_consumers") or []:
        dead = _mapping(dead)
        problems.append(
            f"consumer {dead.get('name')} (not the live {stage.get('consumer')}) still holds "
            f"{_entries(_int(dead.get('pending')) or 0)}"
        )
    live = stage.get("consumer")
    live_before = _mapping(_mapping(group_before.get("consumers")).get(live))
    live_after = _mapping(_mapping(group_after.get("consumers")).get(live))
    oldest = live_after.get("oldest_pending_id")
    if oldest and oldest == live_before.get("oldest_pending_id"):
        problems.append(f"{live}'s oldest pending entry {oldest} was not acknowledged during the window")
    return problems


def delivered_marks(snapshot: Mapping, stages: Iterable[str] | None, pipeline: Mapping) -> dict[str, Any]:
    """`{stage: its group's last delivered id in snapshot}` for the named consumer stages:
    everything delivered before that id must be acknowledged once the stage has replayed."""
    wanted = set(stages or [])
    return {
        str(stage.get("name")): _group_info(snapshot, stage).get("last_delivered_id")
        for stage in _stages(pipeline)
        if stage.get("input_stream") and stage.get("name") in wanted
    }


def replay_findings(snapshot: Mapping, pipeline: Mapping, marks: Mapping | None) -> list[dict]:
    """`[{stage, problem}]`: the stages of `marks` (delivered_marks) whose live consumer still
    holds an entry delivered at or before its mark (stage_replayed, the one definition, shared
    with pipeline_restart's replay_marks)."""
    findings: list[dict] = []
    for stage in _stages(pipeline):
        name = stage.get("name")
        if name not in _mapping(marks):
            continue
        replay = stage_replayed(stage, snapshot, _mapping(marks).get(name))
        if not replay["replayed"]:
            findings.append({"stage": name, "problem": replay["how"]})
    return findings


def verify_sentence(findings: list[dict]) -> str:
    """One sentence for the failure message: the first stage's findings, then a count."""
    if not findings:
        return "every stage flows"
    first = findings[0]["stage"]
    own = [f["problem"] for f in findings if f["stage"] == first]
    others = sorted({f["stage"] for f in findings} - {first})
    tail = f" (also: {', '.join(others)})" if others else ""
    return f"stage {first}: {'; '.join(own)}{tail}"


class FilterModule:
    """Remediation filters: reclaim plan, restart stages, consumer advance, verification."""

    def filters(self) -> dict:
        return {
            "consumer_recovery_plan": consumer_recovery_plan,
            "consumer_recovery_left_alone": consumer_recovery_left_alone,
            "consumer_recovery_restart_stages": consumer_recovery_restart_stages,
            "consumer_recovery_summary": consumer_recovery_summary,
            "merge_reclaim_results": merge_reclaim_results,
            "reclaim_results_by_stage": reclaim_results_by_stage,
            "governed_stage": governed_stage,
            "governor_restart_stages": governor_restart_stages,
            "stages_to_restart": stages_to_restart,
            "governor_summary": governor_summary,
            "demand_growth": demand_growth,
            "verify_findings": verify_findings,
            "verify_sentence": verify_sentence,
            "delivered_marks": delivered_marks,
            "replay_findings": replay_findings,
        }
