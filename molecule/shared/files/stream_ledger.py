#!/usr/bin/env python3
"""Molecule helper, run in a lab container: the pipeline's streams as data, for checks.

  stream_ledger.py ledger PORT PIPELINE_JSON [--from STAGE] [--trace ID ...]
      Where every input entry of every consumer stage went, up to what its group had been
      delivered when the check began: forwarded (an output entry carries it as source_id),
      pending on a consumer, dead-lettered (origin_id in the stage's dead-letter stream), or
      LOST (none of these). --trace follows ids of STAGE's input (default: the first consumer
      stage's) downstream through every later stage (--from before --trace).
  stream_ledger.py dump PORT
      Every key of the database: type, hashes in full, streams with their length, last id,
      groups (last delivered id, entries read, pending ids per consumer). Idle times are left
      out: they change by themselves.

The password (the default user's, when Redis has one) comes from REDISCLI_AUTH, as for
redis-cli: set it in the task's environment.

Reads in an order that makes the ledger exact on a flowing pipeline: the group's cursor
first, then the input, the pending lists, the dead-letter stream and the output last (a
consumer adds the output entry and acknowledges in one MULTI, so an entry acknowledged
after the pending lists were read is already in the output when it is read).
"""

from __future__ import annotations

import json
import os
import sys

import redis


def parse_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def xrange_all(r: redis.Redis, stream: str, last: str = "+") -> list[tuple[str, dict]]:
    entries: list[tuple[str, dict]] = []
    start = "-"
    while True:
        batch = r.xrange(stream, start, last, count=1000)
        entries += batch
        if len(batch) < 1000:
            return entries
        start = "(" + batch[-1][0]


def pending_ids(r: redis.Redis, stream: str, group: str) -> dict[str, str]:
    """{entry id: consumer} of the group's whole PEL."""
    held: dict[str, str] = {}
    start = "-"
    while True:
        batch = r.xpending_range(stream, group, min=start, max="+", count=1000)
        for item in batch:
            held[item["message_id"]] = item["consumer"]
        if len(batch) < 1000:
            return held
        start = "(" + batch[-1]["message_id"]


def group_info(r: redis.Redis, stream: str, group: str) -> dict | None:
    try:
        groups = r.xinfo_groups(stream)
    except redis.ResponseError:
        return None
    return next((g for g in groups if g["name"] == group), None)


def ledger(r: redis.Redis, pipeline: dict, trace: list[str], start: str | None = None) -> dict:
    stages = [s for s in pipeline["stages"] if s.get("input_stream")]
    out: dict = {"stages": {}, "lost": 0}
    cursors = {}
    for st in stages:
        info = group_info(r, st["input_stream"], st["group"])
        cursors[st["name"]] = info["last-delivered-id"] if info else None
    forwarded_as: dict[str, dict[str, str]] = {}
    for st in stages:
        name, cursor = st["name"], cursors[st["name"]]
        record: dict = {"input_stream": st["input_stream"], "group": st["group"],
                        "live": st["consumer"], "cursor": cursor, "checked": 0, "forwarded": 0,
                        "pending": {}, "dead_lettered": 0, "lost_ids": [], "consumers": []}
        out["stages"][name] = record
        if cursor is None:
            record["lost_ids"] = ["group missing"]
            continue
        record["consumers"] = sorted(c["name"] for c in r.xinfo_consumers(st["input_stream"], st["group"]))
        inputs = [i for i, _ in xrange_all(r, st["input_stream"], cursor)]
        held = pending_ids(r, st["input_stream"], st["group"])
        dead: set[str] = set()
        dl_stream = (st.get("dead_letter") or {}).get("stream")
        if dl_stream and r.exists(dl_stream):
            dead = {f.get("origin_id") for _, f in xrange_all(r, dl_stream)}
        sources = {f.get("source_id"): i for i, f in xrange_all(r, st["output_stream"])}
        forwarded_as[name] = sources
        for entry_id in inputs:
            record["checked"] += 1
            if entry_id in sources:
                record["forwarded"] += 1
            elif entry_id in held:
                record["pending"][held[entry_id]] = record["pending"].get(held[entry_id], 0) + 1
            elif entry_id in dead:
                record["dead_lettered"] += 1
            else:
                record["lost_ids"].append(entry_id)
        out["lost"] += len(record["lost_ids"])
    # The path of each traced id through the stages, from the input of stage `start` (default
    # the first consumer stage): [input id, output id of that stage, of the next, ...]. Ids are
    # per stream (two streams may hold the same id), so the start stage is named, not guessed.
    out["trace"] = {}
    names = [st["name"] for st in stages]
    following = stages[names.index(start):] if start else stages
    for entry_id in trace:
        path, current = [entry_id], entry_id
        for st in following:
            current = forwarded_as.get(st["name"], {}).get(current)
            if current is None:
                break
            path.append(current)
        out["trace"][entry_id] = path
    return out


def dump(r: redis.Redis) -> dict:
    keys: dict = {}
    for key in sorted(r.scan_iter(count=1000)):
        kind = r.type(key)
        item: dict = {"type": kind}
        if kind == "hash":
            item["value"] = r.hgetall(key)
        elif kind == "stream":
            info = r.xinfo_stream(key)
            item.update(length=info["length"], last_generated_id=info["last-generated-id"],
                        first_entry_id=(info.get("first-entry") or [None])[0], groups={})
            for g in r.xinfo_groups(key):
                held = pending_ids(r, key, g["name"])
                item["groups"][g["name"]] = {
                    "last_delivered_id": g["last-delivered-id"],
                    "entries_read": g.get("entries-read"),
                    "pending": g["pending"],
                    "consumers": {
                        c["name"]: sorted(i for i, owner in held.items() if owner == c["name"])
                        for c in r.xinfo_consumers(key, g["name"])
                    },
                }
        else:
            item["length"] = None
        keys[key] = item
    return {"keys": keys}


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("ledger", "dump"):
        print(__doc__, file=sys.stderr)
        return 2
    r = redis.Redis(host="127.0.0.1", port=int(argv[1]), password=os.environ.get("REDISCLI_AUTH") or None,
                    decode_responses=True, socket_connect_timeout=2, socket_timeout=10)
    if argv[0] == "dump":
        result = dump(r)
    else:
        trace = argv[argv.index("--trace") + 1:] if "--trace" in argv else []
        start = argv[argv.index("--from") + 1] if "--from" in argv else None
        result = ledger(r, json.loads(argv[2]), trace, start)
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
