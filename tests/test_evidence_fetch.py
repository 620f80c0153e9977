"""evidence_fetch through the real `ansible` command on localhost (module and action plugin):
a directory packed on the "target" and unpacked on the "controller" (both this machine), the
archive kept out of the result, special files left out, a size cap, and check mode; `files`
written on the target before the directory is packed; `root` refusing a destination that is not
<root>/<host>/<run id> before anything is written; the probe failing with its sentence."""

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


def test_probe_fails_with_the_sentence_it_is_given(tmp_path: Path) -> None:
    # /proc refuses a new directory whoever asks (root passes every `test -w`).
    probe = {"dest": "/proc/qt-fetch-probe", "probe": True}
    refused = run_ansible_module("evidence_fetch", probe, expect_failure=True)
    assert refused["writable"] is False
    assert refused["msg"] == (
        "dest /proc/qt-fetch-probe is not writable on the controller (No such file or directory)."
    )
    # The preflight role's own sentence, the reason put in place of {why}.
    fail_msg = (
        "report_fetch_root /proc/qt-fetch-probe is not writable on the controller ({why}): choose a writable "
        "report_fetch_root or set report_fetch=false."
    )
    worded = run_ansible_module("evidence_fetch", {**probe, "fail_msg": fail_msg}, expect_failure=True)
    assert worded["msg"] == (
        "report_fetch_root /proc/qt-fetch-probe is not writable on the controller "
        "(No such file or directory): choose a writable report_fetch_root or set report_fetch=false."
    )
    # A plain file where the directory would go: its own reason.
    (tmp_path / "file").write_text("x\n")
    blocked = run_ansible_module(
        "evidence_fetch", {"dest": str(tmp_path / "file" / "evidence"), "probe": True, "fail_msg": fail_msg},
        expect_failure=True,
    )
    assert "is not writable on the controller (Not a directory): choose a writable" in blocked["msg"]


REPORT = {
    "report/stop_point.txt": "stage router: OK\n",
    "report/REPORT.md": "# Report, final\n",
    "report/summary.json": '{"outcome": "RECOVERED"}\n',
}


def test_files_are_written_on_the_target_before_the_directory_is_packed(tmp_path: Path) -> None:
    src = evidence(tmp_path / "target")
    (src / "report" / "REPORT.md").unlink()
    (src / "report").rmdir()
    dest = tmp_path / "controller" / "qt-lab" / src.name
    result = run_ansible_module("evidence_fetch", {"src": str(src), "dest": str(dest), "files": REPORT})
    assert result["written"] == ["report/REPORT.md", "report/stop_point.txt", "report/summary.json"]
    assert result["created_directories"] == [str(src / "report")]
    assert (result["changed"], result["files"]) == (True, 5)
    for name, text in REPORT.items():
        # On the target with the modes of evidence_files, and in the archive the controller unpacked.
        assert (src / name).read_text() == text
        assert stat.S_IMODE((src / name).stat().st_mode) == 0o640
        assert (dest / name).read_text() == text
    assert stat.S_IMODE((src / "report").stat().st_mode) == 0o750
    # The same files again: left alone, nothing changed, the whole directory fetched again.
    again = run_ansible_module(
        "evidence_fetch", {"src": str(src), "dest": str(tmp_path / "again"), "files": REPORT}
    )
    assert (again["written"], again["created_directories"]) == ([], [])
    assert (again["changed"], again["files"]) == (False, 5)


def test_fetch_false_only_writes_the_files_on_the_target(tmp_path: Path) -> None:
    """A run that keeps its evidence on the target (report_fetch false) writes its last files with
    the same task: nothing packed, no dest needed, nothing on the controller."""
    src = evidence(tmp_path / "target")
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run_ansible_module("evidence_fetch", {"src": str(src), "fetch": False, "files": REPORT})
    assert result["written"] == ["report/REPORT.md", "report/stop_point.txt", "report/summary.json"]
    assert (result["changed"], result["dest"]) == (True, None)
    assert "files" not in result and "bytes" not in result and "content" not in result
    for name, text in REPORT.items():
        assert (src / name).read_text() == text
        assert stat.S_IMODE((src / name).stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    # Fetching still needs a destination: one sentence, nothing written.
    failed = run_ansible_module("evidence_fetch", {"src": str(src), "files": REPORT}, expect_failure=True)
    assert "dest" in failed["msg"]


def test_files_in_check_mode_and_bad_names_write_nothing(tmp_path: Path) -> None:
    src = evidence(tmp_path / "target")
    dest = tmp_path / "controller"
    planned = run_ansible_module(
        "evidence_fetch", {"src": str(src), "dest": str(dest), "files": REPORT}, check=True
    )
    assert planned["written"] == ["report/REPORT.md", "report/stop_point.txt", "report/summary.json"]
    assert (src / "report" / "REPORT.md").read_text() == "# Report\n"
    assert not (src / "report" / "summary.json").exists() and not dest.exists()
    for name in ("../escape.txt", "/tmp/qt-escape.txt", "report/../../escape.txt"):
        refused = run_ansible_module(
            "evidence_fetch", {"src": str(src), "dest": str(dest), "files": {**REPORT, name: "x\n"}},
            expect_failure=True,
        )
        assert refused["msg"] == (
            f"files: {name!r} must be relative to src, without '..', so that nothing is written outside it."
        )
    not_text = run_ansible_module(
        "evidence_fetch", {"src": str(src), "dest": str(dest), "files": {"report/summary.json": {"a": 1}}},
        expect_failure=True,
    )
    assert "files: the content of 'report/summary.json' is not text" in not_text["msg"]
    assert not (src / "report" / "summary.json").exists() and not (tmp_path / "escape.txt").exists()
    assert not dest.exists()


def test_root_takes_only_root_host_run_id_and_refuses_before_anything_is_written(tmp_path: Path) -> None:
    src = evidence(tmp_path / "target")
    root = tmp_path / "controller" / "evidence"
    refusals = {
        str(tmp_path / "elsewhere" / "qt-lab" / src.name): str(root),
        str(root / "qt-lab"): str(root),
        str(root / "qt-lab" / src.name / "deeper"): str(root),
        # Two components below root as written, root itself once normalised.
        str(root / "qt-lab" / ".."): str(root),
        str(root / "qt-lab" / ".." / ".." / "x"): str(root),
        str(root) + "//qt-lab/" + src.name: str(root),
        str(root) + "-other/qt-lab/" + src.name: str(root),
    }
    for dest, given_root in refusals.items():
        refused = run_ansible_module(
            "evidence_fetch",
            {"src": str(src), "dest": dest, "root": given_root, "files": REPORT},
            expect_failure=True,
        )
        assert refused["msg"] == (
            f"Not fetching the evidence: dest {dest} is not <root>/<host>/<run id> under {given_root}."
        )
    good = root / "qt-lab" / src.name
    bad_root = run_ansible_module(
        "evidence_fetch",
        {"src": str(src), "dest": str(good), "root": str(tmp_path / "a" / ".." / "evidence")},
        expect_failure=True,
    )
    assert bad_root["msg"].startswith(
        "Not fetching the evidence: root must be an absolute path without '.' or '..' components"
    )
    # Refused before the target is contacted (its files not written) and before the controller's.
    assert not (src / "report" / "summary.json").exists()
    assert not (tmp_path / "controller").exists() and not (tmp_path / "elsewhere").exists()
    # A root given with a trailing slash is the same root.
    fetched = run_ansible_module(
        "evidence_fetch", {"src": str(src), "dest": str(good), "root": str(root) + "/"}
    )
    assert (fetched["files"], (good / "report" / "REPORT.md").read_text()) == (3, "# Report\n")
