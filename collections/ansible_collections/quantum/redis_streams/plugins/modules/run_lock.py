#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# One healing run at a time per pipeline: a lock directory on the target, taken atomically,
# released only by the run that holds it, taken over when its holder is proven gone or stale.
from __future__ import annotations

DOCUMENTATION = r"""
---
module: run_lock
short_description: Take or release a pipeline's run lock, so that one healing run at a time changes it
description:
  - The lock is a directory on the target (O(path)). C(mkdir) is atomic, so of two runs started
    together only one takes it. Its C(owner.json) names the run (O(run_id)), a token only the
    holder knows (RV(token)), when it was taken and the controller process that holds it.
  - O(state=present) takes the lock when it is free. A lock older than O(stale_s) belongs to a
    run assumed dead and is taken over, with a warning. A lock held by an C(ansible-playbook)
    process of this very controller (same host, same boot) that no longer runs (killed, crashed)
    is taken over at once, with a warning; the action plugin checks that process on the
    controller. Any other lock is held by another run; the module fails with one sentence.
  - A take-over renames the old lock aside (a rename is atomic too, so of two runs taking over
    the same lock one wins), checks that what it moved is the lock it judged, and puts it back
    otherwise.
  - O(state=absent) removes the lock only when its owner file holds O(token); a run never
    releases another run's lock.
  - In check mode nothing is taken or removed; the module reports who holds the lock (a held
    lock is not a failure then, since the run changes nothing).
  - The lock is the run's own record, not a change to the pipeline, so C(changed) is always false.
version_added: "1.1.0"
author:
  - quantum-remediation maintainers (@quantum-remediation)
options:
  path:
    description:
      - The lock directory on the target, one per pipeline (C(/run/quantum-remediation-NAME.lock)).
    type: path
    required: true
  state:
    description: V(present) takes the lock, V(absent) releases it.
    type: str
    choices: [present, absent]
    default: present
  run_id:
    description: The run taking the lock, recorded in the owner file. Required with O(state=present).
    type: str
  stale_s:
    description: A lock older than this many seconds (by the target's clock) is taken over, with a warning.
    type: int
    default: 3600
  token:
    description: With O(state=absent), the token RV(token) this run got when it took the lock.
    type: str
  controller:
    description:
      - The controller process that takes the lock (C(host), C(boot_id), C(pid), C(started) in clock
        ticks since boot). Set by the action plugin; not to be set by hand.
    type: dict
  take_over_token:
    description:
      - Take over the lock whose owner file holds this token (its holder is proven gone). Set by the
        action plugin; not to be set by hand.
    type: str
attributes:
  action:
    description: Has an action plugin, which reads the controller's own process table.
    support: full
  check_mode:
    description: Can run in check mode and return what it would do without doing it.
    support: full
  diff_mode:
    description: Returns details on what has changed.
    support: none
notes:
  - The lock directory's parent must exist and be writable (C(/run) on a systemd host).
"""

EXAMPLES = r"""
- name: Take the run lock (only report who holds it when the run changes nothing)
  quantum.redis_streams.run_lock:
    path: /run/quantum-remediation-quantum-trader.lock
    run_id: "{{ run_id }}"
    stale_s: 3600
  check_mode: "{{ ansible_check_mode or not changes_allowed }}"
  register: lock

- name: Release it
  quantum.redis_streams.run_lock:
    path: /run/quantum-remediation-quantum-trader.lock
    state: absent
    token: "{{ lock.token }}"
  when: lock.held | default(false)
"""

RETURN = r"""
path:
  description: The lock directory (O(path)), to release the lock with.
  returned: success
  type: str
  sample: /run/quantum-remediation-quantum-trader.lock
  version_added: "1.3.0"
found:
  description:
    - What was found - V(free), V(held) (another run holds it), V(stale) (older than O(stale_s)),
      V(orphaned) (its holder, a process of this controller, is gone), V(released), or V(absent)
      (nothing to release).
  returned: always
  type: str
  sample: free
held:
  description: Whether this run holds the lock now.
  returned: always
  type: bool
  sample: true
token:
  description: This run's token, to release the lock with (null unless RV(held)).
  returned: always
  type: str
  sample: 9f1c2a7b4e5d6c3a
holder:
  description: The run id of the run found holding the lock (null when it was free).
  returned: always
  type: str
  sample: 20260117T101700Z-cafe
age_s:
  description: How long ago the lock found was taken, in seconds by the target's clock.
  returned: always
  type: int
  sample: 34
owner:
  description: The owner file found (its token included), for the action plugin's check of the holder.
  returned: when a lock was found
  type: dict
message:
  description: One sentence saying what was found and done.
  returned: always
  type: str
  sample: The run lock is free; taken by 20260117T101700Z-cafe.
"""

import json
import os
import secrets
import shutil
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule

OWNER = "owner.json"


def read_owner(path: str) -> dict[str, Any] | None:
    """The lock's owner file, or None when it is missing or not yet written (a run between its
    mkdir and its write: the lock is held by a run we cannot name)."""
    try:
        with open(os.path.join(path, OWNER), encoding="utf-8") as handle:
            owner = json.load(handle)
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def lock_age(path: str) -> int | None:
    try:
        return int(time.time() - os.stat(path).st_mtime)
    except OSError:
        return None


class RunLock:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.path: str = module.params["path"].rstrip("/") or "/"
        self.run_id: str | None = module.params["run_id"]

    def fail(self, msg: str, **extra: Any) -> None:
        self.module.fail_json(msg=f"{msg} (lock {self.path})", held=False, token=None, **extra)

    def create(self) -> str | None:
        """mkdir, then the owner file: this run's token, or None when another run's mkdir won."""
        try:
            os.mkdir(self.path, 0o700)
        except FileExistsError:
            return None
        except OSError as exc:
            self.fail(
                f"Cannot take the run lock: {exc.strerror}: check that its directory exists and is writable"
            )
        token = secrets.token_hex(8)
        owner = {
            "run_id": self.run_id,
            "token": token,
            "taken_at": int(time.time()),
            "controller": self.module.params["controller"] or {},
        }
        temporary = os.path.join(self.path, f".{OWNER}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(descriptor, "w", encoding="utf-8") as fh:
            json.dump(owner, fh, indent=2)
            fh.write("\n")
        os.rename(temporary, os.path.join(self.path, OWNER))
        return token

    def set_aside(self, expected_token: str | None) -> bool:
        """Renames the lock aside when its owner file still holds `expected_token` (None: still
        has no owner file); puts back what it moved otherwise. True when the lock is gone."""
        aside = f"{self.path}.stale-{self.run_id}-{secrets.token_hex(4)}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False  # another run took it over first
        moved = read_owner(aside)
        if (moved or {}).get("token") != expected_token:
            try:
                os.rename(aside, self.path)  # not the lock we judged: a new one, put it back
            except OSError:
                self.fail(f"A run lock was moved aside by mistake and could not be put back from {aside}")
            return False
        shutil.rmtree(aside, ignore_errors=True)
        return True

    def take(self) -> dict[str, Any]:
        stale_s = self.module.params["stale_s"]
        owner = read_owner(self.path) if os.path.isdir(self.path) else None
        exists = os.path.lexists(self.path)
        if not exists:
            found, message = "free", "The run lock is free"
        else:
            holder = str((owner or {}).get("run_id") or "an unknown run")
            age = lock_age(self.path)
            take_over = self.module.params["take_over_token"]
            if take_over and (owner or {}).get("token") == take_over:
                pid = (owner or {}).get("controller", {}).get("pid")
                found = "orphaned"
                message = (
                    f"Taking over the run lock of {holder}: its ansible-playbook (pid {pid} on this "
                    "controller) is gone, killed or crashed mid-run"
                )
            elif age is not None and age > stale_s:
                found = "stale"
                message = (
                    f"Taking over a stale run lock held by {holder} for {age} s (older than {stale_s} s): "
                    "that run is assumed dead"
                )
            else:
                age_text = "at an unknown time" if age is None else f"{age} s ago"
                result = {
                    "found": "held",
                    "holder": holder,
                    "age_s": age,
                    "owner": owner,
                    "message": (
                        f"Another run ({holder}) holds the run lock, taken {age_text}: wait for it to "
                        "finish, or remove the lock directory if that run is gone"
                    ),
                }
                if self.module.check_mode:
                    result["message"] += "; this run changes nothing, so it goes on"
                    return dict(result, held=False, token=None)
                self.fail(result.pop("message"), **result)
        result = {
            "found": found,
            "holder": None if found == "free" else holder,
            "age_s": None if found == "free" else age,
            "held": False,
            "token": None,
        }
        if owner is not None:
            result["owner"] = owner
        if self.module.check_mode:
            return dict(result, message=f"{message}; not taken (check mode, or the run changes nothing)")
        if found != "free":
            self.module.warn(f"{message} (lock {self.path})")
            if not self.set_aside((owner or {}).get("token")):
                self.fail(f"{message}, but another run took it over first")
        token = self.create()
        if token is None:
            self.fail(
                "Cannot take the run lock: another run took it at the same moment, wait for it to "
                "finish"
            )
        return dict(result, held=True, token=token, message=f"{message}; taken by {self.run_id}")

    def release(self) -> dict[str, Any]:
        base = {"held": False, "token": None, "age_s": None}
        if not os.path.lexists(self.path):
            return dict(base, found="absent", holder=None, message="No run lock to release")
        owner = read_owner(self.path)
        holder = (owner or {}).get("run_id")
        if (owner or {}).get("token") != self.module.params["token"] or not self.module.params["token"]:
            return dict(
                base,
                found="held",
                holder=holder,
                held=False,
                message=(
                    f"The run lock is not this run's (held by {holder or 'an unknown run'}): left in place"
                ),
            )
        if not self.module.check_mode:
            shutil.rmtree(self.path)
        return dict(base, found="released", holder=holder, message="The run lock was released")


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "run_id": {"type": "str"},
            "stale_s": {"type": "int", "default": 3600},
            # Guards against releasing another run's lock; not a secret (returned as RV(token)).
            "token": {"type": "str", "no_log": False},
            "controller": {"type": "dict"},
            "take_over_token": {"type": "str", "no_log": False},
        },
        required_if=[("state", "present", ["run_id"]), ("state", "absent", ["token"])],
        supports_check_mode=True,
    )
    if not os.path.isabs(module.params["path"]) or module.params["path"] in ("/", ""):
        module.fail_json(msg=f"path must be an absolute path below /, got {module.params['path']!r}.")
    if module.params["stale_s"] < 1:
        module.fail_json(msg=f"stale_s must be 1 or more, got {module.params['stale_s']}.")
    lock = RunLock(module)
    result = lock.take() if module.params["state"] == "present" else lock.release()
    module.exit_json(changed=False, path=module.params["path"], **result)


if __name__ == "__main__":
    main()
