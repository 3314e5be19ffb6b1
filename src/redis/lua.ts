/**
 * The Lua scripts of the run state and the event log, one constant per operation, each
 * with a KEYS / ARGV / returns header. They run with EVALSHA (falling back to EVAL once
 * per connection when the server does not know the script yet, e.g. after a restart).
 *
 * Every script touches only keys of one run (same `{run_id}` hash tag) or only the
 * server registry keys (`{servers}` tag), so they all work on Redis Cluster.
 */
import { createHash } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';

/** A Redis client scripts run on: an ioredis `Redis` or `Cluster`. */
export type RedisClient = Redis | Cluster;

/**
 * Appends events to a run's log. Shared by `append`, `create` and `transition`.
 * Each event comes as two ARGV entries: its JSON without the seq value and the closing
 * brace (`...,"seq":`), and `1` when it is terminal. Once the log holds a terminal
 * event, nothing more is appended (that event's slot answers 0).
 * `pub` (ARGV index of three channels: the run's, the pipeline's, the wildcard; the
 * first '' for none) publishes each appended event to them, in log order, in the same
 * atomic step: Pub/Sub then carries every event of the run in seq order.
 */
const APPEND_FN = `
local function append_events(meta, log, maxlen, from, n, pub)
  local out = {}
  local ended = redis.call('HEXISTS', meta, 'end') == 1
  local run_ch = ARGV[pub]
  local pipeline_ch, all_ch = ARGV[pub + 1], ARGV[pub + 2]
  for i = 0, n - 1 do
    if ended then
      out[#out + 1] = 0
    else
      local seq = redis.call('HINCRBY', meta, 'seq', 1)
      local e = ARGV[from + 2 * i] .. seq .. '}'
      redis.call('XADD', log, 'MAXLEN', maxlen, seq .. '-0', 'e', e)
      if run_ch ~= '' then
        redis.call('PUBLISH', run_ch, e)
        redis.call('PUBLISH', pipeline_ch, e)
        redis.call('PUBLISH', all_ch, e)
      end
      if ARGV[from + 2 * i + 1] == '1' then
        redis.call('HSET', meta, 'end', seq)
        ended = true
      end
      out[#out + 1] = seq
    end
  end
  return out, ended
end
-- A command resent after a lost reply (ioredis resends unanswered commands after a
-- reconnect) must not apply twice: the last write's token and seqs are kept in the state
-- hash, and a resend of that write answers what the first run of it did.
local function same_tx(state, token)
  local tx = redis.call('HMGET', state, 'tx', 'txr')
  if tx[1] ~= token then return nil end
  local out = {0}
  for seq in string.gmatch(tx[2] or '', '[^,]+') do out[#out + 1] = tonumber(seq) end
  return out
end
local function expire_all(ttl, ...)
  for _, key in ipairs({...}) do redis.call('EXPIRE', key, ttl) end
end
`;

/**
 * KEYS[1] log meta hash, KEYS[2] log stream.
 * ARGV[1] max events kept, ARGV[2] TTL (s) while running, ARGV[3] TTL (s) once ended,
 * ARGV[4..6] channels to publish to (run, pipeline, wildcard; '' for none),
 * ARGV[7..8] the event (head, terminal flag).
 * Returns the event's seq, or 0 when the run's log already ended.
 */
export const APPEND_SCRIPT = `${APPEND_FN}
local seqs, ended = append_events(KEYS[1], KEYS[2], ARGV[1], 7, 1, 4)
if seqs[1] ~= 0 then expire_all(ended and ARGV[3] or ARGV[2], KEYS[1], KEYS[2]) end
return seqs[1]
`;

/**
 * KEYS[1] run state hash, KEYS[2] log meta hash, KEYS[3] log stream.
 * ARGV[1] record JSON (without plan), ARGV[2] plan JSON, ARGV[3] summary JSON,
 * ARGV[4] max events kept, ARGV[5] TTL (s) while running, ARGV[6] TTL (s) once ended,
 * ARGV[7] `1` when the record is already ended, ARGV[8] event count, ARGV[9] a token
 * unique to this write, ARGV[10..12] channels to publish the events to (run, pipeline,
 * wildcard; '' for none), ARGV[13..] events.
 * Returns `{1}` when the run exists already, else `{0, seq...}` (0 for a refused event).
 */
export const CREATE_SCRIPT = `${APPEND_FN}
if redis.call('EXISTS', KEYS[1]) == 1 then return same_tx(KEYS[1], ARGV[9]) or {1} end
local seqs, ended = append_events(KEYS[2], KEYS[3], ARGV[4], 13, tonumber(ARGV[8]), 10)
redis.call('HSET', KEYS[1], 'rec', ARGV[1], 'plan', ARGV[2], 'sum', ARGV[3], 'ver', 1, 'tx', ARGV[9], 'txr', table.concat(seqs, ','))
expire_all((ended or ARGV[7] == '1') and ARGV[6] or ARGV[5], KEYS[1], KEYS[2], KEYS[3])
table.insert(seqs, 1, 0)
return seqs
`;

/**
 * Compare-and-set of a run's record plus the append of the transition's events.
 * KEYS[1] run state hash, KEYS[2] log meta hash, KEYS[3] log stream.
 * ARGV[1] the version the record was read at, ARGV[2] new record JSON (without plan),
 * ARGV[3] summary JSON ('' when it did not change: the run still runs), ARGV[4] max events kept, ARGV[5] TTL (s) while running,
 * ARGV[6] TTL (s) once ended, ARGV[7] `1` when the new record is ended,
 * ARGV[8] event count, ARGV[9] a token unique to this write, ARGV[10..12] channels to
 * publish the events to (run, pipeline, wildcard; '' for none), ARGV[13..] events.
 * Returns `{2}` for an unknown run, `{3, version, record}` when the version moved on
 * (the caller retries on that record),
 * else `{0, seq...}` (0 for an event refused after the terminal one).
 */
export const TRANSITION_SCRIPT = `${APPEND_FN}
local ver = redis.call('HGET', KEYS[1], 'ver')
if not ver then return {2} end
if ver ~= ARGV[1] then return same_tx(KEYS[1], ARGV[9]) or {3, tonumber(ver), redis.call('HGET', KEYS[1], 'rec')} end
local seqs, ended = append_events(KEYS[2], KEYS[3], ARGV[4], 13, tonumber(ARGV[8]), 10)
redis.call('HSET', KEYS[1], 'rec', ARGV[2], 'ver', tonumber(ver) + 1, 'tx', ARGV[9], 'txr', table.concat(seqs, ','))
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'sum', ARGV[3]) end
expire_all((ended or ARGV[7] == '1') and ARGV[6] or ARGV[5], KEYS[1], KEYS[2], KEYS[3])
table.insert(seqs, 1, 0)
return seqs
`;

/**
 * A transition that reopens an ended run (a resume): the compare-and-set of
 * {@link TRANSITION_SCRIPT}, and the log's end mark removed before the events are
 * appended, so they follow the terminal event with the next seqs. KEYS and ARGV as
 * {@link TRANSITION_SCRIPT}, ARGV[3] always a summary.
 * Returns `{2}` for an unknown run, `{4}` when the run's log is gone (expired),
 * `{3, version, record}` when the version moved on, else `{0, seq...}`.
 */
export const REOPEN_SCRIPT = `${APPEND_FN}
local ver = redis.call('HGET', KEYS[1], 'ver')
if not ver then return {2} end
if ver ~= ARGV[1] then return same_tx(KEYS[1], ARGV[9]) or {3, tonumber(ver), redis.call('HGET', KEYS[1], 'rec')} end
if redis.call('HEXISTS', KEYS[2], 'seq') == 0 then return {4} end
redis.call('HDEL', KEYS[2], 'end')
local seqs, ended = append_events(KEYS[2], KEYS[3], ARGV[4], 13, tonumber(ARGV[8]), 10)
redis.call('HSET', KEYS[1], 'rec', ARGV[2], 'sum', ARGV[3], 'ver', tonumber(ver) + 1, 'tx', ARGV[9], 'txr', table.concat(seqs, ','))
expire_all((ended or ARGV[7] == '1') and ARGV[6] or ARGV[5], KEYS[1], KEYS[2], KEYS[3])
table.insert(seqs, 1, 0)
return seqs
`;

/**
 * Stores an event that already has its seq (the hook bridge's `ingest`) and publishes it.
 * KEYS[1] log meta hash, KEYS[2] log stream.
 * ARGV[1] max events kept, ARGV[2] TTL (s) while running, ARGV[3] TTL (s) once ended,
 * ARGV[4..6] channels to publish to (run, pipeline, wildcard; '' for none),
 * ARGV[7] the event's JSON, ARGV[8] its seq, ARGV[9] `1` when it is terminal.
 * Returns 1 when stored, 0 when the log already holds that seq or a later one, or ended.
 */
export const INGEST_SCRIPT = `
if redis.call('HEXISTS', KEYS[1], 'end') == 1 then return 0 end
local seq = tonumber(ARGV[8])
if seq <= tonumber(redis.call('HGET', KEYS[1], 'seq') or '0') then return 0 end
redis.call('HSET', KEYS[1], 'seq', seq)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[1], seq .. '-0', 'e', ARGV[7])
if ARGV[4] ~= '' then
  redis.call('PUBLISH', ARGV[4], ARGV[7])
  redis.call('PUBLISH', ARGV[5], ARGV[7])
  redis.call('PUBLISH', ARGV[6], ARGV[7])
end
local ttl = ARGV[2]
if ARGV[9] == '1' then
  redis.call('HSET', KEYS[1], 'end', seq)
  ttl = ARGV[3]
end
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
return 1
`;

/**
 * Writes a run marker to a run stream at its next offset and publishes it.
 * KEYS[1] stream, KEYS[2] stream meta hash (`n`: the last offset; it never expires).
 * ARGV[1] markers kept, ARGV[2] TTL (s) of the stream, ARGV[3] channel, ARGV[4] kind
 * (`start`/`resume`/`end`), ARGV[5] run id, ARGV[6] pipeline id, ARGV[7] (a `resume`
 * marker's only) the seq of the run's PipelineResumeEvent.
 * Publishes `<offset> <kind> <run id> <pipeline id>[ <seq>]` (ids hold no spaces). Returns the offset.
 */
export const MARK_RUN_SCRIPT = `
local n = redis.call('HINCRBY', KEYS[2], 'n', 1)
if ARGV[7] then
  redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], n .. '-0', 'k', ARGV[4], 'r', ARGV[5], 'p', ARGV[6], 's', ARGV[7])
  redis.call('PUBLISH', ARGV[3], n .. ' ' .. ARGV[4] .. ' ' .. ARGV[5] .. ' ' .. ARGV[6] .. ' ' .. ARGV[7])
else
  redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], n .. '-0', 'k', ARGV[4], 'r', ARGV[5], 'p', ARGV[6])
  redis.call('PUBLISH', ARGV[3], n .. ' ' .. ARGV[4] .. ' ' .. ARGV[5] .. ' ' .. ARGV[6])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return n
`;

/**
 * The epoch of this Redis's history: the one stored, or a new one (ARGV[1]) when none is.
 * KEYS[1] epoch key. Returns `{epoch, 1 when it was just set}`.
 */
export const EPOCH_SCRIPT = `
local e = redis.call('GET', KEYS[1])
if e then return {e, 0} end
redis.call('SET', KEYS[1], ARGV[1])
return {ARGV[1], 1}
`;

/**
 * Sends events to their run, pipeline and wildcard channels, in order, in one command.
 * KEYS none. ARGV[1] the wildcard channel, then per event: payload, run channel,
 * pipeline channel. Returns the receivers counted by Redis.
 */
export const PUBLISH_SCRIPT = `
local n = 0
for i = 2, #ARGV, 3 do
  n = n + redis.call('PUBLISH', ARGV[i + 1], ARGV[i])
  n = n + redis.call('PUBLISH', ARGV[i + 2], ARGV[i])
  n = n + redis.call('PUBLISH', ARGV[1], ARGV[i])
end
return n
`;

/**
 * Announces a server instance and forgets those whose announcement expired.
 * KEYS[1] status hash, KEYS[2] expiry sorted set.
 * ARGV[1] instance id, ARGV[2] status JSON, ARGV[3] TTL (ms).
 * Returns the number of live instances. Time is the Redis server's, so hosts need no synced clocks.
 */
export const ANNOUNCE_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, id in ipairs(dead) do redis.call('HDEL', KEYS[1], id) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
local keep = math.max(1, tonumber(last[2]) - now)
redis.call('PEXPIRE', KEYS[1], keep)
redis.call('PEXPIRE', KEYS[2], keep)
return redis.call('ZCARD', KEYS[2])
`;

/**
 * The live server instances.
 * KEYS[1] status hash, KEYS[2] expiry sorted set. ARGV none.
 * Returns the status JSON of every instance whose announcement has not expired.
 */
export const INSTANCES_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf')
if #live == 0 then return {} end
return redis.call('HMGET', KEYS[1], unpack(live))
`;

/** A Lua script run by SHA1, loaded on the first NOSCRIPT answer. */
export class LuaScript {
  readonly source: string;
  readonly sha: string;

  constructor(source: string) {
    this.source = source;
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  /** Runs the script with `keys` and `args` (EVALSHA, then EVAL when the server lacks it). */
  async run(redis: RedisClient, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      return redis.eval(this.source, keys.length, ...keys, ...args);
    }
  }
}

/**
 * Takes or keeps a lease (the exclusive ingestor's).
 * KEYS[1] lease key. ARGV[1] holder name, ARGV[2] lease time (ms).
 * Returns 1 when the holder kept it (renewed), 2 when it just took it, 0 when another holds it.
 */
export const LEASE_SCRIPT = `
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
`;

/**
 * Gives a lease back, if still held.
 * KEYS[1] lease key. ARGV[1] holder name. Returns 1 when released, 0 when not held.
 */
export const RELEASE_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`;
