#!/usr/bin/env python3
"""Dump everything a recovery run could change, as one JSON document on stdout.

Run in the lab container (ansible.builtin.script) by scenarios that prove a run changed
nothing: compare two dumps taken before and after the run. Read-only: no Redis write, no file
written.

  state_dump.py --port N [--unit-glob 'quantum-*'] [--lock PATH] [--evidence-root PATH]

- `unit_files`: sha256 of every file under /etc/systemd/system whose first path component
  matches the glob (unit files and their drop-in directories);
- `services`: MainPID, ExecMainStartTimestamp, ActiveState, SubState, NRestarts of those units
  and of redis-server;
- `redis`: every key by type; a stream with all its entries and XINFO STREAM FULL (groups,
  their PEL with owner, delivery time and delivery count, consumers with their PEL) minus the
  consumers' seen/active times, which grow by themselves;
- `write_calls`: calls of the write commands that nothing in a frozen pipeline issues;
- `lock`: whether the run lock exists; `evidence_runs`: the run directories on the target.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import redis

UNIT_DIR = Path("/etc/systemd/system")
# Consumer fields that change without any write: the last read attempt and the last success.
VOLATILE_CONSUMER_FIELDS = {"seen-time", "active-time", "idle", "inactive"}
WRITE_COMMANDS = (
    "xadd", "xack", "xclaim", "xautoclaim", "xdel", "xtrim", "xsetid",
    "xgroup|create", "xgroup|createconsumer", "xgroup|delconsumer", "xgroup|destroy", "xgroup|setid",
    "hset", "hmset", "hincrby", "hdel", "set", "del", "unlink", "rename", "flushdb", "flushall",
)


def pairs(flat: list) -> dict:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def stream_full(r: redis.Redis, key: str) -> dict:
    info = pairs(r.execute_command("XINFO", "STREAM", key, "FULL", "COUNT", 0))
    groups = []
    for raw in info.get("groups") or []:
        group = pairs(raw)
        group["consumers"] = [
            {k: v for k, v in pairs(c).items() if k not in VOLATILE_CONSUMER_FIELDS}
            for c in group.get("consumers") or []
        ]
        groups.append(group)
    info["groups"] = groups
    info["entries"] = [[eid, fields] for eid, fields in r.xrange(key, "-", "+")]
    return info


def dump_key(r: redis.Redis, key: str) -> dict:
    kind = r.type(key)
    value: object
    if kind == "stream":
        value = stream_full(r, key)
    elif kind == "hash":
        value = r.hgetall(key)
    elif kind == "string":
        value = r.get(key)
    elif kind == "list":
        value = r.lrange(key, 0, -1)
    elif kind == "set":
        value = sorted(r.smembers(key))
    elif kind == "zset":
        value = r.zrange(key, 0, -1, withscores=True)
    else:
        value = None
    return {"type": kind, "ttl": r.ttl(key), "value": value}


def unit_files(glob: str) -> dict:
    sums = {}
    for top in sorted(UNIT_DIR.iterdir()):
        if not fnmatch(top.name, glob):
            continue
        for path in sorted([top] if top.is_file() else top.rglob("*")):
            if path.is_file():
                sums[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return sums


def services(glob: str) -> dict:
    pipeline = sorted({p.name.split(".service")[0] for p in UNIT_DIR.iterdir()
                       if fnmatch(p.name, glob) and ".service" in p.name})
    units = [*pipeline, "redis-server"]
    props = "MainPID,ExecMainStartTimestamp,ActiveState,SubState,NRestarts"
    states = {}
    for unit in units:
        out = subprocess.run(["systemctl", "show", f"--property={props}", unit],
                             capture_output=True, text=True, check=True).stdout
        states[unit] = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return states


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--unit-glob", default="quantum-*")
    parser.add_argument("--lock", default="/run/quantum-remediation-quantum-trader.lock")
    parser.add_argument("--evidence-root", default="/var/lib/quantum-remediation/evidence")
    args = parser.parse_args()
    r = redis.Redis(host="127.0.0.1", port=args.port, decode_responses=True, socket_timeout=10)
    keys = sorted(r.scan_iter(count=1000))
    stats = r.info("commandstats")
    root = Path(args.evidence_root)
    state = {
        "unit_files": unit_files(args.unit_glob),
        "services": services(args.unit_glob),
        "redis": {key: dump_key(r, key) for key in keys},
        "write_calls": {c: stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in WRITE_COMMANDS},
        "lock": Path(args.lock).exists(),
        "evidence_runs": sorted(p.name for p in root.iterdir()) if root.is_dir() else [],
    }
    json.dump(state, sys.stdout, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
