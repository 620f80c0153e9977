"""The Prometheus alert rules of roles/monitoring: rendered from each inventory's `alerting` and
`pipeline` by the real playbook (playbooks/monitoring.yml through ansible-playbook, on localhost,
into a temporary directory), then checked by the real `promtool check rules` and unit-tested by
`promtool test rules` with tests/promtool/<inventory>.test.yml; a wrong expectation must fail.

No redis-server here: these tests are not marked `server` and run in the first pass of
scripts/run-pytest.sh only. promtool comes from Debian's prometheus (scripts/install-system-deps.sh).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import PROJECT_ROOT

INVENTORIES = ("lab", "lab-shop", "testnet")
UNIT_TESTED = ("lab", "testnet")
PROMTOOL_TESTS = PROJECT_ROOT / "tests" / "promtool"
VERDICT_ALERTS = {
    "QuantumStageStalled": "STALLED",
    "QuantumStageProcessStopped": "STALLED",
    "QuantumStageStopped": "STOPPED",
    "QuantumStageGroupMissing": "STOPPED",
    "QuantumStageBlocked": "BLOCKED",
}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is not installed: scripts/install-system-deps.sh installs Debian's prometheus.")
    return found


def run_monitoring_playbook(inventory: str, rules_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """playbooks/monitoring.yml with the inventory's group_vars, on a local host of its own
    group (monitoring_hosts) added by a second inventory source: never the inventory's own
    Prometheus hosts."""
    hosts = rules_dir.parent / f"{rules_dir.name}-hosts.yml"
    hosts.write_text(
        "all:\n  children:\n    alert_rules_test:\n      hosts:\n"
        "        prometheus-local:\n"
        f"          {{ansible_connection: local, ansible_python_interpreter: {sys.executable}}}\n"
    )
    command = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        str(PROJECT_ROOT / "inventory" / inventory),
        "-i",
        str(hosts),
        "playbooks/monitoring.yml",
        "-e",
        f"monitoring_rules_dir={rules_dir}",
        "-e",
        "monitoring_hosts=alert_rules_test",
        *args,
    ]
    env = {**os.environ, "ANSIBLE_CONFIG": str(PROJECT_ROOT / "ansible.cfg")}
    return subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{inventory: the rules file the playbook installed for it}, every inventory rendered once."""
    promtool()  # the role checks the file with promtool when it exists: make sure it does
    files = {}
    for inventory in INVENTORIES:
        rules_dir = tmp_path_factory.mktemp(f"rules-{inventory}")
        done = run_monitoring_playbook(inventory, rules_dir)
        assert done.returncode == 0, done.stdout + done.stderr
        found = list(rules_dir.glob("*.rules.yml"))
        assert len(found) == 1, found
        files[inventory] = found[0]
    return files


def alert_rules(path: Path) -> list[dict]:
    return [rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def promtool_test(rules: Path, test_text: str, workdir: Path) -> subprocess.CompletedProcess:
    """`promtool test rules` on test_text, with the rendered rules beside it."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(rules, workdir / rules.name)
    test_file = workdir / "alerts.test.yml"
    test_file.write_text(test_text)
    return subprocess.run(
        [promtool(), "test", "rules", test_file.name],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_promtool_checks_the_rules(rendered: dict[str, Path], inventory: str) -> None:
    rules = rendered[inventory]
    command = [promtool(), "check", "rules", str(rules)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


# inventory/lab-shop has the lab's thresholds: its rules are checked and compared with its
# pipeline, not unit-tested again.
@pytest.mark.parametrize("inventory", UNIT_TESTED)
def test_promtool_unit_tests_pass(rendered: dict[str, Path], inventory: str, tmp_path: Path) -> None:
    rules = rendered[inventory]
    done = promtool_test(rules, (PROMTOOL_TESTS / f"{inventory}.test.yml").read_text(), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_rules_follow_the_inventory(rendered: dict[str, Path], inventory: str) -> None:
    """One rule per consumer stage for STALLED and the absent consumer, the governed stage on
    BLOCKED, the inventory's thresholds, and every alert labelled pipeline and severity; the
    verdict alerts, and only they, carry the project's verdict."""
    rules = rendered[inventory]
    group_vars = PROJECT_ROOT / "inventory" / inventory / "group_vars" / "all"
    pipeline = yaml.safe_load((group_vars / "pipeline.yml").read_text())["pipeline"]
    alerting = yaml.safe_load((group_vars / "alerting.yml").read_text())["alerting"]
    consumers = [stage["name"] for stage in pipeline["stages"] if stage.get("input_stream")]
    governed = [stage["name"] for stage in pipeline["stages"] if stage.get("governed")]
    found = alert_rules(rules)

    def stages_of(alert: str) -> list[str]:
        return [
            rule["labels"]["stage"] for rule in found if rule["alert"] == alert and "stage" in rule["labels"]
        ]

    assert stages_of("QuantumStageStalled") == consumers
    assert stages_of("QuantumStageStopped") == consumers
    assert stages_of("QuantumStageBlocked") == governed
    for rule in found:
        assert rule["labels"]["pipeline"] == pipeline["name"], rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["labels"].get("verdict") == VERDICT_ALERTS.get(rule["alert"]), rule["alert"]
        assert f"-i inventory/{inventory} " in rule["annotations"]["command"], rule["alert"]
        assert f'pipeline="{pipeline["name"]}"' in rule["expr"], rule["alert"]
    stalled = next(rule for rule in found if rule["alert"] == "QuantumStageStalled")
    assert stalled["for"] == alerting["stalled_for"]
    assert f"> {alerting['stall_idle_s']}\n" in stalled["expr"]


def test_every_alert_fires_and_stays_silent_in_the_lab_tests(rendered: dict[str, Path]) -> None:
    """tests/promtool/lab.test.yml expects every alert of the lab's rules to fire somewhere
    and to stay silent somewhere."""
    names = {rule["alert"] for rule in alert_rules(rendered["lab"])}
    cases = [
        case
        for test in yaml.safe_load((PROMTOOL_TESTS / "lab.test.yml").read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    fires = {case["alertname"] for case in cases if case["exp_alerts"]}
    silent = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert names - fires == set()
    assert names - silent == set()


# Each mutation turns one right expectation of lab.test.yml into a wrong one.
WRONG_EXPECTATIONS = {
    "wrong verdict": (
        "              verdict: BLOCKED\n",
        "              verdict: STALLED\n",
    ),
    "silence expected while it fires": (
        "{eval_time: 9s, alertname: QuantumGovernorNearLimit, exp_alerts: []}",
        "{eval_time: 12s, alertname: QuantumGovernorNearLimit, exp_alerts: []}",
    ),
    "alert expected from a quiet consumer": (
        "      - {eval_time: 11m, alertname: QuantumStageStalled, exp_alerts: []}\n",
        "      - eval_time: 11m\n"
        "        alertname: QuantumStageStalled\n"
        "        exp_alerts: [{exp_labels: {pipeline: quantum-trader, stage: router, severity: critical}}]\n",
    ),
}


@pytest.mark.parametrize("mutation", WRONG_EXPECTATIONS)
def test_a_wrong_expectation_fails(rendered: dict[str, Path], mutation: str, tmp_path: Path) -> None:
    rules = rendered["lab"]
    right, wrong = WRONG_EXPECTATIONS[mutation]
    text = (PROMTOOL_TESTS / "lab.test.yml").read_text()
    assert text.count(right) == 1, f"the lab's test file changed: {right!r} is not found once"
    done = promtool_test(rules, text.replace(right, wrong), tmp_path)
    assert done.returncode != 0, done.stdout
    assert "FAILED" in done.stdout + done.stderr


def test_an_invalid_rule_is_not_installed(tmp_path: Path) -> None:
    """promtool check rules validates the rendered file before it is installed: a `for` that
    is not a Prometheus duration stops the play and leaves no file."""
    promtool()
    lab_alerting = PROJECT_ROOT / "inventory/lab/group_vars/all/alerting.yml"
    alerting = yaml.safe_load(lab_alerting.read_text())["alerting"]
    rules_dir = tmp_path / "rules"
    done = run_monitoring_playbook(
        "lab", rules_dir, "-e", json.dumps({"alerting": {**alerting, "stalled_for": "two seconds"}})
    )
    assert done.returncode != 0
    assert "failed to validate" in done.stdout
    assert list(rules_dir.glob("*.rules.yml")) == []


@pytest.mark.parametrize(
    ("extra", "expected"), [((), "default-host"), (("-e", "monitoring_hosts=prom"), "awx-host")]
)
def test_playbook_hosts(tmp_path: Path, extra: tuple[str, ...], expected: str) -> None:
    """playbooks/monitoring.yml runs on the group quantum_monitoring, or the one named by
    monitoring_hosts (an AWX inventory names its groups freely); nothing is contacted."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  children:\n"
        "    prom:\n      hosts: {awx-host: {ansible_connection: local}}\n"
        "    quantum_monitoring:\n      hosts: {default-host: {ansible_connection: local}}\n"
    )
    command = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        *("-i", str(inventory), "--list-hosts", "playbooks/monitoring.yml", *extra),
    ]
    env = {**os.environ, "ANSIBLE_CONFIG": str(PROJECT_ROOT / "ansible.cfg")}
    done = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    listed = done.stdout.split("hosts (1):", 1)[1].split()
    assert listed[0] == expected
