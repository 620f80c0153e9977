"""evidence_files through the real `ansible` command: writes, idempotence, check mode, diff,
and the names it refuses."""

from __future__ import annotations

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
            f"files: {name!r} must be relative to dest, without '..', so that nothing is written outside it."
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
