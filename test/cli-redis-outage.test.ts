/**
 * What `flowcast serve` and `flowcast worker` do when Redis is not there, as a user and
 * a supervisor see it: real child processes and a real redis-server that the test kills
 * and starts again on the same port.
 *
 * - nothing at the URL at start: exit 1 with one line naming the Redis and the reason;
 * - Redis killed under a running server and worker: /health 200 (alive), /ready 503
 *   with the reason, /api/runs 503 redis_unavailable at once, a few log lines only;
 * - Redis back on the same port: /ready 200 again and runs complete;
 * - SIGTERM while Redis is down: both processes exit 0 within the shutdown timeout, and
 *   serve says in one line what it could not write.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it, vi } from 'vitest';
import { flowcast, type CliChild } from './helpers/cli.js';
import { waitUntil } from './helpers/collect.js';
import { freePort, startRedisServer, type RedisServer } from './helpers/redis-server.js';

// Child processes with node + tsx, and a Redis restart: tens of seconds on a busy machine.
vi.setConfig({ testTimeout: 240_000 });

/** GET with a bound: a request that hangs fails the test instead of stalling it. */
async function get(url: string): Promise<{ status: number; body: unknown; retryAfter: string | null }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, body, retryAfter: res.headers.get('retry-after') };
}

/** Polls an async condition every 200 ms until it holds (a failed request counts as "not yet"). */
async function poll(condition: () => Promise<boolean>, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await sleep(200);
  }
}

function lines(text: string): string[] {
  return text.split('\n').filter((l) => l.trim() !== '');
}

async function startServe(url: string, prefix: string): Promise<CliChild & { port: number }> {
  const c = flowcast(['serve', '--port', '0', '--redis', url, '--key-prefix', prefix, '--demo', '--no-worker', '--concurrency', '1', '--shutdown-timeout', '5']);
  let port = 0;
  await Promise.race([
    waitUntil(() => {
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(c.stdout());
      if (m !== null) port = Number(m[1]);
      return port > 0;
    }, 'the serve banner', 60_000),
    c.exited.then(({ code }) => {
      throw new Error(`serve exited with ${code} before listening: ${c.stderr()}`);
    }),
  ]);
  return { ...c, port };
}

describe('flowcast serve and worker: Redis unreachable at start', () => {
  it('serve exits 1 with one line naming the Redis and the reason', async () => {
    const port = await freePort();
    const c = flowcast(['serve', '--port', '0', '--redis', `redis://:secret@127.0.0.1:${port}`, '--redis-connect-timeout', '1']);
    const { code } = await c.exited;
    expect(code).toBe(1);
    expect(lines(c.stderr())).toHaveLength(1);
    expect(c.stderr()).toMatch(new RegExp(`^flowcast serve: cannot reach Redis at redis://:\\*\\*\\*@127\\.0\\.0\\.1:${port}/? \\(tried for 1 s\\): .*ECONNREFUSED`));
    expect(c.stderr()).not.toContain('secret');
    expect(c.stdout()).toBe('');
  });

  it('worker exits 1 with one line too; FLOWCAST_REDIS_CONNECT_TIMEOUT sets the bound', async () => {
    const port = await freePort();
    const c = flowcast(['worker', '--demo', '--redis', `redis://127.0.0.1:${port}`], { FLOWCAST_REDIS_CONNECT_TIMEOUT: '1' });
    const { code } = await c.exited;
    expect(code).toBe(1);
    expect(lines(c.stderr())).toHaveLength(1);
    expect(c.stderr()).toMatch(/^flowcast worker: cannot reach Redis at redis:\/\/127\.0\.0\.1:\d+\/? \(tried for 1 s\): .*ECONNREFUSED/);
  });

  it('a bad FLOWCAST_REDIS_CONNECT_TIMEOUT or REDIS_URL is a usage error naming the variable (exit 2)', async () => {
    const bad = flowcast(['serve', '--port', '0'], { FLOWCAST_REDIS_CONNECT_TIMEOUT: 'soon' });
    expect((await bad.exited).code).toBe(2);
    expect(bad.stderr()).toContain("from env 'FLOWCAST_REDIS_CONNECT_TIMEOUT'");
    const url = flowcast(['worker', '--demo'], { REDIS_URL: 'http://127.0.0.1:6379' });
    expect((await url.exited).code).toBe(2);
    expect(url.stderr()).toContain('REDIS_URL: expected a redis:// or rediss:// URL');
  });
});

describe('flowcast serve and worker: Redis goes away and comes back', () => {
  it('stays alive, says not ready, answers 503 at once, logs little; recovers when Redis is back; exits on SIGTERM while it is down', async () => {
    let redis: RedisServer = await startRedisServer();
    const redisPort = redis.port;
    const prefix = `outage${process.pid}:`;
    try {
      const server = await startServe(redis.url, prefix);
      const worker = flowcast(['worker', '--demo', '--redis', redis.url, '--key-prefix', prefix, '--shutdown-timeout', '5']);
      await waitUntil(() => worker.stdout().includes('ready:'), 'the worker to be ready', 60_000);
      const base = `http://127.0.0.1:${server.port}`;
      expect((await get(`${base}/ready`)).status).toBe(200);
      await poll(async () => ((await get(`${base}/api/runs?status=COMPLETED`)).body as { runs: unknown[] }).runs.length > 0, 'a demo run to complete', 90_000);

      // Redis dies.
      await redis.stop('SIGKILL');
      const serverLinesBefore = lines(server.stderr()).length;
      const workerLinesBefore = lines(worker.stderr()).length;
      await poll(async () => (await get(`${base}/ready`)).status === 503, '/ready to say 503', 30_000);
      const ready = await get(`${base}/ready`);
      expect(ready.body).toMatchObject({ status: 'unavailable', reason: expect.stringMatching(/^Redis unreachable/) as unknown });
      expect((await get(`${base}/health`)).status).toBe(200);
      const runs = await get(`${base}/api/runs`);
      expect(runs.status).toBe(503);
      expect(runs.retryAfter).not.toBeNull();
      expect(runs.body).toMatchObject({ error: { code: 'redis_unavailable' } });
      // Reconnect attempts go on for a while; the log does not fill up.
      await sleep(5000);
      const serverLines = lines(server.stderr()).slice(serverLinesBefore);
      const workerLines = lines(worker.stderr()).slice(workerLinesBefore);
      expect(serverLines.length, serverLines.join('\n')).toBeGreaterThan(0);
      expect(serverLines.length, serverLines.join('\n')).toBeLessThanOrEqual(6);
      expect(workerLines.length, workerLines.join('\n')).toBeLessThanOrEqual(6);
      // JSON lines (stderr is not a terminal), with the reason.
      const first = JSON.parse(serverLines[0] as string) as { level: number; msg: string };
      expect(first.level).toBe(50);
      expect(first.msg).toMatch(/Redis unreachable \(ECONNREFUSED 127\.0\.0\.1:\d+\)/);

      // Redis comes back on the same port (empty: it saved nothing).
      redis = await startRedisServer({ port: redisPort });
      await poll(async () => (await get(`${base}/ready`)).status === 200, '/ready to say 200 again', 60_000);
      await poll(
        async () => {
          const answer = await get(`${base}/api/runs?status=COMPLETED`);
          return answer.status === 200 && (answer.body as { runs: unknown[] }).runs.length > 0;
        },
        'a run to complete after the restart',
        120_000,
      ).catch((error: unknown) => {
        // What the two processes said, to tell a stuck worker from a slow machine.
        const tail = (text: string): string => lines(text).slice(-15).join('\n');
        throw new Error(`${String(error)}\nserve stderr:\n${tail(server.stderr())}\nworker stdout:\n${tail(worker.stdout())}\nworker stderr:\n${tail(worker.stderr())}`);
      });

      // Redis dies again; a supervisor stops both processes.
      await redis.stop('SIGKILL');
      await poll(async () => (await get(`${base}/ready`)).status === 503, '/ready to say 503 again', 30_000);
      const serverLinesAtStop = lines(server.stderr()).length;
      server.child.kill('SIGTERM');
      worker.child.kill('SIGTERM');
      // Generous bound for the test; the processes' own bound is --shutdown-timeout 5:
      // past it they would exit 1 with a "took longer" line.
      const stopped = await Promise.race([Promise.all([server.exited, worker.exited]), sleep(60_000).then(() => null)]);
      const output = `serve: ${server.stderr()}\nworker: ${worker.stderr()}`;
      expect(stopped, output).not.toBeNull();
      const [serverExit, workerExit] = stopped ?? [];
      expect(serverExit, output).toEqual({ code: 0, signal: null });
      expect(workerExit, output).toEqual({ code: 0, signal: null });
      expect(server.stderr()).not.toContain('took longer');
      expect(worker.stderr()).not.toContain('took longer');
      expect(server.stdout()).toContain('flowcast serve: stopping');
      // What could not reach Redis is said in one line (besides the outage's own counts).
      const stopLines = lines(server.stderr())
        .slice(serverLinesAtStop)
        .filter((l) => !/"msg":"Redis unreachable \(/.test(l));
      expect(stopLines, stopLines.join('\n')).toHaveLength(1);
      expect((JSON.parse(stopLines[0] as string) as { msg: string }).msg).toMatch(/closing without Redis \(ECONNREFUSED 127\.0\.0\.1:\d+\)/);
    } finally {
      await redis.stop('SIGKILL').catch(() => undefined);
    }
  });
});
