import { describe, expect, it } from 'vitest';
import { EVENT_SCHEMA_VERSION, type EventDraft, type FlowcastEvent, type StepDescriptor } from '../src/events/types.js';
import { BAR_WIDTH, RunBoard, formatDuration, formatRunLine, render } from '../src/cli/terminal-view.js';

const T0 = Date.parse('2026-03-01T12:00:00.000Z');
// eslint-disable-next-line no-control-regex -- looking for escape codes is the point
const ANSI = /\u001b\[/;

type Payload<T extends FlowcastEvent['type']> = Omit<Extract<EventDraft, { type: T }>, 'type' | 'pipeline_id' | 'run_id' | 'timestamp'>;

/** Builds the events of one run: gapless seq, timestamps `at` ms after T0. */
function runOf(runId: string, pipelineId: string) {
  let seq = 0;
  const make = <T extends FlowcastEvent['type']>(type: T, at: number, payload: Payload<T>): FlowcastEvent =>
    ({
      ...payload,
      type,
      v: EVENT_SCHEMA_VERSION,
      event_id: `${runId}-${seq + 1}`,
      pipeline_id: pipelineId,
      run_id: runId,
      seq: ++seq,
      timestamp: new Date(T0 + at).toISOString(),
    }) as unknown as FlowcastEvent;
  const step = (name: string, index: number) => ({ step_name: name, step_index: index, task_id: `${runId}-${name}` });
  return {
    start: (at: number, steps: string[], kinds: Partial<Record<string, StepDescriptor['kind']>> = {}) =>
      make('PipelineStartEvent', at, {
        pipeline_type: 'sequential',
        input: null,
        steps: steps.map((name, i) => ({ step_name: name, step_index: i, kind: kinds[name] ?? 'call', tasks: [name], depends_on: i === 0 ? [] : [steps[i - 1] as string] })),
      }),
    stepStart: (at: number, name: string, index: number, attempt = 1, items?: number) =>
      make('StepStartEvent', at, { ...step(name, index), attempt, task_name: name, ...(items === undefined ? {} : { items }) }),
    progress: (at: number, name: string, index: number, progress: number, message?: string) =>
      make('StepProgressEvent', at, { ...step(name, index), progress, attempt: 1, ...(message === undefined ? {} : { message }) }),
    log: (at: number, name: string, index: number, ...lines: string[]) => make('StepLogEvent', at, { ...step(name, index), lines, attempt: 1 }),
    retry: (at: number, name: string, index: number, attempt: number, error: string, delay_ms = 300) =>
      make('StepRetryEvent', at, { ...step(name, index), attempt, delay_ms, error }),
    complete: (at: number, name: string, index: number, duration_ms: number, attempt = 1) =>
      make('StepCompleteEvent', at, { ...step(name, index), result: null, duration_ms, attempt }),
    error: (at: number, name: string, index: number, error: string, duration_ms: number) =>
      make('StepErrorEvent', at, { ...step(name, index), error, duration_ms, attempt: 1 }),
    skip: (at: number, name: string, index: number, reason: string) => make('StepSkipEvent', at, { step_name: name, step_index: index, reason }),
    done: (at: number, duration_ms: number) =>
      make('PipelineCompleteEvent', at, { pipeline_type: 'sequential', status: 'COMPLETED', duration_ms, result: null }),
    failed: (at: number, duration_ms: number, error: string, step_name?: string) =>
      make('PipelineErrorEvent', at, { pipeline_type: 'sequential', status: 'FAILED', error, duration_ms, ...(step_name === undefined ? {} : { step_name }) }),
    cancelled: (at: number, duration_ms: number, reason: string) =>
      make('PipelineCancelledEvent', at, { pipeline_type: 'sequential', status: 'CANCELLED', reason, duration_ms }),
    itemRetry: (at: number, name: string, index: number, attempt: number, item: number, error: string) =>
      make('StepRetryEvent', at, { ...step(name, index), attempt, delay_ms: 100, error, item }),
    resume: (at: number, kept: string[], pending: string[]) =>
      make('PipelineResumeEvent', at, { pipeline_type: 'sequential', attempt: 2, previous_status: 'FAILED', kept_steps: kept, pending_steps: pending }),
  };
}

function feed(board: RunBoard, events: FlowcastEvent[]): RunBoard {
  for (const e of events) board.apply(e);
  return board;
}

function plain(board: RunBoard, options: { width?: number; now?: number; height?: number } = {}): string {
  return render(board, { width: options.width ?? 120, color: false, now: options.now ?? T0 + 10_000, ...(options.height === undefined ? {} : { height: options.height }) });
}

describe('RunBoard', () => {
  describe('#apply', () => {
    it('follows a run from start to completion, step by step', () => {
      const r = runOf('aaaaaaaa-1111', 'demo_workflow');
      const board = feed(new RunBoard(), [r.start(0, ['fetch', 'save']), r.stepStart(1, 'fetch', 0)]);
      let run = board.get('aaaaaaaa-1111');
      expect(run?.status).toBe('RUNNING');
      expect(run?.steps.map((s) => [s.name, s.status])).toEqual([
        ['fetch', 'RUNNING'],
        ['save', 'PENDING'],
      ]);

      feed(board, [r.progress(50, 'fetch', 0, 0.25, 'page 1/4'), r.complete(200, 'fetch', 0, 199), r.stepStart(201, 'save', 1)]);
      run = board.get('aaaaaaaa-1111');
      expect(run?.steps[0]).toMatchObject({ status: 'COMPLETED', progress: 1, durationMs: 199 });
      expect(run?.steps[1]).toMatchObject({ status: 'RUNNING', attempt: 1 });

      feed(board, [r.complete(400, 'save', 1, 199), r.done(401, 401)]);
      run = board.get('aaaaaaaa-1111');
      expect(run).toMatchObject({ status: 'COMPLETED', durationMs: 401, endedAt: T0 + 401 });
      expect(board.totals).toMatchObject({ running: 0, completed: 1, failed: 0, cancelled: 0, events: 7 });
    });

    it('takes progress from ctx.progress() for a call step', () => {
      const r = runOf('run-progress', 'log_progress');
      const board = feed(new RunBoard(), [r.start(0, ['crunch']), r.stepStart(1, 'crunch', 0), r.progress(100, 'crunch', 0, 0.3, 'batch 3/10')]);
      expect(board.get('run-progress')?.steps[0]).toMatchObject({ progress: 0.3, message: 'batch 3/10' });
    });

    it('fills a map step by finished items and ignores progress reported by one item', () => {
      const r = runOf('run-map', 'demo_workflow');
      const board = feed(new RunBoard(), [
        r.start(0, ['transform'], { transform: 'map' }),
        r.stepStart(1, 'transform', 0, 1, 4),
        r.progress(10, 'transform', 0, 0.25, '1/4 items'),
        r.progress(20, 'transform', 0, 0.5, '2/4 items'),
        r.progress(30, 'transform', 0, 0.9, 'item says 90%'),
      ]);
      const step = board.get('run-map')?.steps[0];
      expect(step).toMatchObject({ kind: 'map', items: 4, progress: 0.5, message: '2/4 items' });
      const text = plain(board, { now: T0 + 100 });
      const half = `${'█'.repeat(BAR_WIDTH / 2)}${'░'.repeat(BAR_WIDTH / 2)}`;
      expect(text).toMatch(new RegExp(`▸ transform +${half} +50%`));
      expect(text).toContain('2/4 items');
    });

    it('shows a retry, then the attempt that succeeded', () => {
      const r = runOf('run-retry', 'flaky_retry');
      const board = feed(new RunBoard(), [
        r.start(0, ['charge']),
        r.stepStart(1, 'charge', 0),
        r.retry(100, 'charge', 0, 2, 'Error: payment gateway timed out', 300),
      ]);
      expect(board.get('run-retry')?.steps[0]).toMatchObject({ status: 'RETRYING', attempt: 2, error: 'Error: payment gateway timed out', retryAt: T0 + 400 });
      expect(plain(board, { now: T0 + 200 })).toMatch(/↻ charge +░{20} +0% +attempt 2 in 200ms after Error: payment gateway timed out$/m);

      feed(board, [r.stepStart(400, 'charge', 0, 2), r.complete(600, 'charge', 0, 200, 2), r.done(601, 601)]);
      const run = board.get('run-retry');
      expect(run?.steps[0]).toMatchObject({ status: 'COMPLETED', attempt: 2, error: null });
      expect(run?.retries).toBe(1);
      const text = plain(board);
      expect(text).toMatch(/✓ charge +█{20} 100% +200ms +attempt 2/);
      expect(text).toContain('1/1 steps, 1 retry');
    });

    it('marks the failed step, the skipped ones with their reason, and stops parallel ones', () => {
      const r = runOf('run-fail', 'etl_dag');
      const board = feed(new RunBoard(), [
        r.start(0, ['extract', 'audit', 'report']),
        r.stepStart(1, 'extract', 0),
        r.stepStart(1, 'audit', 1),
        r.error(300, 'extract', 0, 'Error: connection refused', 299),
        r.skip(301, 'report', 2, 'pipeline failed at step "extract"'),
        r.failed(302, 302, "Pipeline failed at step 'extract': Error: connection refused", 'extract'),
      ]);
      const run = board.get('run-fail');
      expect(run).toMatchObject({ status: 'FAILED', failedStep: 'extract' });
      expect(run?.steps.map((s) => s.status)).toEqual(['FAILED', 'STOPPED', 'SKIPPED']);
      expect(run?.steps[2]?.skipReason).toBe('pipeline failed at step "extract"');
      const text = plain(board);
      expect(text).toContain('[FAILED]');
      expect(text).toContain('failed at extract: Error: connection refused');
      expect(text).toMatch(/✗ extract .*failed: Error: connection refused/);
      expect(text).toMatch(/■ audit .*stopped/);
      expect(text).toMatch(/⊘ report .*skipped: pipeline failed at step "extract"/);
      expect(board.totals).toMatchObject({ failed: 1, running: 0 });
    });

    it('ends a cancelled run with its reason, its running step stopped', () => {
      const r = runOf('run-cancel', 'log_progress');
      const board = feed(new RunBoard(), [r.start(0, ['crunch', 'publish']), r.stepStart(1, 'crunch', 0), r.cancelled(500, 500, 'demo stopped by SIGINT')]);
      expect(board.get('run-cancel')).toMatchObject({ status: 'CANCELLED', error: 'demo stopped by SIGINT' });
      expect(board.get('run-cancel')?.steps[0]?.status).toBe('STOPPED');
      expect(plain(board)).toContain('[CANCELLED] log_progress  run-canc   500ms  cancelled: demo stopped by SIGINT');
      expect(board.totals.cancelled).toBe(1);
    });

    it('keeps the last log lines of a run', () => {
      const r = runOf('run-logs', 'log_progress');
      const board = feed(new RunBoard(), [
        r.start(0, ['crunch']),
        r.stepStart(1, 'crunch', 0),
        r.log(10, 'crunch', 0, 'batch 1/3'),
        r.log(20, 'crunch', 0, 'batch 2/3', 'batch 3/3'),
      ]);
      expect(board.get('run-logs')?.logs).toEqual([
        { step: 'crunch', line: 'batch 2/3' },
        { step: 'crunch', line: 'batch 3/3' },
      ]);
      const text = plain(board);
      expect(text).not.toContain('batch 1/3');
      expect(text).toContain('crunch › batch 3/3');
    });

    it('ignores an event it has already applied', () => {
      const r = runOf('run-dup', 'demo_workflow');
      const start = r.start(0, ['fetch']);
      const step = r.stepStart(1, 'fetch', 0);
      const board = feed(new RunBoard(), [start, step, step, start]);
      expect(board.apply(step)).toBeNull();
      expect(board.totals.events).toBe(2);
    });

    it('keeps a map step running, at its own attempt, while one of its items is retried', () => {
      const r = runOf('run-item', 'demo_workflow');
      const board = feed(new RunBoard(), [
        r.start(0, ['transform'], { transform: 'map' }),
        r.stepStart(1, 'transform', 0, 1, 4),
        r.progress(10, 'transform', 0, 0.25, '1/4 items'),
        r.itemRetry(20, 'transform', 0, 2, 3, 'Error: item 3 failed'),
      ]);
      expect(board.get('run-item')?.steps[0]).toMatchObject({ status: 'RUNNING', attempt: 1, progress: 0.25, message: '1/4 items', retryAt: null });
      expect(board.get('run-item')?.retries).toBe(1);
      feed(board, [r.complete(50, 'transform', 0, 49), r.done(51, 51)]);
      expect(board.get('run-item')?.steps[0]).toMatchObject({ status: 'COMPLETED', attempt: 1, progress: 1, message: '4/4 items' });
    });

    it('shows a resumed run running again, its kept steps as they were, and moves it in the totals', () => {
      const r = runOf('run-resume', 'etl_dag');
      const board = feed(new RunBoard(), [
        r.start(0, ['extract', 'load']),
        r.stepStart(1, 'extract', 0),
        r.complete(10, 'extract', 0, 9),
        r.stepStart(11, 'load', 1),
        r.error(20, 'load', 1, 'Error: down', 9),
        r.failed(21, 21, 'Pipeline failed', 'load'),
      ]);
      expect(board.totals).toMatchObject({ running: 0, failed: 1 });
      feed(board, [r.resume(30, ['extract'], ['load'])]);
      const run = board.get('run-resume');
      expect(run).toMatchObject({ status: 'RUNNING', error: null, failedStep: null, endedAt: null });
      expect(run?.steps.map((s) => [s.name, s.status])).toEqual([
        ['extract', 'COMPLETED'],
        ['load', 'PENDING'],
      ]);
      expect(board.totals).toMatchObject({ running: 1, failed: 0 });
    });

    it('builds a run from the middle when it missed the start', () => {
      const r = runOf('run-late', 'etl_dag');
      r.start(0, ['a', 'b']);
      const board = feed(new RunBoard(), [r.stepStart(5, 'b', 1), r.stepStart(6, 'a', 0)]);
      expect(board.get('run-late')?.steps.map((s) => s.name)).toEqual(['a', 'b']);
      expect(board.get('run-late')?.status).toBe('RUNNING');
    });
  });

  describe('#runs', () => {
    it('lists running runs first, newest first, then ended runs, last ended first', () => {
      const a = runOf('run-a', 'p');
      const b = runOf('run-b', 'p');
      const c = runOf('run-c', 'p');
      const d = runOf('run-d', 'p');
      const board = feed(new RunBoard(), [
        a.start(0, ['s']),
        b.start(100, ['s']),
        c.start(200, ['s']),
        d.start(300, ['s']),
        b.done(400, 300),
        a.failed(500, 500, 'Error: x'),
      ]);
      expect(board.runs.map((r) => r.runId)).toEqual(['run-d', 'run-c', 'run-a', 'run-b']);
      const text = plain(board);
      const order = ['run-d', 'run-c', 'run-a', 'run-b'].map((id) => text.indexOf(id));
      expect(order).toEqual([...order].sort((x, y) => x - y));
    });

    it('keeps the last maxRuns runs, dropping the ones that ended first, never a running one', () => {
      const board = new RunBoard({ maxRuns: 3 });
      const running = runOf('run-live', 'p');
      board.apply(running.start(0, ['s']));
      const late = runOf('run-0', 'p');
      for (let i = 0; i < 5; i++) {
        const r = i === 0 ? late : runOf(`run-${i}`, 'p');
        feed(board, [r.start(10 + i * 10, ['s']), r.done(15 + i * 10, 5)]);
      }
      expect(board.runs.map((r) => r.runId)).toEqual(['run-live', 'run-4', 'run-3']);
      expect(board.totals).toMatchObject({ completed: 5, running: 1 });
      // A late event of a dropped run does not bring it back.
      expect(board.apply(late.log(100, 's', 0, 'late line'))).toBeNull();
      expect(board.get('run-0')).toBeUndefined();
    });
  });

  describe('#eventsPerSecond', () => {
    it('counts the events of the last window', () => {
      const r = runOf('run-rate', 'p');
      const board = feed(new RunBoard({ rateWindowMs: 1000 }), [
        r.start(0, ['s']),
        r.stepStart(2000, 's', 0),
        r.progress(2500, 's', 0, 0.5),
        r.progress(2900, 's', 0, 0.9),
      ]);
      // The window is (now - 1s, now].
      expect(board.eventsPerSecond(T0 + 2950)).toBe(3);
      expect(board.eventsPerSecond(T0 + 3000)).toBe(2);
      expect(board.eventsPerSecond(T0 + 3600)).toBe(1);
      expect(board.eventsPerSecond(T0 + 3900)).toBe(0);
      expect(plain(board, { now: T0 + 2950 })).toMatch(/1 running · 0 completed · 0 failed · 3\.0 events\/s/);
    });
  });

  it('rejects unknown options', () => {
    expect(() => new RunBoard({ maxRuns: 0 })).toThrow(/maxRuns/);
    expect(() => new RunBoard({ max: 3 } as never)).toThrow(/max/);
  });
});

describe('render', () => {
  function mixedBoard(): RunBoard {
    const ok = runOf('11111111-ok', 'demo_workflow');
    const bad = runOf('22222222-bad', 'always_fails');
    const stop = runOf('33333333-stop', 'log_progress');
    const live = runOf('44444444-live', 'etl_dag');
    const long = 'Error: column "email" is missing in 7 of 7 rows, and this message goes on and on and on to overflow any narrow terminal';
    return feed(new RunBoard(), [
      ok.start(0, ['fetch', 'save']),
      ok.stepStart(1, 'fetch', 0),
      ok.complete(100, 'fetch', 0, 99),
      ok.stepStart(101, 'save', 1),
      ok.complete(200, 'save', 1, 99),
      ok.done(201, 201),
      bad.start(300, ['load', 'validate_schema', 'publish']),
      bad.stepStart(301, 'load', 0),
      bad.complete(400, 'load', 0, 99),
      bad.stepStart(401, 'validate_schema', 1),
      bad.error(500, 'validate_schema', 1, long, 99),
      bad.skip(501, 'publish', 2, 'pipeline failed at step "validate_schema"'),
      bad.failed(502, 202, `Pipeline failed at step 'validate_schema': ${long}`, 'validate_schema'),
      stop.start(600, ['crunch']),
      stop.stepStart(601, 'crunch', 0),
      stop.cancelled(700, 100, 'demo stopped by SIGINT'),
      live.start(800, ['extract_users', 'join']),
      live.stepStart(801, 'extract_users', 0),
      live.progress(900, 'extract_users', 0, 0.5),
      live.log(901, 'extract_users', 0, 'extracted 4 users'),
    ]);
  }

  it('labels every status in words, with a header and the Ctrl-C footer', () => {
    const text = plain(mixedBoard(), { now: T0 + 2000 });
    for (const label of ['[RUNNING]', '[COMPLETED]', '[FAILED]', '[CANCELLED]']) expect(text).toContain(label);
    const lines = text.split('\n');
    expect(lines[0]).toBe('flowcast  1 running · 1 completed · 1 failed · 1 cancelled · 9.5 events/s');
    expect(lines[lines.length - 1]).toBe('Ctrl-C to stop');
    expect(text).toMatch(/\[RUNNING\] +etl_dag +44444444 +1\.2s +▸ extract_users/);
    expect(text).toMatch(/✓ fetch +█{20} 100% +99ms/);
    expect(text).toMatch(/▸ extract_users +█{10}░{10} +50% +1\.2s/);
    expect(text).toMatch(/· join +░{20} +0% +pending/);
    expect(text).toContain('extract_users › extracted 4 users');
  });

  it('has no ANSI codes with color: false, and colours with color: true', () => {
    const board = mixedBoard();
    expect(render(board, { width: 120, color: false, now: T0 + 2000 })).not.toMatch(ANSI);
    const coloured = render(board, { width: 120, color: true, now: T0 + 2000 });
    expect(coloured).toMatch(ANSI);
    // Colour never replaces the words.
    for (const label of ['RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED']) expect(coloured).toContain(label);
  });

  it('cuts every line to the width, marking the cut', () => {
    for (const width of [40, 72, 100]) {
      for (const color of [false, true]) {
        const text = render(mixedBoard(), { width, color, now: T0 + 2000 });
        // eslint-disable-next-line no-control-regex -- strip colours to measure
        const lines = text.replace(/\u001b\[[0-9;]*m/g, '').split('\n');
        for (const l of lines) expect(l.length, l).toBeLessThanOrEqual(width);
        expect(lines.some((l) => l.endsWith('…'))).toBe(true);
      }
    }
  });

  it('fits the height: ended runs shrink to one line, then the oldest are left out', () => {
    const board = mixedBoard();
    const full = plain(board, { now: T0 + 2000 }).split('\n');
    const fitted = plain(board, { now: T0 + 2000, height: 14 }).split('\n');
    expect(full.length).toBeGreaterThan(14);
    expect(fitted.length).toBeLessThanOrEqual(14);
    // The running run keeps its steps; an ended run keeps its one-line summary.
    expect(fitted.join('\n')).toMatch(/▸ extract_users +█{10}/);
    expect(fitted.some((l) => l.startsWith('[CANCELLED]'))).toBe(true);
    const tiny = plain(board, { now: T0 + 2000, height: 9 }).split('\n');
    expect(tiny.length).toBeLessThanOrEqual(9);
    expect(tiny.join('\n')).toMatch(/… \d+ more runs?/);
  });

  it('strips escape codes and control characters that tasks put in logs and errors', () => {
    const r = runOf('run-esc', 'p');
    const board = feed(new RunBoard(), [r.start(0, ['s']), r.stepStart(1, 's', 0), r.log(2, 's', 0, '\u001b[31mred\u001b[0m\rback\u0007')]);
    const text = plain(board);
    expect(text).not.toMatch(ANSI);
    expect(text).toContain('s › red back');
  });

  it('says so while no run has started', () => {
    expect(plain(new RunBoard())).toContain('waiting for the first run');
  });
});

describe('formatRunLine', () => {
  it('is one plain line with status, pipeline, short run id, duration and outcome', () => {
    const r = runOf('0123456789abcdef', 'always_fails');
    const board = feed(new RunBoard(), [
      r.start(0, ['validate_schema']),
      r.stepStart(1, 'validate_schema', 0),
      r.error(900, 'validate_schema', 0, 'Error: column "email" is missing', 899),
      r.failed(901, 901, 'Pipeline failed', 'validate_schema'),
    ]);
    const run = board.get('0123456789abcdef');
    expect(run).toBeDefined();
    if (run === undefined) return;
    const text = formatRunLine(run, { color: false, now: T0 });
    expect(text).toBe('[FAILED]    always_fails    01234567   901ms  failed at validate_schema: Error: column "email" is missing');
  });
});

describe('formatDuration', () => {
  it('reads at every scale', () => {
    expect([0, 840, 1234, 12_340, 125_000, 3_720_000].map(formatDuration)).toEqual(['0ms', '840ms', '1.2s', '12.3s', '2m05s', '1h02m']);
  });
});
