# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# How the evidence modules write files under a directory on the target: the one definition of
# a safe relative name, an option's octal mode, the directories to create and an atomic write,
# shared by evidence_files and evidence_fetch (its `files`, written before the directory is packed).
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from typing import Any

# evidence_files' defaults, and the modes of evidence_fetch's `files`.
FILE_MODE = 0o640
DIRECTORY_MODE = 0o750


def bad_names(names: Iterable[str]) -> list[str]:
    """The names that could write outside dest: empty, absolute, or holding a `..` component."""
    return [
        name
        for name in names
        if not name or os.path.isabs(name) or ".." in name.replace("\\", "/").split("/") or "\0" in name
    ]


def not_text(files: dict[str, Any]) -> list[str]:
    """The names whose content is not text (a dict or list not rendered first), sorted."""
    return sorted(str(name) for name, text in files.items() if not isinstance(text, str))


def parse_mode(value: Any) -> int | None:
    """An option's mode as an int: an int as it is (YAML 0640), a string read as octal; None
    when it is not a mode."""
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    else:
        try:
            mode = int(str(value).strip(), 8)
        except ValueError:
            return None
    return mode if 0 <= mode <= 0o7777 else None


def path_under(dest: str, name: str) -> str:
    """Where a relative name (checked by bad_names) is written under dest."""
    return os.path.join(dest, os.path.normpath(name))


def missing_directories(dest: str, paths: Iterable[str]) -> tuple[list[str], list[str]]:
    """(dest's missing parents and itself, then each missing directory the files' paths hold,
    parents first; the directories wanted that exist and are not directories)."""
    wanted = {dest} | {os.path.dirname(path) for path in paths}
    missing: list[str] = []
    for directory in sorted(wanted):
        chain = []
        current = directory
        while not os.path.exists(current) and current not in missing and current not in chain:
            chain.append(current)
            current = os.path.dirname(current)
        missing.extend(reversed(chain))
    not_directories = [d for d in sorted(wanted) if os.path.exists(d) and not os.path.isdir(d)]
    return sorted(set(missing), key=lambda d: (d.count(os.sep), d)), not_directories


def read_bytes(path: str) -> bytes | None:
    """The file's bytes, or None when it does not exist."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def write_atomically(path: str, data: bytes, mode: int) -> None:
    """Write `data` to a temporary file beside `path`, set its mode, rename it over `path`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def create_directories(directories: Iterable[str], mode: int) -> None:
    """Create each directory (parents first, as missing_directories lists them) with `mode`,
    whatever the umask."""
    for directory in directories:
        os.mkdir(directory)
        os.chmod(directory, mode)
