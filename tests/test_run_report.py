"""The run summary: what was done, what would have been, what was not; tolerant of a run that
stopped half-way."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from conftest import load_project_file

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
        "evidence_dir": f"/var/lib/quantum-remediation/evidence/{RUN_ID}",
        "evidence_before": _snapshot(10021, 6),
        "evidence_after": _snapshot(10040, 0),
        "evidence_verdicts": {"ai_engine": {"verdict": "BLOCKED"}, "router": {"verdict": "STALLED"}},
        "evidence_stop_point": {"stage": "router", "verdict": "STALLED", "reason": "r"},
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
        "service_restart_units": ["quantum-execution", "quantum-ai-strategy-router", "quantum-ai-engine"],
        "service_restart_results": [
            {"unit": "quantum-execution", "restarted": True},
            {"unit": "quantum-ai-strategy-router", "restarted": True},
            {"unit": "quantum-ai-engine", "restarted": True},
        ],
        "stream_verify_ok": True,
        "stream_verify_verdicts": {"router": {"verdict": "OK"}},
        "evidence_after_verdicts": {"router": {"verdict": "OK"}},
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
    facts["service_restart_results"] = [{"unit": u, "planned": True} for u in facts["service_restart_units"]]
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


def test_a_run_that_failed_in_preflight_reports_what_was_not_done() -> None:
    summary = run_summary(
        {
            "pipeline": PIPELINE,
            "preflight_run_id": RUN_ID,
            "failed_task": {
                "name": "Check that Redis answers",
                "msg": "Cannot connect to Redis at 127.0.0.1:6379.",
            },
            "evidence_before": None,
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
    facts.update(
        evidence_verdicts={"ai_engine": {"verdict": "OK"}, "router": {"verdict": "OK"}},
        evidence_stop_point={"stage": None, "verdict": "OK", "reason": "every stage flows"},
        consumer_recovery_results={"router": {"changed": False, "claim_to": "router-1", "totals": {},
                                              "consumers": {}}},
        governor_result={"governor": {"key": "quantum:governor", "count": 40, "limit": 200},
                         "reset": False, "results_today": 40},
        service_restart_units=[],
        service_restart_results=[],
    )
    summary = run_summary(facts)
    assert summary["outcome"] == "HEALTHY (nothing to do)"
    assert summary["units_restarted"] == []
    # The same run with one unit restarted did change the pipeline.
    facts["service_restart_results"] = [{"unit": "quantum-execution", "restarted": True}]
    assert run_summary(facts)["outcome"] == "HEALED"


def test_nothing_at_all() -> None:
    summary = run_summary({})
    assert summary["outcome"] == "PLAN ONLY (UNKNOWN)"
    assert summary["recovery"] == [] and summary["figures"] == []


def test_diagnosis_only() -> None:
    facts = _healed_facts()
    for key in (
        "consumer_recovery_results",
        "governor_result",
        "service_restart_results",
        "stream_verify_ok",
    ):
        facts.pop(key)
    facts.update(diagnosis_only=True, service_restart_units=[])
    summary = run_summary(facts)
    assert summary["outcome"] == "DIAGNOSED"
    assert summary["plan"] == []
    assert summary["changes_allowed"] is False
    assert summary["steps_not_done"] == []
