import { setTimeout as sleep } from 'node:timers/promises';
import { CancelledError, ErrorCodes, FlowcastError, InvalidArgumentError, toError } from '../core/errors.js';
import { checkKnownKeys, checkObject, checkPositiveInt, show } from '../core/validate.js';
import type { RunHandle } from '../pipeline/base.js';
import type { Demo } from './pipelines.js';

/** Options of {@link runDemo}. */
export interface DemoRunnerOptions {
  /**
   * Runs in flight at once.
   * @default 3
   */
  concurrency?: number;
  /**
   * Start this many runs in all, then resolve once they have ended.
   * @default unlimited: run until `signal` aborts
   */
  runs?: number;
  /**
   * Bounds of the random pause before each start, in milliseconds.
   * @default { min: 100, max: 700 }
   */
  pauseMs?: { min: number; max: number };
  /** Stops the loop: no run starts any more, and runs in flight are cancelled with the signal's reason. */
  signal?: AbortSignal;
}

/** How the runs of a {@link runDemo} call ended. */
export interface DemoSummary {
  /** Runs started. */
  started: number;
  COMPLETED: number;
  FAILED: number;
  CANCELLED: number;
  /** Wall time of the whole loop. */
  durationMs: number;
}

const DEFAULTS = { concurrency: 3, runs: Number.POSITIVE_INFINITY, pauseMs: { min: 100, max: 700 } };

/**
 * Starts runs of the demo's pipelines, taking turns over them, with a small random
 * pause before each start and at most `concurrency` runs in flight. Resolves with how
 * the runs ended once `runs` have ended, or once `signal` aborted and the runs in flight
 * were cancelled and have ended. Rejects when a run cannot be started (e.g. the broker
 * was closed), after the runs in flight ended.
 *
 * @example
 * const stop = new AbortController();
 * process.once('SIGINT', () => stop.abort(new Error('SIGINT')));
 * const summary = await runDemo(createDemo(broker, hooks), { signal: stop.signal });
 */
export async function runDemo(demo: Demo, options: DemoRunnerOptions = {}): Promise<DemoSummary> {
  checkKnownKeys(checkObject(options, 'runDemo options'), ['concurrency', 'runs', 'pauseMs', 'signal'], 'runDemo options');
  const opts = { ...DEFAULTS, ...options };
  checkPositiveInt(opts.concurrency, 'concurrency');
  if (opts.runs !== Number.POSITIVE_INFINITY) checkPositiveInt(opts.runs, 'runs');
  const { min, max } = opts.pauseMs;
  if (!(Number.isFinite(min) && Number.isFinite(max) && min >= 0 && max >= min)) {
    throw new InvalidArgumentError(`pauseMs must be { min, max } with 0 <= min <= max, received ${show(opts.pauseMs)}`);
  }
  if (demo.pipelines.length === 0) throw new InvalidArgumentError('runDemo(demo): the demo has no pipelines');

  const signal = opts.signal ?? new AbortController().signal;
  const startedAt = Date.now();
  const summary: DemoSummary = { started: 0, COMPLETED: 0, FAILED: 0, CANCELLED: 0, durationMs: 0 };
  const inFlight = new Map<RunHandle, Promise<void>>();
  const state: { failure: Error | null; wake: (() => void) | null } = { failure: null, wake: null };
  const wakeUp = (): void => {
    const wake = state.wake;
    state.wake = null;
    wake?.();
  };
  signal.addEventListener('abort', wakeUp, { once: true });

  const watch = (handle: RunHandle): Promise<void> =>
    handle.waitResult().then(
      () => {
        summary.COMPLETED++;
      },
      (error: unknown) => {
        if (error instanceof CancelledError) summary.CANCELLED++;
        else if (error instanceof FlowcastError && error.code === ErrorCodes.PIPELINE_FAILED) summary.FAILED++;
        else state.failure ??= toError(error);
      },
    );

  try {
    while (!signal.aborted && summary.started < opts.runs && state.failure === null) {
      if (inFlight.size >= opts.concurrency) {
        await new Promise<void>((resolve) => (state.wake = resolve));
        continue;
      }
      try {
        await sleep(min + Math.random() * (max - min), undefined, { signal });
      } catch (error) {
        if (signal.aborted) break;
        throw error;
      }
      const pipeline = demo.pipelines[summary.started % demo.pipelines.length];
      if (pipeline === undefined) break;
      const handle = await pipeline.start();
      summary.started++;
      const done = watch(handle).finally(() => {
        inFlight.delete(handle);
        wakeUp();
      });
      inFlight.set(handle, done);
    }
  } catch (error) {
    state.failure ??= toError(error);
  } finally {
    signal.removeEventListener('abort', wakeUp);
    if (signal.aborted || state.failure !== null) {
      const reason = signal.aborted ? describeReason(signal.reason) : 'demo runner stopped';
      await Promise.all(
        [...inFlight.keys()].map((h) =>
          h.cancel(reason).catch((error: unknown) => {
            state.failure ??= toError(error);
          }),
        ),
      );
    }
    await Promise.all(inFlight.values());
    summary.durationMs = Date.now() - startedAt;
  }
  if (state.failure !== null) throw state.failure;
  return summary;
}

function describeReason(reason: unknown): string {
  if (reason instanceof Error) return reason.message;
  return typeof reason === 'string' ? reason : 'demo stopped';
}
