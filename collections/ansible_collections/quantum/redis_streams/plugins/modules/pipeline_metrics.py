#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# The pipeline as Prometheus sees it: one snapshot (the same read as pipeline_snapshot) written
# as metrics in node_exporter's textfile format, with the daily report. A read that fails is
# itself a metric (snapshot_ok 0), never a failed task: the alert on it is what a person sees.
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pipeline_metrics
short_description: Write a Redis Streams pipeline's health as metrics for node_exporter's textfile collector
description:
  - Reads the pipeline (the inventory variable C(pipeline)) once, as
    M(quantum.redis_streams.pipeline_snapshot) reads it - streams, groups, consumers, governor and
    units - and writes what Debian's
    C(prometheus-redis-exporter) (1.45, C(--check-streams)) does not give, in node_exporter's textfile
    format - the age of the oldest undelivered entry (lag in seconds, from entry ids and the server's
    clock), the age, delivery idle time and delivery count of each consumer's oldest pending entry,
    idle and inactive time per consumer, the highest delivery count per group, how much of the
    governor's daily limit is used, each unit's state down to a main process stopped by the kernel,
    and the daily report (entries each stage wrote today, trades executed today). Every series is
    labelled with the pipeline and the stage's name. docs/metrics.md documents each metric.
  - The file (C(quantum_pipeline_NAME.prom) in O(textfile_dir)) is written atomically - a temporary file
    beside it, renamed over it - so node_exporter never reads half a file.
  - A read that fails (Redis unreachable, a unit unreadable) is not a failure of the module - the file
    then holds C(quantum_pipeline_snapshot_ok 0) and the read's time only, so that no stale figure stands
    for the present, RV(snapshot_ok) is false and RV(error) says why. Invalid options fail before anything
    is read or written.
  - Cost - one snapshot (a few pipelined round trips, never one call per pending entry) and, with
    O(daily_report), one bounded C(XRANGE) page per 1000 entries written today to each output stream.
version_added: "1.6.0"
author:
  - quantum-remediation maintainers (@quantum-remediation)
requirements:
  - redis (redis-py) 5.0 or later on the target (Debian package python3-redis, pip package redis).
  - systemd on the target, unless O(units=false).
extends_documentation_fragment:
  - quantum.redis_streams.redis_connection
options:
  connection:
    # The shared option (doc fragment) without its default: omitted, O(pipeline)'s C(redis) is used.
    default: null
  pipeline:
    description:
      - The pipeline definition, as the inventory variable C(pipeline) of this project (C(name); C(stages)
        with C(name), C(unit), C(input_stream), C(group), C(output_stream); C(redis); optionally C(governor)).
      - Its C(name) names the file and labels every series - letters, digits, C(.), C(_) or C(-).
    type: dict
    required: true
  textfile_dir:
    description:
      - node_exporter's textfile directory (Debian's is C(/var/lib/prometheus/node-exporter)); the file
        C(quantum_pipeline_NAME.prom) is written there, mode C(0644).
      - An absolute path. A directory that does not exist is warned about and nothing is written.
      - Omitted, nothing is written and the metrics are returned as RV(metrics).
    type: path
  units:
    description: Read the stages' systemd units. V(false) reads Redis only (a host without systemd).
    type: bool
    default: true
  systemctl:
    description: The C(systemctl) to run.
    type: path
    default: systemctl
  pending_scan_limit:
    description:
      - How many pending entries of each consumer are read to find the highest delivery count, as
        in M(quantum.redis_streams.pipeline_snapshot). The default reads only the oldest one.
    type: int
    default: 1
  daily_report:
    description:
      - Count the entries each stage wrote to its output stream today (UTC, by entry-id time and the
        server's clock) and the trades executed (the result stream - C(pipeline.governor.counted_stream),
        else the last stage's output stream). RV(daily) holds them.
    type: bool
    default: true
attributes:
  check_mode:
    description: Reads, and returns what it would write; writes nothing.
    support: full
  diff_mode:
    description: The file changes at every read (its timestamp); no diff is shown.
    support: none
  platform:
    description:
      - Runs on the target, which needs redis-py and network access to Redis, and systemd (unless
        O(units=false)).
    support: full
    platforms: posix
notes:
  - C(changed) is true when the file was written (in check mode, when it would be). The project's
    watchdog does not count that as a change to the pipeline (C(changed_when) false).
  - Ages are computed against the Redis server's clock, the read's timestamp against the target's.
  - A series of a consumer's oldest pending entry exists only while the consumer holds entries, so an
    alert on it resolves when they are acknowledged.
seealso:
  - module: quantum.redis_streams.pipeline_snapshot
  - module: quantum.redis_streams.watchdog_ledger
"""

EXAMPLES = r"""
- name: Write the pipeline's metrics for node_exporter
  quantum.redis_streams.pipeline_metrics:
    pipeline: "{{ pipeline }}"
    textfile_dir: /var/lib/prometheus/node-exporter
  register: metrics

- name: Say today's figures
  ansible.builtin.debug:
    msg: "{{ metrics.daily.trades_executed }} trades executed on {{ metrics.daily.day }}"

- name: Return the metrics without writing them (Redis only)
  quantum.redis_streams.pipeline_metrics:
    pipeline: "{{ pipeline }}"
    units: false
  register: metrics
"""

RETURN = r"""
textfile:
  description: The file written (in check mode, that would be written); null when none is.
  returned: always
  type: str
  sample: /var/lib/prometheus/node-exporter/quantum_pipeline_quantum-trader.prom
metrics:
  description: The metrics, in node_exporter's textfile format.
  returned: when O(textfile_dir) is omitted
  type: str
samples:
  description: How many samples the metrics hold.
  returned: always
  type: int
  sample: 42
snapshot_ok:
  description: Whether the read of the pipeline was complete.
  returned: always
  type: bool
  sample: true
error:
  description: Why the read failed, in one sentence; null when it did not.
  returned: always
  type: str
elapsed_ms:
  description: How long the read took, in milliseconds (the daily report included).
  returned: always
  type: int
  sample: 9
daily:
  description:
    - The daily report - C(day) (UTC, by the server's clock), C(stages) (per stage with an output stream,
      its C(stream) and the C(entries) written to it today), C(result_stream) and C(trades_executed)
      (its entries today).
    - Null with O(daily_report=false) or when the read failed.
  returned: always
  type: dict
  sample:
    day: "2026-12-04"
    stages:
      ai_engine: {stream: "quantum:stream:ai.decision", entries: 180}
      router: {stream: "quantum:stream:trade.intent", entries: 180}
      execution: {stream: "quantum:stream:trade.result", entries: 179}
    result_stream: "quantum:stream:trade.result"
    trades_executed: 179
"""

import os
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.quantum.redis_streams.plugins.module_utils.metrics_writer import (
    MetricsReader,
    argument_spec,
    options_problem,
    textfile_path,
    write_textfile,
)


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    problem = options_problem(params)
    if problem:
        module.fail_json(msg=problem)
    # Every problem with the pipeline or the connection fails here, before anything is read.
    reader = MetricsReader(module)
    try:
        result, trace = reader.read()
    finally:
        reader.close()
    if trace:
        module.warn(trace)
    if result.error:
        module.warn(f"The pipeline could not be read, so its metrics say snapshot_ok 0: {result.error}")

    textfile = None
    textfile_dir = params["textfile_dir"]
    if textfile_dir is not None:
        if os.path.isdir(textfile_dir):
            textfile = textfile_path(textfile_dir, params["pipeline"])
            if not module.check_mode:
                try:
                    write_textfile(textfile, result.text)
                except OSError as exc:
                    module.fail_json(msg=f"The pipeline's metrics could not be written to {textfile}: {exc}.")
        else:
            directory = os.path.normpath(textfile_dir)
            module.warn(f"textfile_dir {directory} does not exist: the pipeline's metrics were not written.")

    returned: dict[str, Any] = {
        "changed": textfile is not None,
        "textfile": textfile,
        "samples": result.samples,
        "snapshot_ok": result.error is None,
        "error": result.error,
        "elapsed_ms": int(result.duration_s * 1000),
        "daily": result.daily,
    }
    if textfile_dir is None:
        returned["metrics"] = result.text
    module.exit_json(**returned)


if __name__ == "__main__":
    main()
