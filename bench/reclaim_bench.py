#!/usr/bin/env python3
"""Benchmark of redis_stream_reclaim against the server's own ceiling and the incident
runbook's loop. Not a test: it prints figures (copy them into docs/benchmarks.md).

It starts its own redis-server on a free loopback port, builds a PEL of --entries entries on
one dead consumer, and, rebuilding the PEL before each measurement, reports:
  - the module's core (in a subprocess: entries/s, peak RSS, tracemalloc peak, longest call),
    for each --batch-sizes value;
  - the module through the real `ansible` command (end to end, with ansible's start-up);
  - one `XAUTOCLAIM key group c2 0 0 COUNT <entries> JUSTID` (the server's ceiling: one call
    that blocks Redis for the whole move);
  - a loop of `redis-cli XAUTOCLAIM ... COUNT 100` (what the incident runbook did), on a
    sample, extrapolated.
Server-side durations come from SLOWLOG, so they exclude the network and the client.

    .venv/bin/python bench/reclaim_bench.py            # (make bench)
    .venv/bin/python bench/reclaim_bench.py --entries 200000 --batch-sizes 1000,5000,10000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STREAM = "bench:stream"
GROUP = "g"
DEAD = "dead"
LIVE = "c2"
DEAD_LETTER = "bench:stream:dead"

# Builds the stream server-side: far faster than a million client round trips.
FILL_SCRIPT = """
for i = 1, tonumber(ARGV[1]) do
  redis.call('XADD', KEYS[1], '*', 'symbol', 'BTCUSDT', 'side', 'BUY', 'qty', '0.001', 'n', i)
end
return 1
"""
# XREADGROUP by the dead consumer, in chunks, without shipping the entries to the client.
READ_SCRIPT = """
local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', tonumber(ARGV[3]),
                     'STREAMS', KEYS[1], '>')
if r then return #r[1][2] end
return 0
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A redis-server of our own, stopped by the PID in its pidfile."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="reclaim-bench-"))
        self.port = free_port()
        self.pidfile = self.workdir / "redis.pid"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        subprocess.run(
            [
                binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                "--appendonly", "no", "--dir", str(self.workdir), "--pidfile", str(self.pidfile),
                "--daemonize", "yes", "--logfile", str(self.workdir / "redis.log"),
            ],
            check=True,
        )  # fmt: skip
        for _ in range(200):
            try:
                if self.client().ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True, socket_timeout=600)

    def stop(self) -> None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        os.kill(pid, signal.SIGTERM)
        for _ in range(200):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        shutil.rmtree(self.workdir, ignore_errors=True)


def build_pel(client: redis.Redis, entries: int) -> float:
    """A fresh stream of `entries` entries, all pending on DEAD; returns seconds taken."""
    started = time.perf_counter()
    client.delete(STREAM)
    fill = client.register_script(FILL_SCRIPT)
    read = client.register_script(READ_SCRIPT)
    chunk = 100_000
    for first in range(0, entries, chunk):
        fill(keys=[STREAM], args=[min(chunk, entries - first)])
    client.xgroup_create(STREAM, GROUP, id="0")
    read_total = 0
    while read_total < entries:
        read_total += read(keys=[STREAM], args=[GROUP, DEAD, chunk])
    # The guard treats a consumer seen in the last few ms as active.
    time.sleep(0.05)
    assert client.xpending(STREAM, GROUP)["pending"] == entries
    return time.perf_counter() - started


def reset_slowlog(client: redis.Redis) -> None:
    client.config_set("slowlog-log-slower-than", 0)
    client.config_set("slowlog-max-len", 100_000)
    client.slowlog_reset()


def slowlog_of(client: redis.Redis, command: str) -> list[dict[str, Any]]:
    def name(entry: dict[str, Any]) -> str:
        text = entry["command"]
        return (text.decode(errors="replace") if isinstance(text, bytes) else str(text)).upper()

    return [e for e in client.slowlog_get(100_000) if name(e).startswith(command)]


def slowest(client: redis.Redis, command: str) -> tuple[float, int]:
    """(longest server-side duration in ms, number of calls) of `command` since the reset."""
    entries = slowlog_of(client, command)
    longest = max((e["duration"] for e in entries), default=0) / 1000
    return longest, len(entries)


def server_total_ms(client: redis.Redis, command: str) -> float:
    return sum(e["duration"] for e in slowlog_of(client, command)) / 1000


def check_moved(client: redis.Redis, entries: int) -> None:
    moved = {c["name"]: c["pending"] for c in client.xinfo_consumers(STREAM, GROUP)}
    assert moved.get(LIVE) == entries and moved.get(DEAD, 0) == 0, moved


# -- the module's core, in a subprocess so that its peak RSS is its own ----------------------

WORKER = r"""
import json, sys, time, tracemalloc
sys.path.insert(0, sys.argv[1])
from reclaim_support import load_reclaim_module, run_reclaim
import redis
load_reclaim_module()  # imports (ansible, redis-py) are start-up, not reclaim time
args = json.loads(sys.argv[2])
client = redis.Redis(host="127.0.0.1", port=args["connection"]["port"], decode_responses=True)
tracemalloc.start()
started = time.perf_counter()
result = run_reclaim(client, args)
elapsed = time.perf_counter() - started
_, peak = tracemalloc.get_traced_memory()
print(json.dumps({
    "elapsed_s": elapsed,
    "moved": result["totals"]["moved"],
    "calls": result["stats"]["calls"],
    "longest_call_ms": result["stats"]["longest_call_ms"],
    "tracemalloc_peak_mb": peak / 2**20,
    # VmHWM, not ru_maxrss: Linux carries the parent's high-water mark into a forked child.
    "maxrss_mb": next(int(line.split()[1]) for line in open("/proc/self/status")
                      if line.startswith("VmHWM:")) / 1024,
}))
"""


def module_args(port: int, batch_size: int, dead_letter: dict[str, Any] | None = None) -> dict[str, Any]:
    extra = {"dead_letter": dead_letter} if dead_letter else {}
    return extra | {
        "connection": {"host": "127.0.0.1", "port": port},
        "stream": STREAM,
        "group": GROUP,
        "consumers": [DEAD],
        "claim_to": LIVE,
        "retire": True,
        "batch_size": batch_size,
    }


def measure_module(
    server: Server,
    client: redis.Redis,
    entries: int,
    batch_size: int,
    dead_letter: dict[str, Any] | None = None,
) -> dict[str, Any]:
    build_pel(client, entries)
    client.delete(DEAD_LETTER)
    reset_slowlog(client)
    args = module_args(server.port, batch_size, dead_letter)
    proc = subprocess.run(
        [sys.executable, "-c", WORKER, str(PROJECT_ROOT / "tests"), json.dumps(args)],
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(proc.stdout)
    figures["server_longest_ms"], figures["server_calls"] = slowest(client, "EVALSHA")
    figures["server_busy_ms"] = server_total_ms(client, "EVALSHA")
    figures["rate"] = entries / figures["elapsed_s"]
    if dead_letter:
        assert client.xlen(DEAD_LETTER) == entries and client.xpending(STREAM, GROUP)["pending"] == 0
    else:
        check_moved(client, entries)
    return figures


def measure_module_ansible(
    server: Server, client: redis.Redis, entries: int, batch_size: int
) -> dict[str, Any]:
    build_pel(client, entries)
    reset_slowlog(client)
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(PROJECT_ROOT / "ansible.cfg"),
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_LOCALHOST_WARNING="0",
    )
    cmd = [
        str(Path(sys.executable).parent / "ansible"), "localhost", "-i", "localhost,", "-c", "local",
        "-m", "quantum.redis_streams.redis_stream_reclaim",
        "-a", json.dumps(module_args(server.port, batch_size)),
    ]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - started
    result = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    assert result["totals"]["moved"] == entries, result
    longest, calls = slowest(client, "EVALSHA")
    check_moved(client, entries)
    return {
        "elapsed_s": elapsed,
        "rate": entries / elapsed,
        "server_longest_ms": longest,
        "server_calls": calls,
    }


def measure_xautoclaim(client: redis.Redis, entries: int) -> dict[str, Any]:
    build_pel(client, entries)
    reset_slowlog(client)
    # redis-py's XAUTOCLAIM parser does not understand a JUSTID reply: take it raw.
    client.set_response_callback("XAUTOCLAIM", lambda response, **options: response)
    started = time.perf_counter()
    reply = client.execute_command("XAUTOCLAIM", STREAM, GROUP, LIVE, 0, "0", "COUNT", entries, "JUSTID")
    elapsed = time.perf_counter() - started
    assert len(reply[1]) == entries
    del reply
    server_ms, _ = slowest(client, "XAUTOCLAIM")
    check_moved(client, entries)
    return {"elapsed_s": elapsed, "server_ms": server_ms, "rate": entries / (server_ms / 1000)}


def measure_cli_loop(server: Server, client: redis.Redis, entries: int, sample: int) -> dict[str, Any]:
    build_pel(client, entries)
    cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
    cursor, claimed, calls = "0", 0, 0
    started = time.perf_counter()
    while claimed < sample:
        out = subprocess.run(
            [cli, "-h", "127.0.0.1", "-p", str(server.port), "XAUTOCLAIM", STREAM, GROUP, LIVE, "0", cursor,
             "COUNT", "100", "JUSTID"],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        cursor = out[0]
        claimed += len(out) - 1
        calls += 1
    elapsed = time.perf_counter() - started
    rate = claimed / elapsed
    return {
        "sample": claimed,
        "calls": calls,
        "elapsed_s": elapsed,
        "rate": rate,
        "projected_s": entries / rate,
    }


def joined(runs: list[dict[str, Any]], key: str, fmt: str) -> str:
    return ", ".join(fmt.format(run[key]) for run in runs)


MODULE_FIGURES = (
    "rate",
    "elapsed_s",
    "server_busy_ms",
    "server_longest_ms",
    "longest_call_ms",
    "maxrss_mb",
    "tracemalloc_peak_mb",
)


def medians(runs: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    """The median of each figure over the repeats."""
    return {key: statistics.median(run[key] for run in runs) for key in keys}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument(
        "--batch-sizes",
        default="2000,5000",
        help="comma-separated module batch sizes (the first is also used via ansible)",
    )
    parser.add_argument("--cli-sample", type=int, default=20_000)
    parser.add_argument("--skip-ansible", action="store_true")
    parser.add_argument("--dead-letter-entries", type=int, default=200_000, help="0 to skip")
    parser.add_argument("--repeat", type=int, default=2, help="measurements of each kind (best is shown)")
    options = parser.parse_args()
    batch_sizes = [int(b) for b in options.batch_sizes.split(",")]
    entries = options.entries

    server = Server()
    server.start()
    try:
        client = server.client()
        info = client.info("server")
        print(f"redis {info['redis_version']} on 127.0.0.1:{server.port}, {os.cpu_count()} CPUs")
        print(f"PEL of {entries} entries on one dead consumer")
        print(f"PEL build: {build_pel(client, entries):.1f} s")

        # Measurements alternate and repeat, and each figure is the median of the repeats, for
        # the ceiling and the module alike (the best of a few would flatter both on a shared
        # machine; the median is what a run can expect).
        ceilings: list[dict[str, Any]] = []
        modules: dict[int, list[dict[str, Any]]] = {b: [] for b in batch_sizes}
        for _ in range(options.repeat):
            ceilings.append(measure_xautoclaim(client, entries))
            for batch_size in batch_sizes:
                modules[batch_size].append(measure_module(server, client, entries, batch_size))
        ceiling = medians(ceilings, ("rate", "server_ms", "elapsed_s"))
        print(
            f"XAUTOCLAIM COUNT {entries} JUSTID, one call: {ceiling['rate']:,.0f} entries/s server-side "
            f"({ceiling['server_ms']:.0f} ms blocking Redis; "
            f"{ceiling['elapsed_s']:.2f} s wall with the reply); "
            f"medians of {len(ceilings)}; all runs: {joined(ceilings, 'rate', '{:,.0f}')} entries/s"
        )
        for batch_size in batch_sizes:
            runs = modules[batch_size]
            m = {**max(runs, key=lambda r: r["rate"]), **medians(runs, MODULE_FIGURES)}
            # Two ratios to the ceiling, from the same run: wall (entries/s of the module against
            # the server-side rate of the one XAUTOCLAIM) and Redis-busy (the time Redis was busy
            # for the ceiling against the time it was busy for the module's EVALSHA calls).
            print(
                f"module core, batch_size {batch_size}: {m['rate']:,.0f} entries/s "
                f"({m['elapsed_s']:.2f} s, {m['rate'] / ceiling['rate']:.2f}x the ceiling on wall time, "
                f"{ceiling['server_ms'] / m['server_busy_ms']:.2f}x on Redis-busy time); "
                f"{m['server_calls']} EVALSHA, longest {m['server_longest_ms']:.1f} ms server-side "
                f"({m['longest_call_ms']:.1f} ms seen by the client), "
                f"server busy {m['server_busy_ms']:.0f} ms; "
                f"peak RSS {m['maxrss_mb']:.1f} MB, tracemalloc peak {m['tracemalloc_peak_mb']:.2f} MB; "
                f"all runs: {joined(modules[batch_size], 'rate', '{:,.0f}')} entries/s, "
                f"longest calls {joined(modules[batch_size], 'server_longest_ms', '{:.1f}')} ms"
            )
        if options.dead_letter_entries:
            n = options.dead_letter_entries
            policy = {"stream": DEAD_LETTER, "max_deliveries": 0}
            d = max(
                (measure_module(server, client, n, batch_sizes[0], policy) for _ in range(options.repeat)),
                key=lambda r: r["rate"],
            )
            print(
                f"module core, every entry dead-lettered ({n} entries), batch_size {batch_sizes[0]}: "
                f"{d['rate']:,.0f} entries/s; longest EVALSHA {d['server_longest_ms']:.1f} ms server-side"
            )
        if not options.skip_ansible:
            a = measure_module_ansible(server, client, entries, batch_sizes[0])
            print(
                f"module via ansible, batch_size {batch_sizes[0]}: {a['rate']:,.0f} entries/s end to end "
                f"({a['elapsed_s']:.2f} s incl. ansible start-up); "
                f"longest EVALSHA {a['server_longest_ms']:.1f} ms"
            )
        loop = measure_cli_loop(server, client, entries, options.cli_sample)
        print(
            f"redis-cli XAUTOCLAIM COUNT 100 loop: {loop['rate']:,.0f} entries/s "
            f"({loop['sample']} entries in {loop['calls']} calls, {loop['elapsed_s']:.2f} s; "
            f"{entries} would take {loop['projected_s']:.0f} s)"
        )
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
