"""Unit tests of filter_plugins/remediation.py: pure functions on dicts shaped like
`redis_stream_info` results and `stage_verdicts` (docs/interfaces.md); no Redis needed."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import yaml
from conftest import collection_util

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT / "filter_plugins"))

import remediation as rm  # noqa: E402
import stream_health as sh  # noqa: E402

PIPELINE = yaml.safe_load((PROJECT_ROOT / "inventory/testnet/group_vars/all/pipeline.yml").read_text())[
    "pipeline"
]
DECISION = "quantum:stream:ai.decision"
INTENT = "quantum:stream:trade.intent"
RESULT = "quantum:stream:trade.result"
T0 = 1_790_000_000_000
HOUR = 3_600_000


def consumer(pending=0, idle=100, oldest=None, age=None, delivered=None):
    """`delivered`: XPENDING's time since the oldest pending entry was delivered (default: the
    consumer's idle time, as for a consumer last served when it took that entry)."""
    return {
        "pending": pending,
        "idle_ms": idle,
        "inactive_ms": None,
        "oldest_pending_id": oldest,
        "oldest_pending_age_ms": age,
        "oldest_pending_idle_ms": (idle if delivered is None else delivered) if pending else None,
        "max_delivery_count": 1 if pending else 0,
    }


def group(consumers, entries_read=100, lag=0, last="1-0"):
    return {
        "exists": True,
        "consumer_count": len(consumers),
        "pending": sum(c["pending"] for c in consumers.values()),
        "last_delivered_id": last,
        "entries_read": entries_read,
        "lag": lag,
        "consumers": consumers,
    }


def stream(length, groups=None):
    return {
        "exists": True,
        "length": length,
        "first_entry_id": "1-0",
        "last_entry_id": f"{T0 + length}-0",
        "entries_added": length,
        "groups": groups or {},
    }


def info(time_ms=T0, decision=100, intent=100, result=100, router=None, execution=None):
    return {
        "server": {"version": "7.0.15", "time_ms": time_ms},
        "streams": {
            DECISION: stream(decision, {"router": router or group({"router-1": consumer()})}),
            INTENT: stream(intent, {"execution": execution or group({"execution-1": consumer()})}),
            RESULT: stream(result),
        },
        "missing": [],
    }


def seed_incident():
    """The seed: router-1 hung with 3 pending for 3.3 h, an orphan router-0 holding 3, a
    leftover temporary consumer holding nothing."""
    router = group(
        {
            "router-1": consumer(3, 11_776_068, f"{T0 - 3 * HOUR}-0", 3 * HOUR),
            "router-0": consumer(3, 11_000_000, f"{T0 - 3 * HOUR}-1", 3 * HOUR),
            "router-tmp": consumer(0, 9_000_000),
        },
        entries_read=10021,
        lag=0,
    )
    return info(time_ms=T0, decision=10021, intent=10002, result=10005, router=router)


def verdicts_for(before, after, governor=None, lag_tolerance=0):
    return sh.stage_verdicts(before, after, PIPELINE, governor=governor, lag_tolerance=lag_tolerance)


def later(snapshot, ms=60_000):
    """The same state `ms` later, nobody having touched anything: every clock moved on."""
    after = copy.deepcopy(snapshot)
    after["server"]["time_ms"] += ms
    for stream_state in after["streams"].values():
        for group_state in stream_state["groups"].values():
            for c in group_state["consumers"].values():
                for clock in ("idle_ms", "oldest_pending_age_ms", "oldest_pending_idle_ms"):
                    if c.get(clock) is not None:
                        c[clock] += ms
    return after


# ---------------------------------------------------------------------------------------
# consumer_recovery_plan


def test_plan_drains_orphans_never_the_live_consumer_and_leaves_an_empty_one_alone():
    before = seed_incident()
    after = later(before)
    plan = rm.consumer_recovery_plan(PIPELINE, after, verdicts_for(before, after), 60_000)
    assert [p["stage"] for p in plan] == ["router"]
    router = plan[0]
    assert router["claim_to"] == "router-1"
    assert router["consumers"] == ["router-0"]
    assert router["stream"] == DECISION and router["group"] == "router"
    assert router["dead_letter"] is None
    assert router["live_pending"] == 3
    assert router["dead"][0]["why"] == (
        "holds 3 entries and did not advance across the evidence window; its oldest entry was last "
        "delivered 11060000 ms ago"
    )
    # The seed's leftover holds nothing, and nothing waited for it (lag 0): on Redis 7.0 its
    # idle time does not tell a dead consumer from one polling every 200 ms.
    why = (
        "holds nothing, and on Redis 7.0.15 idle time does not prove a consumer dead (an empty read "
        "does not reset it)"
    )
    assert router["left_alone"] == [{"name": "router-tmp", "pending": 0, "idle_ms": 9_060_000, "why": why}]
    assert router["summary"] == (
        f"router: drain router-0 (3 entries) into router-1 and retire them; left alone: router-tmp ({why})"
    )


def test_an_empty_consumer_that_made_no_read_while_entries_waited_is_retired():
    before = seed_incident()
    before["streams"][DECISION]["groups"]["router"]["lag"] = 40
    after = later(before)
    verdicts = verdicts_for(before, after)
    assert [c["name"] for c in verdicts["router"]["silent_consumers"]] == ["router-tmp"]
    plan = rm.consumer_recovery_plan(PIPELINE, after, verdicts, 60_000)
    assert plan[0]["consumers"] == ["router-0", "router-tmp"]
    assert plan[0]["dead"][1]["why"] == (
        "holds nothing and made no read while entries waited for its group all through the evidence "
        "window (idle 9060000 ms)"
    )
    assert "drain router-0 (3 entries), router-tmp (0 entries) into router-1" in plan[0]["summary"]
    # Below min_idle_ms it is kept, and says so.
    plan = rm.consumer_recovery_plan(PIPELINE, after, verdicts, 10 * HOUR)
    assert plan[0]["consumers"] == ["router-0"]
    assert plan[0]["left_alone"][0]["why"] == (
        "holds nothing and made no read in the evidence window, but is idle only 9060000 ms"
    )


def test_a_poller_on_an_ok_stage_is_never_retired():
    """The trial: on Redis 7.0 a second consumer polling every 200 ms looks idle; its stage is
    OK, so the plan does not touch it, whatever its idle time."""
    before = info(router=group({"router-1": consumer(0, 5 * HOUR), "router-2": consumer(0, 5 * HOUR)}))
    after = later(before)
    verdicts = verdicts_for(before, after)
    assert {v["verdict"] for v in verdicts.values()} == {"OK"}
    assert rm.consumer_recovery_plan(PIPELINE, after, verdicts, 60_000) == []
    assert rm.consumer_recovery_left_alone(PIPELINE, after, verdicts, 60_000) == [
        "router: router-2 left alone: its stage is OK: nothing is reclaimed or retired on a healthy stage"
    ]


def test_an_ok_stage_is_skipped_entirely_even_with_a_dead_letter_policy():
    pipeline = copy.deepcopy(PIPELINE)
    pipeline["stages"][2]["dead_letter"] = {"stream": "quantum:stream:trade.intent.dead", "max_age_ms": HOUR}
    before = info()
    after = later(before)
    assert rm.consumer_recovery_plan(pipeline, after, verdicts_for(before, after), 60_000) == []


def test_on_redis_7_2_the_reason_names_blocked_reads():
    before = seed_incident()
    before["server"]["version"] = "7.2.4"
    after = later(before)
    plan = rm.consumer_recovery_plan(PIPELINE, after, verdicts_for(before, after), 60_000)
    assert plan[0]["left_alone"][0]["why"] == (
        "holds nothing, and idle time does not prove a consumer dead (a read blocked on an empty stream "
        "does not reset it)"
    )


def test_plan_is_empty_on_a_healthy_pipeline():
    healthy = info()
    assert rm.consumer_recovery_plan(PIPELINE, healthy, verdicts_for(healthy, healthy), 60_000) == []


def test_an_orphan_that_advanced_in_the_window_is_left_alone():
    before = info(router=group({"router-1": consumer(), "router-2": consumer(5, 100_000)}))
    after = info(time_ms=T0 + 60_000, router=group({"router-1": consumer(), "router-2": consumer(2, 50)}))
    plan = rm.consumer_recovery_plan(PIPELINE, after, verdicts_for(before, after), 60_000)
    assert plan == []


def test_without_verdicts_no_empty_consumer_is_retired_however_idle():
    snapshot = info(
        router=group(
            {"router-1": consumer(), "router-new": consumer(0, 5_000), "router-old": consumer(0, 9 * HOUR)}
        )
    )
    assert rm.consumer_recovery_plan(PIPELINE, snapshot, {}, 60_000) == []
    assert rm.consumer_recovery_plan(PIPELINE, snapshot, None, 60_000) == []
    assert rm.consumer_recovery_left_alone(PIPELINE, snapshot, None, 60_000)[1] == (
        "router: router-old left alone: holds nothing, and without verdicts over a window nothing proves "
        "it dead"
    )


def test_without_verdicts_a_holder_needs_both_clocks_at_the_threshold():
    snapshot = info(
        router=group(
            {
                "router-1": consumer(),
                "old": consumer(2, 70_000),
                "busy": consumer(2, 10),
                # Idle (Redis 7.0: nothing delivered to it lately) but its oldest entry was
                # re-read 5 s ago: it is working on its PEL.
                "rereading": consumer(2, 70_000, delivered=5_000),
            }
        )
    )
    plan = rm.consumer_recovery_plan(PIPELINE, snapshot, None, 60_000)
    assert plan[0]["consumers"] == ["old"]
    assert plan[0]["dead"][0]["why"] == (
        "holds 2 entries, idle 70000 ms, oldest entry last delivered 70000 ms ago"
    )
    kept = {k["name"]: k["why"] for k in plan[0]["left_alone"]}
    assert kept["rereading"] == (
        "holds 2 entries but is not proven stuck without verdicts: idle 70000 ms, oldest entry last "
        "delivered 5000 ms ago"
    )


def test_dead_letter_policy_lists_the_live_consumer_too():
    pipeline = copy.deepcopy(PIPELINE)
    policy = {"stream": "quantum:stream:trade.intent.dead", "max_age_ms": HOUR}
    pipeline["stages"][2]["dead_letter"] = policy
    snapshot = info(execution=group({"execution-1": consumer(2, 10, f"{T0 - 2 * HOUR}-0", 2 * HOUR)}))
    plan = rm.consumer_recovery_plan(pipeline, snapshot, {}, 60_000)
    assert plan == [
        {
            "stage": "execution",
            "stream": INTENT,
            "group": "execution",
            "claim_to": "execution-1",
            "consumers": ["execution-1"],
            "dead_letter": policy,
            "dead": [],
            "left_alone": [],
            "summary": (
                "execution: dead-letter to quantum:stream:trade.intent.dead what is too old or too "
                "often delivered (also on execution-1)"
            ),
            "live_pending": 2,
            "live_oldest_pending_age_ms": 2 * HOUR,
        }
    ]


@pytest.mark.parametrize("bad", [-1, "soon", None])
def test_plan_rejects_a_bad_threshold(bad):
    with pytest.raises(Exception, match="min_idle_ms"):
        rm.consumer_recovery_plan(PIPELINE, info(), {}, bad)


# ---------------------------------------------------------------------------------------
# consumer_recovery_restart_stages, consumer_recovery_summary


def reclaim_result(moved=0, dead_lettered=0, live="router-1", live_dead_lettered=0):
    consumers = {
        "router-0": {
            "pending_before": moved,
            "moved": moved,
            "dead_lettered": dead_lettered,
            "deleted": 0,
            "retired": True,
            "retire_skipped_reason": None,
            "skipped_reason": None,
        },
    }
    consumers[live] = {
        "pending_before": 3,
        "moved": 0,
        "dead_lettered": live_dead_lettered,
        "deleted": 0,
        "retired": False,
        "retire_skipped_reason": "claim_to is never retired",
        "skipped_reason": None,
    }
    return {
        "changed": True,
        "claim_to": live,
        "consumers": consumers,
        "totals": {
            "moved": moved,
            "dead_lettered": dead_lettered + live_dead_lettered,
            "deleted": 0,
            "retired": 1,
            "consumers_selected": 2,
        },
    }


def test_restart_when_the_live_consumer_received_entries():
    assert rm.consumer_recovery_restart_stages(PIPELINE, info(), {"router": reclaim_result(moved=3)}) == [
        "router"
    ]


def test_restart_when_the_live_consumer_keeps_an_old_pel_to_replay():
    snapshot = info(router=group({"router-1": consumer(3, 10, f"{T0 - HOUR}-0", HOUR)}))
    assert rm.consumer_recovery_restart_stages(PIPELINE, snapshot, {}, {}, 60_000) == ["router"]


def test_no_restart_for_entries_merely_in_flight():
    snapshot = info(router=group({"router-1": consumer(1, 10, f"{T0 - 20}-0", 20)}))
    assert rm.consumer_recovery_restart_stages(PIPELINE, snapshot, {}, {}, 60_000) == []


def test_no_replay_when_the_policy_dead_lettered_the_whole_pel():
    snapshot = info(router=group({"router-1": consumer(3, 10, f"{T0 - HOUR}-0", HOUR)}))
    results = {"router": reclaim_result(live_dead_lettered=3)}
    assert rm.consumer_recovery_restart_stages(PIPELINE, snapshot, results, {}, 60_000) == []


def test_restart_for_a_stalled_or_stopped_verdict():
    verdicts = {"execution": {"verdict": "STOPPED"}, "router": {"verdict": "LAGGING"}}
    assert rm.consumer_recovery_restart_stages(PIPELINE, info(), {}, verdicts) == ["execution"]


def test_summary_lines():
    results = {"router": reclaim_result(moved=3), "execution": {"skipped": True}}
    assert rm.consumer_recovery_summary(results) == [
        "router: 3 entries moved to router-1, 0 dead-lettered, 0 already deleted from the stream, "
        "retired: router-0"
    ]
    failed = {"router": {"failed": True, "msg": "Redis is down."}}
    assert rm.consumer_recovery_summary(failed) == [
        "router: failed (0 entries moved, 0 dead-lettered, retired: none before the failure): Redis is down."
    ]


def test_summary_of_a_reclaim_that_failed_half_way_says_what_was_done():
    msg = (
        "Moved 3 entries of router-0 to router-1 and retired router-0, then Redis refused XCLAIM on "
        "router-tmp: NOPERM this user has no permissions to run the 'xclaim' command."
    )
    result = reclaim_result(moved=3)
    result.update(failed=True, msg=msg)
    assert rm.consumer_recovery_summary({"router": result}) == [
        f"router: failed (3 entries moved, 0 dead-lettered, retired: router-0 before the failure): {msg}"
    ]


# ---------------------------------------------------------------------------------------
# governor, restart selection


def test_governed_stage():
    assert rm.governed_stage(PIPELINE) == "ai_engine"
    ungoverned = copy.deepcopy(PIPELINE)
    ungoverned["stages"][0].pop("governed")
    assert rm.governed_stage(ungoverned) is None


def test_governor_restart_stages_only_after_a_reset():
    # A reset counter (or a planned one: check mode returns the reset it would make) restarts
    # the governed producer so that it reads the new counter.
    assert rm.governor_restart_stages({"reset": True}, PIPELINE) == ["ai_engine"]
    left_alone = {"reset": False, "reset_skipped_reason": "at its limit"}
    assert rm.governor_restart_stages(left_alone, PIPELINE) == []
    # No governor (a skipped result), or no governed stage.
    assert rm.governor_restart_stages({"skipped": True}, PIPELINE) == []
    assert rm.governor_restart_stages(None, PIPELINE) == []
    ungoverned = copy.deepcopy(PIPELINE)
    ungoverned["stages"][0].pop("governed")
    assert rm.governor_restart_stages({"reset": True}, ungoverned) == []


def test_governor_summary():
    reset = {
        "reset": True,
        "governor": {"key": "quantum:governor", "count": 10000, "limit": 200},
        "before": {"count": 10000},
        "after": {"count": 5},
        "results_today": 5,
    }
    spec = PIPELINE["governor"]
    assert rm.governor_summary(reset, spec) == (
        "reset quantum:governor trades_today 10000 -> 5 (limit 200, 5 results today)"
    )
    assert rm.governor_summary(reset, spec, True).startswith("PLAN, nothing changed: would reset")
    kept = {
        "reset": False,
        "governor": {"key": "g", "count": 150, "limit": 200},
        "reset_skipped_reason": "ok",
    }
    assert rm.governor_summary(kept, spec) == "g left alone (trades_today=150, limit 200): ok"
    assert rm.governor_summary({"skipped": True}, spec) == "no governor in the pipeline"


def test_stages_to_restart_merges_without_duplicates():
    verdicts = {"router": {"needs_restart": True}, "execution": {"needs_restart": False}}
    assert rm.stages_to_restart(verdicts, ["router", "execution"], ["ai_engine"], None) == [
        "router",
        "execution",
        "ai_engine",
    ]
    assert rm.stages_to_restart({}, []) == []


# ---------------------------------------------------------------------------------------
# stage_advanced (the collection's module_utils/progress.py, which pipeline_restart waits with)

stage_advanced = collection_util("progress").stage_advanced


ROUTER = PIPELINE["stages"][1]
ENGINE = PIPELINE["stages"][0]


def test_advanced_when_entries_read_grows():
    before = info(router=group({"router-1": consumer()}, entries_read=5))
    after = info(time_ms=T0 + 2000, router=group({"router-1": consumer()}, entries_read=9))
    expected = {"advanced": True, "how": "group router read 4 entries"}
    assert stage_advanced(ROUTER, before, after) == expected


def test_advanced_when_the_pel_drains():
    before = info(router=group({"router-1": consumer(3, 99_000)}))
    after = info(time_ms=T0 + 2000, router=group({"router-1": consumer(0, 101_000)}))
    assert stage_advanced(ROUTER, before, after)["how"] == "router-1 acknowledged 3 pending entries"


def test_advanced_when_the_consumer_is_seen_after_the_restart():
    before = info(router=group({"router-1": consumer(0, 99_000)}))
    after = info(time_ms=T0 + 2000, router=group({"router-1": consumer(0, 500)}))
    assert stage_advanced(ROUTER, before, after)["advanced"] is True


def test_not_advanced_when_nothing_moved():
    before = info(router=group({"router-1": consumer(3, 99_000)}))
    after = info(time_ms=T0 + 2000, router=group({"router-1": consumer(3, 101_000)}))
    assert stage_advanced(ROUTER, before, after) == {
        "advanced": False,
        "how": "router-1 has not read since the restart",
    }


def test_consumer_joining_or_absent():
    before = info(router=group({}))
    joined = info(time_ms=T0 + 10, router=group({"router-1": consumer(0, 5)}))
    assert stage_advanced(ROUTER, before, joined)["how"] == "consumer router-1 joined group router"
    assert stage_advanced(ROUTER, joined, before)["advanced"] is False


def test_producer_advances_when_its_output_grows():
    assert stage_advanced(ENGINE, info(decision=10), info(decision=12))["advanced"] is True
    assert stage_advanced(ENGINE, info(decision=10), info(decision=10))["advanced"] is False
    assert stage_advanced({}, info(), info())["how"] == "not a stage of the pipeline"


# ---------------------------------------------------------------------------------------
# demand_growth, verify_findings, verify_sentence


def flowing(t, n):
    """A healthy, busy pipeline at time t with n entries through every stage."""
    return info(
        time_ms=t,
        decision=n,
        intent=n,
        result=n,
        router=group({"router-1": consumer(0, 10)}, entries_read=n),
        execution=group({"execution-1": consumer(0, 10)}, entries_read=n),
    )


def test_a_flowing_pipeline_passes():
    before, after = flowing(T0, 100), flowing(T0 + 10_000, 120)
    verdicts = verdicts_for(before, after)
    assert rm.verify_findings(before, after, verdicts, PIPELINE, True) == []
    assert rm.verify_sentence([]) == "every stage flows"


def test_a_quiet_pipeline_passes_when_growth_is_not_demanded():
    before, after = flowing(T0, 100), flowing(T0 + 10_000, 100)
    verdicts = verdicts_for(before, after)
    assert rm.verify_findings(before, after, verdicts, PIPELINE, False) == []
    findings = rm.verify_findings(before, after, verdicts, PIPELINE, True)
    assert {f["problem"] for f in findings} == {f"{s} did not grow" for s in (DECISION, INTENT, RESULT)}


def test_demand_growth_rule():
    quiet = {"ai_engine": {"verdict": "OK", "output_grew": False}}
    producing = {"ai_engine": {"verdict": "OK", "output_grew": True}}
    blocked_over = {"ai_engine": {"verdict": "BLOCKED", "governor": {"over_limit": True, "at_limit": False}}}
    blocked_at = {"ai_engine": {"verdict": "BLOCKED", "governor": {"over_limit": False, "at_limit": True}}}
    assert rm.demand_growth(quiet, PIPELINE) is False
    assert rm.demand_growth(producing, PIPELINE) is True
    assert rm.demand_growth(blocked_over, PIPELINE) is True
    assert rm.demand_growth(blocked_at, PIPELINE) is False
    assert rm.demand_growth({}, PIPELINE) is True
    assert rm.demand_growth({"ai_engine": {"verdict": "STOPPED"}}, PIPELINE) is True


def test_a_stalled_stage_with_an_orphan_fails_naming_the_stage():
    before = seed_incident()
    after = later(before)
    verdicts = verdicts_for(before, after)
    findings = rm.verify_findings(before, after, verdicts, PIPELINE, True)
    router = [f["problem"] for f in findings if f["stage"] == "router"]
    assert router[0].startswith("STALLED: ")
    assert "consumer router-0 (not the live router-1) still holds 3 entries" in router
    oldest = f"{T0 - 3 * HOUR}-0"
    assert f"router-1's oldest pending entry {oldest} was not acknowledged during the window" in router
    sentence = rm.verify_sentence(findings)
    assert sentence.startswith("stage ai_engine: quantum:stream:ai.decision did not grow")
    assert sentence.endswith("(also: execution, router)")


def test_a_draining_backlog_is_recovery_not_failure():
    before = flowing(T0, 100)
    before["streams"][DECISION]["groups"]["router"]["lag"] = 500
    after = flowing(T0 + 10_000, 120)
    after["streams"][DECISION]["groups"]["router"]["lag"] = 300
    verdicts = verdicts_for(before, after)
    assert verdicts["router"]["verdict"] == "LAGGING"
    assert rm.verify_findings(before, after, verdicts, PIPELINE, True) == []


def test_a_growing_lag_fails():
    before = flowing(T0, 100)
    before["streams"][DECISION]["groups"]["router"]["lag"] = 10
    after = flowing(T0 + 10_000, 120)
    after["streams"][DECISION]["groups"]["router"]["lag"] = 30
    findings = rm.verify_findings(before, after, verdicts_for(before, after), PIPELINE, True)
    assert {"stage": "router", "problem": "group router's lag grew from 10 to 30"} in findings


def test_a_governor_legitimately_at_its_limit_is_not_a_failure():
    before, after = flowing(T0, 100), flowing(T0 + 10_000, 100)
    governor = {
        "exists": True,
        "count": 200,
        "limit": 200,
        "over_limit": False,
        "at_limit": True,
        "blocked": True,
    }
    verdicts = verdicts_for(before, after, governor)
    assert verdicts["ai_engine"]["verdict"] == "BLOCKED"
    assert rm.verify_findings(before, after, verdicts, PIPELINE, False) == []
    # It reached its limit during the run: growth demanded before is waived, not the rest.
    assert rm.verify_findings(before, after, verdicts, PIPELINE, True) == []
    over = dict(governor, count=10000, over_limit=True, at_limit=False)
    findings = rm.verify_findings(before, after, verdicts_for(before, after, over), PIPELINE, False)
    assert findings[0]["stage"] == "ai_engine"
    assert findings[0]["problem"].startswith("BLOCKED: ")


def test_a_missing_group_fails():
    before = flowing(T0, 100)
    after = flowing(T0 + 10_000, 120)
    after["streams"][INTENT]["groups"]["execution"] = {"exists": False}
    findings = rm.verify_findings(before, after, verdicts_for(before, after), PIPELINE, True)
    assert {"stage": "execution", "problem": f"group execution does not exist on {INTENT}"} in findings


def test_in_flight_noise_within_the_tolerance_is_not_a_failure():
    """Two instants of a busy stream differ by the entries in flight (the soak's finding 1)."""
    before, after = flowing(T0, 100), flowing(T0 + 10_000, 5100)
    after["streams"][DECISION]["groups"]["router"]["lag"] = 31
    execution = after["streams"][INTENT]["groups"]["execution"]
    execution["consumers"]["execution-1"] = consumer(35, 5, f"{T0}-1", 5)
    execution["pending"] = 35
    strict = rm.verify_findings(before, after, verdicts_for(before, after), PIPELINE, True)
    assert {"stage": "router", "problem": "group router's lag grew from 0 to 31"} in strict
    assert {"stage": "execution", "problem": "group execution's pending count grew from 0 to 35"} in strict
    lenient = verdicts_for(before, after, lag_tolerance=35)
    assert rm.verify_findings(before, after, lenient, PIPELINE, True, lag_tolerance=35) == []
    # One entry over the tolerance is a finding again.
    findings = rm.verify_findings(before, after, lenient, PIPELINE, True, lag_tolerance=34)
    assert findings == [
        {"stage": "execution", "problem": "group execution's pending count grew from 0 to 35"}
    ]


def test_a_stall_backlog_flowing_downstream_is_recovery():
    """The router drains its stall backlog into trade.intent faster than execution reads it:
    execution's lag grows while the pipeline's backlog shrinks (the soak's finding 2)."""
    before = flowing(T0, 100_000)
    before["streams"][DECISION]["groups"]["router"].update(lag=120_000, entries_read=100_000)
    before["streams"][INTENT]["groups"]["execution"].update(lag=13_500, entries_read=90_000)
    after = flowing(T0 + 5_000, 125_000)
    after["streams"][DECISION]["groups"]["router"].update(lag=80_000, entries_read=165_000)
    after["streams"][INTENT]["groups"]["execution"].update(lag=15_500, entries_read=150_000)
    verdicts = verdicts_for(before, after)
    assert verdicts["execution"]["verdict"] == "LAGGING"
    assert rm.verify_findings(before, after, verdicts, PIPELINE, True) == []


def test_a_stage_falling_behind_while_the_whole_backlog_grows_fails():
    """The same lags with the router's backlog growing too: the pipeline is not catching up."""
    before = flowing(T0, 100_000)
    before["streams"][DECISION]["groups"]["router"].update(lag=120_000, entries_read=100_000)
    before["streams"][INTENT]["groups"]["execution"].update(lag=13_500, entries_read=90_000)
    after = flowing(T0 + 5_000, 125_000)
    after["streams"][DECISION]["groups"]["router"].update(lag=121_000, entries_read=124_000)
    after["streams"][INTENT]["groups"]["execution"].update(lag=15_500, entries_read=110_000)
    verdicts = verdicts_for(before, after)
    findings = rm.verify_findings(before, after, verdicts, PIPELINE, True, lag_tolerance=5_000)
    problems = {f["stage"]: f["problem"] for f in findings}
    assert problems["router"].startswith("LAGGING: behind but reading: lag 121000 (was 120000, growing)")
    assert problems["execution"].startswith("LAGGING: behind but reading: lag 15500 (was 13500, growing)")


def test_an_unknown_lag_upstream_never_counts_as_draining():
    before = flowing(T0, 100_000)
    before["streams"][DECISION]["groups"]["router"].update(lag=None)
    before["streams"][INTENT]["groups"]["execution"].update(lag=13_500, entries_read=90_000)
    after = flowing(T0 + 5_000, 125_000)
    after["streams"][DECISION]["groups"]["router"].update(lag=None)
    after["streams"][INTENT]["groups"]["execution"].update(lag=15_500, entries_read=100_000)
    verdicts = verdicts_for(before, after)
    findings = rm.verify_findings(before, after, verdicts, PIPELINE, True)
    assert any(f["stage"] == "execution" and f["problem"].startswith("LAGGING") for f in findings)


def test_verify_findings_rejects_a_bad_tolerance():
    with pytest.raises(rm.AnsibleFilterError, match="lag_tolerance must be a number of entries >= 0, got -1"):
        rm.verify_findings(flowing(T0, 1), flowing(T0 + 1, 2), {}, PIPELINE, True, lag_tolerance=-1)


# ---------------------------------------------------------------------------------------
# The second pass: holders the verification window proved dead, reclaimed and replayed


def test_consumer_recovery_plan_and_restart_stages_keep_to_the_stages_named():
    verdicts = {
        "router": {"verdict": "STALLED", "dead_consumers": [{"name": "router-0", "pending": 3}]},
        "execution": {"verdict": "STALLED"},
    }
    snapshot = seed_incident()
    assert [p["stage"] for p in rm.consumer_recovery_plan(PIPELINE, snapshot, verdicts, 60000)] == ["router"]
    assert rm.consumer_recovery_plan(PIPELINE, snapshot, verdicts, 60000, only=["execution"]) == []
    assert rm.consumer_recovery_restart_stages(PIPELINE, snapshot, {}, verdicts, 60000) == [
        "router",
        "execution",
    ]
    assert rm.consumer_recovery_restart_stages(PIPELINE, snapshot, {}, verdicts, 60000, only=["router"]) == [
        "router"
    ]


def pass_result(consumers, changed=True):
    totals = {"moved": sum(c.get("moved", 0) for c in consumers.values()), "retired": 1}
    return {"changed": changed, "claim_to": "router-1", "consumers": consumers, "totals": totals}


def test_merge_reclaim_results_adds_a_second_pass_to_the_first():
    first = {
        "router": pass_result(
            {"router-1": {"pending_before": 3, "moved": 0, "dead_lettered": 2, "ids": ["1-0"]}}
        ),
        "execution": pass_result({"execution-0": {"moved": 4, "retired": True}}),
    }
    second = {
        "router": pass_result(
            {
                "router-1": {"pending_before": 9, "moved": 0, "dead_lettered": 1, "ids": ["2-0"]},
                "router-0": {"pending_before": 3, "moved": 3, "retired": True, "ids": ["3-0"]},
            },
            changed=False,
        )
    }
    merged = rm.merge_reclaim_results(first, second)
    router = merged["router"]
    assert router["consumers"]["router-1"]["dead_lettered"] == 3
    assert router["consumers"]["router-1"]["pending_before"] == 3
    assert router["consumers"]["router-1"]["ids"] == ["1-0", "2-0"]
    assert router["consumers"]["router-0"]["moved"] == 3
    assert router["totals"] == {"moved": 3, "retired": 2}
    assert router["changed"] is True
    assert merged["execution"] == first["execution"]
    assert rm.merge_reclaim_results(None, second) == second
    assert rm.merge_reclaim_results(first, {}) == first


def test_replay_findings_until_the_live_consumer_acknowledged_what_was_delivered_before():
    marks = rm.delivered_marks(
        info(router=group({"router-1": consumer()}, last=f"{T0}-5")), {"router": ["router-0"]}, PIPELINE
    )
    assert marks == {"router": f"{T0}-5"}
    held = info(router=group({"router-1": consumer(4, oldest=f"{T0}-2")}, last=f"{T0 + 9}-0"))
    findings = rm.replay_findings(held, PIPELINE, marks)
    assert [f["stage"] for f in findings] == ["router"]
    assert "router-1 has not replayed the entries moved to it" in findings[0]["problem"]
    at_mark = info(router=group({"router-1": consumer(1, oldest=f"{T0}-5")}, last=f"{T0 + 9}-0"))
    assert rm.replay_findings(at_mark, PIPELINE, marks) != []
    newer = info(router=group({"router-1": consumer(2, oldest=f"{T0}-6")}, last=f"{T0 + 9}-0"))
    assert rm.replay_findings(newer, PIPELINE, marks) == []
    assert rm.replay_findings(info(router=group({"router-1": consumer()})), PIPELINE, marks) == []
    gone = info(router=group({}))
    assert (
        rm.replay_findings(gone, PIPELINE, marks)[0]["problem"]
        == "live consumer router-1 is absent after the replay"
    )
    assert rm.replay_findings(held, PIPELINE, {}) == []


def test_stage_replayed_is_the_one_definition_pipeline_restart_waits_on():
    # pipeline_restart's replay_marks and the replay_findings filter share it (module_utils/progress.py).
    progress = collection_util("progress")
    router = next(s for s in PIPELINE["stages"] if s["name"] == "router")
    mark = f"{T0}-5"
    held = info(router=group({"router-1": consumer(4, oldest=f"{T0}-5")}))
    assert progress.stage_replayed(router, held, mark)["replayed"] is False
    newer = info(router=group({"router-1": consumer(1, oldest=f"{T0}-6")}))
    done = progress.stage_replayed(router, newer, mark)
    assert done == {"replayed": True, "how": f"router-1 replayed everything delivered up to {mark}"}
    assert progress.stage_replayed(router, info(router=group({"router-1": consumer()})), mark)["replayed"]
    assert progress.stage_replayed(router, info(router=group({})), mark)["replayed"] is False


def test_reclaim_results_by_stage_keeps_a_failure_that_failed_when_hid():
    runs = [
        {"_stage": {"stage": "router"}, "ansible_loop_var": "_stage", "invocation": {}, "changed": True,
         "failed": False, "totals": {"moved": 3}},
        {"_stage": {"stage": "execution"}, "ansible_loop_var": "_stage", "changed": True, "failed": False,
         "failed_when_result": False, "msg": "NOPERM this user has no permissions", "totals": {"moved": 1}},
    ]
    by_stage = rm.reclaim_results_by_stage(runs, "_stage")
    assert by_stage == {
        "router": {"changed": True, "failed": False, "totals": {"moved": 3}},
        "execution": {"changed": True, "failed": True, "msg": "NOPERM this user has no permissions",
                      "totals": {"moved": 1}},
    }
    assert rm.reclaim_results_by_stage(None, "_stage") == {}
