#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# The watchdog's memory on the target: its decisions, its pause switch, its circuit breaker.
from __future__ import annotations

DOCUMENTATION = r"""
---
module: watchdog_ledger
short_description: Read and record a pipeline watchdog's decisions, pause switch and circuit breaker
description:
  - The ledger is a directory per pipeline under O(root) on the target. It holds C(decisions.jsonl),
    one JSON object per line and per decision (when, which run, what it decided and why, how the
    recovery ended and what it moved), and may hold C(paused), the pause switch an on-call
    engineer creates on the host (C(echo "reason" > .../paused)) to turn automatic healing off.
  - Every call reads the ledger and says whether automatic healing is held back this run
    (RV(hold_reason)), by the pause switch (the file, or O(paused) from the inventory or an AWX
    survey) or by the circuit breaker (RV(breaker_open)), open once O(max_recoveries) automatic
    recoveries (decision V(recover)) ran within the last O(window_s) seconds.
  - With O(record) it appends that decision, under an exclusive lock on the ledger file (two
    runs never interleave a line); records older than O(retention_s) are dropped at the same time,
    except the last recovery. With O(textfile_dir) it then writes the watchdog's metrics there,
    atomically, in node_exporter's textfile format (C(quantum_remediation_PIPELINE.prom)).
  - The state is kept on the target, not on the controller, so that an AWX job (a new container
    each time) and a cron run on the ops box count the same recoveries.
version_added: "1.6.0"
author:
  - quantum-remediation maintainers (@quantum-remediation)
options:
  root:
    description: The directory under which each pipeline's ledger directory is kept.
    type: path
    default: /var/lib/quantum-remediation/watchdog
  pipeline:
    description: The pipeline's name (C(pipeline.name)); one path component under O(root).
    type: str
    required: true
  paused:
    description: The pause switch given as data (inventory, AWX survey); the file C(paused) is the other.
    type: bool
    default: false
  max_recoveries:
    description:
      - Automatic recoveries allowed within O(window_s) before the circuit breaker opens (0 never heals).
    type: int
    default: 3
  window_s:
    description: The circuit breaker's window, in seconds.
    type: int
    default: 3600
  retention_s:
    description:
      - Records older than this many seconds are dropped when a record is written (the last recovery
        is kept).
    type: int
    default: 604800
  record:
    description:
      - The decision to append. C(decision) is one of V(nothing_to_do), V(recover), V(paused),
        V(breaker_open), V(mode_refused), V(check_mode), V(failed); C(run_id) names the run. Any
        other key is kept as given (C(reason), C(outcome), C(verdicts), C(duration_s),
        C(entries_moved), C(consumers_retired), C(units_restarted) are read by the metrics).
      - The module adds C(time) (Unix time, the target's clock) and C(at) (ISO 8601, UTC).
    type: dict
  textfile_dir:
    description:
      - With O(record), the node_exporter textfile directory the watchdog's metrics are written
        to (Debian's C(/var/lib/prometheus/node-exporter)). Nothing is written when it is not set
        or does not exist (a warning says so).
    type: path
attributes:
  check_mode:
    description: Reads in check mode; records and writes nothing, and says so.
    support: full
  diff_mode:
    description: Returns details on what has changed.
    support: none
"""

EXAMPLES = r"""
- name: Read the watchdog's ledger before the run
  quantum.redis_streams.watchdog_ledger:
    pipeline: quantum-trader
    paused: "{{ watchdog_paused }}"
    max_recoveries: 3
  register: ledger

- name: Record the decision, and write the watchdog's metrics
  quantum.redis_streams.watchdog_ledger:
    pipeline: quantum-trader
    record:
      run_id: 20260117T101700Z-cafe
      decision: recover
      outcome: HEALED
      entries_moved: 3
    textfile_dir: /var/lib/prometheus/node-exporter
"""

RETURN = r"""
dir:
  description: The pipeline's ledger directory.
  returned: always
  type: str
  sample: /var/lib/quantum-remediation/watchdog/quantum-trader
paused:
  description: Whether a pause switch is on.
  returned: always
  type: bool
paused_by:
  description: Which switch is on, V(watchdog_paused) or the file's path; null when none is.
  returned: always
  type: str
pause_note:
  description: The first line of the file C(paused) (who paused and why), when it has one.
  returned: always
  type: str
recoveries:
  description: Automatic recoveries within O(window_s), the record just written included.
  returned: always
  type: int
recent:
  description: Those recoveries (time, at, run_id, outcome), oldest first.
  returned: always
  type: list
  elements: dict
breaker_open:
  description:
    - Whether the circuit breaker holds automatic healing back (RV(recoveries) reached O(max_recoveries)).
  returned: always
  type: bool
hold_reason:
  description: The sentence that holds automatic healing back this run, or an empty string.
  returned: always
  type: str
  sample: "The circuit breaker is open: 3 automatic recoveries within the last 3600 s reach ..."
last_recovery:
  description: The latest record of decision V(recover), or null.
  returned: always
  type: dict
recorded:
  description:
    - The record written (with C(time) and C(at)), or the one check mode would write; null without
      O(record).
  returned: always
  type: dict
bad_lines:
  description: Lines of the ledger that were not a record (skipped).
  returned: always
  type: int
textfile:
  description: The metrics file written, or null.
  returned: always
  type: str
"""

import datetime
import fcntl
import json
import os
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.quantum.redis_streams.plugins.module_utils.evidence_write import write_atomically
from ansible_collections.quantum.redis_streams.plugins.module_utils.ledger import (
    DECISIONS,
    LEDGER_NAME,
    PAUSE_NAME,
    hold_reason,
    kept_records,
    last_recovery,
    name_problem,
    parse_records,
    recoveries_within,
    run_metrics,
)

DIRECTORY_MODE = 0o750
LEDGER_MODE = 0o640
# node_exporter runs as its own user: it must read the file.
TEXTFILE_MODE = 0o644


def _problems(params: dict[str, Any]) -> list[str]:
    problems = []
    problem = name_problem(params["pipeline"])
    if problem:
        problems.append(problem)
    if not os.path.isabs(params["root"]):
        problems.append(f"root {params['root']!r} must be an absolute path (watchdog_state_dir).")
    for name, minimum in (("max_recoveries", 0), ("window_s", 1), ("retention_s", 1)):
        if params[name] < minimum:
            problems.append(f"{name} must be at least {minimum}, got {params[name]}.")
    record = params["record"]
    if record is not None and record.get("decision") not in DECISIONS:
        problems.append(
            f"record.decision must be one of {', '.join(DECISIONS)}, got {record.get('decision')!r}."
        )
    if params["textfile_dir"] and not os.path.isabs(params["textfile_dir"]):
        problems.append(f"textfile_dir {params['textfile_dir']!r} must be an absolute path.")
    return problems


def _pause_file(directory: str) -> tuple[bool, str | None]:
    path = os.path.join(directory, PAUSE_NAME)
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            note = handle.readline(200).strip()
    except FileNotFoundError:
        return False, None
    except IsADirectoryError:
        return True, None
    return True, note or None


def _read(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.readlines()
    except FileNotFoundError:
        return []


def _append(path: str, record: dict[str, Any], now_s: float, retention_s: int) -> list[dict[str, Any]]:
    """Append `record` under an exclusive lock, dropping old records; the records after it."""
    line = json.dumps(record, sort_keys=True, default=str) + "\n"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, LEDGER_MODE)
    with os.fdopen(fd, "r+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        records, _bad = parse_records(handle.readlines())
        records.append(record)
        kept = kept_records(records, now_s, retention_s)
        if len(kept) < len(records):
            # Rewritten whole, atomically; the lock on the old inode keeps writers waiting until
            # the rename, after which they open the new file.
            write_atomically(
                path,
                "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in kept).encode(),
                LEDGER_MODE,
            )
        else:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
    return kept


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "root": {"type": "path", "default": "/var/lib/quantum-remediation/watchdog"},
            "pipeline": {"type": "str", "required": True},
            "paused": {"type": "bool", "default": False},
            "max_recoveries": {"type": "int", "default": 3},
            "window_s": {"type": "int", "default": 3600},
            "retention_s": {"type": "int", "default": 604800},
            "record": {"type": "dict"},
            "textfile_dir": {"type": "path"},
        },
        supports_check_mode=True,
    )
    params = module.params
    problems = _problems(params)
    if problems:
        module.fail_json(msg=" ".join(problems))
    root = os.path.normpath(params["root"])
    directory = os.path.join(root, params["pipeline"])
    ledger = os.path.join(directory, LEDGER_NAME)
    now_s = time.time()

    paused_file, pause_note = _pause_file(directory)
    paused_by = (
        "watchdog_paused"
        if params["paused"]
        else (os.path.join(directory, PAUSE_NAME) if paused_file else None)
    )
    records, bad = parse_records(_read(ledger))

    recorded = None
    textfile = None
    changed = False
    if params["record"] is not None:
        recorded = dict(params["record"])
        recorded["time"] = round(now_s, 3)
        recorded["at"] = datetime.datetime.fromtimestamp(now_s, tz=datetime.UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        recorded["pipeline"] = params["pipeline"]
        if module.check_mode:
            records.append(recorded)
        else:
            try:
                for missing in (root, directory):
                    if not os.path.isdir(missing):
                        os.mkdir(missing, DIRECTORY_MODE)
                records = _append(ledger, recorded, now_s, params["retention_s"])
            except OSError as exc:
                module.fail_json(
                    msg=f"The watchdog's decision could not be recorded in {ledger}: {exc}.",
                    recorded=recorded,
                )
            changed = True

    recent = recoveries_within(records, now_s, params["window_s"])
    hold = hold_reason(paused_by, pause_note, recent, params["max_recoveries"], params["window_s"])
    if recorded is not None and not module.check_mode and params["textfile_dir"]:
        textfile_dir = os.path.normpath(params["textfile_dir"])
        if os.path.isdir(textfile_dir):
            textfile = os.path.join(textfile_dir, f"quantum_remediation_{params['pipeline']}.prom")
            text = run_metrics(params["pipeline"], records, now_s, params["window_s"], bool(paused_by), hold)
            try:
                write_atomically(textfile, text.encode(), TEXTFILE_MODE)
            except OSError as exc:
                module.warn(f"The watchdog's metrics were not written to {textfile}: {exc}.")
                textfile = None
        else:
            module.warn(
                f"textfile_dir {textfile_dir} does not exist: the watchdog's metrics were not written."
            )

    module.exit_json(
        changed=changed,
        dir=directory,
        paused=bool(paused_by),
        paused_by=paused_by,
        pause_note=pause_note,
        recoveries=len(recent),
        recent=[{k: r.get(k) for k in ("time", "at", "run_id", "outcome")} for r in recent],
        breaker_open=bool(hold) and not paused_by,
        hold_reason=hold,
        last_recovery=last_recovery(records),
        recorded=recorded,
        bad_lines=bad,
        textfile=textfile,
    )


if __name__ == "__main__":
    main()
