"""lab/alerting_stack.py's own safety: it stops only the processes its pidfiles name (same PID and
start time, with their descendants), and picks ports outside the kernel's ephemeral range. The
chain itself runs in molecule/alerting and bench/alert_mttr.py."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT

# lab/ is no package: alerting_stack is found through its path.
sys.path.insert(0, str(PROJECT_ROOT / "lab"))
import alerting_stack


def start_sleeper(with_child: bool = False) -> subprocess.Popen:
    """A process of this test in a session of its own, as the stack starts its daemons."""
    argv = ["sh", "-c", "sleep 60 & wait"] if with_child else ["sleep", "60"]
    return subprocess.Popen(argv, start_new_session=True)


def write_pidfile(path: Path, pid: int, start_time: str | None) -> Path:
    path.write_text(json.dumps({"pid": pid, "start_time": start_time}))
    return path


def wait_for_children(pid: int) -> list[int]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = alerting_stack.children_of(pid)
        if children:
            return children
        time.sleep(0.05)
    pytest.fail(f"process {pid} started no child")


def test_a_pidfile_stops_its_process_and_its_descendants(tmp_path: Path) -> None:
    proc = start_sleeper(with_child=True)
    try:
        (child,) = wait_for_children(proc.pid)
        pidfile = write_pidfile(tmp_path / "x.pid", proc.pid, alerting_stack.process_start_time(proc.pid))
        assert alerting_stack.stop_pidfile(pidfile, proc, timeout=5) is True
        assert proc.returncode is not None
        assert alerting_stack.process_start_time(child) is None
        assert not pidfile.exists()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


@pytest.mark.parametrize("start_time", ["1", None])
def test_a_pidfile_naming_another_process_stops_nothing(tmp_path: Path, start_time: str | None) -> None:
    """A PID reused by another process (its start time differs), or a pidfile without a start
    time: the process is left alone, the pidfile removed."""
    proc = start_sleeper()
    try:
        pidfile = write_pidfile(tmp_path / "x.pid", proc.pid, start_time)
        assert alerting_stack.stop_pidfile(pidfile, timeout=1) is False
        assert proc.poll() is None
        assert not pidfile.exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_stop_all_stops_what_the_work_directory_names(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    procs = {name: start_sleeper() for name in ("rulebook", "prometheus")}
    try:
        for name, proc in procs.items():
            started = alerting_stack.process_start_time(proc.pid)
            write_pidfile(tmp_path / "run" / f"{name}.pid", proc.pid, started)
        # From another process, as `lab/alerting_stack.py down WORKDIR` does.
        done = subprocess.run(
            [sys.executable, str(PROJECT_ROOT / "lab" / "alerting_stack.py"), "down", str(tmp_path)],
            capture_output=True,
            text=True,
            check=True,
        )
        assert done.stdout.strip() == "stopped: prometheus, rulebook"
        for proc in procs.values():
            assert proc.wait(timeout=10) == -signal.SIGTERM
        assert list((tmp_path / "run").iterdir()) == []
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()


def test_ports_are_free_and_below_the_ephemeral_range() -> None:
    low, _ = alerting_stack.ephemeral_range()
    taken: set[int] = set()
    for _ in range(5):
        port = alerting_stack.free_loopback_port(taken)
        assert 20000 <= port < min(low, 32768)
        assert port not in taken
        assert not alerting_stack.listening(port)
        taken.add(port)
