/** The scheduler's types and limits: what a schedule is, its options, and its state. */
import type { Logger } from '../core/logger.js';
import type { JsonValue } from '../core/json.js';
import type { ClusterScheduleSpec, ScheduleDriver } from './cluster.js';

/**
 * What the scheduler needs of a broker: its `kind`. With the in-memory broker the
 * scheduler runs its timers in this process; a broker with `createScheduleDriver()`
 * (the BullMQ broker) makes each tick fire once per cluster (see `./cluster.ts`).
 */
export interface SchedulerBroker {
  readonly kind: string;
  /** Opens a cluster-wide schedule store (see {@link ScheduleDriver}). */
  createScheduleDriver?: (...args: never[]) => ScheduleDriver;
}

/** Anything with a `kiq(input)` that starts a run, such as a `Pipeline` or a `DataflowPipeline`. */
export interface PipelineLike<I extends JsonValue = JsonValue> {
  kiq(input: I): Promise<unknown>;
}

/** The single argument a function target receives on each firing. */
export interface ScheduleContext {
  readonly scheduleId: string;
  /** When the firing actually started. */
  readonly firedAt: Date;
  /** The tick this firing stands for (the cron or interval time, or the one-off `at`). */
  readonly scheduledAt: Date;
  /** Aborted when the schedule is removed or the scheduler is closed. */
  readonly signal: AbortSignal;
}

/** A plain function target. Its result is ignored; a returned promise is awaited. */
export type ScheduledFunction = (ctx: ScheduleContext) => unknown;

/** What a schedule fires: a pipeline-like object (gets `kiq(input)`) or a function (gets a {@link ScheduleContext}). */
export type ScheduleTarget<I extends JsonValue = JsonValue> = PipelineLike<I> | ScheduledFunction;

/** How a schedule fires: on a cron expression, every interval, or once at a time. */
export type ScheduleKind = 'cron' | 'interval' | 'once';

/** `'skip'`: a tick that comes while a firing of the same schedule runs is skipped. `'allow'`: firings may overlap. */
export type OverlapPolicy = 'skip' | 'allow';

/** A snapshot of one schedule. Every call returns a fresh copy. */
export interface ScheduleInfo {
  readonly id: string;
  readonly kind: ScheduleKind;
  /** The cron expression (kind `'cron'`). */
  readonly cron?: string;
  /** The IANA timezone the cron expression is read in (kind `'cron'`, when given). */
  readonly timezone?: string;
  /** The period (kind `'interval'`). */
  readonly everyMs?: number;
  /** The instant of a one-off (kind `'once'`). */
  readonly at?: Date;
  /** The limit of firings, when one was set. */
  readonly maxRuns?: number;
  readonly overlap: OverlapPolicy;
  readonly paused: boolean;
  /** True once the schedule will never fire again (one-off fired, `maxRuns` reached, scheduler closed). */
  readonly done: boolean;
  /** When the next firing is due; `null` while paused or when done. */
  readonly nextRunAt: Date | null;
  /** When the latest firing started. */
  readonly lastRunAt: Date | null;
  /** Firings started. */
  readonly runs: number;
  /** Ticks skipped because a firing was still running (overlap `'skip'`). */
  readonly skipped: number;
  /** Firings in flight now. */
  readonly running: number;
  /** The error of the latest finished firing as `"Name: message"`, or `null` when it succeeded. */
  readonly lastError: string | null;
}

/** Options of {@link PipelineScheduler}. */
export interface PipelineSchedulerOptions {
  /**
   * The overlap policy of schedules that do not set their own.
   * @default 'skip'
   */
  overlap?: OverlapPolicy;
  /**
   * Called when a firing fails (the function threw or rejected, or `kiq()` rejected). The
   * schedule keeps running. The error is also recorded in `lastError`.
   * @default logs `scheduler: schedule "<id>" failed: <error>` on the logger
   */
  onError?: (error: Error, info: ScheduleInfo) => void;
  /**
   * Where failed firings, throwing hooks and cluster store errors go. A pino-compatible logger.
   * @default a pino logger at `info` on stderr
   */
  logger?: Logger;
  /** Called as each firing starts, for observability. */
  onFire?: (info: ScheduleInfo) => void;
  /**
   * `unref()` every timer, so pending schedules do not keep the process alive.
   * @default false
   */
  unrefTimers?: boolean;
}

/** Options every kind of schedule takes. */
export interface CommonScheduleOptions<I> {
  /** A unique id (1-200 characters of letters, digits and `_ . : - / @`). @default `"<kind>-<n>"` */
  id?: string;
  /** The JSON input given to `kiq()` of a pipeline target; not allowed for function targets. @default null */
  input?: I;
  /** Overrides the scheduler's overlap policy. @default the scheduler's `overlap` */
  overlap?: OverlapPolicy;
}

/** Options of schedules that fire more than once. */
export interface RepeatingScheduleOptions<I> extends CommonScheduleOptions<I> {
  /** Stop after this many firings. @default unlimited */
  maxRuns?: number;
  /**
   * When the process wakes late (blocked event loop, suspended machine) and several ticks
   * went by: `false` fires once and drops the others; `true` fires each missed tick, one
   * after another, up to {@link MAX_CATCH_UP}.
   * @default false
   */
  catchUpMissed?: boolean;
}

/** Options of {@link PipelineScheduler.scheduleAt}. Give `cron`, or `runAt` (a cron string, or a Date for a one-off). */
export interface CronScheduleOptions<I = JsonValue> extends RepeatingScheduleOptions<I> {
  /** A 5-field (minute precision) or 6-field (second precision) cron expression, or a nickname such as `@daily`. */
  cron?: string;
  /** The seed's spelling: a cron string is the same as `cron`; a Date makes a one-off like {@link PipelineScheduler.scheduleOnce}. */
  runAt?: string | Date;
  /** The IANA timezone the expression is read in. @default the process's local timezone */
  timezone?: string;
}

/** Options of {@link PipelineScheduler.scheduleEvery}. */
export interface IntervalScheduleOptions<I = JsonValue> extends RepeatingScheduleOptions<I> {
  /** The period in milliseconds, an integer >= 1. */
  everyMs: number;
  /** The first firing (Date or epoch ms); ticks follow at `startAt + k * everyMs`. A past `startAt` keeps that phase. @default now + everyMs */
  startAt?: Date | number;
}

/** Options of {@link PipelineScheduler.scheduleOnce}. */
export interface OnceScheduleOptions<I = JsonValue> extends CommonScheduleOptions<I> {
  /** When to fire (Date or epoch ms). A time in the past fires at once. */
  at: Date | number;
}

/** The most missed ticks that `catchUpMissed: true` fires after one late wake-up. */
export const MAX_CATCH_UP = 100;

/** setTimeout fires at once for delays above this (2^31-1 ms, about 24.8 days): longer waits are re-armed. */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** The option names every schedule takes. */
export const COMMON_KEYS = ['id', 'input', 'overlap'] as const;
/** The option names of repeating schedules. */
export const REPEATING_KEYS = [...COMMON_KEYS, 'maxRuns', 'catchUpMissed'] as const;
/** The option names of `scheduleAt`. */
export const CRON_KEYS = [...REPEATING_KEYS, 'cron', 'runAt', 'timezone'];
/** The option names of `scheduleEvery`. */
export const INTERVAL_KEYS = [...REPEATING_KEYS, 'everyMs', 'startAt'];
/** The option names of `scheduleOnce`. */
export const ONCE_KEYS = [...COMMON_KEYS, 'at'];
/** The option names of `new PipelineScheduler(broker, options)`. */
export const SCHEDULER_KEYS = ['overlap', 'logger', 'onError', 'onFire', 'unrefTimers'];

/** What one firing does. */
export type Fire = { type: 'pipeline'; pipeline: PipelineLike; input: JsonValue } | { type: 'function'; fn: ScheduledFunction };

/** One schedule and its state, as the scheduler keeps it. */
export interface Entry {
  readonly id: string;
  readonly kind: ScheduleKind;
  readonly fields: { cron?: string; timezone?: string; everyMs?: number; at?: number; maxRuns?: number };
  readonly fire: Fire;
  /** The first tick strictly after `afterMs`, or null when there is none. */
  readonly next: (afterMs: number) => number | null;
  /** The tick to wait for on resume. */
  readonly resumeAt: () => number | null;
  readonly overlap: OverlapPolicy;
  readonly catchUp: boolean;
  readonly maxRuns: number;
  readonly controller: AbortController;
  /** The schedule as the cluster store keeps it; `null` with local timers. */
  readonly clusterSpec: ClusterScheduleSpec | null;
  timer: NodeJS.Timeout | undefined;
  dueMs: number | null;
  paused: boolean;
  done: boolean;
  lastRunMs: number | null;
  runs: number;
  skipped: number;
  running: number;
  lastError: string | null;
}
