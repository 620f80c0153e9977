"""The unit_backup role through the real `ansible-playbook` on localhost, against unit files
under a temporary directory: one evidence_files call leaves what playbooks/rollback.yml reads
(the copies, SHA256SUMS that `sha256sum -c` passes, manifest.json's `files`) and the role's
result `unit_backup_result`; in check mode it writes nothing."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import PROJECT_ROOT

RUN_ID = "20261203T101500Z-ab12"
TASKS = ["Copy the unit files and drop-ins into the run's backup, with SHA256SUMS and the restore manifest"]


def run_role(tmp_path: Path, units: dict, *, check: bool = False) -> dict[str, dict]:
    """Run unit_backup once; each of its tasks' results by name."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars": {
            "preflight_result": {"run_id": RUN_ID, "mode": "TESTNET"},
            "evidence_result": {"dir": str(tmp_path / "evidence" / RUN_ID), "before": {"services": units}},
            "pipeline": {"stages": [{"name": "execution", "unit": "quantum-execution"},
                                    {"name": "engine", "unit": "quantum-ai-engine"}]},
        },
        "tasks": [{"name": "Back up", "ansible.builtin.include_role": {"name": "unit_backup"}}],
    }], sort_keys=False))
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(PROJECT_ROOT / "ansible.cfg"),
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
    )
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", str(playbook)]
    proc = subprocess.run([*cmd, *(["--check"] if check else [])], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tasks = json.loads(proc.stdout)["plays"][0]["tasks"]
    return {t["task"]["name"].removeprefix("unit_backup : "): t["hosts"]["localhost"] for t in tasks}


def sha256_of(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def units_on(root: Path) -> dict:
    """Two units as pipeline_snapshot reads them: one with a drop-in and a drop-in that vanished
    before the backup, one without drop-ins."""
    system = root / "etc/systemd/system"
    execution = system / "quantum-execution.service"
    (system / "quantum-execution.service.d").mkdir(parents=True)
    (system / "quantum-execution.service").write_text("[Service]\nExecStart=/opt/quantum/execution\n")
    (system / "quantum-execution.service.d/override.conf").write_text("[Service]\nEnvironment=X=1\n")
    (system / "quantum-ai-engine.service").write_text("[Service]\nExecStart=/opt/quantum/engine\n")
    return {
        "quantum-execution": {
            "fragment_path": str(execution),
            "drop_in_paths": [f"{execution}.d/override.conf", str(system / "gone.conf")],
        },
        "quantum-ai-engine": {
            "fragment_path": str(system / "quantum-ai-engine.service"),
            "drop_in_paths": [],
        },
    }


def test_one_task_backs_up_the_units_for_the_rollback(tmp_path: Path) -> None:
    units = units_on(tmp_path / "target")
    results = run_role(tmp_path, units)
    role_tasks = [n for n in results if n != "Back up" and not n.startswith("Validating arguments")]
    assert role_tasks == TASKS
    backup = tmp_path / "evidence" / RUN_ID / "backup"
    paths = [units["quantum-execution"]["fragment_path"], *units["quantum-execution"]["drop_in_paths"][:1],
             units["quantum-ai-engine"]["fragment_path"]]
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=backup, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout == "".join(f"{p.lstrip('/')}: OK\n" for p in paths)
    manifest = json.loads((backup / "manifest.json").read_text())
    assert (manifest["run_id"], manifest["mode"]) == (RUN_ID, "TESTNET")
    assert manifest["units"] == ["quantum-execution", "quantum-ai-engine"]
    kinds = [("quantum-execution", "fragment"), ("quantum-execution", "drop-in"),
             ("quantum-ai-engine", "fragment")]
    assert manifest["files"] == [
        {"unit": unit, "kind": kind, "path": path, "checksum": sha256_of(path), "backup": f"{backup}{path}",
         "saved": True}
        for (unit, kind), path in zip(kinds, paths, strict=True)
    ]
    for entry in manifest["files"]:
        assert Path(entry["backup"]).read_bytes() == Path(entry["path"]).read_bytes()
    assert results[TASKS[0]]["entries"] == manifest["files"]


def test_check_mode_writes_nothing_and_lists_what_would_be_saved(tmp_path: Path) -> None:
    units = units_on(tmp_path / "target")
    results = run_role(tmp_path, units, check=True)
    assert not (tmp_path / "evidence").exists()
    files = results[TASKS[0]]["entries"]
    assert [(f["unit"], f["kind"], f["saved"]) for f in files] == [
        ("quantum-execution", "fragment", False), ("quantum-execution", "drop-in", False),
        ("quantum-ai-engine", "fragment", False),
    ]
