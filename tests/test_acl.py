"""The minimal Redis ACL of docs/acl.md, measured on a real redis-server: a user holding exactly
that ACL runs every module on a realistic pipeline state; the same user minus any one
permission fails exactly in the runs that need it, with one sentence naming the permission,
and changes nothing when it fails before its first write."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from conftest import (
    PROJECT_ROOT,
    RedisServer,
    collection_util,
    dump_redis,
    run_ansible_module,
    start_redis,
)
from reclaim_support import run_module_main

USER = "qt-remediation"
PASSWORD = "acl-test-pw-5150"
DECISIONS = "quantum:stream:ai.decision"
RESULTS = "quantum:stream:trade.result"
DEAD_LETTER = "quantum:stream:ai.decision.dead"
GOVERNOR = "quantum:governor"
GROUP = "router"
LIVE = "router-1"  # the stage's live consumer
DEAD = "router-0"  # died holding entries
TEMP = "router-tmp"  # a temporary consumer a runbook left holding entries
RECLAIM = "redis_stream_reclaim"
GOVERNOR_MODULE = "redis_governor"

rc = collection_util("redis_connection")


def documented_acl() -> list[str]:
    """The rules of the `ACL SETUSER` command in docs/acl.md (after `reset on >password`)."""
    text = (PROJECT_ROOT / "docs" / "acl.md").read_text()
    match = re.search(r"^ACL SETUSER \S+ reset on >\S+ (.+)$", text, re.MULTILINE)
    assert match, "docs/acl.md has no `ACL SETUSER <user> reset on ><password> <rules>` line"
    return match[1].split()


ACL = documented_acl()

# The runs below that fail without each permission (measured on 7.0.15; every other run
# succeeds without it). This is docs/acl.md's table, as data.
ALL_RUNS = ("info", "plan", "reclaim", "dead_letter", "governor_read", "governor_reset")
NEEDED_BY: dict[str, tuple[str, ...]] = {
    "ping": ALL_RUNS,
    "info": ("info",),
    "time": ALL_RUNS,
    "type": ALL_RUNS,
    "xinfo|stream": ("info",),
    "xinfo|groups": ("info",),
    "xinfo|consumers": ("info", "plan", "reclaim", "dead_letter"),
    "xpending": ("info", "plan", "reclaim", "dead_letter"),
    "xrange": ("plan", "dead_letter", "governor_read", "governor_reset"),
    "xclaim": ("reclaim", "dead_letter"),
    "xautoclaim": ("reclaim",),
    "xgroup|delconsumer": ("reclaim", "dead_letter"),
    "evalsha": ("plan", "reclaim", "dead_letter", "governor_reset"),
    "script|load": ("plan", "reclaim", "dead_letter", "governor_reset"),
    "xack": ("dead_letter",),
    "xadd": ("dead_letter",),
    "hmget": ("governor_read", "governor_reset"),
    "hset": ("governor_reset",),
}
# Failures after the run had already changed something: the result reports the partial work.
# Every other failure comes before the module's first write, and Redis is left unchanged.
MOVED_BOTH = "Moved 3 entries of router-0 and 3 entries of router-tmp to router-1, "
PARTIAL = {
    ("xclaim", "dead_letter"): "Dead-lettered 1 entry of router-1 to quantum:stream:ai.decision.dead, then",
    ("xautoclaim", "reclaim"): "Moved 3 entries of router-0 to router-1, then",
    ("xgroup|delconsumer", "reclaim"): MOVED_BOTH + "then could not retire router-0: ",
    ("xgroup|delconsumer", "dead_letter"): MOVED_BOTH + "dead-lettered 1 entry of router-1 to ",
}
TOTALS = {"moved": 6, "dead_lettered": 0, "deleted": 0, "retired": 2, "consumers_selected": 2}


# -- the server, the user, the pipeline ------------------------------------------------------


@pytest.fixture(scope="module")
def acl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def admin(acl_server: RedisServer) -> Iterator[redis.Redis]:
    client = acl_server.client()
    client.flushall()
    client.script_flush()
    yield client
    client.close()


@pytest.fixture
def connection(acl_server: RedisServer) -> dict[str, Any]:
    return {**acl_server.connection, "username": USER, "password": PASSWORD}


def grant(admin: redis.Redis, rules: list[str]) -> None:
    """The user holds exactly `rules` (and its password)."""
    admin.execute_command("ACL", "SETUSER", USER, "reset", "on", f">{PASSWORD}", *rules)


def without(permission: str) -> list[str]:
    return [rule for rule in ACL if rule != f"+{permission}"]


def pipeline_state(admin: redis.Redis) -> None:
    """The router stage after an incident: router-1 (live) holds one entry it was given three
    times; router-0 died holding 3 entries and router-tmp (left by a runbook) 3 more; 4
    entries wait undelivered. The governor is poisoned (10000 against 200) with 3 results
    recorded today."""
    admin.xgroup_create(DECISIONS, GROUP, id="$", mkstream=True)
    ids = [admin.xadd(DECISIONS, {"decision": f"BUY {n}"}) for n in range(12)]
    admin.xreadgroup(GROUP, LIVE, {DECISIONS: ">"}, count=2)
    admin.xack(DECISIONS, GROUP, ids[1])
    for _ in range(2):  # re-read at two restarts: delivered 3 times
        admin.xreadgroup(GROUP, LIVE, {DECISIONS: "0"})
    admin.xreadgroup(GROUP, DEAD, {DECISIONS: ">"}, count=3)
    admin.xreadgroup(GROUP, TEMP, {DECISIONS: ">"}, count=3)
    for n in range(3):
        admin.xadd(RESULTS, {"order": str(n)})
    seconds, _ = admin.time()
    today = datetime.fromtimestamp(seconds, UTC).date().isoformat()
    admin.hset(GOVERNOR, mapping={"date": today, "trades_today": "10000", "daily_limit": "200"})
    time.sleep(0.02)  # idle longer than the reclaim guard's clock tolerance


def reclaim_args(connection: dict[str, Any], **extra: Any) -> dict[str, Any]:
    args = {
        "connection": connection,
        "stream": DECISIONS,
        "group": GROUP,
        "consumers": [DEAD, TEMP],
        "claim_to": LIVE,
        "retire": True,
    }
    return {**args, **extra}


def dead_letter_args(connection: dict[str, Any]) -> dict[str, Any]:
    """router-1's own entry, delivered 3 times, goes to the dead-letter stream."""
    return reclaim_args(
        connection, consumers=[DEAD, TEMP, LIVE], dead_letter={"stream": DEAD_LETTER, "max_deliveries": 2}
    )


def governor_args(connection: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"connection": connection, "governor": {"key": GOVERNOR, "counted_stream": RESULTS}, **extra}


RUNS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "info": lambda c: run_module_main(
        "redis_stream_info",
        {"connection": c, "streams": [{"stream": DECISIONS, "groups": [GROUP]}, {"stream": RESULTS}]},
    ),
    "plan": lambda c: run_module_main(RECLAIM, reclaim_args(c), check=True),
    "reclaim": lambda c: run_module_main(RECLAIM, reclaim_args(c)),
    "dead_letter": lambda c: run_module_main(RECLAIM, dead_letter_args(c)),
    "governor_read": lambda c: run_module_main(GOVERNOR_MODULE, governor_args(c)),
    "governor_reset": lambda c: run_module_main(GOVERNOR_MODULE, governor_args(c, reset_above_limit=True)),
}


def snapshot(admin: redis.Redis) -> dict[str, Any]:
    """Every key's full contents, and XINFO STREAM FULL of the pipeline's stream (PEL owners,
    delivery times and counts, consumers' seen times)."""
    return {"dump": dump_redis(admin), "full": admin.xinfo_stream(DECISIONS, full=True)}


def assert_one_sentence(msg: str) -> None:
    assert "\n" not in msg, msg
    assert msg.endswith("."), msg
    assert not re.search(r"[.!?]\s+[A-Z]", msg[:-1]), f"more than one sentence: {msg}"


def pending(admin: redis.Redis) -> dict[str, int]:
    return {c["name"]: c["pending"] for c in admin.xinfo_consumers(DECISIONS, GROUP)}


def assert_result_is_what_redis_shows(admin: redis.Redis, result: dict[str, Any]) -> None:
    """The reclaim result (on success or on failure) says what Redis now shows: the live
    consumer got the moved entries, lost the dead-lettered ones, retired consumers are gone."""
    consumers = result["consumers"]
    live_dead_lettered = consumers.get(LIVE, {}).get("dead_lettered", 0)
    now = pending(admin)
    assert now[LIVE] == 1 - live_dead_lettered + result["totals"]["moved"]
    for name, outcome in consumers.items():
        if name == LIVE:
            continue
        if outcome["retired"]:
            assert name not in now
        else:
            assert now[name] == outcome["pending_before"] - outcome["moved"] - outcome["dead_lettered"]
    assert admin.xlen(DEAD_LETTER) == result["totals"]["dead_lettered"]


# -- the ACL as documented ---------------------------------------------------------------------


def test_the_documented_acl_is_the_measured_one():
    assert ACL[:2] == ["~quantum:*", "-@all"]
    assert [rule[1:] for rule in ACL[2:]] == list(NEEDED_BY)
    assert all(rule.startswith("+") for rule in ACL[2:])


def test_a_user_with_exactly_the_acl_heals_the_pipeline(admin, connection):
    pipeline_state(admin)
    grant(admin, ACL)

    info = RUNS["info"](connection)
    assert not info.get("failed"), info.get("msg")
    router = info["streams"][DECISIONS]["groups"][GROUP]
    assert {name: c["pending"] for name, c in router["consumers"].items()} == {LIVE: 1, DEAD: 3, TEMP: 3}
    assert router["lag"] == 4

    before = snapshot(admin)
    plan = RUNS["plan"](connection)
    assert not plan.get("failed"), plan.get("msg")
    assert plan["totals"] == TOTALS
    assert snapshot(admin) == before

    # The real run through the real `ansible` command, as the role runs it.
    result = run_ansible_module("redis_stream_reclaim", reclaim_args(connection))
    assert result["changed"] is True
    assert result["totals"] == TOTALS
    assert result["stats"]["fast_path_batches"] == 1  # router-tmp: XAUTOCLAIM; router-0: XCLAIM
    assert pending(admin) == {LIVE: 7}
    assert PASSWORD not in str(result)

    read = RUNS["governor_read"](connection)
    assert not read.get("failed"), read.get("msg")
    assert read["governor"]["over_limit"] is True
    assert read["results_today"] == 3
    reset = RUNS["governor_reset"](connection)
    assert not reset.get("failed"), reset.get("msg")
    assert reset["reset"] is True
    assert admin.hget(GOVERNOR, "trades_today") == "3"


def test_a_user_with_exactly_the_acl_dead_letters(admin, connection):
    pipeline_state(admin)
    grant(admin, ACL)
    result = RUNS["dead_letter"](connection)
    assert not result.get("failed"), result.get("msg")
    assert result["totals"] == {**TOTALS, "dead_lettered": 1, "consumers_selected": 3}
    assert pending(admin) == {LIVE: 6}
    (copy,) = admin.xrange(DEAD_LETTER)
    assert copy[1]["origin_consumer"] == LIVE
    assert copy[1]["delivery_count"] == "3"


CASES = [(permission, run) for permission in NEEDED_BY for run in ALL_RUNS]


@pytest.mark.parametrize(("permission", "run"), CASES, ids=[f"{p}-{r}" for p, r in CASES])
def test_each_permission_is_needed_where_documented(admin, connection, permission, run):
    pipeline_state(admin)
    grant(admin, without(permission))
    before = snapshot(admin)
    result = RUNS[run](connection)

    if run not in NEEDED_BY[permission]:
        assert not result.get("failed"), result.get("msg")
        return
    assert result.get("failed") is True
    msg = result["msg"]
    assert_one_sentence(msg)
    assert f"Redis user '{USER}' may not run {permission.upper().replace('|', ' ')}" in msg
    assert msg.endswith(f": add +{permission} to its ACL (see docs/acl.md).")
    if (permission, run) in PARTIAL:
        assert msg.startswith(PARTIAL[permission, run])
        assert result["changed"] is True
        assert_result_is_what_redis_shows(admin, result)
    else:
        assert snapshot(admin) == before
        assert result.get("changed", False) is False
    if run in ("plan", "reclaim", "dead_letter"):
        assert set(result) >= {"consumers", "totals", "stats", "claim_to", "changed"}


KEY_CASES = [
    (
        "~other:*",
        "info",
        "may not access the key quantum:stream:ai.decision: add a key pattern that matches it (~quantum:*)",
    ),
    (
        "~quantum:stream:ai.decision",
        "dead_letter",
        "may not access one of the keys quantum:stream:ai.decision and quantum:stream:ai.decision.dead: "
        "add a key pattern that matches them (~quantum:*)",
    ),
    ("~quantum:stream:*", "governor_read", "may not access the key quantum:governor: add a key pattern"),
]


@pytest.mark.parametrize(("pattern", "run", "expected"), KEY_CASES, ids=[r for _, r, _ in KEY_CASES])
def test_a_key_outside_the_key_pattern_is_named(admin, connection, pattern, run, expected):
    pipeline_state(admin)
    grant(admin, [pattern, *ACL[1:]])
    before = snapshot(admin)
    result = RUNS[run](connection)
    assert result.get("failed") is True
    assert snapshot(admin) == before
    # Redis 7.0.15: "...access one of the keys used as arguments"; 8.0.2 and Valkey 8.1.1:
    # "No permissions to access a key": the same sentence from the module on every server.
    assert_one_sentence(result["msg"])
    assert f"Redis user '{USER}' {expected}" in result["msg"]


# -- reading the server's words ---------------------------------------------------------------


def test_a_denial_inside_a_script_is_traced_to_its_command(admin, connection):
    """Redis 7.0 names only the script and the line: the command is read from that line."""
    grant(admin, without("xgroup|delconsumer"))
    admin.xgroup_create(DECISIONS, GROUP, id="$", mkstream=True)
    source = "\nlocal n = 1\nreturn redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], 'gone')\n"
    rc.remember_script(source)
    client = redis.Redis(**{k: connection[k] for k in ("host", "port", "username", "password")})
    with pytest.raises(redis.exceptions.ResponseError) as denied:
        client.register_script(source)(keys=[DECISIONS], args=[GROUP])
    client.close()
    assert re.search(r"script: [0-9a-f]{40}, on @user_script:3\.$", str(denied.value)), denied.value
    assert rc.acl_denial(denied.value) == ("command", "xgroup|delconsumer")


NoPermission = redis.exceptions.NoPermissionError
ResponseError = redis.exceptions.ResponseError
WORDINGS = [
    (NoPermission("this user has no permissions to run the 'xinfo|consumers' command"), "xinfo|consumers"),
    (NoPermission("this user has no permissions to access one of the keys used as arguments"), "key"),
    # Redis 7.2 and later, inside a script and at the top level.
    (
        ResponseError(
            "ACL failure in script: User qt has no permissions to run the 'xack' command script: "
            "0123456789012345678901234567890123456789, on @user_script:12."
        ),
        "xack",
    ),
    (NoPermission("User qt has no permissions to run the 'xautoclaim' command"), "xautoclaim"),
    (ResponseError("ACL failure in script: User qt has no permissions to access the 'k' key"), "key"),
    # Not ours to word: the server's own words are kept.
    (NoPermission("this user has no permissions to access one of the channels used as arguments"), None),
    (ResponseError("NOGROUP No such key 's' or consumer group 'g'"), None),
]


@pytest.mark.parametrize(("error", "denied"), WORDINGS, ids=[str(d) for _, d in WORDINGS])
def test_acl_denial_wordings(error, denied):
    expected = None if denied is None else ("key", None) if denied == "key" else ("command", denied)
    assert rc.acl_denial(error) == expected


def test_a_key_named_by_the_server_wins():
    error = redis.exceptions.ResponseError(
        "ACL failure in script: User qt has no permissions to access the 'quantum:governor' key"
    )
    sentence = rc.explain_redis_error(error, {"host": "h", "port": 1, "username": "qt"}, key="other")
    assert sentence == (
        "Redis user 'qt' may not access the key quantum:governor: add a key pattern that matches it "
        "(~quantum:*) to its ACL (see docs/acl.md)."
    )


def test_every_script_line_runs_at_most_one_command(admin):
    """A denied command is found by its script line: no line may hold two."""
    scripts = collection_util("redis_stream_scripts")
    governor = collection_util("governor")
    sources = [scripts.SELECT_SCRIPT, scripts.BATCH_SCRIPT, scripts.RETIRE_SCRIPT, governor.RESET_SCRIPT]
    for source in sources:
        for line in source.split("\n"):
            assert len(re.findall(r"\bp?call\(\s*'", line)) <= 1, line
        # Filed under the SHA1 the server knows the script by.
        assert rc.remember_script(source) == admin.script_load(source)
