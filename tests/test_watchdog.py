"""The watchdog's ledger (quantum.redis_streams.watchdog_ledger, through the real `ansible`
command, on a real file system) and its decision (the watchdog_decision filter): the pause
switch, the circuit breaker, the record, the metrics file, and what ends a run non-zero."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
from conftest import collection_util, run_ansible_module
from project_files import load_project_file

ledger = collection_util("ledger")
watchdog = load_project_file("filter_plugins/watchdog.py")
PIPELINE = "quantum-trader"


def call(where: Path, *, check: bool = False, expect_failure: bool = False, **extra) -> dict:
    args = {"root": str(where), "pipeline": PIPELINE} | extra
    return run_ansible_module("watchdog_ledger", args, check=check, expect_failure=expect_failure)


def lines(root: Path) -> list[dict]:
    path = root / PIPELINE / "decisions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def plant(root: Path, records: list[dict]) -> None:
    (root / PIPELINE).mkdir(parents=True, exist_ok=True)
    (root / PIPELINE / "decisions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def recovery(age_s: float, run_id: str = "20261204T000000Z-0001", outcome: str = "HEALED") -> dict:
    return {"time": time.time() - age_s, "decision": "recover", "run_id": run_id, "outcome": outcome}


# --- the module ------------------------------------------------------------------------------


def test_a_first_read_finds_nothing_held_and_creates_nothing(tmp_path):
    result = call(tmp_path / "watchdog")
    assert result["hold_reason"] == ""
    assert (result["paused"], result["breaker_open"], result["recoveries"]) == (False, False, 0)
    assert result["changed"] is False
    assert not (tmp_path / "watchdog").exists()


def test_the_breaker_opens_at_max_recoveries_within_the_window(tmp_path):
    plant(
        tmp_path,
        [recovery(4000), recovery(1800, "20261204T000000Z-0002"), recovery(60, "20261204T000000Z-0003")],
    )
    below = call(tmp_path, max_recoveries=3)
    assert below["recoveries"] == 2 and not below["breaker_open"] and below["hold_reason"] == ""
    at = call(tmp_path, max_recoveries=2)
    assert at["breaker_open"] is True
    assert at["hold_reason"].startswith(
        "The circuit breaker is open: 2 automatic recoveries within the last 3600 s"
    )
    assert "watchdog_max_recoveries=2" in at["hold_reason"] and "20261204T000000Z-0003" in at["hold_reason"]
    # Decisions other than `recover` never count.
    plant(
        tmp_path,
        [{"time": time.time() - 5, "decision": d} for d in ("nothing_to_do", "paused", "mode_refused")],
    )
    assert call(tmp_path, max_recoveries=1)["breaker_open"] is False


def test_zero_max_recoveries_never_heals(tmp_path):
    assert call(tmp_path, max_recoveries=0)["breaker_open"] is True


def test_the_pause_switch_as_a_file_and_as_data(tmp_path):
    (tmp_path / PIPELINE).mkdir()
    (tmp_path / PIPELINE / "paused").write_text("alice: broker maintenance until 14:00\nsecond line\n")
    by_file = call(tmp_path)
    assert by_file["paused"] is True and by_file["breaker_open"] is False
    assert by_file["paused_by"] == str(tmp_path / PIPELINE / "paused")
    assert by_file["pause_note"] == "alice: broker maintenance until 14:00"
    assert "paused by" in by_file["hold_reason"] and "broker maintenance" in by_file["hold_reason"]
    (tmp_path / PIPELINE / "paused").unlink()
    by_data = call(tmp_path, paused=True)
    assert by_data["paused_by"] == "watchdog_paused" and by_data["hold_reason"]


def test_record_appends_one_line_and_writes_the_metrics(tmp_path):
    textfile_dir = tmp_path / "textfile"
    textfile_dir.mkdir()
    plant(tmp_path, [recovery(30)])
    record = {
        "run_id": "20261204T010000Z-beef",
        "decision": "recover",
        "outcome": "NOT HEALED",
        "entries_moved": 6,
        "consumers_retired": 1,
        "units_restarted": 3,
        "duration_s": 19,
    }
    result = call(tmp_path, record=record, textfile_dir=str(textfile_dir))
    assert result["changed"] is True
    written = lines(tmp_path)
    assert len(written) == 2 and written[-1]["run_id"] == "20261204T010000Z-beef"
    assert written[-1]["pipeline"] == PIPELINE and abs(written[-1]["time"] - time.time()) < 60
    assert result["recoveries"] == 2
    path = textfile_dir / f"quantum_remediation_{PIPELINE}.prom"
    assert result["textfile"] == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert not [p for p in textfile_dir.iterdir() if p.name.startswith(".")]  # no temporary file left
    text = path.read_text()
    assert f'quantum_remediation_recoveries_last_hour{{pipeline="{PIPELINE}"}} 2\n' in text
    assert f'quantum_remediation_last_recovery_success{{pipeline="{PIPELINE}"}} 0\n' in text
    assert f'quantum_remediation_last_recovery_entries_moved{{pipeline="{PIPELINE}"}} 6\n' in text
    assert (
        f'quantum_remediation_last_recovery_info{{pipeline="{PIPELINE}",outcome="NOT HEALED",'
        f'run_id="20261204T010000Z-beef"}} 1\n'
    ) in text
    assert (
        f'quantum_remediation_watchdog_last_decision{{pipeline="{PIPELINE}",decision="recover"}} 1\n' in text
    )
    assert "# TYPE quantum_remediation_breaker_open gauge\n" in text


def test_check_mode_records_nothing(tmp_path):
    result = call(tmp_path, check=True, record={"run_id": "x", "decision": "nothing_to_do"})
    assert result["changed"] is False and result["recorded"]["decision"] == "nothing_to_do"
    assert not tmp_path.joinpath(PIPELINE).exists()


def test_old_records_are_dropped_but_the_last_recovery_is_kept(tmp_path):
    old_recovery = recovery(90000, "20261203T000000Z-0old")
    plant(tmp_path, [old_recovery, {"time": time.time() - 80000, "decision": "nothing_to_do"}])
    call(tmp_path, retention_s=3600, record={"run_id": "20261204T020000Z-0new", "decision": "nothing_to_do"})
    kept = lines(tmp_path)
    assert [r["run_id"] for r in kept] == ["20261203T000000Z-0old", "20261204T020000Z-0new"]


def test_a_torn_line_is_skipped_and_counted(tmp_path):
    (tmp_path / PIPELINE).mkdir()
    (tmp_path / PIPELINE / "decisions.jsonl").write_text(json.dumps(recovery(10)) + '\n{"time": 1, "deci\n')
    result = call(tmp_path)
    assert result["bad_lines"] == 1 and result["recoveries"] == 1


@pytest.mark.parametrize(
    ("extra", "sentence"),
    [
        ({"pipeline": "../etc"}, "pipeline '../etc' must be letters, digits"),
        ({"pipeline": ".."}, "pipeline '..' must be letters"),
        ({"root": "relative/dir"}, "root 'relative/dir' must be an absolute path (watchdog_state_dir)"),
        ({"window_s": 0}, "window_s must be at least 1"),
        ({"record": {"decision": "reboot"}}, "record.decision must be one of nothing_to_do, recover"),
    ],
)
def test_bad_input_is_one_sentence_and_writes_nothing(tmp_path, extra, sentence):
    before = sorted(os.listdir(tmp_path))
    result = call(tmp_path, expect_failure=True, **extra)
    assert sentence in result["msg"]
    assert sorted(os.listdir(tmp_path)) == before


def test_metrics_label_values_are_escaped():
    text = ledger.run_metrics('a"b', [recovery(5, 'x\\y\n"z')], time.time(), 3600, False, "")
    assert 'pipeline="a\\"b"' in text and 'run_id="x\\\\y\\n\\"z"' in text


# --- the decision ----------------------------------------------------------------------------

HEALTHY = {
    "run_id": "r",
    "mode": "TESTNET",
    "changes_allowed": True,
    "outcome": "HEALTHY (nothing to do)",
    "stop_point": {"stage": "router", "verdict": "OK"},
    "failed_task": None,
}
STALLED = {
    "run_id": "r",
    "mode": "TESTNET",
    "changes_allowed": True,
    "outcome": "HEALED",
    "stop_point": {"stage": "router", "verdict": "STALLED"},
    "failed_task": None,
    "recovery": [{"moved": 3, "retired": ["router-0"]}, {"moved": 0, "retired": []}],
    "units_restarted": ["a", "b", "c"],
    "duration_s": 12,
}


def test_a_healthy_pipeline_ends_well_whatever_the_mode_or_hold():
    for summary in (
        HEALTHY,
        HEALTHY | {"changes_allowed": False, "mode": "LIVE", "outcome": "PLAN ONLY (LIVE)"},
    ):
        decided = watchdog.watchdog_decision(summary, {"hold_reason": "The watchdog is paused"})
        assert decided["decision"] == "nothing_to_do" and decided["ending"] == ""


def test_a_governor_at_its_limit_is_nothing_to_do_and_says_so():
    held = "every stage is OK but ai_engine, held by its governor at the daily limit (the day's policy)"
    summary = HEALTHY | {"stop_point": {"stage": None, "verdict": "OK", "reason": held}}
    decided = watchdog.watchdog_decision(summary, {"hold_reason": ""})
    # Not a recovery: the circuit breaker does not count it, and the run ends well.
    assert decided["decision"] == "nothing_to_do" and decided["ending"] == ""
    assert decided["reason"] == f"E{held[1:]}: nothing to heal."


def test_a_healed_recovery_is_recorded_with_its_counts():
    decided = watchdog.watchdog_decision(STALLED, {"hold_reason": ""})
    assert decided["decision"] == "recover" and decided["ending"] == ""
    record = decided["record"]
    assert (record["entries_moved"], record["consumers_retired"], record["units_restarted"]) == (3, 1, 3)


def test_a_recovery_that_did_not_heal_ends_non_zero_and_still_counts():
    summary = STALLED | {"outcome": "FAILED", "failed_task": {"name": "restart", "msg": "unit x failed"}}
    decided = watchdog.watchdog_decision(summary, {})
    assert decided["decision"] == "recover"
    assert decided["ending"].startswith(
        "The watchdog's recovery did not heal the pipeline (router STALLED): FAILED"
    )


@pytest.mark.parametrize(
    ("gate", "decision", "ending"),
    [
        (
            {
                "hold_reason": "The watchdog is paused by watchdog_paused: automatic healing is off",
                "paused": True,
            },
            "paused",
            "The watchdog is paused by watchdog_paused",
        ),
        (
            {"hold_reason": "The circuit breaker is open: 3 automatic recoveries", "breaker_open": True},
            "breaker_open",
            "The circuit breaker is open",
        ),
        ({}, "mode_refused", "Mode is LIVE: the pipeline needs healing (router STALLED)"),
    ],
)
def test_a_stall_held_back_ends_non_zero(gate, decision, ending):
    summary = STALLED | {
        "changes_allowed": False,
        "mode": "LIVE" if not gate else "TESTNET",
        "outcome": "PLAN ONLY",
    }
    decided = watchdog.watchdog_decision(summary, gate)
    assert decided["decision"] == decision
    assert decided["ending"].startswith(ending)
    # It only planned the recovery: the ledger records nothing moved or restarted.
    record = decided["record"]
    assert (record["entries_moved"], record["consumers_retired"], record["units_restarted"]) == (0, 0, 0)


def test_check_mode_is_the_plan_and_ends_well():
    summary = STALLED | {"changes_allowed": False, "outcome": "PLAN (check mode)"}
    decided = watchdog.watchdog_decision(summary, {}, {}, True)
    assert (decided["decision"], decided["ending"]) == ("check_mode", "")


def test_a_run_stopped_before_its_diagnosis_is_a_failure():
    decided = watchdog.watchdog_decision(
        {"changes_allowed": True, "stop_point": None, "failed_task": {"msg": "Redis refused the password."}},
        {},
    )
    assert decided["decision"] == "failed" and "Redis refused the password." in decided["ending"]
    assert watchdog.watchdog_decision(None, {}, {"msg": "boom"})["ending"].endswith("boom")


def test_every_decision_is_one_the_ledger_accepts():
    assert set(ledger.DECISIONS) >= {
        "nothing_to_do",
        "recover",
        "paused",
        "breaker_open",
        "mode_refused",
        "check_mode",
        "failed",
    }
