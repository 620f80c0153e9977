"""Sentinel: the modules find the primary through real sentinels, write only to the primary,
and a failover in the middle of a reclaim stops the run with one sentence; a re-run finishes
the job on the new primary, nothing lost, nothing doubled.

Real processes on free loopback ports: a primary, a replica (`--replicaof`) and 3 sentinels
(`redis-server <conf> --sentinel`, quorum 2), all stopped by the PID in their pidfiles, also
when a test fails. Figures are printed (run with `-s`)."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import (
    PROJECT_ROOT,
    RedisServer,
    collection_util,
    free_loopback_port,
    redis_server_binary,
    start_redis,
)
from reclaim_support import load_reclaim_module, run_module_main, run_reclaim
from redis.backoff import NoBackoff
from redis.retry import Retry

SERVICE = "qt-primary"
STREAM, GROUP, DEAD, LIVE = "quantum:stream:ai.decision", "router", "router-0", "router-1"
GOVERNOR, RESULTS = "quantum:governor", "quantum:stream:trade.result"
ENTRIES = 20_000
BATCH = 2000
BATCHES_BEFORE_FAILOVER = 3
NO_SYNC_DELAY = ("--repl-diskless-sync-delay", "0")
WRONG = {"host": "127.0.0.1", "port": 1}  # nothing listens there: only the sentinels may be used

rc = collection_util("redis_connection")


# -- the processes ---------------------------------------------------------------------------


def _sentinel(tmp_path_factory: pytest.TempPathFactory, primary: RedisServer) -> RedisServer:
    """A sentinel monitoring `primary` (quorum 2, short timeouts), started from its own config
    file (Sentinel rewrites it); a RedisServer only to be stopped by its pidfile."""
    workdir = tmp_path_factory.mktemp("sentinel")
    port = free_loopback_port()
    conf = workdir / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndaemonize yes\ndir {workdir}\n"
        f"pidfile {workdir / 'sentinel.pid'}\nlogfile {workdir / 'sentinel.log'}\n"
        f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 2\n"
        f"sentinel down-after-milliseconds {SERVICE} 1000\n"
        f"sentinel failover-timeout {SERVICE} 3000\n"
        f"sentinel parallel-syncs {SERVICE} 1\n"
    )
    subprocess.run([redis_server_binary(), str(conf), "--sentinel"], check=True)
    return RedisServer(host="127.0.0.1", port=port, workdir=workdir, pidfile=workdir / "sentinel.pid")


def _wait(what: str, check: Any, timeout: float = 20.0) -> float:
    """Seconds until check() is true, or the test fails naming `what`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if check():
                return time.monotonic() - started
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout} s")


@dataclass
class Cluster:
    nodes: list[RedisServer]  # the primary and the replica, in start order
    sentinels: list[RedisServer] = field(default_factory=list)

    @property
    def hosts(self) -> list[str]:
        return [f"{s.host}:{s.port}" for s in self.sentinels]

    def connection(self, **extra: Any) -> dict[str, Any]:
        return {**WRONG, "sentinel": {"hosts": self.hosts, "service_name": SERVICE}, **extra}

    def primary(self) -> RedisServer:
        _host, port = self.sentinels[0].client().sentinel_get_master_addr_by_name(SERVICE)
        return next(node for node in self.nodes if node.port == int(port))

    def replica_of(self, primary: RedisServer) -> RedisServer:
        return next(node for node in self.nodes if node is not primary)

    def ready(self) -> bool:
        """Every sentinel sees the primary up, the replica, and the 2 other sentinels."""
        for sentinel in self.sentinels:
            master = sentinel.client().sentinel_master(SERVICE)
            replicas = sentinel.client().sentinel_slaves(SERVICE)
            if master["num-other-sentinels"] < 2 or master["flags"] != "master":
                return False
            if not any(r["flags"] == "slave" and r.get("master-link-status") == "ok" for r in replicas):
                return False
        return True


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    started: list[RedisServer] = []
    try:
        # No 5 s wait before a full sync (the 7.0 default), on both: either may become primary.
        primary = start_redis(tmp_path_factory, *NO_SYNC_DELAY)
        started.append(primary)
        replica = start_redis(tmp_path_factory, *NO_SYNC_DELAY, "--replicaof", "127.0.0.1", str(primary.port))
        started.append(replica)
        result = Cluster(nodes=[primary, replica])
        for _ in range(3):
            sentinel = _sentinel(tmp_path_factory, primary)
            started.append(sentinel)
            result.sentinels.append(sentinel)
        for sentinel in result.sentinels:
            _wait("a sentinel answering", sentinel.client().ping, 10)
            # Redis 7.0+: INFO every 100 ms (not 10 s) and hello every 500 ms (not 2 s), so that the
            # sentinels find each other and a failover completes in a few seconds. Not shorter:
            # a sentinel that has not heard of the failover turns a promoted replica that reports
            # itself primary back into a replica after 4 publish periods.
            sentinel.client().execute_command("SENTINEL", "DEBUG", "info-period", 100, "publish-period", 500)
        seconds = _wait("the sentinels agreeing on the primary and its replica", result.ready)
        ports = f"primary :{primary.port}, replica :{replica.port}"
        print(f"\nsentinel cluster ready in {seconds:.2f} s ({ports})")
        yield result
    finally:
        for process in reversed(started):
            process.stop()


def _module_client(node: RedisServer) -> redis.Redis:
    # As module_utils.redis_connection builds it: one attempt, no silent reconnect.
    return node.client(retry=Retry(NoBackoff(), 0), socket_timeout=10)


def _pel(client: redis.Redis) -> dict[str, str]:
    """{entry id: owner} of the whole group's PEL (every id once: it is a map)."""
    page = client.xpending_range(STREAM, GROUP, min="-", max="+", count=10 * ENTRIES)
    owners = {entry["message_id"]: entry["consumer"] for entry in page}
    assert len(owners) == len(page)
    return owners


def _fill(client: redis.Redis, entries: int) -> set[str]:
    """`entries` entries, all delivered to DEAD (its PEL), LIVE registered; replicated."""
    client.flushall()
    pipe = client.pipeline(transaction=False)
    for i in range(entries):
        pipe.xadd(STREAM, {"n": i})
    produced = set(pipe.execute())
    client.xgroup_create(STREAM, GROUP, id="0")
    client.xreadgroup(GROUP, DEAD, {STREAM: ">"}, count=entries)
    client.xgroup_createconsumer(STREAM, GROUP, LIVE)
    assert client.execute_command("WAIT", 1, 5000) == 1
    return produced


def _named(cluster: Cluster, node: RedisServer) -> str:
    return f"primary {node.host}:{node.port} of Sentinel service {SERVICE}"


# -- the modules find the primary ------------------------------------------------------------


def test_modules_find_the_primary_through_sentinel(cluster: Cluster) -> None:
    primary = cluster.primary()
    admin = primary.client()
    _fill(admin, 10)
    today = datetime.fromtimestamp(admin.time()[0], tz=UTC).date().isoformat()
    admin.hset(GOVERNOR, mapping={"date": today, "trades_today": "10000", "daily_limit": "200"})
    admin.xadd(RESULTS, {"order": "1"})
    connection = cluster.connection()

    info = run_module_main(
        "redis_stream_info", {"connection": connection, "streams": [{"stream": STREAM}]}
    )
    assert not info.get("failed"), info.get("msg")
    assert info["endpoint"] == _named(cluster, primary)
    assert info["streams"][STREAM]["groups"][GROUP]["consumers"][DEAD]["pending"] == 10

    reclaim = run_module_main(
        "redis_stream_reclaim",
        {"connection": connection, "stream": STREAM, "group": GROUP, "consumers": [DEAD], "claim_to": LIVE,
         "retire": True},
    )  # fmt: skip
    assert not reclaim.get("failed"), reclaim.get("msg")
    assert reclaim["endpoint"] == _named(cluster, primary)
    assert reclaim["totals"]["moved"] == 10 and reclaim["totals"]["retired"] == 1

    governor = run_module_main(
        "redis_governor",
        {"connection": connection, "governor": {"key": GOVERNOR, "counted_stream": RESULTS},
         "reset_above_limit": True},
    )  # fmt: skip
    assert not governor.get("failed"), governor.get("msg")
    assert governor["endpoint"] == _named(cluster, primary) and governor["reset"]
    assert admin.hget(GOVERNOR, "trades_today") == "1"
    print(f"\nmodules through Sentinel: {info['endpoint']}")


def test_a_replica_refuses_with_the_fencing_sentence(cluster: Cluster) -> None:
    """The fence itself: ROLE on a replica, and a READONLY reply, give the one sentence."""
    primary = cluster.primary()
    replica = cluster.replica_of(primary)
    sentinel = {"hosts": cluster.hosts, "service_name": SERVICE}
    timeouts = {"connect_timeout": 5.0, "socket_timeout": 10.0}
    connection = {"host": replica.host, "port": replica.port, "sentinel": sentinel, **timeouts}
    expected = (
        f"Redis at {replica.host}:{replica.port} is no longer the primary of Sentinel service {SERVICE} "
        "(a failover happened during the run): nothing more was written; run again to finish against "
        "the new primary."
    )
    with pytest.raises(rc.NotPrimary) as refused:
        rc.assert_primary(replica.client(), connection)
    assert str(refused.value) == expected
    with pytest.raises(redis.RedisError) as readonly:
        replica.client().set("quantum:probe", "1")
    assert rc.explain_redis_error(readonly.value, connection) == expected
    # The primary passes: ROLE says master and the sentinels name it.
    rc.assert_primary(primary.client(), {**connection, "host": primary.host, "port": primary.port})


# -- a failover in the middle of a reclaim ---------------------------------------------------


def test_failover_mid_reclaim_then_rerun_finishes_on_the_new_primary(cluster: Cluster) -> None:
    _wait("the sentinels seeing the primary and a good replica", cluster.ready)  # after a failover too
    old = cluster.primary()
    new = cluster.replica_of(old)
    produced = _fill(old.client(), ENTRIES)
    connection = {**cluster.connection(), "host": old.host, "port": old.port}  # as redis_client leaves it
    args = {"connection": connection, "stream": STREAM, "group": GROUP, "consumers": [DEAD], "claim_to": LIVE,
            "retire": True, "batch_size": BATCH}  # fmt: skip
    batches = 0
    failover_s = 0.0

    def failover_after_batches(event: str, _consumer: str | None) -> None:
        nonlocal batches, failover_s
        if event != "batch":
            return
        batches += 1
        if batches == BATCHES_BEFORE_FAILOVER:
            started = time.monotonic()
            cluster.sentinels[0].client().execute_command("SENTINEL", "FAILOVER", SERVICE)
            # Done when the sentinels name the new primary AND the old one has been turned
            # into its replica (what the run's next ROLE sees).
            _wait("the sentinels naming the new primary", lambda: cluster.primary() is new)
            _wait("the old primary becoming a replica", lambda: old.client().role()[0] == "slave")
            failover_s = time.monotonic() - started

    started = time.monotonic()
    with pytest.raises(load_reclaim_module().ReclaimFailed) as failure:
        run_reclaim(_module_client(old), args, hook=failover_after_batches)
    first_s = time.monotonic() - started
    sentence, partial = failure.value.msg, failure.value.partial
    moved_first = partial["totals"]["moved"]
    assert moved_first == BATCHES_BEFORE_FAILOVER * BATCH
    assert sentence == (
        f"Moved {moved_first} entries of {DEAD} to {LIVE}, then could not move the entries of {DEAD} to "
        f"{LIVE}: Redis at {old.host}:{old.port} is no longer the primary of Sentinel service {SERVICE} "
        "(a failover happened during the run): nothing more was written; run again to finish against "
        "the new primary."
    )

    # On the new primary: every produced id in the PEL once; what survived the failover on LIVE.
    after_failover = _pel(new.client())
    assert set(after_failover) == produced
    survived = sum(owner == LIVE for owner in after_failover.values())
    assert survived <= moved_first

    # The re-run: the module's own path (redis_client asks the sentinels: the new primary).
    rerun_args = {**args, "connection": cluster.connection()}
    started = time.monotonic()
    again = run_module_main("redis_stream_reclaim", rerun_args)
    rerun_s = time.monotonic() - started
    assert not again.get("failed"), again.get("msg")
    assert again["endpoint"] == _named(cluster, new)
    assert again["totals"]["moved"] == ENTRIES - survived and again["consumers"][DEAD]["retired"]

    final = _pel(new.client())
    assert set(final) == produced and len(final) == ENTRIES and set(final.values()) == {LIVE}
    assert {c["name"] for c in new.client().xinfo_consumers(STREAM, GROUP)} == {LIVE}
    print(
        f"\nfailover mid-reclaim: {ENTRIES} entries, batch {BATCH}; moved before the failover "
        f"{moved_first} ({survived} of them on the new primary, {moved_first - survived} lost with the "
        f"old one and moved again); SENTINEL FAILOVER to old primary demoted {failover_s:.2f} s; "
        f"first run {first_s:.2f} s; re-run {rerun_s:.2f} s moved {again['totals']['moved']}, retired "
        f"{DEAD}\n  {sentence}"
    )


def test_between_promotion_and_demotion_the_sentinels_fence_and_lost_writes_are_redone(
    cluster: Cluster,
) -> None:
    """The window ROLE cannot see: the sentinels have promoted the replica, the old primary
    still says `master` until it is reconfigured as a replica. The fence also asks the
    sentinels, which name the new primary: the run stops with the same sentence. A run that
    writes there anyway (here: one pointed at the old address without `sentinel`, so unfenced)
    'succeeds', and its writes are lost at the demotion (the old primary resyncs from the new
    one). Nothing is lost by that (a lost move leaves the entry with the dead consumer on the
    new primary): a re-run through Sentinel finishes."""
    _wait("the sentinels seeing the primary and a good replica", cluster.ready)  # after a failover too
    old = cluster.primary()
    new = cluster.replica_of(old)
    produced = _fill(old.client(), ENTRIES)
    base = {"stream": STREAM, "group": GROUP, "consumers": [DEAD], "claim_to": LIVE, "retire": True,
            "batch_size": BATCH}  # fmt: skip
    fenced = {**base, "connection": {**cluster.connection(), "host": old.host, "port": old.port}}
    batches = 0
    role_at_fence = None

    def promote_only(event: str, _consumer: str | None) -> None:
        nonlocal batches, role_at_fence
        if event == "batch":
            batches += 1
            if batches == BATCHES_BEFORE_FAILOVER:
                cluster.sentinels[0].client().execute_command("SENTINEL", "FAILOVER", SERVICE)
                _wait("the sentinels naming the new primary", lambda: cluster.primary() is new)
                role_at_fence = old.client().role()[0]

    with pytest.raises(load_reclaim_module().ReclaimFailed) as failure:
        run_reclaim(_module_client(old), fenced, hook=promote_only)
    assert failure.value.partial["totals"]["moved"] == BATCHES_BEFORE_FAILOVER * BATCH, failure.value.msg
    assert "is no longer the primary of Sentinel service" in failure.value.msg

    # Unfenced, still inside the window: the old primary accepts the rest of the work.
    unfenced = run_reclaim(_module_client(old), {**base, "connection": {"host": old.host, "port": old.port}})
    demoted_s = _wait("the old primary becoming a replica", lambda: old.client().role()[0] == "slave")
    _wait("the old primary resynced", lambda: old.client().role()[3] == "connected")
    after = _pel(new.client())
    assert set(after) == produced
    survived = sum(owner == LIVE for owner in after.values())
    assert survived == BATCHES_BEFORE_FAILOVER * BATCH  # the unfenced run's moves are gone
    assert old.client().xinfo_consumers(STREAM, GROUP)  # and the old primary now holds the same

    again = run_module_main("redis_stream_reclaim", {**fenced, "connection": cluster.connection()})
    assert not again.get("failed"), again.get("msg")
    assert again["endpoint"] == _named(cluster, new)
    assert again["totals"]["moved"] == ENTRIES - survived and again["consumers"][DEAD]["retired"]
    final = _pel(new.client())
    assert set(final) == produced and set(final.values()) == {LIVE}
    assert {c["name"] for c in new.client().xinfo_consumers(STREAM, GROUP)} == {LIVE}
    print(
        f"\npromotion-to-demotion window: old primary's ROLE when the sentinels already named the new "
        f"one: {role_at_fence}; the fenced run stopped after {BATCHES_BEFORE_FAILOVER * BATCH}; an unfenced "
        f"run then reported moved {unfenced['totals']['moved']}, retired {unfenced['totals']['retired']} "
        f"on the old primary, all lost at its demotion ({demoted_s:.2f} s later); the re-run moved "
        f"{again['totals']['moved']} and retired {DEAD}"
    )


# -- bad sentinel input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sentinel", "extra", "expected"),
    [
        ({"hosts": ["127.0.0.1:26379"], "service_name": "s"}, {"unix_socket": "/run/redis.sock"},
         "connection.sentinel and connection.unix_socket cannot be used together"),
        ({"hosts": ["127.0.0.1"], "service_name": "s"}, {},
         "connection.sentinel.hosts must hold \"host:port\" strings"),
        ({"hosts": ["127.0.0.1:0"], "service_name": "s"}, {},
         "connection.sentinel.hosts must hold \"host:port\" strings"),
        ({"service_name": "s"}, {}, "connection.sentinel.hosts is required"),
        ({"hosts": ["127.0.0.1:26379"]}, {}, "connection.sentinel.service_name is required"),
        ({"hosts": ["127.0.0.1:26379"], "service_name": "s", "username": "u"}, {},
         "connection.sentinel.username needs connection.sentinel.password"),
        ({"hosts": ["127.0.0.1:26379"], "service_name": "s"}, {"tls": True},
         "connection.sentinel cannot be used with connection.tls"),
    ],
)  # fmt: skip
def test_bad_sentinel_input_is_one_sentence(sentinel: dict, extra: dict, expected: str) -> None:
    result = run_module_main(
        "redis_stream_info",
        {"connection": {"sentinel": sentinel, **extra}, "streams": [{"stream": STREAM}]},
    )
    assert result["failed"] and result["msg"].startswith(expected), result["msg"]
    assert "\n" not in result["msg"] and result["msg"].count(". ") == 0


def test_no_sentinel_answers(tmp_path: Path) -> None:
    dead = [f"127.0.0.1:{free_loopback_port()}", f"127.0.0.1:{free_loopback_port()}"]
    result = run_module_main(
        "redis_stream_info",
        {"connection": {"sentinel": {"hosts": dead, "service_name": SERVICE}, "connect_timeout": 0.5},
         "streams": [{"stream": STREAM}]},
    )  # fmt: skip
    assert result["failed"] and result["msg"].startswith("No sentinel answered: could not reach any of ")
    assert "check connection.sentinel.hosts" in result["msg"] and "\n" not in result["msg"]
    print(f"\n{result['msg']}")


def test_the_sentinels_know_no_such_service(cluster: Cluster) -> None:
    result = run_module_main(
        "redis_stream_info",
        {"connection": {"sentinel": {"hosts": cluster.hosts, "service_name": "nope"}},
         "streams": [{"stream": STREAM}]},
    )  # fmt: skip
    assert result["failed"]
    assert result["msg"].startswith("The sentinels know no primary for Sentinel service nope: ")
    print(f"\n{result['msg']}")


# -- the ACL with Sentinel -------------------------------------------------------------------

DATA_USER, SENTINEL_USER, PASSWORD = "qt-remediation", "qt-sentinel", "sentinel-acl-pw-7071"


def _documented(section: str) -> list[str]:
    """The rules of an `ACL SETUSER <user> reset on >password <rules>` line of docs/acl.md whose
    rules hold `section` (the data-node ACL: +xclaim; the sentinels' ACL: +sentinel|)."""
    text = (PROJECT_ROOT / "docs" / "acl.md").read_text()
    for match in re.finditer(r"^\s*ACL SETUSER \S+ reset on >\S+ (.+)$", text, re.MULTILINE):
        if section in match[1]:
            return match[1].split()
    raise AssertionError(f"docs/acl.md has no ACL SETUSER line with {section}")


def test_acl_with_sentinel_is_the_documented_one(cluster: Cluster) -> None:
    """Measured: the data-node user needs the minimal ACL plus +role (the fence), the sentinel
    user +sentinel|masters (finding the primary) and +sentinel|get-master-addr-by-name (the
    fence); without any of them, one sentence names the rule to add."""
    primary = cluster.primary()
    admin = primary.client()
    _fill(admin, 5)
    data_rules = _documented("+xclaim")
    sentinel_rules = _documented("+sentinel|")
    assert "+role" not in data_rules  # only with Sentinel: the ACL of every other run stays exact
    args = {"stream": STREAM, "group": GROUP, "consumers": [DEAD], "claim_to": LIVE, "retire": True}
    connection = cluster.connection(username=DATA_USER, password=PASSWORD)
    connection["sentinel"].update(username=SENTINEL_USER, password=PASSWORD)

    def grant(data: list[str], sentinel: list[str]) -> None:
        admin.execute_command("ACL", "SETUSER", DATA_USER, "reset", "on", f">{PASSWORD}", *data)
        for node in cluster.sentinels:
            node.client().execute_command(
                "ACL", "SETUSER", SENTINEL_USER, "reset", "on", f">{PASSWORD}", *sentinel
            )

    def reclaim() -> dict[str, Any]:
        return run_module_main("redis_stream_reclaim", {"connection": connection, **args})

    try:
        assert sentinel_rules == ["-@all", "+sentinel|masters", "+sentinel|get-master-addr-by-name"]
        grant([*data_rules, "+role"], sentinel_rules)
        result = reclaim()
        assert not result.get("failed"), result.get("msg")
        assert result["totals"]["moved"] == 5

        _fill(admin, 5)
        grant(data_rules, sentinel_rules)
        result = reclaim()
        assert result["failed"] and result["totals"]["moved"] == 0
        assert result["msg"] == (
            f"Could not move the entries of {DEAD} to {LIVE} (nothing was changed): Redis user "
            f"'{DATA_USER}' may not run ROLE: add +role to its ACL (see docs/acl.md)."
        )
        grant([*data_rules, "+role"], ["-@all", "+sentinel|get-master-addr-by-name"])
        result = reclaim()
        assert result["failed"] and result["msg"] == (
            f"Sentinel user '{SENTINEL_USER}' may not run SENTINEL MASTERS: add +sentinel|masters to its "
            "ACL on every sentinel (see docs/acl.md)."
        )
        grant([*data_rules, "+role"], ["-@all", "+sentinel|masters"])
        result = reclaim()
        assert result["failed"] and result["msg"] == (
            f"Could not move the entries of {DEAD} to {LIVE} (nothing was changed): Sentinel user "
            f"'{SENTINEL_USER}' may not run SENTINEL GET-MASTER-ADDR-BY-NAME: add "
            "+sentinel|get-master-addr-by-name to its ACL on every sentinel (see docs/acl.md)."
        )
        grant([*data_rules, "+role"], sentinel_rules)
        connection["sentinel"]["password"] = "wrong"
        result = reclaim()
        assert (
            result["failed"] and "refused authentication: check connection.sentinel.username" in result["msg"]
        )
        assert "wrong" not in result["msg"] and PASSWORD not in str(result)
    finally:
        admin.execute_command("ACL", "DELUSER", DATA_USER)
        for node in cluster.sentinels:
            node.client().execute_command("ACL", "DELUSER", SENTINEL_USER)
