import { describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { ErrorCodes } from '../src/core/errors.js';
import type { FlowcastEvent } from '../src/events/types.js';
import {
  trackEndedIndexKey,
  trackPipelineIndexKey,
  trackPipelinesKey,
  trackRunKey,
  trackStartedIndexKey,
  trackStatusIndexKey,
} from '../src/redis/keys.js';
import { RedisPipelineStorage } from '../src/redis/storage.js';
import { OFFER } from '../src/redis/storage-lua.js';
import { RedisPubSubTransport } from '../src/redis/transport.js';
import { PipelineTrackingManager } from '../src/tracking/manager.js';
import { PIPELINE_STATUSES } from '../src/tracking/models.js';
import { trackingStorageConformance } from './conformance/tracking-storage.js';
import { RunEvents, reduce, scriptedRun } from './helpers/events.js';
import { useRedisServer } from './helpers/redis.js';

const redis = useRedisServer();

trackingStorageConformance('RedisPipelineStorage', () => new RedisPipelineStorage(redis.connect(), { keyPrefix: redis.prefix() }), undefined, {
  peer: (storage) => new RedisPipelineStorage(redis.connect(), { keyPrefix: (storage as RedisPipelineStorage).keyPrefix }),
});

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Every index key of a prefix, with the pipelines given. */
function indexKeys(prefix: string, pipelines: string[]): string[] {
  return [
    trackStartedIndexKey(prefix),
    trackEndedIndexKey(prefix),
    ...PIPELINE_STATUSES.map((s) => trackStatusIndexKey(prefix, s)),
    ...pipelines.map((p) => trackPipelineIndexKey(prefix, p)),
  ];
}

async function indexSize(client: Redis, prefix: string, pipelines: string[]): Promise<number> {
  const sizes = await Promise.all(indexKeys(prefix, pipelines).map((k) => client.zcard(k)));
  return sizes.reduce((a, b) => a + b, 0);
}

/** Appends the events to their run's log through the transport (which gives them their seq); resolves with the stored events. */
async function appendAll(transport: RedisPubSubTransport, events: readonly FlowcastEvent[]): Promise<FlowcastEvent[]> {
  const appended: FlowcastEvent[] = [];
  for (const e of events) {
    const { seq: _seq, v: _v, event_id: _id, ...draft } = e;
    appended.push((await transport.append(draft))!);
  }
  return appended;
}

/** Waits until `check` holds (polling), failing after `ms`. */
async function until(check: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** A dataflow run with `width` parallel steps, each with a start, logs, progress and an end: many events, from many "workers". */
function wideRun(pipelineId: string, width: number): RunEvents {
  const steps = Array.from({ length: width }, (_, i) => ({ step_name: `s${i}`, step_index: i, kind: 'call' as const, tasks: [`t${i}`], depends_on: [] }));
  const run = new RunEvents({ pipelineId, pipelineType: 'dataflow', steps });
  run.start();
  for (const s of steps) run.stepStart(s.step_name);
  for (let round = 0; round < 4; round++) {
    for (const s of steps) {
      run.advance(1);
      run.stepLog(s.step_name, [`${s.step_name} line ${round}`]);
      run.stepProgress(s.step_name, (round + 1) / 5);
    }
  }
  for (const s of steps) {
    run.advance(3);
    run.stepComplete(s.step_name, { step: s.step_name });
  }
  run.complete('done');
  return run;
}

describe('RedisPipelineStorage', () => {
  describe('constructor', () => {
    it('rejects what is not a Redis client and bad options, naming them', () => {
      const client = redis.connect({ lazyConnect: true });
      expect(() => new RedisPipelineStorage({} as never)).toThrow(/redis must be an ioredis Redis or Cluster client/);
      expect(() => new RedisPipelineStorage(client, { ttlSeconds: 0 })).toThrow('ttlSeconds must be an integer >= 1, received 0');
      expect(() => new RedisPipelineStorage(client, { keyPrefix: 'a{b}' })).toThrow(/keyPrefix must be 1-100 printable characters/);
      expect(() => new RedisPipelineStorage(client, { gapTimeoutMs: -1 })).toThrow(/gapTimeoutMs must be an integer >= 0/);
      expect(() => new RedisPipelineStorage(client, { ttl: 5 } as never)).toThrow(/unknown option "ttl"/);
      try {
        new RedisPipelineStorage(client, { ttlSeconds: 1.5 });
        expect.unreachable();
      } catch (e) {
        expect((e as { code: string }).code).toBe(ErrorCodes.INVALID_ARGUMENT);
      }
    });

    it('defaults to the flowcast: prefix and 7 days', () => {
      const storage = new RedisPipelineStorage(redis.connect({ lazyConnect: true }));
      expect(storage.keyPrefix).toBe('flowcast:');
      expect(storage.ttlSeconds).toBe(604_800);
    });
  });

  describe('input validation', () => {
    it('rejects bad arguments of every method with INVALID_ARGUMENT', async () => {
      const storage = new RedisPipelineStorage(redis.connect(), { keyPrefix: redis.prefix() });
      const bad = [
        () => storage.getStatus(''),
        () => storage.saveStatus({ run_id: 'r' } as never),
        () => storage.applyEvent({ type: 'PipelineStartEvent', run_id: 'r', pipeline_id: 'p', seq: 0 } as never),
        () => storage.applyEvents([]),
        () => storage.applyEvents([{ type: 'PipelineStartEvent', run_id: 'r', pipeline_id: '', seq: 1 }] as never),
        () => storage.listPipelines({ status: 'DONE' } as never),
        () => storage.listPipelines({ limit: 0 }),
        () => storage.listPipelines({ since: new Date('nope') }),
        () => storage.deletePipeline(42 as never),
        () => storage.cleanupOlderThan('yesterday' as never),
        () => storage.getLatest(''),
      ];
      for (const call of bad) await expect(call()).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
    });

    it('refuses use after close, and close leaves the connection open', async () => {
      const client = redis.connect();
      const storage = new RedisPipelineStorage(client, { keyPrefix: redis.prefix() });
      await storage.close();
      await expect(storage.getStatus('r')).rejects.toMatchObject({ code: ErrorCodes.CLOSED });
      expect(await client.ping()).toBe('PONG');
    });
  });

  describe('#applyEvents', () => {
    /** Commands the server ran so far, by name (INFO commandstats; commands run by scripts count too). */
    const commandCounts = async (client: Redis): Promise<Map<string, number>> => {
      const out = new Map<string, number>();
      for (const m of (await client.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out.set(m[1]!, Number(m[2]));
      return out;
    };
    /** Between two counts: script calls (EVALSHA / EVAL), and index writes (sorted-set and set commands, sent or run by a script). */
    const spent = (before: Map<string, number>, after: Map<string, number>): { scripts: number; indexWrites: number } => {
      let scripts = 0;
      let indexWrites = 0;
      for (const [name, n] of after) {
        const d = n - (before.get(name) ?? 0);
        if (name.startsWith('eval')) scripts += d;
        if (/^(z|sadd|srem)/.test(name)) indexWrites += d;
      }
      return { scripts, indexWrites };
    };

    it('stores a group in one script call when this process wrote the run last, and writes the indexes only when they change', async () => {
      const stats = redis.connect();
      const storage = new RedisPipelineStorage(redis.connect(), { keyPrefix: redis.prefix() });
      const run = wideRun('groups', 3);
      const e = run.events;
      // Starts the run (and loads the script); the next groups take the fast path.
      let before = await commandCounts(stats);
      await storage.applyEvents(e.slice(0, 2));
      expect(spent(before, await commandCounts(stats)).indexWrites).toBeGreaterThan(0);
      before = await commandCounts(stats);
      expect(await storage.applyEvents(e.slice(2, 9))).toEqual(reduce(e.slice(0, 9)));
      expect(spent(before, await commandCounts(stats))).toEqual({ scripts: 1, indexWrites: 0 });
      // The end moves the run to other indexes: one script call, which writes them too (see redis-storage-indexes.test.ts).
      before = await commandCounts(stats);
      expect(await storage.applyEvents(e.slice(9))).toEqual(reduce(e));
      const end = spent(before, await commandCounts(stats));
      expect(end.scripts).toBe(1);
      expect(end.indexWrites).toBeGreaterThan(0);
      expect(await storage.getStatus(run.runId)).toEqual(reduce(e));
      expect((await storage.listPipelines({ pipelineId: 'groups', status: 'COMPLETED' })).map((s) => s.run_id)).toEqual([run.runId]);
      expect(await storage.listPipelines({ pipelineId: 'groups', status: 'RUNNING' })).toEqual([]);
    });

    it('offers the group to the pending buffer (and stays correct) when another process wrote since, then takes the fast path again', async () => {
      const stats = redis.connect();
      const prefix = redis.prefix();
      const [a, b] = [0, 1].map(() => new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix }));
      const run = wideRun('conflict', 2);
      const e = run.events;
      await a!.applyEvents(e.slice(0, 3));
      // Another process records seqs 4-5 (say a redelivery), while a still holds its status at seq 3.
      await b!.applyEvents(e.slice(3, 5));
      let before = await commandCounts(stats);
      expect(await a!.applyEvents(e.slice(3, 6))).toEqual(reduce(e.slice(0, 6)));
      // The refused group call, then one offer of the group (4 and 5 found duplicates) and one commit.
      expect(spent(before, await commandCounts(stats)).scripts).toBe(3);
      before = await commandCounts(stats);
      expect(await a!.applyEvents(e.slice(6, 10))).toEqual(reduce(e.slice(0, 10)));
      expect(spent(before, await commandCounts(stats)).scripts).toBe(1);
      await a!.applyEvents(e.slice(10));
      expect(await b!.getStatus(run.runId)).toEqual(reduce(e));
    });

    it('a group from a process that did not write the run reads the status and stores in two calls, without sending the events through the pending buffer', async () => {
      const stats = redis.connect();
      const prefix = redis.prefix();
      const [producer, worker] = [0, 1].map(() => new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix }));
      const run = wideRun('handoff', 2);
      const e = run.events;
      await producer!.applyEvents(e.slice(0, 1));
      const before = await commandCounts(stats);
      expect(await worker!.applyEvents(e.slice(1, 6))).toEqual(reduce(e.slice(0, 6)));
      const after = await commandCounts(stats);
      expect(spent(before, after).scripts).toBe(2);
      expect((after.get('hsetnx') ?? 0) - (before.get('hsetnx') ?? 0)).toBe(0);
      // Then the worker wrote it last: one call per group.
      const again = await commandCounts(stats);
      expect(await worker!.applyEvents(e.slice(6))).toEqual(reduce(e));
      expect(spent(again, await commandCounts(stats)).scripts).toBe(1);
      expect(await producer!.getStatus(run.runId)).toEqual(reduce(e));
    });

    it('primeStart: a process that did not write the run but was given its start writes the next group in one call', async () => {
      const stats = redis.connect();
      const prefix = redis.prefix();
      const [producer, worker] = [0, 1].map(() => new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix }));
      const run = wideRun('primed', 2);
      const e = run.events;
      await producer!.applyEvents(e.slice(0, 1));
      worker!.primeStart({ ...e[0]!, event_id: '' });
      let before = await commandCounts(stats);
      expect(await worker!.applyEvents(e.slice(1, 6))).toEqual(reduce(e.slice(0, 6)));
      expect(spent(before, await commandCounts(stats)).scripts).toBe(1);
      // A wrong hint (the run moved on meanwhile) is refused by the compare-and-set, and the write still lands.
      const late = new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix });
      late.primeStart({ ...e[0]!, event_id: '' });
      before = await commandCounts(stats);
      expect(await late.applyEvents(e.slice(6))).toEqual(reduce(e));
      expect(spent(before, await commandCounts(stats)).scripts).toBeGreaterThan(1);
      expect(await producer!.getStatus(run.runId)).toEqual(reduce(e));
      // Not a start, or a run it knows: ignored.
      late.primeStart(e[1]!);
      worker!.primeStart({ ...e[0]!, event_id: '' });
    });

    it('logBacked: the start of a run is its index entries alone, reads and lists build the run from its log, and the first write of a later group creates the record', async () => {
      const stats = redis.connect();
      const prefix = redis.prefix();
      const transport = new RedisPubSubTransport(redis.connect(), { keyPrefix: prefix });
      const [producer, worker, reader] = [0, 1, 2].map(() => new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix, logBacked: true }));
      const run = wideRun('backed', 2);
      const e = await appendAll(transport, run.events);
      // The script loaded once (a first call may take two: EVALSHA, then EVAL).
      await producer!.applyEvents([new RunEvents({ pipelineId: 'warm-up' }).start()]);
      let before = await commandCounts(stats);
      expect(await producer!.applyEvents(e.slice(0, 1))).toEqual(reduce(e.slice(0, 1)));
      const spentOnStart = spent(before, await commandCounts(stats));
      expect(spentOnStart.scripts).toBe(1);
      // A marker record without a status ("read me from the log").
      expect(await stats.hgetall(trackRunKey(prefix, run.runId))).toEqual({ q: '0' });
      expect(await stats.zscore(trackPipelineIndexKey(prefix, 'backed'), run.runId)).not.toBeNull();
      expect(await stats.zscore(trackStatusIndexKey(prefix, 'RUNNING'), run.runId)).not.toBeNull();
      // A worker given the start writes its first group in one call, creating the record.
      worker!.primeStart({ ...e[0]!, event_id: '' });
      before = await commandCounts(stats);
      expect(await worker!.applyEvents(e.slice(1, 6))).toEqual(reduce(e.slice(0, 6)));
      expect(spent(before, await commandCounts(stats)).scripts).toBe(1);
      expect(JSON.parse((await stats.hget(trackRunKey(prefix, run.runId), 's'))!)).toEqual(reduce(e.slice(0, 6)));
      // Nothing stored past the record: a read catches up from the log, as always.
      expect(await reader!.getStatus(run.runId)).toEqual(reduce(e));
      expect(await stats.zscore(trackStatusIndexKey(prefix, 'RUNNING'), run.runId)).toBeNull();
    });

    it('logBacked: a run never written is read and listed from its log (the read stores it), and one with no log either leaves the lists', async () => {
      const stats = redis.connect();
      const prefix = redis.prefix();
      const transport = new RedisPubSubTransport(redis.connect(), { keyPrefix: prefix });
      const producer = new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix, logBacked: true });
      const reader = new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix });
      const run = new RunEvents({ pipelineId: 'listed', steps: ['a', 'b'] });
      run.start();
      run.stepStart('a');
      const e = await appendAll(transport, run.events);
      await producer.applyEvents(e.slice(0, 1));
      const [listed] = await reader.listPipelines({ pipelineId: 'listed' });
      expect(listed).toEqual(reduce(e));
      expect(await stats.exists(trackRunKey(prefix, run.runId))).toBe(1);
      expect(await reader.getStatus(run.runId)).toEqual(reduce(e));
      // Index entries whose run has neither record nor log are gone: removed as met.
      const lost = new RunEvents({ pipelineId: 'listed', steps: ['a'] });
      await producer.applyEvents([lost.start()]);
      expect(await reader.getStatus(lost.runId)).toBeNull();
      expect((await reader.listPipelines({ pipelineId: 'listed' })).map((r) => r.run_id)).toEqual([run.runId]);
      expect(await stats.zscore(trackPipelineIndexKey(prefix, 'listed'), lost.runId)).toBeNull();
      expect(() => new RedisPipelineStorage(stats, { logBacked: 'yes' as never })).toThrow(/logBacked must be a boolean/);
    });

    it('logBacked: a run never written that is deleted stays deleted, though its log is still there', async () => {
      const prefix = redis.prefix();
      const transport = new RedisPubSubTransport(redis.connect(), { keyPrefix: prefix });
      const producer = new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix, logBacked: true });
      const reader = new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix });
      const runs = [0, 1].map(() => new RunEvents({ pipelineId: 'doomed', steps: ['a'] }));
      for (const run of runs) {
        run.start();
        const [start] = await appendAll(transport, run.events);
        await producer.applyEvents([start!]);
      }
      expect(await reader.deletePipeline(runs[0]!.runId)).toBe(1);
      expect(await reader.getStatus(runs[0]!.runId)).toBeNull();
      expect(await reader.deletePipeline('doomed')).toBe(1);
      expect(await reader.getStatus(runs[1]!.runId)).toBeNull();
      expect(await reader.listPipelines()).toEqual([]);
      expect((await transport.read(runs[1]!.runId)).last_seq).toBe(1);
    });

    it('through recordMany: a group waiting past a gap notifies nobody, the group that fills the gap notifies its own events', async () => {
      const storage = new RedisPipelineStorage(redis.connect(), { keyPrefix: redis.prefix(), gapTimeoutMs: 600_000 });
      const tracking = new PipelineTrackingManager().withStorage(storage);
      const seen: number[] = [];
      tracking.addListener({
        onStepStart: (_p, _s, e) => void seen.push(e.seq),
        onStepComplete: (_p, _s, _r, e) => void seen.push(e.seq),
        onPipelineComplete: (_p, status, e) => void seen.push(e.seq, status.last_seq),
      });
      const run = richScripted();
      const e = run.events;
      expect(e.map((x) => x.type)).toEqual(['PipelineStartEvent', 'StepStartEvent', 'StepLogEvent', 'StepCompleteEvent', 'StepSkipEvent', 'PipelineCompleteEvent']);
      await tracking.recordMany(e.slice(0, 2));
      expect(seen).toEqual([2]);
      // Seq 3 is missing: 4-6 wait in the pending buffer, as with record().
      await tracking.recordMany(e.slice(3));
      expect(seen).toEqual([2]);
      expect((await storage.getStatus(run.runId))?.last_seq).toBe(2);
      await tracking.recordMany([e[2]!]);
      expect(seen).toEqual([2]);
      expect(await storage.getStatus(run.runId)).toEqual(reduce(e));
    });

    it('costs two script calls for a group of any size from a process that did not write the run last', async () => {
      const stats = redis.connect();
      const prefix = redis.prefix();
      const [a, b] = [0, 1].map(() => new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix }));
      const run = wideRun('other-writer', 3);
      const e = run.events;
      await a!.applyEvents(e.slice(0, 4));
      await b!.applyEvents(e.slice(4, 5));
      let before = await commandCounts(stats);
      // a last wrote seq 4, the store is at 5: one offer of all seven events, one commit.
      expect(await a!.applyEvents(e.slice(5, 12))).toEqual(reduce(e.slice(0, 12)));
      expect(spent(before, await commandCounts(stats)).scripts).toBe(2);
      before = await commandCounts(stats);
      expect(await b!.applyEvents(e.slice(12))).toEqual(reduce(e));
      expect(spent(before, await commandCounts(stats)).scripts).toBe(2);
      expect(await a!.getStatus(run.runId)).toEqual(reduce(e));
    });

    it("fills a gap below a group at once from the run's event log", async () => {
      const client = redis.connect();
      const prefix = redis.prefix();
      const transport = new RedisPubSubTransport(client, { keyPrefix: prefix });
      const storage = new RedisPipelineStorage(client, { keyPrefix: prefix, gapTimeoutMs: 600_000 });
      const appended = await appendAll(transport, richScripted().events);
      await storage.applyEvents(appended.slice(0, 2));
      // Seq 3 reached the log only (say, a log line from an external producer).
      expect(await storage.applyEvents(appended.slice(3))).toEqual(reduce(appended));
      expect(await storage.getStatus(appended[0]!.run_id)).toEqual(reduce(appended));
      await transport.close();
    });

    it('loses no update when 8 connections apply groups of one run concurrently', async () => {
      const prefix = redis.prefix();
      const workers = Array.from({ length: 8 }, () => new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix }));
      const run = wideRun('wide-groups', 8);
      const groups: FlowcastEvent[][] = [];
      for (let i = 0; i < run.events.length; i += 3) groups.push(run.events.slice(i, i + 3));
      // Worker i gets every 8th group, in seq order, racing the other seven.
      await Promise.all(
        workers.map(async (w, i) => {
          for (const g of groups.filter((_g, j) => j % workers.length === i)) await w.applyEvents(g);
        }),
      );
      const expected = reduce(run.events);
      expect(await workers[0]!.getStatus(run.runId)).toEqual(expected);
      expect(expected?.status).toBe('COMPLETED');
      expect(await redis.connect().exists(`${prefix}{${run.runId}}:track:pending`)).toBe(0);
      expect((await workers[1]!.listPipelines({ pipelineId: 'wide-groups', status: 'COMPLETED' })).map((s) => s.run_id)).toEqual([run.runId]);
    });
  });

  describe('#applyEvent from many workers at once', () => {
    it('loses no update when 8 connections apply the events of one run concurrently', async () => {
      const prefix = redis.prefix();
      const workers = Array.from({ length: 8 }, () => new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix }));
      const run = wideRun('wide', 8);
      // Worker i gets every 8th event: its own stream in seq order, racing the other seven.
      const shares = workers.map((_, i) => run.events.filter((_e, j) => j % workers.length === i));
      await Promise.all(
        workers.map(async (w, i) => {
          for (const e of shares[i] as FlowcastEvent[]) await w.applyEvent(e);
        }),
      );
      const expected = reduce(run.events);
      const stored = await workers[0]!.getStatus(run.runId);
      expect(stored).toEqual(expected);
      expect(stored?.status).toBe('COMPLETED');
      expect(stored?.last_seq).toBe(run.events.length);
      expect(stored?.steps.map((s) => s.log_lines)).toEqual(Array(8).fill(4));
      expect(await redis.connect().exists(`${prefix}{${run.runId}}:track:pending`)).toBe(0);
    });

    it('applies every event once when 8 connections race on every event of 20 runs', async () => {
      const prefix = redis.prefix();
      const workers = Array.from({ length: 8 }, () => new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix }));
      const runs = Array.from({ length: 20 }, () => wideRun('many', 3));
      // Every worker records every event (as if each event were delivered to all of them): duplicates must be ignored.
      await Promise.all(
        workers.map(async (w) => {
          for (const r of runs) for (const e of r.events) await w.applyEvent(e);
        }),
      );
      for (const r of runs) expect(await workers[3]!.getStatus(r.runId)).toEqual(reduce(r.events));
      expect((await workers[5]!.listPipelines({ pipelineId: 'many', status: 'COMPLETED' })).length).toBe(20);
    });

    it('never writes over a newer status from the one it wrote last (another worker wrote meanwhile)', async () => {
      const prefix = redis.prefix();
      const [a, b] = [0, 1].map(() => new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix }));
      const run = richScripted();
      const e = run.events;
      await a!.applyEvent(e[0]!);
      await a!.applyEvent(e[1]!);
      await b!.applyEvent(e[2]!);
      await b!.applyEvent(e[3]!);
      // Worker a gets a redelivered seq 3: its own last status is at seq 2, the store is at 4.
      expect(await a!.applyEvent(e[2]!)).toBeNull();
      expect(await a!.getStatus(run.runId)).toEqual(reduce(e.slice(0, 4)));
      for (const ev of e.slice(4)) await a!.applyEvent(ev);
      expect(await b!.getStatus(run.runId)).toEqual(reduce(e));
    });

    it('applies an event its writer left in the pending hash (stopped before storing) on the next read', async () => {
      const client = redis.connect();
      const prefix = redis.prefix();
      const storage = new RedisPipelineStorage(client, { keyPrefix: prefix });
      const run = richScripted();
      await storage.applyEvent(run.events[0]!);
      // A writer's first step, and nothing after it: the event is offered, never stored.
      const keys = [trackRunKey(prefix, run.runId), `${prefix}{${run.runId}}:track:pending`, `${prefix}{${run.runId}}:log`];
      await OFFER.run(client, keys, [2, JSON.stringify(run.events[1]), 60, 60]);
      expect(await storage.getStatus(run.runId)).toEqual(reduce(run.events.slice(0, 2)));
    });

    it('fills a gap at once from the run\'s event log (events appended by a process that does not track them)', async () => {
      const client = redis.connect();
      const prefix = redis.prefix();
      const transport = new RedisPubSubTransport(client, { keyPrefix: prefix });
      const storage = new RedisPipelineStorage(client, { keyPrefix: prefix, gapTimeoutMs: 600_000 });
      const run = richScripted();
      const appended = await appendAll(transport, run.events);
      // Only the even seqs are recorded (the odd ones came, say, from a shell script through the ingestor).
      const recorded = appended.filter((e) => e.seq % 2 === 0);
      expect(recorded.map((e) => e.seq)).toEqual([2, 4, 6]);
      for (const e of recorded) expect(await storage.applyEvent(e)).not.toBeNull();
      expect(await storage.getStatus(run.runId)).toEqual(reduce(appended));
      await transport.close();
    });

    it('catches up with the log on a read when the writer of the last events stopped before recording them (killed)', async () => {
      const client = redis.connect();
      const prefix = redis.prefix();
      const transport = new RedisPubSubTransport(client, { keyPrefix: prefix });
      const storage = new RedisPipelineStorage(client, { keyPrefix: prefix, gapTimeoutMs: 600_000 });
      const run = richScripted();
      const appended = await appendAll(transport, run.events);
      // Every event but the last two was recorded; their writer died after the log append.
      for (const e of appended.slice(0, -2)) expect(await storage.applyEvent(e)).not.toBeNull();
      const caught = await storage.getStatus(run.runId);
      expect(caught).toEqual(reduce(appended));
      expect(caught?.last_seq).toBe(appended.length);
      // The late writer's events are now duplicates, not applied twice.
      for (const e of appended.slice(-2)) await storage.applyEvent(e);
      expect(await storage.getStatus(run.runId)).toEqual(reduce(appended));
      await transport.close();
    });

    it('holds events that arrive ahead of a gap and applies them in seq order once it fills', async () => {
      const storage = new RedisPipelineStorage(redis.connect(), { keyPrefix: redis.prefix() });
      const run = richScripted();
      const reversed = [...run.events].reverse();
      const results = [];
      for (const e of reversed) results.push(await storage.applyEvent(e));
      // Everything waited for the start (seq 1), which came last and applied them all.
      expect(results.slice(0, -1).every((r) => r === null)).toBe(true);
      expect(results.at(-1)).toEqual(reduce(run.events));
      expect(await storage.getStatus(run.runId)).toEqual(reduce(run.events));
    });

    it('applies held events past a gap that never fills once gapTimeoutMs passed', async () => {
      const storage = new RedisPipelineStorage(redis.connect(), { keyPrefix: redis.prefix(), gapTimeoutMs: 200 });
      const run = richScripted();
      const [start, lost, ...rest] = run.events;
      await storage.applyEvent(start!);
      for (const e of rest) expect(await storage.applyEvent(e)).toBeNull();
      expect((await storage.getStatus(run.runId))?.last_seq).toBe(1);
      await sleep(300);
      const status = await storage.getStatus(run.runId);
      expect(status?.status).toBe('COMPLETED');
      expect(status?.last_seq).toBe(run.events.length);
      // The lost event, arriving late, is a duplicate now.
      expect(await storage.applyEvent(lost!)).toBeNull();
    });
  });

  describe('TTL', () => {
    it('refreshes the TTL on every write: a run written over more than the TTL never expires mid-run', async () => {
      const client = redis.connect();
      const prefix = redis.prefix();
      const storage = new RedisPipelineStorage(client, { keyPrefix: prefix, ttlSeconds: 1 });
      const run = richScripted();
      for (const e of run.events) {
        await storage.applyEvent(e);
        expect((await storage.getStatus(run.runId))?.last_seq).toBe(e.seq);
        await sleep(400);
      }
      // 6 writes 400 ms apart: 2.4 s, more than twice the TTL.
      expect(run.events.length * 400).toBeGreaterThan(2000);
      expect(await storage.getStatus(run.runId)).toEqual(reduce(run.events));
      const ttl = await client.pttl(trackRunKey(prefix, run.runId));
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(1000);
    });

    it('expired runs leave every list, lazily on read and by the prune pass, and the index does not grow', async () => {
      const client = redis.connect();
      const prefix = redis.prefix();
      const storage = new RedisPipelineStorage(client, { keyPrefix: prefix, ttlSeconds: 1, pruneIntervalMs: 0 });
      const pipelines = ['p0', 'p1', 'p2'];
      const first = Array.from({ length: 30 }, (_, i) => scriptedRun({ pipelineId: pipelines[i % 3]!, start: Date.now() - i * 1000, steps: [{ name: 'a', ms: 5 }] }));
      for (const r of first) for (const e of r.events) await storage.applyEvent(e);
      expect(await storage.listPipelines()).toHaveLength(30);
      expect(await indexSize(client, prefix, pipelines)).toBe(30 * 4);

      await until(async () => (await client.exists(...first.map((r) => trackRunKey(prefix, r.runId)))) === 0, 'the runs to expire');
      // Lazily on read: the list checks the records and drops what is gone.
      expect(await storage.listPipelines()).toEqual([]);
      expect(await client.zcard(trackStartedIndexKey(prefix))).toBe(0);
      expect(await storage.listPipelines({ pipelineId: 'p1' })).toEqual([]);
      expect(await storage.listPipelines({ status: 'COMPLETED' })).toEqual([]);
      // The prune pass takes the rest, the pipelines set included.
      const pruned = await storage.prune();
      expect(pruned.removed).toBeGreaterThan(0);
      expect(await indexSize(client, prefix, pipelines)).toBe(0);
      expect(await client.smembers(trackPipelinesKey(prefix))).toEqual([]);

      // Round after round of runs that expire: the index stays at the live runs.
      for (let round = 0; round < 2; round++) {
        const batch = Array.from({ length: 10 }, () => scriptedRun({ pipelineId: 'p0', start: Date.now() - 5000, steps: [{ name: 'a', ms: 5 }] }));
        for (const r of batch) for (const e of r.events) await storage.applyEvent(e);
        expect(await indexSize(client, prefix, pipelines)).toBe(10 * 4);
        await until(async () => (await client.exists(...batch.map((r) => trackRunKey(prefix, r.runId)))) === 0, 'the batch to expire');
        await storage.prune();
        expect(await indexSize(client, prefix, pipelines)).toBe(0);
      }
    });

    it('starts a prune pass by itself from writes', async () => {
      const client = redis.connect();
      const prefix = redis.prefix();
      const storage = new RedisPipelineStorage(client, { keyPrefix: prefix, ttlSeconds: 1, pruneIntervalMs: 1 });
      const old = scriptedRun({ pipelineId: 'p', start: Date.now() - 5000, steps: [{ name: 'a', ms: 5 }] });
      for (const e of old.events) await storage.applyEvent(e);
      await until(async () => (await client.exists(trackRunKey(prefix, old.runId))) === 0, 'the run to expire');
      // Each write may start a pass (at most one per ms here); a new run is a write.
      await until(async () => {
        await storage.applyEvent(new RunEvents({ pipelineId: 'q', start: Date.now() }).start());
        return (await client.zscore(trackStartedIndexKey(prefix), old.runId)) === null;
      }, 'the background prune');
      expect(await client.zcard(trackPipelineIndexKey(prefix, 'p'))).toBe(0);
      await storage.close();
    });
  });

  describe('#deletePipeline and #cleanupOlderThan', () => {
    it('remove the runs from every index at once', async () => {
      const client = redis.connect();
      const prefix = redis.prefix();
      const storage = new RedisPipelineStorage(client, { keyPrefix: prefix });
      const base = Date.parse('2024-05-01T10:00:00.000Z');
      const runs = Array.from({ length: 6 }, (_, i) => scriptedRun({ pipelineId: i < 4 ? 'a' : 'b', start: base + i * 60_000, steps: [{ name: 's', ms: 5 }] }));
      for (const r of runs) for (const e of r.events) await storage.applyEvent(e);
      expect(await storage.deletePipeline(runs[0]!.runId)).toBe(1);
      expect(await storage.deletePipeline('a')).toBe(3);
      expect(await indexSize(client, prefix, ['a', 'b'])).toBe(2 * 4);
      expect(await storage.cleanupOlderThan(new Date(base + 10 * 60_000))).toBe(2);
      expect(await indexSize(client, prefix, ['a', 'b'])).toBe(0);
      expect(await client.keys(`${prefix}*`)).toEqual([]);
    });
  });

  describe('Redis Cluster layout', () => {
    it('every script touches keys of one run (plus index keys, on a single Redis only), and every key is a run key with its hash tag or an index', async () => {
      const prefix = redis.prefix();
      const monitor = await redis.connect().monitor();
      const scripts: string[][] = [];
      monitor.on('monitor', (_time: string, args: string[]) => {
        const cmd = String(args[0]).toLowerCase();
        if ((cmd === 'evalsha' || cmd === 'eval') && args.some((a) => a.startsWith(prefix))) scripts.push(args.slice(3, 3 + Number(args[2])));
      });
      const storage = new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix });
      const tracking = new PipelineTrackingManager().withStorage(storage);
      const run = richScripted('cluster');
      for (const e of run.events) await tracking.record(e);
      await tracking.getStatus('cluster');
      await tracking.listPipelines({ status: 'COMPLETED' });
      await tracking.deletePipeline('cluster');
      await until(() => Promise.resolve(scripts.length >= run.events.length), 'the monitor to see the scripts');
      monitor.disconnect();
      // On a single Redis a write script also gets the index keys (no hash tag) of its index block;
      // a Cluster client gets none (test/redis-storage-cluster.test.ts runs on a real cluster).
      const indexKey = (k: string): boolean => k.startsWith(`${prefix}track:idx:`);
      for (const keys of scripts) expect(keys.filter((k) => !/\{[^}]*\}/.test(k)).every(indexKey)).toBe(true);
      const tagged = scripts.map((keys) => new Set(keys.filter((k) => !indexKey(k)).map((k) => /\{([^}]*)\}/.exec(k)?.[1])));
      // One hash tag per script (getStatus of a pipeline id first looks for a run of that id: tag "cluster").
      for (const tags of tagged) {
        expect(tags.size).toBe(1);
        expect(tags.has(undefined)).toBe(false);
      }
      expect(tagged.filter((tags) => tags.has(run.runId)).length).toBeGreaterThanOrEqual(run.events.length);
      const client = redis.connect();
      for (const e of run.events) await storage.applyEvent(e);
      for (const key of await client.keys(`${prefix}*`)) {
        expect(key.includes(`{${run.runId}}`) || key.startsWith(`${prefix}track:idx:`)).toBe(true);
      }
    });
  });

  describe('#listPipelines over many runs', () => {
    it('getMetrics reads only the runs in its window through the time index, never KEYS or SCAN', async () => {
      const prefix = redis.prefix();
      const storage = new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix });
      const now = Date.now();
      const recent = Array.from({ length: 20 }, (_, i) => scriptedRun({ pipelineId: 'm', start: now - i * 3_600_000, steps: [{ name: 'a', ms: 10 }] }));
      const old = Array.from({ length: 200 }, (_, i) => scriptedRun({ pipelineId: 'm', start: now - 2 * 86_400_000 - i * 60_000, steps: [{ name: 'a', ms: 10 }] }));
      await Promise.all([...recent, ...old].map(async (r) => storage.saveStatus(reduce(r.events)!)));

      const monitor = await redis.connect().monitor();
      const commands: string[][] = [];
      monitor.on('monitor', (_time: string, args: string[]) => {
        if (args.some((a) => a.startsWith(prefix))) commands.push(args);
      });
      const tracking = new PipelineTrackingManager().withStorage(storage);
      const metrics = await tracking.getMetrics({ days: 1 });
      await until(() => Promise.resolve(commands.filter((c) => c[0]?.toLowerCase() === 'hget').length >= 20), 'the monitor');
      await sleep(100);
      monitor.disconnect();
      expect(metrics.total_pipelines).toBe(20);
      expect(metrics.completed).toBe(20);
      const names = commands.map((c) => String(c[0]).toLowerCase());
      expect(names).not.toContain('keys');
      expect(names).not.toContain('scan');
      expect(names.filter((n) => n === 'hget')).toHaveLength(20);
    });
  });
});

/** A completed run with retries, logs and a skip, with a pipeline id to choose. */
function richScripted(pipelineId = 'rich'): RunEvents {
  const run = new RunEvents({ pipelineId, steps: ['load', 'store'] });
  run.start();
  run.stepStart('load');
  run.stepLog('load', ['one', 'two']);
  run.stepComplete('load', [1, 2]);
  run.stepSkip('store', 'nothing to store');
  run.complete(true);
  return run;
}
