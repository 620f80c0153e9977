"""evidence_files through the real `ansible` command: writes, idempotence, check mode, diff,
and the names it refuses."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

from conftest import run_ansible_module

FILES = {
    "services.txt": "Service states\n  router: active (running)\n",
    "redis.json": '{\n    "t0": {}\n}\n',
    "report/stop_point.txt": "Stop point: router (STALLED)\n",
}


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_writes_every_file_and_the_missing_directories(tmp_path: Path) -> None:
    dest = tmp_path / "run" / "before"
    result = run_ansible_module("evidence_files", {"dest": str(dest), "files": FILES})
    assert result["changed"] is True
    assert result["written"] == sorted(FILES)
    assert result["unchanged"] == []
    assert result["created_directories"] == [str(tmp_path / "run"), str(dest), str(dest / "report")]
    for name, text in FILES.items():
        assert (dest / name).read_text() == text
        assert mode_of(dest / name) == 0o640
    assert {mode_of(d) for d in (tmp_path / "run", dest, dest / "report")} == {0o750}
    assert not [p for p in dest.rglob(".*")], "no temporary file is left behind"


def test_second_run_with_the_same_files_changes_nothing(tmp_path: Path) -> None:
    args = {"dest": str(tmp_path), "files": FILES, "mode": "0600"}
    run_ansible_module("evidence_files", args)
    again = run_ansible_module("evidence_files", args)
    assert again["changed"] is False
    assert again["written"] == []
    assert again["unchanged"] == sorted(FILES)
    assert again["created_directories"] == []


def test_only_the_file_whose_content_or_mode_differs_is_written(tmp_path: Path) -> None:
    run_ansible_module("evidence_files", {"dest": str(tmp_path), "files": FILES})
    (tmp_path / "redis.json").chmod(0o644)
    changed = dict(FILES, **{"services.txt": "Service states\n  router: failed\n"})
    result = run_ansible_module("evidence_files", {"dest": str(tmp_path), "files": changed}, diff=True)
    assert result["changed"] is True
    assert result["written"] == ["redis.json", "services.txt"]
    assert result["unchanged"] == ["report/stop_point.txt"]
    assert (tmp_path / "services.txt").read_text() == changed["services.txt"]
    assert mode_of(tmp_path / "redis.json") == 0o640
    diffs = {d["after_header"]: d for d in result["diff"]}
    assert diffs[str(tmp_path / "services.txt")]["before"] == FILES["services.txt"]
    assert diffs[str(tmp_path / "services.txt")]["after"] == changed["services.txt"]
    assert diffs[str(tmp_path / "redis.json")]["before"] == {"mode": "0644"}
    assert diffs[str(tmp_path / "redis.json")]["after"] == {"mode": "0640"}


def test_check_mode_tells_the_truth_and_writes_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "after"
    would = run_ansible_module("evidence_files", {"dest": str(dest), "files": FILES}, check=True, diff=True)
    assert would["changed"] is True
    assert would["written"] == sorted(FILES)
    assert would["created_directories"] == [str(dest), str(dest / "report")]
    assert [d["after"] for d in would["diff"]] == [FILES[name] for name in sorted(FILES)]
    assert not dest.exists()

    run_ansible_module("evidence_files", {"dest": str(dest), "files": FILES})
    same = run_ansible_module("evidence_files", {"dest": str(dest), "files": FILES}, check=True)
    assert same["changed"] is False
    other = run_ansible_module(
        "evidence_files", {"dest": str(dest), "files": {"services.txt": "other\n"}}, check=True
    )
    assert other["changed"] is True
    assert (dest / "services.txt").read_text() == FILES["services.txt"]


def test_names_outside_dest_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    dest = tmp_path / "before"
    for name in ("../escaped.txt", "report/../../escaped.txt", "/tmp/escaped.txt", ""):
        result = run_ansible_module(
            "evidence_files",
            {"dest": str(dest), "files": {"services.txt": "ok\n", name: "no\n"}},
            expect_failure=True,
        )
        assert result["msg"] == (
            f"files and copies: {name!r} must be relative to dest, without '..', so that nothing is written "
            "outside it."
        )
    assert not dest.exists()
    assert not (tmp_path / "escaped.txt").exists()


def test_content_that_is_not_text_is_refused(tmp_path: Path) -> None:
    result = run_ansible_module(
        "evidence_files",
        {"dest": str(tmp_path), "files": {"summary.json": {"ok": True}}},
        expect_failure=True,
    )
    assert "not text" in result["msg"]
    assert not (tmp_path / "summary.json").exists()


def test_a_bad_mode_is_refused(tmp_path: Path) -> None:
    result = run_ansible_module(
        "evidence_files", {"dest": str(tmp_path), "files": FILES, "mode": "rw-r"}, expect_failure=True
    )
    assert result["msg"] == "mode must be an octal mode such as '0640' (got 'rw-r')."


def test_copies_keep_bytes_and_permissions_and_return_checksums(tmp_path: Path) -> None:
    """unit_backup's use: unit files copied under the backup directory in one call, each with its
    SHA-256; a source that does not exist is listed, not copied; a second call changes nothing."""
    unit = tmp_path / "etc" / "quantum-execution.service"
    unit.parent.mkdir()
    unit.write_bytes(b"[Service]\nExecStart=/opt/quantum/execution\n")
    unit.chmod(0o644)
    dropin = tmp_path / "etc" / "override.conf"
    dropin.write_bytes(b"[Service]\nEnvironment=X=1\n")
    dropin.chmod(0o600)
    dest = tmp_path / "backup"
    copies = {
        "etc/quantum-execution.service": str(unit),
        "etc/override.conf": str(dropin),
        "etc/gone.conf": str(tmp_path / "gone.conf"),
    }
    args = {"dest": str(dest), "copies": copies}
    result = run_ansible_module("evidence_files", args)
    assert result["changed"] is True
    assert result["missing"] == ["etc/gone.conf"]
    assert result["written"] == ["etc/override.conf", "etc/quantum-execution.service"]
    assert (dest / "etc/quantum-execution.service").read_bytes() == unit.read_bytes()
    assert mode_of(dest / "etc/quantum-execution.service") == 0o644
    assert mode_of(dest / "etc/override.conf") == 0o600
    assert not (dest / "etc/gone.conf").exists()
    assert result["copied"]["etc/override.conf"] == {
        "src": str(dropin),
        "sha256": hashlib.sha256(dropin.read_bytes()).hexdigest(),
        "mode": "0600",
    }
    again = run_ansible_module("evidence_files", args)
    assert again["changed"] is False
    assert again["copied"] == result["copied"]


def test_copies_in_check_mode_write_nothing(tmp_path: Path) -> None:
    source = tmp_path / "x.service"
    source.write_text("[Unit]\n")
    result = run_ansible_module(
        "evidence_files", {"dest": str(tmp_path / "backup"), "copies": {"x.service": str(source)}}, check=True
    )
    assert result["changed"] is True
    assert result["copied"]["x.service"]["src"] == str(source)
    assert not (tmp_path / "backup").exists()


def test_a_copy_from_a_relative_source_or_named_twice_is_refused(tmp_path: Path) -> None:
    relative = run_ansible_module(
        "evidence_files", {"dest": str(tmp_path), "copies": {"a": "etc/a"}}, expect_failure=True
    )
    assert relative["msg"] == "copies: the source of 'a' must be an absolute path on the target."
    twice = run_ansible_module(
        "evidence_files",
        {"dest": str(tmp_path), "files": {"a": "x"}, "copies": {"a": "/etc/hostname"}},
        expect_failure=True,
    )
    assert twice["msg"] == "'a' is named in both files and copies: give it once."


def test_a_claim_is_created_once_and_refused_after(tmp_path: Path) -> None:
    """The evidence role's phase before: the run's directory claimed (one mkdir) by the task
    that writes its files; a second claim of the same directory writes nothing."""
    run = tmp_path / "evidence" / "20261203T101500Z-ab12"
    args = {"dest": str(run / "before"), "claim": str(run), "files": {"mode.txt": "TESTNET\n"}}
    first = run_ansible_module("evidence_files", args)
    assert (first["changed"], first["claim_exists"]) == (True, False)
    assert (run / "before" / "mode.txt").read_text() == "TESTNET\n"
    assert mode_of(run) == 0o750
    again = run_ansible_module("evidence_files", {**args, "files": {"other.txt": "x\n"}}, expect_failure=True)
    assert again["claim_exists"] is True
    assert again["msg"] == f"{run} exists already: it is not this run's."
    assert not (run / "before" / "other.txt").exists()
    checked = run_ansible_module("evidence_files", args, check=True, expect_failure=True)
    assert checked["claim_exists"] is True
    outside = run_ansible_module(
        "evidence_files", {**args, "claim": str(tmp_path / "elsewhere")}, expect_failure=True
    )
    elsewhere = tmp_path / "elsewhere"
    assert outside["msg"] == f"claim {elsewhere} must be dest {run / 'before'} or one of its parents."
