"""The lab's stubs behind Sentinel (labdata.connect with pipeline.redis.sentinel): a consumer
stub finds the primary through the sentinels, and after SENTINEL FAILOVER its error path (the
one stub.main runs: rebuild the client, read its own PEL again) carries on against the new
primary, nothing lost. Real primary, replica and 3 sentinels (test_sentinel's cluster)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from project_files import PROJECT_ROOT
from test_sentinel import SERVICE, WRONG, Cluster, _wait, cluster  # noqa: F401  (the fixture)

LAB_LIB = PROJECT_ROOT / "lab/image/files/usr/local/lib/quantum"
if str(LAB_LIB) not in sys.path:
    sys.path.insert(0, str(LAB_LIB))

import stub  # noqa: E402

# What stub.main catches before it rebuilds the client.
FAILOVER_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ReadOnlyError,
                   redis.exceptions.ExecAbortError)


def like_the_stub(stage: stub.Stage, step: Callable[[], Any]) -> tuple[Any, int]:
    """step() retried as stub.main does after a failover error; (its result, errors seen)."""
    errors = 0
    while True:
        try:
            return step(), errors
        except FAILOVER_ERRORS:
            errors += 1
            assert errors < 50, "the stub never reached the new primary"
            time.sleep(0.2)
            stage.reconnect()


@pytest.mark.server
def test_a_consumer_stub_follows_a_failover(cluster: Cluster, tmp_path: Path, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setattr(stub, "LOG_DIR", tmp_path)
    _wait("the sentinels seeing the primary and a good replica", cluster.ready)
    old = cluster.primary()
    new = cluster.replica_of(old)
    shop = PROJECT_ROOT / "inventory/lab-shop/group_vars/all/pipeline.yml"
    pipeline = yaml.safe_load(shop.read_text())["pipeline"]
    pipeline["redis"] = {**WRONG, "sentinel": {"hosts": cluster.hosts, "service_name": SERVICE}}
    stage = stub.Stage({"pipeline": pipeline, "lab": {}}, "packing")
    try:
        assert stage.redis.connection_pool.get_master_address() == (old.host, old.port)
        stage.ensure_group()
        before = [stage.redis.xadd(stage.input_stream, {"n": str(i)}) for i in range(10)]
        stage.forward(stage.redis.xreadgroup(stage.group, stage.consumer, {stage.input_stream: ">"})[0][1])
        assert stage.redis.execute_command("WAIT", 1, 5000) == 1  # on the replica before the failover

        cluster.sentinels[0].client().execute_command("SENTINEL", "FAILOVER", SERVICE)
        _wait("the sentinels naming the new primary", lambda: cluster.primary() is new)
        _wait("the old primary becoming a replica", lambda: old.client().role()[0] == "slave")
        after = [new.client().xadd(stage.input_stream, {"n": str(i)}) for i in range(10, 20)]

        # The stub's path after an error: a new client, its own PEL first, then new entries.
        replayed, errors = like_the_stub(stage, stage.process_own_pel)
        response, _ = like_the_stub(stage, lambda: stage.redis.xreadgroup(
            stage.group, stage.consumer, {stage.input_stream: ">"}))
        stage.forward(response[0][1])
        assert stage.redis.connection_pool.get_master_address() == (new.host, new.port)
        print(f"\nstub after SENTINEL FAILOVER: {errors} error(s) before the new primary, "
              f"{replayed} replayed")
    finally:
        stage.redis.close()
        for handler in list(stage.log.handlers):
            stage.log.removeHandler(handler)

    on_new = new.client()
    forwarded = [f["source_id"] for _, f in on_new.xrange(stage.output_stream)]
    assert forwarded == before + after
    assert on_new.xpending(stage.input_stream, stage.group)["pending"] == 0
