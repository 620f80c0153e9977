"""quantum.redis_streams.run_lock through the real `ansible` command on localhost (its action
plugin included): the lock directory on a real file system, and real controller processes
(this test's own, and one started and reaped here) as holders."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import collection_util, run_ansible_module
from project_files import PROJECT_ROOT, load_project_file

RUN = "20261202T220000Z-0a1b"
OTHER = "20261202T215900Z-cafe"
BY_HAND = "is set by its action plugin, not by hand."
controller = load_project_file(
    "collections/ansible_collections/quantum/redis_streams/plugins/plugin_utils/controller.py"
)


def here() -> dict:
    return controller.this_controller() | {"pid": os.getpid(), "started": controller.proc_start_ticks(
        Path("/proc/self/stat").read_text())}


def plant(lock: Path, controller: dict, token: str = "feedfacecafebeef", age_s: int = 5) -> None:
    """A lock as another run left it, `age_s` seconds old."""
    lock.mkdir(mode=0o700)
    owner = {"run_id": OTHER, "token": token, "taken_at": int(time.time()) - age_s, "controller": controller}
    (lock / "owner.json").write_text(json.dumps(owner))
    stamp = time.time() - age_s
    os.utime(lock, (stamp, stamp))


def owner_of(lock: Path) -> dict:
    return json.loads((lock / "owner.json").read_text())


def take(lock: Path, *, check: bool = False, expect_failure: bool = False, **extra) -> dict:
    args = {"path": str(lock), "run_id": RUN} | extra
    return run_ansible_module("run_lock", args, check=check, expect_failure=expect_failure)


def release(lock: Path, token: str, *, check: bool = False) -> dict:
    return run_ansible_module("run_lock", {"path": str(lock), "state": "absent", "token": token}, check=check)


def test_a_free_lock_is_taken_and_released_by_its_token(tmp_path: Path) -> None:
    lock = tmp_path / "pipeline.lock"
    taken = take(lock)
    assert (taken["found"], taken["held"], taken["changed"]) == ("free", True, False)
    owner = owner_of(lock)
    assert owner["run_id"] == RUN
    assert owner["token"] == taken["token"] and len(taken["token"]) == 16
    # The holder is the `ansible` process that ran the task, on this host and boot.
    assert owner["controller"]["host"] == socket.gethostname()
    assert owner["controller"]["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert oct(lock.stat().st_mode & 0o777) == "0o700"

    wrong = release(lock, "0" * 16)
    assert (wrong["found"], lock.exists()) == ("held", True)
    assert "not this run's (held by 20261202T220000Z-0a1b): left in place" in wrong["message"]
    assert release(lock, taken["token"], check=True)["found"] == "released" and lock.exists()
    released = release(lock, taken["token"])
    assert (released["found"], lock.exists()) == ("released", False)
    assert release(lock, taken["token"])["found"] == "absent"


def test_a_lock_held_by_a_live_run_stops_the_run_and_is_left_as_it_was(tmp_path: Path) -> None:
    lock = tmp_path / "pipeline.lock"
    plant(lock, here())
    before = (lock / "owner.json").read_text()
    refused = take(lock, expect_failure=True)
    assert refused["msg"].startswith(f"Another run ({OTHER}) holds the run lock, taken ")
    assert refused["msg"].endswith(
        f"wait for it to finish, or remove the lock directory if that run is gone (lock {lock})"
    )
    assert refused["held"] is False
    assert (lock / "owner.json").read_text() == before
    # In check mode the run changes nothing: it says so and goes on.
    checked = take(lock, check=True)
    assert (checked["found"], checked["held"], checked.get("failed", False)) == ("held", False, False)
    assert checked["message"].endswith("this run changes nothing, so it goes on")


def test_a_lock_from_another_controller_is_held_however_dead_its_pid(tmp_path: Path) -> None:
    lock = tmp_path / "pipeline.lock"
    plant(lock, here() | {"host": "awx-job-9", "pid": 999_999_999})
    assert take(lock, expect_failure=True)["found"] == "held"
    lock2 = tmp_path / "other-boot.lock"
    plant(lock2, here() | {"boot_id": "another-boot", "pid": 999_999_999})
    assert take(lock2, expect_failure=True)["found"] == "held"


def test_a_lock_whose_controller_process_is_gone_is_taken_over_at_once(tmp_path: Path) -> None:
    """The chaos case: ansible-playbook SIGKILLed mid-run leaves its lock; its pid no longer
    runs (or runs another program, started later), so the next run takes it over."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    lock = tmp_path / "pipeline.lock"
    plant(lock, here() | {"pid": gone.pid, "started": 1})
    taken = take(lock)
    assert (taken["found"], taken["held"], taken["holder"]) == ("orphaned", True, OTHER)
    assert owner_of(lock)["token"] == taken["token"] != "feedfacecafebeef"
    assert any("Taking over the run lock of " + OTHER in w for w in taken.get("warnings", []))
    assert not list(tmp_path.glob("pipeline.lock.stale-*"))


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path: Path) -> None:
    lock = tmp_path / "pipeline.lock"
    plant(lock, here() | {"host": "awx-job-9"}, age_s=7200)
    checked = take(lock, check=True)
    assert (checked["found"], checked["held"]) == ("stale", False)
    assert owner_of(lock)["run_id"] == OTHER
    taken = take(lock, stale_s=3600)
    assert (taken["found"], taken["held"], taken["age_s"] >= 7200) == ("stale", True, True)
    assert owner_of(lock)["run_id"] == RUN
    assert any("Taking over a stale run lock held by " + OTHER in w for w in taken.get("warnings", []))


def test_check_mode_takes_nothing(tmp_path: Path) -> None:
    lock = tmp_path / "pipeline.lock"
    checked = take(lock, check=True)
    assert (checked["found"], checked["held"], checked["token"]) == ("free", False, None)
    assert not lock.exists()


def test_a_take_over_puts_back_a_lock_that_changed_hands_meanwhile(tmp_path: Path) -> None:
    """Two runs judged the same stale lock; one took it over and made a new lock before the
    other's rename: the other moves the new lock aside, sees a different token, puts it back."""
    lock = tmp_path / "pipeline.lock"
    plant(lock, here(), token="newholder0000000")
    run_lock = collection_util("run_lock").RunLock(None, str(lock), RUN)
    assert run_lock.set_aside("oldholder0000000") is False
    assert owner_of(lock)["token"] == "newholder0000000"
    assert not list(tmp_path.glob("pipeline.lock.stale-*"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"controller": {"pid": 1}}, f"run_lock's option controller {BY_HAND}"),
        ({"take_over_token": "x"}, f"run_lock's option take_over_token {BY_HAND}"),
        ({"path": "run/x.lock"}, "path must be an absolute path below /, got 'run/x.lock'."),
        ({"stale_s": 0}, "stale_s must be 1 or more, got 0."),
    ],
)
def test_bad_options_are_refused_with_one_sentence(tmp_path: Path, args: dict, message: str) -> None:
    refused = take(tmp_path / "x.lock", expect_failure=True, **args)
    assert refused["msg"] == message
    assert not (tmp_path / "x.lock").exists()


def test_the_parent_directory_must_exist(tmp_path: Path) -> None:
    refused = take(tmp_path / "missing" / "x.lock", expect_failure=True)
    assert refused["msg"].startswith("Cannot take the run lock: No such file or directory")


def test_the_project_calls_it_by_its_fqcn() -> None:
    # preflight takes the lock in its read (pipeline_snapshot's `lock`); the recovery steps (recover.yml,
    # the watchdog) and rollback.yml release it.
    preflight = (PROJECT_ROOT / "roles/preflight/tasks/main.yml").read_text()
    assert "quantum.redis_streams.pipeline_snapshot:" in preflight and "    lock:\n" in preflight
    for playbook in ("playbooks/tasks/recover_steps.yml", "playbooks/rollback.yml"):
        assert "quantum.redis_streams.run_lock:" in (PROJECT_ROOT / playbook).read_text()
