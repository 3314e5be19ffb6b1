/**
 * A real `redis-server` for the Redis suites: one server per test file (started on a
 * free port in a fresh folder, stopped after the file), and a unique key prefix per test
 * so tests never see each other's keys. Connections made with `connectRedis()` are
 * closed after the test.
 *
 * @example
 * const redis = useRedisServer();
 * it('stores', async () => {
 *   const client = redis.connect();
 *   const storage = new RedisPipelineStorage(client, { keyPrefix: redis.prefix() });
 * });
 */
import { rmSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { Redis, type RedisOptions } from 'ioredis';
import { startRedisServer, type RedisServer, type RedisServerOptions } from './redis-server.js';

export { freePort, startRedisServer, type RedisServer, type RedisServerOptions } from './redis-server.js';

/** What {@link useRedisServer} gives a test file. */
export interface RedisFixture {
  /** The running server (after `beforeAll`). */
  readonly server: RedisServer;
  readonly url: string;
  /** A key prefix unique to the current test, e.g. `t7f3a2c:`. */
  prefix(): string;
  /** A new ioredis connection, closed after the test. */
  connect(options?: RedisOptions): Redis;
}

/** Starts one `redis-server` for the test file; a fresh prefix per test; connections closed after each test. */
export function useRedisServer(options: RedisServerOptions = {}): RedisFixture {
  let server: RedisServer | null = null;
  let current = '';
  const clients: Redis[] = [];
  beforeAll(async () => {
    server = await startRedisServer(options);
  }, 20_000);
  afterEach(async () => {
    current = '';
    await Promise.all(
      clients.splice(0).map(async (client) => {
        if (client.status === 'end') return;
        try {
          await client.quit();
        } catch {
          client.disconnect();
        }
      }),
    );
  });
  afterAll(async () => {
    await server?.stop();
    if (server !== null && options.dir === undefined) rmSync(server.dir, { recursive: true, force: true });
  });
  const need = (): RedisServer => {
    if (server === null) throw new Error('useRedisServer(): the server is not started yet (use it inside tests or hooks)');
    return server;
  };
  return {
    get server() {
      return need();
    },
    get url() {
      return need().url;
    },
    prefix() {
      if (current === '') current = `t${randomUUID().slice(0, 8)}:`;
      return current;
    },
    connect(opts: RedisOptions = {}) {
      const client = new Redis({ port: need().port, host: '127.0.0.1', maxRetriesPerRequest: null, ...opts });
      clients.push(client);
      return client;
    },
  };
}
