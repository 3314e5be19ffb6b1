import { describe, expect, it } from 'vitest';
import { AbortedError, ErrorCodes } from '../src/core/errors.js';
import { InMemoryPipelineStorage } from '../src/tracking/memory-storage.js';
import type { PipelineStatus } from '../src/tracking/models.js';
import type { ListPipelinesQuery, MaintenanceOptions, TrackingStorage } from '../src/tracking/storage.js';
import { trackingStorageConformance } from './conformance/tracking-storage.js';
import { RunEvents, reduce, scriptedRun } from './helpers/events.js';

/**
 * A custom storage with only the four required methods, written the way a user would
 * (it keeps JSON text, like a database row), to prove the manager needs nothing more.
 */
class JsonRowStorage implements TrackingStorage {
  readonly rows = new Map<string, string>();

  saveStatus(status: PipelineStatus): Promise<void> {
    this.rows.set(status.run_id, JSON.stringify(status));
    return Promise.resolve();
  }

  async getStatus(runId: string): Promise<PipelineStatus | null> {
    // A real round trip to a database would yield here.
    await Promise.resolve();
    const row = this.rows.get(runId);
    return row === undefined ? null : (JSON.parse(row) as PipelineStatus);
  }

  listPipelines(query: ListPipelinesQuery = {}): Promise<PipelineStatus[]> {
    const all = [...this.rows.values()].map((r) => JSON.parse(r) as PipelineStatus);
    const since = query.since?.getTime();
    const matched = all
      .filter((s) => (query.status === undefined || s.status === query.status) && (query.pipelineId === undefined || s.pipeline_id === query.pipelineId))
      .filter((s) => since === undefined || (s.started_at !== null && Date.parse(s.started_at) >= since))
      .reverse()
      .sort((a, b) => Date.parse(b.started_at ?? '') - Date.parse(a.started_at ?? ''));
    const offset = query.offset ?? 0;
    return Promise.resolve(matched.slice(offset, query.limit === undefined ? undefined : offset + query.limit));
  }

  deletePipeline(id: string, options: MaintenanceOptions = {}): Promise<number> {
    // Its work is one synchronous pass: the signal is checked before it starts.
    if (options.signal?.aborted === true) return Promise.reject(new AbortedError('deletePipeline was aborted', options.signal.reason));
    if (this.rows.delete(id)) return Promise.resolve(1);
    let n = 0;
    for (const [runId, row] of this.rows) {
      if ((JSON.parse(row) as PipelineStatus).pipeline_id === id) {
        this.rows.delete(runId);
        n++;
      }
    }
    return Promise.resolve(n);
  }
}

trackingStorageConformance('InMemoryPipelineStorage', () => new InMemoryPipelineStorage());
trackingStorageConformance('custom storage with only the required methods', () => new JsonRowStorage());

const BASE = Date.parse('2024-05-01T10:00:00.000Z');

function endedRun(runId: string, minute: number): RunEvents {
  return scriptedRun({ pipelineId: 'p', runId, start: BASE + minute * 60_000, steps: [{ name: 'a', ms: 10 }] });
}

function runningRun(runId: string, minute: number): RunEvents {
  return scriptedRun({ pipelineId: 'p', runId, start: BASE + minute * 60_000, steps: [{ name: 'a', ms: 10 }], end: 'running', stopAt: 'a' });
}

describe('InMemoryPipelineStorage', () => {
  describe('constructor', () => {
    it('rejects a maxRuns that is not an integer >= 1, naming the option and value', () => {
      expect(() => new InMemoryPipelineStorage({ maxRuns: 0 })).toThrow('maxRuns must be an integer >= 1, received 0');
      expect(() => new InMemoryPipelineStorage({ maxRuns: 2.5 })).toThrow(/maxRuns.*2\.5/);
      expect(() => new InMemoryPipelineStorage({ maxRun: 3 } as never)).toThrow(/unknown option "maxRun"/);
      try {
        new InMemoryPipelineStorage({ maxRuns: -1 });
      } catch (e) {
        expect((e as { code: string }).code).toBe(ErrorCodes.INVALID_ARGUMENT);
      }
    });

    it('keeps 10000 runs by default', () => {
      expect(new InMemoryPipelineStorage().maxRuns).toBe(10_000);
    });
  });

  describe('bound', () => {
    it('evicts the run that ended first, never a running one while ended runs remain', async () => {
      const storage = new InMemoryPipelineStorage({ maxRuns: 3 });
      const r1 = runningRun('r1', 0);
      const r2 = endedRun('r2', 1);
      const r3 = endedRun('r3', 2);
      for (const e of [...r1.events, ...r2.events, ...r3.events]) storage.applyEvent(e);
      const r4 = endedRun('r4', 3);
      for (const e of r4.events) storage.applyEvent(e);
      expect(storage.size).toBe(3);
      expect(await storage.getStatus('r2')).toBeNull();
      expect((await storage.getStatus('r1'))?.status).toBe('RUNNING');
      const r5 = runningRun('r5', 4);
      await storage.saveStatus(reduce(r5.events)!);
      expect(await storage.getStatus('r3')).toBeNull();
      expect((await storage.listPipelines()).map((s) => s.run_id)).toEqual(['r5', 'r4', 'r1']);
    });

    it('evicts the oldest running run only when every kept run is running', async () => {
      const storage = new InMemoryPipelineStorage({ maxRuns: 2 });
      for (const id of ['r1', 'r2', 'r3']) for (const e of runningRun(id, 0).events) storage.applyEvent(e);
      expect((await storage.listPipelines()).map((s) => s.run_id).sort()).toEqual(['r2', 'r3']);
      expect(await storage.getLatest('p')).not.toBeNull();
    });

    it('forgets evicted runs in the pipeline index too', async () => {
      const storage = new InMemoryPipelineStorage({ maxRuns: 1 });
      for (const e of endedRun('r1', 0).events) storage.applyEvent(e);
      for (const e of endedRun('r2', 1).events) storage.applyEvent(e);
      expect(await storage.deletePipeline('p')).toBe(1);
      expect(storage.size).toBe(0);
    });
  });

  describe('#applyEvent', () => {
    it('updates the stored status in place and returns it synchronously', () => {
      const storage = new InMemoryPipelineStorage();
      const run = new RunEvents({ runId: 'r', steps: ['a'] });
      const first = storage.applyEvent(run.start());
      const second = storage.applyEvent(run.stepStart('a'));
      expect(first).not.toBeInstanceOf(Promise);
      expect(second).toBe(first);
      expect(second?.steps[0]?.status).toBe('RUNNING');
    });

    it('returns null for a duplicate and for an unknown run', () => {
      const storage = new InMemoryPipelineStorage();
      const run = new RunEvents({ runId: 'r', steps: ['a'] });
      const start = run.start();
      const step = run.stepStart('a');
      expect(storage.applyEvent(step)).toBeNull();
      expect(storage.size).toBe(0);
      storage.applyEvent(start);
      expect(storage.applyEvent(start)).toBeNull();
    });
  });

  describe('#clear', () => {
    it('removes every run', async () => {
      const storage = new InMemoryPipelineStorage();
      for (const e of endedRun('r1', 0).events) storage.applyEvent(e);
      storage.clear();
      expect(storage.size).toBe(0);
      expect(await storage.getLatest('p')).toBeNull();
    });
  });
});
