#!/usr/bin/env python3
"""The alerting chain of docs/eda.md on this machine, every part a real daemon on loopback:

    pipeline host's textfile ─▶ prometheus-node-exporter ─┐
    the pipeline's Redis ─▶ prometheus-redis-exporter ────┴▶ Prometheus (roles/monitoring's rules)
        ─▶ Alertmanager (webhook, bearer token) ─▶ ansible-rulebook (rulebooks/pipeline-alerts.yml)
        ─▶ playbooks/watchdog.yml on the pipeline's hosts

`Stack` writes the configurations into a work directory, renders the alert rules with the real
playbooks/monitoring.yml (the thresholds of an inventory's `alerting`), starts each daemon on a
free port of 127.0.0.1, waits until each is ready, records each PID in `<workdir>/run/<name>.pid`
and stops them by those PIDs (never by name), also from another process:

    lab/alerting_stack.py down WORKDIR      # stop what `Stack.start` left running there

Used by molecule/alerting (the end-to-end test) and bench/alert_mttr.py (its benchmark).
Debian's prometheus, prometheus-alertmanager, prometheus-node-exporter and
prometheus-redis-exporter (scripts/install-system-deps.sh), and ansible-rulebook with `java` on
PATH (.venv, openjdk-17) must be installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = PROJECT_ROOT / ".venv" / "bin"
RULEBOOK = PROJECT_ROOT / "rulebooks" / "pipeline-alerts.yml"
# The order they start in: each one's targets are up before it (Prometheus scrapes the exporters
# and notifies Alertmanager, Alertmanager posts to the rulebook). They stop in the reverse order.
DAEMONS = ("rulebook", "alertmanager", "node_exporter", "redis_exporter", "prometheus")
# The webhook path is free (ansible-rulebook accepts any); this one says who posts.
WEBHOOK_PATH = "/alertmanager"


class StackError(Exception):
    """A sentence saying which part of the stack failed, with the tail of its log."""


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_loopback_port(taken: set[int] | None = None) -> int:
    """A free TCP port of 127.0.0.1 from 20000 up to the kernel's ephemeral range, at random. Not
    from the ephemeral range itself (what binding port 0 gives): every outgoing connection takes
    a port there, and the stack's own readiness polls make hundreds, so a port chosen there can
    be taken before the daemon binds it."""
    low, _ = ephemeral_range()
    taken = taken or set()
    candidates = [port for port in range(20000, min(low, 32768)) if port not in taken]
    random.shuffle(candidates)
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            if not listening(port):
                return port
    raise StackError("no free port of 127.0.0.1 between 20000 and the ephemeral range")


def listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http_get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    """The status and body of a GET; (0, b"") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of a process (field 22 of /proc/PID/stat), None when it is gone or
    a zombie: with the PID it names one process, never a later one given the same PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]


def children_of(pid: int) -> list[int]:
    """Every descendant of a process, deepest first. ansible-runner starts ansible-playbook in a
    session of its own (pexpect), out of the rulebook's process group: found by parentage."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = list(parents.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(parents.get(child, []))
    return list(reversed(found))


@dataclass
class Daemon:
    """One process of the stack: how it is started, where it listens, how it is known ready."""

    name: str
    argv: list[str]
    port: int
    ready_url: str | None  # None: ready when its port listens
    # Text the ready URL's answer must hold: the answer is this daemon's, not another's.
    ready_text: bytes = b""
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None


@dataclass
class Stack:
    """The alerting chain for one pipeline, in `workdir`.

    pipeline: the inventory's `pipeline` (its name, stages and streams, Redis on this host's
    loopback port); textfile_dir: the host directory holding the pipeline host's
    quantum_pipeline_*.prom (node-exporter reads it); inventory_dir: the directory inventory the
    rulebook's runs use (ansible-rulebook copies a file inventory without its group_vars);
    rules_inventory: the inventory whose `alerting` thresholds the rules are rendered with.
    """

    workdir: Path
    pipeline: dict[str, Any]
    textfile_dir: Path
    inventory_dir: Path
    rules_inventory: Path = PROJECT_ROOT / "inventory" / "lab"
    redis_password: str | None = None
    # Alertmanager's timing: short, so that the notification is not what the benchmark measures;
    # docs/eda.md gives a production route (10 s, 1 m, 30 m).
    group_wait: str = "1s"
    group_interval: str = "5s"
    repeat_interval: str = "30m"
    ready_timeout_s: float = 90
    ports: dict[str, int] = field(default_factory=dict)
    token: str = field(default_factory=lambda: secrets.token_hex(24))
    # When Prometheus got the rules (time.time()): no alert can be older.
    rules_loaded_at: float = 0.0
    _procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    # -- paths ---------------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return self.workdir / "run"

    @property
    def rendered_dir(self) -> Path:
        """Where monitoring.yml renders the rules."""
        return self.workdir / "rules-rendered"

    @property
    def rules_dir(self) -> Path:
        """Where Prometheus reads them (rule_files), once it has scraped the pipeline's metrics."""
        return self.workdir / "rules"

    def log_path(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    def pidfile(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    # -- configuration -------------------------------------------------------------------------
    def streams(self) -> list[str]:
        """Every stream of the pipeline, for the redis-exporter's --check-streams."""
        names: list[str] = []
        for stage in self.pipeline["stages"]:
            for key in ("input_stream", "output_stream"):
                if stage.get(key) and stage[key] not in names:
                    names.append(stage[key])
        return names

    def render_rules(self) -> Path:
        """The pipeline's alert rules, rendered and checked (promtool) by the real
        playbooks/monitoring.yml on a local host of a group of its own, with the thresholds of
        rules_inventory's group_vars and this stack's pipeline."""
        self.rendered_dir.mkdir(parents=True, exist_ok=True)
        hosts = self.workdir / "rules-hosts.yml"
        hosts.write_text(
            yaml.safe_dump(
                {
                    "all": {
                        "children": {
                            "alerting_stack_rules": {
                                "hosts": {
                                    "prometheus-local": {
                                        "ansible_connection": "local",
                                        "ansible_python_interpreter": sys.executable,
                                    }
                                }
                            }
                        }
                    }
                }
            )
        )
        variables = self.workdir / "rules-vars.json"
        variables.write_text(
            json.dumps({"pipeline": self.pipeline, "monitoring_rules_dir": str(self.rendered_dir)})
        )
        command = [
            str(VENV_BIN / "ansible-playbook"),
            *("-i", str(self.rules_inventory), "-i", str(hosts)),
            "playbooks/monitoring.yml",
            *("-e", f"@{variables}", "-e", "monitoring_hosts=alerting_stack_rules"),
        ]
        env = {**os.environ, "ANSIBLE_CONFIG": str(PROJECT_ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
        done = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=False)
        rules = sorted(self.rendered_dir.glob("*.rules.yml"))
        if done.returncode != 0 or len(rules) != 1:
            raise StackError(
                f"playbooks/monitoring.yml did not render the rules:\n{done.stdout[-3000:]}{done.stderr}"
            )
        return rules[0]

    def write_configs(self) -> None:
        """prometheus.yml, alertmanager.yml (with the token in a file only it reads), the
        rulebook's variables."""
        for name in ("prometheus", "alertmanager", "node_exporter", "redis_exporter", "rulebook"):
            self.ports.setdefault(name, free_loopback_port(set(self.ports.values())))
        prometheus = {
            "global": {
                # Every second: the lab's rules hold for 2 s (inventory/lab's alerting), and a `for`
                # shorter than two evaluations would fire on one sample.
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(self.rules_dir / "*.rules.yml")],
            "alerting": {
                "alertmanagers": [
                    {"static_configs": [{"targets": [f"127.0.0.1:{self.ports['alertmanager']}"]}]}
                ]
            },
            "scrape_configs": [
                {
                    "job_name": "node",
                    "static_configs": [{"targets": [f"127.0.0.1:{self.ports['node_exporter']}"]}],
                },
                {
                    "job_name": "redis",
                    "static_configs": [{"targets": [f"127.0.0.1:{self.ports['redis_exporter']}"]}],
                },
            ],
        }
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(prometheus, sort_keys=False))

        token_file = self.workdir / "eda.token"
        token_file.write_text(self.token)
        token_file.chmod(0o600)
        alertmanager = {
            "route": {
                "receiver": "quantum-remediation",
                "group_by": ["pipeline"],
                "group_wait": self.group_wait,
                "group_interval": self.group_interval,
                "repeat_interval": self.repeat_interval,
            },
            "receivers": [
                {
                    "name": "quantum-remediation",
                    "webhook_configs": [
                        {
                            "url": f"http://127.0.0.1:{self.ports['rulebook']}{WEBHOOK_PATH}",
                            "send_resolved": True,
                            "http_config": {
                                "authorization": {"type": "Bearer", "credentials_file": str(token_file)}
                            },
                        }
                    ],
                }
            ],
        }
        (self.workdir / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager, sort_keys=False))

        rulebook_vars = {
            "eda_webhook_host": "127.0.0.1",
            "eda_webhook_port": self.ports["rulebook"],
            # The runs' evidence fetched here: the rulebook's own copy of playbooks/ is removed.
            "eda_evidence_root": str(self.workdir / "eda-evidence"),
        }
        (self.workdir / "rulebook-vars.yml").write_text(yaml.safe_dump(rulebook_vars))

    def daemons(self) -> dict[str, Daemon]:
        port = self.ports
        redis = self.pipeline["redis"]
        redis_env = {"REDIS_PASSWORD": self.redis_password} if self.redis_password else {}
        return {
            "node_exporter": Daemon(
                "node_exporter",
                [
                    "prometheus-node-exporter",
                    f"--web.listen-address=127.0.0.1:{port['node_exporter']}",
                    # The pipeline's metrics and the load average only: scraped every second on a
                    # shared machine, the default collectors would cost more than the rest.
                    "--collector.disable-defaults",
                    "--collector.textfile",
                    f"--collector.textfile.directory={self.textfile_dir}",
                    "--collector.loadavg",
                ],
                port["node_exporter"],
                f"http://127.0.0.1:{port['node_exporter']}/metrics",
                b"node_exporter_build_info",
            ),
            "redis_exporter": Daemon(
                "redis_exporter",
                [
                    "prometheus-redis-exporter",
                    f"--web.listen-address=127.0.0.1:{port['redis_exporter']}",
                    f"--redis.addr=redis://{redis.get('host', '127.0.0.1')}:{redis['port']}",
                    f"--check-streams={','.join(self.streams())}",
                ],
                port["redis_exporter"],
                f"http://127.0.0.1:{port['redis_exporter']}/metrics",
                b"redis_exporter_build_info",
                env=redis_env,
            ),
            "alertmanager": Daemon(
                "alertmanager",
                [
                    "prometheus-alertmanager",
                    f"--config.file={self.workdir / 'alertmanager.yml'}",
                    f"--storage.path={self.workdir / 'alertmanager-data'}",
                    f"--web.listen-address=127.0.0.1:{port['alertmanager']}",
                    f"--web.external-url=http://127.0.0.1:{port['alertmanager']}/",
                    # One instance: no gossip port on 0.0.0.0:9094.
                    "--cluster.listen-address=",
                ],
                port["alertmanager"],
                f"http://127.0.0.1:{port['alertmanager']}/-/ready",
            ),
            "prometheus": Daemon(
                "prometheus",
                [
                    "prometheus",
                    f"--config.file={self.workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.workdir / 'prometheus-data'}",
                    f"--web.listen-address=127.0.0.1:{port['prometheus']}",
                    # Else its alerts' links name the host, not the loopback address it listens on.
                    f"--web.external-url=http://127.0.0.1:{port['prometheus']}/",
                ],
                port["prometheus"],
                f"http://127.0.0.1:{port['prometheus']}/-/ready",
                b"Prometheus",
            ),
            "rulebook": Daemon(
                "rulebook",
                [
                    str(VENV_BIN / "ansible-rulebook"),
                    *("--rulebook", str(RULEBOOK)),
                    *("--inventory", str(self.inventory_dir)),
                    *("--vars", str(self.workdir / "rulebook-vars.yml")),
                    *("--env-vars", "QUANTUM_EDA_TOKEN"),
                    # Timestamped log lines: when the rule matched and the run started.
                    "-v",
                ],
                port["rulebook"],
                None,
                env={
                    # Its venv first (it stops with "ansible-galaxy is not installed" otherwise, and
                    # runs the playbook with the ansible-playbook it finds there), then `java`.
                    "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
                    # It runs the playbook in a temporary copy of playbooks/, away from ansible.cfg.
                    "ANSIBLE_CONFIG": str(PROJECT_ROOT / "ansible.cfg"),
                    "ANSIBLE_NOCOLOR": "1",
                    "QUANTUM_EDA_TOKEN": self.token,
                    # Its lines reach the log as they are printed, so they can be timed.
                    "PYTHONUNBUFFERED": "1",
                    # ansible-runner's private data directories, inside the work directory.
                    "TMPDIR": str(self.workdir / "tmp"),
                },
                cwd=PROJECT_ROOT,
            ),
        }

    # -- processes -----------------------------------------------------------------------------
    def start(self) -> None:
        """Render, configure, start every daemon and wait until each is ready; on any failure
        stop what was started and raise."""
        for sub in ("run", "logs", "tmp"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        try:
            self.render_rules()
            self.write_configs()
            self.check_configs()
            for name in DAEMONS:
                self.start_daemon(name)
            self.load_rules()
            (self.workdir / "stack.json").write_text(json.dumps(self.describe(), indent=2))
        except BaseException:
            self.stop()
            raise

    def check_configs(self) -> None:
        """promtool and amtool read the files as the daemons will: a refusal is one clear error
        here, not a daemon that exits later."""
        for argv in (
            ["promtool", "check", "config", str(self.workdir / "prometheus.yml")],
            ["amtool", "check-config", str(self.workdir / "alertmanager.yml")],
        ):
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise StackError(f"`{' '.join(argv)}` refused the file:\n{done.stdout}{done.stderr}")

    def start_daemon(self, name: str) -> None:
        daemon = self.daemons()[name]
        env = {**os.environ, **daemon.env}
        with self.log_path(name).open("ab") as log:
            # A session of its own: it outlives the process that started it (`down` stops it), and
            # a Ctrl-C in the caller's terminal does not reach it first.
            proc = subprocess.Popen(
                daemon.argv,
                cwd=daemon.cwd or self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._procs[name] = proc
        self.pidfile(name).write_text(
            json.dumps({"pid": proc.pid, "start_time": process_start_time(proc.pid)})
        )
        self.wait_ready(daemon, proc)

    def wait_ready(self, daemon: Daemon, proc: subprocess.Popen) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(
                    f"{daemon.name} exited ({proc.returncode}) before it was ready:\n{self.tail(daemon.name)}"
                )
            if daemon.ready_url is None:
                if listening(daemon.port):
                    return
            else:
                status, body = http_get(daemon.ready_url, timeout=1)
                if status == 200 and daemon.ready_text in body:
                    return
            time.sleep(0.1)
        raise StackError(
            f"{daemon.name} not ready within {self.ready_timeout_s} s:\n{self.tail(daemon.name)}"
        )

    def load_rules(self) -> None:
        """Give Prometheus the rules once it holds the pipeline's metrics and the exporters' (SIGHUP
        to its PID reloads its configuration). A fresh Prometheus applies its scrape targets
        about 5 s after it starts, but evaluates its rules at once: the metrics' absent() rule
        (QuantumPipelineMetricsStale, 2 s in the lab) would fire on its own start-up."""
        deadline = time.monotonic() + self.ready_timeout_s
        wanted = [
            f'quantum_pipeline_snapshot_ok{{pipeline="{self.pipeline["name"]}"}}',
            'up{job="redis"} == 1',
        ]
        while not all(self.query(expr) for expr in wanted):
            if time.monotonic() > deadline:
                raise StackError(
                    f"Prometheus has no {' and no '.join(wanted)} after {self.ready_timeout_s} s"
                )
            time.sleep(0.2)
        self.rules_dir.mkdir(parents=True, exist_ok=True)
        for rendered in self.rendered_dir.glob("*.rules.yml"):
            shutil.copy2(rendered, self.rules_dir / rendered.name)
        os.kill(self._procs["prometheus"].pid, signal.SIGHUP)
        while True:
            status, body = http_get(f"{self.url('prometheus')}/api/v1/rules")
            if status == 200 and json.loads(body)["data"]["groups"]:
                self.rules_loaded_at = time.time()
                return
            if time.monotonic() > deadline:
                raise StackError(f"Prometheus did not load {self.rules_dir}:\n{self.tail('prometheus')}")
            time.sleep(0.2)

    def tail(self, name: str, chars: int = 4000) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def restart_rulebook(self) -> None:
        """A fresh ansible-rulebook (its throttle starts empty), same port, token and log."""
        stop_pidfile(self.pidfile("rulebook"), self._procs.pop("rulebook", None))
        self.start_daemon("rulebook")

    def stop(self) -> list[str]:
        """Stop every daemon this stack started, by the PIDs in its pidfiles, last started first;
        the names of those that were running."""
        return stop_all(self.workdir, self._procs)

    def describe(self) -> dict[str, Any]:
        return {
            "workdir": str(self.workdir),
            "ports": self.ports,
            "urls": {name: self.url(name) for name in self.ports},
            "rules": [str(path) for path in sorted(self.rules_dir.glob("*.rules.yml"))],
            "textfile_dir": str(self.textfile_dir),
            "inventory_dir": str(self.inventory_dir),
        }

    # -- what the stack says -------------------------------------------------------------------
    def query(self, expr: str) -> list[dict[str, Any]]:
        """A Prometheus instant query's result vector."""
        status, body = http_get(
            f"{self.url('prometheus')}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        )
        if status == 200:
            try:
                return json.loads(body)["data"]["result"]
            except (ValueError, KeyError):
                pass
        raise StackError(f"Prometheus refused the query {expr!r} ({status}): {body[:500]!r}")

    def prometheus_alerts(self) -> list[dict[str, Any]]:
        """Prometheus's pending and firing alerts now."""
        status, body = http_get(f"{self.url('prometheus')}/api/v1/alerts")
        if status != 200:
            raise StackError(f"Prometheus's /api/v1/alerts answered {status}")
        return json.loads(body)["data"]["alerts"]

    def alertmanager_alerts(self) -> list[dict[str, Any]]:
        """Every alert Alertmanager holds now (active, silenced or inhibited)."""
        status, body = http_get(f"{self.url('alertmanager')}/api/v2/alerts")
        if status != 200:
            raise StackError(f"Alertmanager's /api/v2/alerts answered {status}")
        return json.loads(body)

    def rulebook_log(self) -> str:
        return self.tail("rulebook", chars=10**7)


def stop_pidfile(pidfile: Path, proc: subprocess.Popen | None = None, timeout: float = 15) -> bool:
    """Stop the process a pidfile names, and its descendants, if it is still that process (same
    PID and start time): SIGTERM, then SIGKILL after `timeout` s. The pidfile is removed. True when
    it was running."""
    try:
        recorded = json.loads(pidfile.read_text())
        pid, start_time = int(recorded["pid"]), recorded.get("start_time")
    except (OSError, ValueError, KeyError, TypeError):
        return False
    running = start_time is not None and process_start_time(pid) == start_time
    if running:
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
            for target in [*children_of(pid), pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(target, sig)
            if _gone(pid, start_time, proc, wait):
                break
    if proc is not None:
        # Reaped here when this process started it: else a zombie keeps its PID.
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    pidfile.unlink(missing_ok=True)
    return running


def _gone(pid: int, start_time: str, proc: subprocess.Popen | None, wait: float) -> bool:
    """Whether the process ended within `wait` s (exited, or a zombie: process_start_time None)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if (proc is not None and proc.poll() is not None) or process_start_time(pid) != start_time:
            return True
        time.sleep(0.1)
    return False


def stop_all(workdir: Path, procs: dict[str, subprocess.Popen] | None = None) -> list[str]:
    """Stop every daemon with a pidfile in workdir/run, in the reverse of the start order; the
    names of those that were running."""
    procs = procs or {}
    stopped = []
    for name in reversed(DAEMONS):
        if stop_pidfile(workdir / "run" / f"{name}.pid", procs.pop(name, None)):
            stopped.append(name)
    return stopped


class LineClock(threading.Thread):
    """Follows a log file and notes when each line appeared (time.time(), every 50 ms): the
    rulebook's lines carry no time of their own (its `debug` action, the playbook's output)."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True, name=f"clock-{path.name}")
        self.path = path
        self.lines: list[tuple[float, str]] = []
        self.offset = path.stat().st_size if path.exists() else 0
        self.partial = ""
        self.halt = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.halt.is_set():
            self.poll()
            self.halt.wait(0.05)
        self.poll()

    def poll(self) -> None:
        try:
            with self.path.open("r", errors="replace") as log:
                log.seek(self.offset)
                chunk = log.read()
                self.offset = log.tell()
        except OSError:
            return
        now = time.time()
        *complete, self.partial = (self.partial + chunk).split("\n")
        with self.lock:
            self.lines.extend((now, line) for line in complete)

    def first(self, prefix: str, after: float = 0) -> float | None:
        """When the first line starting with `prefix` appeared (after `after`), None if none did."""
        with self.lock:
            return next((t for t, line in self.lines if t >= after and line.startswith(prefix)), None)

    def matching(self, prefix: str) -> list[str]:
        with self.lock:
            return [line for _, line in self.lines if line.startswith(prefix)]

    def containing(self, text: str) -> int:
        with self.lock:
            return sum(1 for _, line in self.lines if text in line)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=5)


# -- the pipeline host's side, through `docker exec` ----------------------------------------------
def write_inventory(
    inventory_dir: Path, container: str, pipeline: dict[str, Any], variables: dict[str, Any]
) -> Path:
    """A directory inventory for the rulebook's runs: the container in quantum_pipeline (the
    watchdog's default hosts), reached through `docker exec`, with `pipeline` and `variables`
    (the watchdog's and recovery's settings) in group_vars/all."""
    (inventory_dir / "group_vars" / "all").mkdir(parents=True, exist_ok=True)
    hosts = {
        "all": {
            "children": {
                "quantum_pipeline": {
                    "hosts": {
                        container: {
                            "ansible_connection": "community.docker.docker",
                            "ansible_host": container,
                            "ansible_user": "root",
                            "ansible_python_interpreter": "/usr/bin/python3",
                        }
                    }
                }
            }
        }
    }
    (inventory_dir / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    (inventory_dir / "group_vars" / "all" / "pipeline.yml").write_text(yaml.safe_dump({"pipeline": pipeline}))
    (inventory_dir / "group_vars" / "all" / "settings.yml").write_text(yaml.safe_dump(variables))
    return inventory_dir


def docker_exec(container: str, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "exec", container, *argv], capture_output=True, text=True, timeout=timeout, check=False
    )


def ledger(
    container: str, pipeline_name: str, state_dir: str = "/var/lib/quantum-remediation/watchdog"
) -> list[dict]:
    """The watchdog's ledger on the pipeline host: one record per decision, oldest first."""
    done = docker_exec(container, "cat", f"{state_dir}/{pipeline_name}/decisions.jsonl")
    return (
        [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        if done.returncode == 0
        else []
    )


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "down":
        stopped = stop_all(Path(argv[1]))
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        return 0
    print("usage: lab/alerting_stack.py down WORKDIR   (stops the daemons of its pidfiles)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
