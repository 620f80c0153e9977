"""Evidence shaping: the files that define the units, the backup copies, and nothing secret written."""

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


def test_backup_copies_keep_the_path_layout_and_the_manifest_fields() -> None:
    """Each file at its own path under the backup, in the order of unit_files (the order of the
    manifest and SHA256SUMS), with the fields of its manifest entry."""
    files = [
        {"unit": "b", "path": "/etc/systemd/system/b.service", "kind": "fragment"},
        {"unit": "a", "path": "/etc/systemd/system/a.service", "kind": "fragment"},
        {"unit": "a", "path": None, "kind": "drop-in"},
    ]
    copies = evidence_format.backup_copies(files)
    assert list(copies) == ["etc/systemd/system/b.service", "etc/systemd/system/a.service"]
    assert copies["etc/systemd/system/a.service"] == {
        "src": "/etc/systemd/system/a.service",
        "fields": {"unit": "a", "kind": "fragment", "path": "/etc/systemd/system/a.service"},
    }
    assert evidence_format.backup_copies(None) == {}


def test_under_moves_a_phase_s_files_under_its_directory() -> None:
    files = {"services.txt": "a\n", "redis.json": "{}\n"}
    assert evidence_format.under(files, "after") == {"after/services.txt": "a\n", "after/redis.json": "{}\n"}
    assert evidence_format.under(files, "after/") == evidence_format.under(files, "after")
    assert evidence_format.under({}, "after") == {}
