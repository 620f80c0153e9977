"""pipeline_snapshot: one call reads the pipeline's streams, groups, consumers and governor from a
real redis-server (and the units through systemctl, read here from a real stopped process: this
machine's PID 1 is not systemd, so the module's systemctl part runs in the Molecule scenarios)."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
import redis
from conftest import dump_redis, free_loopback_port, run_ansible_module
from project_files import COLLECTION, PROJECT_ROOT

units = pytest.importorskip(f"ansible_collections.{COLLECTION}.plugins.module_utils.units")

KEY = "quantum:governor"
DECISIONS, INTENTS = "quantum:stream:ai.decision", "quantum:stream:trade.intent"
RESULTS = "quantum:stream:trade.result"
DAY_MS = 86_400_000


def pipeline(connection: dict, **extra) -> dict:
    return {
        "name": "quantum-trader",
        "redis": connection,
        "governor": {"key": KEY, "counted_stream": RESULTS},
        "stages": [
            {"name": "ai_engine", "unit": "quantum-ai-engine", "output_stream": DECISIONS},
            {"name": "router", "unit": "quantum-ai-strategy-router", "input_stream": DECISIONS,
             "group": "router", "consumer": "router-1", "output_stream": INTENTS},
            {"name": "execution", "unit": "quantum-execution", "input_stream": INTENTS,
             "group": "execution", "consumer": "execution-1", "output_stream": RESULTS},
        ],
        **extra,
    }  # fmt: skip


def today(client: redis.Redis) -> tuple[str, int]:
    seconds, _ = client.time()
    midnight_ms = seconds // 86400 * DAY_MS
    return time.strftime("%Y-%m-%d", time.gmtime(seconds)), midnight_ms


@pytest.fixture
def incident(redis_client: redis.Redis) -> redis.Redis:
    """The seed incident's Redis: router-1 holds 3 entries it will never acknowledge, 7 more
    wait behind them, one intent waits for execution, and the governor's counter is above its limit."""
    for n in range(10):
        redis_client.xadd(DECISIONS, {"n": n})
    redis_client.xgroup_create(DECISIONS, "router", id="0")
    redis_client.xreadgroup("router", "router-1", {DECISIONS: ">"}, count=3)
    redis_client.xadd(INTENTS, {"n": 0})
    redis_client.xgroup_create(INTENTS, "execution", id="0")
    day, midnight_ms = today(redis_client)
    for n in range(4):
        redis_client.xadd(RESULTS, {"n": n}, id=f"{midnight_ms + 1 + n}-0")
    redis_client.hset(KEY, mapping={"date": day, "trades_today": "10000", "daily_limit": "200"})
    return redis_client


def snapshot(redis_server, expect_failure=False, **options) -> dict:
    args = {"pipeline": pipeline(redis_server.connection), "units": False}
    args.update(options)
    return run_ansible_module("pipeline_snapshot", args, check=True, expect_failure=expect_failure)


def test_reads_streams_groups_consumers_and_governor_and_changes_nothing(redis_server, incident):
    before = dump_redis(incident)
    result = snapshot(redis_server)
    assert dump_redis(incident) == before
    assert result["changed"] is False
    assert result["missing"] == []
    router = result["streams"][DECISIONS]["groups"]["router"]
    assert (router["lag"], router["pending"]) == (7, 3)
    consumer = router["consumers"]["router-1"]
    assert consumer["pending"] == 3
    assert consumer["oldest_pending_id"] == incident.xrange(DECISIONS, count=1)[0][0]
    assert consumer["oldest_pending_deliveries"] == 1
    assert result["streams"][INTENTS]["groups"]["execution"]["lag"] == 1
    assert set(result["streams"]) == {DECISIONS, INTENTS, RESULTS}
    governor = result["governor"]
    assert (governor["count"], governor["limit"], governor["over_limit"]) == (10000, 200, True)
    # Above its limit: today's results are counted, since a reset would be made from them.
    assert (governor["results_today"], governor["counted_stream_exists"]) == (4, True)
    assert result["units"] == {}
    assert result["server"]["time_ms"] > 0 and result["elapsed_ms"] >= 0


def test_a_counter_within_its_limit_is_not_counted(redis_server, incident):
    incident.hset(KEY, "trades_today", "150")
    incident.config_resetstat()
    governor = snapshot(redis_server)["governor"]
    assert (governor["over_limit"], governor["results_today"]) == (False, None)
    # Two XRANGE calls, each group's first undelivered entry; none counts the results.
    assert incident.info("commandstats")["cmdstat_xrange"]["calls"] == 2


def test_diagnosis_costs_one_call_per_consumer_whatever_the_pending_lists(redis_server, redis_client):
    redis_client.xgroup_create(DECISIONS, "router", id="0", mkstream=True)
    pipe = redis_client.pipeline(transaction=False)
    for n in range(20 * 500):
        pipe.xadd(DECISIONS, {"n": n})
    pipe.execute()
    for c in range(20):
        redis_client.xreadgroup("router", f"router-{c}", {DECISIONS: ">"}, count=500)
    redis_client.config_resetstat()
    result = snapshot(redis_server, governor=False)
    stats = redis_client.info("commandstats")
    assert len(result["streams"][DECISIONS]["groups"]["router"]["consumers"]) == 20
    assert stats["cmdstat_xpending"]["calls"] == 20
    assert stats["cmdstat_xinfo|consumers"]["calls"] == 1
    assert result["governor"] is None


def test_a_missing_group_is_reported_not_created(redis_server, redis_client):
    redis_client.xadd(DECISIONS, {"n": 1})
    result = snapshot(redis_server, governor=False)
    assert f"{DECISIONS}/router" in result["missing"]
    assert redis_client.xinfo_groups(DECISIONS) == []


def test_a_governor_without_its_key_is_one_sentence(redis_server, redis_client):
    bad = pipeline(redis_server.connection)
    bad["governor"] = {"counted_stream": RESULTS}
    result = run_ansible_module("pipeline_snapshot", {"pipeline": bad, "units": False}, expect_failure=True)
    assert result["msg"] == "pipeline.governor.key is missing: the governor cannot be read without it."


def test_units_on_a_host_without_systemd_are_one_sentence(redis_server, redis_client):
    probe = ["systemctl", "show", "--property=Id", "--", "cron"]
    done = subprocess.run(probe, capture_output=True, check=False)
    if done.returncode == 0:
        pytest.skip("systemd runs here: the units are read for real (Molecule reads them in the lab)")
    result = snapshot(redis_server, expect_failure=True, units=True, governor=False)
    assert "the units cannot be read (units=false reads Redis only)" in result["msg"]


# --- the units: systemctl show's blocks, and the kernel's state of a real process -------------

SHOWN = """Id=quantum-ai-strategy-router.service
LoadState=loaded
ActiveState=active
SubState=running
MainPID={pid}
NRestarts=0
ActiveEnterTimestampMonotonic=5000000
FragmentPath=/etc/systemd/system/quantum-ai-strategy-router.service
DropInPaths=/etc/systemd/system/router.service.d/a.conf /run/systemd/system/router.service.d/b.conf

Id=quantum-execution.service
LoadState=not-found
ActiveState=inactive
SubState=dead
MainPID=0
NRestarts=0
ActiveEnterTimestampMonotonic=0
"""


@pytest.fixture
def stopped_process():
    """A real process, stopped by SIGSTOP (the seed's hang), killed by its PID afterwards."""
    process = subprocess.Popen(["sleep", "60"])
    try:
        process.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while units.process_status(process.pid, units.boot_time_s())["state"] != "T":
            assert time.monotonic() < deadline, "the process did not stop"
            time.sleep(0.01)
        yield process
    finally:
        process.kill()
        process.wait()


def test_a_stopped_process_behind_an_active_unit_is_seen(stopped_process):
    names = ["quantum-ai-strategy-router", "quantum-execution"]
    shown = units.parse_systemctl_show(SHOWN.format(pid=stopped_process.pid), names)
    boot_s = units.boot_time_s()
    router = units.unit_state(shown["quantum-ai-strategy-router"], boot_s)
    assert (router["active_state"], router["sub_state"]) == ("active", "running")
    assert (router["process_state"], router["process_stopped"]) == ("T", True)
    assert router["process_state_name"] == "stopped"
    assert abs(router["process_started_ms"] - time.time() * 1000) < 10_000
    assert router["active_since_ms"] == boot_s * 1000 + 5000
    assert router["fragment_path"] == "/etc/systemd/system/quantum-ai-strategy-router.service"
    assert router["drop_in_paths"] == [
        "/etc/systemd/system/router.service.d/a.conf",
        "/run/systemd/system/router.service.d/b.conf",
    ]
    execution = units.unit_state(shown["quantum-execution"], boot_s)
    assert execution["exists"] is False
    assert (execution["main_pid"], execution["process_state"]) == (0, None)
    assert execution["active_since_ms"] is None
    assert (execution["fragment_path"], execution["drop_in_paths"]) == (None, [])


def test_a_process_gone_has_no_state():
    process = subprocess.Popen(["true"])
    process.wait()
    assert units.process_status(process.pid, units.boot_time_s()) is None


def test_a_block_for_another_unit_is_refused():
    with pytest.raises(ValueError, match=r"Id=quantum-ai-strategy-router\.service where quantum-execution"):
        units.parse_systemctl_show(SHOWN.format(pid=1), ["quantum-execution", "quantum-ai-strategy-router"])
    with pytest.raises(ValueError, match="2 blocks for 1 units"):
        units.parse_systemctl_show(SHOWN.format(pid=1), ["quantum-execution"])


def test_the_module_is_documented_by_ansible_doc():
    done = subprocess.run(
        [str(PROJECT_ROOT / ".venv/bin/ansible-doc"), f"{COLLECTION}.pipeline_snapshot"],
        capture_output=True, text=True, check=False, cwd=PROJECT_ROOT,
        env={"ANSIBLE_CONFIG": str(PROJECT_ROOT / "ansible.cfg"), "PATH": str(PROJECT_ROOT / ".venv/bin")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "process_stopped" in done.stdout


def test_wait_s_reads_the_end_of_a_window(redis_server, incident):
    """The read comes wait_s after the call (the server's own clock says so); a negative wait is
    refused with one sentence, before anything is read."""
    seconds, micros = incident.time()
    start_ms = int(seconds) * 1000 + int(micros) // 1000
    result = snapshot(redis_server, wait_s=1)
    assert result["server"]["time_ms"] - start_ms >= 1000
    failed = snapshot(redis_server, expect_failure=True, wait_s=-1)
    assert failed["msg"] == "wait_s must be 0 or more seconds, got -1."


def test_redis_false_reads_the_units_alone_without_contacting_redis(redis_server):
    """A rollback reads the unit files while Redis may be down: with redis=false the module
    never connects (here, to a port nobody listens on) and returns no Redis state."""
    down = {**redis_server.connection, "port": free_loopback_port()}
    args = {"pipeline": pipeline(down), "units": False, "redis": False}
    result = run_ansible_module("pipeline_snapshot", args, check=True)
    redis_state = (result["server"], result["streams"], result["missing"], result["governor"])
    assert redis_state == (None, {}, [], None)
    failed = run_ansible_module("pipeline_snapshot", {**args, "redis": True}, check=True, expect_failure=True)
    assert "reading the streams" in failed["msg"] or "connect" in failed["msg"].lower()
