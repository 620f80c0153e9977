# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# The controller's half of evidence_fetch: the module packs the target's directory into its
# result; this unpacks it into dest on the controller and keeps the archive out of the result.
from __future__ import annotations

import base64
import binascii
import io
import os
import tarfile
import tempfile
from typing import Any

from ansible.plugins.action import ActionBase

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


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = True

    def run(self, tmp: Any = None, task_vars: dict | None = None) -> dict:
        result = super().run(tmp, task_vars)
        dest = self._task.args.get("dest")
        if not isinstance(dest, str) or not os.path.isabs(dest):
            msg = f"dest must be an absolute path on the controller, got {dest!r}."
            return dict(result, failed=True, msg=msg)
        if self._task.args.get("probe"):
            why = probe(dest)
            return dict(result, changed=False, writable=why is None, dest=dest, msg=why or "writable")
        fetched = self._execute_module(MODULE, module_args=dict(self._task.args), task_vars=task_vars)
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
