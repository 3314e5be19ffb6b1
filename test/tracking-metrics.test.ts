import { describe, expect, it } from 'vitest';
import type { PipelineStatus } from '../src/tracking/models.js';
import { computeMetrics, normalizeFailureReason } from '../src/tracking/metrics.js';
import { reduce, scriptedRun, type ScriptedRunOptions } from './helpers/events.js';

const NOW = new Date('2024-05-08T12:00:00.000Z');

function status(options: ScriptedRunOptions): PipelineStatus {
  return reduce(scriptedRun(options).events)!;
}

/** Hand-built runs; the expected numbers below are worked out from these durations and times. */
function dataset(): PipelineStatus[] {
  const etl = (runId: string, start: string, fetch: number, parse: number): PipelineStatus =>
    status({ pipelineId: 'etl', runId, start, steps: [{ name: 'fetch', ms: fetch }, { name: 'parse', ms: parse }] });
  const neverStarted = status({ pipelineId: 'etl', runId: 'r7', start: '2024-05-08T10:00:00.000Z', steps: [{ name: 'fetch', ms: 1 }] });
  neverStarted.started_at = null;
  return [
    etl('r1', '2024-05-07T09:00:00.000Z', 100, 300), // COMPLETED 400ms
    etl('r2', '2024-05-07T09:10:00.000Z', 200, 500), // COMPLETED 700ms
    status({
      pipelineId: 'etl',
      runId: 'r3',
      start: '2024-05-07T14:00:00.000Z',
      steps: [{ name: 'fetch', ms: 50, error: 'Error: HTTP 500\n    at get (http.js:1:1)' }, { name: 'parse', ms: 1 }],
    }), // FAILED 50ms
    status({ pipelineId: 'report', runId: 'r4', start: '2024-05-07T14:30:00.000Z', steps: [{ name: 'render', ms: 1000 }], end: 'cancel', stopAt: 'render' }), // CANCELLED 1000ms
    status({ pipelineId: 'report', runId: 'r5', start: '2024-05-08T11:59:00.000Z', steps: [{ name: 'render', ms: 10 }], end: 'running', stopAt: 'render' }), // RUNNING
    etl('r6', '2024-04-20T09:00:00.000Z', 9999, 9999), // outside the 7-day window
    neverStarted,
  ];
}

describe('computeMetrics', () => {
  it('counts the runs of the window by status, with the success rate over ended runs', () => {
    const m = computeMetrics(dataset(), { days: 7, now: NOW });
    expect(m).toMatchObject({
      period_days: 7,
      since: '2024-05-01T12:00:00.000Z',
      total_pipelines: 5,
      completed: 2,
      failed: 1,
      cancelled: 1,
      running: 1,
      success_rate: 0.5,
    });
  });

  it('computes mean, median and p95 of ended run durations (nearest rank)', () => {
    const m = computeMetrics(dataset(), { now: NOW });
    // Ended durations: 50, 400, 700, 1000.
    expect(m.avg_duration_ms).toBe(537.5);
    expect(m.p50_duration_ms).toBe(400);
    expect(m.p95_duration_ms).toBe(1000);
  });

  it('counts failure reasons by the first line of the error', () => {
    const m = computeMetrics(dataset(), { now: NOW });
    expect(m.failure_reasons).toEqual({ "Pipeline failed at step 'fetch': Error: HTTP 500": 1 });
  });

  it('averages step durations over completed and failed steps, and ranks the slowest', () => {
    const m = computeMetrics(dataset(), { now: NOW });
    expect(m.avg_step_duration_ms).toEqual({ fetch: 350 / 3, parse: 400 });
    expect(m.slowest_steps).toEqual([
      { step_name: 'parse', avg_duration_ms: 400, max_duration_ms: 500, count: 2 },
      { step_name: 'fetch', avg_duration_ms: 350 / 3, max_duration_ms: 200, count: 3 },
    ]);
  });

  it('keeps only the 10 slowest steps', () => {
    const steps = Array.from({ length: 12 }, (_, i) => ({ name: `s${i}`, ms: (i + 1) * 10 }));
    const m = computeMetrics([status({ runId: 'x', start: '2024-05-08T00:00:00.000Z', steps })], { now: NOW });
    expect(m.slowest_steps.map((s) => s.step_name)).toEqual(['s11', 's10', 's9', 's8', 's7', 's6', 's5', 's4', 's3', 's2']);
    expect(Object.keys(m.avg_step_duration_ms)).toHaveLength(12);
  });

  it('counts runs started per UTC hour', () => {
    const m = computeMetrics(dataset(), { now: NOW });
    const expected = new Array<number>(24).fill(0);
    expected[9] = 2;
    expected[11] = 1;
    expected[14] = 2;
    expect(m.busy_hours).toEqual(expected);
  });

  it('breaks the numbers down per pipeline', () => {
    const m = computeMetrics(dataset(), { now: NOW });
    expect(m.by_pipeline).toEqual({
      etl: { total: 3, completed: 2, failed: 1, avg_duration_ms: (400 + 700 + 50) / 3 },
      report: { total: 2, completed: 0, failed: 0, avg_duration_ms: 1000 },
    });
  });

  it('measures throughput over the span from the first start to now while runs are running', () => {
    const m = computeMetrics(dataset(), { now: NOW });
    // 4 ended runs; first start 2024-05-07T09:00, now 2024-05-08T12:00: 27 hours.
    expect(m.throughput_per_minute).toBeCloseTo(4 / (27 * 60), 12);
  });

  it('measures throughput to the last end when nothing runs, over at least one minute', () => {
    const all = dataset();
    const two = computeMetrics(all.slice(0, 2), { now: NOW });
    // r1 starts 09:00:00.000, r2 ends 09:10:00.700.
    expect(two.throughput_per_minute).toBeCloseTo(2 / ((10 * 60_000 + 700) / 60_000), 12);
    const one = computeMetrics(all.slice(0, 1), { now: NOW });
    expect(one.throughput_per_minute).toBe(1);
  });

  it('filters one pipeline and narrows the window', () => {
    expect(computeMetrics(dataset(), { now: NOW, pipelineId: 'report' })).toMatchObject({ total_pipelines: 2, cancelled: 1, running: 1, success_rate: 0 });
    expect(computeMetrics(dataset(), { now: NOW, days: 0.5 })).toMatchObject({ total_pipelines: 1, running: 1 });
    expect(computeMetrics(dataset(), { now: NOW, days: 30 }).total_pipelines).toBe(6);
  });

  it('reports empty data truthfully', () => {
    const m = computeMetrics([], { now: NOW });
    expect(m).toMatchObject({
      total_pipelines: 0,
      success_rate: 0,
      avg_duration_ms: null,
      p50_duration_ms: null,
      p95_duration_ms: null,
      throughput_per_minute: 0,
      failure_reasons: {},
      slowest_steps: [],
      by_pipeline: {},
    });
    expect(m.busy_hours).toEqual(new Array<number>(24).fill(0));
  });

  it('keeps a step or reason named __proto__ as plain data', () => {
    const s = status({ runId: 'x', start: '2024-05-08T00:00:00.000Z', steps: [{ name: '__proto__', ms: 10 }] });
    const m = computeMetrics([s], { now: NOW });
    expect(Object.keys(m.avg_step_duration_ms)).toEqual(['__proto__']);
    expect(JSON.parse(JSON.stringify(m.avg_step_duration_ms))).toEqual(JSON.parse('{"__proto__":10}'));
  });

  it('rejects bad options', () => {
    expect(() => computeMetrics([], { days: 0 })).toThrow('days must be a finite number > 0, received 0');
    expect(() => computeMetrics([], { now: new Date('nope') })).toThrow('computeMetrics(): now must be a valid Date');
    expect(() => computeMetrics([], { pipelineId: '' })).toThrow(/pipelineId must be a non-empty string/);
  });
});

describe('normalizeFailureReason', () => {
  it('keeps the first non-blank line, trimmed, at most 200 characters', () => {
    expect(normalizeFailureReason('  Error: x  \n  at y')).toBe('Error: x');
    expect(normalizeFailureReason('E'.repeat(300))).toBe('E'.repeat(200));
    expect(normalizeFailureReason(null)).toBe('unknown error');
    expect(normalizeFailureReason(' \n Error: late\nmore')).toBe('Error: late');
    expect(normalizeFailureReason(' \n ')).toBe('unknown error');
  });
});
