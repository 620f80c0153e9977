# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# The controller's half of evidence_fetch: the destination is checked before the target is
# contacted; the module packs the target's directory into its result; this unpacks it into dest
# on the controller and keeps the archive out of the result.
from __future__ import annotations

import base64
import binascii
import io
import os
import posixpath
import tarfile
import tempfile
from typing import Any

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible_collections.quantum.redis_streams.plugins.plugin_utils.paths import is_under, path_problem

MODULE = "quantum.redis_streams.evidence_fetch"


def unpack(content: str, dest: str) -> None:
    """Unpack a base64 tar.gz into dest (created 0750 with its parents). Python's `data` filter
    refuses a member that would land outside dest, a link pointing out of it, a device, and
    drops set-uid bits."""
    data = base64.b64decode(content, validate=True)
    os.makedirs(dest, mode=0o750, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        archive.extractall(dest, filter="data")


def probe(dest: str) -> str | None:
    """None when dest can be written on the controller (created with its parents as unpack would,
    then a directory made and removed in it), else why not."""
    try:
        os.makedirs(dest, mode=0o750, exist_ok=True)
        os.rmdir(tempfile.mkdtemp(prefix=".writable.", dir=dest))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def dest_problem(dest: str, root: Any) -> str | None:
    """Why dest is not <root>/<host>/<run id> (two components below root, normalised), in one
    sentence naming the options; None when it is."""
    problem = path_problem(root, "root")
    if problem:
        return problem
    # path_problem proves dest normalised: `<root>/<host>/..` is not a run's directory.
    if (
        path_problem(dest, "dest") is None
        and is_under(dest, root)
        and posixpath.dirname(posixpath.dirname(posixpath.normpath(dest))) == posixpath.normpath(root)
    ):
        return None
    return f"dest {dest} is not <root>/<host>/<run id> under {root}."


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = True

    def run(self, tmp: Any = None, task_vars: dict | None = None) -> dict:
        result = super().run(tmp, task_vars)
        args = self._task.args
        fetch, probing = (boolean(args.get(name, default), strict=False) for name, default in
                          (("fetch", True), ("probe", False)))
        if not fetch and not probing:
            # Nothing fetched: the module writes its files on the target, and the controller has no part.
            return dict(result, **self._execute_module(MODULE, module_args=dict(args), task_vars=task_vars))
        dest = args.get("dest")
        if not isinstance(dest, str) or not os.path.isabs(dest):
            msg = f"dest must be an absolute path on the controller, got {dest!r}."
            return dict(result, failed=True, msg=msg)
        if boolean(args.get("probe", False), strict=False):
            why = probe(dest)
            if why is None:
                return dict(result, changed=False, writable=True, dest=dest, msg="writable")
            fail_msg = args.get("fail_msg")
            msg = (
                str(fail_msg).replace("{why}", why)
                if fail_msg
                else f"dest {dest} is not writable on the controller ({why})."
            )
            return dict(result, failed=True, changed=False, writable=False, dest=dest, msg=msg)
        if args.get("root") is not None:
            problem = dest_problem(dest, args["root"])
            if problem:
                return dict(result, failed=True, changed=False, msg=f"Not fetching the evidence: {problem}")
        fetched = self._execute_module(MODULE, module_args=dict(args), task_vars=task_vars)
        content = fetched.pop("content", None)
        result.update(fetched)
        if fetched.get("failed") or self._task.check_mode:
            return result
        try:
            unpack(content or "", dest)
        except (OSError, tarfile.TarError, binascii.Error, ValueError) as exc:
            msg = f"Could not unpack the evidence into {dest} on the controller: {exc}."
            return dict(result, failed=True, msg=msg)
        return result
