#!/usr/bin/env python3
"""qt-lab's Sentinel topology: the lab's Redis as the primary, one replica and 3 sentinels.

  sentinel-up --replica-port P --sentinel-ports A B C [--service-name NAME] [--quorum Q]
              [--down-after-ms MS] [--failover-timeout-ms MS]
      The primary is the lab's redis-server.service (the port of `qt-lab configure`). The
      replica (qt-redis-replica@P.service, redis-server with `replicaof`) and the sentinels
      (qt-redis-sentinel@A.service ..., Debian's /usr/bin/redis-sentinel, quorum Q) are
      written from these settings and (re)started; returns when every sentinel sees the
      primary up, the replica linked and the other sentinels. Run again to reset the topology
      (after a failover too: redis-server.service is made the primary again, data kept).
  sentinel-status [--json]
      Each node's ROLE and what each sentinel names as the primary.
  failover [--stream S --group G --consumer C --below N] [--timeout S]
      SENTINEL FAILOVER, sent to the first sentinel, then waits until every sentinel names the
      new primary, its ROLE says master and the old primary's ROLE says it replicates it.
      With --consumer: first waits until C's pending count in G of S, on the primary, is N or
      less (a reclaim under way), and also reports when the pipelined Ansible module running
      then (the reclaim) exits. Prints one JSON object with the times.
  sentinel-down
      Stops the replica and the sentinels (redis-server.service stays as it is).

Every node listens on 127.0.0.1 only (the container shares the host's network). The settings
are kept in /etc/quantum/sentinel.json; the configuration files, which the sentinels rewrite
(and the replica too, on a failover), in /var/lib/quantum/sentinel/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

SETTINGS = Path("/etc/quantum/sentinel.json")
LAB_ENV = Path("/etc/quantum/lab.env")
# The data-driven lab (labdata.py) keeps its port and password here instead of lab.env.
LAB_DATA = Path("/etc/quantum/lab-pipeline.json")
STATE_DIR = Path("/var/lib/quantum/sentinel")
PRIMARY_UNIT = "redis-server.service"
REPLICA_UNIT = "qt-redis-replica@{port}.service"
SENTINEL_UNIT = "qt-redis-sentinel@{port}.service"
HOST = "127.0.0.1"
COMMANDS = ("sentinel-up", "sentinel-status", "failover", "sentinel-down")


class TopologyError(Exception):
    """A sentence for the operator; qt-lab exits 1 with it."""


# -- helpers -----------------------------------------------------------------------------------
def run(*args: str, check: bool = True) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise TopologyError(f"`{' '.join(args)}` failed: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def node(port: int, password: str | None = None, timeout: float = 2.0) -> redis.Redis:
    """A client of one node: a data node with the lab's password (lab.requirepass), or a sentinel."""
    return redis.Redis(
        host=HOST,
        port=port,
        password=password,
        decode_responses=True,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
    )


def answers(port: int, password: str | None = None) -> bool:
    try:
        return bool(node(port, password).ping())
    except redis.RedisError:
        return False


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # REUSEADDR: connections of a node just stopped (TIME_WAIT) do not make it "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def wait_until(what: str, check: Any, timeout: float, interval: float = 0.05) -> float:
    """Seconds until check() is true (Redis errors count as not yet), or TopologyError."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if check():
                return time.monotonic() - started
        except redis.RedisError:
            pass
        time.sleep(interval)
    raise TopologyError(f"{what} did not happen within {timeout:g} s (`qt-lab sentinel-status`).")


def lab_redis() -> tuple[int, str | None]:
    """(port, password) of the lab's Redis, as `qt-lab configure` left them."""
    if LAB_DATA.exists():
        data = json.loads(LAB_DATA.read_text())
        port = (data.get("pipeline", {}).get("redis") or {}).get("port")
        if port:
            return int(port), (data.get("lab") or {}).get("requirepass") or None
    for line in LAB_ENV.read_text().splitlines() if LAB_ENV.exists() else []:
        if line.startswith("REDIS_PORT="):
            return int(line.split("=", 1)[1].strip().strip('"')), None
    raise TopologyError("the lab is not configured (no Redis port): run `qt-lab configure` first.")


def load_settings() -> dict[str, Any]:
    try:
        return json.loads(SETTINGS.read_text())
    except OSError as exc:
        raise TopologyError(
            f"no Sentinel topology ({SETTINGS} missing): run `qt-lab sentinel-up` first."
        ) from exc


# -- the topology ------------------------------------------------------------------------------
def validate(settings: dict[str, Any]) -> None:
    ports = [settings["primary_port"], settings["replica_port"], *settings["sentinel_ports"]]
    if len(set(ports)) != len(ports):
        raise TopologyError(f"the primary, replica and sentinel ports must all differ, got {ports}.")
    if any(not 1024 <= p <= 65535 for p in ports):
        raise TopologyError(f"ports must be between 1024 and 65535, got {ports}.")
    if not 1 <= settings["quorum"] <= len(settings["sentinel_ports"]):
        raise TopologyError(
            f"--quorum must be between 1 and the number of sentinels "
            f"({len(settings['sentinel_ports'])}), got {settings['quorum']}."
        )
    if not settings["service_name"].replace("-", "").replace("_", "").isalnum():
        raise TopologyError(
            f"--service-name must be letters, digits, - and _, got {settings['service_name']!r}."
        )
    if settings["down_after_ms"] < 100 or settings["failover_timeout_ms"] < 1000:
        raise TopologyError("--down-after-ms must be at least 100 and --failover-timeout-ms at least 1000.")


def our_units() -> list[str]:
    """The replica and sentinel units of this container that are loaded (running or failed)."""
    out = run(
        "systemctl",
        "list-units",
        "--all",
        "--plain",
        "--no-legend",
        "qt-redis-replica@*",
        "qt-redis-sentinel@*",
        check=False,
    )
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def owned(path: Path, text: str | None = None) -> None:
    """A file (or, without text, a directory) of the redis user: the sentinels rewrite their
    configuration file, and a node its own on a failover (CONFIG REWRITE)."""
    if text is None:
        path.mkdir(parents=True, exist_ok=True)
    else:
        path.write_text(text)
    shutil.chown(path, "redis", "redis")


def replica_conf(settings: dict[str, Any]) -> str:
    port = settings["replica_port"]
    return (
        "# Written by `qt-lab sentinel-up`: the lab primary's replica (a failover may promote it).\n"
        f'port {port}\nbind {HOST}\ndir {STATE_DIR / f"replica-{port}"}\nlogfile ""\n'
        'save ""\nappendonly no\n'
        # No 5 s wait before a full sync (the 7.0 default): either node may have to serve one.
        "repl-diskless-sync yes\nrepl-diskless-sync-delay 0\nreplica-read-only yes\n"
        f"replicaof {HOST} {settings['primary_port']}\n"
    ) + (
        f"requirepass {settings['password']}\nmasterauth {settings['password']}\n"
        if settings["password"]
        else ""
    )


def sentinel_conf(settings: dict[str, Any], port: int) -> str:
    name = settings["service_name"]
    return (
        "# Written by `qt-lab sentinel-up`; the sentinel rewrites it (ids, replicas, failovers).\n"
        f'port {port}\nbind {HOST}\ndir {STATE_DIR / f"sentinel-{port}"}\nlogfile ""\n'
        f"sentinel monitor {name} {HOST} {settings['primary_port']} {settings['quorum']}\n"
        f"sentinel down-after-milliseconds {name} {settings['down_after_ms']}\n"
        f"sentinel failover-timeout {name} {settings['failover_timeout_ms']}\n"
        f"sentinel parallel-syncs {name} 1\n"
    ) + (f"sentinel auth-pass {name} {settings['password']}\n" if settings["password"] else "")


def ready(settings: dict[str, Any]) -> bool:
    """Every sentinel sees the primary up as a master, a linked replica, and the other sentinels."""
    name, others = settings["service_name"], len(settings["sentinel_ports"]) - 1
    for port in settings["sentinel_ports"]:
        sentinel = node(port)
        master = sentinel.sentinel_master(name)
        if master["flags"] != "master" or master["num-other-sentinels"] < others:
            return False
        replicas = sentinel.sentinel_slaves(name)
        if not any(r["flags"] == "slave" and r.get("master-link-status") == "ok" for r in replicas):
            return False
    return True


def cmd_sentinel_up(args: argparse.Namespace) -> None:
    settings = {
        "service_name": args.service_name,
        "quorum": args.quorum,
        "down_after_ms": args.down_after_ms,
        "failover_timeout_ms": args.failover_timeout_ms,
        "primary_port": lab_redis()[0],
        "password": lab_redis()[1],
        "replica_port": args.replica_port,
        "sentinel_ports": args.sentinel_ports,
    }
    validate(settings)
    started = time.monotonic()
    # Stop a previous topology first: its sentinels must not fail over while it is rebuilt.
    units = our_units()
    if units:
        run("systemctl", "stop", *units)
        run("systemctl", "reset-failed", *units, check=False)
    for port in [settings["replica_port"], *settings["sentinel_ports"]]:
        if not port_free(port):
            raise TopologyError(
                f"port {port} is already in use on this host (the network is the host's): choose another one."
            )
    if not answers(settings["primary_port"], settings["password"]):
        raise TopologyError(
            f"the lab's Redis does not answer on {HOST}:{settings['primary_port']}: `qt-lab redis-up`?"
        )
    primary = node(settings["primary_port"], settings["password"])
    # After a failover the lab's Redis is a replica of the promoted node, in sync: make it the
    # primary again. The 5 s full-sync delay of Debian's redis.conf would slow every resync.
    primary.execute_command("REPLICAOF", "NO", "ONE")
    # A failover's CONFIG REWRITE left `replicaof` in its configuration file (Debian's
    # /etc/redis/redis.conf is writable by redis): without this, its next restart (qt-lab
    # configure) would make it a replica again. Refused where the file is read-only: fine.
    with contextlib.suppress(redis.ResponseError):
        primary.config_rewrite()
    primary.config_set("repl-diskless-sync-delay", 0)
    if settings["password"]:
        # Demoted by a failover, it must log in to the new primary to resync.
        primary.config_set("masterauth", settings["password"])
    if STATE_DIR.exists():
        shutil.rmtree(STATE_DIR)
    owned(STATE_DIR)
    owned(STATE_DIR / f"replica-{settings['replica_port']}")
    owned(STATE_DIR / f"replica-{settings['replica_port']}.conf", replica_conf(settings))
    for port in settings["sentinel_ports"]:
        owned(STATE_DIR / f"sentinel-{port}")
        owned(STATE_DIR / f"sentinel-{port}.conf", sentinel_conf(settings, port))
    # It may hold the lab's password: readable by root only.
    SETTINGS.touch(mode=0o600)
    SETTINGS.chmod(0o600)
    SETTINGS.write_text(json.dumps(settings, indent=2) + "\n")
    units = [REPLICA_UNIT.format(port=settings["replica_port"])]
    units += [SENTINEL_UNIT.format(port=port) for port in settings["sentinel_ports"]]
    run("systemctl", "start", *units)
    for port in settings["sentinel_ports"]:
        wait_until(f"the sentinel on {HOST}:{port} answering", lambda p=port: answers(p), 15)
        # Redis 7.0+: INFO every 100 ms (not 10 s) and hello every 500 ms (not 2 s), so that the
        # sentinels find each other and a failover completes in a few seconds. Not shorter: a
        # sentinel that has not heard of a failover turns a promoted replica back into a
        # replica after 4 publish periods (tests/test_sentinel.py found this).
        node(port).execute_command("SENTINEL", "DEBUG", "info-period", 100, "publish-period", 500)
    seconds = wait_until("the sentinels agreeing on the primary and its replica", lambda: ready(settings), 60)
    print(
        f"sentinel topology up in {time.monotonic() - started:.1f} s (agreed after {seconds:.1f} s): "
        f"service {settings['service_name']}, primary {HOST}:{settings['primary_port']} ({PRIMARY_UNIT}), "
        f"replica {HOST}:{settings['replica_port']}, sentinels "
        + " ".join(f"{HOST}:{p}" for p in settings["sentinel_ports"])
        + f", quorum {settings['quorum']}"
    )


def cmd_sentinel_down(_args: argparse.Namespace) -> None:
    units = our_units()
    if units:
        run("systemctl", "stop", *units)
        run("systemctl", "reset-failed", *units, check=False)
    print("sentinel topology down: " + (", ".join(units) or "nothing was running"))


# -- status --------------------------------------------------------------------------------------
def role_of(port: int, password: str | None) -> dict[str, Any]:
    try:
        role = node(port, password).execute_command("ROLE")
    except redis.RedisError as exc:
        return {"port": port, "role": None, "error": str(exc)}
    if role[0] == "master":
        return {"port": port, "role": "master", "replicas": [int(r[1]) for r in role[2]]}
    if role[0] == "slave":
        return {"port": port, "role": "slave", "master_port": int(role[2]), "link": role[3]}
    return {"port": port, "role": str(role[0])}


def named_by(port: int, name: str) -> int | None:
    try:
        address = node(port).sentinel_get_master_addr_by_name(name)
    except redis.RedisError:
        return None
    return int(address[1]) if address else None


def collect(settings: dict[str, Any]) -> dict[str, Any]:
    name = settings["service_name"]
    return {
        "service_name": name,
        "nodes": [
            role_of(p, settings.get("password")) for p in (settings["primary_port"], settings["replica_port"])
        ],
        "sentinels": {str(p): named_by(p, name) for p in settings["sentinel_ports"]},
    }


def cmd_sentinel_status(args: argparse.Namespace) -> None:
    settings = load_settings()
    state = collect(settings)
    if args.json:
        print(json.dumps(state, indent=2, sort_keys=True))
        return
    print(f"service   {state['service_name']} (quorum {settings['quorum']})")
    for item in state["nodes"]:
        unit = (
            PRIMARY_UNIT
            if item["port"] == settings["primary_port"]
            else REPLICA_UNIT.format(port=item["port"])
        )
        detail = {
            "master": lambda i: f"replicas {i['replicas']}",
            "slave": lambda i: f"of :{i['master_port']} ({i['link']})",
        }.get(item["role"], lambda i: i.get("error", ""))
        print(f"  {HOST}:{item['port']:<6} {item['role'] or 'DOWN':<7} {detail(item):<28} {unit}")
    for port, named in state["sentinels"].items():
        print(
            f"  sentinel {HOST}:{port} names the primary {HOST}:{named}"
            if named
            else f"  sentinel {HOST}:{port} names no primary (down?)"
        )


# -- failover ------------------------------------------------------------------------------------
def pending_of(client: redis.Redis, stream: str, group: str, consumer: str) -> int | None:
    try:
        consumers = client.xinfo_consumers(stream, group)
    except redis.ResponseError:
        return None
    return next((int(c["pending"]) for c in consumers if c["name"] == consumer), None)


def pipelined_modules() -> set[int]:
    """PIDs of pipelined Ansible modules (a bare `python3` reading its code from stdin), not
    this process or its ancestors (an async wrapper)."""
    mine, pid = set(), os.getpid()
    while pid > 1:
        mine.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len([a for a in argv if a]) == 1 and os.path.basename(argv[0]).startswith(b"python3"):
            found.add(int(entry.name))
    return found


def cmd_failover(args: argparse.Namespace) -> None:
    settings = load_settings()
    name, sentinels = settings["service_name"], settings["sentinel_ports"]
    old = named_by(sentinels[0], name)
    if old is None:
        raise TopologyError(f"the sentinel on {HOST}:{sentinels[0]} names no primary for {name}.")
    new = next(p for p in (settings["primary_port"], settings["replica_port"]) if p != old)
    wait_until("the sentinels seeing the primary and a linked replica", lambda: ready(settings), args.timeout)
    report: dict[str, Any] = {"service_name": name, "old_primary": old, "new_primary": new}
    modules: set[int] = set()
    if args.consumer:
        primary = node(old, settings.get("password"))
        first = pending_of(primary, args.stream, args.group, args.consumer)
        deadline = time.monotonic() + args.timeout
        while True:
            seen = pending_of(primary, args.stream, args.group, args.consumer)
            if seen is not None and seen <= args.below:
                break
            if time.monotonic() > deadline:
                raise TopologyError(
                    f"{args.consumer}'s pending count in {args.group} of {args.stream} stayed "
                    f"above {args.below} for {args.timeout:g} s (last {seen}): no failover."
                )
            time.sleep(0.005)
        modules = pipelined_modules()
        report.update(
            consumer=args.consumer,
            pending_first_seen=first,
            pending_at_failover=seen,
            module_pids=sorted(modules),
        )
    issued = time.time()
    started = time.monotonic()
    while True:
        try:
            node(sentinels[0]).execute_command("SENTINEL", "FAILOVER", name)
            break
        except redis.ResponseError as exc:
            # INPROG / NOGOODSLAVE right after another failover: the replica is still syncing.
            if time.monotonic() - started > args.timeout:
                raise TopologyError(
                    f"SENTINEL FAILOVER {name} was refused for {args.timeout:g} s: {exc}"
                ) from exc
            time.sleep(0.1)
    report["failover_issued_at"] = round(issued, 3)
    times: dict[str, float] = {}
    exited: dict[int, float] = {}

    def agreed() -> bool:
        now = time.monotonic() - started
        for pid in modules - set(exited):
            if not Path(f"/proc/{pid}").exists():
                exited[pid] = now
        if "first_sentinel_names_new_s" not in times and named_by(sentinels[0], name) == new:
            times["first_sentinel_names_new_s"] = now
        if "all_sentinels_name_new_s" not in times and all(named_by(p, name) == new for p in sentinels):
            times["all_sentinels_name_new_s"] = now
        if "new_role_master_s" not in times and role_of(new, settings.get("password"))["role"] == "master":
            times["new_role_master_s"] = now
        old_role = role_of(old, settings.get("password"))
        if (
            "old_demoted_s" not in times
            and old_role["role"] == "slave"
            and old_role.get("master_port") == new
        ):
            times["old_demoted_s"] = now
        return len(times) == 4 and old_role.get("link") == "connected"

    wait_until(
        f"the sentinels and ROLE agreeing on {HOST}:{new} as the new primary", agreed, args.timeout, 0.01
    )
    report.update({key: round(value, 3) for key, value in times.items()})
    report["old_resynced_s"] = round(time.monotonic() - started, 3)
    if modules:
        # A measurement only: a module still running after the timeout is reported as null.
        deadline = time.monotonic() + args.timeout
        while len(exited) < len(modules) and time.monotonic() < deadline:
            for pid in modules - set(exited):
                if not Path(f"/proc/{pid}").exists():
                    exited[pid] = time.monotonic() - started
            time.sleep(0.01)
        report["module_exited_s"] = round(max(exited.values()), 3) if len(exited) == len(modules) else None
    print(json.dumps(report, sort_keys=True))


# -- command line --------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="qt-lab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sp = sub.add_parser("sentinel-up", help="a replica and sentinels around the lab's Redis")
    sp.set_defaults(func=cmd_sentinel_up)
    sp.add_argument("--replica-port", type=int, required=True)
    sp.add_argument("--sentinel-ports", type=int, nargs="+", required=True)
    sp.add_argument("--service-name", default="quantum")
    sp.add_argument("--quorum", type=int, default=2)
    sp.add_argument("--down-after-ms", type=int, default=1000)
    sp.add_argument("--failover-timeout-ms", type=int, default=3000)
    sp = sub.add_parser("sentinel-status", help="ROLE of each node, the primary each sentinel names")
    sp.set_defaults(func=cmd_sentinel_status)
    sp.add_argument("--json", action="store_true")
    sp = sub.add_parser("failover", help="SENTINEL FAILOVER, then wait until everything agrees")
    sp.set_defaults(func=cmd_failover)
    sp.add_argument("--stream")
    sp.add_argument("--group")
    sp.add_argument("--consumer", help="wait until its pending count is --below N first")
    sp.add_argument("--below", type=int, default=0)
    sp.add_argument("--timeout", type=float, default=60)
    sub.add_parser("sentinel-down", help="stop the replica and the sentinels").set_defaults(
        func=cmd_sentinel_down
    )
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.command == "failover" and args.consumer and not (args.stream and args.group):
        print("qt-lab failover: --consumer needs --stream and --group.", file=sys.stderr)
        return 1
    try:
        args.func(args)
    except TopologyError as exc:
        print(f"qt-lab {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
