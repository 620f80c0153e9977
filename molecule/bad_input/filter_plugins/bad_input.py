"""The failure sentence of a nested ansible-playbook run (molecule bad_input).

`output | failure_sentence` reads the LAST `fatal: [host]: FAILED! => {...}` line of an
ansible-playbook output printed with ANSIBLE_CALLBACK_RESULT_FORMAT=json and returns
{"line": the fatal line, "msg": its result's msg (a string; JSON text when the msg is not a
string), "error": why no msg could be read, or None}. No fatal line: line and msg are None.

`dump_a | changed_keys(dump_b, parts)` names what differs between two state dumps
(../shared/files/state_dump.py) in the given parts: ["redis:quantum:governor",
"services:quantum-execution", "lock", ...], empty when they are identical.

`results | result_lines` is one line per class result of verify.yml (name, option, playbook,
rc, pass or FAIL with the problems, the sentence).
"""

from __future__ import annotations

import json
from typing import Any

_MARK = " => "


def failure_sentence(output: str) -> dict[str, Any]:
    lines = str(output or "").splitlines()
    fatal = [i for i, line in enumerate(lines) if line.startswith("fatal: ")]
    if not fatal:
        return {"line": None, "msg": None, "error": "no `fatal:` line in the output"}
    start = fatal[-1]
    line = lines[start]
    if _MARK not in line:
        return {"line": line, "msg": None, "error": "the fatal line has no ` => ` result"}
    # The result is one line with the json format; raw_decode also reads an indented one.
    text = "\n".join([line.split(_MARK, 1)[1], *lines[start + 1 :]])
    try:
        result, _end = json.JSONDecoder().raw_decode(text)
    except ValueError as exc:
        return {"line": line, "msg": None, "error": f"the fatal line's result is not JSON ({exc})"}
    if not isinstance(result, dict) or "msg" not in result:
        return {"line": line, "msg": None, "error": "the fatal line's result has no msg"}
    msg = result["msg"]
    if not isinstance(msg, str):
        msg = json.dumps(msg, ensure_ascii=False)
    return {"line": line, "msg": msg, "error": None}


def changed_keys(a: dict[str, Any], b: dict[str, Any], parts: list[str]) -> list[str]:
    changed = []
    for part in parts:
        old, new = a.get(part), b.get(part)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            keys = sorted(set(old) | set(new))
            changed += [f"{part}:{key}" for key in keys if old.get(key) != new.get(key)]
        else:
            changed.append(part)
    return changed


def result_lines(results: list[dict[str, Any]]) -> list[str]:
    lines = []
    for r in results:
        verdict = "pass" if r["passed"] else "FAIL [" + "; ".join(r["problems"]) + "]"
        sentence = r["sentence"] if r["sentence"] is not None else "(no sentence)"
        restored = " (incident set up again)" if r.get("restored") else ""
        head = f"{r['name']} ({r['option']}, {r['playbook']}): rc {r['rc']}"
        lines.append(f"{head}, {verdict}{restored}: {sentence}")
    return lines


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "failure_sentence": failure_sentence,
            "changed_keys": changed_keys,
            "result_lines": result_lines,
        }
