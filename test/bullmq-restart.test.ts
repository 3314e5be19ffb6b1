/**
 * BullMQBroker across a Redis restart (AOF on): a run whose step is running while Redis
 * goes down completes once Redis is back, new runs start and complete, waitResult() and
 * cancel keep working, and the worker's heartbeat comes back in the engine status.
 */
import { rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { BullMQBroker } from '../src/redis/bullmq-broker.js';
import { Pipeline } from '../src/pipeline/pipeline.js';
import { ErrorCodes } from '../src/core/errors.js';
import { startRedisServer, type RedisServer } from './helpers/redis.js';

let server: RedisServer | null = null;
const brokers: BullMQBroker[] = [];

afterAll(async () => {
  await Promise.all(brokers.map((b) => b.close({ force: true })));
  await server?.stop();
  if (server !== null) rmSync(server.dir, { recursive: true, force: true });
});

describe('BullMQBroker and a Redis restart', () => {
  it('a run in flight while Redis restarts completes; new runs, cancel and the engine status work afterwards', async () => {
    server = await startRedisServer({ appendOnly: true });
    const { port, dir } = server;
    const quiet = { onError: () => undefined };
    const worker = new BullMQBroker({ connection: server.url, keyPrefix: 'restart:', worker: { concurrency: 4, heartbeatMs: 300 }, ...quiet });
    const producer = new BullMQBroker({ connection: server.url, keyPrefix: 'restart:', worker: false, ...quiet });
    brokers.push(worker, producer);
    await worker.waitUntilReady();

    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    worker.task('gated', async (n: number) => {
      entered();
      await gate;
      return n + 1;
    });
    worker.task('inc', (n: number) => n + 1);
    worker.task('wait_signal', (_: null, ctx) => new Promise<number>((_r, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason as Error), { once: true })));
    const gated = producer.task('gated', (n: number) => n);
    // A producer registers the tasks for their typed handles; their bodies run on workers only.
    const inc = producer.task('inc', (n: number) => n);
    const waitSignal = producer.task('wait_signal', () => 0);

    const pipeline = new Pipeline(producer, { id: 'restart' }).callNext(gated).callNext(inc);
    const before = await pipeline.kiq(1);
    await inside;

    await server.stop();
    server = await startRedisServer({ port, dir, appendOnly: true });
    release();

    expect(await before.waitResult({ timeoutMs: 20_000 })).toBe(3);
    const after = await new Pipeline(producer, { id: 'restart_after' }).callNext(inc).kiq(10);
    expect(await after.waitResult({ timeoutMs: 20_000 })).toBe(11);

    const cancelled = await new Pipeline(producer, { id: 'restart_cancel' }).callNext(waitSignal).kiq(null);
    let started = await producer.runState.get(cancelled.runId);
    while (started?.steps.wait_signal?.started_at_ms === null) {
      await new Promise((r) => setTimeout(r, 20));
      started = await producer.runState.get(cancelled.runId);
    }
    expect(await cancelled.cancel('after the restart')).toBe(true);
    await expect(cancelled.waitResult({ timeoutMs: 10_000 })).rejects.toMatchObject({ code: ErrorCodes.CANCELLED });

    let status = await producer.engineStatus();
    while (status.workers.length === 0) {
      await new Promise((r) => setTimeout(r, 50));
      status = await producer.engineStatus();
    }
    expect(status.workers.map((w) => w.id)).toEqual([worker.workerId]);
  }, 60_000);
});
