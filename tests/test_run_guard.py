"""The run's guards: the run lock decisions and the run id's shape."""

from __future__ import annotations

from conftest import load_project_file

run_guard = load_project_file("filter_plugins/run_guard.py")
run_lock_decision = run_guard.run_lock_decision
is_run_id = run_guard.is_run_id


def test_lock_free_ours_stale_held() -> None:
    run = "20260117T101734Z-ab12"
    assert run_lock_decision(None, False, None, 3600, run)["action"] == "free"
    assert run_lock_decision({"run_id": run}, True, 5, 3600, run)["action"] == "ours"
    stale = run_lock_decision({"run_id": "20260117T081734Z-0000"}, True, 7200, 3600, run)
    assert stale["action"] == "stale" and "20260117T081734Z-0000" in stale["message"]
    held = run_lock_decision({"run_id": "20260117T101700Z-cafe"}, True, 34, 3600, run)
    assert held["action"] == "held"
    assert "20260117T101700Z-cafe" in held["message"]
    # A lock whose owner file is not written yet is held by a run we cannot name.
    unnamed = run_lock_decision(None, True, 1, 3600, run)
    assert unnamed["action"] == "held" and "unknown run" in unnamed["message"]


def test_run_id_shape() -> None:
    assert is_run_id("20260117T101734Z-ab12")
    assert not is_run_id("../../etc")
    assert not is_run_id("20260117T101734Z-ab12/../x")
    assert not is_run_id(None)
