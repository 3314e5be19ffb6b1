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
   */
  deletePipeline(id: string): Promise<number>;

  /**
   * Atomically reads the run's status, applies `event` with the reducer's semantics
   * ({@link applyEvent}) and stores it. Returns the new status, or `null` when nothing
   * was applied: a duplicate (`event.seq <= last_seq`), or a non-start event of an
   * unknown run. May be synchronous (the in-memory storage is, to keep promises off the
   * engine's hot path). The returned object may be the stored one: callers must not change it.
   */
  applyEvent?(event: FlowcastEvent): PipelineStatus | null | Promise<PipelineStatus | null>;
  /** The newest started run of `pipelineId`, or `null`. */
  getLatest?(pipelineId: string): Promise<PipelineStatus | null>;
  /** Removes ended runs whose `completed_at` is before `cutoff`; running runs stay. Resolves with how many were removed. */
  cleanupOlderThan?(cutoff: Date): Promise<number>;
  /** Releases what the storage opened. Idempotent. */
  close?(): Promise<void>;
}
