"""rulebooks/pipeline-alerts.yml through the real ansible-rulebook (its JVM, its webhook on a free
loopback port, its run_playbook through ansible-runner): Alertmanager-shaped notifications are
posted to it, and the real playbooks/watchdog.yml runs for the pipeline an alert names, on a
local host whose pipeline points at a real redis-server on loopback.

What proves a run: the watchdog's ledger (`<watchdog_state_dir>/<pipeline>/decisions.jsonl`), one
record per run, written only after preflight validated the run's inputs. There is no systemd
here, so each run stops at preflight's target check (`systemctl show` fails) and records the
decision `failed`, having changed nothing (the mode file is absent: UNKNOWN). The rulebook's own
line (its `debug` action, before the run) says which stage's alert started it.

The rulebook does not depend on the Redis server's version: it runs in the first pass of
scripts/run-pytest.sh only (the server matrix's other passes skip it).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import PROJECT_ROOT, RedisServer, free_loopback_port

RULEBOOK = PROJECT_ROOT / "rulebooks" / "pipeline-alerts.yml"
VENV_BIN = Path(sys.executable).parent
PIPELINE = "quantum-trader"
OTHER_PIPELINE = "shop"

# The rulebook does not depend on the Redis server: the first pass of the server matrix only.
pytestmark = pytest.mark.controller


def alert(stage: str, *, status: str = "firing", verdict: str | None = "STALLED", **labels: str) -> dict:
    """One alert as Alertmanager's webhook sends it (version 4)."""
    alert_labels = {
        "alertname": "QuantumStageStalled",
        "pipeline": PIPELINE,
        "stage": stage,
        "severity": "critical",
        **labels,
    }
    if verdict is not None:
        alert_labels["verdict"] = verdict
    return {
        "status": status,
        "labels": alert_labels,
        "annotations": {"summary": f"Stage {stage} of pipeline {PIPELINE} is {verdict}."},
        "startsAt": "2026-12-04T10:00:00Z",
        "endsAt": "2026-12-04T10:05:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": secrets.token_hex(8),
    }


def notification(*alerts: dict) -> dict:
    """Alertmanager's webhook body: a group's notification with every alert of the group."""
    return {
        "version": "4",
        "groupKey": '{}:{pipeline="quantum-trader"}',
        "truncatedAlerts": 0,
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "receiver": "quantum-remediation",
        "groupLabels": {"pipeline": PIPELINE},
        "commonLabels": {"pipeline": PIPELINE},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": list(alerts),
    }


@dataclass
class Rulebook:
    """An ansible-rulebook process this test started, its webhook and its output."""

    port: int
    token: str
    log: Path
    state_dir: Path
    process: subprocess.Popen | None = None

    def post(self, body: dict, *, token: str | None = None) -> int:
        """POST the body to the webhook (`token=""`: no Authorization header); the HTTP status."""
        token = self.token if token is None else token
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/alertmanager",
            data=json.dumps(body).encode(),
            headers=headers,
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def watchdog_lines(self) -> list[str]:
        """The rulebook's line for each watchdog run it started: `pipeline=... stage=...`."""
        return re.findall(r"^watchdog: (pipeline=\S+ stage=\S+)", self.output(), re.MULTILINE)

    def records(self, pipeline: str = PIPELINE) -> list[dict]:
        path = self.state_dir / pipeline / "decisions.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def wait_for(self, what: str, predicate: Callable[[], bool], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.process is not None and self.process.poll() is not None:
                break
            time.sleep(0.1)
        tail = self.output()[-6000:]
        pytest.fail(f"{what}: not seen within {timeout} s. ansible-rulebook's output:\n{tail}")

    def marker(self) -> None:
        """Post a resolved alert and wait until the rulebook logged it: every event posted
        before it has been through the rules (one queue, evaluated in order)."""
        body = alert("marker", status="resolved")
        assert self.post(notification(body)) == 200
        fingerprint = body["fingerprint"]
        self.wait_for(f"the marker {fingerprint}", lambda: f"fingerprint={fingerprint}" in self.output(), 30)


def write_inventory(where: Path, redis: RedisServer, tmp_path: Path) -> Path:
    """A directory inventory (ansible-rulebook copies a file inventory without its group_vars):
    the group the watchdog runs on by default, two local hosts, one per pipeline. The Quantum
    Trader pipeline of inventory/lab on the test's redis-server, its mode file absent."""
    lab = PROJECT_ROOT / "inventory" / "lab" / "group_vars" / "all" / "pipeline.yml"
    pipeline = yaml.safe_load(lab.read_text())["pipeline"]
    pipeline["redis"] = {"host": redis.host, "port": redis.port}
    pipeline["mode_file"] = str(tmp_path / "absent" / "testnet.env")
    other = {**pipeline, "name": OTHER_PIPELINE}
    inventory = {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "watchdog_state_dir": str(tmp_path / "watchdog"),
                "watchdog_textfile_dir": "",
                "evidence_root": str(tmp_path / "evidence"),
            },
            "children": {
                "quantum_pipeline": {
                    # The other pipeline's host first: the watchdog runs one host at a time and
                    # stops at the first failed one, so this order is what proves it is skipped.
                    "hosts": {"shop-local": {"pipeline": other}, "trader-local": {"pipeline": pipeline}}
                },
                # The rulebook's pipeline_hosts_map sends the other pipeline's alerts here.
                "shop_hosts": {"hosts": {"shop-local": {}}},
            },
        }
    }
    where.mkdir()
    (where / "hosts.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    return where


def listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_rulebook(tmp_path: Path, inventory: Path, token: str) -> Rulebook:
    port = free_loopback_port()
    variables = tmp_path / "rulebook-vars.yml"
    settings = {
        "eda_webhook_host": "127.0.0.1",
        "eda_webhook_port": port,
        "eda_evidence_root": str(tmp_path / "fetched"),
        "pipeline_hosts_map": {OTHER_PIPELINE: "shop_hosts"},
    }
    variables.write_text(yaml.safe_dump(settings))
    book = Rulebook(port, token, log=tmp_path / "ansible-rulebook.log", state_dir=tmp_path / "watchdog")
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(PROJECT_ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "QUANTUM_EDA_TOKEN": token,
        # ansible-runner's private data directories, under the test's own directory.
        "TMPDIR": str(tmp_path),
    }
    command = [
        str(VENV_BIN / "ansible-rulebook"),
        "--rulebook", str(RULEBOOK),
        "--inventory", str(inventory),
        "--vars", str(variables),
        "--env-vars", "QUANTUM_EDA_TOKEN",
    ]
    with book.log.open("wb") as log:
        # Its own process group: the runs it starts (ansible-runner, ansible-playbook) are stopped with it.
        book.process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return book


def stop_rulebook(book: Rulebook) -> None:
    """Stop the process this test started, and the process group it leads, by its PID."""
    process = book.process
    if process is None or process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture
def rulebook(tmp_path: Path, redis_server: RedisServer) -> Iterator[Rulebook]:
    """ansible-rulebook with the project's rulebook, its webhook listening on a free loopback port."""
    inventory = write_inventory(tmp_path / "inventory", redis_server, tmp_path)
    book = start_rulebook(tmp_path, inventory, secrets.token_hex(16))
    try:
        book.wait_for("the webhook listening", lambda: listening(book.port), timeout=60)
        yield book
    finally:
        stop_rulebook(book)


def test_a_verdict_alert_runs_the_watchdog_once_per_stage_within_the_window(rulebook: Rulebook) -> None:
    started = time.time()
    assert rulebook.post(notification(alert("router"))) == 200
    rulebook.wait_for("the watchdog's first record", lambda: len(rulebook.records()) == 1)
    first = rulebook.records()[0]
    assert first["pipeline"] == PIPELINE and first["time"] >= started - 1
    # Preflight validated the inputs and reached the target: no systemd here, so it stopped there.
    assert first["decision"] == "failed" and "systemctl" in first["reason"], first
    assert first["mode"] == "UNKNOWN" and first["units_restarted"] == 0 and first["entries_moved"] == 0
    # The host of the other pipeline, in the same group and before it, was left alone.
    assert "skipping: [trader-local]" in rulebook.output()
    assert not (rulebook.state_dir / OTHER_PIPELINE).exists()

    # Alertmanager's next notification of the group repeats router's alert (throttled: same
    # pipeline and stage within the window) and brings execution's (another stage: a run).
    assert rulebook.post(notification(alert("router"), alert("execution", verdict="STOPPED"))) == 200
    rulebook.wait_for("the watchdog's second record", lambda: len(rulebook.records()) == 2)
    rulebook.marker()
    assert rulebook.watchdog_lines() == [
        f"pipeline={PIPELINE} stage=router",
        f"pipeline={PIPELINE} stage=execution",
    ]
    records = rulebook.records()
    assert len(records) == 2 and records[0]["run_id"] != records[1]["run_id"]
    assert rulebook.records(OTHER_PIPELINE) == []

    # The other pipeline's alert, same stage name: its own throttle group, its hosts
    # (pipeline_hosts_map), its ledger.
    assert rulebook.post(notification(alert("router", pipeline=OTHER_PIPELINE))) == 200
    rulebook.wait_for("the other pipeline's record", lambda: len(rulebook.records(OTHER_PIPELINE)) == 1)
    assert rulebook.records(OTHER_PIPELINE)[0]["pipeline"] == OTHER_PIPELINE
    assert rulebook.watchdog_lines()[-1] == f"pipeline={OTHER_PIPELINE} stage=router"
    assert len(rulebook.records()) == 2


def test_a_wrong_or_missing_token_is_refused_and_starts_nothing(rulebook: Rulebook) -> None:
    body = notification(alert("router"))
    assert rulebook.post(body, token="") == 401
    assert rulebook.post(body, token=secrets.token_hex(16)) == 401
    assert rulebook.post(body, token=rulebook.token[:-1]) == 401
    rulebook.marker()
    assert rulebook.watchdog_lines() == []
    assert "PLAY [" not in rulebook.output()
    assert not rulebook.state_dir.exists()


def test_resolved_alerts_and_alerts_without_a_verdict_start_nothing(rulebook: Rulebook) -> None:
    resolved = alert("router", status="resolved")
    warning = alert("router", verdict=None, alertname="QuantumPendingEntryAgeing", severity="warning")
    other_verdict = alert("router", verdict="LAGGING")
    assert rulebook.post(notification(resolved, warning, other_verdict)) == 200
    rulebook.marker()
    output = rulebook.output()
    for logged in (resolved, warning, other_verdict):
        assert f"fingerprint={logged['fingerprint']}" in output, logged
    assert f"no action: status=resolved pipeline={PIPELINE} stage=router verdict=STALLED" in output
    assert rulebook.watchdog_lines() == []
    assert "PLAY [" not in output
    assert not rulebook.state_dir.exists()


@pytest.mark.parametrize("token", ["", "short-token"])
def test_no_webhook_without_a_long_token(tmp_path: Path, redis_server: RedisServer, token: str) -> None:
    inventory = write_inventory(tmp_path / "inventory", redis_server, tmp_path)
    book = start_rulebook(tmp_path, inventory, token)
    try:
        assert book.process is not None
        assert book.process.wait(timeout=60) != 0
        assert "QUANTUM_EDA_TOKEN" in book.output()
        assert not listening(book.port)
    finally:
        stop_rulebook(book)
