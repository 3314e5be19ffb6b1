import { describe, expect, it } from 'vitest';
import type { PipelineStatus } from '../src/tracking/models.js';
import { formatDuration, renderStatus } from '../src/tracking/render.js';
import { RunEvents, reduce } from './helpers/events.js';

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*m/g;

function failedRun(): PipelineStatus {
  const run = new RunEvents({ pipelineId: 'nightly_etl', runId: 'run-42', steps: ['fetch', 'parse_and_validate_records', 'store', 'notify'] });
  run.start();
  run.stepStart('fetch');
  run.advance(850);
  run.stepComplete('fetch', 1);
  run.stepStart('parse_and_validate_records');
  run.advance(100);
  run.stepRetry('parse_and_validate_records', 'Error: x');
  run.stepStart('parse_and_validate_records', 2);
  run.advance(1700);
  run.stepComplete('parse_and_validate_records', 2);
  run.stepStart('store');
  run.advance(30);
  run.stepError('store', 'Error: disk full\n    at write (fs.js:1:1)');
  run.stepSkip('notify', 'pipeline failed at step "store"');
  run.fail("Pipeline failed at step 'store': Error: disk full", 'store');
  return reduce(run.events)!;
}

describe('renderStatus', () => {
  it('renders the seed §9.1 view: header, run, status, duration, then a bar per step scaled to the longest', () => {
    expect(renderStatus(failedRun())).toBe(
      [
        '='.repeat(60),
        'Pipeline: nightly_etl',
        'Run:      run-42',
        'Status:   FAILED',
        'Duration: 2.7s',
        "Error:    Pipeline failed at step 'store': Error: disk full",
        'Steps:',
        '  fetch                      ███████       850ms',
        '  parse_and_validate_records █████████████ 1.7s (2 attempts)',
        '  store                      █             FAILED 30ms',
        '    ✗ Error: disk full',
        '  notify                                   SKIPPED',
      ].join('\n'),
    );
  });

  it('fits every line in the width and gives the longest step the whole bar', () => {
    for (const width of [40, 60, 100]) {
      const lines = renderStatus(failedRun(), { width }).split('\n');
      expect(lines[0]).toBe('='.repeat(width));
      for (const line of lines) expect([...line].length).toBeLessThanOrEqual(width);
      const longest = lines.find((l) => l.includes('1.7s'))!;
      const fetch = lines.find((l) => l.includes('850ms'))!;
      const bars = (l: string): number => [...l].filter((ch) => ch === '█').length;
      expect([...longest].length).toBe(width);
      expect(bars(longest)).toBeGreaterThanOrEqual(5);
      expect(bars(fetch)).toBe(Math.round((850 / 1700) * bars(longest)));
    }
  });

  it('cuts long step names with … to keep room for the bar in a narrow width', () => {
    const out = renderStatus(failedRun(), { width: 40 });
    expect(out).toContain('  parse_and_val… █████ 1.7s (2 attempts)');
  });

  it('shows a running run with its progress and the steps that did not run yet', () => {
    const run = new RunEvents({ runId: 'r2', steps: ['a', 'b', 'c'] });
    run.start();
    run.stepStart('a');
    run.advance(5);
    run.stepComplete('a', 1);
    run.stepStart('b');
    run.stepProgress('b', 0.4);
    const out = renderStatus(reduce(run.events)!);
    expect(out).toContain('Status:   RUNNING (1/3 steps, at b)');
    expect(out).toContain('Duration: -');
    expect(out).toMatch(/ {2}b {4}\s+RUNNING 40%$/m);
    expect(out).toMatch(/ {2}c {4}\s+PENDING$/m);
  });

  it('adds ANSI colours only when asked, with the same text underneath', () => {
    const plain = renderStatus(failedRun());
    const colored = renderStatus(failedRun(), { color: true });
    expect(plain).not.toMatch(ANSI);
    expect(colored).toMatch(ANSI);
    expect(colored.replace(ANSI, '').split('\n').map((l) => l.trimEnd())).toEqual(plain.split('\n'));
  });

  it('renders a run without steps', () => {
    const run = new RunEvents({ runId: 'empty', steps: [] });
    run.start();
    expect(renderStatus(reduce(run.events)!)).toContain('Steps:\n  (none)');
  });

  it('rejects bad arguments, naming the option and the value', () => {
    expect(() => renderStatus(null as never)).toThrow('renderStatus(status): status must be a PipelineStatus, received null');
    expect(() => renderStatus(failedRun(), { width: 10 })).toThrow('width must be an integer >= 40, received 10');
    expect(() => renderStatus(failedRun(), { color: 'yes' as never })).toThrow('color must be a boolean, received "yes"');
    expect(() => renderStatus(failedRun(), { colour: true } as never)).toThrow(/unknown option "colour"/);
  });
});

describe('formatDuration', () => {
  it.each([
    [0, '0ms'],
    [850, '850ms'],
    [999.6, '1.0s'],
    [1234, '1.2s'],
    [59_940, '59.9s'],
    [59_960, '1m 00s'],
    [123_456, '2m 03s'],
    [3_599_499, '59m 59s'],
    [3_900_000, '1h 05m'],
    [null, '-'],
  ] as const)('formats %s as %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it('rejects a negative or non-finite duration', () => {
    expect(() => formatDuration(-1)).toThrow('formatDuration(ms): ms must be a finite number >= 0 or null, received -1');
    expect(() => formatDuration(Number.POSITIVE_INFINITY)).toThrow(/finite number/);
  });
});
