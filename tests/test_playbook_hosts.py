"""The playbooks run on the inventory group named by `pipeline_hosts` (an AWX inventory names
its groups freely), `quantum_pipeline` when it is unset. Through the real ansible-playbook
(--list-hosts: nothing is contacted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT

PLAYBOOKS = ["recover.yml", "playbooks/diagnose.yml", "playbooks/rollback.yml"]


def _list_hosts(playbook: str, inventory: Path, *args: str) -> list[str]:
    command = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        str(inventory),
        "--list-hosts",
        playbook,
        *args,
    ]
    env = {**os.environ, "ANSIBLE_CONFIG": str(PROJECT_ROOT / "ansible.cfg")}
    done = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    # "  play #1 (GROUP): NAME\tTAGS: []" then "    pattern: [...]", "    hosts (N):", one host a line.
    lines = [line.strip() for line in done.stdout.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("hosts ("))
    hosts = []
    for line in lines[start + 1 :]:
        if not line:
            break
        hosts.append(line)
    return hosts


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("inventory") / "hosts.yml"
    path.write_text(
        "all:\n"
        "  children:\n"
        "    trading_redis:\n"
        "      hosts: {awx-host-1: {ansible_connection: local}}\n"
        "    quantum_pipeline:\n"
        "      hosts: {default-host: {ansible_connection: local}}\n"
    )
    return path


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_default_group(playbook: str, inventory: Path) -> None:
    assert _list_hosts(playbook, inventory) == ["default-host"]


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_group_named_by_pipeline_hosts(playbook: str, inventory: Path) -> None:
    assert _list_hosts(playbook, inventory, "-e", "pipeline_hosts=trading_redis") == ["awx-host-1"]


def _list(playbook: str, inventory: Path, *args: str) -> str:
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), playbook, *args]
    env = {**os.environ, "ANSIBLE_CONFIG": str(PROJECT_ROOT / "ansible.cfg")}
    done = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_recover_lists_a_tag_per_step(inventory: Path) -> None:
    """`--list-tags` names every step; `--tags <step>` selects it, with preflight (the mode
    gate, the lock), the report and the lock's release, which run whatever the tags."""
    out = _list("recover.yml", inventory, "--list-tags")
    listed = out.split("TASK TAGS: [", 1)[1].split("]", 1)[0].split(", ")
    assert set(listed) == {
        "always", "evidence", "evidence_before", "unit_backup", "consumer_recovery", "governor",
        "service_restart", "stream_verify", "evidence_after",
    }
    tasks = _list("recover.yml", inventory, "--list-tasks", "--tags", "governor")
    assert "Preflight (mode gate, run lock, Redis client, pipeline definition)\tTAGS: [always]" in tasks
    assert "Reset a leftover governor counter\tTAGS: [governor]" in tasks
    assert "Recover consumers" not in tasks
