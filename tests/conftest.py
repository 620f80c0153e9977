"""Shared fixtures: a real redis-server on a free loopback port, and a way to run our
modules through the real `ansible` command (not only imported)."""

from __future__ import annotations

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
from project_files import PROJECT_ROOT, load_project_file  # noqa: F401 - shared by the tests


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
        redis_server = shutil.which("redis-server") or "/usr/bin/redis-server"
        args = [
            redis_server,
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

    def stop(self) -> None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
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
    """Run one of our modules through the real `ansible` ad-hoc command on localhost and
    return its result as a dict (via the json stdout callback). `interpreter` is the target's
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
        "-m", module,
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
