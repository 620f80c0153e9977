# -*- coding: utf-8 -*-
# Shared by every module of this project that talks to Redis: the `connection` option in
# one place, client creation, and failures turned into one clear sentence each.
from __future__ import annotations

import traceback
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    import redis
    from redis import exceptions as redis_exceptions

    REDIS_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised on targets without redis-py
    redis = None
    redis_exceptions = None
    REDIS_IMPORT_ERROR = traceback.format_exc()

# Documentation fragment text lives in each module (no collection to hold a doc fragment);
# this spec is the single source of the option's shape.
CONNECTION_SUBOPTIONS: dict[str, dict[str, Any]] = {
    "host": {"type": "str", "default": "127.0.0.1"},
    "port": {"type": "int", "default": 6379},
    "unix_socket": {"type": "path"},
    "db": {"type": "int", "default": 0},
    "username": {"type": "str"},
    "password": {"type": "str", "no_log": True},
    "tls": {"type": "bool", "default": False},
    "tls_ca_file": {"type": "path"},
    "tls_cert_file": {"type": "path"},
    "tls_key_file": {"type": "path"},
    "tls_verify": {"type": "bool", "default": True},
    "connect_timeout": {"type": "float", "default": 5.0},
    "socket_timeout": {"type": "float", "default": 10.0},
}

def connection_argument_spec() -> dict[str, dict[str, Any]]:
    """A fresh copy of the shared spec, for a module to extend with its own options."""
    return {
        "connection": {
            "type": "dict",
            "default": {},
            "options": {name: dict(spec) for name, spec in CONNECTION_SUBOPTIONS.items()},
        },
    }


def describe_endpoint(connection: dict[str, Any]) -> str:
    if connection.get("unix_socket"):
        return f"unix socket {connection['unix_socket']}"
    return f"{connection['host']}:{connection['port']}"


def connection_problem(connection: dict[str, Any]) -> str | None:
    """Contradictory or incomplete connection options, as a sentence, or None."""
    if connection.get("unix_socket") and connection.get("tls"):
        return "connection.unix_socket and connection.tls cannot be used together: TLS is for TCP connections."
    if bool(connection.get("tls_cert_file")) != bool(connection.get("tls_key_file")):
        return "connection.tls_cert_file and connection.tls_key_file must be given together."
    tls_files = ("tls_ca_file", "tls_cert_file", "tls_key_file")
    if not connection.get("tls") and any(connection.get(name) for name in tls_files):
        return "connection.tls_ca_file, tls_cert_file and tls_key_file need connection.tls: true."
    if connection.get("username") and not connection.get("password"):
        return "connection.username needs connection.password."
    port = connection.get("port")
    if not connection.get("unix_socket") and (port is None or not 0 < port < 65536):
        return f"connection.port must be between 1 and 65535, got {port}."
    for name in ("connect_timeout", "socket_timeout"):
        if connection.get(name) is not None and connection[name] <= 0:
            return f"connection.{name} must be a positive number of seconds, got {connection[name]}."
    return None


def redis_client(module: AnsibleModule) -> Any:
    """A connected, pinged redis-py client, or the module fails with one sentence."""
    if REDIS_IMPORT_ERROR is not None:
        module.fail_json(
            msg=missing_required_lib("redis (Debian: python3-redis; pip: redis)"),
            exception=REDIS_IMPORT_ERROR,
        )
    connection: dict[str, Any] = module.params["connection"]
    problem = connection_problem(connection)
    if problem:
        module.fail_json(msg=problem)

    kwargs: dict[str, Any] = {
        "db": connection["db"],
        "username": connection.get("username"),
        "password": connection.get("password"),
        "socket_connect_timeout": connection["connect_timeout"],
        "socket_timeout": connection["socket_timeout"],
        "decode_responses": True,
    }
    if connection.get("unix_socket"):
        kwargs["unix_socket_path"] = connection["unix_socket"]
    else:
        kwargs.update(host=connection["host"], port=connection["port"])
        if connection.get("tls"):
            kwargs.update(
                ssl=True,
                ssl_ca_certs=connection.get("tls_ca_file"),
                ssl_certfile=connection.get("tls_cert_file"),
                ssl_keyfile=connection.get("tls_key_file"),
                ssl_cert_reqs="required" if connection["tls_verify"] else "none",
                ssl_check_hostname=bool(connection["tls_verify"]),
            )
    client = redis.Redis(**kwargs)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001 - every failure becomes one sentence
        module.fail_json(msg=explain_redis_error(exc, connection))
    return client


def explain_redis_error(exc: BaseException, connection: dict[str, Any], context: str = "") -> str:
    """One sentence for a redis-py failure, naming the option to look at. Never includes
    the password."""
    endpoint = describe_endpoint(connection)
    where = f" while {context}" if context else ""
    text = str(exc)
    if redis_exceptions is not None:
        if isinstance(exc, redis_exceptions.AuthenticationError) or "WRONGPASS" in text or "NOAUTH" in text:
            return (
                f"Redis at {endpoint} refused authentication{where}: "
                "check connection.username and connection.password."
            )
        if isinstance(exc, redis_exceptions.TimeoutError):
            return (
                f"Redis at {endpoint} did not answer in time{where}: "
                "check that it is up, or raise connection.connect_timeout / connection.socket_timeout."
            )
        if isinstance(exc, redis_exceptions.ConnectionError):
            lowered = text.lower()
            if "ssl" in lowered or "tls" in lowered or "certificate" in lowered:
                return (
                    f"TLS handshake with Redis at {endpoint} failed{where} ({text}): "
                    "check connection.tls, connection.tls_ca_file and connection.tls_verify."
                )
            return (
                f"Cannot connect to Redis at {endpoint}{where} ({text}): "
                "check connection.host, connection.port or connection.unix_socket, and that Redis is running."
            )
        if isinstance(exc, redis_exceptions.ResponseError):
            if text.startswith("WRONGTYPE"):
                return f"A key has the wrong type{where}: {text}."
            if text.startswith("NOGROUP"):
                return f"The consumer group does not exist{where}: {text}."
            if text.startswith("NOPERM"):
                return f"The Redis user lacks a permission{where}: {text}; check connection.username's ACL."
    return f"Redis at {endpoint} failed{where}: {type(exc).__name__}: {text}"
