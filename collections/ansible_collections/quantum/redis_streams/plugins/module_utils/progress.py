# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Whether a stage's work moved between two pipeline snapshots: the one definition, used by
# pipeline_restart (is a restarted unit working again?) and by the project's verification.
from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _mapping(value: Any) -> Mapping:
    return value if isinstance(value, Mapping) else {}


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def stream_of(snapshot: Any, name: Any) -> Mapping:
    return _mapping(_mapping(_mapping(snapshot).get("streams")).get(name))


def group_of(snapshot: Any, stage: Mapping) -> Mapping:
    stream = stream_of(snapshot, stage.get("input_stream"))
    return _mapping(_mapping(stream.get("groups")).get(stage.get("group")))


def stream_grew(before: Mapping, after: Mapping) -> bool:
    """Whether a stream (as a snapshot reports it) had entries added: entries-added where the
    server counts it (7.0 and later), else a new last id, else a longer stream."""
    added = (_int(after.get("entries_added")), _int(before.get("entries_added")))
    if None not in added:
        return added[0] > added[1]
    if after.get("last_entry_id") and after.get("last_entry_id") != before.get("last_entry_id"):
        return True
    return (_int(after.get("length")) or 0) > (_int(before.get("length")) or 0)


def stage_advanced(stage: Mapping, before: Mapping, after: Mapping) -> dict[str, Any]:
    """Whether a (restarted) stage's work moved between two snapshots: `{advanced, how}`. A
    consumer stage advances when its group's entries-read grows, its live consumer's pending
    drains, or the live consumer was seen after `before` was taken (idle reset, or it appeared);
    a producer when its output stream grows."""
    if not stage:
        return {"advanced": False, "how": "not a stage of the pipeline"}
    if not stage.get("input_stream"):
        output = stage.get("output_stream")
        grew = stream_grew(stream_of(before, output), stream_of(after, output))
        how = f"{stage.get('output_stream')} {'grew' if grew else 'did not grow'}"
        return {"advanced": grew, "how": how}
    group_before, group_after = group_of(before, stage), group_of(after, stage)
    live = stage.get("consumer")
    read = (_int(group_before.get("entries_read")), _int(group_after.get("entries_read")))
    if None not in read and read[1] > read[0]:
        return {"advanced": True, "how": f"group {stage.get('group')} read {read[1] - read[0]} entries"}
    consumer_before = _mapping(group_before.get("consumers")).get(live)
    consumer_after = _mapping(group_after.get("consumers")).get(live)
    if consumer_after is None:
        return {"advanced": False, "how": f"consumer {live} is absent from group {stage.get('group')}"}
    if consumer_before is None:
        return {"advanced": True, "how": f"consumer {live} joined group {stage.get('group')}"}
    pending = (_int(_mapping(consumer_before).get("pending")), _int(_mapping(consumer_after).get("pending")))
    if None not in pending and pending[1] < pending[0]:
        return {"advanced": True, "how": f"{live} acknowledged {pending[0] - pending[1]} pending entries"}
    elapsed = (_int(_mapping(after.get("server")).get("time_ms")) or 0) - (
        _int(_mapping(before.get("server")).get("time_ms")) or 0
    )
    idle = _int(_mapping(consumer_after).get("idle_ms"))
    if idle is not None and idle < elapsed:
        return {"advanced": True, "how": f"{live} was seen {idle} ms ago, after the restart"}
    return {"advanced": False, "how": f"{live} has not read since the restart"}


def id_pair(entry_id: Any) -> tuple[int, int] | None:
    """A stream entry id as a comparable (milliseconds, sequence) pair; None when it is not one."""
    parts = str(entry_id).split("-", 1) if entry_id is not None else []
    try:
        return (int(parts[0]), int(parts[1]) if len(parts) > 1 else 0) if parts else None
    except ValueError:
        return None


def stage_replayed(stage: Mapping, snapshot: Mapping, mark: Any) -> dict[str, Any]:
    """Whether a consumer stage's live consumer has acknowledged everything delivered at or
    before `mark` (its group's last delivered id when entries were moved to it): `{replayed,
    how}`. A PEL is ordered by id, so an oldest pending id past the mark (or none pending)
    means the restarted service replayed what was moved to it."""
    live = stage.get("consumer")
    state = _mapping(group_of(snapshot, stage).get("consumers")).get(live)
    if state is None:
        return {"replayed": False, "how": f"live consumer {live} is absent after the replay"}
    state = _mapping(state)
    oldest, limit = state.get("oldest_pending_id"), id_pair(mark)
    if oldest is not None and limit is not None and (id_pair(oldest) or (0, 0)) <= limit:
        pending = _int(state.get("pending")) or 0
        return {
            "replayed": False,
            "how": (
                f"{live} has not replayed the entries moved to it: its oldest pending entry {oldest} "
                f"({pending} {'entry' if pending == 1 else 'entries'} pending) was delivered before the "
                "second pass"
            ),
        }
    return {"replayed": True, "how": f"{live} replayed everything delivered up to {mark}"}
