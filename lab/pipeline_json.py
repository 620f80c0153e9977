#!/usr/bin/env python3
"""The lab data of an inventory, as the JSON `qt-lab configure --pipeline FILE` takes.

  lab/pipeline_json.py FILE [--redis-port N]     FILE: YAML or JSON; `-` reads standard input

FILE holds `pipeline` (the inventory's definition, unchanged) and optionally `lab_setup`, the
lab-only section (lab/README.md):
  rate, daily_limit     the producer's entries per second and the governor's limit
  requirepass           the default user's password (qt-lab and the Molecule helpers use it)
  services_user         the user the stubs connect as (one of acl_users; absent: default user)
  acl_users             [{username, password, rules}]: rules a list or a string of ACL rules, or
                        `minimal`: the ACL of docs/acl.md, read from that page, with its key
                        pattern replaced by one `~<prefix>:*` per key prefix of this pipeline
                        (plus `+role` with pipeline.redis.sentinel, as docs/acl.md says). A user
                        named pipeline.redis.username without a password gets
                        pipeline.redis.password.
Writes {"pipeline": ..., "lab": ...} on standard output. lab/lab.sh up and Molecule's prepare
(molecule/shared/prepare.yml) run it, so the ACL of docs/acl.md is parsed here only.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ACL_DOC = PROJECT_ROOT / "docs" / "acl.md"
# The line tests/test_acl.py measures: `ACL SETUSER <user> reset on ><password> <rules>`.
ACL_LINE = re.compile(r"^ACL SETUSER \S+ reset on >\S+ (.+)$", re.MULTILINE)


class InputError(Exception):
    """Bad input: one sentence naming the problem and the option."""


def documented_acl(text: str | None = None) -> list[str]:
    """The rules of docs/acl.md's `ACL SETUSER` command (after `reset on >password`)."""
    match = ACL_LINE.search(ACL_DOC.read_text() if text is None else text)
    if not match:
        raise InputError(f"{ACL_DOC} has no `ACL SETUSER <user> reset on ><password> <rules>` line.")
    return match.group(1).split()


def pipeline_keys(pipeline: dict[str, Any]) -> list[str]:
    keys: list[str] = []
    for stage in pipeline.get("stages") or []:
        keys += [stage.get("input_stream"), stage.get("output_stream")]
        keys.append((stage.get("dead_letter") or {}).get("stream"))
    governor = pipeline.get("governor") or {}
    keys += [governor.get("key"), governor.get("counted_stream")]
    return [k for k in keys if k]


def key_patterns(pipeline: dict[str, Any]) -> list[str]:
    """One `~<prefix>:*` per key prefix (the part before the first ':'), a key without ':' as
    itself: the key pattern docs/acl.md says follows the pipeline's key prefix."""
    patterns: list[str] = []
    for key in pipeline_keys(pipeline):
        prefix, sep, _ = key.partition(":")
        pattern = f"~{prefix}:*" if sep else f"~{key}"
        if pattern not in patterns:
            patterns.append(pattern)
    return patterns


def minimal_rules(pipeline: dict[str, Any], doc_text: str | None = None) -> list[str]:
    rules = [r for r in documented_acl(doc_text) if not r.startswith("~")]
    extra = ["+role"] if (pipeline.get("redis") or {}).get("sentinel") else []
    return key_patterns(pipeline) + rules + extra


def lab_data(source: dict[str, Any], redis_port: int | None = None, doc_text: str | None = None) -> dict:
    pipeline = source.get("pipeline")
    if not isinstance(pipeline, dict):
        raise InputError("the input has no `pipeline` mapping (the inventory's pipeline definition).")
    setup = source.get("lab_setup") or {}
    if not isinstance(setup, dict):
        raise InputError("lab_setup must be a mapping (rate, daily_limit, requirepass, services_user, "
                         "acl_users).")
    pipeline = json.loads(json.dumps(pipeline))
    if redis_port is not None:
        pipeline.setdefault("redis", {})["port"] = redis_port
    conn = pipeline.get("redis") or {}
    users = []
    for user in setup.get("acl_users") or []:
        if not isinstance(user, dict) or not user.get("username"):
            raise InputError("every lab_setup.acl_users entry needs a username.")
        password = user.get("password")
        if not password and user["username"] == conn.get("username"):
            password = conn.get("password")
        if not password:
            raise InputError(f"lab_setup.acl_users {user['username']} needs a password.")
        rules = user.get("rules")
        if rules == "minimal":
            rules = minimal_rules(pipeline, doc_text)
        elif isinstance(rules, str):
            rules = rules.split()
        if not isinstance(rules, list) or not rules:
            raise InputError(f"lab_setup.acl_users {user['username']}: rules must be `minimal`, a string "
                             "or a list.")
        users.append({"username": user["username"], "password": str(password),
                      "rules": [str(r) for r in rules]})
    copied = ("rate", "daily_limit", "requirepass", "services_user")
    lab = {k: setup[k] for k in copied if setup.get(k) is not None}
    lab["acl_users"] = users
    return {"pipeline": pipeline, "lab": lab}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", help="YAML or JSON with `pipeline` (and `lab_setup`); - for standard input")
    parser.add_argument("--redis-port", type=int, help="overrides pipeline.redis.port")
    args = parser.parse_args(argv)
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        source = yaml.safe_load(text)
        if not isinstance(source, dict):
            raise InputError(f"{args.file} must hold a mapping with `pipeline`.")
        print(json.dumps(lab_data(source, args.redis_port), indent=2, sort_keys=True))
    except (OSError, yaml.YAMLError, InputError) as exc:
        print(f"pipeline_json: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
