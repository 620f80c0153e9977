"""Chaos: Redis killed (SIGKILL) in the middle of a reclaim. Real redis-server with an
append-only file fsynced on every write, as a production primary that must not lose
acknowledged writes would be.

- Down when the next batch is sent: the run stops with one sentence that says what it had
  moved; every entry id is still accounted for (in the group's PEL, once); a second run, once
  Redis is back, finishes the job.
- Back before the next batch: the client reconnects (redis-py's pool replaces a connection
  the server closed before it sends). Replaying the append-only file resets the consumers'
  idle clocks, so the dead consumer now looks active: the run leaves it alone from then on
  (its guard against a consumer that wakes up), says so, and loses nothing; a second run
  finishes the job."""

from __future__ import annotations

import signal
import threading

import pytest
import redis
from conftest import RedisServer, start_redis
from reclaim_support import load_reclaim_module, run_reclaim
from redis.backoff import NoBackoff
from redis.retry import Retry

STREAM, GROUP, DEAD, LIVE = "chaos:stream", "router", "router-0", "router-1"
ENTRIES = 12_000
BATCH = 2000


def _module_client(server: RedisServer) -> redis.Redis:
    # As module_utils.redis_connection builds it: one attempt, no silent reconnect.
    return server.client(retry=Retry(NoBackoff(), 0), socket_timeout=10)


def _pel(client: redis.Redis) -> dict[str, str]:
    """{entry id: owner} of the whole group's PEL."""
    owners: dict[str, str] = {}
    start = "-"
    while True:
        page = client.xpending_range(STREAM, GROUP, min=start, max="+", count=10_000)
        if not page:
            return owners
        for entry in page:
            owners[entry["message_id"]] = entry["consumer"]
        last = page[-1]["message_id"]
        ms, seq = last.split("-")
        start = f"{ms}-{int(seq) + 1}"


@pytest.fixture
def durable_server(tmp_path_factory: pytest.TempPathFactory):
    server = start_redis(tmp_path_factory, "--appendonly", "yes", "--appendfsync", "always")
    try:
        yield server
    finally:
        server.stop()


def _fill(server: RedisServer) -> set[str]:
    """ENTRIES entries, all delivered to DEAD (its PEL), LIVE registered: the produced ids."""
    admin = server.client()
    pipe = admin.pipeline(transaction=False)
    for i in range(ENTRIES):
        pipe.xadd(STREAM, {"n": i})
    produced = set(pipe.execute())
    admin.xgroup_create(STREAM, GROUP, id="0")
    admin.xreadgroup(GROUP, DEAD, {STREAM: ">"}, count=ENTRIES)
    admin.xgroup_createconsumer(STREAM, GROUP, LIVE)
    admin.close()
    return produced


ARGS = {"stream": STREAM, "group": GROUP, "consumers": [DEAD], "claim_to": LIVE, "retire": True,
        "batch_size": BATCH}  # fmt: skip


def _assert_all_on_live(server: RedisServer, produced: set[str]) -> None:
    final = _pel(server.client())
    assert set(final) == produced and set(final.values()) == {LIVE}
    consumers = {c["name"] for c in server.client().xinfo_consumers(STREAM, GROUP)}
    assert consumers == {LIVE}


def test_redis_down_mid_reclaim_then_rerun(durable_server: RedisServer) -> None:
    produced = _fill(durable_server)
    batches = 0
    restarted = threading.Event()

    def crash_after_three_batches(event: str, _consumer: str | None) -> None:
        nonlocal batches
        if event == "batch":
            batches += 1
            if batches == 3:
                durable_server.stop(signal.SIGKILL)
                # Back a second later: the run's next batch meets a server that is down.
                threading.Timer(1.0, lambda: (durable_server.start(), restarted.set())).start()

    failed_class = load_reclaim_module().ReclaimFailed
    with pytest.raises(failed_class) as failure:
        run_reclaim(_module_client(durable_server), ARGS, hook=crash_after_three_batches)
    sentence, partial = failure.value.msg, failure.value.partial
    moved_first = partial["totals"]["moved"]
    assert moved_first == 3 * BATCH
    assert "\n" not in sentence and f"Moved {moved_first} entries of {DEAD} to {LIVE}" in sentence
    assert restarted.wait(15)
    print(f"\nredis down mid-reclaim: {sentence}")

    # Nothing lost, nothing doubled: every produced id is in the PEL once, the moved ones on LIVE.
    after_crash = _pel(durable_server.client())
    assert set(after_crash) == produced
    assert sum(owner == LIVE for owner in after_crash.values()) == moved_first

    again = run_reclaim(_module_client(durable_server), ARGS)
    assert again["totals"]["moved"] == ENTRIES - moved_first
    assert again["consumers"][DEAD]["retired"]
    _assert_all_on_live(durable_server, produced)


def test_redis_restarted_between_batches_then_rerun(durable_server: RedisServer) -> None:
    produced = _fill(durable_server)
    batches = 0

    def restart_after_three_batches(event: str, _consumer: str | None) -> None:
        nonlocal batches
        if event == "batch":
            batches += 1
            if batches == 3:
                durable_server.stop(signal.SIGKILL)
                durable_server.start()

    first = run_reclaim(_module_client(durable_server), ARGS, hook=restart_after_three_batches)
    dead = first["consumers"][DEAD]
    assert first["totals"]["moved"] == 3 * BATCH and not dead["retired"]
    assert dead["skipped_reason"].startswith("became active during the run")
    after_restart = _pel(durable_server.client())
    assert set(after_restart) == produced
    assert sum(owner == LIVE for owner in after_restart.values()) == 3 * BATCH

    again = run_reclaim(_module_client(durable_server), ARGS)
    assert again["totals"]["moved"] == ENTRIES - 3 * BATCH and again["consumers"][DEAD]["retired"]
    _assert_all_on_live(durable_server, produced)
