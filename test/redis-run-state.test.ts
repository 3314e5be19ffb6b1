import { describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { ErrorCodes } from '../src/core/errors.js';
import type { PipelinePlan } from '../src/pipeline/plan.js';
import type { RunRecord, StepState, Transition } from '../src/pipeline/run-state.js';
import { beginRun, jobStarted, jobSucceeded, newRunRecord } from '../src/pipeline/transitions.js';
import type { EventDraft, FlowcastEvent } from '../src/events/types.js';
import { RedisRunState } from '../src/redis/run-state.js';
import { RedisPubSubTransport } from '../src/redis/transport.js';
import { runLogKey, runLogMetaKey, runStateKey } from '../src/redis/keys.js';
import { LuaScript, TRANSITION_SCRIPT } from '../src/redis/lua.js';
import { DataflowPipeline, InMemoryBroker, Pipeline } from '../src/index.js';
import { runStateConformance } from './conformance/run-state.js';
import { expectRunInvariants } from './helpers/collect.js';
import { useRedisServer } from './helpers/redis.js';

const redis = useRedisServer();

runStateConformance('redis', () => {
  const client = redis.connect();
  const transport = new RedisPubSubTransport(client, { keyPrefix: redis.prefix() });
  return { store: new RedisRunState(client, { transport }), transport };
});

const plan: PipelinePlan = {
  pipeline_id: 'fanin',
  pipeline_type: 'dataflow',
  failure_policy: 'fail_fast',
  steps: [{ name: 'a', index: 0, kind: 'call', tasks: ['t'], depends_on: [], retries: 0, retry_delay_ms: 0, backoff: 'fixed' }],
};

function logDraft(runId: string, line: string): EventDraft {
  return { type: 'StepLogEvent', pipeline_id: 'fanin', run_id: runId, timestamp: new Date().toISOString(), step_name: 'a', step_index: 0, task_id: 't', attempt: 1, lines: [line] };
}

/** A run-state + transport pair on its own connection: what one worker process has. */
function worker(options: { maxAttempts?: number; ttlSeconds?: number; endedTtlSeconds?: number } = {}): { client: Redis; store: RedisRunState; transport: RedisPubSubTransport } {
  const client = redis.connect();
  const { maxAttempts, ...transportOptions } = options;
  const transport = new RedisPubSubTransport(client, { keyPrefix: redis.prefix(), ...transportOptions });
  const store = new RedisRunState(client, maxAttempts === undefined ? { transport } : { transport, maxAttempts });
  return { client, store, transport };
}

async function startRun(store: RedisRunState, runId: string): Promise<void> {
  const rec = newRunRecord(runId, plan, null, Date.now());
  const { events } = beginRun(rec, Date.now());
  await store.create(rec, events);
}

describe('RedisRunState', () => {
  it('publishes the events of create and transition from their script, in log order, once each (no listener of its transport wants them)', async () => {
    const p = redis.prefix();
    const raw = redis.connect();
    const messages: number[] = [];
    raw.on('message', (_channel: string, payload: string) => messages.push((JSON.parse(payload) as FlowcastEvent).seq));
    await raw.subscribe(`${p}ev:run:run-live`);
    const { store, transport } = worker();
    await startRun(store, 'run-live');
    const done = await store.transition('run-live', () => ({ value: null, events: [logDraft('run-live', 'a'), logDraft('run-live', 'b')] }));
    // What the engine does next: publish() of an event its script published sends nothing.
    for (const e of done.events) await transport.publish(e);
    await new Promise((r) => setImmediate(r));
    await transport.redis.publish(`${p}ev:run:run-live`, JSON.stringify({ seq: 0 }));
    const deadline = Date.now() + 10_000;
    while (messages.length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(messages).toEqual([1, 2, 3, 0]);
    raw.disconnect();
  });

  it('stores step states without their null fields and gives the whole record back', async () => {
    const { client, store } = worker();
    await startRun(store, 'run-sparse');
    await store.transition('run-sparse', (r) => {
      const a = r.steps.a as StepState;
      a.phase = 'COMPLETED';
      a.attempt = 2;
      a.started_at_ms = 5;
      a.task_id = 'job "1"';
      a.carrier = 'job-0';
      a.result = { ok: [1, null, 'x'] };
      a.error = 'Retry: "earlier"';
      a.items = { total: 1, next: 1, done: 1, inputs: [0], results: [false] };
      return { value: null, events: [] };
    });
    const whole = await store.get('run-sparse');
    expect(whole?.steps.a).toEqual({ phase: 'COMPLETED', attempt: 2, started_at_ms: 5, task_id: 'job "1"', carrier: 'job-0', result: { ok: [1, null, 'x'] }, error: 'Retry: "earlier"', items: { total: 1, next: 1, done: 1, inputs: [0], results: [false] } });
    await startRun(store, 'run-sparse-2');
    const stored = JSON.parse((await client.hget(runStateKey(redis.prefix(), 'run-sparse-2'), 'rec')) as string) as { steps: Record<string, object> };
    expect(stored.steps.a).toEqual({ phase: 'ACTIVE', attempt: 1 });
    expect((await store.get('run-sparse-2'))?.steps.a).toEqual({ phase: 'ACTIVE', attempt: 1, started_at_ms: null, task_id: null, result: null, error: null, items: null });
  });

  describe('#transition across processes', () => {
    it('never loses an update when 5 connections transition one run 200 times at once, and seq stays gapless', async () => {
      const workers = Array.from({ length: 5 }, () => worker());
      const runId = 'run-many';
      await startRun(workers[0]!.store, runId);
      const results = await Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          workers[i % 5]!.store.transition(runId, (r) => {
            r.inflight += 1;
            return { value: r.inflight, events: [logDraft(runId, `from ${i}`)] };
          }),
        ),
      );
      // Every transition saw the one before it: the values are 2..201 exactly once each.
      expect(results.map((r) => r.value).sort((a, b) => a - b)).toEqual(Array.from({ length: 200 }, (_, i) => i + 2));
      expect((await workers[1]!.store.get(runId))?.inflight).toBe(201);
      const log = await workers[2]!.transport.read(runId);
      expect(log.events.map((e) => e.seq)).toEqual(Array.from({ length: 201 }, (_, i) => i + 1));
      expect(log.last_seq).toBe(201);
      // The seq each transition got matches the order its state change was applied in.
      const byValue = new Map(results.map((r) => [r.value, r.events[0]!.seq]));
      for (let v = 2; v <= 201; v++) expect(byValue.get(v)).toBe(v);
    });

    it('a handoff from the process that wrote a run lets another one transition it without a read; a stale one is caught by the compare-and-set', async () => {
      const [a, b, c] = [worker(), worker(), worker()];
      const stats = redis.connect();
      const hmgets = async (): Promise<number> => Number((await stats.info('commandstats')).match(/^cmdstat_hmget:calls=(\d+)/m)?.[1] ?? 0);
      const bump = (r: RunRecord): Transition<number> => {
        r.inflight += 1;
        return { value: r.inflight, events: [] };
      };
      await startRun(a.store, 'run-h');
      const h = a.store.handoff('run-h');
      expect(h).toMatchObject({ v: '1', r: expect.any(String) as string, p: expect.any(String) as string });
      b.store.prime('run-h', h);
      let before = await hmgets();
      expect((await b.store.transition('run-h', bump)).value).toBe(2);
      expect((await hmgets()) - before).toBe(0);
      // Without a handoff the first transition reads the run.
      before = await hmgets();
      expect((await c.store.transition('run-h', bump)).value).toBe(3);
      expect((await hmgets()) - before).toBe(1);
      // A stale handoff (version 1, the run is at 3): refused, answered with the current record, applied on it.
      const d = worker();
      d.store.prime('run-h', h);
      expect((await d.store.transition('run-h', bump)).value).toBe(4);
      expect((await a.store.get('run-h'))?.inflight).toBe(4);
      // Ignored: a malformed handoff, an unknown plan, a run already held; nothing to hand off for an unknown run.
      for (const bad of [null, 'x', { v: 1 }, { ...h, p: 'unknown-plan' }]) d.store.prime('run-h2', bad);
      d.store.prime('run-h', { ...h, v: '1' });
      expect((await d.store.transition('run-h', bump)).value).toBe(5);
      expect(d.store.handoff('run-none')).toBeNull();
      await expect(d.store.transition('run-h2', bump)).rejects.toMatchObject({ code: ErrorCodes.NOT_FOUND });
    });

    it('coordinates DAG fan-in across processes: the join step is dispatched exactly once', async () => {
      const fanPlan: PipelinePlan = {
        pipeline_id: 'fanin',
        pipeline_type: 'dataflow',
        failure_policy: 'fail_fast',
        steps: [
          ...['a', 'b', 'c', 'd'].map((name, index) => ({ name, index, kind: 'call' as const, tasks: ['t'], depends_on: [], retries: 0, retry_delay_ms: 0, backoff: 'fixed' as const })),
          { name: 'join', index: 4, kind: 'call', tasks: ['t'], depends_on: ['a', 'b', 'c', 'd'], retries: 0, retry_delay_ms: 0, backoff: 'fixed' },
        ],
      };
      const workers = Array.from({ length: 4 }, () => worker());
      for (let round = 0; round < 10; round++) {
        const runId = `run-fan-${round}`;
        const rec = newRunRecord(runId, fanPlan, null, Date.now());
        const begun = beginRun(rec, Date.now());
        await workers[0]!.store.create(rec, begun.events);
        const jobs = begun.value.map((d) => d.job);
        expect(jobs.map((j) => j.step)).toEqual(['a', 'b', 'c', 'd']);
        // Each root runs on its own worker process; all four finish at the same moment.
        await Promise.all(jobs.map((job, i) => workers[i]!.store.transition(runId, (r) => jobStarted(r, job, Date.now()))));
        const finished = await Promise.all(jobs.map((job, i) => workers[i]!.store.transition(runId, (r) => jobSucceeded(r, job, i, Date.now()))));
        const dispatched = finished.flatMap((f) => f.value.map((d) => d.job.step));
        expect(dispatched, `round ${round}`).toEqual(['join']);
        const joined = finished.find((f) => f.value.length > 0)!.value[0]!.job;
        expect(joined.input).toEqual({ a: 0, b: 1, c: 2, d: 3 });
        const log = await workers[1]!.transport.read(runId);
        expect(log.events.map((e) => e.seq)).toEqual(log.events.map((_, i) => i + 1));
        expect(log.events.filter((e) => e.type === 'StepCompleteEvent')).toHaveLength(4);
      }
    });

    it('gives up with FLOWCAST_ERR_CONFLICT after maxAttempts lost races', async () => {
      const { client, store } = worker({ maxAttempts: 3 });
      const runId = 'run-conflict';
      await startRun(store, runId);
      let calls = 0;
      await expect(
        store.transition(runId, (r) => {
          calls++;
          // Another writer commits between this read and the write, every time: the
          // command goes out on the same connection before the transition script.
          void client.hincrby(runStateKey(redis.prefix(), runId), 'ver', 1);
          return { value: r.inflight, events: [logDraft(runId, 'never stored')] };
        }),
      ).rejects.toMatchObject({ code: ErrorCodes.CONFLICT, message: expect.stringContaining('3 times') as unknown });
      // A first try on this process's kept copy, then 3 tries on fresh reads.
      expect(calls).toBe(4);
      expect((await store.get(runId))?.inflight).toBe(1);
      expect((await store.transport.read(runId)).last_seq).toBe(1);
    });

    it('applies a write resent after a lost reply only once (ioredis resends unanswered commands)', async () => {
      const { client, store, transport } = worker();
      const runId = 'run-resend';
      await startRun(store, runId);
      const script = new LuaScript(TRANSITION_SCRIPT);
      const keys = [runStateKey(redis.prefix(), runId), runLogMetaKey(redis.prefix(), runId), runLogKey(redis.prefix(), runId)];
      const rec = await store.get(runId);
      const { plan: _plan, ...rest } = { ...rec!, inflight: 7 };
      const event = JSON.stringify({ ...logDraft(runId, 'once'), v: 1, event_id: 'e-1', seq: 0 }).slice(0, -2);
      const args = ['1', JSON.stringify(rest), '{}', 100, 1000, 100, 0, 1, 'token-1', '', '', '', event, 0];
      const first = await script.run(client, keys, args);
      const resent = await script.run(client, keys, args);
      expect(first).toEqual([0, 2]);
      expect(resent).toEqual([0, 2]);
      expect(await client.hget(keys[0]!, 'ver')).toBe('2');
      expect((await transport.read(runId)).events.map((e) => e.seq)).toEqual([1, 2]);
      // Another write with the same expected version but another token is a real conflict.
      const other = (await script.run(client, keys, ['1', JSON.stringify(rest), '{}', 100, 1000, 100, 0, 0, 'token-2', '', '', ''])) as unknown[];
      expect(other.slice(0, 2)).toEqual([3, 2]);
    });

    it('refuses events after the terminal one but still stores the record', async () => {
      const { store, transport } = worker();
      const runId = 'run-after-end';
      await startRun(store, runId);
      const end: EventDraft = { type: 'PipelineCancelledEvent', pipeline_id: 'fanin', run_id: runId, timestamp: new Date().toISOString(), pipeline_type: 'dataflow', status: 'CANCELLED', reason: 'x', duration_ms: 1 };
      const first = await store.transition(runId, (r) => {
        r.status = 'CANCELLED';
        return { value: 1, events: [end, logDraft(runId, 'too late')] };
      });
      expect(first.events.map((e) => [e.type, e.seq])).toEqual([['PipelineCancelledEvent', 2]]);
      const second = await store.transition(runId, (r) => {
        r.error = 'later';
        return { value: 2, events: [logDraft(runId, 'later still')] };
      });
      expect(second.events).toEqual([]);
      expect((await store.get(runId))?.error).toBe('later');
      expect((await transport.read(runId)).events.map((e) => e.type)).toEqual(['PipelineStartEvent', 'PipelineCancelledEvent']);
    });
  });

  describe('under the run engine', () => {
    it('runs sequential (map, retries) and dataflow (fan-in) pipelines with state and log in Redis', async () => {
      const { store, transport } = worker();
      const broker = new InMemoryBroker({ concurrency: 8 });
      // The engine reads the broker's run state and log: point them at Redis.
      Object.assign(broker, { runState: store, transport });
      try {
        let flaky = 0;
        const split = broker.task('split', (n: number) => Array.from({ length: n }, (_, i) => i));
        const square = broker.task('square', (x: number) => x * x, { retries: 2 });
        const sum = broker.task('sum', (xs: number[]) => {
          if (flaky++ === 0) throw new Error('first attempt fails');
          return xs.reduce((a, b) => a + b, 0);
        }, { retries: 1 });
        const seq = new Pipeline(broker, { id: 'seq-redis' }).callNext(split).map(square).callNext(sum);
        const run = await seq.kiq(6);
        await expect(run.waitResult()).resolves.toBe(55);
        const one = broker.task('one', () => 1);
        const add = broker.task('add', (x: Record<string, number>) => Object.values(x).reduce((a, b) => a + b, 0));
        const dag = new DataflowPipeline(broker, { id: 'dag-redis' })
          .step('a', one)
          .step('b', one)
          .step('c', one)
          .step('join', add, { dependsOn: ['a', 'b', 'c'] });
        const dagRun = await dag.kiq(null);
        await expect(dagRun.waitResult()).resolves.toBe(3);
        for (const id of [run.runId, dagRun.runId]) {
          const log = await transport.read(id);
          expectRunInvariants(log.events);
          expect(log.ended).toBe(true);
          expect((await store.getSummary(id))?.status).toBe('COMPLETED');
        }
        const joinStarts = (await transport.read(dagRun.runId)).events.filter((e) => e.type === 'StepStartEvent' && e.step_name === 'join');
        expect(joinStarts).toHaveLength(1);
        expect((await transport.read(run.runId)).events.some((e) => e.type === 'StepRetryEvent')).toBe(true);
      } finally {
        await broker.close();
      }
    });
  });

  describe('TTL', () => {
    it('refreshes the TTL of every key of a run on each write and shortens it once the run ended', async () => {
      const { client, store } = worker({ ttlSeconds: 1000, endedTtlSeconds: 50 });
      const runId = 'run-ttl';
      await startRun(store, runId);
      const keys = [runStateKey(redis.prefix(), runId), runLogMetaKey(redis.prefix(), runId), runLogKey(redis.prefix(), runId)];
      for (const key of keys) await client.expire(key, 10);
      await store.transition(runId, (r) => ({ value: r.inflight, events: [] }));
      for (const key of keys) expect(await client.ttl(key)).toBeGreaterThan(900);
      await store.transition(runId, (r) => {
        r.status = 'COMPLETED';
        return { value: null, events: [] };
      });
      for (const key of keys) {
        const ttl = await client.ttl(key);
        expect(ttl).toBeGreaterThan(0);
        expect(ttl).toBeLessThanOrEqual(50);
      }
    });
  });

  describe('validation', () => {
    it('rejects a bad client, bad options and bad arguments with clear errors', async () => {
      const { client, store, transport } = worker();
      expect(() => new RedisRunState({} as Redis, { transport })).toThrow(/ioredis client/);
      expect(() => new RedisRunState(client, {} as never)).toThrow(/transport must be a RedisPubSubTransport/);
      expect(() => new RedisRunState(client, { transport, maxAttempts: 0 })).toThrow(/maxAttempts must be an integer >= 1/);
      expect(() => new RedisRunState(client, { transport, retries: 1 } as never)).toThrow(/unknown option "retries"/);
      await expect(store.get('bad id')).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
      await expect(store.transition('run-x', 'nope' as never)).rejects.toThrow(/fn must be a function/);
      const rec = newRunRecord('run-dup', plan, null, Date.now());
      await store.create(rec, beginRun(rec, Date.now()).events);
      await expect(store.create(rec, [])).rejects.toThrow(/already exists/);
      await expect(store.create(newRunRecord('run-y', plan, null, Date.now()), [logDraft('run-z', 'x')])).rejects.toThrow(/cannot go to the log of run "run-y"/);
      await store.close();
      await expect(store.get('run-dup')).rejects.toMatchObject({ code: ErrorCodes.CLOSED });
    });
  });
});
