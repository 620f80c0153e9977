# Shared by every module of this project that talks to Redis: the `connection` option in
# one place, client creation, and failures turned into one clear sentence each.
from __future__ import annotations

import hashlib
import os
import re
import traceback
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

try:
    import redis
    from redis import exceptions as redis_exceptions
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    from redis.sentinel import MasterNotFoundError, Sentinel

    REDIS_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised on targets without redis-py
    redis = None
    redis_exceptions = None
    REDIS_IMPORT_ERROR = traceback.format_exc()

# The package a target needs, named the way an operator installs it.
REDIS_LIBRARY = "redis (Debian: python3-redis; pip: redis)"

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
    # The primary found through Sentinel instead of host/port (see sentinel_primary()).
    "sentinel": {
        "type": "dict",
        "options": {
            "hosts": {"type": "list", "elements": "str"},
            "service_name": {"type": "str"},
            "username": {"type": "str"},
            "password": {"type": "str", "no_log": True},
        },
    },
}

_TLS_FILES = ("tls_ca_file", "tls_cert_file", "tls_key_file")


def connection_argument_spec() -> dict[str, dict[str, Any]]:
    """A fresh copy of the shared spec, for a module to extend with its own options."""
    return {
        "connection": {
            "type": "dict",
            "default": {},
            "options": {name: dict(spec) for name, spec in CONNECTION_SUBOPTIONS.items()},
        },
    }


def validate_connection(module: AnsibleModule, raw: dict[str, Any] | None, source: str) -> dict[str, Any]:
    """Validate a connection dict that did not arrive as the `connection` option (e.g. the
    inventory's `pipeline.redis`) exactly as if it had: defaults filled in, types checked,
    and the password registered as a no_log value so it is masked in every result."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        kind = type(raw).__name__
        module.fail_json(msg=f"{source} must be a dictionary of connection options, got a {kind}.")
    spec = {name: dict(option) for name, option in CONNECTION_SUBOPTIONS.items()}
    # Masked before any failure can echo the value back.
    if raw.get("password"):
        module.no_log_values.add(str(raw["password"]))
    sentinel = raw.get("sentinel")
    if isinstance(sentinel, dict) and sentinel.get("password"):
        module.no_log_values.add(str(sentinel["password"]))
    result = ArgumentSpecValidator(spec).validate(raw)
    if result.error_messages:
        module.fail_json(msg=f"{source} is not a valid connection: {'; '.join(result.error_messages)}.")
    return result.validated_parameters


def describe_endpoint(connection: dict[str, Any]) -> str:
    sentinel = connection.get("sentinel")
    if sentinel:
        # redis_client() has put the primary's address in host and port.
        primary = f"{connection['host']}:{connection['port']}"
        return f"primary {primary} of Sentinel service {sentinel['service_name']}"
    if connection.get("unix_socket"):
        return f"unix socket {connection['unix_socket']}"
    return f"{connection['host']}:{connection['port']}"


def _host_port(address: str) -> tuple[str, int] | None:
    """("host", port) of a "host:port" string ("[::1]:26379" for IPv6), None when it is not one."""
    host, sep, port = str(address).rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def sentinel_problem(connection: dict[str, Any]) -> str | None:
    """The first thing wrong with connection.sentinel, as one sentence naming the option."""
    sentinel = connection.get("sentinel")
    if sentinel is None:
        return None
    if connection.get("unix_socket"):
        return (
            "connection.sentinel and connection.unix_socket cannot be used together: the sentinels "
            "name the primary by host and port."
        )
    if connection.get("tls"):
        return "connection.sentinel cannot be used with connection.tls: sentinels are reached without TLS."
    hosts = sentinel.get("hosts")
    if not hosts:
        return 'connection.sentinel.hosts is required: the sentinels as a list of "host:port" strings.'
    for address in hosts:
        if _host_port(address) is None:
            return (
                f'connection.sentinel.hosts must hold "host:port" strings with a port between 1 and '
                f"65535, got {address!r}."
            )
    if not sentinel.get("service_name"):
        return "connection.sentinel.service_name is required: the name the sentinels monitor the primary by."
    if sentinel.get("username") and not sentinel.get("password"):
        return "connection.sentinel.username needs connection.sentinel.password."
    return None


def connection_problem(connection: dict[str, Any]) -> str | None:
    """Contradictory or incomplete connection options, as a sentence, or None."""
    problem = sentinel_problem(connection)
    if problem:
        return problem
    if connection.get("unix_socket") and connection.get("tls"):
        return (
            "connection.unix_socket and connection.tls cannot be used together: TLS is for TCP connections."
        )
    if bool(connection.get("tls_cert_file")) != bool(connection.get("tls_key_file")):
        return "connection.tls_cert_file and connection.tls_key_file must be given together."
    if not connection.get("tls") and any(connection.get(name) for name in _TLS_FILES):
        return "connection.tls_ca_file, tls_cert_file and tls_key_file need connection.tls: true."
    if connection.get("username") and not connection.get("password"):
        return "connection.username needs connection.password."
    port = connection.get("port")
    if not connection.get("unix_socket") and (port is None or not 0 < port < 65536):
        return f"connection.port must be between 1 and 65535, got {port}."
    for name in ("connect_timeout", "socket_timeout"):
        if connection.get(name) is not None and connection[name] <= 0:
            return f"connection.{name} must be a positive number of seconds, got {connection[name]}."
    # The module runs on the target, where these files must be: saying so beats the
    # "Error 2 ... No such file or directory" redis-py would report mid-handshake.
    for name in _TLS_FILES:
        path = connection.get(name)
        if path and not os.access(path, os.R_OK):
            return f"connection.{name} {path} does not exist or is not readable on the target."
    return None


def redis_client(
    module: AnsibleModule, connection: dict[str, Any] | None = None, fail_result: dict[str, Any] | None = None
) -> Any:
    """A connected, pinged redis-py client, or the module fails with one sentence.

    `connection` defaults to the module's `connection` option; pass a dict returned by
    validate_connection() to use another source. `fail_result`: result keys a failure
    returns besides `msg` (a module that documents its keys as returned also on failure)."""
    fail_result = fail_result or {}
    if REDIS_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib(REDIS_LIBRARY), exception=REDIS_IMPORT_ERROR, **fail_result)
    if connection is None:
        connection = module.params["connection"]
    problem = connection_problem(connection)
    if problem:
        module.fail_json(msg=problem, **fail_result)

    if connection.get("sentinel"):
        try:
            connection["host"], connection["port"] = sentinel_primary(connection)
        except SentinelFailed as exc:
            module.fail_json(msg=str(exc), **fail_result)

    kwargs: dict[str, Any] = {
        "db": connection["db"],
        "username": connection.get("username"),
        "password": connection.get("password"),
        "socket_connect_timeout": connection["connect_timeout"],
        "socket_timeout": connection["socket_timeout"],
        "decode_responses": True,
        # redis-py 8 retries 3 times with backoff by default: a 0.5 s timeout became 12 s,
        # and a retried write (a reclaim script) could run twice. One attempt, one answer.
        "retry": Retry(NoBackoff(), 0),
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
    except Exception as exc:  # every failure becomes one sentence
        module.fail_json(msg=explain_redis_error(exc, connection), **fail_result)
    return client


# -- Sentinel --------------------------------------------------------------------------------


class SentinelFailed(Exception):
    """The sentinels could not name the primary; the message is the sentence."""


class NotPrimary(Exception):
    """The node this run writes to is no longer the primary; the message is the sentence."""


def _sentinel_list(connection: dict[str, Any]) -> str:
    return ", ".join(connection["sentinel"]["hosts"])


def sentinel_primary(connection: dict[str, Any]) -> tuple[str, int]:
    """(host, port) of the primary the sentinels name for connection.sentinel.service_name:
    asked once (redis-py's Sentinel.discover_master: each sentinel in turn, the first one that
    knows the service as an up primary answers), with the connection's timeouts, one attempt,
    no retry. Raises SentinelFailed with one sentence."""
    sentinel = connection["sentinel"]
    name = sentinel["service_name"]
    hosts = [_host_port(address) for address in sentinel["hosts"]]
    sentinel_kwargs = {
        "username": sentinel.get("username"),
        "password": sentinel.get("password"),
        "socket_connect_timeout": connection.get("connect_timeout")
        or CONNECTION_SUBOPTIONS["connect_timeout"]["default"],
        "socket_timeout": connection.get("socket_timeout")
        or CONNECTION_SUBOPTIONS["socket_timeout"]["default"],
        "decode_responses": True,
        "retry": Retry(NoBackoff(), 0),
    }
    where = f"the sentinels of connection.sentinel.hosts ({_sentinel_list(connection)})"
    finder = Sentinel(hosts, sentinel_kwargs=sentinel_kwargs)
    # What each sentinel that could not be asked said (discover_master skips it silently).
    unreachable: list[BaseException] = []
    for node in finder.sentinels:
        node.sentinel_masters = _recording(node.sentinel_masters, unreachable)
    try:
        host, port = finder.discover_master(name)
    except MasterNotFoundError as exc:
        refused = [error for error in unreachable if _is_auth_error(error)]
        if refused and len(unreachable) >= len(hosts):
            raise SentinelFailed(_sentinel_auth_sentence(connection)) from exc
        if len(unreachable) >= len(hosts):
            reason = str(unreachable[0]).rstrip(".").replace(". ", ": ")
            raise SentinelFailed(
                f"No sentinel answered: could not reach any of {where} ({reason}): check "
                "connection.sentinel.hosts and that the sentinels run."
            ) from exc
        raise SentinelFailed(
            f"The sentinels know no primary for Sentinel service {name}: none of {where} that answered "
            "monitors it with a primary that is up: check connection.sentinel.service_name."
        ) from exc
    except Exception as exc:  # authentication, ACL, protocol: one sentence
        text = _error_chain_text(exc).rstrip(".")
        if _is_auth_error(exc):
            raise SentinelFailed(_sentinel_auth_sentence(connection)) from exc
        if acl_denial(exc) is not None:
            user = sentinel.get("username") or "default"
            raise SentinelFailed(
                f"Sentinel user '{user}' may not run SENTINEL MASTERS: add +sentinel|masters to its ACL "
                f"on every sentinel (see {ACL_DOC})."
            ) from exc
        raise SentinelFailed(
            f"Could not ask {where} for the primary of Sentinel service {name}: {type(exc).__name__}: {text}."
        ) from exc
    finally:
        for node in finder.sentinels:
            node.close()
    return str(host), int(port)


def _is_auth_error(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, redis_exceptions.AuthenticationError) or "WRONGPASS" in text or "NOAUTH" in text


def _sentinel_auth_sentence(connection: dict[str, Any]) -> str:
    return (
        f"The sentinels of connection.sentinel.hosts ({_sentinel_list(connection)}) refused "
        "authentication: check connection.sentinel.username and connection.sentinel.password."
    )


def _recording(ask: Any, unreachable: list[BaseException]) -> Any:
    """`ask`, recording the connection failures and timeouts it raises in `unreachable`."""

    def recorded() -> Any:
        try:
            return ask()
        except (redis_exceptions.ConnectionError, redis_exceptions.TimeoutError) as exc:
            unreachable.append(exc)
            raise

    return recorded


def not_primary_sentence(connection: dict[str, Any]) -> str:
    """The fencing sentence: the node this run wrote to is no longer the primary."""
    sentinel = connection.get("sentinel")
    endpoint = f"{connection.get('host')}:{connection.get('port')}"
    if sentinel:
        return (
            f"Redis at {endpoint} is no longer the primary of Sentinel service {sentinel['service_name']} "
            "(a failover happened during the run): nothing more was written; run again to finish "
            "against the new primary."
        )
    return (
        f"Redis at {describe_endpoint(connection)} is a read-only replica: nothing more was written; "
        "point connection at the primary, or find it with connection.sentinel."
    )


# Sentinel services whose sentinels could not be asked during this run (by hosts and service
# name): the fence stops asking them, so that unreachable sentinels cost one timeout, once.
_SILENT_SENTINELS: set[tuple[tuple[str, ...], str]] = set()


def sentinels_name(connection: dict[str, Any]) -> tuple[str, int] | None:
    """The primary's address as the first sentinel that answers gives it now (SENTINEL
    GET-MASTER-ADDR-BY-NAME: during a failover, already the promoted replica), or None when no
    sentinel answers or knows the service. One attempt each, the connection's timeouts. An ACL
    denial raises SentinelFailed naming the rule to add."""
    sentinel = connection["sentinel"]
    for address in sentinel["hosts"]:
        host, port = _host_port(address) or ("", 0)
        node = redis.Redis(
            host=host,
            port=port,
            username=sentinel.get("username"),
            password=sentinel.get("password"),
            socket_connect_timeout=connection.get("connect_timeout") or 5.0,
            socket_timeout=connection.get("socket_timeout") or 10.0,
            decode_responses=True,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            named = node.sentinel_get_master_addr_by_name(sentinel["service_name"])
        except Exception as exc:  # this sentinel cannot say: ask the next one
            if acl_denial(exc) is not None:
                user = sentinel.get("username") or "default"
                raise SentinelFailed(
                    f"Sentinel user '{user}' may not run SENTINEL GET-MASTER-ADDR-BY-NAME: add "
                    f"+sentinel|get-master-addr-by-name to its ACL on every sentinel (see {ACL_DOC})."
                ) from exc
            continue
        finally:
            node.close()
        if named:
            return str(named[0]), int(named[1])
    return None


def assert_primary(client: Any, connection: dict[str, Any]) -> None:
    """The fence before every write, with connection.sentinel: ROLE must still say `master`
    (a failover turns the old primary into a replica), and the sentinels must still name this
    node (they name the promoted replica seconds before the old primary is demoted, while its
    ROLE still says `master`). Raises NotPrimary with one sentence. Sentinels that cannot be
    asked leave ROLE's answer standing (and are not asked again during the run). Without
    connection.sentinel nothing is asked (the minimal ACL of docs/acl.md has no +role)."""
    sentinel = connection.get("sentinel")
    if not sentinel:
        return
    role = client.execute_command("ROLE")
    if not role or str(role[0]) != "master":
        raise NotPrimary(not_primary_sentence(connection))
    asked = (tuple(sentinel["hosts"]), sentinel["service_name"])
    if asked in _SILENT_SENTINELS:
        return
    named = sentinels_name(connection)
    if named is None:
        _SILENT_SENTINELS.add(asked)
    elif named != (str(connection["host"]), int(connection["port"])):
        raise NotPrimary(not_primary_sentence(connection))


def is_readonly_error(exc: BaseException) -> bool:
    """A write refused by a replica (-READONLY), sent by the client or inside a script."""
    if isinstance(exc, KeyedRedisError):
        exc = exc.error
    if redis_exceptions is not None and isinstance(exc, redis_exceptions.ReadOnlyError):
        return True
    text = str(exc)
    return text.startswith("READONLY") or "write against a read only replica" in text


def _error_chain_text(exc: BaseException) -> str:
    """The messages of an exception and of what caused it: redis-py 8 wraps the ssl error
    of a failed handshake in a generic TimeoutError/ConnectionError."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(str(current))
        current = current.__cause__ or current.__context__
    return " ".join(parts)


# -- ACL denials -----------------------------------------------------------------------------
#
# A denied command reaches redis-py in three shapes (Redis 7.0.15, redis-py 8):
#   * sent by the client: "NOPERM this user has no permissions to run the 'xinfo|consumers'
#     command", raised as NoPermissionError with the "NOPERM " prefix stripped;
#   * run by a Lua script (EVALSHA): "ERR The user executing the script can't run this command
#     or subcommand script: <sha1>, on @user_script:<line>.", a plain ResponseError that names
#     no command: the command is read from that line of the script's source, which every
#     module registers with remember_script();
#   * a key outside the user's key patterns: "...no permissions to access one of the keys used
#     as arguments" (client) or "...can't access at least one of the keys mentioned in the
#     command arguments script: ..." (script).
# Newer servers (7.2+) word it "ERR ACL failure in script: User qt has no permissions to run
# the 'xack' command script: ..." or "... to access the 'k' key": a name in the text wins over
# the line.

# Where the minimal ACL and the reason for each permission are documented.
ACL_DOC = "docs/acl.md"

# Commands whose ACL rules are per subcommand: +xinfo|consumers, +xgroup|delconsumer.
_CONTAINER_COMMANDS = frozenset(
    {"acl", "client", "cluster", "command", "config", "function", "latency", "memory", "module",
     "object", "pubsub", "script", "slowlog", "xgroup", "xinfo"}
)  # fmt: skip
# Commands that touch no key: a sentence about them names no key.
_KEYLESS_COMMANDS = frozenset({"auth", "hello", "info", "ping", "role", "select", "time"})

_SCRIPT_SOURCES: dict[str, str] = {}

_NAMED_COMMAND = re.compile(r"'([a-z][a-z0-9_-]*(?:\|[a-z0-9_-]+)?)' command")
_SCRIPT_LINE = re.compile(r"script: ([0-9a-f]{40}), on @user_script:(\d+)")
_LUA_CALL = re.compile(r"\bp?call\(\s*'([A-Za-z]+)'(?:\s*,\s*'([A-Za-z]+)')?")
_NAMED_KEY = re.compile(r"access the '([^']*)' key")
_ACL_WORDS = ("The user executing the script can't", "ACL failure in script")
# 7.0: "...access one of the keys used as arguments" (client), "...access at least one of the
# keys mentioned..." (script); 7.2+: "...to access the 'k' key"; 8.0 and Valkey 8.1: "No
# permissions to access a key" (client and script alike).
_KEY_DENIED = ("access one of the keys", "access at least one of the keys", "access the '", "access a key")
_COMMAND_DENIED = ("no permissions to run", "can't run this command")


def remember_script(source: str) -> str:
    """Register a Lua script's source under its SHA1 (what EVALSHA and an error inside the
    script name it by), so that a command denied inside it can be named. Returns the SHA1."""
    sha = hashlib.sha1(source.encode()).hexdigest()
    _SCRIPT_SOURCES[sha] = source
    return sha


def script_command(sha: str, line: int) -> str | None:
    """The command, in ACL form, that line `line` of a registered script runs; None when the
    script is unknown or the line runs no command."""
    source = _SCRIPT_SOURCES.get(sha)
    lines = source.split("\n") if source is not None else []
    if not 1 <= line <= len(lines):
        return None
    match = _LUA_CALL.search(lines[line - 1])
    if match is None:
        return None
    command = match[1].lower()
    if match[2] and command in _CONTAINER_COMMANDS:
        command += "|" + match[2].lower()
    return command


class KeyedRedisError(Exception):
    """A redis-py error together with the key the failed command was about, so that the
    sentence explaining it can name the key."""

    def __init__(self, error: BaseException, key: str | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.key = key


def acl_denial(exc: BaseException) -> tuple[str, str | None] | None:
    """('command' or 'key', the denied command in ACL form or None when it cannot be told)
    for an ACL denial, None for any other error."""
    if isinstance(exc, KeyedRedisError):
        exc = exc.error
    text = str(exc)
    is_noperm = redis_exceptions is not None and isinstance(exc, redis_exceptions.NoPermissionError)
    if not (is_noperm or text.startswith("NOPERM") or any(words in text for words in _ACL_WORDS)):
        return None
    kind = "key" if any(words in text for words in _KEY_DENIED) else "command"
    if kind == "command" and not any(words in text for words in _COMMAND_DENIED):
        return None  # a channel or a database denied: the server's own words say it best
    named = _NAMED_COMMAND.search(text)
    if named:
        return kind, named[1]
    where = _SCRIPT_LINE.search(text)
    if where:
        return kind, script_command(where[1], int(where[2]))
    return kind, None


def _key_pattern(key: str) -> str:
    """A key pattern for the sentence: the key's first `:`-separated part and `*`."""
    return f"~{key.split(':', 1)[0]}:*" if ":" in key else f"~{key}"


def _key_sentence(user: str, shown: str | None, keys: list[str]) -> str:
    via = f" with {shown}" if shown else ""
    if not keys:
        return (
            f"Redis user '{user}' may not access a key it needs{via}: add a key pattern that matches "
            f"the pipeline's keys (such as ~quantum:*) to its ACL (see {ACL_DOC})."
        )
    patterns = " ".join(dict.fromkeys(_key_pattern(key) for key in keys))
    if len(keys) == 1:
        target, them = f"the key {keys[0]}", "it"
    else:
        target, them = f"one of the keys {', '.join(keys[:-1])} and {keys[-1]}", "them"
    return (
        f"Redis user '{user}' may not access {target}{via}: "
        f"add a key pattern that matches {them} ({patterns}) to its ACL (see {ACL_DOC})."
    )


def _acl_sentence(
    kind: str, command: str | None, connection: dict[str, Any], key: str | list[str] | None
) -> str:
    user = connection.get("username") or "default"
    shown = command.upper().replace("|", " ") if command else None
    keys = [key] if isinstance(key, str) else list(key or [])
    if kind == "key":
        return _key_sentence(user, shown, keys)
    key = " and ".join(keys) if keys else None
    if command is None:
        return (
            f"Redis user '{user}' may not run one of the commands this module needs: "
            f"give it the ACL of {ACL_DOC}."
        )
    keyless = command in _KEYLESS_COMMANDS or command.startswith("script|")
    on_key = f" on {key}" if key and not keyless else ""
    return f"Redis user '{user}' may not run {shown}{on_key}: add +{command} to its ACL (see {ACL_DOC})."


def explain_redis_error(
    exc: BaseException, connection: dict[str, Any], context: str = "", key: str | list[str] | None = None
) -> str:
    """One sentence for a redis-py failure, naming the option to look at; for an ACL denial,
    the command, the user and the rule to add. `key`: the key (or keys) the failed command
    was about, named in an ACL sentence. Never includes the password."""
    if isinstance(exc, KeyedRedisError):
        key = key or exc.key
        exc = exc.error
    if isinstance(exc, NotPrimary | SentinelFailed):
        return str(exc)
    if is_readonly_error(exc):
        return not_primary_sentence(connection)
    denial = acl_denial(exc)
    if denial is not None:
        named_key = _NAMED_KEY.search(str(exc))
        if named_key:
            key = named_key[1]
        sentence = _acl_sentence(denial[0], denial[1], connection, key)
    else:
        sentence = _explain(exc, connection, context)
    password = connection.get("password")
    # Belt and braces: no client or server message is known to echo it, but nothing
    # guarantees it either.
    if password:
        sentence = sentence.replace(password, "********")
    return sentence


def _explain(exc: BaseException, connection: dict[str, Any], context: str) -> str:
    endpoint = describe_endpoint(connection)
    where = f" while {context}" if context else ""
    text = str(exc).rstrip(".")
    chain = _error_chain_text(exc).lower()
    if redis_exceptions is not None:
        if isinstance(exc, redis_exceptions.AuthenticationError) or "WRONGPASS" in text or "NOAUTH" in text:
            return (
                f"Redis at {endpoint} refused authentication{where}: "
                "check connection.username and connection.password."
            )
        if isinstance(exc, redis_exceptions.ConnectionError | redis_exceptions.TimeoutError):
            tls_words = ("ssl", "tls", "certificate", "handshake")
            if connection.get("tls") and any(word in chain for word in tls_words):
                return (
                    f"TLS handshake with Redis at {endpoint} failed{where} ({text}): check that the server "
                    "speaks TLS on this port, and connection.tls_ca_file and connection.tls_verify."
                )
        if isinstance(exc, redis_exceptions.TimeoutError):
            return (
                f"Redis at {endpoint} did not answer in time{where} ({text}): check that it is up, "
                "or raise connection.connect_timeout / connection.socket_timeout."
            )
        if isinstance(exc, redis_exceptions.ConnectionError):
            return (
                f"Cannot connect to Redis at {endpoint}{where} ({text}): check connection.host, "
                "connection.port or connection.unix_socket, and that Redis is running."
            )
        if isinstance(exc, redis_exceptions.ResponseError):
            if text.startswith("WRONGTYPE"):
                return f"A key has the wrong type{where}: {text}."
            if text.startswith("NOGROUP"):
                return f"The consumer group does not exist{where}: {text}."
            # Writes the server refuses as a whole. Every script checks its preconditions
            # before its first write, and these refusals come at that first write: the refused
            # call wrote nothing.
            if text.startswith("NOREPLICAS"):
                return (
                    f"Redis at {endpoint} refused a write{where}: fewer good replicas are connected than "
                    f"its min-replicas-to-write asks ({text}); the refused write changed nothing: restore "
                    "replication (INFO replication), then run again."
                )
            # redis-py strips the OOM code off the message of an OutOfMemoryError.
            if isinstance(exc, getattr(redis_exceptions, "OutOfMemoryError", ())) or text.startswith("OOM"):
                return (
                    f"Redis at {endpoint} is out of memory{where} ({text}); the refused write changed "
                    "nothing: free memory or raise maxmemory, then run again."
                )
    return f"Redis at {endpoint} failed{where}: {type(exc).__name__}: {text}."
