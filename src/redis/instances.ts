/**
 * The registry of server instances sharing one Redis (seed 002's engine status view):
 * each instance announces itself with an expiry; dead ones disappear by themselves.
 * Used by {@link RedisPubSubTransport.announceInstance} and `instances()`.
 */
import type { Redis } from 'ioredis';
import type { ServerInstanceStatus } from '../core/engine-status.js';
import { checkId, checkObject, checkPositiveInt } from '../core/validate.js';
import { serverExpiryKey, serverStatusKey } from './keys.js';
import { ANNOUNCE_SCRIPT, INSTANCES_SCRIPT, LuaScript } from './lua.js';

const announceScript = new LuaScript(ANNOUNCE_SCRIPT);
const instancesScript = new LuaScript(INSTANCES_SCRIPT);

/** Records `status` as alive for `ttlMs` (Redis server time), and forgets expired instances. */
export async function announceInstance(redis: Redis, prefix: string, status: ServerInstanceStatus, ttlMs: number): Promise<void> {
  checkObject(status, 'announceInstance(status)');
  checkId(status.id, 'status.id');
  checkPositiveInt(ttlMs, 'ttlMs');
  await announceScript.run(redis, [serverStatusKey(prefix), serverExpiryKey(prefix)], [status.id, JSON.stringify(status), ttlMs]);
}

/** Every instance whose last announcement has not expired, by id. */
export async function listInstances(redis: Redis, prefix: string): Promise<ServerInstanceStatus[]> {
  const raw = (await instancesScript.run(redis, [serverStatusKey(prefix), serverExpiryKey(prefix)], [])) as (string | null)[];
  const out: ServerInstanceStatus[] = [];
  for (const text of raw) {
    if (text === null) continue;
    try {
      out.push(JSON.parse(text) as ServerInstanceStatus);
    } catch {
      // An entry another version wrote: not ours to judge, skipped.
    }
  }
  return out.sort((a, b) => a.id.localeCompare(b.id));
}
