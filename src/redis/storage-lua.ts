/**
 * The Lua scripts of {@link RedisPipelineStorage}, one per operation, each with its
 * KEYS / ARGV / returns header. Called with the keys of one run only (they share the
 * run's hash tag, so one Cluster slot), the scripts work on Redis Cluster; the index keys
 * are then written by separate commands. On a single Redis the writes that change a run's
 * indexed fields also get an index block (KEYS and ARGV appended at the end, see
 * `indexBlock` in storage-indexes.ts) and update the indexes in the same call.
 *
 * A run's record is a hash: `s` the status JSON, `v` a version bumped on every write
 * (the compare-and-set token), `q` the status's `last_seq`.
 */
import { LuaScript } from './lua.js';

export type { RedisClient } from './lua.js';

/** Current server time in ms (Lua), as a string. */
const NOW_MS = `local t = redis.call('TIME')
local now = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))`;

/**
 * `write_indexes(base)`: applies the index block when the script got more than `base`
 * KEYS (its own), else does nothing. The block (built by `indexBlock` in
 * storage-indexes.ts): the last 5 ARGV are run id, start score, pipeline id, end score or
 * '', and the number n of indexes the run leaves; KEYS[base+1 .. base+n] are those
 * indexes (ZREM), then the all-runs, pipeline and status indexes (ZADD by start), the set
 * of pipelines (SADD) and, when the end score is set, the end-time index (ZADD by end).
 * `index_args(base)`: how many ARGV at the end are the block's (5 or 0).
 */
const INDEX_FN = `local function index_args(base)
  if #KEYS > base then return 5 end
  return 0
end
local function write_indexes(base)
  if #KEYS <= base then return end
  local a = #ARGV - 4
  local id, started, ended, n = ARGV[a], ARGV[a + 1], ARGV[a + 3], tonumber(ARGV[a + 4])
  for i = base + 1, base + n do redis.call('ZREM', KEYS[i], id) end
  local k = base + n
  for i = k + 1, k + 3 do redis.call('ZADD', KEYS[i], started, id) end
  redis.call('SADD', KEYS[k + 4], ARGV[a + 2])
  if ended ~= '' then redis.call('ZADD', KEYS[k + 5], ended, id) end
end`;

/**
 * The reading half of the offer scripts: with `rec` (HMGET v, q, s of the record), `now`
 * and `reading` (true for a read that offered nothing) set, returns the offer reply.
 */
const READ_PENDING = `local out = {1, rec[1] or '0', rec[3], '0'}
local pending = redis.call('HGETALL', KEYS[2])
for i = 1, #pending, 2 do
  if pending[i] == 'since' then
    out[4] = tostring(tonumber(now) - tonumber(pending[i + 1]))
  else
    out[#out + 1] = pending[i]
    out[#out + 1] = pending[i + 1]
  end
end
-- A seq missing below the highest pending one: take it from the run's event log, where every
-- event is before any process records it (the log gives the seq). Nothing when there is no log.
local last = tonumber(rec[2] or '0')
local highest, above = last, 0
for i = 5, #out, 2 do
  local s = tonumber(out[i])
  if s > last then
    above = above + 1
    if s > highest then highest = s end
  end
end
local function fromLog(entries)
  for _, entry in ipairs(entries) do
    local fields = entry[2]
    for j = 1, #fields, 2 do
      if fields[j] == 'e' then
        out[#out + 1] = string.match(entry[1], '^(%d+)')
        out[#out + 1] = fields[j + 1]
      end
    end
  end
end
if highest - last > above then
  fromLog(redis.call('XRANGE', KEYS[3], (last + 1) .. '-0', (highest - 1) .. '-0', 'COUNT', 1000))
elseif reading and above == 0 and rec[2] then
  -- A read of a known run with nothing pending: events the log holds past the record come
  -- back too, to be applied (their writer has not recorded them yet: its writes are
  -- coalesced, or it was killed, or lost Redis). So tracking always catches up with the
  -- log; a run whose start was recorded without its status (INDEX_ONLY) is read from its
  -- first event.
  fromLog(redis.call('XRANGE', KEYS[3], (last + 1) .. '-0', '+', 'COUNT', 1000))
end
return out`;

const OFFER_BODY = `local rec = redis.call('HMGET', KEYS[1], 'v', 'q', 's')
${NOW_MS}
local reading = ARGV[2] == ''
if not reading then
  if rec[2] and tonumber(ARGV[1]) <= tonumber(rec[2]) then return {0} end
  if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return {0} end
  redis.call('HSETNX', KEYS[2], 'since', now)
  if rec[3] then redis.call('EXPIRE', KEYS[2], ARGV[3]) else redis.call('EXPIRE', KEYS[2], ARGV[4]) end
end
${READ_PENDING}`;

/**
 * Offers one event to the run's pending buffer (unless it is a duplicate), then reads
 * what the caller needs to apply pending events.
 *
 * KEYS[1] the run record, KEYS[2] the run's pending hash, KEYS[3] the run's event log (a
 * stream with entry ids `<seq>-0` and the event JSON in field `e`; may not exist)
 * ARGV[1] the event's seq, ARGV[2] the event JSON ('' to only read),
 * ARGV[3] pending TTL (s) of a known run, ARGV[4] pending TTL (s) of a run with no record yet
 * Returns {0} for a duplicate (seq <= last_seq, or already pending); else
 * {1, version, status JSON or nil, ms the oldest pending event has waited, seq1, event1, seq2, event2, ...}:
 * the pending events, then the events of the log that fill the gaps below the highest pending one
 * (for a read, ARGV[2] = '', with nothing pending: the events the log holds past the record).
 */
export const OFFER = new LuaScript(
  `${OFFER_BODY}`,
);

/**
 * Offers a group of events of one run to its pending buffer at once (those that are not
 * duplicates: seq <= last_seq, or already pending), then reads what {@link OFFER} reads.
 *
 * KEYS[1..3] as OFFER
 * ARGV[1] pending TTL (s) of a known run, ARGV[2] pending TTL (s) of a run with no record yet,
 * ARGV[3], ARGV[4] the first event's seq and JSON, ARGV[5], ARGV[6] the second's, ...
 * Returns {0} when every event was a duplicate; else OFFER's reply.
 */
export const OFFER_MANY = new LuaScript(
  `local rec = redis.call('HMGET', KEYS[1], 'v', 'q', 's')
${NOW_MS}
local reading = false
local offered = 0
for i = 3, #ARGV, 2 do
  if not (rec[2] and tonumber(ARGV[i]) <= tonumber(rec[2])) and redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1]) == 1 then
    offered = offered + 1
  end
end
if offered == 0 then return {0} end
redis.call('HSETNX', KEYS[2], 'since', now)
if rec[3] then redis.call('EXPIRE', KEYS[2], ARGV[1]) else redis.call('EXPIRE', KEYS[2], ARGV[2]) end
${READ_PENDING}`,
);

/**
 * The fast path of one event: the caller applied it to the status it last wrote (version
 * ARGV[5]; '0' for a start event of a run with no record yet); if the record is still at
 * that version and no event is pending, stores the result at once. Otherwise does what
 * {@link OFFER} does.
 *
 * KEYS[1..3] as OFFER, KEYS[4..] the index block's (optional, see INDEX_FN)
 * ARGV[1..4] as OFFER (seq, event JSON, pending TTLs), ARGV[3] is also the record TTL;
 * ARGV[5] expected version, ARGV[6] the new status JSON (its last_seq is ARGV[1]),
 * ARGV[7..11] the index block (with KEYS[4..])
 * Returns {2, new version} when stored (and the index block applied); else OFFER's reply.
 */
export const FAST_APPLY = new LuaScript(
  `${INDEX_FN}
local cur = redis.call('HGET', KEYS[1], 'v') or '0'
if cur == ARGV[5] and redis.call('EXISTS', KEYS[2]) == 0 then
  local v = tonumber(cur) + 1
  redis.call('HSET', KEYS[1], 's', ARGV[6], 'v', v, 'q', ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  write_indexes(3)
  return {2, v}
end
${OFFER_BODY}`,
);

/**
 * The fast path of a group of consecutive events of one run (applyEvents): the caller
 * applied them all to the status it last wrote (version ARGV[1]; '0' for a group starting
 * a run with no record yet); if the record is still at that version and no event is
 * pending, stores the result. Otherwise changes nothing (the caller then offers the
 * events with {@link OFFER_MANY}).
 *
 * With ARGV[5] = '1' the caller's base is the run's start alone (the status its
 * `PipelineStartEvent` gives): the check is then that the record holds exactly that
 * (`last_seq` 1, whichever version) or that there is no record yet (its start was not
 * written: coalesced, see `writeDelayMs`; this write creates the record).
 *
 * KEYS[1] the run record, KEYS[2] the run's pending hash, KEYS[3..] the index block's (optional, see INDEX_FN)
 * ARGV[1] expected version, ARGV[2] the new status JSON, ARGV[3] its last_seq (the group's last seq), ARGV[4] TTL (s),
 * ARGV[5] '1' when the base is the start alone (else '0'), ARGV[6..10] the index block (with KEYS[3..])
 * Returns the new version (the index block applied), or 0 when nothing was stored.
 */
export const FAST_APPLY_GROUP = new LuaScript(
  `${INDEX_FN}
local rec = redis.call('HMGET', KEYS[1], 'v', 'q')
local cur = rec[1] or '0'
local based
if ARGV[5] == '1' then based = not rec[1] or rec[2] == '1' else based = cur == ARGV[1] end
if not based or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local v = tonumber(cur) + 1
redis.call('HSET', KEYS[1], 's', ARGV[2], 'v', v, 'q', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
write_indexes(2)
return v`,
);

/**
 * Records a run's start without its status (a `logBacked` storage): a marker record with
 * no status (`q` 0: "read me from the run's log") and, on a single Redis, the run's
 * index entries. Reads build the status from the log until a write stores it; a run
 * with neither record nor marker (deleted, expired) is never rebuilt.
 * KEYS[1] the run record, KEYS[2..] the index block's (optional, see INDEX_FN)
 * ARGV[1] TTL (s), ARGV[2..6] the index block (with KEYS[2..]). Returns 1.
 */
export const INDEX_ONLY = new LuaScript(
  `${INDEX_FN}
redis.call('HSETNX', KEYS[1], 'q', '0')
redis.call('EXPIRE', KEYS[1], ARGV[1])
write_indexes(1)
return 1`,
);

/**
 * Reads a run's status for a group of events that continues it: the caller (a process
 * that did not write the run last) applies the group to it and stores the result with
 * {@link FAST_APPLY_GROUP}. Reads nothing else, so the group's events never travel.
 *
 * KEYS[1] the run record, KEYS[2] the run's pending hash
 * ARGV[1] the last_seq the group follows (its first seq - 1)
 * Returns {version, status JSON} when the record is at that last_seq and nothing is
 * pending; else nil (the caller offers the events with {@link OFFER_MANY}).
 */
export const READ_AT = new LuaScript(
  `local rec = redis.call('HMGET', KEYS[1], 'v', 'q', 's')
if not rec[3] or rec[2] ~= ARGV[1] or redis.call('EXISTS', KEYS[2]) == 1 then return nil end
return {rec[1], rec[3]}`,
);

/**
 * Stores a status computed from the pending events if the record is still at the
 * version the caller read (compare-and-set), removes the applied pending events and
 * refreshes the TTLs.
 *
 * KEYS[1] the run record, KEYS[2] the run's pending hash, KEYS[3..] the index block's (optional, see INDEX_FN)
 * ARGV[1] expected version ('0' for a run with no record), ARGV[2] status JSON, ARGV[3] its last_seq,
 * ARGV[4] TTL (s), ARGV[5..] seqs to remove from the pending hash, then the index block's 5 (with KEYS[3..])
 * Returns the new version (the index block applied), or 0 when the record changed meanwhile (read again and retry).
 */
export const COMMIT = new LuaScript(
  `${INDEX_FN}
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 's', ARGV[2], 'v', v + 1, 'q', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
write_indexes(2)
for i = 5, #ARGV - index_args(2) do redis.call('HDEL', KEYS[2], ARGV[i]) end
local left = redis.call('HLEN', KEYS[2])
if left == 1 and redis.call('HEXISTS', KEYS[2], 'since') == 1 then
  redis.call('DEL', KEYS[2])
elseif left > 0 then
  ${NOW_MS.replace(/\n/g, '\n  ')}
  redis.call('HSET', KEYS[2], 'since', now)
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return v + 1`,
);

/**
 * Replaces a run's status (saveStatus).
 *
 * KEYS[1] the run record, KEYS[2..] the index block's (optional, see INDEX_FN)
 * ARGV[1] status JSON, ARGV[2] its last_seq, ARGV[3] TTL (s), ARGV[4..8] the index block (with KEYS[2..])
 * Returns the previous status JSON, or nil.
 */
export const SAVE = new LuaScript(
  `${INDEX_FN}
local previous = redis.call('HGET', KEYS[1], 's')
redis.call('HSET', KEYS[1], 's', ARGV[1], 'q', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
write_indexes(1)
return previous`,
);

/**
 * Deletes a run's record and pending events, if it is still at the expected version.
 *
 * KEYS[1] the run record, KEYS[2] the run's pending hash
 * ARGV[1] expected version, or '' for any
 * Returns the deleted status JSON ('' for a start recorded without its status), or nil
 * when there was none or it changed meanwhile.
 */
export const DELETE = new LuaScript(
  `local rec = redis.call('HMGET', KEYS[1], 'v', 's', 'q')
if not rec[2] then
  -- A start recorded without its status (INDEX_ONLY): deleted with nothing to return.
  if rec[3] and ARGV[1] == '' then
    redis.call('DEL', KEYS[1], KEYS[2])
    return ''
  end
  return nil
end
if ARGV[1] ~= '' and rec[1] ~= ARGV[1] then return nil end
redis.call('DEL', KEYS[1], KEYS[2])
return rec[2]`,
);
