"""Evidence shaping: the files that define the units, the backup entries, and nothing secret written."""

from __future__ import annotations

import json

from conftest import load_project_file

evidence_format = load_project_file("filter_plugins/evidence_format.py")

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
