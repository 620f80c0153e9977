"""The run's guards, as pure functions: every option of the run checked before the first
change, paths proven to stay under their roots, whether a run may take the lock it found.

Each problem is one sentence that names the option. `RUN_OPTIONS` is the one list of the
options an operator may give (inventory, `-e`, AWX survey) with what each accepts; the unit
tests prove that every role's argument_specs option is listed here (or in `INTERNAL`) and that
every role default passes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# The path guards: one definition, shared with the collection's evidence_fetch (its `root`).
from ansible_collections.quantum.redis_streams.plugins.plugin_utils.paths import is_under, path_problem

_RUN_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{4,8}$")
_WHOLE = re.compile(r"^[+-]?[0-9]+$")
# Ansible's own spellings of a boolean (module_utils.parsing.convert_bool).
_TRUE = {"y", "yes", "on", "1", "true", "t"}
_FALSE = {"n", "no", "off", "0", "false", "f"}
_UNITS = (("_ms", "milliseconds"), ("_s", "seconds"))

# kind, then bounds for numbers: (minimum, maximum or None).
RUN_OPTIONS: dict[str, tuple] = {
    "preflight_run_id": ("run_id",),
    "preflight_lock_path": ("path",),
    "preflight_lock_stale_s": ("int", 1, None),
    "preflight_take_lock": ("bool",),
    "preflight_check_client": ("bool",),
    "preflight_check_redis": ("bool",),
    "preflight_fail_on_missing": ("bool",),
    "preflight_hold_reason": ("text",),
    "evidence_root": ("path",),
    "evidence_window_s": ("int", 1, None),
    "evidence_reuse_verify_window": ("bool",),
    "evidence_snapshot_verdicts": ("bool",),
    "evidence_stall_idle_ms": ("int", 0, None),
    "evidence_lag_tolerance": ("int", 0, None),
    "evidence_pending_scan_limit": ("int", 1, None),
    "consumer_recovery_min_idle_ms": ("int", 0, None),
    "consumer_recovery_retire": ("bool",),
    # The same bounds as redis_stream_reclaim's batch_size (its default is the only one).
    "consumer_recovery_batch_size": ("int", 1, 10000),
    "consumer_recovery_plan_id_cap": ("int", 0, None),
    "governor_reset_above_limit": ("bool",),
    "service_restart_extra_stages": ("stages",),
    "service_restart_timeout_s": ("int", 1, None),
    "service_restart_poll_s": ("int", 1, None),
    "service_restart_require_advance": ("bool",),
    "service_restart_journal_lines": ("int", 0, None),
    "stream_verify_window_s": ("int", 1, None),
    "stream_verify_stall_idle_ms": ("int", 0, None),
    "stream_verify_lag_tolerance": ("int", 0, None),
    "stream_verify_fail": ("bool",),
    "stream_verify_replay_poll_s": ("int", 1, None),
    "report_fetch_root": ("path",),
    "report_fetch": ("bool",),
    "watchdog_state_dir": ("path",),
    "watchdog_paused": ("bool",),
    "watchdog_max_recoveries": ("int", 0, None),
    "watchdog_window_s": ("int", 60, None),
    "watchdog_retention_s": ("int", 3600, None),
    "watchdog_textfile_dir": ("path_or_empty",),
    # The pipeline an alert names (rulebooks/pipeline-alerts.yml): playbooks/watchdog.yml leaves
    # the hosts of other pipelines alone.
    "alert_pipeline": ("text",),
}
# Set by the run itself (one role's result handed to the next, a playbook's own choice): given
# from outside they would bypass a check (a diagnosis wording on a LIVE run, a path not built
# from the validated run id), so they are refused.
INTERNAL = (
    "evidence_phase",
    "evidence_defer_write",
    "consumer_recovery_evidence",
    "consumer_recovery_verdicts",
    "service_restart_verdicts",
    "service_restart_unit_list",
    "service_restart_governor",
    "service_restart_before",
    "stream_verify_before_verdicts",
    "report_fetch_dir",
    "report_diagnosis_only",
    "report_failed_task",
    "unit_backup_dir",
    "unit_backup_units",
    "evidence_snapshot",
    "consumer_recovery_stages",
    "stream_verify_first_snapshot",
    "stream_verify_replay_snapshot",
    "service_restart_replay_marks",
    # The roles' results: an extra var outranks set_fact, so a given one would stand for the
    # diagnosis or the recovery (a pipeline called healthy, a directory never claimed, a LIVE
    # run let through the mode gate).
    "preflight_result",
    # What preflight_result is made of, held under private names until the mode is decided:
    # the read (its mode gate) and the run id (unchecked, it would name the evidence directory).
    "_preflight_read",
    "_preflight_run_id",
    "evidence_result",
    "unit_backup_result",
    "consumer_recovery_result",
    "governor_result",
    "service_restart_result",
    "stream_verify_result",
    "report_summary",
)
# Set by the run before preflight checks anything: the watchdog's gate (roles/watchdog, gate)
# registers its ledger read first and refuses it given from outside itself (preflight, after
# it, could not tell the gate's own result from a given one).
SET_BEFORE_PREFLIGHT = ("watchdog_result",)


def is_run_id(value: Any) -> bool:
    """Whether `value` is a run id (YYYYmmddTHHMMSSZ-xxxx): safe to use in a path."""
    return isinstance(value, str) and bool(_RUN_ID.match(value))


def _whole(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _WHOLE.match(value.strip()):
        return int(value.strip())
    return None


def _is_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    return isinstance(value, (str, int)) and str(value).strip().lower() in _TRUE | _FALSE


def _option_problem(name: str, value: Any, spec: tuple, stage_names: list[str]) -> str | None:
    kind = spec[0]
    if kind == "internal":
        return f"{name} is set by the run itself and cannot be given: remove it (-e {name}=...)."
    if kind == "bool":
        if _is_bool(value):
            return None
        return f"{name} must be true or false (got {value!r})."
    if kind == "int":
        low, high = spec[1], spec[2]
        unit = next((u for suffix, u in _UNITS if name.endswith(suffix)), "")
        what = f"a whole number of {unit}" if unit else "a whole number"
        bounds = f"{low} or more" if high is None else f"from {low} to {high}"
        number = _whole(value)
        if number is None or number < low or (high is not None and number > high):
            return f"{name} must be {what}, {bounds} (got {value!r})."
        return None
    if kind == "path":
        return path_problem(value, name)
    if kind == "path_or_empty":
        return None if value in ("", None) else path_problem(value, name)
    if kind == "text":
        if isinstance(value, str) and len(value) <= 500 and "\n" not in value.strip():
            return None
        return f"{name} must be one line of text, at most 500 characters (got {str(value)[:80]!r})."
    if kind == "run_id":
        if is_run_id(value):
            return None
        return f"{name} {value!r} is not a run id (YYYYmmddTHHMMSSZ-xxxx): leave it unset to get a new one."
    if kind == "stages":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return f"{name} must be a list of stage names (got {value!r})."
        unknown = [v for v in value if v not in stage_names]
        if unknown:
            return (
                f"{name} names unknown stage {', '.join(repr(u) for u in unknown)}: "
                f"the pipeline's stages are {', '.join(stage_names)}."
            )
        return None
    raise ValueError(f"unknown option kind {kind!r} for {name}")


def run_option_names(_unused: Any = None) -> list[str]:
    """Every option name `run_option_problems` checks: `RUN_OPTIONS`, then `INTERNAL` (a
    filter of nothing: `none | run_option_names`)."""
    return list(RUN_OPTIONS) + [name for name in INTERNAL if name not in RUN_OPTIONS]


def _kind(value: Any) -> str:
    """A value's kind in plain words (Ansible hands tagged subclasses of str, list, dict)."""
    for kind, name in ((bool, "a boolean"), (str, "a string"), (int, "a number"), (float, "a number")):
        if isinstance(value, kind):
            return name
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def pipeline_guard_problems(pipeline: Any) -> list[str]:
    """What of the pipeline definition is used before `validate_pipeline`'s checks matter: the
    connection must be a mapping (the modules' `connection` option), the name names the run
    lock (a file name), the mode file is an absolute path."""
    if not isinstance(pipeline, Mapping):
        return []  # validate_pipeline says so
    problems: list[str] = []
    redis = pipeline.get("redis")
    if not isinstance(redis, Mapping):
        got = "" if redis is None else f", got {_kind(redis)} {str(redis)!r}"
        problems.append(
            f"pipeline.redis must be a mapping of connection options (host, port, password, ...){got}."
        )
    name = pipeline.get("name")
    if isinstance(name, str) and not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
        problems.append(
            f"pipeline.name {name!r} must be letters, digits, '.', '_' or '-' (it names the run lock file)."
        )
    mode_file = pipeline.get("mode_file")
    problem = path_problem(mode_file, "pipeline.mode_file")
    if problem:
        problems.append(problem)
    if not isinstance(pipeline.get("mode_variable"), str) or not pipeline.get("mode_variable"):
        problems.append("pipeline.mode_variable must name the mode variable (e.g. BINANCE_TESTNET).")
    return problems


def missing_unit_problems(states: Mapping[str, Any] | None, pipeline: Any, host: Any = None) -> list[str]:
    """One sentence per pipeline unit the target's systemd does not know (`states`: the units
    of a pipeline_snapshot), or could not be asked about."""
    stage_list = pipeline.get("stages") if isinstance(pipeline, Mapping) else None
    problems: list[str] = []
    for index, stage in enumerate(stage_list if isinstance(stage_list, list) else []):
        if not isinstance(stage, Mapping) or not stage.get("unit"):
            continue
        unit = str(stage.get("unit"))
        state = (states or {}).get(unit) if isinstance(states, Mapping) else None
        state = state if isinstance(state, Mapping) else {}
        where = f"pipeline.stages[{index}].unit {unit} (stage {stage.get('name')})"
        if state.get("error"):
            problems.append(f"Cannot ask systemd on {host} about {where}: {state['error']}.")
        elif state.get("load_state") != "loaded":
            load_state = state.get("load_state") or "unknown"
            problems.append(
                f"{where} does not exist on {host} (systemd LoadState={load_state}): "
                "fix the unit name in the pipeline definition or install the unit."
            )
    return problems


REDIS_IMPORT_FAILED = "Failed to import the required Python library (redis"


def target_problems(
    snapshot: Mapping[str, Any] | None, pipeline: Any, host: Any = None, fail_on_missing: bool = True
) -> list[str]:
    """One sentence per reason the target cannot run the pipeline, from preflight's
    pipeline_snapshot (registered with failed_when false): its Python cannot import the Redis
    client, the module failed (Redis unreachable, refused, a unit unreadable: the module's own
    sentence), a pipeline unit systemd does not know, or (with `fail_on_missing`) a stream or
    group missing in Redis. Empty when the target is ready; also for a snapshot not taken."""
    result = snapshot if isinstance(snapshot, Mapping) else {}
    if result.get("skipped") or not result:
        return []
    # failed_when false registers a failure with `failed` false: a result without the `units`
    # every snapshot taken returns is a failure all the same.
    if result.get("failed") or "units" not in result:
        msg = str(result.get("msg") or "").strip()
        if REDIS_IMPORT_FAILED in msg:
            return [
                f"The Python Redis client is missing on {host} (the target's Python cannot import redis): "
                "install Debian's python3-redis (apt-get install python3-redis) or pip's redis for that "
                "interpreter."
            ]
        if msg.startswith("MODULE FAILURE") or not msg:
            detail = str(result.get("module_stderr") or result.get("module_stdout") or msg or "no output")
            first = next((line.strip() for line in detail.splitlines() if line.strip()), "no output")
            return [f"The target's Python could not run the pipeline snapshot on {host}: {first}."]
        return [msg]
    problems = missing_unit_problems(result.get("units"), pipeline, host)
    missing = [str(name) for name in result.get("missing") or []]
    if fail_on_missing and missing:
        problems.append(f"Missing from Redis at {result.get('endpoint')}: {', '.join(missing)}.")
    return problems


def run_option_problems(given: Mapping[str, Any] | None, pipeline: Any = None, host: Any = None) -> list[str]:
    """Problems with the options given to the run (`{name: value}`, only those set by the
    operator: inventory, play or extra vars), one sentence each; stage names are checked
    against `pipeline.stages`; `host` (the inventory hostname) names a directory on the
    controller."""
    stage_list = pipeline.get("stages") if isinstance(pipeline, Mapping) else None
    stages = [
        str(stage.get("name"))
        for stage in (stage_list if isinstance(stage_list, list) else [])
        if isinstance(stage, Mapping) and stage.get("name")
    ]
    problems: list[str] = []
    for name, value in (given or {}).items():
        spec = RUN_OPTIONS.get(name) or (("internal",) if name in INTERNAL else None)
        if spec is None:
            continue
        problem = _option_problem(name, value, spec, stages)
        if problem:
            problems.append(problem)
    if host is not None and (
        not isinstance(host, str) or host in ("", ".", "..") or "/" in host or "\0" in host
    ):
        problems.append(
            f"inventory_hostname {host!r} cannot name the run's directory on the controller: "
            "use a host name without '/' that is not '.' or '..'."
        )
    return problems


class FilterModule:
    """The run's options, paths, lock and run id."""

    def filters(self) -> dict[str, Any]:
        return {
            "run_option_problems": run_option_problems,
            "run_option_names": run_option_names,
            "missing_unit_problems": missing_unit_problems,
            "target_problems": target_problems,
            "pipeline_guard_problems": pipeline_guard_problems,
            "path_problem": path_problem,
            "is_under": is_under,
            "is_run_id": is_run_id,
        }
