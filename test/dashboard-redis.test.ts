/**
 * The engine status with two server instances sharing a Redis transport: each announces
 * itself, and each one's GET /api/engine (and engine channel) lists both.
 */
import { describe, expect, it } from 'vitest';
import type { EngineStatus } from '../src/core/engine-status.js';
import { RedisPubSubTransport } from '../src/redis/index.js';
import { getWebSocketServer } from '../src/server/index.js';
import { useRedisServer } from './helpers/redis.js';
import { onCleanup } from './helpers/server-fixture.js';

const redis = useRedisServer();

describe('engine status on Redis', () => {
  it('lists every server instance on the transport, with its clients', async () => {
    const prefix = redis.prefix();
    const servers = [0, 1].map(() => {
      const transport = new RedisPubSubTransport(redis.connect(), { keyPrefix: prefix });
      const server = getWebSocketServer({ port: 0, transport, restRateLimit: false });
      onCleanup(async () => {
        await server.close();
        await transport.close();
      });
      return server;
    });
    for (const s of servers) await s.startServer();
    const [a, b] = servers as [(typeof servers)[number], (typeof servers)[number]];
    const deadline = Date.now() + 10_000;
    let status: EngineStatus | null = null;
    for (;;) {
      status = (await (await fetch(`${a.httpUrl}/api/engine`)).json()) as EngineStatus;
      if (status.instances.length >= 2 || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(status.instances.map((i) => i.id).sort()).toEqual([a.engine.id, b.engine.id].sort());
    expect(status.server.id).toBe(a.engine.id);
    const fromB = (await (await fetch(`${b.httpUrl}/api/engine`)).json()) as EngineStatus;
    expect(fromB.instances.map((i) => i.id).sort()).toEqual([a.engine.id, b.engine.id].sort());
    expect(fromB.instances[0]?.id).toBe(b.engine.id);
  });
});
