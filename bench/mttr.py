#!/usr/bin/env python3
"""Time to recover (a benchmark, not a test): the lab incident healed by recover.yml and by the
seed's manual runbook (../shared/bench/seed-runbook.sh), alternating, with the same window W.
Prints figures; copy them into docs/benchmarks.md ("Time to recover").

    .venv/bin/python bench/mttr.py        # (make mttr) 3 pairs at W=10 and at W=60, then the no-op
    .venv/bin/python bench/mttr.py --pairs 1 --windows 10 --skip-noop    # a quick trial

What it does:
  1. brings up its own lab container (QT_LAB_CONTAINER, default qt-mttr, Redis on
     127.0.0.1:QT_LAB_REDIS_PORT, default 6393) with lab/lab.sh and the lab's pipeline
     (inventory/lab), with the governor's daily_limit raised to --daily-limit (the lab's 200 is
     reached after 100 s of flow at 2/s: a long run would end blocked by the legitimate limit);
     refuses a container that already exists (each run flushes its Redis) unless --reuse-lab;
  2. per window W, --pairs pairs, each pair one run of each, the first of the pair alternating
     (recover.yml first in odd pairs, the runbook first in even ones). Every run starts from the
     same state: `qt-lab reset` (Redis flushed, stubs restarted, flowing), then `qt-lab incident`
     (router-1 hung holding 3, the orphan router-0 holding 3, the governor counter at 10000, every
     stream flat), then the run:
       recover.yml: `ansible-playbook -i <its inventory> recover.yml -e evidence_window_s=W
         -e stream_verify_window_s=W` (every other option at its default), with the callback
         ansible.posix.profile_tasks (task times) and its summary.json read back;
       runbook: seed-runbook.sh with WINDOW=W, through `docker exec <container> redis-cli` (the
         incident stage's stream, group and live consumer, DEAD = the orphan qt-lab made, the
         pipeline's units downstream first, OUT = the stage's output stream);
  3. a watcher thread samples the lab's Redis every 0.1 s (redis-py on 127.0.0.1) during each run
     and up to --settle-s after it, and times, from the start of the process:
       reads   the incident stage's group reads again (its entries-read grows);
       output  the final stream grows again (whatever its entries come from: the stall's backlog);
       flow    the final stream's newest entry comes, following source_id stage by stage, from an
               entry the first stage produced after the run started: the pipeline flows end to
               end again. This is the time to recover.
     First restart: when recover.yml's first unit restart began (profile_tasks' clock, from the
     play's first task). Wall time is the process's; overhead = recover.yml's wall time minus the
     windows it waited
     (the window-waiting tasks that ran: the evidence window only when one snapshot cannot
     decide, the verification window; the after phase reuses the verification window).
  4. the healthy no-op (unless --skip-noop): reset, then recover.yml at default settings (the
     windows 60 s each) on the flowing lab: wall time, task count, changed count.

Task count: from PLAY RECAP, tasks = ok + failed + skipped + rescued + unreachable (ok already
includes changed and ignored), and `ran` = tasks - skipped. profile_tasks' list gives the task
times (the 10 slowest, and the time by role) of one representative run: the recover.yml run with
the median wall time at the largest W.

Everything it writes goes to --workdir (default .cache/mttr/<UTC time>/): mttr.log is what it
prints, runs.jsonl, result.json, recover-W<w>-<n>.log, runbook-W<w>-<n>.log, noop.log, the
fetched evidence, the lab's logs. The container is removed at the end (`docker rm -f`, never
`lab/lab.sh down`, which may stop the shared engine) unless --keep-lab.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from soak import Lab, client, read_summary, write_inventory

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RUNBOOK = PROJECT_ROOT.parent / "shared/bench/seed-runbook.sh"
PLAYBOOK = PROJECT_ROOT / ".venv/bin/ansible-playbook"
RECAP_HOST = re.compile(r"^(?P<host>\S+)\s*:\s*(?P<counts>(?:\w+=\d+\s*)+)$")
# profile_tasks' summary line: the task name, a dash filler, the seconds ("name ----- 12.34s").
PROFILE_LINE = re.compile(r"^(?P<name>.+?) -* ?(?P<s>\d+\.\d{2})s$")
ORPHAN_LINE = re.compile(r"^orphan (?P<name>\S+) \(group ", re.MULTILINE)
MILESTONES = ("reads", "output", "flow")
OUT: Any = None


def log(msg: str) -> None:
    line = f"{datetime.now(UTC):%H:%M:%S} mttr: {msg}"
    print(line, flush=True)
    if OUT is not None:
        OUT.write(line + "\n")
        OUT.flush()


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---------------------------------------------------------------------------------------------
# the watcher


class Watcher(threading.Thread):
    """Samples the pipeline every 0.1 s and keeps the first time (seconds after `t0`) each
    milestone of the module docstring was seen."""

    def __init__(self, port: int, pipeline: dict, stage: dict, t0: float) -> None:
        super().__init__(daemon=True, name="watcher")
        self.r = client(port)
        self.stage = stage
        self.consumers = [s for s in pipeline["stages"] if s.get("input_stream")]
        self.final = pipeline["stages"][-1]["output_stream"]
        self.t0 = t0
        sec, usec = self.r.time()
        # Stream ids carry the server's clock: an id at or after this was produced after the start.
        self.start_ms = sec * 1000 + usec // 1000
        self.base_output, self.base_reads = self.read()
        self.last_output = self.base_output
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()
        self.error: str | None = None

    def read(self) -> tuple[int, int]:
        pipe = self.r.pipeline(transaction=False)
        pipe.xinfo_stream(self.final)
        pipe.xinfo_groups(self.stage["input_stream"])
        final, groups = pipe.execute()
        group = next(g for g in groups if g["name"] == self.stage["group"])
        return int(final["entries-added"]), int(group.get("entries-read") or 0)

    def origin_ms(self) -> int | None:
        """The time of the first-stage entry the final stream's newest entry comes from."""
        page = self.r.xrevrange(self.final, count=1)
        if not page:
            return None
        fields = page[0][1]
        source = None
        for stage in reversed(self.consumers):
            source = fields.get("source_id")
            found = self.r.xrange(stage["input_stream"], source, source, count=1) if source else []
            if not found:
                return None  # trimmed or foreign: unknown, never counted as flow
            fields = found[0][1]
        return int(source.partition("-")[0]) if source else None

    def mark(self, name: str, t: float) -> None:
        self.seen.setdefault(name, round(t - self.t0, 2))

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                t = time.monotonic()
                output, reads = self.read()
                if reads > self.base_reads:
                    self.mark("reads", t)
                if output > self.base_output:
                    self.mark("output", t)
                if output != self.last_output and "flow" not in self.seen:
                    self.last_output = output
                    origin = self.origin_ms()
                    if origin is not None and origin >= self.start_ms:
                        self.mark("flow", t)
                time.sleep(0.1)
        except Exception as exc:  # reported with the run: its milestones would be incomplete
            self.error = f"{type(exc).__name__}: {exc}"

    def settle(self, timeout: float) -> None:
        """Until every milestone is seen or `timeout` passes, then stop."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.error and len(self.seen) < len(MILESTONES):
            time.sleep(0.1)
        self.stop.set()
        self.join(5)


# ---------------------------------------------------------------------------------------------
# the runs


class Bench:
    """The lab, its pipeline and the runs on it (one child process at a time)."""

    def __init__(self, args: argparse.Namespace, lab: Lab, workdir: Path) -> None:
        self.args, self.lab, self.workdir = args, lab, workdir
        self.pipeline: dict = {}
        self.stage: dict = {}
        self.seen_runs: set[str] = set()
        self.child: subprocess.Popen | None = None

    def setup(self) -> None:
        self.lab.up()
        # Both stored in the lab data, so every `qt-lab reset` keeps them.
        self.lab.must("configure", "--rate", str(self.args.rate), "--daily-limit", str(self.args.daily_limit))
        self.pipeline = write_inventory(self.workdir, self.lab.container, self.lab.port)
        # qt-lab incident's default target: the first consumer stage.
        self.stage = next(s for s in self.pipeline["stages"] if s.get("input_stream"))

    def incident(self) -> str:
        """A fresh lab with the incident on it; returns the orphan consumer's name."""
        self.lab.must("reset")
        out = self.lab.must("incident")
        match = ORPHAN_LINE.search(out)
        if not match:
            raise RuntimeError(f"qt-lab incident named no orphan consumer: {out}")
        return match.group("name")

    def run_child(
        self, cmd: list[str], env: dict, logfile: Path, timeout: float, t0: float
    ) -> tuple[int, float]:
        """Runs one command (its PID kept, so an interrupted benchmark stops it); rc and wall time
        since `t0` (the watcher's, taken just before)."""
        with open(logfile, "w") as out:
            self.child = subprocess.Popen(
                cmd, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
            try:
                rc = self.child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.stop_child()
                rc = -1
        self.child = None
        return rc, round(time.monotonic() - t0, 2)

    def stop_child(self) -> None:
        child = self.child
        if child is not None and child.poll() is None:
            os.kill(child.pid, signal.SIGTERM)
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(child.pid, signal.SIGKILL)
                child.wait()

    def recover(self, window: int | None, logfile: Path) -> dict:
        """One recover.yml run; window None = every option at its default."""
        extra: dict[str, Any] = {"report_fetch_root": str(self.workdir / "evidence")}
        if window is not None:
            extra.update(evidence_window_s=window, stream_verify_window_s=window)
        cmd = [str(PLAYBOOK), "-i", str(self.workdir / "inventory"), "recover.yml", "-e", json.dumps(extra)]
        env = {
            **os.environ,
            "PATH": f"{PROJECT_ROOT / '.venv/bin'}:{os.environ.get('PATH', '')}",
            "ANSIBLE_CONFIG": str(PROJECT_ROOT / "ansible.cfg"),
            "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
            "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "all",
            "ANSIBLE_NOCOLOR": "1",
        }
        watch = Watcher(self.lab.port, self.pipeline, self.stage, time.monotonic())
        watch.start()
        rc, wall = self.run_child(cmd, env, logfile, self.args.playbook_timeout, watch.t0)
        watch.settle(self.args.settle_s)
        run_dir, summary = read_summary(self.workdir / "evidence", self.lab.container, self.seen_runs)
        text = logfile.read_text(errors="replace")
        recap = parse_recap(text)
        recovery = summary.get("recovery") or []
        # The windows the run actually waited (the tasks that wait, wait_s, on the target, and ran):
        # the evidence window is waited only when one snapshot cannot decide, the after phase
        # reuses the verification window, and a healthy run may wait none.
        windows = waited_windows(text) * (window if window is not None else DEFAULT_WINDOW_S)
        return {
            "tool": "recover.yml",
            "window": window,
            "rc": rc,
            "wall_s": wall,
            "outcome": summary.get("outcome", "NO SUMMARY"),
            "evidence": run_dir,
            "windows_s": windows,
            "overhead_s": round(wall - windows, 2),
            "first_restart_s": first_restart(text),
            **milestones(watch),
            **recap,
            "verdicts_before": summary.get("verdicts_before"),
            "moved": sum(int(s.get("moved") or 0) for s in recovery),
            "retired": sum(len(s.get("retired") or []) for s in recovery),
            "governor_reset": bool((summary.get("governor") or {}).get("reset")),
            "failed_task": summary.get("failed_task"),
            "profile": parse_profile(text),
            "end_state": self.end_state(),
        }

    def runbook(self, window: int, orphan: str, logfile: Path) -> dict:
        units = " ".join(s["unit"] for s in reversed(self.pipeline["stages"]))
        env = {
            **os.environ,
            "EXEC": f"docker exec {self.lab.container}",
            "REDIS": f"redis-cli -p {self.lab.port}",
            "WINDOW": str(window),
            "STREAM": self.stage["input_stream"],
            "GROUP": self.stage["group"],
            "DEAD": orphan,
            "RESCUE": self.stage["consumer"],
            "UNITS": units,
            "OUT": self.stage["output_stream"],
        }
        watch = Watcher(self.lab.port, self.pipeline, self.stage, time.monotonic())
        watch.start()
        rc, wall = self.run_child(["bash", str(self.args.runbook)], env, logfile, window + 300, watch.t0)
        watch.settle(self.args.settle_s)
        text = logfile.read_text(errors="replace")
        said = re.search(r"^out stream \S+: (\d+) -> (\d+)$", text, re.MULTILINE)
        return {
            "tool": "runbook",
            "window": window,
            "rc": rc,
            "wall_s": wall,
            "outcome": "exit 0" if rc == 0 else f"exit {rc}",
            "windows_s": window,
            "overhead_s": round(wall - window, 2),
            **milestones(watch),
            "out_stream_before_after": [int(said.group(1)), int(said.group(2))] if said else None,
            "end_state": self.end_state(),
        }

    def end_state(self) -> dict:
        """What is left after the run and the settle time: the incident stage's PEL and
        consumers, and the governor (a counter above its limit still blocks the producer)."""
        r = client(self.lab.port)
        consumers = r.xinfo_consumers(self.stage["input_stream"], self.stage["group"])
        gov = self.pipeline.get("governor") or {}
        state: dict[str, Any] = {
            "consumers": {c["name"]: int(c["pending"]) for c in consumers},
        }
        if gov:
            values = r.hgetall(gov["key"])
            count, limit = int(values.get(gov["count_field"]) or 0), int(values.get(gov["limit_field"]) or 0)
            state["governor"] = f"{count}/{limit}"
            state["producer_blocked"] = count >= limit
        return state


def milestones(watch: Watcher) -> dict:
    return {**{f"{m}_s": watch.seen.get(m) for m in MILESTONES}, "watch_error": watch.error}


def parse_recap(text: str) -> dict:
    """PLAY RECAP's counts of the (one) host, and the task count of the module docstring."""
    part = text.rpartition("PLAY RECAP")[2]
    for line in part.splitlines():
        match = RECAP_HOST.match(line.strip())
        if match:
            counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group("counts"))}
            tasks = sum(counts.get(k, 0) for k in ("ok", "failed", "skipped", "rescued", "unreachable"))
            return {
                "recap": counts,
                "tasks": tasks,
                "ran": tasks - counts.get("skipped", 0),
                "changed": counts.get("changed"),
            }
    return {"recap": None, "tasks": None, "ran": None, "changed": None}


# service_restart's one task restarts every unit (the first at once, after one read).
RESTART_TASK = re.compile(r"^TASK \[service_restart : Restart ")
# The tasks that wait a window (pipeline_snapshot's wait_s) before reading its end.
WINDOW_TASKS = re.compile(
    r"^TASK \[(evidence : Take the pipeline's snapshot again, a window later"
    r"|stream_verify : Wait for the window to pass)"
)
# evidence_window_s and stream_verify_window_s at their defaults.
DEFAULT_WINDOW_S = 60


def waited_windows(text: str) -> int:
    """How many of the window-waiting tasks ran (not skipped): the lines after such a task's
    header, up to the next task, say `ok:` or `changed:` for the host."""
    lines = text.splitlines()
    count = 0
    for index, line in enumerate(lines):
        if not WINDOW_TASKS.match(line):
            continue
        for following in lines[index + 1 :]:
            if following.startswith("TASK ["):
                break
            if following.startswith(("ok: [", "changed: [")):
                count += 1
                break
    return count
PROFILE_CLOCK = re.compile(r"\s(\d+):(\d\d):(\d\d(?:\.\d+)?) \*+\s*$")


def first_restart(text: str) -> float | None:
    """When the first unit restart began, in seconds on profile_tasks' clock (from the first
    task of the play, so without ansible-playbook's own start-up): the line after the task's
    header is `<date> (<previous task>)  H:MM:SS.sss *****`."""
    lines = text.splitlines()
    for index, line in enumerate(lines[:-1]):
        if RESTART_TASK.match(line):
            match = PROFILE_CLOCK.search(lines[index + 1])
            if match:
                hours, minutes, seconds = match.groups()
                return round(int(hours) * 3600 + int(minutes) * 60 + float(seconds), 2)
    return None


def parse_profile(text: str) -> list[list]:
    """profile_tasks' summary: [[task name, seconds], ...], slowest first."""
    part = text.rpartition("TASKS RECAP")[2]
    rows = []
    for line in part.splitlines():
        match = PROFILE_LINE.match(line.rstrip())
        if match and not line.startswith("="):
            rows.append([match.group("name").strip(), float(match.group("s"))])
    return rows


def run_line(rec: dict) -> str:
    return (
        f"{rec['tool']} W={rec['window']}: rc {rec['rc']} {rec['outcome']}, wall {rec['wall_s']} s "
        f"(overhead {rec['overhead_s']} s), first restart {rec.get('first_restart_s')} s, "
        f"reads {rec['reads_s']} s, output {rec['output_s']} s, "
        f"flow {rec['flow_s']} s"
        + (f", tasks {rec['tasks']} (ran {rec['ran']}, changed {rec['changed']})" if "tasks" in rec else "")
        + f"; end {rec['end_state']}"
        + (f"; WATCH {rec['watch_error']}" if rec.get("watch_error") else "")
        + (f"; FAILED {rec['failed_task']}" if rec.get("failed_task") else "")
    )


# ---------------------------------------------------------------------------------------------
# the summary


def med(values: list) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 2) if known else None


def fmt(v: Any, unit: str = " s") -> str:
    return "-" if v is None else f"{v}{unit}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def never(runs: list[dict], key: str) -> str:
    """How many runs never reached a milestone (within the run and --settle-s)."""
    missing = sum(1 for r in runs if r[key] is None)
    return f" ({missing} of {len(runs)} never)" if missing else ""


def representative(runs: list[dict]) -> dict | None:
    """The recover.yml run with the median wall time at the largest window."""
    rec = [r for r in runs if r["tool"] == "recover.yml" and r["profile"]]
    if not rec:
        return None
    top = max(r["window"] for r in rec)
    at = sorted((r for r in rec if r["window"] == top), key=lambda r: r["wall_s"])
    return at[(len(at) - 1) // 2]


def by_role(profile: list[list]) -> list[tuple[str, float]]:
    """Task time summed by role ("role : task"; the playbook's own tasks under recover.yml)."""
    sums: dict[str, float] = defaultdict(float)
    for name, secs in profile:
        role = name.split(" : ", 1)[0] if " : " in name else "recover.yml"
        sums[role] += secs
    return sorted(sums.items(), key=lambda kv: -kv[1])


def print_summary(res: dict) -> None:
    runs = res.get("runs") or []
    log(
        f"== time to recover, {res.get('started_at')} -> {res.get('finished_at')}, commit {res.get('commit')}"
        f"{' (work tree modified)' if res.get('dirty') else ''}, redis {res.get('redis_version')}, "
        f"lab rate {res['options']['rate']}/s"
    )
    log(
        "time from the start of the process: reads = the incident stage's group reads again; output = "
        "the final stream grows again; flow = the final stream's newest entry comes from an entry "
        "produced after the start (end to end: the time to recover). Medians; 'never' = not within "
        f"the run + {res['options']['settle_s']:g} s."
    )
    for window in sorted({r["window"] for r in runs}):
        rec = [r for r in runs if r["window"] == window and r["tool"] == "recover.yml"]
        book = [r for r in runs if r["window"] == window and r["tool"] == "runbook"]
        pairs = min(len(rec), len(book))
        row: dict[str, dict] = {}
        for name, group in (("recover.yml", rec), ("runbook", book)):
            row[name] = {
                k: med([r.get(k) for r in group])
                for k in ("flow_s", "output_s", "reads_s", "wall_s", "overhead_s", "first_restart_s")
            }
        a, b = row["recover.yml"], row["runbook"]
        log(f"W={window} s, {pairs} pair(s):")
        for name, group in (("recover.yml", rec), ("runbook", book)):
            m = row[name]
            log(
                f"  {name:<11} flow {fmt(m['flow_s'])}{never(group, 'flow_s')}, "
                f"output {fmt(m['output_s'])}{never(group, 'output_s')}, "
                f"reads {fmt(m['reads_s'])}{never(group, 'reads_s')}, wall {fmt(m['wall_s'])}, "
                f"overhead (wall - windows) {fmt(m['overhead_s'])}"
                + (f", first restart {fmt(m['first_restart_s'])}" if m["first_restart_s"] is not None else "")
                + "; outcomes "
                f"{', '.join(sorted({str(r['outcome']) for r in group}))}"
            )
        tasks = sorted({(r["tasks"], r["ran"], r["changed"]) for r in rec})
        log(
            f"  ratio recover/runbook: flow {ratio(a['flow_s'], b['flow_s'])}, output "
            f"{ratio(a['output_s'], b['output_s'])}, wall {ratio(a['wall_s'], b['wall_s'])}; recover.yml "
            "tasks " + ", ".join(f"{t} (ran {n}, changed {c})" for t, n, c in tasks)
        )
        blocked = [r["end_state"].get("producer_blocked") for r in book]
        if any(blocked):
            log(
                f"  runbook: the producer was still blocked by the governor after {sum(map(bool, blocked))} "
                f"of {len(book)} runs (end state {book[0]['end_state']})"
            )
    noop = res.get("noop")
    if noop:
        log(
            f"healthy no-op (default settings): rc {noop['rc']} {noop['outcome']}, wall {noop['wall_s']} s, "
            f"tasks {noop['tasks']} (ran {noop['ran']}), changed {noop['changed']}; recap {noop['recap']}"
        )
    rep = representative(runs)
    if rep:
        log(
            f"10 slowest tasks of the representative run (recover.yml W={rep['window']}, median wall "
            f"{rep['wall_s']} s, {Path(rep['log']).name}; profile_tasks):"
        )
        for name, secs in rep["profile"][:10]:
            log(f"  {secs:8.2f} s  {name}")
        log("  time by role: " + ", ".join(f"{role} {secs:.1f} s" for role, secs in by_role(rep["profile"])))
    if noop and noop.get("profile"):
        log("5 slowest tasks of the no-op: " + "; ".join(f"{n} {s:.1f} s" for n, s in noop["profile"][:5]))
    log(f"load average (1/5/15 min) at the start {res.get('load_start')}, at the end {res.get('load_end')}")


# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=3, help="runs of each tool per window (default 3)")
    p.add_argument(
        "--windows", default="10,60", help="the windows W in seconds, comma-separated (default 10,60)"
    )
    p.add_argument("--skip-noop", action="store_true", help="no healthy no-op run")
    p.add_argument(
        "--settle-s",
        type=float,
        default=30,
        help="after a run, longest wait for the milestones it has not reached (default 30)",
    )
    p.add_argument("--rate", type=float, default=2, help="the stub producer's entries/s (the lab's, 2)")
    p.add_argument(
        "--daily-limit",
        type=int,
        default=5000,
        help="the governor's daily_limit, below the incident's 10000 (default 5000)",
    )
    p.add_argument("--playbook-timeout", type=float, default=900)
    p.add_argument("--runbook", type=Path, default=RUNBOOK, help=f"the runbook (default {RUNBOOK})")
    p.add_argument("--keep-lab", action="store_true", help="leave the container running at the end")
    p.add_argument(
        "--reuse-lab",
        action="store_true",
        help="use the container if it exists already (its Redis is flushed at every run)",
    )
    p.add_argument("--workdir", type=Path, default=None)
    args = p.parse_args(argv)
    try:
        args.window_list = [int(w) for w in args.windows.split(",") if w.strip()]
    except ValueError:
        p.error(f"--windows must be whole seconds separated by commas, got {args.windows!r}.")
    if not args.window_list or min(args.window_list) < 1:
        p.error(f"--windows must name at least one window of 1 s or more, got {args.windows!r}.")
    if args.pairs < 0:
        p.error(f"--pairs must be 0 or more, got {args.pairs}.")
    if not 0 < args.daily_limit < 10000:
        p.error(f"--daily-limit must be 1 to 9999 (below the incident's counter), got {args.daily_limit}.")
    if not args.runbook.is_file():
        p.error(f"--runbook {args.runbook} does not exist.")
    return args


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True, check=False
    ).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    global OUT
    args = parse_args(argv)
    # SIGTERM: the finally below still stops the running child by its PID and removes the lab.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    container = os.environ.get("QT_LAB_CONTAINER", "qt-mttr")
    port = int(os.environ.get("QT_LAB_REDIS_PORT", "6393"))
    workdir = (
        args.workdir or PROJECT_ROOT / ".cache/mttr" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    ).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    OUT = open(workdir / "mttr.log", "a")  # noqa: SIM115 (kept open for the whole run)
    exists = (
        subprocess.run(["docker", "inspect", container], capture_output=True, check=False).returncode == 0
    )
    if exists and not args.reuse_lab:
        log(
            f"container {container} exists already (another run's?): every run flushes its Redis, so it is "
            "left alone. Remove it, set QT_LAB_CONTAINER to another name, or pass --reuse-lab."
        )
        return 2
    lab = Lab(container, port, os.environ.get("QT_LAB_IMAGE"))
    bench = Bench(args, lab, workdir)
    res: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "container": container,
        "port": port,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "commit": git("rev-parse", "--short", "HEAD") or "unknown (not a git work tree)",
        "dirty": bool(git("status", "--porcelain", "-uno")),
        "load_start": load(),
        "runs": [],
    }
    log(f"workdir {workdir}; container {container}, Redis 127.0.0.1:{port}; load average {res['load_start']}")
    try:
        bench.setup()
        res["redis_version"] = lab.redis_version()
        with open(workdir / "runs.jsonl", "a") as jl:
            for window in args.window_list:
                for n in range(1, args.pairs + 1):
                    # Alternating which goes first spreads a drift in load over both tools.
                    order = ("recover.yml", "runbook") if n % 2 else ("runbook", "recover.yml")
                    for tool in order:
                        orphan = bench.incident()
                        name = f"{'recover' if tool == 'recover.yml' else 'runbook'}-W{window}-{n}.log"
                        logfile = workdir / name
                        rec = (
                            bench.recover(window, logfile)
                            if tool == "recover.yml"
                            else bench.runbook(window, orphan, logfile)
                        )
                        rec.update(pair=n, log=str(logfile), load=load())
                        res["runs"].append(rec)
                        jl.write(json.dumps(rec) + "\n")
                        jl.flush()
                        log(run_line(rec))
        if not args.skip_noop:
            lab.must("reset")
            logfile = workdir / "noop.log"
            res["noop"] = {**bench.recover(None, logfile), "log": str(logfile), "load": load()}
            log("no-op: " + run_line(res["noop"]))
    finally:
        bench.stop_child()
        res["load_end"] = load()
        res["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        (workdir / "result.json").write_text(json.dumps(res, indent=2, default=str))
        lab.save_logs(workdir / "lab-logs")
        if not args.keep_lab:
            lab.remove()
            log(f"container {container} removed")
        print_summary(res)
        OUT.close()
    failed = [
        r
        for r in res["runs"] + ([res["noop"]] if res.get("noop") else [])
        if r["tool"] == "recover.yml" and r["rc"] != 0
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
