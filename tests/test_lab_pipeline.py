"""The lab for any pipeline: the lab inventories pass the project's own validation, the lab data
(lab/pipeline_json.py) gives the tool's ACL user exactly docs/acl.md's ACL, and the stubs'
batches (stub.py, labdata.py) are atomic on a real redis-server: a consumer's batch is output
and acknowledged together, a governed producer's batch stops at the limit, and behind Sentinel
the client finds the primary."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from project_files import PROJECT_ROOT, load_project_file
from test_acl import documented_acl

LAB_LIB = PROJECT_ROOT / "lab/image/files/usr/local/lib/quantum"
if str(LAB_LIB) not in sys.path:
    sys.path.insert(0, str(LAB_LIB))

import labdata  # noqa: E402  (the image's module, importable once LAB_LIB is on the path)
import stub  # noqa: E402

pipeline_json = load_project_file("lab/pipeline_json.py")
stream_health = load_project_file("filter_plugins/stream_health.py")
run_guard = load_project_file("filter_plugins/run_guard.py")

LAB_INVENTORIES = sorted(PROJECT_ROOT.glob("inventory/lab*/group_vars/all/pipeline.yml"))
SEED = PROJECT_ROOT / "inventory/lab/group_vars/all/pipeline.yml"
SHOP = PROJECT_ROOT / "inventory/lab-shop/group_vars/all/pipeline.yml"


def read(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def test_both_lab_inventories_are_checked() -> None:
    assert {SEED, SHOP} <= set(LAB_INVENTORIES)


@pytest.mark.parametrize("path", LAB_INVENTORIES, ids=lambda p: p.parts[-4])
def test_a_lab_inventory_passes_the_projects_validation(path: Path) -> None:
    pipeline = read(path)["pipeline"]
    assert stream_health.validate_pipeline(pipeline) == []
    assert run_guard.pipeline_guard_problems(pipeline) == []


def test_the_shop_pipeline_shares_no_name_with_the_seed() -> None:
    seed, shop = (read(p)["pipeline"] for p in (SEED, SHOP))

    def names(p: dict) -> set[str]:
        found = {p["name"], p["mode_file"], p["mode_variable"], *p["governor"].values()}
        for stage in p["stages"]:
            found |= {v for k, v in stage.items() if isinstance(v, str)}
        return found

    assert len(shop["stages"]) == 4
    assert names(seed) & names(shop) == set()
    assert shop["redis"]["username"] and shop["redis"]["password"]


def test_minimal_is_docs_acl_with_the_pipelines_key_pattern() -> None:
    seed = pipeline_json.lab_data(read(SEED) | {"lab_setup": {"acl_users": [
        {"username": "quantum-remediation", "password": "x", "rules": "minimal"}]}})
    # The seed's keys all start with quantum: -> exactly the documented line.
    assert seed["lab"]["acl_users"][0]["rules"] == documented_acl()
    shop = pipeline_json.lab_data(read(SHOP))
    users = {u["username"]: u for u in shop["lab"]["acl_users"]}
    tool = users[shop["pipeline"]["redis"]["username"]]
    assert tool["rules"] == ["~shop:*"] + [r for r in documented_acl() if not r.startswith("~")]
    # Its password is pipeline.redis's, not a second copy.
    assert tool["password"] == shop["pipeline"]["redis"]["password"]
    assert shop["lab"]["services_user"] in users


def test_sentinel_adds_role_for_the_data_nodes() -> None:
    source = read(SHOP)
    source["pipeline"]["redis"]["sentinel"] = {"hosts": ["127.0.0.1:26379"], "service_name": "shop"}
    tool = pipeline_json.lab_data(source)["lab"]["acl_users"][1]
    assert tool["rules"][-1] == "+role"


@pytest.mark.parametrize(
    ("setup", "sentence"),
    [
        ({"acl_users": [{"username": "someone", "rules": "minimal"}]},
         "lab_setup.acl_users someone needs a password."),
        ({"acl_users": [{"username": "u", "password": "p", "rules": 3}]},
         "lab_setup.acl_users u: rules must be `minimal`, a string or a list."),
        ([1], "lab_setup must be a mapping (rate, daily_limit, requirepass, services_user, acl_users)."),
    ],
)
def test_bad_lab_setup_is_one_sentence(setup: Any, sentence: str) -> None:
    with pytest.raises(pipeline_json.InputError) as error:
        pipeline_json.lab_data({"pipeline": read(SHOP)["pipeline"], "lab_setup": setup})
    assert str(error.value) == sentence


# -- the stubs on a real redis-server -----------------------------------------------------------
def shop_data(port: int, **lab: Any) -> dict[str, Any]:
    data = pipeline_json.lab_data(read(SHOP), redis_port=port)
    data["lab"] = {"rate": 2, "daily_limit": 200, **lab}
    return data


@pytest.fixture
def stage_of(redis_client: redis.Redis, redis_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(stub, "LOG_DIR", tmp_path)
    made: list[stub.Stage] = []

    def make(name: str, **lab: Any) -> stub.Stage:
        made.append(stub.Stage(shop_data(redis_server.port, **lab), name))
        return made[-1]

    yield make
    for st in made:
        st.redis.close()
        for handler in list(st.log.handlers):
            st.log.removeHandler(handler)


@pytest.mark.server
def test_a_consumer_batch_is_output_and_acknowledged_at_once(redis_client: redis.Redis, stage_of) -> None:
    packing = stage_of("packing")
    packing.ensure_group()
    for i in range(stub.READ_BATCH + 20):
        redis_client.xadd(packing.input_stream, {"n": str(i)})
    read = redis_client.xreadgroup(packing.group, packing.consumer, {packing.input_stream: ">"},
                                   count=stub.READ_BATCH)
    redis_client.xdel(packing.input_stream, read[0][1][5][0])  # deleted while pending
    # The PEL as the stub sees it after a restart: the batch, one entry without fields.
    replayed = packing.process_own_pel()
    assert replayed == stub.READ_BATCH
    assert redis_client.xpending(packing.input_stream, packing.group)["pending"] == 0
    out = redis_client.xrange(packing.output_stream)
    assert len(out) == stub.READ_BATCH - 1
    assert [f["source_id"] for _, f in out] == [i for i, _ in read[0][1] if i != read[0][1][5][0]]
    assert {f["stage"] for _, f in out} == {"packing"}


@pytest.mark.server
def test_the_last_stage_tags_the_mode(redis_client: redis.Redis, stage_of, tmp_path: Path) -> None:
    shipping = stage_of("shipping")
    mode = tmp_path / "sandbox.env"
    mode.write_text("SHOP_SANDBOX=false\n")
    shipping.data["pipeline"]["mode_file"] = str(mode)
    shipping.ensure_group()
    redis_client.xadd(shipping.input_stream, {"n": "1"})
    shipping.forward(redis_client.xreadgroup(shipping.group, shipping.consumer,
                                             {shipping.input_stream: ">"})[0][1])
    assert redis_client.xrange(shipping.output_stream)[0][1]["mode"] == "false"


@pytest.mark.server
def test_a_governed_batch_stops_at_the_limit_atomically(redis_client: redis.Redis, stage_of) -> None:
    intake = stage_of("intake")
    gov = intake.governor
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    redis_client.hset(gov["key"], mapping={gov["date_field"]: today, gov["count_field"]: 195,
                                           gov["limit_field"]: 200})
    script = intake.redis.register_script(stub.GOVERNED_XADD)
    head = [today, gov["date_field"], gov["count_field"], gov["limit_field"], "200", "2"]
    args = head + [v for i in range(100) for v in ("seq", str(i))]
    added, first, last, count, limit = script(keys=[gov["key"], intake.output_stream], args=args)
    assert (int(added), count, limit) == (5, "200", "200")
    assert redis_client.xlen(intake.output_stream) == 5
    assert [f["seq"] for _, f in redis_client.xrange(intake.output_stream)] == ["0", "1", "2", "3", "4"]
    assert (first, last) == (redis_client.xrange(intake.output_stream)[0][0],
                             redis_client.xrange(intake.output_stream)[-1][0])
    # Poisoned: nothing at all.
    assert int(script(keys=[gov["key"], intake.output_stream], args=args)[0]) == 0
    assert redis_client.hget(gov["key"], gov["count_field"]) == "200"


@pytest.mark.server
def test_the_stubs_connect_as_their_own_user(redis_client: redis.Redis, redis_server) -> None:
    data = pipeline_json.lab_data(read(SHOP), redis_port=redis_server.port)
    user = next(u for u in data["lab"]["acl_users"] if u["username"] == data["lab"]["services_user"])
    redis_client.acl_setuser(user["username"], enabled=True, passwords=["+" + user["password"]],
                             keys=["shop:*"], commands=["+@all", "-@dangerous"])
    try:
        client = labdata.connect(data, "services")
        assert client.acl_whoami() == user["username"]
        assert labdata.credentials(data, "admin") == (None, "lab-only-shop-admin")
        client.close()
    finally:
        redis_client.acl_deluser(user["username"])


def test_sentinel_hosts_in_both_forms() -> None:
    assert labdata.sentinel_address("127.0.0.1:26379") == ("127.0.0.1", 26379)
    assert labdata.sentinel_address({"host": "127.0.0.1", "port": 26380}) == ("127.0.0.1", 26380)
    assert labdata.sentinel_address("[::1]:26379") == ("::1", 26379)


# -- qt-lab's own check of the data it configures ------------------------------------------------
qt_lab = load_project_file("lab/image/files/usr/local/lib/quantum/qt_lab.py")


@pytest.mark.parametrize("path", LAB_INVENTORIES, ids=lambda p: p.parts[-4])
def test_qt_lab_configures_every_lab_inventory(path: Path) -> None:
    assert qt_lab.data_problem(pipeline_json.lab_data(read(path))) is None


@pytest.mark.parametrize(
    ("change", "sentence"),
    [
        (lambda d: d["pipeline"]["stages"][1].update(name="a b"),
         "pipeline.stages[1].name must be letters, digits, '.', '_' or '-' "
         "(it names files and an argument)."),
        (lambda d: d["pipeline"]["stages"][2].update(unit="shop-pricing"),
         "pipeline.stages[2] repeats the stage name packing or the unit shop-pricing."),
        (lambda d: d["pipeline"]["stages"][3].update(unit="redis-server.service"),
         "pipeline.stages[3].unit redis-server is the lab's Redis unit."),
        (lambda d: d["lab"].update(services_user="nobody"),
         "lab.services_user 'nobody' is not one of lab.acl_users."),
        (lambda d: d["pipeline"].update(mode_file="etc/shop.env"),
         "pipeline.mode_file must be an absolute path, got 'etc/shop.env'."),
    ],
)
def test_qt_lab_refuses_bad_data_with_one_sentence(change: Any, sentence: str) -> None:
    data = pipeline_json.lab_data(read(SHOP))
    change(data)
    assert qt_lab.data_problem(data) == sentence
