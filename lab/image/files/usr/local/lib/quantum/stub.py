#!/usr/bin/env python3
"""Lab stub of one Quantum Trader pipeline service, configured by its systemd unit's environment.

A producer stage (no QT_INPUT_STREAM: the AI engine) XADDs decisions at QT_RATE per second
while the governor hash allows it; the check, the XADD and the HINCRBY are one Lua script, so
a poisoned counter stops production at once. A consumer stage (router, execution) reads its
input stream as the fixed consumer QT_CONSUMER of group QT_GROUP: its own PEL first (ID 0,
the standard recovery loop), then new entries (`>`); for each entry it XADDs to
QT_OUTPUT_STREAM and XACKs, atomically (MULTI).

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

GOVERNED_XADD = """
local key, stream = KEYS[1], KEYS[2]
local today, date_f, count_f, limit_f, default_limit = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('HGET', key, date_f) ~= today then
  redis.call('HSET', key, date_f, today, count_f, 0)
end
if redis.call('HEXISTS', key, limit_f) == 0 then
  redis.call('HSET', key, limit_f, default_limit)
end
local count = tonumber(redis.call('HGET', key, count_f)) or 0
local limit = tonumber(redis.call('HGET', key, limit_f)) or 0
if count >= limit then
  return {0, tostring(count), tostring(limit)}
end
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
local id = redis.call('XADD', stream, '*', unpack(fields))
redis.call('HINCRBY', key, count_f, 1)
return {1, id, tostring(count + 1)}
"""

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
        interval = 1.0 / self.rate if self.rate > 0 else 1.0
        state = None
        seq = 0
        next_tick = time.monotonic()
        while True:
            next_tick += interval
            time.sleep(max(0.0, next_tick - time.monotonic()))
            if (CONTROL_DIR / "quiet").exists():
                state = self.announce(state, "quiet", "quiet: decision production paused")
                continue
            seq += 1
            decision = {
                "symbol": random.choice(SYMBOLS),
                "action": random.choice(("BUY", "SELL")),
                "confidence": f"{random.uniform(0.55, 0.99):.2f}",
                "qty": f"{random.choice((0.001, 0.002, 0.01)):g}",
                "ts": f"{time.time():.3f}",
                "seq": str(seq),
            }
            today = datetime.datetime.now(datetime.UTC).date().isoformat()
            args = [today, "date", "trades_today", "daily_limit", self.governor_limit]
            for field, value in decision.items():
                args += [field, value]
            allowed, first, second = script(keys=[self.governor_key, self.output_stream], args=args)
            if allowed:
                state = self.announce(state, "producing", "producing decisions")
                self.log.info("decision %s %s %s -> %s (trades_today=%s)",
                              decision["action"], decision["qty"], decision["symbol"], first, second)
            else:
                state = self.announce(
                    state, "blocked",
                    f"BLOCKED by governor: trades_today={first} >= daily_limit={second}; producing nothing",
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
                self.group, self.consumer, {self.input_stream: ">"}, count=10, block=1000
            )
            for entry_id, fields in entries_of(response):
                self.forward(entry_id, fields)

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
                self.group, self.consumer, {self.input_stream: "0"}, count=100
            )
            entries = entries_of(response)
            if not entries:
                return replayed
            for entry_id, fields in entries:
                self.forward(entry_id, fields, replay=True)
                replayed += 1

    def forward(self, entry_id: str, fields: dict | None, replay: bool = False) -> None:
        if not fields:
            # The entry was deleted from the stream while pending: nothing to forward.
            self.redis.xack(self.input_stream, self.group, entry_id)
            self.log.warning("entry %s no longer exists: acknowledged without output", entry_id)
            return
        out = {**fields, "source_id": entry_id, "stage": self.name, "ts": f"{time.time():.3f}"}
        if self.name == "execution":
            out["status"] = "FILLED"
            out["testnet"] = read_mode()
        pipe = self.redis.pipeline(transaction=True)
        pipe.xadd(self.output_stream, out)
        pipe.xack(self.input_stream, self.group, entry_id)
        new_id, _ = pipe.execute()
        self.log.info("%s %s -> %s %s", "replayed" if replay else "processed", entry_id,
                      self.output_stream, new_id)

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
        for entry_id, fields in held:
            self.forward(entry_id, fields)


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
