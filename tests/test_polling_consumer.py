"""A healthy consumer is never retired: a real redis-server, real consumers polling in
threads, redis_stream_info run in-process twice a window apart, then stage_verdicts and
consumer_recovery_plan, as the evidence and consumer_recovery roles chain them.

Found in trial: on Redis 7.0 an XREADGROUP that has nothing to deliver (`>` on a caught-up
group, BLOCK or not) does not reset the consumer's idle time, so a second consumer of a
stage polling every 200 ms looks as idle as a dead one; the plan retired it on a quiet,
healthy pipeline. Here it must be left alone on a healthy stage and on a stalled one, while a
consumer that sits on entries it never reads is still reclaimed, and one holding nothing that
made no read while entries waited for it is still retired."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis
import yaml
from conftest import PROJECT_ROOT, RedisServer, collection_util, load_project_file

rsi = collection_util("stream_info")
sh = load_project_file("filter_plugins/stream_health.py")
rm = load_project_file("filter_plugins/remediation.py")

PIPELINE = yaml.safe_load((PROJECT_ROOT / "inventory/testnet/group_vars/all/pipeline.yml").read_text())[
    "pipeline"
]
DECISIONS = "quantum:stream:ai.decision"
INTENTS = "quantum:stream:trade.intent"
RESULTS = "quantum:stream:trade.result"
POLL_BLOCK_MS = 200
# Short clocks keep each test near one second: the window between the two snapshots, the
# verdicts' stall threshold and the plan's min_idle_ms, all well below what the poller's idle
# time reaches on Redis 7.0.
WINDOW_S = 0.6
STALL_IDLE_MS = 300
MIN_IDLE_MS = 400


def snapshot(client: redis.Redis) -> dict:
    """redis_stream_info's result for the pipeline, computed in-process."""
    requested, problem = rsi.requested_from_pipeline(PIPELINE)
    assert problem is None
    info = rsi.StreamInfo(client, requested, 1000)
    info.collect()
    return {"changed": False, "server": info.server, "streams": info.streams, "missing": info.missing}


def version(result: dict) -> tuple[int, int]:
    major, minor = result["server"]["version"].split(".")[:2]
    return int(major), int(minor)


class Poller(threading.Thread):
    """A consumer's service loop: XREADGROUP ... COUNT 10 BLOCK 200, each entry forwarded to
    the output stream and acknowledged. `standard`: the Redis Streams recovery loop, its own
    PEL first (ID 0) until empty, then new entries (`>`); otherwise `>` from the start."""

    def __init__(self, server: RedisServer, stage: dict, consumer: str, standard: bool) -> None:
        super().__init__(daemon=True)
        self.client = server.client()
        self.stage, self.consumer, self.standard = stage, consumer, standard
        self.stopping = threading.Event()
        self.polls = 0

    def run(self) -> None:
        source, group = self.stage["input_stream"], self.stage["group"]
        position = "0" if self.standard else ">"
        while not self.stopping.is_set():
            reply = self.client.xreadgroup(
                group, self.consumer, {source: position}, count=10, block=POLL_BLOCK_MS
            )
            self.polls += 1
            entries = [entry for _stream, batch in reply or [] for entry in batch]
            for entry_id, fields in entries:
                self.client.xadd(self.stage["output_stream"], fields)
                self.client.xack(source, group, entry_id)
            if position == "0" and not entries:
                position = ">"

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)
        self.client.close()


@pytest.fixture
def pollers(redis_server: RedisServer) -> Iterator[list[Poller]]:
    started: list[Poller] = []
    yield started
    for poller in started:
        poller.stopping.set()
    for poller in started:
        poller.stop()


def start(pollers: list[Poller], server: RedisServer, stage: str, consumer: str, standard: bool) -> Poller:
    poller = Poller(server, next(s for s in PIPELINE["stages"] if s["name"] == stage), consumer, standard)
    poller.start()
    pollers.append(poller)
    return poller


def build_pipeline(client: redis.Redis) -> None:
    """The three streams with their groups, 5 decisions processed all the way through by the
    live consumers, one more by each of router-2 and router-3, two more router workers: caught
    up, nothing pending."""
    client.xgroup_create(DECISIONS, "router", id="$", mkstream=True)
    client.xgroup_create(INTENTS, "execution", id="$", mkstream=True)
    client.xadd(RESULTS, {"init": "1"})
    for worker, count in (("router-1", 5), ("router-2", 1), ("router-3", 1)):
        for n in range(count):
            client.xadd(DECISIONS, {"decision": f"{worker} {n}"})
        for entry_id, fields in client.xreadgroup("router", worker, {DECISIONS: ">"})[0][1]:
            client.xadd(INTENTS, fields)
            client.xack(DECISIONS, "router", entry_id)
    for entry_id, fields in client.xreadgroup("execution", "execution-1", {INTENTS: ">"})[0][1]:
        client.xadd(RESULTS, fields)
        client.xack(INTENTS, "execution", entry_id)


def judge(client: redis.Redis) -> tuple[dict, dict, list[dict]]:
    """Two snapshots a window apart; the verdicts and the reclaim plan made from them."""
    before = snapshot(client)
    time.sleep(WINDOW_S)
    after = snapshot(client)
    verdicts = sh.stage_verdicts(before, after, PIPELINE, stall_idle_ms=STALL_IDLE_MS)
    return after, verdicts, rm.consumer_recovery_plan(PIPELINE, after, verdicts, MIN_IDLE_MS)


def planned(plan: list[dict]) -> set[str]:
    return {name for stage in plan for name in stage["consumers"]}


def start_workers(pollers: list[Poller], server: RedisServer) -> list[Poller]:
    """router-2 reads new entries only (`>`), router-3 runs the standard loop (`0`, then `>`)."""
    return [
        start(pollers, server, "router", "router-2", standard=False),
        start(pollers, server, "router", "router-3", standard=True),
    ]


def test_pollers_on_a_quiet_healthy_pipeline_are_not_in_any_plan(redis_server, redis_client, pollers):
    build_pipeline(redis_client)
    start(pollers, redis_server, "router", "router-1", standard=True)
    start(pollers, redis_server, "execution", "execution-1", standard=True)
    workers = start_workers(pollers, redis_server)
    time.sleep(0.25)
    polls_before = [worker.polls for worker in workers]
    after, verdicts, plan = judge(redis_client)

    consumers = after["streams"][DECISIONS]["groups"]["router"]["consumers"]
    for worker, polls in zip(workers, polls_before, strict=True):
        assert worker.polls - polls >= 2, f"{worker.consumer} did poll during the window"
        assert consumers[worker.consumer]["pending"] == 0
        if version(after) < (7, 2):
            # What fooled the old plan: polling every 200 ms, yet idle all through the window.
            assert consumers[worker.consumer]["idle_ms"] >= WINDOW_S * 1000 > MIN_IDLE_MS
    assert {name: v["verdict"] for name, v in verdicts.items()} == {
        "ai_engine": "OK",
        "router": "OK",
        "execution": "OK",
    }
    assert not planned(plan) & {"router-2", "router-3"}
    assert plan == []
    left_alone = "\n".join(rm.consumer_recovery_left_alone(PIPELINE, after, verdicts, MIN_IDLE_MS))
    assert "router: router-2 left alone: its stage is OK" in left_alone
    assert "router: router-3 left alone: its stage is OK" in left_alone


def test_on_a_stalled_stage_the_dead_holder_is_reclaimed_the_pollers_left_alone(
    redis_server, redis_client, pollers
):
    """The incident's shape: router-1 hung holding 3 entries, router-0 (a previous deployment's
    name) holding 3 it will never read again; and router-2 and router-3, live workers, polling."""
    build_pipeline(redis_client)
    for n in range(6):
        redis_client.xadd(DECISIONS, {"decision": f"stuck {n}"})
    redis_client.xreadgroup("router", "router-1", {DECISIONS: ">"}, count=3)
    redis_client.xreadgroup("router", "router-0", {DECISIONS: ">"}, count=3)
    start(pollers, redis_server, "execution", "execution-1", standard=True)
    workers = start_workers(pollers, redis_server)
    time.sleep(STALL_IDLE_MS / 1000)  # router-1's PEL ages past the stall threshold
    polls_before = [worker.polls for worker in workers]
    after, verdicts, plan = judge(redis_client)

    for worker, polls in zip(workers, polls_before, strict=True):
        assert worker.polls - polls >= 2, f"{worker.consumer} did poll during the window"
    router = verdicts["router"]
    assert router["verdict"] == "STALLED", router["reason"]
    assert [d["name"] for d in router["dead_consumers"]] == ["router-0"]
    assert router["silent_consumers"] == []  # lag 0: nothing waited that a poll would have taken
    assert verdicts["execution"]["verdict"] == "OK"

    assert [p["stage"] for p in plan] == ["router"]
    assert plan[0]["consumers"] == ["router-0"]
    assert plan[0]["claim_to"] == "router-1"
    kept = {k["name"]: k["why"] for k in plan[0]["left_alone"]}
    assert set(kept) == {"router-2", "router-3"}
    for why in kept.values():
        assert "holds nothing, and" in why and "idle time does not prove a consumer dead" in why
        if version(after) < (7, 2):
            assert why.startswith("holds nothing, and on Redis 7.0")


def test_an_empty_consumer_that_made_no_read_while_entries_waited_is_retired(redis_server, redis_client):
    """Proof that does not rest on idle time alone: 20 decisions wait undelivered all through
    the window (router-1 hung, nobody reads), and router-tmp (created, never used) read none:
    a read with `>` would have been served, one with `0` resets its idle time."""
    build_pipeline(redis_client)
    redis_client.xgroup_createconsumer(DECISIONS, "router", "router-tmp")
    for n in range(20):
        redis_client.xadd(DECISIONS, {"decision": f"waiting {n}"})
    time.sleep(STALL_IDLE_MS / 1000)
    _after, verdicts, plan = judge(redis_client)

    router = verdicts["router"]
    assert router["verdict"] == "STALLED", router["reason"]
    assert router["lag"] == 20
    # No worker runs under router-2 and router-3 here: they made no read either.
    assert [c["name"] for c in router["silent_consumers"]] == ["router-2", "router-3", "router-tmp"]
    assert plan[0]["consumers"] == ["router-2", "router-3", "router-tmp"]
    assert plan[0]["dead"][2]["why"].startswith("holds nothing and made no read while entries waited")
    assert plan[0]["left_alone"] == []


# --- one snapshot: what the clocks prove without a window (snapshot_verdicts) ----------------


def one_snapshot(client: redis.Redis, **extra) -> dict:
    return sh.snapshot_verdicts({**snapshot(client), **extra}, PIPELINE, stall_idle_ms=STALL_IDLE_MS)


def test_one_snapshot_proves_a_polled_quiet_pipeline_healthy(redis_server, redis_client, pollers):
    build_pipeline(redis_client)
    start(pollers, redis_server, "router", "router-1", standard=True)
    start(pollers, redis_server, "execution", "execution-1", standard=True)
    start_workers(pollers, redis_server)
    time.sleep(STALL_IDLE_MS / 1000 + 0.2)  # every idle clock past the threshold: quiet, not stalled
    verdicts = one_snapshot(redis_client)
    assert {name: (v["verdict"], v["decided"]) for name, v in verdicts.items()} == {
        "ai_engine": ("OK", True),
        "router": ("OK", True),
        "execution": ("OK", True),
    }
    assert sh.snapshot_decides(verdicts)
    assert verdicts["router"]["dead_consumers"] == []


def test_one_snapshot_proves_the_incident(redis_server, redis_client, pollers):
    """The incident's shape as above, plus entries waiting undelivered: router STALLED with
    router-0 dead, decided without a window; the pollers are never dead."""
    build_pipeline(redis_client)
    for n in range(6):
        redis_client.xadd(DECISIONS, {"decision": f"stuck {n}"})
    redis_client.xreadgroup("router", "router-1", {DECISIONS: ">"}, count=3)
    redis_client.xreadgroup("router", "router-0", {DECISIONS: ">"}, count=3)
    start(pollers, redis_server, "execution", "execution-1", standard=True)
    start_workers(pollers, redis_server)
    time.sleep(STALL_IDLE_MS / 1000 + 0.2)
    verdicts = one_snapshot(redis_client)
    router = verdicts["router"]
    assert (router["verdict"], router["decided"], router["evidence"]) == ("STALLED", True, "snapshot"), router
    assert "router-1 has not read for" in router["reason"]
    assert [d["name"] for d in router["dead_consumers"]] == ["router-0"]
    assert rm.consumer_recovery_plan(PIPELINE, snapshot(redis_client), verdicts, MIN_IDLE_MS)[0][
        "consumers"
    ] == ["router-0"]
    assert verdicts["execution"]["verdict"] == "OK"


def test_one_snapshot_leaves_a_recent_reader_behind_an_old_backlog_to_the_window(redis_server, redis_client):
    """router-1 read a moment ago, but entries have waited undelivered past the threshold:
    draining or stuck, only a window can tell."""
    build_pipeline(redis_client)
    for n in range(5):
        redis_client.xadd(DECISIONS, {"decision": f"backlog {n}"})
    time.sleep(STALL_IDLE_MS / 1000 + 0.2)
    redis_client.xreadgroup("router", "router-1", {DECISIONS: ">"}, count=1)
    verdicts = one_snapshot(redis_client)
    router = verdicts["router"]
    assert (router["verdict"], router["decided"]) == ("LAGGING", False), router
    assert not sh.snapshot_decides(verdicts)


def test_one_snapshot_sees_a_stopped_process_and_a_governor_over_its_limit(redis_client):
    """The units and the governor as pipeline_snapshot returns them (no systemd on this
    machine: the lab's Molecule scenarios read real ones)."""
    build_pipeline(redis_client)
    router_unit = next(s["unit"] for s in PIPELINE["stages"] if s["name"] == "router")
    running = {"load_state": "loaded", "active_state": "active", "sub_state": "running", "main_pid": 7}
    stopped = {**running, "main_pid": 412, "process_state": "T", "process_stopped": True}
    units = {stage["unit"]: running for stage in PIPELINE["stages"]}
    units[router_unit] = stopped
    governor = {"exists": True, "count": 10000, "limit": 200, "over_limit": True, "blocked": True}
    verdicts = one_snapshot(redis_client, units=units, governor=governor)
    assert (verdicts["router"]["verdict"], verdicts["router"]["needs_restart"]) == ("STALLED", True)
    assert "main process 412 is stopped (T)" in verdicts["router"]["reason"]
    assert verdicts["ai_engine"]["verdict"] == "BLOCKED"
    assert verdicts["execution"]["verdict"] == "OK"
    assert sh.snapshot_decides(verdicts)


def test_a_holder_too_fresh_to_call_dead_is_left_to_the_verification_window(redis_server, redis_client):
    """The lab incident's shape: router-1 stopped long ago, router-0 orphaned a moment before
    the run. One snapshot proves router STALLED (the run acts on it at once) but cannot tell
    router-0 dead yet: it is an unproven holder, judged over the verification window, and not
    reclaimed on one snapshot's word."""
    build_pipeline(redis_client)
    for n in range(6):
        redis_client.xadd(DECISIONS, {"decision": f"stuck {n}"})
    redis_client.xreadgroup("router", "router-1", {DECISIONS: ">"}, count=3)
    time.sleep(STALL_IDLE_MS / 1000 + 0.2)
    redis_client.xreadgroup("router", "router-0", {DECISIONS: ">"}, count=3)
    verdicts = one_snapshot(redis_client)
    router = verdicts["router"]
    assert (router["verdict"], router["decided"]) == ("STALLED", True), router
    assert router["dead_consumers"] == []
    assert router["unproven_holders"] == ["router-0"]
    assert "router-0 also hold entries, too recently delivered to call them dead" in router["reason"]
    assert sh.snapshot_decides(verdicts)
    assert sh.unproven_holders(verdicts) == {"router": ["router-0"]}
    assert rm.consumer_recovery_plan(PIPELINE, snapshot(redis_client), verdicts, MIN_IDLE_MS) == []


def test_a_fresh_holder_on_a_flowing_stage_is_left_to_the_verification_window(
    redis_server, redis_client, pollers
):
    """router-1 reads and nothing waits, but router-0 took entries a moment ago and holds them:
    a worker in flight or an orphan, one snapshot cannot tell. The stage is OK, with router-0
    an unproven holder: the run is not "nothing to do", its verification window judges it."""
    build_pipeline(redis_client)
    for n in range(3):
        redis_client.xadd(DECISIONS, {"decision": f"held {n}"})
    redis_client.xreadgroup("router", "router-0", {DECISIONS: ">"}, count=3)
    start(pollers, redis_server, "router", "router-1", standard=True)
    start(pollers, redis_server, "execution", "execution-1", standard=True)
    verdicts = one_snapshot(redis_client)
    router = verdicts["router"]
    assert (router["verdict"], router["decided"]) == ("OK", True), router
    assert router["unproven_holders"] == ["router-0"]
    assert "router-0 also hold entries" in router["reason"]
    assert sh.unproven_holders(verdicts) == {"router": ["router-0"]}
