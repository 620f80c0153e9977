#!/usr/bin/env python3
"""Lab stub of one Quantum Trader pipeline service, configured by its systemd unit's environment.

A producer stage (no QT_INPUT_STREAM: the AI engine) XADDs decisions at QT_RATE per second
while the governor hash allows it, in batches (every 20 ms at high rates): the check, the
XADDs and the HINCRBY are one Lua script, so a poisoned counter stops production at once. A
consumer stage (router, execution) reads its input stream as the fixed consumer QT_CONSUMER of
group QT_GROUP, up to 500 entries a read: its own PEL first (ID 0, the standard recovery loop),
then new entries (`>`); each batch is one MULTI (an XADD per entry to QT_OUTPUT_STREAM and one
XACK of all ids), so output and acknowledgement never diverge.

Lab controls (files written by qt-lab, under /run/quantum):
- quiet: the producer pauses (a healthy, idle pipeline);
- hold-<stage>: containing N, the consumer reads N entries and does not process them until the
  file is removed; it reports `held-<stage>` once it holds them. qt-lab uses it to freeze a
  consumer with entries in its PEL, exactly like the incident.

Redis unreachable: logged and retried every second; the unit stays active.
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

import redis

CONTROL_DIR = Path("/run/quantum")
LOG_DIR = Path("/var/log/quantum")
MODE_FILE = Path("/etc/quantum/testnet.env")

# One call per tick: the governor check, the XADDs and the HINCRBY of a whole batch are atomic,
# so a poisoned counter stops production at once (mid-batch too). ARGV: today, the three field
# names, the default limit, the number of values per entry, then every entry's field/value pairs.
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
    def __init__(self, env: os._Environ) -> None:
        self.name = env["QT_STAGE"]
        self.input_stream = env.get("QT_INPUT_STREAM") or None
        self.group = env.get("QT_GROUP") or None
        self.consumer = env.get("QT_CONSUMER") or None
        self.output_stream = env["QT_OUTPUT_STREAM"]
        self.rate = float(env.get("QT_RATE", "2"))
        self.governor_key = env.get("QT_GOVERNOR_KEY", "quantum:governor")
        self.governor_limit = env.get("QT_GOVERNOR_LIMIT", "200")
        self.port = int(env.get("REDIS_PORT", "6390"))
        self.log = make_logger(self.name)
        self.redis = redis.Redis(
            host="127.0.0.1",
            port=self.port,
            decode_responses=True,
            socket_connect_timeout=2,
            socket_timeout=10,
        )

    # -- producer ---------------------------------------------------------------------------
    def produce_forever(self) -> None:
        script = self.redis.register_script(GOVERNED_XADD)
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
            args: list[str] = [today, "date", "trades_today", "daily_limit", self.governor_limit, "12"]
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
            added, first, last, count, limit = script(
                keys=[self.governor_key, self.output_stream], args=args)
            sent += due
            if int(added):
                state = self.announce(state, "producing", "producing decisions")
                self.log.info("decisions %s..%s (%s) -> %s (trades_today=%s)",
                              first, last, added, self.output_stream, count)
            if int(added) < due:
                state = self.announce(
                    state, "blocked",
                    f"BLOCKED by governor: trades_today={count} >= daily_limit={limit}; producing nothing",
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
        mode = read_mode() if self.name == "execution" else None
        for entry_id, fields in entries:
            ids.append(entry_id)
            if not fields:
                # Deleted from the stream while pending: acknowledged without output.
                gone.append(entry_id)
                continue
            out = {**fields, "source_id": entry_id, "stage": self.name, "ts": now}
            if mode is not None:
                out["status"] = "FILLED"
                out["testnet"] = mode
            pipe.xadd(self.output_stream, out)
            forwarded.append(entry_id)
        pipe.xack(self.input_stream, self.group, *ids)
        new_ids = pipe.execute()[:-1]
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


def read_mode() -> str:
    try:
        for line in MODE_FILE.read_text().splitlines():
            if line.strip().startswith("BINANCE_TESTNET="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "unknown"


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


def main() -> int:
    stage = Stage(os.environ)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    stage.log.info("starting (pid %d, redis 127.0.0.1:%d, mode BINANCE_TESTNET=%s)",
                   os.getpid(), stage.port, read_mode())
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
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if not outage:
                stage.log.error("redis unreachable (%s); retrying every second", exc)
                outage = True
            time.sleep(1)

if __name__ == "__main__":
    sys.exit(main())
