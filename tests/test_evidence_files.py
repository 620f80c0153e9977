"""evidence_files through the real `ansible` command: writes, idempotence, check mode, diff,
the names it refuses, and a backup with its index (SHA256SUMS, manifest) in one call."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
from pathlib import Path

import pytest
from ansible.plugins.filter.core import to_nice_json
from conftest import collection_util, run_ansible_module

copy_index = collection_util("copy_index")

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


def backup_sources(root: Path) -> dict[str, Path]:
    """A unit file and two drop-ins on the 'target' (files under `root`), with their own modes."""
    unit = root / "etc/systemd/system/quantum-execution.service"
    dropin = root / "etc/systemd/system/quantum-execution.service.d/override.conf"
    other = root / "etc/systemd/system/quantum-ai-engine.service"
    dropin.parent.mkdir(parents=True)
    unit.write_bytes(b"[Service]\nExecStart=/opt/quantum/execution\n")
    dropin.write_bytes(b"[Service]\nEnvironment=X=1\n")
    dropin.chmod(0o600)
    other.write_bytes(b"[Service]\nExecStart=/opt/quantum/engine\n")
    return {"unit": unit, "dropin": dropin, "other": other, "gone": root / "etc/systemd/system/gone.conf"}


def backup_copies(sources: dict[str, Path]) -> dict[str, dict]:
    """copies as unit_backup gives them, in unit order (not sorted: the index keeps this order),
    with a source that vanished before the copy."""
    order = [("unit", "quantum-execution", "fragment"), ("dropin", "quantum-execution", "drop-in"),
             ("gone", "quantum-execution", "drop-in"), ("other", "quantum-ai-engine", "fragment")]
    return {
        str(sources[key]).lstrip("/"): {"src": str(sources[key]),
                                        "fields": {"unit": unit, "kind": kind, "path": str(sources[key])}}
        for key, unit, kind in order
    }


MANIFEST = {
    "name": "manifest.json",
    "content": {"run_id": "20261203T101500Z-ab12", "units": ["quantum-execution", "quantum-ai-engine"]},
}


def test_one_call_writes_the_copies_their_sha256sums_and_the_manifest(tmp_path: Path) -> None:
    """unit_backup's use: the copies, SHA256SUMS and manifest.json in one call (one round trip);
    the source that vanished is left out of all three."""
    sources = backup_sources(tmp_path / "target")
    copies = backup_copies(sources)
    dest = tmp_path / "backup"
    args = {"dest": str(dest), "copies": copies, "checksums": "SHA256SUMS", "manifest": MANIFEST}
    result = run_ansible_module("evidence_files", args)

    names = [name for name in copies if "gone" not in name]
    assert result["missing"] == [str(sources["gone"]).lstrip("/")]
    assert result["written"] == sorted([*names, "SHA256SUMS", "manifest.json"])
    for name in names:
        assert (dest / name).read_bytes() == Path("/", name).read_bytes()
    assert mode_of(dest / str(sources["dropin"]).lstrip("/")) == 0o600
    assert mode_of(dest / "SHA256SUMS") == mode_of(dest / "manifest.json") == 0o640

    # SHA256SUMS: in the order of copies, and what `sha256sum -c` itself accepts in the backup.
    sums = (dest / "SHA256SUMS").read_text()
    assert sums == "".join(f"{hashlib.sha256(Path('/', n).read_bytes()).hexdigest()}  {n}\n" for n in names)
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=dest, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout == "".join(f"{n}: OK\n" for n in names)

    # manifest.json: the caller's content with one entry per copy saved, as to_nice_json wrote it.
    entries = [
        {**copies[n]["fields"], "checksum": hashlib.sha256(Path("/", n).read_bytes()).hexdigest(),
         "backup": str(dest / n), "saved": True}
        for n in names
    ]
    manifest_text = (dest / "manifest.json").read_text()
    assert json.loads(manifest_text) == {**MANIFEST["content"], "files": entries}
    assert manifest_text == to_nice_json({**MANIFEST["content"], "files": entries}) + "\n"
    assert result["entries"] == entries

    # A damaged copy is what sha256sum -c (and so the rollback) must catch.
    (dest / names[0]).write_bytes(b"damaged\n")
    damaged = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=dest, capture_output=True, text=True)
    assert damaged.returncode != 0 and f"{names[0]}: FAILED" in damaged.stdout

    repaired = run_ansible_module("evidence_files", args)
    assert repaired["written"] == [names[0]]
    again = run_ansible_module("evidence_files", args)
    assert (again["changed"], again["written"]) == (False, [])
    assert again["entries"] == entries


def test_backup_with_its_index_in_check_mode_writes_nothing(tmp_path: Path) -> None:
    """Check mode reads the sources (the entries say what would be saved, with their SHA-256,
    saved false) and writes no copy, no SHA256SUMS, no manifest."""
    sources = backup_sources(tmp_path / "target")
    copies = backup_copies(sources)
    dest = tmp_path / "run" / "backup"
    args = {"dest": str(dest), "copies": copies, "checksums": "SHA256SUMS", "manifest": MANIFEST}
    would = run_ansible_module("evidence_files", args, check=True, diff=True)
    names = [name for name in copies if "gone" not in name]
    assert would["changed"] is True
    assert would["written"] == sorted([*names, "SHA256SUMS", "manifest.json"])
    assert [e["path"] for e in would["entries"]] == [copies[n]["fields"]["path"] for n in names]
    assert {e["saved"] for e in would["entries"]} == {False}
    assert would["entries"][0]["checksum"] == hashlib.sha256(sources["unit"].read_bytes()).hexdigest()
    diffs = {d["after_header"]: d["after"] for d in would["diff"]}
    assert json.loads(diffs[str(dest / "manifest.json")])["files"][0]["saved"] is True
    assert not (tmp_path / "run").exists()


def test_a_source_that_changes_during_the_copy_fails_and_no_index_is_written(tmp_path: Path) -> None:
    """The index is written only once every copy is read back: a manifest on disk means the
    backup is whole. /proc/self/io (the module's own I/O counters) differs at every read."""
    if not Path("/proc/self/io").exists():
        pytest.skip("no /proc/self/io on this kernel")
    dest = tmp_path / "backup"
    result = run_ansible_module(
        "evidence_files",
        {"dest": str(dest), "copies": {"io": "/proc/self/io"}, "checksums": "SHA256SUMS",
         "manifest": MANIFEST},
        expect_failure=True,
    )
    assert result["msg"] == (
        "The copy of /proc/self/io differs from its source: the source changed while it was being copied."
    )
    assert not (dest / "SHA256SUMS").exists()
    assert not (dest / "manifest.json").exists()


def test_the_index_is_refused_when_it_would_overwrite_or_mislabel(tmp_path: Path) -> None:
    source = tmp_path / "x.service"
    source.write_text("[Unit]\n")
    dest = tmp_path / "backup"
    cases = [
        ({"copies": {"SHA256SUMS": str(source)}, "checksums": "SHA256SUMS"},
         "'SHA256SUMS' is named in both copies and checksums: give it once."),
        ({"checksums": "index", "manifest": {"name": "index"}},
         "'index' is named in both checksums and manifest.name: give it once."),
        ({"checksums": "../SHA256SUMS"},
         "checksums: '../SHA256SUMS' must be relative to dest, without '..', so that nothing is written "
         "outside it."),
        ({"manifest": {"name": "m.json", "content": {"files": []}}},
         "manifest: content has the key 'files' already, which the entries go under (manifest.key)."),
        ({"copies": {"x": {"src": str(source), "fields": {"saved": False}}}},
         "copies: the fields of 'x' may not name checksum, backup, saved; the module sets them."),
        ({"copies": {"x": {"source": str(source)}}},
         "copies: 'x' must be a source path or {src: source path, fields: {...}}."),
    ]
    for extra, msg in cases:
        result = run_ansible_module("evidence_files", {"dest": str(dest), **extra}, expect_failure=True)
        assert result["msg"] == msg
    assert not dest.exists()


def test_a_manifest_key_of_the_callers_choice_holds_the_entries(tmp_path: Path) -> None:
    source = tmp_path / "x.service"
    source.write_text("[Unit]\n")
    result = run_ansible_module(
        "evidence_files",
        {"dest": str(tmp_path / "backup"), "copies": {"x.service": str(source)},
         "manifest": {"name": "index/manifest.json", "key": "copies"}},
    )
    manifest = json.loads((tmp_path / "backup/index/manifest.json").read_text())
    assert manifest == {"copies": result["entries"]}
    assert result["entries"] == [{"checksum": hashlib.sha256(b"[Unit]\n").hexdigest(),
                                  "backup": str(tmp_path / "backup/x.service"), "saved": True}]


def test_checksum_lines_are_what_sha256sum_checks(tmp_path: Path) -> None:
    """A name with a backslash (systemd's \\x2d) is written as it is; one with a newline the way
    GNU sha256sum escapes it: both pass `sha256sum -c`."""
    names = ["quantum\\x2dexecution.service", "odd\nname.conf", "plain.conf"]
    for name in names:
        (tmp_path / name).write_bytes(name.encode())
    text = copy_index.checksum_text([(n, hashlib.sha256(n.encode()).hexdigest()) for n in names])
    first = hashlib.sha256(names[0].encode()).hexdigest()
    assert text.splitlines()[0] == f"{first}  quantum\\x2dexecution.service"
    assert text.splitlines()[1].startswith("\\")
    (tmp_path / "SUMS").write_text(text)
    check = subprocess.run(["sha256sum", "-c", "SUMS"], cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    (tmp_path / "plain.conf").write_text("changed")
    assert subprocess.run(["sha256sum", "-c", "SUMS"], cwd=tmp_path, capture_output=True).returncode != 0


def test_manifest_text_is_what_to_nice_json_wrote() -> None:
    manifest = {"run_id": "r1", "mode": "TESTNET", "units": ["b", "a"]}
    entries = [copy_index.manifest_entry({"unit": "b", "path": "/etc/é"}, "ab" * 32, "/backup/etc/é", True)]
    expected = to_nice_json({**manifest, "files": entries}) + "\n"
    assert copy_index.manifest_text(manifest, "files", entries) == expected
