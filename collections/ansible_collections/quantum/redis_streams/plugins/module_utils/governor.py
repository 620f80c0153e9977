# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# A daily-limit governor hash, read against the server's clock, and its checked reset: shared by
# redis_governor (read and reset) and pipeline_snapshot (read).
from __future__ import annotations

import re
import traceback
from datetime import UTC, datetime
from typing import Any

from ansible_collections.quantum.redis_streams.plugins.module_utils.redis_connection import (
    assert_primary,
    explain_redis_error,
    remember_script,
)

PAGE_SIZE = 1000
DAY_MS = 86_400_000

# Re-checks, atomically, what the module saw before writing: the counter is still above
# the limit and still dated today. Anything else is a concurrent (legitimate) change.
# One HMGET, the command the module reads the hash with: one permission less to grant.
RESET_SCRIPT = """
local fields = redis.call('HMGET', KEYS[1], ARGV[1], ARGV[2], ARGV[3])
local date, count, limit = fields[1], tonumber(fields[2]), tonumber(fields[3])
if count == nil or limit == nil then
  return {0, 'the counter or the limit is no longer a number'}
end
if count <= limit then
  return {0, 'the counter is no longer above its limit'}
end
if date ~= ARGV[4] and date ~= ARGV[5] then
  return {0, 'the counter is no longer dated today'}
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[6], ARGV[1], ARGV[7])
return {1, tostring(count)}
"""

# So that a command denied inside the script can be named (module_utils/redis_connection.py).
remember_script(RESET_SCRIPT)

DATE_PATTERN = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")


def day_start_ms(server_time_ms: int) -> int:
    """Midnight (UTC) of the day the server's clock is in, in milliseconds since the epoch."""
    return server_time_ms - server_time_ms % DAY_MS


def count_day(client: Any, stream: str, midnight_ms: int) -> int:
    """How many entries of `stream` have an entry-ID time within the day that starts at
    `midnight_ms` (a missing stream has none): bounded XRANGE pages, O(entries that day).
    The one definition of "today's entries", for the governor's results and the daily report."""
    # Incomplete IDs: the start means <midnight>-0, the end <last ms of the day>-<max seq>.
    start = str(midnight_ms)
    end = str(midnight_ms + DAY_MS - 1)
    total = 0
    while True:
        page = client.xrange(stream, start, end, count=PAGE_SIZE)
        total += len(page)
        if len(page) < PAGE_SIZE:
            return total
        start = f"({page[-1][0]}"


def governor_spec() -> dict[str, Any]:
    return {
        "type": "dict",
        "required": True,
        "options": {
            "key": {"type": "str", "required": True, "no_log": False},
            "date_field": {"type": "str", "default": "date"},
            "count_field": {"type": "str", "default": "trades_today"},
            "limit_field": {"type": "str", "default": "daily_limit"},
            "counted_stream": {"type": "str", "required": True},
        },
    }


def normalize_date(value: str | None) -> str | None:
    """`2026-01-17` or `20260117` as `2026-01-17`; anything else unchanged."""
    if value is None:
        return None
    match = DATE_PATTERN.match(value.strip())
    return f"{match[1]}-{match[2]}-{match[3]}" if match else value


def date_like(stored: str | None, today: str) -> str:
    """Today's date written the way the governor already writes it."""
    if stored is not None and DATE_PATTERN.match(stored.strip()) and "-" not in stored:
        return today.replace("-", "")
    return today


class Governor:
    """The governor hash and the counted stream, probed once when made."""

    def __init__(
        self,
        module: Any,
        client: Any,
        spec: dict[str, Any] | None = None,
        connection: dict[str, Any] | None = None,
    ) -> None:
        """`module` is the AnsibleModule (its fail_json ends the run with one sentence); `spec` and
        `connection` default to its `governor` and `connection` options."""
        self.module = module
        self.client = client
        self.spec: dict[str, Any] = spec if spec is not None else module.params["governor"]
        self.connection: dict[str, Any] = module.params["connection"] if connection is None else connection
        self.key: str = self.spec["key"]
        seconds, micros = self.call("reading the server clock", None, client.time)
        self.server_time_ms = seconds * 1000 + micros // 1000
        now = datetime.fromtimestamp(seconds, tz=UTC)
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        self.today = midnight.date().isoformat()
        self.midnight_ms = int(midnight.timestamp() * 1000)
        self.fields = self.read_hash()
        self.counted_stream_exists: bool | None = None
        self.results_today: int | None = None

    def count(self) -> None:
        """Sets counted_stream_exists and results_today (O(results today): see count_results)."""
        self.counted_stream_exists, self.results_today = self.count_results_today()

    def fail(self, msg: str) -> None:
        self.module.fail_json(msg=msg)

    def call(self, context: str, key: str | None, func: Any, *args: Any, **kwargs: Any) -> Any:
        """func(*args, **kwargs), or the module fails with one sentence (naming `key`, the key
        the command is about, when the user's ACL denies it)."""
        try:
            return func(*args, **kwargs)
        except Exception as exc:  # every Redis failure becomes one sentence
            self.module.fail_json(
                msg=explain_redis_error(exc, self.connection, context, key=key),
                exception=traceback.format_exc(),
            )

    def read_hash(self) -> dict[str, str] | None:
        context = f"reading the governor key {self.key}"
        kind = self.call(context, self.key, self.client.type, self.key)
        if kind == "none":
            return None
        if kind != "hash":
            self.fail(
                f"The governor key {self.key} is a {kind}, not a hash: check governor.key "
                "(the inventory's pipeline.governor.key)."
            )
        names = [self.spec["date_field"], self.spec["count_field"], self.spec["limit_field"]]
        values = self.call(context, self.key, self.client.hmget, self.key, names)
        return {name: values[index] for index, name in enumerate(names)}

    def integer_field(self, option: str) -> int | None:
        if self.fields is None:
            return None
        name = self.spec[option]
        raw = self.fields.get(name)
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            self.fail(
                f"The governor key {self.key} holds {raw!r} in its field {name} "
                f"(governor.{option}), which is not an integer."
            )
        return None  # pragma: no cover - fail() does not return

    def count_results_today(self) -> tuple[bool, int]:
        stream = self.spec["counted_stream"]
        context = f"counting today's entries of {stream}"
        kind = self.call(context, stream, self.client.type, stream)
        if kind == "none":
            return False, 0
        if kind != "stream":
            self.fail(
                f"The counted stream {stream} is a {kind}, not a stream: check governor.counted_stream."
            )
        return True, self.call(context, stream, count_day, self.client, stream, self.midnight_ms)

    def state(self) -> dict[str, Any]:
        count = self.integer_field("count_field")
        limit = self.integer_field("limit_field")
        date = self.fields.get(self.spec["date_field"]) if self.fields else None
        dated_today = normalize_date(date) == self.today
        known = dated_today and count is not None and limit is not None
        return {
            "key": self.key,
            "exists": self.fields is not None,
            "date": date,
            "today": self.today,
            "dated_today": dated_today,
            "count": count,
            "limit": limit,
            "over_limit": bool(known and count > limit),
            "at_limit": bool(known and count == limit),
            "blocked": bool(known and count >= limit),
        }

    def skip_reason(self, state: dict[str, Any]) -> str | None:
        """Why the counter is not reset, or None when it must be."""
        if not state["exists"]:
            return f"the governor key {self.key} does not exist"
        if state["count"] is None or state["limit"] is None:
            return (
                f"the governor key {self.key} has no {self.spec['count_field']} "
                f"or no {self.spec['limit_field']} field"
            )
        if not state["dated_today"]:
            return (
                f"the counter is dated {state['date']}, not today ({self.today}): "
                "the governor starts a new day itself"
            )
        if not state["over_limit"]:
            return (
                f"the counter ({state['count']}) is at or below its limit ({state['limit']}), "
                "which is legitimate"
            )
        if self.results_today is None:
            self.count()
        if state["count"] == self.results_today:
            return f"the counter already equals today's results ({self.results_today})"
        return None

    def reset(self, state: dict[str, Any]) -> str | None:
        """Runs the checked reset; returns why it did not write, or None when it did."""
        if self.results_today is None:
            self.count()
        new_date = date_like(state["date"], self.today)
        context = f"resetting the governor key {self.key}"
        script = self.client.register_script(RESET_SCRIPT)
        # Loaded every time, not only when the server lacks it: the user's ACL needs the same
        # permissions (SCRIPT LOAD, EVALSHA) whatever the server's script cache holds.
        self.call(context, None, self.client.script_load, RESET_SCRIPT)
        # The fence: with connection.sentinel, still the primary (ROLE) right before the write.
        self.call(context, None, assert_primary, self.client, self.connection)
        args = [
            self.spec["date_field"],
            self.spec["count_field"],
            self.spec["limit_field"],
            self.today,
            self.today.replace("-", ""),
            str(self.results_today),
            new_date,
        ]
        written, detail = self.call(context, self.key, script, keys=[self.key], args=args)
        return None if int(written) == 1 else f"not reset: {detail} (changed concurrently)"
