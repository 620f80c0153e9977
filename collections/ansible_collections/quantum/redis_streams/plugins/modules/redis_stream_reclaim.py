#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Reclaims the pending entries of dead Redis Streams consumers onto a stage's live consumer,
# with no message loss: every move, dead-letter and retirement is an atomic server-side step.
from __future__ import annotations

DOCUMENTATION = r"""
---
module: redis_stream_reclaim
short_description: Move the pending entries of dead Redis Streams consumers to a live consumer
description:
  - Selects consumers of one consumer group by name (O(consumers)) and/or by idle time, and moves
    every entry of their pending entries lists (PEL) to O(claim_to), the stage's live consumer.
  - Entries are moved server-side by a Lua script in bounded batches (XPENDING filtered on the
    consumer, then XCLAIM ... JUSTID), so the delivery counter of a moved entry is unchanged and
    no single server call holds Redis for long.
  - Fast path (Redis 7.0 and later, no O(dead_letter) policy) - when the script sees, in the same
    atomic step, that no consumer but the one being drained and O(claim_to) has pending entries,
    and that O(claim_to) holds none at or after the drained consumer's first one, the batch is
    moved with one XAUTOCLAIM ... JUSTID from that entry instead; it takes exactly the same
    entries, and skips listing them. RV(stats) counts these batches (C(fast_path_batches)).
  - Each selected consumer's idle time is recorded at selection. Before every batch, and before
    retiring it, the server-side script checks that the consumer has not been seen since (no
    XREADGROUP, no XCLAIM by it); a consumer that came back to life is left alone from then on,
    and the result says so in RV(consumers.skipped_reason).
  - An optional dead-letter policy copies entries that are too old or were delivered too many
    times to a dead-letter stream, with their origin, and acknowledges them in the same atomic
    step. Entries are never dropped.
  - Pending entries whose stream entry was deleted or trimmed cannot be delivered by anyone; they
    are removed from the PEL (as XCLAIM does on Redis 7.0 and later) and counted in
    RV(consumers.deleted) with their ids in RV(consumers.deleted_ids), never silently.
  - With O(retire=true) a selected consumer is deleted only by a server-side script that checks,
    in the same atomic step, that its PEL is empty and that it is still idle (XGROUP DELCONSUMER
    alone would silently drop a PEL).
  - Consumers named in O(consumers) that do not exist are reported with a RV(consumers.skipped_reason),
    not an error, so that a second run on a healed group reports C(changed=false).
version_added: "1.0.0"
author:
  - quantum-remediation maintainers (@quantum-remediation)
requirements:
  - redis (Python library, redis-py)
  - Redis server 6.2 or later (7.0 or later recommended)
attributes:
  check_mode:
    support: full
    description: Returns the exact plan (counts, and ids up to O(plan_id_cap)) computed with bounded
      read-only calls; nothing is changed.
  diff_mode:
    support: full
    description: Shows, per consumer and for O(claim_to), the pending count and whether the consumer
      exists, before and after.
extends_documentation_fragment:
  - quantum.redis_streams.redis_connection
options:
  stream:
    description: The stream (key) whose consumer group is healed. Must exist and be a stream.
    type: str
    required: true
  group:
    description: The consumer group. Must exist on O(stream).
    type: str
    required: true
  consumers:
    description:
      - Consumers to reclaim, by name.
      - A consumer is selected when it is named here B(or) its idle time is at least O(min_idle_ms)
        (the union of both rules). At least one of O(consumers) and O(min_idle_ms) is required.
      - If O(claim_to) is named here, its own PEL is subject to the O(dead_letter) policy only;
        its entries are never moved, and it is never retired.
    type: list
    elements: str
  min_idle_ms:
    description:
      - Select every consumer of the group whose idle time (XINFO CONSUMERS C(idle)) is at least
        this many milliseconds, except O(claim_to).
    type: int
  claim_to:
    description:
      - The stage's live consumer name, that receives the moved entries (created by Redis if it
        does not exist yet). Never moved from, never retired.
    type: str
    required: true
  dead_letter:
    description:
      - Dead-letter policy. An entry older than O(dead_letter.max_age_ms) (age from the entry id's
        time to the server's TIME), or delivered more than O(dead_letter.max_deliveries) times, is
        copied to O(dead_letter.stream) and acknowledged in one atomic server-side step, instead
        of being moved.
      - The copy holds the entry's own fields followed by C(origin_stream), C(origin_group),
        C(origin_consumer), C(origin_id), C(delivery_count) and C(age_ms).
    type: dict
    suboptions:
      stream:
        description: The dead-letter stream. Must differ from O(stream); created when absent.
        type: str
        required: true
      max_age_ms:
        description: Dead-letter entries older than this many milliseconds.
        type: int
      max_deliveries:
        description: Dead-letter entries delivered more than this many times.
        type: int
  retire:
    description:
      - Delete each selected consumer once its PEL is empty, through a server-side script that
        deletes it only if its PEL is empty and it has not been seen since selection.
      - O(claim_to) is never retired.
    type: bool
    default: false
  batch_size:
    description:
      - Work per server call (1 to 10000), in moved entries; a dead-lettered entry counts as 4
        (it costs about four moves of server time). Each call is bounded so that Redis is never
        blocked long. A value outside 1 to 10000 fails the module, naming O(batch_size), before
        anything is read or changed.
      - The default, 2000, keeps every call well under 50 ms on a small machine (about 7 ms of
        server work for a move batch), dead-letter policy included, and moves a dead consumer's
        PEL at 0.83-0.90x of one unbounded XAUTOCLAIM on the fast path (see docs/benchmarks.md).
        Above about 5000 a call can exceed 50 ms on a busy 2-core host.
      - This is the one default; callers (the C(consumer_recovery) role) leave the option unset
        unless they mean to override it.
    type: int
    default: 2000
  plan_id_cap:
    description: At most this many entry ids are returned per consumer in RV(consumers.ids) and
      RV(consumers.deleted_ids) (in check mode, the ids of the plan).
    type: int
    default: 100
notes:
  - A consumer's idle time is reset by XREADGROUP and by XCLAIM/XAUTOCLAIM onto it; XPENDING and
    XINFO, which this module uses to inspect it, do not reset it.
  - Every server call is a script run with EVALSHA; scripts are loaded with SCRIPT LOAD.
  - The Redis user needs the ACL in docs/acl.md (C(+xadd) and C(+xack) only with O(dead_letter),
    C(+xrange) for check mode and O(dead_letter)). A denied command, also one denied inside a
    script, fails the module with one sentence naming the command, the user and the rule to add.
    Before a batch's first write the script checks that every command the batch may write with
    is allowed, so a denial never splits a dead-letter copy from its acknowledgement.
  - >-
    On a failure after the run started (an ACL denial, the stream deleted by someone else, Redis
    gone), the module fails with one sentence saying what had been done and what failed, for
    example C(Moved 50 entries of router-0 to router-1, then could not retire router-0: Redis
    user 'qt' may not run XGROUP DELCONSUMER ...), and returns RV(consumers), RV(totals),
    RV(stats) and C(changed) as on success, so that the partial work can be reported.
seealso:
  - name: XCLAIM
    description: The command that moves entries, with JUSTID.
    link: https://redis.io/docs/latest/commands/xclaim/
"""

EXAMPLES = r"""
- name: Move the entries of every consumer idle for 10 minutes to router-1, and retire them
  quantum.redis_streams.redis_stream_reclaim:
    connection: "{{ pipeline.redis }}"
    stream: quantum:stream:ai.decision
    group: router
    min_idle_ms: 600000
    claim_to: router-1
    retire: true

- name: Reclaim a named orphan; dead-letter trade intents older than an hour, also on execution-1
  quantum.redis_streams.redis_stream_reclaim:
    connection:
      host: 127.0.0.1
      port: 6379
      password: "{{ vault_quantum_redis_password }}"
    stream: quantum:stream:trade.intent
    group: execution
    consumers: [execution-tmp, execution-1]
    claim_to: execution-1
    dead_letter:
      stream: quantum:stream:trade.intent.dead
      max_age_ms: 3600000
      max_deliveries: 5
    retire: true
  register: reclaim

- name: Show the plan only
  quantum.redis_streams.redis_stream_reclaim:
    stream: quantum:stream:ai.decision
    group: router
    consumers: [router-old]
    claim_to: router-1
  check_mode: true
  diff: true
"""

RETURN = r"""
endpoint:
  description: The Redis the module talked to - C(HOST:PORT), C(unix socket PATH), or with
    O(connection.sentinel) C(primary HOST:PORT of Sentinel service NAME) (the primary the sentinels named).
  returned: always once connected, also on a failure after that
  type: str
  sample: primary 127.0.0.1:6379 of Sentinel service quantum
changed:
  description: Whether anything was moved, dead-lettered, removed from a PEL or retired (in
    check mode, would be). On a failure, whether anything had been changed before it.
  returned: always, also on failure
  type: bool
  sample: true
stream:
  description: The stream, as given.
  returned: always, also on failure
  type: str
  sample: quantum:stream:ai.decision
group:
  description: The consumer group, as given.
  returned: always, also on failure
  type: str
  sample: router
claim_to:
  description: The consumer that received the moved entries.
  returned: always, also on failure
  type: str
  sample: router-1
consumers:
  description:
    - Per selected or named consumer, what was done (in check mode, what would be done).
    - On a failure, what had been done before it; empty when the module failed before selecting
      (bad options, Redis unreachable, a permission missing at the start).
  returned: always, also on failure
  type: dict
  contains:
    pending_before:
      description: Its pending count at selection (null when it does not exist).
      type: int
    idle_ms:
      description: Its idle time at selection (null when it does not exist).
      type: int
    moved:
      description: Entries moved to RV(claim_to).
      type: int
    dead_lettered:
      description: Entries copied to the dead-letter stream and acknowledged.
      type: int
    deleted:
      description: Pending entries whose stream entry had been deleted or trimmed, removed from
        the PEL (nothing left to deliver) and reported here.
      type: int
    retired:
      description: Whether the consumer was (check mode, would be) deleted.
      type: bool
    retire_skipped_reason:
      description: Why it was not retired; null when it was.
      type: str
    skipped_reason:
      description: Why it was not (or no longer) touched; null when it was processed fully.
      type: str
    ids:
      description: Ids of the entries moved or dead-lettered, at most O(plan_id_cap), in the same
        order in check mode and in a real run.
      type: list
      elements: str
    deleted_ids:
      description: Ids counted in RV(consumers.deleted), at most O(plan_id_cap).
      type: list
      elements: str
  sample:
    router-old:
      pending_before: 3
      idle_ms: 11776068
      moved: 3
      dead_lettered: 0
      deleted: 0
      retired: true
      retire_skipped_reason: null
      skipped_reason: null
      ids: ["1790000000000-0", "1790000000001-0", "1790000000002-0"]
      deleted_ids: []
totals:
  description: Sums over RV(consumers); C(consumers_selected) counts the existing consumers selected.
    On a failure, what had been done before it.
  returned: always, also on failure
  type: dict
  sample: {moved: 3, dead_lettered: 0, deleted: 0, retired: 1, consumers_selected: 1}
stats:
  description: Server calls made, the longest one in milliseconds as seen by the client, and how
    many batches took the XAUTOCLAIM fast path (in check mode, would take it).
  returned: always, also on failure
  type: dict
  sample: {calls: 4, longest_call_ms: 12.5, fast_path_batches: 2}
diff:
  description: Before and after, per consumer and for RV(claim_to) - pending count and presence.
  returned: when diff mode is on
  type: dict
  sample:
    before: {router-old: {pending: 3, present: true}, router-1: {pending: 0, present: true}}
    after: {router-old: {pending: 0, present: false}, router-1: {pending: 3, present: true}}
"""

import time
from collections.abc import Callable
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.quantum.redis_streams.plugins.module_utils.redis_connection import (
    acl_denial,
    assert_primary,
    connection_argument_spec,
    describe_endpoint,
    explain_redis_error,
    redis_client,
)
from ansible_collections.quantum.redis_streams.plugins.module_utils.redis_stream_scripts import (
    GUARD_TOLERANCE_MS,
    PRECONDITION_MESSAGES,
    PreconditionFailed,
    StreamScripts,
)

MAX_BATCH_SIZE = 10000
# Measured (docs/benchmarks.md): with the XAUTOCLAIM fast path, 2000 reaches 0.83-0.90x the
# server's ceiling (as high as 3000 or 5000: the per-call overhead is small) with calls near
# 17-30 ms on a loaded 2-core machine, the shortest of the sizes measured.
DEFAULT_BATCH_SIZE = 2000

# A hook the tests use to act at a precise point of a run: called with ("selected", None),
# ("batch", consumer) after each batch, and ("retire", consumer) before each retirement.
Hook = Callable[[str, "str | None"], None]


def argument_spec() -> dict[str, Any]:
    spec = connection_argument_spec()
    spec.update(
        stream={"type": "str", "required": True},
        group={"type": "str", "required": True},
        consumers={"type": "list", "elements": "str"},
        min_idle_ms={"type": "int"},
        claim_to={"type": "str", "required": True},
        dead_letter={
            "type": "dict",
            "options": {
                "stream": {"type": "str", "required": True},
                "max_age_ms": {"type": "int"},
                "max_deliveries": {"type": "int"},
            },
        },
        retire={"type": "bool", "default": False},
        batch_size={"type": "int", "default": DEFAULT_BATCH_SIZE},
        plan_id_cap={"type": "int", "default": 100},
    )
    return spec


def input_problem(params: dict[str, Any]) -> str | None:
    """The first thing wrong with the options, as one sentence naming the option, or None."""
    if not 1 <= params["batch_size"] <= MAX_BATCH_SIZE:
        return f"batch_size must be between 1 and {MAX_BATCH_SIZE}, got {params['batch_size']}."
    if not params.get("consumers") and params.get("min_idle_ms") is None:
        return "Give consumers, min_idle_ms or both: they select the consumers to reclaim."
    if params.get("min_idle_ms") is not None and params["min_idle_ms"] < 0:
        return f"min_idle_ms must be 0 or more, got {params['min_idle_ms']}."
    if params["plan_id_cap"] < 0:
        return f"plan_id_cap must be 0 or more, got {params['plan_id_cap']}."
    for option in ("stream", "group", "claim_to"):
        if not params[option]:
            return f"{option} must not be empty."
    if any(not name for name in params.get("consumers") or []):
        return "consumers must not hold an empty name."
    dead_letter = params.get("dead_letter")
    if dead_letter:
        if dead_letter.get("max_age_ms") is None and dead_letter.get("max_deliveries") is None:
            return (
                "dead_letter needs max_age_ms, max_deliveries or both: without a criterion "
                "nothing would ever be dead-lettered."
            )
        for option in ("max_age_ms", "max_deliveries"):
            if dead_letter.get(option) is not None and dead_letter[option] < 0:
                return f"dead_letter.{option} must be 0 or more, got {dead_letter[option]}."
        if not dead_letter["stream"]:
            return "dead_letter.stream must not be empty."
        if dead_letter["stream"] == params["stream"]:
            return (
                f"dead_letter.stream must differ from stream ({params['stream']}): dead-lettered "
                "entries would be delivered to the group again."
            )
    return None


def precondition_sentence(exc: PreconditionFailed, params: dict[str, Any]) -> str:
    dead_letter = params.get("dead_letter") or {}
    return PRECONDITION_MESSAGES[exc.status].format(
        stream=params["stream"],
        group=params["group"],
        dead_letter_stream=dead_letter.get("stream"),
        detail=exc.detail,
    )


def new_consumer_result(pending: int | None, idle_ms: int | None) -> dict[str, Any]:
    return {
        "pending_before": pending,
        "idle_ms": idle_ms,
        "moved": 0,
        "dead_lettered": 0,
        "deleted": 0,
        "retired": False,
        "retire_skipped_reason": None,
        "skipped_reason": None,
        "ids": [],
        "deleted_ids": [],
    }


def build_result(
    params: dict[str, Any], results: dict[str, dict[str, Any]], stats: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The module's result keys, the same on success and on failure: per consumer what was
    done, the totals, and `changed` when anything was."""
    totals = {key: sum(r[key] for r in results.values()) for key in ("moved", "dead_lettered", "deleted")}
    totals["retired"] = sum(1 for r in results.values() if r["retired"])
    totals["consumers_selected"] = sum(1 for r in results.values() if r["pending_before"] is not None)
    return {
        "changed": any(totals[key] for key in ("moved", "dead_lettered", "deleted", "retired")),
        "stream": params["stream"],
        "group": params["group"],
        "claim_to": params["claim_to"],
        "consumers": results,
        "totals": totals,
        "stats": stats or {"calls": 0, "longest_call_ms": 0.0, "fast_path_batches": 0},
    }


def entries(count: int) -> str:
    return f"{count} entry" if count == 1 else f"{count} entries"


def listing(items: list[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


class ReclaimFailed(Exception):
    """A failure of a run; carries its sentence and the result keys with what had been done
    until then."""

    def __init__(self, msg: str, partial: dict[str, Any]) -> None:
        super().__init__(msg)
        self.msg = msg
        self.partial = partial


class StreamReclaim:
    """One reclaim run over one stream and group. `run()` selects, drains, retires and returns
    the module result; in check mode the same steps run as a dry run."""

    def __init__(
        self,
        client: Any,
        params: dict[str, Any],
        *,
        check_mode: bool = False,
        diff: bool = False,
        hook: Hook | None = None,
    ) -> None:
        self.client = client
        self.params = params
        self.check_mode = check_mode
        self.diff = diff
        self.hook = hook or (lambda event, consumer: None)
        self.scripts = StreamScripts(client)
        dead_letter = params.get("dead_letter") or {}
        self.dead_letter_stream: str | None = dead_letter.get("stream")
        self.max_age_ms: int | None = dead_letter.get("max_age_ms")
        self.max_deliveries: int | None = dead_letter.get("max_deliveries")
        self.results: dict[str, dict[str, Any]] = {}
        self.guards: dict[str, int] = {}
        self.calls = 0
        self.longest_call_ms = 0.0
        self.fast_batches = 0
        # What the run was doing: ("drain" | "retire" | "diff", consumer); None while selecting.
        self.step: tuple[str, str | None] | None = None
        self.verify_exists = self._xclaim_keeps_deleted_entries()

    def _xclaim_keeps_deleted_entries(self) -> bool:
        """Before Redis 7.0, XCLAIM claims entries deleted from the stream instead of dropping
        them, so the batch script must look each one up first. Unknown (INFO denied by an
        ACL): look them up, which is always correct, only slower."""
        try:
            version = self.client.info("server").get("redis_version", "0")
            return int(str(version).split(".", maxsplit=1)[0]) < 7
        except Exception:  # any failure means "unknown"
            return True

    def _timed(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.calls += 1
            self.longest_call_ms = max(self.longest_call_ms, (time.perf_counter() - started) * 1000)

    def _fence(self) -> None:
        """Before every write: with connection.sentinel, the node must still be the primary
        (ROLE); a failover mid-run stops the run with one sentence (NotPrimary)."""
        connection = self.params.get("connection") or {}
        if not self.check_mode and connection.get("sentinel"):
            self._timed(assert_primary, self.client, connection)

    # -- selection -------------------------------------------------------------------------

    def select(self) -> tuple[int, dict[str, dict[str, int]]]:
        """Decide which consumers are processed, record their guards; returns the snapshot."""
        params = self.params
        claim_to = params["claim_to"]
        now_ms, consumers = self._timed(
            self.scripts.select, params["stream"], params["group"], self.dead_letter_stream
        )
        named = list(dict.fromkeys(params.get("consumers") or []))
        chosen = list(named)
        if params.get("min_idle_ms") is not None:
            chosen += sorted(
                name
                for name, info in consumers.items()
                if info["idle_ms"] >= params["min_idle_ms"] and name != claim_to and name not in named
            )
        # claim_to first: its own PEL is dead-lettered before moved entries land on it (each
        # XCLAIM onto it refreshes its last-seen time, which would trip its guard).
        chosen.sort(key=lambda name: name != claim_to)
        for name in chosen:
            info = consumers.get(name)
            if info is None:
                result = new_consumer_result(None, None)
                result["skipped_reason"] = "absent: no such consumer in the group"
                result["retire_skipped_reason"] = "absent: nothing to retire"
                self.results[name] = result
                continue
            result = new_consumer_result(info["pending"], info["idle_ms"])
            self.results[name] = result
            self.guards[name] = now_ms - info["idle_ms"]
            if info["idle_ms"] < GUARD_TOLERANCE_MS:
                result["skipped_reason"] = f"active at selection (idle {info['idle_ms']} ms)"
            elif name == claim_to and not self.dead_letter_stream:
                result["skipped_reason"] = (
                    "claim_to keeps its own entries (replayed by its service at restart); "
                    "no dead_letter policy was given"
                )
        return now_ms, consumers

    # -- draining --------------------------------------------------------------------------

    def drain(self, name: str) -> None:
        """Move / dead-letter `name`'s PEL batch by batch until empty or no longer idle."""
        result = self.results[name]
        params = self.params
        claim_to = None if name == params["claim_to"] else params["claim_to"]
        cap = params["plan_id_cap"]
        cursor = "-"
        while True:
            self._fence()
            batch = self._timed(
                self.scripts.batch,
                stream=params["stream"],
                group=params["group"],
                consumer=name,
                claim_to=claim_to,
                guard_ms=self.guards[name],
                batch_size=params["batch_size"],
                cursor=cursor,
                dead_letter_stream=self.dead_letter_stream,
                max_age_ms=self.max_age_ms,
                max_deliveries=self.max_deliveries,
                ids_wanted=cap - len(result["ids"]),
                deleted_ids_wanted=cap - len(result["deleted_ids"]),
                dry_run=self.check_mode,
                verify_exists=self.verify_exists,
            )
            if batch.status == "active":
                result["skipped_reason"] = (
                    f"became active during the run (idle {batch.idle_ms} ms, {result['idle_ms']} ms "
                    "at selection): left alone from then on"
                )
                return
            if batch.status == "absent":
                result["skipped_reason"] = "deleted by another client during the run"
                return
            self.fast_batches += batch.fast
            result["moved"] += batch.moved
            result["dead_lettered"] += batch.dead_lettered
            result["deleted"] += batch.deleted
            result["ids"] += batch.ids
            result["deleted_ids"] += batch.deleted_ids
            self.hook("batch", name)
            if batch.done:
                return
            cursor = batch.cursor

    # -- retiring --------------------------------------------------------------------------

    def retire(self, name: str) -> None:
        result = self.results[name]
        if name == self.params["claim_to"]:
            result["retire_skipped_reason"] = "claim_to is never retired"
            return
        if not self.params["retire"]:
            result["retire_skipped_reason"] = "retire is false"
            return
        if result["skipped_reason"]:
            result["retire_skipped_reason"] = f"not touched: {result['skipped_reason']}"
            return
        if self.check_mode:
            left = result["pending_before"] - result["moved"] - result["dead_lettered"] - result["deleted"]
            if left:
                result["retire_skipped_reason"] = f"{left} entries would still be pending"
            else:
                result["retired"] = True
            return
        self.hook("retire", name)
        self._fence()
        status, detail = self._timed(
            self.scripts.retire, self.params["stream"], self.params["group"], name, self.guards[name]
        )
        if status == "retired":
            result["retired"] = True
        elif status == "pending":
            result["retire_skipped_reason"] = f"{detail} entries still pending"
        elif status == "active":
            result["retire_skipped_reason"] = (
                f"became active during the run (idle {detail} ms, {result['idle_ms']} ms at selection)"
            )
        else:
            result["retire_skipped_reason"] = "deleted by another client during the run"

    # -- the run ---------------------------------------------------------------------------

    def _diff_side(self, consumers: dict[str, dict[str, int]]) -> dict[str, dict[str, Any]]:
        names = [*self.results, self.params["claim_to"]]
        return {
            name: {
                "pending": consumers[name]["pending"] if name in consumers else 0,
                "present": name in consumers,
            }
            for name in dict.fromkeys(names)
        }

    def _predicted_after(self, before: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        after = {name: dict(info) for name, info in before.items()}
        claim_to = self.params["claim_to"]
        moved = 0
        for name, result in self.results.items():
            if name not in after:
                continue
            after[name]["pending"] -= result["moved"] + result["dead_lettered"] + result["deleted"]
            moved += result["moved"]
            if result["retired"]:
                del after[name]
        if moved:
            after.setdefault(claim_to, {"pending": 0, "idle_ms": 0})["pending"] += moved
        return after

    def report(self) -> dict[str, Any]:
        stats = {
            "calls": self.calls,
            "longest_call_ms": round(self.longest_call_ms, 3),
            "fast_path_batches": self.fast_batches,
        }
        return build_result(self.params, self.results, stats)

    # -- failing ---------------------------------------------------------------------------

    def _step_words(self, step: tuple[str, str | None]) -> str:
        kind, name = step
        claim_to = self.params["claim_to"]
        if kind == "drain" and name == claim_to:
            return f"dead-letter the entries of {name}"
        if kind == "drain" and self.dead_letter_stream:
            return f"move or dead-letter the entries of {name}"
        if kind == "drain":
            return f"move the entries of {name} to {claim_to}"
        if kind == "retire":
            return f"retire {name}"
        return f"read group {self.params['group']} again for the diff"

    def done_so_far(self) -> str | None:
        """What this run has changed, as the start of a sentence; None when nothing."""
        results = self.results.items()
        parts = []
        moved = [f"{entries(r['moved'])} of {name}" for name, r in results if r["moved"]]
        if moved:
            parts.append(f"moved {listing(moved)} to {self.params['claim_to']}")
        dead = [f"{entries(r['dead_lettered'])} of {name}" for name, r in results if r["dead_lettered"]]
        if dead:
            parts.append(f"dead-lettered {listing(dead)} to {self.dead_letter_stream}")
        deleted = [f"{entries(r['deleted'])} of {name}" for name, r in results if r["deleted"]]
        if deleted:
            parts.append(f"dropped from the PEL {listing(deleted)} that had been deleted from the stream")
        retired = [name for name, r in results if r["retired"]]
        if retired:
            parts.append(f"retired {listing(retired)}")
        if not parts:
            return None
        text = ", ".join(parts)
        return text[0].upper() + text[1:]

    def _cause(self, exc: Exception) -> str:
        """The failure itself, as one sentence."""
        if isinstance(exc, PreconditionFailed):
            # Someone deleted or replaced a key: the script refused, nothing was half done.
            return precondition_sentence(exc, self.params)
        denial = acl_denial(exc)
        keys: str | list[str] = self.params["stream"]
        if denial and denial[1] == "xadd":
            keys = str(self.dead_letter_stream)
        elif denial and denial[0] == "key" and self.dead_letter_stream:
            keys = [self.params["stream"], self.dead_letter_stream]  # either may be the one
        return explain_redis_error(exc, self.params.get("connection") or {}, "reclaiming", key=keys)

    def failure_sentence(self, exc: Exception) -> str:
        """One sentence: what failed and, when the run had started working, what it had done
        before (so a caller can report the partial work)."""
        cause = self._cause(exc)
        if self.step is None:
            return cause  # selecting: nothing was done yet
        step = self._step_words(self.step)
        if self.check_mode:
            return f"Could not plan to {step} (check mode, nothing was changed): {cause}"
        done = self.done_so_far()
        if done is None:
            return f"Could not {step} (nothing was changed): {cause}"
        return f"{done}, then could not {step}: {cause}"

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Select, drain, retire; the module result. On any failure raises ReclaimFailed with
        one sentence and the same result keys, holding what had been done until then."""
        try:
            self.scripts.load()
            before = self.select()[1]
            self.hook("selected", None)
            for name, result in self.results.items():
                if not result["skipped_reason"] and result["pending_before"]:
                    self.step = ("drain", name)
                    self.drain(name)
            for name in self.results:
                self.step = ("retire", name)
                self.retire(name)
            result = self.report()
            if self.diff:
                if self.check_mode:
                    after = self._predicted_after(before)
                else:
                    self.step = ("diff", None)
                    params = self.params
                    after = self._timed(
                        self.scripts.select, params["stream"], params["group"], self.dead_letter_stream
                    )[1]
                result["diff"] = {"before": self._diff_side(before), "after": self._diff_side(after)}
        except Exception as exc:  # every failure: one sentence and the partial result
            raise ReclaimFailed(self.failure_sentence(exc), self.report()) from exc
        return result


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    # The documented result keys come back on every failure too, empty before any work.
    nothing_done = build_result(module.params, {})
    problem = input_problem(module.params)
    if problem:
        module.fail_json(msg=problem, **nothing_done)
    client = redis_client(module, fail_result=nothing_done)
    endpoint = describe_endpoint(module.params["connection"])
    reclaim = StreamReclaim(client, module.params, check_mode=module.check_mode, diff=module._diff)
    try:
        result = reclaim.run()
    except ReclaimFailed as exc:
        module.fail_json(msg=exc.msg, endpoint=endpoint, **exc.partial)
    module.exit_json(endpoint=endpoint, **result)


if __name__ == "__main__":
    main()
