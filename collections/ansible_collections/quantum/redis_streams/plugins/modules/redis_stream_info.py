#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Read-only facts about Redis Streams consumer groups: what every diagnosis, verdict and
# report of this project is computed from.
from __future__ import annotations

DOCUMENTATION = r"""
---
module: redis_stream_info
short_description: Report the state of Redis streams, their consumer groups and consumers
description:
  - Reads, never writes, the state of a list of Redis streams or of every stream of a
    pipeline definition (the inventory variable C(pipeline)).
  - Per stream, its length, first and last entry IDs and the number of entries ever added.
  - Per consumer group, its consumer count, pending entries, last delivered ID, entries read
    and lag. A lag the server cannot compute (entries deleted after the group's position) is
    reported as C(null), never as V(0).
  - Per consumer, its pending entries, idle time, inactive time (Redis 7.2 and later), the ID,
    age and idle time of its oldest pending entry and the highest delivery count in its
    pending entries list. These come from a bounded C(XPENDING key group - + COUNT n consumer)
    per consumer with pending entries, never from an unbounded scan of a pending entries list.
  - Commands are pipelined, one round trip per kind of question, and each command is bounded.
  - A missing stream or group is reported under RV(missing) and with C(exists=false); the
    module fails on it only with O(fail_on_missing=true). A key of another type than stream
    always fails.
version_added: "1.0.0"
author:
  - quantum-remediation maintainers (@quantum-remediation)
requirements:
  - redis (redis-py) 5.0 or later on the target (Debian package python3-redis, pip package redis).
  - Redis server 5.0 or later; C(entries_added), C(entries_read) and C(lag) need 7.0,
    C(inactive_ms) needs 7.2.
extends_documentation_fragment:
  - quantum.redis_streams.redis_connection
options:
  connection:
    # The shared option (doc fragment) without its default: omitted, O(pipeline)'s C(redis) is used.
    default: null
  streams:
    description:
      - The streams to report, each with the consumer groups to report.
      - Mutually exclusive with O(pipeline); one of the two is required.
    type: list
    elements: dict
    suboptions:
      stream:
        description: The stream's key.
        type: str
        required: true
      groups:
        description:
          - The consumer groups to report. A group not in the stream is reported as missing.
          - When omitted, every group of the stream.
        type: list
        elements: str
  pipeline:
    description:
      - A pipeline definition, as the inventory variable C(pipeline) of this project.
      - Reported are each stage's C(input_stream) with the stage's C(group), and every C(output_stream)
        (with all its groups when no stage reads it).
      - Its C(redis) dictionary is the connection when O(connection) is omitted.
      - Mutually exclusive with O(streams); one of the two is required.
    type: dict
  fail_on_missing:
    description: Fail when a stream or group asked for does not exist, instead of only reporting it.
    type: bool
    default: false
  pending_scan_limit:
    description:
      - How many pending entries of each consumer are read (one bounded C(XPENDING) range) to find the
        highest delivery count. When a consumer has more,
        RV(streams.groups.consumers.max_delivery_count_exact) is V(false).
      - The default, V(1), reads only each consumer's oldest entry (its id, idle time and delivery
        count), so that diagnosis costs one call per consumer however long the pending lists are;
        a larger value reads more of each list only to find a higher delivery count.
      - Between 1 and 10000, so that no call blocks the server for long.
    type: int
    default: 1
attributes:
  check_mode:
    description: Can run in check mode and returns the same facts; it never changes anything.
    support: full
  diff_mode:
    description: Nothing changes, so there is nothing to diff.
    support: none
  platform:
    description: Runs on the target, which needs redis-py and network access to Redis.
    support: full
    platforms: posix
notes:
  - The oldest pending entry of a consumer is the one with the lowest ID, its age is the server time
    minus the time in that ID.
  - Consumers and their pending entries are read in successive round trips, so a consumer that acknowledges
    entries meanwhile can show C(pending) greater than zero with no oldest pending entry.
seealso:
  - name: XINFO GROUPS
    description: How Redis computes entries-read and lag, and when it cannot.
    link: https://redis.io/docs/latest/commands/xinfo-groups/
"""

EXAMPLES = r"""
- name: Read the state of the trading pipeline (the inventory's pipeline definition)
  quantum.redis_streams.redis_stream_info:
    pipeline: "{{ pipeline }}"
  register: stream_state

- name: Read two streams, one group of the first, every group of the second
  quantum.redis_streams.redis_stream_info:
    connection:
      host: 127.0.0.1
      port: 6379
      password: "{{ vault_quantum_redis_password }}"
    streams:
      - stream: quantum:stream:ai.decision
        groups: [router]
      - stream: quantum:stream:trade.intent
  register: stream_state

- name: Over TLS, failing when the router's group is gone
  quantum.redis_streams.redis_stream_info:
    connection:
      host: redis.example.internal
      port: 6380
      tls: true
      tls_ca_file: /etc/quantum/redis-ca.pem
    streams:
      - stream: quantum:stream:ai.decision
        groups: [router]
    fail_on_missing: true

- name: Show how long the router's oldest pending entry has waited
  ansible.builtin.debug:
    msg: >-
      {{ stream_state.streams['quantum:stream:ai.decision'].groups.router
         .consumers['router-1'].oldest_pending_age_ms }}
"""

RETURN = r"""
endpoint:
  description: The Redis the module talked to - C(HOST:PORT), C(unix socket PATH), or with
    O(connection.sentinel) C(primary HOST:PORT of Sentinel service NAME) (the primary the sentinels named).
  returned: always
  type: str
  sample: primary 127.0.0.1:6379 of Sentinel service quantum
server:
  description: The Redis server.
  returned: always
  type: dict
  contains:
    version:
      description: The server's version.
      type: str
      sample: "7.0.15"
    time_ms:
      description: The server's clock (TIME) in milliseconds since the epoch; ages are computed against it.
      type: int
      sample: 1790000000000
streams:
  description: Per stream asked for, its state.
  returned: always
  type: dict
  contains:
    exists:
      description: Whether the stream exists. When V(false), every other field is null and groups are missing.
      type: bool
    length:
      description: Number of entries in the stream (XLEN).
      type: int
      sample: 10021
    first_entry_id:
      description: ID of the first entry, null when the stream is empty.
      type: str
      sample: "1790000000000-0"
    last_entry_id:
      description: ID of the last entry, null when the stream is empty.
      type: str
      sample: "1790000011776-0"
    entries_added:
      description: Entries ever added to the stream (Redis 7.0 and later, null before).
      type: int
      sample: 10021
    groups:
      description: Per consumer group asked for (or every group), its state.
      type: dict
      contains:
        exists:
          description: Whether the group exists. When V(false), every other field is null.
          type: bool
        consumer_count:
          description: Number of consumers in the group.
          type: int
          sample: 2
        pending:
          description: Length of the group's pending entries list.
          type: int
          sample: 6
        last_delivered_id:
          description: ID of the last entry delivered to the group.
          type: str
        entries_read:
          description: The group's logical read counter; null when the server does not know it.
          type: int
        lag:
          description:
            - Entries not yet delivered to the group; null when the server cannot tell (not zero).
            - V(0) when the group was delivered the stream's last entry, whatever the server says (a
              Redis 7.0 replica promoted by a failover reports a stale lag of up to every entry ever added).
          type: int
        oldest_undelivered_id:
          description:
            - ID of the first entry after the group's last delivered one (the oldest entry no consumer
              of the group has read); null when there is none. One C(XRANGE ... COUNT 1) per group
              whose lag is not V(0) (Redis 6.2 and later, and C(+xrange) in an ACL; null otherwise).
          type: str
        oldest_undelivered_age_ms:
          description:
            - Server time minus the time in that ID - how long it has waited undelivered. A consumer
              reading with C(>) is served at once, so an age past a stall threshold proves no
              consumer of the group read for that long. Null when there is none.
          type: int
        consumers:
          description: Per consumer of the group, its state.
          type: dict
          contains:
            pending:
              description: Entries delivered to the consumer and not acknowledged.
              type: int
            idle_ms:
              description: Milliseconds since the consumer's last attempted interaction.
              type: int
            inactive_ms:
              description: Milliseconds since its last successful read or claim; Redis 7.2+, null before.
              type: int
            oldest_pending_id:
              description: ID of its oldest pending entry; null when it has none.
              type: str
            oldest_pending_age_ms:
              description: Server time minus the time in that ID; null when it has none.
              type: int
            oldest_pending_idle_ms:
              description: Milliseconds since that entry was last delivered; null when it has none.
              type: int
            oldest_pending_deliveries:
              description: How many times that entry was delivered; null when it has none.
              type: int
            max_delivery_count:
              description: Highest delivery count among the pending entries read; 0 when it has none.
              type: int
            max_delivery_count_exact:
              description: V(false) when the consumer had more pending entries than O(pending_scan_limit).
              type: bool
  sample:
    "quantum:stream:ai.decision":
      exists: true
      length: 10021
      first_entry_id: "1790000000000-0"
      last_entry_id: "1790000011776-0"
      entries_added: 10021
      groups:
        router:
          exists: true
          consumer_count: 1
          pending: 3
          last_delivered_id: "1790000011776-0"
          entries_read: 10021
          lag: 0
          oldest_undelivered_id: null
          oldest_undelivered_age_ms: null
          consumers:
            router-1:
              pending: 3
              idle_ms: 11776068
              inactive_ms: null
              oldest_pending_id: "1790000000000-0"
              oldest_pending_age_ms: 11776068
              oldest_pending_idle_ms: 11776068
              oldest_pending_deliveries: 1
              max_delivery_count: 1
              max_delivery_count_exact: true
missing:
  description: What was asked for and does not exist, as C(stream) or C(stream/group).
  returned: always
  type: list
  elements: str
  sample: ["quantum:stream:trade.result", "quantum:stream:ai.decision/router"]
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.quantum.redis_streams.plugins.module_utils.redis_connection import (
    connection_argument_spec,
    describe_endpoint,
    explain_redis_error,
    redis_client,
)
from ansible_collections.quantum.redis_streams.plugins.module_utils.stream_info import (
    StreamInfo,
    WrongType,
    module_connection_and_scan_limit,
    requested_from_pipeline,
    requested_from_streams,
)


def argument_spec() -> dict[str, Any]:
    spec = connection_argument_spec()
    # No default: an omitted `connection` means "use pipeline.redis".
    spec["connection"].pop("default", None)
    spec.update(
        streams={
            "type": "list",
            "elements": "dict",
            "options": {
                "stream": {"type": "str", "required": True},
                "groups": {"type": "list", "elements": "str"},
            },
        },
        pipeline={"type": "dict"},
        fail_on_missing={"type": "bool", "default": False},
        pending_scan_limit={"type": "int", "default": 1},
    )
    return spec


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[("streams", "pipeline")],
        required_one_of=[("streams", "pipeline")],
        supports_check_mode=True,
    )
    params = module.params
    pipeline = params["pipeline"]
    connection, scan_limit = module_connection_and_scan_limit(module)
    if pipeline is not None:
        requested, problem = requested_from_pipeline(pipeline)
        if problem:
            module.fail_json(msg=problem)
    else:
        requested = requested_from_streams(params["streams"])
    if not requested:
        module.fail_json(msg="No stream to report: streams is empty.")

    client = redis_client(module, connection)
    info = StreamInfo(client, requested, scan_limit)
    try:
        info.collect()
    except WrongType as exc:
        module.fail_json(msg=str(exc))
    except Exception as exc:  # every server or client failure becomes one sentence
        module.fail_json(msg=explain_redis_error(exc, connection, "reading the streams"))
    finally:
        client.close()

    result = {
        "changed": False,
        "endpoint": describe_endpoint(connection),
        "server": info.server,
        "streams": info.streams,
        "missing": info.missing,
    }
    if info.missing and params["fail_on_missing"]:
        module.fail_json(
            msg=f"Missing from Redis at {describe_endpoint(connection)}: {', '.join(info.missing)}.", **result
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
