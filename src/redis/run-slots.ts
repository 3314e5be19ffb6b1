/**
 * Run slots in Redis (see `RunSlots` in src/core/run-slots.ts): the concurrency policies
 * and idempotent starts of every process sharing one Redis. A group is one hash
 * (`slotGroupKey`, its own hash tag) of run id → `<since_ms>:<expires_ms>`, read and
 * changed by one script at a time, so two servers racing for the last slot cannot both
 * take it. Times are Redis's own (`TIME`): every process agrees on them.
 */
import { createHash } from 'node:crypto';
import type { RunSlots, SlotClaim, SlotHolder } from '../core/run-slots.js';
import { FlowcastError, ErrorCodes } from '../core/errors.js';
import { show } from '../core/validate.js';
import { slotGroupKey } from './keys.js';
import { LuaScript, type RedisClient } from './lua.js';
import { RedisRunQueue } from './run-queue.js';

const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/**
 * Takes a slot of a group.
 * KEYS[1] the group's hash. ARGV[1] run id, ARGV[2] limit, ARGV[3] ttl (ms).
 * Returns {1} when the run holds a slot now (it may have held it already), else
 * {0, run id, since_ms, run id, since_ms, ...} of the live holders. Expired holders are dropped.
 */
const ACQUIRE = new LuaScript(`${NOW}
local all = redis.call('HGETALL', KEYS[1])
local out = {0}
local n = 0
local last = 0
for i = 1, #all, 2 do
  local v = all[i + 1]
  local sep = string.find(v, ':', 1, true)
  local exp = tonumber(string.sub(v, sep + 1))
  if exp <= now then
    redis.call('HDEL', KEYS[1], all[i])
  else
    if all[i] == ARGV[1] then return {1} end
    n = n + 1
    out[#out + 1] = all[i]
    out[#out + 1] = string.sub(v, 1, sep - 1)
    if exp > last then last = exp end
  end
end
if n >= tonumber(ARGV[2]) then return out end
local exp = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], now .. ':' .. exp)
if exp > last then last = exp end
redis.call('PEXPIREAT', KEYS[1], last)
return {1}
`);

/**
 * Pushes a holder's expiry on.
 * KEYS[1] the group's hash. ARGV[1] run id, ARGV[2] ttl (ms). Returns 1, or 0 when the run holds no slot.
 */
const REFRESH = new LuaScript(`${NOW}
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local sep = string.find(v, ':', 1, true)
local exp = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], string.sub(v, 1, sep - 1) .. ':' .. exp)
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIREAT', KEYS[1], exp) end
return 1
`);

/**
 * Reads a group's live holders (changes nothing: expired ones stay until the next take).
 * KEYS[1] the group's hash. Returns {run id, since_ms, run id, since_ms, ...}.
 */
const HOLDERS = new LuaScript(`${NOW}
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local v = all[i + 1]
  local sep = string.find(v, ':', 1, true)
  if tonumber(string.sub(v, sep + 1)) > now then
    out[#out + 1] = all[i]
    out[#out + 1] = string.sub(v, 1, sep - 1)
  end
end
return out
`);

/** Slots shared through Redis (the BullMQ broker's `slots`). */
export class RedisRunSlots implements RunSlots {
  /** The queues of the groups whose policy queues starts over the limit (src/redis/run-queue.ts). */
  readonly queue: RedisRunQueue;

  constructor(
    readonly redis: RedisClient,
    readonly keyPrefix: string,
  ) {
    this.queue = new RedisRunQueue(redis, keyPrefix);
  }

  #key(group: string): string {
    return slotGroupKey(this.keyPrefix, createHash('sha1').update(group).digest('hex'));
  }

  async acquire(group: string, limit: number, runId: string, ttlMs: number): Promise<SlotClaim> {
    const reply = (await ACQUIRE.run(this.redis, [this.#key(group)], [runId, limit, Math.ceil(ttlMs)])) as unknown[];
    if (!Array.isArray(reply) || (reply[0] !== 0 && reply[0] !== 1)) {
      throw new FlowcastError(ErrorCodes.CONNECTION_FAILED, `Unexpected answer of the slot script: ${show(reply)}`);
    }
    if (reply[0] === 1) return { ok: true };
    const holders: SlotHolder[] = [];
    for (let i = 1; i + 1 < reply.length; i += 2) holders.push({ run_id: String(reply[i]), since_ms: Number(reply[i + 1]) });
    return { ok: false, holders };
  }

  async release(group: string, runId: string): Promise<void> {
    await this.redis.hdel(this.#key(group), runId);
  }

  async refresh(group: string, runId: string, ttlMs: number): Promise<void> {
    await REFRESH.run(this.redis, [this.#key(group)], [runId, Math.ceil(ttlMs)]);
  }

  async holders(group: string): Promise<SlotHolder[]> {
    const reply = (await HOLDERS.run(this.redis, [this.#key(group)], [])) as unknown[];
    if (!Array.isArray(reply)) throw new FlowcastError(ErrorCodes.CONNECTION_FAILED, `Unexpected answer of the slot holders script: ${show(reply)}`);
    const holders: SlotHolder[] = [];
    for (let i = 0; i + 1 < reply.length; i += 2) holders.push({ run_id: String(reply[i]), since_ms: Number(reply[i + 1]) });
    return holders.sort((a, b) => a.since_ms - b.since_ms);
  }
}
