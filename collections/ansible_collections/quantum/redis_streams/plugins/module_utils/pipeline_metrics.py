# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# A pipeline's snapshot (module_utils/snapshot.py) as metrics in node_exporter's textfile format:
# what Debian's prometheus-redis-exporter (1.45, --check-streams) does not give - ages from the
# server's clock and the entry ids, the pipeline's stage names, the governor, the units down to
# the kernel's process state - and the daily report. Pure functions: the module
# pipeline_metrics reads and writes, the unit tests call these directly. docs/metrics.md
# documents every metric.
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible_collections.quantum.redis_streams.plugins.module_utils.textfile import Sample, render

# name: help, in the order they are written (every one a gauge).
PIPELINE_METRICS: dict[str, str] = {
    "quantum_pipeline_snapshot_timestamp_seconds": "When the pipeline was last read (Unix time).",
    "quantum_pipeline_snapshot_ok": "1 when the last read of the pipeline was complete, else 0.",
    "quantum_pipeline_snapshot_duration_seconds": "How long the last read took.",
    "quantum_pipeline_group_exists": "1 when the stage's consumer group exists on its input stream.",
    "quantum_pipeline_group_lag": "Entries of the input stream not yet delivered to the group.",
    "quantum_pipeline_group_lag_seconds": "Age of the oldest undelivered entry; 0 if none.",
    "quantum_pipeline_group_pending": "Entries delivered to the group and not acknowledged.",
    "quantum_pipeline_group_oldest_pending_age_seconds": "Age of its oldest pending entry; 0 if none.",
    "quantum_pipeline_group_max_deliveries": "Highest delivery count among the pending entries read.",
    "quantum_pipeline_consumer_pending": "Entries delivered to the consumer and not acknowledged.",
    "quantum_pipeline_consumer_idle_seconds": "Seconds since the consumer's last attempt to read.",
    "quantum_pipeline_consumer_inactive_seconds": "Seconds since its last successful read (7.2+).",
    "quantum_pipeline_consumer_oldest_pending_age_seconds": "Age (entry id) of its oldest pending entry.",
    "quantum_pipeline_consumer_oldest_pending_idle_seconds": "Since its oldest pending entry was delivered.",
    "quantum_pipeline_consumer_oldest_pending_deliveries": "Delivery count of its oldest pending entry.",
    "quantum_pipeline_governor_used": "The governor's count today: how much of the limit is used.",
    "quantum_pipeline_governor_limit": "The governor's daily limit.",
    "quantum_pipeline_governor_used_ratio": "Today's count over the daily limit.",
    "quantum_pipeline_governor_blocked": "1 when today's count is at or over the limit.",
    "quantum_pipeline_unit_active": "1 when the stage's systemd unit is active.",
    "quantum_pipeline_unit_process_stopped": "1 when the unit's main process is stopped (T).",
    "quantum_pipeline_unit_restarts": "Restarts systemd made by the unit's Restart= policy (NRestarts).",
    "quantum_pipeline_stage_output_entries_today": "Entries the stage wrote to its output today (UTC).",
    "quantum_pipeline_trades_executed_today": "Entries of the result stream today (UTC): trades executed.",
}


def _seconds(ms: Any) -> float:
    return round(float(ms) / 1000, 3)


def result_stream(pipeline: Mapping[str, Any]) -> str | None:
    """The stream whose entries are the trades executed: the governor's counted stream, else the
    last stage's output stream."""
    governor = pipeline.get("governor")
    if isinstance(governor, Mapping) and governor.get("counted_stream"):
        return str(governor["counted_stream"])
    outputs = [str(s["output_stream"]) for s in pipeline.get("stages") or [] if s.get("output_stream")]
    return outputs[-1] if outputs else None


def daily_streams(pipeline: Mapping[str, Any]) -> list[str]:
    """Every stream the daily report counts, once: each stage's output and the result stream."""
    wanted = [str(s["output_stream"]) for s in pipeline["stages"] if s.get("output_stream")]
    result = result_stream(pipeline)
    if result:
        wanted.append(result)
    return list(dict.fromkeys(wanted))


def daily_report(pipeline: Mapping[str, Any], day: str, counts: Mapping[str, int]) -> dict[str, Any]:
    """Today's entries per stage (its output stream) and the trades executed, from `counts`
    ({stream: entries today})."""
    stages = {
        str(stage["name"]): {
            "stream": str(stage["output_stream"]),
            "entries": counts[str(stage["output_stream"])],
        }
        for stage in pipeline["stages"]
        if stage.get("output_stream") and str(stage["output_stream"]) in counts
    }
    result = result_stream(pipeline)
    return {
        "day": day,
        "stages": stages,
        "result_stream": result,
        "trades_executed": counts.get(result) if result else None,
    }


def _group_samples(base: dict[str, Any], group: Mapping[str, Any], samples: dict[str, list[Sample]]) -> None:
    samples["quantum_pipeline_group_exists"].append((base, int(bool(group.get("exists")))))
    if not group.get("exists"):
        return
    if group.get("lag") is not None:
        samples["quantum_pipeline_group_lag"].append((base, group["lag"]))
    # No undelivered entry (or one not found): nothing waits.
    samples["quantum_pipeline_group_lag_seconds"].append(
        (base, _seconds(group.get("oldest_undelivered_age_ms") or 0))
    )
    samples["quantum_pipeline_group_pending"].append((base, group.get("pending") or 0))
    consumers: Mapping[str, Any] = group.get("consumers") or {}
    ages = [
        c["oldest_pending_age_ms"] for c in consumers.values() if c.get("oldest_pending_age_ms") is not None
    ]
    samples["quantum_pipeline_group_oldest_pending_age_seconds"].append(
        (base, _seconds(max(ages, default=0)))
    )
    samples["quantum_pipeline_group_max_deliveries"].append(
        (base, max((c.get("max_delivery_count") or 0 for c in consumers.values()), default=0))
    )
    for name, consumer in consumers.items():
        labels = {**base, "consumer": name}
        samples["quantum_pipeline_consumer_pending"].append((labels, consumer["pending"]))
        samples["quantum_pipeline_consumer_idle_seconds"].append((labels, _seconds(consumer["idle_ms"])))
        if consumer.get("inactive_ms") is not None:
            samples["quantum_pipeline_consumer_inactive_seconds"].append(
                (labels, _seconds(consumer["inactive_ms"]))
            )
        # Only for a consumer holding entries: a series that ends when the entries are acknowledged.
        if consumer.get("oldest_pending_id") is not None:
            samples["quantum_pipeline_consumer_oldest_pending_age_seconds"].append(
                (labels, _seconds(consumer["oldest_pending_age_ms"]))
            )
            samples["quantum_pipeline_consumer_oldest_pending_idle_seconds"].append(
                (labels, _seconds(consumer["oldest_pending_idle_ms"]))
            )
            samples["quantum_pipeline_consumer_oldest_pending_deliveries"].append(
                (labels, consumer["oldest_pending_deliveries"])
            )


def pipeline_metrics(
    pipeline: Mapping[str, Any],
    snapshot: Mapping[str, Any] | None,
    now_s: float,
    duration_s: float,
    daily: Mapping[str, Any] | None = None,
) -> str:
    """The pipeline's metrics in node_exporter's textfile format. `snapshot` is one read
    (module_utils/snapshot.py's shape), None when the read failed: then only the read's own
    metrics are written (snapshot_ok 0), so that no stale figure stands for the present."""
    name = str(pipeline["name"])
    top = {"pipeline": name}
    samples: dict[str, list[Sample]] = {metric: [] for metric in PIPELINE_METRICS}
    samples["quantum_pipeline_snapshot_timestamp_seconds"].append((top, round(now_s, 3)))
    samples["quantum_pipeline_snapshot_ok"].append((top, int(snapshot is not None)))
    samples["quantum_pipeline_snapshot_duration_seconds"].append((top, round(duration_s, 3)))
    if snapshot is None:
        return render(PIPELINE_METRICS, samples)

    streams: Mapping[str, Any] = snapshot.get("streams") or {}
    units: Mapping[str, Any] = snapshot.get("units") or {}
    for stage in pipeline["stages"]:
        stage_name = str(stage["name"])
        if stage.get("input_stream") and stage.get("group"):
            stream, group = str(stage["input_stream"]), str(stage["group"])
            state = (streams.get(stream) or {}).get("groups", {}).get(group) or {"exists": False}
            _group_samples({**top, "stage": stage_name, "stream": stream, "group": group}, state, samples)
        unit = units.get(str(stage.get("unit") or ""))
        if unit is not None:
            labels = {**top, "stage": stage_name, "unit": str(stage["unit"])}
            samples["quantum_pipeline_unit_active"].append(
                (labels, int(unit.get("active_state") == "active"))
            )
            samples["quantum_pipeline_unit_process_stopped"].append(
                (labels, int(bool(unit.get("process_stopped"))))
            )
            if unit.get("n_restarts") is not None:
                samples["quantum_pipeline_unit_restarts"].append((labels, unit["n_restarts"]))

    governor = snapshot.get("governor")
    if governor and governor.get("exists") and governor.get("limit") is not None:
        labels = {**top, "key": governor["key"]}
        # A counter dated another day counts nothing: the governor starts a new day itself.
        count = (governor.get("count") or 0) if governor.get("dated_today") else 0
        limit = governor["limit"]
        samples["quantum_pipeline_governor_used"].append((labels, count))
        samples["quantum_pipeline_governor_limit"].append((labels, limit))
        samples["quantum_pipeline_governor_used_ratio"].append(
            (labels, round(count / limit, 4) if limit > 0 else 1.0)
        )
        samples["quantum_pipeline_governor_blocked"].append((labels, int(bool(governor.get("blocked")))))

    if daily:
        for stage_name, figures in daily["stages"].items():
            samples["quantum_pipeline_stage_output_entries_today"].append(
                ({**top, "stage": stage_name, "stream": figures["stream"]}, figures["entries"])
            )
        if daily.get("trades_executed") is not None:
            samples["quantum_pipeline_trades_executed_today"].append(
                ({**top, "stream": daily["result_stream"]}, daily["trades_executed"])
            )
    return render(PIPELINE_METRICS, samples)
