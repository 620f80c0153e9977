"""The lab's one source of data, shared by the stubs (stub.py) and qt-lab (qt_lab.py).

/etc/quantum/lab-pipeline.json, written by `qt-lab configure --pipeline FILE`, holds
  {"pipeline": <the inventory's `pipeline`, same schema>,
   "lab": {"rate", "daily_limit", "requirepass", "services_user", "acl_users": [...]}}
(lab/pipeline_json.py builds it from an inventory; lab/README.md describes the lab section).
Everything the stubs and qt-lab know about the pipeline comes from here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis
from redis.sentinel import Sentinel

LAB_PIPELINE = Path("/etc/quantum/lab-pipeline.json")
DEFAULT_RATE = 2.0
DEFAULT_DAILY_LIMIT = 200


class LabDataError(Exception):
    """The lab data is missing or unusable: one sentence naming the problem."""


def load(path: Path = LAB_PIPELINE) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise LabDataError(f"the lab is not configured ({path} missing): run "
                           "`qt-lab configure --pipeline FILE --redis-port N`.") from exc
    except (OSError, ValueError) as exc:
        raise LabDataError(f"{path} is not readable JSON ({exc}).") from exc
    if not isinstance(data, dict) or not isinstance(data.get("pipeline"), dict):
        raise LabDataError(f"{path} must be a JSON object with a `pipeline` object.")
    data.setdefault("lab", {})
    return data


def stage_of(data: dict[str, Any], name: str) -> dict[str, Any]:
    for stage in data["pipeline"].get("stages", []):
        if stage.get("name") == name:
            return stage
    names = ", ".join(str(s.get("name")) for s in data["pipeline"].get("stages", []))
    raise LabDataError(f"unknown stage {name!r}: one of {names}.")


def credentials(data: dict[str, Any], who: str) -> tuple[str | None, str | None]:
    """(username, password) a lab client connects with. `services`: the stubs, as
    lab.services_user (one of lab.acl_users) or else the default user; `admin`: qt-lab and the
    Molecule helpers, always the default user (FLUSHDB, ACL LOG), with lab.requirepass."""
    lab = data.get("lab") or {}
    if who == "services" and lab.get("services_user"):
        for user in lab.get("acl_users") or []:
            if user.get("username") == lab["services_user"]:
                return user["username"], user.get("password")
        raise LabDataError(f"lab.services_user {lab['services_user']!r} is not one of lab.acl_users.")
    return None, lab.get("requirepass") or None


def sentinel_address(address: Any) -> tuple[str, int]:
    """("host", port) of one pipeline.redis.sentinel.hosts entry: "host:port" (the project's
    form, see docs/interfaces.md) or {host, port}."""
    if isinstance(address, dict):
        return str(address["host"]), int(address["port"])
    host, _, port = str(address).rpartition(":")
    return host.strip("[]"), int(port)


def connect(data: dict[str, Any], who: str = "services", **options: Any) -> redis.Redis:
    """The one place a lab client is built. With pipeline.redis.sentinel the client is
    Sentinel(...).master_for(service_name): every new connection asks the sentinels for the
    primary, and a READONLY reply (a demoted primary) drops the connection, so a caller that
    retries after a ConnectionError follows a failover."""
    conn = data["pipeline"].get("redis") or {}
    username, password = credentials(data, who)
    kwargs: dict[str, Any] = {
        "username": username,
        "password": password,
        "db": int(conn.get("db") or 0),
        "decode_responses": True,
        "socket_connect_timeout": 2,
        "socket_timeout": 10,
        **options,
    }
    sentinel = conn.get("sentinel")
    if sentinel:
        hosts = [sentinel_address(a) for a in sentinel.get("hosts") or []]
        sentinel_kwargs = {"socket_connect_timeout": 2, "socket_timeout": 2}
        if sentinel.get("password"):
            sentinel_kwargs.update(username=sentinel.get("username"), password=sentinel["password"])
        return Sentinel(hosts, sentinel_kwargs=sentinel_kwargs, **kwargs).master_for(
            sentinel["service_name"])
    return redis.Redis(host=str(conn.get("host") or "127.0.0.1"), port=int(conn.get("port") or 6379),
                       **kwargs)


def endpoint(data: dict[str, Any]) -> str:
    conn = data["pipeline"].get("redis") or {}
    sentinel = conn.get("sentinel")
    if sentinel:
        hosts = ", ".join(f"{h}:{p}" for h, p in map(sentinel_address, sentinel.get("hosts") or []))
        return f"the primary of Sentinel service {sentinel.get('service_name')} ({hosts})"
    return f"{conn.get('host') or '127.0.0.1'}:{conn.get('port') or 6379}"


def read_mode(data: dict[str, Any]) -> str | None:
    """The value of pipeline.mode_variable in pipeline.mode_file (last assignment), None if none."""
    pipeline = data["pipeline"]
    value = None
    try:
        text = Path(pipeline["mode_file"]).read_text()
    except (OSError, KeyError):
        return None
    for line in text.splitlines():
        key, sep, rest = line.strip().partition("=")
        if sep and key.strip() == pipeline.get("mode_variable"):
            value = rest.strip().strip('"')
    return value
