#!/usr/bin/env python3
"""Lab stub of one pipeline stage: `stub.py STAGE`, run by the unit `qt-lab configure`
generates for that stage. Everything comes from /etc/quantum/lab-pipeline.json (labdata.py):
the stage's streams, group and consumer, the governor, Redis and the stubs' credentials.

A producer stage (no input_stream) XADDs decisions at lab.rate per second. When it is the
`governed: true` stage and pipeline.governor exists, the governor hash allows or blocks it: the
check, the XADDs and the HINCRBY of a tick are one Lua script, so a poisoned counter stops
production at once. A consumer stage reads its input_stream as the fixed consumer of its group,
up to READ_BATCH entries a read: its own PEL first (ID 0, the standard recovery loop), then new
entries (`>`); each batch is one MULTI (an XADD per entry to output_stream and one XACK of all
ids), so output and acknowledgement never diverge. The last stage tags its output with the
mode (pipeline.mode_variable of pipeline.mode_file).

Lab controls (files written by qt-lab, under /run/quantum):
- quiet: the producer pauses (a healthy, idle pipeline);
- hold-<stage>: containing N, the consumer reads N entries and does not process them until the
  file is removed; it reports `held-<stage>` once it holds them. qt-lab uses it to freeze a
  consumer with entries in its PEL, exactly like the incident.

Redis unreachable (or, behind Sentinel, a failover: READONLY, no primary): logged, the client
rebuilt (labdata.connect asks the sentinels again) and retried every second; the unit stays
active.
"""

from __future__ import annotations

import datetime
import logging
import os
import random
import signal
import sys
import time
from pathlib import Path

import labdata
import redis

CONTROL_DIR = Path("/run/quantum")
LOG_DIR = Path("/var/log/quantum")

# One call per tick: the governor check, the XADDs and the HINCRBY of a whole batch are atomic,
# so a poisoned counter stops production at once (mid-batch too). ARGV: today, the three field
# names, the default limit, the number of values per entry, then every entry's field/value pairs.
# Without a governor: the same batch, no check.
PLAIN_XADD = """
local width, added, first, last = tonumber(ARGV[1]), 0, '', ''
local i = 2
while i + width - 1 <= #ARGV do
  last = redis.call('XADD', KEYS[1], '*', unpack(ARGV, i, i + width - 1))
  if added == 0 then first = last end
  added = added + 1
  i = i + width
end
return {added, first, last, '', ''}
"""
GOVERNED_XADD = """
local key, stream = KEYS[1], KEYS[2]
local today, date_f, count_f, limit_f, default_limit = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local width = tonumber(ARGV[6])
if redis.call('HGET', key, date_f) ~= today then
  redis.call('HSET', key, date_f, today, count_f, 0)
end
if redis.call('HEXISTS', key, limit_f) == 0 then
  redis.call('HSET', key, limit_f, default_limit)
end
local count = tonumber(redis.call('HGET', key, count_f)) or 0
local limit = tonumber(redis.call('HGET', key, limit_f)) or 0
local added, first, last = 0, '', ''
local i = 7
while i + width - 1 <= #ARGV and count + added < limit do
  last = redis.call('XADD', stream, '*', unpack(ARGV, i, i + width - 1))
  if added == 0 then first = last end
  added = added + 1
  i = i + width
end
if added > 0 then
  redis.call('HINCRBY', key, count_f, added)
end
return {added, first, last, tostring(count + added), tostring(limit)}
"""

# Batches: a consumer reads up to READ_BATCH entries per XREADGROUP and forwards them in one
# MULTI; the producer adds at most MAX_PER_TICK per call and ticks at most every TICK seconds
# (5,000/s = 100 per 20 ms tick).
READ_BATCH = 500
MAX_PER_TICK = 1000
TICK = 0.02

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")


class Stage:
    def __init__(self, data: dict, name: str) -> None:
        pipeline, lab = data["pipeline"], data["lab"]
        stage = labdata.stage_of(data, name)
        self.data = data
        self.name = name
        self.input_stream = stage.get("input_stream") or None
        self.group = stage.get("group") or None
        self.consumer = stage.get("consumer") or None
        self.output_stream = stage.get("output_stream") or None
        if not self.input_stream and not self.output_stream:
            raise labdata.LabDataError(f"stage {name} has neither input_stream nor output_stream.")
        self.rate = float(lab.get("rate") or labdata.DEFAULT_RATE)
        governor = pipeline.get("governor") or None
        self.governor = governor if governor and stage.get("governed") else None
        self.governor_limit = str(lab.get("daily_limit") or labdata.DEFAULT_DAILY_LIMIT)
        stages = pipeline.get("stages") or []
        # The last stage marks what it did with the mode the units run in.
        self.tags_mode = bool(self.input_stream) and stages[-1].get("name") == name
        self.log = make_logger(self.name)
        self.redis = labdata.connect(data, "services")

    def reconnect(self) -> None:
        """A fresh client: behind Sentinel it asks the sentinels for the primary again."""
        self.redis.close()
        self.redis = labdata.connect(self.data, "services")

    # -- producer ---------------------------------------------------------------------------
    def produce_forever(self) -> None:
        script = self.redis.register_script(GOVERNED_XADD if self.governor else PLAIN_XADD)
        if self.governor:
            gov = self.governor
            head = [gov["date_field"], gov["count_field"], gov["limit_field"], self.governor_limit]
            keys = [gov["key"], self.output_stream]
        else:
            keys = [self.output_stream]
        # Slow rates tick once per entry; fast ones every TICK with as many entries as are due.
        interval = min(1.0 / self.rate, 1.0) if self.rate > 0 else 1.0
        interval = max(interval, TICK) if self.rate * TICK > 1 else interval
        state = None
        seq = 0
        start = next_tick = time.monotonic()
        sent = 0
        while True:
            next_tick += interval
            time.sleep(max(0.0, next_tick - time.monotonic()))
            if (CONTROL_DIR / "quiet").exists():
                state = self.announce(state, "quiet", "quiet: decision production paused")
                start, sent = time.monotonic(), 0
                continue
            due = max(1, int(self.rate * (time.monotonic() - start)) - sent) if self.rate > 0 else 1
            if due > MAX_PER_TICK:
                # Far behind (a SIGSTOP, a slow Redis): no burst, the rate counts from now.
                start, sent, due = time.monotonic(), 0, MAX_PER_TICK
            today = datetime.datetime.now(datetime.UTC).date().isoformat()
            args: list[str] = ([today, *head] if self.governor else []) + ["12"]
            for _ in range(due):
                seq += 1
                args += [
                    "symbol", random.choice(SYMBOLS),
                    "action", random.choice(("BUY", "SELL")),
                    "confidence", f"{random.uniform(0.55, 0.99):.2f}",
                    "qty", f"{random.choice((0.001, 0.002, 0.01)):g}",
                    "ts", f"{time.time():.3f}",
                    "seq", str(seq),
                ]
            added, first, last, count, limit = script(keys=keys, args=args)
            sent += due
            if int(added):
                state = self.announce(state, "producing", "producing decisions")
                self.log.info("decisions %s..%s (%s) -> %s%s", first, last, added, self.output_stream,
                              f" ({self.governor['count_field']}={count})" if self.governor else "")
            if int(added) < due:
                state = self.announce(
                    state, "blocked",
                    f"BLOCKED by governor: {self.governor['count_field']}={count} >= "
                    f"{self.governor['limit_field']}={limit}; producing nothing",
                )

    def announce(self, state: str | None, new: str, message: str) -> str:
        if state != new:
            self.log.log(logging.WARNING if new == "blocked" else logging.INFO, message)
        return new

    # -- consumer ---------------------------------------------------------------------------
    def consume_forever(self) -> None:
        self.ensure_group()
        replayed = self.process_own_pel()
        self.log.info("own PEL processed (%d entries replayed); reading new entries as %s/%s",
                      replayed, self.group, self.consumer)
        hold_flag = CONTROL_DIR / f"hold-{self.name}"
        while True:
            if hold_flag.exists():
                self.hold(hold_flag)
                continue
            response = self.redis.xreadgroup(
                self.group, self.consumer, {self.input_stream: ">"}, count=READ_BATCH, block=1000
            )
            entries = entries_of(response)
            if entries:
                self.forward(entries)

    def ensure_group(self) -> None:
        try:
            self.redis.xgroup_create(self.input_stream, self.group, id="0", mkstream=True)
            self.log.info("created group %s on %s", self.group, self.input_stream)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def process_own_pel(self) -> int:
        replayed = 0
        while True:
            response = self.redis.xreadgroup(
                self.group, self.consumer, {self.input_stream: "0"}, count=READ_BATCH
            )
            entries = entries_of(response)
            if not entries:
                return replayed
            self.forward(entries, replay=True)
            replayed += len(entries)

    def forward(self, entries: list, replay: bool = False) -> None:
        """Forward a batch atomically: one MULTI with an XADD per entry and one XACK of all ids,
        so the output and the acknowledgement never diverge (a crash loses or repeats nothing
        half-way; the replay of the own PEL picks up a batch not committed)."""
        pipe = self.redis.pipeline(transaction=True)
        ids, forwarded, gone = [], [], []
        now = f"{time.time():.3f}"
        mode = (labdata.read_mode(self.data) or "unknown") if self.tags_mode else None
        for entry_id, fields in entries:
            ids.append(entry_id)
            if not fields:
                # Deleted from the stream while pending: acknowledged without output.
                gone.append(entry_id)
                continue
            forwarded.append(entry_id)
            if not self.output_stream:
                continue
            out = {**fields, "source_id": entry_id, "stage": self.name, "ts": now}
            if mode is not None:
                out["mode"] = mode
            pipe.xadd(self.output_stream, out)
        pipe.xack(self.input_stream, self.group, *ids)
        new_ids = pipe.execute()[:-1] if self.output_stream else ["-"] * len(forwarded)
        for entry_id in gone:
            self.log.warning("entry %s no longer exists: acknowledged without output", entry_id)
        if replay:
            # One line per replayed entry: scenarios count them (grep -c ' replayed ').
            for entry_id, new_id in zip(forwarded, new_ids, strict=True):
                self.log.info("replayed %s -> %s %s", entry_id, self.output_stream, new_id)
        elif forwarded:
            self.log.info("processed %d: %s..%s -> %s %s..%s", len(forwarded), forwarded[0],
                          forwarded[-1], self.output_stream, new_ids[0], new_ids[-1])

    def hold(self, flag: Path) -> None:
        """Take N entries into the PEL without processing them, then wait for the flag to go."""
        try:
            wanted = int(flag.read_text().strip() or "0")
        except (OSError, ValueError):
            wanted = 0
        held: list[tuple[str, dict | None]] = []
        self.log.info("hold: taking %d entries without acknowledging them", wanted)
        while flag.exists() and len(held) < wanted:
            response = self.redis.xreadgroup(
                self.group, self.consumer, {self.input_stream: ">"}, count=1, block=500
            )
            held.extend(entries_of(response))
        if len(held) >= wanted:
            (CONTROL_DIR / f"held-{self.name}").write_text(" ".join(i for i, _ in held) + "\n")
            self.log.info("hold: holding %s", " ".join(i for i, _ in held))
        while flag.exists():
            time.sleep(0.1)
        (CONTROL_DIR / f"held-{self.name}").unlink(missing_ok=True)
        self.log.info("hold released: processing %d held entries", len(held))
        if held:
            self.forward(held)


def entries_of(response) -> list:
    if not response:
        return []
    return list(response[0][1])


def make_logger(stage: str) -> logging.Logger:
    log = logging.getLogger(stage)
    log.setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s " + stage + ": %(message)s")
    fmt.converter = time.gmtime
    stdout = logging.StreamHandler(sys.stdout)
    stdout.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log.addHandler(stdout)
    try:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(LOG_DIR / f"{stage}.log")
        handler.setFormatter(fmt)
        log.addHandler(handler)
    except OSError as exc:
        log.warning("cannot write %s: %s", LOG_DIR, exc)
    return log


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: stub.py STAGE (a stage name of /etc/quantum/lab-pipeline.json)", file=sys.stderr)
        return 2
    try:
        stage = Stage(labdata.load(), argv[1])
    except (labdata.LabDataError, KeyError, TypeError, ValueError) as exc:
        print(f"stub {argv[1]}: {exc}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    stage.log.info("starting (pid %d, redis %s, mode %s=%s)", os.getpid(), labdata.endpoint(stage.data),
                   stage.data["pipeline"].get("mode_variable"), labdata.read_mode(stage.data))
    CONTROL_DIR.mkdir(parents=True, exist_ok=True)
    outage = False
    while True:
        try:
            stage.redis.ping()
            if outage:
                stage.log.info("redis reachable again")
                outage = False
            if stage.input_stream:
                stage.consume_forever()
            else:
                stage.produce_forever()
        except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ReadOnlyError,
                redis.exceptions.ExecAbortError) as exc:
            # ConnectionError covers Sentinel's MasterNotFoundError and a demoted primary's
            # READONLY (redis-py turns it into one); the new client asks the sentinels again.
            if not outage:
                stage.log.error("redis unreachable or not the primary (%s); retrying every second", exc)
                outage = True
            time.sleep(1)
            stage.reconnect()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
