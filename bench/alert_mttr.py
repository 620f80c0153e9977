#!/usr/bin/env python3
"""Time from a hang to its alert-driven healing (a benchmark, not a test): the chain of docs/eda.md
(lab/alerting_stack.py: node-exporter, redis-exporter, Prometheus with the lab's rules,
Alertmanager, ansible-rulebook) against its own lab container, --trials times. Prints figures;
copy them into docs/benchmarks.md ("Alert to healing").

    .venv/bin/python bench/alert_mttr.py              # 5 trials
    .venv/bin/python bench/alert_mttr.py --trials 1   # a quick trial

What it does:
  1. brings up its own lab container (QT_LAB_CONTAINER, default qt-alert-mttr, Redis on
     127.0.0.1:QT_LAB_REDIS_PORT, default 6494) with lab/lab.sh, its textfile directory a host
     directory of the work directory (QT_LAB_TEXTFILE_DIR), the governor's limit raised to
     --daily-limit (the lab's 200 is reached after 100 s at 2/s and would fire the governor's
     alerts); refuses a container that already exists unless --reuse-lab;
  2. installs the metrics writer (playbooks/metrics.yml, every second as inventory/lab) and
     starts the stack; the rulebook's runs use a directory inventory of the work directory with
     the short windows of molecule/watchdog and a circuit breaker that never opens here;
  3. per trial: waits until the pipeline flows and neither Prometheus nor Alertmanager holds an
     alert, restarts ansible-rulebook (its throttle, once per pipeline and stage within 125 s,
     would hold back the next trial's run), then `qt-lab hang STAGE` (SIGSTOP of the stage's
     consumer; the clock starts when the command returns, the process stopped) and times, from
     there:
       alert   the first alert of the stage became active in Prometheus (activeAt: pending);
       rule    the rulebook's line for the run it starts (`watchdog: pipeline=...`);
       run     the watchdog's playbook started (its `PLAY [...]` line): healing starts;
       record  the watchdog's ledger record appeared (the run ended, decision `recover`);
       flow    the final stream's newest entry comes, stage by stage, from an entry the first
               stage produced after the hang (bench/mttr.py's Watcher): the pipeline flows again.
     The rulebook's lines carry no time: they are timed as they reach its log (every 50 ms,
     PYTHONUNBUFFERED).
  4. prints the median and min-max of each, the rule thresholds, the load average, date and commit.

Everything goes to --workdir (default .cache/alert-mttr/<UTC time>/): alert_mttr.log, trials.jsonl,
result.json, the stack's configurations and logs. The container is removed at the end (`docker rm
-f`, never `lab/lab.sh down`, which may stop the shared engine) unless --keep-lab; the daemons are
stopped by their PIDs even on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from mttr import Watcher
from soak import Lab

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT / "lab"))
import alerting_stack  # noqa: E402  (lab/ is no package: found through the path set above)

MILESTONES = ("alert", "rule", "run", "record", "flow")
WATCHDOG_VARS = {
    # molecule/watchdog's short windows: what is timed is the chain, not the verification window.
    "evidence_window_s": 3,
    "evidence_stall_idle_ms": 3000,
    "stream_verify_window_s": 6,
    "stream_verify_stall_idle_ms": 3000,
    "report_fetch": False,
    # Every trial is an automatic recovery: the breaker (3 an hour by default) must not open.
    "watchdog_max_recoveries": 1000,
    "metrics_writer_interval_s": 1,
}
OUT: Any = None


def log(msg: str) -> None:
    line = f"{datetime.now(UTC):%H:%M:%S} alert-mttr: {msg}"
    print(line, flush=True)
    if OUT is not None:
        OUT.write(line + "\n")
        OUT.flush()


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def parse_time(text: str) -> float:
    """Prometheus's RFC 3339 times (nanoseconds, Z) as Unix time."""
    head, _, frac = text.rstrip("Z").partition(".")
    seconds = datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    return seconds + (float("0." + frac.split("+")[0]) if frac else 0.0)


def wait_quiet(stack: alerting_stack.Stack, lab: Lab, timeout: float) -> None:
    """Until the pipeline flows and no alert is pending or firing anywhere."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not stack.prometheus_alerts() and not stack.alertmanager_alerts():
            lab.must("wait-flow", "--timeout", "30")
            return
        time.sleep(1)
    raise RuntimeError(f"alerts still active after {timeout} s: {stack.prometheus_alerts()}")


def trial(n: int, args: argparse.Namespace, stack: alerting_stack.Stack, lab: Lab, pipeline: dict) -> dict:
    stage = next(s for s in pipeline["stages"] if s["name"] == args.stage)
    wait_quiet(stack, lab, 180)
    stack.restart_rulebook()
    clock = alerting_stack.LineClock(stack.log_path("rulebook"))
    clock.start()
    before = alerting_stack.ledger(lab.container, pipeline["name"])
    record = {"trial": n, "load_before": load(), "at": datetime.now(UTC).strftime("%H:%M:%S")}
    try:
        lab.must("hang", args.stage)
        hung_at, hung_mono = time.time(), time.monotonic()
        # Built after the hang: its clock (the server's) starts with the consumer stopped.
        watcher = Watcher(args.redis_port, pipeline, stage, hung_mono)
        watcher.start()
        seen: dict[str, float] = {}
        records = before
        while time.time() - hung_at < args.timeout_s and len(seen) < len(MILESTONES):
            if "alert" not in seen:
                active = [
                    parse_time(a["activeAt"])
                    for a in stack.prometheus_alerts()
                    if a["labels"].get("stage") == args.stage
                ]
                if active:
                    seen["alert"] = min(active) - hung_at
            for name, prefix in (("rule", "watchdog: "), ("run", "PLAY [Watch the pipeline")):
                at = clock.first(prefix, after=hung_at)
                if at is not None:
                    seen.setdefault(name, at - hung_at)
            if "record" not in seen:
                records = alerting_stack.ledger(lab.container, pipeline["name"])
                if len(records) > len(before):
                    seen["record"] = time.time() - hung_at
            if "flow" in watcher.seen:
                seen["flow"] = watcher.seen["flow"]
            time.sleep(0.2)
        watcher.stop.set()
        watcher.join(5)
    finally:
        clock.stop()
    new = records[len(before) :]
    record.update({name: round(seen[name], 2) if name in seen else None for name in MILESTONES})
    record.update(
        {
            "decision": new[0].get("decision") if new else None,
            "outcome": new[0].get("outcome") if new else None,
            "run_id": new[0].get("run_id") if new else None,
            "run_duration_s": new[0].get("duration_s") if new else None,
            "runs_started": len(clock.matching("watchdog: ")),
            "load_after": load(),
        }
    )
    return record


def thresholds(rules_inventory: Path) -> dict:
    alerting = yaml.safe_load((rules_inventory / "group_vars" / "all" / "alerting.yml").read_text())[
        "alerting"
    ]
    keys = (
        "evaluation_interval",
        "stall_idle_s",
        "stalled_for",
        "stopped_for",
        "pending_age_s",
        "pending_for",
    )
    return {key: alerting.get(key) for key in keys}


def summary(trials: list[dict]) -> dict:
    figures = {}
    for name in MILESTONES:
        values = [t[name] for t in trials if t[name] is not None]
        figures[name] = {
            "median": round(statistics.median(values), 2) if values else None,
            "min": min(values) if values else None,
            "max": max(values) if values else None,
            "n": len(values),
        }
    return figures


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--stage", default="router", help="the consumer stage to hang (default router)")
    parser.add_argument("--timeout-s", type=float, default=180, help="per trial, for every milestone")
    parser.add_argument("--daily-limit", type=int, default=1_000_000)
    parser.add_argument("--container", default=os.environ.get("QT_LAB_CONTAINER", "qt-alert-mttr"))
    parser.add_argument("--redis-port", type=int, default=int(os.environ.get("QT_LAB_REDIS_PORT", "6494")))
    parser.add_argument("--workdir", type=Path)
    parser.add_argument(
        "--reuse-lab", action="store_true", help="use an existing container (its Redis flushed)"
    )
    parser.add_argument("--keep-lab", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    global OUT
    args = parse_args(argv)
    started = datetime.now(UTC)
    workdir = (args.workdir or PROJECT_ROOT / ".cache" / "alert-mttr" / f"{started:%Y%m%dT%H%M%SZ}").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    OUT = (workdir / "alert_mttr.log").open("a")
    commit = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    log(f"workdir {workdir}, commit {commit}, load {load()}")

    exists = subprocess.run(["docker", "inspect", args.container], capture_output=True).returncode == 0
    if exists and not args.reuse_lab:
        log(f"container {args.container} already exists: remove it, or pass --reuse-lab")
        return 2
    textfile = workdir / "textfile"
    textfile.mkdir(exist_ok=True)
    lab = Lab(args.container, args.redis_port, None)
    lab.env["QT_LAB_TEXTFILE_DIR"] = str(textfile)
    stack = None
    try:
        lab.up()
        lab.must("configure", "--daily-limit", str(args.daily_limit))
        pipeline = yaml.safe_load((PROJECT_ROOT / "inventory/lab/group_vars/all/pipeline.yml").read_text())[
            "pipeline"
        ]
        pipeline["redis"]["port"] = args.redis_port
        inventory = alerting_stack.write_inventory(
            workdir / "inventory", args.container, pipeline, WATCHDOG_VARS
        )
        subprocess.run(
            [str(PROJECT_ROOT / ".venv/bin/ansible-playbook"), "-i", str(inventory), "playbooks/metrics.yml"],
            cwd=PROJECT_ROOT,
            env={**os.environ, "ANSIBLE_CONFIG": str(PROJECT_ROOT / "ansible.cfg")},
            stdout=(workdir / "metrics-writer.log").open("w"),
            stderr=subprocess.STDOUT,
            check=True,
        )
        stack = alerting_stack.Stack(
            workdir=workdir / "stack", pipeline=pipeline, textfile_dir=textfile, inventory_dir=inventory
        )
        stack.start()
        log(f"stack ready: {stack.ports}")
        trials = []
        for n in range(1, args.trials + 1):
            result = trial(n, args, stack, lab, pipeline)
            trials.append(result)
            with (workdir / "trials.jsonl").open("a") as out:
                out.write(json.dumps(result) + "\n")
            log(
                f"trial {n}: "
                + ", ".join(f"{name} {result[name]} s" for name in MILESTONES)
                + f"; {result['decision']} {result['outcome']} (run {result['run_id']},"
                f" {result['run_duration_s']} s); load {result['load_before']} -> {result['load_after']}"
            )
        figures = summary(trials)
        result = {
            "date": started.strftime("%Y-%m-%d %H:%M UTC"),
            "commit": commit,
            "trials": len(trials),
            "stage": args.stage,
            "thresholds": thresholds(stack.rules_inventory),
            "alertmanager": {"group_wait": stack.group_wait, "group_interval": stack.group_interval},
            "watchdog_vars": WATCHDOG_VARS,
            "figures": figures,
            "load_start_end": [trials[0]["load_before"], load()],
        }
        (workdir / "result.json").write_text(json.dumps(result, indent=2))
        log(f"thresholds {result['thresholds']}, Alertmanager {result['alertmanager']}")
        for name in MILESTONES:
            fig = figures[name]
            log(
                f"hang -> {name}: median {fig['median']} s (min {fig['min']}, max {fig['max']}, n {fig['n']})"
            )
        first, last = result["load_start_end"]
        log(f"load average {first} at the start, {last} at the end")
        return 0
    finally:
        if stack is not None:
            log(f"stopped: {', '.join(stack.stop())}")
        if not args.keep_lab:
            lab.remove()
            log(f"container {args.container} removed")


if __name__ == "__main__":
    sys.exit(main())
