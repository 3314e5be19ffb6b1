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
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { Redis, type RedisOptions } from 'ioredis';

/** Options of {@link startRedisServer}. */
export interface RedisServerOptions {
  /** @default a free port */
  port?: number;
  /** Turn on the append-only file (for restart tests). @default false */
  appendOnly?: boolean;
  /** @default a new temporary folder */
  dir?: string;
}

/** A running `redis-server` child process. */
export interface RedisServer {
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  readonly process: ChildProcess;
  /** Stops the server (SIGTERM, then SIGKILL after 5 s); resolves once it exited. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (the OS picks it; a tiny race with other processes remains). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Starts `redis-server` and resolves once it answers PING. */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const port = options.port ?? (await freePort());
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'flowcast-redis-'));
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--daemonize', 'no', '--loglevel', 'warning'];
  args.push('--appendonly', options.appendOnly === true ? 'yes' : 'no');
  if (options.appendOnly === true) args.push('--appendfsync', 'always');
  const child = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => void (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `redis://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}: ${stderr}`);
    const probe = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on('error', () => undefined);
    try {
      await probe.connect();
      await probe.ping();
      probe.disconnect();
      break;
    } catch {
      probe.disconnect();
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`redis-server on port ${port} did not answer within 10 s: ${stderr}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  return {
    port,
    url,
    dir,
    process: child,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

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
      const client = new Redis({ port: need().port, host: '127.0.0.1', maxRetriesPerRequest: null, ...opts } as RedisOptions);
      clients.push(client);
      return client;
    },
  };
}
