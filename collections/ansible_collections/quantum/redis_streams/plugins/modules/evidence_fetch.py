#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# A run's evidence directory, copied from the target to the controller in one round trip: the
# target writes the last files into it and packs it (this module), the controller unpacks it (the
# action plugin of the same name).
from __future__ import annotations

DOCUMENTATION = r"""
---
module: evidence_fetch
short_description: Copy a directory of evidence from the target to the controller in one task
description:
  - Packs every regular file and directory under O(src) on the target into one compressed tar
    archive, carried back in the module's result, and unpacks it on the controller into O(dest)
    (the action plugin of the same name). One round trip to the target, whatever the number of
    files.
  - O(files) are written under O(src) on the target first, in the same call, so that a run's last
    files (its report) are written and fetched in one round trip. Nothing else is written on the
    target. With O(fetch=false) they are only written (a run that keeps its evidence on the target).
  - With O(root), O(dest) must be C(<root>/<host>/<run id>) - exactly two path components below
    O(root), without C(.) or C(..) - or the task fails before the target is contacted and before
    anything is written on the controller.
  - O(dest) and its missing parents are created with mode C(0750). Members are unpacked with
    Python's C(data) filter, so that no member can land outside O(dest), be a device, or keep
    set-uid bits. A symbolic link or any other special file under O(src) is left out and named
    in RV(left_out).
  - An archive larger than O(max_bytes) fails the task before anything is unpacked.
  - The archive never appears in the task's result or output.
version_added: "1.2.0"
author:
  - quantum-remediation maintainers (@quantum-remediation)
options:
  src:
    description: The directory on the target to copy; required unless O(probe=true).
    type: path
  dest:
    description:
      - The directory on the controller to unpack into (created when missing); required unless O(fetch=false).
    type: path
  fetch:
    description:
      - V(false) writes O(files) under O(src) on the target and fetches nothing (no archive, no O(dest)),
        so that a run that keeps its evidence on the target writes its last files with the same task.
    type: bool
    default: true
    version_added: "1.5.0"
  root:
    description:
      - The controller directory that holds every fetched run. When given, O(dest) must be
        C(<root>/<host>/<run id>) - two path components below it, the path normalised (no C(.), C(..)
        or C(//)) - else the task fails, naming both, before the target is contacted and before
        anything is written on the controller.
      - O(root) itself must be an absolute path without C(.) or C(..) components, other than C(/).
      - Not used with O(probe=true).
    type: path
    version_added: "1.4.0"
  files:
    description:
      - "Text files to write under O(src) on the target before it is packed, as C({relative name: text}),
        as M(quantum.redis_streams.evidence_files) writes its C(files):
        a name may hold subdirectories (C(report/REPORT.md)); it may not be absolute nor hold a C(..)
        component; the text is written as given (UTF-8), with no newline added."
      - Each file is written with mode C(0640) to a temporary file in its directory and renamed over the
        old one; a file whose content and mode already match is left alone. The subdirectories the names
        hold are created with mode C(0750) when missing.
      - A bad name or a content that is not text fails the task before anything is written.
      - In check mode nothing is written, and the archive holds O(src) as it is.
    type: dict
    default: {}
    version_added: "1.4.0"
  probe:
    description:
      - Only prove, on the controller, that O(dest) can be written - created with its missing
        parents as a fetch would, then a directory made and removed in it - without contacting the
        target. A run checks so before it changes anything, rather than fail to fetch at its end.
      - When it cannot, the task fails with O(fail_msg).
    type: bool
    default: false
    version_added: "1.3.0"
  fail_msg:
    description:
      - With O(probe=true), the message the task fails with when O(dest) cannot be written; C({why}) in
        it is replaced by the reason (the system's error, such as C(Permission denied)).
      - Without it, the message names O(dest) and the reason.
    type: str
    version_added: "1.4.0"
  max_bytes:
    description: The largest compressed archive accepted, in bytes.
    type: int
    default: 67108864
attributes:
  check_mode:
    description: Can run in check mode and return what it would copy without writing it.
    support: full
    details:
      - Packs and counts on the target, writes none of O(files) (RV(written) lists those it would), and
        unpacks nothing on the controller.
  diff_mode:
    description: Does not return a diff.
    support: none
notes:
  - The target needs nothing but Python; the controller does the unpacking.
"""

EXAMPLES = r"""
- name: Check, before any change, that the controller can write where the evidence goes
  quantum.redis_streams.evidence_fetch:
    dest: "{{ playbook_dir }}/evidence"
    probe: true
    fail_msg: >-
      {{ playbook_dir }}/evidence is not writable on the controller ({why}): choose another
      directory.

- name: Write the run's report and fetch its evidence to the controller, in one round trip
  quantum.redis_streams.evidence_fetch:
    src: /var/lib/quantum-remediation/evidence/20260117T070524Z-1a2b
    dest: "{{ playbook_dir }}/evidence/{{ inventory_hostname }}/20260117T070524Z-1a2b"
    root: "{{ playbook_dir }}/evidence"
    files:
      report/REPORT.md: "{{ lookup('ansible.builtin.template', 'REPORT.md.j2') }}"
      report/summary.json: "{{ summary | to_nice_json }}\n"
"""

RETURN = r"""
writable:
  description: With O(probe=true), whether O(dest) can be written on the controller (when it cannot, the
    task fails).
  returned: with O(probe=true)
  type: bool
  sample: true
  version_added: "1.3.0"
written:
  description: The names of O(files) whose content or mode differed and were written before packing (in
    check mode, would be), sorted.
  returned: unless O(probe=true)
  type: list
  elements: str
  sample: [report/REPORT.md, report/stop_point.txt, report/summary.json]
  version_added: "1.4.0"
created_directories:
  description: The directories under O(src) created for O(files) (in check mode, that would be), parents
    first.
  returned: unless O(probe=true)
  type: list
  elements: str
  sample: [/var/lib/quantum-remediation/evidence/20260117T070524Z-1a2b/report]
  version_added: "1.4.0"
src:
  description: The directory copied, as given.
  returned: unless O(probe=true)
  type: str
  sample: /var/lib/quantum-remediation/evidence/20260117T070524Z-1a2b
dest:
  description:
    - The directory on the controller the files were unpacked into (in check mode, would be).
    - Null with O(fetch=false).
  returned: always
  type: str
  sample: /srv/quantum/evidence/qt-lab/20260117T070524Z-1a2b
files:
  description: How many regular files were copied (those of O(files) among them).
  returned: unless O(probe=true) or O(fetch=false)
  type: int
  sample: 21
bytes:
  description: The size of the compressed archive.
  returned: unless O(probe=true) or O(fetch=false)
  type: int
  sample: 18342
left_out:
  description: The paths under O(src) (relative) left out - symbolic links and special files.
  returned: unless O(probe=true) or O(fetch=false)
  type: list
  elements: str
  sample: []
"""

import base64
import io
import os
import stat
import tarfile
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.quantum.redis_streams.plugins.module_utils.evidence_write import (
    DIRECTORY_MODE,
    FILE_MODE,
    bad_names,
    create_directories,
    missing_directories,
    not_text,
    path_under,
    read_bytes,
    write_atomically,
)


def write_files(module: AnsibleModule, src: str, files: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Write `files` under src with FILE_MODE, creating the missing directories with
    DIRECTORY_MODE; a file that holds its content with that mode already is left alone, and in
    check mode nothing is written. Returns (the names written, the directories created), in
    check mode those that would be; fails, writing nothing, on a bad name or a content not text."""
    refused = bad_names([str(name) for name in files])
    if refused:
        module.fail_json(
            msg=f"files: {', '.join(repr(n) for n in refused)} must be relative to src, without '..', "
            "so that nothing is written outside it."
        )
    not_texts = not_text(files)
    if not_texts:
        module.fail_json(
            msg=f"files: the content of {', '.join(repr(n) for n in not_texts)} is not text: "
            "render it first (to_nice_json, a template lookup)."
        )
    contents = {name: text.encode("utf-8") for name, text in files.items()}
    paths = {name: path_under(src, name) for name in files}
    missing, not_directories = missing_directories(src, paths.values())
    for directory in not_directories:
        module.fail_json(msg=f"{directory} exists and is not a directory: nothing can go in it.")
    written = []
    for name in sorted(files):
        if os.path.isdir(paths[name]):
            module.fail_json(msg=f"files: {name!r} is a directory under {src}, not a file.")
        old = read_bytes(paths[name])
        if old != contents[name] or stat.S_IMODE(os.stat(paths[name]).st_mode) != FILE_MODE:
            written.append(name)
    if module.check_mode:
        return written, missing
    done: list[str] = []
    try:
        create_directories(missing, DIRECTORY_MODE)
        for name in written:
            write_atomically(paths[name], contents[name], FILE_MODE)
            done.append(name)
    except OSError as exc:
        module.fail_json(
            msg=f"Could not write under {src}: {exc}; written before that: {', '.join(done) or 'none'}.",
            written=done,
        )
    return written, missing


def pack(src: str) -> tuple[bytes, int, list[str]]:
    """(the compressed tar of src's directories and regular files, files packed, paths left out)."""
    buffer = io.BytesIO()
    files, left_out = 0, []
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for root, dirs, names in os.walk(src):
            dirs.sort()
            for name in sorted(dirs) + sorted(names):
                path = os.path.join(root, name)
                relative = os.path.relpath(path, src)
                mode = os.lstat(path).st_mode
                if stat.S_ISDIR(mode):
                    archive.add(path, arcname=relative, recursive=False)
                elif stat.S_ISREG(mode):
                    archive.add(path, arcname=relative, recursive=False)
                    files += 1
                else:
                    left_out.append(relative)
    return buffer.getvalue(), files, left_out


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "src": {"type": "path"},
            "dest": {"type": "path"},
            "fetch": {"type": "bool", "default": True},
            "max_bytes": {"type": "int", "default": 64 * 2**20},
            "probe": {"type": "bool", "default": False},
            "files": {"type": "dict", "default": {}},
            # Used by the action plugin, on the controller.
            "root": {"type": "path"},
            "fail_msg": {"type": "str"},
        },
        required_if=[("probe", False, ["src"]), ("fetch", True, ["dest"])],
        supports_check_mode=True,
    )
    if module.params["probe"]:
        module.fail_json(msg="probe runs on the controller: call the module through its action plugin.")
    src = module.params["src"]
    if not os.path.isdir(src):
        module.fail_json(msg=f"src {src} is not a directory on the target: nothing to fetch.")
    written, created = write_files(module, src, module.params["files"])
    if not module.params["fetch"]:
        module.exit_json(
            changed=bool(written or created), src=src, dest=None, written=written, created_directories=created
        )
    try:
        data, files, left_out = pack(src)
    except OSError as exc:
        module.fail_json(msg=f"Could not pack {src}: {exc}.")
    if len(data) > module.params["max_bytes"]:
        module.fail_json(
            msg=f"The evidence under {src} packs to {len(data)} bytes, more than max_bytes "
            f"{module.params['max_bytes']}: raise max_bytes or fetch it another way."
        )
    result: dict[str, Any] = {
        "changed": bool(written or created),
        "src": src,
        "dest": module.params["dest"],
        "files": files,
        "bytes": len(data),
        "left_out": left_out,
        "written": written,
        "created_directories": created,
        # Taken out of the result by the action plugin, which unpacks it.
        "content": base64.b64encode(data).decode("ascii"),
    }
    module.exit_json(**result)


if __name__ == "__main__":
    main()
