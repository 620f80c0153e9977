#!/usr/bin/env python3
"""Benchmark of diagnosis (redis_stream_info, and pipeline_snapshot, which reads the same and the
group's oldest undelivered entry) against the size of the pending lists. Not a test: it prints
figures (copied into docs/benchmarks.md).

It starts its own redis-server on a free loopback port and, for each shape of --shapes
(CONSUMERS x PENDING each), builds one group whose consumers each hold PENDING entries, then
runs the module's main() in a subprocess (so that its peak memory is its own), --repeats
times, once with each --scan-limits value of `pending_scan_limit` (entries read per consumer
to find the highest delivery count; 1 reads only the oldest entry). It prints medians of the
module's time (main() without Python's and Ansible's start-up), the time of its reads as the
module reports it (elapsed_ms: the Redis round trips and their parsing, without Ansible's
argument checks and exit_json), the Redis time of its calls (SLOWLOG), and, from a second run
under tracemalloc (which slows the code it traces), its tracemalloc peak and peak RSS; all
measured in the same run.

    .venv/bin/python bench/snapshot_bench.py
    .venv/bin/python bench/snapshot_bench.py --shapes 1000x100,1000x1000 --scan-limits 1000,1 --repeats 5
    .venv/bin/python bench/snapshot_bench.py --modules pipeline_snapshot --scan-limits 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reclaim_bench import PROJECT_ROOT, Server, reset_slowlog, slowlog_of

STREAM, GROUP = "bench:snapshot", "router"

WORKER = r"""
import contextlib, io, json, sys, time, tracemalloc
sys.path.insert(0, sys.argv[1])
from reclaim_support import run_module_main
from project_files import collection_module
module = sys.argv[3]
collection_module(module)  # imports (ansible, redis-py) are start-up, not diagnosis
args = json.loads(sys.argv[2])
# tracemalloc slows every allocation several times over: a traced run measures memory only.
traced = sys.argv[6] == "trace"
if traced:
    tracemalloc.start()
started = time.perf_counter()
result = run_module_main(module, args)
elapsed = time.perf_counter() - started
_, peak = tracemalloc.get_traced_memory() if traced else (0, 0)
assert not result.get("failed"), result.get("msg")
stream, group = sys.argv[4], sys.argv[5]
consumers = result["streams"][stream]["groups"][group]["consumers"]
print(json.dumps({
    "elapsed_s": elapsed,
    "reads_s": result["elapsed_ms"] / 1000 if "elapsed_ms" in result else None,
    "consumers": len(consumers),
    "pending": sum(c["pending"] for c in consumers.values()),
    "tracemalloc_peak_mb": peak / 2**20,
    "maxrss_mb": next(int(line.split()[1]) for line in open("/proc/self/status")
                      if line.startswith("VmHWM:")) / 1024,
}))
"""


def build(client: redis.Redis, consumers: int, pending: int) -> None:
    """One group, `consumers` consumers each holding `pending` entries (read, never acked)."""
    client.delete(STREAM)
    pipe = client.pipeline(transaction=False)
    for i in range(consumers * pending):
        pipe.xadd(STREAM, {"n": i})
        if len(pipe) >= 10_000:
            pipe.execute()
    pipe.execute()
    client.xgroup_create(STREAM, GROUP, id="0")
    for c in range(consumers):
        client.xreadgroup(GROUP, f"c{c}", {STREAM: ">"}, count=pending)


def module_args(module: str, port: int, scan_limit: int) -> dict[str, Any]:
    connection = {"host": "127.0.0.1", "port": port}
    if module == "pipeline_snapshot":
        # One consumer stage reading the group; Redis only (no systemd here, no governor).
        stage = {"name": "bench", "unit": "bench", "input_stream": STREAM, "group": GROUP, "consumer": "c0"}
        return {"pipeline": {"redis": connection, "stages": [stage]}, "units": False, "governor": False,
                "pending_scan_limit": scan_limit}  # fmt: skip
    return {"connection": connection, "streams": [{"stream": STREAM, "groups": [GROUP]}],
            "pending_scan_limit": scan_limit}  # fmt: skip


def measure(server: Server, client: redis.Redis, module: str, scan_limit: int) -> dict[str, Any]:
    """Two runs of the module, each in its own process: one timed (with the Redis time of its
    calls), one under tracemalloc for the memory figures."""
    args = module_args(module, server.port, scan_limit)
    tests = str(PROJECT_ROOT / "tests")
    argv = [sys.executable, "-c", WORKER, tests, json.dumps(args), module, STREAM, GROUP]
    reset_slowlog(client)
    figures = json.loads(subprocess.run([*argv, "time"], capture_output=True, text=True, check=True).stdout)
    figures["redis_ms"] = sum(e["duration"] for e in slowlog_of(client, "")) / 1000
    traced = json.loads(subprocess.run([*argv, "trace"], capture_output=True, text=True, check=True).stdout)
    figures.update(tracemalloc_peak_mb=traced["tracemalloc_peak_mb"], maxrss_mb=traced["maxrss_mb"])
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shapes", default="1000x100,1000x1000")
    parser.add_argument("--scan-limits", default="1000,1")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--modules", default="redis_stream_info,pipeline_snapshot")
    opts = parser.parse_args()
    shapes = [tuple(int(n) for n in s.split("x")) for s in opts.shapes.split(",")]
    limits = [int(n) for n in opts.scan_limits.split(",")]
    variants = [(module, limit) for module in opts.modules.split(",") for limit in limits]
    server = Server()
    server.start()
    try:
        client = server.client()
        version = client.info("server")["redis_version"]
        print(f"redis-server {version} on 127.0.0.1:{server.port}; load average at start "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; medians of {opts.repeats}")
        print(f"{'shape':>12} {'module':>18} {'scan limit':>10} {'module s':>9} {'reads s':>8} "
              f"{'tracemalloc MB':>15} {'peak RSS MB':>12} {'Redis ms':>9}")
        for consumers, pending in shapes:
            build(client, consumers, pending)
            runs: dict[tuple[str, int], list[dict[str, Any]]] = {variant: [] for variant in variants}
            for _ in range(opts.repeats):
                for module, limit in variants:  # alternating, so that load changes hit every variant
                    figures = measure(server, client, module, limit)
                    assert figures["pending"] == consumers * pending, figures
                    runs[(module, limit)].append(figures)
            for module, limit in variants:
                def med(key: str, rows: list[dict[str, Any]] = runs[(module, limit)]) -> float:
                    return statistics.median(r[key] for r in rows)
                reads = "-" if runs[(module, limit)][0]["reads_s"] is None else f"{med('reads_s'):.3f}"
                print(f"{consumers:>5} x {pending:<5} {module:>18} {limit:>10} {med('elapsed_s'):>9.3f} "
                      f"{reads:>8} {med('tracemalloc_peak_mb'):>15.1f} {med('maxrss_mb'):>12.1f} "
                      f"{med('redis_ms'):>9.1f}")
        print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
