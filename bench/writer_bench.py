#!/usr/bin/env python3
"""Benchmark of the metrics writer (roles/metrics_writer): what a pass every second costs the
pipeline's host, against the other way to get the same file that often, the module run by
`ansible -m quantum.redis_streams.pipeline_metrics` (cron, a systemd timer). Not a test: it
prints figures (copied into docs/benchmarks.md), both measured in the same run.

It starts its own redis-server on a free loopback port with the seed's three stages (a few
entries pending, --entries-today entries in each output stream today, so the daily report has
something to count), builds the writer's zip application, and --repeats times runs it under
Debian's /usr/bin/python3 (with python3-redis, no Ansible: as on a target) at --interval for
--seconds, reading its CPU time (utime + stime) and peak RSS (VmHWM) from /proc; then runs the
module --repeats times through `ansible localhost -m`, timing the wall clock and the CPU of the
whole command. Units are not read (units=false): this machine's PID 1 is not systemd.

    .venv/bin/python bench/writer_bench.py
    .venv/bin/python bench/writer_bench.py --repeats 5 --seconds 60 --entries-today 20000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reclaim_bench import PROJECT_ROOT, Server

sys.path.insert(0, str(PROJECT_ROOT / "collections"))
from ansible_collections.quantum.redis_streams.plugins.plugin_utils.bundle import build

TARGET_PYTHON = "/usr/bin/python3"
TICKS = os.sysconf("SC_CLK_TCK")
DECISIONS, INTENTS = "quantum:stream:ai.decision", "quantum:stream:trade.intent"
RESULTS = "quantum:stream:trade.result"


def pipeline(port: int) -> dict:
    return {
        "name": "quantum-trader",
        "redis": {"host": "127.0.0.1", "port": port},
        "governor": {"key": "quantum:governor", "counted_stream": RESULTS},
        "stages": [
            {"name": "ai_engine", "unit": "quantum-ai-engine", "output_stream": DECISIONS,
             "governed": True},
            {"name": "router", "unit": "quantum-ai-strategy-router", "input_stream": DECISIONS,
             "group": "router", "consumer": "router-1", "output_stream": INTENTS},
            {"name": "execution", "unit": "quantum-execution", "input_stream": INTENTS,
             "group": "execution", "consumer": "execution-1", "output_stream": RESULTS},
        ],
    }  # fmt: skip


def populate(server: Server, entries_today: int) -> None:
    client = server.client()
    for stream in (DECISIONS, INTENTS, RESULTS):
        pipe = client.pipeline(transaction=False)
        for n in range(entries_today):
            pipe.xadd(stream, {"n": n})
        pipe.execute()
    client.xgroup_create(DECISIONS, "router", id="0")
    client.xgroup_create(INTENTS, "execution", id="0")
    client.xreadgroup("router", "router-1", {DECISIONS: ">"}, count=entries_today - 3)
    client.xreadgroup("execution", "execution-1", {INTENTS: ">"}, count=entries_today)
    day = time.strftime("%Y-%m-%d", time.gmtime(client.time()[0]))
    client.hset("quantum:governor", mapping={"date": day, "trades_today": "40", "daily_limit": "200"})


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def writer_trial(bundle: Path, settings: Path, seconds: float) -> dict:
    writer = subprocess.Popen([TARGET_PYTHON, "-s", str(bundle), str(settings)], stderr=subprocess.DEVNULL)
    try:
        time.sleep(2)  # start-up and the first pass (the daily count) are not the steady state
        start_cpu, started = cpu_s(writer.pid), time.monotonic()
        time.sleep(seconds)
        used, elapsed = cpu_s(writer.pid) - start_cpu, time.monotonic() - started
        rss = peak_rss_mb(writer.pid)
    finally:
        writer.send_signal(signal.SIGTERM)
        writer.wait(timeout=10)
    interval = json.loads(settings.read_text())["interval_s"]
    passes = elapsed / interval
    return {"cpu_pct": 100 * used / elapsed, "cpu_ms_per_pass": 1000 * used / passes, "rss_mb": rss}


def adhoc_trial(definition: dict, textfile_dir: Path) -> dict:
    args = json.dumps({"pipeline": definition, "units": False, "textfile_dir": str(textfile_dir)})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    subprocess.run(
        [str(PROJECT_ROOT / ".venv/bin/ansible"), "localhost", "-m", "quantum.redis_streams.pipeline_metrics",
         "-a", args, "-e", f"ansible_python_interpreter={sys.executable}"],
        check=True, capture_output=True, cwd=PROJECT_ROOT,
        env={**os.environ, "ANSIBLE_CONFIG": str(PROJECT_ROOT / "ansible.cfg")},
    )  # fmt: skip
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu}


def median(trials: list[dict], key: str) -> str:
    values = [t[key] for t in trials]
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    # CPU time is counted in clock ticks (10 ms): a trial must be long enough to hold many.
    parser.add_argument("--seconds", type=float, default=30.0, help="how long each writer trial is measured")
    parser.add_argument("--interval", type=float, default=1.0, help="the writer's interval_s")
    parser.add_argument("--entries-today", type=int, default=20000)
    options = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    server = Server()
    server.start()
    try:
        populate(server, options.entries_today)
        definition = pipeline(server.port)
        with tempfile.TemporaryDirectory(prefix="writer-bench-") as tmp:
            work = Path(tmp)
            bundle = work / "pipeline-metrics.pyz"
            bundle.write_bytes(build()[0])
            settings = work / "settings.json"
            settings.write_text(json.dumps({
                "pipeline": definition, "units": False, "textfile_dir": tmp, "interval_s": options.interval,
            }))  # fmt: skip
            writer = [writer_trial(bundle, settings, options.seconds) for _ in range(options.repeats)]
            adhoc = [adhoc_trial(definition, work) for _ in range(options.repeats)]
    finally:
        server.stop()
    print(f"seed pipeline, 3 streams x {options.entries_today} entries today, units not read; "
          f"medians (min-max) of {options.repeats}")  # fmt: skip
    print(f"writer (interval {options.interval:g} s, {options.seconds:g} s each): "
          f"CPU {median(writer, 'cpu_pct')} % of a core, {median(writer, 'cpu_ms_per_pass')} ms CPU a pass, "
          f"peak RSS {median(writer, 'rss_mb')} MB")  # fmt: skip
    print(f"ansible -m pipeline_metrics, one pass: wall {median(adhoc, 'wall_s')} s, "
          f"CPU {median(adhoc, 'cpu_s')} s")  # fmt: skip
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
