import { Cron } from 'croner';
import { captureLogger } from './helpers/logger.js';
import { afterEach, describe, expect, expectTypeOf, it, vi } from 'vitest';
import { ErrorCodes, FlowcastError } from '../src/core/errors.js';
import type { JsonValue } from '../src/core/json.js';
import { PipelineScheduler, type PipelineSchedulerOptions, type ScheduleContext, type ScheduleInfo } from '../src/scheduler/index.js';

/** The scheduler's contract with pipelines is `kiq(input)`: a tiny real implementation that records its inputs. */
class RecordingPipeline {
  readonly inputs: JsonValue[] = [];
  kiq(input: JsonValue): Promise<{ runId: string }> {
    this.inputs.push(input);
    return Promise.resolve({ runId: `run-${this.inputs.length}` });
  }
}

class FailingPipeline {
  calls = 0;
  kiq(_input: JsonValue): Promise<never> {
    this.calls++;
    return Promise.reject(new Error(`enqueue failed #${this.calls}`));
  }
}

/** A pipeline whose input type is narrower than JSON, as a typed `Pipeline<{ n: number }>` is. */
class TypedPipeline {
  readonly inputs: { n: number }[] = [];
  kiq(input: { n: number }): Promise<void> {
    this.inputs.push(input);
    return Promise.resolve();
  }
}

const broker = { kind: 'memory' } as const;
const schedulers: PipelineScheduler[] = [];
const quiet: NonNullable<PipelineSchedulerOptions['onError']> = () => {};

function make(options: PipelineSchedulerOptions = {}): PipelineScheduler {
  const scheduler = new PipelineScheduler(broker, { onError: quiet, ...options });
  schedulers.push(scheduler);
  return scheduler;
}

afterEach(async () => {
  await Promise.all(schedulers.splice(0).map((s) => s.close()));
  vi.restoreAllMocks();
});

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs}ms waiting for ${what}`);
    await sleep(10);
  }
}

function catchError(fn: () => unknown): FlowcastError {
  try {
    fn();
  } catch (err) {
    if (err instanceof FlowcastError) return err;
    throw err;
  }
  throw new Error('expected a FlowcastError, nothing was thrown');
}

describe('PipelineScheduler', () => {
  describe('#scheduleAt', () => {
    it('fires a six-field cron every second with a real clock, on whole-second ticks', async () => {
      const scheduler = make();
      const contexts: ScheduleContext[] = [];
      const info = scheduler.scheduleAt((ctx) => void contexts.push(ctx), { cron: '* * * * * *', id: 'every-second' });
      expect(info).toMatchObject({ id: 'every-second', kind: 'cron', cron: '* * * * * *', runs: 0, paused: false, done: false });
      expect(info.nextRunAt!.getTime()).toBeGreaterThan(Date.now() - 5);
      expect(info.nextRunAt!.getTime() % 1000).toBe(0);

      await waitFor(() => contexts.length >= 2, 4_000, 'two cron firings');
      const [first, second] = contexts as [ScheduleContext, ScheduleContext];
      expect(first.scheduleId).toBe('every-second');
      expect(first.scheduledAt.getTime() % 1000).toBe(0);
      expect(second.scheduledAt.getTime() - first.scheduledAt.getTime()).toBe(1000);
      expect(first.firedAt.getTime()).toBeGreaterThanOrEqual(first.scheduledAt.getTime());
      expect(first.signal.aborted).toBe(false);
      const after = scheduler.get('every-second')!;
      expect(after.runs).toBeGreaterThanOrEqual(2);
      expect(after.lastRunAt).toBeInstanceOf(Date);
      expect(after.nextRunAt!.getTime()).toBeGreaterThan(second.scheduledAt.getTime());
    });

    it('calls kiq(input) of a pipeline target with a private copy of the input', async () => {
      const scheduler = make();
      const pipeline = new RecordingPipeline();
      const input = { report: 'daily', tags: ['a'] };
      scheduler.scheduleAt(pipeline, { cron: '* * * * * *', input });
      input.tags.push('changed later');
      await waitFor(() => pipeline.inputs.length >= 1, 3_000, 'a kiq call');
      expect(pipeline.inputs[0]).toEqual({ report: 'daily', tags: ['a'] });
    });

    it('passes null to kiq when no input is given', async () => {
      const scheduler = make();
      const pipeline = new RecordingPipeline();
      scheduler.scheduleAt(pipeline, { runAt: '* * * * * *' });
      await waitFor(() => pipeline.inputs.length >= 1, 3_000, 'a kiq call');
      expect(pipeline.inputs[0]).toBeNull();
    });

    it('accepts the seed spelling: runAt as a cron string, runAt as a Date for a one-off', () => {
      const scheduler = make();
      const cleanup = async (): Promise<void> => {};
      const daily = scheduler.scheduleAt(cleanup, { runAt: '0 3 * * *' });
      expect(daily.kind).toBe('cron');
      expect(daily.cron).toBe('0 3 * * *');
      expect(daily.nextRunAt).toEqual(new Cron('0 3 * * *').nextRun());

      const at = new Date(Date.now() + 60_000);
      const once = scheduler.scheduleAt(cleanup, { runAt: at });
      expect(once).toMatchObject({ kind: 'once', at, nextRunAt: at });
    });

    it('computes nextRunAt in the given timezone, as croner does', () => {
      const scheduler = make();
      const noop = (): void => {};
      const ny = scheduler.scheduleAt(noop, { cron: '0 3 * * *', timezone: 'America/New_York' });
      const utc = scheduler.scheduleAt(noop, { cron: '0 3 * * *', timezone: 'UTC' });
      expect(ny.timezone).toBe('America/New_York');
      expect(ny.nextRunAt).toEqual(new Cron('0 3 * * *', { timezone: 'America/New_York' }).nextRun());
      expect(utc.nextRunAt).toEqual(new Cron('0 3 * * *', { timezone: 'UTC' }).nextRun());
      expect(utc.nextRunAt!.getUTCHours()).toBe(3);
      const nyHour = new Intl.DateTimeFormat('en-US', { timeZone: 'America/New_York', hour: 'numeric', hourCycle: 'h23' }).format(ny.nextRunAt!);
      expect(Number(nyHour)).toBe(3);
      // New York is 4 (EDT) or 5 (EST) hours behind UTC.
      const offsetHours = (((ny.nextRunAt!.getTime() - utc.nextRunAt!.getTime()) % 86_400_000) + 86_400_000) % 86_400_000 / 3_600_000;
      expect([4, 5]).toContain(offsetHours);
    });

    it('rejects a bad cron expression with BAD_SCHEDULE quoting it and the reason', () => {
      const scheduler = make();
      const noop = (): void => {};
      const bad = catchError(() => scheduler.scheduleAt(noop, { cron: '61 * * * *' }));
      expect(bad.code).toBe(ErrorCodes.BAD_SCHEDULE);
      expect(bad.message).toContain('"61 * * * *"');
      expect(bad.message).toMatch(/minute/);

      const short = catchError(() => scheduler.scheduleAt(noop, { cron: '* * *' }));
      expect(short.code).toBe(ErrorCodes.BAD_SCHEDULE);
      expect(short.message).toMatch(/"\* \* \*".*parts/);

      const seven = catchError(() => scheduler.scheduleAt(noop, { cron: '0 0 0 * * * 2030' }));
      expect(seven.code).toBe(ErrorCodes.BAD_SCHEDULE);

      const never = catchError(() => scheduler.scheduleAt(noop, { cron: '0 0 30 2 *' }));
      expect(never.code).toBe(ErrorCodes.BAD_SCHEDULE);
      expect(never.message).toContain('never fires');
      expect(scheduler.list()).toEqual([]);
    });

    it('rejects a bad timezone with BAD_SCHEDULE naming it', () => {
      const scheduler = make();
      const err = catchError(() => scheduler.scheduleAt(() => {}, { cron: '0 3 * * *', timezone: 'Mars/Olympus_Mons' }));
      expect(err.code).toBe(ErrorCodes.BAD_SCHEDULE);
      expect(err.message).toContain('"Mars/Olympus_Mons"');
      expect(err.message).toContain('"0 3 * * *"');
    });

    it('rejects conflicting, missing and unknown options', () => {
      const scheduler = make();
      const noop = (): void => {};
      expect(catchError(() => scheduler.scheduleAt(noop, { cron: '* * * * *', runAt: '* * * * *' })).message).toMatch(/either cron or runAt/);
      expect(catchError(() => scheduler.scheduleAt(noop, {})).code).toBe(ErrorCodes.INVALID_ARGUMENT);
      const typo = catchError(() => scheduler.scheduleAt(noop, { cron: '* * * * *', timeZone: 'UTC' } as never));
      expect(typo.message).toContain('"timeZone"');
      expect(catchError(() => scheduler.scheduleAt(noop, { runAt: new Date(), timezone: 'UTC' })).message).toMatch(/one-off.*timezone/);
      expect(catchError(() => scheduler.scheduleAt(noop, { cron: '* * * * *', maxRuns: 0 })).message).toMatch(/maxRuns.*>= 1.*0/);
      expect(catchError(() => scheduler.scheduleAt(noop, { cron: '* * * * *', overlap: 'queue' as never })).message).toMatch(/overlap.*"queue"/);
    });

    it('rejects a non-JSON input, naming the path', () => {
      const scheduler = make();
      const err = catchError(() => scheduler.scheduleAt(new RecordingPipeline(), { cron: '* * * * *', id: 'nightly', input: { when: new Date() as never } }));
      expect(err.code).toBe(ErrorCodes.NOT_JSON);
      expect(err.message).toContain('Schedule "nightly" input');
      expect(err.message).toContain('$.when');
      expect(err.message).toContain('Date');
    });

    it('rejects an input for a function target, at compile time and at run time', () => {
      const scheduler = make();
      // @ts-expect-error a function target receives a context, not an input
      const err = catchError(() => scheduler.scheduleAt(() => {}, { cron: '* * * * *', input: 1 }));
      expect(err.code).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(err.message).toMatch(/input is given to pipeline targets only/);
    });

    it('types the input from the pipeline target', () => {
      const scheduler = make();
      const typed = new TypedPipeline();
      expectTypeOf(scheduler.scheduleAt(typed, { cron: '0 3 * * *', input: { n: 1 } })).toEqualTypeOf<ScheduleInfo>();
      // @ts-expect-error the input must match the pipeline's input type
      scheduler.scheduleAt(typed, { cron: '0 3 * * *', input: { n: 'one' } });
    });

    it('rejects a target that is neither a function nor pipeline-like, and a duplicate id', () => {
      const scheduler = make();
      const bad = catchError(() => scheduler.scheduleAt({ run: () => {} } as never, { cron: '* * * * *' }));
      expect(bad.code).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(bad.message).toMatch(/kiq/);
      scheduler.scheduleAt(() => {}, { cron: '* * * * *', id: 'same' });
      const dup = catchError(() => scheduler.scheduleAt(() => {}, { cron: '0 * * * *', id: 'same' }));
      expect(dup.code).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(dup.message).toContain('"same" already exists');
    });

    it('fires each missed tick with catchUpMissed, and only the late one without', async () => {
      const scheduler = make();
      const dropped: number[] = [];
      const caughtUp: number[] = [];
      const startAt = Date.now() + 200;
      scheduler.scheduleEvery((ctx) => void dropped.push(ctx.scheduledAt.getTime()), { everyMs: 200, startAt });
      scheduler.scheduleEvery((ctx) => void caughtUp.push(ctx.scheduledAt.getTime()), { everyMs: 200, startAt, catchUpMissed: true });
      // Block the event loop across several ticks, as a suspended machine would.
      const until = Date.now() + 900;
      while (Date.now() < until) {
        /* busy */
      }
      await waitFor(() => dropped.length >= 2 && caughtUp.length >= 5, 3_000, 'firings after the block');
      expect(dropped[0]).toBe(startAt);
      // The ticks at +400, +600, +800 were dropped: the next one is after the wake-up.
      expect(dropped[1]! - dropped[0]!).toBeGreaterThanOrEqual(800);
      expect(caughtUp.slice(0, 4)).toEqual([startAt, startAt + 200, startAt + 400, startAt + 600]);
    });
  });

  describe('#scheduleEvery', () => {
    it('fires on an interval', async () => {
      const scheduler = make();
      const pipeline = new RecordingPipeline();
      const info = scheduler.scheduleEvery(pipeline, { everyMs: 100, input: { ping: true } });
      expect(info).toMatchObject({ kind: 'interval', everyMs: 100 });
      await sleep(560);
      expect(pipeline.inputs.length).toBeGreaterThanOrEqual(3);
      expect(pipeline.inputs.length).toBeLessThanOrEqual(6);
      expect(pipeline.inputs.every((i) => JSON.stringify(i) === '{"ping":true}')).toBe(true);
    });

    it('first fires at startAt', async () => {
      const scheduler = make();
      const fired: ScheduleContext[] = [];
      const startAt = Date.now() + 150;
      const info = scheduler.scheduleEvery((ctx) => void fired.push(ctx), { everyMs: 10_000, startAt: new Date(startAt) });
      expect(info.nextRunAt!.getTime()).toBe(startAt);
      await waitFor(() => fired.length === 1, 2_000, 'the first firing');
      expect(fired[0]!.scheduledAt.getTime()).toBe(startAt);
      expect(scheduler.get(info.id)!.nextRunAt!.getTime()).toBe(startAt + 10_000);
    });

    it('stops after maxRuns and reports done', async () => {
      const scheduler = make();
      let calls = 0;
      const { id } = scheduler.scheduleEvery(() => void calls++, { everyMs: 20, maxRuns: 3 });
      await waitFor(() => scheduler.get(id)!.done, 2_000, 'maxRuns');
      await sleep(100);
      expect(calls).toBe(3);
      expect(scheduler.get(id)).toMatchObject({ runs: 3, done: true, nextRunAt: null, maxRuns: 3 });
    });

    it('rejects a negative, zero or fractional everyMs and an invalid startAt', () => {
      const scheduler = make();
      const noop = (): void => {};
      const negative = catchError(() => scheduler.scheduleEvery(noop, { everyMs: -5 }));
      expect(negative.code).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(negative.message).toMatch(/everyMs must be an integer >= 1, received -5/);
      expect(catchError(() => scheduler.scheduleEvery(noop, { everyMs: 0 })).message).toContain('everyMs');
      expect(catchError(() => scheduler.scheduleEvery(noop, { everyMs: 1.5 })).message).toContain('1.5');
      expect(catchError(() => scheduler.scheduleEvery(noop, { everyMs: 100, startAt: new Date('nope') })).code).toBe(ErrorCodes.BAD_SCHEDULE);
    });
  });

  describe('#scheduleOnce', () => {
    it('fires once at the given time, then is done', async () => {
      const scheduler = make();
      const pipeline = new RecordingPipeline();
      const at = Date.now() + 100;
      const info = scheduler.scheduleOnce(pipeline, { at, input: 'hello', id: 'one-off' });
      expect(info).toMatchObject({ kind: 'once', at: new Date(at), nextRunAt: new Date(at), done: false });
      await waitFor(() => pipeline.inputs.length === 1, 2_000, 'the one-off');
      await sleep(150);
      expect(pipeline.inputs).toEqual(['hello']);
      expect(scheduler.get('one-off')).toMatchObject({ runs: 1, done: true, nextRunAt: null });
    });

    it('fires at once for a time in the past, after returning', async () => {
      const scheduler = make();
      let calls = 0;
      const info = scheduler.scheduleOnce(() => void calls++, { at: new Date(Date.now() - 60_000) });
      expect(calls).toBe(0);
      expect(info.runs).toBe(0);
      await waitFor(() => calls === 1, 500, 'the past one-off');
    });

    it('waits beyond the 2^31-1 ms limit of setTimeout instead of firing at once', async () => {
      const scheduler = make();
      let calls = 0;
      const at = Date.now() + 40 * 86_400_000;
      const info = scheduler.scheduleOnce(() => void calls++, { at });
      await sleep(100);
      expect(calls).toBe(0);
      expect(info.nextRunAt!.getTime()).toBe(at);
    });

    it('rejects an invalid date with BAD_SCHEDULE and a wrong type with INVALID_ARGUMENT', () => {
      const scheduler = make();
      const noop = (): void => {};
      const invalid = catchError(() => scheduler.scheduleOnce(noop, { at: new Date('not a date'), id: 'x' }));
      expect(invalid.code).toBe(ErrorCodes.BAD_SCHEDULE);
      expect(invalid.message).toBe('Schedule "x" at is not a valid date (received Invalid Date)');
      expect(catchError(() => scheduler.scheduleOnce(noop, { at: Number.NaN })).code).toBe(ErrorCodes.BAD_SCHEDULE);
      const wrongType = catchError(() => scheduler.scheduleOnce(noop, { at: '2030-01-01' as never }));
      expect(wrongType.code).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(wrongType.message).toContain('"2030-01-01"');
    });
  });

  describe('#pause / #resume', () => {
    it('does not fire while paused, and fires again after resume', async () => {
      const scheduler = make();
      let calls = 0;
      const { id } = scheduler.scheduleEvery(() => void calls++, { everyMs: 30 });
      await waitFor(() => calls >= 1, 1_000, 'a firing');
      const paused = scheduler.pause(id);
      expect(paused).toMatchObject({ paused: true, nextRunAt: null });
      const atPause = calls;
      await sleep(250);
      expect(calls).toBe(atPause);
      const resumed = scheduler.resume(id);
      expect(resumed.paused).toBe(false);
      expect(resumed.nextRunAt!.getTime()).toBeGreaterThanOrEqual(Date.now());
      await waitFor(() => calls > atPause, 1_000, 'a firing after resume');
    });

    it('fires a paused one-off whose time passed on resume', async () => {
      const scheduler = make();
      let calls = 0;
      const { id } = scheduler.scheduleOnce(() => void calls++, { at: Date.now() + 50 });
      scheduler.pause(id);
      await sleep(120);
      expect(calls).toBe(0);
      scheduler.resume(id);
      await waitFor(() => calls === 1, 500, 'the resumed one-off');
    });

    it('throws NOT_FOUND naming an unknown id', () => {
      const scheduler = make();
      const err = catchError(() => scheduler.pause('ghost'));
      expect(err.code).toBe(ErrorCodes.NOT_FOUND);
      expect(err.message).toContain('"ghost"');
      expect(catchError(() => scheduler.resume('ghost')).code).toBe(ErrorCodes.NOT_FOUND);
    });
  });

  describe('#remove', () => {
    it('stops firing, forgets the schedule and aborts the signal of a firing in flight', async () => {
      const scheduler = make();
      let calls = 0;
      let signal: AbortSignal | undefined;
      scheduler.scheduleEvery(
        async (ctx) => {
          calls++;
          signal = ctx.signal;
          await sleep(100);
        },
        { everyMs: 20, id: 'to-remove' },
      );
      await waitFor(() => calls === 1, 1_000, 'a firing');
      scheduler.remove('to-remove');
      expect(signal!.aborted).toBe(true);
      expect(scheduler.get('to-remove')).toBeUndefined();
      expect(scheduler.list()).toEqual([]);
      await sleep(200);
      expect(calls).toBe(1);
      const again = catchError(() => scheduler.remove('to-remove'));
      expect(again.code).toBe(ErrorCodes.NOT_FOUND);
      expect(again.message).toContain('"to-remove"');
    });
  });

  describe('#list / #get', () => {
    it('returns copies that do not change the schedules', () => {
      const scheduler = make();
      scheduler.scheduleAt(() => {}, { cron: '0 3 * * *', id: 'a' });
      scheduler.scheduleEvery(() => {}, { everyMs: 60_000, id: 'b' });
      const listed = scheduler.list();
      expect(listed.map((s) => s.id)).toEqual(['a', 'b']);
      const before = scheduler.get('a')!.nextRunAt!.getTime();
      listed[0]!.nextRunAt!.setTime(0);
      (listed[0] as { runs: number }).runs = 99;
      expect(scheduler.get('a')).toMatchObject({ runs: 0, nextRunAt: new Date(before) });
    });

    it('gives generated ids per kind', () => {
      const scheduler = make();
      expect(scheduler.scheduleAt(() => {}, { cron: '0 3 * * *' }).id).toBe('cron-1');
      expect(scheduler.scheduleEvery(() => {}, { everyMs: 1000 }).id).toBe('interval-2');
    });
  });

  describe('errors of a firing', () => {
    it('records a function error in lastError, reports it to onError and keeps the schedule', async () => {
      const reported: [Error, ScheduleInfo][] = [];
      const scheduler = make({ onError: (error, info) => void reported.push([error, info]) });
      let calls = 0;
      scheduler.scheduleEvery(
        () => {
          calls++;
          throw new TypeError(`boom ${calls}`);
        },
        { everyMs: 30, id: 'failing' },
      );
      await waitFor(() => calls >= 3, 2_000, 'three failing firings');
      expect(reported.length).toBeGreaterThanOrEqual(2);
      const [error, info] = reported[0]!;
      expect(error.message).toBe('boom 1');
      expect(info).toMatchObject({ id: 'failing', lastError: 'TypeError: boom 1', runs: 1 });
      expect(scheduler.get('failing')!.lastError).toMatch(/^TypeError: boom \d+$/);
      expect(scheduler.get('failing')!.done).toBe(false);
    });

    it('records a rejected kiq, a rejected async function and a thrown non-Error', async () => {
      const reported: Error[] = [];
      const scheduler = make({ onError: (error) => void reported.push(error) });
      const failing = new FailingPipeline();
      scheduler.scheduleOnce(failing, { at: 0, id: 'kiq' });
      scheduler.scheduleOnce(
        async () => {
          await sleep(5);
          throw new Error('async failure');
        },
        { at: 0, id: 'async' },
      );
      scheduler.scheduleOnce(
        () => {
          throw 'a string'; // eslint-disable-line @typescript-eslint/only-throw-error -- what user code may do
        },
        { at: 0, id: 'string' },
      );
      await waitFor(() => reported.length === 3, 1_000, 'three reports');
      expect(scheduler.get('kiq')!.lastError).toBe('Error: enqueue failed #1');
      expect(scheduler.get('async')!.lastError).toBe('Error: async failure');
      expect(scheduler.get('string')!.lastError).toBe('a string');
      expect(reported.every((e) => e instanceof Error)).toBe(true);
    });

    it('clears lastError after a firing that succeeds', async () => {
      const scheduler = make();
      let calls = 0;
      scheduler.scheduleEvery(
        () => {
          if (++calls === 1) throw new Error('first fails');
        },
        { everyMs: 30, id: 'flaky' },
      );
      await waitFor(() => calls >= 1 && scheduler.get('flaky')!.lastError !== null, 1_000, 'the failure');
      await waitFor(() => calls >= 2, 1_000, 'a second firing');
      await sleep(5);
      expect(scheduler.get('flaky')!.lastError).toBeNull();
    });

    it('logs on its logger by default, at error, naming the schedule', async () => {
      const log = captureLogger();
      const scheduler = new PipelineScheduler(broker, { logger: log.logger });
      schedulers.push(scheduler);
      scheduler.scheduleOnce(
        () => {
          throw new Error('disk full');
        },
        { at: 0, id: 'cleanup' },
      );
      await waitFor(() => log.lines.length === 1, 1_000, 'the log');
      expect(log.lines[0]).toMatchObject({ level: 50, schedule: 'cleanup', msg: 'scheduler: schedule "cleanup" (once) failed: Error: disk full' });
    });

    it('survives an onError or onFire hook that throws', async () => {
      const log = captureLogger();
      const scheduler = make({
        logger: log.logger,
        onError: () => {
          throw new Error('hook bug');
        },
        onFire: () => {
          throw new Error('observer bug');
        },
      });
      let calls = 0;
      scheduler.scheduleEvery(
        () => {
          calls++;
          throw new Error('task bug');
        },
        { everyMs: 30 },
      );
      await waitFor(() => calls >= 2, 1_000, 'two firings');
      const messages = log.messages();
      expect(messages.some((m) => m.includes('onError hook threw') && m.includes('hook bug'))).toBe(true);
      expect(messages.some((m) => m.includes('onFire hook threw') && m.includes('observer bug'))).toBe(true);
    });
  });

  describe('onFire', () => {
    it('is called as each firing starts', async () => {
      const fired: ScheduleInfo[] = [];
      const scheduler = make({ onFire: (info) => void fired.push(info) });
      scheduler.scheduleOnce(() => {}, { at: 0, id: 'observed' });
      await waitFor(() => fired.length === 1, 1_000, 'onFire');
      expect(fired[0]).toMatchObject({ id: 'observed', runs: 1, running: 1, done: true });
    });
  });

  describe('overlap', () => {
    it("skips ticks while a firing still runs ('skip', the default) and counts them", async () => {
      const scheduler = make();
      let concurrent = 0;
      let maxConcurrent = 0;
      scheduler.scheduleEvery(
        async () => {
          maxConcurrent = Math.max(maxConcurrent, ++concurrent);
          await sleep(200);
          concurrent--;
        },
        { everyMs: 40, id: 'slow' },
      );
      await sleep(700);
      const info = scheduler.get('slow')!;
      expect(maxConcurrent).toBe(1);
      expect(info.skipped).toBeGreaterThanOrEqual(3);
      expect(info.runs).toBeGreaterThanOrEqual(2);
      expect(info.runs).toBeLessThanOrEqual(4);
      expect(info.overlap).toBe('skip');
    });

    it("lets firings overlap with 'allow'", async () => {
      const scheduler = make({ overlap: 'allow' });
      let concurrent = 0;
      let maxConcurrent = 0;
      scheduler.scheduleEvery(
        async () => {
          maxConcurrent = Math.max(maxConcurrent, ++concurrent);
          await sleep(200);
          concurrent--;
        },
        { everyMs: 40, id: 'slow' },
      );
      await sleep(500);
      expect(maxConcurrent).toBeGreaterThanOrEqual(2);
      expect(scheduler.get('slow')!.skipped).toBe(0);
    });
  });

  describe('#close', () => {
    it('is idempotent, stops firing and waits for firings in flight', async () => {
      const scheduler = make();
      let calls = 0;
      let finished = 0;
      let signal: AbortSignal | undefined;
      scheduler.scheduleEvery(
        async (ctx) => {
          calls++;
          signal = ctx.signal;
          await sleep(150);
          finished++;
        },
        { everyMs: 20, id: 'busy' },
      );
      await waitFor(() => calls === 1, 1_000, 'a firing');
      const first = scheduler.close();
      expect(scheduler.close()).toBe(first);
      expect(signal!.aborted).toBe(true);
      expect(finished).toBe(0);
      await first;
      expect(finished).toBe(1);
      await scheduler[Symbol.asyncDispose]();
      await sleep(100);
      expect(calls).toBe(1);
      expect(scheduler.get('busy')).toMatchObject({ done: true, nextRunAt: null });
    });

    it('makes scheduling and changes throw CLOSED', async () => {
      const scheduler = make();
      scheduler.scheduleAt(() => {}, { cron: '0 3 * * *', id: 'kept' });
      await scheduler.close();
      expect(catchError(() => scheduler.scheduleAt(() => {}, { cron: '* * * * *' })).code).toBe(ErrorCodes.CLOSED);
      expect(catchError(() => scheduler.scheduleEvery(() => {}, { everyMs: 10 })).code).toBe(ErrorCodes.CLOSED);
      expect(catchError(() => scheduler.scheduleOnce(() => {}, { at: 0 })).code).toBe(ErrorCodes.CLOSED);
      expect(catchError(() => scheduler.pause('kept')).code).toBe(ErrorCodes.CLOSED);
      expect(scheduler.list().map((s) => s.id)).toEqual(['kept']);
    });
  });

  describe('constructor', () => {
    it('validates the broker and the options', () => {
      expect(() => new PipelineScheduler({} as never)).toThrow(/broker with a string "kind"/);
      expect(() => new PipelineScheduler(broker, { overlap: 'never' as never })).toThrow(/overlap/);
      expect(() => new PipelineScheduler(broker, { onError: 'log' as never })).toThrow(/onError must be a function/);
      expect(() => new PipelineScheduler(broker, { unref: true } as never)).toThrow(/unknown option "unref"/);
      expect(new PipelineScheduler(broker, { unrefTimers: true }).broker).toBe(broker);
    });
  });
});
