import { describe, expect, expectTypeOf, it } from 'vitest';
import { ErrorCodes, FlowcastError } from '../src/core/errors.js';
import type { JsonValue } from '../src/core/json.js';
import type { FlowcastEvent } from '../src/events/types.js';
import { PipelineTrackingManager, type TrackingListener } from '../src/tracking/manager.js';
import { InMemoryPipelineStorage } from '../src/tracking/memory-storage.js';
import type { PipelineStatus } from '../src/tracking/models.js';
import type { ListPipelinesQuery, TrackingStorage } from '../src/tracking/storage.js';
import { RunEvents, reduce, scriptedRun } from './helpers/events.js';

const MINUTE = 60_000;
const DAY = 86_400_000;

async function recordAll(tracking: PipelineTrackingManager, ...runs: RunEvents[]): Promise<void> {
  for (const r of runs) for (const e of r.events) await tracking.record(e);
}

function run(runId: string, startMs: number, pipelineId = 'p'): RunEvents {
  return scriptedRun({ pipelineId, runId, start: startMs, steps: [{ name: 'a', ms: 100, result: 'A' }, { name: 'b', ms: 50, result: { big: 'B' } }], input: { q: 1 } });
}

function failedRun(runId: string, startMs: number, pipelineId = 'p'): RunEvents {
  return scriptedRun({ pipelineId, runId, start: startMs, steps: [{ name: 'a', ms: 10, error: 'Error: boom' }, { name: 'b', ms: 1 }] });
}

function fresh(): PipelineTrackingManager {
  return new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
}

/** A storage that closes: to see which storages the manager closes. */
class ClosingStorage extends InMemoryPipelineStorage {
  closed = 0;
  close(): Promise<void> {
    this.closed++;
    return Promise.resolve();
  }
}

/** The four required methods only, over a memory storage, counting calls. */
function minimalStorage(): TrackingStorage & { saves: number } {
  const inner = new InMemoryPipelineStorage();
  const s = {
    saves: 0,
    saveStatus: (x: PipelineStatus) => {
      s.saves++;
      return inner.saveStatus(x);
    },
    getStatus: (id: string) => inner.getStatus(id),
    listPipelines: (q?: ListPipelinesQuery) => inner.listPipelines(q),
    deletePipeline: (id: string) => inner.deletePipeline(id),
  };
  return s;
}

describe('PipelineTrackingManager', () => {
  describe('without storage', () => {
    it('throws NO_STORAGE from every method that needs one', async () => {
      const t = new PipelineTrackingManager();
      const message = 'No tracking storage configured: call withStorage() or withAutoStorage()';
      const e = new RunEvents({ runId: 'r' }).start();
      expect(() => t.record(e)).toThrow(message);
      let caught: unknown;
      try {
        void t.record(e);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(FlowcastError);
      expect(caught).toMatchObject({ code: ErrorCodes.NO_STORAGE });
      const calls: (() => Promise<unknown>)[] = [
        () => t.getStatus('r'),
        () => t.listPipelines(),
        () => t.getHistory(),
        () => t.cleanupOlderThan({ days: 1 }),
        () => t.deletePipeline('r'),
        () => t.getMetrics(),
        () => t.exportJson('r'),
      ];
      for (const call of calls) await expect(call()).rejects.toMatchObject({ code: ErrorCodes.NO_STORAGE, message });
      expect(t.storage).toBeNull();
    });
  });

  describe('#withStorage', () => {
    it('returns the manager and uses the storage', () => {
      const storage = new InMemoryPipelineStorage();
      const t = new PipelineTrackingManager();
      expect(t.withStorage(storage)).toBe(t);
      expect(t.storage).toBe(storage);
    });

    it('rejects something that is not a storage, naming what is missing', () => {
      const t = new PipelineTrackingManager();
      expect(() => t.withStorage(null as never)).toThrow(/withStorage\(storage\) must be an object, received null/);
      expect(() => t.withStorage({ saveStatus: () => Promise.resolve() } as never)).toThrow(/its getStatus is undefined/);
    });

    it('is also an option of the constructor, with onError', async () => {
      const errors: string[] = [];
      const t = new PipelineTrackingManager({ storage: new InMemoryPipelineStorage(), onError: (_e, where) => errors.push(where) });
      t.addListener({
        onPipelineStart: () => {
          throw new Error('x');
        },
      });
      await recordAll(t, run('r', Date.now()));
      expect(errors).toHaveLength(1);
      expect(() => new PipelineTrackingManager({ store: 1 } as never)).toThrow(/unknown option "store"/);
    });
  });

  describe('#withAutoStorage', () => {
    it('falls back to an InMemoryPipelineStorage for a broker that cannot make a storage', () => {
      const t = new PipelineTrackingManager();
      expect(t.withAutoStorage({ kind: 'memory' })).toBe(t);
      expect(t.storage).toBeInstanceOf(InMemoryPipelineStorage);
    });

    it("uses the broker's createTrackingStorage() when it has one, and closes that storage on close()", async () => {
      const made = new ClosingStorage();
      const t = new PipelineTrackingManager().withAutoStorage({ createTrackingStorage: () => made });
      expect(t.storage).toBe(made);
      await t.close();
      await t.close();
      expect(made.closed).toBe(1);
    });

    it('rejects a broker that is not an object', () => {
      expect(() => new PipelineTrackingManager().withAutoStorage(undefined as never)).toThrow(/withAutoStorage\(broker\) must be an object, received undefined/);
    });
  });

  describe('#close', () => {
    it('never closes a storage it was given, and refuses use afterwards', async () => {
      const given = new ClosingStorage();
      const t = new PipelineTrackingManager().withStorage(given);
      await t[Symbol.asyncDispose]();
      expect(given.closed).toBe(0);
      expect(() => t.record(new RunEvents().start())).toThrow(expect.objectContaining({ code: ErrorCodes.CLOSED }));
      await expect(t.getStatus('x')).rejects.toMatchObject({ code: ErrorCodes.CLOSED });
    });
  });

  describe('#record', () => {
    it('returns synchronously (no promise) with a storage whose applyEvent is synchronous', () => {
      const t = fresh();
      for (const e of run('r', Date.now()).events) expect(t.record(e)).toBeUndefined();
    });

    it('returns a promise with a storage that has only the required methods, and saves once per applied event', async () => {
      const storage = minimalStorage();
      const t = new PipelineTrackingManager().withStorage(storage);
      const r = run('r', Date.now());
      const pending = r.events.map((e) => t.record(e));
      expect(pending.every((p) => p instanceof Promise)).toBe(true);
      await Promise.all(pending as Promise<void>[]);
      expect(await t.getStatus('r')).toEqual(reduce(r.events));
      expect(storage.saves).toBe(r.events.length);
      await t.record(r.events[2]!);
      expect(storage.saves).toBe(r.events.length);
    });

    it('awaits an asynchronous storage.applyEvent', async () => {
      const inner = new InMemoryPipelineStorage();
      const asyncStorage: TrackingStorage = {
        saveStatus: (s) => inner.saveStatus(s),
        getStatus: (id) => inner.getStatus(id),
        listPipelines: (q) => inner.listPipelines(q),
        deletePipeline: (id) => inner.deletePipeline(id),
        applyEvent: async (e) => {
          await new Promise((r) => setImmediate(r));
          return inner.applyEvent(e);
        },
      };
      const t = new PipelineTrackingManager().withStorage(asyncStorage);
      const r = run('r', Date.now());
      for (const e of r.events) {
        const p = t.record(e);
        expect(p).toBeInstanceOf(Promise);
        await p;
      }
      expect(await t.getStatus('r')).toEqual(reduce(r.events));
    });

    it('rejects a value that is not an event', () => {
      expect(() => fresh().record({} as never)).toThrow(/record\(event\): event must be a FlowcastEvent/);
    });
  });

  describe('#getStatus', () => {
    it('answers a run id, else the latest started run of a pipeline id, else null', async () => {
      const t = fresh();
      const now = Date.now();
      await recordAll(t, run('r1', now - 2 * MINUTE), run('r2', now - MINUTE), run('q1', now, 'q'));
      expect((await t.getStatus('r1'))?.run_id).toBe('r1');
      expect((await t.getStatus('p'))?.run_id).toBe('r2');
      expect((await t.getStatus('q'))?.run_id).toBe('q1');
      expect(await t.getStatus('nothing')).toBeNull();
    });

    it('rejects an empty id', async () => {
      await expect(fresh().getStatus('')).rejects.toThrow('getStatus(id): id must be a non-empty string, received ""');
    });
  });

  describe('#listPipelines', () => {
    it('filters by status (or the seed name statusFilter) and pipeline, and pages', async () => {
      const t = fresh();
      const now = Date.now();
      await recordAll(t, run('r1', now - 3 * MINUTE), failedRun('f1', now - 2 * MINUTE), run('r2', now - MINUTE), run('q1', now, 'q'));
      const ids = (xs: PipelineStatus[]): string[] => xs.map((s) => s.run_id);
      expect(ids(await t.listPipelines())).toEqual(['q1', 'r2', 'f1', 'r1']);
      expect(ids(await t.listPipelines({ status: 'FAILED' }))).toEqual(['f1']);
      expect(ids(await t.listPipelines({ statusFilter: 'COMPLETED', pipelineId: 'p' }))).toEqual(['r2', 'r1']);
      expect(ids(await t.listPipelines({ limit: 2, offset: 1 }))).toEqual(['r2', 'f1']);
      expect(ids(await t.listPipelines({ since: new Date(now - 90_000).toISOString() }))).toEqual(['q1', 'r2']);
      expect(ids(await t.listPipelines({ since: now - 90_000 }))).toEqual(['q1', 'r2']);
    });

    it('rejects bad options, naming the option and the value', async () => {
      const t = fresh();
      await expect(t.listPipelines({ limit: 0 })).rejects.toThrow('limit must be an integer >= 1, received 0');
      await expect(t.listPipelines({ limit: 1.5 })).rejects.toThrow('limit must be an integer >= 1, received 1.5');
      await expect(t.listPipelines({ offset: -1 })).rejects.toThrow('offset must be an integer >= 0, received -1');
      await expect(t.listPipelines({ status: 'DONE' as never })).rejects.toThrow(/status must be one of "PENDING", .*received "DONE"/);
      await expect(t.listPipelines({ status: 'FAILED', statusFilter: 'COMPLETED' })).rejects.toThrow(/disagree/);
      await expect(t.listPipelines({ since: 'yesterday' })).rejects.toThrow('since must be a valid Date, ISO string or epoch milliseconds, received "yesterday"');
      await expect(t.listPipelines({ pipelineId: '' })).rejects.toThrow(/pipelineId must be a non-empty string/);
      await expect(t.listPipelines({ limt: 3 } as never)).rejects.toThrow(/unknown option "limt"/);
      await expect(t.listPipelines({ limit: '5' as never })).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT, message: 'limit must be an integer >= 1, received "5"' });
    });
  });

  describe('#getHistory', () => {
    it('lists runs newest first, 100 by default, bounded by limit and since, optionally ended only', async () => {
      const t = fresh();
      const now = Date.now();
      const runs: RunEvents[] = [];
      for (let i = 0; i < 105; i++) runs.push(run(`r${i}`, now - (105 - i) * MINUTE));
      const live = scriptedRun({ pipelineId: 'p', runId: 'live', start: now, steps: [{ name: 'a', ms: 1 }], end: 'running', stopAt: 'a' });
      await recordAll(t, ...runs, live);
      const all = await t.getHistory();
      expect(all).toHaveLength(100);
      expect(all[0]?.run_id).toBe('live');
      expect((await t.getHistory({ limit: 2, endedOnly: true })).map((s) => s.run_id)).toEqual(['r104', 'r103']);
      expect((await t.getHistory({ since: new Date(now - 2.5 * MINUTE) })).map((s) => s.run_id)).toEqual(['live', 'r104', 'r103']);
      await expect(t.getHistory({ limit: -5 })).rejects.toThrow('limit must be an integer >= 1, received -5');
      await expect(t.getHistory({ endedOnly: 'yes' as never })).rejects.toThrow('endedOnly must be a boolean, received "yes"');
    });
  });

  describe('#cleanupOlderThan', () => {
    it('deletes ended runs that completed more than `days` ago and keeps running ones', async () => {
      const t = fresh();
      const now = Date.now();
      const oldRunning = scriptedRun({ pipelineId: 'p', runId: 'old-live', start: now - 40 * DAY, steps: [{ name: 'a', ms: 1 }], end: 'running', stopAt: 'a' });
      await recordAll(t, run('old', now - 40 * DAY), failedRun('old-f', now - 31 * DAY), run('new', now - DAY), oldRunning);
      expect(await t.cleanupOlderThan({ days: 30 })).toBe(2);
      expect((await t.listPipelines()).map((s) => s.run_id)).toEqual(['new', 'old-live']);
    });

    it('works on a storage without cleanupOlderThan', async () => {
      const t = new PipelineTrackingManager().withStorage(minimalStorage());
      const now = Date.now();
      await recordAll(t, run('old', now - 3 * DAY), run('new', now - MINUTE));
      expect(await t.cleanupOlderThan({ days: 0.5 })).toBe(1);
      expect((await t.listPipelines()).map((s) => s.run_id)).toEqual(['new']);
    });

    it('rejects days that are not > 0', async () => {
      const t = fresh();
      await expect(t.cleanupOlderThan({ days: 0 })).rejects.toThrow('days must be a finite number > 0, received 0');
      await expect(t.cleanupOlderThan({ days: Number.NaN })).rejects.toThrow(/days must be a finite number > 0/);
      await expect(t.cleanupOlderThan(undefined as never)).rejects.toThrow('cleanupOlderThan options must be an object, received undefined');
    });
  });

  describe('#deletePipeline', () => {
    it('deletes a run by run id or all runs by pipeline id', async () => {
      const t = fresh();
      const now = Date.now();
      await recordAll(t, run('r1', now), run('r2', now), run('q1', now, 'q'));
      expect(await t.deletePipeline('r1')).toBe(1);
      expect(await t.deletePipeline('p')).toBe(1);
      expect(await t.deletePipeline('p')).toBe(0);
      expect((await t.listPipelines()).map((s) => s.run_id)).toEqual(['q1']);
      await expect(t.deletePipeline(42 as never)).rejects.toThrow('deletePipeline(id): id must be a non-empty string, received 42');
    });
  });

  describe('#getMetrics', () => {
    it('computes metrics over the runs of the window, optionally of one pipeline', async () => {
      const t = fresh();
      const now = Date.now();
      await recordAll(t, run('r1', now - 2 * DAY), failedRun('f1', now - MINUTE), run('r2', now - 30 * DAY), run('q1', now - MINUTE, 'q'));
      const m = await t.getMetrics();
      expect(m.period_days).toBe(7);
      expect(m).toMatchObject({ total_pipelines: 3, completed: 2, failed: 1, failure_reasons: { "Pipeline failed at step 'a': Error: boom": 1 } });
      const one = await t.getMetrics({ days: 1, pipelineId: 'p' });
      expect(one).toMatchObject({ total_pipelines: 1, failed: 1, success_rate: 0 });
      await expect(t.getMetrics({ days: -1 })).rejects.toThrow('days must be a finite number > 0, received -1');
    });
  });

  describe('#exportJson', () => {
    it('exports the status as indented JSON, with or without results and input', async () => {
      const t = fresh();
      const r = run('r1', Date.now());
      await recordAll(t, r);
      const full = await t.exportJson('r1');
      expect(JSON.parse(full)).toEqual(reduce(r.events));
      expect(full).toContain('\n  "pipeline_id": "p"');
      const lean = JSON.parse(await t.exportJson('p', { includeResult: false, includeInput: false, indent: 0 })) as Record<string, JsonValue>;
      expect(lean).not.toHaveProperty('result');
      expect(lean).not.toHaveProperty('input');
      expect(lean.run_id).toBe('r1');
      for (const step of lean.steps as Record<string, JsonValue>[]) {
        expect(step).not.toHaveProperty('result');
        expect(step.status).toBe('COMPLETED');
      }
    });

    it('rejects with NOT_FOUND for an unknown id, and on bad options', async () => {
      const t = fresh();
      await expect(t.exportJson('ghost')).rejects.toMatchObject({ code: ErrorCodes.NOT_FOUND, message: 'exportJson(id): no tracked run or pipeline "ghost"' });
      await expect(t.exportJson('ghost', { includeResult: 'no' as never })).rejects.toThrow('includeResult must be a boolean, received "no"');
    });
  });

  describe('#addListener', () => {
    it('calls each method after the status is stored, with the seed arguments and the event', async () => {
      const t = fresh();
      const calls: string[] = [];
      const seen: { stepRunning?: string | undefined; completeStatus?: PipelineStatus } = {};
      t.addListener({
        onPipelineStart: (pid, e) => void calls.push(`start ${pid} ${e.run_id}`),
        onStepStart: async (pid, step) => {
          calls.push(`step ${pid} ${step}`);
          const s = await t.getStatus('r1');
          seen.stepRunning ??= s?.steps.find((x) => x.step_name === step)?.status;
        },
        onStepComplete: (pid, step, result) => void calls.push(`done ${pid} ${step} ${JSON.stringify(result)}`),
        onPipelineComplete: (pid, status) => {
          calls.push(`end ${pid} ${status.status}`);
          seen.completeStatus = status;
        },
        onPipelineError: (pid, error) => void calls.push(`error ${pid} ${error}`),
      });
      await recordAll(t, run('r1', Date.now()));
      expect(calls).toEqual(['start p r1', 'step p a', 'done p a "A"', 'step p b', 'done p b {"big":"B"}', 'end p COMPLETED']);
      await new Promise((r) => setImmediate(r));
      expect(seen.stepRunning).toBe('RUNNING');
      expect(seen.completeStatus).toEqual(await t.getStatus('r1'));
      seen.completeStatus!.status = 'FAILED';
      expect((await t.getStatus('r1'))?.status).toBe('COMPLETED');
    });

    it('calls onPipelineError then onPipelineComplete for a failure, and onPipelineComplete for a cancel', async () => {
      const t = fresh();
      const calls: string[] = [];
      t.addListener({
        onPipelineComplete: (pid, status, e) => void calls.push(`end ${status.run_id} ${status.status} ${e.type}`),
        onPipelineError: (pid, error, e) => void calls.push(`error ${e.run_id} ${error}`),
      });
      const cancelled = scriptedRun({ pipelineId: 'p', runId: 'c1', steps: [{ name: 'a', ms: 5 }], end: 'cancel', stopAt: 'a' });
      await recordAll(t, failedRun('f1', Date.now()), cancelled);
      expect(calls).toEqual([
        "error f1 Pipeline failed at step 'a': Error: boom",
        'end f1 FAILED PipelineErrorEvent',
        'end c1 CANCELLED PipelineCancelledEvent',
      ]);
    });

    it('works the same with a storage that has only the required methods', async () => {
      const t = new PipelineTrackingManager().withStorage(minimalStorage());
      const calls: string[] = [];
      t.addListener({
        onStepComplete: (_p, step) => void calls.push(step),
        onPipelineComplete: (_p, s) => void calls.push(s.status),
      });
      await recordAll(t, run('r1', Date.now()));
      expect(calls).toEqual(['a', 'b', 'COMPLETED']);
    });

    it('does not call listeners again for a duplicate event', async () => {
      const t = fresh();
      let starts = 0;
      t.addListener({ onStepStart: () => void starts++ });
      const r = run('r1', Date.now());
      await recordAll(t, r, r);
      expect(starts).toBe(2);
    });

    it('returns a disposer that removes the listener', async () => {
      const t = fresh();
      let starts = 0;
      const dispose = t.addListener({ onPipelineStart: () => void starts++ });
      await recordAll(t, run('r1', Date.now()));
      dispose();
      dispose();
      await recordAll(t, run('r2', Date.now()));
      expect(starts).toBe(1);
    });

    it('calls a class instance listener with its own this', async () => {
      class Counter implements TrackingListener {
        count = 0;
        onStepComplete(): void {
          this.count++;
        }
      }
      const t = fresh();
      const c = new Counter();
      t.addListener(c);
      await recordAll(t, run('r1', Date.now()));
      expect(c.count).toBe(2);
    });

    it('reports a throwing or rejecting listener to onError and keeps recording and notifying', async () => {
      const reported: { message: string; where: string }[] = [];
      const t = fresh().onError((error, where) => reported.push({ message: error.message, where }));
      const later: string[] = [];
      t.addListener({
        onStepStart: () => {
          throw new Error('sync boom');
        },
        onStepComplete: () => Promise.reject(new Error('async boom')),
      });
      t.addListener({ onStepComplete: (_p, step) => void later.push(step) });
      const r = run('r1', Date.now());
      await recordAll(t, r);
      await new Promise((resolve) => setImmediate(resolve));
      expect(await t.getStatus('r1')).toEqual(reduce(r.events));
      expect(later).toEqual(['a', 'b']);
      expect(reported).toHaveLength(4);
      expect(reported[0]).toEqual({ message: 'sync boom', where: 'listener onStepStart (run r1, StepStartEvent seq 2)' });
      expect(reported.filter((x) => x.message === 'async boom')).toHaveLength(2);
      expect(reported.find((x) => x.message === 'async boom')?.where).toMatch(/^listener onStepComplete \(run r1, StepCompleteEvent seq \d+\)$/);
    });

    it('turns a thrown non-Error into an Error for onError', async () => {
      const reported: unknown[] = [];
      const t = fresh().onError((error) => reported.push(error));
      t.addListener({
        onPipelineStart: () => {
          // eslint-disable-next-line @typescript-eslint/only-throw-error
          throw 'a string';
        },
      });
      await recordAll(t, run('r1', Date.now()));
      expect(reported[0]).toBeInstanceOf(Error);
      expect((reported[0] as Error).message).toBe('a string');
    });

    it('takes a function listener (seed 001 §6) and calls it with every tracking event of a run, once, in seq order', async () => {
      const t = fresh();
      const seen: string[] = [];
      const listener = (event: FlowcastEvent): void => void seen.push(`${event.seq} ${event.type}`);
      expectTypeOf(listener).toExtend<Parameters<PipelineTrackingManager['addListener']>[0]>();
      const dispose = t.addListener(listener);
      const r = new RunEvents({ runId: 'fn1', steps: ['a'] });
      const events: FlowcastEvent[] = [r.start(), r.stepStart('a'), r.stepLog('a', ['x']), r.stepProgress('a', 0.5), r.stepComplete('a', 1), r.complete(1)];
      for (const e of events) await t.record(e);
      // A duplicate is not an update: no second call.
      await t.record(events[2] as FlowcastEvent);
      expect(seen).toEqual(events.map((e) => `${e.seq} ${e.type}`));
      dispose();
      await recordAll(t, run('fn2', Date.now()));
      expect(seen).toHaveLength(events.length);
    });

    it('calls function and object listeners in the order they were added, and reports a throwing function to onError', async () => {
      const reported: string[] = [];
      const t = fresh().onError((error, where) => reported.push(`${where}: ${error.message}`));
      const calls: string[] = [];
      t.addListener({ onPipelineStart: () => void calls.push('object') });
      t.addListener((e) => {
        calls.push(`function ${e.type}`);
        if (e.type === 'PipelineStartEvent') throw new Error('fn boom');
      });
      await t.record(new RunEvents({ runId: 'fn3' }).start());
      expect(calls).toEqual(['object', 'function PipelineStartEvent']);
      expect(reported).toEqual(['listener function (run fn3, PipelineStartEvent seq 1): fn boom']);
    });

    it('rejects listeners without any known method or with a method that is not a function', () => {
      const t = fresh();
      expect(() => t.addListener({})).toThrow(/listener has none of onPipelineStart, onStepStart/);
      expect(() => t.addListener({ onStepStart: 'yes' } as never)).toThrow('addListener(listener): onStepStart must be a function, received "yes"');
      expect(() => t.addListener(null as never)).toThrow('addListener(listener): listener must be a function or an object with some of onPipelineStart, onStepStart, onStepComplete, onPipelineComplete, onPipelineError, received null');
      expect(() => t.onError('x' as never)).toThrow('onError(handler): handler must be a function, received "x"');
    });
  });

  it('records a run driven by events only, as the engine would deliver them', async () => {
    // Sanity: one full rich sequence through the manager equals the reducer's fold.
    const t = fresh();
    const r = new RunEvents({ runId: 'rich', steps: ['a', 'b'] });
    const events: FlowcastEvent[] = [r.start(), r.stepStart('a'), r.stepLog('a', ['x']), r.stepProgress('a', 0.5), r.stepComplete('a', 1), r.stepSkip('b', 'no'), r.complete(1)];
    for (const e of events) await t.record(e);
    expect(await t.getStatus('rich')).toEqual(reduce(events));
  });
});
