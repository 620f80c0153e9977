# Server-side Lua scripts of redis_stream_reclaim, and the thin Python calls around them.
#
# Why Lua: every check-then-act step ("is this consumer still idle?", "is its PEL empty?",
# "copy to the dead-letter stream, then acknowledge") must be atomic on the server. A script
# runs without interleaving, so no other client can act between the check and the act.
#
# Why these exact commands: XAUTOCLAIM does not filter by consumer (it would take entries of
# live consumers too), so a consumer's PEL is listed with XPENDING ... <consumer> and moved
# with XCLAIM ... JUSTID (JUSTID leaves the delivery counter alone). The one exception is the
# batch script's fast path, taken only when the script has just seen, atomically, that every
# entry XAUTOCLAIM could reach belongs to the consumer being drained (see BATCH_SCRIPT).
# XGROUP DELCONSUMER drops a PEL without a word, so it is only ever called by RETIRE_SCRIPT
# after it has seen an empty PEL and an unchanged idle time, in the same atomic step.
#
# A Lua error does not roll back the writes done before it: every precondition is checked
# before the first write of a call, and a failed precondition is returned as a status word.
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ansible_collections.quantum.redis_streams.plugins.module_utils.redis_connection import remember_script

# Redis returns at most this many values to `unpack` before Lua's C stack (LUAI_MAXCSTACK,
# 8000) overflows; XCLAIM id lists are sent in chunks of this size.
UNPACK_CHUNK = 4000

# A dead-lettered entry (XRANGE + XADD + XACK) costs about this many moved entries of server
# time (bench/reclaim_bench.py); batches are cut by this weighted work, not by entry count.
DEAD_LETTER_WEIGHT = 4

# Clock slack, in ms, between TIME and XINFO's idle inside one script (they are read a few
# microseconds apart and rounded to the ms). A consumer seen less than this long ago is
# treated as active, so any interaction after selection is always detected.
GUARD_TOLERANCE_MS = 5

# Shared Lua helpers, prepended to each script.
_LUA_PRELUDE = r"""
local call = redis.call

local function now_ms()
  local t = call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function key_type(key)
  local t = call('TYPE', key)
  return t['ok'] or t
end

-- XINFO CONSUMERS as {name = {pending = n, idle = ms}}; nil when the group is missing.
local function consumers_of(stream, group)
  local reply = redis.pcall('XINFO', 'CONSUMERS', stream, group)
  if type(reply) == 'table' and reply['err'] then
    if string.find(reply['err'], '^NOGROUP') then
      return nil
    end
    -- Anything else (an ACL denial) is not a missing group: the same command again raises
    -- the server's own error, from this line, which names XINFO CONSUMERS to the module.
    call('XINFO', 'CONSUMERS', stream, group)
  end
  local out = {}
  for _, flat in ipairs(reply) do
    local c = {}
    for i = 1, #flat, 2 do
      c[flat[i]] = flat[i + 1]
    end
    out[c['name']] = {pending = tonumber(c['pending']), idle = tonumber(c['idle'])}
  end
  return out
end

-- Before a call's first write, every command it may run next must be allowed to this user
-- (each entry of `commands` is a command with arguments, keys included), or nothing is
-- written: a command denied mid-script leaves the writes before it in place (a dead-letter
-- copy without its XACK). The reply is the server's own NOPERM wording. Redis < 7.0 has no
-- redis.acl_check_cmd: nothing is checked there.
local function denied(commands)
  if not redis.acl_check_cmd then return nil end
  for _, command in ipairs(commands) do
    if not redis.acl_check_cmd(unpack(command)) then
      return redis.error_reply(
        "NOPERM this user has no permissions to run the '" .. string.lower(command[1]) .. "' command")
    end
  end
  return nil
end

-- Preconditions shared by every write: nil when fine, else a status word.
local function precheck(stream, group, dead_letter_stream)
  local kind = key_type(stream)
  if kind == 'none' then return 'nostream' end
  if kind ~= 'stream' then return 'wrongtype' end
  if dead_letter_stream then
    local dl_kind = key_type(dead_letter_stream)
    if dl_kind ~= 'none' and dl_kind ~= 'stream' then return 'dlwrongtype' end
  end
  return nil
end
"""

# Read-only. KEYS[1] stream, KEYS[2] dead-letter stream (optional). ARGV[1] group.
# Returns {'ok', now_ms, {name, pending, idle, name, pending, idle, ...}} or {status, detail}.
SELECT_SCRIPT = _LUA_PRELUDE + r"""
local stream, group = KEYS[1], ARGV[1]
local problem = precheck(stream, group, KEYS[2])
if problem == 'wrongtype' then return {problem, key_type(stream)} end
if problem == 'dlwrongtype' then return {problem, key_type(KEYS[2])} end
if problem then return {problem, ''} end
local now = now_ms()
local consumers = consumers_of(stream, group)
if consumers == nil then return {'nogroup', ''} end
local flat = {}
for name, c in pairs(consumers) do
  flat[#flat + 1] = name
  flat[#flat + 1] = c.pending
  flat[#flat + 1] = c.idle
end
return {'ok', now, flat}
"""

# One bounded batch of one consumer's PEL: dead-letter what the policy says, move the rest
# to claim_to, or (dry run) only count what would happen.
# KEYS[1] stream, KEYS[2] dead-letter stream (optional).
# ARGV: 1 group, 2 consumer, 3 claim_to ('' = dead-letter only: the consumer is claim_to
#       itself), 4 guard (the consumer's last-seen time in ms, from selection), 5 tolerance ms,
#       6 batch size, 7 cursor ('-' or '(<id>'), 8 max_age_ms (-1: none), 9 max_deliveries
#       (-1: none), 10 ids wanted, 11 deleted ids wanted, 12 dry run (0/1), 13 verify entries
#       exist before XCLAIM (1 on Redis < 7.0, whose XCLAIM claims deleted entries).
# Returns {'ok', moved, dead_lettered, deleted, next_cursor, done, {ids}, {deleted ids}, fast}
#      or {'active', idle_ms} / {'absent', ''} / {precondition status, detail}. fast is 1 when
#      the batch took the fast path (in a dry run: when the real run would take it). Only
#      counts and at most `ids wanted` / `deleted ids wanted` ids are returned: the reply stays
#      small whatever the batch size.
BATCH_SCRIPT = _LUA_PRELUDE + r"""
local stream, dl = KEYS[1], KEYS[2]
local group, consumer, claim_to = ARGV[1], ARGV[2], ARGV[3]
local guard, tolerance = tonumber(ARGV[4]), tonumber(ARGV[5])
local batch, cursor = tonumber(ARGV[6]), ARGV[7]
local max_age, max_deliveries = tonumber(ARGV[8]), tonumber(ARGV[9])
local ids_wanted, deleted_wanted = tonumber(ARGV[10]), tonumber(ARGV[11])
local dry, verify = ARGV[12] == '1', ARGV[13] == '1'

local problem = precheck(stream, group, dl)
if problem == 'wrongtype' then return {problem, key_type(stream)} end
if problem == 'dlwrongtype' then return {problem, key_type(dl)} end
if problem then return {problem, ''} end
local now = now_ms()
local consumers = consumers_of(stream, group)
if consumers == nil then return {'nogroup', ''} end
local me = consumers[consumer]
if me == nil then return {'absent', ''} end
-- The guard: the consumer's last-seen time must not have moved since selection. Any
-- XREADGROUP or XCLAIM by it since then moves it forward; XPENDING and XINFO do not.
if now - me.idle > guard + tolerance then return {'active', me.idle} end

local policy = max_age >= 0 or max_deliveries >= 0
local move = claim_to ~= ''

-- FAST PATH. Why it exists: listing the PEL with the extended XPENDING and turning its reply
-- (4 values per entry) into Lua tables costs about 1 us per entry on top of the ~3 us of
-- XCLAIM itself, which keeps the general path below 0.8x of one big XAUTOCLAIM. XAUTOCLAIM
-- JUSTID does the same per-entry work as XCLAIM JUSTID (PEL lookup, existence check, owner
-- change, delivery time reset to now, delivery counter untouched, deleted entries dropped from
-- the PEL and reported in its third reply element) without the listing.
--
-- Why it is safe: XAUTOCLAIM walks the GROUP's PEL from <start>, whoever owns the entries, so
-- it may only run when every entry it can reach belongs to `consumer`. Checked here, in the
-- same atomic script, after the guard and before any write:
--   * no dead-letter policy (every entry is moved, none is inspected) and claim_to is not the
--     consumer itself (move mode);
--   * not `verify` (Redis >= 7.0: XAUTOCLAIM drops deleted entries like XCLAIM; 6.2 claims them);
--   * the group's XPENDING summary (O(consumers)) lists no owner but `consumer` and claim_to;
--   * start = the consumer's first pending entry (XPENDING ... 1 <consumer>, O(log n)), and
--     claim_to owns no entry at or after start (XPENDING start + 1 <claim_to>, O(log n)).
--     claim_to may only hold entries below start: the ones earlier batches moved to it, or
--     older ones; XAUTOCLAIM never goes below start.
-- Then the group PEL from start IS the consumer's PEL from start, so XAUTOCLAIM ... start
-- COUNT batch takes exactly the consumer's first `batch` entries: the same entries the
-- general path lists and claims (it also scans `batch` PEL entries per call, claimed or found
-- deleted: on Redis 7.0 a deleted entry uses up one unit of COUNT, pinned by a test). Same
-- counts, same ids in the same order, same batch boundaries, same done flag (fewer than
-- `batch` entries seen).
-- In a dry run nothing may change: the same conditions are evaluated (start is the first
-- entry after the cursor, where the real run's first entry will be), the batch is flagged
-- fast, and the general path below computes the plan read-only - the same counts and ids.
local fast = 0
if move and not policy and not verify then
  local owners = call('XPENDING', stream, group)[4]
  local sole = type(owners) == 'table'
  if sole then
    for _, owner in ipairs(owners) do
      if owner[1] ~= consumer and owner[1] ~= claim_to then
        sole = false
        break
      end
    end
  end
  local first = sole and call('XPENDING', stream, group, dry and cursor or '-', '+', 1, consumer) or {}
  if #first == 1 then
    local start = first[1][1]
    if #call('XPENDING', stream, group, start, '+', 1, claim_to) == 0 then
      fast = 1
      if not dry then
        local reply = call('XAUTOCLAIM', stream, group, claim_to, 0, start, 'COUNT', batch, 'JUSTID')
        local got, gone = reply[2], reply[3] or {}
        local ids, deleted_ids = {}, {}
        for j = 1, math.min(ids_wanted, #got) do ids[j] = got[j] end
        for j = 1, math.min(deleted_wanted, #gone) do deleted_ids[j] = gone[j] end
        local seen = #got + #gone
        local done = 0
        if seen < batch then done = 1 end
        -- reply[1] is XAUTOCLAIM's next start: every entry of the consumer below it is gone.
        return {'ok', #got, 0, #gone, reply[1], done, ids, deleted_ids, 1}
      end
    end
  end
end

if not dry then
  -- The general path may write with XCLAIM, XACK and XADD, in any order: all or nothing.
  local needed = {}
  if move then needed[#needed + 1] = {'XCLAIM', stream, group, claim_to, '0', '0-1', 'JUSTID'} end
  if policy or verify then
    needed[#needed + 1] = {'XRANGE', stream, '0-1', '0-1'}
    needed[#needed + 1] = {'XACK', stream, group, '0-1'}
  end
  if policy then needed[#needed + 1] = {'XADD', dl, '*', 'origin_id', '0-1'} end
  local refusal = denied(needed)
  if refusal then return refusal end
end

local pel = call('XPENDING', stream, group, cursor, '+', batch, consumer)
local n_pel = #pel
local moved, dead, deleted = 0, 0, 0
local ids, n_ids, deleted_ids, n_deleted_ids = {}, 0, {}, 0

local function note_deleted(id)
  deleted = deleted + 1
  if n_deleted_ids < deleted_wanted then
    n_deleted_ids = n_deleted_ids + 1
    deleted_ids[n_deleted_ids] = id
  end
end

local function note_id(id)
  if n_ids < ids_wanted then
    n_ids = n_ids + 1
    ids[n_ids] = id
  end
end

-- XCLAIM arguments, filled as the PEL is walked and sent every __CHUNK__ ids. This is the hot
-- path (a million entries per run is expected): no per-entry table beyond what XPENDING gives.
local claim, n_claim = {stream, group, claim_to, 0}, 4

local function flush()
  local count = n_claim - 4
  if count == 0 then return end
  local gone = nil
  if dry or verify then
    -- Dry run: nothing may change, so look each entry up. verify: this server's XCLAIM would
    -- claim a deleted entry, so acknowledge those first (nothing is left to deliver).
    for j = 5, n_claim do
      local id = claim[j]
      if #call('XRANGE', stream, id, id) == 0 then
        gone = gone or {}
        gone[id] = true
        if not dry then call('XACK', stream, group, id) end
      end
    end
  end
  if dry then
    local n_gone = 0
    if gone then for _ in pairs(gone) do n_gone = n_gone + 1 end end
    moved = moved + count - n_gone
  else
    claim[n_claim + 1] = 'JUSTID'
    local got = call('XCLAIM', unpack(claim, 1, n_claim + 1))
    moved = moved + #got
    if #got ~= count then
      -- Redis >= 7.0 drops entries deleted from the stream out of the PEL instead of
      -- claiming them (and acknowledged ones are ignored): name them, never lose the count.
      gone = {}
      for j = 5, n_claim do gone[claim[j]] = true end
      for _, id in ipairs(got) do gone[id] = nil end
    end
  end
  if gone then
    for j = 5, n_claim do
      if gone[claim[j]] then note_deleted(claim[j]) end
    end
  end
  for j = 5, n_claim do
    if n_ids >= ids_wanted then break end
    if not (gone and gone[claim[j]]) then note_id(claim[j]) end
  end
  n_claim = 4
end

local origin = {'origin_stream', stream, 'origin_group', group, 'origin_consumer', consumer}

-- Work done in this call, in "moved entry" units: a dead-lettered entry (XRANGE, XADD, XACK)
-- costs about __DL_WEIGHT__ times a moved one, and the call stops once the batch's worth of work
-- is done, so that a batch of dead-lettered entries stays as short as a batch of moves. The
-- cut depends only on the PEL's contents: a dry run cuts where the real run will.
local work, last = 0, n_pel
for i = 1, n_pel do
  local e = pel[i]
  local id = e[1]
  local dead_letter_it = false
  local age, deliveries = nil, nil
  if policy then
    deliveries = tonumber(e[4])
    age = now - tonumber(string.match(id, '^(%d+)'))
    dead_letter_it = (max_age >= 0 and age > max_age) or (max_deliveries >= 0 and deliveries > max_deliveries)
  end
  if dead_letter_it then
    local entry = call('XRANGE', stream, id, id)
    if #entry == 0 then
      if not dry then call('XACK', stream, group, id) end
      note_deleted(id)
    else
      if not dry then
        -- The entry's own fields first, then its origin: a reader that turns the entry into
        -- a map sees our origin even if the entry itself carried origin_* fields.
        local args = {dl, '*'}
        for _, v in ipairs(entry[1][2]) do args[#args + 1] = v end
        for _, v in ipairs(origin) do args[#args + 1] = v end
        args[#args + 1] = 'origin_id'; args[#args + 1] = id
        args[#args + 1] = 'delivery_count'; args[#args + 1] = tostring(deliveries)
        args[#args + 1] = 'age_ms'; args[#args + 1] = tostring(age)
        call('XADD', unpack(args))
        -- Same script, so the copy and the acknowledgement are one atomic step.
        call('XACK', stream, group, id)
      end
      dead = dead + 1
      note_id(id)
    end
    work = work + __DL_WEIGHT__
  elseif move then
    n_claim = n_claim + 1
    claim[n_claim] = id
    if n_claim - 4 >= __CHUNK__ then flush() end
    work = work + 1
  end
  if work >= batch and i < n_pel then
    last = i
    break
  end
end
flush()

local next_cursor = cursor
if last > 0 then next_cursor = '(' .. pel[last][1] end
local done = 0
if last == n_pel and n_pel < batch then done = 1 end
return {'ok', moved, dead, deleted, next_cursor, done, ids, deleted_ids, fast}
"""

# Delete one consumer iff its PEL is empty and it has not been seen since selection.
# KEYS[1] stream. ARGV: 1 group, 2 consumer, 3 guard (last-seen ms at selection), 4 tolerance.
# Returns {'retired', 0} or {'pending', n} / {'active', idle_ms} / {'absent', ''} / {status, detail}.
RETIRE_SCRIPT = _LUA_PRELUDE + r"""
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local guard, tolerance = tonumber(ARGV[3]), tonumber(ARGV[4])
local problem = precheck(stream, group, nil)
if problem == 'wrongtype' then return {problem, key_type(stream)} end
if problem then return {problem, ''} end
local now = now_ms()
local consumers = consumers_of(stream, group)
if consumers == nil then return {'nogroup', ''} end
local me = consumers[consumer]
if me == nil then return {'absent', ''} end
if me.pending > 0 then return {'pending', me.pending} end
if now - me.idle > guard + tolerance then return {'active', me.idle} end
local dropped = call('XGROUP', 'DELCONSUMER', stream, group, consumer)
return {'retired', dropped}
"""
BATCH_SCRIPT = BATCH_SCRIPT.replace("__CHUNK__", str(UNPACK_CHUNK)).replace(
    "__DL_WEIGHT__", str(DEAD_LETTER_WEIGHT)
)

# Registered by their SHA1, so that a command the server denies inside one of them can be
# named (module_utils/redis_connection.py reads it from the line the error points at).
for _source in (SELECT_SCRIPT, BATCH_SCRIPT, RETIRE_SCRIPT):
    remember_script(_source)

# Status words the scripts return for a failed precondition, as sentences. Detail is the
# key type where one applies.
PRECONDITION_MESSAGES = {
    "nostream": "Stream {stream} does not exist: check the stream option.",
    "wrongtype": "Key {stream} is a {detail}, not a stream: check the stream option.",
    "nogroup": "Consumer group {group} does not exist on stream {stream}: check the group option.",
    "dlwrongtype": (
        "Key {dead_letter_stream} is a {detail}, not a stream: "
        "check dead_letter.stream (it must be absent or a stream)."
    ),
}


class PreconditionFailed(Exception):
    """A script refused to act because the stream, group or dead-letter key is not usable."""

    def __init__(self, status: str, detail: str) -> None:
        super().__init__(status)
        self.status = status
        self.detail = detail


@dataclass
class BatchResult:
    """What one BATCH_SCRIPT call did (or, dry run, would do)."""

    status: str
    moved: int = 0
    dead_lettered: int = 0
    deleted: int = 0
    cursor: str = "-"
    done: bool = True
    ids: list[str] = field(default_factory=list)
    deleted_ids: list[str] = field(default_factory=list)
    idle_ms: int | None = None
    fast: bool = False  # XAUTOCLAIM fast path (dry run: would be)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class StreamScripts:
    """The reclaim scripts registered on one client: redis-py sends EVALSHA and falls back
    to SCRIPT LOAD once when the server does not know the script yet."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._select = client.register_script(SELECT_SCRIPT)
        self._batch = client.register_script(BATCH_SCRIPT)
        self._retire = client.register_script(RETIRE_SCRIPT)

    def load(self) -> None:
        """SCRIPT LOAD every script up front, so that no timed call pays for loading."""
        for script in (self._select, self._batch, self._retire):
            script.sha = self.client.script_load(script.script)

    @staticmethod
    def _check(reply: list[Any]) -> str:
        status = _text(reply[0])
        if status in PRECONDITION_MESSAGES:
            raise PreconditionFailed(status, _text(reply[1]))
        return status

    def select(self, stream: str, group: str, dead_letter_stream: str | None) -> tuple[int, dict[str, dict]]:
        """Server time (ms) and {consumer: {pending, idle_ms}} read in one atomic step."""
        keys = [stream] + ([dead_letter_stream] if dead_letter_stream else [])
        reply = self._select(keys=keys, args=[group])
        self._check(reply)
        flat = reply[2]
        consumers = {
            _text(flat[i]): {"pending": int(flat[i + 1]), "idle_ms": int(flat[i + 2])}
            for i in range(0, len(flat), 3)
        }
        return int(reply[1]), consumers

    def batch(
        self,
        *,
        stream: str,
        group: str,
        consumer: str,
        claim_to: str | None,
        guard_ms: int,
        batch_size: int,
        cursor: str,
        dead_letter_stream: str | None,
        max_age_ms: int | None,
        max_deliveries: int | None,
        ids_wanted: int,
        deleted_ids_wanted: int,
        dry_run: bool,
        verify_exists: bool,
        tolerance_ms: int = GUARD_TOLERANCE_MS,
    ) -> BatchResult:
        """One bounded batch of `consumer`'s PEL; claim_to None means dead-letter only."""
        keys = [stream] + ([dead_letter_stream] if dead_letter_stream else [])
        args = [
            group,
            consumer,
            claim_to or "",
            guard_ms,
            tolerance_ms,
            batch_size,
            cursor,
            -1 if max_age_ms is None else max_age_ms,
            -1 if max_deliveries is None else max_deliveries,
            ids_wanted,
            deleted_ids_wanted,
            1 if dry_run else 0,
            1 if verify_exists else 0,
        ]
        reply = self._batch(keys=keys, args=args)
        status = self._check(reply)
        if status == "active":
            return BatchResult(status=status, idle_ms=int(reply[1]))
        if status != "ok":
            return BatchResult(status=status)
        return BatchResult(
            status=status,
            moved=int(reply[1]),
            dead_lettered=int(reply[2]),
            deleted=int(reply[3]),
            cursor=_text(reply[4]),
            done=bool(int(reply[5])),
            ids=[_text(i) for i in reply[6]],
            deleted_ids=[_text(i) for i in reply[7]],
            fast=bool(int(reply[8])),
        )

    def retire(
        self, stream: str, group: str, consumer: str, guard_ms: int, tolerance_ms: int = GUARD_TOLERANCE_MS
    ) -> tuple[str, int | None]:
        """('retired', 0) or why not: ('pending', n), ('active', idle_ms), ('absent', None)."""
        reply = self._retire(keys=[stream], args=[group, consumer, guard_ms, tolerance_ms])
        status = self._check(reply)
        detail = _text(reply[1])
        return status, int(detail) if detail.lstrip("-").isdigit() else None
