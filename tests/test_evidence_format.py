"""Evidence shaping: unit states from systemctl show, and nothing secret written."""

from __future__ import annotations

import json

from conftest import load_project_file

evidence_format = load_project_file("filter_plugins/evidence_format.py")

SHOW = """Id=quantum-ai-strategy-router.service
LoadState=loaded
ActiveState=active
SubState=running
MainPID=4242
ExecMainStartTimestamp=Sat 2026-01-17 07:05:24 UTC
NRestarts=0
FragmentPath=/etc/systemd/system/quantum-ai-strategy-router.service
DropInPaths=/etc/systemd/system/quantum-ai-strategy-router.service.d/10-env.conf /run/x.d/a=b.conf
"""


def test_unit_state_from_systemctl_show() -> None:
    state = evidence_format.unit_state(evidence_format.systemd_show(SHOW), "quantum-ai-strategy-router")
    assert state["active_state"] == "active"
    assert state["sub_state"] == "running"
    assert state["main_pid"] == 4242
    assert state["started_at"] == "Sat 2026-01-17 07:05:24 UTC"
    assert state["drop_in_paths"] == [
        "/etc/systemd/system/quantum-ai-strategy-router.service.d/10-env.conf",
        "/run/x.d/a=b.conf",
    ]


def test_never_started_unit_has_nulls() -> None:
    state = evidence_format.unit_state(
        evidence_format.systemd_show(
            "LoadState=not-found\nActiveState=inactive\nMainPID=0\nExecMainStartTimestamp=\nDropInPaths=\n"
        )
    )
    assert state["started_at"] is None
    assert state["main_pid"] == 0
    assert state["drop_in_paths"] == []
    assert state["load_state"] == "not-found"


def test_unit_states_from_a_loop_keeps_unreadable_units_apart() -> None:
    registered = {
        "results": [
            {"item": "a", "rc": 0, "stdout": "ActiveState=active\nSubState=running\nMainPID=7\n"},
            {
                "item": "b",
                "rc": 1,
                "stdout": "",
                "stderr": "Not booted with systemd.\nFailed to connect to bus\n",
            },
        ]
    }
    states = evidence_format.unit_states(registered)
    assert states["a"]["main_pid"] == 7
    assert states["b"]["error"] == "Not booted with systemd.; Failed to connect to bus"
    assert list(evidence_format.unit_states(registered, readable_only=True)) == ["a"]


def test_scrub_secrets_at_any_depth() -> None:
    result = {
        "changed": False,
        "invocation": {"module_args": {"connection": {"password": "hunter2"}}},
        "router": {"connection": {"password": "hunter2"}, "moved": 3},
        "results": [{"password": "hunter2", "ids": ["1-0"]}],
        "_ansible_no_log": False,
    }
    scrubbed = evidence_format.scrub_secrets(result)
    assert "hunter2" not in json.dumps(scrubbed)
    assert scrubbed == {"changed": False, "router": {"moved": 3}, "results": [{"ids": ["1-0"]}]}


def test_unit_files_lists_fragments_and_drop_ins_once() -> None:
    states = {
        "a": {
            "fragment_path": "/etc/systemd/system/a.service",
            "drop_in_paths": ["/etc/systemd/system/a.service.d/x.conf"],
        },
        "b": {"fragment_path": None, "drop_in_paths": []},
        "c": {
            "fragment_path": "/etc/systemd/system/c.service",
            "drop_in_paths": ["/etc/systemd/system/a.service.d/x.conf"],
        },
    }
    assert evidence_format.unit_files(states) == [
        {"unit": "a", "path": "/etc/systemd/system/a.service", "kind": "fragment"},
        {"unit": "a", "path": "/etc/systemd/system/a.service.d/x.conf", "kind": "drop-in"},
        {"unit": "c", "path": "/etc/systemd/system/c.service", "kind": "fragment"},
    ]


def test_backup_entries_keep_the_path_layout() -> None:
    files = [
        {"unit": "a", "path": "/etc/systemd/system/a.service", "kind": "fragment"},
        {"unit": "a", "path": "/run/gone.conf", "kind": "drop-in"},
    ]
    assert evidence_format.backup_copies(files) == {
        "etc/systemd/system/a.service": "/etc/systemd/system/a.service",
        "run/gone.conf": "/run/gone.conf",
    }
    copied = {"etc/systemd/system/a.service": {"src": "/etc/systemd/system/a.service", "sha256": "ab" * 32}}
    saved = {
        "unit": "a",
        "kind": "fragment",
        "path": "/etc/systemd/system/a.service",
        "checksum": "ab" * 32,
        "backup": "/var/lib/qr/evidence/r1/backup/etc/systemd/system/a.service",
        "saved": True,
    }
    assert evidence_format.backup_entries(files, copied, "/var/lib/qr/evidence/r1/backup/") == [saved]
    # Check mode copies nothing: every file is listed, unsaved.
    planned = evidence_format.backup_entries(files, None, "/var/lib/qr/evidence/r1/backup")
    assert [(e["path"], e["saved"], e["checksum"]) for e in planned] == [
        ("/etc/systemd/system/a.service", False, None),
        ("/run/gone.conf", False, None),
    ]


def test_one_systemctl_show_for_several_units_reads_like_a_loop() -> None:
    nope = "Id=quantum-nope.service\nLoadState=not-found\nMainPID=0\n"
    joined = {"rc": 0, "stdout": SHOW + "\n" + nope, "stderr": ""}
    results = evidence_format.unit_show_results(joined, ["quantum-ai-strategy-router", "quantum-nope"])
    states = evidence_format.unit_states(results)
    assert list(states) == ["quantum-ai-strategy-router", "quantum-nope"]
    assert states["quantum-ai-strategy-router"]["main_pid"] == 4242
    assert states["quantum-nope"]["load_state"] == "not-found"


def test_one_systemctl_show_that_failed_or_does_not_match_marks_every_unit() -> None:
    failed = {"rc": 1, "stdout": "", "stderr": "System has not been booted with systemd.\n"}
    states = evidence_format.unit_states(evidence_format.unit_show_results(failed, ["a", "b"]))
    assert {s["error"] for s in states.values()} == {"System has not been booted with systemd."}
    short = {"rc": 0, "stdout": "Id=a.service\nActiveState=active\n", "stderr": ""}
    results = evidence_format.unit_show_results(short, ["a", "b"])
    assert evidence_format.unit_states(results)["a"]["error"] == (
        "systemctl show printed 1 blocks of properties for 2 units"
    )
    assert evidence_format.unit_states(results, readable_only=True) == {}
