"""redis_governor against a real redis-server, through the real `ansible` command."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import redis
from conftest import collection_module, dump_redis, free_loopback_port, run_ansible_module

KEY = "quantum:governor"
RESULTS = "quantum:stream:trade.result"
DAY_MS = 86_400_000


def governor_option(**overrides) -> dict:
    spec = {
        "key": KEY,
        "date_field": "date",
        "count_field": "trades_today",
        "limit_field": "daily_limit",
        "counted_stream": RESULTS,
    }
    spec.update(overrides)
    return spec


def server_day(client: redis.Redis) -> tuple[str, int]:
    """Today's UTC date by the server's clock, and its midnight in ms."""
    seconds, _ = client.time()
    midnight = datetime.fromtimestamp(seconds, tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.date().isoformat(), int(midnight.timestamp() * 1000)


def add_results(client: redis.Redis, first_ms: int, count: int) -> None:
    """`count` entries with entry-ID times from `first_ms` on (several per millisecond)."""
    pipe = client.pipeline(transaction=False)
    for index in range(count):
        pipe.xadd(RESULTS, {"order": str(index)}, id=f"{first_ms + index // 3}-{index % 3}")
    pipe.execute()


@pytest.fixture
def day(redis_client: redis.Redis) -> tuple[str, int]:
    return server_day(redis_client)


@pytest.fixture
def incident(redis_client: redis.Redis, day: tuple[str, int]) -> redis.Redis:
    """The seed's third layer: 10000 trades 'today' against a limit of 200, with 2 results
    yesterday, 5 today and 1 dated tomorrow in the result stream."""
    today, midnight = day
    add_results(redis_client, midnight - DAY_MS + 5, 2)
    add_results(redis_client, midnight + 1, 5)
    redis_client.xadd(RESULTS, {"order": "future"}, id=f"{midnight + DAY_MS}-0")
    redis_client.hset(KEY, mapping={"date": today, "trades_today": "10000", "daily_limit": "200"})
    return redis_client


def run(redis_server, *, check=False, diff=False, expect_failure=False, **options) -> dict:
    args = {"connection": redis_server.connection, "governor": governor_option()}
    args.update(options)
    return run_ansible_module("redis_governor", args, check=check, diff=diff, expect_failure=expect_failure)


def test_reads_a_poisoned_governor_without_changing_it(redis_server, incident, day):
    before = dump_redis(incident)
    result = run(redis_server)
    assert result["changed"] is False
    assert result["governor"] == {
        "key": KEY,
        "exists": True,
        "date": day[0],
        "today": day[0],
        "dated_today": True,
        "count": 10000,
        "limit": 200,
        "over_limit": True,
        "at_limit": False,
        "blocked": True,
    }
    assert result["results_today"] == 5
    assert result["counted_stream_exists"] is True
    assert result["reset"] is False
    assert "before" not in result
    assert dump_redis(incident) == before


def test_resets_a_counter_above_its_limit_to_todays_results(redis_server, incident, day):
    result = run(redis_server, reset_above_limit=True)
    assert result["changed"] is True
    assert result["reset"] is True
    assert result["reset_skipped_reason"] is None
    assert result["before"] == {"date": day[0], "count": 10000}
    assert result["after"] == {"date": day[0], "count": 5}
    assert result["governor"]["over_limit"] is True  # as read, before the change
    assert incident.hgetall(KEY) == {"date": day[0], "trades_today": "5", "daily_limit": "200"}


def test_a_reset_refused_at_maxmemory_is_one_sentence_and_changes_nothing(redis_server, incident):
    """OOM: the reset's HSET is refused when Redis is at maxmemory; one sentence, the hash as it was."""
    before = dump_redis(incident)
    incident.config_set("maxmemory", "1")
    try:
        result = run(redis_server, reset_above_limit=True, expect_failure=True)
    finally:
        incident.config_set("maxmemory", "0")
    assert "is out of memory" in result["msg"] and "raise maxmemory" in result["msg"], result["msg"]
    assert dump_redis(incident) == before


def test_second_run_changes_nothing(redis_server, incident):
    run(redis_server, reset_above_limit=True)
    snapshot = dump_redis(incident)
    again = run(redis_server, reset_above_limit=True)
    assert again["changed"] is False
    assert again["reset"] is False
    assert "at or below its limit" in again["reset_skipped_reason"]
    assert again["governor"]["count"] == 5
    assert again["governor"]["blocked"] is False
    assert dump_redis(incident) == snapshot


def test_check_mode_returns_the_plan_and_changes_nothing(redis_server, incident, day):
    before = dump_redis(incident)
    result = run(redis_server, check=True, diff=True, reset_above_limit=True)
    assert result["changed"] is True
    assert result["reset"] is True
    assert result["before"] == {"date": day[0], "count": 10000}
    assert result["after"] == {"date": day[0], "count": 5}
    assert result["diff"]["before"] == result["before"]
    assert result["diff"]["after"] == result["after"]
    assert dump_redis(incident) == before


def test_diff_mode_shows_before_and_after(redis_server, incident):
    result = run(redis_server, diff=True, reset_above_limit=True)
    assert result["diff"]["before"]["count"] == 10000
    assert result["diff"]["after"]["count"] == 5
    assert result["diff"]["before_header"] == KEY


def test_no_diff_without_diff_mode(redis_server, incident):
    assert "diff" not in run(redis_server, reset_above_limit=True)


@pytest.mark.parametrize("count", ["200", "150", "0"])
def test_a_counter_at_or_below_its_limit_is_never_touched(redis_server, redis_client, day, count):
    redis_client.hset(KEY, mapping={"date": day[0], "trades_today": count, "daily_limit": "200"})
    add_results(redis_client, day[1] + 1, 3)
    before = dump_redis(redis_client)
    result = run(redis_server, reset_above_limit=True)
    assert result["changed"] is False
    assert result["governor"]["over_limit"] is False
    assert result["governor"]["at_limit"] is (count == "200")
    assert result["governor"]["blocked"] is (count == "200")
    assert "legitimate" in result["reset_skipped_reason"]
    assert dump_redis(redis_client) == before


def test_a_counter_dated_another_day_is_left_to_the_governor(redis_server, redis_client):
    redis_client.hset(KEY, mapping={"date": "2001-01-01", "trades_today": "10000", "daily_limit": "200"})
    before = dump_redis(redis_client)
    result = run(redis_server, reset_above_limit=True)
    assert result["changed"] is False
    assert result["governor"]["dated_today"] is False
    assert result["governor"]["over_limit"] is False
    assert "not today" in result["reset_skipped_reason"]
    assert dump_redis(redis_client) == before


def test_missing_key_is_reported_not_created(redis_server, redis_client):
    result = run(redis_server, reset_above_limit=True)
    assert result["changed"] is False
    assert result["governor"]["exists"] is False
    assert result["governor"]["count"] is None
    assert result["governor"]["over_limit"] is False
    assert "does not exist" in result["reset_skipped_reason"]
    # Not counted: no reset could be made.
    assert result["counted_stream_exists"] is None
    assert result["results_today"] is None
    assert dump_redis(redis_client) == {}


def test_missing_counted_stream_counts_zero(redis_server, redis_client, day):
    redis_client.hset(KEY, mapping={"date": day[0], "trades_today": "10000", "daily_limit": "200"})
    result = run(redis_server, reset_above_limit=True)
    assert result["counted_stream_exists"] is False
    assert result["after"]["count"] == 0
    assert redis_client.hget(KEY, "trades_today") == "0"


def test_compact_date_format_is_understood_and_kept(redis_server, redis_client, day):
    compact = day[0].replace("-", "")
    redis_client.hset(KEY, mapping={"date": compact, "trades_today": "10000", "daily_limit": "200"})
    add_results(redis_client, day[1] + 1, 2)
    result = run(redis_server, reset_above_limit=True)
    assert result["governor"]["dated_today"] is True
    assert result["after"] == {"date": compact, "count": 2}
    assert redis_client.hget(KEY, "date") == compact


def test_custom_field_names(redis_server, redis_client, day):
    redis_client.hset("gov", mapping={"day": day[0], "n": "999", "max": "10"})
    result = run(
        redis_server,
        reset_above_limit=True,
        governor=governor_option(key="gov", date_field="day", count_field="n", limit_field="max"),
    )
    assert result["changed"] is True
    assert redis_client.hgetall("gov") == {"day": day[0], "n": "0", "max": "10"}


def test_counts_across_many_pages_without_yesterday_or_tomorrow(redis_server, redis_client, day):
    add_results(redis_client, day[1] - 5000, 1500)  # yesterday
    add_results(redis_client, day[1], 2600)  # today, from midnight sharp: 3 pages
    redis_client.xadd(RESULTS, {"order": "tomorrow"}, id=f"{day[1] + DAY_MS}-0")
    result = run(redis_server, count_results=True)
    assert result["results_today"] == 2600


@pytest.mark.parametrize("count", ["150", "200"])
def test_results_are_counted_only_when_a_reset_could_be_made(redis_server, redis_client, day, count):
    """The count reads every result of the day: a counter at or below its limit, the healthy
    case of every run, costs no XRANGE (counted only with count_results)."""
    redis_client.hset(KEY, mapping={"date": day[0], "trades_today": count, "daily_limit": "200"})
    add_results(redis_client, day[1] + 1, 1500)
    before = redis_client.info("commandstats").get("cmdstat_xrange", {}).get("calls", 0)
    lazy = run(redis_server, reset_above_limit=True)
    assert (lazy["results_today"], lazy["counted_stream_exists"]) == (None, None)
    assert redis_client.info("commandstats").get("cmdstat_xrange", {}).get("calls", 0) == before
    counted = run(redis_server, count_results=True)
    assert (counted["results_today"], counted["counted_stream_exists"]) == (1500, True)
    assert redis_client.info("commandstats")["cmdstat_xrange"]["calls"] == before + 2


def test_results_above_the_limit_warn_and_the_reset_is_idempotent(redis_server, redis_client, day):
    redis_client.hset(KEY, mapping={"date": day[0], "trades_today": "10000", "daily_limit": "2"})
    add_results(redis_client, day[1] + 1, 4)
    first = run(redis_server, reset_above_limit=True)
    assert first["changed"] is True
    assert first["after"]["count"] == 4
    assert any("exceed the limit" in warning for warning in first.get("warnings", []))
    second = run(redis_server, reset_above_limit=True)
    assert second["changed"] is False
    assert second["governor"]["over_limit"] is True
    assert "already equals today's results" in second["reset_skipped_reason"]


def test_wrong_key_type_fails_with_one_sentence(redis_server, redis_client):
    redis_client.set(KEY, "10000")
    result = run(redis_server, expect_failure=True)
    assert result["msg"] == (
        "The governor key quantum:governor is a string, not a hash: "
        "check governor.key (the inventory's pipeline.governor.key)."
    )


def test_wrong_counted_stream_type_fails(redis_server, redis_client, day):
    redis_client.hset(KEY, mapping={"date": day[0], "trades_today": "1", "daily_limit": "200"})
    redis_client.rpush(RESULTS, "x")
    result = run(redis_server, count_results=True, expect_failure=True)
    assert "is a list, not a stream" in result["msg"]
    assert "governor.counted_stream" in result["msg"]


def test_non_integer_counter_fails_naming_the_field(redis_server, redis_client, day):
    redis_client.hset(KEY, mapping={"date": day[0], "trades_today": "lots", "daily_limit": "200"})
    result = run(redis_server, reset_above_limit=True, expect_failure=True)
    assert "trades_today" in result["msg"]
    assert "governor.count_field" in result["msg"]
    assert redis_client.hget(KEY, "trades_today") == "lots"


def test_missing_limit_field_is_not_reset(redis_server, redis_client, day):
    redis_client.hset(KEY, mapping={"date": day[0], "trades_today": "10000"})
    result = run(redis_server, reset_above_limit=True)
    assert result["changed"] is False
    assert result["governor"]["limit"] is None
    assert "no trades_today or no daily_limit" in result["reset_skipped_reason"]


def test_required_governor_options(redis_server):
    result = run(redis_server, governor={"key": KEY}, expect_failure=True)
    assert "counted_stream" in result["msg"]


def test_redis_down_fails_with_one_sentence():
    port = free_loopback_port()
    result = run_ansible_module(
        "redis_governor",
        {
            "connection": {"host": "127.0.0.1", "port": port, "connect_timeout": 1},
            "governor": governor_option(),
        },
        expect_failure=True,
    )
    assert result["msg"].startswith(f"Cannot connect to Redis at 127.0.0.1:{port}")


@pytest.fixture(scope="module")
def protected_redis(tmp_path_factory):
    from conftest import start_redis

    server = start_redis(tmp_path_factory, "--requirepass", "s3cret-governor")
    try:
        yield server
    finally:
        server.stop()


def test_password_is_used_and_never_echoed(protected_redis):
    connection = dict(protected_redis.connection, password="s3cret-governor")
    result = run_ansible_module("redis_governor", {"connection": connection, "governor": governor_option()})
    assert result["governor"]["exists"] is False
    assert "s3cret-governor" not in repr(result)
    bad = run_ansible_module(
        "redis_governor",
        {"connection": dict(connection, password="wrong-one"), "governor": governor_option()},
        expect_failure=True,
    )
    assert "refused authentication" in bad["msg"]
    assert "wrong-one" not in repr(bad)


# The re-check under concurrency: the module's Governor probes the hash, then something
# legitimate changes it before the reset; the server-side script must see it and not write.


def load_module():
    """The module's code, imported the way Ansible resolves it (with its module_utils)."""
    return collection_module("redis_governor")


class FakeAnsibleModule:
    """Only what Governor needs from AnsibleModule; Redis itself is real."""

    def __init__(self, params: dict) -> None:
        self.params = params

    def fail_json(self, **kwargs):
        raise AssertionError(kwargs["msg"])


@pytest.fixture
def governor_class(redis_server, incident):
    module = load_module()
    params = {"connection": redis_server.connection, "governor": governor_option()}
    return lambda: module.Governor(FakeAnsibleModule(params), incident)


@pytest.mark.parametrize(
    ("concurrent_change", "reason"),
    [
        ({"trades_today": "150"}, "no longer above its limit"),
        ({"daily_limit": "20000"}, "no longer above its limit"),
        ({"date": "2001-01-01"}, "no longer dated today"),
    ],
)
def test_reset_rechecks_on_the_server(governor_class, incident, concurrent_change, reason):
    governor = governor_class()
    state = governor.state()
    assert governor.skip_reason(state) is None
    incident.hset(KEY, mapping=concurrent_change)
    expected = incident.hgetall(KEY)
    assert reason in governor.reset(state)
    assert incident.hgetall(KEY) == expected


def test_reset_writes_when_still_above_the_limit(governor_class, incident, day):
    governor = governor_class()
    state = governor.state()
    incident.hset(KEY, "trades_today", "10001")  # still leftover state: reset anyway
    assert governor.reset(state) is None
    assert incident.hget(KEY, "trades_today") == "5"


def test_racing_writers_never_lose_a_legit_change(governor_class, incident, day):
    """Many resets race a writer that sets a legit value; the legit value always survives."""
    for _ in range(20):
        incident.hset(KEY, mapping={"date": day[0], "trades_today": "10000"})
        governors = [governor_class() for _ in range(4)]
        states = [governor.state() for governor in governors]
        barrier = threading.Barrier(5)

        def reset(governor, state, barrier=barrier):
            barrier.wait()
            governor.reset(state)

        def legit(barrier=barrier):
            barrier.wait()
            incident.hset(KEY, "trades_today", "150")

        threads = [threading.Thread(target=reset, args=pair) for pair in zip(governors, states, strict=True)]
        threads.append(threading.Thread(target=legit))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # Either the legit write came last, or a reset came after it and then found the
        # counter legit and left it: in both cases the legit 150 is kept.
        assert incident.hget(KEY, "trades_today") in {"150"}
