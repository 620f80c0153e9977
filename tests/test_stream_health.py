"""Unit tests of filter_plugins/stream_health.py: pure functions on dicts shaped like
`redis_stream_info` results (docs/interfaces.md), no Redis needed; and once through the real
`ansible` command, to prove the filters load from ansible.cfg and work in Jinja."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT / "filter_plugins"))

import stream_health as sh  # noqa: E402

PIPELINE = yaml.safe_load(
    (PROJECT_ROOT / "inventory/testnet/group_vars/all/pipeline.yml").read_text()
)["pipeline"]
DECISION = "quantum:stream:ai.decision"
INTENT = "quantum:stream:trade.intent"
RESULT = "quantum:stream:trade.result"
UNITS = {
    "ai_engine": "quantum-ai-engine",
    "router": "quantum-ai-strategy-router",
    "execution": "quantum-execution",
}

T0 = 1_790_000_000_000
WINDOW = 60_000
SEED_IDLE = 11_776_068
HOUR = 3_600_000


# ---------------------------------------------------------------------------------------
# builders: realistic module results


def eid(ms: int, seq: int = 0) -> str:
    return f"{ms}-{seq}"


def consumer(
    pending: int = 0,
    idle_ms: int = 50,
    *,
    now: int = T0,
    oldest_age_ms: int | None = None,
    inactive_ms: int | None = None,
    max_delivery: int = 1,
) -> dict:
    """A consumer as the module reports it; its oldest pending entry is `oldest_age_ms` old."""
    if pending and oldest_age_ms is None:
        oldest_age_ms = idle_ms
    oldest_id = eid(now - oldest_age_ms) if pending else None
    return {
        "pending": pending,
        "idle_ms": idle_ms,
        "inactive_ms": inactive_ms,
        "oldest_pending_id": oldest_id,
        "oldest_pending_age_ms": oldest_age_ms if pending else None,
        "oldest_pending_idle_ms": idle_ms if pending else None,
        "oldest_pending_deliveries": max_delivery if pending else None,
        "max_delivery_count": max_delivery if pending else 0,
        "max_delivery_count_exact": True,
    }


def group(
    *, entries_read: int | None, lag: int | None, last_delivered_id: str, consumers: dict
) -> dict:
    return {
        "exists": True,
        "consumer_count": len(consumers),
        "pending": sum(c["pending"] for c in consumers.values()),
        "last_delivered_id": last_delivered_id,
        "entries_read": entries_read,
        "lag": lag,
        "consumers": consumers,
    }


def stream(*, length: int, last_ms: int, groups: dict | None = None) -> dict:
    return {
        "exists": True,
        "length": length,
        "first_entry_id": eid(T0 - 30 * 86_400_000),
        "last_entry_id": eid(last_ms),
        "entries_added": length,
        "groups": groups or {},
    }


def snapshot(now: int, streams: dict) -> dict:
    return {"server": {"version": "7.0.15", "time_ms": now}, "streams": streams, "missing": []}


def pipeline_state(
    now: int,
    *,
    decision: int = 10021,
    intent: int = 10002,
    result: int = 10005,
    decision_last_ms: int = T0 - 4 * HOUR,
    intent_last_ms: int = T0 - 4 * HOUR,
    result_last_ms: int = T0 - 4 * HOUR,
    router: dict | None = None,
    execution: dict | None = None,
    router_read: int | None = None,
    execution_read: int | None = None,
    router_lag: int | None = 0,
    execution_lag: int | None = 0,
    router_delivered_ms: int | None = None,
    execution_delivered_ms: int | None = None,
) -> dict:
    """The three streams of the Quantum Trader pipeline at server time `now`. Defaults: a
    caught-up pipeline whose last entries are 4 h old."""
    router = {"router-1": consumer(0, 10, now=now)} if router is None else router
    execution = {"execution-1": consumer(0, 10, now=now)} if execution is None else execution
    return snapshot(
        now,
        {
            DECISION: stream(
                length=decision,
                last_ms=decision_last_ms,
                groups={
                    "router": group(
                        entries_read=decision if router_read is None else router_read,
                        lag=router_lag,
                        last_delivered_id=eid(router_delivered_ms or decision_last_ms),
                        consumers=router,
                    )
                },
            ),
            INTENT: stream(
                length=intent,
                last_ms=intent_last_ms,
                groups={
                    "execution": group(
                        entries_read=intent if execution_read is None else execution_read,
                        lag=execution_lag,
                        last_delivered_id=eid(execution_delivered_ms or intent_last_ms),
                        consumers=execution,
                    )
                },
            ),
            RESULT: stream(length=result, last_ms=result_last_ms),
        },
    )


def services(**overrides: dict) -> dict:
    states = {
        unit: {"active_state": "active", "sub_state": "running", "main_pid": 1000 + i}
        for i, unit in enumerate(UNITS.values())
    }
    for unit, state in overrides.items():
        states[unit.replace("_", "-")].update(state)
    return states


GOVERNOR_OK = {
    "exists": True,
    "date": "2026-01-17",
    "count": 12,
    "limit": 200,
    "today": "2026-01-17",
    "over_limit": False,
    "at_limit": False,
}
GOVERNOR_POISONED = {
    "exists": True,
    "date": "2026-01-17",
    "count": 10000,
    "limit": 200,
    "today": "2026-01-17",
    "over_limit": True,
    "at_limit": False,
}


def seed_incident() -> tuple[dict, dict]:
    """The seed: router-1 died holding 3 entries (idle 11,776,068 ms), lengths flat, the
    governor poisoned at 10000 against 200."""
    before = pipeline_state(
        T0,
        router={"router-1": consumer(3, SEED_IDLE, now=T0, oldest_age_ms=SEED_IDLE + 400)},
        execution={"execution-1": consumer(0, SEED_IDLE - 2000, now=T0)},
    )
    t1 = T0 + WINDOW
    after = pipeline_state(
        t1,
        router={
            "router-1": consumer(
                3, SEED_IDLE + WINDOW, now=t1, oldest_age_ms=SEED_IDLE + 400 + WINDOW
            )
        },
        execution={"execution-1": consumer(0, SEED_IDLE - 2000 + WINDOW, now=t1)},
    )
    return before, after


def verdicts_of(result: dict) -> dict:
    return {name: v["verdict"] for name, v in result.items()}


# ---------------------------------------------------------------------------------------
# human_ms


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (11_776_068, "3h 16m"),
        (999, "999 ms"),
        (61_000, "1m 1s"),
        (None, "unknown"),
        (0, "0 ms"),
        (1_000, "1s"),
        (60_000, "1m"),
        (HOUR, "1h"),
        (HOUR + 5_000, "1h"),
        (90_061_000, "1d 1h"),
        ("1500", "1s"),
        (-61_000, "-1m 1s"),
    ],
)
def test_human_ms(ms, text):
    assert sh.human_ms(ms) == text


def test_human_ms_rejects_text():
    with pytest.raises(Exception, match="milliseconds"):
        sh.human_ms("soon")


# ---------------------------------------------------------------------------------------
# stream_deltas


def test_deltas_of_a_growing_stream():
    before = pipeline_state(T0, decision=100, decision_last_ms=T0 - 10, router_read=100)
    after = pipeline_state(
        T0 + WINDOW,
        decision=130,
        decision_last_ms=T0 + WINDOW - 5,
        router_read=128,
        router_lag=2,
        router={"router-1": consumer(1, 3, now=T0 + WINDOW)},
    )
    deltas = sh.stream_deltas(before, after)
    assert deltas["window_ms"] == WINDOW
    decision = deltas["streams"][DECISION]
    assert decision["length_delta"] == 30
    assert decision["entries_added_delta"] == 30
    assert decision["last_entry_id_changed"] is True
    assert decision["grew"] is True
    router = decision["groups"]["router"]
    assert router["entries_read_delta"] == 28
    assert (router["lag_before"], router["lag_after"]) == (0, 2)
    assert router["pending_delta"] == 1
    assert router["last_delivered_id_advanced"] is True
    live = router["consumers"]["router-1"]
    assert live["pending_before"] == 0 and live["pending_after"] == 1 and live["pending_delta"] == 1
    assert live["idle_ms_after"] == 3
    assert live["advanced"] is True and live["interacted"] is True
    assert live["present_before"] and live["present_after"]
    assert deltas["streams"][RESULT]["grew"] is False


def test_deltas_keep_unknown_as_null():
    before = pipeline_state(T0, router_read=None, router_lag=None)
    after = pipeline_state(T0 + WINDOW, router_lag=None)
    before["streams"][DECISION]["groups"]["router"]["entries_read"] = None
    router = sh.stream_deltas(before, after)["streams"][DECISION]["groups"]["router"]
    assert router["entries_read_delta"] is None
    assert router["lag_before"] is None and router["lag_after"] is None
    assert router["lag_delta"] is None


def test_deltas_window_unknown_without_server_time():
    before, after = seed_incident()
    del before["server"]["time_ms"]
    assert sh.stream_deltas(before, after)["window_ms"] is None


def test_a_consumer_left_alone_does_not_advance():
    before, after = seed_incident()
    live = sh.stream_deltas(before, after)["streams"][DECISION]["groups"]["router"]["consumers"][
        "router-1"
    ]
    assert live["interacted"] is False
    assert live["advanced"] is False
    assert live["pending_delta"] == 0


def test_a_consumer_whose_idle_reset_advanced():
    before = pipeline_state(T0, router={"router-1": consumer(0, 40_000, now=T0)})
    after = pipeline_state(T0 + WINDOW, router={"router-1": consumer(0, 2_000, now=T0 + WINDOW)})
    live = sh.stream_deltas(before, after)["streams"][DECISION]["groups"]["router"]["consumers"][
        "router-1"
    ]
    assert live["advanced"] is True


def test_a_changed_pel_counts_as_advanced_even_with_idle_growing():
    # XACK does not reset idle: a PEL that shrank means someone acted for that consumer.
    before = pipeline_state(T0, router={"router-1": consumer(3, 5 * HOUR, now=T0)})
    after = pipeline_state(
        T0 + WINDOW, router={"router-1": consumer(1, 5 * HOUR + WINDOW, now=T0 + WINDOW)}
    )
    live = sh.stream_deltas(before, after)["streams"][DECISION]["groups"]["router"]["consumers"][
        "router-1"
    ]
    assert live["interacted"] is False
    assert live["advanced"] is True


def test_consumers_appearing_and_vanishing():
    before = pipeline_state(T0, router={"router-1": consumer(), "old": consumer(0, HOUR)})
    after = pipeline_state(T0 + WINDOW, router={"router-1": consumer(), "new": consumer(1, 5)})
    consumers = sh.stream_deltas(before, after)["streams"][DECISION]["groups"]["router"][
        "consumers"
    ]
    assert consumers["old"]["present_before"] and not consumers["old"]["present_after"]
    assert consumers["old"]["advanced"] is False
    assert not consumers["new"]["present_before"] and consumers["new"]["present_after"]
    assert consumers["new"]["advanced"] is True
    assert consumers["new"]["pending_delta"] is None


# ---------------------------------------------------------------------------------------
# the seed incident


def test_seed_incident_verdicts():
    before, after = seed_incident()
    verdicts = sh.stage_verdicts(
        before, after, PIPELINE, services=services(), governor=GOVERNOR_POISONED
    )
    assert verdicts_of(verdicts) == {"ai_engine": "BLOCKED", "router": "STALLED", "execution": "OK"}

    producer = verdicts["ai_engine"]
    assert "trades_today=10000" in producer["reason"] and "daily_limit=200" in producer["reason"]
    assert "over its limit" in producer["reason"]
    assert producer["needs_restart"] is False
    assert producer["governor"]["count"] == 10000

    router = verdicts["router"]
    assert router["needs_restart"] is True
    assert router["unit"] == "quantum-ai-strategy-router"
    assert (router["input_stream"], router["group"], router["consumer"]) == (
        DECISION,
        "router",
        "router-1",
    )
    assert router["lag"] == 0 and router["pending"] == 3 and router["consumer_pending"] == 3
    assert router["consumer_idle_ms"] == SEED_IDLE + WINDOW
    assert router["entries_read_delta"] == 0
    assert router["dead_consumers"] == []
    assert "3 entries pending on router-1" in router["reason"]
    assert "has not read for 3h 17m" in router["reason"]
    assert "entries-read did not move" in router["reason"]

    execution = verdicts["execution"]
    assert execution["needs_restart"] is False
    assert execution["reason"].startswith("quiet")


def test_seed_incident_stop_point_layers_and_restart_order():
    before, after = seed_incident()
    verdicts = sh.stage_verdicts(
        before, after, PIPELINE, services=services(), governor=GOVERNOR_POISONED
    )
    stop = sh.stop_point(verdicts, PIPELINE)
    assert stop == {
        "stage": "ai_engine",
        "verdict": "BLOCKED",
        "reason": verdicts["ai_engine"]["reason"],
    }
    assert sh.pipeline_layers(verdicts, PIPELINE) == {
        "stuck_consumers": ["router"],
        "restart_behind": ["execution"],
        "blocked_producer": "ai_engine",
    }
    assert sh.restart_order(PIPELINE, ["router"]) == [
        "quantum-execution",
        "quantum-ai-strategy-router",
    ]
    assert sh.restart_order(PIPELINE, verdicts) == [
        "quantum-execution",
        "quantum-ai-strategy-router",
    ]


def test_seed_router_with_the_governor_healed_is_the_stop_point():
    before, after = seed_incident()
    verdicts = sh.stage_verdicts(before, after, PIPELINE, services=services(), governor=GOVERNOR_OK)
    assert verdicts_of(verdicts) == {"ai_engine": "OK", "router": "STALLED", "execution": "OK"}
    assert sh.stop_point(verdicts, PIPELINE)["stage"] == "router"
    assert sh.pipeline_layers(verdicts, PIPELINE)["blocked_producer"] is None


# ---------------------------------------------------------------------------------------
# healthy pipelines


def test_quiet_healthy_pipeline_is_not_flagged():
    hours = 5 * HOUR
    before = pipeline_state(
        T0,
        router={"router-1": consumer(0, hours, now=T0)},
        execution={"execution-1": consumer(0, hours, now=T0)},
    )
    after = pipeline_state(
        T0 + WINDOW,
        router={"router-1": consumer(0, hours + WINDOW, now=T0 + WINDOW)},
        execution={"execution-1": consumer(0, hours + WINDOW, now=T0 + WINDOW)},
    )
    verdicts = sh.stage_verdicts(before, after, PIPELINE, services=services(), governor=GOVERNOR_OK)
    assert set(verdicts_of(verdicts).values()) == {"OK"}
    assert not any(v["needs_restart"] or v["dead_consumers"] for v in verdicts.values())
    assert "normal on a quiet stream" in verdicts["router"]["reason"]
    assert sh.stop_point(verdicts, PIPELINE) == {
        "stage": None,
        "verdict": "OK",
        "reason": "every stage is OK",
    }
    assert sh.pipeline_layers(verdicts, PIPELINE) == {
        "stuck_consumers": [],
        "restart_behind": [],
        "blocked_producer": None,
    }
    assert sh.restart_order(PIPELINE, verdicts) == []


def busy_pair(extra_router_after: dict | None = None) -> tuple[dict, dict]:
    t1 = T0 + WINDOW
    before = pipeline_state(
        T0,
        decision=5000,
        intent=4990,
        result=4985,
        decision_last_ms=T0 - 20,
        intent_last_ms=T0 - 30,
        result_last_ms=T0 - 40,
        router={"router-1": consumer(1, 15, now=T0, oldest_age_ms=20)},
        execution={"execution-1": consumer(2, 25, now=T0, oldest_age_ms=30)},
    )
    router_after = {
        "router-1": consumer(1, 12, now=t1, oldest_age_ms=14),
        **(extra_router_after or {}),
    }
    after = pipeline_state(
        t1,
        decision=5600,
        intent=5588,
        result=5580,
        decision_last_ms=t1 - 14,
        intent_last_ms=t1 - 22,
        result_last_ms=t1 - 35,
        router=router_after,
        execution={"execution-1": consumer(1, 20, now=t1, oldest_age_ms=22)},
    )
    return before, after


def test_busy_healthy_pipeline_is_ok():
    before, after = busy_pair()
    verdicts = sh.stage_verdicts(before, after, PIPELINE, services=services(), governor=GOVERNOR_OK)
    assert set(verdicts_of(verdicts).values()) == {"OK"}
    assert verdicts["ai_engine"]["output_grew"] and verdicts["ai_engine"]["output_added"] == 600
    assert verdicts["router"]["entries_read_delta"] == 600
    assert verdicts["router"]["reason"].startswith("flowing")
    assert sh.stop_point(verdicts, PIPELINE)["stage"] is None


def test_producer_output_growing_is_ok_even_over_the_governor_limit():
    before, after = busy_pair()
    verdicts = sh.stage_verdicts(before, after, PIPELINE, governor=GOVERNOR_POISONED)
    assert verdicts["ai_engine"]["verdict"] == "OK"


def test_governor_at_limit_blocks_a_quiet_producer():
    before, after = seed_incident()
    at_limit = {**GOVERNOR_OK, "count": 200, "at_limit": True}
    producer = sh.stage_verdicts(before, after, PIPELINE, governor=at_limit)["ai_engine"]
    assert producer["verdict"] == "BLOCKED"
    assert "is at its limit daily_limit=200" in producer["reason"]


def test_quiet_producer_without_governor_is_ok():
    before, after = seed_incident()
    producer = sh.stage_verdicts(before, after, PIPELINE)["ai_engine"]
    assert producer["verdict"] == "OK"
    assert producer["reason"].startswith("quiet")


# ---------------------------------------------------------------------------------------
# lagging and stalled consumers


def test_lagging_consumer_reads_but_falls_behind():
    t1 = T0 + WINDOW
    before = pipeline_state(
        T0,
        decision=9000,
        decision_last_ms=T0 - 5,
        router_read=8700,
        router_lag=300,
        router_delivered_ms=T0 - 40_000,
        router={"router-1": consumer(5, 8, now=T0)},
    )
    after = pipeline_state(
        t1,
        decision=10000,
        decision_last_ms=t1 - 5,
        router_read=9500,
        router_lag=500,
        router_delivered_ms=t1 - 45_000,
        router={"router-1": consumer(5, 9, now=t1)},
    )
    router = sh.stage_verdicts(before, after, PIPELINE)["router"]
    assert router["verdict"] == "LAGGING"
    assert router["needs_restart"] is False
    assert "lag 500 (was 300, growing)" in router["reason"]
    assert "read 800 entries" in router["reason"]


def test_lag_tolerance_lets_a_busy_reader_count_as_caught_up():
    before, after = busy_pair()
    after["streams"][DECISION]["groups"]["router"]["lag"] = 3
    assert sh.stage_verdicts(before, after, PIPELINE)["router"]["verdict"] == "LAGGING"
    assert sh.stage_verdicts(before, after, PIPELINE, lag_tolerance=5)["router"]["verdict"] == "OK"


def test_stalled_with_lag_and_idle_consumer():
    t1 = T0 + WINDOW
    before = pipeline_state(
        T0,
        decision=10100,
        decision_last_ms=T0 - 10,
        router_read=10021,
        router_lag=79,
        router_delivered_ms=T0 - HOUR,
        router={"router-1": consumer(0, HOUR, now=T0)},
    )
    after = pipeline_state(
        t1,
        decision=10180,
        decision_last_ms=t1 - 10,
        router_read=10021,
        router_lag=159,
        router_delivered_ms=T0 - HOUR,
        router={"router-1": consumer(0, HOUR + WINDOW, now=t1)},
    )
    router = sh.stage_verdicts(before, after, PIPELINE)["router"]
    assert router["verdict"] == "STALLED"
    assert "lag 159 (was 79, growing)" in router["reason"]


def test_null_lag_with_pending_and_idle_consumer_is_stalled():
    before, after = seed_incident()
    for snap in (before, after):
        snap["streams"][DECISION]["groups"]["router"]["lag"] = None
        snap["streams"][DECISION]["groups"]["router"]["entries_read"] = None
    router = sh.stage_verdicts(before, after, PIPELINE, governor=GOVERNOR_OK)["router"]
    assert router["lag"] is None  # unknown stays unknown, never 0
    assert router["verdict"] == "STALLED"
    assert "lag unknown" in router["reason"]
    assert "last delivered id did not move" not in router["reason"]  # reason speaks of entries-read
    assert router["entries_read_delta"] is None


def test_null_lag_with_pending_but_reading_is_ok():
    before, after = busy_pair()
    for snap in (before, after):
        snap["streams"][DECISION]["groups"]["router"]["lag"] = None
        snap["streams"][DECISION]["groups"]["router"]["entries_read"] = None
    after["streams"][DECISION]["groups"]["router"]["last_delivered_id"] = after["streams"][
        DECISION
    ]["last_entry_id"]
    before["streams"][DECISION]["groups"]["router"]["last_delivered_id"] = eid(T0 - 30)
    router = sh.stage_verdicts(before, after, PIPELINE)["router"]
    assert router["verdict"] == "OK", router["reason"]


def test_null_lag_with_undelivered_entries_and_dead_reader_is_stalled():
    # No pending, lag unknown, but the last delivered id is behind the newest entry.
    before = pipeline_state(
        T0,
        decision_last_ms=T0 - 100,
        router_lag=None,
        router_read=None,
        router_delivered_ms=T0 - HOUR,
        router={"router-1": consumer(0, HOUR, now=T0)},
    )
    after = pipeline_state(
        T0 + WINDOW,
        decision_last_ms=T0 - 100,
        router_lag=None,
        router_read=None,
        router_delivered_ms=T0 - HOUR,
        router={"router-1": consumer(0, HOUR + WINDOW, now=T0 + WINDOW)},
    )
    for snap in (before, after):
        snap["streams"][DECISION]["groups"]["router"]["entries_read"] = None
    assert sh.stage_verdicts(before, after, PIPELINE)["router"]["verdict"] == "STALLED"


def test_reader_that_never_acknowledges_is_stalled():
    # Reads new entries (idle stays small) but its oldest pending entry never leaves the PEL.
    t1 = T0 + WINDOW
    old = T0 - 2 * HOUR
    live_before = consumer(40, 5, now=T0, oldest_age_ms=T0 - old)
    live_after = consumer(70, 5, now=t1, oldest_age_ms=t1 - old)
    before, after = busy_pair()
    before["streams"][DECISION]["groups"]["router"]["consumers"]["router-1"] = live_before
    after["streams"][DECISION]["groups"]["router"]["consumers"]["router-1"] = live_after
    router = sh.stage_verdicts(before, after, PIPELINE)["router"]
    assert router["verdict"] == "STALLED"
    assert "does not finish old ones" in router["reason"]
    assert router["needs_restart"] is True


def test_short_window_with_recent_reader_is_lagging_not_stalled():
    t1 = T0 + 2_000
    before = pipeline_state(
        T0,
        decision=10100,
        decision_last_ms=T0 - 10,
        router_read=10021,
        router_lag=79,
        router={"router-1": consumer(0, 4_000, now=T0)},
    )
    after = pipeline_state(
        t1,
        decision=10100,
        decision_last_ms=T0 - 10,
        router_read=10021,
        router_lag=79,
        router={"router-1": consumer(0, 6_000, now=t1)},
    )
    router = sh.stage_verdicts(before, after, PIPELINE)["router"]
    assert router["verdict"] == "LAGGING"
    assert "too short" in router["reason"]


def test_inactive_ms_is_preferred_over_idle_on_redis_7_2():
    # Redis >= 7.2 resets idle on empty reads; inactive still counts from the last real read.
    before, after = seed_incident()
    for snap, inactive in ((before, SEED_IDLE), (after, SEED_IDLE + WINDOW)):
        live = snap["streams"][DECISION]["groups"]["router"]["consumers"]["router-1"]
        live.update(idle_ms=150, inactive_ms=inactive)
    router = sh.stage_verdicts(before, after, PIPELINE, governor=GOVERNOR_OK)["router"]
    assert router["verdict"] == "STALLED"
    assert router["consumer_inactive_ms"] == SEED_IDLE + WINDOW


def test_stall_idle_ms_is_the_threshold():
    t1 = T0 + 5_000
    before = pipeline_state(
        T0,
        router_lag=4,
        router_delivered_ms=T0 - 50_000,
        router={"router-1": consumer(0, 40_000, now=T0)},
    )
    after = pipeline_state(
        t1,
        router_lag=4,
        router_delivered_ms=T0 - 50_000,
        router={"router-1": consumer(0, 45_000, now=t1)},
    )
    assert sh.stage_verdicts(before, after, PIPELINE)["router"]["verdict"] == "STALLED"
    assert (
        sh.stage_verdicts(before, after, PIPELINE, stall_idle_ms=60_000)["router"]["verdict"]
        == "LAGGING"
    )
    with pytest.raises(Exception, match="stall_idle_ms"):
        sh.stage_verdicts(before, after, PIPELINE, stall_idle_ms=-1)


# ---------------------------------------------------------------------------------------
# orphaned entries on dead consumers


def test_orphan_consumer_with_pending_stalls_a_flowing_stage():
    t1 = T0 + WINDOW
    orphan_before = consumer(4, 2 * HOUR, now=T0, oldest_age_ms=2 * HOUR + 100, max_delivery=2)
    orphan_after = consumer(
        4, 2 * HOUR + WINDOW, now=t1, oldest_age_ms=2 * HOUR + 100 + WINDOW, max_delivery=2
    )
    before, after = busy_pair()
    before["streams"][DECISION]["groups"]["router"]["consumers"]["router-tmp"] = orphan_before
    after["streams"][DECISION]["groups"]["router"]["consumers"]["router-tmp"] = orphan_after
    after["streams"][DECISION]["groups"]["router"]["consumers"]["router-0"] = consumer(
        0, 9 * HOUR, now=t1
    )
    router = sh.stage_verdicts(before, after, PIPELINE, services=services())["router"]
    assert router["verdict"] == "STALLED"
    assert router["needs_restart"] is True
    assert router["dead_consumers"] == [
        {
            "name": "router-tmp",
            "pending": 4,
            "idle_ms": 2 * HOUR + WINDOW,
            "oldest_pending_age_ms": 2 * HOUR + 100 + WINDOW,
            "oldest_pending_idle_ms": 2 * HOUR + WINDOW,
            "oldest_pending_id": orphan_after["oldest_pending_id"],
            "oldest_pending_deliveries": 2,
            "max_delivery_count": 2,
        }
    ]
    assert router["empty_consumers"] == ["router-0"]
    assert router["silent_consumers"] == []  # it appeared during the window: nothing proven
    assert router["reason"].startswith(
        "4 entries pending on consumer router-tmp (not the live consumer router-1), oldest 2h 1m old"
    )
    assert "flowing" in router["reason"]  # the live consumer's own state is still told
    assert sh.pipeline_layers(sh.stage_verdicts(before, after, PIPELINE), PIPELINE)[
        "stuck_consumers"
    ] == ["router"]


def test_other_consumer_that_advanced_is_not_orphaned():
    before, after = busy_pair()
    before["streams"][DECISION]["groups"]["router"]["consumers"]["router-2"] = consumer(
        2, 30, now=T0
    )
    after["streams"][DECISION]["groups"]["router"]["consumers"]["router-2"] = consumer(
        3, 12, now=T0 + WINDOW
    )
    router = sh.stage_verdicts(before, after, PIPELINE)["router"]
    assert router["verdict"] == "OK"
    assert router["dead_consumers"] == []


def test_holder_whose_oldest_entry_was_delivered_in_the_window_is_not_dead():
    # Same count, no idle reset, but XPENDING's own delivery clock says its oldest entry was
    # delivered (or claimed, or re-read) 5 s ago: it is being worked on, not stuck.
    before, after = busy_pair()
    before["streams"][DECISION]["groups"]["router"]["consumers"]["router-2"] = consumer(
        2, 2 * HOUR, now=T0
    )
    held = consumer(2, 2 * HOUR + WINDOW, now=T0 + WINDOW)
    held["oldest_pending_idle_ms"] = 5_000
    after["streams"][DECISION]["groups"]["router"]["consumers"]["router-2"] = held
    router = sh.stage_verdicts(before, after, PIPELINE)["router"]
    assert router["dead_consumers"] == []
    assert router["verdict"] == "OK"
    held["oldest_pending_idle_ms"] = WINDOW + 5_000
    assert [d["name"] for d in sh.stage_verdicts(before, after, PIPELINE)["router"]["dead_consumers"]] == [
        "router-2"
    ]


def test_polling_consumer_holding_nothing_on_redis_7_0_is_neither_dead_nor_silent():
    # Redis 7.0: an empty XREADGROUP does not reset idle, so a consumer polling every 200 ms
    # ages like a dead one. It holds nothing and nothing waited for it: nothing is proven.
    hours = 5 * HOUR
    before = pipeline_state(
        T0, router={"router-1": consumer(0, hours, now=T0), "router-2": consumer(0, hours, now=T0)}
    )
    after = pipeline_state(
        T0 + WINDOW,
        router={
            "router-1": consumer(0, hours + WINDOW, now=T0 + WINDOW),
            "router-2": consumer(0, hours + WINDOW, now=T0 + WINDOW),
        },
    )
    router = sh.stage_verdicts(before, after, PIPELINE)["router"]
    assert router["verdict"] == "OK"
    assert router["dead_consumers"] == [] and router["silent_consumers"] == []
    assert router["empty_consumers"] == ["router-2"]


def stalled_backlog(extra_before: dict, extra_after: dict, read_after: int = 10021) -> tuple[dict, dict]:
    """router-1 stopped reading an hour ago while 79, then 159, entries wait undelivered."""
    t1 = T0 + WINDOW
    before = pipeline_state(
        T0,
        decision=10100,
        decision_last_ms=T0 - 10,
        router_read=10021,
        router_lag=79,
        router_delivered_ms=T0 - HOUR,
        router={"router-1": consumer(0, HOUR, now=T0), **extra_before},
    )
    after = pipeline_state(
        t1,
        decision=10180,
        decision_last_ms=t1 - 10,
        router_read=read_after,
        router_lag=159 - (read_after - 10021),
        router_delivered_ms=T0 - HOUR,
        router={"router-1": consumer(0, HOUR + WINDOW, now=t1), **extra_after},
    )
    return before, after


def test_empty_consumer_that_made_no_read_while_entries_waited_is_silent():
    before, after = stalled_backlog(
        {"router-tmp": consumer(0, 9 * HOUR, now=T0)},
        {"router-tmp": consumer(0, 9 * HOUR + WINDOW, now=T0 + WINDOW)},
    )
    router = sh.stage_verdicts(before, after, PIPELINE)["router"]
    assert router["verdict"] == "STALLED"
    assert router["silent_consumers"] == [
        {"name": "router-tmp", "idle_ms": 9 * HOUR + WINDOW, "inactive_ms": None}
    ]
    assert router["dead_consumers"] == []


def test_no_silence_proven_when_the_backlog_moved_or_the_clock_reset():
    # Someone read during the window: the backlog may have emptied for a moment, when an
    # empty read by router-tmp would have left no trace on Redis 7.0.
    before, after = stalled_backlog(
        {"router-tmp": consumer(0, 9 * HOUR, now=T0)},
        {"router-tmp": consumer(0, 9 * HOUR + WINDOW, now=T0 + WINDOW)},
        read_after=10031,
    )
    assert sh.stage_verdicts(before, after, PIPELINE)["router"]["silent_consumers"] == []
    # Redis 7.2: its read resets idle (inactive keeps counting): it reads, it is alive.
    before, after = stalled_backlog(
        {"router-tmp": consumer(0, 150, now=T0, inactive_ms=9 * HOUR)},
        {"router-tmp": consumer(0, 120, now=T0 + WINDOW, inactive_ms=9 * HOUR + WINDOW)},
    )
    router = sh.stage_verdicts(before, after, PIPELINE)["router"]
    assert router["silent_consumers"] == [] and router["empty_consumers"] == ["router-tmp"]


def test_no_silence_proven_when_the_consumer_was_seen_within_a_short_window():
    # An 800 ms window is shorter than the idle slack: a read 400 ms ago does not show as a
    # reset, but idle below the window does. Not proven silent.
    t1 = T0 + 800
    state = dict(decision=10100, decision_last_ms=T0 - 10, router_read=10021, router_delivered_ms=T0 - HOUR)
    before = pipeline_state(
        T0, router_lag=79, **state,
        router={"router-1": consumer(0, HOUR, now=T0), "router-tmp": consumer(0, 500, now=T0)},
    )
    after = pipeline_state(
        t1, router_lag=79, **state,
        router={"router-1": consumer(0, HOUR + 800, now=t1), "router-tmp": consumer(0, 400, now=t1)},
    )
    router = sh.stage_verdicts(before, after, PIPELINE)["router"]
    assert router["verdict"] == "STALLED"
    assert router["silent_consumers"] == []
    after["streams"][DECISION]["groups"]["router"]["consumers"]["router-tmp"]["idle_ms"] = 1300
    assert [c["name"] for c in sh.stage_verdicts(before, after, PIPELINE)["router"]["silent_consumers"]] == [
        "router-tmp"
    ]


def test_orphans_are_listed_on_a_stopped_stage_too():
    before, after = seed_incident()
    after["streams"][DECISION]["groups"]["router"]["consumers"]["ghost"] = consumer(
        2, HOUR, now=T0 + WINDOW
    )
    before["streams"][DECISION]["groups"]["router"]["consumers"]["ghost"] = consumer(
        2, HOUR - WINDOW, now=T0
    )
    state = services(
        quantum_ai_strategy_router={"active_state": "failed", "sub_state": "failed", "main_pid": 0}
    )
    router = sh.stage_verdicts(before, after, PIPELINE, services=state)["router"]
    assert router["verdict"] == "STOPPED"
    assert [d["name"] for d in router["dead_consumers"]] == ["ghost"]
    assert router["reason"].startswith("unit quantum-ai-strategy-router is failed (failed)")
    assert "consumer ghost (not the live consumer router-1)" in router["reason"]


# ---------------------------------------------------------------------------------------
# stopped stages


def test_inactive_unit_is_stopped():
    before, after = busy_pair()
    state = services(
        quantum_execution={"active_state": "inactive", "sub_state": "dead", "main_pid": 0}
    )
    verdicts = sh.stage_verdicts(before, after, PIPELINE, services=state)
    assert verdicts["execution"]["verdict"] == "STOPPED"
    assert verdicts["execution"]["reason"] == "unit quantum-execution is inactive (dead)"
    assert verdicts["execution"]["needs_restart"] is True
    assert verdicts["execution"]["service"]["active_state"] == "inactive"
    assert sh.stop_point(verdicts, PIPELINE)["stage"] == "execution"


def test_active_unit_without_main_process_is_stopped():
    before, after = seed_incident()
    state = services(quantum_ai_engine={"main_pid": "0", "sub_state": "exited"})
    producer = sh.stage_verdicts(
        before, after, PIPELINE, services=state, governor=GOVERNOR_POISONED
    )["ai_engine"]
    assert producer["verdict"] == "STOPPED"
    assert producer["reason"].startswith(
        "unit quantum-ai-engine is active (exited) but has no main process"
    )
    assert "trades_today=10000" in producer["reason"]


def test_service_facts_style_keys_are_found():
    before, after = busy_pair()
    state = {
        f"{unit}.service": s
        for unit, s in services(
            quantum_ai_strategy_router={"active_state": "failed", "main_pid": 0}
        ).items()
    }
    assert (
        sh.stage_verdicts(before, after, PIPELINE, services=state)["router"]["verdict"] == "STOPPED"
    )


def test_active_unit_does_not_hide_a_stall():
    before, after = seed_incident()
    assert (
        sh.stage_verdicts(before, after, PIPELINE, services=services())["router"]["verdict"]
        == "STALLED"
    )


def test_missing_group_is_stopped():
    before, after = busy_pair()
    for snap in (before, after):
        snap["streams"][INTENT]["groups"] = {"execution": {"exists": False}}
    execution = sh.stage_verdicts(before, after, PIPELINE)["execution"]
    assert execution["verdict"] == "STOPPED"
    assert execution["reason"] == f"group execution does not exist on {INTENT}"


def test_missing_input_stream_is_stopped():
    before, after = busy_pair()
    for snap in (before, after):
        snap["streams"][INTENT] = {"exists": False}
    execution = sh.stage_verdicts(before, after, PIPELINE)["execution"]
    assert execution["verdict"] == "STOPPED"
    assert execution["reason"] == f"input stream {INTENT} does not exist"


def test_absent_live_consumer_with_work_waiting_is_stopped():
    before = pipeline_state(T0, router_lag=12, router_delivered_ms=T0 - HOUR, router={})
    after = pipeline_state(T0 + WINDOW, router_lag=12, router_delivered_ms=T0 - HOUR, router={})
    router = sh.stage_verdicts(before, after, PIPELINE)["router"]
    assert router["verdict"] == "STOPPED"
    assert "live consumer router-1 is absent" in router["reason"]
    assert router["consumer_present"] is False


def test_absent_live_consumer_on_a_quiet_stream_is_ok():
    before = pipeline_state(T0, router={})
    after = pipeline_state(T0 + WINDOW, router={})
    assert sh.stage_verdicts(before, after, PIPELINE)["router"]["verdict"] == "OK"


def test_quiet_consumer_behind_a_blocked_producer_is_ok():
    before, after = seed_incident()
    verdicts = sh.stage_verdicts(before, after, PIPELINE, governor=GOVERNOR_POISONED)
    assert verdicts["execution"]["verdict"] == "OK"
    assert verdicts["execution"]["input_grew"] is False


# ---------------------------------------------------------------------------------------
# stop point, layers, restart order


def test_stop_point_is_the_first_stage_not_ok_in_pipeline_order():
    verdicts = {
        "execution": {"verdict": "STOPPED", "reason": "x"},
        "router": {"verdict": "LAGGING", "reason": "y"},
        "ai_engine": {"verdict": "OK", "reason": "z"},
    }
    assert sh.stop_point(verdicts, PIPELINE) == {
        "stage": "router",
        "verdict": "LAGGING",
        "reason": "y",
    }


AT_LIMIT = {"count": 200, "limit": 200, "at_limit": True, "over_limit": False}
OVER_LIMIT = {"count": 250, "limit": 200, "at_limit": False, "over_limit": True}


@pytest.mark.parametrize(
    ("governor", "router", "expected"),
    [
        # Exactly at the limit: the day's policy, no stop point, the reason names the stage.
        (AT_LIMIT, "OK", {"stage": None, "verdict": "OK", "reason": (
            "every stage is OK but ai_engine, held by its governor at the daily limit "
            "(the day's policy)")}),
        # Over it: leftover state, the recovery resets it.
        (OVER_LIMIT, "OK", {"stage": "ai_engine", "verdict": "BLOCKED", "reason": "g"}),
        # Held at the limit, and a stuck stage behind it: the stuck stage is the stop point.
        (AT_LIMIT, "STALLED", {"stage": "router", "verdict": "STALLED", "reason": "r"}),
    ],
    ids=["at-limit", "over-limit", "at-limit-and-stalled"],
)
def test_a_governor_exactly_at_its_limit_is_no_stop_point(governor, router, expected):
    verdicts = {
        "ai_engine": {"verdict": "BLOCKED", "reason": "g", "governor": governor},
        "router": {"verdict": router, "reason": "r"},
        "execution": {"verdict": "OK", "reason": "e"},
    }  # fmt: skip
    assert sh.stop_point(verdicts, PIPELINE) == expected
    assert sh.policy_blocked(verdicts["ai_engine"]) is (governor is AT_LIMIT)


def test_layers_do_not_count_lagging_as_stuck():
    verdicts = {
        "ai_engine": {"verdict": "OK"},
        "router": {"verdict": "LAGGING"},
        "execution": {"verdict": "STALLED"},
    }
    assert sh.pipeline_layers(verdicts, PIPELINE) == {
        "stuck_consumers": ["execution"],
        "restart_behind": [],
        "blocked_producer": None,
    }


@pytest.mark.parametrize(
    ("stages", "units"),
    [
        (["router"], ["quantum-execution", "quantum-ai-strategy-router"]),
        ("router", ["quantum-execution", "quantum-ai-strategy-router"]),
        (["execution"], ["quantum-execution"]),
        (["ai_engine"], ["quantum-ai-engine"]),
        (["execution", "router", "router"], ["quantum-execution", "quantum-ai-strategy-router"]),
        (
            ["ai_engine", "router"],
            ["quantum-execution", "quantum-ai-strategy-router", "quantum-ai-engine"],
        ),
        ([], []),
    ],
)
def test_restart_order(stages, units):
    assert sh.restart_order(PIPELINE, stages) == units


def test_restart_order_lists_a_shared_unit_once():
    pipeline = copy.deepcopy(PIPELINE)
    pipeline["stages"][2]["unit"] = pipeline["stages"][1]["unit"]
    assert sh.restart_order(pipeline, ["router"]) == ["quantum-ai-strategy-router"]


def test_restart_order_rejects_unknown_stages():
    with pytest.raises(Exception, match="no stage named nope"):
        sh.restart_order(PIPELINE, ["nope"])


# ---------------------------------------------------------------------------------------
# pipeline helpers


def test_pipeline_streams():
    assert sh.pipeline_streams(PIPELINE) == [
        {"stream": DECISION, "groups": ["router"]},
        {"stream": INTENT, "groups": ["execution"]},
        {"stream": RESULT},
    ]


def test_pipeline_streams_merges_groups_of_one_stream():
    pipeline = {
        "name": "fan",
        "stages": [
            {"name": "p", "unit": "p", "output_stream": "in"},
            {
                "name": "a",
                "unit": "a",
                "input_stream": "in",
                "group": "ga",
                "consumer": "a-1",
                "output_stream": "out",
            },
            {
                "name": "b",
                "unit": "b",
                "input_stream": "in",
                "group": "gb",
                "consumer": "b-1",
                "output_stream": "out",
            },
        ],
    }
    assert sh.pipeline_streams(pipeline) == [
        {"stream": "in", "groups": ["ga", "gb"]},
        {"stream": "out"},
    ]


def test_inventory_pipeline_is_valid():
    assert sh.validate_pipeline(PIPELINE) == []
    with_dead_letter = copy.deepcopy(PIPELINE)
    with_dead_letter["stages"][2]["dead_letter"] = {
        "stream": "quantum:stream:trade.intent.dead",
        "max_age_ms": 3_600_000,
        "max_deliveries": 5,
    }
    assert sh.validate_pipeline(with_dead_letter) == []


def broken(change) -> list[str]:
    pipeline = copy.deepcopy(PIPELINE)
    change(pipeline)
    return sh.validate_pipeline(pipeline)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda p: p.pop("name"), "pipeline has no name."),
        (
            lambda p: p.update(stages=[]),
            "pipeline.stages must be a non-empty list of stages, upstream first.",
        ),
        (lambda p: p["stages"][1].pop("name"), "pipeline.stages[1] has no name."),
        (
            lambda p: p["stages"][2].update(name="router"),
            "stage name router is used by more than one stage.",
        ),
        (lambda p: p["stages"][1].pop("unit"), "stage router has no unit."),
        (
            lambda p: p["stages"][2].update(input_stream="quantum:stream:other"),
            "stage execution reads quantum:stream:other, not the previous stage's output_stream "
            "quantum:stream:trade.intent.",
        ),
        (lambda p: p["stages"][1].pop("group"), f"stage router reads {DECISION} but has no group."),
        (
            lambda p: p["stages"][1].pop("consumer"),
            f"stage router reads {DECISION} but has no consumer.",
        ),
        (
            lambda p: p["stages"][2].pop("input_stream"),
            "stage execution has no input_stream: only the first stage may be a producer.",
        ),
        (
            lambda p: p["stages"][1].update(dead_letter={"max_age_ms": 10}),
            "stage router: dead_letter has no stream.",
        ),
        (
            lambda p: p["stages"][1].update(dead_letter={"stream": "dl"}),
            "stage router: dead_letter needs max_age_ms or max_deliveries.",
        ),
        (
            lambda p: p["stages"][1].update(dead_letter={"stream": DECISION, "max_age_ms": 10}),
            f"stage router: dead_letter stream {DECISION} is the input_stream itself.",
        ),
        (
            lambda p: p["stages"][1].update(dead_letter={"stream": "dl", "max_age_ms": -1}),
            "stage router: dead_letter.max_age_ms must not be negative, got -1.",
        ),
        (
            lambda p: p["stages"][1].update(dead_letter={"stream": "dl", "max_deliveries": "many"}),
            "stage router: dead_letter.max_deliveries must be a whole number, got 'many'.",
        ),
        (
            lambda p: p["stages"][1].update(governed=True),
            "stage router is governed but has an input_stream: only a producer can be governed.",
        ),
        (lambda p: p.pop("governor"), "a stage is governed but pipeline.governor is not defined."),
        (lambda p: p["governor"].pop("limit_field"), "pipeline.governor has no limit_field."),
    ],
)
def test_validate_pipeline_finds(change, problem):
    assert problem in broken(change)


def test_validate_pipeline_rejects_non_mappings():
    assert sh.validate_pipeline(None) == ["pipeline must be a mapping."]
    assert sh.validate_pipeline({"name": "x", "stages": ["oops"]}) == [
        "pipeline.stages[0] must be a mapping, got str."
    ]


# ---------------------------------------------------------------------------------------
# evidence_judgement: one phase's judgement, computed once


def seed_snapshots() -> tuple[dict, dict]:
    """The seed incident's two snapshots as pipeline_snapshot returns them: units and governor too."""
    before, after = seed_incident()
    governor = {**GOVERNOR_POISONED, "results_today": 5, "counted_stream_exists": True}
    extra = {"units": services(), "governor": governor, "endpoint": "127.0.0.1:6379"}
    return {**before, **extra}, {**after, **extra}


def test_evidence_judgement_takes_one_snapshots_verdicts_when_they_decide():
    first, _ = seed_snapshots()
    judged = sh.evidence_judgement(first, first, PIPELINE)
    assert judged["one_snapshot"] == sh.snapshot_verdicts(first, PIPELINE)
    assert judged["verdicts"] is judged["one_snapshot"]
    assert verdicts_of(judged["verdicts"]) == {"ai_engine": "BLOCKED", "router": "STALLED", "execution": "OK"}
    assert judged["stop_point"] == sh.stop_point(judged["verdicts"], PIPELINE)
    assert judged["layers"] == sh.pipeline_layers(judged["verdicts"], PIPELINE)
    # Nothing of the connection is kept; the governor is shaped as redis_governor returns it.
    assert set(judged["t0"]) == {"server", "streams", "missing"} and judged["t0"] == judged["t1"]
    assert judged["governor"] == {
        "governor": first["governor"], "results_today": 5, "counted_stream_exists": True,
    }
    assert judged["services"] == services()


def test_evidence_judgement_judges_over_the_window_otherwise():
    first, last = seed_snapshots()
    judged = sh.evidence_judgement(first, last, PIPELINE, one_snapshot=False, stall_idle_ms=30_000)
    assert judged["one_snapshot"] is None
    assert judged["verdicts"] == sh.stage_verdicts(
        judged["t0"], judged["t1"], PIPELINE, services(), last["governor"], stall_idle_ms=30_000
    )
    assert judged["deltas"] == sh.stream_deltas(judged["t0"], judged["t1"])
    assert judged["deltas"]["window_ms"] == WINDOW


def test_evidence_judgement_without_a_governor():
    first, _ = seed_snapshots()
    judged = sh.evidence_judgement({**first, "governor": None}, {**first, "governor": None}, PIPELINE)
    assert judged["governor"] == {}


def test_filter_module_exports_every_function():
    assert set(sh.FilterModule().filters()) == {
        "stream_deltas",
        "stage_verdicts",
        "snapshot_verdicts",
        "snapshot_decides",
        "evidence_judgement",
        "unproven_holders",
        "holders_proven_dead",
        "stop_point",
        "policy_blocked",
        "pipeline_layers",
        "restart_order",
        "human_ms",
        "pipeline_streams",
        "validate_pipeline",
    }


# ---------------------------------------------------------------------------------------
# through the real ansible command


def ansible_debug(msg: str, tmp_path: Path, extra_vars: dict | None = None) -> object:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(PROJECT_ROOT / "ansible.cfg"),
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
    )
    cmd = [
        str(Path(sys.executable).parent / "ansible"),
        "localhost",
        "-i",
        "localhost,",
        "-c",
        "local",
        "-m",
        "ansible.builtin.debug",
        "-a",
        f"msg={msg}",
    ]
    if extra_vars is not None:
        vars_file = tmp_path / "vars.json"
        vars_file.write_text(json.dumps(extra_vars))
        cmd += ["-e", f"@{vars_file}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]["msg"]


def test_filters_work_in_jinja_through_ansible(tmp_path):
    assert ansible_debug("{{ 11776068 | human_ms }}", tmp_path) == "3h 16m"
    before, after = seed_incident()
    stop = ansible_debug(
        "{{ before | stage_verdicts(after, pipeline, governor=governor) | stop_point(pipeline) }}",
        tmp_path,
        {"before": before, "after": after, "pipeline": PIPELINE, "governor": GOVERNOR_POISONED},
    )
    assert stop["stage"] == "ai_engine" and stop["verdict"] == "BLOCKED"


def test_governor_without_flags_is_judged_by_its_numbers():
    before, after = seed_incident()
    numbers_only = {"exists": True, "count": 10000, "limit": 200}
    producer = sh.stage_verdicts(before, after, PIPELINE, governor=numbers_only)["ai_engine"]
    assert producer["verdict"] == "BLOCKED"
    assert (
        "trades_today=10000 is over its limit daily_limit=200 in quantum:governor"
        in producer["reason"]
    )
    stale = {
        **GOVERNOR_POISONED,
        "dated_today": False,
        "over_limit": False,
        "at_limit": False,
        "blocked": False,
    }
    assert (
        sh.stage_verdicts(before, after, PIPELINE, governor=stale)["ai_engine"]["verdict"] == "OK"
    )


def test_unproven_holders_lists_only_stages_with_some():
    verdicts = {
        "ai_engine": {"verdict": "BLOCKED", "unproven_holders": []},
        "router": {"verdict": "STALLED", "unproven_holders": ["router-0", "router-7"]},
        "execution": {"verdict": "OK"},
    }
    assert sh.unproven_holders(verdicts) == {"router": ["router-0", "router-7"]}
    assert sh.unproven_holders(None) == {}


def test_holders_proven_dead_follows_the_pipeline_and_skips_producers():
    pipeline = {
        "stages": [
            {"name": "ai_engine", "output_stream": "a"},
            {"name": "router", "input_stream": "a", "group": "router", "consumer": "router-1",
             "output_stream": "b"},
            {"name": "execution", "input_stream": "b", "group": "execution", "consumer": "execution-1"},
        ]
    }
    verdicts = {
        "execution": {"dead_consumers": [{"name": "execution-9", "pending": 2}]},
        "router": {"dead_consumers": [{"name": "router-0", "pending": 3}]},
        "ai_engine": {"dead_consumers": [{"name": "nonsense"}]},
    }
    proven = sh.holders_proven_dead(verdicts, pipeline)
    assert proven == {"router": ["router-0"], "execution": ["execution-9"]}
    assert list(proven) == ["router", "execution"]
    assert sh.holders_proven_dead({"router": {"dead_consumers": []}}, pipeline) == {}
