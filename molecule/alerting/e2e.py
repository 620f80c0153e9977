#!/usr/bin/env python3
"""The end-to-end alerting test's driver (molecule/alerting's verify runs it on the controller):
the real chain of lab/alerting_stack.py against the scenario's container, in two phases.

    e2e.py SETTINGS_JSON WORKDIR

SETTINGS_JSON: {"container", "pipeline" (the inventory's, with this host's Redis port),
"textfile_dir" (the host directory mounted as the container's textfile directory),
"watchdog_vars" (the rulebook's runs' group_vars), "quiet_s", "hang_stage", "heal_timeout_s"}.

1. quiet: the pipeline flows, healthy, for quiet_s; Prometheus's and Alertmanager's alerts are
   sampled every 2 s, and at the end `count_over_time(ALERTS[...])` covers the whole time the
   rules were loaded;
2. hang: `qt-lab hang STAGE` (SIGSTOP of the stage's consumer), then wait for the watchdog's
   ledger record of the run the rulebook started, then `qt-lab wait-flow`.

Prints one JSON object of what was seen, for the verify's asserts (it asserts nothing itself),
and always stops the daemons it started, by their PIDs.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

# lab/ is no package: alerting_stack is found through its path.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lab"))
import alerting_stack

# The rulebook's own lines: a run it starts, an alert it only logs, a playbook that runs,
# a notification Alertmanager posted.
RUN_LINE = "watchdog: "
LOGGED_LINE = "no action: "
PLAY_LINE = "PLAY [Watch the pipeline"


def alert_names(alerts: list[dict[str, Any]]) -> list[str]:
    return sorted({f"{a['labels']['alertname']}/{a['labels'].get('stage', '')}" for a in alerts})


def quiet_phase(stack: alerting_stack.Stack, clock: alerting_stack.LineClock, settings: dict) -> dict:
    container, name = settings["container"], settings["pipeline"]["name"]
    before = alerting_stack.ledger(container, name)
    started = time.time()
    seen_prometheus: set[str] = set()
    seen_alertmanager: set[str] = set()
    samples = 0
    while time.time() - started < settings["quiet_s"]:
        seen_prometheus.update(alert_names(stack.prometheus_alerts()))
        seen_alertmanager.update(alert_names(stack.alertmanager_alerts()))
        samples += 1
        time.sleep(2)
    # Every evaluation since the rules were loaded (the stack's start), pending ones included.
    since_rules = math.ceil(time.time() - stack.rules_loaded_at) + 1
    over_time = stack.query(f"count_over_time(ALERTS[{since_rules}s])")
    flow = alerting_stack.docker_exec(container, "qt-lab", "wait-flow", "--timeout", "30")
    return {
        "seconds": round(time.time() - started, 1),
        "samples": samples,
        "prometheus_alerts_seen": sorted(seen_prometheus),
        "alertmanager_alerts_seen": sorted(seen_alertmanager),
        "alerts_over_time_range_s": since_rules,
        "alerts_over_time": over_time,
        "rulebook_runs": clock.matching(RUN_LINE),
        "rulebook_logged": clock.matching(LOGGED_LINE),
        "rulebook_plays": len(clock.matching(PLAY_LINE)),
        "notifications_posted": clock.containing(f"POST {alerting_stack.WEBHOOK_PATH} "),
        "ledger_before": len(before),
        "ledger_after": len(alerting_stack.ledger(container, name)),
        "flowing_rc": flow.returncode,
        "flowing": flow.stdout.strip(),
    }


def hang_phase(stack: alerting_stack.Stack, clock: alerting_stack.LineClock, settings: dict) -> dict:
    container, name = settings["container"], settings["pipeline"]["name"]
    before = alerting_stack.ledger(container, name)
    hang = alerting_stack.docker_exec(container, "qt-lab", "hang", settings["hang_stage"])
    # The process is stopped when qt-lab returns (it first lets the stage take its entries).
    hung_at = time.time()
    fired: set[str] = set()
    records = before
    while time.time() - hung_at < settings["heal_timeout_s"]:
        fired.update(alert_names([a for a in stack.prometheus_alerts() if a["state"] == "firing"]))
        records = alerting_stack.ledger(container, name)
        if len(records) > len(before):
            break
        time.sleep(0.5)
    recorded_at = time.time()
    flow = alerting_stack.docker_exec(container, "qt-lab", "wait-flow", "--timeout", "60")
    flowing_at = time.time()

    def since_hang(prefix: str) -> float | None:
        seen = clock.first(prefix, after=hung_at - 1)
        return round(seen - hung_at, 1) if seen is not None else None

    return {
        "hang_rc": hang.returncode,
        "hang": hang.stdout.strip() or hang.stderr.strip(),
        "alerts_fired": sorted(fired),
        "rulebook_runs": clock.matching(RUN_LINE),
        "new_records": records[len(before) :],
        "seconds_to_rule": since_hang(RUN_LINE),
        "seconds_to_play": since_hang(PLAY_LINE),
        "seconds_to_record": round(recorded_at - hung_at, 1),
        "seconds_to_flowing": round(flowing_at - hung_at, 1),
        "flowing_rc": flow.returncode,
        "flowing": flow.stdout.strip() or flow.stderr.strip(),
    }


def main(argv: list[str]) -> int:
    settings = json.loads(Path(argv[0]).read_text())
    workdir = Path(argv[1])
    workdir.mkdir(parents=True, exist_ok=True)
    inventory = alerting_stack.write_inventory(
        workdir / "inventory", settings["container"], settings["pipeline"], settings["watchdog_vars"]
    )
    stack = alerting_stack.Stack(
        workdir=workdir / "stack",
        pipeline=settings["pipeline"],
        textfile_dir=Path(settings["textfile_dir"]),
        inventory_dir=inventory,
    )
    result: dict[str, Any] = {"workdir": str(workdir)}
    clock = None
    try:
        started = time.monotonic()
        stack.start()
        result["stack"] = stack.describe() | {"start_s": round(time.monotonic() - started, 1)}
        clock = alerting_stack.LineClock(stack.log_path("rulebook"))
        clock.start()
        result["quiet"] = quiet_phase(stack, clock, settings)
        result["hang"] = hang_phase(stack, clock, settings)
    except alerting_stack.StackError as exc:
        result["error"] = str(exc)
    finally:
        if clock is not None:
            clock.stop()
        result["stopped"] = stack.stop()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
