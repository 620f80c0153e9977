"""evidence_fetch through the real `ansible` command on localhost (module and action plugin):
a directory packed on the "target" and unpacked on the "controller" (both this machine), the
archive kept out of the result, special files left out, a size cap, and check mode."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from conftest import run_ansible_module


def evidence(root: Path) -> Path:
    run = root / "20261203T101500Z-ab12"
    (run / "before").mkdir(parents=True)
    (run / "report").mkdir()
    (run / "before" / "redis.json").write_text('{"t0": {}}\n')
    (run / "before" / "mode.txt").write_text("TESTNET\n")
    (run / "report" / "REPORT.md").write_text("# Report\n")
    os.chmod(run / "report" / "REPORT.md", 0o640)
    return run


def test_the_whole_directory_arrives_and_the_archive_stays_out_of_the_result(tmp_path: Path) -> None:
    src = evidence(tmp_path / "target")
    dest = tmp_path / "controller" / "qt-lab" / src.name
    result = run_ansible_module("evidence_fetch", {"src": str(src), "dest": str(dest)})
    assert (result["files"], result["left_out"], result["changed"]) == (3, [], False)
    assert result["bytes"] > 0
    assert "content" not in result
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == [
        "before",
        "before/mode.txt",
        "before/redis.json",
        "report",
        "report/REPORT.md",
    ]
    assert (dest / "before" / "redis.json").read_text() == '{"t0": {}}\n'
    assert stat.S_IMODE((dest / "report" / "REPORT.md").stat().st_mode) == 0o640


def test_links_and_special_files_are_left_out(tmp_path: Path) -> None:
    src = evidence(tmp_path / "target")
    (src / "before" / "passwd").symlink_to("/etc/passwd")
    os.mkfifo(src / "report" / "pipe")
    dest = tmp_path / "controller"
    result = run_ansible_module("evidence_fetch", {"src": str(src), "dest": str(dest)})
    assert result["left_out"] == ["before/passwd", "report/pipe"]
    assert not (dest / "before" / "passwd").exists() and not (dest / "before" / "passwd").is_symlink()
    assert not (dest / "report" / "pipe").exists()


def test_check_mode_and_a_size_cap_write_nothing(tmp_path: Path) -> None:
    src = evidence(tmp_path / "target")
    dest = tmp_path / "controller"
    planned = run_ansible_module("evidence_fetch", {"src": str(src), "dest": str(dest)}, check=True)
    assert planned["files"] == 3 and not dest.exists()
    capped = run_ansible_module(
        "evidence_fetch", {"src": str(src), "dest": str(dest), "max_bytes": 10}, expect_failure=True
    )
    assert "more than max_bytes 10: raise max_bytes or fetch it another way." in capped["msg"]
    assert not dest.exists()


def test_a_missing_source_or_a_relative_dest_is_one_sentence(tmp_path: Path) -> None:
    missing = run_ansible_module(
        "evidence_fetch", {"src": str(tmp_path / "nope"), "dest": str(tmp_path / "d")}, expect_failure=True
    )
    assert missing["msg"] == f"src {tmp_path / 'nope'} is not a directory on the target: nothing to fetch."
    relative = run_ansible_module(
        "evidence_fetch", {"src": str(tmp_path), "dest": "evidence/x"}, expect_failure=True
    )
    assert relative["msg"] == "dest must be an absolute path on the controller, got 'evidence/x'."


def test_probe_proves_the_controller_can_write_dest_and_leaves_it_empty(tmp_path: Path) -> None:
    dest = tmp_path / "controller" / "evidence"
    result = run_ansible_module("evidence_fetch", {"dest": str(dest), "probe": True})
    assert (result["writable"], result["changed"]) == (True, False)
    # Created as the fetch would, and nothing left in it.
    assert dest.is_dir() and list(dest.iterdir()) == []
    # /proc refuses a new directory whoever asks: not writable, said, and the task does not fail.
    refused = run_ansible_module("evidence_fetch", {"dest": "/proc/qt-fetch-probe", "probe": True})
    assert refused["writable"] is False and refused["msg"]
