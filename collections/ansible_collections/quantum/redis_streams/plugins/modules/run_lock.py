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

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.quantum.redis_streams.plugins.module_utils.run_lock import (
    LockRefused,
    RunLock,
    lock_option_problem,
)


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
    params = module.params
    problem = lock_option_problem(params["path"], params["stale_s"])
    if problem:
        module.fail_json(msg=problem)
    lock = RunLock(
        module,
        params["path"],
        params["run_id"],
        stale_s=params["stale_s"],
        controller=params["controller"],
        take_over_token=params["take_over_token"],
    )
    try:
        if params["state"] == "present":
            result = lock.take(dry_run=module.check_mode)
        else:
            result = lock.release(params["token"], dry_run=module.check_mode)
    except LockRefused as exc:
        module.fail_json(msg=exc.message, held=False, token=None, **exc.found)
    module.exit_json(changed=False, path=params["path"], **result)


if __name__ == "__main__":
    main()
