"""pipeline_metrics: the pipeline read from a real redis-server and written as node_exporter
textfile metrics (checked by the real `promtool check metrics`), the daily report, a failed read
as a metric, and the contract with the alert rules (every metric they read is written here or by
the watchdog). The units' part renders from a snapshot-shaped structure: this machine's PID 1 is
not systemd, so the module's systemctl part runs in the Molecule watchdog scenario."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import time

import pytest
import redis
from conftest import dump_redis, free_loopback_port, run_ansible_module
from project_files import COLLECTION, PROJECT_ROOT
from test_pipeline_snapshot import pipeline  # the seed's three stages, one definition

metrics_utils = pytest.importorskip(f"ansible_collections.{COLLECTION}.plugins.module_utils.pipeline_metrics")
ledger_utils = pytest.importorskip(f"ansible_collections.{COLLECTION}.plugins.module_utils.ledger")

KEY = "quantum:governor"
DECISIONS, INTENTS = "quantum:stream:ai.decision", "quantum:stream:trade.intent"
RESULTS = "quantum:stream:trade.result"
DAY_MS = 86_400_000
SAMPLE = re.compile(r"^([a-z_]+)\{(.*)\} (\S+)$")
LABEL = re.compile(r'([a-z_]+)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    """{(metric, labels): value} of a textfile; every sample line must parse."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        labels = frozenset(LABEL.findall(match[2]))
        samples[(match[1], labels)] = float(match[3])
    return samples


def value(samples: dict, metric: str, **labels: str) -> float:
    wanted = {(metric, frozenset(labels.items()))}
    found = [v for (name, got), v in samples.items() if (name, got) in wanted]
    assert found, f"no sample {metric}{labels} among {sorted(n for n, _ in samples if n == metric)}"
    return found[0]


@pytest.fixture
def incident(redis_client: redis.Redis) -> redis.Redis:
    """The seed incident: router-1 holds 3 entries it never acknowledges (delivered ~1.2 s ago), 7
    wait behind them, 1 intent waits for execution, 4 results today and 2 yesterday, the governor
    above its limit."""
    seconds, _ = redis_client.time()
    midnight_ms = seconds // 86400 * DAY_MS
    for n in range(10):
        redis_client.xadd(DECISIONS, {"n": n})
    redis_client.xgroup_create(DECISIONS, "router", id="0")
    redis_client.xreadgroup("router", "router-1", {DECISIONS: ">"}, count=3)
    redis_client.xadd(INTENTS, {"n": 0})
    redis_client.xgroup_create(INTENTS, "execution", id="0")
    for n in range(2):
        redis_client.xadd(RESULTS, {"n": n}, id=f"{midnight_ms - 1000 + n}-0")
    for n in range(4):
        redis_client.xadd(RESULTS, {"n": n}, id=f"{midnight_ms + 1 + n}-0")
    day = time.strftime("%Y-%m-%d", time.gmtime(seconds))
    redis_client.hset(KEY, mapping={"date": day, "trades_today": "250", "daily_limit": "200"})
    time.sleep(1.2)  # so that the ages below are measurably past a second
    return redis_client


def test_writes_the_incident_as_metrics_and_changes_nothing(redis_server, incident, tmp_path):
    before = dump_redis(incident)
    result = run_ansible_module(
        "pipeline_metrics",
        {"pipeline": pipeline(redis_server.connection), "units": False, "textfile_dir": str(tmp_path)},
    )
    assert dump_redis(incident) == before
    path = tmp_path / "quantum_pipeline_quantum-trader.prom"
    assert result["textfile"] == str(path) and result["changed"] is True
    assert result["snapshot_ok"] is True and result["error"] is None
    assert "metrics" not in result  # written, not returned
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(os.listdir(tmp_path)) == [path.name]  # no temporary file left beside it
    samples = parse(path.read_text())
    assert result["samples"] == len(samples)

    top = {"pipeline": "quantum-trader"}
    router = {**top, "stage": "router", "stream": DECISIONS, "group": "router"}
    execution = {**top, "stage": "execution", "stream": INTENTS, "group": "execution"}
    assert value(samples, "quantum_pipeline_snapshot_ok", **top) == 1
    assert abs(value(samples, "quantum_pipeline_snapshot_timestamp_seconds", **top) - time.time()) < 30
    assert value(samples, "quantum_pipeline_group_exists", **router) == 1
    assert value(samples, "quantum_pipeline_group_lag", **router) == 7
    assert value(samples, "quantum_pipeline_group_lag_seconds", **router) >= 1.0
    assert value(samples, "quantum_pipeline_group_pending", **router) == 3
    assert value(samples, "quantum_pipeline_group_oldest_pending_age_seconds", **router) >= 1.0
    assert value(samples, "quantum_pipeline_group_max_deliveries", **router) == 1
    router_1 = {**router, "consumer": "router-1"}
    assert value(samples, "quantum_pipeline_consumer_pending", **router_1) == 3
    assert value(samples, "quantum_pipeline_consumer_idle_seconds", **router_1) >= 1.0
    assert value(samples, "quantum_pipeline_consumer_oldest_pending_idle_seconds", **router_1) >= 1.0
    assert value(samples, "quantum_pipeline_consumer_oldest_pending_deliveries", **router_1) == 1
    # execution: one intent waits, nobody holds anything (no consumer series at all).
    assert value(samples, "quantum_pipeline_group_lag", **execution) == 1
    assert value(samples, "quantum_pipeline_group_pending", **execution) == 0
    assert value(samples, "quantum_pipeline_group_oldest_pending_age_seconds", **execution) == 0
    assert not [
        k for k in samples if k[0].startswith("quantum_pipeline_consumer") and ("stage", "execution") in k[1]
    ]

    governor = {**top, "key": KEY}
    assert value(samples, "quantum_pipeline_governor_used", **governor) == 250
    assert value(samples, "quantum_pipeline_governor_limit", **governor) == 200
    assert value(samples, "quantum_pipeline_governor_used_ratio", **governor) == 1.25
    assert value(samples, "quantum_pipeline_governor_blocked", **governor) == 1

    # The daily report: yesterday's two results are not today's.
    assert value(samples, "quantum_pipeline_trades_executed_today", **top, stream=RESULTS) == 4
    assert value(samples, "quantum_pipeline_stage_output_entries_today", **top, stage="ai_engine",
                 stream=DECISIONS) == 10  # fmt: skip
    assert (
        value(samples, "quantum_pipeline_stage_output_entries_today", **top, stage="router", stream=INTENTS)
        == 1
    )
    daily = result["daily"]
    assert daily["trades_executed"] == 4 and daily["result_stream"] == RESULTS
    assert daily["stages"]["execution"] == {"stream": RESULTS, "entries": 4}
    assert daily["day"] == time.strftime("%Y-%m-%d", time.gmtime(incident.time()[0]))


def test_check_mode_writes_nothing_and_no_dir_returns_the_text(redis_server, incident, tmp_path):
    result = run_ansible_module(
        "pipeline_metrics",
        {"pipeline": pipeline(redis_server.connection), "units": False, "textfile_dir": str(tmp_path)},
        check=True,
    )
    assert result["textfile"] == str(tmp_path / "quantum_pipeline_quantum-trader.prom")
    assert os.listdir(tmp_path) == []
    result = run_ansible_module(
        "pipeline_metrics",
        {"pipeline": pipeline(redis_server.connection), "units": False, "daily_report": False},
    )
    assert result["changed"] is False and result["textfile"] is None and result["daily"] is None
    samples = parse(result["metrics"])
    assert value(samples, "quantum_pipeline_group_lag", pipeline="quantum-trader", stage="router",
                 stream=DECISIONS, group="router") == 7  # fmt: skip
    assert not [k for k in samples if k[0].endswith("_today")]


def test_the_output_passes_promtool_check_metrics(redis_server, incident):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: scripts/install-system-deps.sh installs Debian's prometheus.")
    result = run_ansible_module(
        "pipeline_metrics", {"pipeline": pipeline(redis_server.connection), "units": False}
    )
    check = subprocess.run(
        [promtool, "check", "metrics"], input=result["metrics"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip() == "" and check.stderr.strip() == ""  # not even a lint remark


def test_a_failed_read_is_a_metric_not_a_failure(tmp_path):
    port = free_loopback_port()  # nothing listens there
    result = run_ansible_module(
        "pipeline_metrics",
        {
            "pipeline": pipeline({"host": "127.0.0.1", "port": port}),
            "units": False,
            "textfile_dir": str(tmp_path),
        },
    )
    assert result["snapshot_ok"] is False and str(port) in result["error"]
    assert any("snapshot_ok 0" in warning for warning in result.get("warnings", []))
    samples = parse((tmp_path / "quantum_pipeline_quantum-trader.prom").read_text())
    assert {name for name, _ in samples} == {
        "quantum_pipeline_snapshot_ok",
        "quantum_pipeline_snapshot_timestamp_seconds",
        "quantum_pipeline_snapshot_duration_seconds",
    }
    assert value(samples, "quantum_pipeline_snapshot_ok", pipeline="quantum-trader") == 0


@pytest.mark.parametrize(
    ("change", "sentence"),
    [
        ({"name": "../etc"}, "pipeline '../etc' must be letters, digits"),
        ({"textfile_dir": "relative/dir"}, "textfile_dir 'relative/dir' must be an absolute path."),
        ({"stages": []}, "pipeline.stages must be a non-empty list of stages."),
    ],
)
def test_bad_input_fails_with_one_sentence_and_writes_nothing(redis_server, tmp_path, change, sentence):
    args = {"pipeline": pipeline(redis_server.connection), "units": False, "textfile_dir": str(tmp_path)}
    if "textfile_dir" in change:
        args["textfile_dir"] = change["textfile_dir"]
    else:
        args["pipeline"].update(change)
    result = run_ansible_module("pipeline_metrics", args, expect_failure=True)
    assert sentence in result["msg"]
    assert os.listdir(tmp_path) == []


def test_a_missing_textfile_dir_is_a_warning(redis_server, redis_client, tmp_path):
    missing = tmp_path / "node-exporter"
    result = run_ansible_module(
        "pipeline_metrics",
        {"pipeline": pipeline(redis_server.connection), "units": False, "textfile_dir": str(missing)},
    )
    assert result["textfile"] is None and not missing.exists()
    assert any(f"textfile_dir {missing} does not exist" in w for w in result["warnings"])


def test_a_counter_dated_another_day_counts_nothing_and_units_render():
    snapshot = {
        "streams": {},
        "governor": {
            "key": KEY,
            "exists": True,
            "dated_today": False,
            "count": 900,
            "limit": 200,
            "blocked": False,
        },
        "units": {
            "quantum-ai-engine": {"active_state": "active", "process_stopped": False, "n_restarts": 2},
            "quantum-ai-strategy-router": {
                "active_state": "active",
                "process_stopped": True,
                "n_restarts": 0,
            },
            "quantum-execution": {"active_state": "failed", "process_stopped": False, "n_restarts": None},
        },
    }
    samples = parse(metrics_utils.pipeline_metrics(pipeline({}), snapshot, 1.0, 0.01))
    governor = {"pipeline": "quantum-trader", "key": KEY}
    assert value(samples, "quantum_pipeline_governor_used", **governor) == 0
    assert value(samples, "quantum_pipeline_governor_used_ratio", **governor) == 0
    assert value(samples, "quantum_pipeline_governor_blocked", **governor) == 0

    def unit(metric: str, stage: str, name: str) -> float:
        return value(samples, metric, pipeline="quantum-trader", stage=stage, unit=name)

    assert unit("quantum_pipeline_unit_process_stopped", "router", "quantum-ai-strategy-router") == 1
    assert unit("quantum_pipeline_unit_active", "router", "quantum-ai-strategy-router") == 1
    assert unit("quantum_pipeline_unit_active", "execution", "quantum-execution") == 0
    assert unit("quantum_pipeline_unit_restarts", "ai_engine", "quantum-ai-engine") == 2
    # A missing group is a series of its own (0), not silence.
    router = {"pipeline": "quantum-trader", "stage": "router", "stream": DECISIONS, "group": "router"}
    assert value(samples, "quantum_pipeline_group_exists", **router) == 0


def test_label_values_are_escaped():
    odd = pipeline({})
    odd["stages"][1]["group"] = 'a"b\\c\nd'
    snapshot = {"streams": {}, "governor": None, "units": {}}
    text = metrics_utils.pipeline_metrics(odd, snapshot, 1.0, 0.01)
    assert 'group="a\\"b\\\\c\\nd"' in text
    assert (
        len([line for line in text.splitlines() if "group_exists" in line and 'stage="router"' in line]) == 1
    )


def test_every_metric_the_alert_rules_read_is_written():
    """The contract between roles/monitoring's rules and the two writers: a metric renamed on one
    side only would leave an alert that can never fire."""
    rules = (PROJECT_ROOT / "roles" / "monitoring" / "templates" / "alert-rules.yml.j2").read_text()
    read = set(re.findall(r"\b(quantum_(?:pipeline|remediation)_[a-z_]+)", rules))
    written = set(metrics_utils.PIPELINE_METRICS) | set(ledger_utils.RUN_METRICS)
    assert read, "no metric found in the rules"
    assert read <= written, f"read by the rules, written by nobody: {sorted(read - written)}"


def test_docs_name_every_metric():
    docs = (PROJECT_ROOT / "docs" / "metrics.md").read_text()
    written = set(metrics_utils.PIPELINE_METRICS) | set(ledger_utils.RUN_METRICS)
    assert not [name for name in sorted(written) if f"`{name}`" not in docs]
