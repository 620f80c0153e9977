# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# The pipeline's metrics read and written: one pass, shared by the pipeline_metrics module (one
# pass per task) and the metrics writer service (a pass every few seconds, so that an alert can
# fire within seconds of a hang). The service runs this file from a zip application built by the
# metrics_writer_bundle action with the ansible.module_utils it imports: the target needs Python
# and redis-py, as the modules do, and no Ansible.
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible_collections.quantum.redis_streams.plugins.module_utils.evidence_write import write_atomically
from ansible_collections.quantum.redis_streams.plugins.module_utils.governor import count_day, day_start_ms
from ansible_collections.quantum.redis_streams.plugins.module_utils.ledger import name_problem
from ansible_collections.quantum.redis_streams.plugins.module_utils.pipeline_metrics import (
    daily_report,
    daily_streams,
    pipeline_metrics,
)
from ansible_collections.quantum.redis_streams.plugins.module_utils.redis_connection import (
    connection_argument_spec,
    explain_redis_error,
)
from ansible_collections.quantum.redis_streams.plugins.module_utils.snapshot import PipelineReader

TEXTFILE_MODE = 0o644
# The writer's exit status for settings it refuses: its unit does not restart on it
# (RestartPreventExitStatus), since the same file would be refused again.
EXIT_REFUSED = 2


class ReadFailed(Exception):
    """The read of the pipeline failed, with the module's one sentence."""


class RaisingModule:
    """A module as PipelineReader sees it once the options are checked: its failures raise
    ReadFailed instead of ending the run, so that a failed read becomes a metric."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def fail_json(self, msg: str, **_: Any) -> None:
        raise ReadFailed(msg)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def argument_spec() -> dict[str, Any]:
    """pipeline_metrics' options; the writer's settings file holds the same and its own two."""
    spec = connection_argument_spec()
    # No default: an omitted `connection` means "use pipeline.redis".
    spec["connection"].pop("default", None)
    spec.update(
        pipeline={"type": "dict", "required": True},
        textfile_dir={"type": "path"},
        units={"type": "bool", "default": True},
        systemctl={"type": "path", "default": "systemctl"},
        pending_scan_limit={"type": "int", "default": 1},
        daily_report={"type": "bool", "default": True},
    )
    return spec


def writer_spec() -> dict[str, Any]:
    spec = argument_spec()
    spec["textfile_dir"]["required"] = True
    spec.update(
        interval_s={"type": "float", "default": 15.0},
        daily_interval_s={"type": "float", "default": 60.0},
    )
    return spec


def options_problem(params: dict[str, Any]) -> str | None:
    """What the module and the writer refuse before anything is read, in one sentence."""
    problem = name_problem(params["pipeline"].get("name"), "the metrics file and labels every series")
    if problem:
        return problem
    textfile_dir = params.get("textfile_dir")
    if textfile_dir is not None and not os.path.isabs(textfile_dir):
        return f"textfile_dir {textfile_dir!r} must be an absolute path."
    return None


def textfile_path(textfile_dir: str, pipeline: dict[str, Any]) -> str:
    return os.path.join(os.path.normpath(textfile_dir), f"quantum_pipeline_{pipeline['name']}.prom")


@dataclass
class Pass:
    """One read of the pipeline as metrics: `error` is the failed read's sentence (None when
    the read was complete), `daily` the daily report (None without it)."""

    text: str
    error: str | None
    duration_s: float
    daily: dict[str, Any] | None

    @property
    def samples(self) -> int:
        return sum(1 for line in self.text.splitlines() if line and not line.startswith("#"))


class MetricsReader:
    """Reads the pipeline of `module`'s options (checked here: every problem fails the module
    before Redis is contacted) as metrics, one pass at a time, on one connection that a failed
    read closes (the next pass connects again)."""

    def __init__(self, module: Any) -> None:
        self.params = module.params
        self.reader = PipelineReader(module)
        self.reader.module = RaisingModule(module)
        self.daily: dict[str, Any] | None = None
        self.daily_at = 0.0

    def close(self) -> None:
        self.reader.close()

    def _daily(self, server_time_ms: int, max_age_s: float) -> dict[str, Any]:
        """Today's report: counted again when older than `max_age_s` or of another day (one
        bounded XRANGE page per 1000 entries of today: the writer does not pay it every pass)."""
        midnight_ms = day_start_ms(server_time_ms)
        day = datetime.fromtimestamp(midnight_ms / 1000, tz=UTC).date().isoformat()
        fresh = time.monotonic() - self.daily_at < max_age_s
        if self.daily is not None and self.daily["day"] == day and fresh:
            return self.daily
        counts: dict[str, int] = {}
        for stream in daily_streams(self.params["pipeline"]):
            try:
                counts[stream] = count_day(self.reader.client, stream, midnight_ms)
            except Exception as exc:  # every server or client failure becomes one sentence
                raise ReadFailed(
                    explain_redis_error(
                        exc, self.reader.connection, f"counting today's entries of {stream}", key=stream
                    )
                ) from exc
        self.daily, self.daily_at = daily_report(self.params["pipeline"], day, counts), time.monotonic()
        return self.daily

    def read(self, daily_max_age_s: float = 0.0) -> tuple[Pass, str | None]:
        """One pass, and the trace of a failure no sentence foresaw (None otherwise)."""
        started = time.perf_counter()
        snapshot: dict[str, Any] | None = None
        daily = None
        error = trace = None
        try:
            snapshot = self.reader.read(units=None if self.params["units"] else [])
            if self.params["daily_report"]:
                daily = self._daily(snapshot["server"]["time_ms"], daily_max_age_s)
        except ReadFailed as exc:
            error = str(exc)
        except Exception as exc:  # a failure no sentence foresaw: still a metric, with its trace
            error = f"Reading the pipeline failed: {exc}."
            trace = traceback.format_exc()
        if error:
            snapshot = daily = None
            self.reader.close()
        duration_s = time.perf_counter() - started
        text = pipeline_metrics(self.params["pipeline"], snapshot, time.time(), duration_s, daily)
        return Pass(text, error, duration_s, daily), trace


def write_textfile(path: str, text: str) -> None:
    write_atomically(path, text.encode(), TEXTFILE_MODE)


# -- the writer service ------------------------------------------------------------------------


class WriterModule:
    """What PipelineReader needs of a module, for the writer: its checked settings, a failure
    as ReadFailed, and systemctl run without a shell."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.no_log_values: set[str] = set()
        self.check_mode = False

    def fail_json(self, msg: str, **_: Any) -> None:
        raise ReadFailed(msg)

    def warn(self, msg: str) -> None:
        log(f"warning: {msg}")

    def run_command(self, argv: list[str]) -> tuple[int, str, str]:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        return done.returncode, done.stdout, done.stderr


def log(message: str) -> None:
    # One line per event on stderr: the journal keeps it, with the unit's name and the time.
    # (A service's output, not a module's: module.log would go to syslog with a module's tag.)
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def load_settings(path: str) -> tuple[dict[str, Any] | None, str | None]:
    """The writer's checked settings from its JSON file, or one sentence saying what is wrong."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except (OSError, ValueError) as exc:
        return None, f"The settings file {path} could not be read as JSON: {exc}."
    if not isinstance(raw, dict):
        return None, f"The settings file {path} must hold a JSON object."
    result = ArgumentSpecValidator(writer_spec()).validate(raw)
    if result.error_messages:
        return None, f"The settings file {path} is not valid: {'; '.join(result.error_messages)}."
    params = result.validated_parameters
    problem = options_problem(params)
    if problem:
        return None, problem
    if not 0.2 <= params["interval_s"] <= 3600:
        return None, f"interval_s must be between 0.2 and 3600 seconds, got {params['interval_s']}."
    if not os.path.isdir(params["textfile_dir"]):
        return None, f"textfile_dir {params['textfile_dir']} does not exist on this host."
    return params, None


def serve(argv: list[str] | None = None) -> int:
    """Write the pipeline's metrics every interval until SIGTERM (or once, with --once)."""
    parser = argparse.ArgumentParser(
        prog="pipeline-metrics", description="Write a pipeline's metrics for node_exporter, every interval."
    )
    parser.add_argument("settings", help="the JSON settings file (pipeline_metrics' options, interval_s)")
    parser.add_argument("--once", action="store_true", help="one pass, then exit (0 when complete)")
    args = parser.parse_args(argv)
    params, problem = load_settings(args.settings)
    if params is None:
        log(f"refused: {problem}")
        return EXIT_REFUSED
    try:
        reader = MetricsReader(WriterModule(params))
    except ReadFailed as exc:
        log(f"refused: {exc}")
        return EXIT_REFUSED

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    path = textfile_path(params["textfile_dir"], params["pipeline"])
    interval = params["interval_s"]
    if not args.once:
        log(f"writing {path} every {interval:g} s")
    # A state is logged when it changes, not every pass: a Redis down for an hour is one line.
    last_state: str | None = None
    try:
        while True:
            started = time.monotonic()
            result, trace = reader.read(params["daily_interval_s"])
            state = result.error
            try:
                write_textfile(path, result.text)
            except OSError as exc:
                state = f"The pipeline's metrics could not be written to {path}: {exc}."
            if state != last_state:
                log(f"read failed: {state}" if state else "read complete again")
                if trace:
                    log(trace)
                last_state = state
            if args.once:
                return 0 if state is None else 1
            if stop.wait(max(0.0, interval - (time.monotonic() - started))):
                return 0
    finally:
        reader.close()
