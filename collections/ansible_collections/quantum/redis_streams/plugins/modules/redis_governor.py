#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Reads a daily-limit governor hash and, when asked, resets a counter left above its limit
# to the number of results actually recorded today.
from __future__ import annotations

DOCUMENTATION = r"""
---
module: redis_governor
short_description: Read a Redis daily-limit governor and reset a leftover counter above its limit
description:
  - Reads the governor hash of a pipeline (a date, a count of today's decisions and a daily
    limit) and compares it with the Redis server's own clock (C(TIME)), in UTC.
  - Counts RV(results_today), the entries of O(governor.counted_stream) whose entry-ID time is
    today (UTC), in bounded pages (C(XRANGE) from today's midnight, 1000 entries a page); the
    stream is never loaded whole. The count reads every result of the day (at 5,000 results a
    second, hundreds of millions), so by default it is taken only when it can matter, when the
    counter is above its limit and dated today, the one case a reset is made. O(count_results)
    takes it always.
  - A counter above its limit cannot come from the governor itself, which stops at the limit;
    it is leftover state (a test run, a bad deploy). With O(reset_above_limit=true) such a
    counter is reset to RV(results_today) and its date to today, by a server-side script that
    re-checks, atomically, that the counter is still above the limit and dated today before
    it writes; a concurrent legitimate change is never overwritten.
  - A counter at or below its limit is legitimate and is never touched.
  - A missing governor key is reported (RV(governor.exists=false)), never created.
version_added: "1.0.0"
author:
  - quantum-remediation maintainers (@quantum-remediation)
extends_documentation_fragment:
  - quantum.redis_streams.redis_connection
options:
  governor:
    description:
      - Where the governor lives and what its fields are called (the inventory's C(pipeline.governor)).
    type: dict
    required: true
    suboptions:
      key:
        description: The governor hash.
        type: str
        required: true
      date_field:
        description:
          - The field holding the day the count belongs to, as C(YYYY-MM-DD) (C(YYYYMMDD) is
            also understood, and kept when the date is rewritten).
        type: str
        default: date
      count_field:
        description: The field holding the number of decisions counted that day.
        type: str
        default: trades_today
      limit_field:
        description: The field holding the daily limit.
        type: str
        default: daily_limit
      counted_stream:
        description:
          - The stream whose entries are the real record of the results the governor counts;
            its entries dated today (by entry-ID time, UTC) give RV(results_today). A missing
            stream counts zero.
        type: str
        required: true
  count_results:
    description:
      - Count today's results (RV(results_today)) even when the counter is at or below its limit
        or dated another day. Without it RV(results_today) is null in those cases.
      - The count costs one C(XRANGE) page per 1000 results recorded today.
    type: bool
    default: false
  reset_above_limit:
    description:
      - Reset a counter that is above its limit and dated today to RV(results_today) (and its
        date to today). A counter at or below its limit, or dated another day, is left alone.
    type: bool
    default: false
attributes:
  check_mode:
    description: Can run in check mode and return the change it would make without making it.
    support: full
    details: Returns the reset it would make (RV(before), RV(after)) and C(changed); writes nothing.
  diff_mode:
    description: Returns details on what has changed (or would have to change in check mode).
    support: full
    details: The date and count fields before and after the reset.
notes:
  - The count of today's results is a snapshot taken just before the reset; a result recorded
    between the two is counted by the governor itself afterwards.
requirements:
  - redis (Python library, 4.0 or later)
  - Redis server 6.2 or later (exclusive ranges in C(XRANGE))
"""

EXAMPLES = r"""
- name: Read the governor
  quantum.redis_streams.redis_governor:
    connection: "{{ pipeline.redis }}"
    governor: "{{ pipeline.governor }}"
  register: governor_state

- name: Reset a leftover counter above the limit (TESTNET only)
  quantum.redis_streams.redis_governor:
    connection: "{{ pipeline.redis }}"
    governor:
      key: quantum:governor
      date_field: date
      count_field: trades_today
      limit_field: daily_limit
      counted_stream: quantum:stream:trade.result
    reset_above_limit: true
  check_mode: "{{ ansible_check_mode or not preflight_result.changes_allowed }}"
  register: governor_result
"""

RETURN = r"""
endpoint:
  description: The Redis the module talked to - C(HOST:PORT), C(unix socket PATH), or with
    O(connection.sentinel) C(primary HOST:PORT of Sentinel service NAME) (the primary the sentinels named).
  returned: always
  type: str
  sample: primary 127.0.0.1:6379 of Sentinel service quantum
governor:
  description: The governor as read, before any change.
  returned: always
  type: dict
  contains:
    key:
      description: The governor hash.
      type: str
      sample: quantum:governor
    exists:
      description: Whether the hash exists.
      type: bool
      sample: true
    date:
      description: The stored date, as stored; null when absent.
      type: str
      sample: "2026-01-17"
    today:
      description: Today's date (UTC) by the Redis server's clock, C(YYYY-MM-DD).
      type: str
      sample: "2026-01-17"
    dated_today:
      description: Whether the stored date is today.
      type: bool
      sample: true
    count:
      description: The stored count; null when absent.
      type: int
      sample: 10000
    limit:
      description: The stored limit; null when absent.
      type: int
      sample: 200
    over_limit:
      description: The count is above the limit and dated today (leftover state; the producer is blocked).
      type: bool
      sample: true
    at_limit:
      description: The count equals the limit and is dated today (legitimate; the producer is blocked).
      type: bool
      sample: false
    blocked:
      description: The governor blocks its producer today (RV(governor.over_limit) or RV(governor.at_limit)).
      type: bool
      sample: true
results_today:
  description:
    - Entries of the counted stream whose entry-ID time is today (UTC).
    - Null when not counted (the counter is not above its limit today, and O(count_results) is false).
  returned: always
  type: int
  sample: 5
counted_stream_exists:
  description: Whether the counted stream exists (a missing one counts zero); null when not counted.
  returned: always
  type: bool
  sample: true
server_time_ms:
  description: The Redis server's clock when the governor was read, in milliseconds.
  returned: always
  type: int
  sample: 1768645200000
reset:
  description:
    - Whether the counter was reset (in check mode, or when the mode gate forbids a change,
      whether it would be).
  returned: always
  type: bool
  sample: true
reset_skipped_reason:
  description: Why a counter was not reset although O(reset_above_limit) was asked; null otherwise.
  returned: always
  type: str
  sample: the counter (150) is at or below its limit (200), which is legitimate
before:
  description: The date and count fields before the reset.
  returned: when RV(reset) is true
  type: dict
  sample: {date: "2026-01-17", count: 10000}
after:
  description: The date and count fields after the reset (in check mode, what they would be).
  returned: when RV(reset) is true
  type: dict
  sample: {date: "2026-01-17", count: 5}
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.quantum.redis_streams.plugins.module_utils.governor import (
    Governor,
    date_like,
    governor_spec,
)
from ansible_collections.quantum.redis_streams.plugins.module_utils.redis_connection import (
    connection_argument_spec,
    describe_endpoint,
    redis_client,
)


def main() -> None:
    argument_spec = connection_argument_spec()
    argument_spec.update(
        governor=governor_spec(),
        count_results={"type": "bool", "default": False},
        reset_above_limit={"type": "bool", "default": False},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    client = redis_client(module)
    governor = Governor(module, client)
    state = governor.state()
    if module.params["count_results"] or state["over_limit"]:
        governor.count()
    result: dict[str, Any] = {
        "changed": False,
        "endpoint": describe_endpoint(module.params["connection"]),
        "governor": state,
        "results_today": governor.results_today,
        "counted_stream_exists": governor.counted_stream_exists,
        "server_time_ms": governor.server_time_ms,
        "reset": False,
        "reset_skipped_reason": None,
    }
    if module.params["reset_above_limit"]:
        reason = governor.skip_reason(state)
        if reason is None and not module.check_mode:
            reason = governor.reset(state)
        if reason is None:
            before = {"date": state["date"], "count": state["count"]}
            after = {"date": date_like(state["date"], governor.today), "count": governor.results_today}
            result.update(changed=True, reset=True, before=before, after=after)
            if module._diff:
                result["diff"] = {
                    "before_header": governor.key,
                    "after_header": governor.key,
                    "before": before,
                    "after": after,
                }
            if governor.results_today > state["limit"]:
                module.warn(
                    f"Today's results ({governor.results_today}) exceed the limit ({state['limit']}): "
                    "the governor keeps blocking its producer, legitimately."
                )
        result["reset_skipped_reason"] = reason
    module.exit_json(**result)


if __name__ == "__main__":
    main()
