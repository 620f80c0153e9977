# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# metrics_writer_bundle: the writer's zip application built on the controller
# (plugin_utils/bundle.py) and installed on the target by ansible.builtin.copy, which brings
# check mode, diff mode and "unchanged when the checksum matches".
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from ansible import constants as C
from ansible.plugins.action import ActionBase
from ansible_collections.quantum.redis_streams.plugins.plugin_utils.bundle import build
from ansible_collections.quantum.redis_streams.plugins.plugin_utils.paths import path_problem

OPTIONS = ("dest", "mode", "owner", "group")


class ActionModule(ActionBase):
    TRANSFERS_FILES = True

    def run(self, tmp: Any = None, task_vars: dict | None = None) -> dict:
        result = super().run(tmp, task_vars)
        args = self._task.args
        unknown = sorted(set(args) - set(OPTIONS))
        if unknown:
            msg = f"Unsupported options: {', '.join(unknown)} (supported: {', '.join(OPTIONS)})."
            return dict(result, failed=True, msg=msg)
        problem = path_problem(args.get("dest"), "dest")
        if problem:
            return dict(result, failed=True, msg=problem)
        content, files = build()
        local_tempdir = tempfile.mkdtemp(dir=C.DEFAULT_LOCAL_TMP)
        try:
            source = os.path.join(local_tempdir, os.path.basename(args["dest"]))
            with open(source, "wb") as handle:
                handle.write(content)
            new_task = self._task.copy()
            new_task.args.clear()
            new_task.args.update(src=source, dest=args["dest"], mode=args.get("mode", "0644"))
            for name in ("owner", "group"):
                if args.get(name) is not None:
                    new_task.args[name] = args[name]
            copy_action = self._shared_loader_obj.action_loader.get(
                "ansible.legacy.copy",
                task=new_task,
                connection=self._connection,
                play_context=self._play_context,
                loader=self._loader,
                templar=self._templar,
                shared_loader_obj=self._shared_loader_obj,
            )
            result.update(copy_action.run(task_vars=task_vars))
        finally:
            shutil.rmtree(local_tempdir, ignore_errors=True)
        result.update(files=files, size=len(content))
        return result
