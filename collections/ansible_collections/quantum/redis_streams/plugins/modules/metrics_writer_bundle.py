#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Documentation only: the action plugin of the same name does the work on the controller.
from __future__ import annotations

DOCUMENTATION = r"""
---
module: metrics_writer_bundle
short_description: Install the pipeline metrics writer, a self-contained Python zip application, on the target
description:
  - Builds on the controller one zip application holding this collection's module_utils and the
    C(ansible.module_utils) they import (as AnsiballZ ships them to a module), with a C(__main__) that
    runs the metrics writer, and copies it to O(dest) on the target.
  - The writer (C(python3 DEST SETTINGS.json)) reads the pipeline and writes
    C(quantum_pipeline_NAME.prom) exactly as M(quantum.redis_streams.pipeline_metrics) does, every
    C(interval_s) seconds until C(SIGTERM), so that alerts on it fire within seconds. Its settings file is
    a JSON object of M(quantum.redis_streams.pipeline_metrics)' options (C(textfile_dir) required) and
    C(interval_s) (default 15) and C(daily_interval_s) (default 60, how old the daily report's counts may
    get, since counting them reads every entry of the day). C(--once) makes one pass.
  - The target needs Python 3.8 or later and redis-py, as the modules do; not Ansible.
  - The bundle's bytes depend only on the sources, so installing it again changes nothing.
  - The role C(metrics_writer) of the quantum-remediation project installs it with its settings and a
    systemd unit.
version_added: "1.7.0"
author:
  - quantum-remediation maintainers (@quantum-remediation)
options:
  dest:
    description: Where the zip application is installed on the target, an absolute path.
    type: path
    required: true
  mode:
    description: Its permissions.
    type: raw
    default: "0644"
  owner:
    description: Its owner (the copy's default when omitted).
    type: str
  group:
    description: Its group (the copy's default when omitted).
    type: str
attributes:
  action:
    description: The bundle is built by the action plugin on the controller.
    support: full
  check_mode:
    description: Reports whether the file would change, as M(ansible.builtin.copy) does.
    support: full
  diff_mode:
    description: As M(ansible.builtin.copy) (a binary file, so no content diff).
    support: full
  platform:
    description: A POSIX target with Python 3.8 or later.
    support: full
    platforms: posix
seealso:
  - module: quantum.redis_streams.pipeline_metrics
"""

EXAMPLES = r"""
- name: Install the metrics writer
  quantum.redis_streams.metrics_writer_bundle:
    dest: /usr/local/lib/quantum-remediation/pipeline-metrics.pyz
"""

RETURN = r"""
dest:
  description: The installed file.
  returned: success
  type: str
  sample: /usr/local/lib/quantum-remediation/pipeline-metrics.pyz
checksum:
  description: Its SHA-1, as M(ansible.builtin.copy) returns it.
  returned: success
  type: str
files:
  description: How many files the zip application holds.
  returned: always
  type: int
  sample: 182
size:
  description: Its size in bytes.
  returned: always
  type: int
  sample: 358285
"""
