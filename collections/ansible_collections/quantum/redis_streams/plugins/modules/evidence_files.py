#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Writes a set of small text files under one directory in a single module run: one round
# trip to the target for a whole evidence phase instead of one (or three) per file.
from __future__ import annotations

DOCUMENTATION = r"""
---
module: evidence_files
short_description: Write text files, and copies of files with their index, under one directory in one task
description:
  - Writes each entry of O(files) (a relative name and its text) under O(dest), with O(mode), and
    each entry of O(copies) (a relative name and a file on the target) as a byte-for-byte copy with
    the source's permissions and its SHA-256 returned. A file whose content and mode already match
    is left alone; C(changed) is true only when a file's content or mode differs, or a directory is
    created.
  - After the copies, and only once every copy has been read back, it can write their index in the
    same task - a checksum file (O(checksums)) and a JSON manifest (O(manifest)) - so that a backup
    and its index take one round trip to the target.
  - O(dest), its missing parents and the subdirectories that the names hold are created with
    O(directory_mode); directories that exist are left as they are.
  - Each file is written to a temporary file in its directory and renamed over the old one,
    so that a reader never sees half a file.
  - A name that is absolute or holds a C(..) component is refused before anything is written.
  - Used by the evidence, unit_backup and report roles to write a phase's files in one round
    trip to the target (unit_backup copies the unit files with O(copies), O(checksums) and O(manifest)).
version_added: "1.0.0"
author:
  - quantum-remediation maintainers (@quantum-remediation)
options:
  dest:
    description: The directory the files are written under.
    type: path
    required: true
  files:
    description:
      - "The files to write, as C({relative name: text}). A name may hold subdirectories
        (C(etc/x.conf)); it may not be absolute nor hold a C(..) component."
      - The text is written as given (UTF-8), with no newline added.
    type: dict
    default: {}
  copies:
    description:
      - "Files to copy under O(dest), as C({relative name: source}), the source an absolute path on
        the target, or C({relative name: {src: source, fields: {...}}}) to give the copy's entry in
        O(manifest) fields of its own (C(fields), a dictionary; without it, none)."
      - Each is read once, written atomically with the source's permissions (O(mode) does not apply),
        read back, and the source read again; when either differs from the first read (the source
        changed while it was being copied) the module fails, says which, and writes no index.
      - A source that does not exist is listed in RV(missing), not copied, and left out of the index.
      - The index (O(checksums), O(manifest), RV(entries)) lists the copies in the order given here.
    type: dict
    default: {}
  checksums:
    description:
      - The name, relative to O(dest), of a checksum file of the copies - one line per copy with its
        SHA-256 and its name relative to O(dest), in the format of C(sha256sum), so that
        C(sha256sum -c) run in O(dest) checks them all.
      - Written with O(mode), after the copies and only once every copy has been read back.
    type: str
    version_added: "1.4.0"
  manifest:
    description:
      - A JSON file to write under O(dest), after the copies and after O(checksums) - the last file
        written, so that its existence says the copies are complete.
      - Its content is O(manifest.content) with the copies' entries (RV(entries), C(saved) true) as a
        list under O(manifest.key), keys sorted, indented by four spaces, ending with a newline (what
        C(to_nice_json) writes). Written with O(mode).
    type: dict
    version_added: "1.4.0"
    suboptions:
      name:
        description: The manifest's name, relative to O(dest).
        type: str
        required: true
      content:
        description: The caller's part of the manifest (a run id, what was backed up and why).
        type: dict
        default: {}
      key:
        description:
          - The key of the manifest that holds the list of entries; O(manifest.content) may not have it.
        type: str
        default: files
  claim:
    description:
      - A directory that must not exist yet, O(dest) or one of its parents - a run's own directory,
        named after a run id that must be new. It is created first with one C(mkdir) (atomic - of two
        runs given the same name, one gets it), its missing parents before it; when it exists already
        nothing is written and the module fails with RV(claim_exists) true.
      - In check mode nothing is created; the module fails the same way when it exists.
    type: path
  mode:
    description:
      - The permissions of every file written from O(files), O(checksums) and O(manifest), as an octal
        string (V('0640')) or number.
    type: raw
    default: "0640"
  directory_mode:
    description:
      - The permissions of each directory the module creates, as an octal string or number; existing
        directories are not changed.
    type: raw
    default: "0750"
attributes:
  check_mode:
    description: Can run in check mode and return the change it would make without making it.
    support: full
    details:
      - Returns what it would write (RV(written)) and create (RV(created_directories)) and C(changed);
        writes nothing. The sources of O(copies) are read, so RV(copied) and RV(entries) name the copies
        that would be made, with their SHA-256; each entry's C(saved) is false.
  diff_mode:
    description: Returns details on what has changed (or would have to change in check mode).
    support: full
    details:
      - One diff per file written (or that would be), with the old and the new text, and the old and new
        mode when only the mode differs.
      - The texts are shown as given, so pass only what may be shown (scrubbed evidence, never a secret).
notes:
  - Contents are compared byte for byte with the file on the target; the target's files are read, not
    checksummed on the controller.
"""

EXAMPLES = r"""
- name: Write the phase's evidence files
  quantum.redis_streams.evidence_files:
    dest: "{{ evidence_dir }}/before"
    files:
      services.txt: "{{ lookup('ansible.builtin.template', 'services.txt.j2') }}"
      services.json: "{{ services | to_nice_json }}\n"
    mode: "0640"

- name: Copy two unit files into a run's backup, keeping their paths
  quantum.redis_streams.evidence_files:
    dest: /var/lib/quantum-remediation/evidence/20260117T070524Z-1a2b/backup
    copies:
      etc/systemd/system/quantum-execution.service: /etc/systemd/system/quantum-execution.service
      etc/systemd/system/quantum-execution.service.d/override.conf: >-
        /etc/systemd/system/quantum-execution.service.d/override.conf
  register: copied

- name: Back up a unit file and its drop-in with their SHA256SUMS and a manifest, in one round trip
  quantum.redis_streams.evidence_files:
    dest: /var/lib/quantum-remediation/evidence/20260117T070524Z-1a2b/backup
    copies:
      etc/systemd/system/quantum-execution.service:
        src: /etc/systemd/system/quantum-execution.service
        fields:
          unit: quantum-execution
          kind: fragment
          path: /etc/systemd/system/quantum-execution.service
      etc/systemd/system/quantum-execution.service.d/override.conf:
        src: /etc/systemd/system/quantum-execution.service.d/override.conf
        fields:
          unit: quantum-execution
          kind: drop-in
          path: /etc/systemd/system/quantum-execution.service.d/override.conf
    checksums: SHA256SUMS
    manifest:
      name: manifest.json
      content:
        run_id: 20260117T070524Z-1a2b
  register: backup
"""

RETURN = r"""
dest:
  description: The directory written under.
  returned: always
  type: str
  sample: /var/lib/quantum-remediation/evidence/20260117T070524Z-1a2b/before
written:
  description: The names whose content or mode differed and were written (in check mode, would be), sorted.
  returned: always
  type: list
  elements: str
  sample: [redis.json, services.txt]
unchanged:
  description: The names whose content and mode already matched, sorted.
  returned: always
  type: list
  elements: str
  sample: [mode.txt]
copied:
  description: Per name of O(copies) whose source exists, the source, its SHA-256 and its permissions
    (whether or not the copy had to be written).
  returned: always
  type: dict
  sample:
    etc/systemd/system/quantum-execution.service:
      src: /etc/systemd/system/quantum-execution.service
      sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
      mode: "0644"
entries:
  description:
    - One per copy whose source exists, in the order of O(copies) - its C(fields) with C(checksum) (its
      SHA-256), C(backup) (the copy's path under O(dest)) and C(saved) (true once the copy is written and
      read back; false in check mode, where nothing is). O(manifest) lists the same entries, saved.
  returned: always
  type: list
  elements: dict
  sample:
    - unit: x
      kind: fragment
      path: /etc/systemd/system/x.service
      checksum: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
      backup: /var/lib/quantum-remediation/evidence/20260117T070524Z-1a2b/backup/etc/systemd/system/x.service
      saved: true
  version_added: "1.4.0"
claim_exists:
  description: Whether O(claim) existed already (then nothing was written).
  returned: when O(claim) is given
  type: bool
  sample: false
missing:
  description: The names of O(copies) whose source does not exist (nothing copied), sorted.
  returned: always
  type: list
  elements: str
  sample: []
created_directories:
  description: The directories created (in check mode, that would be), parents first.
  returned: always
  type: list
  elements: str
  sample: [/var/lib/quantum-remediation/evidence/20260117T070524Z-1a2b/before]
"""

import hashlib
import os
import stat
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.quantum.redis_streams.plugins.module_utils.copy_index import (
    ENTRY_FIELDS,
    checksum_text,
    manifest_entry,
    manifest_text,
)
from ansible_collections.quantum.redis_streams.plugins.module_utils.evidence_write import (
    bad_names,
    create_directories,
    missing_directories,
    not_text,
    parse_mode,
    path_under,
    read_bytes,
    write_atomically,
)


def copy_spec(value: Any) -> tuple[str, dict[str, Any]] | None:
    """A copy's source and fields, from a source path or {src, fields}; None for anything else."""
    if isinstance(value, str):
        return value, {}
    if not isinstance(value, dict) or not set(value) <= {"src", "fields"}:
        return None
    src, fields = value.get("src"), value.get("fields", {})
    return (src, fields) if isinstance(src, str) and isinstance(fields, dict) else None


def copy_sources(module: AnsibleModule) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each name of `copies`, in its order, with its source and its manifest fields; fails naming
    the copies given wrongly."""
    sources: dict[str, tuple[str, dict[str, Any]]] = {}
    malformed, relative, reserved = [], [], []
    for name, value in module.params["copies"].items():
        spec = copy_spec(value)
        if spec is None:
            malformed.append(name)
            continue
        src, fields = spec
        if not os.path.isabs(src):
            relative.append(name)
        if set(fields) & set(ENTRY_FIELDS):
            reserved.append(name)
        sources[name] = (src, fields)
    if malformed:
        module.fail_json(
            msg=f"copies: {', '.join(repr(n) for n in sorted(malformed))} must be a source path or "
            "{src: source path, fields: {...}}."
        )
    if relative:
        module.fail_json(
            msg=f"copies: the source of {', '.join(repr(n) for n in sorted(relative))} must be an absolute "
            "path on the target."
        )
    if reserved:
        module.fail_json(
            msg=f"copies: the fields of {', '.join(repr(n) for n in sorted(reserved))} may not name "
            f"{', '.join(ENTRY_FIELDS)}; the module sets them."
        )
    return sources


class EvidenceFiles:
    """The files to write under one directory, compared with what is there when it is made."""

    def __init__(self, module: AnsibleModule, sources: dict[str, tuple[str, dict[str, Any]]]) -> None:
        self.module = module
        self.dest = os.path.abspath(module.params["dest"])
        self.mode = self.octal_mode("mode", module.params["mode"])
        self.directory_mode = self.octal_mode("directory_mode", module.params["directory_mode"])
        # Every name's bytes and mode: the texts with `mode`, the copies as their sources are.
        self.contents: dict[str, tuple[bytes, int]] = {
            name: (text.encode("utf-8"), self.mode) for name, text in module.params["files"].items()
        }
        self.copied: dict[str, dict[str, Any]] = {}
        self.missing: list[str] = []
        # The copies' manifest entries, in the order of `copies`, as written (saved).
        self.entries: list[dict[str, Any]] = []
        for name, (src, fields) in sources.items():
            data = read_bytes(src)
            if data is None:
                self.missing.append(name)
                continue
            mode = stat.S_IMODE(os.stat(src).st_mode)
            self.contents[name] = (data, mode)
            digest = hashlib.sha256(data).hexdigest()
            self.copied[name] = {"src": src, "sha256": digest, "mode": f"{mode:04o}"}
            self.entries.append(manifest_entry(fields, digest, self.path(name), True))
        self.missing.sort()
        # The index of the copies, written after them in this order: the manifest last.
        self.index: list[str] = []
        checksums = module.params["checksums"]
        if checksums is not None:
            sums = [(name, self.copied[name]["sha256"]) for name in sources if name in self.copied]
            self.add_index(checksums, checksum_text(sums))
        manifest = module.params["manifest"]
        if manifest is not None:
            text = manifest_text(manifest["content"], manifest["key"], self.entries)
            self.add_index(manifest["name"], text)
        self.missing_dirs = self.directories_to_create()

    def add_index(self, name: str, text: str) -> None:
        self.contents[name] = (text.encode("utf-8"), self.mode)
        self.index.append(name)

    def octal_mode(self, option: str, value: Any) -> int:
        return self.octal_mode_of(self.module, option, value)

    @staticmethod
    def octal_mode_of(module: AnsibleModule, option: str, value: Any) -> int:
        """An option's mode as an int: an int as it is (YAML 0640), a string read as octal."""
        mode = parse_mode(value)
        if mode is None:
            module.fail_json(msg=f"{option} must be an octal mode such as '0640' (got {value!r}).")
        return mode

    def path(self, name: str) -> str:
        return path_under(self.dest, name)

    def directories_to_create(self) -> list[str]:
        """dest's missing parents and itself, then each missing subdirectory the names hold."""
        missing, not_directories = missing_directories(self.dest, [self.path(name) for name in self.contents])
        for directory in not_directories:
            self.module.fail_json(msg=f"{directory} exists and is not a directory: nothing can go in it.")
        return missing

    def plan(self) -> tuple[list[str], list[str], list[dict[str, Any]]]:
        """(names to write, names unchanged, diffs), from the files as they are now."""
        written, unchanged, diffs = [], [], []
        for name in sorted(self.contents):
            path = self.path(name)
            if os.path.isdir(path):
                self.module.fail_json(msg=f"{name!r} is a directory under {self.dest}, not a file.")
            new, mode = self.contents[name]
            old = read_bytes(path)
            old_mode = stat.S_IMODE(os.stat(path).st_mode) if old is not None else None
            if old == new and old_mode == mode:
                unchanged.append(name)
                continue
            written.append(name)
            if old == new:
                diffs.append({"before_header": path, "after_header": path,
                              "before": {"mode": f"{old_mode:04o}"}, "after": {"mode": f"{mode:04o}"}})
            else:
                diffs.append({"before_header": path if old is not None else "(absent)", "after_header": path,
                              "before": (old or b"").decode("utf-8", errors="replace"),
                              "after": new.decode("utf-8", errors="replace")})
        return written, unchanged, diffs

    def make_directories(self) -> None:
        create_directories(self.missing_dirs, self.directory_mode)

    def write(self, names: list[str], done: list[str]) -> None:
        """Write the files `names`, in their order; `done` collects the names written."""
        for name in names:
            data, mode = self.contents[name]
            write_atomically(self.path(name), data, mode)
            done.append(name)

    def changed_copies(self) -> list[str]:
        """The copies whose written file or source no longer holds what was read first."""
        changed = []
        for name, copied in self.copied.items():
            first = self.contents[name][0]
            if read_bytes(self.path(name)) != first or read_bytes(copied["src"]) != first:
                changed.append(name)
        return changed


def claim_directory(module: AnsibleModule, claim: str) -> None:
    """Create `claim` (dest or one of its parents) with one mkdir, its parents first; fail,
    writing nothing, when it exists or cannot be created."""
    claim = os.path.abspath(claim)
    dest = os.path.abspath(module.params["dest"])
    if os.path.commonpath([claim, dest]) != claim:
        module.fail_json(msg=f"claim {claim} must be dest {dest} or one of its parents.")
    mode = EvidenceFiles.octal_mode_of(module, "directory_mode", module.params["directory_mode"])
    if os.path.lexists(claim):
        module.fail_json(msg=f"{claim} exists already: it is not this run's.", claim_exists=True)
    if module.check_mode:
        return
    try:
        os.makedirs(os.path.dirname(claim), mode=mode, exist_ok=True)
        os.mkdir(claim, mode)
        os.chmod(claim, mode)
    except FileExistsError:
        module.fail_json(msg=f"{claim} exists already: it is not this run's.", claim_exists=True)
    except OSError as exc:
        module.fail_json(msg=f"Could not create {claim}: {exc}.", claim_exists=False)


def check_names(module: AnsibleModule) -> None:
    """Fail, before anything is read or written, on a name that could write outside dest or that
    two options give, and on a manifest whose content already has the entries' key."""
    params = module.params
    refused = bad_names([str(name) for name in [*params["files"], *params["copies"]]])
    if refused:
        module.fail_json(
            msg=f"files and copies: {', '.join(repr(n) for n in refused)} must be relative to dest, without "
            "'..', so that nothing is written outside it."
        )
    index = {"checksums": params["checksums"]}
    if params["manifest"] is not None:
        index["manifest.name"] = params["manifest"]["name"]
    for option, name in index.items():
        if name is not None and bad_names([name]):
            module.fail_json(
                msg=f"{option}: {name!r} must be relative to dest, without '..', so that nothing is written "
                "outside it."
            )
    options_of: dict[str, list[str]] = {}
    for option, names in (("files", params["files"]), ("copies", params["copies"]),
                          *((option, [name]) for option, name in index.items() if name is not None)):
        for name in names:
            options_of.setdefault(os.path.normpath(str(name)), []).append(option)
    twice = [
        f"{name!r} is named in both {' and '.join(options)}"
        for name, options in sorted(options_of.items())
        if len(options) > 1
    ]
    if twice:
        module.fail_json(msg=f"{'; '.join(twice)}: give it once.")
    manifest = params["manifest"]
    if manifest is not None and manifest["key"] in manifest["content"]:
        module.fail_json(
            msg=f"manifest: content has the key {manifest['key']!r} already, which the entries go under "
            "(manifest.key)."
        )


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "dest": {"type": "path", "required": True},
            "files": {"type": "dict", "default": {}},
            "copies": {"type": "dict", "default": {}},
            "checksums": {"type": "str"},
            "manifest": {
                "type": "dict",
                "options": {
                    "name": {"type": "str", "required": True},
                    "content": {"type": "dict", "default": {}},
                    "key": {"type": "str", "default": "files", "no_log": False},  # a JSON key, not a secret
                },
            },
            "mode": {"type": "raw", "default": "0640"},
            "directory_mode": {"type": "raw", "default": "0750"},
            "claim": {"type": "path"},
        },
        supports_check_mode=True,
    )
    check_names(module)
    sources = copy_sources(module)
    not_texts = not_text(module.params["files"])
    if not_texts:
        module.fail_json(
            msg=f"files: the content of {', '.join(repr(n) for n in not_texts)} is not text: "
            "render it first (to_nice_json, a template lookup)."
        )
    claim = module.params["claim"]
    if claim is not None:
        claim_directory(module, claim)
    files = EvidenceFiles(module, sources)
    written, unchanged, diffs = files.plan()
    if not module.check_mode:
        done: list[str] = []

        def write(names: list[str], directories: bool = False) -> None:
            """Write `names` (`done` collects them), or fail saying what was written before."""
            try:
                if directories:
                    files.make_directories()
                files.write(names, done)
            except OSError as exc:
                module.fail_json(
                    msg=f"Could not write under {files.dest}: {exc}; "
                    f"written before that: {', '.join(done) or 'none'}.",
                    written=done,
                    not_written=[name for name in written if name not in done],
                    unchanged=unchanged,
                )

        write([name for name in written if name not in files.index], directories=True)
        changed_copies = files.changed_copies()
        if changed_copies:
            module.fail_json(
                msg=f"The copy of {', '.join(files.copied[n]['src'] for n in changed_copies)} differs from "
                "its source: the source changed while it was being copied.",
                written=done,
                copied=files.copied,
            )
        # The index only once every copy is read back: a manifest on disk says the copies are whole.
        write([name for name in files.index if name in written])
    result: dict[str, Any] = {
        "changed": bool(written or files.missing_dirs),
        "dest": files.dest,
        "written": written,
        "unchanged": unchanged,
        "copied": files.copied,
        "entries": [{**entry, "saved": not module.check_mode} for entry in files.entries],
        "missing": files.missing,
        "created_directories": files.missing_dirs,
    }
    if claim is not None:
        result["claim_exists"] = False
    if module._diff:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
