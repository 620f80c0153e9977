"""playbooks/awx.yml, the AWX objects as code. No AWX can be reached from here: the playbook is
checked by `ansible-playbook --syntax-check` (awx.awx resolved from .venv, as
scripts/bootstrap-venv.sh extracts it), and its job templates and surveys against the project:
each playbook exists, each survey variable is an option the run checks (run_guard) or one the
playbook reads, and each default (and each smallest number) is one the run accepts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import PROJECT_ROOT
from project_files import load_project_file

AWX = PROJECT_ROOT / "playbooks/awx.yml"
run_guard = load_project_file("filter_plugins/run_guard.py")
# Read by the playbooks themselves, not by a role (so not in run_guard's table).
PLAYBOOK_OPTIONS = {"pipeline_hosts", "rollback_run_id", "watchdog_serial"}


def play_vars() -> dict:
    return yaml.safe_load(AWX.read_text())[0]["vars"]


def templates() -> list[dict]:
    """The job templates, their shared questions ("{{ _awx_... }}") put in place."""
    shared = play_vars()
    resolved = []
    for template in shared["awx_job_templates"]:
        spec = []
        for question in template["spec"]:
            if isinstance(question, str):
                name = re.fullmatch(r"\{\{ (\w+) \}\}", question)
                assert name, question
                question = shared[name[1]]
            spec.append(question)
        resolved.append({**template, "spec": spec})
    return resolved


def test_the_playbook_passes_syntax_check():
    env = {**os.environ, "ANSIBLE_CONFIG": str(PROJECT_ROOT / "ansible.cfg")}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "--syntax-check", str(AWX)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_job_template_per_playbook():
    playbooks = {template["playbook"] for template in templates()}
    assert playbooks == {
        "playbooks/diagnose.yml",
        "recover.yml",
        "playbooks/watchdog.yml",
        "playbooks/rollback.yml",
    }
    assert all((PROJECT_ROOT / playbook).is_file() for playbook in playbooks)


@pytest.mark.parametrize("template", templates(), ids=lambda t: t["playbook"])
def test_each_survey_asks_for_options_the_run_knows(template):
    variables = [question["variable"] for question in template["spec"]]
    assert len(variables) == len(set(variables)), variables
    assert variables[0] == "pipeline_hosts"
    known = set(run_guard.RUN_OPTIONS) | PLAYBOOK_OPTIONS
    assert set(variables) <= known, set(variables) - known


@pytest.mark.parametrize("template", templates(), ids=lambda t: t["playbook"])
def test_each_default_is_one_the_run_accepts(template):
    for question in template["spec"]:
        name, default = question["variable"], question["default"]
        if question["type"] == "integer":
            assert isinstance(default, int) and question["min"] <= default <= question["max"], name
        if question["type"] == "multiplechoice":
            assert default in question["choices"], name
        if name in run_guard.RUN_OPTIONS:
            # The default and, for a number, the smallest answer the survey lets through.
            for answer in (
                (default, question.get("min", default)) if question["type"] == "integer" else (default,)
            ):
                assert run_guard.run_option_problems({name: answer}) == [], (name, answer)
