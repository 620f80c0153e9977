"""pipeline_snapshot: one call reads the pipeline's streams, groups, consumers and governor from a
real redis-server (and the units through systemctl, read here from a real stopped process: this
machine's PID 1 is not systemd, so the module's systemctl part runs in the Molecule scenarios)."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis
from conftest import dump_redis, free_loopback_port, run_ansible_module
from project_files import COLLECTION, PROJECT_ROOT

units = pytest.importorskip(f"ansible_collections.{COLLECTION}.plugins.module_utils.units")

KEY = "quantum:governor"
DECISIONS, INTENTS = "quantum:stream:ai.decision", "quantum:stream:trade.intent"
RESULTS = "quantum:stream:trade.result"
DAY_MS = 86_400_000
# A target Python without redis-py (Debian's, without python3-redis), when this machine has one.
# Debian's python3, in a venv of its own without the system's site packages: no redis-py there,
# though the system's python3-redis is installed (scripts/install-system-deps.sh).
SYSTEM_PYTHON = Path("/usr/bin/python3")


def python_without_redis(directory: Path) -> Path:
    subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", "--without-pip", str(directory)], check=True)
    python = directory / "bin" / "python3"
    probe = subprocess.run([str(python), "-c", "import redis"], capture_output=True)
    assert probe.returncode != 0, f"{python} imports redis: it cannot stand for a target without redis-py"
    return python


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


def test_wait_from_ms_ends_the_window_wait_s_after_an_earlier_read(redis_server, incident):
    """wait_from_ms: the window began at an earlier read (its target_time_ms), so the round trip
    since is not added to it; never longer than wait_s, and no wait once it is past. Judged by
    the server's clock with margins far above any start-up time (a loaded machine included)."""

    def server_ms() -> int:
        seconds, micros = incident.time()
        return int(seconds) * 1000 + int(micros) // 1000

    earlier = snapshot(redis_server)
    time.sleep(1.5)
    called = server_ms()
    result = snapshot(redis_server, wait_s=10, wait_from_ms=earlier["target_time_ms"])
    # Ended 10 s after the earlier read, not 10 s after this call began.
    assert result["server"]["time_ms"] - earlier["server"]["time_ms"] >= 10_000
    assert result["server"]["time_ms"] - called < 10_000
    # Long past: no wait (waiting wait_s would take 30 s).
    started = time.monotonic()
    snapshot(redis_server, wait_s=30, wait_from_ms=earlier["target_time_ms"] - 60_000)
    assert time.monotonic() - started < 30
    # In the future (another clock): never longer than wait_s, and not shorter either.
    called = server_ms()
    started = time.monotonic()
    result = snapshot(redis_server, wait_s=2, wait_from_ms=earlier["target_time_ms"] + 3_600_000)
    assert result["server"]["time_ms"] - called >= 2000
    assert time.monotonic() - started < 30


def test_read_start_reads_both_ends_of_a_window(redis_server, incident):
    """read_start: the start is read before the wait and the end after it, by the server's own
    clock; an entry added in between is in the end's stream only."""
    length = snapshot(redis_server)["streams"][DECISIONS]["length"]
    known = {client["id"] for client in incident.client_list()}
    added = threading.Event()

    def add_during_the_wait() -> None:
        # Added while the module waits: once its connection (a client this test did not know)
        # has been idle for a second, its start was read and its end is not yet (it waits 4 s).
        # Not on a timer: a loaded machine may take longer than any fixed delay to start it.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(c["id"] not in known and int(c["idle"]) >= 1 for c in incident.client_list()):
                incident.xadd(DECISIONS, {"decision": "during the window"})
                added.set()
                return
            time.sleep(0.05)

    adding = threading.Thread(target=add_during_the_wait)
    adding.start()
    try:
        result = snapshot(redis_server, wait_s=4, read_start=True)
    finally:
        adding.join()
    assert added.is_set()
    start = result["start"]
    assert set(start) == {"server", "streams", "missing"}
    assert result["server"]["time_ms"] - start["server"]["time_ms"] >= 4000
    lengths = (start["streams"][DECISIONS]["length"], result["streams"][DECISIONS]["length"])
    assert lengths == (length, length + 1)
    assert "start" not in snapshot(redis_server)


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


# --- The mode file: read in the same call, judged by the mode gate, never returned ------------

VAR = "BINANCE_TESTNET"
SECRET = "hunter2-s3cr3t-9f4e"
gate_util = pytest.importorskip(f"ansible_collections.{COLLECTION}.plugins.module_utils.mode_gate")


def mode_file(tmp_path, content: bytes | str) -> str:
    path = tmp_path / "testnet.env"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return str(path)


def test_the_mode_file_of_a_testnet_run_gives_testnet(redis_server, incident, tmp_path):
    path = mode_file(tmp_path, f"API_KEY={SECRET}\nBINANCE_TESTNET=true\n")
    result = snapshot(redis_server, mode_file=path, mode_variable=VAR)
    assert result["mode_gate"] == {
        "mode": "TESTNET",
        "reason": f"BINANCE_TESTNET=true in {path} (line 2)",
        "changes_allowed": True,
        "assignments": [{"line": 2, "value": "true"}],
    }
    # The rest of the snapshot is read as ever.
    assert result["streams"][DECISIONS]["groups"]["router"]["pending"] == 3


def test_the_mode_file_of_a_live_run_gives_live(redis_server, incident, tmp_path):
    path = mode_file(tmp_path, "# the desk trades for real\nBINANCE_TESTNET=false\n")
    gate = snapshot(redis_server, mode_file=path, mode_variable=VAR)["mode_gate"]
    assert gate == {
        "mode": "LIVE",
        "reason": f"BINANCE_TESTNET=false in {path} (line 2)",
        "changes_allowed": False,
        "assignments": [{"line": 2, "value": "false"}],
    }


@pytest.mark.parametrize(
    "content",
    [
        "BINANCE_TESTNET=true # a note\n",
        "export BINANCE_TESTNET=true\n",
        "BINANCE_TESTNET=true\nBINANCE_TESTNET=false\n",
        "OTHER=1\n",
        b"BINANCE_TESTNET=true\nAPI_KEY=\xff\n",
    ],
)
def test_the_module_decides_as_the_mode_gate_does(redis_server, tmp_path, content):
    """One definition: the module's decision is the collection's mode_gate on the file."""
    path = mode_file(tmp_path, content)
    gate = snapshot(redis_server, governor=False, mode_file=path, mode_variable=VAR)["mode_gate"]
    text = content if isinstance(content, str) else content.decode("utf-8", "surrogateescape")
    assert gate == gate_util.mode_gate(text, VAR, path)
    assert gate["mode"] == "UNKNOWN" and gate["changes_allowed"] is False


def test_a_missing_mode_file_is_unknown_with_the_reason_slurp_gave(redis_server, tmp_path):
    """Not a failure of the module: the mode is UNKNOWN, and the reason reads as it did when
    ansible.builtin.slurp read the file (`File not found: PATH`)."""
    path = str(tmp_path / "absent.env")
    result = snapshot(redis_server, governor=False, mode_file=path, mode_variable=VAR)
    assert result["mode_gate"] == {
        "mode": "UNKNOWN",
        "reason": f"{path} is missing or unreadable (File not found: {path})",
        "changes_allowed": False,
        "assignments": [],
    }
    directory = snapshot(redis_server, governor=False, mode_file=str(tmp_path), mode_variable=VAR)
    assert directory["mode_gate"]["reason"] == (
        f"{tmp_path} is missing or unreadable (Source is a directory and must be a file: {tmp_path})"
    )


def test_a_mode_file_systemd_refuses_is_unknown(redis_server, tmp_path):
    path = mode_file(tmp_path, b"BINANCE_TESTNET=true\nAPI_KEY=a\x00b\n")
    gate = snapshot(redis_server, governor=False, mode_file=path, mode_variable=VAR)["mode_gate"]
    assert gate["mode"] == "UNKNOWN"
    assert gate["reason"] == f"systemd would refuse to load {path}: it holds a NUL byte"


@pytest.mark.parametrize(
    "content",
    [
        f"API_SECRET={SECRET}\nBINANCE_TESTNET=true\n",
        f"BINANCE_TESTNET=true\\\nAPI_SECRET={SECRET}\n",
        f'BINANCE_TESTNET="true\nAPI_SECRET={SECRET}"\n',
        f"BINANCE_TESTNET={SECRET}\n",
        f"API_SECRET={SECRET}\nexport BINANCE_TESTNET=true\n",
        f"API_SECRET={SECRET}\n\x00",
    ],
)
def test_the_mode_file_content_never_leaves_the_target(redis_server, tmp_path, content):
    """The file may hold API keys: only the mode variable's own single-line values are returned
    (a value of the mode variable that is itself the secret is shown cut to 40 characters in the
    reason, as the gate always did: here it is short, so it is only the value that appears)."""
    path = mode_file(tmp_path, content)
    result = snapshot(redis_server, governor=False, mode_file=path, mode_variable=VAR)
    shown = json.dumps(result)
    if content.startswith(f"{VAR}={SECRET}"):
        # The mode variable's own value: named as the gate names it, and nowhere else.
        assert shown.count(SECRET) == 2, shown  # the reason and assignments[0].value
        return
    assert SECRET not in shown, shown


def test_a_failed_read_still_returns_the_mode_and_never_the_content(redis_server, tmp_path):
    """Redis unreachable: the module fails with its sentence, and the mode is known anyway."""
    path = mode_file(tmp_path, f"API_SECRET={SECRET}\nBINANCE_TESTNET=true\n")
    down = {**redis_server.connection, "port": free_loopback_port()}
    args = {"pipeline": pipeline(down), "units": False, "mode_file": path, "mode_variable": VAR}
    failed = run_ansible_module("pipeline_snapshot", args, check=True, expect_failure=True)
    assert failed["mode_gate"]["mode"] == "TESTNET"
    assert SECRET not in json.dumps(failed)


def test_the_mode_file_with_redis_false_needs_neither_redis_nor_its_client(redis_server, tmp_path):
    """rollback.yml's preflight: Redis may be down. With redis=false nothing connects, and the
    target's Python needs no redis-py (Debian's python3 in a venv without site packages)."""
    path = mode_file(tmp_path, "BINANCE_TESTNET=true\n")
    down = {**redis_server.connection, "port": free_loopback_port()}
    args = {"pipeline": pipeline(down), "units": False, "redis": False}
    args.update(mode_file=path, mode_variable=VAR)
    result = run_ansible_module("pipeline_snapshot", args, check=True)
    assert (result["server"], result["streams"], result["governor"]) == (None, {}, None)
    assert result["mode_gate"]["mode"] == "TESTNET"
    bare = python_without_redis(tmp_path / "bare")
    result = run_ansible_module("pipeline_snapshot", args, check=True, interpreter=bare)
    assert result["mode_gate"]["mode"] == "TESTNET"
    failed = run_ansible_module("pipeline_snapshot", {**args, "redis": True}, check=True, interpreter=bare,
                                expect_failure=True)  # fmt: skip
    assert "redis" in failed["msg"] and failed["mode_gate"]["mode"] == "TESTNET"


def test_without_mode_file_there_is_no_mode_gate_and_the_variable_needs_the_file(redis_server):
    assert "mode_gate" not in snapshot(redis_server, governor=False)
    failed = snapshot(redis_server, expect_failure=True, governor=False, mode_variable=VAR)
    assert "mode_file" in failed["msg"] and "mode_variable" in failed["msg"]
