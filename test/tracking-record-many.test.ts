/**
 * PipelineTrackingManager#recordMany: a group of events of one run recorded in one
 * storage write when the storage has applyEvents, event by event otherwise; listeners
 * called once per event, in order, as record() calls them.
 */
import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../src/core/errors.js';
import type { FlowcastEvent } from '../src/events/types.js';
import { PipelineTrackingManager, type TrackingListener } from '../src/tracking/manager.js';
import { InMemoryPipelineStorage } from '../src/tracking/memory-storage.js';
import type { PipelineStatus } from '../src/tracking/models.js';
import type { TrackingStorage } from '../src/tracking/storage.js';
import { RunEvents, reduce, scriptedRun } from './helpers/events.js';

function run(runId: string): RunEvents {
  return scriptedRun({ pipelineId: 'p', runId, steps: [{ name: 'a', ms: 100, result: 'A' }, { name: 'b', ms: 50, result: 'B' }] });
}

/** A listener writing one line per call, and the statuses onPipelineComplete received. */
function recorder(): { lines: string[]; ends: PipelineStatus[]; listener: TrackingListener } {
  const lines: string[] = [];
  const ends: PipelineStatus[] = [];
  return {
    lines,
    ends,
    listener: {
      onPipelineStart: (_p, e) => void lines.push(`start ${e.seq}`),
      onStepStart: (_p, step, e) => void lines.push(`step ${step} ${e.seq}`),
      onStepComplete: (_p, step, result, e) => void lines.push(`done ${step} ${JSON.stringify(result)} ${e.seq}`),
      onPipelineError: (_p, error, e) => void lines.push(`error ${error} ${e.seq}`),
      onPipelineComplete: (_p, status, e) => {
        lines.push(`end ${status.status} ${e.seq}`);
        ends.push(status);
      },
    },
  };
}

/** What record() would make the listener of {@link recorder} write for `events`. */
function expectedLines(events: readonly FlowcastEvent[]): string[] {
  const out: string[] = [];
  for (const e of events) {
    if (e.type === 'PipelineStartEvent') out.push(`start ${e.seq}`);
    else if (e.type === 'StepStartEvent') out.push(`step ${e.step_name} ${e.seq}`);
    else if (e.type === 'StepCompleteEvent') out.push(`done ${e.step_name} ${JSON.stringify(e.result)} ${e.seq}`);
    else if (e.type === 'PipelineErrorEvent') out.push(`error ${e.error} ${e.seq}`, `end FAILED ${e.seq}`);
    else if (e.type === 'PipelineCompleteEvent' || e.type === 'PipelineCancelledEvent') out.push(`end ${e.status} ${e.seq}`);
  }
  return out;
}

/** A storage over a memory storage whose applyEvent / applyEvents (as chosen) are asynchronous, logging each call. */
function asyncStorage(methods: { applyEvent?: boolean; applyEvents?: boolean }): TrackingStorage & { calls: string[]; maxInFlight: number } {
  const inner = new InMemoryPipelineStorage();
  let inFlight = 0;
  const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
  const s: TrackingStorage & { calls: string[]; maxInFlight: number } = {
    calls: [],
    maxInFlight: 0,
    saveStatus: (x) => inner.saveStatus(x),
    getStatus: (id) => inner.getStatus(id),
    listPipelines: (q) => inner.listPipelines(q),
    deletePipeline: (id) => inner.deletePipeline(id),
  };
  const enter = (): void => {
    inFlight++;
    s.maxInFlight = Math.max(s.maxInFlight, inFlight);
  };
  if (methods.applyEvent === true) {
    s.applyEvent = async (e) => {
      enter();
      s.calls.push(`one ${e.seq}`);
      await tick();
      inFlight--;
      return inner.applyEvent(e);
    };
  }
  if (methods.applyEvents === true) {
    s.applyEvents = async (events) => {
      enter();
      s.calls.push(`many ${events.map((e) => e.seq).join(',')}`);
      await tick();
      inFlight--;
      // A copy, as a storage that serialises (Redis) returns.
      return structuredClone(inner.applyEvents(events));
    };
  }
  return s;
}

/** The events cut in groups of `size`. */
function groups(events: readonly FlowcastEvent[], size: number): FlowcastEvent[][] {
  const out: FlowcastEvent[][] = [];
  for (let i = 0; i < events.length; i += size) out.push(events.slice(i, i + size));
  return out;
}

describe('PipelineTrackingManager#recordMany', () => {
  it('returns synchronously (no promise) with the in-memory storage, and stores what the reducer builds', () => {
    const t = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
    const { lines, listener } = recorder();
    t.addListener(listener);
    const r = run('r1');
    for (const g of groups(r.events, 3)) expect(t.recordMany(g)).toBeUndefined();
    expect(lines).toEqual(expectedLines(r.events));
    expect(lines).toContain('end COMPLETED 6');
  });

  it('calls listeners once per event, in order, exactly as record() does', async () => {
    const events = run('same').events;
    const byOne = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
    const byGroup = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
    const one = recorder();
    const many = recorder();
    byOne.addListener(one.listener);
    byGroup.addListener(many.listener);
    for (const e of events) await byOne.record(e);
    for (const g of groups(events, 4)) await byGroup.recordMany(g);
    expect(many.lines).toEqual(one.lines);
    expect(many.ends).toEqual(one.ends);
    expect(await byGroup.getStatus('same')).toEqual(await byOne.getStatus('same'));
  });

  it('makes one storage call per group with an asynchronous applyEvents, and awaits it', async () => {
    const storage = asyncStorage({ applyEvent: true, applyEvents: true });
    const t = new PipelineTrackingManager().withStorage(storage);
    const { lines, ends, listener } = recorder();
    t.addListener(listener);
    const r = scriptedRun({ pipelineId: 'p', runId: 'f1', steps: [{ name: 'a', ms: 10, result: 1 }, { name: 'b', ms: 5, error: 'Error: boom' }] });
    for (const g of groups(r.events, 3)) {
      const p = t.recordMany(g);
      expect(p).toBeInstanceOf(Promise);
      await p;
    }
    expect(storage.calls).toEqual(groups(r.events, 3).map((g) => `many ${g.map((e) => e.seq).join(',')}`));
    expect(lines).toEqual(expectedLines(r.events));
    expect(ends).toEqual([reduce(r.events)]);
  });

  it('cuts a group after a run end that is not its last event, so the end listener gets the status right after the end', async () => {
    const storage = asyncStorage({ applyEvents: true });
    const t = new PipelineTrackingManager().withStorage(storage);
    const { ends, listener } = recorder();
    t.addListener(listener);
    const r = new RunEvents({ runId: 'late', steps: ['a'] });
    r.start();
    r.stepStart('a');
    r.stepComplete('a', 1);
    r.complete(1);
    r.stepLog('a', ['a line written after the end']);
    await t.recordMany(r.events.slice(0, 2));
    await t.recordMany(r.events.slice(2));
    expect(storage.calls).toEqual(['many 1,2', 'many 3,4', 'many 5']);
    expect(ends).toEqual([reduce(r.events.slice(0, 4))]);
    expect(ends[0]?.last_seq).toBe(4);
    expect(await t.getStatus('late')).toEqual(reduce(r.events));
  });

  it('records event by event, each awaited before the next, with a storage without applyEvents', async () => {
    const storage = asyncStorage({ applyEvent: true });
    const t = new PipelineTrackingManager().withStorage(storage);
    const { lines, listener } = recorder();
    t.addListener(listener);
    const r = run('r2');
    for (const g of groups(r.events, 4)) await t.recordMany(g);
    expect(storage.calls).toEqual(r.events.map((e) => `one ${e.seq}`));
    expect(storage.maxInFlight).toBe(1);
    expect(lines).toEqual(expectedLines(r.events));
    expect(await t.getStatus('r2')).toEqual(reduce(r.events));
  });

  it('records through get → apply → save with a storage that has only the required methods', async () => {
    const inner = new InMemoryPipelineStorage();
    let saves = 0;
    const minimal: TrackingStorage = {
      saveStatus: (x) => {
        saves++;
        return inner.saveStatus(x);
      },
      getStatus: (id) => inner.getStatus(id),
      listPipelines: (q) => inner.listPipelines(q),
      deletePipeline: (id) => inner.deletePipeline(id),
    };
    const t = new PipelineTrackingManager().withStorage(minimal);
    const { lines, listener } = recorder();
    t.addListener(listener);
    const r = run('r3');
    for (const g of groups(r.events, 5)) await t.recordMany(g);
    expect(saves).toBe(r.events.length);
    expect(lines).toEqual(expectedLines(r.events));
    // Recorded again: duplicates, nothing saved, nobody called.
    await t.recordMany(r.events.slice(1, 4));
    expect(saves).toBe(r.events.length);
    expect(lines).toEqual(expectedLines(r.events));
  });

  it('notifies no event of a group already recorded, and only the new ones of a group that starts with new events', () => {
    const t = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
    const { lines, listener } = recorder();
    const r = run('r4');
    expect(t.recordMany(r.events.slice(0, 3))).toBeUndefined();
    t.addListener(listener);
    expect(t.recordMany(r.events.slice(0, 3))).toBeUndefined();
    expect(lines).toEqual([]);
    expect(t.recordMany(r.events.slice(3))).toBeUndefined();
    expect(lines).toEqual(expectedLines(r.events.slice(3)));
  });

  it('rejects what is not a group of events of one run with increasing seqs, before touching the storage', () => {
    const storage = asyncStorage({ applyEvents: true });
    const t = new PipelineTrackingManager().withStorage(storage);
    const a = run('a').events;
    const b = run('b').events;
    const cases: [unknown, RegExp][] = [
      [undefined, /recordMany\(events\): events must be an array of events, received undefined/],
      [a[0], /events must be an array/],
      [[], /recordMany\(events\): events must not be empty/],
      [[a[0], b[1]], /events must all be of one run: events\[0\] is of run "a", events\[1\] of run "b"/],
      [[a[2], a[1]], /seqs must increase: events\[1\]\.seq is 2 after 3/],
      [[a[0], 'x'], /events\[1\] must be a FlowcastEvent, received "x"/],
      [[{ ...a[0]!, run_id: '' }], /events\[0\]\.run_id must be a non-empty string/],
    ];
    for (const [value, message] of cases) {
      expect(() => t.recordMany(value as FlowcastEvent[])).toThrow(message);
      expect(() => t.recordMany(value as FlowcastEvent[])).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }) as Error);
    }
    expect(storage.calls).toEqual([]);
  });

  it('throws NO_STORAGE without a storage, and CLOSED once closed', async () => {
    const events = run('r5').events.slice(0, 2);
    expect(() => new PipelineTrackingManager().recordMany(events)).toThrow(expect.objectContaining({ code: ErrorCodes.NO_STORAGE }) as Error);
    const t = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
    await t.close();
    expect(() => t.recordMany(events)).toThrow(expect.objectContaining({ code: ErrorCodes.CLOSED }) as Error);
  });
});
