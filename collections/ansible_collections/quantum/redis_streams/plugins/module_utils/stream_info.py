# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# What redis_stream_info and pipeline_snapshot read about streams, consumer groups and consumers:
# pipelined, one round trip per kind of question, every command bounded.
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ansible_collections.quantum.redis_streams.plugins.module_utils.redis_connection import (
    KeyedRedisError,
    validate_connection,
)

MAX_PENDING_SCAN_LIMIT = 10000
# Commands per pipeline round trip: enough to make a pipeline of a few dozen streams one
# round trip, small enough that a reply never grows without bound.
PIPELINE_CHUNK = 200
# redis-py's option to leave one reply undecoded (redis.client.NEVER_DECODE): XINFO STREAM
# carries the first and last entries' payloads, which need not be UTF-8.
NEVER_DECODE = "NEVER_DECODE"

Call = Callable[[Any], Any]


class WrongType(Exception):
    """A key asked for as a stream holds another type."""


def requested_from_streams(streams: list[dict[str, Any]]) -> dict[str, list[str] | None]:
    """{stream: groups or None (= every group)}, in the order given, duplicates merged."""
    requested: dict[str, list[str] | None] = {}
    for item in streams:
        _add(requested, item["stream"], item.get("groups"))
    return requested


def requested_from_pipeline(pipeline: dict[str, Any]) -> tuple[dict[str, list[str] | None], str | None]:
    """The streams of a pipeline definition, upstream first, or a sentence saying what is wrong."""
    stages = pipeline.get("stages")
    if not isinstance(stages, list) or not stages:
        return {}, "pipeline.stages must be a non-empty list of stages."
    requested: dict[str, list[str] | None] = {}
    for index, stage in enumerate(stages):
        if not isinstance(stage, dict):
            return {}, f"pipeline.stages[{index}] must be a dictionary, got {type(stage).__name__}."
        name = stage.get("name", f"#{index}")
        input_stream, group = stage.get("input_stream"), stage.get("group")
        if bool(input_stream) != bool(group):
            return {}, f"pipeline stage {name} must give both input_stream and group, or neither."
        if input_stream:
            _add(requested, str(input_stream), [str(group)])
        if stage.get("output_stream"):
            _add(requested, str(stage["output_stream"]), None)
    return requested, None


def _add(requested: dict[str, list[str] | None], stream: str, groups: list[str] | None) -> None:
    # A stream that some stage reads is reported with the groups that read it (so a missing
    # group is flagged); a stream nobody names a group for, with all its groups.
    if stream not in requested:
        requested[stream] = None if groups is None else list(dict.fromkeys(groups))
    elif groups is not None:
        current = requested[stream] or []
        requested[stream] = list(dict.fromkeys([*current, *groups]))


def run_pipelined(client: Any, calls: list[Call]) -> list[Any]:
    """Each call queued on a non-transactional pipeline, PIPELINE_CHUNK per round trip; a
    command's error is returned in its place, not raised."""
    replies: list[Any] = []
    for start in range(0, len(calls), PIPELINE_CHUNK):
        pipe = client.pipeline(transaction=False)
        for call in calls[start : start + PIPELINE_CHUNK]:
            call(pipe)
        replies.extend(pipe.execute(raise_on_error=False))
    return replies


def id_key(entry_id: str) -> tuple[int, int]:
    """An entry ID as a comparable (milliseconds, sequence) pair."""
    parts = str(entry_id).split("-", 1)
    return int(parts[0]), int(parts[1]) if len(parts) > 1 and parts[1] else 0


def id_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


def as_str(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def missing_group() -> dict[str, Any]:
    return {
        "exists": False,
        "consumer_count": None,
        "pending": None,
        "last_delivered_id": None,
        "entries_read": None,
        "lag": None,
        "oldest_undelivered_id": None,
        "oldest_undelivered_age_ms": None,
        "consumers": {},
    }


def missing_stream(groups: list[str] | None) -> dict[str, Any]:
    return {
        "exists": False,
        "length": None,
        "first_entry_id": None,
        "last_entry_id": None,
        "entries_added": None,
        "groups": {name: missing_group() for name in groups or []},
    }


def is_error(reply: Any, prefix: str = "") -> bool:
    return isinstance(reply, Exception) and str(reply).startswith(prefix)


def is_no_such_key(reply: Any) -> bool:
    # redis-py strips the "ERR " of "ERR no such key"; older versions did not.
    return isinstance(reply, Exception) and str(reply).removeprefix("ERR ") == "no such key"


class StreamInfo:
    """Collects the facts in three pipelined rounds: streams and groups, then consumers and each
    group's first undelivered entry, then each consumer's bounded pending range. Later rounds
    only ask about what earlier ones found."""

    def __init__(self, client: Any, requested: dict[str, list[str] | None], scan_limit: int) -> None:
        self.client = client
        self.requested = requested
        self.scan_limit = scan_limit
        self.server: dict[str, Any] = {}
        self.streams: dict[str, dict[str, Any]] = {}
        self.missing: list[str] = []

    def collect(self) -> None:
        self._streams_and_groups()
        self._consumers_and_undelivered()
        self._pending_ranges()
        self._list_missing()

    def _streams_and_groups(self) -> None:
        calls: list[Call] = [lambda p: p.time(), lambda p: p.info("server")]
        for stream in self.requested:
            calls += [
                lambda p, s=stream: p.type(s),
                lambda p, s=stream: p.execute_command("XINFO STREAM", s, **{NEVER_DECODE: []}),
                lambda p, s=stream: p.xinfo_groups(s),
            ]
        replies = run_pipelined(self.client, calls)
        time_reply, info_reply = replies[0], replies[1]
        for reply in (time_reply, info_reply):
            if isinstance(reply, Exception):
                raise reply
        seconds, microseconds = time_reply
        self.server = {
            "version": info_reply.get("redis_version"),
            "time_ms": int(seconds) * 1000 + int(microseconds) // 1000,
        }
        for index, (stream, groups) in enumerate(self.requested.items()):
            kind, info, group_list = replies[2 + 3 * index : 5 + 3 * index]
            self.streams[stream] = self._stream(stream, groups, kind, info, group_list)

    def _stream(self, stream: str, groups: list[str] | None, kind: Any, info: Any, group_list: Any) -> dict:
        if isinstance(kind, Exception):
            raise KeyedRedisError(kind, stream)
        if kind not in ("stream", "none") or is_error(info, "WRONGTYPE"):
            raise WrongType(f"Key {stream!r} is a {kind}, not a stream: check the stream names asked for.")
        # "no such key" also covers a stream deleted between TYPE and XINFO.
        if kind == "none" or is_no_such_key(info):
            return missing_stream(groups)
        for reply in (info, group_list):
            if isinstance(reply, Exception):
                raise KeyedRedisError(reply, stream)
        first, last = info.get("first-entry"), info.get("last-entry")
        last_id = as_str(last[0]) if last else None
        by_name = {group["name"]: group for group in group_list}
        wanted = list(by_name) if groups is None else groups
        return {
            "exists": True,
            "length": info["length"],
            "first_entry_id": as_str(first[0]) if first else None,
            "last_entry_id": last_id,
            "entries_added": info.get("entries-added"),
            "groups": {
                name: self._group(by_name[name], last_id) if name in by_name else missing_group()
                for name in wanted
            },
        }

    @staticmethod
    def _group(group: dict[str, Any], last_entry_id: str | None) -> dict[str, Any]:
        # Both absent before Redis 7.0 and nil when the server cannot tell: None either way.
        lag = group.get("lag")
        delivered = as_str(group["last-delivered-id"])
        if lag and last_entry_id is not None and id_key(delivered) >= id_key(last_entry_id):
            # Delivered up to the stream's last entry: nothing waits, whatever the server
            # computes from a stale entries-read (a Redis 7.0 replica keeps none, so once
            # promoted by a failover it reports a lag of up to every entry ever added).
            lag = 0
        return {
            "exists": True,
            "consumer_count": group["consumers"],
            "pending": group["pending"],
            "last_delivered_id": group["last-delivered-id"],
            "entries_read": group.get("entries-read"),
            "lag": lag,
            "oldest_undelivered_id": None,
            "oldest_undelivered_age_ms": None,
            "consumers": {},
        }

    def _existing_groups(self) -> list[tuple[str, str]]:
        return [
            (stream, name)
            for stream, state in self.streams.items()
            for name, group in state["groups"].items()
            if group["exists"]
        ]

    def _consumers_and_undelivered(self) -> None:
        targets = self._existing_groups()
        calls: list[Call] = [lambda p, s=s, g=g: p.xinfo_consumers(s, g) for s, g in targets]
        # The first entry after the group's last delivered one: how long the oldest undelivered
        # entry has waited. A consumer reading with `>` is served at once, so an entry waiting
        # longer than a stall threshold proves no consumer of the group read for that long.
        # Only groups that may have one (lag not 0); one bounded XRANGE each.
        waiting = [
            (stream, name)
            for stream, name in targets
            if self.streams[stream]["groups"][name]["lag"] != 0
            and self.streams[stream]["last_entry_id"] is not None
        ]
        after = {
            target: "(" + str(self.streams[target[0]]["groups"][target[1]]["last_delivered_id"])
            for target in waiting
        }
        calls += [lambda p, s=s, g=g: p.xrange(s, after[(s, g)], "+", count=1) for s, g in waiting]
        replies = run_pipelined(self.client, calls)
        for (stream, name), reply in zip(targets, replies[: len(targets)], strict=True):
            if self._vanished(stream, name, reply):
                continue
            self.streams[stream]["groups"][name]["consumers"] = {
                consumer["name"]: self._consumer(consumer) for consumer in reply
            }
        for (stream, name), reply in zip(waiting, replies[len(targets) :], strict=True):
            group = self.streams[stream]["groups"][name]
            if not group["exists"] or isinstance(reply, Exception) or not reply:
                continue  # deleted meanwhile, or nothing after the last delivered entry
            entry_id = as_str(reply[0][0])
            group["oldest_undelivered_id"] = entry_id
            # An ID set explicitly in the future would give a negative age: it has not waited.
            group["oldest_undelivered_age_ms"] = max(0, self.server["time_ms"] - id_ms(entry_id))

    @staticmethod
    def _consumer(consumer: dict[str, Any]) -> dict[str, Any]:
        inactive = consumer.get("inactive")
        return {
            "pending": consumer["pending"],
            "idle_ms": consumer["idle"],
            # Redis 7.2+ says -1 for a consumer that never read or claimed anything: unknown.
            "inactive_ms": inactive if inactive is not None and inactive >= 0 else None,
            "oldest_pending_id": None,
            "oldest_pending_age_ms": None,
            "oldest_pending_idle_ms": None,
            "oldest_pending_deliveries": None,
            "max_delivery_count": 0,
            "max_delivery_count_exact": True,
        }

    def _vanished(self, stream: str, group: str, reply: Any) -> bool:
        """True when the group (or its stream) was deleted since the first round: it is then
        reported as missing, like a group that never existed."""
        if is_error(reply, "NOGROUP") or is_no_such_key(reply):
            self.streams[stream]["groups"][group] = missing_group()
            return True
        if isinstance(reply, Exception):
            raise KeyedRedisError(reply, stream)
        return False

    def _pending_ranges(self) -> None:
        targets = [
            (stream, group, consumer)
            for stream, group in self._existing_groups()
            for consumer, state in self.streams[stream]["groups"][group]["consumers"].items()
            if state["pending"] > 0
        ]
        # XINFO CONSUMERS gave each pending count: never ask for more entries than the consumer
        # holds, nor than the limit (the reply's size, hence the parse, is what this round costs).
        counts = {
            target: min(
                self.scan_limit,
                self.streams[target[0]]["groups"][target[1]]["consumers"][target[2]]["pending"],
            )
            for target in targets
        }
        calls: list[Call] = [
            lambda p, s=s, g=g, c=c: p.xpending_range(s, g, "-", "+", counts[(s, g, c)], c)
            for s, g, c in targets
        ]
        for (stream, group, consumer), reply in zip(targets, run_pipelined(self.client, calls), strict=True):
            if not self.streams[stream]["groups"][group]["exists"] or self._vanished(stream, group, reply):
                continue
            self._apply_pending(self.streams[stream]["groups"][group]["consumers"][consumer], reply)

    def _apply_pending(self, state: dict[str, Any], entries: list[dict[str, Any]]) -> None:
        scanned = entries[: self.scan_limit]
        # The count XINFO CONSUMERS gave: were all of them read?
        state["max_delivery_count_exact"] = state["pending"] <= self.scan_limit
        if not scanned:
            # Acknowledged between the two rounds: nothing pending is left to describe.
            return
        oldest = scanned[0]
        state["oldest_pending_id"] = oldest["message_id"]
        # An ID set explicitly in the future would give a negative age: it has not waited.
        state["oldest_pending_age_ms"] = max(0, self.server["time_ms"] - id_ms(oldest["message_id"]))
        state["oldest_pending_idle_ms"] = oldest["time_since_delivered"]
        state["oldest_pending_deliveries"] = oldest["times_delivered"]
        state["max_delivery_count"] = max(entry["times_delivered"] for entry in scanned)

    def _list_missing(self) -> None:
        for stream, state in self.streams.items():
            if not state["exists"]:
                self.missing.append(stream)
            absent = [name for name, group in state["groups"].items() if not group["exists"]]
            self.missing += [f"{stream}/{name}" for name in absent]


def module_connection_and_scan_limit(module: Any) -> tuple[dict[str, Any], int]:
    """The connection (the `connection` option, else `pipeline.redis`) and the checked
    `pending_scan_limit` of redis_stream_info and pipeline_snapshot, or the module fails."""
    params = module.params
    pipeline = params.get("pipeline")
    pipeline_redis = pipeline.get("redis") if pipeline else None
    # Validated even when `connection` wins: that also masks its password, which would
    # otherwise be echoed in the module's invocation.
    pipeline_connection = None
    if pipeline_redis is not None:
        pipeline_connection = validate_connection(module, pipeline_redis, "pipeline.redis")
    connection = params["connection"]
    if connection is None:
        connection = pipeline_connection or validate_connection(module, {}, "connection")
    scan_limit = params["pending_scan_limit"]
    if not 1 <= scan_limit <= MAX_PENDING_SCAN_LIMIT:
        module.fail_json(
            msg=f"pending_scan_limit must be between 1 and {MAX_PENDING_SCAN_LIMIT}, got {scan_limit}."
        )
    return connection, scan_limit
