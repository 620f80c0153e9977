#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# A run's evidence directory, copied from the target to the controller in one round trip: the
# target packs it (this module), the controller unpacks it (the action plugin of the same name).
from __future__ import annotations

DOCUMENTATION = r"""
---
module: evidence_fetch
short_description: Copy a directory of evidence from the target to the controller in one task
description:
  - Packs every regular file and directory under O(src) on the target into one compressed tar
    archive, carried back in the module's result, and unpacks it on the controller into O(dest)
    (the action plugin of the same name). One round trip to the target, whatever the number of
    files; nothing is written on the target.
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
    description: The directory on the controller to unpack into (created when missing).
    type: path
    required: true
  probe:
    description:
      - Only prove, on the controller, that O(dest) can be written - created with its missing
        parents as a fetch would, then a directory made and removed in it - without contacting the
        target. A run checks so before it changes anything, rather than fail to fetch at its end.
      - The result's RV(writable) says whether it can, C(msg) why not; the task does not fail.
    type: bool
    default: false
    version_added: "1.3.0"
  max_bytes:
    description: The largest compressed archive accepted, in bytes.
    type: int
    default: 67108864
attributes:
  check_mode:
    description: Can run in check mode and return what it would copy without writing it.
    support: full
    details:
      - Packs and counts on the target, and unpacks nothing on the controller.
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
  register: fetch_root

- name: Fetch the run's evidence to the controller
  quantum.redis_streams.evidence_fetch:
    src: /var/lib/quantum-remediation/evidence/20260117T070524Z-1a2b
    dest: "{{ playbook_dir }}/evidence/{{ inventory_hostname }}/20260117T070524Z-1a2b"
"""

RETURN = r"""
writable:
  description: With O(probe=true), whether O(dest) can be written on the controller.
  returned: with O(probe=true)
  type: bool
  sample: true
  version_added: "1.3.0"
src:
  description: The directory copied, as given.
  returned: always
  type: str
  sample: /var/lib/quantum-remediation/evidence/20260117T070524Z-1a2b
dest:
  description: The directory on the controller the files were unpacked into (in check mode, would be).
  returned: always
  type: str
  sample: /srv/quantum/evidence/qt-lab/20260117T070524Z-1a2b
files:
  description: How many regular files were copied.
  returned: always
  type: int
  sample: 21
bytes:
  description: The size of the compressed archive.
  returned: always
  type: int
  sample: 18342
left_out:
  description: The paths under O(src) (relative) left out - symbolic links and special files.
  returned: always
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
            "dest": {"type": "path", "required": True},
            "max_bytes": {"type": "int", "default": 64 * 2**20},
            "probe": {"type": "bool", "default": False},
        },
        required_if=[("probe", False, ["src"])],
        supports_check_mode=True,
    )
    if module.params["probe"]:
        module.fail_json(msg="probe runs on the controller: call the module through its action plugin.")
    src = module.params["src"]
    if not os.path.isdir(src):
        module.fail_json(msg=f"src {src} is not a directory on the target: nothing to fetch.")
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
        "changed": False,
        "src": src,
        "dest": module.params["dest"],
        "files": files,
        "bytes": len(data),
        "left_out": left_out,
        # Taken out of the result by the action plugin, which unpacks it.
        "content": base64.b64encode(data).decode("ascii"),
    }
    module.exit_json(**result)


if __name__ == "__main__":
    main()
