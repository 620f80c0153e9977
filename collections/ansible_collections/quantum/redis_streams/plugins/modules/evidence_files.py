#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Writes a set of small text files under one directory in a single module run: one round
# trip to the target for a whole evidence phase instead of one (or three) per file.
from __future__ import annotations

DOCUMENTATION = r"""
---
module: evidence_files
short_description: Write several text files, and copies of files, under one directory in one task
description:
  - Writes each entry of O(files) (a relative name and its text) under O(dest), with O(mode), and
    each entry of O(copies) (a relative name and a file on the target) as a byte-for-byte copy with
    the source's permissions and its SHA-256 returned. A file whose content and mode already match
    is left alone; C(changed) is true only when a file's content or mode differs, or a directory is
    created.
  - O(dest), its missing parents and the subdirectories that O(files) names are created with
    O(directory_mode); directories that exist are left as they are.
  - Each file is written to a temporary file in its directory and renamed over the old one,
    so that a reader never sees half a file.
  - A name that is absolute or holds a C(..) component is refused before anything is written.
  - Used by the evidence, unit_backup and report roles to write a phase's files in one round
    trip to the target (unit_backup copies the unit files with O(copies)).
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
      - "Files to copy under O(dest), as C({relative name: absolute path of the source on the target}).
        Each is read once, written atomically with the source's permissions (O(mode) does not apply), read
        back, and the source read again: when either differs from the first read (the source changed while
        it was being copied) the module fails and says which."
      - A source that does not exist is listed in RV(missing) and not copied.
    type: dict
    default: {}
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
      - The permissions of every file, as an octal string (V('0640')) or number.
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
        writes nothing.
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

- name: Write the backup's checksums and manifest
  quantum.redis_streams.evidence_files:
    dest: /var/lib/quantum-remediation/evidence/20260117T070524Z-1a2b/backup
    files:
      SHA256SUMS: "{{ sums }}"
      manifest.json: "{{ manifest | to_nice_json }}\n"
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
import tempfile
from typing import Any

from ansible.module_utils.basic import AnsibleModule


def bad_names(names: list[str]) -> list[str]:
    """The names that could write outside dest: empty, absolute, or holding a `..` component."""
    return [
        name
        for name in names
        if not name or os.path.isabs(name) or ".." in name.replace("\\", "/").split("/") or "\0" in name
    ]


def read_bytes(path: str) -> bytes | None:
    """The file's bytes, or None when it does not exist."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def write_atomically(path: str, data: bytes, mode: int) -> None:
    """Write `data` to a temporary file beside `path`, set its mode, rename it over `path`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class EvidenceFiles:
    """The files to write under one directory, compared with what is there when it is made."""

    def __init__(self, module: AnsibleModule) -> None:
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
        for name, src in sorted(module.params["copies"].items()):
            data = read_bytes(src)
            if data is None:
                self.missing.append(name)
                continue
            mode = stat.S_IMODE(os.stat(src).st_mode)
            self.contents[name] = (data, mode)
            digest = hashlib.sha256(data).hexdigest()
            self.copied[name] = {"src": src, "sha256": digest, "mode": f"{mode:04o}"}
        self.missing_dirs = self.directories_to_create()

    def octal_mode(self, option: str, value: Any) -> int:
        return self.octal_mode_of(self.module, option, value)

    @staticmethod
    def octal_mode_of(module: AnsibleModule, option: str, value: Any) -> int:
        """An option's mode as an int: an int as it is (YAML 0640), a string read as octal."""
        if isinstance(value, int) and not isinstance(value, bool):
            mode = value
        else:
            try:
                mode = int(str(value).strip(), 8)
            except ValueError:
                mode = -1
        if not 0 <= mode <= 0o7777:
            module.fail_json(msg=f"{option} must be an octal mode such as '0640' (got {value!r}).")
        return mode

    def path(self, name: str) -> str:
        return os.path.join(self.dest, os.path.normpath(name))

    def directories_to_create(self) -> list[str]:
        """dest's missing parents and itself, then each missing subdirectory the names hold."""
        wanted = {self.dest} | {os.path.dirname(self.path(name)) for name in self.contents}
        missing: list[str] = []
        for directory in sorted(wanted):
            chain = []
            current = directory
            while not os.path.exists(current) and current not in missing and current not in chain:
                chain.append(current)
                current = os.path.dirname(current)
            missing.extend(reversed(chain))
        for directory in sorted(wanted):
            if os.path.exists(directory) and not os.path.isdir(directory):
                self.module.fail_json(msg=f"{directory} exists and is not a directory: nothing can go in it.")
        return sorted(set(missing), key=lambda d: (d.count(os.sep), d))

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

    def apply(self, written: list[str], done: list[str]) -> None:
        """Create the missing directories, then write the files; `done` collects the names written."""
        for directory in self.missing_dirs:
            os.mkdir(directory)
            os.chmod(directory, self.directory_mode)
        for name in written:
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


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "dest": {"type": "path", "required": True},
            "files": {"type": "dict", "default": {}},
            "copies": {"type": "dict", "default": {}},
            "mode": {"type": "raw", "default": "0640"},
            "directory_mode": {"type": "raw", "default": "0750"},
            "claim": {"type": "path"},
        },
        supports_check_mode=True,
    )
    names = [str(name) for name in [*module.params["files"], *module.params["copies"]]]
    refused = bad_names(names)
    if refused:
        module.fail_json(
            msg=f"files and copies: {', '.join(repr(n) for n in refused)} must be relative to dest, without "
            "'..', so that nothing is written outside it."
        )
    both = sorted(set(module.params["files"]) & set(module.params["copies"]))
    if both:
        names_both = ", ".join(repr(n) for n in both)
        module.fail_json(msg=f"{names_both} is named in both files and copies: give it once.")
    relative = sorted(n for n, src in module.params["copies"].items() if not os.path.isabs(str(src)))
    if relative:
        module.fail_json(
            msg=f"copies: the source of {', '.join(repr(n) for n in relative)} must be an absolute path "
            "on the target."
        )
    not_text = [name for name, text in module.params["files"].items() if not isinstance(text, str)]
    if not_text:
        module.fail_json(
            msg=f"files: the content of {', '.join(repr(n) for n in sorted(not_text))} is not text: "
            "render it first (to_nice_json, a template lookup)."
        )
    claim = module.params["claim"]
    if claim is not None:
        claim_directory(module, claim)
    files = EvidenceFiles(module)
    written, unchanged, diffs = files.plan()
    if not module.check_mode:
        done: list[str] = []
        try:
            files.apply(written, done)
        except OSError as exc:
            module.fail_json(
                msg=f"Could not write under {files.dest}: {exc}; "
                f"written before that: {', '.join(done) or 'none'}.",
                written=done,
                not_written=[name for name in written if name not in done],
                unchanged=unchanged,
            )
        changed_copies = files.changed_copies()
        if changed_copies:
            module.fail_json(
                msg=f"The copy of {', '.join(files.copied[n]['src'] for n in changed_copies)} differs from "
                "its source: the source changed while it was being copied.",
                written=done,
                copied=files.copied,
            )
    result: dict[str, Any] = {
        "changed": bool(written or files.missing_dirs),
        "dest": files.dest,
        "written": written,
        "unchanged": unchanged,
        "copied": files.copied,
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
