"""Race: redis_stream_reclaim heals a group while it is busy, and nothing is lost.

A producer XADDs steadily; live consumers read (their own PEL, then ">") and acknowledge;
dead consumers read entries and never acknowledge them; zombies read, fall silent long enough
to be selected, and come back to life (re-reading their own PEL first, the standard recovery
loop). Meanwhile the module's core runs again and again in-process, and a few times through
the real `ansible` command, with min_idle_ms selection, a dead-letter policy and retire.

At the end every entry id produced is accounted for exactly once: acknowledged by a consumer
(recorded client side), dead-lettered (found once in the dead-letter stream), or still pending
on a live consumer. An entry both acknowledged and dead-lettered would be a duplicate.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from typing import Any

import pytest
import redis
from conftest import run_ansible_module
from reclaim_support import run_reclaim

STREAM = "race:stream"
GROUP = "workers"
CLAIM_TO = "live-0"
DEAD_LETTER = "race:stream:dead"
MIN_IDLE_MS = 600
CHURN_SECONDS = 18


class Ledger:
    """What the clients did, recorded client side (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.produced: list[str] = []
        self.acked: collections.Counter[str] = collections.Counter()
        self.failed_acks: list[tuple[str, str]] = []  # (consumer, id) whose XACK found nothing
        self.errors: list[str] = []

    def ack(self, client: redis.Redis, consumer: str, ids: list[str]) -> None:
        if not ids:
            return
        # One XACK per id so that each id's outcome is known (XACK returns how many it acked).
        pipe = client.pipeline(transaction=False)
        for entry_id in ids:
            pipe.xack(STREAM, GROUP, entry_id)
        results = pipe.execute()
        with self.lock:
            for entry_id, acked in zip(ids, results, strict=True):
                if acked:
                    self.acked[entry_id] += 1
                else:
                    self.failed_acks.append((consumer, entry_id))


def read_ids(
    client: redis.Redis, consumer: str, start: str, count: int, block: int | None = None
) -> list[str]:
    reply = client.xreadgroup(GROUP, consumer, {STREAM: start}, count=count, block=block)
    if not reply:
        return []
    return [entry_id for entry_id, _ in reply[0][1]]


def guarded(ledger: Ledger, fn: Any) -> Any:
    def run(*args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # a thread's failure must fail the test, not vanish
            with ledger.lock:
                ledger.errors.append(f"{fn.__name__}: {exc!r}")

    return run


def producer(server: Any, ledger: Ledger, stop: threading.Event) -> None:
    client = server.client()
    n = 0
    while not stop.is_set():
        pipe = client.pipeline(transaction=False)
        for _ in range(20):
            n += 1
            pipe.xadd(STREAM, {"n": str(n), "payload": "x" * 32})
        ids = pipe.execute()
        with ledger.lock:
            ledger.produced.extend(ids)
        time.sleep(0.01)


def live_consumer(
    server: Any, ledger: Ledger, name: str, stop: threading.Event, drained: threading.Event
) -> None:
    """The recovery loop: own PEL first (moved entries land there), then new entries."""
    client = server.client()
    while True:
        own = read_ids(client, name, "0", 200)
        ledger.ack(client, name, own)
        fresh = read_ids(client, name, ">", 50, block=20)
        ledger.ack(client, name, fresh)
        if stop.is_set() and not own and not fresh:
            drained.set()
            return


def grab(client: redis.Redis, name: str, count: int) -> None:
    """Read until holding entries: the live consumers, polling, take most new ones first."""
    for _ in range(400):
        if read_ids(client, name, ">", count):
            return
        time.sleep(0.002)


def dead_consumer(server: Any, name: str) -> None:
    """Reads, then dies holding its entries."""
    client = server.client()
    grab(client, name, random.randint(20, 200))


def zombie(
    server: Any, ledger: Ledger, name: str, silent_s: float, wake: threading.Event, stop: threading.Event
) -> None:
    """Reads, falls silent long enough to be selected (maybe drained, maybe retired), then
    comes back to life and works like a live consumer until the end."""
    client = server.client()
    grab(client, name, random.randint(20, 200))
    wake.wait(silent_s)
    if stop.is_set():
        return
    while not stop.is_set():
        own = read_ids(client, name, "0", 200)
        ledger.ack(client, name, own)
        ledger.ack(client, name, read_ids(client, name, ">", 20, block=20))
    # Back-to-life consumers finish their own PEL before stopping, like a service would.
    while own := read_ids(client, name, "0", 200):
        ledger.ack(client, name, own)


class SlowRun:
    """A hook that slows a run down between its server calls (as under load) and, now and
    then, wakes the zombie being worked on right there: it comes back to life between its
    selection and a batch or its retirement, from its own thread."""

    def __init__(self, wakes: dict[str, threading.Event]) -> None:
        self.wakes = wakes
        self.rng = random.Random(7)
        self.woken: list[str] = []

    def __call__(self, event: str, consumer: str | None) -> None:
        if event not in ("batch", "retire"):
            return
        wake = self.wakes.get(consumer or "")
        if wake is not None and not wake.is_set() and self.rng.random() < 0.3:
            wake.set()
            self.woken.append(consumer or "")
            time.sleep(0.03)  # let it read its own PEL
        time.sleep(0.005)


def reclaim_args(server: Any) -> dict[str, Any]:
    return {
        "connection": server.connection,
        "stream": STREAM,
        "group": GROUP,
        "min_idle_ms": MIN_IDLE_MS,
        "claim_to": CLAIM_TO,
        "retire": True,
        "batch_size": 20,
        "dead_letter": {"stream": DEAD_LETTER, "max_age_ms": 800, "max_deliveries": 3},
    }


@pytest.mark.slow
def test_reclaim_under_load_loses_nothing_and_duplicates_nothing(redis_server, redis_client):
    random.seed(20240611)
    client = redis_client
    client.config_set("slowlog-log-slower-than", 50_000)
    client.slowlog_reset()
    client.xgroup_create(STREAM, GROUP, id="$", mkstream=True)

    ledger = Ledger()
    stop_producing = threading.Event()
    stop_consuming = threading.Event()
    live_names = [CLAIM_TO, "live-1", "live-2"]
    drained = {name: threading.Event() for name in live_names}
    threads = [
        threading.Thread(target=guarded(ledger, producer), args=(redis_server, ledger, stop_producing))
    ]
    threads += [
        threading.Thread(
            target=guarded(ledger, live_consumer),
            args=(redis_server, ledger, name, stop_consuming, drained[name]),
        )
        for name in live_names
    ]
    for thread in threads:
        thread.start()

    wakes: dict[str, threading.Event] = {}
    slow_run = SlowRun(wakes)
    totals: collections.Counter[str] = collections.Counter()
    runs = ansible_runs = 0
    revived_skips = 0
    spawned: list[threading.Thread] = []
    dead_threads: list[threading.Thread] = []
    started = time.monotonic()
    # Through the real ansible command at these moments (seconds into the churn).
    ansible_at = [2.0, 7.0, 12.0]
    while time.monotonic() - started < CHURN_SECONDS:
        # New casualties keep appearing: dead consumers, and zombies that come back.
        k = runs
        dead_threads.append(
            threading.Thread(target=guarded(ledger, dead_consumer), args=(redis_server, f"dead-{k}"))
        )
        spawned.append(dead_threads[-1])
        silent = random.uniform(0.5, 3.0)
        wakes[f"zombie-{k}"] = threading.Event()
        spawned.append(
            threading.Thread(
                target=guarded(ledger, zombie),
                args=(redis_server, ledger, f"zombie-{k}", silent, wakes[f"zombie-{k}"], stop_consuming),
            )
        )
        for thread in spawned[-2:]:
            thread.start()
        if ansible_at and time.monotonic() - started >= ansible_at[0]:
            ansible_at.pop(0)
            result = run_ansible_module("redis_stream_reclaim", reclaim_args(redis_server))
            ansible_runs += 1
        else:
            result = run_reclaim(redis_server.client(), reclaim_args(redis_server), hook=slow_run)
        runs += 1
        for key in ("moved", "dead_lettered", "deleted", "retired"):
            totals[key] += result["totals"][key]
        revived_skips += sum(
            1
            for c in result["consumers"].values()
            if (c["skipped_reason"] or c["retire_skipped_reason"] or "").count("became active")
        )
        time.sleep(0.15)

    # Quiesce: no more entries; the dead are drained AND retired; the living finish their work.
    # The last dead consumers may still be polling for something to hold when the producer
    # stops: they die when their polls run out. From Redis 7.2 (Valkey too) every poll, empty
    # or not, restarts a consumer's idle time, so a consumer's entries can be moved a run before
    # it is idle long enough to be retired: wait for the retirement itself, not only for the move.
    stop_producing.set()
    threads[0].join()
    for thread in dead_threads:
        thread.join(timeout=30)
        assert not thread.is_alive(), thread.name
    time.sleep(MIN_IDLE_MS / 1000 + 0.2)
    dead_left: dict[str, int] = {}
    for _ in range(20):
        result = run_reclaim(redis_server.client(), reclaim_args(redis_server))
        for key in ("moved", "dead_lettered", "deleted", "retired"):
            totals[key] += result["totals"][key]
        runs += 1
        dead_left = {
            c["name"]: c["pending"]
            for c in client.xinfo_consumers(STREAM, GROUP)
            if c["name"].startswith("dead-")
        }
        if not dead_left:
            break
        time.sleep(0.2)
    stop_consuming.set()
    for wake in wakes.values():
        wake.set()
    for thread in threads[1:] + spawned:
        thread.join(timeout=30)
        assert not thread.is_alive(), thread.name

    assert not ledger.errors, ledger.errors
    produced = ledger.produced
    dead_lettered = collections.Counter(fields["origin_id"] for _, fields in client.xrange(DEAD_LETTER))
    pending = {p["message_id"]: p["consumer"] for p in client.xpending_range(STREAM, GROUP, "-", "+", 10**7)}
    consumers_left = {c["name"]: c["pending"] for c in client.xinfo_consumers(STREAM, GROUP)}
    acked = ledger.acked

    lost = [i for i in produced if not (acked[i] or dead_lettered[i] or i in pending)]
    acked_twice = [i for i, n in acked.items() if n > 1]
    dead_lettered_twice = [i for i, n in dead_lettered.items() if n > 1]
    both = [i for i in dead_lettered if acked[i]]
    pending_on_dead = {i: c for i, c in pending.items() if c.startswith("dead-")}
    slow_calls = [e for e in client.slowlog_get(1000) if b"EVAL" in bytes(e["command"])[:8].upper()]

    print(
        f"\nrace: {len(produced)} produced, {sum(1 for i in produced if acked[i])} acknowledged, "
        f"{len(dead_lettered)} dead-lettered, {len(pending)} pending on live consumers, {len(lost)} lost, "
        f"{len(dead_lettered_twice)} duplicated in the dead-letter stream, {len(both)} both acked and "
        f"dead-lettered; module runs: {runs} ({ansible_runs} through ansible), moved {totals['moved']}, "
        f"dead-lettered {totals['dead_lettered']}, retired {totals['retired']}, "
        f"{revived_skips} consumers left alone because they came back to life "
        f"({len(slow_run.woken)} woken mid-run); "
        f"failed acks {len(ledger.failed_acks)}; consumers left {len(consumers_left)}"
    )
    assert len(produced) > 5000
    assert lost == []
    assert dead_lettered_twice == []
    assert acked_twice == []
    assert both == []
    assert ledger.failed_acks == []
    assert pending_on_dead == {}
    assert not [name for name in consumers_left if name.startswith("dead-")], consumers_left
    assert totals["moved"] > 0 and totals["dead_lettered"] > 0 and totals["retired"] > 0
    assert ansible_runs >= 3
    assert sum(dead_lettered.values()) == totals["dead_lettered"]
    assert revived_skips > 0, "no consumer came back to life during a run: the guard was not exercised"
    assert slow_calls == [], "a reclaim script call took 50 ms or more"
