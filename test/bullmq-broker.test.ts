import { describe, expect, it, afterEach } from 'vitest';
import { BullMQBroker } from '../src/redis/bullmq-broker.js';
import { ErrorCodes } from '../src/core/errors.js';
import { Pipeline } from '../src/pipeline/pipeline.js';
import { DataflowPipeline } from '../src/pipeline/dataflow.js';
import { InMemoryBroker } from '../src/pipeline/memory-broker.js';
import { getEngine } from '../src/pipeline/engine.js';
import type { RunRecord } from '../src/pipeline/run-state.js';
import type { FlowcastEvent } from '../src/events/types.js';
import { PipelineTrackingManager } from '../src/tracking/manager.js';
import { brokerConformance } from './conformance/broker.js';
import { RedisRunState } from '../src/redis/run-state.js';
import { RedisPubSubTransport } from '../src/redis/transport.js';
import { useRedisServer } from './helpers/redis.js';

const redis = useRedisServer();

const fast = { lockDurationMs: 2_000, stalledIntervalMs: 1_000, heartbeatMs: 500 };
const quiet = { onError: () => undefined };

brokerConformance('bullmq', async () => {
  const broker = new BullMQBroker({ connection: redis.url, keyPrefix: redis.prefix(), worker: { concurrency: 4, ...fast } });
  await broker.waitUntilReady();
  return broker;
});

describe('BullMQBroker', () => {
  const opened: BullMQBroker[] = [];
  const open = async (options: Partial<ConstructorParameters<typeof BullMQBroker>[0]> = {}): Promise<BullMQBroker> => {
    const broker = new BullMQBroker({ connection: redis.url, keyPrefix: redis.prefix(), worker: { concurrency: 4, ...fast }, ...options });
    opened.push(broker);
    await broker.waitUntilReady();
    return broker;
  };
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((b) => b.close()));
  });

  describe('#constructor', () => {
    it('names the option and the value it refuses', () => {
      expect(() => new BullMQBroker({ connection: 'http://x' })).toThrow(/options\.connection must be a redis:\/\/ or rediss:\/\/ URL, received "http:\/\/x"/);
      expect(() => new BullMQBroker({ connection: redis.url, keyPrefix: 'a b' })).toThrow(/keyPrefix/);
      expect(() => new BullMQBroker({ connection: redis.url, worker: { concurrency: 0 } })).toThrow(/worker\.concurrency must be an integer >= 1, received 0/);
      expect(() => new BullMQBroker({ connection: redis.url, worker: { bogus: 1 } as never })).toThrow(/unknown option "bogus"/);
      expect(() => new BullMQBroker({ connection: redis.url, nope: 1 } as never)).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }) as Error);
    });

    it('#close returns even when Redis was never reachable (worker and producer)', async () => {
      for (const worker of [true, false]) {
        const broker = new BullMQBroker({ connection: 'redis://127.0.0.1:1', worker, onError: () => undefined });
        await broker.close();
        await expect(broker.enqueue({ kind: 'task', job_id: 'x', task: 't', input: null })).rejects.toMatchObject({ code: ErrorCodes.CLOSED });
      }
    });

    it('exposes kind "bullmq", its own redis connection, and a RedisRunState and RedisPubSubTransport other parts accept', async () => {
      const broker = await open();
      expect(broker.kind).toBe('bullmq');
      expect(await broker.redis.ping()).toBe('PONG');
      expect(broker.runState).toBeInstanceOf(RedisRunState);
      expect(broker.transport).toBeInstanceOf(RedisPubSubTransport);
    });
  });

  it('runs a sequential pipeline and a dataflow DAG on Redis, with the events in the run log', async () => {
    const broker = await open();
    const inc = broker.task('inc', (n: number) => n + 1);
    const dbl = broker.task('dbl', (n: number) => n * 2);
    const range = broker.task('range', (n: number) => Array.from({ length: n }, (_, i) => i));
    const seq = new Pipeline(broker, { id: 'seq' }).callNext(inc).callNext(dbl).callNext(range).map(inc);
    const handle = await seq.kiq(1);
    expect(await handle.waitResult({ timeoutMs: 15_000 })).toEqual([1, 2, 3, 4]);

    const add = broker.task('add', (o: { a: number; b: number }) => o.a + o.b);
    const dag = new DataflowPipeline(broker, { id: 'dag' }).step('a', inc).step('b', dbl).step('sum', add, { dependsOn: ['a', 'b'] });
    const run = await dag.kiq(10);
    expect(await run.waitResult({ timeoutMs: 15_000 })).toBe(31);
    const log = await broker.transport.read(run.runId);
    expect(log.ended).toBe(true);
    expect(log.events.map((e) => e.seq)).toEqual(log.events.map((_, i) => i + 1));
    expect(log.events.filter((e) => e.type === 'StepStartEvent' && e.step_name === 'sum')).toHaveLength(1);
    expect(log.events.at(-1)?.type).toBe('PipelineCompleteEvent');
  });

  it('a worker closing gracefully finishes its running step and still sends the next one, which another worker runs', async () => {
    const prefix = redis.prefix();
    const a = await open({ keyPrefix: prefix });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    const first = a.task('first', async (n: number) => {
      entered();
      await gate;
      return n + 1;
    });
    const second = a.task('second', (n: number) => n * 10);
    const run = await new Pipeline(a, { id: 'drain' }).callNext(first).callNext(second).kiq(1);
    await inside;
    const b = await open({ keyPrefix: prefix });
    b.task('first', (n: number) => n + 1);
    const ranOnB: number[] = [];
    b.task('second', (n: number) => {
      ranOnB.push(n);
      return n * 10;
    });
    const closing = a.close();
    release();
    await closing;
    // The handle's broker is closed: wait from the other process's engine.
    expect(await getEngine(b).waitForRun(run.runId, 15_000)).toBe(20);
    expect(ranOnB).toEqual([2]);
    await expect(a.enqueue({ kind: 'task', job_id: 'late', task: 'first', input: 1 })).rejects.toMatchObject({ code: ErrorCodes.CLOSED });
  });

  it('runs thread tasks in worker threads with { threads: true }, and refuses them without', async () => {
    const broker = await open({ threads: { maxThreads: 2 } });
    const where = broker.task('where', { module: new URL('./fixtures/thread-tasks.mjs', import.meta.url), export: 'whereAmI' });
    const run = await new Pipeline(broker, { id: 'threads' }).callNext(where).kiq(7);
    expect(await run.waitResult({ timeoutMs: 15_000 })).toMatchObject({ input: 7, isMainThread: false, runId: run.runId, stepName: 'where' });
    const plain = await open();
    expect(() => plain.task('t', { module: new URL('./fixtures/thread-tasks.mjs', import.meta.url) })).toThrow(/needs a broker created with \{ threads: true \}/);
  });

  it('a run deadline fires from the control queue even while every task slot is busy, and aborts the step; a finished run leaves no deadline job', async () => {
    const broker = await open({ worker: { concurrency: 1, ...fast } });
    let aborted = '';
    const stuck = broker.task('stuck', (_: null, ctx) => new Promise<number>((_r, reject) => {
      ctx.signal.addEventListener('abort', () => {
        aborted = String((ctx.signal.reason as Error).message);
        reject(ctx.signal.reason as Error);
      }, { once: true });
    }));
    const quick = broker.task('quick', (n: number) => n);
    const slow = await new Pipeline(broker, { id: 'deadline', timeoutMs: 300 }).callNext(stuck).kiq(null);
    await expect(slow.waitResult({ timeoutMs: 15_000 })).rejects.toThrow(/timed out after 300ms/);
    expect(aborted).toMatch(/ended \(PipelineErrorEvent\)|timed out/);

    const fine = await new Pipeline(broker, { id: 'deadline_ok', timeoutMs: 60_000 }).callNext(quick).kiq(7);
    expect(await fine.waitResult({ timeoutMs: 15_000 })).toBe(7);
    // The last step's job ends after the engine dropped the deadline job.
    let status = await broker.engineStatus();
    while (status.queues[0]?.active !== 0) {
      await new Promise((r) => setTimeout(r, 20));
      status = await broker.engineStatus();
    }
    expect(status.queues.find((q) => q.name === 'control')?.delayed).toBe(0);
  });

  it('withAutoStorage(broker) picks Redis tracking on the broker\'s connection and prefix, and tracks a run', async () => {
    const prefix = redis.prefix();
    const broker = await open({ keyPrefix: prefix });
    const tracking = new PipelineTrackingManager().withAutoStorage(broker);
    const inc = broker.task('inc', (n: number) => n + 1);
    const run = await new Pipeline(broker, { id: 'tracked' }).callNext(inc).callNext(inc).withTracking(tracking).kiq(1);
    expect(await run.waitResult({ timeoutMs: 15_000 })).toBe(3);
    await getEngine(broker).flushed(run.runId);
    expect(await tracking.getStatus(run.runId)).toMatchObject({ run_id: run.runId, pipeline_id: 'tracked', status: 'COMPLETED' });
    expect((await broker.redis.keys(`${prefix}*track*`)).length).toBeGreaterThan(0);
    await tracking.close();
  });

  it('step chaining: next steps run in the job of the step before, up to chainSteps calls; map items and later steps go through the queue', async () => {
    const broker = await open({ worker: { concurrency: 4, ...fast, chainSteps: 2 } });
    const gates = new Map<string, () => void>();
    const held: string[] = [];
    const inc = broker.task('inc', (n: number) => n + 1);
    const hold = broker.task('hold', async (n: number, ctx) => {
      const name = `${ctx.stepName ?? ''}${ctx.item === null ? '' : `#${ctx.item}`}`;
      held.push(name);
      await new Promise<void>((resolve) => gates.set(name, resolve));
      return n + 1;
    });
    const split = broker.task('split', (n: number) => [n, n]);
    const run = await new Pipeline(broker, { id: 'chain' })
      .callNext(inc, { name: 's1' })
      .callNext(hold, { name: 's2' })
      .callNext(hold, { name: 's3' })
      .callNext(hold, { name: 's4' })
      .callNext(split, { name: 's5' })
      .map(hold, { name: 's6' })
      .kiq(0);
    const whileHeld = async (name: string): Promise<RunRecord> => {
      while (!held.includes(name)) await new Promise((r) => setTimeout(r, 10));
      return (await broker.runState.get(run.runId)) as RunRecord;
    };
    // s2 and s3 run in s1's job (calls 1 and 2 after it), s4 is past the limit: a job of its own.
    let rec = await whileHeld('s2');
    const s1 = rec.steps.s1?.task_id;
    expect(rec.steps.s2?.carrier).toBe(s1);
    gates.get('s2')?.();
    rec = await whileHeld('s3');
    expect(rec.steps.s3?.carrier).toBe(s1);
    expect(rec.steps.s2?.carrier).toBeUndefined();
    gates.get('s3')?.();
    rec = await whileHeld('s4');
    expect(rec.steps.s4?.carrier).toBeUndefined();
    gates.get('s4')?.();
    // s5 is chained into s4's job; the items of s6 are jobs of their own.
    await whileHeld('s6#0');
    rec = await whileHeld('s6#1');
    expect(rec.steps.s6?.carrier).toBeUndefined();
    gates.get('s6#0')?.();
    gates.get('s6#1')?.();
    expect(await run.waitResult({ timeoutMs: 15_000 })).toEqual([5, 5]);
    const log = await broker.transport.read(run.runId);
    expect(log.events.map((e) => e.seq)).toEqual(log.events.map((_, i) => i + 1));
    expect(log.events.filter((e) => e.type === 'StepStartEvent').map((e) => e.type === 'StepStartEvent' && e.step_name)).toEqual(['s1', 's2', 's3', 's4', 's5', 's6']);
  });

  it('a worker that did not start a run gives its recorders the run start rebuilt from the record, once per run', async () => {
    const prefix = redis.prefix();
    const producer = await open({ keyPrefix: prefix, worker: false });
    const worker = await open({ keyPrefix: prefix });
    const primed: FlowcastEvent[] = [];
    const recorded: FlowcastEvent[] = [];
    const recorder = { record: (e: FlowcastEvent) => void recorded.push(e), primeStart: (e: FlowcastEvent) => void primed.push(e) };
    const build = (broker: BullMQBroker) => {
      const inc = broker.task('inc', (n: number) => n + 1);
      return new Pipeline(broker, { id: 'primed' }).callNext(inc).callNext(inc).callNext(inc);
    };
    build(worker).withTracking(recorder);
    const started = build(producer);
    const runs = await Promise.all([1, 2].map((n) => started.kiq(n)));
    expect(await Promise.all(runs.map((r) => r.waitResult({ timeoutMs: 15_000 })))).toEqual([4, 5]);
    for (const run of runs) {
      await getEngine(worker).flushed(run.runId);
      const start = (await producer.transport.read(run.runId)).events[0];
      expect(primed.filter((e) => e.run_id === run.runId)).toEqual([{ ...start, event_id: '' }]);
      // The worker recorded everything after the start (which the producer recorded).
      expect(recorded.filter((e) => e.run_id === run.runId).map((e) => e.seq)).toEqual([2, 3, 4, 5, 6, 7, 8]);
    }
  });

  it('what a task returns or receives is a copy: changing it later does not change the run record', async () => {
    const broker = await open();
    const kept: { items: number[] }[] = [];
    const make = broker.task('make', (n: number) => {
      const out = { items: [n] };
      kept.push(out);
      return out;
    });
    const grow = broker.task('grow', (input: { items: number[] }) => {
      // The chained step's input is the previous step's result: changing it must not reach the record.
      input.items.push(99);
      // Nor may the object the previous task returned, changed after it returned.
      kept[0]?.items.push(42);
      return input.items.length;
    });
    const run = await new Pipeline(broker, { id: 'copies' }).callNext(make).callNext(grow).kiq(1);
    expect(await run.waitResult({ timeoutMs: 15_000 })).toBe(2);
    const rec = await broker.runState.get(run.runId);
    expect(rec?.steps.make?.result).toEqual({ items: [1] });
    const log = await broker.transport.read(run.runId);
    expect(log.events.find((e) => e.type === 'StepCompleteEvent' && e.step_name === 'make')).toMatchObject({ result: { items: [1] } });
  });

  it('a step job that fails in the broker on every attempt fails its step, so the run ends instead of hanging', async () => {
    const broker = await open(quiet);
    const inc = broker.task('inc', (n: number) => n + 1);
    const pipeline = new Pipeline(broker, { id: 'broken' }).callNext(inc);
    const errors: string[] = [];
    // Stands for an engine that cannot reach Redis while it runs the step.
    broker.setRunProcessor(() => {
      errors.push('down');
      return Promise.reject(new Error('connection lost'));
    });
    const handle = await pipeline.kiq(1);
    await expect(handle.waitResult({ timeoutMs: 15_000 })).rejects.toThrow(/BrokerError: the job of this step failed in the broker: connection lost/);
    expect(errors).toHaveLength(3);
    const log = await broker.transport.read(handle.runId);
    expect(log.events.map((e) => e.type)).toEqual(['PipelineStartEvent', 'StepErrorEvent', 'PipelineErrorEvent']);
  });

  describe('#engineStatus', () => {
    it('lists live workers (busy while a job runs) and queue depths; a producer is no worker; a closed worker leaves', async () => {
      const prefix = redis.prefix();
      const worker = await open({ keyPrefix: prefix, worker: { concurrency: 3, ...fast } });
      const prod = await open({ keyPrefix: prefix, worker: false });
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      let started!: () => void;
      const running = new Promise<void>((r) => (started = r));
      const hold = worker.task('hold', async () => {
        started();
        await gate;
        return 1;
      });
      prod.task('hold', () => 1);
      const handle = await hold.kiq(null);
      await running;
      await prod.enqueue({ kind: 'task', job_id: 'later-1', task: 'hold', input: null }, { delayMs: 60_000 });

      // The heartbeat says busy shortly after the job started (state changes are coalesced).
      let busy = await prod.engineStatus();
      while (busy.workers[0]?.state !== 'busy') {
        await new Promise((r) => setTimeout(r, 20));
        busy = await prod.engineStatus();
      }
      expect(busy.broker).toBe('bullmq');
      expect(busy.workers).toHaveLength(1);
      expect(busy.workers[0]).toMatchObject({ id: worker.workerId, pid: process.pid, state: 'busy', active_jobs: 1, concurrency: 3 });
      expect(Date.parse(busy.workers[0]?.last_heartbeat ?? '')).toBeGreaterThanOrEqual(Date.parse(busy.workers[0]?.started_at ?? ''));
      expect(busy.queues).toEqual([
        { name: 'tasks', waiting: 0, active: 1, delayed: 1, failed: 0 },
        { name: 'control', waiting: 0, active: 0, delayed: 0, failed: 0 },
      ]);
      expect(prod.workerId).toBeNull();

      release();
      expect(await handle.waitResult({ timeoutMs: 10_000 })).toBe(1);
      await worker.close();
      expect((await prod.engineStatus()).workers).toEqual([]);
    });

    it('InMemoryBroker reports this process as its one worker and its one queue', async () => {
      const broker = new InMemoryBroker({ concurrency: 2 });
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const hold = broker.task('hold', async () => {
        await gate;
        return 1;
      });
      const handles = await Promise.all([hold.kiq(null), hold.kiq(null), hold.kiq(null)]);
      const busy = await broker.engineStatus();
      expect(busy.broker).toBe('memory');
      expect(busy.workers).toHaveLength(1);
      expect(busy.workers[0]).toMatchObject({ pid: process.pid, state: 'busy', active_jobs: 2, concurrency: 2, processed: 0 });
      expect(busy.queues).toEqual([{ name: 'memory', waiting: 1, active: 2, delayed: 0, failed: 0 }]);
      release();
      await Promise.all(handles.map((h) => h.waitResult()));
      const idle = await broker.engineStatus();
      expect(idle.workers[0]).toMatchObject({ state: 'idle', active_jobs: 0, processed: 3 });
      await broker.close();
    });
  });
});
