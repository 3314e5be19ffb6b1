/**
 * The contract every TrackingStorage keeps (memory now, Redis next, and custom ones):
 * the four required methods, each optional method the storage has (the others are
 * reported as skipped), and full use through PipelineTrackingManager.
 * Usage: `trackingStorageConformance('memory', () => new InMemoryPipelineStorage())`.
 */
import { afterEach, beforeEach, describe, expect, it, type TestContext } from 'vitest';
import { ErrorCodes } from '../../src/core/errors.js';
import type { FlowcastEvent } from '../../src/events/types.js';
import { PipelineTrackingManager } from '../../src/tracking/manager.js';
import type { PipelineStatus } from '../../src/tracking/models.js';
import type { TrackingStorage } from '../../src/tracking/storage.js';
import { RunEvents, reduce, scriptedRun, type ScriptedRunOptions } from '../helpers/events.js';

const MINUTE = 60_000;
const DAY = 86_400_000;
const BASE = Date.parse('2024-05-01T10:00:00.000Z');

let counter = 0;
/** Run ids unique across the whole test process, so shared storages (Redis) never collide. */
function uid(prefix: string): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${(counter++).toString(36)}`;
}

function statusOf(run: RunEvents): PipelineStatus {
  const s = reduce(run.events);
  if (s === null) throw new Error('run has no start event');
  return s;
}

function completedRun(options: Partial<ScriptedRunOptions> & { start: number }): RunEvents {
  return scriptedRun({
    steps: [
      { name: 'fetch', ms: 120, result: { rows: 3 } },
      { name: 'parse', ms: 40 },
    ],
    ...options,
  });
}

/** One run with every kind of event: retries, progress, logs, a skip, and the end. */
function richRun(pipelineId: string, end: 'complete' | 'fail' | 'cancel'): RunEvents {
  const run = new RunEvents({
    pipelineId,
    runId: uid('rich'),
    start: BASE,
    steps: ['load', 'transform', 'store', 'notify'],
    input: { file: 'a.csv', rows: [1, 2, 3] },
  });
  run.start();
  run.stepStart('load');
  run.stepLog('load', ['opening a.csv', 'read 3 rows']);
  run.advance(50);
  run.stepProgress('load', 0.5, 'half way');
  run.advance(50);
  run.stepComplete('load', [1, 2, 3]);
  run.stepStart('transform');
  run.advance(30);
  run.stepRetry('transform', 'Error: flaky');
  run.advance(100);
  run.stepStart('transform', 2);
  run.advance(70);
  if (end === 'cancel') {
    run.stepSkip('store', 'run cancelled');
    run.stepSkip('notify', 'run cancelled');
    run.cancel('operator stop');
    return run;
  }
  run.stepComplete('transform', { sum: 6 });
  run.stepStart('store');
  run.advance(20);
  if (end === 'fail') {
    run.stepError('store', 'Error: disk full\n    at write (fs.js:1:1)');
    run.stepSkip('notify', 'pipeline failed at step "store"');
    run.fail("Pipeline failed at step 'store': Error: disk full", 'store');
    return run;
  }
  run.stepComplete('store', true);
  run.stepSkip('notify', 'nobody to notify');
  run.complete(true);
  return run;
}

/** Options of {@link trackingStorageConformance}. */
export interface ConformanceOptions {
  /**
   * A second writer on the same store as `storage` (another process's storage object),
   * for the tests of writes from many writers. @default the storage itself (a store of one process)
   */
  peer?: (storage: TrackingStorage) => Promise<TrackingStorage> | TrackingStorage;
}

/** The status with the run id replaced, to compare twin runs (same events, two run ids). */
function twin(status: PipelineStatus | null, runId: string): unknown {
  return status === null ? null : (JSON.parse(JSON.stringify(status).replaceAll(runId, 'RUN')) as unknown);
}

/** The events cut into groups of the given sizes (the last size repeats). */
function groupsOf(events: readonly FlowcastEvent[], sizes: number[]): FlowcastEvent[][] {
  const out: FlowcastEvent[][] = [];
  for (let i = 0, k = 0; i < events.length; k++) {
    const n = sizes[Math.min(k, sizes.length - 1)]!;
    out.push(events.slice(i, i + n));
    i += n;
  }
  return out;
}

export function trackingStorageConformance(
  name: string,
  makeStorage: () => Promise<TrackingStorage> | TrackingStorage,
  cleanup?: (storage: TrackingStorage) => Promise<void>,
  options: ConformanceOptions = {},
): void {
  describe(`TrackingStorage conformance: ${name}`, () => {
    let storage: TrackingStorage;
    /** A pipeline id unique to the test, so a shared storage only shows this test's runs when filtered. */
    let pid: string;

    beforeEach(async () => {
      storage = await makeStorage();
      pid = uid('pipe');
    });
    afterEach(async () => {
      await cleanup?.(storage);
    });

    const save = async (...runs: RunEvents[]): Promise<PipelineStatus[]> => {
      const out: PipelineStatus[] = [];
      for (const r of runs) {
        const s = statusOf(r);
        await storage.saveStatus(s);
        out.push(s);
      }
      return out;
    };

    describe('#saveStatus and #getStatus', () => {
      it('round-trips a status unchanged', async () => {
        const [s] = await save(richRun(pid, 'fail'));
        expect(await storage.getStatus(s!.run_id)).toEqual(s);
      });

      it('round-trips a dataflow status with its dag', async () => {
        const run = new RunEvents({
          pipelineId: pid,
          runId: uid('df'),
          pipelineType: 'dataflow',
          steps: [
            { step_name: 'x', step_index: 0, kind: 'call', tasks: ['tx'], depends_on: [] },
            { step_name: 'y', step_index: 1, kind: 'group', tasks: ['t1', 't2'], depends_on: ['x'] },
          ],
          dag: { nodes: ['x', 'y'], edges: [['x', 'y']] },
        });
        run.start();
        const [s] = await save(run);
        const got = await storage.getStatus(run.runId);
        expect(got).toEqual(s);
        expect(got?.dag).toEqual({ nodes: ['x', 'y'], edges: [['x', 'y']] });
      });

      it('returns null for an unknown run', async () => {
        expect(await storage.getStatus(uid('nope'))).toBeNull();
      });

      it('replaces the status of a run saved again', async () => {
        const run = completedRun({ pipelineId: pid, runId: uid('r'), start: BASE });
        const first = reduce(run.events.slice(0, 3))!;
        await storage.saveStatus(first);
        const final = statusOf(run);
        await storage.saveStatus(final);
        expect(await storage.getStatus(run.runId)).toEqual(final);
        expect(await storage.listPipelines({ pipelineId: pid })).toHaveLength(1);
      });

      it('keeps its own copy: changing the saved or the returned object does not change the store', async () => {
        const [s] = await save(completedRun({ pipelineId: pid, runId: uid('r'), start: BASE }));
        const expected = structuredClone(s!);
        s!.status = 'FAILED';
        s!.steps[0]!.status = 'FAILED';
        const got = await storage.getStatus(expected.run_id);
        expect(got).toEqual(expected);
        got!.steps[0]!.result = 'corrupted';
        got!.steps.pop();
        expect(await storage.getStatus(expected.run_id)).toEqual(expected);
        const [listed] = await storage.listPipelines({ pipelineId: pid });
        listed!.status = 'CANCELLED';
        expect(await storage.getStatus(expected.run_id)).toEqual(expected);
      });
    });

    describe('#listPipelines', () => {
      const fiveRuns = (): RunEvents[] => [
        completedRun({ pipelineId: pid, runId: uid('r0'), start: BASE }),
        completedRun({ pipelineId: pid, runId: uid('r1'), start: BASE + 1 * MINUTE, steps: [{ name: 'fetch', ms: 5, error: 'Error: 500' }] }),
        completedRun({ pipelineId: pid, runId: uid('r2'), start: BASE + 2 * MINUTE }),
        completedRun({ pipelineId: pid, runId: uid('r3'), start: BASE + 3 * MINUTE, end: 'running', stopAt: 'parse' }),
        completedRun({ pipelineId: pid, runId: uid('r4'), start: BASE + 4 * MINUTE, end: 'cancel', stopAt: 'fetch' }),
      ];

      it('lists runs newest started first, whatever the order they were saved in', async () => {
        const runs = fiveRuns();
        await save(runs[2]!, runs[0]!, runs[4]!, runs[1]!, runs[3]!);
        const listed = await storage.listPipelines({ pipelineId: pid });
        expect(listed.map((s) => s.run_id)).toEqual([4, 3, 2, 1, 0].map((i) => runs[i]!.runId));
        expect(listed[0]).toEqual(statusOf(runs[4]!));
      });

      it('filters by status', async () => {
        const runs = fiveRuns();
        await save(...runs);
        const ids = async (status: PipelineStatus['status']): Promise<string[]> =>
          (await storage.listPipelines({ pipelineId: pid, status })).map((s) => s.run_id);
        expect(await ids('COMPLETED')).toEqual([runs[2]!.runId, runs[0]!.runId]);
        expect(await ids('FAILED')).toEqual([runs[1]!.runId]);
        expect(await ids('RUNNING')).toEqual([runs[3]!.runId]);
        expect(await ids('CANCELLED')).toEqual([runs[4]!.runId]);
        expect(await ids('PENDING')).toEqual([]);
      });

      it('filters by pipeline id, and lists every pipeline without one', async () => {
        const other = uid('other');
        const mine = completedRun({ pipelineId: pid, runId: uid('m'), start: BASE });
        const theirs = completedRun({ pipelineId: other, runId: uid('t'), start: BASE + MINUTE });
        await save(mine, theirs);
        expect((await storage.listPipelines({ pipelineId: pid })).map((s) => s.run_id)).toEqual([mine.runId]);
        expect((await storage.listPipelines({ pipelineId: other })).map((s) => s.run_id)).toEqual([theirs.runId]);
        expect(await storage.listPipelines({ pipelineId: uid('none') })).toEqual([]);
        const all = (await storage.listPipelines()).map((s) => s.run_id);
        expect(all).toEqual(expect.arrayContaining([mine.runId, theirs.runId]));
        expect(all.indexOf(theirs.runId)).toBeLessThan(all.indexOf(mine.runId));
      });

      it('filters by start time with since (inclusive)', async () => {
        const runs = fiveRuns();
        await save(...runs);
        const since = new Date(BASE + 2 * MINUTE);
        expect((await storage.listPipelines({ pipelineId: pid, since })).map((s) => s.run_id)).toEqual([4, 3, 2].map((i) => runs[i]!.runId));
        expect(await storage.listPipelines({ pipelineId: pid, since: new Date(BASE + DAY) })).toEqual([]);
      });

      it('pages with limit and offset after ordering and filtering', async () => {
        const runs = fiveRuns();
        await save(...runs);
        const page = async (offset: number, limit?: number): Promise<string[]> =>
          (await storage.listPipelines(limit === undefined ? { pipelineId: pid, offset } : { pipelineId: pid, offset, limit })).map((s) => s.run_id);
        expect(await page(0, 2)).toEqual([runs[4]!.runId, runs[3]!.runId]);
        expect(await page(2, 2)).toEqual([runs[2]!.runId, runs[1]!.runId]);
        expect(await page(4, 2)).toEqual([runs[0]!.runId]);
        expect(await page(5, 2)).toEqual([]);
        expect(await page(3)).toEqual([runs[1]!.runId, runs[0]!.runId]);
        const completed = await storage.listPipelines({ pipelineId: pid, status: 'COMPLETED', limit: 1, offset: 1 });
        expect(completed.map((s) => s.run_id)).toEqual([runs[0]!.runId]);
      });
    });

    describe('#deletePipeline', () => {
      it('deletes one run by run id and resolves with 1', async () => {
        const a = completedRun({ pipelineId: pid, runId: uid('a'), start: BASE });
        const b = completedRun({ pipelineId: pid, runId: uid('b'), start: BASE + MINUTE });
        await save(a, b);
        expect(await storage.deletePipeline(a.runId)).toBe(1);
        expect(await storage.getStatus(a.runId)).toBeNull();
        expect(await storage.getStatus(b.runId)).not.toBeNull();
        expect((await storage.listPipelines({ pipelineId: pid })).map((s) => s.run_id)).toEqual([b.runId]);
      });

      it('deletes every run of a pipeline by pipeline id and resolves with how many', async () => {
        const other = uid('other');
        const runs = [0, 1, 2].map((i) => completedRun({ pipelineId: pid, runId: uid(`p${i}`), start: BASE + i * MINUTE }));
        const kept = completedRun({ pipelineId: other, runId: uid('k'), start: BASE });
        await save(...runs, kept);
        expect(await storage.deletePipeline(pid)).toBe(3);
        expect(await storage.listPipelines({ pipelineId: pid })).toEqual([]);
        for (const r of runs) expect(await storage.getStatus(r.runId)).toBeNull();
        expect(await storage.getStatus(kept.runId)).toEqual(statusOf(kept));
      });

      it('resolves with 0 for an unknown id', async () => {
        expect(await storage.deletePipeline(uid('unknown'))).toBe(0);
      });

      it('with an aborted signal, rejects with an AbortError (code ABORTED) and deletes nothing', async () => {
        const runs = [0, 1].map((i) => completedRun({ pipelineId: pid, runId: uid(`s${i}`), start: BASE + i * MINUTE }));
        await save(...runs);
        const controller = new AbortController();
        controller.abort(new Error('stop now'));
        const error = await storage.deletePipeline(pid, { signal: controller.signal }).then(() => null, (e: unknown) => e);
        expect(error).toMatchObject({ name: 'AbortError', code: ErrorCodes.ABORTED });
        expect((error as Error).cause).toBe(controller.signal.reason);
        expect((await storage.listPipelines({ pipelineId: pid })).map((s) => s.run_id).sort()).toEqual(runs.map((r) => r.runId).sort());
      });
    });

    describe('#applyEvent (optional)', () => {
      const applier = (ctx: TestContext): ((e: FlowcastEvent) => Promise<PipelineStatus | null>) => {
        if (storage.applyEvent === undefined) ctx.skip('the storage has no applyEvent');
        return async (e) => storage.applyEvent!(e);
      };

      it.for(['complete', 'fail', 'cancel'] as const)('stores what the reducer builds from a full run (%s)', async (end, ctx) => {
        const apply = applier(ctx);
        const run = richRun(pid, end);
        let last: PipelineStatus | null = null;
        for (const e of run.events) last = await apply(e);
        const expected = statusOf(run);
        expect(structuredClone(last)).toEqual(expected);
        expect(await storage.getStatus(run.runId)).toEqual(expected);
        expect((await storage.listPipelines({ pipelineId: pid })).map((s) => s.run_id)).toEqual([run.runId]);
      });

      it('ignores a duplicate seq and resolves with null', async (ctx: TestContext) => {
        const apply = applier(ctx);
        const run = richRun(pid, 'complete');
        const events = run.events;
        for (const e of events.slice(0, 6)) await apply(e);
        const before = await storage.getStatus(run.runId);
        expect(await apply(events[5]!)).toBeNull();
        expect(await apply(events[2]!)).toBeNull();
        expect(await apply({ ...events[0]!, event_id: 'again' })).toBeNull();
        expect(await storage.getStatus(run.runId)).toEqual(before);
        for (const e of events.slice(6)) await apply(e);
        expect(await storage.getStatus(run.runId)).toEqual(statusOf(run));
      });

      it('resolves with null and stores nothing for an event of an unknown run', async (ctx: TestContext) => {
        const apply = applier(ctx);
        const run = richRun(pid, 'complete');
        expect(await apply(run.events[1]!)).toBeNull();
        expect(await storage.getStatus(run.runId)).toBeNull();
        expect(await storage.listPipelines({ pipelineId: pid })).toEqual([]);
      });

      it('keeps runs of one pipeline apart when their events interleave', async (ctx: TestContext) => {
        const apply = applier(ctx);
        const a = richRun(pid, 'complete');
        const b = richRun(pid, 'fail');
        const n = Math.max(a.events.length, b.events.length);
        for (let i = 0; i < n; i++) {
          if (a.events[i]) await apply(a.events[i]!);
          if (b.events[i]) await apply(b.events[i]!);
        }
        expect(await storage.getStatus(a.runId)).toEqual(statusOf(a));
        expect(await storage.getStatus(b.runId)).toEqual(statusOf(b));
      });
    });

    describe('#applyEvents (optional)', () => {
      type Apply = (events: FlowcastEvent[]) => Promise<PipelineStatus | null>;
      const groupApplier = (ctx: TestContext): { group: Apply; one: (e: FlowcastEvent) => Promise<PipelineStatus | null> } => {
        if (storage.applyEvents === undefined) ctx.skip('the storage has no applyEvents');
        if (storage.applyEvent === undefined) throw new Error('a storage with applyEvents must have applyEvent');
        return { group: async (events) => storage.applyEvents!(events), one: async (e) => storage.applyEvent!(e) };
      };

      it.for(['complete', 'fail', 'cancel'] as const)('stores what the reducer builds, a group at a time (%s)', async (end, ctx) => {
        const { group } = groupApplier(ctx);
        const run = richRun(pid, end);
        let applied = 0;
        for (const g of groupsOf(run.events, [1, 2, 3, 2])) {
          const status = await group(g);
          applied += g.length;
          // Each group resolves with the status right after its last event.
          expect(structuredClone(status)).toEqual(reduce(run.events.slice(0, applied)));
        }
        const expected = statusOf(run);
        expect(await storage.getStatus(run.runId)).toEqual(expected);
        expect((await storage.listPipelines({ pipelineId: pid })).map((s) => s.run_id)).toEqual([run.runId]);
        expect((await storage.listPipelines({ pipelineId: pid, status: expected.status })).map((s) => s.run_id)).toEqual([run.runId]);
        expect(await storage.listPipelines({ pipelineId: pid, status: 'RUNNING' })).toEqual([]);
      });

      it('stores a whole run given as one group, and a group that starts a run', async (ctx: TestContext) => {
        const { group } = groupApplier(ctx);
        const whole = richRun(pid, 'complete');
        expect(structuredClone(await group(whole.events))).toEqual(statusOf(whole));
        expect(await storage.getStatus(whole.runId)).toEqual(statusOf(whole));
        const started = richRun(pid, 'fail');
        expect(structuredClone(await group(started.events.slice(0, 3)))).toEqual(reduce(started.events.slice(0, 3)));
        expect((await storage.listPipelines({ pipelineId: pid, status: 'RUNNING' })).map((s) => s.run_id)).toEqual([started.runId]);
      });

      it('skips duplicates like applyEvent: null for a group already stored, the new events of a group that overlaps', async (ctx: TestContext) => {
        const { group } = groupApplier(ctx);
        const run = richRun(pid, 'complete');
        const events = run.events;
        await group(events.slice(0, 6));
        const before = await storage.getStatus(run.runId);
        expect(await group(events.slice(2, 6))).toBeNull();
        expect(await group([events[5]!])).toBeNull();
        expect(await group([{ ...events[0]!, event_id: 'again' }])).toBeNull();
        expect(await storage.getStatus(run.runId)).toEqual(before);
        expect(structuredClone(await group(events.slice(4, 9)))).toEqual(reduce(events.slice(0, 9)));
        await group(events.slice(9));
        expect(await storage.getStatus(run.runId)).toEqual(statusOf(run));
      });

      it('resolves with null and stores nothing for a group of an unknown run that does not start it', async (ctx: TestContext) => {
        const { group } = groupApplier(ctx);
        const run = richRun(pid, 'complete');
        expect(await group(run.events.slice(1, 4))).toBeNull();
        expect(await storage.getStatus(run.runId)).toBeNull();
        expect(await storage.listPipelines({ pipelineId: pid })).toEqual([]);
      });

      it('stays correct when another writer wrote the run between two groups', async (ctx: TestContext) => {
        const { group } = groupApplier(ctx);
        const other = await (options.peer ?? ((s: TrackingStorage) => s))(storage);
        const run = richRun(pid, 'complete');
        const events = run.events;
        await group(events.slice(0, 3));
        for (const e of events.slice(3, 5)) await other.applyEvent!(e);
        expect(structuredClone(await group(events.slice(5, 8)))).toEqual(reduce(events.slice(0, 8)));
        await other.applyEvents!(events.slice(8, 10));
        await group(events.slice(10));
        expect(await storage.getStatus(run.runId)).toEqual(statusOf(run));
        expect(await other.getStatus(run.runId)).toEqual(statusOf(run));
        expect((await storage.listPipelines({ pipelineId: pid, status: 'COMPLETED' })).map((s) => s.run_id)).toEqual([run.runId]);
      });

      it('treats gaps (before a group and inside one) exactly as applyEvent one by one does', async (ctx: TestContext) => {
        const { group, one } = groupApplier(ctx);
        // Twin runs: the same events under two run ids, one applied event by event, the other in groups.
        const a = richRun(pid, 'complete');
        const b = richRun(pid, 'complete');
        const ea = a.events;
        const eb = b.events;
        const step = async (indexes: number[]): Promise<void> => {
          let byOne: PipelineStatus | null = null;
          for (const i of indexes) byOne = (await one(ea[i]!)) ?? byOne;
          const byGroup = await group(indexes.map((i) => eb[i]!));
          expect(twin(byGroup, b.runId)).toEqual(twin(byOne, a.runId));
          expect(twin(await storage.getStatus(b.runId), b.runId)).toEqual(twin(await storage.getStatus(a.runId), a.runId));
        };
        await step([0, 1, 2]);
        await step([4, 5]); // 3 missing before the group
        await step([3]); // fills it
        await step([6, 8]); // 7 missing inside the group
        await step([7]);
        await step(ea.map((_e, i) => i).slice(9));
        expect(twin(await storage.getStatus(b.runId), b.runId)).not.toBeNull();
      });

      it('rejects what is not a group of events of one run with increasing seqs, with INVALID_ARGUMENT', async (ctx: TestContext) => {
        const { group } = groupApplier(ctx);
        const a = richRun(pid, 'complete');
        const b = richRun(pid, 'complete');
        const bad: [unknown, RegExp][] = [
          [undefined, /events must be an array/],
          [a.events[0], /events must be an array/],
          [[], /events must not be empty/],
          [[a.events[0], b.events[1]], /events must all be of one run/],
          [[a.events[1], a.events[0]], /seqs must increase: events\[1\]\.seq is 1 after 2/],
          [[a.events[0], a.events[0]], /seqs must increase/],
          [[a.events[0], null], /events\[1\] must be a FlowcastEvent/],
          [[{ ...a.events[0]!, seq: 0 }], /events\[0\]\.seq must be an integer >= 1/],
        ];
        for (const [value, message] of bad) {
          const error = await group(value as FlowcastEvent[]).then(
            () => null,
            (e: unknown) => e as { code?: string; message?: string },
          );
          expect(error?.code).toBe('FLOWCAST_ERR_INVALID_ARGUMENT');
          expect(error?.message).toMatch(message);
        }
        expect(await storage.getStatus(a.runId)).toBeNull();
      });
    });

    describe('#getLatest (optional)', () => {
      it('resolves with the newest started run of a pipeline, or null', async (ctx: TestContext) => {
        const getLatest = storage.getLatest?.bind(storage);
        if (getLatest === undefined) ctx.skip('the storage has no getLatest');
        const older = completedRun({ pipelineId: pid, runId: uid('old'), start: BASE });
        const newer = completedRun({ pipelineId: pid, runId: uid('new'), start: BASE + MINUTE, end: 'running', stopAt: 'fetch' });
        await save(newer, older);
        expect(await getLatest(pid)).toEqual(statusOf(newer));
        expect(await getLatest(uid('none'))).toBeNull();
        const got = await getLatest(pid);
        got!.status = 'FAILED';
        expect((await getLatest(pid))?.status).toBe('RUNNING');
      });
    });

    describe('#cleanupOlderThan (optional)', () => {
      it('removes ended runs that completed before the cutoff and keeps the rest', async (ctx: TestContext) => {
        const cleanupOlderThan = storage.cleanupOlderThan?.bind(storage);
        if (cleanupOlderThan === undefined) ctx.skip('the storage has no cleanupOlderThan');
        const oldDone = completedRun({ pipelineId: pid, runId: uid('od'), start: BASE });
        const oldFailed = completedRun({ pipelineId: pid, runId: uid('of'), start: BASE, steps: [{ name: 'fetch', ms: 1, error: 'Error: x' }] });
        const oldRunning = completedRun({ pipelineId: pid, runId: uid('or'), start: BASE, end: 'running', stopAt: 'parse' });
        const recent = completedRun({ pipelineId: pid, runId: uid('re'), start: BASE + 2 * DAY });
        await save(oldDone, oldFailed, oldRunning, recent);
        expect(await cleanupOlderThan(new Date(BASE + DAY))).toBe(2);
        expect((await storage.listPipelines({ pipelineId: pid })).map((s) => s.run_id).sort()).toEqual([oldRunning.runId, recent.runId].sort());
      });

      it('with an aborted signal, rejects with an AbortError (code ABORTED) and removes nothing', async (ctx: TestContext) => {
        const cleanupOlderThan = storage.cleanupOlderThan?.bind(storage);
        if (cleanupOlderThan === undefined) ctx.skip('the storage has no cleanupOlderThan');
        const old = completedRun({ pipelineId: pid, runId: uid('oa'), start: BASE });
        await save(old);
        const controller = new AbortController();
        controller.abort();
        await expect(cleanupOlderThan(new Date(BASE + DAY), { signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError', code: ErrorCodes.ABORTED });
        expect(await storage.getStatus(old.runId)).toEqual(statusOf(old));
      });
    });

    describe('#close (optional)', () => {
      it('can be called twice', async (ctx: TestContext) => {
        if (storage.close === undefined) ctx.skip('the storage has no close');
        const s = await makeStorage();
        await s.close!();
        await expect(s.close!()).resolves.toBeUndefined();
      });
    });

    describe('through PipelineTrackingManager', () => {
      const recordAll = async (tracking: PipelineTrackingManager, ...runs: RunEvents[]): Promise<void> => {
        for (const r of runs) for (const e of r.events) await tracking.record(e);
      };

      it('records runs so that every query of the manager answers from this storage', async () => {
        const tracking = new PipelineTrackingManager().withStorage(storage);
        const now = Date.now();
        const old = completedRun({ pipelineId: pid, runId: uid('old'), start: now - 10 * DAY });
        const failed = richRun(pid, 'fail');
        const fresh = completedRun({ pipelineId: pid, runId: uid('fresh'), start: now - 10 * MINUTE });
        const live = completedRun({ pipelineId: pid, runId: uid('live'), start: now - MINUTE, end: 'running', stopAt: 'parse' });
        await recordAll(tracking, old, failed, fresh, live);

        expect(await tracking.getStatus(fresh.runId)).toEqual(statusOf(fresh));
        expect(await tracking.getStatus(failed.runId)).toEqual(statusOf(failed));
        expect(await tracking.getStatus(pid)).toEqual(statusOf(live));
        expect((await tracking.listPipelines({ pipelineId: pid })).map((s) => s.run_id)).toEqual([live, fresh, old, failed].map((r) => r.runId));
        expect((await tracking.listPipelines({ pipelineId: pid, status: 'RUNNING' })).map((s) => s.run_id)).toEqual([live.runId]);
        expect((await tracking.getHistory({ pipelineId: pid, limit: 2 })).map((s) => s.run_id)).toEqual([live.runId, fresh.runId]);

        const metrics = await tracking.getMetrics({ days: 1, pipelineId: pid });
        expect(metrics.total_pipelines).toBe(2);
        expect(metrics.completed).toBe(1);
        expect(metrics.running).toBe(1);

        expect(await tracking.cleanupOlderThan({ days: 5 })).toBeGreaterThanOrEqual(2);
        expect(await tracking.getStatus(old.runId)).toBeNull();
        expect(await tracking.getStatus(failed.runId)).toBeNull();
        expect(await tracking.getStatus(live.runId)).not.toBeNull();

        expect(await tracking.deletePipeline(pid)).toBe(2);
        expect(await tracking.listPipelines({ pipelineId: pid })).toEqual([]);
      });

      it('ignores events recorded twice', async () => {
        const tracking = new PipelineTrackingManager().withStorage(storage);
        const run = richRun(pid, 'complete');
        for (const e of run.events) {
          await tracking.record(e);
          await tracking.record(e);
        }
        expect(await tracking.getStatus(run.runId)).toEqual(statusOf(run));
      });

      it('records groups with recordMany: the same statuses, and listeners called once per event in order', async () => {
        const tracking = new PipelineTrackingManager().withStorage(storage);
        const calls: string[] = [];
        const ends: PipelineStatus[] = [];
        tracking.addListener({
          onPipelineStart: (_p, e) => void calls.push(`start ${e.seq}`),
          onStepStart: (_p, step, e) => void calls.push(`step ${step} ${e.seq}`),
          onStepComplete: (_p, step, _r, e) => void calls.push(`done ${step} ${e.seq}`),
          onPipelineError: (_p, _e, e) => void calls.push(`error ${e.seq}`),
          onPipelineComplete: (_p, status, e) => {
            calls.push(`end ${status.status} ${e.seq}`);
            ends.push(status);
          },
        });
        const run = richRun(pid, 'fail');
        const expectedCalls: string[] = [];
        for (const e of run.events) {
          if (e.type === 'PipelineStartEvent') expectedCalls.push(`start ${e.seq}`);
          else if (e.type === 'StepStartEvent') expectedCalls.push(`step ${e.step_name} ${e.seq}`);
          else if (e.type === 'StepCompleteEvent') expectedCalls.push(`done ${e.step_name} ${e.seq}`);
          else if (e.type === 'PipelineErrorEvent') expectedCalls.push(`error ${e.seq}`, `end FAILED ${e.seq}`);
        }
        for (const g of groupsOf(run.events, [2, 3])) await tracking.recordMany(g);
        expect(calls).toEqual(expectedCalls);
        expect(ends).toEqual([statusOf(run)]);
        expect(await tracking.getStatus(run.runId)).toEqual(statusOf(run));
        // A group already recorded: nothing stored, nobody called.
        await tracking.recordMany(run.events.slice(-3));
        expect(calls).toEqual(expectedCalls);
      });

      it('records concurrently arriving runs without mixing them up', async () => {
        const tracking = new PipelineTrackingManager().withStorage(storage);
        const runs = [0, 1, 2, 3].map(() => richRun(pid, 'complete'));
        // One per-run ordered stream each, the streams interleaved, the way the engine delivers them.
        await Promise.all(runs.map((r) => recordAll(tracking, r)));
        for (const r of runs) expect(await tracking.getStatus(r.runId)).toEqual(statusOf(r));
      });
    });
  });
}
