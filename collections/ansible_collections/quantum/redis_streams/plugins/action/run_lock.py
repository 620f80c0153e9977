# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# run_lock's controller half: the controller process that takes the lock, and a second call
# that takes over a lock whose holder, a process of this controller, is gone
# (plugin_utils/controller.py says how that is proven).
from __future__ import annotations

from typing import Any

from ansible.plugins.action import ActionBase
from ansible_collections.quantum.redis_streams.plugins.plugin_utils.controller import (
    orphaned_token,
    this_controller,
)

MODULE = "quantum.redis_streams.run_lock"


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = True

    def run(self, tmp: Any = None, task_vars: dict | None = None) -> dict:
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        for internal in ("controller", "take_over_token"):
            if internal in args:
                msg = f"run_lock's option {internal} is set by its action plugin, not by hand."
                return dict(result, failed=True, msg=msg)
        if args.get("state", "present") != "present":
            return dict(result, **self._execute_module(MODULE, module_args=args, task_vars=task_vars))
        here = this_controller()
        args["controller"] = here
        first = self._execute_module(MODULE, module_args=args, task_vars=task_vars)
        token = orphaned_token(first, here)
        if token:
            args["take_over_token"] = token
            return dict(result, **self._execute_module(MODULE, module_args=args, task_vars=task_vars))
        return dict(result, **first)
