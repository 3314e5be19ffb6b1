/**
 * Run queues in Redis (see `RunQueue` in src/core/run-queue.ts): the queued starts of
 * every process sharing one Redis. A group's queue keys share the hash tag of its slots
 * (`slotQueueKey`), so "take a slot or queue behind the waiting starts" and "give the
 * free slots to the oldest waiting starts" are each one Lua script: two servers starting
 * at once, and a worker freeing a slot meanwhile, cannot overtake or lose a start. Times
 * are Redis's own (`TIME`). The group index and the run → group hash are hints kept by
 * plain commands (another Cluster slot).
 */
import { createHash } from 'node:crypto';
import type { QueueHolder, QueueOffer, QueuedPlace, QueuedStart, RunQueue, StartingStart } from '../core/run-queue.js';
import { ErrorCodes, FlowcastError } from '../core/errors.js';
import { show } from '../core/validate.js';
import { slotGroupKey, slotQueueIndexKey, slotQueueKey } from './keys.js';
import { LuaScript, type RedisClient } from './lua.js';

/**
 * Shared head of the scripts. KEYS[1] holders hash, KEYS[2] waiting zset, KEYS[3]
 * requests hash, KEYS[4] starting hash. `live()` drops expired holders and returns them;
 * `promote(limit, ttl, holders)` gives free slots to the oldest waiting starts.
 */
const HEAD = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function live()
  local all = redis.call('HGETALL', KEYS[1])
  local out = {}
  for i = 1, #all, 2 do
    local v = all[i + 1]
    local sep = string.find(v, ':', 1, true)
    if tonumber(string.sub(v, sep + 1)) <= now then
      redis.call('HDEL', KEYS[1], all[i])
    else
      out[#out + 1] = {all[i], tonumber(string.sub(v, 1, sep - 1))}
    end
  end
  return out
end
local function hold(run, ttl)
  local exp = now + ttl
  redis.call('HSET', KEYS[1], run, now .. ':' .. exp)
  if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIREAT', KEYS[1], exp) end
end
local function promote(limit, ttl, holders)
  local out = {}
  while #holders < limit do
    local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
    if not head then break end
    redis.call('ZREM', KEYS[2], head)
    hold(head, ttl)
    holders[#holders + 1] = {head, now}
    redis.call('HSET', KEYS[4], head, now)
    out[#out + 1] = {head, redis.call('HGET', KEYS[3], head) or ''}
  end
  return out
end
`;

/**
 * Takes a slot, or queues the start. ARGV[1] run id, ARGV[2] limit, ARGV[3] ttl (ms),
 * ARGV[4] request, ARGV[5] max waiting. Returns JSON {ok, full, position, waiting, holders, promoted}.
 */
const OFFER = new LuaScript(`${HEAD}
local limit = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local holders = live()
for _, h in ipairs(holders) do
  if h[1] == ARGV[1] then return cjson.encode({ok = 1, promoted = {}}) end
end
local promoted = promote(limit, ttl, holders)
local waiting = redis.call('ZCARD', KEYS[2])
if waiting == 0 and #holders < limit then
  hold(ARGV[1], ttl)
  return cjson.encode({ok = 1, promoted = promoted})
end
if waiting >= tonumber(ARGV[5]) then
  return cjson.encode({ok = 0, full = 1, waiting = waiting, holders = holders, promoted = promoted})
end
local seq = redis.call('HINCRBY', KEYS[3], '#seq', 1)
redis.call('ZADD', KEYS[2], seq, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], now .. ':' .. ARGV[4])
return cjson.encode({ok = 0, full = 0, position = waiting + 1, holders = holders, promoted = promoted})
`);

/** Gives free slots to the oldest waiting starts. ARGV[1] limit, ARGV[2] ttl. Returns JSON {promoted}. */
const PROMOTE = new LuaScript(`${HEAD}
return cjson.encode({promoted = promote(tonumber(ARGV[1]), tonumber(ARGV[2]), live())})
`);

/** Takes a waiting start out. ARGV[1] run id. Returns its stored request, or false when it does not wait. */
const REMOVE = new LuaScript(`
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return false end
local v = redis.call('HGET', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return v or false
`);

/** Where a start is. ARGV[1] run id. Returns {position, stored request} (position 0: starting) or false. */
const PLACE = new LuaScript(`
local v = redis.call('HGET', KEYS[3], ARGV[1])
if not v then return false end
local rank = redis.call('ZRANK', KEYS[2], ARGV[1])
if rank then return {rank + 1, v} end
local promoted = redis.call('HGET', KEYS[4], ARGV[1])
if promoted then return {0, v, promoted} end
return false
`);

interface OfferReply {
  ok: 0 | 1;
  full?: 0 | 1;
  position?: number;
  waiting?: number;
  holders?: [string, number][] | Record<string, never>;
  promoted?: [string, string][] | Record<string, never>;
}

/** cjson encodes an empty Lua table as `{}`. */
function list<T>(value: T[] | Record<string, never> | undefined): T[] {
  return Array.isArray(value) ? value : [];
}

/** `<queued_ms>:<request>` → a start. */
function stored(runId: string, value: string): QueuedStart {
  const sep = value.indexOf(':');
  return { run_id: runId, queued_ms: Number(value.slice(0, sep)), request: value.slice(sep + 1) };
}

/** Queues shared through Redis (the BullMQ broker's `slots.queue`). */
export class RedisRunQueue implements RunQueue {
  constructor(
    readonly redis: RedisClient,
    readonly keyPrefix: string,
  ) {}

  get closed(): boolean {
    return (this.redis as { status?: string }).status === 'end';
  }

  #keys(group: string): string[] {
    const digest = createHash('sha1').update(group).digest('hex');
    const p = this.keyPrefix;
    return [slotGroupKey(p, digest), slotQueueKey(p, digest, 'q'), slotQueueKey(p, digest, 'qr'), slotQueueKey(p, digest, 'qs')];
  }

  #promoted(reply: OfferReply): QueuedStart[] {
    return list(reply.promoted).map(([runId, value]) => stored(runId, value));
  }

  async offer(group: string, limit: number, ttlMs: number, start: { run_id: string; request: string }, maxWaiting: number): Promise<QueueOffer> {
    const raw = await OFFER.run(this.redis, this.#keys(group), [start.run_id, limit, Math.ceil(ttlMs), start.request, maxWaiting]);
    const reply = this.#parse(raw);
    const promoted = this.#promoted(reply);
    const holders: QueueHolder[] = list(reply.holders).map(([runId, since]) => ({ run_id: runId, since_ms: since }));
    if (reply.ok === 1) return { ok: true, promoted };
    if (reply.full === 1) return { ok: false, full: true, waiting: reply.waiting ?? 0, holders, promoted };
    await this.redis.sadd(slotQueueIndexKey(this.keyPrefix, 'groups'), group);
    await this.redis.hset(slotQueueIndexKey(this.keyPrefix, 'where'), start.run_id, group);
    return { ok: false, full: false, position: reply.position ?? 0, holders, promoted };
  }

  async promote(group: string, limit: number, ttlMs: number): Promise<QueuedStart[]> {
    return this.#promoted(this.#parse(await PROMOTE.run(this.redis, this.#keys(group), [limit, Math.ceil(ttlMs)])));
  }

  #parse(raw: unknown): OfferReply {
    if (typeof raw !== 'string') throw new FlowcastError(ErrorCodes.CONNECTION_FAILED, `Unexpected answer of the run queue script: ${show(raw)}`);
    return JSON.parse(raw) as OfferReply;
  }

  async started(group: string, runId: string): Promise<void> {
    const [, , requests, starting] = this.#keys(group) as [string, string, string, string];
    await this.redis.hdel(starting, runId);
    await this.redis.hdel(requests, runId);
    await this.redis.hdel(slotQueueIndexKey(this.keyPrefix, 'where'), runId);
  }

  async remove(group: string, runId: string): Promise<QueuedStart | null> {
    const value = await REMOVE.run(this.redis, this.#keys(group), [runId]);
    if (typeof value !== 'string') return null;
    await this.redis.hdel(slotQueueIndexKey(this.keyPrefix, 'where'), runId);
    return stored(runId, value);
  }

  async find(runId: string): Promise<QueuedPlace | null> {
    const group = await this.redis.hget(slotQueueIndexKey(this.keyPrefix, 'where'), runId);
    if (group === null) return null;
    const reply = await PLACE.run(this.redis, this.#keys(group), [runId]);
    if (!Array.isArray(reply)) return null;
    return { group, position: Number(reply[0]), start: stored(runId, String(reply[1])) };
  }

  async waiting(group: string, max = 1000): Promise<QueuedStart[]> {
    const [, waiting, requests] = this.#keys(group) as [string, string, string];
    const ids = await this.redis.zrange(waiting, 0, max - 1);
    if (ids.length === 0) return [];
    const values = await this.redis.hmget(requests, ...ids);
    const out: QueuedStart[] = [];
    ids.forEach((id, i) => {
      const v = values[i];
      if (typeof v === 'string') out.push(stored(id, v));
    });
    return out;
  }

  async starting(group: string): Promise<StartingStart[]> {
    const [, , requests, starting] = this.#keys(group) as [string, string, string, string];
    const all = await this.redis.hgetall(starting);
    const ids = Object.keys(all);
    if (ids.length === 0) return [];
    const values = await this.redis.hmget(requests, ...ids);
    const out: StartingStart[] = [];
    ids.forEach((id, i) => {
      const v = values[i];
      if (typeof v === 'string') out.push({ ...stored(id, v), promoted_ms: Number(all[id]) });
      // Its request is gone (started, or forgotten): nothing is left to start.
      else void this.redis.hdel(starting, id);
    });
    return out;
  }

  async groups(): Promise<string[]> {
    return this.redis.smembers(slotQueueIndexKey(this.keyPrefix, 'groups'));
  }

  async forget(group: string): Promise<void> {
    const [, waiting, , starting] = this.#keys(group) as [string, string, string, string];
    if ((await this.redis.zcard(waiting)) === 0 && (await this.redis.hlen(starting)) === 0) await this.redis.srem(slotQueueIndexKey(this.keyPrefix, 'groups'), group);
  }
}
