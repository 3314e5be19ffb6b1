/**
 * What BullMQ tools see of flowcast's queues, against a real redis-server: a failed step
 * call leaves its job in BullMQ's failed set with the task's error and a readable name,
 * completed jobs stay for a while within `keepJobs`, and bull-board (its API, mounted on
 * a real Express server) lists the queue with the failed job.
 */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import express from 'express';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { Job, Queue, Telemetry } from 'bullmq';
import { Pipeline } from '../src/pipeline/pipeline.js';
import { BullMQBroker } from '../src/redis/bullmq-broker.js';
import type { FlowcastEvent } from '../src/events/types.js';
import { useRedisServer } from './helpers/redis.js';

/** Polls an async condition (generous bound; no timing is asserted). */
async function waitUntil(condition: () => Promise<boolean>, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs}ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const redis = useRedisServer();
const fast = { lockDurationMs: 2_000, stalledIntervalMs: 1_000, heartbeatMs: 500 };
const opened: BullMQBroker[] = [];
const servers: Server[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
  await Promise.all(opened.splice(0).map((b) => b.close()));
});

async function open(options: Partial<ConstructorParameters<typeof BullMQBroker>[0]> = {}): Promise<BullMQBroker> {
  const broker = new BullMQBroker({ connection: redis.url, keyPrefix: redis.prefix(), worker: { concurrency: 4, ...fast }, ...options });
  opened.push(broker);
  await broker.waitUntilReady();
  return broker;
}

const stepQueue = (broker: BullMQBroker): Queue => broker.queues[0] as Queue;

/** The jobs of a run in `state` once there are `n` (a job settles in BullMQ just after its run's end event). */
async function jobsOf(queue: Queue, state: 'failed' | 'completed', n: number, runId?: string): Promise<Job[]> {
  let jobs: Job[] = [];
  await waitUntil(async () => {
    jobs = (await queue.getJobs([state])).filter((j) => runId === undefined || (j.data as { run_id?: string }).run_id === runId);
    return jobs.length >= n;
  }, `${n} ${state} jobs`, 15_000);
  return jobs;
}

describe('BullMQ tooling interop', () => {
  it('keeps a failed step call in the failed set with its error and <pipeline>:<step> name; flowcast still retries it', async () => {
    const broker = await open();
    const boom = broker.task(
      'boom',
      () => {
        throw new Error('disk full on /data');
      },
      { retries: 1, retryDelayMs: 10 },
    );
    const pipeline = new Pipeline(broker, { id: 'interop_fail' }).callNext(boom);
    const run = await pipeline.kiq(1);
    await expect(run.waitResult({ timeoutMs: 15_000 })).rejects.toThrow(/disk full/);

    const queue = stepQueue(broker);
    // Each attempt is its own job: both fail, with the task's error.
    const failed = await jobsOf(queue, 'failed', 2, run.runId);
    expect(failed.map((j) => j.name)).toEqual(['interop_fail:boom', 'interop_fail:boom']);
    expect(failed.map((j) => j.failedReason)).toEqual(['Error: disk full on /data', 'Error: disk full on /data']);
    expect(failed.map((j) => (j.data as { attempt: number }).attempt).sort()).toEqual([1, 2]);
    expect(failed[0]?.opts.removeOnFail).toEqual({ count: 5000, age: 604_800 });

    // flowcast's own events are unchanged: a retry, then the step's and the run's error.
    const { events } = await broker.transport.read(run.runId);
    expect(events.map((e: FlowcastEvent) => e.type)).toEqual([
      'PipelineStartEvent',
      'StepStartEvent',
      'StepRetryEvent',
      'StepStartEvent',
      'StepErrorEvent',
      'PipelineErrorEvent',
    ]);
  });

  it('names the chained step that failed a job that ran several steps', async () => {
    const broker = await open();
    const ok = broker.task('ok', (n: number) => n);
    const boom = broker.task('boom', () => {
      throw new Error('bad input');
    });
    const run = await new Pipeline(broker, { id: 'interop_chain' }).callNext(ok).callNext(boom).kiq(1);
    await expect(run.waitResult({ timeoutMs: 15_000 })).rejects.toThrow(/bad input/);
    const [job] = await jobsOf(stepQueue(broker), 'failed', 1, run.runId);
    // Step chaining ran "boom" inside the job of "ok": the reason says so.
    expect(job?.name).toBe('interop_chain:ok');
    expect(job?.failedReason).toBe('step "boom" (attempt 1, run in this job after "ok"): Error: bad input');
  });

  it('keeps completed step jobs, bounded by keepJobs.completed.count', async () => {
    const broker = await open({ keepJobs: { completed: { count: 3, age: 600 } } });
    const ok = broker.task('ok', (n: number) => n + 1);
    const pipeline = new Pipeline(broker, { id: 'interop_ok' }).callNext(ok);
    let last = '';
    for (let i = 0; i < 6; i++) {
      const run = await pipeline.kiq(i);
      await expect(run.waitResult({ timeoutMs: 15_000 })).resolves.toBe(i + 1);
      last = run.runId;
    }
    // The last job completes just after its run's end.
    await jobsOf(stepQueue(broker), 'completed', 1, last);
    const completed = await stepQueue(broker).getCompleted();
    expect(completed).toHaveLength(3);
    expect(completed.every((j) => j.name === 'interop_ok:ok')).toBe(true);
    expect(completed[0]?.opts.removeOnComplete).toEqual({ count: 3, age: 600 });
    expect(await stepQueue(broker).getFailedCount()).toBe(0);
  });

  it("passes BullMQ's own telemetry option to the broker's queues and workers", async () => {
    // A Telemetry of BullMQ's interface that records the spans BullMQ asks for (as bullmq-otel would make them).
    const spans: string[] = [];
    const span = { setSpanOnContext: (c: unknown) => c, setAttribute: () => undefined, setAttributes: () => undefined, addEvent: () => undefined, recordException: () => undefined, end: () => undefined };
    const telemetry: Telemetry = {
      tracer: { startSpan: (name: string) => (spans.push(name), span) },
      contextManager: { with: (_ctx, fn) => fn() as never, active: () => ({}), getMetadata: () => '', fromMetadata: (ctx: unknown) => ctx },
    };
    const broker = await open({ telemetry });
    const ok = broker.task('ok', (n: number) => n);
    await expect((await new Pipeline(broker, { id: 'interop_otel' }).callNext(ok).kiq(1)).waitResult({ timeoutMs: 15_000 })).resolves.toBe(1);
    const name = stepQueue(broker).name;
    expect(spans).toContain(`add ${name}.interop_otel:ok`);
    expect(spans).toContain(`process ${name}`);
  });

  it('refuses a malformed keepJobs or telemetry option, naming it', () => {
    expect(() => new BullMQBroker({ connection: redis.url, keepJobs: { failed: { count: -1 } } })).toThrow(/keepJobs\.failed\.count must be an integer >= 0, received -1/);
    expect(() => new BullMQBroker({ connection: redis.url, keepJobs: { done: {} } as never })).toThrow(/unknown option "done"/);
    expect(() => new BullMQBroker({ connection: redis.url, keepJobs: { completed: { age: 0 } } })).toThrow(/keepJobs\.completed\.age must be an integer >= 1, received 0/);
    expect(() => new BullMQBroker({ connection: redis.url, telemetry: { tracer: 1 } as never })).toThrow(/options\.telemetry\.tracer must be an object/);
  });

  it('bull-board (on a real Express server) lists the step queue with the failed job', async () => {
    const broker = await open();
    const boom = broker.task('boom', () => {
      throw new Error('quota exceeded');
    });
    const run = await new Pipeline(broker, { id: 'interop_board' }).callNext(boom).kiq(1);
    await expect(run.waitResult({ timeoutMs: 15_000 })).rejects.toThrow(/quota exceeded/);
    await jobsOf(stepQueue(broker), 'failed', 1, run.runId);

    const serverAdapter = new ExpressAdapter();
    serverAdapter.setBasePath('/admin/queues');
    // `as never`: while @bull-board/express 9.10.1 brings its own @bull-board/api 9.10.1 next to
    // the project's 9.10.2, the two copies' types differ by a private field (same shape at run time).
    createBullBoard({ queues: broker.queues.map((q) => new BullMQAdapter(q)), serverAdapter });
    const app = express();
    app.use('/admin/queues', serverAdapter.getRouter() as express.Router);
    const server = await new Promise<Server>((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    servers.push(server);
    const { port } = server.address() as AddressInfo;
    const name = stepQueue(broker).name;
    const res = await fetch(`http://127.0.0.1:${port}/admin/queues/api/queues?activeQueue=${encodeURIComponent(name)}&status=failed&page=1`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { queues: { name: string; counts: Record<string, number>; jobs: { name: string; failedReason: string; data: { run_id: string } }[] }[] };
    const listed = body.queues.find((q) => q.name === name);
    expect(listed?.counts.failed).toBe(1);
    expect(listed?.jobs).toEqual([expect.objectContaining({ name: 'interop_board:boom', failedReason: 'Error: quota exceeded', data: expect.objectContaining({ run_id: run.runId }) as object })]);
  });
});
