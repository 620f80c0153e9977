#!/usr/bin/env python3
"""qt-lab: configure the lab pipeline in this container and inject the incident's faults.

Every fault leaves the system exactly as the real fault does (see lab/README.md):
  configure --redis-port N [--rate R] [--daily-limit L]
                                        write /etc/quantum/lab.env, (re)start Redis and the stubs
  wait-flow [--timeout S]               wait until every stage's output stream grows
  hang STAGE [--pending N]              SIGSTOP the stage's main process; a consumer stage first
                                        takes N entries (default 3) into its PEL, unacknowledged
  cont STAGE                            SIGCONT it (the process resumes where it stopped)
  orphan STAGE N [--consumer NAME]      another consumer (default <group>-0) takes N new entries
                                        of the stage's input and never acknowledges them
  poison-governor [N]                   the governor's counter set to N (default 10000) for today
  incident                              the seed's situation: router hung with 3 pending, an
                                        orphan holding 3, governor poisoned, streams flat
  live | testnet                        BINANCE_TESTNET=false | true
  quiet | resume                        the AI engine pauses | produces again (healthy, idle)
  redis-down | redis-up                 stop | start the Redis unit
  break-unit STAGE | fix-unit STAGE     the unit's next start fails (bad ExecStart drop-in) | fixed
  reset [--no-wait]                     a fresh pipeline: faults undone, Redis flushed, flowing
  status [--json]                       streams, groups, consumers, units, governor, mode
  watch [SECONDS]                       status --json twice, SECONDS apart ({before, after})
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import qt_sentinel
import redis

LAB_ENV = Path("/etc/quantum/lab.env")
MODE_FILE = Path("/etc/quantum/testnet.env")
MODE_VARIABLE = "BINANCE_TESTNET"
CONTROL_DIR = Path("/run/quantum")
UNIT_DIR = Path("/etc/systemd/system")
BROKEN_DROPIN = "zz-qt-lab-broken.conf"
BROKEN_EXEC = "/opt/quantum/missing/quantum-service"
REDIS_UNIT = "redis-server.service"
DEFAULT_POISON = 10000
DEFAULT_HELD = 3


class LabError(Exception):
    """A sentence for the operator; qt-lab exits 1 with it."""


@dataclass
class Stage:
    name: str
    unit: str
    output_stream: str
    input_stream: str | None
    group: str | None
    consumer: str | None
    governor_key: str | None
    governor_limit: int | None


# -- helpers -----------------------------------------------------------------------------------
def run(*args: str, check: bool = True) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"`{' '.join(args)}` failed: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return values
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip().strip('"')
    return values


def unit_properties(unit: str, *props: str) -> dict[str, str]:
    out = run("systemctl", "show", unit, *(f"--property={p}" for p in props))
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def process_state(pid: int) -> str | None:
    """The kernel's one-letter state (R, S, T for stopped ...) of a process, None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def today() -> str:
    return datetime.datetime.now(datetime.UTC).date().isoformat()


def wait_until(predicate, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# -- the pipeline, read from the stub units' environment ---------------------------------------
def stages() -> list[Stage]:
    found: list[Stage] = []
    for path in sorted(UNIT_DIR.glob("quantum-*.service")):
        raw = unit_properties(path.name, "Environment").get("Environment", "")
        env = dict(item.split("=", 1) for item in shlex.split(raw) if "=" in item)
        if "QT_STAGE" not in env:
            continue
        limit = read_env_file(LAB_ENV).get("QT_GOVERNOR_LIMIT") or env.get("QT_GOVERNOR_LIMIT")
        found.append(
            Stage(
                name=env["QT_STAGE"],
                unit=path.stem,
                output_stream=env["QT_OUTPUT_STREAM"],
                input_stream=env.get("QT_INPUT_STREAM"),
                group=env.get("QT_GROUP"),
                consumer=env.get("QT_CONSUMER"),
                governor_key=env.get("QT_GOVERNOR_KEY"),
                governor_limit=int(limit) if limit else None,
            )
        )
    ordered = [s for s in found if not s.input_stream]
    while len(ordered) < len(found):
        nxt = [s for s in found if s not in ordered and s.input_stream == ordered[-1].output_stream]
        if not nxt:
            ordered += [s for s in found if s not in ordered]
            break
        ordered.append(nxt[0])
    return ordered


def stage_named(name: str) -> Stage:
    all_stages = stages()
    for st in all_stages:
        if st.name == name:
            return st
    raise LabError(f"unknown stage {name!r}: one of {', '.join(s.name for s in all_stages)}.")


def producer() -> Stage:
    for st in stages():
        if st.governor_key:
            return st
    raise LabError("no governed producer stage found in /etc/systemd/system/quantum-*.service.")


def redis_port() -> int:
    port = read_env_file(LAB_ENV).get("REDIS_PORT")
    if not port:
        raise LabError(f"the lab is not configured ({LAB_ENV} missing): "
                       "run `qt-lab configure --redis-port N`.")
    return int(port)


def client() -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=redis_port(), decode_responses=True,
                       socket_connect_timeout=2, socket_timeout=10)


def connected() -> redis.Redis:
    r = client()
    try:
        r.ping()
    except redis.RedisError as exc:
        raise LabError(f"Redis on 127.0.0.1:{redis_port()} does not answer ({exc}): "
                       "`qt-lab redis-up`?") from exc
    return r


def consumers_of(r: redis.Redis, stream: str, group: str) -> dict[str, dict]:
    try:
        return {c["name"]: c for c in r.xinfo_consumers(stream, group)}
    except redis.ResponseError:
        return {}


def pending_of(r: redis.Redis, stream: str, group: str, consumer: str) -> int:
    return int(consumers_of(r, stream, group).get(consumer, {}).get("pending", 0))


def main_pid(unit: str) -> int:
    return int(unit_properties(unit, "MainPID").get("MainPID", "0") or 0)


# -- configure ---------------------------------------------------------------------------------
def cmd_configure(args: argparse.Namespace) -> None:
    lines = ["# Written by `qt-lab configure`: the lab's Redis port and stub settings.",
             f"REDIS_PORT={args.redis_port}"]
    if args.rate is not None:
        lines.append(f"QT_RATE={args.rate:g}")
    if args.daily_limit is not None:
        lines.append(f"QT_GOVERNOR_LIMIT={args.daily_limit}")
    LAB_ENV.parent.mkdir(parents=True, exist_ok=True)
    LAB_ENV.write_text("\n".join(lines) + "\n")
    if not MODE_FILE.exists():
        write_mode("true")
    # Host network: the port is shared with the host and every other container.
    run("systemctl", "stop", REDIS_UNIT)
    if not port_free(args.redis_port):
        raise LabError(f"port {args.redis_port} is already in use on this host (the network is the "
                       "host's): configure another port.")
    run("systemctl", "restart", REDIS_UNIT)
    if not wait_until(lambda: redis_up(), 15):
        raise LabError(f"Redis did not answer on 127.0.0.1:{args.redis_port} within 15 s: "
                       f"`journalctl -u {REDIS_UNIT}`.")
    if args.daily_limit is not None:
        client().hset(producer().governor_key, "daily_limit", args.daily_limit)
    units = [st.unit for st in stages()]
    run("systemctl", "restart", *units)
    print(f"configured: redis on 127.0.0.1:{args.redis_port}, restarted {', '.join(units)}")


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # REUSEADDR: connections of a Redis just stopped (TIME_WAIT) do not make it "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def redis_up() -> bool:
    try:
        return bool(client().ping())
    except redis.RedisError:
        return False


def cmd_wait_flow(args: argparse.Namespace) -> None:
    r = connected()
    streams = [st.output_stream for st in stages()]
    start = {s: r.xlen(s) for s in streams}
    if not wait_until(lambda: all(r.xlen(s) > start[s] for s in streams), args.timeout, 0.2):
        flat = [s for s in streams if r.xlen(s) <= start[s]]
        raise LabError(f"no flow within {args.timeout:g} s: {', '.join(flat)} did not grow "
                       "(`qt-lab status`).")
    print("flowing: " + ", ".join(f"{s}={r.xlen(s)}" for s in streams))


# -- faults ------------------------------------------------------------------------------------
def cmd_hang(args: argparse.Namespace) -> None:
    st = stage_named(args.stage)
    pid = main_pid(st.unit)
    if not pid or process_state(pid) is None:
        raise LabError(f"{st.unit} has no running main process to hang.")
    held = 0
    if st.consumer:
        held = DEFAULT_HELD if args.pending is None else args.pending
    if held:
        r = connected()
        before = pending_of(r, st.input_stream, st.group, st.consumer)
        CONTROL_DIR.mkdir(parents=True, exist_ok=True)
        flag, report = CONTROL_DIR / f"hold-{st.name}", CONTROL_DIR / f"held-{st.name}"
        report.unlink(missing_ok=True)
        flag.write_text(f"{held}\n")
        if not wait_until(report.exists, args.timeout):
            flag.unlink(missing_ok=True)
            got = pending_of(r, st.input_stream, st.group, st.consumer) - before
            raise LabError(
                f"{st.consumer} took {got} of {held} entries of {st.input_stream} within "
                f"{args.timeout:g} s (the hold is released): is the producer quiet or blocked? "
                "(`qt-lab status`)"
            )
    run("systemctl", "kill", "--signal=SIGSTOP", st.unit)
    if held:
        # The stopped process cannot see this; once resumed (cont) it processes what it held,
        # while a restarted one replays them from its PEL.
        (CONTROL_DIR / f"hold-{st.name}").unlink(missing_ok=True)
        (CONTROL_DIR / f"held-{st.name}").unlink(missing_ok=True)
    if not wait_until(lambda: process_state(pid) == "T", 5):
        raise LabError(f"{st.unit} main process {pid} is not stopped after SIGSTOP.")
    props = unit_properties(st.unit, "ActiveState", "SubState")
    line = f"hung {st.name}: {st.unit} {props['ActiveState']}/{props['SubState']}, pid {pid} stopped (T)"
    if st.consumer:
        r = connected()
        line += f", {st.consumer} pending {pending_of(r, st.input_stream, st.group, st.consumer)}"
    print(line)


def cmd_cont(args: argparse.Namespace) -> None:
    st = stage_named(args.stage)
    run("systemctl", "kill", "--signal=SIGCONT", st.unit)
    print(f"resumed {st.name}: {st.unit} main process {main_pid(st.unit)} continues")


def default_orphan_name(st: Stage) -> str:
    name = re.sub(r"\d+$", "0", st.consumer or "")
    return name if name and name != st.consumer else f"{st.group}-orphan"


def cmd_orphan(args: argparse.Namespace) -> None:
    st = stage_named(args.stage)
    if not st.group:
        raise LabError(f"{st.name} reads no stream: only consumer stages can have an orphan.")
    name = args.consumer or default_orphan_name(st)
    if name == st.consumer:
        raise LabError(f"{name} is the stage's live consumer: an orphan needs another name.")
    r = connected()
    try:
        r.xgroup_create(st.input_stream, st.group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    # A live consumer blocked on the stream is served first by Redis: pause it (unless it is
    # already hung) while the orphan takes its entries, so the orphan gets exactly N.
    pid = main_pid(st.unit)
    paused = bool(pid) and process_state(pid) not in (None, "T")
    if paused:
        run("systemctl", "kill", "--signal=SIGSTOP", st.unit)
    taken: list[str] = []
    try:
        deadline = time.monotonic() + args.timeout
        while len(taken) < args.count and time.monotonic() < deadline:
            response = r.xreadgroup(st.group, name, {st.input_stream: ">"},
                                    count=args.count - len(taken), block=500)
            for _stream, entries in response or []:
                taken += [entry_id for entry_id, _ in entries]
    finally:
        if paused:
            run("systemctl", "kill", "--signal=SIGCONT", st.unit)
    if len(taken) < args.count:
        raise LabError(f"{name} took only {len(taken)} of {args.count} new entries of {st.input_stream} "
                       f"within {args.timeout:g} s (they stay pending): is the producer quiet or blocked?")
    print(f"orphan {name} (group {st.group} on {st.input_stream}) holds {len(taken)} entries it will "
          f"never acknowledge: {' '.join(taken)}")


def cmd_poison_governor(args: argparse.Namespace) -> None:
    st = producer()
    r = connected()
    r.hset(st.governor_key, mapping={"date": today(), "trades_today": args.count})
    r.hsetnx(st.governor_key, "daily_limit", st.governor_limit or 200)
    gov = r.hgetall(st.governor_key)
    print(f"governor {st.governor_key}: date={gov.get('date')} trades_today={gov.get('trades_today')} "
          f"daily_limit={gov.get('daily_limit')}")


def unblock_producer(r: redis.Redis) -> None:
    """Make sure decisions flow (the incident needs some to be taken and held)."""
    st = producer()
    (CONTROL_DIR / "quiet").unlink(missing_ok=True)
    gov = r.hgetall(st.governor_key)
    limit = int(gov.get("daily_limit") or st.governor_limit or 200)
    if gov.get("date") == today() and int(gov.get("trades_today") or 0) >= limit:
        r.hset(st.governor_key, "trades_today", 0)
        print(f"note: governor counter was at its limit ({limit}): set to 0 so decisions flow")


def cmd_incident(args: argparse.Namespace) -> None:
    r = connected()
    router = next((s for s in stages() if s.name == "router"), None) or stages()[1]
    unblock_producer(r)
    cmd_hang(argparse.Namespace(stage=router.name, pending=DEFAULT_HELD, timeout=args.timeout))
    cmd_orphan(argparse.Namespace(stage=router.name, count=DEFAULT_HELD, consumer=None, timeout=args.timeout))
    cmd_poison_governor(argparse.Namespace(count=DEFAULT_POISON))
    # What was already forwarded drains through execution; then every stream is flat.
    streams = [st.output_stream for st in stages()]
    last: dict[str, int] = {}

    def settled() -> bool:
        nonlocal last
        now = {s: r.xlen(s) for s in streams}
        same, last = now == last, now
        return same

    wait_until(settled, 10, 1.0)
    print("incident: " + ", ".join(f"{s}={n}" for s, n in last.items()) + " (flat)")


def write_mode(value: str) -> None:
    MODE_FILE.parent.mkdir(parents=True, exist_ok=True)
    MODE_FILE.write_text(f"# TESTNET mode of the Quantum Trader services (qt-lab live|testnet).\n"
                         f"{MODE_VARIABLE}={value}\n")


def cmd_live(_args: argparse.Namespace) -> None:
    write_mode("false")
    print(f"mode: {MODE_FILE} {MODE_VARIABLE}=false (LIVE)")


def cmd_testnet(_args: argparse.Namespace) -> None:
    write_mode("true")
    print(f"mode: {MODE_FILE} {MODE_VARIABLE}=true (TESTNET)")


def cmd_quiet(_args: argparse.Namespace) -> None:
    CONTROL_DIR.mkdir(parents=True, exist_ok=True)
    (CONTROL_DIR / "quiet").touch()
    print("quiet: the AI engine pauses (a healthy, idle pipeline)")


def cmd_resume(_args: argparse.Namespace) -> None:
    (CONTROL_DIR / "quiet").unlink(missing_ok=True)
    print("resume: the AI engine produces again")


def cmd_redis_down(_args: argparse.Namespace) -> None:
    port = redis_port()
    run("systemctl", "stop", REDIS_UNIT)
    if not wait_until(lambda: not redis_up(), 10):
        raise LabError(f"Redis still answers on 127.0.0.1:{port} after stopping {REDIS_UNIT}.")
    print(f"redis down: {REDIS_UNIT} stopped, nothing answers on 127.0.0.1:{port}")


def cmd_redis_up(_args: argparse.Namespace) -> None:
    run("systemctl", "start", REDIS_UNIT)
    if not wait_until(redis_up, 15):
        raise LabError(f"Redis did not answer within 15 s: `journalctl -u {REDIS_UNIT}`.")
    print(f"redis up on 127.0.0.1:{redis_port()}")


def dropin_path(st: Stage) -> Path:
    return UNIT_DIR / f"{st.unit}.service.d" / BROKEN_DROPIN


def cmd_break_unit(args: argparse.Namespace) -> None:
    st = stage_named(args.stage)
    path = dropin_path(st)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# qt-lab break-unit: the next start of this unit fails (203/EXEC);\n"
                    "# the process running now is left alone. `qt-lab fix-unit` removes this file.\n"
                    f"[Service]\nExecStart=\nExecStart={BROKEN_EXEC}\n")
    run("systemctl", "daemon-reload")
    props = unit_properties(st.unit, "ActiveState", "SubState", "MainPID")
    print(f"broken {st.name}: {path} (ExecStart={BROKEN_EXEC}); still {props['ActiveState']}/"
          f"{props['SubState']} pid {props['MainPID']} until its next restart, which fails")


def cmd_fix_unit(args: argparse.Namespace) -> None:
    st = stage_named(args.stage)
    dropin_path(st).unlink(missing_ok=True)
    run("systemctl", "daemon-reload")
    run("systemctl", "reset-failed", st.unit, check=False)
    print(f"fixed {st.name}: {dropin_path(st)} removed (restart the unit to run it again)")


def cmd_reset(args: argparse.Namespace) -> None:
    all_stages = stages()
    units = [st.unit for st in all_stages]
    run("systemctl", "stop", *units)
    for st in all_stages:
        dropin_path(st).unlink(missing_ok=True)
    for path in CONTROL_DIR.glob("*"):
        path.unlink(missing_ok=True)
    run("systemctl", "daemon-reload")
    run("systemctl", "reset-failed", *units, check=False)
    write_mode("true")
    run("systemctl", "start", REDIS_UNIT)
    if not wait_until(redis_up, 15):
        raise LabError("Redis did not answer within 15 s after reset.")
    client().flushdb()
    run("systemctl", "start", *units)
    print("reset: faults undone, Redis flushed, " + ", ".join(units) + " started")
    if args.wait:
        cmd_wait_flow(argparse.Namespace(timeout=60))


# -- status ------------------------------------------------------------------------------------
def collect_status() -> dict:
    all_stages = stages()
    mode_value = read_env_file(MODE_FILE).get(MODE_VARIABLE)
    status: dict = {
        "mode": {"file": str(MODE_FILE), "value": mode_value,
                 "testnet": mode_value == "true"},
        "controls": {"quiet": (CONTROL_DIR / "quiet").exists(),
                     "holds": sorted(p.name for p in CONTROL_DIR.glob("hold*"))},
        "units": {},
        "redis": {"port": None, "up": False},
        "governor": None,
        "streams": {},
    }
    for unit, name in [(REDIS_UNIT, "redis")] + [(st.unit + ".service", st.name) for st in all_stages]:
        props = unit_properties(unit, "ActiveState", "SubState", "MainPID", "NRestarts", "Result")
        pid = int(props.get("MainPID") or 0)
        status["units"][name] = {
            "unit": unit.removesuffix(".service"),
            "active_state": props.get("ActiveState"),
            "sub_state": props.get("SubState"),
            "main_pid": pid,
            "process_state": process_state(pid) if pid else None,
            "n_restarts": int(props.get("NRestarts") or 0),
            "result": props.get("Result"),
            "broken": name != "redis" and dropin_path(stage_named(name)).exists(),
        }
    try:
        port = redis_port()
    except LabError:
        return status
    status["redis"]["port"] = port
    r = client()
    try:
        status["redis"]["version"] = r.info("server")["redis_version"]
        status["redis"]["up"] = True
    except redis.RedisError as exc:
        status["redis"]["error"] = str(exc)
        return status
    gov_stage = producer()
    gov = r.hgetall(gov_stage.governor_key)
    status["governor"] = {"key": gov_stage.governor_key, **gov}
    for st in all_stages:
        for stream in filter(None, (st.input_stream, st.output_stream)):
            if stream in status["streams"]:
                continue
            info = {"length": r.xlen(stream), "groups": {}}
            try:
                groups = r.xinfo_groups(stream)
            except redis.ResponseError:
                groups = []
            for g in groups:
                info["groups"][g["name"]] = {
                    "pending": g["pending"],
                    "lag": g.get("lag"),
                    "entries_read": g.get("entries-read"),
                    "last_delivered_id": g.get("last-delivered-id"),
                    "consumers": {
                        name: {"pending": c["pending"], "idle_ms": c["idle"]}
                        for name, c in consumers_of(r, stream, g["name"]).items()
                    },
                }
            status["streams"][stream] = info
    return status


def print_status(s: dict) -> None:
    mode = s["mode"]
    label = "TESTNET" if mode["testnet"] else ("LIVE" if mode["value"] == "false" else "UNKNOWN")
    print(f"mode      {mode['file']}: {MODE_VARIABLE}={mode['value']} ({label})")
    ctl = s["controls"]
    print(f"controls  quiet={'yes' if ctl['quiet'] else 'no'} holds={','.join(ctl['holds']) or '-'}")
    redis_line = f"127.0.0.1:{s['redis']['port']} " + ("up " + s["redis"].get("version", "")
                                                        if s["redis"]["up"] else "DOWN")
    print(f"redis     {redis_line}")
    print("units")
    for name, u in s["units"].items():
        proc = {"T": "STOPPED (T)", None: "-"}.get(u["process_state"], u["process_state"])
        extra = " BROKEN (next start fails)" if u["broken"] else ""
        print(f"  {name:<10} {u['unit']:<28} {u['active_state']}/{u['sub_state']:<10} "
              f"pid {u['main_pid']:<7} proc {proc}{extra}")
    gov = s["governor"]
    if gov:
        count, limit = int(gov.get("trades_today") or 0), int(gov.get("daily_limit") or 0)
        verdict = "BLOCKED" if gov.get("date") == today() and count >= limit else "ok"
        print(f"governor  {gov['key']}: date={gov.get('date')} trades_today={count} "
              f"daily_limit={limit} ({verdict})")
    print("streams")
    for stream, info in s["streams"].items():
        print(f"  {stream:<30} length {info['length']}")
        for group, g in info["groups"].items():
            print(f"    group {group:<10} pending {g['pending']} lag {g['lag']} "
                  f"entries-read {g['entries_read']} last-delivered {g['last_delivered_id']}")
            for name, c in g["consumers"].items():
                print(f"      consumer {name:<12} pending {c['pending']:<5} idle {c['idle_ms'] / 1000:.1f} s")


def cmd_watch(args: argparse.Namespace) -> None:
    """The state twice, SECONDS apart, as JSON: what grew, what aged, what stayed flat."""
    before = collect_status()
    time.sleep(args.seconds)
    print(json.dumps({"seconds": args.seconds, "before": before, "after": collect_status()},
                     indent=2, sort_keys=True))


def cmd_status(args: argparse.Namespace) -> None:
    s = collect_status()
    if args.json:
        print(json.dumps(s, indent=2, sort_keys=True))
    else:
        print_status(s)


# -- command line ------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qt-lab", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, func, help_text):
        sp = sub.add_parser(name, help=help_text)
        sp.set_defaults(func=func)
        return sp

    sp = add("configure", cmd_configure, "set the Redis port, (re)start Redis and the stubs")
    sp.add_argument("--redis-port", type=int, required=True)
    sp.add_argument("--rate", type=float, help="decisions per second of the AI engine (default 2)")
    sp.add_argument("--daily-limit", type=int,
                    help="the governor's daily_limit (default 200: reached after 100 s at 2/s)")
    add("wait-flow", cmd_wait_flow, "wait until every output stream grows").add_argument(
        "--timeout", type=float, default=60)
    sp = add("hang", cmd_hang, "SIGSTOP a stage (a consumer first takes --pending entries)")
    sp.add_argument("stage")
    sp.add_argument("--pending", type=int, help=f"entries held in the PEL (default {DEFAULT_HELD})")
    sp.add_argument("--timeout", type=float, default=30)
    add("cont", cmd_cont, "SIGCONT a hung stage").add_argument("stage")
    sp = add("orphan", cmd_orphan, "another consumer takes N entries and never acknowledges them")
    sp.add_argument("stage")
    sp.add_argument("count", type=int)
    sp.add_argument("--consumer", help="the orphan's name (default: the live name ending in 0)")
    sp.add_argument("--timeout", type=float, default=30)
    add("poison-governor", cmd_poison_governor, "set today's counter above the limit").add_argument(
        "count", type=int, nargs="?", default=DEFAULT_POISON)
    add("incident", cmd_incident, "the seed incident at once").add_argument(
        "--timeout", type=float, default=30)
    add("live", cmd_live, "BINANCE_TESTNET=false")
    add("testnet", cmd_testnet, "BINANCE_TESTNET=true")
    add("quiet", cmd_quiet, "the AI engine pauses")
    add("resume", cmd_resume, "the AI engine produces again")
    add("redis-down", cmd_redis_down, "stop Redis")
    add("redis-up", cmd_redis_up, "start Redis")
    add("break-unit", cmd_break_unit, "the unit's next start fails").add_argument("stage")
    add("fix-unit", cmd_fix_unit, "undo break-unit").add_argument("stage")
    add("reset", cmd_reset, "a fresh flowing pipeline (faults undone, Redis flushed)").add_argument(
        "--no-wait", dest="wait", action="store_false", help="do not wait until it flows")
    add("status", cmd_status, "the pipeline at a glance").add_argument("--json", action="store_true")
    add("watch", cmd_watch, "status --json twice, SECONDS apart").add_argument(
        "seconds", type=float, nargs="?", default=2)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in qt_sentinel.COMMANDS:  # the Sentinel topology: qt_sentinel.py
        return qt_sentinel.main(argv)
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except LabError as exc:
        print(f"qt-lab {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
