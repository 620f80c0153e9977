"""The preflight role's run lock, through the real `ansible-playbook` on localhost: one
pipeline_snapshot reads the mode file, Redis (a real redis-server) and the units (a stand-in
`systemctl` on PATH: this machine's PID 1 is not systemd) and takes the lock in the same call;
the role's result, preflight_result, holds it (`lock`), the assert stops the run with run_lock's
sentence when another run holds the lock, and the release is recover.yml's own task."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import yaml
from conftest import PROJECT_ROOT, free_loopback_port
from project_files import load_project_file

OTHER = "20261203T115900Z-cafe"
DECISIONS, INTENTS = "quantum:stream:ai.decision", "quantum:stream:trade.intent"
UNITS = ["quantum-ai-engine", "quantum-ai-strategy-router"]
# The role's task names.
READ = (
    "Read the mode file and the pipeline on the target (Python, Redis client, units, Redis), "
    "take the run lock"
)
SAY = (
    "Say what the mode gate decided, or stop when the target cannot run the pipeline or another "
    "run holds the lock"
)
controller = load_project_file(
    "collections/ansible_collections/quantum/redis_streams/plugins/plugin_utils/controller.py"
)
# `systemctl show ... -- UNIT...`: one loaded, running block per unit, except those named in
# QT_NOT_FOUND (systemd's answer for a unit it does not know).
SYSTEMCTL = """#!/bin/sh
while [ "$1" != "--" ]; do shift; done
shift
for unit in "$@"; do
  load=loaded
  case " $QT_NOT_FOUND " in *" $unit "*) load=not-found ;; esac
  printf 'Id=%s.service\\nLoadState=%s\\nActiveState=active\\nSubState=running\\nMainPID=0\\n' "$unit" "$load"
  printf 'NRestarts=0\\nActiveEnterTimestampMonotonic=0\\n\\n'
done
"""


def pipeline(connection: dict, mode_file: Path) -> dict:
    return {
        "name": "quantum-trader",
        "redis": connection,
        "mode_file": str(mode_file),
        "mode_variable": "BINANCE_TESTNET",
        "stages": [
            {"name": "ai_engine", "unit": UNITS[0], "output_stream": DECISIONS},
            {"name": "router", "unit": UNITS[1], "input_stream": DECISIONS,
             "group": "router", "consumer": "router-1", "output_stream": INTENTS},
        ],
    }  # fmt: skip


@pytest.fixture
def healthy(redis_client: redis.Redis) -> redis.Redis:
    redis_client.xadd(DECISIONS, {"n": 1})
    redis_client.xgroup_create(DECISIONS, "router", id="0")
    redis_client.xadd(INTENTS, {"n": 1})
    return redis_client


def run_preflight(
    tmp_path: Path,
    connection: dict,
    *,
    mode: str = "true",
    check: bool = False,
    not_found: str = "",
    release: bool = False,
    **extra,
) -> tuple[int, dict[str, dict], str]:
    """The preflight role (then, with `release`, recover.yml's release task) once: rc, each
    task's result by name, and the run's whole output."""
    (tmp_path / "testnet.env").write_text(f"API_KEY=k\nBINANCE_TESTNET={mode}\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "systemctl").write_text(SYSTEMCTL)
    (bin_dir / "systemctl").chmod(0o755)
    steps = yaml.safe_load((PROJECT_ROOT / "playbooks" / "tasks" / "recover_steps.yml").read_text())
    # recover.yml's own release task (its steps, shared with the watchdog), as it stands in
    # their always section.
    release_task = next(
        task for task in steps[0]["always"][0]["always"] if task.get("name") == "Release the run lock"
    )
    tasks = [{"name": "Preflight", "ansible.builtin.include_role": {"name": "preflight"}}]
    tasks.append({"name": "Show the result", "ansible.builtin.debug": {"var": "preflight_result"}})
    if release:
        tasks.append(release_task)
    play = {
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars": {
            "pipeline": pipeline(connection, tmp_path / "testnet.env"),
            "preflight_lock_path": str(tmp_path / "pipeline.lock"),
            **extra,
        },
        "tasks": tasks,
    }
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([play], sort_keys=False))
    env = dict(
        os.environ,
        PATH=f"{bin_dir}:{os.environ.get('PATH', '')}",
        QT_NOT_FOUND=not_found,
        ANSIBLE_CONFIG=str(PROJECT_ROOT / "ansible.cfg"),
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
    )
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", str(playbook)]
    proc = subprocess.run(
        [*cmd, *(["--check"] if check else [])],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = json.loads(proc.stdout)
    results = {
        task["task"]["name"].removeprefix("preflight : "): task["hosts"]["localhost"]
        for task in output["plays"][0]["tasks"]
    }
    return proc.returncode, results, proc.stdout + proc.stderr


def plant(lock: Path, holder: dict, age_s: int = 5) -> str:
    lock.mkdir(mode=0o700)
    owner = {"run_id": OTHER, "token": "feedfacecafebeef", "taken_at": int(time.time()) - age_s}
    owner["controller"] = holder
    (lock / "owner.json").write_text(json.dumps(owner))
    return (lock / "owner.json").read_text()


def here() -> dict:
    started = controller.proc_start_ticks(Path("/proc/self/stat").read_text())
    return controller.this_controller() | {"pid": os.getpid(), "started": started}


def test_a_testnet_run_takes_the_lock_in_its_read_and_releases_it(redis_server, healthy, tmp_path):
    rc, results, output = run_preflight(tmp_path, redis_server.connection, release=True)
    assert rc == 0, output
    result = results["Show the result"]["preflight_result"]
    lock = result["lock"]
    # One module call: no separate lock task.
    assert "Take the run lock" not in results
    read = results[READ]
    assert (read["changed"], read["lock"]["held"]) == (False, True)
    assert (lock["held"], lock["found"], lock["path"]) == (True, "free", str(tmp_path / "pipeline.lock"))
    run_id = result["run_id"]
    assert run_id == results["Name this run"]["ansible_facts"]["_preflight_run_id"]
    assert (result["mode"], result["changes_allowed"], result["validated"]) == ("TESTNET", True, True)
    assert result["mode_assignments"] == [{"line": 2, "value": "true"}]
    # The read itself, which the evidence role's diagnosis takes for its own.
    assert result["snapshot"]["streams"] == read["streams"] and result["snapshot"]["lock"] == read["lock"]
    assert lock["message"] == f"The run lock is free; taken by {run_id}"
    assert f"Run {run_id}: mode TESTNET" in results[SAY]["msg"]
    assert lock["message"] in results[SAY]["msg"]
    # recover.yml's release, with the path and token of preflight_result.lock.
    assert results["Release the run lock"]["found"] == "released"
    assert not (tmp_path / "pipeline.lock").exists()


def test_a_lock_left_by_a_killed_run_of_this_controller_is_taken_over(redis_server, healthy, tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    plant(tmp_path / "pipeline.lock", here() | {"pid": gone.pid, "started": 1})
    rc, results, output = run_preflight(tmp_path, redis_server.connection)
    assert rc == 0, output
    lock = results["Show the result"]["preflight_result"]["lock"]
    assert (lock["held"], lock["found"], lock["holder"]) == (True, "orphaned", OTHER)
    assert "Taking over the run lock of " + OTHER in output


def test_a_lock_held_by_another_run_stops_the_run_with_run_locks_sentence(redis_server, healthy, tmp_path):
    lock = tmp_path / "pipeline.lock"
    before = plant(lock, here())
    rc, results, output = run_preflight(tmp_path, redis_server.connection)
    assert rc != 0, output
    # The read itself did not fail: the assert stopped the run, with run_lock's sentence.
    assert not results[READ].get("failed") and results[READ]["lock"]["found"] == "held"
    said = results[SAY]
    assert said["failed"] is True
    assert said["msg"].startswith(f"Another run ({OTHER}) holds the run lock, taken ")
    assert said["msg"].endswith(f"if that run is gone (lock {lock}).")
    assert "Show the result" not in results
    assert (lock / "owner.json").read_text() == before


@pytest.mark.parametrize(
    ("options", "mode"),
    [
        ({"mode": "false"}, "LIVE"),
        ({"mode": "yes"}, "UNKNOWN"),
        ({"check": True}, "TESTNET"),
        ({"preflight_take_lock": False}, "TESTNET"),
    ],
    ids=["live", "unknown", "check", "diagnose"],
)
def test_a_run_that_changes_nothing_takes_no_lock_and_goes_on(redis_server, healthy, tmp_path, options, mode):
    lock = tmp_path / "pipeline.lock"
    before = plant(lock, here())
    rc, results, output = run_preflight(tmp_path, redis_server.connection, **options)
    assert rc == 0, output
    assert f"mode {mode}" in results[SAY]["msg"]
    found = results["Show the result"]["preflight_result"]["lock"]
    assert (found["held"], found["found"], found["holder"]) == (False, "held", OTHER)
    assert found["message"].endswith("this run changes nothing, so it goes on")
    assert (lock / "owner.json").read_text() == before
    lock.joinpath("owner.json").unlink()
    lock.rmdir()
    rc, results, output = run_preflight(tmp_path, redis_server.connection, **options)
    assert rc == 0, output
    assert results["Show the result"]["preflight_result"]["lock"]["held"] is False
    assert not lock.exists()


def test_a_run_refused_for_a_missing_group_or_unit_takes_no_lock(redis_server, redis_client, tmp_path):
    redis_client.xadd(DECISIONS, {"n": 1})
    redis_client.xadd(INTENTS, {"n": 1})
    rc, results, output = run_preflight(tmp_path, redis_server.connection)
    assert rc != 0, output
    assert f"Missing from Redis at 127.0.0.1:{redis_server.port}: {DECISIONS}/router." in results[SAY]["msg"]
    assert not (tmp_path / "pipeline.lock").exists()
    # Told to go on without it, the run changes the rest: it takes the lock.
    rc, results, output = run_preflight(tmp_path, redis_server.connection, preflight_fail_on_missing=False)
    assert rc == 0, output
    assert results["Show the result"]["preflight_result"]["lock"]["held"] is True
    (tmp_path / "pipeline.lock" / "owner.json").unlink()
    (tmp_path / "pipeline.lock").rmdir()
    redis_client.xgroup_create(DECISIONS, "router", id="0")
    rc, results, output = run_preflight(tmp_path, redis_server.connection, not_found=UNITS[1])
    assert rc != 0
    assert f"{UNITS[1]} (stage router) does not exist on localhost" in results[SAY]["msg"]
    assert not (tmp_path / "pipeline.lock").exists()


def test_rollbacks_preflight_takes_the_lock_with_the_mode_file_alone(redis_server, tmp_path):
    """rollback.yml: Redis may be down, the units are not read; the lock is taken all the same."""
    down = {**redis_server.connection, "port": free_loopback_port()}
    rc, results, output = run_preflight(
        tmp_path, down, not_found=" ".join(UNITS), preflight_check_client=False, preflight_check_redis=False
    )
    assert rc == 0, output
    assert results[READ]["server"] is None
    result = results["Show the result"]["preflight_result"]
    assert result["lock"]["held"] is True
    # The mode file alone: not a snapshot the diagnosis may take.
    assert result["snapshot"]["skipped"] is True
