# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# The metrics writer as one zip application, built on the controller: the collection's
# module_utils and the ansible.module_utils they import, as AnsiballZ ships them to a module, so
# that a service on the target runs the modules' own code without Ansible installed there.
from __future__ import annotations

import io
import os
import zipfile

import ansible.module_utils

COLLECTION_UTILS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils")
PACKAGE = "ansible_collections/quantum/redis_streams/plugins/module_utils"
MAIN = """\
import sys

from ansible_collections.quantum.redis_streams.plugins.module_utils.metrics_writer import serve

sys.exit(serve())
"""
# Fixed member times and modes: the same sources give the same bytes, so installing the bundle
# again changes nothing (the copy compares checksums).
STAMP = (2020, 1, 1, 0, 0, 0)


def _sources(root: str, prefix: str) -> list[tuple[str, str]]:
    """(member name, file path) of every .py under `root`, sorted, caches left out."""
    found = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                found.append((f"{prefix}/{os.path.relpath(path, root)}", path))
    return sorted(found)


def build() -> tuple[bytes, int]:
    """The writer's zip application and how many files it holds."""
    members: dict[str, bytes] = {"__main__.py": MAIN.encode()}
    # Empty package markers, as AnsiballZ writes them: the real ansible/__init__.py would
    # import the controller's side.
    parts = PACKAGE.split("/")
    for package in ["ansible"] + ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]:
        members[f"{package}/__init__.py"] = b""
    for name, path in _sources(os.path.dirname(ansible.module_utils.__file__), "ansible/module_utils"):
        with open(path, "rb") as handle:
            members[name] = handle.read()
    for name, path in _sources(COLLECTION_UTILS, PACKAGE):
        with open(path, "rb") as handle:
            members[name] = handle.read()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=STAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, members[name])
    return buffer.getvalue(), len(members)
