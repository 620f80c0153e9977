#!/usr/bin/env python3
"""Run a project playbook as AWX does, through ansible-runner, and print what a Molecule verify
asserts on as one JSON object: the runner's status and rc, the per-host stats and the report's
set_stats summary, all read from the run's artifacts (not from its output), and the output itself
for the sentences a person reads.

    run_playbook.py PRIVATE_DATA_DIR PROJECT_DIR INVENTORY PLAYBOOK [ANSIBLE-PLAYBOOK ARGS...]

The private data dir keeps the run's artifacts (artifacts/run/: job_events, rc, status, stdout)
for a failed scenario to be read.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import ansible_runner

STATS = ("ok", "changed", "failures", "skipped", "dark", "rescued", "ignored")
# The runner reads the run through a terminal: CRLF line ends, and colour unless turned off.
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def events(artifact_dir: Path) -> list[dict[str, Any]]:
    """The run's events, in their order (job_events/<counter>-<uuid>.json)."""
    paths = sorted((artifact_dir / "job_events").glob("*.json"), key=lambda p: int(p.name.split("-", 1)[0]))
    return [json.loads(path.read_text()) for path in paths]


def run_id(run_events: list[dict[str, Any]], summary: dict[str, Any]) -> str | None:
    """The run id preflight decided (its result, set with the mode, before any change), else the
    one the report handed to AWX; None when the run was refused before either."""
    for event in run_events:
        if event.get("event") != "runner_on_ok":
            continue
        facts = (event["event_data"].get("res") or {}).get("ansible_facts") or {}
        decided = (facts.get("preflight_result") or {}).get("run_id")
        if decided:
            return decided
    reported = [brief.get("run_id") for _, brief in sorted(summary.items()) if brief.get("run_id")]
    return reported[0] if reported else None


def main(argv: list[str]) -> int:
    private_data_dir, project_dir, inventory, playbook, *args = argv
    # A run name used twice in a scenario: its artifacts are the last run's alone.
    shutil.rmtree(Path(private_data_dir) / "artifacts" / "run", ignore_errors=True)
    Path(private_data_dir).mkdir(parents=True, exist_ok=True)
    # The ansible-playbook of this interpreter's venv, as the runner finds it on PATH.
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    runner = ansible_runner.run(
        private_data_dir=private_data_dir,
        project_dir=project_dir,
        inventory=inventory,
        playbook=playbook,
        cmdline=shlex.join(args),
        ident="run",
        quiet=True,
    )
    run_events = events(Path(runner.config.artifact_dir))
    stats = [event["event_data"] for event in run_events if event.get("event") == "playbook_on_stats"]
    data = stats[-1] if stats else {}
    hosts = sorted({host for key in STATS for host in data.get(key) or {}})
    summary = (data.get("artifact_data") or {}).get("quantum_remediation") or {}
    print(
        json.dumps(
            {
                "status": runner.status,
                "rc": runner.rc,
                "stats": {host: {key: (data.get(key) or {}).get(host, 0) for key in STATS} for host in hosts},
                "summary": summary,
                "run_id": run_id(run_events, summary),
                "stdout": ANSI.sub("", runner.stdout.read()).replace("\r\n", "\n"),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
