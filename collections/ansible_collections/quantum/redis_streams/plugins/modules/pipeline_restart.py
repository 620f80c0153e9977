#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Restart a pipeline's units in a given order and wait, after each, until the unit is active and
# its stage's work moves: one call for what took a task per restart, per wait and per unit.
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pipeline_restart
short_description: Restart a Redis Streams pipeline's systemd units in order, each until its work moves
description:
  - Restarts the systemd units of O(units) one after the other, in the order given (downstream
    first, for a pipeline healed from its end), and after each restart waits until the unit is
    active B(and its stage's work moves), before the next one is restarted.
  - A stage's work moves, between the pipeline's state just before the restart and a read
    after it, when its consumer group read entries, its live consumer acknowledged pending
    entries, or the live consumer was seen after the restart (it read, or it joined the group);
    a producer's (a stage without an input stream) when its output stream grew.
  - A stage of O(replay_marks) was restarted to replay entries moved to its live consumer, so its
    work moves only once that consumer has acknowledged everything delivered up to its mark
    (its oldest pending entry is newer, or none is pending), so the returned RV(snapshot) proves
    the replay without another read.
  - Each wait polls one M(quantum.redis_streams.pipeline_snapshot)-like read of the pipeline
    (its streams, groups, consumers and systemd units), on one Redis connection for the whole
    call. The state before each restart is the previous unit's last read; the first is read
    before the first restart (or given by O(before)).
  - A unit that is not one of the pipeline's stages is waited for until active only.
  - The first unit that does not recover within O(timeout_s) stops the call, before any later
    unit is restarted; the module fails with one sentence naming the unit, why (the restart
    failed, it did not become active, or its work did not move), its state and its last
    journal lines, and returns what it did until then.
version_added: "1.3.0"
author:
  - quantum-remediation maintainers (@quantum-remediation)
requirements:
  - redis (redis-py) 5.0 or later on the target (Debian package python3-redis, pip package redis).
  - systemd on the target.
extends_documentation_fragment:
  - quantum.redis_streams.redis_connection
options:
  connection:
    # The shared option (doc fragment) without its default: omitted, O(pipeline)'s C(redis) is used.
    default: null
  pipeline:
    description:
      - The pipeline definition, as for M(quantum.redis_streams.pipeline_snapshot) (C(stages) with
        C(name), C(unit), C(input_stream), C(group), C(consumer), C(output_stream); C(redis)).
    type: dict
    required: true
  units:
    description:
      - The units to restart, in this order (a C(.service) suffix is optional). A unit named twice
        is restarted once, at its first place.
    type: list
    elements: str
    required: true
  advance_units:
    description:
      - The units of O(units) whose stage's work must move after the restart; the others are
        waited for until active only (for example a producer held back by a governor that is
        legitimately at its limit, which has nothing to produce).
      - Omitted, every unit of a stage.
    type: list
    elements: str
  replay_marks:
    description:
      - Per stage name, an entry id (its group's last delivered id when entries were moved to its
        live consumer). For that stage's unit, the work moves only once the live consumer has
        acknowledged everything delivered up to that id (replayed its pending list).
      - Applies to the units of O(advance_units) only.
    type: dict
    version_added: "1.5.0"
  before:
    description:
      - The pipeline's state just before the first restart, as M(quantum.redis_streams.pipeline_snapshot)
        returns it (its C(streams) and C(server)). Omitted, it is read before the first restart.
    type: dict
  timeout_s:
    description: Seconds each restarted unit has to become active and show its work moving.
    type: int
    default: 60
  poll_s:
    description:
      - The longest pause, in seconds, between two reads while waiting. The first reads are 0.1 s
        apart and the pause doubles up to it, so a unit that comes back at once is seen at once
        and a slow one is not read needlessly often.
    type: float
    default: 1
  journal_lines:
    description: How many of the last journal lines of a unit that did not recover are quoted.
    type: int
    default: 20
  pending_scan_limit:
    description: As in M(quantum.redis_streams.pipeline_snapshot).
    type: int
    default: 1
  systemctl:
    description: The C(systemctl) to run.
    type: path
    default: systemctl
  journalctl:
    description: The C(journalctl) to run.
    type: path
    default: journalctl
attributes:
  check_mode:
    description:
      - Restarts nothing and waits for nothing; RV(results) lists the restarts it would make, and
        C(changed) says whether it would make any.
    support: full
  diff_mode:
    description: Restarts have no diff.
    support: none
  platform:
    description: Runs on the target, which needs redis-py, network access to Redis and systemd.
    support: full
    platforms: posix
notes:
  - Only C(systemctl restart) changes anything; a restart is not made twice, even when the
    task is retried, because the module returns after its units.
seealso:
  - module: quantum.redis_streams.pipeline_snapshot
  - module: ansible.builtin.systemd_service
"""

EXAMPLES = r"""
- name: Restart the router, then the AI engine, each until its work moves
  quantum.redis_streams.pipeline_restart:
    pipeline: "{{ pipeline }}"
    units: [quantum-ai-strategy-router, quantum-ai-engine]
    timeout_s: 60
  register: restarted

- name: Show how each restart went
  ansible.builtin.debug:
    msg: "{{ restarted.results | map(attribute='how') | list }}"
"""

RETURN = r"""
results:
  description:
    - Per unit of O(units), in order, until the first that did not recover (included).
  returned: always
  type: list
  elements: dict
  contains:
    unit:
      description: The unit, as given.
      type: str
    stage:
      description: The name of the unit's stage; null for a unit outside the pipeline.
      type: str
    restarted:
      description: Whether C(systemctl restart) was run and succeeded.
      type: bool
    planned:
      description: True in check mode (the restart was not made).
      type: bool
    active_state:
      description: The unit's C(ActiveState) at the last read; null in check mode.
      type: str
    advanced:
      description:
        - Whether its stage's work moved.
        - Null when not checked (check mode, no stage, not in O(advance_units)).
      type: bool
    how:
      description:
        - How it moved, or why not (C(group router read 3 entries), C(planned only), C(not checked),
          C(router-1 replayed everything delivered up to 1700000000000-5)).
      type: str
    seconds:
      description: Seconds from the restart until the unit recovered (or the call gave up).
      type: float
    failed:
      description: Whether this unit did not recover (only the last result can be).
      type: bool
    why:
      description: Why it did not recover (only with C(failed)).
      type: str
    journal:
      description: Its last journal lines (only with C(failed)).
      type: list
      elements: str
snapshot:
  description:
    - The last read of the pipeline (as M(quantum.redis_streams.pipeline_snapshot) returns it), taken
      after the last restarted unit's work moved (with its governor); the start of a verification
      window, or the end of a replay (O(replay_marks)).
    - Null when nothing was restarted, or when the last unit was waited for until active only
      (Redis is read only for the units whose work must move).
  returned: always
  type: dict
"""

import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.quantum.redis_streams.plugins.module_utils.progress import (
    stage_advanced,
    stage_replayed,
)
from ansible_collections.quantum.redis_streams.plugins.module_utils.redis_connection import (
    connection_argument_spec,
)
from ansible_collections.quantum.redis_streams.plugins.module_utils.snapshot import (
    PipelineReader,
    stage_units,
)

# The first pause between two reads after a restart (doubled up to poll_s).
FIRST_PAUSE_S = 0.1


def argument_spec() -> dict[str, Any]:
    spec = connection_argument_spec()
    spec["connection"].pop("default", None)
    spec.update(
        pipeline={"type": "dict", "required": True},
        units={"type": "list", "elements": "str", "required": True},
        advance_units={"type": "list", "elements": "str"},
        replay_marks={"type": "dict"},
        before={"type": "dict"},
        timeout_s={"type": "int", "default": 60},
        poll_s={"type": "float", "default": 1},
        journal_lines={"type": "int", "default": 20},
        pending_scan_limit={"type": "int", "default": 1},
        systemctl={"type": "path", "default": "systemctl"},
        journalctl={"type": "path", "default": "journalctl"},
    )
    return spec


def _bare(unit: str) -> str:
    return unit[: -len(".service")] if unit.endswith(".service") else unit


def unit_stage(pipeline: dict[str, Any], unit: str) -> dict[str, Any]:
    """The stage whose `unit` is `unit` (`.service` optional), or {} for a unit outside it."""
    for stage in pipeline.get("stages") or []:
        if isinstance(stage, dict) and _bare(str(stage.get("unit") or "")) == _bare(unit):
            return stage
    return {}


class Restarter:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        params = module.params
        self.pipeline = params["pipeline"]
        # The governor is read once, into the returned snapshot (not at every poll: above its limit
        # it is counted from the result stream).
        self.reader = PipelineReader(module)
        self.replay_marks = params["replay_marks"] or {}
        self.stage_units = stage_units(self.pipeline)
        self.results: list[dict[str, Any]] = []
        # The last read of Redis, and whether nothing was restarted since (the state just before
        # the next restart, else it is read again).
        self.last: dict[str, Any] | None = params["before"]
        self.fresh = self.last is not None

    def read(self, unit: str, redis: bool) -> dict[str, Any]:
        # The stages' units, plus this one when it is outside the pipeline (a rollback may name one).
        units = self.stage_units + ([] if unit in self.stage_units else [unit])
        return self.reader.read(units=units, governor=False, redis=redis)

    def journal(self, unit: str) -> list[str]:
        argv = [self.module.params["journalctl"], "-u", unit, "-n", str(self.module.params["journal_lines"])]
        rc, out, err = self.module.run_command([*argv, "--no-pager"])
        return out.splitlines() if rc == 0 else [f"journalctl failed (rc {rc}): {err.strip()}"]

    def restart(self, unit: str, check_advance: bool) -> bool:
        """Restarts one unit and waits for it; False when it did not recover (results say why)."""
        stage = unit_stage(self.pipeline, unit)
        params = self.module.params
        if self.module.check_mode:
            self.results.append(
                {
                    "unit": unit,
                    "stage": stage.get("name"),
                    "restarted": False,
                    "planned": True,
                    "active_state": None,
                    "advanced": None,
                    "how": "planned only",
                    "seconds": 0.0,
                }
            )
            return True
        check_advance = check_advance and bool(stage)
        if check_advance and not self.fresh:
            self.last = self.read(unit, redis=True)
        before = self.last
        started = time.monotonic()
        rc, out, err = self.module.run_command([params["systemctl"], "restart", "--", unit])
        result: dict[str, Any] = {
            "unit": unit,
            "stage": stage.get("name"),
            "restarted": rc == 0,
            "planned": False,
            "active_state": None,
            "advanced": None,
            "how": "not checked",
        }
        self.results.append(result)
        why = None
        if rc != 0:
            first = (err.strip() or out.strip() or "unknown error").splitlines()[0].strip()
            why = f"the restart failed: {first}"
        deadline = started + params["timeout_s"]
        pause = min(FIRST_PAUSE_S, params["poll_s"])
        after: dict[str, Any] | None = None
        while why is None:
            # Redis only when the work must move: a unit waited for until active (a rollback's)
            # recovers even while Redis is down.
            after = self.read(unit, redis=check_advance)
            state = after["units"].get(unit, {})
            result["active_state"] = state.get("active_state")
            if result["active_state"] == "active":
                if not check_advance:
                    break
                if stage.get("name") in self.replay_marks:
                    replay = stage_replayed(stage, after, self.replay_marks[stage.get("name")])
                    moved = {"advanced": replay["replayed"], "how": replay["how"]}
                else:
                    moved = stage_advanced(stage, before or {}, after)
                result.update(advanced=moved["advanced"], how=moved["how"])
                if moved["advanced"]:
                    break
            if time.monotonic() + pause > deadline:
                why = (
                    "it did not become active"
                    if result["active_state"] != "active"
                    else f"it is active but its work did not move: {result['how']}"
                )
                break
            time.sleep(pause)
            pause = min(pause * 2, params["poll_s"])
        result["seconds"] = round(time.monotonic() - started, 1)
        self.fresh = check_advance and after is not None
        if self.fresh:
            self.last = after
        if why is None:
            return True
        if after is None:
            after = self.read(unit, redis=False)
        state = after["units"].get(unit, {})
        result.update(
            failed=True,
            why=why,
            journal=self.journal(unit),
            active_state=state.get("active_state"),
            sub_state=state.get("sub_state"),
            main_pid=state.get("main_pid"),
        )
        return False

    def failure_sentence(self) -> str:
        failed = self.results[-1]
        journal = " | ".join(failed["journal"]) or "none"
        timeout_s = self.module.params["timeout_s"]
        return (
            f"Unit {failed['unit']} did not recover within {timeout_s} s ({failed['why']}; "
            f"ActiveState={failed['active_state']}, SubState={failed['sub_state']}, "
            f"MainPID={failed['main_pid']}); last journal lines: {journal}"
        )


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    if params["timeout_s"] <= 0 or params["poll_s"] <= 0:
        module.fail_json(
            msg=f"timeout_s and poll_s must be positive numbers of seconds (got {params['timeout_s']} "
            f"and {params['poll_s']})."
        )
    units = list(dict.fromkeys(params["units"]))
    advance = params["advance_units"]
    advance = None if advance is None else {_bare(unit) for unit in advance}
    restarter = Restarter(module)
    try:
        recovered = True
        for unit in units:
            recovered = restarter.restart(unit, advance is None or _bare(unit) in advance)
            if not recovered:
                break
        if recovered and restarter.fresh and restarter.last is not None:
            restarter.last["governor"] = restarter.reader.read_governor()
    finally:
        restarter.reader.close()
    # Check mode tells what a run would change: every restart it plans.
    changed = any(result["restarted"] or result["planned"] for result in restarter.results)
    restarted = [result for result in restarter.results if result["restarted"]]
    outcome = {
        "changed": changed,
        "results": restarter.results,
        "snapshot": restarter.last if restarted and restarter.fresh else None,
    }
    if not recovered:
        module.fail_json(msg=restarter.failure_sentence(), **outcome)
    module.exit_json(**outcome)


if __name__ == "__main__":
    main()
