"""The playbooks as AWX runs them: through `ansible_runner.run()` with a private data dir that
holds its own inventory (the pipeline definition as inventory variables, the way an AWX
inventory brings its own), the survey's answers in `env/extravars` and a copy of the project
without `inventory/`, so the project's group_vars cannot be what defines the pipeline. Each run
is judged by what AWX reads: the status, rc and per-host stats, and the `set_stats` summary
(`quantum_remediation`) in the artifacts' playbook_on_stats event; and by what it left behind
(the real redis-server's contents, the evidence, the ledger, the lock).

Against a real redis-server on a free loopback port, with a connection `local`. The units are
read through a stand-in `systemctl` on PATH (this machine's PID 1 is not systemd; the Molecule
scenarios read real units): each unit's main process is a real `sleep` this test starts, and
the seed's hang is that process stopped with SIGSTOP. Without systemd nothing can be restarted,
so recover.yml is checked on the decisions that need no restart: a healthy pipeline (nothing to
do, exit 0) and the hang on LIVE (the plan only, nothing changed, exit non-zero)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import ansible_runner
import pytest
import redis
import yaml
from conftest import PROJECT_ROOT, RedisServer, dump_redis

# The controller's side (ansible-runner): the first server of the matrix is enough.
pytestmark = pytest.mark.controller

DECISIONS = "quantum:stream:ai.decision"
INTENTS = "quantum:stream:trade.intent"
RESULTS = "quantum:stream:trade.result"
UNITS = {
    "ai_engine": "quantum-ai-engine",
    "router": "quantum-ai-strategy-router",
    "execution": "quantum-execution",
}
GROUP = "trading_redis"  # not the playbooks' default group: the survey names it (pipeline_hosts)
HOST = "awx-host-1"
# What an AWX project checkout needs to run the playbooks (inventory/ is left out on purpose).
PROJECT_FILES = ["ansible.cfg", "recover.yml"]
PROJECT_DIRS = ["playbooks", "roles", "collections", "filter_plugins"]
# The one task a plan-only run reports `changed`: the restart run in check mode says what it
# would do (every unit `planned`, none restarted), as check mode should.
PLANNED_RESTART = "Restart the units, downstream first, each until its work moves"
# `systemctl show ... -- UNIT...`: one loaded, active block per unit, whose MainPID is the unit's
# in QT_MAIN_PIDS ("unit=pid ...").
SYSTEMCTL = """#!/bin/sh
while [ "$1" != "--" ]; do shift; done
shift
for unit in "$@"; do
  pid=0
  for pair in $QT_MAIN_PIDS; do [ "${pair%%=*}" = "$unit" ] && pid=${pair#*=}; done
  printf 'Id=%s.service\\nLoadState=loaded\\nActiveState=active\\nSubState=running\\n' "$unit"
  printf 'MainPID=%s\\nNRestarts=0\\nActiveEnterTimestampMonotonic=0\\n\\n' "$pid"
done
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project as an AWX project update leaves it, without the project's inventories."""
    where = tmp_path_factory.mktemp("awx") / "project"
    where.mkdir()
    for name in PROJECT_FILES:
        shutil.copy2(PROJECT_ROOT / name, where / name)
    for name in PROJECT_DIRS:
        shutil.copytree(PROJECT_ROOT / name, where / name, ignore=shutil.ignore_patterns("__pycache__"))
    assert not (where / "inventory").exists()
    return where


@pytest.fixture
def main_processes() -> Iterator[dict[str, subprocess.Popen]]:
    """One real process per unit, killed by its PID afterwards."""
    processes = {unit: subprocess.Popen(["sleep", "600"]) for unit in UNITS.values()}
    try:
        yield processes
    finally:
        for process in processes.values():
            process.kill()
            process.wait()


def flowing(client: redis.Redis) -> None:
    """Every stage caught up: each group has read and acknowledged everything (quiet, OK)."""
    for stream in (DECISIONS, INTENTS, RESULTS):
        client.xadd(stream, {"n": 1})
    for stream, group, consumer in ((DECISIONS, "router", "router-1"), (INTENTS, "execution", "execution-1")):
        client.xgroup_create(stream, group, id="0")
        for _, entries in client.xreadgroup(group, consumer, {stream: ">"}):
            client.xack(stream, group, *[entry_id for entry_id, _ in entries])


def hang_the_router(client: redis.Redis, processes: dict[str, subprocess.Popen]) -> None:
    """The seed's incident: router-1 holds an entry, another waits, its process is stopped
    while its unit stays active."""
    client.xadd(DECISIONS, {"n": 1})
    client.xreadgroup("router", "router-1", {DECISIONS: ">"})
    client.xadd(DECISIONS, {"n": 2})
    processes[UNITS["router"]].send_signal(signal.SIGSTOP)


def pipeline(server: RedisServer, mode_file: Path) -> dict:
    return {
        "name": "quantum-trader",
        "redis": server.connection,
        "mode_file": str(mode_file),
        "mode_variable": "BINANCE_TESTNET",
        "governor": {
            "key": "quantum:governor",
            "date_field": "date",
            "count_field": "trades_today",
            "limit_field": "daily_limit",
            "counted_stream": RESULTS,
        },
        "stages": [
            {"name": "ai_engine", "unit": UNITS["ai_engine"], "output_stream": DECISIONS, "governed": True},
            {"name": "router", "unit": UNITS["router"], "input_stream": DECISIONS, "group": "router",
             "consumer": "router-1", "output_stream": INTENTS},
            {"name": "execution", "unit": UNITS["execution"], "input_stream": INTENTS, "group": "execution",
             "consumer": "execution-1", "output_stream": RESULTS},
        ],
    }  # fmt: skip


def awx_search_paths(private_data_dir: Path) -> dict[str, str]:
    """The search paths AWX gives a job: the project sync's requirements first, then the
    project's ansible.cfg values (relative: the job runs in the project), then Ansible's
    defaults. The environment outranks ansible.cfg: the project must be found this way too."""
    return {
        "ANSIBLE_COLLECTIONS_PATH": f"{private_data_dir}/requirements_collections:collections:"
        "~/.ansible/collections:/usr/share/ansible/collections",
        "ANSIBLE_ROLES_PATH": f"{private_data_dir}/requirements_roles:roles:"
        "~/.ansible/roles:/usr/share/ansible/roles:/etc/ansible/roles",
    }


class Job:
    """One private data dir, as AWX lays it out for a job: inventory/, env/ and artifacts/."""

    def __init__(self, base: Path, project: Path, server: RedisServer, processes: dict, mode: str) -> None:
        self.base, self.project = base, project
        # The target's own directories (/run, /var/lib on a real host) exist before the run.
        self.state = base / "target"
        self.state.mkdir()
        (base / "testnet.env").write_text(f"API_KEY=k\nBINANCE_TESTNET={mode}\n")
        self.pipeline = pipeline(server, base / "testnet.env")
        self.pids = " ".join(f"{unit}={process.pid}" for unit, process in processes.items())
        bin_dir = base / "bin"
        bin_dir.mkdir()
        (bin_dir / "systemctl").write_text(SYSTEMCTL)
        (bin_dir / "systemctl").chmod(0o755)
        self.path = f"{bin_dir}:{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"

    def inventory(self, hosts: list[str]) -> None:
        """The AWX inventory: its own group, its own host variables, the pipeline among them."""
        host_vars = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
        group = {"hosts": {host: dict(host_vars) for host in hosts}, "vars": {"pipeline": self.pipeline}}
        (self.base / "inventory").mkdir()
        (self.base / "inventory" / "hosts.yml").write_text(
            yaml.safe_dump({"all": {"children": {GROUP: group}}})
        )

    def run(self, playbook: str, hosts: tuple[str, ...] = (HOST,), **survey) -> ansible_runner.Runner:
        self.inventory(list(hosts))
        extravars = {
            "pipeline_hosts": GROUP,
            "evidence_root": str(self.state / "evidence"),
            "report_fetch_root": str(self.base / "fetched"),
            "preflight_lock_path": str(self.state / "pipeline.lock"),
            "watchdog_state_dir": str(self.state / "watchdog"),
            "watchdog_textfile_dir": "",
            **survey,
        }
        env = self.base / "env"
        env.mkdir()
        (env / "extravars").write_text(yaml.safe_dump(extravars))
        envvars = {"PATH": self.path, "QT_MAIN_PIDS": self.pids, **awx_search_paths(self.base)}
        (env / "envvars").write_text(yaml.safe_dump(envvars))
        return ansible_runner.run(
            private_data_dir=str(self.base),
            project_dir=str(self.project),
            playbook=playbook,
            ident="job",
            quiet=True,
            timeout=300,
        )


@pytest.fixture
def job(tmp_path, project, redis_server, redis_client, main_processes):
    def make(mode: str) -> Job:
        return Job(tmp_path, project, redis_server, main_processes, mode)

    return make


def summary(runner: ansible_runner.Runner) -> dict:
    """The set_stats data of the run, as AWX stores it: from the artifacts on disk."""
    events = [
        json.loads(path.read_text()) for path in (Path(runner.config.artifact_dir) / "job_events").iterdir()
    ]
    stats = [event for event in events if event["event"] == "playbook_on_stats"]
    assert len(stats) == 1, [event["event"] for event in events]
    return stats[0]["event_data"]["artifact_data"]


def changed_tasks(runner: ansible_runner.Runner) -> dict[str, dict]:
    return {
        event["event_data"]["task"]: event["event_data"]["res"]
        for event in runner.events
        if event["event"] == "runner_on_ok" and event["event_data"]["res"].get("changed")
    }


def ended_with(runner: ansible_runner.Runner) -> list[str]:
    return [
        event["event_data"]["res"].get("msg", "")
        for event in runner.events
        if event["event"] == "runner_on_failed"
    ]


def explain(runner: ansible_runner.Runner) -> str:
    return f"status={runner.status} rc={runner.rc}\n{runner.stdout.read()[-4000:]}"


def ledger(job: Job) -> list[dict]:
    path = job.state / "watchdog" / "quantum-trader" / "decisions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_diagnose_reads_the_hang_on_live_and_changes_nothing(job, redis_client, main_processes):
    flowing(redis_client)
    hang_the_router(redis_client, main_processes)
    before = dump_redis(redis_client)
    this = job("false")
    runner = this.run("playbooks/diagnose.yml")
    assert (runner.status, runner.rc) == ("successful", 0), explain(runner)
    assert runner.stats["failures"] == {} and runner.stats["changed"] == {}
    assert runner.stats["ok"][HOST] > 0
    brief = summary(runner)["quantum_remediation"][HOST]
    assert (brief["mode"], brief["outcome"], brief["stop_point"]) == ("LIVE", "DIAGNOSED", "router")
    assert brief["units_restarted"] == []
    # The report on the target, and its copy on the controller.
    assert Path(brief["report"]).is_file()
    assert (this.base / "fetched" / HOST / brief["run_id"] / "report" / "REPORT.md").is_file()
    assert dump_redis(redis_client) == before
    assert not (this.state / "pipeline.lock").exists()


def test_watchdog_on_a_healthy_pipeline_ends_well_host_by_host(job, redis_client):
    flowing(redis_client)
    before = dump_redis(redis_client)
    this = job("true")
    hosts = (HOST, "awx-host-2")
    runner = this.run("playbooks/watchdog.yml", hosts=hosts)
    assert (runner.status, runner.rc) == ("successful", 0), explain(runner)
    assert runner.stats["failures"] == {} and runner.stats["changed"] == {}
    assert set(runner.stats["ok"]) == set(hosts)
    # One host at a time (serial 1): the summary keeps every host's (aggregate).
    briefs = summary(runner)["quantum_remediation"]
    assert set(briefs) == set(hosts)
    for brief in briefs.values():
        assert (brief["mode"], brief["outcome"], brief["stop_point"]) == (
            "TESTNET",
            "HEALTHY (nothing to do)",
            None,
        )
    assert [record["decision"] for record in ledger(this)] == ["nothing_to_do", "nothing_to_do"]
    assert dump_redis(redis_client) == before


def test_watchdog_on_live_records_its_refusal_and_fails_the_job(job, redis_client, main_processes):
    flowing(redis_client)
    hang_the_router(redis_client, main_processes)
    before = dump_redis(redis_client)
    this = job("false")
    runner = this.run("playbooks/watchdog.yml")
    assert (runner.status, runner.rc) == ("failed", 2), explain(runner)
    assert runner.stats["failures"] == {HOST: 1}
    brief = summary(runner)["quantum_remediation"][HOST]
    assert (brief["mode"], brief["outcome"], brief["stop_point"]) == ("LIVE", "PLAN ONLY (LIVE)", "router")
    assert [(r["decision"], r["stop_point"]) for r in ledger(this)] == [("mode_refused", "router STALLED")]
    assert ended_with(runner) == [
        "Mode is LIVE: the pipeline needs healing (router STALLED) and the watchdog changed nothing; "
        "the plan above is what a TESTNET run would do."
    ]
    assert set(changed_tasks(runner)) == {PLANNED_RESTART}
    assert all(r["planned"] and not r["restarted"] for r in changed_tasks(runner)[PLANNED_RESTART]["results"])
    assert dump_redis(redis_client) == before
    assert not (this.state / "pipeline.lock").exists()


def test_recover_on_a_healthy_pipeline_has_nothing_to_do(job, redis_client):
    flowing(redis_client)
    before = dump_redis(redis_client)
    this = job("true")
    runner = this.run("recover.yml", evidence_window_s=5)
    assert (runner.status, runner.rc) == ("successful", 0), explain(runner)
    assert runner.stats["failures"] == {} and runner.stats["changed"] == {}
    brief = summary(runner)["quantum_remediation"][HOST]
    assert (brief["mode"], brief["outcome"], brief["verification_ok"]) == (
        "TESTNET",
        "HEALTHY (nothing to do)",
        None,
    )
    run_dir = this.state / "evidence" / brief["run_id"]
    assert (run_dir / "before").is_dir() and not (run_dir / "backup").exists()
    assert dump_redis(redis_client) == before
    assert not (this.state / "pipeline.lock").exists()


def test_recover_on_live_prints_the_plan_changes_nothing_and_fails_the_job(job, redis_client, main_processes):
    flowing(redis_client)
    hang_the_router(redis_client, main_processes)
    before = dump_redis(redis_client)
    this = job("false")
    runner = this.run("recover.yml")
    assert (runner.status, runner.rc) == ("failed", 2), explain(runner)
    assert runner.stats["failures"] == {HOST: 1}
    brief = summary(runner)["quantum_remediation"][HOST]
    assert (brief["mode"], brief["outcome"], brief["stop_point"]) == ("LIVE", "PLAN ONLY (LIVE)", "router")
    assert brief["units_restarted"] == []
    (ending,) = ended_with(runner)
    assert ending.startswith("Mode is LIVE (BINANCE_TESTNET=false in ") and "nothing was changed" in ending
    assert set(changed_tasks(runner)) == {PLANNED_RESTART}
    planned = changed_tasks(runner)[PLANNED_RESTART]["results"]
    assert [(r["unit"], r["planned"], r["restarted"]) for r in planned] == [
        (UNITS["execution"], True, False),
        (UNITS["router"], True, False),
    ]
    assert dump_redis(redis_client) == before
    assert main_processes[UNITS["router"]].poll() is None  # still there, still stopped: nobody restarted it
    # Evidence before, no after phase: nothing was changed, so there is nothing to verify.
    run_dir = this.state / "evidence" / brief["run_id"]
    assert (run_dir / "before" / "verdicts.json").is_file() and not (run_dir / "after").exists()
    assert not (this.state / "pipeline.lock").exists()
