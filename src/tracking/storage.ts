import { checkSignal } from '../core/abort.js';
import { InvalidArgumentError } from '../core/errors.js';
import { checkKnownKeys, checkObject, show } from '../core/validate.js';
import type { FlowcastEvent } from '../events/types.js';
import type { PipelineRunStatus, PipelineStatus } from './models.js';

/** A query of {@link TrackingStorage.listPipelines}. Every field narrows the result; all are optional. */
export interface ListPipelinesQuery {
  /** Only runs with this status. */
  status?: PipelineRunStatus;
  /** Only runs of this pipeline. */
  pipelineId?: string;
  /** Only runs that started at or after this time. */
  since?: Date;
  /** At most this many runs. @default no limit */
  limit?: number;
  /** Skip this many runs of the ordered result first. @default 0 */
  offset?: number;
}

/**
 * Options of the long-running maintenance calls of a storage (`deletePipeline`,
 * `cleanupOlderThan`). A storage checks `signal` between its round trips and rejects with
 * an `AbortedError` (`name` `"AbortError"`, code `ABORTED`) once it is aborted, leaving
 * what it did not reach in place.
 */
export interface MaintenanceOptions {
  /** Stops the call. @default none */
  signal?: AbortSignal;
}

/**
 * Where tracked runs live (seed 001 §5.3, the `TrackingStorage` protocol). Four methods
 * are required; a storage with only those works fully with {@link PipelineTrackingManager},
 * which then records through a per-run serialised `getStatus` → `applyEvent` → `saveStatus`.
 *
 * The optional methods let a storage be faster or atomic; the manager uses each one when
 * present. Every storage passes the conformance suite of `test/conformance/tracking-storage.ts`.
 *
 * Statuses returned by queries must be copies: changing one must not change the store.
 */
export interface TrackingStorage {
  /** Inserts or replaces the status of `status.run_id`. */
  saveStatus(status: PipelineStatus): Promise<void>;
  /** The status of one run, or `null`. */
  getStatus(runId: string): Promise<PipelineStatus | null>;
  /** Runs matching `query`, newest started first (runs that never started last), then paged by `offset` / `limit`. */
  listPipelines(query?: ListPipelinesQuery): Promise<PipelineStatus[]>;
  /**
   * Removes a run (when `id` is a run id) or every run of a pipeline (when `id` is a
   * pipeline id and no run has that id). Resolves with how many runs were removed.
   * `options.signal` stops it (see {@link MaintenanceOptions}); a storage written before
   * it existed may ignore it.
   */
  deletePipeline(id: string, options?: MaintenanceOptions): Promise<number>;

  /**
   * Atomically reads the run's status, applies `event` with the reducer's semantics
   * ({@link applyEvent}) and stores it. Returns the new status, or `null` when nothing
   * was applied: a duplicate (`event.seq <= last_seq`), or a non-start event of an
   * unknown run. May be synchronous (the in-memory storage is, to keep promises off the
   * engine's hot path). The returned object may be the stored one: callers must not change it.
   */
  applyEvent?(event: FlowcastEvent): PipelineStatus | null | Promise<PipelineStatus | null>;
  /**
   * Applies a group of events of ONE run, in increasing seq order (usually consecutive: the
   * events one transition of the run produced), with the same effect as calling
   * {@link applyEvent} for each in order: duplicates are skipped, a non-start event of an
   * unknown run is ignored, an event past a gap waits as `applyEvent` would make it wait.
   * Lets a storage store the group in one write (the Redis storage: one script call).
   *
   * Returns the status after the last applied event of the group, or `null` when none was
   * applied. Rejects (or throws, when synchronous) an {@link InvalidArgumentError} when
   * `events` is not a non-empty array of events of one run with increasing seqs. May be
   * synchronous, like `applyEvent`; the returned object may be the stored one.
   */
  applyEvents?(events: FlowcastEvent[]): PipelineStatus | null | Promise<PipelineStatus | null>;
  /**
   * A hint from a process about to record events of a run it did not start: `start` is
   * the run's `PipelineStartEvent` (seq 1) rebuilt from the run's state. A storage that
   * keeps what it last wrote of a run may take the status `start` gives (as written once,
   * by the start) as its starting point instead of reading; it must still check it on its
   * next write (the Redis storage's compare-and-set does). Must not throw.
   */
  primeStart?(start: FlowcastEvent): void;
  /** The newest started run of `pipelineId`, or `null`. */
  getLatest?(pipelineId: string): Promise<PipelineStatus | null>;
  /**
   * Removes ended runs whose `completed_at` is before `cutoff`; running runs stay.
   * Resolves with how many were removed. `options.signal` stops it (see {@link MaintenanceOptions}).
   */
  cleanupOlderThan?(cutoff: Date, options?: MaintenanceOptions): Promise<number>;
  /** Releases what the storage opened. Idempotent. */
  close?(): Promise<void>;
}

/**
 * Checks a group of events for {@link TrackingStorage.applyEvents} and
 * `PipelineTrackingManager.recordMany`: a non-empty array of event objects of one run
 * (`run_id` a non-empty string) whose `seq`s (integers >= 1) strictly increase. Throws an
 * {@link InvalidArgumentError} naming `where` and the offending value; returns `events`.
 */
export function checkEventGroup(events: unknown, where: string): FlowcastEvent[] {
  if (!Array.isArray(events)) throw new InvalidArgumentError(`${where}: events must be an array of events, received ${show(events)}`);
  if (events.length === 0) throw new InvalidArgumentError(`${where}: events must not be empty`);
  let runId: string | null = null;
  let previous = 0;
  for (let i = 0; i < events.length; i++) {
    const e: unknown = events[i];
    if (typeof e !== 'object' || e === null) throw new InvalidArgumentError(`${where}: events[${i}] must be a FlowcastEvent, received ${show(e)}`);
    const { run_id: id, seq, type } = e as Record<string, unknown>;
    if (typeof type !== 'string' || type === '') throw new InvalidArgumentError(`${where}: events[${i}].type must be a non-empty string, received ${show(type)}`);
    if (typeof id !== 'string' || id === '') throw new InvalidArgumentError(`${where}: events[${i}].run_id must be a non-empty string, received ${show(id)}`);
    if (typeof seq !== 'number' || !Number.isInteger(seq) || seq < 1) {
      throw new InvalidArgumentError(`${where}: events[${i}].seq must be an integer >= 1, received ${show(seq)}`);
    }
    if (runId === null) runId = id;
    else if (id !== runId) throw new InvalidArgumentError(`${where}: events must all be of one run: events[0] is of run "${runId}", events[${i}] of run "${id}"`);
    if (seq <= previous) throw new InvalidArgumentError(`${where}: seqs must increase: events[${i}].seq is ${seq} after ${previous}`);
    previous = seq;
  }
  return events as FlowcastEvent[];
}

/** Checks the {@link MaintenanceOptions} of `method` and returns its signal (if any). */
export function checkMaintenance(options: unknown, method: string): AbortSignal | undefined {
  const name = `${method} options`;
  const o = checkObject(options, name);
  checkKnownKeys(o, ['signal'], name);
  return checkSignal(o.signal, `${name}.signal`);
}
