#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Everything a verdict about a pipeline needs, read in one call: its streams, groups and
# consumers, its governor, its systemd units down to the kernel's state of each process, and
# what its mode file says.
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
  - It never changes anything.
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
attributes:
  check_mode:
    description: Can run in check mode and returns the same facts; it never changes anything.
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
seealso:
  - module: quantum.redis_streams.redis_stream_info
  - module: quantum.redis_streams.redis_governor
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
"""

import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.quantum.redis_streams.plugins.module_utils.mode_gate import read_mode_gate
from ansible_collections.quantum.redis_streams.plugins.module_utils.redis_connection import (
    connection_argument_spec,
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
    )
    return spec


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
        supports_check_mode=True,
    )
    params = module.params
    # First: the mode is decided even when reading the rest fails.
    if params["mode_file"] is not None:
        module.mode_gate = read_mode_gate(params["mode_file"], params["mode_variable"])
    if params["wait_s"] < 0:
        module.fail_json(msg=f"wait_s must be 0 or more seconds, got {params['wait_s']}.")
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
    module.exit_json(changed=False, **snapshot)


if __name__ == "__main__":
    main()
