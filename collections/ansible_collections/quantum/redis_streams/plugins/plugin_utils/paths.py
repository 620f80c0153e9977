# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# The path guards, on the controller: an option's path proven absolute and normalised, and a
# path proven to stay under its root. The one definition, used by evidence_fetch's action plugin
# (where a run's evidence is unpacked) and the project's option checks (filter_plugins/run_guard.py).
from __future__ import annotations

import posixpath
from typing import Any


def path_problem(value: Any, name: str) -> str | None:
    """Why `value` is not an absolute, normalised path (no `.` or `..` component, no `//`,
    not `/` itself), in one sentence naming the option; None when it is one."""
    if not isinstance(value, str) or not value:
        return f"{name} must be an absolute path (got {value!r})."
    if "\0" in value or "\n" in value:
        return f"{name} must be an absolute path on one line, without NUL (got {value!r})."
    trimmed = value.rstrip("/") or "/"
    if not value.startswith("/") or "//" in value or posixpath.normpath(trimmed) != trimmed or trimmed == "/":
        return (
            f"{name} must be an absolute path without '.' or '..' components, other than / itself "
            f"(got {value!r})."
        )
    return None


def is_under(path: Any, root: Any) -> bool:
    """Whether `path`, normalised, is `root` or below it (lexically: both come from validated
    options, never from a link the target could plant)."""
    if not isinstance(path, str) or not isinstance(root, str) or not root.startswith("/"):
        return False
    root_n = posixpath.normpath(root)
    path_n = posixpath.normpath(path)
    return path_n == root_n or path_n.startswith(root_n.rstrip("/") + "/")
