# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# One read of a pipeline (its streams, groups and consumers, its governor, its systemd units),
# shared by pipeline_snapshot (one read) and pipeline_restart (one read per poll, on one
# connection).
from __future__ import annotations

import shutil
import time
import traceback
from typing import Any

from ansible_collections.quantum.redis_streams.plugins.module_utils.governor import Governor, governor_spec
from ansible_collections.quantum.redis_streams.plugins.module_utils.redis_connection import (
    describe_endpoint,
    explain_redis_error,
    redis_client,
)
from ansible_collections.quantum.redis_streams.plugins.module_utils.stream_info import (
    StreamInfo,
    WrongType,
    module_connection_and_scan_limit,
    requested_from_pipeline,
)
from ansible_collections.quantum.redis_streams.plugins.module_utils.units import (
    boot_time_s,
    parse_systemctl_show,
    systemctl_show_argv,
    unit_state,
)


def governor_problem(governor: Any) -> tuple[dict[str, Any] | None, str | None]:
    """pipeline.governor with redis_governor's defaults filled in, or a sentence saying what is wrong."""
    if not isinstance(governor, dict):
        return None, f"pipeline.governor must be a dictionary, got {type(governor).__name__}."
    options = governor_spec()["options"]
    filled: dict[str, Any] = {}
    for name, option in options.items():
        value = governor.get(name, option.get("default"))
        if value in (None, ""):
            return None, f"pipeline.governor.{name} is missing: the governor cannot be read without it."
        filled[name] = str(value)
    return filled, None


def stage_units(pipeline: dict[str, Any]) -> list[str]:
    """Each stage's unit, once, in the pipeline's order."""
    return list(dict.fromkeys(str(stage["unit"]) for stage in pipeline["stages"] if stage.get("unit")))


def read_units(module: Any, units: list[str], systemctl: str) -> dict[str, dict[str, Any]]:
    """The state of each unit (one `systemctl show`, then /proc), or the module fails."""
    if not units:
        return {}
    if "/" not in systemctl and shutil.which(systemctl) is None:
        module.fail_json(msg=f"{systemctl} is not on the target's PATH: set units=false to read Redis only.")
    rc, out, err = module.run_command(systemctl_show_argv(systemctl, units))
    if rc != 0:
        module.fail_json(
            msg=f"systemctl show failed on the target (rc {rc}: {err.strip() or out.strip()}): "
            "the units cannot be read (units=false reads Redis only)."
        )
    try:
        shown = parse_systemctl_show(out, units)
    except ValueError as exc:
        module.fail_json(msg=f"Could not read the units: {exc}.")
    boot_s = boot_time_s()
    return {unit: unit_state(shown[unit], boot_s) for unit in units}


class PipelineReader:
    """Reads the pipeline of the module's `pipeline` option (`connection`, `pending_scan_limit`,
    `systemctl` too); every problem with them fails the module before Redis is contacted."""

    def __init__(self, module: Any, governor: bool = True) -> None:
        self.module = module
        params = module.params
        self.pipeline = params["pipeline"]
        self.systemctl = params["systemctl"]
        self.connection, self.scan_limit = module_connection_and_scan_limit(module)
        self.requested, problem = requested_from_pipeline(self.pipeline)
        if problem:
            module.fail_json(msg=problem)
        self.governor_options = None
        if governor and self.pipeline.get("governor") is not None:
            self.governor_options, problem = governor_problem(self.pipeline["governor"])
            if problem:
                module.fail_json(msg=problem)
        self.client: Any = None

    def _read_streams(self) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        if self.client is None:
            self.client = redis_client(self.module, self.connection)
        info = StreamInfo(self.client, self.requested, self.scan_limit)
        try:
            info.collect()
        except WrongType as exc:
            self.module.fail_json(msg=str(exc))
        except Exception as exc:  # every server or client failure becomes one sentence
            self.module.fail_json(
                msg=explain_redis_error(exc, self.connection, "reading the streams"),
                exception=traceback.format_exc(),
            )
        return info.server, info.streams, info.missing

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def read_governor(self) -> dict[str, Any] | None:
        """The governor's state (None without one); today's results are counted only when the
        counter is above its limit."""
        if self.governor_options is None:
            return None
        if self.client is None:
            self.client = redis_client(self.module, self.connection)
        counter = Governor(self.module, self.client, spec=self.governor_options, connection=self.connection)
        state = counter.state()
        if state["over_limit"]:
            counter.count()
        state.update(results_today=counter.results_today, counted_stream_exists=counter.counted_stream_exists)
        return state

    def read(
        self, units: list[str] | None = None, governor: bool = True, redis: bool = True
    ) -> dict[str, Any]:
        """One snapshot, as pipeline_snapshot returns it. `units` defaults to every stage's unit;
        without `redis`, the units alone (no server, streams or governor: Redis is not
        contacted). The connection stays open for the next read (close() ends it)."""
        started = time.perf_counter()
        server: dict[str, Any] | None = None
        streams: dict[str, Any] = {}
        missing: list[str] = []
        if redis:
            server, streams, missing = self._read_streams()
        governor_state = self.read_governor() if redis and governor else None
        wanted = stage_units(self.pipeline) if units is None else units
        return {
            "endpoint": describe_endpoint(self.connection),
            "server": server,
            "streams": streams,
            "missing": missing,
            "governor": governor_state,
            "units": read_units(self.module, wanted, self.systemctl),
            "target_time_ms": int(time.time() * 1000),
            "elapsed_ms": int((time.perf_counter() - started) * 1000),
        }
