/**
 * Coalesced tracking writes (`PipelineTrackingManager` option `writeDelayMs`, on by
 * default for the Redis storage withAutoStorage picks): a running run's events wait and
 * are written together, its start and end go at once, reads through the manager write
 * what waits first, and a read from another process catches the run up from its log.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { BullMQBroker } from '../src/redis/bullmq-broker.js';
import { RedisPipelineStorage } from '../src/redis/storage.js';
import { trackRunKey, trackStartedIndexKey } from '../src/redis/keys.js';
import { Pipeline } from '../src/pipeline/pipeline.js';
import { PipelineTrackingManager } from '../src/tracking/manager.js';
import { InMemoryPipelineStorage } from '../src/tracking/memory-storage.js';
import type { PipelineStatus } from '../src/tracking/models.js';
import type { FlowcastEvent } from '../src/events/types.js';
import { ErrorCodes } from '../src/core/errors.js';
import { getWebSocketServer } from '../src/server/server.js';
import { connect, seqs } from './helpers/ws-client.js';
import { RunEvents, reduce } from './helpers/events.js';
import { useRedisServer } from './helpers/redis.js';

const redis = useRedisServer();
const opened: { close: () => Promise<void> }[] = [];

afterEach(async () => {
  for (const o of opened.splice(0).reverse()) await o.close();
});

/** The status as stored (no catch-up): what lists and other processes' index reads see. */
async function stored(prefix: string, runId: string): Promise<PipelineStatus | null> {
  const json = await redis.connect().hget(trackRunKey(prefix, runId), 's');
  return json === null ? null : (JSON.parse(json) as PipelineStatus);
}

async function setup(writeDelayMs?: number) {
  const prefix = redis.prefix();
  const broker = new BullMQBroker({ connection: redis.url, keyPrefix: prefix, worker: { concurrency: 4, lockDurationMs: 5_000, stalledIntervalMs: 5_000, heartbeatMs: 500 } });
  const tracking = new PipelineTrackingManager(writeDelayMs === undefined ? {} : { writeDelayMs }).withAutoStorage(broker);
  opened.push(tracking, broker);
  await broker.waitUntilReady();
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const started: string[] = [];
  const inc = broker.task('inc', (n: number) => n + 1);
  const hold = broker.task('hold', async (n: number, ctx) => {
    started.push(ctx.runId ?? '');
    await gate;
    return n * 10;
  });
  const pipeline = new Pipeline(broker, { id: 'wb' }).callNext(inc).callNext(inc).callNext(hold).withTracking(tracking);
  const untilHeld = async (): Promise<void> => {
    while (started.length === 0) await new Promise((r) => setTimeout(r, 10));
  };
  return { prefix, broker, tracking, pipeline, release, untilHeld };
}

describe('coalesced tracking writes', () => {
  it('withAutoStorage on a Redis broker: the start is recorded at once (its index entries), the run meanwhile waits, its end is written before it is published', async () => {
    // A long delay: nothing but the run's start, its end and the reads may write.
    const { prefix, broker, tracking, pipeline, release, untilHeld } = await setup(600_000);
    expect((tracking.storage as RedisPipelineStorage).logBacked).toBe(true);
    const run = await pipeline.kiq(1);
    await untilHeld();
    // The start is recorded by the run's index entries alone: listed at once, no status stored
    // yet (two steps completed and a third started since).
    expect(await stored(prefix, run.runId)).toBeNull();
    expect(await redis.connect().zscore(trackStartedIndexKey(prefix), run.runId)).not.toBeNull();
    // Another process's read builds the run from its log.
    const other = new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix });
    const seen = await other.getStatus(run.runId);
    expect(seen?.steps.map((s) => s.status)).toEqual(['COMPLETED', 'COMPLETED', 'RUNNING']);
    const log = await broker.transport.read(run.runId);
    expect(seen?.last_seq).toBe(log.events.at(-1)?.seq);

    release();
    expect(await run.waitResult({ timeoutMs: 30_000 })).toBe(30);
    // The end was written before waitResult() saw the end event.
    const after = await stored(prefix, run.runId);
    expect(after?.status).toBe('COMPLETED');
    expect(after?.last_seq).toBe((await broker.transport.read(run.runId)).events.at(-1)?.seq);
    expect((await tracking.getStatus(run.runId))?.result).toBe(30);
  });

  it('a read through the manager writes what waits first', async () => {
    const { prefix, tracking, pipeline, release, untilHeld } = await setup(600_000);
    const run = await pipeline.kiq(2);
    await untilHeld();
    expect(await stored(prefix, run.runId)).toBeNull();
    const [listed] = await tracking.listPipelines({ pipelineId: 'wb' });
    expect(listed?.steps.map((s) => s.status)).toEqual(['COMPLETED', 'COMPLETED', 'RUNNING']);
    expect((await stored(prefix, run.runId))?.steps.map((s) => s.status)).toEqual(['COMPLETED', 'COMPLETED', 'RUNNING']);
    release();
    await run.waitResult({ timeoutMs: 30_000 });
  });

  it('close() writes what waits', async () => {
    const { prefix, tracking, pipeline, release, untilHeld } = await setup(600_000);
    const run = await pipeline.kiq(3);
    await untilHeld();
    await tracking.close();
    expect((await stored(prefix, run.runId))?.steps.map((s) => s.status)).toEqual(['COMPLETED', 'COMPLETED', 'RUNNING']);
    release();
    await run.waitResult({ timeoutMs: 30_000 });
  });

  it('writeDelayMs 0 writes every event before the engine goes on', async () => {
    const { prefix, pipeline, release, untilHeld } = await setup(0);
    const run = await pipeline.kiq(4);
    await untilHeld();
    // The hold step's start is written before its call begins.
    expect((await stored(prefix, run.runId))?.steps.map((s) => s.status)).toEqual(['COMPLETED', 'COMPLETED', 'RUNNING']);
    release();
    await run.waitResult({ timeoutMs: 30_000 });
  });

  it('events that wait are written together, in one write per run', async () => {
    const storage = new InMemoryPipelineStorage();
    const groups: number[][] = [];
    const apply = storage.applyEvents.bind(storage);
    storage.applyEvents = (events: FlowcastEvent[]) => {
      groups.push(events.map((e) => e.seq));
      return apply(events);
    };
    const tracking = new PipelineTrackingManager({ writeDelayMs: 600_000 }).withStorage(storage);
    const base = { v: 1, event_id: 'e', pipeline_id: 'p', run_id: 'r', timestamp: new Date().toISOString() };
    const step = { step_name: 's', step_index: 0, task_id: 't', attempt: 1 };
    await tracking.record({ ...base, seq: 1, type: 'PipelineStartEvent', pipeline_type: 'sequential', input: null, steps: [{ step_name: 's', step_index: 0, kind: 'call', tasks: ['t'], depends_on: [] }] } as FlowcastEvent);
    expect(tracking.record({ ...base, seq: 2, type: 'StepStartEvent', ...step, task_name: 't' } as FlowcastEvent)).toBeUndefined();
    expect(tracking.recordMany([{ ...base, seq: 3, type: 'StepLogEvent', ...step, lines: ['a'] } as FlowcastEvent, { ...base, seq: 4, type: 'StepLogEvent', ...step, lines: ['b'] } as FlowcastEvent])).toBeUndefined();
    expect(groups).toEqual([[1]]);
    await tracking.recordMany([
      { ...base, seq: 5, type: 'StepCompleteEvent', ...step, result: 1, duration_ms: 1 } as FlowcastEvent,
      { ...base, seq: 6, type: 'PipelineCompleteEvent', pipeline_type: 'sequential', status: 'COMPLETED', duration_ms: 1, result: 1 } as FlowcastEvent,
    ]);
    expect(groups).toEqual([[1], [2, 3, 4, 5, 6]]);
    const status = await tracking.getStatus('r');
    expect(status?.last_seq).toBe(6);
    expect(status?.status).toBe('COMPLETED');
    await tracking.close();
  });

  it('events handed over out of seq order are still written, in seq order: no write fails with "seqs must increase"', async () => {
    const prefix = redis.prefix();
    const failures: string[] = [];
    const tracking = new PipelineTrackingManager({ writeDelayMs: 600_000, onError: (error, where) => failures.push(`${where}: ${error.message}`) }).withStorage(
      new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix }),
    );
    opened.push(tracking);
    const run = new RunEvents({ pipelineId: 'wb', pipelineType: 'dataflow', steps: ['a', 'b'] });
    const e = [run.start(), run.stepStart('a'), run.stepStart('b'), run.stepLog('b', ['b works']), run.stepComplete('a', 1), run.stepComplete('b', 2), run.complete(3)];
    await tracking.record(e[0]!);
    // Two steps of one run, their events handed over as their calls answered: not in seq order.
    for (const i of [2, 1, 4, 3]) expect(tracking.record(e[i]!)).toBeUndefined();
    // And one handed over twice.
    expect(tracking.record(e[3]!)).toBeUndefined();
    await tracking.recordMany([e[5]!, e[6]!]);
    expect(failures).toEqual([]);
    expect(await stored(prefix, run.runId)).toEqual(reduce(e));
  });

  it('a client joining the pipeline while the stored status is behind the log still gets every event: snapshot, then the rest from the log', async () => {
    const { prefix, broker, pipeline, release, untilHeld } = await setup(600_000);
    // The server reads tracking as another process would: its own manager on its own connection (nothing waits there).
    const reader = new PipelineTrackingManager().withStorage(new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix }));
    const server = getWebSocketServer({ port: 0, broker, tracking: reader, restRateLimit: false });
    opened.push({ close: () => server.close() });
    await server.startServer();
    const run = await pipeline.kiq(5);
    await untilHeld();
    // A stored status behind the log (its start alone), as a process whose writes wait would leave it.
    const start = (await broker.transport.read(run.runId)).events[0] as FlowcastEvent;
    await new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix }).applyEvents([start]);
    expect((await stored(prefix, run.runId))?.last_seq).toBe(1);
    const subs: { pipeline_id?: string; run_id?: string }[] = [{ pipeline_id: 'wb' }, { pipeline_id: '*' }, { run_id: run.runId }];
    for (const sub of subs) {
      const client = await connect(server.url);
      await client.subscribe(sub);
      const log = (await broker.transport.read(run.runId)).events;
      const end = log.at(-1)?.seq;
      const snapshotOf = (): number | undefined => {
        const m = client.controls('snapshot').find((c) => c.run_id === run.runId);
        return m === undefined ? undefined : Number(m.last_seq);
      };
      await client.waitUntil(() => client.events(run.runId).at(-1)?.seq === end || snapshotOf() === end, `the events up to seq ${end} for ${JSON.stringify(sub)}`);
      const from = snapshotOf() ?? 0;
      // The list read the stale stored status; a run subscription's read caught up from the log.
      if (sub.run_id === undefined) expect(from).toBe(1);
      expect(seqs(client.events(run.runId))).toEqual(seqs(log).filter((n) => n > from));
      await client.close();
    }
    release();
    await run.waitResult({ timeoutMs: 30_000 });
  });

  it('refuses a writeDelayMs that is not an integer >= 0', () => {
    for (const bad of [-1, 1.5, '100', null]) {
      expect(() => new PipelineTrackingManager({ writeDelayMs: bad as never })).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }) as Error);
    }
    expect(() => new PipelineTrackingManager({ writeDelayMs: -1 })).toThrow(/writeDelayMs/);
  });
});
