"""The lab engine's start/stop lock: the engine must not inherit the lock's descriptor, or it
holds the lock for as long as it runs and every later start or stop waits 60 s and fails (a
warm `make demo` did exactly that)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT

ENGINE = PROJECT_ROOT / "lab" / "engine.sh"
RUN_DIR = Path("/run/quantum-lab")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("dockerd") is None,
    reason="the lab engine needs root and Debian's docker.io (make test installs it)",
)


def engine(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(ENGINE), *args], capture_output=True, text=True, timeout=timeout)


def test_engine_does_not_hold_the_start_lock() -> None:
    ours_before = engine("ours").returncode == 0
    foreign_running = not ours_before and engine("status").returncode == 0
    if foreign_running:
        pytest.skip("an engine this project did not start answers: it is not ours to test")
    started = engine("start")
    assert started.returncode == 0, started.stderr
    try:
        pid = int((RUN_DIR / "dockerd.pid").read_text().strip())
        lock = str(RUN_DIR / "engine.lock")
        held = [fd for fd in (Path(f"/proc/{pid}/fd")).iterdir() if os.path.realpath(fd) == lock]
        assert held == [], f"dockerd {pid} holds the engine lock through fd {held}"

        t0 = time.monotonic()
        again = engine("start", timeout=90)
        elapsed = time.monotonic() - t0
        assert again.returncode == 0, again.stderr
        assert elapsed < 10, f"a second start waited {elapsed:.1f} s for the lock"
    finally:
        if not ours_before:
            stopped = engine("stop")
            assert stopped.returncode == 0, stopped.stderr
