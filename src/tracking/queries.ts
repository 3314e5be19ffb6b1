/**
 * The queries of `PipelineTrackingManager` as plain functions: their options, checked
 * (fail closed: an unknown or malformed option is refused), turned into a storage query,
 * and what is done with the answer where no storage does it itself.
 */
import { checkSignal, throwIfAborted } from '../core/abort.js';
import { InvalidArgumentError } from '../core/errors.js';
import { checkKnownKeys, checkNonEmptyString, checkNonNegativeInt, checkObject, checkOneOf, checkPositiveInt, checkPositiveNumber, show } from '../core/validate.js';
import { PIPELINE_STATUSES, isEndedStatus, type PipelineRunStatus, type PipelineStatus } from './models.js';
import type { ListPipelinesQuery, TrackingStorage } from './storage.js';

/** Options of {@link PipelineTrackingManager.listPipelines}. */
export interface ListPipelinesOptions {
  /** Only runs with this status. */
  status?: PipelineRunStatus;
  /** The seed's name for `status` (`status_filter`). */
  statusFilter?: PipelineRunStatus;
  /** Only runs of this pipeline. */
  pipelineId?: string;
  /** Only runs started at or after this time (a Date, an ISO string or epoch ms). */
  since?: Date | string | number;
  /** At most this many runs (an integer >= 1). @default no limit */
  limit?: number;
  /** Skip this many runs first. @default 0 */
  offset?: number;
}

/** Options of {@link PipelineTrackingManager.getHistory}. */
export interface GetHistoryOptions {
  /** At most this many runs. @default 100 */
  limit?: number;
  /** Only runs started at or after this time. @default no bound */
  since?: Date | string | number;
  /** Only ended runs (COMPLETED, FAILED, CANCELLED). @default false */
  endedOnly?: boolean;
  /** Only runs of this pipeline. */
  pipelineId?: string;
}

/** Options of {@link PipelineTrackingManager.cleanupOlderThan}. */
export interface CleanupOptions {
  /** Runs that ended more than this many days ago are deleted (> 0, fractions allowed). */
  days: number;
  /** Stops the cleanup (see {@link MaintenanceOptions}). @default none */
  signal?: AbortSignal;
}

/** Options of {@link PipelineTrackingManager.exportJson}. */
export interface ExportJsonOptions {
  /** Keep `result` of the run and of its steps (large results can be left out). @default true */
  includeResult?: boolean;
  /** Keep the run's `input`. @default true */
  includeInput?: boolean;
  /** Indentation of the JSON. @default 2 */
  indent?: number;
}

/** A day in milliseconds. */
export const DAY_MS = 86_400_000;

/** A Date from a Date, an ISO string or epoch ms; anything else is refused. */
export function toDate(value: unknown, name: string): Date {
  const d = value instanceof Date ? new Date(value.getTime()) : typeof value === 'string' || typeof value === 'number' ? new Date(value) : null;
  if (d === null || Number.isNaN(d.getTime())) {
    throw new InvalidArgumentError(`${name} must be a valid Date, ISO string or epoch milliseconds, received ${show(value)}`);
  }
  return d;
}

/** `value` as an options object with only the `known` keys. */
export function options(value: unknown, known: readonly string[], name: string): Record<string, unknown> {
  const o = checkObject(value, name);
  checkKnownKeys(o, known, name);
  return o;
}

/** The storage query of `listPipelines(opts)`. */
export function listQuery(opts: ListPipelinesOptions): ListPipelinesQuery {
  const o = options(opts, ['status', 'statusFilter', 'pipelineId', 'since', 'limit', 'offset'], 'listPipelines options');
  if (o.status !== undefined && o.statusFilter !== undefined && o.status !== o.statusFilter) {
    throw new InvalidArgumentError(`listPipelines options: status ${show(o.status)} and statusFilter ${show(o.statusFilter)} disagree`);
  }
  const query: ListPipelinesQuery = {};
  const status = o.status ?? o.statusFilter;
  if (status !== undefined) query.status = checkOneOf(status, PIPELINE_STATUSES, o.status !== undefined ? 'status' : 'statusFilter');
  if (o.pipelineId !== undefined) query.pipelineId = checkNonEmptyString(o.pipelineId, 'pipelineId');
  if (o.since !== undefined) query.since = toDate(o.since, 'since');
  if (o.limit !== undefined) query.limit = checkPositiveInt(o.limit, 'limit');
  if (o.offset !== undefined) query.offset = checkNonNegativeInt(o.offset, 'offset');
  return query;
}

/** The storage query of `getHistory(opts)`, its limit, and whether only ended runs count. */
export function historyQuery(opts: GetHistoryOptions): { query: ListPipelinesQuery; limit: number; endedOnly: boolean } {
  const o = options(opts, ['limit', 'since', 'endedOnly', 'pipelineId'], 'getHistory options');
  const limit = o.limit === undefined ? 100 : checkPositiveInt(o.limit, 'limit');
  const endedOnly = o.endedOnly ?? false;
  if (typeof endedOnly !== 'boolean') throw new InvalidArgumentError(`endedOnly must be a boolean, received ${show(endedOnly)}`);
  const query: ListPipelinesQuery = {};
  if (o.since !== undefined) query.since = toDate(o.since, 'since');
  if (o.pipelineId !== undefined) query.pipelineId = checkNonEmptyString(o.pipelineId, 'pipelineId');
  return { query, limit, endedOnly };
}

/** The checked arguments of `cleanupOlderThan(opts)`. */
export function cleanupArgs(opts: CleanupOptions): { days: number; signal: AbortSignal | undefined } {
  const o = options(opts, ['days', 'signal'], 'cleanupOlderThan options');
  const days = checkPositiveNumber(o.days, 'days');
  const signal = checkSignal(o.signal, 'cleanupOlderThan options.signal');
  return { days, signal };
}

/** `cleanupOlderThan` for a storage without its own: lists every run and deletes the ended ones before `cutoff`. */
export async function cleanupByListing(storage: TrackingStorage, cutoff: Date, signal: AbortSignal | undefined): Promise<number> {
  let deleted = 0;
  for (const s of await storage.listPipelines()) {
    throwIfAborted(signal, 'cleanupOlderThan', `deleting ${deleted} runs`);
    if (!isEndedStatus(s.status) || s.completed_at === null || Date.parse(s.completed_at) >= cutoff.getTime()) continue;
    deleted += await storage.deletePipeline(s.run_id);
  }
  return deleted;
}

/** The storage query of `getMetrics(opts)`, over the last `days` (default 7) until `now`. */
export function metricsQuery(opts: { days?: number; pipelineId?: string }): { query: ListPipelinesQuery; days: number; now: Date } {
  const o = options(opts, ['days', 'pipelineId'], 'getMetrics options');
  const days = o.days === undefined ? 7 : checkPositiveNumber(o.days, 'days');
  const now = new Date();
  const query: ListPipelinesQuery = { since: new Date(now.getTime() - days * DAY_MS) };
  if (o.pipelineId !== undefined) query.pipelineId = checkNonEmptyString(o.pipelineId, 'pipelineId');
  return { query, days, now };
}

/** The checked options of `exportJson`, with their defaults. */
export function exportOptions(opts: ExportJsonOptions): Required<ExportJsonOptions> {
  const o = options(opts, ['includeResult', 'includeInput', 'indent'], 'exportJson options');
  const includeResult = o.includeResult ?? true;
  const includeInput = o.includeInput ?? true;
  if (typeof includeResult !== 'boolean') throw new InvalidArgumentError(`includeResult must be a boolean, received ${show(includeResult)}`);
  if (typeof includeInput !== 'boolean') throw new InvalidArgumentError(`includeInput must be a boolean, received ${show(includeInput)}`);
  const indent = o.indent === undefined ? 2 : checkNonNegativeInt(o.indent, 'indent');
  return { includeResult, includeInput, indent };
}

/** A status as `exportJson` writes it. */
export function statusJson(status: PipelineStatus, o: Required<ExportJsonOptions>): string {
  const out: Record<string, unknown> = { ...status };
  if (!o.includeResult) {
    delete out.result;
    out.steps = status.steps.map(({ result: _result, ...rest }) => rest);
  }
  if (!o.includeInput) delete out.input;
  return JSON.stringify(out, null, o.indent);
}
