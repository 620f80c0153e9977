#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Everything a verdict about a pipeline needs, read in one call: its streams, groups and
# consumers, its governor, its systemd units down to the kernel's state of each process, and
# what its mode file says; with `lock`, the run lock taken in the same call, a moment after
# the read, when the read allows the run to change the pipeline.
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pipeline_snapshot
short_description: Read a Redis Streams pipeline's streams, groups, governor, units and mode file in one call
description:
  - One call per phase of a healing run reads everything a decision about the pipeline (the
    inventory variable C(pipeline)) needs, and returns it as one structure.
  - B(Redis), as M(quantum.redis_streams.redis_stream_info) reads it - each stage's input stream
    with the stage's group, every output stream; per group its lag and pending count; per consumer
    its pending count, idle and (Redis 7.2 and later) inactive time, and the id, age, idle time and
    delivery count of its oldest pending entry; per group the age of its oldest undelivered
    entry. One C(XINFO CONSUMERS) and at most one C(XRANGE ... COUNT 1) per group, one
    C(XPENDING ... COUNT 1) per consumer with pending entries - never one call per pending entry,
    so the cost does not grow with the pending lists.
  - B(The governor) (C(pipeline.governor)), as M(quantum.redis_streams.redis_governor) reads it;
    today's results are counted only when the counter is above its limit, the one case a reset is made.
  - B(The units) - one C(systemctl show) for every stage's unit (load, active and sub state, main
    PID, restarts, when it became active), then the kernel's state of each main process
    (C(/proc/PID/stat)), because systemd reports a process stopped by C(SIGSTOP) as
    C(active (running)).
  - B(The mode file), with O(mode_file) - read as systemd 252 reads the units'
    C(EnvironmentFile=), and judged by the mode gate (RV(mode_gate)). Only the gate's decision
    and the mode variable's own lines are returned, never the file's content (it may hold API keys).
  - B(The run lock), with O(lock) - after the read, the pipeline's run lock, as
    M(quantum.redis_streams.run_lock) takes it (the same code), so that a healing run reads its
    snapshot and takes its lock in one call. The lock is taken only when O(lock.take) is true,
    the task is not in check mode, the mode gate (O(mode_file)) allows changes, and the read is
    complete - nothing missing in Redis (unless O(lock.missing_ok)), every unit read loaded. Otherwise
    the module only says who holds the lock, as M(quantum.redis_streams.run_lock) does in check mode.
    The snapshot is thus read a moment before the lock is taken.
  - A lock held by another run is not a failure of the module - RV(lock) says so, with the sentence
    M(quantum.redis_streams.run_lock) fails with, and the caller decides.
  - It changes nothing but the run lock it may take. The lock is the run's own record, not a change
    to the pipeline, so C(changed) is always false.
version_added: "1.1.0"
author:
  - quantum-remediation maintainers (@quantum-remediation)
requirements:
  - redis (redis-py) 5.0 or later on the target (Debian package python3-redis, pip package redis),
    unless O(redis=false).
  - systemd on the target, unless O(units=false).
extends_documentation_fragment:
  - quantum.redis_streams.redis_connection
options:
  connection:
    # The shared option (doc fragment) without its default: omitted, O(pipeline)'s C(redis) is used.
    default: null
  pipeline:
    description:
      - The pipeline definition, as the inventory variable C(pipeline) of this project (C(stages)
        with C(unit), C(input_stream), C(group), C(output_stream); C(redis); optionally C(governor)).
      - Its C(redis) dictionary is the connection when O(connection) is omitted.
    type: dict
    required: true
  pending_scan_limit:
    description:
      - How many pending entries of each consumer are read to find the highest delivery count, as
        in M(quantum.redis_streams.redis_stream_info). The default reads only the oldest one.
    type: int
    default: 1
  units:
    description: Read the stages' systemd units. V(false) reads Redis only (a host without systemd).
    type: bool
    default: true
  governor:
    description: Read C(pipeline.governor) when the pipeline has one.
    type: bool
    default: true
  systemctl:
    description: The C(systemctl) to run.
    type: path
    default: systemctl
  redis:
    description:
      - Read Redis (the streams and the governor). V(false) reads the units alone, without
        contacting Redis (a rollback that needs the unit files while Redis may be down);
        RV(server) and RV(governor) are then null, RV(streams) and RV(missing) empty.
    type: bool
    default: true
    version_added: "1.3.0"
  unit_names:
    description:
      - The units to read, instead of every stage's unit (O(pipeline)'s C(stages[].unit)).
    type: list
    elements: str
    version_added: "1.3.0"
  wait_s:
    description:
      - Seconds to wait on the target before reading, so that the end of a window is read in the same
        task that waits for it (a delta between two snapshots W seconds apart). V(0) reads at once.
    type: int
    default: 0
    version_added: "1.3.0"
  wait_from_ms:
    description:
      - With O(wait_s), the wait ends O(wait_s) seconds after this time on the target's clock (milliseconds
        since the epoch, an earlier read's RV(target_time_ms)) instead of after the task starts, so a
        window begun by an earlier read (the last restart's) is not lengthened by the round trip in
        between. Never waits longer than O(wait_s); already past, it does not wait.
    type: int
    version_added: "1.5.0"
  read_start:
    description:
      - Also read the streams before the wait, and return that read as RV(start) - a window's start and
        end in one task (its start read without the units or the governor).
    type: bool
    default: false
    version_added: "1.4.0"
  mode_file:
    description:
      - The mode file to judge (the inventory's C(pipeline.mode_file), the units' C(EnvironmentFile=)) - read
        whole, as systemd 252 reads it, and judged on O(mode_variable) by the mode gate; the decision is
        RV(mode_gate).
      - Its content never appears in the result, not even in a failure's message (it may hold API keys).
      - A file missing, unreadable or one systemd would refuse (a NUL byte, a line not valid UTF-8) is not a
        failure of the module - the mode is then C(UNKNOWN), and RV(mode_gate)'s C(reason) says why.
      - Read before anything else, so that a failure of the rest (Redis unreachable, a unit unreadable)
        still returns RV(mode_gate).
    type: path
    version_added: "1.4.0"
  mode_variable:
    description:
      - The variable of O(mode_file) that says the mode (the inventory's C(pipeline.mode_variable), for
        example C(BINANCE_TESTNET)) - V(true) is C(TESTNET), V(false) is C(LIVE).
      - Required with O(mode_file).
    type: str
    version_added: "1.4.0"
  lock:
    description:
      - Take (or look at) the pipeline's run lock after the read, as M(quantum.redis_streams.run_lock)
        does with O(quantum.redis_streams.run_lock#module:state=present). The result is RV(lock).
      - Requires O(mode_file) - the lock is taken only when its mode gate allows changes.
      - A lock whose holder, an C(ansible-playbook) of this very controller, is gone is taken over at
        once, as M(quantum.redis_streams.run_lock) does - by a second call of the module, which reads
        everything again (O(wait_s) included).
    type: dict
    version_added: "1.5.0"
    suboptions:
      path:
        description:
          - The lock directory on the target, one per pipeline (C(/run/quantum-remediation-NAME.lock)),
            as O(quantum.redis_streams.run_lock#module:path).
        type: path
        required: true
      run_id:
        description: The run taking the lock, recorded in the owner file.
        type: str
        required: true
      stale_s:
        description:
          - A lock older than this many seconds (by the target's clock) is taken over, with a warning.
        type: int
        default: 3600
      take:
        description:
          - Take the lock when the read allows it. V(false) only says who holds it (a read-only run).
        type: bool
        default: true
      missing_ok:
        description:
          - Take the lock even when streams or groups of the pipeline are missing in Redis (a run that
            goes on without them). By default a read with something missing takes no lock.
        type: bool
        default: false
      controller:
        description:
          - The controller process that takes the lock (C(host), C(boot_id), C(pid), C(started) in clock
            ticks since boot). Set by the action plugin; not to be set by hand.
        type: dict
      take_over_token:
        description:
          - Take over the lock whose owner file holds this token (its holder is proven gone). Set by the
            action plugin; not to be set by hand.
        type: str
attributes:
  action:
    description: Has an action plugin, which reads the controller's own process table for O(lock).
    support: full
  check_mode:
    description:
      - Can run in check mode and returns the same facts; it never changes anything then (the run lock
        is only looked at).
    support: full
  diff_mode:
    description: Nothing changes, so there is nothing to diff.
    support: none
  platform:
    description:
      - Runs on the target, which needs redis-py and network access to Redis (unless O(redis=false)) and
        systemd (unless O(units=false)).
    support: full
    platforms: posix
notes:
  - Redis, the governor and the units are read one after the other in a few milliseconds, not in
    one instant; ages are computed against the Redis server's clock (RV(server)'s C(time_ms)), process
    times against the target's (RV(target_time_ms)).
  - With O(lock), the lock directory's parent must exist and be writable (C(/run) on a systemd host).
seealso:
  - module: quantum.redis_streams.redis_stream_info
  - module: quantum.redis_streams.redis_governor
  - module: quantum.redis_streams.run_lock
"""

EXAMPLES = r"""
- name: Take the pipeline's snapshot
  quantum.redis_streams.pipeline_snapshot:
    pipeline: "{{ pipeline }}"
  register: snapshot

- name: Name the units whose main process is stopped behind an active unit
  ansible.builtin.debug:
    msg: >-
      {{ snapshot.units | dict2items | selectattr('value.active_state', 'eq', 'active')
         | selectattr('value.process_stopped') | map(attribute='key') | list }}

- name: Decide the mode from the mode file, with the units alone (Redis may be down)
  quantum.redis_streams.pipeline_snapshot:
    pipeline: "{{ pipeline }}"
    redis: false
    mode_file: "{{ pipeline.mode_file }}"
    mode_variable: "{{ pipeline.mode_variable }}"
  register: snapshot

- name: Say what the mode gate decided
  ansible.builtin.debug:
    msg: "Mode {{ snapshot.mode_gate.mode }} ({{ snapshot.mode_gate.reason }})"

- name: Read the pipeline and take the run lock in the same call (only when the read allows changes)
  quantum.redis_streams.pipeline_snapshot:
    pipeline: "{{ pipeline }}"
    mode_file: "{{ pipeline.mode_file }}"
    mode_variable: "{{ pipeline.mode_variable }}"
    lock:
      path: /run/quantum-remediation-quantum-trader.lock
      run_id: "{{ run_id }}"
      take: "{{ not ansible_check_mode }}"
  failed_when: false
  register: snapshot

- name: Stop when the read failed, or when another run holds the lock this run wanted
  ansible.builtin.assert:
    that: >-
      snapshot.lock is defined
      and (snapshot.lock.held or ansible_check_mode or not snapshot.mode_gate.changes_allowed)
    fail_msg: "{{ snapshot.lock.message | default(snapshot.msg) }}"

- name: Release it at the end
  quantum.redis_streams.run_lock:
    path: "{{ snapshot.lock.path }}"
    state: absent
    token: "{{ snapshot.lock.token }}"
  when: snapshot.lock.held | default(false)
"""

RETURN = r"""
endpoint:
  description: The Redis the module talked to (as in M(quantum.redis_streams.redis_stream_info)).
  returned: always
  type: str
  sample: 127.0.0.1:6379
server:
  description: The Redis server - C(version), and C(time_ms), its clock (TIME) in milliseconds.
  returned: always
  type: dict
  sample: {version: "7.0.15", time_ms: 1790000000000}
streams:
  description:
    - Per stream of the pipeline, its state, groups and consumers, exactly as
      RV(quantum.redis_streams.redis_stream_info#module:streams).
  returned: always
  type: dict
start:
  description:
    - With O(read_start), the read taken before the wait - C(server), C(streams) and C(missing) as
      above, at the start of the window.
  returned: when O(read_start) is true
  type: dict
missing:
  description: The streams (C(stream)) and groups (C(stream/group)) of the pipeline that do not exist.
  returned: always
  type: list
  elements: str
  sample: ["quantum:stream:ai.decision/router"]
governor:
  description:
    - The governor as RV(quantum.redis_streams.redis_governor#module:governor) describes it, plus
      C(results_today) and C(counted_stream_exists) (null unless the counter is above its limit).
    - Null when the pipeline has no governor or O(governor=false).
  returned: always
  type: dict
  sample:
    key: quantum:governor
    exists: true
    date: "2026-01-17"
    today: "2026-01-17"
    dated_today: true
    count: 10000
    limit: 200
    over_limit: true
    at_limit: false
    blocked: true
    results_today: 5
    counted_stream_exists: true
units:
  description:
    - Per stage's unit (as named in C(pipeline.stages[].unit)), or per unit of O(unit_names), its
      state; empty with O(units=false).
  returned: always
  type: dict
  contains:
    exists:
      description: Whether systemd knows the unit (C(LoadState) is not C(not-found)).
      type: bool
    load_state:
      description: C(LoadState).
      type: str
      sample: loaded
    active_state:
      description: C(ActiveState).
      type: str
      sample: active
    sub_state:
      description: C(SubState).
      type: str
      sample: running
    main_pid:
      description: C(MainPID); 0 when the unit has no main process.
      type: int
      sample: 412
    n_restarts:
      description: C(NRestarts), restarts systemd made by its C(Restart=) policy; null when unknown.
      type: int
      sample: 0
    active_since_ms:
      description:
        - When the unit last became active, in milliseconds since the epoch by the target's clock.
        - Null when it never was.
      type: int
    process_state:
      description:
        - The kernel's state letter of the main process (C(R), C(S), C(D), C(T) stopped ...).
        - Null without a main process.
      type: str
      sample: T
    process_state_name:
      description: That state in words (C(running), C(sleeping), C(stopped) ...); null without a process.
      type: str
      sample: stopped
    process_stopped:
      description:
        - The main process is stopped (C(T)) or in a tracing stop (C(t)); it does nothing until C(SIGCONT).
      type: bool
      sample: true
    process_started_ms:
      description:
        - When the main process started, in milliseconds since the epoch by the target's clock.
        - Null without a main process.
      type: int
    fragment_path:
      description: C(FragmentPath), the unit file; null when the unit has none (not installed).
      type: str
      sample: /etc/systemd/system/quantum-ai-strategy-router.service
    drop_in_paths:
      description: C(DropInPaths), the unit's drop-in files, in systemd's order.
      type: list
      elements: str
      sample: [/etc/systemd/system/quantum-ai-strategy-router.service.d/override.conf]
target_time_ms:
  description: The target's clock when the units were read, in milliseconds since the epoch.
  returned: always
  type: int
  sample: 1790000000123
elapsed_ms:
  description: How long the module took to read everything, in milliseconds (start-up excluded).
  returned: always
  type: int
  sample: 12
mode_gate:
  description:
    - What O(mode_file) says about O(mode_variable), as systemd reads the file - the mode gate's decision.
      Nothing else of the file - only the mode variable's own lines.
    - Also returned when the module fails after reading it (Redis unreachable, a unit unreadable).
  returned: when O(mode_file) is set
  type: dict
  contains:
    mode:
      description:
        - C(TESTNET) only when the value systemd gives the units is exactly C(true) and every assignment
          of O(mode_variable) says so; C(LIVE) likewise for C(false).
        - C(UNKNOWN) otherwise - a file missing, unreadable or refused by systemd, no assignment,
          contradicting assignments, a line that only looks like an assignment, any other value.
      type: str
      sample: TESTNET
    reason:
      description: One sentence - why this mode; for C(UNKNOWN), what to fix.
      type: str
      sample: BINANCE_TESTNET=true in /etc/quantum/testnet.env (line 3)
    changes_allowed:
      description: True only for C(TESTNET).
      type: bool
      sample: true
    assignments:
      description:
        - The assignments of O(mode_variable) systemd reads, in the file's order - C(line) (1-based) and
          C(value), the value systemd reads (null when it runs on over other lines, which may hold other
          variables' secrets).
      type: list
      elements: dict
      sample: [{line: 3, value: "true"}]
lock:
  description:
    - With O(lock), the run lock, exactly as M(quantum.redis_streams.run_lock) returns it - C(path), C(found),
      C(held), C(token), C(holder), C(age_s), C(owner) (when a lock was found) and C(message).
    - A lock held by another run that this call wanted is not a failure - C(held) is false, C(found) is
      V(held) and C(message) is the sentence M(quantum.redis_streams.run_lock) fails with; so is any other
      reason the lock could not be taken (its directory not writable).
    - Not returned when the read itself failed (the lock is then not touched).
  returned: when O(lock) is set and the read succeeded
  type: dict
  version_added: "1.5.0"
  contains:
    path:
      description: The lock directory (O(lock.path)), to release the lock with.
      type: str
      sample: /run/quantum-remediation-quantum-trader.lock
    found:
      description:
        - What was found - V(free), V(held) (another run holds it), V(stale) (older than O(lock.stale_s)),
          or V(orphaned) (its holder, a process of this controller, is gone).
      type: str
      sample: free
    held:
      description: Whether this run holds the lock now.
      type: bool
      sample: true
    token:
      description: This run's token, to release the lock with (null unless C(held)).
      type: str
      sample: 9f1c2a7b4e5d6c3a
    holder:
      description: The run id of the run found holding the lock (null when it was free).
      type: str
      sample: 20260117T101700Z-cafe
    age_s:
      description: How long ago the lock found was taken, in seconds by the target's clock (null when free).
      type: int
      sample: 34
    owner:
      description: The owner file found (its token included), for the action plugin's check of the holder.
      type: dict
    message:
      description: One sentence saying what was found and done, or why the lock was not taken.
      type: str
      sample: The run lock is free; taken by 20260117T101700Z-cafe.
"""

import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.quantum.redis_streams.plugins.module_utils.mode_gate import read_mode_gate
from ansible_collections.quantum.redis_streams.plugins.module_utils.redis_connection import (
    connection_argument_spec,
)
from ansible_collections.quantum.redis_streams.plugins.module_utils.run_lock import (
    LockRefused,
    RunLock,
    lock_option_problem,
)
from ansible_collections.quantum.redis_streams.plugins.module_utils.snapshot import PipelineReader


def argument_spec() -> dict[str, Any]:
    spec = connection_argument_spec()
    # No default: an omitted `connection` means "use pipeline.redis".
    spec["connection"].pop("default", None)
    spec.update(
        pipeline={"type": "dict", "required": True},
        pending_scan_limit={"type": "int", "default": 1},
        units={"type": "bool", "default": True},
        governor={"type": "bool", "default": True},
        systemctl={"type": "path", "default": "systemctl"},
        wait_s={"type": "int", "default": 0},
        redis={"type": "bool", "default": True},
        unit_names={"type": "list", "elements": "str"},
        mode_file={"type": "path"},
        mode_variable={"type": "str"},
        read_start={"type": "bool", "default": False},
        wait_from_ms={"type": "int"},
        lock={
            "type": "dict",
            "options": {
                "path": {"type": "path", "required": True},
                "run_id": {"type": "str", "required": True},
                "stale_s": {"type": "int", "default": 3600},
                "take": {"type": "bool", "default": True},
                "missing_ok": {"type": "bool", "default": False},
                "controller": {"type": "dict"},
                # A lock's token is not a secret (returned as RV(lock.token)).
                "take_over_token": {"type": "str", "no_log": False},
            },
        },
    )
    return spec


def incomplete(snapshot: dict[str, Any], missing_ok: bool) -> list[str]:
    """What the read lacks for a run to go on (preflight refuses such a run): streams and
    groups missing in Redis (unless `missing_ok`), units systemd has not loaded."""
    lacking = [] if missing_ok else list(snapshot["missing"])
    lacking += [
        f"unit {unit} ({state.get('load_state') or 'unknown'})"
        for unit, state in snapshot["units"].items()
        if state.get("load_state") != "loaded"
    ]
    return lacking


def run_lock(module: AnsibleModule, options: dict[str, Any], snapshot: dict[str, Any]) -> dict[str, Any]:
    """The run lock after the read: taken when the caller wants it, the task may change
    something, the mode gate allows changes and the read is complete; only looked at otherwise.
    A lock that cannot be taken is reported, not a failure."""
    lock = RunLock(
        module,
        options["path"],
        options["run_id"],
        stale_s=options["stale_s"],
        controller=options["controller"],
        take_over_token=options["take_over_token"],
    )
    lacking = incomplete(snapshot, options["missing_ok"])
    allowed = bool((module.mode_gate or {}).get("changes_allowed"))
    wanted = options["take"] and not module.check_mode and allowed
    why_not = f"missing from the read: {', '.join(lacking)}" if wanted and lacking else None
    try:
        result = lock.take(dry_run=not wanted or bool(lacking), why_not=why_not)
    except LockRefused as exc:
        result = {"found": "free", "holder": None, "age_s": None, **exc.found}
        result.update(held=False, token=None, message=exc.message)
    return dict(result, path=options["path"])


class SnapshotModule(AnsibleModule):
    """An AnsibleModule whose failures carry the mode gate, once it is decided: whatever else
    fails (Redis unreachable, a unit unreadable), the mode is known."""

    mode_gate: dict[str, Any] | None = None

    def fail_json(self, msg: str, **kwargs: Any) -> None:  # type: ignore[override]
        if self.mode_gate is not None:
            kwargs.setdefault("mode_gate", self.mode_gate)
        super().fail_json(msg, **kwargs)


def main() -> None:
    module = SnapshotModule(
        argument_spec=argument_spec(),
        required_together=[("mode_file", "mode_variable")],
        required_by={"lock": "mode_file"},
        supports_check_mode=True,
    )
    params = module.params
    # First: the mode is decided even when reading the rest fails.
    if params["mode_file"] is not None:
        module.mode_gate = read_mode_gate(params["mode_file"], params["mode_variable"])
    if params["wait_s"] < 0:
        module.fail_json(msg=f"wait_s must be 0 or more seconds, got {params['wait_s']}.")
    if params["lock"] is not None:
        problem = lock_option_problem(params["lock"]["path"], params["lock"]["stale_s"], prefix="lock.")
        if problem:
            module.fail_json(msg=problem)
    reader = PipelineReader(module, governor=params["governor"])
    try:
        start = None
        if params["read_start"]:
            first = reader.read(units=[], governor=False, redis=params["redis"])
            start = {key: first[key] for key in ("server", "streams", "missing")}
        # Every option is checked before the wait: a bad one fails at once.
        pause = float(params["wait_s"])
        if params["wait_from_ms"] is not None:
            pause = min(pause, max(0.0, params["wait_from_ms"] / 1000 + pause - time.time()))
        time.sleep(pause)
        # None: every stage's unit.
        units = params["unit_names"] if params["units"] else []
        snapshot = reader.read(units=units, governor=params["governor"], redis=params["redis"])
    finally:
        reader.close()
    if start is not None:
        snapshot["start"] = start
    if module.mode_gate is not None:
        snapshot["mode_gate"] = module.mode_gate
    # Last: a read that fails leaves the lock untouched.
    if params["lock"] is not None:
        snapshot["lock"] = run_lock(module, params["lock"], snapshot)
    module.exit_json(changed=False, **snapshot)


if __name__ == "__main__":
    main()
