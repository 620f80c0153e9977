"""module_utils/redis_connection.py: every way of not reaching Redis fails with one clear
sentence. Through the real `ansible` command with redis_stream_info (the module that only
reads), plus a few direct calls where timing or text needs a closer look."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import RedisServer, collection_util, free_loopback_port, run_ansible_module, start_redis

PASSWORD = "Sup3r-Secret-pw-4711"
STREAM = "quantum:stream:ai.decision"


rc = collection_util("redis_connection")


def stream_info(connection: dict, *, expect_failure: bool = True, **options) -> dict:
    return run_ansible_module(
        "redis_stream_info",
        {"connection": connection, "streams": [{"stream": STREAM}], **options},
        expect_failure=expect_failure,
    )


# --- servers and sockets this module starts (and stops, by PID) -----------------------------


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory, "--requirepass", PASSWORD)
    try:
        yield server
    finally:
        server.stop()


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate it signed for 127.0.0.1, and an unrelated CA."""
    d = tmp_path_factory.mktemp("tls")
    for ca in ("ca", "other-ca"):
        openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={ca}",
            "-keyout", str(d / f"{ca}.key"), "-out", str(d / f"{ca}.crt"),
        )  # fmt: skip
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"),
    )  # fmt: skip
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
        "-CAcreateserial", "-days", "2", "-extfile", str(d / "san.cnf"), "-out", str(d / "server.crt"),
    )  # fmt: skip
    return {
        "ca": d / "ca.crt",
        "other-ca": d / "other-ca.crt",
        "server": d / "server.crt",
        "server_key": d / "server.key",
    }


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, tls_files: dict[str, Path]) -> Iterator[dict]:
    """A redis-server with TLS on its own port (the plain port is how the fixture sees it up)."""
    tls_port = free_loopback_port()
    server = start_redis(
        tmp_path_factory,
        "--tls-port", str(tls_port),
        "--tls-cert-file", str(tls_files["server"]),
        "--tls-key-file", str(tls_files["server_key"]),
        "--tls-ca-cert-file", str(tls_files["ca"]),
        "--tls-auth-clients", "no",
    )  # fmt: skip
    try:
        server.client().xadd(STREAM, {"decision": "BUY"})
        yield {"host": "127.0.0.1", "port": tls_port, "tls": True}
    finally:
        server.stop()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        yield sock.getsockname()[1]


@pytest.fixture(scope="module")
def python_without_redis(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python with the standard library only: a target where redis-py was never installed."""
    venv = tmp_path_factory.mktemp("bare-python")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    probe = subprocess.run([str(python), "-c", "import redis"], capture_output=True)
    assert probe.returncode != 0, "the bare venv can import redis: the test would prove nothing"
    return python


# --- failures, one sentence each -------------------------------------------------------------


def test_redis_py_missing_on_the_target_names_the_package(python_without_redis, redis_server):
    result = run_ansible_module(
        "redis_stream_info",
        {"connection": redis_server.connection, "streams": [{"stream": STREAM}]},
        expect_failure=None,
        interpreter=python_without_redis,
    )
    assert result.get("failed") is True
    assert "Failed to import the required Python library (redis (Debian: python3-redis; pip: redis))" in (
        result["msg"]
    )
    assert str(python_without_redis) in result["msg"]


def test_connection_refused(redis_client):
    port = free_loopback_port()  # nothing listens on it
    result = stream_info({"host": "127.0.0.1", "port": port})
    assert result["msg"].startswith(f"Cannot connect to Redis at 127.0.0.1:{port} (")
    assert "Connection refused" in result["msg"]
    assert result["msg"].endswith(
        "check connection.host, connection.port or connection.unix_socket, and that Redis is running."
    )


@pytest.mark.parametrize("password", ["wrong-password", None])
def test_authentication_failure_never_shows_the_password(auth_server, password):
    connection = {**auth_server.connection, "password": password}
    result = stream_info(connection)
    assert result["msg"] == (
        f"Redis at 127.0.0.1:{auth_server.port} refused authentication: "
        "check connection.username and connection.password."
    )
    assert "wrong-password" not in json.dumps(result)


def test_right_password_works_and_is_never_shown(auth_server):
    auth_server.client(password=PASSWORD).xadd(STREAM, {"decision": "BUY"})
    result = stream_info({**auth_server.connection, "password": PASSWORD}, expect_failure=False)
    assert result["streams"][STREAM]["length"] == 1
    assert PASSWORD not in json.dumps(result)


def test_wrong_password_in_pipeline_redis_is_masked_too(auth_server):
    """pipeline.redis is not the `connection` option: its password must be masked all the same."""
    auth_server.client(password=PASSWORD).xadd(STREAM, {"decision": "BUY"})
    pipeline = {
        "name": "t",
        "redis": {**auth_server.connection, "password": PASSWORD + "-stale"},
        "stages": [{"name": "ai_engine", "unit": "u", "output_stream": STREAM}],
    }
    result = run_ansible_module("redis_stream_info", {"pipeline": pipeline}, expect_failure=True)
    assert "refused authentication" in result["msg"]
    assert PASSWORD not in json.dumps(result)
    pipeline["redis"]["password"] = PASSWORD
    result = run_ansible_module("redis_stream_info", {"pipeline": pipeline})
    assert result["streams"][STREAM]["exists"] is True
    assert PASSWORD not in json.dumps(result)


def test_pipeline_redis_password_is_masked_when_connection_wins(redis_server, redis_client):
    redis_client.xadd(STREAM, {"decision": "BUY"})
    pipeline = {
        "redis": {"host": "127.0.0.1", "port": 1, "password": PASSWORD},
        "stages": [{"name": "ai_engine", "unit": "u", "output_stream": STREAM}],
    }
    result = run_ansible_module(
        "redis_stream_info", {"connection": redis_server.connection, "pipeline": pipeline}
    )
    assert result["streams"][STREAM]["length"] == 1
    assert PASSWORD not in json.dumps(result)


def test_invalid_pipeline_redis_fails_with_a_sentence(redis_server):
    pipeline = {"redis": {"host": "127.0.0.1", "port": "not-a-port"}, "stages": [{"output_stream": STREAM}]}
    result = run_ansible_module("redis_stream_info", {"pipeline": pipeline}, expect_failure=True)
    assert result["msg"].startswith("pipeline.redis is not a valid connection: ")
    assert "port" in result["msg"]


def test_tls_against_a_plain_text_server(redis_server):
    # The plain-text server waits for a line the TLS ClientHello never ends: the handshake
    # runs into socket_timeout (redis-py applies it, not connect_timeout, to the handshake).
    result = stream_info({**redis_server.connection, "tls": True, "socket_timeout": 1})
    assert result["msg"].startswith(f"TLS handshake with Redis at 127.0.0.1:{redis_server.port} failed (")
    assert "check that the server speaks TLS on this port" in result["msg"]


def test_tls_with_the_wrong_ca(tls_server, tls_files):
    result = stream_info({**tls_server, "tls_ca_file": str(tls_files["other-ca"])})
    assert result["msg"].startswith(f"TLS handshake with Redis at 127.0.0.1:{tls_server['port']} failed (")
    assert "certificate verify failed" in result["msg"]


def test_tls_with_the_right_ca_or_without_verification(tls_server, tls_files):
    verified = stream_info({**tls_server, "tls_ca_file": str(tls_files["ca"])}, expect_failure=False)
    assert verified["streams"][STREAM]["length"] == 1
    unverified = stream_info({**tls_server, "tls_verify": False}, expect_failure=False)
    assert unverified["streams"][STREAM]["length"] == 1


def test_unix_socket(tmp_path_factory):
    path = Path(tmp_path_factory.mktemp("sock"), "redis.sock")
    server = start_redis(tmp_path_factory, "--unixsocket", str(path), "--unixsocketperm", "700")
    try:
        server.client().xadd(STREAM, {"decision": "BUY"})
        result = stream_info({"unix_socket": str(path)}, expect_failure=False)
        assert result["streams"][STREAM]["length"] == 1
    finally:
        server.stop()
    result = stream_info({"unix_socket": str(path)})
    assert result["msg"].startswith(f"Cannot connect to Redis at unix socket {path} (")


def test_timeout_on_a_server_that_never_answers(silent_port):
    connection = {"host": "127.0.0.1", "port": silent_port, "connect_timeout": 1, "socket_timeout": 0.5}
    result = stream_info(connection)
    assert result["msg"].startswith(f"Redis at 127.0.0.1:{silent_port} did not answer in time (")
    assert result["msg"].endswith("raise connection.connect_timeout / connection.socket_timeout.")


@pytest.mark.parametrize(
    ("connection", "sentence"),
    [
        (
            {"unix_socket": "/run/redis/redis.sock", "tls": True},
            "connection.unix_socket and connection.tls cannot be used together: TLS is for TCP connections.",
        ),
        ({"username": "router"}, "connection.username needs connection.password."),
        (
            {"tls": True, "tls_cert_file": "/etc/hostname"},
            "connection.tls_cert_file and connection.tls_key_file must be given together.",
        ),
        (
            {"tls_ca_file": "/etc/hostname"},
            "connection.tls_ca_file, tls_cert_file and tls_key_file need connection.tls: true.",
        ),
        (
            {"tls": True, "tls_ca_file": "/nonexistent/ca.pem"},
            "connection.tls_ca_file /nonexistent/ca.pem does not exist or is not readable on the target.",
        ),
        ({"port": 70000}, "connection.port must be between 1 and 65535, got 70000."),
        ({"connect_timeout": 0}, "connection.connect_timeout must be a positive number of seconds, got 0.0."),
    ],
)
def test_contradictory_options(connection, sentence):
    assert stream_info(connection)["msg"] == sentence


# --- direct calls ----------------------------------------------------------------------------


class FailJson(Exception):
    pass


class FakeModule:
    """Just enough of AnsibleModule for redis_client()."""

    def __init__(self, connection: dict) -> None:
        full = {name: spec.get("default") for name, spec in rc.CONNECTION_SUBOPTIONS.items()}
        self.params = {"connection": {**full, **connection}}
        self.no_log_values: set[str] = set()

    def fail_json(self, msg: str, **kwargs) -> None:
        raise FailJson(msg)


def test_a_timeout_is_not_retried(silent_port):
    """redis-py 8 retries 3 times with backoff by default: a 0.5 s timeout took 12 s."""
    module = FakeModule({"port": silent_port, "socket_timeout": 0.5})
    started = time.monotonic()
    with pytest.raises(FailJson, match="did not answer in time"):
        rc.redis_client(module)
    assert time.monotonic() - started < 3


def test_redis_client_returns_a_working_client(redis_server, redis_client):
    client = rc.redis_client(FakeModule(redis_server.connection))
    assert client.ping() is True


def test_explain_never_repeats_the_password():
    exc = redis.exceptions.ResponseError(f"ERR something echoed {PASSWORD} back")
    sentence = rc.explain_redis_error(exc, {"host": "h", "port": 1, "password": PASSWORD}, "reading")
    assert PASSWORD not in sentence
    assert sentence == "Redis at h:1 failed while reading: ResponseError: ERR something echoed ******** back."


def test_explain_wrong_type_and_missing_group():
    connection = {"host": "h", "port": 1}
    wrongtype = redis.exceptions.ResponseError(
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    )
    assert rc.explain_redis_error(wrongtype, connection, "reclaiming") == (
        "A key has the wrong type while reclaiming: "
        "WRONGTYPE Operation against a key holding the wrong kind of value."
    )
    nogroup = redis.exceptions.ResponseError("NOGROUP No such key 's' or consumer group 'g'")
    assert rc.explain_redis_error(nogroup, connection) == (
        "The consumer group does not exist: NOGROUP No such key 's' or consumer group 'g'."
    )


def test_validate_connection_fills_defaults_and_masks_the_password():
    module = FakeModule({})
    validated = rc.validate_connection(module, {"port": 6390, "password": PASSWORD}, "pipeline.redis")
    assert validated["host"] == "127.0.0.1"
    assert validated["port"] == 6390
    assert validated["socket_timeout"] == 10.0
    assert PASSWORD in module.no_log_values


def test_without_sentinel_no_role_is_sent(redis_client):
    """The fence asks ROLE only with connection.sentinel: a reclaim without it sends none (the
    minimal ACL of docs/acl.md has no +role; tests/test_acl.py covers every module)."""
    from reclaim_support import run_module_main

    redis_client.xadd(STREAM, {"n": 1})
    redis_client.xgroup_create(STREAM, "router", id="0")
    redis_client.xreadgroup("router", "router-0", {STREAM: ">"})
    # Idle past the module's guard (a consumer read a few ms ago counts as active, left alone).
    time.sleep(0.05)
    redis_client.config_resetstat()
    connection = {"host": redis_client.connection_pool.connection_kwargs["host"],
                  "port": redis_client.connection_pool.connection_kwargs["port"]}  # fmt: skip
    result = run_module_main(
        "redis_stream_reclaim",
        {"connection": connection, "stream": STREAM, "group": "router", "consumers": ["router-0"],
         "claim_to": "router-1", "retire": True},
    )  # fmt: skip
    assert result["totals"]["moved"] == 1, result["consumers"]["router-0"]["skipped_reason"]
    assert result["endpoint"] == f"{connection['host']}:{connection['port']}"
    assert "cmdstat_role" not in redis_client.info("commandstats")


def test_validate_connection_masks_the_sentinel_password():
    module = FakeModule({})
    raw = {"sentinel": {"hosts": ["127.0.0.1:26379"], "service_name": "s", "password": PASSWORD}}
    validated = rc.validate_connection(module, raw, "pipeline.redis")
    assert validated["sentinel"]["service_name"] == "s" and PASSWORD in module.no_log_values
    assert rc.connection_problem(validated) is None


def _reclaim_one_entry(redis_client, setting: str, value: str) -> tuple[dict, list, list]:
    """router-0 holds one entry; with `setting` set to `value`, a reclaim to router-1:
    (result, PEL before, PEL after)."""
    from reclaim_support import run_module_main

    redis_client.xadd(STREAM, {"n": 1})
    redis_client.xgroup_create(STREAM, "router", id="0")
    redis_client.xreadgroup("router", "router-0", {STREAM: ">"})
    time.sleep(0.05)  # idle past the module's guard against a consumer that just read
    before = redis_client.xpending_range(STREAM, "router", "-", "+", 10)
    connection = {"host": redis_client.connection_pool.connection_kwargs["host"],
                  "port": redis_client.connection_pool.connection_kwargs["port"]}  # fmt: skip
    redis_client.config_set(setting, value)
    try:
        result = run_module_main(
            "redis_stream_reclaim",
            {"connection": connection, "stream": STREAM, "group": "router", "consumers": ["router-0"],
             "claim_to": "router-1", "retire": True},
        )  # fmt: skip
    finally:
        redis_client.config_set(setting, "0")
    after = redis_client.xpending_range(STREAM, "router", "-", "+", 10)
    return result, before, after


def test_a_write_refused_for_want_of_replicas_is_one_sentence_and_changes_nothing(redis_client):
    """NOREPLICAS: a primary with fewer replicas than min-replicas-to-write refuses the
    reclaim's first write; one sentence naming the cause, and the PEL as it was."""
    result, before, after = _reclaim_one_entry(redis_client, "min-replicas-to-write", "1")
    assert result.get("failed"), result
    assert "fewer good replicas are connected than its min-replicas-to-write" in result["msg"]
    assert "\n" not in result["msg"] and result["totals"]["moved"] == 0
    owners = [(e["message_id"], e["consumer"]) for e in after]
    assert owners == [(e["message_id"], e["consumer"]) for e in before]
    assert [owner for _, owner in owners] == ["router-0"]


def test_a_reclaim_still_works_at_maxmemory(redis_client):
    """Moving and retiring add no data (XCLAIM, XGROUP DELCONSUMER are not refused at
    maxmemory): a Redis out of memory can still be healed."""
    result, _before, after = _reclaim_one_entry(redis_client, "maxmemory", "1")
    assert not result.get("failed"), result["msg"]
    assert result["totals"]["moved"] == 1 and [e["consumer"] for e in after] == ["router-1"]
