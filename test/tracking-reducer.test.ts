import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../src/core/errors.js';
import type { FlowcastEvent } from '../src/events/types.js';
import type { PipelineStatus } from '../src/tracking/models.js';
import { applyEvent, isDuplicateEvent, joinedStatus } from '../src/tracking/reducer.js';
import { RunEvents } from './helpers/events.js';

function fold(events: FlowcastEvent[]): PipelineStatus {
  let status: PipelineStatus | null = null;
  for (const e of events) status = applyEvent(status, e) ?? status;
  if (status === null) throw new Error('no status');
  return status;
}

describe('applyEvent', () => {
  describe('PipelineStartEvent', () => {
    it('creates a RUNNING status with every declared step PENDING', () => {
      const run = new RunEvents({ pipelineId: 'etl', runId: 'r1', steps: ['fetch', 'parse'], input: { url: 'x' } });
      const start = run.start();
      const s = applyEvent(null, start);
      expect(s).toEqual({
        pipeline_id: 'etl',
        run_id: 'r1',
        status: 'RUNNING',
        pipeline_type: 'sequential',
        started_at: start.timestamp,
        completed_at: null,
        duration_ms: null,
        steps: [
          expect.objectContaining({ step_name: 'fetch', step_index: 0, kind: 'call', task_names: ['task_fetch'], depends_on: [], status: 'PENDING', attempts: 0 }),
          expect.objectContaining({ step_name: 'parse', step_index: 1, task_names: ['task_parse'], depends_on: ['fetch'], status: 'PENDING' }),
        ],
        result: null,
        error: null,
        input: { url: 'x' },
        last_seq: 1,
        progress: 0,
        current_step: null,
        updated_at: start.timestamp,
      });
      expect(s).not.toHaveProperty('dag');
    });

    it('keeps the dag of a dataflow run', () => {
      const run = new RunEvents({ runId: 'r', pipelineType: 'dataflow', steps: ['a', 'b'], dag: { nodes: ['a', 'b'], edges: [['a', 'b']] } });
      const s = applyEvent(null, run.start());
      expect(s?.pipeline_type).toBe('dataflow');
      expect(s?.dag).toEqual({ nodes: ['a', 'b'], edges: [['a', 'b']] });
    });

    it('is JSON: it survives a JSON round trip unchanged', () => {
      const run = new RunEvents({ runId: 'r', pipelineType: 'dataflow', dag: { nodes: ['a'], edges: [] }, steps: ['a'] });
      run.start();
      run.stepStart('a');
      run.advance(5);
      run.stepComplete('a', { deep: [1, { x: null }] });
      run.complete({ deep: [1, { x: null }] });
      const s = fold(run.events);
      expect(JSON.parse(JSON.stringify(s))).toEqual(s);
    });
  });

  it('returns null for a non-start event of an unknown run', () => {
    const run = new RunEvents({ runId: 'r' });
    run.start();
    expect(applyEvent(null, run.stepStart('a'))).toBeNull();
  });

  it('throws when the event belongs to another run', () => {
    const a = new RunEvents({ runId: 'a' });
    const b = new RunEvents({ runId: 'b' });
    const s = applyEvent(null, a.start())!;
    b.start();
    expect(() => applyEvent(s, b.stepStart('a'))).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }));
  });

  it('mutates and returns the status it is given', () => {
    const run = new RunEvents({ runId: 'r' });
    const s = applyEvent(null, run.start())!;
    expect(applyEvent(s, run.stepStart('a'))).toBe(s);
    expect(s.steps[0]?.status).toBe('RUNNING');
  });

  it('ignores an event whose seq is not above last_seq and moves last_seq otherwise', () => {
    const run = new RunEvents({ runId: 'r' });
    const s = applyEvent(null, run.start())!;
    const started = run.stepStart('a');
    run.advance(10);
    const done = run.stepComplete('a', 1);
    applyEvent(s, started);
    applyEvent(s, done);
    expect(s.last_seq).toBe(3);
    const before = structuredClone(s);
    expect(isDuplicateEvent(s, started)).toBe(true);
    expect(applyEvent(s, started)).toBe(s);
    expect(applyEvent(s, { ...done, event_id: 'replayed' })).toBe(s);
    expect(s).toEqual(before);
    expect(isDuplicateEvent(null, started)).toBe(false);
  });

  describe('steps', () => {
    it('tracks a step from start to completion, and the run progress', () => {
      const run = new RunEvents({ runId: 'r', steps: ['a', 'b', 'c'] });
      run.start();
      const start = run.stepStart('a');
      let s = fold(run.events);
      expect(s.steps[0]).toMatchObject({ status: 'RUNNING', attempts: 1, started_at: start.timestamp, task_id: start.task_id });
      expect(s.current_step).toBe('a');
      run.advance(250);
      const done = run.stepComplete('a', { ok: true });
      s = fold(run.events);
      expect(s.steps[0]).toMatchObject({ status: 'COMPLETED', result: { ok: true }, duration_ms: 250, completed_at: done.timestamp, progress: 1 });
      expect(s.progress).toBeCloseTo(1 / 3, 10);
      expect(s.current_step).toBeNull();
      expect(s.updated_at).toBe(done.timestamp);
    });

    it('goes RETRYING with the failed attempt error, then counts the next attempt', () => {
      const run = new RunEvents({ runId: 'r', steps: ['a'] });
      run.start();
      run.stepStart('a');
      run.advance(10);
      run.stepRetry('a', 'Error: flaky');
      let s = fold(run.events);
      expect(s.steps[0]).toMatchObject({ status: 'RETRYING', error: 'Error: flaky', attempts: 1 });
      expect(s.current_step).toBe('a');
      run.advance(100);
      const second = run.stepStart('a', 2);
      run.advance(20);
      run.stepComplete('a', 7);
      s = fold(run.events);
      expect(s.steps[0]).toMatchObject({ status: 'COMPLETED', attempts: 2, error: null, started_at: second.timestamp, duration_ms: 20 });
    });

    it('counts the retried items of a map step as attempts, and progress brings it back to RUNNING', () => {
      const run = new RunEvents({ runId: 'r', steps: ['m'] });
      run.start();
      run.stepStart('m');
      const retry = run.stepRetry('m', 'Error: item failed');
      const s = fold([...run.events.slice(0, -1), { ...retry, item: 2 }]);
      expect(s.steps[0]).toMatchObject({ status: 'RETRYING', attempts: 2 });
      const progress = run.stepProgress('m', 0.5, '2/4 items');
      applyEvent(s, { ...progress, seq: s.last_seq + 1 });
      expect(s.steps[0]).toMatchObject({ status: 'RUNNING', progress: 0.5, message: '2/4 items' });
    });

    it('records progress, keeps the last message, and counts log lines', () => {
      const run = new RunEvents({ runId: 'r', steps: ['a'] });
      run.start();
      run.stepStart('a');
      run.stepProgress('a', 0.25, 'reading');
      run.stepLog('a', ['one', 'two']);
      run.stepLog('a', ['three']);
      run.stepProgress('a', 0.75);
      const s = fold(run.events);
      expect(s.steps[0]).toMatchObject({ status: 'RUNNING', progress: 0.75, message: 'reading', log_lines: 3 });
    });

    it('marks a skipped step with its reason and counts it as done', () => {
      const run = new RunEvents({ runId: 'r', steps: ['a', 'b'] });
      run.start();
      run.stepSkip('b', 'dependency "a" failed');
      const s = fold(run.events);
      expect(s.steps[1]).toMatchObject({ status: 'SKIPPED', skip_reason: 'dependency "a" failed', started_at: null });
      expect(s.progress).toBe(0.5);
    });

    it('marks a failed step with its error and duration, which does not count as done', () => {
      const run = new RunEvents({ runId: 'r', steps: ['a', 'b'] });
      run.start();
      run.stepStart('a');
      run.advance(40);
      run.stepError('a', 'TypeError: x is undefined');
      const s = fold(run.events);
      expect(s.steps[0]).toMatchObject({ status: 'FAILED', error: 'TypeError: x is undefined', duration_ms: 40 });
      expect(s.progress).toBe(0);
    });

    it('adds a step the start event did not declare', () => {
      const run = new RunEvents({ runId: 'r', steps: ['a', 'b'] });
      run.start();
      run.stepStart('a');
      run.stepComplete('a', 1);
      const s = fold(run.events);
      const odd: FlowcastEvent = { ...run.stepSkip('b', 'x'), step_name: 'extra', step_index: 7, seq: 99 };
      applyEvent(s, odd);
      expect(s.steps.map((x) => x.step_name)).toEqual(['a', 'b', 'extra']);
      expect(s.progress).toBeCloseTo(2 / 3, 10);
    });

    it('finds steps by name when step_index does not match', () => {
      const run = new RunEvents({ runId: 'r', steps: ['a', 'b'] });
      run.start();
      const e = run.stepStart('b');
      const s = fold(run.events.slice(0, 1));
      applyEvent(s, { ...e, step_index: 0 });
      expect(s.steps.map((x) => x.status)).toEqual(['PENDING', 'RUNNING']);
    });

    it('moves current_step to the latest started step still running when parallel steps end', () => {
      const run = new RunEvents({ runId: 'r', pipelineType: 'dataflow', steps: ['x', 'y', 'z'] });
      run.start();
      run.stepStart('x');
      run.advance(1);
      run.stepStart('y');
      run.advance(1);
      run.stepStart('z');
      let s = fold(run.events);
      expect(s.current_step).toBe('z');
      run.stepComplete('z', 1);
      s = fold(run.events);
      expect(s.current_step).toBe('y');
      run.stepComplete('x', 1);
      s = fold(run.events);
      expect(s.current_step).toBe('y');
      run.stepComplete('y', 1);
      s = fold(run.events);
      expect(s.current_step).toBeNull();
      expect(s.progress).toBe(1);
    });
  });

  describe('terminal events', () => {
    it('PipelineCompleteEvent sets COMPLETED, the result, completed_at and duration', () => {
      const run = new RunEvents({ runId: 'r', steps: ['a'] });
      run.start();
      run.stepStart('a');
      run.advance(300);
      run.stepComplete('a', [1, 2]);
      const end = run.complete([1, 2]);
      const s = fold(run.events);
      expect(s).toMatchObject({ status: 'COMPLETED', result: [1, 2], error: null, completed_at: end.timestamp, duration_ms: 300, progress: 1, current_step: null });
    });

    it('PipelineErrorEvent sets FAILED with the error and cancels steps still running or retrying', () => {
      const run = new RunEvents({ runId: 'r', pipelineType: 'dataflow', steps: ['a', 'b', 'c'] });
      run.start();
      run.stepStart('a');
      run.stepStart('b');
      run.stepStart('c');
      run.advance(50);
      run.stepRetry('b', 'Error: b');
      run.stepError('c', 'Error: c');
      run.advance(25);
      const end = run.fail("Pipeline failed at step 'c': Error: c", 'c');
      const s = fold(run.events);
      expect(s).toMatchObject({ status: 'FAILED', error: "Pipeline failed at step 'c': Error: c", completed_at: end.timestamp, duration_ms: 75 });
      expect(s.steps.map((x) => x.status)).toEqual(['CANCELLED', 'CANCELLED', 'FAILED']);
      expect(s.steps[0]).toMatchObject({ completed_at: end.timestamp, duration_ms: 75 });
      expect(s.steps[2]?.duration_ms).toBe(50);
    });

    it('PipelineCancelledEvent sets CANCELLED with the reason as error', () => {
      const run = new RunEvents({ runId: 'r', steps: ['a', 'b'] });
      run.start();
      run.stepStart('a');
      run.advance(10);
      run.stepSkip('b', 'run cancelled');
      run.cancel('user pressed stop');
      const s = fold(run.events);
      expect(s).toMatchObject({ status: 'CANCELLED', error: 'user pressed stop', duration_ms: 10 });
      expect(s.steps.map((x) => x.status)).toEqual(['CANCELLED', 'SKIPPED']);
      expect(s.progress).toBe(0.5);
    });
  });

  it('only moves last_seq and updated_at for an event type it does not know', () => {
    const run = new RunEvents({ runId: 'r', steps: ['a'] });
    const s = applyEvent(null, run.start())!;
    const before = structuredClone(s);
    const future = { ...run.stepLog('a', ['x']), type: 'StepHeartbeatEvent', timestamp: '2030-01-01T00:00:00.000Z' } as unknown as FlowcastEvent;
    applyEvent(s, future);
    expect(s).toEqual({ ...before, last_seq: 2, updated_at: '2030-01-01T00:00:00.000Z' });
  });
});

describe('joinedStatus', () => {
  it('starts a run seen from its middle: steps are added by their events, a later end tells the type', () => {
    const run = new RunEvents({ runId: 'r', pipelineType: 'dataflow', steps: ['a', 'b'] });
    run.start();
    run.stepStart('b');
    run.advance(5);
    run.stepStart('a');
    run.advance(5);
    run.stepComplete('a');
    const missed = run.events.slice(1);
    let s = joinedStatus(missed[0] as FlowcastEvent);
    expect(s).toMatchObject({ run_id: 'r', status: 'RUNNING', started_at: null, steps: [], last_seq: 0 });
    for (const e of missed) s = applyEvent(s, e) ?? s;
    expect(s.steps.map((x) => [x.step_name, x.step_index, x.status])).toEqual([
      ['b', 1, 'RUNNING'],
      ['a', 0, 'COMPLETED'],
    ]);
    expect(s).toMatchObject({ last_seq: 4, progress: 0.5, current_step: 'b' });
    const end = run.complete();
    applyEvent(s, end);
    expect(s).toMatchObject({ status: 'COMPLETED', pipeline_type: 'dataflow', completed_at: end.timestamp });
  });
});
