"""The metrics writer (quantum.redis_streams.metrics_writer_bundle): the zip application built on
the controller runs under Debian's own python3 with redis-py and no Ansible, against a real
redis-server, and writes the same metrics as the pipeline_metrics module; every interval until
SIGTERM; a failed read is a metric and one log line, and the writer carries on; settings it
refuses change nothing and exit 2. The systemd unit (roles/metrics_writer) runs in the Molecule
watchdog scenario, whose container has systemd."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import free_loopback_port, run_ansible_module
from project_files import COLLECTION
from test_pipeline_metrics import incident, parse, value  # noqa: F401  (incident is a fixture)
from test_pipeline_snapshot import RESULTS, pipeline

bundle_utils = pytest.importorskip(f"ansible_collections.{COLLECTION}.plugins.plugin_utils.bundle")

SYSTEM_PYTHON = "/usr/bin/python3"
P = "quantum-trader"
ROUTER_PENDING = "quantum_pipeline_consumer_pending"
ROUTER_1 = {"pipeline": "quantum-trader", "stage": "router", "stream": "quantum:stream:ai.decision",
            "group": "router", "consumer": "router-1"}  # fmt: skip


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    content, _ = bundle_utils.build()
    path = tmp_path_factory.mktemp("bundle") / "pipeline-metrics.pyz"
    path.write_bytes(content)
    return path


@pytest.fixture(scope="module")
def target_env() -> dict[str, str]:
    """A target as the lab image is one: Debian's python3 with Debian's python3-redis
    (scripts/install-system-deps.sh) and no Ansible."""
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    for module, wanted in (("redis", 0), ("ansible", 1)):
        probe = subprocess.run([SYSTEM_PYTHON, "-s", "-c", f"import {module}"], env=env, capture_output=True)
        assert (probe.returncode != 0) == wanted, f"{SYSTEM_PYTHON} must {'not ' * wanted}import {module}"
    return env


def settings(path: Path, **values) -> Path:
    path.write_text(json.dumps(values))
    return path


def run_once(bundle: Path, env: dict[str, str], settings_file: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SYSTEM_PYTHON, "-s", str(bundle), str(settings_file), "--once"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_the_same_sources_give_the_same_bundle() -> None:
    first, files = bundle_utils.build()
    second, _ = bundle_utils.build()
    assert first == second
    assert files > 100  # the collection's module_utils and ansible.module_utils


def test_once_writes_what_the_module_writes(redis_server, incident, bundle, target_env, tmp_path):  # noqa: F811
    by_writer, by_module = tmp_path / "writer", tmp_path / "module"
    by_writer.mkdir()
    by_module.mkdir()
    definition = pipeline(redis_server.connection)
    config = settings(tmp_path / "s.json", pipeline=definition, units=False, textfile_dir=str(by_writer))
    done = run_once(bundle, target_env, config)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    args = {"pipeline": definition, "units": False, "textfile_dir": str(by_module)}
    run_ansible_module("pipeline_metrics", args)
    name = "quantum_pipeline_quantum-trader.prom"
    written, module = (parse((d / name).read_text()) for d in (by_writer, by_module))
    # The same series; the values that are not ages or times are equal.
    assert set(written) == set(module)
    for key, got in written.items():
        if not any(word in key[0] for word in ("seconds", "timestamp", "duration")):
            assert got == module[key], key
    assert value(written, ROUTER_PENDING, **ROUTER_1) == 3
    assert value(written, "quantum_pipeline_snapshot_ok", pipeline="quantum-trader") == 1
    trades = value(written, "quantum_pipeline_trades_executed_today", stream=RESULTS, pipeline=P)
    assert trades == 4
    assert sorted(p.name for p in by_writer.iterdir()) == [name]  # no temporary file left


def test_writes_every_interval_and_stops_on_sigterm(redis_server, incident, bundle, target_env, tmp_path):  # noqa: F811
    definition = pipeline(redis_server.connection)
    config = settings(tmp_path / "s.json", pipeline=definition, units=False, textfile_dir=str(tmp_path),
                      interval_s=0.3)  # fmt: skip
    textfile = tmp_path / "quantum_pipeline_quantum-trader.prom"
    writer = subprocess.Popen(
        [SYSTEM_PYTHON, "-s", str(bundle), str(config)], env=target_env, stderr=subprocess.PIPE, text=True
    )
    try:
        stamps = set()
        deadline = time.monotonic() + 10
        while len(stamps) < 4 and time.monotonic() < deadline:
            if textfile.exists():
                stamps.add(value(parse(textfile.read_text()), "quantum_pipeline_snapshot_timestamp_seconds",
                                 pipeline="quantum-trader"))  # fmt: skip
            time.sleep(0.1)
        assert len(stamps) >= 4, f"{len(stamps)} passes in 10 s at interval 0.3 s"
        # What happens in Redis shows in the next pass: router-1 acknowledges its three entries.
        held = [e["message_id"] for e in incident.xpending_range(ROUTER_1["stream"], "router", "-", "+", 10)]
        assert incident.xack(ROUTER_1["stream"], "router", *held) == 3
        deadline = time.monotonic() + 5
        while value(parse(textfile.read_text()), ROUTER_PENDING, **ROUTER_1) != 0:
            assert time.monotonic() < deadline, "router-1's acknowledged entries still showed 5 s later"
            time.sleep(0.1)
        writer.send_signal(signal.SIGTERM)
        assert writer.wait(timeout=5) == 0
        assert writer.stderr.read().splitlines() == [f"writing {textfile} every 0.3 s"]
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quantum_pipeline_quantum-trader.prom", "s.json"]


def test_a_failed_read_is_a_metric_and_one_log_line(bundle, target_env, tmp_path):
    # Nothing listens there: every pass fails the same way.
    definition = pipeline({"host": "127.0.0.1", "port": free_loopback_port(), "connect_timeout": 0.5})
    config = settings(tmp_path / "s.json", pipeline=definition, units=False, textfile_dir=str(tmp_path),
                      interval_s=0.2)  # fmt: skip
    done = run_once(bundle, target_env, config)
    assert done.returncode == 1
    textfile = tmp_path / "quantum_pipeline_quantum-trader.prom"
    samples = parse(textfile.read_text())
    assert value(samples, "quantum_pipeline_snapshot_ok", pipeline="quantum-trader") == 0
    assert not any(name == ROUTER_PENDING for name, _ in samples)  # no stale figure stands for the present
    writer = subprocess.Popen(
        [SYSTEM_PYTHON, "-s", str(bundle), str(config)], env=target_env, stderr=subprocess.PIPE, text=True
    )
    try:
        time.sleep(2)  # about 10 passes
        assert writer.poll() is None, "the writer must carry on when Redis is down"
        writer.send_signal(signal.SIGTERM)
        assert writer.wait(timeout=5) == 0
        lines = writer.stderr.read().splitlines()
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    failures = [line for line in lines if line.startswith("read failed: ")]
    assert len(failures) == 1, lines
    assert "127.0.0.1" in failures[0]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"textfile_dir": "/nonexistent/textfiles"}, "textfile_dir /nonexistent/textfiles does not exist"),
        ({"textfile_dir": "relative/dir"}, "textfile_dir 'relative/dir' must be an absolute path"),
        ({"interval_s": 0}, "interval_s must be between 0.2 and 3600"),
        ({"pipeline": {"name": "../etc", "stages": []}}, "pipeline '../etc' must be letters"),
        ({"pipeline": None}, "pipeline"),
        ({"connection": {"port": "not a port"}}, "connection"),
    ],
    ids=["missing-dir", "relative-dir", "interval", "name", "no-pipeline", "connection"],
)
def test_refused_settings_exit_2_with_one_sentence(bundle, target_env, tmp_path, change, named):
    values = {"pipeline": pipeline({"port": 1}), "units": False, "textfile_dir": str(tmp_path), **change}
    done = run_once(bundle, target_env, settings(tmp_path / "s.json", **values))
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("refused: ") and named in lines[0], done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]  # nothing written


def test_an_unreadable_settings_file_is_refused(bundle, target_env, tmp_path):
    broken = tmp_path / "s.json"
    broken.write_text("{not json")
    done = run_once(bundle, target_env, broken)
    assert done.returncode == 2
    assert done.stderr.startswith(f"refused: The settings file {broken} could not be read as JSON")
