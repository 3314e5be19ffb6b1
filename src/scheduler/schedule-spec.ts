/** How schedule options become a schedule: specs, times, targets, and the reports of a firing. */
import { FlowcastError, ErrorCodes, InvalidArgumentError, describeError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { assertJson } from '../core/json.js';
import { show } from '../core/validate.js';
import type { ClusterScheduleSpec } from './cluster.js';
import { parseCron } from './cron.js';
import type { Entry, Fire, PipelineLike, ScheduleInfo, ScheduleKind, ScheduledFunction } from './schedule-types.js';

/** The schedule as a cluster store keeps it. */
export function clusterSpecOf(id: string, kind: ScheduleKind, fields: Spec['fields'], maxRuns: number | undefined, o: { startAt?: unknown }): ClusterScheduleSpec {
  const spec: ClusterScheduleSpec = { id, kind };
  if (fields.cron !== undefined) spec.cron = fields.cron;
  if (fields.timezone !== undefined) spec.timezone = fields.timezone;
  if (fields.everyMs !== undefined) spec.everyMs = fields.everyMs;
  if (fields.at !== undefined) spec.at = fields.at;
  if (maxRuns !== undefined) spec.maxRuns = maxRuns;
  if (kind === 'interval' && o.startAt !== undefined) spec.startAt = toEpochMs(o.startAt, `Schedule "${id}" startAt`);
  return spec;
}

/** A schedule's next-tick function and the fields that describe it. */
export interface Spec {
  fields: Entry['fields'];
  first: number | null;
  next: (afterMs: number) => number | null;
  resumeAt: () => number | null;
}

/** The spec of a cron expression (croner, with an optional IANA timezone). */
export function cronSpec(expr: unknown, timezone: unknown): Spec {
  const ticks = parseCron(expr, timezone);
  const next = ticks.next;
  const fields = ticks.timezone === undefined ? { cron: ticks.cron } : { cron: ticks.cron, timezone: ticks.timezone };
  return { fields, first: next(Date.now()), next, resumeAt: () => next(Date.now()) };
}

/** The spec of a single firing at `at`. */
export function onceSpec(at: unknown, what: string): Spec {
  const ms = toEpochMs(at, what);
  return { fields: { at: ms }, first: ms, next: () => null, resumeAt: () => ms };
}

/** A time (Date, ISO string, epoch ms) in epoch ms, or an InvalidArgumentError. */
export function toEpochMs(value: unknown, what: string): number {
  if (!(value instanceof Date) && typeof value !== 'number') {
    throw new InvalidArgumentError(`${what} must be a Date or epoch milliseconds, received ${show(value)}`);
  }
  const ms = value instanceof Date ? value.getTime() : value;
  if (!Number.isFinite(ms) || Math.abs(ms) > 8.64e15) {
    throw new FlowcastError(ErrorCodes.BAD_SCHEDULE, `${what} is not a valid date (received ${value instanceof Date ? 'Invalid Date' : String(value)})`);
  }
  return ms;
}

/** What a schedule fires: a pipeline-like object with its input, or a function. */
export function toFire(target: unknown, input: unknown, id: string): Fire {
  if (typeof target === 'function') {
    if (input !== undefined) {
      throw new InvalidArgumentError(`Schedule "${id}": input is given to pipeline targets only; a function target receives a context ({ scheduleId, firedAt, scheduledAt, signal })`);
    }
    return { type: 'function', fn: target as ScheduledFunction };
  }
  if (typeof target === 'object' && target !== null && typeof (target as Partial<PipelineLike>).kiq === 'function') {
    const value = input === undefined ? null : input;
    assertJson(value, `Schedule "${id}" input`);
    // A private copy: later changes to the caller's object do not leak into firings.
    return { type: 'pipeline', pipeline: target as PipelineLike, input: structuredClone(value) };
  }
  throw new InvalidArgumentError(`Schedule "${id}": the target must be a function or an object with a kiq(input) method (a Pipeline), received ${show(target)}`);
}

/** The public view of a schedule (`ScheduleInfo`). */
export function toInfo(entry: Entry): ScheduleInfo {
  const { cron, timezone, everyMs, at, maxRuns } = entry.fields;
  return {
    id: entry.id,
    kind: entry.kind,
    ...(cron !== undefined && { cron }),
    ...(timezone !== undefined && { timezone }),
    ...(everyMs !== undefined && { everyMs }),
    ...(at !== undefined && { at: new Date(at) }),
    ...(maxRuns !== undefined && { maxRuns }),
    overlap: entry.overlap,
    paused: entry.paused,
    done: entry.done,
    nextRunAt: entry.dueMs === null ? null : new Date(entry.dueMs),
    lastRunAt: entry.lastRunMs === null ? null : new Date(entry.lastRunMs),
    runs: entry.runs,
    skipped: entry.skipped,
    running: entry.running,
    lastError: entry.lastError,
  };
}

/** `value` if it is a function or undefined. */
export function checkFunction<F>(value: F | undefined, name: string): F | undefined {
  if (value !== undefined && typeof value !== 'function') {
    throw new InvalidArgumentError(`${name} must be a function, received ${show(value)}`);
  }
  return value;
}

/** Runs a user hook; a hook that throws is logged, never allowed to stop a schedule. */
export function safely(logger: Logger, hook: string, id: string, call: () => void): void {
  try {
    call();
  } catch (err) {
    logger.error({ err, schedule: id }, `scheduler: the ${hook} hook threw for schedule "${id}": ${describeError(err)}`);
  }
}

/** Where a failing firing goes without an `onError`: the logger, one line. */
export function defaultOnError(logger: Logger, error: Error, info: ScheduleInfo): void {
  logger.error({ err: error, schedule: info.id }, `scheduler: schedule "${info.id}" (${info.kind}) failed: ${describeError(error)}`);
}
