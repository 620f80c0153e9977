"""The run summary: what was done, what would have been, what was not; tolerant of a run that
stopped half-way."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from conftest import PROJECT_ROOT, load_project_file

run_report = load_project_file("filter_plugins/run_report.py")
run_summary = run_report.run_summary

PIPELINE = {
    "name": "quantum-trader",
    "redis": {"host": "127.0.0.1", "port": 6379, "password": "hunter2"},
    "governor": {"key": "quantum:governor"},
    "stages": [
        {"name": "ai_engine", "unit": "quantum-ai-engine", "output_stream": "d", "governed": True},
        {
            "name": "router",
            "unit": "quantum-ai-strategy-router",
            "input_stream": "d",
            "group": "router",
            "consumer": "router-1",
            "output_stream": "i",
        },
        {
            "name": "execution",
            "unit": "quantum-execution",
            "input_stream": "i",
            "group": "execution",
            "consumer": "execution-1",
            "output_stream": "r",
        },
    ],
}
RUN_ID = "20260117T101734Z-ab12"


def _snapshot(length: int, pending: int) -> dict:
    group = {
        "pending": pending,
        "lag": 0,
        "consumers": {"router-1": {"pending": pending, "idle_ms": 11776068}},
    }
    return {
        "streams": {
            "d": {"length": length, "groups": {"router": group}},
            "i": {"length": 10002, "groups": {"execution": {"pending": 0, "lag": 0, "consumers": {}}}},
            "r": {"length": 10005},
        }
    }


def _healed_facts() -> dict:
    return {
        "inventory_hostname": "qt-lab",
        "pipeline": PIPELINE,
        "preflight_run_id": RUN_ID,
        "preflight_mode": "TESTNET",
        "preflight_mode_reason": "BINANCE_TESTNET=true in /etc/quantum/testnet.env (line 1)",
        "preflight_changes_allowed": True,
        # The evidence role's one result: each phase's judgement, and the claimed directory.
        "evidence_result": {
            "dir": f"/var/lib/quantum-remediation/evidence/{RUN_ID}",
            "before": {
                "t0": _snapshot(10021, 6),
                "t1": _snapshot(10021, 6),
                "verdicts": {"ai_engine": {"verdict": "BLOCKED"}, "router": {"verdict": "STALLED"}},
                "stop_point": {"stage": "router", "verdict": "STALLED", "reason": "r"},
            },
            "after": {"t0": _snapshot(10040, 0), "verdicts": {"router": {"verdict": "OK"}}},
        },
        "unit_backup_files": [{"unit": "quantum-execution", "path": "/etc/systemd/system/x.service"}],
        "consumer_recovery_results": {
            "router": {
                "changed": True,
                "claim_to": "router-1",
                "totals": {"moved": 3, "dead_lettered": 1, "retired": 1},
                "consumers": {
                    "router-1": {"pending_before": 3, "dead_lettered": 1},
                    "router-tmp": {"pending_before": 3, "moved": 3, "retired": True},
                },
            },
            "execution": {"skipped": True},
        },
        "governor_result": {
            "governor": {"key": "quantum:governor", "count": 10000, "limit": 200},
            "reset": True,
            "before": {"count": 10000},
            "after": {"count": 5},
            "results_today": 5,
        },
        "service_restart_result": {
            "units": ["quantum-execution", "quantum-ai-strategy-router", "quantum-ai-engine"],
            "results": [
                {"unit": "quantum-execution", "restarted": True},
                {"unit": "quantum-ai-strategy-router", "restarted": True},
                {"unit": "quantum-ai-engine", "restarted": True},
            ],
        },
        "stream_verify_ok": True,
        "stream_verify_verdicts": {"router": {"verdict": "OK"}},
        "now": datetime(2026, 1, 17, 10, 17, 34, tzinfo=UTC).timestamp() + 600,
    }


def test_healed_run() -> None:
    summary = run_summary(_healed_facts())
    assert summary["outcome"] == "HEALED"
    router = next(s for s in summary["recovery"] if s["stage"] == "router")
    assert router["moved"] == 3 and router["dead_lettered"] == 1 and router["retired"] == ["router-tmp"]
    # 3 moved to router-1 plus the 2 of its own 3 not dead-lettered: replayed at its restart.
    assert router["replayed"] == 5
    assert summary["governor"]["reset"] is True
    assert (summary["governor"]["count_before"], summary["governor"]["count_after"]) == (10000, 5)
    assert summary["units_restarted"][0] == "quantum-execution"
    assert (
        summary["rollback_command"] == f"ansible-playbook playbooks/rollback.yml -e rollback_run_id={RUN_ID}"
    )
    assert summary["duration_s"] == 600
    assert {"what": "router pending", "before": 6, "after": 0} in summary["figures"]
    assert summary["plan"] == []
    assert summary["steps_not_done"] == []
    assert "hunter2" not in json.dumps(summary)


def test_live_run_prints_the_plan_and_changes_nothing() -> None:
    facts = _healed_facts()
    facts.update(preflight_mode="LIVE", preflight_changes_allowed=False, stream_verify_ok=None)
    restart = facts["service_restart_result"]
    restart["results"] = [{"unit": u, "planned": True} for u in restart["units"]]
    facts["consumer_recovery_lines"] = ["router: 3 entries moved to router-1"]
    summary = run_summary(facts)
    assert summary["outcome"] == "PLAN ONLY (LIVE)"
    assert summary["units_restarted"] == []
    assert summary["governor"]["reset"] is False and summary["governor"]["reset_planned"] is True
    assert summary["plan"] == [
        "consumers: router: 3 entries moved to router-1",
        "governor: reset quantum:governor count 10000 -> 5 (limit 200)",
        "restart, downstream first: quantum-execution, quantum-ai-strategy-router, quantum-ai-engine",
    ]
    router = next(s for s in summary["recovery"] if s["stage"] == "router")
    assert router["replayed"] == 0 and router["waiting_for_restart"] == 5
    # Nothing was changed: there is nothing to roll back.
    assert summary["rollback_command"] is None
    # Nor to verify: recover.yml skips verification and the after phase, which are not needed.
    facts.pop("stream_verify_verdicts")
    facts["evidence_result"].pop("after")
    summary = run_summary(facts)
    assert summary["steps_not_needed"] == ["stream verification", "evidence after"]
    assert summary["steps_not_needed_because"] == "nothing was changed: mode LIVE"
    assert summary["steps_not_done"] == []


def test_a_run_that_failed_in_preflight_reports_what_was_not_done() -> None:
    summary = run_summary(
        {
            "pipeline": PIPELINE,
            "preflight_run_id": RUN_ID,
            "failed_task": {
                "name": "Check that Redis answers",
                "msg": "Cannot connect to Redis at 127.0.0.1:6379.",
            },
            "consumer_recovery_results": None,
        }
    )
    assert summary["outcome"] == "FAILED"
    assert summary["mode"] == "UNKNOWN"
    assert summary["steps_done"] == []
    assert "consumer recovery" in summary["steps_not_done"]
    assert summary["rollback_command"] is None
    assert summary["figures"][0] == {"what": "d length", "before": None, "after": None}


def test_a_step_that_ran_and_found_nothing_is_done() -> None:
    facts = _healed_facts()
    facts["consumer_recovery_results"] = {}
    assert "consumer recovery" in run_summary(facts)["steps_done"]


def test_a_healthy_pipeline_is_healthy_not_healed() -> None:
    facts = _healed_facts()
    facts["evidence_result"]["before"].update(
        verdicts={"ai_engine": {"verdict": "OK"}, "router": {"verdict": "OK"}},
        stop_point={"stage": None, "verdict": "OK", "reason": "every stage flows"},
    )
    facts.update(
        consumer_recovery_results={"router": {"changed": False, "claim_to": "router-1", "totals": {},
                                              "consumers": {}}},
        governor_result={"governor": {"key": "quantum:governor", "count": 40, "limit": 200},
                         "reset": False, "results_today": 40},
        service_restart_result={"units": [], "results": []},
    )
    summary = run_summary(facts)
    assert summary["outcome"] == "HEALTHY (nothing to do)"
    assert summary["units_restarted"] == []
    # The same run with one unit restarted did change the pipeline.
    facts["service_restart_result"]["results"] = [{"unit": "quantum-execution", "restarted": True}]
    assert run_summary(facts)["outcome"] == "HEALED"


def test_a_healthy_diagnosis_skips_the_rest_as_not_needed() -> None:
    """recover.yml runs nothing after the diagnosis when every stage was OK: those steps are
    not needed (not "not done"), and the run is healthy without a verification."""
    facts = _healed_facts()
    for fact in ("unit_backup_files", "consumer_recovery_results", "governor_result",
                 "service_restart_result", "stream_verify_ok", "stream_verify_verdicts"):
        facts.pop(fact, None)
    facts["evidence_result"].pop("after")
    facts["evidence_result"]["before"].update(
        verdicts={"ai_engine": {"verdict": "OK"}, "router": {"verdict": "OK"}},
        stop_point={"stage": None, "verdict": "OK", "reason": "every stage is OK"},
    )  # fmt: skip
    summary = run_summary(facts)
    assert summary["outcome"] == "HEALTHY (nothing to do)"
    assert summary["steps_not_done"] == []
    assert summary["steps_not_needed"] == [
        "unit backup", "consumer recovery", "governor", "service restart",
        "stream verification", "evidence after",
    ]  # fmt: skip
    assert summary["verification"]["ok"] is None and summary["rollback_command"] is None
    # A stalled diagnosis whose later steps did not run is incomplete, not healthy.
    stalled = {"stage": "router", "verdict": "STALLED", "reason": "stuck"}
    facts["evidence_result"]["before"]["stop_point"] = stalled
    summary = run_summary(facts)
    assert summary["outcome"] == "INCOMPLETE"
    assert "stream verification" in summary["steps_not_done"] and summary["steps_not_needed"] == []


def test_a_governor_at_its_limit_alone_is_nothing_to_do() -> None:
    """The stop point passes over a stage held by its governor exactly at the limit (policy):
    the run is healthy, its later steps not needed, and the report says why."""
    facts = _healed_facts()
    for fact in ("unit_backup_files", "consumer_recovery_results", "governor_result",
                 "service_restart_result", "stream_verify_ok", "stream_verify_verdicts"):
        facts.pop(fact, None)
    facts["evidence_result"].pop("after")
    held = "every stage is OK but ai_engine, held by its governor at the daily limit (policy)"
    facts["evidence_result"]["before"].update(
        verdicts={"ai_engine": {"verdict": "BLOCKED"}, "router": {"verdict": "OK"}},
        stop_point={"stage": None, "verdict": "OK", "reason": held},
    )  # fmt: skip
    summary = run_summary(facts)
    assert summary["outcome"] == "HEALTHY (nothing to do)"
    assert summary["steps_not_done"] == []
    assert summary["steps_not_needed_because"] == f"nothing to heal: {held} before"
    assert summary["verdicts_before"]["ai_engine"] == "BLOCKED"


def test_nothing_at_all() -> None:
    summary = run_summary({})
    assert summary["outcome"] == "PLAN ONLY (UNKNOWN)"
    assert summary["recovery"] == [] and summary["figures"] == []


def test_diagnosis_only() -> None:
    facts = _healed_facts()
    for key in (
        "consumer_recovery_results",
        "governor_result",
        "stream_verify_ok",
    ):
        facts.pop(key)
    facts.update(diagnosis_only=True, service_restart_result={"units": []})
    summary = run_summary(facts)
    assert summary["outcome"] == "DIAGNOSED"
    assert summary["plan"] == []
    assert summary["changes_allowed"] is False
    assert summary["steps_not_done"] == []


# --- replayed entries, partial reclaims, and what the report files say ----------------------

TEMPLATES = PROJECT_ROOT / "roles/report/templates"
T1 = 1_768_644_000_000  # server time at the end of the evidence window


def _consumer(pending: int, idle_ms: int) -> dict:
    """A consumer as redis_stream_info reports it."""
    return {
        "pending": pending,
        "idle_ms": idle_ms,
        "inactive_ms": None,
        "oldest_pending_id": f"{T1 - idle_ms}-0" if pending else None,
        "oldest_pending_age_ms": idle_ms if pending else None,
        "oldest_pending_idle_ms": idle_ms if pending else None,
        "max_delivery_count": 1 if pending else 0,
        "max_delivery_count_exact": True,
    }


def _info(time_ms: int, router: dict, execution: dict, decisions: int = 10021) -> dict:
    """A redis_stream_info result for PIPELINE's streams (d -> i -> r)."""

    def group(consumers: dict, entries_read: int) -> dict:
        return {
            "exists": True,
            "consumer_count": len(consumers),
            "pending": sum(c["pending"] for c in consumers.values()),
            "last_delivered_id": f"{T1 - 10_000}-0",
            "entries_read": entries_read,
            "lag": 0,
            "consumers": consumers,
        }

    def stream(length: int, groups: dict) -> dict:
        return {"exists": True, "length": length, "entries_added": length, "groups": groups}

    return {
        "changed": False,
        "server": {"version": "7.0.15", "time_ms": time_ms},
        "streams": {
            "d": stream(decisions, {"router": group(router, decisions)}),
            "i": stream(10002, {"execution": group(execution, 10002)}),
            "r": stream(10005, {}),
        },
        "missing": [],
    }


def _incident_facts(execution_pending: int = 0) -> dict:
    """The seed incident healed: router-1 hung holding 3, the orphan router-0 holding 3 (moved
    to router-1 and retired); execution-1 holding `execution_pending` of its own (the trial:
    execution was in no reclaim plan, its PEL replayed by its restart)."""
    router = {"router-0": _consumer(3, 11_000_000), "router-1": _consumer(3, 11_776_068)}
    execution = {"execution-1": _consumer(execution_pending, 9_000_000)}
    window = 60_000
    facts = _healed_facts()
    facts["evidence_result"]["before"].update(
        t0=_info(T1 - window, router, execution),
        t1=_info(T1, router, execution),
        verdicts={"ai_engine": {"verdict": "BLOCKED"}, "router": {"verdict": "STALLED"},
                  "execution": {"verdict": "STALLED" if execution_pending else "OK"}},
    )
    facts.update(
        consumer_recovery_results={
            "router": {
                "changed": True,
                "claim_to": "router-1",
                "consumers": {
                    "router-0": {"pending_before": 3, "idle_ms": 11_000_000, "moved": 3, "dead_lettered": 0,
                                 "deleted": 0, "retired": True, "retire_skipped_reason": None,
                                 "skipped_reason": None, "ids": [], "deleted_ids": []},
                },
                "totals": {"moved": 3, "dead_lettered": 0, "deleted": 0, "retired": 1,
                           "consumers_selected": 1},
                "stats": {"calls": 3, "longest_call_ms": 1, "fast_path_batches": 1},
            },
        },
    )
    return facts


def render(template: str, summary: dict, **extra) -> str:
    """A report template as the report role renders it (Ansible's template lookup: trim_blocks)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), trim_blocks=True)
    env.filters["bool"] = bool
    context = {
        "report_summary": summary,
        "pipeline": PIPELINE,
        "ansible_check_mode": False,
        "report_dir": f"/var/lib/quantum-remediation/evidence/{RUN_ID}/report",
        "report_fetch": False,
        "report_fetch_dir": "",
        **extra,
    }
    return env.get_template(template).render(context)


def test_incident_replays_the_live_consumers_own_entries_and_the_moved_ones() -> None:
    summary = run_summary(_incident_facts())
    router = next(s for s in summary["recovery"] if s["stage"] == "router")
    # router-1's own 3 (not in the reclaim result: no dead-letter policy lists it) + 3 moved.
    assert (router["live_pending_before"], router["moved"], router["replayed"]) == (3, 3, 6)
    assert router["retired"] == ["router-0"] and router["restarted"] is True
    execution = next(s for s in summary["recovery"] if s["stage"] == "execution")
    assert (execution["ran"], execution["restarted"], execution["replayed"]) == (False, True, 0)
    assert summary["replayed_total"] == 6
    report = render("REPORT.md.j2", summary)
    assert (
        "- **router**: 3 entries moved to `router-1`, 0 dead-lettered, dead consumers retired: router-0; "
        "6 replayed by its restart.\n"
    ) in report
    assert (
        "- **execution**: no reclaim (nothing stuck, or the step did not run); 0 replayed by its restart.\n"
    ) in report
    assert "- **Replayed by the restarts**: 6 entries in all.\n" in report
    console = render("summary.txt.j2", summary)
    assert "router: 3 moved to router-1, 6 replayed, 0 dead-lettered, retired router-0\n" in console
    assert "execution:" not in console
    assert "Replayed by the restarts: 6\n" in console


def test_a_stage_outside_the_reclaim_plan_counts_its_live_consumers_pel() -> None:
    """The trial: 50 reported while the services replayed 55. execution was in no reclaim
    plan, but its live consumer held 5 of its own that its restart replayed."""
    summary = run_summary(_incident_facts(execution_pending=5))
    execution = next(s for s in summary["recovery"] if s["stage"] == "execution")
    assert (execution["ran"], execution["live_pending_before"], execution["replayed"]) == (False, 5, 5)
    assert execution["waiting_for_restart"] == 0
    assert summary["replayed_total"] == 11
    assert json.loads(json.dumps(summary))["recovery"][1]["replayed"] == 5  # summary.json
    report = render("REPORT.md.j2", summary)
    assert (
        "- **execution**: no dead consumer to reclaim; 5 entries of `execution-1`'s own PEL replayed by "
        "its restart.\n"
    ) in report
    assert "- **Replayed by the restarts**: 11 entries in all.\n" in report
    console = render("summary.txt.j2", summary)
    assert "execution: no dead consumer, 5 replayed from execution-1's own PEL\n" in console
    assert "Replayed by the restarts: 11\n" in console


def test_the_pel_before_the_reclaim_comes_from_the_best_source() -> None:
    facts = _incident_facts(execution_pending=5)
    # Without the end-of-window snapshot, the window's start is read.
    facts["evidence_result"]["before"]["t1"] = None
    execution = next(s for s in run_summary(facts)["recovery"] if s["stage"] == "execution")
    assert execution["replayed"] == 5
    # The module's own count, when the live consumer was listed (a dead-letter policy), wins;
    # what it dead-lettered from it is not replayed.
    facts["consumer_recovery_results"]["execution"] = {
        "changed": True,
        "claim_to": "execution-1",
        "consumers": {"execution-1": {"pending_before": 7, "moved": 0, "dead_lettered": 2, "retired": False}},
        "totals": {"moved": 0, "dead_lettered": 2, "deleted": 0, "retired": 0, "consumers_selected": 1},
    }
    execution = next(s for s in run_summary(facts)["recovery"] if s["stage"] == "execution")
    assert (execution["live_pending_before"], execution["dead_lettered"], execution["replayed"]) == (7, 2, 5)
    # Not restarted: nothing replayed, and a stage the reclaim did not touch waits for nothing.
    facts["service_restart_result"]["results"] = []
    summary = run_summary(facts)
    by_stage = {s["stage"]: s for s in summary["recovery"]}
    assert by_stage["execution"]["replayed"] == 0 and by_stage["execution"]["waiting_for_restart"] == 5
    assert by_stage["router"]["waiting_for_restart"] == 6
    assert summary["replayed_total"] == 0


PARTIAL = (
    "Moved 3 entries of router-0 to router-1 and retired router-0, then Redis refused XCLAIM on "
    "router-tmp: NOPERM this user has no permissions to run the 'xclaim' command."
)


def _partial_failure_facts(failed_msg: str = "One or more items failed") -> dict:
    facts = _incident_facts()
    router = facts["consumer_recovery_results"]["router"]
    router["consumers"]["router-tmp"] = {"pending_before": 2, "idle_ms": 9_000_000, "moved": 0,
                                         "dead_lettered": 0, "deleted": 0, "retired": False}
    router.update(failed=True, msg=PARTIAL)
    router["totals"]["consumers_selected"] = 2
    facts.update(
        failed_task={"name": "Reclaim dead consumers of each stage", "msg": failed_msg},
        service_restart_result={"units": [], "results": None},
        stream_verify_ok=None,
        stream_verify_verdicts=None,
        governor_result=None,
    )
    facts["evidence_result"].pop("after")
    return facts


def test_a_partial_reclaim_is_reported_as_it_happened() -> None:
    summary = run_summary(_partial_failure_facts())
    assert summary["outcome"] == "FAILED"
    router = next(s for s in summary["recovery"] if s["stage"] == "router")
    assert router["failed"] is True and router["message"] == PARTIAL
    assert (router["moved"], router["dead_lettered"], router["retired"]) == (3, 0, ["router-0"])
    assert (router["replayed"], router["waiting_for_restart"]) == (0, 6)
    # The loop's generic sentence gives way to the module's own.
    assert summary["failed_task"] == {
        "name": "Reclaim dead consumers of each stage",
        "msg": f"router: {PARTIAL}",
    }
    # It changed the pipeline: never "HEALTHY"; and the rollback command is offered.
    assert summary["rollback_command"] is not None

    for text in (render("REPORT.md.j2", summary), render("summary.txt.j2", summary), json.dumps(summary)):
        assert "One or more items failed" not in text
        assert PARTIAL in text
    report = render("REPORT.md.j2", summary)
    assert f'> **The run stopped at "Reclaim dead consumers of each stage":** router: {PARTIAL}\n' in report
    assert (
        "- **router**: reclaim **failed** after 3 entries moved to `router-1`, 0 dead-lettered, dead "
        f"consumers retired: router-0; 6 wait on `router-1` for a restart. The module said: {PARTIAL}\n"
    ) in report
    assert "no reclaim" not in report.split("## What was done")[1].split("**execution**")[0]
    console = render("summary.txt.j2", summary)
    assert (
        f"router: reclaim FAILED after 3 moved to router-1, 0 dead-lettered, retired router-0: {PARTIAL}\n"
    ) in console
    assert f'Stopped at "Reclaim dead consumers of each stage": router: {PARTIAL}\n' in console


def test_the_failure_reason_keeps_a_specific_sentence_and_what_follows_the_generic_one() -> None:
    # Already specific (the consumer_recovery role's own fail): kept as it is.
    own = f"router: {PARTIAL}"
    assert run_summary(_partial_failure_facts(own))["failed_task"]["msg"] == own
    # The report failed too (recover.yml appends it): the tail is kept.
    tail = "One or more items failed The report failed too: disk full."
    assert run_summary(_partial_failure_facts(tail))["failed_task"]["msg"] == (
        f"router: {PARTIAL} The report failed too: disk full."
    )
    # No stage sentence to offer: the task's message stays.
    facts = _partial_failure_facts()
    facts["consumer_recovery_results"] = {}
    assert run_summary(facts)["failed_task"]["msg"] == "One or more items failed"


# ---------------------------------------------------------------------------------------
# run_ending: the sentence recover.yml and rollback.yml end with


def test_run_ending_tells_the_failure_the_summary_told_first():
    failed = {"name": "Restart the units", "msg": "raw module message"}
    summary = {"failed_task": {"msg": "Unit x did not recover within 60 s. "}}
    ending = run_report.run_ending(failed, summary, RUN_ID, "TESTNET", "r", True)
    assert ending == f'The run {RUN_ID} stopped at "Restart the units": Unit x did not recover within 60 s.'
    ending = run_report.run_ending(failed, None, None)
    assert ending == 'The run stopped at "Restart the units": raw module message'
    assert run_report.run_ending({"name": ""}, None).endswith('"a step": see the task output above')


def test_run_ending_refuses_a_run_the_mode_gate_kept_from_changing():
    ending = run_report.run_ending({}, None, RUN_ID, "LIVE", "BINANCE_TESTNET=false", False)
    assert ending == (
        "Mode is LIVE (BINANCE_TESTNET=false): nothing was changed; "
        "the plan above is what a TESTNET run would do."
    )
    assert run_report.run_ending(None, None).startswith("Mode is UNKNOWN (the mode was not read)")


def test_run_ending_is_empty_when_the_run_ends_well():
    assert run_report.run_ending({}, {"failed_task": None}, RUN_ID, "TESTNET", "r", True) == ""
