"""The mode gate as a filter: `content | mode_gate(variable, source, error)`.

The gate itself (a port of systemd 252's env-file parser) is the collection's
module_utils/mode_gate.py: one definition, which pipeline_snapshot runs on the target when it
reads the mode file (`mode_file`, `mode_variable`), and this filter on the controller.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.quantum.redis_streams.plugins.module_utils.mode_gate import mode_gate


class FilterModule:
    """The mode gate."""

    def filters(self) -> dict[str, Any]:
        return {"mode_gate": mode_gate}
