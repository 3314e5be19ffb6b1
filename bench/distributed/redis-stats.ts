/**
 * What the Redis server itself spent between two points: CPU (INFO cpu) and commands by
 * name (INFO commandstats), so the bench can say where a step's cost lands in Redis.
 */
import type { Redis } from 'ioredis';

/** One reading of the server's counters. */
export interface RedisSnapshot {
  /** used_cpu_user + used_cpu_sys, in µs. */
  cpuUs: number;
  /** Calls and µs per command name (`evalsha`, `xadd`, ...). Commands run by scripts count too. */
  commands: Map<string, { calls: number; usec: number }>;
}

/** The difference between two snapshots. */
export interface RedisUsage {
  cpuUs: number;
  calls: number;
  /** Commands by calls, most first. */
  top: { name: string; calls: number; usec: number }[];
}

function field(info: string, name: string): number {
  const m = new RegExp(`^${name}:([0-9.]+)`, 'm').exec(info);
  return m === null ? 0 : Number(m[1]);
}

export async function redisSnapshot(redis: Redis): Promise<RedisSnapshot> {
  const [cpu, stats] = await Promise.all([redis.info('cpu'), redis.info('commandstats')]);
  const commands = new Map<string, { calls: number; usec: number }>();
  for (const m of stats.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
    commands.set(m[1] as string, { calls: Number(m[2]), usec: Number(m[3]) });
  }
  return { cpuUs: (field(cpu, 'used_cpu_user') + field(cpu, 'used_cpu_sys')) * 1e6, commands };
}

export function redisUsage(before: RedisSnapshot, after: RedisSnapshot): RedisUsage {
  const top: { name: string; calls: number; usec: number }[] = [];
  let calls = 0;
  for (const [name, a] of after.commands) {
    const b = before.commands.get(name) ?? { calls: 0, usec: 0 };
    const d = { name, calls: a.calls - b.calls, usec: a.usec - b.usec };
    // INFO itself is the bench's, not the system's.
    if (d.calls <= 0 || name === 'info') continue;
    calls += d.calls;
    top.push(d);
  }
  top.sort((x, y) => y.calls - x.calls);
  return { cpuUs: after.cpuUs - before.cpuUs, calls, top };
}
