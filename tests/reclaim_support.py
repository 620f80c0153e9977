"""Imports redis_stream_reclaim in-process (as Ansible would package it) and runs its core,
for tests that must act at a precise point of a run or run it many times quickly; and runs any
module of this project in-process, whole (argument checks, main(), its JSON result), for tests
that need a module's real result many times and fast."""

from __future__ import annotations

import contextlib
import io
import json
from types import ModuleType
from typing import Any

from ansible.module_utils.testing import patch_module_args
from project_files import collection_module


def load_reclaim_module() -> ModuleType:
    return collection_module("redis_stream_reclaim")


def reclaim_params(args: dict[str, Any]) -> dict[str, Any]:
    """Module params as AnsibleModule would build them: args plus every default."""
    module = load_reclaim_module()
    spec = module.argument_spec()
    params: dict[str, Any] = {}
    for name, option in spec.items():
        params[name] = args.get(name, option.get("default"))
    if params.get("dead_letter"):
        dead_letter = dict(params["dead_letter"])
        for name in ("max_age_ms", "max_deliveries"):
            dead_letter.setdefault(name, None)
        params["dead_letter"] = dead_letter
    return params


def run_reclaim(
    client: Any, args: dict[str, Any], *, check: bool = False, diff: bool = False, hook: Any = None
) -> dict:
    """The module's core on an existing client; raises AssertionError on an input problem."""
    module = load_reclaim_module()
    params = reclaim_params(args)
    if not params["connection"]:
        # Only used to word error messages; the client is already connected.
        pool_kwargs = client.connection_pool.connection_kwargs
        params["connection"] = {"host": pool_kwargs.get("host"), "port": pool_kwargs.get("port")}
    problem = module.input_problem(params)
    assert problem is None, problem
    return module.StreamReclaim(client, params, check_mode=check, diff=diff, hook=hook).run()


def run_module_main(
    fqcn: str, args: dict[str, Any], *, check: bool = False, diff: bool = False
) -> dict[str, Any]:
    """A module's main() in this process, with `args` as its module arguments: the result it
    prints (exit_json or fail_json), as a dict. The same code path as a run through the
    `ansible` command, without its second of start-up."""
    module = collection_module(fqcn)
    internal = {"_ansible_check_mode": check, "_ansible_diff": diff}
    out = io.StringIO()
    with (
        patch_module_args({**args, **internal}),
        contextlib.redirect_stdout(out),
        contextlib.suppress(SystemExit),
    ):
        module.main()
    return json.loads(out.getvalue())
