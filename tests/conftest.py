"""Shared fixtures: a real redis-server on a free loopback port, and a way to run our
modules through the real `ansible` command (not only imported).

The server binary is `QT_REDIS_SERVER` (a path) when set, else `redis-server` on PATH (Debian
12's 7.0.15): scripts/run-pytest.sh runs the suite once per server of the matrix
(docs/server-versions.md). Tests whose expectation depends on the server ask the running
server (`server_version`, `has_inactive`), never assume 7.0."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from project_files import COLLECTION, PROJECT_ROOT, collection_module, collection_util, load_project_file  # noqa: F401 - shared by the tests


def redis_server_binary() -> str:
    """The redis-server every fixture of this session starts."""
    configured = os.environ.get("QT_REDIS_SERVER", "").strip()
    if configured:
        return configured
    return shutil.which("redis-server") or "/usr/bin/redis-server"


def redis_server_banner(binary: str) -> str:
    """What the binary says it is (`redis-server --version`), for the session's header."""
    try:
        proc = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    except OSError as exc:
        return f"cannot run {binary}: {exc}"
    return (proc.stdout or proc.stderr).strip() or f"{binary} --version said nothing (rc={proc.returncode})"


def pytest_configure(config: pytest.Config) -> None:
    binary = redis_server_binary()
    if os.environ.get("QT_REDIS_SERVER", "").strip() and not (
        os.path.isfile(binary) and os.access(binary, os.X_OK)
    ):
        raise pytest.UsageError(f"QT_REDIS_SERVER={binary} is not an executable file.")
    config.addinivalue_line(
        "markers", "server: starts or talks to a real redis-server (selected on every server of the matrix)"
    )
    config.addinivalue_line(
        "markers",
        "controller: tests the controller's side (ansible-runner, ansible-rulebook); its redis-server is "
        "incidental, so it runs on the first server of the matrix only (never marked `server`)",
    )


# Fixtures that are a server of this session: a test using one (directly or through another
# fixture) touches the server.
SERVER_FIXTURES = frozenset({"redis_server", "redis_client"})
_current_item: pytest.Item | None = None


def _starts_a_server(function: object) -> bool:
    try:
        return "start_redis(" in inspect.getsource(function)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark `server` every test that starts or talks to a redis-server: the one thing that
    differs between the passes of the server matrix (`-m server` selects them)."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        touches = bool(names & SERVER_FIXTURES) or _starts_a_server(getattr(item, "function", None))
        fixture_info = getattr(item, "_fixtureinfo", None)
        if not touches and fixture_info is not None:
            touches = any(
                _starts_a_server(fixturedef.func)
                for name in names
                for fixturedef in fixture_info.name2fixturedefs.get(name, ())
            )
        if touches and item.get_closest_marker("controller") is None:
            item.add_marker(pytest.mark.server)


def pytest_runtest_setup(item: pytest.Item) -> None:
    global _current_item
    _current_item = item


def pytest_runtest_teardown(item: pytest.Item) -> None:
    global _current_item
    _current_item = None


def pytest_report_header(config: pytest.Config) -> list[str]:
    binary = redis_server_binary()
    return [f"redis-server under test: {binary} ({redis_server_banner(binary)})"]


def pytest_sessionstart(session: pytest.Session) -> None:
    # The header is hidden by -q: say it on a line of its own as well, whatever the verbosity.
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and reporter.verbosity < 0:
        reporter.write_line(pytest_report_header(session.config)[0])


def server_version(client: redis.Redis) -> tuple[int, int, int]:
    """The Redis protocol version the server reports (`redis_version`: Valkey 8.1 reports 7.2.4,
    the Redis version whose behaviour it keeps)."""
    major, minor, patch = [*client.info("server")["redis_version"].split("."), "0", "0"][:3]
    return int(major), int(minor), int(patch)


def has_inactive(client: redis.Redis) -> bool:
    """XINFO CONSUMERS reports `inactive` (the time since the last successful read) from 7.2."""
    return server_version(client) >= (7, 2, 0)


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RedisServer:
    """A redis-server this test session started; stopped by the PID in its pidfile."""

    host: str
    port: int
    workdir: Path
    pidfile: Path
    extra_args: tuple[str, ...] = ()

    @property
    def connection(self) -> dict:
        """The module's `connection` option for this server."""
        return {"host": self.host, "port": self.port}

    def client(self, **kwargs) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, decode_responses=True, **kwargs)

    def start(self) -> None:
        marked = _current_item is None or any(
            _current_item.get_closest_marker(marker) is not None for marker in ("server", "controller")
        )
        if not marked:
            # The matrix's extra passes select `-m server`: a test starting a server unmarked
            # would silently never run on them (a `controller` test runs on the first pass only,
            # by choice).
            raise AssertionError(
                f"{_current_item.nodeid} starts a redis-server but is not marked `server`: use the "
                "redis_server fixture, call start_redis() in the test or a fixture, or mark it."
            )
        args = [
            redis_server_binary(),
            "--bind", self.host,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--pidfile", str(self.pidfile),
            "--daemonize", "yes",
            "--logfile", str(self.workdir / "redis.log"),
            *self.extra_args,
        ]
        subprocess.run(args, check=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client(password=self._password()).ping():
                    return
            except redis.exceptions.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on {self.host}:{self.port} did not answer within 10 s")

    def _password(self) -> str | None:
        if "--requirepass" in self.extra_args:
            return self.extra_args[self.extra_args.index("--requirepass") + 1]
        return None

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop the server by its pidfile's PID and wait until it is gone (SIGKILL after 10 s);
        `sig=signal.SIGKILL` is a crash rather than a shutdown (the chaos tests)."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)


def start_redis(tmp_path_factory: pytest.TempPathFactory, *extra_args: str) -> RedisServer:
    workdir = tmp_path_factory.mktemp("redis")
    server = RedisServer(
        host="127.0.0.1",
        port=free_loopback_port(),
        workdir=workdir,
        pidfile=workdir / "redis.pid",
        extra_args=tuple(extra_args),
    )
    server.start()
    return server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client on a freshly emptied database of the session's server."""
    client = redis_server.client()
    client.flushall()
    yield client
    client.close()


def run_ansible_module(
    module: str,
    args: dict,
    *,
    check: bool = False,
    diff: bool = False,
    expect_failure: bool | None = False,
    interpreter: Path | None = None,
) -> dict:
    """Run a module of the collection (by its short name) through the real `ansible` ad-hoc
    command on localhost, by its FQCN, and return its result as a dict (via the json stdout
    callback). `interpreter` is the target's
    Python (default: this one); `expect_failure=None` checks nothing."""
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(PROJECT_ROOT / "ansible.cfg"),
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_PYTHON_INTERPRETER=str(interpreter or Path(sys.executable)),
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
    )
    cmd = [
        str(Path(sys.executable).parent / "ansible"),
        "localhost",
        "-i", "localhost,",
        "-c", "local",
        "-m", f"{COLLECTION}.{module}",
        "-a", json.dumps(args),
    ]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    try:
        output = json.loads(proc.stdout)
        result = output["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError) as exc:
        raise AssertionError(
            f"unparseable ansible output (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        ) from exc
    if expect_failure is None:
        return result
    failed = bool(result.get("failed"))
    assert failed == expect_failure, f"expected failed={expect_failure}, got: {json.dumps(result, indent=2)}"
    return result


def dump_redis(client: redis.Redis) -> dict:
    """Every key with its type and full contents, and every stream's groups, consumers and
    PELs: two equal dumps mean nothing changed."""
    dump: dict = {}
    for key in sorted(client.scan_iter(count=1000)):
        kind = client.type(key)
        if kind == "stream":
            groups = {}
            for group in client.xinfo_groups(key):
                name = group["name"]
                consumers = {c["name"]: c["pending"] for c in client.xinfo_consumers(key, name)}
                pel = client.xpending_range(key, name, "-", "+", 10**7)
                groups[name] = {
                    "last-delivered-id": group["last-delivered-id"],
                    "entries-read": group.get("entries-read"),
                    "consumers": consumers,
                    "pel": [(p["message_id"], p["consumer"], p["times_delivered"]) for p in pel],
                }
            dump[key] = {"type": kind, "entries": client.xrange(key), "groups": groups}
        elif kind == "hash":
            dump[key] = {"type": kind, "value": client.hgetall(key)}
        elif kind == "string":
            dump[key] = {"type": kind, "value": client.get(key)}
        elif kind == "list":
            dump[key] = {"type": kind, "value": client.lrange(key, 0, -1)}
        elif kind == "set":
            dump[key] = {"type": kind, "value": sorted(client.smembers(key))}
        elif kind == "zset":
            dump[key] = {"type": kind, "value": client.zrange(key, 0, -1, withscores=True)}
        else:
            dump[key] = {"type": kind}
    return dump
