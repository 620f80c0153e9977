"""redis_stream_reclaim against a real redis-server: through the real `ansible` command, and
in-process where a test must act at a precise point of a run."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import pytest
import redis
import yaml
from conftest import collection_util, dump_redis, run_ansible_module, start_redis
from reclaim_support import load_reclaim_module, run_module_main, run_reclaim

STREAM = "quantum:stream:trade.intent"
GROUP = "execution"
LIVE = "execution-1"
DEAD_LETTER = "quantum:stream:trade.intent.dead"
RECLAIM = "redis_stream_reclaim"


def fill(
    client: redis.Redis, n: int, consumer: str, *, stream: str = STREAM, first_ms: int | None = None
) -> list[str]:
    """n new entries (ids from first_ms, one ms apart, when given), read by `consumer` and
    never acknowledged: the PEL of a dead consumer."""
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        entry_id = f"{first_ms + i}-0" if first_ms is not None else "*"
        pipe.xadd(stream, {"n": str(i), "side": "BUY"}, id=entry_id)
    ids = pipe.execute()
    with contextlib.suppress(redis.ResponseError):
        client.xgroup_create(stream, GROUP, id="0")
    client.xreadgroup(GROUP, consumer, {stream: ">"}, count=n)
    return ids


def pel(client: redis.Redis, stream: str = STREAM) -> dict[str, tuple[str, int]]:
    """{id: (consumer, delivery count)} of the whole group."""
    return {
        p["message_id"]: (p["consumer"], p["times_delivered"])
        for p in client.xpending_range(stream, GROUP, "-", "+", 10**6)
    }


def consumers(client: redis.Redis, stream: str = STREAM) -> dict[str, int]:
    return {c["name"]: c["pending"] for c in client.xinfo_consumers(stream, GROUP)}


def args(redis_server: Any, **extra: Any) -> dict[str, Any]:
    base = {"connection": redis_server.connection, "stream": STREAM, "group": GROUP, "claim_to": LIVE}
    base.update(extra)
    return base


def settle() -> None:
    """Let selected consumers be idle longer than the guard's clock tolerance."""
    time.sleep(0.02)


# -- bad input: one sentence naming the option, nothing changed ------------------------------

BAD_INPUT = [
    ({"consumers": ["dead"], "batch_size": 0}, "batch_size must be between 1 and 10000"),
    ({"consumers": ["dead"], "batch_size": 10001}, "batch_size must be between 1 and 10000"),
    ({}, "Give consumers, min_idle_ms or both"),
    ({"consumers": []}, "Give consumers, min_idle_ms or both"),
    ({"min_idle_ms": -1}, "min_idle_ms must be 0 or more"),
    ({"consumers": ["dead"], "plan_id_cap": -1}, "plan_id_cap must be 0 or more"),
    ({"consumers": ["dead"], "claim_to": ""}, "claim_to must not be empty"),
    (
        {"consumers": ["dead"], "dead_letter": {"stream": DEAD_LETTER}},
        "dead_letter needs max_age_ms, max_deliveries",
    ),
    (
        {"consumers": ["dead"], "dead_letter": {"stream": DEAD_LETTER, "max_age_ms": -5}},
        "dead_letter.max_age_ms must be 0 or more",
    ),
    (
        {"consumers": ["dead"], "dead_letter": {"stream": DEAD_LETTER, "max_deliveries": -1}},
        "dead_letter.max_deliveries must be 0 or more",
    ),
    (
        {"consumers": ["dead"], "dead_letter": {"stream": STREAM, "max_deliveries": 3}},
        "dead_letter.stream must differ from stream",
    ),
    ({"consumers": ["dead"], "group": "nope"}, "Consumer group nope does not exist on stream"),
    ({"consumers": ["dead"], "stream": "no:such:stream"}, "Stream no:such:stream does not exist"),
    (
        {"consumers": ["dead"], "stream": "a:hash"},
        "Key a:hash is a hash, not a stream: check the stream option",
    ),
    (
        {"consumers": ["dead"], "dead_letter": {"stream": "a:hash", "max_age_ms": 1}},
        "Key a:hash is a hash, not a stream: check dead_letter.stream",
    ),
]


@pytest.mark.parametrize(("extra", "message"), BAD_INPUT, ids=[m for _, m in BAD_INPUT])
def test_bad_input_fails_with_one_sentence_and_changes_nothing(redis_server, redis_client, extra, message):
    fill(redis_client, 5, "dead")
    redis_client.hset("a:hash", mapping={"k": "v"})
    settle()
    before = dump_redis(redis_client)
    result = run_ansible_module("redis_stream_reclaim", args(redis_server, **extra), expect_failure=True)
    assert message in result["msg"]
    assert result["msg"].endswith(".")
    assert dump_redis(redis_client) == before


def test_redis_down_fails_naming_the_connection_options(redis_server, redis_client):
    from conftest import free_loopback_port

    result = run_ansible_module(
        "redis_stream_reclaim",
        args(redis_server, connection={"host": "127.0.0.1", "port": free_loopback_port()}, consumers=["x"]),
        expect_failure=True,
    )
    assert "check connection.host, connection.port" in result["msg"]


def test_password_protected_server(tmp_path_factory):
    server = start_redis(tmp_path_factory, "--requirepass", "s3cret-pw")
    try:
        client = server.client(password="s3cret-pw")
        fill(client, 4, "dead")
        settle()
        connection = {"host": server.host, "port": server.port, "password": "s3cret-pw", "db": 0}
        result = run_ansible_module(
            "redis_stream_reclaim",
            {
                "connection": connection,
                "stream": STREAM,
                "group": GROUP,
                "claim_to": LIVE,
                "consumers": ["dead"],
            },
        )
        assert result["totals"]["moved"] == 4
        assert "s3cret-pw" not in str(result)
        wrong = dict(connection, password="wrong")
        failed = run_ansible_module(
            "redis_stream_reclaim",
            {"connection": wrong, "stream": STREAM, "group": GROUP, "claim_to": LIVE, "consumers": ["dead"]},
            expect_failure=True,
        )
        assert "refused authentication" in failed["msg"]
        assert "wrong" not in failed["msg"]
    finally:
        server.stop()


def test_db_option_selects_the_database(redis_server, redis_client):
    other = redis_server.client(db=3)
    fill(other, 3, "dead")
    settle()
    result = run_ansible_module(
        "redis_stream_reclaim",
        args(redis_server, connection=dict(redis_server.connection, db=3), consumers=["dead"]),
    )
    assert result["totals"]["moved"] == 3
    assert consumers(other) == {"dead": 0, LIVE: 3}
    other.flushdb()


# -- moving ------------------------------------------------------------------------------------


def test_moves_named_consumer_keeping_delivery_counts_then_is_idempotent(redis_server, redis_client):
    ids = fill(redis_client, 30, "dead")
    # Deliver some entries twice more so that counts differ from entry to entry.
    redis_client.xclaim(STREAM, GROUP, "dead", 0, ids[:5])
    redis_client.xclaim(STREAM, GROUP, "dead", 0, ids[:2])
    settle()
    counts_before = {i: d for i, (_, d) in pel(redis_client).items()}
    result = run_ansible_module(
        "redis_stream_reclaim", args(redis_server, consumers=["dead"], plan_id_cap=10)
    )
    assert result["changed"] is True
    dead = result["consumers"]["dead"]
    assert (dead["pending_before"], dead["moved"], dead["dead_lettered"], dead["deleted"]) == (30, 30, 0, 0)
    assert dead["ids"] == ids[:10]
    assert dead["retired"] is False and dead["retire_skipped_reason"] == "retire is false"
    after = pel(redis_client)
    assert {i: c for i, (c, _) in after.items()} == dict.fromkeys(ids, LIVE)
    assert {i: d for i, (_, d) in after.items()} == counts_before
    assert result["totals"] == {
        "moved": 30,
        "dead_lettered": 0,
        "deleted": 0,
        "retired": 0,
        "consumers_selected": 1,
    }
    again = run_ansible_module("redis_stream_reclaim", args(redis_server, consumers=["dead"]))
    assert again["changed"] is False
    assert again["consumers"]["dead"]["moved"] == 0


def test_min_idle_ms_selects_idle_consumers_but_never_claim_to_or_busy_ones(redis_server, redis_client):
    fill(redis_client, 4, "old-a")
    fill(redis_client, 3, "old-b")
    fill(redis_client, 2, LIVE)
    fill(redis_client, 5, "busy")
    stop = threading.Event()

    def keep_busy() -> None:
        client = redis_server.client()
        while not stop.is_set():
            # Re-reading its own PEL resets its idle time (an empty ">" read does not, on 7.0).
            client.xreadgroup(GROUP, "busy", {STREAM: "0"}, count=1)
            time.sleep(0.05)

    worker = threading.Thread(target=keep_busy, daemon=True)
    worker.start()
    time.sleep(0.4)
    try:
        result = run_ansible_module("redis_stream_reclaim", args(redis_server, min_idle_ms=300, retire=True))
    finally:
        stop.set()
        worker.join()
    assert set(result["consumers"]) == {"old-a", "old-b"}
    assert result["totals"]["moved"] == 7 and result["totals"]["retired"] == 2
    assert consumers(redis_client) == {LIVE: 9, "busy": 5}


def test_union_of_names_and_min_idle_and_absent_names(redis_server, redis_client):
    fill(redis_client, 4, "old-a")
    time.sleep(0.3)
    fill(redis_client, 2, "named-fresh")
    settle()
    result = run_reclaim(
        redis_client, args(redis_server, consumers=["named-fresh", "ghost"], min_idle_ms=200)
    )
    assert set(result["consumers"]) == {"named-fresh", "ghost", "old-a"}
    assert result["consumers"]["ghost"]["skipped_reason"].startswith("absent")
    assert result["consumers"]["ghost"]["pending_before"] is None
    assert result["totals"] == {
        "moved": 6,
        "dead_lettered": 0,
        "deleted": 0,
        "retired": 0,
        "consumers_selected": 2,
    }


def test_small_batches_and_plan_id_cap(redis_server, redis_client):
    ids = fill(redis_client, 25, "dead")
    settle()
    result = run_ansible_module(
        "redis_stream_reclaim", args(redis_server, consumers=["dead"], batch_size=4, plan_id_cap=6)
    )
    assert result["consumers"]["dead"]["moved"] == 25
    assert result["consumers"]["dead"]["ids"] == ids[:6]
    # select + 7 batches (4 * 7 >= 25) + nothing else
    assert result["stats"]["calls"] == 1 + 7
    zero_cap = run_reclaim(redis_client, args(redis_server, consumers=[LIVE], plan_id_cap=0))
    assert zero_cap["consumers"][LIVE]["ids"] == []


def test_one_batch_larger_than_lua_unpack_limit(redis_server, redis_client):
    scripts = load_reclaim_module()
    assert scripts.MAX_BATCH_SIZE == 10000
    fill(redis_client, 9500, "dead")
    settle()
    result = run_reclaim(redis_client, args(redis_server, consumers=["dead"], batch_size=10000))
    assert result["consumers"]["dead"]["moved"] == 9500
    assert result["stats"]["calls"] == 1 + 1
    assert consumers(redis_client) == {"dead": 0, LIVE: 9500}


def test_entries_deleted_from_the_stream_are_reported_not_lost(redis_server, redis_client):
    ids = fill(redis_client, 10, "dead")
    redis_client.xdel(STREAM, ids[2], ids[7])
    settle()
    plan = run_ansible_module(
        "redis_stream_reclaim", args(redis_server, consumers=["dead"], retire=True), check=True
    )
    result = run_ansible_module("redis_stream_reclaim", args(redis_server, consumers=["dead"], retire=True))
    for outcome in (plan, result):
        dead = outcome["consumers"]["dead"]
        assert (dead["moved"], dead["deleted"], dead["retired"]) == (8, 2, True)
        assert dead["deleted_ids"] == [ids[2], ids[7]]
        assert dead["ids"] == [i for i in ids if i not in (ids[2], ids[7])]
        assert outcome["totals"]["deleted"] == 2
    assert set(pel(redis_client)) == set(ids) - {ids[2], ids[7]}


def test_deleted_entries_found_by_lookup_on_servers_whose_xclaim_keeps_them(redis_server, redis_client):
    """Redis < 7.0 claims deleted entries: the verify path must find them by itself."""
    module = load_reclaim_module()
    ids = fill(redis_client, 6, "dead")
    redis_client.xdel(STREAM, ids[1])
    settle()
    from reclaim_support import reclaim_params

    params = reclaim_params(args(redis_server, consumers=["dead"]))
    reclaim = module.StreamReclaim(redis_client, params)
    reclaim.verify_exists = True
    result = reclaim.run()
    assert (result["consumers"]["dead"]["moved"], result["consumers"]["dead"]["deleted"]) == (5, 1)
    assert result["consumers"]["dead"]["deleted_ids"] == [ids[1]]


# -- check mode and diff ----------------------------------------------------------------------


def build_mixed_group(client: redis.Redis) -> dict[str, list[str]]:
    now_ms = int(time.time() * 1000)
    old = fill(client, 6, "dead-old", first_ms=now_ms - 3_600_000)  # an hour old
    fresh = fill(client, 7, "dead-fresh")
    many = fill(client, 4, "dead-redelivered")
    for _ in range(4):
        client.xclaim(STREAM, GROUP, "dead-redelivered", 0, many[:2])
    own = fill(client, 3, LIVE)
    for _ in range(3):
        client.xclaim(STREAM, GROUP, LIVE, 0, own[:1])
    client.xdel(STREAM, fresh[3])
    client.xadd(DEAD_LETTER, {"earlier": "yes"})
    return {"old": old, "fresh": fresh, "many": many, "own": own}


def test_check_mode_changes_nothing_and_its_plan_is_what_the_run_does(redis_server, redis_client):
    build_mixed_group(redis_client)
    settle()
    options = args(
        redis_server,
        consumers=["dead-old", "dead-fresh", "dead-redelivered", LIVE, "ghost"],
        dead_letter={"stream": DEAD_LETTER, "max_age_ms": 600_000, "max_deliveries": 3},
        retire=True,
        plan_id_cap=3,
    )
    before = dump_redis(redis_client)
    plan = run_ansible_module("redis_stream_reclaim", options, check=True, diff=True)
    assert dump_redis(redis_client) == before
    assert plan["changed"] is True
    result = run_ansible_module("redis_stream_reclaim", options, diff=True)
    for key in ("totals", "diff"):
        assert plan[key] == result[key], key
    for name, planned in plan["consumers"].items():
        done = result["consumers"][name]
        # idle_ms is the only field that may differ: time passed between the two runs.
        assert {k: v for k, v in planned.items() if k != "idle_ms"} == {
            k: v for k, v in done.items() if k != "idle_ms"
        }, name
    assert result["totals"] == {
        "moved": 8,
        "dead_lettered": 9,
        "deleted": 1,
        "retired": 3,
        "consumers_selected": 4,
    }
    assert result["consumers"][LIVE]["retire_skipped_reason"] == "claim_to is never retired"
    assert result["diff"]["before"]["dead-old"] == {"pending": 6, "present": True}
    assert result["diff"]["after"]["dead-old"] == {"pending": 0, "present": False}
    assert result["diff"]["before"][LIVE] == {"pending": 3, "present": True}
    # 2 own entries stay (the one delivered 4 times is dead-lettered); 6 + 2 moved in
    assert result["diff"]["after"][LIVE] == {"pending": 2 + 8, "present": True}
    assert result["diff"]["after"]["ghost"] == {"pending": 0, "present": False}

    second = dump_redis(redis_client)
    again_plan = run_ansible_module("redis_stream_reclaim", options, check=True)
    again = run_ansible_module("redis_stream_reclaim", options)
    assert again_plan["changed"] is False and again["changed"] is False
    assert dump_redis(redis_client) == second


def test_diff_shows_claim_to_absent_before(redis_server, redis_client):
    fill(redis_client, 2, "dead")
    settle()
    result = run_ansible_module("redis_stream_reclaim", args(redis_server, consumers=["dead"]), diff=True)
    assert result["diff"]["before"] == {
        "dead": {"pending": 2, "present": True},
        LIVE: {"pending": 0, "present": False},
    }
    assert result["diff"]["after"] == {
        "dead": {"pending": 0, "present": True},
        LIVE: {"pending": 2, "present": True},
    }
    no_diff = run_ansible_module("redis_stream_reclaim", args(redis_server, consumers=["dead"]))
    assert "diff" not in no_diff


# -- dead-letter ------------------------------------------------------------------------------


def test_dead_letter_copies_with_origin_and_acknowledges(redis_server, redis_client):
    groups = build_mixed_group(redis_client)
    settle()
    dl_before = redis_client.xrange(DEAD_LETTER)
    pel_before = pel(redis_client)
    options = args(
        redis_server,
        consumers=["dead-old", "dead-fresh", "dead-redelivered", LIVE],
        dead_letter={"stream": DEAD_LETTER, "max_age_ms": 600_000, "max_deliveries": 3},
    )
    result = run_ansible_module("redis_stream_reclaim", options)
    copies = redis_client.xrange(DEAD_LETTER)[len(dl_before) :]
    assert len(copies) == result["totals"]["dead_lettered"] == 9
    by_origin = {fields["origin_id"]: fields for _, fields in copies}
    expected = set(groups["old"]) | set(groups["many"][:2]) | set(groups["own"][:1])
    assert set(by_origin) == expected
    after = pel(redis_client)
    for origin_id, fields in by_origin.items():
        consumer, deliveries = pel_before[origin_id]
        assert origin_id not in after, "dead-lettered entries are acknowledged"
        assert fields["origin_stream"] == STREAM and fields["origin_group"] == GROUP
        assert fields["origin_consumer"] == consumer
        assert int(fields["delivery_count"]) == deliveries
        assert fields["side"] == "BUY" and "n" in fields
        entry_ms = int(origin_id.split("-")[0])
        assert abs(int(fields["age_ms"]) - (time.time() * 1000 - entry_ms)) < 60_000
    # claim_to's own PEL: only its redelivered entry went; the other two stay with it.
    assert result["consumers"][LIVE]["moved"] == 0
    assert result["consumers"][LIVE]["dead_lettered"] == 1
    assert sum(1 for c, _ in after.values() if c == LIVE) == 2 + 8


def test_max_age_only_and_max_deliveries_only(redis_server, redis_client):
    now_ms = int(time.time() * 1000)
    fill(redis_client, 3, "old", first_ms=now_ms - 10_000)
    young = fill(redis_client, 2, "young")
    redis_client.xclaim(STREAM, GROUP, "young", 0, young[:1])
    settle()
    by_age = run_reclaim(
        redis_client,
        args(
            redis_server, consumers=["old", "young"], dead_letter={"stream": DEAD_LETTER, "max_age_ms": 5000}
        ),
        check=True,
    )
    assert by_age["consumers"]["old"]["dead_lettered"] == 3
    assert by_age["consumers"]["young"]["dead_lettered"] == 0
    by_count = run_reclaim(
        redis_client,
        args(
            redis_server, consumers=["old", "young"], dead_letter={"stream": DEAD_LETTER, "max_deliveries": 1}
        ),
    )
    assert by_count["consumers"]["old"]["dead_lettered"] == 0
    assert by_count["consumers"]["young"]["dead_lettered"] == 1
    assert by_count["totals"]["moved"] == 4


def test_claim_to_listed_without_dead_letter_is_left_alone(redis_server, redis_client):
    fill(redis_client, 3, LIVE)
    settle()
    before = dump_redis(redis_client)
    result = run_ansible_module("redis_stream_reclaim", args(redis_server, consumers=[LIVE], retire=True))
    assert result["changed"] is False
    assert "no dead_letter policy" in result["consumers"][LIVE]["skipped_reason"]
    assert result["consumers"][LIVE]["retired"] is False
    assert dump_redis(redis_client) == before


# -- consumers that come back to life -----------------------------------------------------------


def test_consumer_active_between_selection_and_retire_is_not_retired(redis_server, redis_client):
    fill(redis_client, 5, "zombie")
    fill(redis_client, 5, "dead")
    settle()

    def hook(event: str, consumer: str | None) -> None:
        if event == "retire" and consumer == "zombie":
            redis_client.xreadgroup(GROUP, "zombie", {STREAM: "0"}, count=1)

    result = run_reclaim(
        redis_client, args(redis_server, consumers=["zombie", "dead"], retire=True), hook=hook
    )
    zombie = result["consumers"]["zombie"]
    assert zombie["moved"] == 5 and zombie["retired"] is False
    assert zombie["retire_skipped_reason"].startswith("became active during the run")
    assert result["consumers"]["dead"]["retired"] is True
    assert "zombie" in consumers(redis_client) and "dead" not in consumers(redis_client)


def test_consumer_active_mid_drain_is_left_alone_from_then_on(redis_server, redis_client):
    ids = fill(redis_client, 20, "zombie")
    settle()
    reads: list[Any] = []

    def hook(event: str, consumer: str | None) -> None:
        if event == "batch" and consumer == "zombie" and not reads:
            reads.append(redis_client.xreadgroup(GROUP, "zombie", {STREAM: "0"}, count=100))

    result = run_reclaim(
        redis_client, args(redis_server, consumers=["zombie"], retire=True, batch_size=5), hook=hook
    )
    zombie = result["consumers"]["zombie"]
    assert zombie["moved"] == 5
    assert zombie["skipped_reason"].startswith("became active during the run")
    assert zombie["retired"] is False and zombie["retire_skipped_reason"].startswith("not touched")
    assert [e[0] for e in reads[0][0][1]] == ids[5:]
    assert consumers(redis_client) == {"zombie": 15, LIVE: 5}


def test_consumer_active_at_selection_is_not_touched(redis_server, redis_client):
    """A consumer seen within GUARD_TOLERANCE_MS of the selection is left alone. The reclaim
    follows the read at once, but a loaded machine can delay it past the tolerance: such an
    attempt must move the entries (the consumer was idle by then) and is tried again, until one
    selection came within the tolerance."""
    tolerance = collection_util("redis_stream_scripts").GUARD_TOLERANCE_MS
    attempts = 20
    for _ in range(attempts):
        redis_client.delete(STREAM)
        fill(redis_client, 3, "busy")
        result = run_reclaim(redis_client, args(redis_server, consumers=["busy"], retire=True))
        busy = result["consumers"]["busy"]
        if busy["idle_ms"] < tolerance:
            assert busy["skipped_reason"].startswith("active at selection"), busy
            assert result["changed"] is False and consumers(redis_client) == {"busy": 3}
            return
        assert busy["moved"] == 3, busy  # selected after the tolerance: idle, so reclaimed
    pytest.fail(f"no selection came within {tolerance} ms of the read in {attempts} attempts")


def test_retire_script_refuses_a_consumer_with_pending_entries(redis_server, redis_client):
    """XGROUP DELCONSUMER alone would drop these 3 entries: the script must refuse."""
    StreamScripts = collection_util("redis_stream_scripts").StreamScripts

    fill(redis_client, 3, "holder")
    settle()
    scripts = StreamScripts(redis_client)
    now_ms, snapshot = scripts.select(STREAM, GROUP, None)
    guard = now_ms - snapshot["holder"]["idle_ms"]
    assert scripts.retire(STREAM, GROUP, "holder", guard) == ("pending", 3)
    assert scripts.retire(STREAM, GROUP, "ghost", guard) == ("absent", None)
    redis_client.xack(STREAM, GROUP, *pel(redis_client))
    assert scripts.retire(STREAM, GROUP, "holder", guard) == ("retired", 0)


def test_guard_trips_on_xreadgroup_but_not_on_inspection(redis_server, redis_client):
    StreamScripts = collection_util("redis_stream_scripts").StreamScripts

    fill(redis_client, 3, "c")
    settle()
    scripts = StreamScripts(redis_client)
    now_ms, snapshot = scripts.select(STREAM, GROUP, None)
    guard = now_ms - snapshot["c"]["idle_ms"]
    # What the module itself does to look at a consumer must not look like activity.
    redis_client.xpending_range(STREAM, GROUP, "-", "+", 10, consumername="c")
    redis_client.xinfo_consumers(STREAM, GROUP)
    time.sleep(0.02)
    common = {
        "stream": STREAM,
        "group": GROUP,
        "consumer": "c",
        "claim_to": LIVE,
        "guard_ms": guard,
        "batch_size": 10,
        "cursor": "-",
        "dead_letter_stream": None,
        "max_age_ms": None,
        "max_deliveries": None,
        "ids_wanted": 0,
        "deleted_ids_wanted": 0,
        "verify_exists": False,
    }
    assert scripts.batch(dry_run=True, **common).status == "ok"
    # A revived consumer first reads its own PEL (ID 0): that resets its idle time. (On Redis
    # 7.0 an XREADGROUP ">" that delivers nothing does not.)
    redis_client.xreadgroup(GROUP, "c", {STREAM: "0"}, count=1)
    assert scripts.batch(dry_run=False, **common).status == "active"
    assert consumers(redis_client) == {"c": 3}


def test_dead_letter_work_counts_four_times_a_move_in_a_batch(redis_server, redis_client):
    ids = fill(redis_client, 10, "dead")
    settle()
    options = args(
        redis_server,
        consumers=["dead"],
        batch_size=8,
        dead_letter={"stream": DEAD_LETTER, "max_deliveries": 0},
    )
    plan = run_reclaim(redis_client, options, check=True)
    result = run_reclaim(redis_client, options)
    # 2 dead-lettered entries (4 units each) per call of 8 units: 5 calls after the selection.
    assert result["stats"]["calls"] == plan["stats"]["calls"] == 1 + 5
    assert plan["consumers"]["dead"]["ids"] == result["consumers"]["dead"]["ids"] == ids
    assert result["totals"]["dead_lettered"] == 10
    assert [f["origin_id"] for _, f in redis_client.xrange(DEAD_LETTER)] == ids


# -- the XAUTOCLAIM fast path -----------------------------------------------------------------


def idle_of(client: redis.Redis) -> dict[str, int]:
    entries = client.xpending_range(STREAM, GROUP, "-", "+", 10**6)
    return {p["message_id"]: p["time_since_delivered"] for p in entries}


def assert_plan_is_the_run(plan: dict, result: dict, retire_calls: int = 0) -> None:
    """Same counts, ids, batches and fast batches; check mode decides retirement without a
    server call, the real run makes `retire_calls` of them."""
    assert plan["totals"] == result["totals"]
    assert plan["stats"]["calls"] + retire_calls == result["stats"]["calls"]
    assert plan["stats"]["fast_path_batches"] == result["stats"]["fast_path_batches"]
    for name, planned in plan["consumers"].items():
        done = result["consumers"][name]
        assert {k: v for k, v in planned.items() if k != "idle_ms"} == {
            k: v for k, v in done.items() if k != "idle_ms"
        }, name


def test_fast_path_moves_a_sole_owner_pel_keeping_delivery_counts(redis_server, redis_client):
    # claim_to already holds older entries: below the dead consumer's first one, out of reach.
    own = fill(redis_client, 3, LIVE)
    ids = fill(redis_client, 25, "dead")
    redis_client.xclaim(STREAM, GROUP, "dead", 0, ids[:4])
    redis_client.xclaim(STREAM, GROUP, "dead", 0, ids[10:11])
    settle()
    counts_before = {i: d for i, (_, d) in pel(redis_client).items()}
    options = args(redis_server, consumers=["dead"], batch_size=4, plan_id_cap=6, retire=True)
    before = dump_redis(redis_client)
    plan = run_reclaim(redis_client, options, check=True)
    assert dump_redis(redis_client) == before
    result = run_reclaim(redis_client, options)
    # select + 7 batches of 4 (the last sees 1 < 4 entries: done) + retire; every batch fast
    assert result["stats"]["calls"] == 1 + 7 + 1
    assert result["stats"]["fast_path_batches"] == 7
    dead = result["consumers"]["dead"]
    assert (dead["moved"], dead["deleted"], dead["retired"]) == (25, 0, True)
    assert dead["ids"] == ids[:6]
    after = pel(redis_client)
    assert {i: c for i, (c, _) in after.items()} == dict.fromkeys(own + ids, LIVE)
    assert {i: d for i, (_, d) in after.items()} == counts_before
    assert_plan_is_the_run(plan, result, retire_calls=1)


def test_fast_path_not_taken_while_another_consumer_holds_entries(redis_server, redis_client):
    ids = fill(redis_client, 12, "dead")
    other = fill(redis_client, 3, "live-other")
    redis_client.xclaim(STREAM, GROUP, "live-other", 0, other[:1])
    settle()
    before = pel(redis_client)
    options = args(redis_server, consumers=["dead"], batch_size=5)
    plan = run_reclaim(redis_client, options, check=True)
    result = run_reclaim(redis_client, options)
    assert result["stats"]["fast_path_batches"] == 0
    assert result["totals"]["moved"] == 12
    after = pel(redis_client)
    # The live consumer's entries never move; counts are untouched everywhere.
    assert {i: after[i] for i in other} == {i: before[i] for i in other}
    assert {i: c for i, (c, _) in after.items() if i in ids} == dict.fromkeys(ids, LIVE)
    assert {i: d for i, (_, d) in after.items()} == {i: d for i, (_, d) in before.items()}
    assert_plan_is_the_run(plan, result)


def test_fast_path_not_taken_when_claim_to_holds_later_entries(redis_server, redis_client):
    """XAUTOCLAIM from the dead consumer's first entry would reach claim_to's own newer
    entries (and reset their idle time): the general path must be used."""
    ids = fill(redis_client, 8, "dead")
    own = fill(redis_client, 3, LIVE)
    time.sleep(0.2)
    result = run_reclaim(redis_client, args(redis_server, consumers=["dead"], batch_size=3))
    assert result["stats"]["fast_path_batches"] == 0
    assert result["consumers"]["dead"]["moved"] == 8
    assert consumers(redis_client) == {"dead": 0, LIVE: 11}
    idle = idle_of(redis_client)
    assert min(idle[i] for i in own) >= 200, "claim_to's own entries were claimed again"
    assert max(idle[i] for i in ids) < 200


def test_fast_path_stops_when_a_consumer_starts_holding_entries_mid_run(redis_server, redis_client):
    ids = fill(redis_client, 20, "dead")
    settle()
    taken: list[str] = []

    def hook(event: str, consumer: str | None) -> None:
        if event == "batch" and not taken:
            # A consumer of the group reads new entries after the first (fast) batch.
            new = [redis_client.xadd(STREAM, {"n": "new"}) for _ in range(3)]
            redis_client.xreadgroup(GROUP, "live-other", {STREAM: ">"}, count=10)
            taken.extend(new)

    result = run_reclaim(redis_client, args(redis_server, consumers=["dead"], batch_size=5), hook=hook)
    # Batch 1 fast; then live-other holds entries: batches 2-5 general (the 5th finds nothing).
    assert result["stats"]["fast_path_batches"] == 1
    assert result["stats"]["calls"] == 1 + 5
    assert result["consumers"]["dead"]["moved"] == 20
    owners = {i: c for i, (c, _) in pel(redis_client).items()}
    assert owners == dict.fromkeys(ids, LIVE) | dict.fromkeys(taken, "live-other")


def test_fast_path_accounts_for_deleted_entries(redis_server, redis_client):
    ids = fill(redis_client, 13, "dead")
    redis_client.xdel(STREAM, ids[1], ids[2], ids[9])
    redis_client.xtrim(STREAM, minid=ids[1], approximate=False)  # trims ids[0], not XDEL
    settle()
    gone = [ids[0], ids[1], ids[2], ids[9]]
    options = args(redis_server, consumers=["dead"], batch_size=4, retire=True)
    plan = run_reclaim(redis_client, options, check=True)
    result = run_reclaim(redis_client, options)
    dead = result["consumers"]["dead"]
    assert (dead["moved"], dead["deleted"], dead["retired"]) == (9, 4, True)
    assert dead["deleted_ids"] == gone
    assert dead["ids"] == [i for i in ids if i not in gone]
    assert result["totals"]["deleted"] == 4
    # 13 entries, 4 per call whether claimed or found deleted: 4 batches, all fast.
    assert result["stats"]["fast_path_batches"] == 4
    assert set(pel(redis_client)) == set(ids) - set(gone)
    assert_plan_is_the_run(plan, result, retire_calls=1)


def test_xautoclaim_counts_deleted_entries_against_count(redis_server, redis_client):
    """What the fast path relies on to keep its batches bounded (and cut like the general
    path's): on this server a deleted entry XAUTOCLAIM drops uses up one unit of COUNT."""
    ids = fill(redis_client, 6, "dead")
    redis_client.xdel(STREAM, ids[0], ids[1])
    redis_client.set_response_callback("XAUTOCLAIM", lambda response, **options: response)
    cursor, claimed, deleted = redis_client.execute_command(
        "XAUTOCLAIM", STREAM, GROUP, LIVE, 0, "0-0", "COUNT", 3, "JUSTID"
    )
    assert (claimed, deleted, cursor) == ([ids[2]], [ids[0], ids[1]], ids[3])


def test_fast_path_never_with_a_dead_letter_policy(redis_server, redis_client):
    fill(redis_client, 10, "dead")
    settle()
    policy = {"stream": DEAD_LETTER, "max_age_ms": 10**9}
    options = args(redis_server, consumers=["dead"], batch_size=4, dead_letter=policy)
    result = run_reclaim(redis_client, options)
    assert result["totals"]["moved"] == 10
    assert result["stats"]["fast_path_batches"] == 0


# -- a failure reports what had been done before it ---------------------------------------------

NOTHING = {"moved": 0, "dead_lettered": 0, "deleted": 0, "retired": 0, "consumers_selected": 0}


@contextlib.contextmanager
def acl_user(client: redis.Redis, name: str, *rules: str) -> Any:
    """A Redis user holding `rules` for the duration of the block; its `connection` option."""
    password = f"pw-{name}"
    client.execute_command("ACL", "SETUSER", name, "reset", "on", f">{password}", *rules)
    try:
        yield {"username": name, "password": password}
    finally:
        client.execute_command("ACL", "DELUSER", name)


def test_a_failure_after_moving_reports_the_partial_work(redis_server, redis_client):
    """The user may move entries but not retire consumers: the entries are moved, retiring
    fails, and the result says both, with the same keys as a success."""
    fill(redis_client, 5, "dead")
    fill(redis_client, 2, "old")
    settle()
    with acl_user(redis_client, "no-retire", "~*", "+@all", "-xgroup|delconsumer") as user:
        connection = {**redis_server.connection, **user}
        result = run_ansible_module(
            "redis_stream_reclaim",
            args(redis_server, connection=connection, consumers=["dead", "old"], retire=True),
            expect_failure=True,
        )
    assert result["msg"] == (
        "Moved 5 entries of dead and 2 entries of old to execution-1, then could not retire dead: "
        "Redis user 'no-retire' may not run XGROUP DELCONSUMER on quantum:stream:trade.intent: "
        "add +xgroup|delconsumer to its ACL (see docs/acl.md)."
    )
    assert result["changed"] is True
    assert result["totals"] == {**NOTHING, "moved": 7, "consumers_selected": 2}
    dead = result["consumers"]["dead"]
    assert (dead["pending_before"], dead["moved"], dead["retired"]) == (5, 5, False)
    assert result["consumers"]["old"]["moved"] == 2
    assert result["claim_to"] == LIVE and result["stats"]["calls"] >= 3
    assert consumers(redis_client) == {"dead": 0, "old": 0, LIVE: 7}


def test_a_failure_between_batches_reports_the_batches_done(redis_server, redis_client):
    """Someone deletes the stream after the first batch: the next batch refuses, and the run
    reports the batch it had moved."""
    fill(redis_client, 10, "dead")
    settle()
    module = load_reclaim_module()

    def hook(event: str, consumer: str | None) -> None:
        if event == "batch":
            redis_client.delete(STREAM)

    with pytest.raises(module.ReclaimFailed) as failed:
        run_reclaim(redis_client, args(redis_server, consumers=["dead"], batch_size=4), hook=hook)
    assert failed.value.msg == (
        "Moved 4 entries of dead to execution-1, then could not move the entries of dead to execution-1: "
        "Stream quantum:stream:trade.intent does not exist: check the stream option."
    )
    partial = failed.value.partial
    assert partial["changed"] is True
    assert partial["totals"]["moved"] == 4
    assert partial["consumers"]["dead"]["moved"] == 4
    assert partial["consumers"]["dead"]["retired"] is False


def test_a_failure_in_check_mode_says_nothing_was_changed(redis_server, redis_client):
    fill(redis_client, 3, "dead")
    settle()
    before = dump_redis(redis_client)
    with acl_user(redis_client, "no-xrange", "~*", "+@all", "-xrange") as user:
        connection = {**redis_server.connection, **user}
        options = args(redis_server, connection=connection, consumers=["dead"])
        result = run_module_main(RECLAIM, options, check=True)
    assert result["msg"] == (
        "Could not plan to move the entries of dead to execution-1 (check mode, nothing was changed): "
        "Redis user 'no-xrange' may not run XRANGE on quantum:stream:trade.intent: "
        "add +xrange to its ACL (see docs/acl.md)."
    )
    assert result["changed"] is False
    assert result["consumers"]["dead"]["moved"] == 0
    assert dump_redis(redis_client) == before


def test_a_failure_before_any_work_returns_the_same_keys(redis_server, redis_client):
    from conftest import free_loopback_port

    down = {"host": "127.0.0.1", "port": free_loopback_port(), "connect_timeout": 1}
    for extra in ({"batch_size": 0}, {"connection": down}):
        result = run_module_main(RECLAIM, args(redis_server, consumers=["dead"], **extra))
        assert result["failed"] is True
        assert result["changed"] is False
        assert result["consumers"] == {}
        assert result["totals"] == NOTHING
        assert result["claim_to"] == LIVE


# -- batch_size: one default, bounded -----------------------------------------------------------


def test_batch_size_has_one_documented_default():
    module = load_reclaim_module()
    documented = yaml.safe_load(module.DOCUMENTATION)["options"]["batch_size"]
    assert documented["default"] == module.DEFAULT_BATCH_SIZE == 2000
    assert module.argument_spec()["batch_size"]["default"] == 2000
    assert module.MAX_BATCH_SIZE == 10000
    assert documented["description"][0].startswith("Work per server call (1 to 10000)")


@pytest.mark.parametrize("batch_size", [0, -1, 10001])
def test_batch_size_out_of_range_fails_naming_it(redis_server, redis_client, batch_size):
    fill(redis_client, 3, "dead")
    settle()
    before = dump_redis(redis_client)
    result = run_module_main(RECLAIM, args(redis_server, consumers=["dead"], batch_size=batch_size))
    assert result["failed"] is True
    assert result["msg"] == f"batch_size must be between 1 and 10000, got {batch_size}."
    assert dump_redis(redis_client) == before


@pytest.mark.parametrize("batch_size", [1, 10000])
def test_batch_size_bounds_are_accepted(redis_server, redis_client, batch_size):
    fill(redis_client, 3, "dead")
    settle()
    result = run_module_main(RECLAIM, args(redis_server, consumers=["dead"], batch_size=batch_size))
    assert not result.get("failed"), result.get("msg")
    assert result["totals"]["moved"] == 3
