"""The run's guards: every option checked before the first change (one sentence naming it),
paths that stay under their roots, the run lock decisions and the run id's shape."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import PROJECT_ROOT, collection_module, load_project_file

run_guard = load_project_file("filter_plugins/run_guard.py")
is_run_id = run_guard.is_run_id
run_option_problems = run_guard.run_option_problems
path_problem = run_guard.path_problem
is_under = run_guard.is_under
missing_unit_problems = run_guard.missing_unit_problems
pipeline_guard_problems = run_guard.pipeline_guard_problems

LAB_PIPELINE = PROJECT_ROOT / "inventory/lab/group_vars/all/pipeline.yml"
PIPELINE = yaml.safe_load(LAB_PIPELINE.read_text())["pipeline"]
# Roles that are no step of a run (recover.yml, diagnose, rollback): monitoring installs alert
# rules on the Prometheus hosts (playbooks/monitoring.yml), metrics_writer the metrics service on
# the pipeline's hosts (playbooks/metrics.yml); their argument specs and their own asserts check
# their options, preflight never sees them.
OUTSIDE_THE_RUN = {"monitoring", "metrics_writer"}
ROLES = sorted(
    p.parent.parent
    for p in PROJECT_ROOT.glob("roles/*/meta/argument_specs.yml")
    if p.parent.parent.name not in OUTSIDE_THE_RUN
)
# Options every role takes from the run itself or validates elsewhere (validate_pipeline).
NOT_RUN_OPTIONS = {"pipeline"}


def _spec_options(role: Path) -> set[str]:
    specs = yaml.safe_load((role / "meta/argument_specs.yml").read_text())["argument_specs"]
    return {name for entry in specs.values() for name in (entry.get("options") or {})}


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_every_role_option_is_checked(role: Path) -> None:
    known = set(run_guard.RUN_OPTIONS) | set(run_guard.INTERNAL) | NOT_RUN_OPTIONS
    known |= set(run_guard.SET_BEFORE_PREFLIGHT)
    assert _spec_options(role) - known == set()


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_every_role_default_passes(role: Path) -> None:
    defaults = yaml.safe_load((role / "defaults/main.yml").read_text()) or {}
    given = {
        name: value
        for name, value in defaults.items()
        if name in run_guard.RUN_OPTIONS and not (isinstance(value, str) and "{{" in value)
    }
    assert run_option_problems(given, PIPELINE, "qt-lab") == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("service_restart_timeout_s", 0),
        ("service_restart_timeout_s", "0"),
        ("service_restart_poll_s", -2),
        ("stream_verify_window_s", -1),
        ("stream_verify_window_s", "abc"),
        ("stream_verify_window_s", "1.5"),
        ("stream_verify_window_s", True),
        ("evidence_window_s", -5),
        ("evidence_window_s", 0),
        ("evidence_stall_idle_ms", -1),
        ("evidence_pending_scan_limit", 0),
        ("consumer_recovery_batch_size", 0),
        ("consumer_recovery_batch_size", 20000),
        ("consumer_recovery_min_idle_ms", -1),
        ("consumer_recovery_plan_id_cap", -1),
        ("consumer_recovery_retire", "maybe"),
        ("report_fetch", "perhaps"),
        ("preflight_lock_stale_s", 0),
        ("service_restart_journal_lines", -1),
        ("stream_verify_lag_tolerance", -1),
        ("service_restart_extra_stages", ["nosuch"]),
        ("service_restart_extra_stages", "router"),
        ("preflight_run_id", "../../../../etc/quantum"),
        ("preflight_run_id", "20260117T101734Z-ab12/../../x"),
        ("report_fetch_root", "relative/dir"),
        ("report_fetch_root", "/tmp/x/../../etc"),
        ("report_fetch_root", "/"),
        ("evidence_root", "/var/lib/../../etc"),
        ("evidence_root", "/var/lib/./x"),
        ("evidence_root", "//var/lib/x"),
        ("preflight_lock_path", "run/x.lock"),
        ("evidence_phase", "after"),
        ("report_diagnosis_only", True),
        ("report_fetch_dir", "/etc"),
        ("unit_backup_dir", "/etc/systemd/system"),
        ("alert_pipeline", {"name": "quantum-trader"}),
        ("alert_pipeline", "quantum-trader\nshop"),
    ],
)
def test_bad_option_is_one_sentence_naming_it(name: str, value: object) -> None:
    problems = run_option_problems({name: value}, PIPELINE, "qt-lab")
    assert len(problems) == 1
    sentence = problems[0]
    assert sentence.startswith(name) and sentence.endswith(".") and "\n" not in sentence


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("service_restart_timeout_s", "60"),
        ("service_restart_timeout_s", 1),
        ("consumer_recovery_batch_size", 10000),
        ("consumer_recovery_batch_size", "1"),
        ("consumer_recovery_retire", "no"),
        ("report_fetch", False),
        ("evidence_stall_idle_ms", 0),
        ("service_restart_extra_stages", ["router", "execution"]),
        ("service_restart_extra_stages", []),
        ("preflight_run_id", "20260117T101734Z-ab12"),
        ("report_fetch_root", "/tmp/qt/evidence/"),
        ("evidence_root", "/var/lib/quantum-remediation/evidence"),
    ],
)
def test_good_option_passes(name: str, value: object) -> None:
    assert run_option_problems({name: value}, PIPELINE, "qt-lab") == []


def test_unrelated_variables_are_not_judged() -> None:
    assert run_option_problems({"ansible_host": "x", "lab_redis_port": "abc"}, PIPELINE, "h") == []


@pytest.mark.parametrize("host", ["../etc", "a/b", "..", ""])
def test_host_name_must_be_one_path_component(host: str) -> None:
    problems = run_option_problems({}, PIPELINE, host)
    assert len(problems) == 1 and problems[0].startswith("inventory_hostname")


def test_is_under() -> None:
    assert is_under("/tmp/x/a/b/c/d/host/20260117T101734Z-ab12", "/tmp/x/a/b/c/d")
    assert not is_under("/tmp/x/a/b/c/d/host/../../../../etc/quantum", "/tmp/x/a/b/c/d")
    assert not is_under("/tmp/x/ab", "/tmp/x/a")
    assert not is_under("/etc", "relative")
    assert path_problem("/a/b", "x") is None


def test_pipeline_redis_must_be_a_mapping() -> None:
    problems = pipeline_guard_problems({**PIPELINE, "redis": "127.0.0.1:6379"})
    assert problems == [
        "pipeline.redis must be a mapping of connection options (host, port, password, ...), "
        "got a string '127.0.0.1:6379'."
    ]
    assert pipeline_guard_problems(PIPELINE) == []


@pytest.mark.parametrize("name", ["../x", "a/b", "quantum trader"])
def test_pipeline_name_names_a_lock_file(name: str) -> None:
    problems = pipeline_guard_problems({**PIPELINE, "name": name})
    assert len(problems) == 1 and problems[0].startswith("pipeline.name")


def test_missing_unit_is_named() -> None:
    units = [stage["unit"] for stage in PIPELINE["stages"]]
    states = {unit: {"unit": unit, "load_state": "loaded"} for unit in units}
    assert missing_unit_problems(states, PIPELINE, "qt-lab") == []
    states[units[1]] = {"unit": units[1], "load_state": "not-found"}
    problems = missing_unit_problems(states, PIPELINE, "qt-lab")
    assert len(problems) == 1
    expected = f"pipeline.stages[1].unit {units[1]} (stage router) does not exist on qt-lab"
    assert problems[0].startswith(expected)


def test_target_problems_one_sentence_each() -> None:
    """preflight's pipeline_snapshot, registered with failed_when false: each way the target
    cannot run the pipeline is one sentence; a ready target or a check not taken, none."""
    target_problems = run_guard.target_problems
    units = {stage["unit"]: {"load_state": "loaded"} for stage in PIPELINE["stages"]}
    ready = {"failed": False, "units": units, "missing": [], "endpoint": "127.0.0.1:6390", "streams": {}}
    assert target_problems(ready, PIPELINE, "qt-lab") == []
    assert target_problems({"skipped": True}, PIPELINE, "qt-lab") == []
    assert target_problems(None, PIPELINE, "qt-lab") == []
    no_client = {
        "failed": True,
        "msg": "Failed to import the required Python library (redis) on qt-lab's Python",
    }
    assert target_problems(no_client, PIPELINE, "qt-lab") == [
        "The Python Redis client is missing on qt-lab (the target's Python cannot import redis): install "
        "Debian's python3-redis (apt-get install python3-redis) or pip's redis for that interpreter."
    ]
    no_python = {
        "failed": True,
        "msg": "MODULE FAILURE",
        "module_stderr": "\n/bin/sh: 1: python3: not found\n",
    }
    assert target_problems(no_python, PIPELINE, "qt-lab") == [
        "The target's Python could not run the pipeline snapshot on qt-lab: /bin/sh: 1: python3: not found."
    ]
    refused = {
        "failed": True,
        "msg": "Redis at 127.0.0.1:6390 refused the password: check pipeline.redis.password.",
    }
    assert target_problems(refused, PIPELINE, "qt-lab") == [refused["msg"]]
    router = PIPELINE["stages"][1]["unit"]
    broken = {**ready, "units": {**units, router: {"load_state": "not-found"}}, "missing": ["s/g", "t"]}
    problems = target_problems(broken, PIPELINE, "qt-lab")
    assert problems[0].startswith(f"pipeline.stages[1].unit {router} (stage router) does not exist on qt-lab")
    assert problems[1] == "Missing from Redis at 127.0.0.1:6390: s/g, t."
    assert target_problems(broken, PIPELINE, "qt-lab", fail_on_missing=False) == problems[:1]


NO_CLIENT = "Failed to import the required Python library (redis (Debian: python3-redis; pip: redis))"
NO_PYTHON = "/bin/sh: 1: python3: not found"


@pytest.mark.parametrize(
    ("result", "problem"),
    [
        ({"msg": NO_CLIENT}, "The Python Redis client is missing on qt-lab"),
        ({"msg": "Redis at 127.0.0.1:6390 refused the password: check pipeline.redis.password."}, "Redis at"),
        (
            {"msg": "MODULE FAILURE: No start of json char found", "module_stderr": NO_PYTHON},
            f"The target's Python could not run the pipeline snapshot on qt-lab: {NO_PYTHON}.",
        ),
    ],
)
def test_target_problems_of_a_failure_registered_with_failed_when_false(result, problem) -> None:
    """As preflight registers it: failed_when false sets `failed` false on the module's failure
    (the mode gate read before the failure comes with it). Its own sentence, not units that
    "do not exist" because none were read."""
    registered = {"failed": False, "failed_when_result": False, "mode_gate": {"mode": "TESTNET"}}
    problems = run_guard.target_problems({**registered, **result}, PIPELINE, "qt-lab")
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_run_id_shape() -> None:
    assert is_run_id("20260117T101734Z-ab12")
    assert not is_run_id("../../etc")
    assert not is_run_id("20260117T101734Z-ab12/../x")
    assert not is_run_id(None)


def test_one_batch_size_default_and_the_same_bounds() -> None:
    # The role passes none of its own: redis_stream_reclaim's default is the only one.
    defaults = yaml.safe_load((PROJECT_ROOT / "roles/consumer_recovery/defaults/main.yml").read_text())
    assert "consumer_recovery_batch_size" not in defaults
    reclaim = collection_module("redis_stream_reclaim")
    assert reclaim.DEFAULT_BATCH_SIZE == 2000
    assert run_guard.RUN_OPTIONS["consumer_recovery_batch_size"] == ("int", 1, reclaim.MAX_BATCH_SIZE)


RESULTS = [
    "preflight_result",
    "evidence_result",
    "unit_backup_result",
    "consumer_recovery_result",
    "governor_result",
    "service_restart_result",
    "stream_verify_result",
]


# preflight_result's parts before it is set: the read (its mode gate) and the run id.
@pytest.mark.parametrize("name", [*RESULTS, "_preflight_read", "_preflight_run_id"])
def test_what_the_run_sets_is_refused_from_outside(name: str) -> None:
    # An extra var outranks set_fact: a given result would stand for the run's own.
    assert run_option_problems({name: {"before": {}}}, PIPELINE, "qt-lab") == [
        f"{name} is set by the run itself and cannot be given: remove it (-e {name}=...)."
    ]
