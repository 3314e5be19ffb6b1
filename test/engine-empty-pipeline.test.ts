/**
 * A pipeline with no steps (seed 001 §10.3's health check: `Pipeline(broker).with_tracking(tracking)`
 * then `kiq("health_check")`) completes at once: COMPLETED, zero steps, its start and
 * complete events, on the in-memory broker and on BullMQ.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { DataflowPipeline, HookManager, InMemoryBroker, Pipeline, PipelineTrackingManager, type Broker, type FlowcastEvent } from '../src/index.js';
import { BullMQBroker } from '../src/redis/bullmq-broker.js';
import { waitUntil } from './helpers/collect.js';
import { useRedisServer } from './helpers/redis.js';

const redis = useRedisServer();

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

const brokers: [string, () => Promise<Broker>][] = [
  [
    'InMemoryBroker',
    async () => {
      const broker = new InMemoryBroker();
      closers.push(() => broker.close());
      return Promise.resolve(broker);
    },
  ],
  [
    'BullMQBroker',
    async () => {
      const broker = new BullMQBroker({ connection: redis.url, keyPrefix: redis.prefix(), worker: { concurrency: 2 } });
      closers.push(() => broker.close());
      await broker.waitUntilReady();
      return broker;
    },
  ],
];

/** The seed's health check, typed in as written. */
async function trackingHealth(broker: Broker, tracking: PipelineTrackingManager): Promise<{ status: string; error?: string }> {
  try {
    const testPipeline = new Pipeline(broker).withTracking(tracking);
    await testPipeline.kiq('health_check');
    return { status: 'healthy' };
  } catch (e) {
    return { status: 'unhealthy', error: String(e) };
  }
}

describe.each(brokers)('a pipeline with no steps on %s', (_name, make) => {
  it("seed 001's health check (a tracked pipeline with no steps) reports healthy", async () => {
    const broker = await make();
    const tracking = new PipelineTrackingManager().withAutoStorage(broker);
    closers.push(() => tracking.close());
    // The broker first (idempotent): its worker may still be handing the run's last events to tracking.
    closers.push(() => broker.close());
    expect(await trackingHealth(broker, tracking)).toEqual({ status: 'healthy' });
  });

  it.each([
    ['Pipeline', (b: Broker) => new Pipeline(b, { id: 'empty_seq' })],
    ['DataflowPipeline', (b: Broker) => new DataflowPipeline(b, { id: 'empty_dag' })],
  ] as const)('a %s with no steps completes at once as COMPLETED, zero steps, with its start and complete events', async (_kind, build) => {
    const broker = await make();
    const tracking = new PipelineTrackingManager().withAutoStorage(broker);
    closers.push(() => tracking.close());
    // The broker first (idempotent): its worker may still be handing the run's last events to tracking.
    closers.push(() => broker.close());
    const hooks = new HookManager();
    const seen: FlowcastEvent[] = [];
    hooks.on('*', (e) => void seen.push(e));
    const pipeline = build(broker).withHooks(hooks).withTracking(tracking);

    const run = await pipeline.kiq('health_check');
    expect(await run.waitResult({ timeoutMs: 10_000 })).toBeNull();
    await waitUntil(() => seen.some((e) => e.type === 'PipelineCompleteEvent'), 'the run’s complete event reached the hooks');

    expect(seen.map((e) => [e.type, e.seq])).toEqual([
      ['PipelineStartEvent', 1],
      ['PipelineCompleteEvent', 2],
    ]);
    const [start, end] = seen;
    expect(start).toMatchObject({ run_id: run.runId, pipeline_id: pipeline.pipelineId, steps: [], input: 'health_check' });
    expect(end).toMatchObject({ run_id: run.runId, status: 'COMPLETED', result: null });

    const status = await tracking.getStatus(run.runId);
    expect(status).toMatchObject({ run_id: run.runId, status: 'COMPLETED', steps: [], result: null, last_seq: 2, progress: 1 });
    expect(status?.completed_at).not.toBeNull();
    expect((await run.getRun())?.status).toBe('COMPLETED');
    // The health check can be run again and again: each run is its own.
    const again = await pipeline.kiq('health_check');
    expect(await again.waitResult({ timeoutMs: 10_000 })).toBeNull();
    expect(again.runId).not.toBe(run.runId);
  });
});
