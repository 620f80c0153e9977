"""Pure functions over `redis_stream_info` results and the `pipeline` definition: deltas
across a window, a verdict per stage, the stop point, the restart order, durations as text.

No I/O here: every function takes plain data (the module results, the inventory's
`pipeline`, the service states, the governor state) and returns plain data, so the roles
can call them as Jinja filters and the tests can call them directly. The shapes are in
docs/interfaces.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # the functions stay usable without Ansible installed
    AnsibleFilterError = ValueError  # type: ignore[misc,assignment]

OK = "OK"
LAGGING = "LAGGING"
STALLED = "STALLED"
STOPPED = "STOPPED"
BLOCKED = "BLOCKED"
VERDICTS = (OK, LAGGING, STALLED, STOPPED, BLOCKED)
RESTART_VERDICTS = frozenset({STALLED, STOPPED})

DEFAULT_STALL_IDLE_MS = 30000
# Two snapshots read the server clock and each consumer's idle time a few milliseconds
# apart; a consumer that did nothing shows idle_after ~= idle_before + window, give or take
# that skew. Below this slack an idle reset is not taken as proof of activity.
IDLE_SLACK_MS = 1000


# ---------------------------------------------------------------------------------------
# small helpers


def _int_or_none(value: Any) -> int | None:
    """An integer from module output or Jinja (which may hand over strings); None stays None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _sub(after: Any, before: Any) -> int | None:
    """after - before, or None when either is unknown (unknown is never 0)."""
    a, b = _int_or_none(after), _int_or_none(before)
    if a is None or b is None:
        return None
    return a - b


def _parse_id(entry_id: Any) -> tuple[int, int] | None:
    """A stream entry ID "ms-seq" as a comparable tuple; None when absent or malformed."""
    if not isinstance(entry_id, str) or not entry_id:
        return None
    ms, _, seq = entry_id.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return None


def _id_advanced(before: Any, after: Any) -> bool:
    b, a = _parse_id(before), _parse_id(after)
    if a is None:
        return False
    if b is None:
        return a > (0, 0)
    return a > b


def _mapping(value: Any) -> Mapping:
    return value if isinstance(value, Mapping) else {}


def _streams_of(result: Any) -> Mapping:
    return _mapping(_mapping(result).get("streams"))


def _time_ms(result: Any) -> int | None:
    return _int_or_none(_mapping(_mapping(result).get("server")).get("time_ms"))


def _exists(obj: Mapping) -> bool:
    """Module output says `exists`; a non-empty dict without the flag counts as present."""
    if "exists" in obj:
        return bool(obj["exists"])
    return bool(obj)


def _union(first: Iterable[str], second: Iterable[str]) -> list[str]:
    names = list(first)
    names.extend(name for name in second if name not in names)
    return names


def _entries(count: int | None) -> str:
    if count is None:
        return "an unknown number of entries"
    return f"{count} entry" if count == 1 else f"{count} entries"


def _stages(pipeline: Any) -> list[Mapping]:
    stages = _mapping(pipeline).get("stages")
    if not isinstance(stages, list):
        raise AnsibleFilterError("pipeline.stages must be a list of stages, upstream first.")
    return [stage for stage in stages if isinstance(stage, Mapping)]


def _is_consumer(stage: Mapping) -> bool:
    return bool(stage.get("input_stream"))


# ---------------------------------------------------------------------------------------
# human_ms


def human_ms(ms: Any) -> str:
    """Milliseconds as short text with the two largest units: 11776068 -> "3h 16m",
    61000 -> "1m 1s", 999 -> "999 ms", None -> "unknown"."""
    if ms is None:
        return "unknown"
    value = _int_or_none(ms)
    if value is None:
        raise AnsibleFilterError(f"human_ms expects a number of milliseconds, got {ms!r}.")
    if value < 0:
        return f"-{human_ms(-value)}"
    if value < 1000:
        return f"{value} ms"
    seconds = value // 1000
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, seconds = divmod(seconds, size)
        if amount or parts:
            parts.append((amount, unit))
    shown = parts[:2]
    while len(shown) > 1 and shown[-1][0] == 0:
        shown.pop()
    return " ".join(f"{amount}{unit}" for amount, unit in shown)


# ---------------------------------------------------------------------------------------
# stream_deltas


def _consumer_delta(before: Mapping | None, after: Mapping | None, window_ms: int | None) -> dict:
    present_before, present_after = before is not None, after is not None
    b, a = _mapping(before), _mapping(after)
    pending_before, pending_after = _int_or_none(b.get("pending")), _int_or_none(a.get("pending"))
    idle_before, idle_after = _int_or_none(b.get("idle_ms")), _int_or_none(a.get("idle_ms"))
    inactive_before, inactive_after = (
        _int_or_none(b.get("inactive_ms")),
        _int_or_none(a.get("inactive_ms")),
    )
    pending_delta = _sub(pending_after, pending_before)

    def reset(before_ms: int | None, after_ms: int | None) -> bool:
        # A consumer left alone ages by the window; any interaction restarts its clock.
        if before_ms is None or after_ms is None:
            return False
        return after_ms + IDLE_SLACK_MS < before_ms + (window_ms or 0)

    interacted = reset(idle_before, idle_after) or reset(inactive_before, inactive_after)
    if not present_after:
        advanced = False
    elif not present_before:
        # It appeared during the window: something used that name.
        advanced = True
    else:
        # A changed PEL counts too (an XACK does not reset idle); erring toward "advanced"
        # is the safe side, since an advancing consumer is never retired.
        advanced = interacted or bool(pending_delta)
    return {
        "present_before": present_before,
        "present_after": present_after,
        "pending_before": pending_before,
        "pending_after": pending_after,
        "pending_delta": pending_delta,
        "idle_ms_before": idle_before,
        "idle_ms_after": idle_after,
        "inactive_ms_after": inactive_after,
        "oldest_pending_id_before": b.get("oldest_pending_id"),
        "oldest_pending_id_after": a.get("oldest_pending_id"),
        "oldest_pending_age_ms": _int_or_none(a.get("oldest_pending_age_ms")),
        "interacted": interacted,
        "advanced": advanced,
    }


def _group_delta(before: Mapping, after: Mapping, window_ms: int | None) -> dict:
    consumers_before = _mapping(before.get("consumers"))
    consumers_after = _mapping(after.get("consumers"))
    return {
        "exists_before": _exists(before),
        "exists_after": _exists(after),
        "entries_read_before": _int_or_none(before.get("entries_read")),
        "entries_read_after": _int_or_none(after.get("entries_read")),
        "entries_read_delta": _sub(after.get("entries_read"), before.get("entries_read")),
        "lag_before": _int_or_none(before.get("lag")),
        "lag_after": _int_or_none(after.get("lag")),
        "lag_delta": _sub(after.get("lag"), before.get("lag")),
        "pending_before": _int_or_none(before.get("pending")),
        "pending_after": _int_or_none(after.get("pending")),
        "pending_delta": _sub(after.get("pending"), before.get("pending")),
        "last_delivered_id_before": before.get("last_delivered_id"),
        "last_delivered_id_after": after.get("last_delivered_id"),
        "last_delivered_id_advanced": _id_advanced(
            before.get("last_delivered_id"), after.get("last_delivered_id")
        ),
        "consumers": {
            name: _consumer_delta(consumers_before.get(name), consumers_after.get(name), window_ms)
            for name in _union(consumers_before, consumers_after)
        },
    }


def _stream_delta(before: Mapping, after: Mapping, window_ms: int | None) -> dict:
    added_delta = _sub(after.get("entries_added"), before.get("entries_added"))
    length_delta = _sub(after.get("length"), before.get("length"))
    id_changed = before.get("last_entry_id") != after.get("last_entry_id")
    if added_delta is not None:
        added = max(added_delta, 0)
    elif _id_advanced(before.get("last_entry_id"), after.get("last_entry_id")):
        # Without entries_added (Redis < 7) the length is the best count left; a trimmed
        # stream may hide some, so at least one entry is counted.
        added = max(length_delta or 0, 1)
    else:
        added = max(length_delta or 0, 0)
    groups_before = _mapping(before.get("groups"))
    groups_after = _mapping(after.get("groups"))
    return {
        "exists_before": _exists(before),
        "exists_after": _exists(after),
        "length_before": _int_or_none(before.get("length")),
        "length_after": _int_or_none(after.get("length")),
        "length_delta": length_delta,
        "entries_added_before": _int_or_none(before.get("entries_added")),
        "entries_added_after": _int_or_none(after.get("entries_added")),
        "entries_added_delta": added_delta,
        "last_entry_id_before": before.get("last_entry_id"),
        "last_entry_id_after": after.get("last_entry_id"),
        "last_entry_id_changed": id_changed,
        "added": added,
        "grew": added > 0,
        "groups": {
            name: _group_delta(_mapping(groups_before.get(name)), _mapping(groups_after.get(name)), window_ms)
            for name in _union(groups_before, groups_after)
        },
    }


def stream_deltas(before: Mapping, after: Mapping) -> dict:
    """What changed between two `redis_stream_info` results.

    Returns `{window_ms, streams: {stream: {exists_before, exists_after, length_*,
    entries_added_*, last_entry_id_*, last_entry_id_changed, added, grew, groups: {group:
    {exists_*, entries_read_*, lag_*, pending_*, last_delivered_id_*,
    last_delivered_id_advanced, consumers: {name: {present_before, present_after,
    pending_*, idle_ms_*, inactive_ms_after, oldest_pending_id_*, oldest_pending_age_ms,
    interacted, advanced}}}}}}}`. Every `*_delta` is null when either side is unknown.
    """
    window_ms = _sub(_time_ms(after), _time_ms(before))
    streams_before, streams_after = _streams_of(before), _streams_of(after)
    return {
        "window_ms": window_ms,
        "time_ms_before": _time_ms(before),
        "time_ms_after": _time_ms(after),
        "streams": {
            name: _stream_delta(
                _mapping(streams_before.get(name)), _mapping(streams_after.get(name)), window_ms
            )
            for name in _union(streams_before, streams_after)
        },
    }


# ---------------------------------------------------------------------------------------
# stage_verdicts


def _service_state(unit: str | None, services: Mapping | None) -> Mapping | None:
    if not unit or not isinstance(services, Mapping):
        return None
    for key in (unit, f"{unit}.service"):
        if isinstance(services.get(key), Mapping):
            return services[key]
    return None


def _service_problem(unit: str, state: Mapping | None) -> str | None:
    """Why the unit is not running, or None. `active` alone is not trusted: an active unit
    without a main process is not running anything."""
    if state is None:
        return None
    active, sub = state.get("active_state"), state.get("sub_state")
    sub_text = f" ({sub})" if sub else ""
    if state.get("load_state") == "not-found":
        return f"unit {unit} is not installed"
    if active != "active":
        return f"unit {unit} is {active or 'in an unknown state'}{sub_text}"
    if _int_or_none(state.get("main_pid")) == 0:
        return f"unit {unit} is active{sub_text} but has no main process"
    return None


def _process_stopped(unit: str, state: Mapping | None) -> str | None:
    """Why an active unit does nothing although systemd says it runs: its main process is
    stopped (SIGSTOP, the seed's hang), or None."""
    if state is None or not state.get("process_stopped"):
        return None
    return (
        f"unit {unit} is {state.get('active_state')} ({state.get('sub_state')}) but its main process "
        f"{state.get('main_pid')} is stopped ({state.get('process_state')}): it does nothing until "
        "SIGCONT or a restart"
    )


def _governor_limited(governor: Mapping | None) -> bool:
    if not governor:
        return False
    flags = ("over_limit", "at_limit", "blocked")
    if any(flag in governor for flag in flags):
        return any(bool(governor.get(flag)) for flag in flags)
    count, limit = _int_or_none(governor.get("count")), _int_or_none(governor.get("limit"))
    return count is not None and limit is not None and count >= limit


def _governor_text(governor: Mapping, spec: Mapping) -> str:
    count_field = spec.get("count_field") or "count"
    limit_field = spec.get("limit_field") or "limit"
    key = f" in {spec['key']}" if spec.get("key") else ""
    count, limit = governor.get("count"), governor.get("limit")
    over = governor.get("over_limit")
    if over is None:
        known = _int_or_none(count) is not None and _int_or_none(limit) is not None
        over = known and _int_or_none(count) > _int_or_none(limit)
    relation = "over" if over else "at"
    return f"governor counter {count_field}={count} is {relation} its limit {limit_field}={limit}{key}"


def _window_text(window_ms: int | None) -> str:
    return f"the {human_ms(window_ms)} window" if window_ms is not None else "the window"


def _base_verdict(stage: Mapping, window_ms: int | None, service: Mapping | None) -> dict:
    return {
        "stage": stage.get("name"),
        "unit": stage.get("unit"),
        "verdict": OK,
        "reason": "",
        "needs_restart": False,
        "role": "consumer" if _is_consumer(stage) else "producer",
        "input_stream": stage.get("input_stream"),
        "group": stage.get("group"),
        "consumer": stage.get("consumer"),
        "output_stream": stage.get("output_stream"),
        "window_ms": window_ms,
        "service": dict(service) if service is not None else None,
        "output_grew": False,
        "output_added": 0,
        "input_grew": None,
        "lag": None,
        "lag_before": None,
        "pending": None,
        "pending_before": None,
        "entries_read_delta": None,
        "consumer_present": None,
        "consumer_pending": None,
        "consumer_idle_ms": None,
        "consumer_inactive_ms": None,
        "oldest_pending_id": None,
        "oldest_pending_age_ms": None,
        "dead_consumers": [],
        "empty_consumers": [],
        "silent_consumers": [],
        "governor": None,
        # How the verdict was reached: "window" (two snapshots a window apart) or "snapshot" (one
        # snapshot, the server's and the kernel's clocks); `decided` is false when one snapshot
        # could not tell and the window must judge.
        "evidence": "window",
        "decided": True,
        # One snapshot only: other consumers holding entries too recently delivered to call
        # them dead or alive; the verification window judges them.
        "unproven_holders": [],
    }


def _producer_verdict(stage: Mapping, record: dict, governor: Mapping | None, spec: Mapping) -> None:
    problem = _service_problem(record["unit"], record["service"])
    limited = bool(stage.get("governed")) and _governor_limited(governor)
    if stage.get("governed") and governor is not None:
        record["governor"] = dict(governor)
    output = record["output_stream"]
    if problem:
        extra = f"; {_governor_text(governor, spec)}" if limited and governor else ""
        record.update(verdict=STOPPED, reason=f"{problem}{extra}")
    elif record["output_grew"]:
        record["reason"] = (
            f"producing: {output} grew by {_entries(record['output_added'])} in "
            f"{_window_text(record['window_ms'])}"
        )
    elif limited and governor:
        record.update(
            verdict=BLOCKED,
            reason=f"{output} did not grow in {_window_text(record['window_ms'])}: "
            f"{_governor_text(governor, spec)}",
        )
    else:
        why = (
            "the governor is below its limit"
            if stage.get("governed") and governor
            else "nothing holds it back"
        )
        record["reason"] = f"quiet: {output} did not grow in {_window_text(record['window_ms'])}; {why}"


def _dead_consumers(
    group_after: Mapping, group_delta: Mapping, live: str | None, window_ms: int | None
) -> tuple[list, list, list]:
    """The group's consumers other than the stage's live one, judged on what the server's
    own clocks prove across the window: `(dead, empty, silent)`.

    Dead: holds entries and is stuck on them. It was there at both ends of the window and did
    not advance (its pending count did not change and its clock was not reset: on Redis 7.0
    `idle` restarts only when entries are delivered to it, from 7.2 on any read), and its
    oldest pending entry was not delivered, re-read or claimed during the window
    (`oldest_pending_idle_ms`, XPENDING's per-entry delivery clock, at least the window). A
    live consumer that reads, re-reads its PEL or acknowledges resets or shrinks one of them.

    Empty: holds nothing (every such name). Idle time proves nothing about them: on Redis 7.0
    an empty XREADGROUP does not reset it (a consumer polling every 200 ms looks idle), and
    from 7.2 a read blocked on an empty stream does not either.

    Silent: the empty ones proven not to read: entries waited undelivered for the group all
    through the window (lag above 0 at both ends and entries-read flat, so the backlog never
    emptied) and the consumer's clock was not reset (idle at least the window). A read with
    `>` would have been served (Redis never leaves a `>` read blocked while entries wait
    undelivered) and a read with `0` resets the clock on every version, so it made no read in
    the window."""
    dead, empty, silent = [], [], []
    deltas = _mapping(group_delta.get("consumers"))
    lags = (_int_or_none(group_delta.get("lag_before")), _int_or_none(group_delta.get("lag_after")))
    backlog_stood = (
        None not in lags and min(lags) > 0 and _int_or_none(group_delta.get("entries_read_delta")) == 0
    )
    for name, info in _mapping(group_after.get("consumers")).items():
        if name == live:
            continue
        info = _mapping(info)
        delta = _mapping(deltas.get(name))
        still = bool(delta.get("present_before")) and not delta.get("advanced")
        pending = _int_or_none(info.get("pending")) or 0
        if pending == 0:
            empty.append(name)
            idle = _int_or_none(info.get("idle_ms"))
            if still and backlog_stood and idle is not None and idle >= (window_ms or 0):
                silent.append(
                    {
                        "name": name,
                        "idle_ms": idle,
                        "inactive_ms": _int_or_none(info.get("inactive_ms")),
                    }
                )
            continue
        delivered_ms = _int_or_none(info.get("oldest_pending_idle_ms"))
        if not still or delivered_ms is None or delivered_ms < (window_ms or 0):
            continue  # reading, acknowledging, or its oldest entry was delivered just now
        dead.append(_dead_record(name, info, pending, delivered_ms))
    return dead, empty, silent


def _dead_record(name: str, info: Mapping, pending: int, delivered_ms: int) -> dict:
    """A dead consumer as verdicts list it (`dead_consumers`), whichever definition found it."""
    return {
        "name": name,
        "pending": pending,
        "idle_ms": _int_or_none(info.get("idle_ms")),
        "oldest_pending_age_ms": _int_or_none(info.get("oldest_pending_age_ms")),
        "oldest_pending_idle_ms": delivered_ms,
        "oldest_pending_id": info.get("oldest_pending_id"),
        "oldest_pending_deliveries": _int_or_none(info.get("oldest_pending_deliveries")),
        "max_delivery_count": _int_or_none(info.get("max_delivery_count")),
    }


def _dead_text(dead: list, live: str | None) -> str:
    return "; ".join(
        f"{_entries(d['pending'])} pending on consumer {d['name']} (not the live consumer {live}), "
        f"oldest {human_ms(d['oldest_pending_age_ms'])} old"
        for d in dead
    )


def _consumer_verdict(
    record: dict,
    stream_after: Mapping,
    stream_delta: Mapping,
    stall_idle_ms: int,
    lag_tolerance: int,
) -> None:
    unit, source, group, live = (
        record["unit"],
        record["input_stream"],
        record["group"],
        record["consumer"],
    )
    window = _window_text(record["window_ms"])
    record["input_grew"] = bool(stream_delta.get("grew"))
    group_after = _mapping(_mapping(stream_after.get("groups")).get(group))
    group_delta = _mapping(_mapping(stream_delta.get("groups")).get(group))

    problem = _service_problem(unit, record["service"])
    if problem is None and not _exists(stream_after):
        problem = f"input stream {source} does not exist"
    elif problem is None and not _exists(group_after):
        problem = f"group {group} does not exist on {source}"
    if not _exists(group_after):
        if problem:
            record.update(verdict=STOPPED, reason=problem)
        return

    lag = _int_or_none(group_after.get("lag"))
    live_info = _mapping(group_after.get("consumers")).get(live)
    live_delta = _mapping(_mapping(group_delta.get("consumers")).get(live))
    live_pending = _int_or_none(_mapping(live_info).get("pending")) or 0
    age = _int_or_none(_mapping(live_info).get("oldest_pending_age_ms"))
    idle = _int_or_none(_mapping(live_info).get("idle_ms"))
    inactive = _int_or_none(_mapping(live_info).get("inactive_ms"))
    record.update(
        lag=lag,
        lag_before=group_delta.get("lag_before"),
        pending=_int_or_none(group_after.get("pending")),
        pending_before=group_delta.get("pending_before"),
        entries_read_delta=group_delta.get("entries_read_delta"),
        consumer_present=live_info is not None,
        consumer_pending=live_pending if live_info is not None else None,
        consumer_idle_ms=idle,
        consumer_inactive_ms=inactive,
        oldest_pending_id=_mapping(live_info).get("oldest_pending_id"),
        oldest_pending_age_ms=age,
    )
    dead, empty, silent = _dead_consumers(group_after, group_delta, live, record["window_ms"])
    record.update(dead_consumers=dead, empty_consumers=empty, silent_consumers=silent)

    if lag is not None:
        undelivered: bool | None = lag > 0
    else:
        delivered = _parse_id(group_after.get("last_delivered_id"))
        newest = _parse_id(stream_after.get("last_entry_id"))
        undelivered = None if delivered is None or newest is None else delivered < newest
    backlog_text = f"lag {lag}" if lag is not None else "lag unknown"
    if lag is not None and record["lag_before"] is not None and record["lag_before"] != lag:
        trend = "growing" if lag > record["lag_before"] else "shrinking"
        backlog_text += f" (was {record['lag_before']}, {trend})"
    pel_aged = live_pending > 0 and age is not None and age > stall_idle_ms
    pel_unchanged = live_delta.get("oldest_pending_id_before") == live_delta.get("oldest_pending_id_after")
    waits = (lag or 0) > 0 or (lag is None and (live_pending > 0 or bool(undelivered))) or pel_aged
    read_delta = record["entries_read_delta"]
    reading = (
        read_delta > 0 if read_delta is not None else bool(group_delta.get("last_delivered_id_advanced"))
    )
    read_text = (
        f"read {_entries(read_delta)} in {window}"
        if read_delta is not None
        else f"its last delivered id {'moved' if reading else 'did not move'} in {window}"
    )
    # Redis >= 7.2 resets idle on empty reads too; inactive keeps "last successful read".
    since_read = inactive if inactive is not None else idle
    pel_text = f"{_entries(live_pending)} pending on {live}, oldest {human_ms(age)} old"

    if problem:
        verdict, reason = STOPPED, problem
    elif live_info is None:
        if (lag or 0) > 0 or undelivered:
            verdict = STOPPED
            reason = f"live consumer {live} is absent from group {group} while entries wait ({backlog_text})"
        else:
            verdict, reason = (
                OK,
                f"quiet: nothing waits in group {group} ({backlog_text}); {live} not registered yet",
            )
    elif not waits:
        if reading:
            verdict, reason = (
                OK,
                f"flowing: {read_text}, {backlog_text}, {_entries(live_pending)} in flight",
            )
        else:
            verdict = OK
            reason = (
                f"quiet: nothing waits ({backlog_text}, nothing stuck in the PEL); "
                f"{live} idle {human_ms(since_read)} is normal on a quiet stream"
            )
    elif reading:
        if pel_aged and pel_unchanged:
            verdict = STALLED
            reason = (
                f"{live} reads new entries but does not finish old ones: {pel_text}, unchanged across "
                f"{window}; they are replayed only when the service restarts"
            )
        elif (lag is not None and lag > lag_tolerance) or (lag is None and undelivered):
            verdict, reason = LAGGING, f"behind but reading: {backlog_text}; {read_text}"
        else:
            verdict, reason = OK, f"flowing: {read_text}, {backlog_text}"
    else:
        waiting = f"{backlog_text}" + (f", {pel_text}" if live_pending else "")
        if since_read is not None and since_read > stall_idle_ms:
            verdict = STALLED
            reason = (
                f"work waits ({waiting}) but {live} has not read for {human_ms(since_read)} "
                f"and entries-read did not move in {window}"
            )
        elif record["window_ms"] is not None and record["window_ms"] >= stall_idle_ms:
            verdict = STALLED
            reason = f"work waits ({waiting}) but {live} read nothing in {window}"
        else:
            verdict = LAGGING
            reason = (
                f"work waits ({waiting}); {live} read {human_ms(since_read)} ago but nothing in "
                f"{window}, too short to call it stalled"
            )

    if dead:
        if verdict in (OK, LAGGING):
            verdict, reason = STALLED, f"{_dead_text(dead, live)}; live consumer: {reason}"
        else:
            reason = f"{reason}; {_dead_text(dead, live)}"
    record.update(verdict=verdict, reason=reason)


def stage_verdicts(
    before: Mapping,
    after: Mapping,
    pipeline: Mapping,
    services: Mapping | None = None,
    governor: Mapping | None = None,
    stall_idle_ms: int = DEFAULT_STALL_IDLE_MS,
    lag_tolerance: int = 0,
) -> dict:
    """A verdict per stage of `pipeline.stages`: `{stage_name: {verdict, reason, stage, unit,
    role, input_stream, group, consumer, output_stream, window_ms, service, output_grew,
    output_added, input_grew, lag, lag_before, pending, pending_before, entries_read_delta,
    consumer_present, consumer_pending, consumer_idle_ms, consumer_inactive_ms,
    oldest_pending_id, oldest_pending_age_ms, dead_consumers: [{name, pending, idle_ms,
    oldest_pending_age_ms, oldest_pending_idle_ms, oldest_pending_id, oldest_pending_deliveries,
    max_delivery_count}],
    empty_consumers: [name], silent_consumers: [{name, idle_ms, inactive_ms}], governor,
    needs_restart}}`.

    The one definition of a dead consumer (consumer_recovery_plan reclaims exactly these):
    `dead_consumers` hold entries, did not advance across the window and their oldest pending
    entry was not delivered during it; `silent_consumers` hold nothing and provably made no
    read in the window (entries waited undelivered all through it). Idle time alone proves
    neither: on Redis 7.0 an empty read does not reset it. A stage with a dead consumer is
    STALLED (or STOPPED); `empty_consumers` lists every other consumer holding nothing.

    `services`: `{unit: {active_state, sub_state, main_pid}}`; a unit absent from it is not
    judged on its service. `governor`: the redis_governor state `{exists, date, count,
    limit, today, over_limit, at_limit, blocked}` (any of the three flags blocks).
    `lag_tolerance`: a reading consumer this many entries behind or fewer is caught up
    (a busy stream is rarely at lag 0 at the instant of a snapshot).
    """
    stall = _int_or_none(stall_idle_ms)
    tolerance = _int_or_none(lag_tolerance)
    if stall is None or stall < 0:
        raise AnsibleFilterError(
            f"stall_idle_ms must be a number of milliseconds >= 0, got {stall_idle_ms!r}."
        )
    if tolerance is None or tolerance < 0:
        raise AnsibleFilterError(f"lag_tolerance must be a number of entries >= 0, got {lag_tolerance!r}.")
    deltas = stream_deltas(before, after)
    streams_after = _streams_of(after)
    governor_spec = _mapping(_mapping(pipeline).get("governor"))
    verdicts: dict[str, dict] = {}
    for stage in _stages(pipeline):
        record = _base_verdict(stage, deltas["window_ms"], _service_state(stage.get("unit"), services))
        output_delta = _mapping(deltas["streams"].get(record["output_stream"]))
        record["output_grew"] = bool(output_delta.get("grew"))
        record["output_added"] = output_delta.get("added", 0)
        if _is_consumer(stage):
            _consumer_verdict(
                record,
                _mapping(streams_after.get(record["input_stream"])),
                _mapping(deltas["streams"].get(record["input_stream"])),
                stall,
                tolerance,
            )
        else:
            _producer_verdict(stage, record, governor, governor_spec)
        record["needs_restart"] = record["verdict"] in RESTART_VERDICTS
        verdicts[str(record["stage"])] = record
    return verdicts


# ---------------------------------------------------------------------------------------
# snapshot_verdicts: what one snapshot proves


def _snapshot_dead(group: Mapping, live: str | None, stall_idle_ms: int) -> tuple[list, list]:
    """The one-snapshot definition of a dead consumer (the window's is in _dead_consumers):
    another consumer than the live one that holds entries, whose oldest pending entry was
    delivered at least stall_idle_ms ago (XPENDING's per-entry clock: a re-read or a claim
    resets it) and that has not read for as long (`inactive` where the server has it, else
    `idle`). Returns `(dead, empty)`."""
    dead, empty = [], []
    for name, info in _mapping(group.get("consumers")).items():
        if name == live:
            continue
        info = _mapping(info)
        pending = _int_or_none(info.get("pending")) or 0
        if pending == 0:
            empty.append(name)
            continue
        delivered_ms = _int_or_none(info.get("oldest_pending_idle_ms"))
        inactive = _int_or_none(info.get("inactive_ms"))
        since_read = inactive if inactive is not None else _int_or_none(info.get("idle_ms"))
        if delivered_ms is None or since_read is None or min(delivered_ms, since_read) < stall_idle_ms:
            continue
        dead.append(_dead_record(name, info, pending, delivered_ms))
    return dead, empty


def _snapshot_consumer_verdict(record: dict, stream: Mapping, stall: int) -> None:
    unit, source, group_name, live = (
        record["unit"],
        record["input_stream"],
        record["group"],
        record["consumer"],
    )
    group = _mapping(_mapping(stream.get("groups")).get(group_name))
    problem = _service_problem(unit, record["service"])
    if problem is None and not _exists(stream):
        problem = f"input stream {source} does not exist"
    elif problem is None and not _exists(group):
        problem = f"group {group_name} does not exist on {source}"
    if problem:
        record.update(verdict=STOPPED, reason=problem)
        return
    lag = _int_or_none(group.get("lag"))
    live_info = _mapping(group.get("consumers")).get(live)
    info = _mapping(live_info)
    live_pending = _int_or_none(info.get("pending")) or 0
    idle, inactive = _int_or_none(info.get("idle_ms")), _int_or_none(info.get("inactive_ms"))
    since_read = inactive if inactive is not None else idle
    waited = _int_or_none(group.get("oldest_undelivered_age_ms"))
    delivered_ms = _int_or_none(info.get("oldest_pending_idle_ms"))
    record.update(
        lag=lag,
        pending=_int_or_none(group.get("pending")),
        consumer_present=live_info is not None,
        consumer_pending=live_pending if live_info is not None else None,
        consumer_idle_ms=idle,
        consumer_inactive_ms=inactive,
        oldest_pending_id=info.get("oldest_pending_id"),
        oldest_pending_age_ms=_int_or_none(info.get("oldest_pending_age_ms")),
    )
    dead, empty = _snapshot_dead(group, live, stall)
    record.update(dead_consumers=dead, empty_consumers=empty)

    # What the server's clocks say has waited past the threshold: an undelivered entry (no
    # consumer of the group read with `>` for that long), or the live consumer's oldest
    # pending entry (delivered that long ago and neither acknowledged nor re-read).
    # A lag without its oldest undelivered entry (an ACL without XRANGE, a server before 6.2):
    # how long it waited is unknown, and only the window can tell.
    undelivered_known = not (lag is not None and lag > 0 and waited is None)
    waits_long = waited is not None and waited > stall
    pel_long = live_pending > 0 and delivered_ms is not None and delivered_ms > stall
    backlog = f"lag {lag}" if lag is not None else "lag unknown"
    if waited is not None:
        backlog += f", oldest undelivered entry waited {human_ms(waited)}"
    threshold = human_ms(stall)
    stopped = _process_stopped(unit, record["service"])
    if stopped:
        verdict, reason = STALLED, stopped
    elif live_info is None:
        if (lag or 0) > 0:
            verdict, reason = (
                STOPPED,
                f"live consumer {live} is absent from group {group_name} while entries wait ({backlog})",
            )
        else:
            verdict, reason = (
                OK,
                f"quiet: nothing waits in group {group_name} ({backlog}); {live} not registered yet",
            )
    elif (waits_long or pel_long) and since_read is not None and since_read > stall:
        held = (
            f", {_entries(live_pending)} pending on {live} delivered {human_ms(delivered_ms)} ago"
            if pel_long
            else ""
        )
        verdict = STALLED
        reason = (
            f"work has waited past {threshold} ({backlog}{held}) and {live} has not read for "
            f"{human_ms(since_read)}"
        )
    elif not waits_long and not pel_long and undelivered_known:
        verdict = OK
        reason = f"nothing has waited past {threshold}: {backlog}, {_entries(live_pending)} pending on {live}"
    else:
        verdict, reason = LAGGING, f"behind: {backlog}; {live} read {human_ms(since_read)} ago"
        record["decided"] = False
    if dead:
        if verdict in (OK, LAGGING):
            verdict, reason = STALLED, f"{_dead_text(dead, live)}; live consumer: {reason}"
            record["decided"] = True
        else:
            reason = f"{reason}; {_dead_text(dead, live)}"
    # Another consumer holding entries delivered less than the threshold ago may be a live
    # worker or one that died a moment ago. The stage's own verdict stands (acting on it need
    # not wait); the holders are `unproven_holders`, judged over the verification window
    # (stage_verdicts' definition), which is where a run that acts finds them dead or alive.
    dead_names = {d["name"] for d in dead}
    unproven = [
        name
        for name, info in _mapping(group.get("consumers")).items()
        if name != live and name not in dead_names and (_int_or_none(_mapping(info).get("pending")) or 0) > 0
    ]
    if unproven:
        record["unproven_holders"] = unproven
        holders = ", ".join(unproven)
        reason = (
            f"{reason}; {holders} also hold entries, too recently delivered to call them dead "
            "(the verification window tells)"
        )
    record.update(verdict=verdict, reason=reason)


def _snapshot_producer_verdict(stage: Mapping, record: dict, governor: Mapping | None, spec: Mapping) -> None:
    problem = _service_problem(record["unit"], record["service"])
    stopped = _process_stopped(record["unit"], record["service"])
    limited = bool(stage.get("governed")) and _governor_limited(governor)
    if stage.get("governed") and governor is not None:
        record["governor"] = dict(governor)
    if problem:
        extra = f"; {_governor_text(governor, spec)}" if limited and governor else ""
        record.update(verdict=STOPPED, reason=f"{problem}{extra}")
    elif stopped:
        record.update(verdict=STALLED, reason=stopped)
    elif limited and governor:
        record.update(verdict=BLOCKED, reason=f"{_governor_text(governor, spec)}: it produces nothing today")
    else:
        why = (
            "the governor is below its limit"
            if stage.get("governed") and governor
            else "nothing holds it back"
        )
        record["reason"] = f"running; {why}"


def snapshot_verdicts(
    snapshot: Mapping, pipeline: Mapping, stall_idle_ms: int = DEFAULT_STALL_IDLE_MS
) -> dict:
    """A verdict per stage from ONE pipeline_snapshot result (streams, units, governor), where
    the server's and the kernel's clocks prove it; the same record as stage_verdicts, with
    `evidence: snapshot` and `decided` false where only a window can tell.

    Proven by one snapshot: STOPPED (a unit not active, without a main process, a missing
    stream or group, the live consumer absent while entries wait); STALLED (a main process
    stopped behind an active unit; work that has waited past stall_idle_ms - an undelivered
    entry or the live consumer's oldest pending one - while the live consumer has not read for
    as long; a dead consumer holding entries); BLOCKED (a governed producer whose governor is at
    or over its limit); OK (nothing has waited past stall_idle_ms, quiet or flowing). Not proven:
    a consumer that read recently while old work waits (draining or stuck reading new entries
    only): LAGGING with `decided: false`. Another consumer than the live one holding entries
    delivered less than stall_idle_ms ago (dead, or a live worker) leaves the stage's verdict as
    it is and is listed in `unproven_holders`: a run acts on what is proven first and judges
    those holders over its verification window (`unproven_holders` filter; an OK stage with
    one is not "nothing to do").
    """
    stall = _int_or_none(stall_idle_ms)
    if stall is None or stall < 0:
        raise AnsibleFilterError(
            f"stall_idle_ms must be a number of milliseconds >= 0, got {stall_idle_ms!r}."
        )
    snapshot = _mapping(snapshot)
    streams = _streams_of(snapshot)
    units = _mapping(snapshot.get("units"))
    governor = snapshot.get("governor")
    governor_spec = _mapping(_mapping(pipeline).get("governor"))
    verdicts: dict[str, dict] = {}
    for stage in _stages(pipeline):
        record = _base_verdict(stage, None, _service_state(stage.get("unit"), units))
        record["evidence"] = "snapshot"
        if _is_consumer(stage):
            _snapshot_consumer_verdict(record, _mapping(streams.get(record["input_stream"])), stall)
        else:
            _snapshot_producer_verdict(
                stage, record, governor if isinstance(governor, Mapping) else None, governor_spec
            )
        record["needs_restart"] = record["verdict"] in RESTART_VERDICTS
        verdicts[str(record["stage"])] = record
    return verdicts


def snapshot_decides(verdicts: Mapping) -> bool:
    """Whether one snapshot decided every stage's verdict (no window is needed before acting)."""
    return all(bool(_mapping(v).get("decided", True)) for v in _mapping(verdicts).values())


def unproven_holders(verdicts: Mapping | None) -> dict[str, list[str]]:
    """`{stage: [consumer, ...]}` for the stages where one snapshot found other consumers
    holding entries too recently delivered to call them dead (snapshot_verdicts)."""
    return {
        str(stage): list(_mapping(v).get("unproven_holders") or [])
        for stage, v in _mapping(verdicts).items()
        if _mapping(v).get("unproven_holders")
    }


def holders_proven_dead(verdicts: Mapping | None, pipeline: Mapping) -> dict[str, list[str]]:
    """`{stage: [consumer, ...]}`: per consumer stage, in pipeline order, the consumers other
    than its live one that verdicts over a window (stage_verdicts) prove dead while holding
    entries (`dead_consumers`)."""
    verdicts = _mapping(verdicts)
    proven: dict[str, list[str]] = {}
    for stage in _stages(pipeline):
        record = _mapping(verdicts.get(stage.get("name")))
        names = [str(_mapping(d).get("name")) for d in record.get("dead_consumers") or []]
        if _is_consumer(stage) and names:
            proven[str(stage.get("name"))] = names
    return proven


def _kept(snapshot: Mapping) -> dict:
    """What a phase keeps of a snapshot as its delta's end: the server, the streams, what is
    missing - nothing of the connection."""
    return {
        "server": snapshot.get("server"),
        "streams": snapshot.get("streams"),
        "missing": snapshot.get("missing") or [],
    }


def evidence_judgement(
    first: Mapping,
    last: Mapping,
    pipeline: Mapping,
    one_snapshot: bool = True,
    stall_idle_ms: int = DEFAULT_STALL_IDLE_MS,
    lag_tolerance: int = 0,
) -> dict:
    """One evidence phase's judgement, every derived value computed once: `{t0, t1, services,
    governor, deltas, one_snapshot, verdicts, stop_point, layers}`.

    `first` and `last` are the phase's two snapshots (pipeline_snapshot results; the same one
    when no window was waited): the delta check runs from `first` to `last`, and the units and
    the governor are `last`'s. With `one_snapshot`, the verdicts are `first`'s own
    (snapshot_verdicts) when its clocks decide every stage; otherwise they are judged over the
    window (stage_verdicts). `governor` is shaped as redis_governor returns it (the governor,
    and today's results when they were counted), {} without one."""
    first, last = _mapping(first), _mapping(last)
    t0, t1 = _kept(first), _kept(last)
    services = _mapping(last.get("units"))
    state = last.get("governor")
    governor = (
        {
            "governor": state,
            "results_today": state.get("results_today"),
            "counted_stream_exists": state.get("counted_stream_exists"),
        }
        if isinstance(state, Mapping)
        else {}
    )
    one = snapshot_verdicts(first, pipeline, stall_idle_ms) if one_snapshot else None
    if one is not None and not snapshot_decides(one):
        one = None
    verdicts = (
        one
        if one is not None
        else stage_verdicts(
            t0, t1, pipeline, services, governor.get("governor"), stall_idle_ms=stall_idle_ms,
            lag_tolerance=lag_tolerance,
        )
    )
    return {
        "t0": t0,
        "t1": t1,
        "services": dict(services),
        "governor": governor,
        "deltas": stream_deltas(t0, t1),
        "one_snapshot": one,
        "verdicts": verdicts,
        "stop_point": stop_point(verdicts, pipeline),
        "layers": pipeline_layers(verdicts, pipeline),
    }


# ---------------------------------------------------------------------------------------
# stop point, layers, restart order


def policy_blocked(verdict: Mapping | None) -> bool:
    """BLOCKED by a governor exactly at its daily limit: the day's policy, not a fault. The
    governor never writes a count above its limit, so only a count over it is leftover state
    for the recovery to reset; at the limit there is nothing any step could heal."""
    verdict = _mapping(verdict)
    governor = _mapping(verdict.get("governor"))
    at_limit = bool(governor.get("at_limit")) and not governor.get("over_limit")
    return verdict.get("verdict") == BLOCKED and at_limit


def stop_point(verdicts: Mapping, pipeline: Mapping) -> dict:
    """The first stage, in pipeline order, whose verdict is not OK and that a recovery could
    heal: `{stage, verdict, reason}`. A stage BLOCKED by its governor exactly at the limit
    (`policy_blocked`) is passed over. None: `{stage: None, verdict: "OK", reason}`, the
    reason naming the stages held at the limit, if any (the run then has nothing to do)."""
    held: list[str] = []
    for stage in _stages(pipeline):
        verdict = _mapping(_mapping(verdicts).get(stage.get("name")))
        if policy_blocked(verdict):
            held.append(str(stage.get("name")))
        elif verdict and verdict.get("verdict") != OK:
            return {
                "stage": stage.get("name"),
                "verdict": verdict.get("verdict"),
                "reason": verdict.get("reason"),
            }
    if held:
        reason = (
            f"every stage is OK but {', '.join(held)}, held by its governor at the daily limit "
            "(the day's policy)"
        )
        return {"stage": None, "verdict": OK, "reason": reason}
    return {"stage": None, "verdict": OK, "reason": "every stage is OK"}


def pipeline_layers(verdicts: Mapping, pipeline: Mapping) -> dict:
    """The incident's three layers: `{stuck_consumers: [stage], restart_behind: [stage],
    blocked_producer: stage | None}`. Stuck consumers are consumer stages STALLED or
    STOPPED; restart_behind are the other consumer stages downstream of the first stuck one;
    blocked_producer is the first BLOCKED stage."""
    stuck: list[str] = []
    behind: list[str] = []
    blocked = None
    for stage in _stages(pipeline):
        name = stage.get("name")
        verdict = _mapping(_mapping(verdicts).get(name)).get("verdict")
        if verdict == BLOCKED and blocked is None:
            blocked = name
        if not _is_consumer(stage):
            continue
        if verdict in RESTART_VERDICTS:
            stuck.append(name)
        elif stuck:
            behind.append(name)
    return {"stuck_consumers": stuck, "restart_behind": behind, "blocked_producer": blocked}


def restart_order(pipeline: Mapping, stages: Any) -> list[str]:
    """Units to restart, downstream first: the given stages plus every consumer stage
    downstream of the first consumer stage given (a stage behind a stuck consumer is
    restarted too). A producer alone does not pull in its consumers. `stages` is a list of
    stage names (a single name, or the stage_verdicts dict, whose needs_restart stages are
    taken, also work). Units are listed once."""
    if isinstance(stages, str):
        wanted = [stages]
    elif isinstance(stages, Mapping):
        wanted = [name for name, v in stages.items() if _mapping(v).get("needs_restart")]
    else:
        wanted = list(stages or [])
    ordered = _stages(pipeline)
    names = [stage.get("name") for stage in ordered]
    unknown = [name for name in wanted if name not in names]
    if unknown:
        raise AnsibleFilterError(
            f"restart_order: no stage named {', '.join(map(str, unknown))} in the pipeline."
        )
    selected = set(wanted)
    first_consumer = next(
        (i for i, stage in enumerate(ordered) if stage.get("name") in selected and _is_consumer(stage)),
        None,
    )
    units: list[str] = []
    for index in range(len(ordered) - 1, -1, -1):
        stage = ordered[index]
        behind = first_consumer is not None and index > first_consumer and _is_consumer(stage)
        unit = stage.get("unit")
        if (stage.get("name") in selected or behind) and unit and unit not in units:
            units.append(unit)
    return units


# ---------------------------------------------------------------------------------------
# pipeline helpers


def pipeline_streams(pipeline: Mapping) -> list[dict]:
    """The `streams` option of redis_stream_info for a pipeline: each input stream with its
    groups and each output stream, once, in pipeline order. A stream no stage reads from has
    no `groups` key (the module then reports all of its groups)."""
    streams: dict[str, list[str]] = {}
    for stage in _stages(pipeline):
        source, group, output = (
            stage.get("input_stream"),
            stage.get("group"),
            stage.get("output_stream"),
        )
        if source:
            groups = streams.setdefault(source, [])
            if group and group not in groups:
                groups.append(group)
        if output:
            streams.setdefault(output, [])
    return [
        {"stream": name, "groups": groups} if groups else {"stream": name} for name, groups in streams.items()
    ]


def _check_threshold(problems: list[str], where: str, field: str, value: Any) -> None:
    if value is None:
        return
    number = _int_or_none(value)
    if number is None:
        problems.append(f"{where}: {field} must be a whole number, got {value!r}.")
    elif number < 0:
        problems.append(f"{where}: {field} must not be negative, got {number}.")


def _stage_problems(stage: Any, index: int, previous: Mapping | None, seen: set[str]) -> list[str]:
    if not isinstance(stage, Mapping):
        return [f"pipeline.stages[{index}] must be a mapping, got {type(stage).__name__}."]
    problems: list[str] = []
    name = stage.get("name")
    where = f"stage {name}" if name else f"pipeline.stages[{index}]"
    if not name or not isinstance(name, str):
        problems.append(f"pipeline.stages[{index}] has no name.")
    elif name in seen:
        problems.append(f"stage name {name} is used by more than one stage.")
    else:
        seen.add(name)
    for field in ("unit", "output_stream"):
        if not stage.get(field):
            problems.append(f"{where} has no {field}.")
    source = stage.get("input_stream")
    if source:
        for field in ("group", "consumer"):
            if not stage.get(field):
                problems.append(f"{where} reads {source} but has no {field}.")
        if previous is not None and previous.get("output_stream") != source:
            problems.append(
                f"{where} reads {source}, not the previous stage's output_stream "
                f"{previous.get('output_stream')}."
            )
        if source == stage.get("output_stream"):
            problems.append(f"{where} writes to its own input_stream {source}.")
        if stage.get("governed"):
            problems.append(f"{where} is governed but has an input_stream: only a producer can be governed.")
    elif previous is not None:
        problems.append(f"{where} has no input_stream: only the first stage may be a producer.")
    dead_letter = stage.get("dead_letter")
    if dead_letter is not None:
        if not source:
            problems.append(f"{where} has a dead_letter policy but no input_stream to take entries from.")
        if not isinstance(dead_letter, Mapping):
            problems.append(f"{where}: dead_letter must be a mapping.")
        else:
            target = dead_letter.get("stream")
            if not target:
                problems.append(f"{where}: dead_letter has no stream.")
            elif target == source:
                problems.append(f"{where}: dead_letter stream {target} is the input_stream itself.")
            elif target == stage.get("output_stream"):
                problems.append(f"{where}: dead_letter stream {target} is the stage's output_stream.")
            if dead_letter.get("max_age_ms") is None and dead_letter.get("max_deliveries") is None:
                problems.append(f"{where}: dead_letter needs max_age_ms or max_deliveries.")
            for field in ("max_age_ms", "max_deliveries"):
                _check_threshold(problems, where, f"dead_letter.{field}", dead_letter.get(field))
    return problems


def validate_pipeline(pipeline: Any) -> list[str]:
    """Problems in a pipeline definition, one sentence each; an empty list means valid."""
    if not isinstance(pipeline, Mapping):
        return ["pipeline must be a mapping."]
    problems: list[str] = []
    if not pipeline.get("name"):
        problems.append("pipeline has no name.")
    stages = pipeline.get("stages")
    if not isinstance(stages, list) or not stages:
        problems.append("pipeline.stages must be a non-empty list of stages, upstream first.")
        return problems
    seen: set[str] = set()
    pairs: set[tuple[str, str]] = set()
    previous: Mapping | None = None
    for index, stage in enumerate(stages):
        problems.extend(_stage_problems(stage, index, previous, seen))
        if isinstance(stage, Mapping):
            pair = (stage.get("input_stream"), stage.get("group"))
            if all(pair):
                if pair in pairs:
                    problems.append(f"group {pair[1]} on {pair[0]} is used by more than one stage.")
                pairs.add(pair)
            previous = stage
    governed = [s for s in stages if isinstance(s, Mapping) and s.get("governed")]
    if governed:
        spec = pipeline.get("governor")
        if not isinstance(spec, Mapping):
            problems.append("a stage is governed but pipeline.governor is not defined.")
        else:
            for field in ("key", "count_field", "limit_field"):
                if not spec.get(field):
                    problems.append(f"pipeline.governor has no {field}.")
    return problems


class FilterModule:
    """Stream health filters: deltas, verdicts, stop point, restart order, durations."""

    def filters(self) -> dict:
        return {
            "stream_deltas": stream_deltas,
            "stage_verdicts": stage_verdicts,
            "snapshot_verdicts": snapshot_verdicts,
            "snapshot_decides": snapshot_decides,
            "evidence_judgement": evidence_judgement,
            "unproven_holders": unproven_holders,
            "holders_proven_dead": holders_proven_dead,
            "stop_point": stop_point,
            "policy_blocked": policy_blocked,
            "pipeline_layers": pipeline_layers,
            "restart_order": restart_order,
            "human_ms": human_ms,
            "pipeline_streams": pipeline_streams,
            "validate_pipeline": validate_pipeline,
        }
