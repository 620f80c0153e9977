"""redis_stream_info against a real redis-server, through the real `ansible` command: the
facts every verdict is computed from, on states built the way the incident built them."""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path

import pytest
import redis
import yaml
from conftest import (
    PROJECT_ROOT,
    RedisServer,
    collection_util,
    dump_redis,
    has_inactive,
    run_ansible_module,
)

DECISIONS = "quantum:stream:ai.decision"
INTENTS = "quantum:stream:trade.intent"
RESULTS = "quantum:stream:trade.result"
# Fields that move with the clock: everything else must be identical between two reads.
CLOCK_FIELDS = {
    "time_ms",
    "idle_ms",
    "inactive_ms",
    "oldest_pending_age_ms",
    "oldest_pending_idle_ms",
    "oldest_undelivered_age_ms",
}


def info(server: RedisServer, streams: list[dict], *, check: bool = False, **options) -> dict:
    return run_ansible_module(
        "redis_stream_info", {"connection": server.connection, "streams": streams, **options}, check=check
    )


def id_time(entry_id: str) -> int:
    return int(entry_id.split("-")[0])


def without_clock(value):
    if isinstance(value, dict):
        return {key: without_clock(item) for key, item in value.items() if key not in CLOCK_FIELDS}
    return value


@pytest.fixture
def router_stage(redis_client: redis.Redis) -> dict:
    """The seed's first layer: the router group created before the producer started, 10
    decisions, router-1 read 4 (acked 1, then re-read its PEL twice at restarts), router-2
    read 2 and died, router-3 registered and never read; an `audit` group read nothing."""
    client = redis_client
    client.xgroup_create(DECISIONS, "router", id="$", mkstream=True)
    client.xgroup_create(DECISIONS, "audit", id="$")
    ids = [client.xadd(DECISIONS, {"decision": f"BUY {n}"}) for n in range(10)]
    client.xreadgroup("router", "router-1", {DECISIONS: ">"}, count=4)
    client.xack(DECISIONS, "router", ids[0])
    for _ in range(2):  # ID 0 re-delivers the consumer's own PEL: delivery count +1 each time
        client.xreadgroup("router", "router-1", {DECISIONS: "0"})
    client.xreadgroup("router", "router-2", {DECISIONS: ">"}, count=2)
    client.xgroup_createconsumer(DECISIONS, "router", "router-3")
    time.sleep(0.3)  # measurable idle and age
    return {"ids": ids}


def test_reports_stream_groups_and_consumers(redis_server, redis_client, router_stage):
    ids = router_stage["ids"]
    before_ms = id_time(ids[1])
    result = info(redis_server, [{"stream": DECISIONS}])
    assert result["changed"] is False
    assert result["missing"] == []

    assert result["server"]["version"] == redis_client.info("server")["redis_version"]
    seconds, micros = redis_client.time()
    assert 0 <= seconds * 1000 + micros // 1000 - result["server"]["time_ms"] < 60_000

    stream = result["streams"][DECISIONS]
    assert stream["exists"] is True
    assert stream["length"] == 10
    assert stream["entries_added"] == 10
    assert stream["first_entry_id"] == ids[0]
    assert stream["last_entry_id"] == ids[9]
    assert set(stream["groups"]) == {"router", "audit"}

    router = stream["groups"]["router"]
    assert router["exists"] is True
    assert router["consumer_count"] == 3
    assert router["pending"] == 5
    assert router["last_delivered_id"] == ids[5]
    assert router["entries_read"] == 6
    assert router["lag"] == 4
    assert set(router["consumers"]) == {"router-1", "router-2", "router-3"}

    one = router["consumers"]["router-1"]
    assert one["pending"] == 3
    assert one["oldest_pending_id"] == ids[1]
    # The default reads only the oldest entry: its delivery count, not a scan of the list.
    assert one["oldest_pending_deliveries"] == 3
    assert one["max_delivery_count"] == 3
    assert one["max_delivery_count_exact"] is False
    assert one["idle_ms"] >= 300
    assert one["oldest_pending_idle_ms"] >= 300
    age = one["oldest_pending_age_ms"]
    assert age == result["server"]["time_ms"] - before_ms
    assert age >= 300
    if has_inactive(redis_client):
        # 7.2 and later: the time since its last successful read (re-reading its PEL delivered).
        assert one["inactive_ms"] >= 300
    else:
        # Redis 7.0 has no `inactive`: unknown, not zero.
        assert one["inactive_ms"] is None

    two = router["consumers"]["router-2"]
    assert (two["pending"], two["oldest_pending_id"], two["max_delivery_count"]) == (2, ids[4], 1)

    three = router["consumers"]["router-3"]
    assert three == {
        "pending": 0,
        "idle_ms": three["idle_ms"],
        # 7.0 has no `inactive`; from 7.2 a consumer that never read successfully reports -1:
        # unknown either way, never zero.
        "inactive_ms": None,
        "oldest_pending_id": None,
        "oldest_pending_age_ms": None,
        "oldest_pending_idle_ms": None,
        "oldest_pending_deliveries": None,
        "max_delivery_count": 0,
        "max_delivery_count_exact": True,
    }

    audit = stream["groups"]["audit"]
    assert (audit["consumer_count"], audit["pending"], audit["consumers"]) == (0, 0, {})
    # Redis 7.0 leaves entries-read unset until the group's first read, yet knows its lag.
    assert (audit["entries_read"], audit["lag"]) == (None, 10)


def test_the_oldest_undelivered_entry_and_how_long_it_waited(redis_server, redis_client):
    """One XRANGE per group that has undelivered entries, none for a caught-up group."""
    seconds, _ = redis_client.time()
    old_ms = seconds * 1000 - 90_000
    redis_client.xadd(DECISIONS, {"n": 0}, id=f"{old_ms}-0")
    redis_client.xgroup_create(DECISIONS, "router", id="0")
    redis_client.xreadgroup("router", "router-1", {DECISIONS: ">"}, count=1)
    waiting = redis_client.xadd(DECISIONS, {"n": 1}, id=f"{old_ms + 5}-0")
    redis_client.xadd(DECISIONS, {"n": 2})
    redis_client.xgroup_create(DECISIONS, "audit", id="$")
    redis_client.config_resetstat()
    groups = info(redis_server, [{"stream": DECISIONS}])["streams"][DECISIONS]["groups"]
    assert groups["router"]["oldest_undelivered_id"] == waiting
    assert 90_000 - 5 <= groups["router"]["oldest_undelivered_age_ms"] < 120_000
    audit = groups["audit"]
    assert (audit["oldest_undelivered_id"], audit["oldest_undelivered_age_ms"]) == (None, None)
    assert redis_client.info("commandstats")["cmdstat_xrange"]["calls"] == 1


def test_named_groups_only_and_missing_group(redis_server, router_stage):
    result = info(redis_server, [{"stream": DECISIONS, "groups": ["router", "ghost"]}])
    groups = result["streams"][DECISIONS]["groups"]
    assert set(groups) == {"router", "ghost"}
    assert groups["router"]["pending"] == 5
    assert groups["ghost"] == {
        "exists": False,
        "consumer_count": None,
        "pending": None,
        "last_delivered_id": None,
        "entries_read": None,
        "lag": None,
        "oldest_undelivered_id": None,
        "oldest_undelivered_age_ms": None,
        "consumers": {},
    }
    assert result["missing"] == [f"{DECISIONS}/ghost"]


def test_missing_stream_is_reported_not_failed(redis_server, redis_client):
    result = info(redis_server, [{"stream": RESULTS, "groups": ["report"]}, {"stream": "nothing:here"}])
    assert result["missing"] == [RESULTS, f"{RESULTS}/report", "nothing:here"]
    missing = result["streams"][RESULTS]
    assert missing["exists"] is False
    assert missing["length"] is None
    assert missing["groups"]["report"]["exists"] is False
    assert result["streams"]["nothing:here"]["groups"] == {}


def test_fail_on_missing_names_what_is_missing(redis_server, router_stage):
    result = run_ansible_module(
        "redis_stream_info",
        {
            "connection": redis_server.connection,
            "streams": [{"stream": DECISIONS, "groups": ["ghost"]}, {"stream": RESULTS}],
            "fail_on_missing": True,
        },
        expect_failure=True,
    )
    assert result["msg"] == (
        f"Missing from Redis at 127.0.0.1:{redis_server.port}: {DECISIONS}/ghost, {RESULTS}."
    )
    # The facts come with the failure, for the evidence.
    assert result["streams"][DECISIONS]["exists"] is True


def test_wrong_key_type_fails_naming_the_key(redis_server, redis_client):
    redis_client.hset("quantum:governor", mapping={"trades_today": "10000"})
    result = run_ansible_module(
        "redis_stream_info",
        {"connection": redis_server.connection, "streams": [{"stream": "quantum:governor"}]},
        expect_failure=True,
    )
    assert result["msg"] == (
        "Key 'quantum:governor' is a hash, not a stream: check the stream names asked for."
    )


def test_lag_is_null_not_zero_when_redis_cannot_tell(redis_server, redis_client):
    """Redis 7.0 computes a group's lag from entries-added unless an entry was deleted after the
    group's position (a tombstone it cannot count across): then lag is nil."""
    ids = [redis_client.xadd(INTENTS, {"intent": str(n)}) for n in range(5)]
    redis_client.xgroup_create(INTENTS, "execution", id="0")
    before = info(redis_server, [{"stream": INTENTS}])["streams"][INTENTS]["groups"]["execution"]
    assert before["lag"] == 5

    redis_client.xdel(INTENTS, ids[2])
    after = info(redis_server, [{"stream": INTENTS}])["streams"][INTENTS]
    assert after["length"] == 4
    assert after["entries_added"] == 5
    assert after["groups"]["execution"]["lag"] is None
    assert after["groups"]["execution"]["entries_read"] is None


def test_a_caught_up_group_has_no_lag_whatever_a_stale_entries_read_says(redis_server, redis_client):
    """A Redis 7.0 replica keeps no entries-read; promoted by a failover, it counts lag from a
    wrong one (found by the sentinel scenario: lag 20,270 on a group delivered everything).
    ENTRIESREAD makes that state on any server: delivered up to the last entry, entries-read 3
    of 10. Nothing waits, so the lag is 0; the server's own figure may say otherwise."""
    for n in range(10):
        redis_client.xadd(INTENTS, {"intent": str(n)})
    redis_client.execute_command("XGROUP", "CREATE", INTENTS, "execution", "$", "ENTRIESREAD", 3)
    stream = info(redis_server, [{"stream": INTENTS}])["streams"][INTENTS]
    group = stream["groups"]["execution"]
    assert group["last_delivered_id"] == stream["last_entry_id"]
    assert group["lag"] == 0, (group, redis_client.xinfo_groups(INTENTS))
    # Not caught up: the server's figure stands (here entries-added - entries-read).
    redis_client.xadd(INTENTS, {"intent": "new"})
    (server_group,) = redis_client.xinfo_groups(INTENTS)
    again = info(redis_server, [{"stream": INTENTS}])["streams"][INTENTS]["groups"]["execution"]
    assert again["lag"] == server_group["lag"]


def test_trimmed_stream_keeps_pending_of_trimmed_entries(redis_server, redis_client):
    redis_client.xgroup_create(INTENTS, "execution", id="$", mkstream=True)
    ids = [redis_client.xadd(INTENTS, {"intent": str(n)}) for n in range(10)]
    redis_client.xreadgroup("execution", "execution-1", {INTENTS: ">"}, count=3)
    redis_client.xtrim(INTENTS, maxlen=4, approximate=False)

    stream = info(redis_server, [{"stream": INTENTS}])["streams"][INTENTS]
    assert (stream["length"], stream["entries_added"]) == (4, 10)
    assert (stream["first_entry_id"], stream["last_entry_id"]) == (ids[6], ids[9])
    group = stream["groups"]["execution"]
    assert (group["entries_read"], group["pending"]) == (3, 3)
    # The lag after XTRIM is the server's own figure, passed through: 7.0.15 and Valkey 8.1
    # report 7 (entries added - entries read, trimmed ones included), Redis 8.0.2 reports 4 (the
    # entries left to deliver). Redis promises only "the entries still waiting, or nil when it
    # cannot tell": the 4 kept entries all wait, so a number is at least 4.
    (server_group,) = redis_client.xinfo_groups(INTENTS)
    assert group["lag"] == server_group["lag"]
    assert group["lag"] is None or group["lag"] >= 4
    # The PEL still holds the trimmed entries: the oldest pending entry predates the stream.
    consumer = group["consumers"]["execution-1"]
    assert consumer["oldest_pending_id"] == ids[0]
    assert consumer["pending"] == 3


def test_empty_stream(redis_server, redis_client):
    redis_client.xgroup_create(RESULTS, "report", id="$", mkstream=True)
    stream = info(redis_server, [{"stream": RESULTS}])["streams"][RESULTS]
    assert stream["exists"] is True
    assert (stream["length"], stream["entries_added"]) == (0, 0)
    assert (stream["first_entry_id"], stream["last_entry_id"]) == (None, None)
    assert stream["groups"]["report"]["lag"] == 0


@pytest.mark.parametrize(
    ("limit", "max_count", "exact"),
    [(3, 1, False), (4, 1, False), (5, 2, True), (1000, 2, True)],
)
def test_pending_scan_limit_bounds_the_delivery_count_scan(
    redis_server, redis_client, limit, max_count, exact
):
    redis_client.xgroup_create(INTENTS, "execution", id="$", mkstream=True)
    ids = [redis_client.xadd(INTENTS, {"intent": str(n)}) for n in range(5)]
    redis_client.xreadgroup("execution", "execution-1", {INTENTS: ">"})
    # XCLAIM to the same consumer counts as a delivery: only the newest entry was redelivered.
    redis_client.xclaim(INTENTS, "execution", "execution-1", 0, [ids[4]])

    result = info(redis_server, [{"stream": INTENTS}], pending_scan_limit=limit)
    consumer = result["streams"][INTENTS]["groups"]["execution"]["consumers"]["execution-1"]
    assert consumer["pending"] == 5
    assert consumer["oldest_pending_id"] == ids[0]
    assert (consumer["max_delivery_count"], consumer["max_delivery_count_exact"]) == (max_count, exact)


def test_pending_scan_limit_out_of_range_fails(redis_server, redis_client):
    result = run_ansible_module(
        "redis_stream_info",
        {"connection": redis_server.connection, "streams": [{"stream": INTENTS}], "pending_scan_limit": 0},
        expect_failure=True,
    )
    assert result["msg"] == "pending_scan_limit must be between 1 and 10000, got 0."


def test_binary_payloads_do_not_break_the_read(redis_server, redis_client):
    """XINFO STREAM carries the first and last entries; a non-UTF-8 payload must not matter."""
    first = redis_client.xadd(RESULTS, {"blob": b"\xff\xfe\x00"})
    result = info(redis_server, [{"stream": RESULTS}])
    assert result["streams"][RESULTS]["first_entry_id"] == first


def load_pipeline(server: RedisServer, **redis_options) -> dict:
    """The default inventory's pipeline definition, pointed at the test server."""
    path = Path(PROJECT_ROOT, "inventory/testnet/group_vars/all/pipeline.yml")
    pipeline = copy.deepcopy(yaml.safe_load(path.read_text())["pipeline"])
    pipeline["redis"] = {"host": server.host, "port": server.port, **redis_options}
    return pipeline


def test_pipeline_definition_selects_streams_and_groups(redis_server, redis_client, router_stage):
    redis_client.xgroup_create(INTENTS, "execution", id="$", mkstream=True)
    redis_client.xadd(INTENTS, {"intent": "BUY 0"})
    pipeline = load_pipeline(redis_server)

    # No `connection`: the pipeline's own `redis` is the connection.
    result = run_ansible_module("redis_stream_info", {"pipeline": pipeline})
    streams = result["streams"]
    assert set(streams) == {DECISIONS, INTENTS, RESULTS}
    # A stream a stage reads: the stage's group only (not `audit`).
    assert set(streams[DECISIONS]["groups"]) == {"router"}
    assert streams[DECISIONS]["groups"]["router"]["pending"] == 5
    assert set(streams[INTENTS]["groups"]) == {"execution"}
    assert streams[INTENTS]["groups"]["execution"]["lag"] == 1
    # trade.result is nobody's input and does not exist yet.
    assert streams[RESULTS]["exists"] is False
    assert result["missing"] == [RESULTS]


def test_pipeline_output_stream_reports_every_group(redis_server, redis_client):
    redis_client.xgroup_create(RESULTS, "report", id="$", mkstream=True)
    redis_client.xgroup_create(RESULTS, "audit", id="$")
    result = run_ansible_module("redis_stream_info", {"pipeline": load_pipeline(redis_server)})
    assert set(result["streams"][RESULTS]["groups"]) == {"report", "audit"}
    assert result["missing"] == [DECISIONS, f"{DECISIONS}/router", INTENTS, f"{INTENTS}/execution"]


def test_pipeline_stage_without_group_fails(redis_server, redis_client):
    pipeline = load_pipeline(redis_server)
    del pipeline["stages"][1]["group"]
    result = run_ansible_module("redis_stream_info", {"pipeline": pipeline}, expect_failure=True)
    assert result["msg"] == "pipeline stage router must give both input_stream and group, or neither."


def test_streams_and_pipeline_are_exclusive(redis_server, redis_client):
    result = run_ansible_module(
        "redis_stream_info",
        {"streams": [{"stream": DECISIONS}], "pipeline": load_pipeline(redis_server)},
        expect_failure=True,
    )
    assert "mutually exclusive: streams|pipeline" in result["msg"]


def test_check_mode_reports_the_same_and_changes_nothing(redis_server, redis_client, router_stage):
    streams = [{"stream": DECISIONS}, {"stream": RESULTS}]
    before = dump_redis(redis_client)
    checked = info(redis_server, streams, check=True)
    normal = info(redis_server, streams)
    assert dump_redis(redis_client) == before
    assert checked["changed"] is False
    assert without_clock(checked["streams"]) == without_clock(normal["streams"])
    assert checked["missing"] == normal["missing"] == [RESULTS]
    # Reading must not count as a consumer interaction: idle keeps growing.
    def idle(result: dict) -> int:
        return result["streams"][DECISIONS]["groups"]["router"]["consumers"]["router-1"]["idle_ms"]

    assert idle(normal) > idle(checked)


def monitored(server: RedisServer, action) -> list[str]:
    """Every command the server receives while `action` runs (MONITOR), as text."""
    commands: list[str] = []
    done = "stream-info-test-done"
    with server.client().monitor() as monitor:

        def collect() -> None:
            for event in monitor.listen():
                if done in event["command"]:
                    return
                commands.append(event["command"])

        reader = threading.Thread(target=collect, daemon=True)
        reader.start()
        time.sleep(0.1)  # MONITOR is on before the module starts
        action()
        server.client().echo(done)
        reader.join(10)
    return commands


def test_every_call_is_bounded_and_read_only(redis_server, redis_client):
    """A 3000-entry PEL is read with one XPENDING range for its consumer, COUNT
    pending_scan_limit (1 by default: the oldest entry; XINFO CONSUMERS already says there are
    more); never an IDLE scan of the whole PEL, never a write."""
    redis_client.xgroup_create(INTENTS, "execution", id="$", mkstream=True)
    pipe = redis_client.pipeline(transaction=False)
    for n in range(3000):
        pipe.xadd(INTENTS, {"intent": str(n)})
    pipe.execute()
    redis_client.xreadgroup("execution", "execution-1", {INTENTS: ">"})
    results: list[dict] = []

    commands = monitored(redis_server, lambda: results.append(info(redis_server, [{"stream": INTENTS}])))

    consumer = results[0]["streams"][INTENTS]["groups"]["execution"]["consumers"]["execution-1"]
    assert consumer["pending"] == 3000
    assert (consumer["max_delivery_count"], consumer["max_delivery_count_exact"]) == (1, False)
    xpending = [c for c in commands if c.upper().startswith("XPENDING")]
    assert xpending == [f"XPENDING {INTENTS} execution - + 1 execution-1"]
    names = {c.split()[0].upper() for c in commands}
    assert names <= {"HELLO", "PING", "CLIENT", "TIME", "INFO", "TYPE", "XINFO", "XPENDING"}, names


# --- direct calls: races between the rounds, which `ansible` runs cannot time -----------------


rsi = collection_util("stream_info")


@pytest.fixture
def stalled_execution(redis_client: redis.Redis) -> redis.Redis:
    redis_client.xgroup_create(INTENTS, "execution", id="$", mkstream=True)
    for n in range(3):
        redis_client.xadd(INTENTS, {"intent": str(n)})
    redis_client.xreadgroup("execution", "execution-1", {INTENTS: ">"})
    return redis_client


def collect_with(client: redis.Redis, before_round: str, action) -> object:
    """StreamInfo with `action` run just before one of its rounds."""

    class Raced(rsi.StreamInfo):
        pass

    original = getattr(rsi.StreamInfo, before_round)

    def raced(self):
        action()
        original(self)

    setattr(Raced, before_round, raced)
    info = Raced(client, {INTENTS: None}, 1000)
    info.collect()
    return info


def test_group_deleted_between_rounds_is_reported_missing(stalled_execution):
    client = stalled_execution
    round_name = "_consumers_and_undelivered"
    info = collect_with(client, round_name, lambda: client.xgroup_destroy(INTENTS, "execution"))
    assert info.streams[INTENTS]["groups"]["execution"]["exists"] is False
    assert info.missing == [f"{INTENTS}/execution"]


def test_stream_deleted_before_the_pending_round_is_reported_missing(stalled_execution):
    client = stalled_execution
    info = collect_with(client, "_pending_ranges", lambda: client.delete(INTENTS))
    assert info.streams[INTENTS]["groups"]["execution"]["exists"] is False
    assert info.missing == [f"{INTENTS}/execution"]


def test_entries_acknowledged_before_the_pending_round(stalled_execution):
    client = stalled_execution

    def ack_all() -> None:
        ids = [entry["message_id"] for entry in client.xpending_range(INTENTS, "execution", "-", "+", 10)]
        client.xack(INTENTS, "execution", *ids)

    info = collect_with(client, "_pending_ranges", ack_all)
    consumer = info.streams[INTENTS]["groups"]["execution"]["consumers"]["execution-1"]
    assert consumer["pending"] == 3  # as XINFO CONSUMERS said a moment before
    assert (consumer["oldest_pending_id"], consumer["max_delivery_count"]) == (None, 0)


def test_stream_deleted_between_type_and_xinfo_is_missing(redis_client):
    """The reply Redis and redis-py really give for XINFO STREAM on an absent key."""
    pipe = redis_client.pipeline(transaction=False)
    pipe.xinfo_stream("absent")
    pipe.xinfo_groups("absent")
    info_error, groups_error = pipe.execute(raise_on_error=False)
    info = rsi.StreamInfo(redis_client, {}, 1000)
    state = info._stream("absent", ["g"], "stream", info_error, groups_error)
    assert state == rsi.missing_stream(["g"])
