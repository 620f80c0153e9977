# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# node_exporter's textfile format (Prometheus's text exposition format, gauges only): the one
# writer of label sets and values, shared by the watchdog's metrics (ledger.py) and the
# pipeline's (pipeline_metrics.py).
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# Label values escape backslash, double quote and newline, and nothing else.
_LABEL_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})

Sample = tuple[Mapping[str, Any], Any]


def labels(values: Mapping[str, Any]) -> str:
    """`{a="1",b="x"}`, in the mapping's order."""
    inner = ",".join(f'{key}="{str(value).translate(_LABEL_ESCAPES)}"' for key, value in values.items())
    return "{" + inner + "}"


def number(value: Any) -> str:
    """A sample value: an integer without a decimal point, NaN as Prometheus spells it."""
    figure = float(value)
    if math.isnan(figure):
        return "NaN"
    return str(int(figure)) if figure.is_integer() else repr(figure)


def render(helps: Mapping[str, str], samples: Mapping[str, list[Sample]]) -> str:
    """Every metric of `helps` that has samples, in that order, each a gauge with its HELP."""
    lines: list[str] = []
    for name, help_text in helps.items():
        if not samples.get(name):
            continue
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} gauge")
        lines.extend(f"{name}{labels(label_set)} {number(value)}" for label_set, value in samples[name])
    return "\n".join(lines) + "\n"
