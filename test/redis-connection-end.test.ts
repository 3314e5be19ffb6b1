/**
 * Ending ioredis connections while Redis is away (src/redis/connection-end.ts), and a
 * server on a Redis transport that closes while Redis is away: real clients against a
 * port where nothing listens, and a real redis-server for the polite close.
 */
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { closeConnection, dropConnection } from '../src/redis/connection-end.js';
import { RedisPubSubTransport } from '../src/redis/transport.js';
import { getWebSocketServer } from '../src/server/index.js';
import { captureLogger } from './helpers/logger.js';
import { freePort, useRedisServer } from './helpers/redis.js';

const redis = useRedisServer();

/** A client of a port where nothing listens, once it waits to reconnect (as after Redis went away). */
async function reconnectingClient(): Promise<Redis> {
  const client = new Redis({ port: await freePort(), host: '127.0.0.1', maxRetriesPerRequest: null, retryStrategy: () => 50 });
  client.on('error', () => undefined);
  const deadline = Date.now() + 10_000;
  while (client.status !== 'reconnecting') {
    if (Date.now() > deadline) throw new Error(`the client did not start reconnecting (status ${client.status})`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return client;
}

/** Resolves with how `promise` settled, or "pending" when it has not within `ms` (a bound for waiting, never asserted on). */
async function settled(promise: Promise<unknown>, ms = 10_000): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const pending = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve('pending'), ms);
  });
  const outcome = promise.then(
    (value) => `resolved ${JSON.stringify(value)}`,
    (error: unknown) => `rejected ${error instanceof Error ? error.message : String(error)}`,
  );
  try {
    return await Promise.race([outcome, pending]);
  } finally {
    clearTimeout(timer);
  }
}

describe('dropConnection', () => {
  it('fails the commands of a client waiting to reconnect, and every later one, and ends it', async () => {
    const client = await reconnectingClient();
    const queued = client.get('k');
    dropConnection(client);
    expect(await settled(queued)).toBe('rejected Connection is closed.');
    expect(client.status).toBe('end');
    expect(await settled(client.set('k', 'v'))).toBe('rejected Connection is closed.');
    // Idempotent.
    dropConnection(client);
    expect(client.status).toBe('end');
  });

  it('closeConnection: QUIT on a connection that is up, a drop on one that is not', async () => {
    const up = redis.connect();
    await up.ping();
    const ended = once(up, 'end');
    await closeConnection(up);
    expect(await settled(ended)).toMatch(/^resolved/);
    expect(up.status).toBe('end');
    const down = await reconnectingClient();
    const queued = down.get('k');
    await closeConnection(down);
    expect(await settled(queued)).toBe('rejected Connection is closed.');
    expect(down.status).toBe('end');
  });
});

describe('a server on a Redis transport while Redis is away', () => {
  it('closes without logging the epoch read that fails as its connection ends', async () => {
    const client = await reconnectingClient();
    const { logger, lines } = captureLogger('debug');
    const transport = new RedisPubSubTransport(client, { keyPrefix: 'closing:', onError: () => undefined });
    const server = getWebSocketServer({ port: 0, transport, logger, heartbeatMs: 0 });
    // The hub asked for the epoch; the read waits for Redis.
    await server.close();
    await transport.close();
    dropConnection(client);
    // The read has failed now ("Connection is closed."): give its handler a few turns.
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(lines.filter((l) => JSON.stringify(l).includes('epoch'))).toEqual([]);
  });
});
