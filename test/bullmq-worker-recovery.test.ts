/**
 * How soon a killed worker's step goes on elsewhere, and that a live worker keeps a long
 * step: `flowcast worker` processes run the steps of runs this process starts. A worker
 * is SIGKILLed right after its step began; another worker must take the step over
 * within seconds with the default lock and stalled check (BullMQ's own 30 s + 30 s made
 * it 39-60 s), and within about a second with the short ones set by flags or the
 * environment. A step longer than the lock is never taken from the worker that runs it.
 *
 * Each wait has an upper bound only (the runs' own `timeoutMs`): with the old defaults
 * a step killed early waits at least 28 s for its lock to run out, past every bound here.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { BullMQBroker } from '../src/redis/bullmq-broker.js';
import { Pipeline } from '../src/pipeline/pipeline.js';
import type { FlowcastEvent } from '../src/events/types.js';
import { clusterTasks, killPipeline } from './fixtures/tasks/cluster.js';
import { flowcast, type CliChild } from './helpers/cli.js';
import { waitUntil } from './helpers/collect.js';
import { useRedisServer } from './helpers/redis.js';

const redis = useRedisServer();
const brokers: BullMQBroker[] = [];
afterEach(async () => {
  await Promise.all(brokers.splice(0).map((b) => b.close({ force: true })));
});

/** A `flowcast worker` on the cluster task module, once it printed its ready line. */
async function worker(prefix: string, flags: string[] = [], env: Record<string, string> = {}): Promise<CliChild> {
  const child = flowcast(['worker', '--tasks', 'test/fixtures/tasks/cluster.ts', '--redis', redis.url, '--key-prefix', prefix, '--concurrency', '2', ...flags], env);
  await waitUntil(
    () => {
      if (child.child.exitCode !== null) throw new Error(`flowcast worker exited with ${child.child.exitCode}: ${child.stderr()}`);
      return /flowcast worker \S+ ready/.test(child.stdout());
    },
    'flowcast worker ready',
    60_000,
  );
  return child;
}

function producer(prefix: string): BullMQBroker {
  const broker = new BullMQBroker({ connection: redis.url, keyPrefix: prefix, worker: false });
  brokers.push(broker);
  return broker;
}

/** The next entry of a marker list written by the fixture tasks (blocks until one comes). */
async function nextMark(prefix: string, list: string): Promise<Record<string, unknown>> {
  const client = redis.connect();
  for (;;) {
    const got = await client.blpop(`${prefix}test:${list}`, 1);
    if (got !== null) return JSON.parse(got[1]) as Record<string, unknown>;
  }
}

async function marks(prefix: string, list: string): Promise<Record<string, unknown>[]> {
  const raw = await redis.connect().lrange(`${prefix}test:${list}`, 0, -1);
  return raw.map((r) => JSON.parse(r) as Record<string, unknown>);
}

async function logOf(broker: BullMQBroker, runId: string): Promise<FlowcastEvent[]> {
  return (await broker.transport.read(runId)).events;
}

/**
 * Starts the kill pipeline (inc, then a step that hangs on its first attempt), SIGKILLs
 * the worker that runs the hanging step as soon as it began, and waits for the run's
 * result at most `timeoutMs`.
 */
async function killMidStep(prefix: string, workers: CliChild[], timeoutMs: number): Promise<{ result: unknown; events: FlowcastEvent[]; victim: number }> {
  const broker = producer(prefix);
  const handle = await killPipeline(broker, clusterTasks(broker)).kiq(1);
  const first = await nextMark(prefix, 'hang_once');
  expect(first).toMatchObject({ run: handle.runId, attempt: 1 });
  const victim = workers.find((w) => w.child.pid === first.pid);
  expect(victim).toBeDefined();
  victim?.child.kill('SIGKILL');
  const result = await handle.waitResult({ timeoutMs });
  const events = await logOf(broker, handle.runId);
  const again = await nextMark(prefix, 'hang_once');
  expect(again).toMatchObject({ run: handle.runId, attempt: 2 });
  expect(again.pid).not.toBe(first.pid);
  return { result, events, victim: first.pid as number };
}

// Each case starts node + tsx child processes: seconds each on a busy machine.
const SLOW = 120_000;

describe('a killed worker\'s step goes on elsewhere', () => {
  it('within seconds with the default lock (10 s) and stalled check (5 s): the run completes on the other worker', async () => {
    const prefix = redis.prefix();
    const workers = await Promise.all([worker(prefix), worker(prefix)]);
    expect(workers[0]?.stdout()).toMatch(/lock 10000 ms, stalled check every 5000 ms/);
    // At most 10 s for the lock to run out, 5 s to the next check, and the retry itself.
    const { result, events } = await killMidStep(prefix, workers, 25_000);
    expect(result).toBe('2:done on attempt 2');
    expect(events.find((e) => e.type === 'StepRetryEvent')).toMatchObject({ step_name: 'hang', attempt: 2, error: expect.stringMatching(/^WorkerLostError: /) as string });
    expect(events.at(-1)?.type).toBe('PipelineCompleteEvent');
  }, SLOW);

  it('within about a second with FLOWCAST_LOCK_DURATION_MS=1000 and FLOWCAST_STALLED_INTERVAL_MS=500', async () => {
    const prefix = redis.prefix();
    const env = { FLOWCAST_LOCK_DURATION_MS: '1000', FLOWCAST_STALLED_INTERVAL_MS: '500' };
    const workers = await Promise.all([worker(prefix, [], env), worker(prefix, [], env)]);
    expect(workers[0]?.stdout()).toMatch(/lock 1000 ms, stalled check every 500 ms/);
    const { result } = await killMidStep(prefix, workers, 10_000);
    expect(result).toBe('2:done on attempt 2');
  }, SLOW);

  it('a step longer than the lock (5 s, --lock-duration-ms 2000 --stalled-interval-ms 1000) stays with its live worker: it runs once', async () => {
    const prefix = redis.prefix();
    const workers = await Promise.all([0, 1].map(() => worker(prefix, ['--lock-duration-ms', '2000', '--stalled-interval-ms', '1000'])));
    expect(workers[0]?.stdout()).toMatch(/lock 2000 ms, stalled check every 1000 ms/);
    const broker = producer(prefix);
    const t = clusterTasks(broker);
    const handle = await new Pipeline(broker, { id: 'long' }).callNext(t.long).kiq(5_000);
    expect(await handle.waitResult({ timeoutMs: 60_000 })).toBe('slept 5000 on attempt 1');
    expect((await marks(prefix, 'long')).map((m) => m.attempt)).toEqual([1]);
    expect((await logOf(broker, handle.runId)).map((e) => e.type)).toEqual(['PipelineStartEvent', 'StepStartEvent', 'StepCompleteEvent', 'PipelineCompleteEvent']);
  }, SLOW);

  it('flowcast worker refuses a bad lock or stalled-check setting, from a flag or the environment (exit 2, naming it)', async () => {
    const flag = flowcast(['worker', '--tasks', 'test/fixtures/tasks/cluster.ts', '--redis', redis.url, '--lock-duration-ms', '0']);
    expect((await flag.exited).code).toBe(2);
    expect(flag.stderr()).toMatch(/--lock-duration-ms.*expected a whole number >= 1, received "0"/);
    const env = flowcast(['worker', '--tasks', 'test/fixtures/tasks/cluster.ts', '--redis', redis.url], { FLOWCAST_STALLED_INTERVAL_MS: 'soon' });
    expect((await env.exited).code).toBe(2);
    expect(env.stderr()).toContain('FLOWCAST_STALLED_INTERVAL_MS must be a whole number >= 1, received "soon"');
    const count = flowcast(['worker', '--tasks', 'test/fixtures/tasks/cluster.ts', '--redis', redis.url], { FLOWCAST_MAX_STALLED_COUNT: '-1' });
    expect((await count.exited).code).toBe(2);
    expect(count.stderr()).toContain('FLOWCAST_MAX_STALLED_COUNT must be a whole number >= 0, received "-1"');
  }, SLOW);
});
