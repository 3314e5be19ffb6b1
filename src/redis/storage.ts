import { throwIfAborted } from '../core/abort.js';
import { loggerOf } from '../core/logger.js';
import { logError } from '../core/log-throttle.js';
import { ErrorCodes, FlowcastError, InvalidArgumentError } from '../core/errors.js';
import { checkKnownKeys, checkNonEmptyString, checkNonNegativeInt, checkObject, checkOneOf, checkPositiveInt, show } from '../core/validate.js';
import type { FlowcastEvent } from '../events/types.js';
import { PIPELINE_STATUSES, type PipelineStatus } from '../tracking/models.js';
import { checkEventGroup, checkMaintenance, type ListPipelinesQuery, type MaintenanceOptions, type TrackingStorage } from '../tracking/storage.js';
import type { AutoStorageOptions } from '../tracking/auto-storage.js';
import { DEFAULT_KEY_PREFIX, checkKeyPrefix } from './keys.js';
import type { PruneResult } from './storage-indexes.js';
import { checkDate, checkEvent, checkStatusObject, isRedisClient } from './storage-checks.js';
import type { RedisClient } from './storage-lua.js';
import { IndexPruner } from './storage-prune.js';
import { deleteEndedBefore, deletePipelineRuns, deleteRun } from './storage-delete.js';
import { listRuns } from './storage-queries.js';
import { StatusWrites } from './storage-writes.js';

export type { RedisClient } from './storage-lua.js';
export type { PruneResult } from './storage-indexes.js';

/** Options of {@link RedisPipelineStorage} (declared in tracking, where `withAutoStorage` takes them too). */
export type RedisPipelineStorageOptions = AutoStorageOptions;

const OPTION_KEYS = ['keyPrefix', 'ttlSeconds', 'gapTimeoutMs', 'pruneIntervalMs', 'pruneOnWrite', 'logger', 'onError', 'logBacked'] as const;

/**
 * Tracking storage in Redis (seed 001 §5.2), shared by every process of a deployment.
 *
 * - **Atomic updates from many workers.** {@link applyEvent} puts the event in the run's
 *   pending buffer and applies the buffered events in seq order with the reducer, then
 *   stores the result with a compare-and-set Lua script; a concurrent writer makes it
 *   read again and retry, so no update is lost. When this process wrote the run last,
 *   an event, or a group of events of one transition ({@link applyEvents}), costs one
 *   round trip. A seq missing below a pending event is read from the run's event log
 *   (`RedisPubSubTransport` with the same `keyPrefix`); without a log, the pending
 *   events wait for it at most `gapTimeoutMs`.
 * - **TTL refreshed on every write**: a run expires `ttlSeconds` after its last write.
 * - **Indexes pruned with their records**: a run deleted or expired leaves the lists at
 *   once (every read checks the record) and its index entries are removed by the reader,
 *   a little on every write (so they stay about as large as the live runs where nothing
 *   reads, see storage-prune.ts) and by a periodic full pass.
 * - **Indexes in the same script call** on a single Redis: a write that changes a run's
 *   status, pipeline, start or end updates the indexes in the script that stores the
 *   record, only when that write succeeds (no extra command, no record without its entries).
 * - **Redis Cluster**: a run's keys share its hash tag; scripts never touch an index (the
 *   indexes are written by separate commands after the record).
 * - The caller owns the connection: {@link close} does not close it.
 *
 * Where to read on: every write path, named, in storage-writes.ts; the list queries in
 * storage-queries.ts; the deletions in storage-delete.ts; the indexes in storage-indexes.ts.
 *
 * @example
 * const redis = new Redis('redis://localhost:6379');
 * const tracking = new PipelineTrackingManager().withStorage(new RedisPipelineStorage(redis, { ttlSeconds: 30 * 86400 }));
 */
export class RedisPipelineStorage implements TrackingStorage {
  /** The key prefix in use. */
  readonly keyPrefix: string;
  /** Seconds a run is kept after its last write. */
  readonly ttlSeconds: number;
  /** How long buffered events wait for a missing seq. */
  readonly gapTimeoutMs: number;
  readonly #redis: RedisClient;
  /** See {@link RedisPipelineStorageOptions.logBacked}. */
  readonly logBacked: boolean;
  readonly #pruner: IndexPruner;
  readonly #writes: StatusWrites;
  #closed = false;

  constructor(redis: RedisClient, options: RedisPipelineStorageOptions = {}) {
    if (!isRedisClient(redis)) throw new InvalidArgumentError(`RedisPipelineStorage(redis): redis must be an ioredis Redis or Cluster client, received ${show(redis)}`);
    const o = checkObject(options, 'RedisPipelineStorage options');
    checkKnownKeys(o, OPTION_KEYS, 'RedisPipelineStorage options');
    this.#redis = redis;
    this.keyPrefix = options.keyPrefix === undefined ? DEFAULT_KEY_PREFIX : checkKeyPrefix(options.keyPrefix);
    this.ttlSeconds = options.ttlSeconds === undefined ? 604_800 : checkPositiveInt(options.ttlSeconds, 'ttlSeconds');
    this.gapTimeoutMs = options.gapTimeoutMs === undefined ? 10_000 : checkNonNegativeInt(options.gapTimeoutMs, 'gapTimeoutMs');
    const intervalMs = options.pruneIntervalMs === undefined ? 60_000 : checkNonNegativeInt(options.pruneIntervalMs, 'pruneIntervalMs');
    for (const name of ['logBacked', 'pruneOnWrite'] as const) {
      if (options[name] !== undefined && typeof options[name] !== 'boolean') throw new InvalidArgumentError(`${name} must be a boolean, received ${show(options[name])}`);
    }
    this.logBacked = options.logBacked ?? false;
    if (options.onError !== undefined && typeof options.onError !== 'function') {
      throw new InvalidArgumentError(`onError must be a function, received ${show(options.onError)}`);
    }
    const logger = loggerOf(options.logger, 'RedisPipelineStorage options.logger');
    const onError = options.onError ?? ((error: Error) => logError(logger, error, 'RedisPipelineStorage: prune'));
    this.#pruner = new IndexPruner(redis, { prefix: this.keyPrefix, ttlSeconds: this.ttlSeconds, intervalMs, onWrite: options.pruneOnWrite ?? true, onError });
    this.#writes = new StatusWrites(redis, { prefix: this.keyPrefix, ttlSeconds: this.ttlSeconds, gapTimeoutMs: this.gapTimeoutMs, logBacked: this.logBacked, pruner: this.#pruner });
  }

  async saveStatus(status: PipelineStatus): Promise<void> {
    this.#open();
    checkStatusObject(status);
    await this.#writes.save(status);
  }

  async getStatus(runId: string): Promise<PipelineStatus | null> {
    this.#open();
    checkNonEmptyString(runId, 'getStatus(runId)');
    return this.#writes.read(runId);
  }

  async listPipelines(query: ListPipelinesQuery = {}): Promise<PipelineStatus[]> {
    this.#open();
    const q = checkObject(query, 'listPipelines(query)');
    checkKnownKeys(q, ['status', 'pipelineId', 'since', 'limit', 'offset'], 'listPipelines(query)');
    const status = query.status === undefined ? undefined : checkOneOf(query.status, PIPELINE_STATUSES, 'status');
    const pipelineId = query.pipelineId === undefined ? undefined : checkNonEmptyString(query.pipelineId, 'pipelineId');
    const since = query.since === undefined ? undefined : checkDate(query.since, 'since');
    const limit = query.limit === undefined ? Infinity : checkPositiveInt(query.limit, 'limit');
    const offset = query.offset === undefined ? 0 : checkNonNegativeInt(query.offset, 'offset');
    // A run whose start was recorded by its index entries alone: read from its log (null when that is gone too).
    return listRuns(this.#redis, this.keyPrefix, { status, pipelineId, since, limit, offset }, (runId) => this.getStatus(runId));
  }

  async getLatest(pipelineId: string): Promise<PipelineStatus | null> {
    this.#open();
    const [latest] = await this.listPipelines({ pipelineId: checkNonEmptyString(pipelineId, 'getLatest(pipelineId)'), limit: 1 });
    return latest ?? null;
  }

  /**
   * See {@link TrackingStorage.deletePipeline}. A pipeline's runs go 1,000 at a time;
   * `options.signal` is checked between round trips.
   */
  async deletePipeline(id: string, options: MaintenanceOptions = {}): Promise<number> {
    this.#open();
    checkNonEmptyString(id, 'deletePipeline(id)');
    const signal = checkMaintenance(options, 'deletePipeline');
    throwIfAborted(signal, 'deletePipeline');
    return deletePipelineRuns(this.#redis, this.keyPrefix, id, signal, (runId, version) => this.#deleteRun(runId, version));
  }

  /**
   * Applies `event` atomically (see {@link TrackingStorage.applyEvent}); safe from any
   * number of processes at once. Resolves with the run's status once `event` is in it,
   * or `null`: a duplicate, an event of a run not started, or an event waiting for an
   * earlier seq that has not arrived yet (it is applied when that one arrives, or after
   * `gapTimeoutMs`).
   */
  async applyEvent(event: FlowcastEvent): Promise<PipelineStatus | null> {
    this.#open();
    checkEvent(event);
    return this.#writes.apply(event);
  }

  /**
   * Applies a group of events of one run (see {@link TrackingStorage.applyEvents}); safe
   * from any number of processes at once. When this process wrote the run last (or the
   * group starts the run) and the group's seqs follow the stored `last_seq` with no gap,
   * the group costs one script call (on a single Redis, the index write when an indexed
   * field changed is in that call; on a Cluster it follows as separate commands).
   * Otherwise (another process wrote since, events pending, a gap) the events go into the
   * run's pending buffer together and are applied as {@link applyEvent} applies one: two
   * script calls for the group, more only on a conflict. Resolves with the status once an
   * event of the group is in it (the status after the last applied one), or `null` when
   * none is: all duplicates, a run not started, or events waiting for an earlier seq.
   */
  async applyEvents(events: FlowcastEvent[]): Promise<PipelineStatus | null> {
    this.#open();
    checkEventGroup(events, 'applyEvents(events)');
    for (const e of events) checkEvent(e);
    return this.#writes.applyGroup(events);
  }

  /**
   * Takes the status `start` gives (as the run's start wrote it, or as a run whose start
   * was recorded without it reads) as what this process wrote last of the run, unless it
   * knows better: its next write of the run then goes out in one call, with the check
   * (the record is absent or holds the start alone) that refuses it when the run moved on
   * (then the write reads the run as usual).
   */
  primeStart(start: FlowcastEvent): void {
    if (this.#closed) return;
    this.#writes.primeStart(start);
  }

  /**
   * See {@link TrackingStorage.cleanupOlderThan}. Runs go 1,000 at a time; `options.signal`
   * is checked between round trips, so an abort stops it within the batch in flight.
   */
  async cleanupOlderThan(cutoff: Date, options: MaintenanceOptions = {}): Promise<number> {
    this.#open();
    const cut = checkDate(cutoff, 'cleanupOlderThan(cutoff)').getTime();
    const signal = checkMaintenance(options, 'cleanupOlderThan');
    return deleteEndedBefore(this.#redis, this.keyPrefix, cut, signal, (runId, version) => this.#deleteRun(runId, version));
  }

  /**
   * One full prune pass now: removes the index entries of runs whose record expired.
   * Writes prune a little each (`pruneOnWrite`) and start a full pass every
   * `pruneIntervalMs` by themselves; call this to run one at a time of your choosing.
   * `options.signal` stops it between round trips (an `AbortedError`).
   */
  async prune(options: MaintenanceOptions = {}): Promise<PruneResult> {
    this.#open();
    const signal = checkMaintenance(options, 'prune');
    throwIfAborted(signal, 'prune');
    return this.#pruner.pass(signal);
  }

  /** Stops using the connection (which stays open: the caller owns it), after the pruning in progress. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#pruner.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #open(): void {
    if (this.#closed) throw new FlowcastError(ErrorCodes.CLOSED, 'RedisPipelineStorage is closed');
  }

  /** Deletes a run (if still at `version`, when given) with its index entries, and forgets what this process wrote of it. */
  #deleteRun(runId: string, version: string): Promise<boolean> {
    this.#writes.forget(runId);
    return deleteRun(this.#redis, this.keyPrefix, runId, version);
  }
}
