/**
 * Redis tracking storage: stores N runs' statuses (5 steps each) started over the last
 * 6 days plus N older runs outside the window, then times getMetrics({ days: 7 }) and
 * getMetrics({ days: 1 }) (the time index bounds what is read), and the applyEvent path
 * (events/s with runs in flight). Starts its own redis-server on a free port.
 *
 * Usage:
 *   npx esbuild bench/redis-tracking.ts --bundle --platform=node --format=esm --packages=external --outfile=.tmp/bench-redis-tracking.mjs
 *   node .tmp/bench-redis-tracking.mjs [runs=10000] [rounds=5]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { RedisPipelineStorage } from '../src/redis/storage.js';
import { PipelineTrackingManager } from '../src/tracking/manager.js';
import type { PipelineStatus } from '../src/tracking/models.js';
import { reduce, scriptedRun } from '../test/helpers/events.js';

const RUNS = Number(process.argv[2] ?? 10_000);
const ROUNDS = Number(process.argv[3] ?? 5);
const DAY = 86_400_000;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
    });
  });
}

function statuses(count: number, from: number, span: number, pipelines: number): PipelineStatus[] {
  const out: PipelineStatus[] = [];
  for (let i = 0; i < count; i++) {
    const steps = ['extract', 'clean', 'enrich', 'load', 'notify'].map((name, j) => ({ name, ms: 20 + ((i * 7 + j * 13) % 200), ...(i % 17 === 0 && j === 3 ? { error: 'Error: timeout' } : {}) }));
    const run = scriptedRun({ pipelineId: `pipe_${i % pipelines}`, start: from + Math.floor((i / count) * span), steps });
    out.push(reduce(run.events) as PipelineStatus);
  }
  return out;
}

async function inParallel<T>(items: T[], width: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await fn(items[next++] as T);
    }),
  );
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

async function main(): Promise<void> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'flowcast-bench-redis-'));
  const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const redis = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: null, retryStrategy: (n) => (n > 50 ? null : 50) });
  // Refused connections while redis-server starts are retried; the commands wait for the connection.
  redis.on('error', () => undefined);
  try {
    await redis.ping();
    const storage = new RedisPipelineStorage(redis, { keyPrefix: 'bench:' });
    const tracking = new PipelineTrackingManager().withStorage(storage);
    const now = Date.now();
    const recent = statuses(RUNS, now - 6 * DAY, 6 * DAY - 60_000, 20);
    const old = statuses(RUNS, now - 60 * DAY, 30 * DAY, 20);

    let t = performance.now();
    await inParallel([...recent, ...old], 100, (s) => storage.saveStatus(s));
    const saveMs = performance.now() - t;
    console.log(`saveStatus: ${2 * RUNS} runs in ${saveMs.toFixed(0)} ms (${((2 * RUNS) / (saveMs / 1000)).toFixed(0)} runs/s, 100 in flight)`);

    for (const days of [7, 1]) {
      const times: number[] = [];
      let total = 0;
      for (let r = 0; r < ROUNDS; r++) {
        t = performance.now();
        const m = await tracking.getMetrics({ days });
        times.push(performance.now() - t);
        total = m.total_pipelines;
      }
      console.log(`getMetrics({ days: ${days} }): ${total} runs in the window of ${2 * RUNS} stored; median ${median(times).toFixed(0)} ms over ${ROUNDS} rounds [${times.map((x) => x.toFixed(0)).join(', ')}]`);
    }

    const running = [];
    for (let i = 0; i < 1000; i++) running.push(scriptedRun({ pipelineId: 'live', start: now, steps: ['a', 'b', 'c', 'd', 'e'].map((name) => ({ name, ms: 5 })) }));
    const events = running.flatMap((r) => r.events.map((e) => e));
    t = performance.now();
    // 100 runs in flight, each run's events in seq order (as the engine records them).
    await inParallel(running, 100, async (r) => {
      for (const e of r.events) await storage.applyEvent(e);
    });
    const applyMs = performance.now() - t;
    console.log(`applyEvent: ${events.length} events of ${running.length} runs in ${applyMs.toFixed(0)} ms (${(events.length / (applyMs / 1000)).toFixed(0)} events/s, 100 runs in flight)`);
    await tracking.close();
  } finally {
    redis.disconnect();
    server.kill('SIGTERM');
    await new Promise((resolve) => server.once('exit', resolve));
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
