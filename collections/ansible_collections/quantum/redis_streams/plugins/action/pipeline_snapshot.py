# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# pipeline_snapshot's controller half, used only with its `lock` option: the controller
# process that takes the lock, and a second call that takes over a lock whose holder, a
# process of this controller, is gone - as run_lock's action plugin does
# (plugin_utils/controller.py says how that is proven). Without `lock`, the module as it is.
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.plugins.action import ActionBase
from ansible_collections.quantum.redis_streams.plugins.plugin_utils.controller import (
    orphaned_token,
    this_controller,
)

MODULE = "quantum.redis_streams.pipeline_snapshot"


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = True
    # Without `lock`, every call of the module goes through here: it runs as ansible.builtin.normal
    # would run it (async included, the remote temporary directory removed).
    _supports_async = True

    def run(self, tmp: Any = None, task_vars: dict | None = None) -> dict:
        result = super().run(tmp, task_vars)
        wrap_async = bool(self._task.async_val) and not self._connection.has_native_async
        try:
            return dict(result, **self._run(task_vars, wrap_async))
        finally:
            if not wrap_async:
                self._remove_tmp_path(self._connection._shell.tmpdir)

    def _run(self, task_vars: dict | None, wrap_async: bool) -> dict:
        args = dict(self._task.args)
        lock = args.get("lock")
        if lock is None:
            return self._execute_module(MODULE, module_args=args, task_vars=task_vars, wrap_async=wrap_async)
        if self._task.async_val:
            return {"failed": True, "msg": "pipeline_snapshot's option lock cannot be used with async."}
        if not isinstance(lock, Mapping):
            # A string would be parsed by the module (k=v, JSON) after this check of its keys.
            kind = "a string" if isinstance(lock, str) else type(lock).__name__
            msg = f"pipeline_snapshot's option lock must be a dictionary, got {kind}."
            return {"failed": True, "msg": msg}
        for internal in ("controller", "take_over_token"):
            if internal in lock:
                msg = f"pipeline_snapshot's option lock.{internal} is set by its action plugin, not by hand."
                return {"failed": True, "msg": msg}
        here = this_controller()
        args["lock"] = dict(lock, controller=here)
        first = self._execute_module(MODULE, module_args=args, task_vars=task_vars)
        token = orphaned_token(first.get("lock"), here)
        if token:
            args["lock"] = dict(args["lock"], take_over_token=token)
            return self._execute_module(MODULE, module_args=args, task_vars=task_vars)
        return first
