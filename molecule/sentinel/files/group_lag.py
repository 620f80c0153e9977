#!/usr/bin/env python3
"""Molecule helper, run in the lab container: what the server says of each consumer group.

  group_lag.py PORT PIPELINE_JSON

For every consumer stage of the pipeline, in one MULTI (one instant of the server): the
input stream's last generated id and entries-added, and the group's last delivered id,
entries-read, lag and pending count. Prints one JSON object {stage: {...}, "caught_up": bool}:
`caught_up` when every group has been delivered its stream's last entry, the instant where a
correct server reports lag 0 (Redis 7.0 after a failover does not: lab/README.md).
"""

from __future__ import annotations

import json
import sys

import redis


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    r = redis.Redis(host="127.0.0.1", port=int(argv[0]), decode_responses=True, socket_timeout=10)
    stages = [s for s in json.loads(argv[1])["stages"] if s.get("input_stream")]
    pipe = r.pipeline(transaction=True)
    for stage in stages:
        pipe.xinfo_stream(stage["input_stream"])
        pipe.xinfo_groups(stage["input_stream"])
    replies = pipe.execute()
    result: dict = {}
    for i, stage in enumerate(stages):
        stream, groups = replies[2 * i], replies[2 * i + 1]
        group = next(g for g in groups if g["name"] == stage["group"])
        result[stage["name"]] = {
            "last_generated_id": stream["last-generated-id"],
            "entries_added": stream.get("entries-added"),
            "last_delivered_id": group["last-delivered-id"],
            "entries_read": group.get("entries-read"),
            "lag": group.get("lag"),
            "pending": group["pending"],
            "caught_up": group["last-delivered-id"] == stream["last-generated-id"],
        }
    result["caught_up"] = all(v["caught_up"] for v in result.values())
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
