"""pipeline_snapshot's `lock`: the read and the run lock in one call, through the real `ansible`
command on localhost (its action plugin included), against a real redis-server and a lock
directory on a real file system. The lock is the run_lock module's own code
(module_utils/run_lock.py, tested through run_lock in tests/test_run_lock.py); here: when the
read takes it, when it only looks, and that a lock it cannot take is reported, not a failure."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import redis
from conftest import collection_module, dump_redis, free_loopback_port, run_ansible_module
from project_files import load_project_file

RUN = "20261203T120000Z-0a1b"
OTHER = "20261203T115900Z-cafe"
VAR = "BINANCE_TESTNET"
DECISIONS, INTENTS = "quantum:stream:ai.decision", "quantum:stream:trade.intent"
controller = load_project_file(
    "collections/ansible_collections/quantum/redis_streams/plugins/plugin_utils/controller.py"
)
# The sentence run_lock fails with when another run holds the lock (tests/test_run_lock.py).
HELD = f"Another run ({OTHER}) holds the run lock, taken "
WAIT = "wait for it to finish, or remove the lock directory if that run is gone"


def pipeline(connection: dict) -> dict:
    return {
        "name": "quantum-trader",
        "redis": connection,
        "stages": [
            {"name": "ai_engine", "unit": "quantum-ai-engine", "output_stream": DECISIONS},
            {"name": "router", "unit": "quantum-ai-strategy-router", "input_stream": DECISIONS,
             "group": "router", "consumer": "router-1", "output_stream": INTENTS},
        ],
    }  # fmt: skip


@pytest.fixture
def stalled(redis_client: redis.Redis) -> redis.Redis:
    """router-1 holds 2 entries, 3 wait behind them: every stream and group there."""
    for n in range(5):
        redis_client.xadd(DECISIONS, {"n": n})
    redis_client.xgroup_create(DECISIONS, "router", id="0")
    redis_client.xreadgroup("router", "router-1", {DECISIONS: ">"}, count=2)
    redis_client.xadd(INTENTS, {"n": 0})
    return redis_client


def mode(tmp_path: Path, value: str = "true") -> str:
    path = tmp_path / "testnet.env"
    path.write_text(f"API_KEY=k\n{VAR}={value}\n")
    return str(path)


def read(
    redis_server,
    tmp_path: Path,
    *,
    check: bool = False,
    expect_failure: bool = False,
    connection: dict | None = None,
    mode_value: str = "true",
    **lock,
) -> dict:
    """One pipeline_snapshot with `lock` (path tmp_path/pipeline.lock, this RUN; `lock` adds to it)."""
    args = {
        "pipeline": pipeline(connection or redis_server.connection),
        "units": False,
        "mode_file": mode(tmp_path, mode_value),
        "mode_variable": VAR,
        "lock": {"path": str(tmp_path / "pipeline.lock"), "run_id": RUN, **lock},
    }
    return run_ansible_module("pipeline_snapshot", args, check=check, expect_failure=expect_failure)


def here() -> dict:
    """This test process as a controller process: alive, on this host and boot."""
    started = controller.proc_start_ticks(Path("/proc/self/stat").read_text())
    return controller.this_controller() | {"pid": os.getpid(), "started": started}


def plant(lock: Path, holder: dict, token: str = "feedfacecafebeef", age_s: int = 5) -> str:
    """A lock as another run left it, `age_s` seconds old; its owner file's text."""
    lock.mkdir(mode=0o700)
    owner = {"run_id": OTHER, "token": token, "taken_at": int(time.time()) - age_s, "controller": holder}
    (lock / "owner.json").write_text(json.dumps(owner))
    stamp = time.time() - age_s
    os.utime(lock, (stamp, stamp))
    return (lock / "owner.json").read_text()


def owner_of(lock: Path) -> dict:
    return json.loads((lock / "owner.json").read_text())


def test_a_testnet_read_takes_the_lock_in_the_same_call(redis_server, stalled, tmp_path):
    before = dump_redis(stalled)
    result = read(redis_server, tmp_path)
    lock = tmp_path / "pipeline.lock"
    # The read as ever, then the lock, as run_lock returns it; nothing of the pipeline changed.
    assert result["streams"][DECISIONS]["groups"]["router"]["pending"] == 2
    assert result["mode_gate"]["mode"] == "TESTNET"
    assert dump_redis(stalled) == before
    assert result["changed"] is False
    taken = result["lock"]
    assert (taken["found"], taken["held"], taken["holder"], taken["age_s"]) == ("free", True, None, None)
    assert taken["path"] == str(lock)
    assert taken["message"] == f"The run lock is free; taken by {RUN}"
    owner = owner_of(lock)
    assert (owner["run_id"], owner["token"]) == (RUN, taken["token"])
    # The holder is the `ansible` process that ran the task, as run_lock records it.
    assert owner["controller"]["boot_id"] == controller.this_controller()["boot_id"]
    assert owner["controller"]["pid"] > 0
    # run_lock releases it with the token the read returned.
    release = {"path": taken["path"], "state": "absent", "token": taken["token"]}
    released = run_ansible_module("run_lock", release)
    assert (released["found"], lock.exists()) == ("released", False)


def test_a_lock_held_by_another_run_is_reported_with_run_locks_sentence_not_a_failure(
    redis_server, stalled, tmp_path
):
    lock = tmp_path / "pipeline.lock"
    before = plant(lock, here())
    refused = run_ansible_module("run_lock", {"path": str(lock), "run_id": RUN}, expect_failure=True)["msg"]
    redis_before = dump_redis(stalled)
    result = read(redis_server, tmp_path)
    held = result["lock"]
    assert (held["found"], held["held"], held["token"], held["holder"]) == ("held", False, None, OTHER)
    assert held["message"].startswith(HELD) and held["message"].endswith(f"{WAIT} (lock {lock})")
    # run_lock's very sentence (the lock's age may have moved by a second between the two calls).
    assert held["message"].split(" taken ")[0] == refused.split(" taken ")[0]
    assert held["message"].split(": ", 1)[1] == refused.split(": ", 1)[1]
    assert held["owner"]["token"] == "feedfacecafebeef"
    assert (lock / "owner.json").read_text() == before
    assert dump_redis(stalled) == redis_before
    assert result["streams"][DECISIONS]["groups"]["router"]["pending"] == 2


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"mode_value": "false"}, "LIVE: the gate refuses"),
        ({"mode_value": "True"}, "UNKNOWN: the gate refuses"),
        ({"take": False}, "the run does not want it (diagnose.yml)"),
        ({"check": True}, "check mode"),
    ],
)
def test_a_read_that_may_not_change_the_pipeline_takes_no_lock(redis_server, stalled, tmp_path, options, why):
    result = read(redis_server, tmp_path, **options)
    lock = result["lock"]
    assert (lock["found"], lock["held"], lock["token"]) == ("free", False, None), why
    assert lock["message"] == "The run lock is free; not taken (check mode, or the run changes nothing)"
    assert not (tmp_path / "pipeline.lock").exists()


def test_a_refusing_gate_only_says_who_holds_the_lock(redis_server, stalled, tmp_path):
    lock = tmp_path / "pipeline.lock"
    before = plant(lock, here())
    result = read(redis_server, tmp_path, mode_value="false")
    assert (result["lock"]["found"], result["lock"]["held"]) == ("held", False)
    assert result.get("failed", False) is False
    assert result["lock"]["message"].endswith("this run changes nothing, so it goes on")
    assert (lock / "owner.json").read_text() == before


def test_a_missing_stream_or_group_leaves_no_lock_unless_missing_ok(redis_server, redis_client, tmp_path):
    """A run that preflight refuses (something missing) must not touch the lock; one that goes on
    without it (preflight_fail_on_missing=false, missing_ok) takes it."""
    redis_client.xadd(DECISIONS, {"n": 1})
    result = read(redis_server, tmp_path)
    assert result["missing"] == [f"{DECISIONS}/router", INTENTS]
    lock = result["lock"]
    assert (lock["found"], lock["held"]) == ("free", False)
    assert lock["message"] == (
        f"The run lock is free; not taken (missing from the read: {DECISIONS}/router, {INTENTS})"
    )
    assert not (tmp_path / "pipeline.lock").exists()
    taken = read(redis_server, tmp_path, missing_ok=True)["lock"]
    assert taken["held"] is True and (tmp_path / "pipeline.lock").is_dir()


def test_a_unit_systemd_has_not_loaded_makes_the_read_incomplete():
    """The units' part of the rule (this machine has no systemd: the module's function)."""
    module = collection_module("pipeline_snapshot")
    read_ = {"missing": [], "units": {"a": {"load_state": "loaded"}, "b": {"load_state": "not-found"}}}
    assert module.incomplete(read_, missing_ok=False) == ["unit b (not-found)"]
    assert module.incomplete({"missing": ["s/g"], "units": {}}, missing_ok=True) == []
    assert module.incomplete({"missing": ["s/g"], "units": {}}, missing_ok=False) == ["s/g"]


def test_a_failed_read_leaves_the_lock_untouched(redis_server, tmp_path):
    down = {**redis_server.connection, "port": free_loopback_port()}
    failed = read(redis_server, tmp_path, connection=down, expect_failure=True)
    assert "lock" not in failed and failed["mode_gate"]["mode"] == "TESTNET"
    assert not (tmp_path / "pipeline.lock").exists()


def test_a_lock_whose_controller_process_is_gone_is_taken_over_at_once(redis_server, stalled, tmp_path):
    """The chaos case through the read: ansible-playbook SIGKILLed mid-run left its lock; the
    action plugin sees its process gone and the second call takes it over."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    lock = tmp_path / "pipeline.lock"
    plant(lock, here() | {"pid": gone.pid, "started": 1})
    result = read(redis_server, tmp_path)
    taken = result["lock"]
    assert (taken["found"], taken["held"], taken["holder"]) == ("orphaned", True, OTHER)
    assert owner_of(lock)["token"] == taken["token"] != "feedfacecafebeef"
    assert any("Taking over the run lock of " + OTHER in w for w in result.get("warnings", []))
    assert result["streams"][DECISIONS]["groups"]["router"]["pending"] == 2
    assert not list(tmp_path.glob("pipeline.lock.stale-*"))


def test_a_lock_from_another_controller_is_held_however_dead_its_pid(redis_server, stalled, tmp_path):
    plant(tmp_path / "pipeline.lock", here() | {"host": "awx-job-9", "pid": 999_999_999})
    assert read(redis_server, tmp_path)["lock"]["found"] == "held"


def test_a_stale_lock_is_taken_over_with_a_warning(redis_server, stalled, tmp_path):
    plant(tmp_path / "pipeline.lock", here() | {"host": "awx-job-9"}, age_s=7200)
    result = read(redis_server, tmp_path, stale_s=3600)
    assert (result["lock"]["found"], result["lock"]["held"]) == ("stale", True)
    assert owner_of(tmp_path / "pipeline.lock")["run_id"] == RUN
    assert any("Taking over a stale run lock held by " + OTHER in w for w in result.get("warnings", []))


def test_a_lock_that_cannot_be_made_is_reported_not_a_failure(redis_server, stalled, tmp_path):
    args = {
        "pipeline": pipeline(redis_server.connection),
        "units": False,
        "mode_file": mode(tmp_path),
        "mode_variable": VAR,
        "lock": {"path": str(tmp_path / "missing" / "pipeline.lock"), "run_id": RUN},
    }
    result = run_ansible_module("pipeline_snapshot", args)
    lock = result["lock"]
    assert (lock["found"], lock["held"], lock["token"]) == ("free", False, None)
    assert lock["message"].startswith("Cannot take the run lock: No such file or directory")


BY_HAND = "is set by its action plugin, not by hand."


@pytest.mark.parametrize(
    ("lock", "message"),
    [
        ({"controller": {"pid": 1}}, f"pipeline_snapshot's option lock.controller {BY_HAND}"),
        ({"take_over_token": "feedface"}, f"pipeline_snapshot's option lock.take_over_token {BY_HAND}"),
        ({"path": "run/x.lock"}, "lock.path must be an absolute path below /, got 'run/x.lock'."),
        ({"stale_s": 0}, "lock.stale_s must be 1 or more, got 0."),
    ],
)
def test_bad_lock_options_are_refused_with_one_sentence(redis_server, stalled, tmp_path, lock, message):
    refused = read(redis_server, tmp_path, expect_failure=True, **lock)
    assert refused["msg"] == message
    assert not (tmp_path / "pipeline.lock").exists()


def test_a_lock_needs_the_mode_file_and_must_be_a_dictionary(redis_server, tmp_path):
    args = {"pipeline": pipeline(redis_server.connection), "units": False}
    no_gate = {**args, "lock": {"path": str(tmp_path / "x.lock"), "run_id": RUN}}
    refused = run_ansible_module("pipeline_snapshot", no_gate, expect_failure=True)
    assert "mode_file" in refused["msg"] and "lock" in refused["msg"]
    text = {**args, "lock": f"path={tmp_path / 'x.lock'} run_id={RUN} controller=x"}
    refused = run_ansible_module("pipeline_snapshot", text, expect_failure=True)
    assert refused["msg"] == "pipeline_snapshot's option lock must be a dictionary, got a string."
    assert not (tmp_path / "x.lock").exists()
