/**
 * `PipelineTrackingManager`, tracking's entry point: which storage runs are tracked in
 * (given, or picked for the broker), the listeners, and the queries (status, lists,
 * history, metrics, cleanup). How the engine's events are written to the storage is in
 * `status-recorder.ts`; how a status follows from the events, in `reducer.ts`.
 */
import { throwIfAborted } from '../core/abort.js';
import { ErrorCodes, FlowcastError, InvalidArgumentError, describeError, toError } from '../core/errors.js';
import { checkNonEmptyString, checkNonNegativeInt, checkObject, show } from '../core/validate.js';
import type { FlowcastEvent } from '../events/types.js';
import { findAutoStorage, type AutoStorageOptions } from './auto-storage.js';
import { TrackingListeners, type TrackingEventListener, type TrackingListener } from './listeners.js';
import { InMemoryPipelineStorage } from './memory-storage.js';
import { computeMetrics, type PipelineMetrics } from './metrics.js';
import { isEndedStatus, type PipelineStatus } from './models.js';
import { checkMaintenance, type MaintenanceOptions, type TrackingStorage } from './storage.js';
import { StatusRecorder } from './status-recorder.js';
import { cleanupArgs, cleanupByListing, exportOptions, historyQuery, listQuery, metricsQuery, options, statusJson, DAY_MS, type CleanupOptions, type ExportJsonOptions, type GetHistoryOptions, type ListPipelinesOptions } from './queries.js';

export type { TrackingListener, TrackingEventListener } from './listeners.js';
export type { CleanupOptions, ExportJsonOptions, GetHistoryOptions, ListPipelinesOptions } from './queries.js';

/** Receives listener failures. `context` says which listener method, run and event. */
export type TrackingErrorHandler = (error: Error, context: string) => void;

/** Options of {@link PipelineTrackingManager}. */
export interface PipelineTrackingManagerOptions {
  /** The storage (same as calling `withStorage`). @default none: call withStorage() or withAutoStorage() */
  storage?: TrackingStorage;
  /** Where listener failures go. @default console.error */
  onError?: TrackingErrorHandler;
  /**
   * Longest time, in ms, the events of a running run wait in this process to be written
   * together (one storage write for all of them); a run's start and its end are written
   * at once, before the engine goes on. `0`: every event is written before the engine
   * goes on. Only with a storage that has `applyEvents`.
   *
   * The default is 100 for the `RedisPipelineStorage` that {@link PipelineTrackingManager.withAutoStorage}
   * picks for a Redis broker: it shares the broker's key prefix, and its `getStatus`
   * catches a run up from the run's event log, so a read of one run is never behind what
   * subscribers saw. 0 for every other storage (`withStorage`). Lists (`listPipelines`,
   * `getHistory`) from other processes may show a running run up to this much behind;
   * reads through this manager write what waits here first. See docs/tracking.md,
   * "Coalesced writes".
   * @default 100 with withAutoStorage on a Redis broker, else 0
   */
  writeDelayMs?: number;
}

/** A broker that can make a shared tracking storage (the Redis broker does). */
interface TrackingStorageFactory {
  createTrackingStorage(): TrackingStorage;
}

function defaultOnError(error: Error, context: string): void {
  console.error(`flowcast tracking: ${context} failed: ${describeError(error)}`);
}

/**
 * Records every event of the runs it tracks into a {@link TrackingStorage} and answers
 * queries on them. Attach it with `pipeline.withTracking(tracking)`.
 *
 * @example
 * const tracking = new PipelineTrackingManager().withAutoStorage(broker);
 * const pipeline = new Pipeline(broker).callNext(fetch).withTracking(tracking);
 * const run = await pipeline.kiq(input);
 * await run.waitResult();
 * const status = await tracking.getStatus(run.runId);
 */
export class PipelineTrackingManager {
  #storage: TrackingStorage | null = null;
  /** The storage withAutoStorage() created: the manager closes it. */
  #owned: TrackingStorage | null = null;
  readonly #listeners = new TrackingListeners((error, where) => this.#report(error, where));
  /** Writes the events to the storage and tells the listeners (status-recorder.ts). */
  readonly #recorder = new StatusRecorder(() => this.#require(), this.#listeners, (error, where) => this.#report(error, where));
  /** `writeDelayMs` as given (`undefined`: the storage's default). */
  #writeDelayMs: number | undefined;
  #onError: TrackingErrorHandler = defaultOnError;
  #closed = false;

  /** A manager with the storage and error handler of `opts` (see {@link PipelineTrackingManagerOptions}). */
  constructor(opts: PipelineTrackingManagerOptions = {}) {
    const o = options(opts, ['storage', 'onError', 'writeDelayMs'], 'PipelineTrackingManager options');
    if (o.writeDelayMs !== undefined) this.#writeDelayMs = checkNonNegativeInt(o.writeDelayMs, 'PipelineTrackingManager options.writeDelayMs');
    if (o.storage !== undefined) this.withStorage(opts.storage as TrackingStorage);
    if (o.onError !== undefined) this.onError(opts.onError as TrackingErrorHandler);
  }

  /** Uses `storage` (replacing any previous one). Returns `this`. */
  withStorage(storage: TrackingStorage): this {
    const s = checkObject(storage, 'withStorage(storage)');
    for (const m of ['saveStatus', 'getStatus', 'listPipelines', 'deletePipeline'] as const) {
      if (typeof s[m] !== 'function') {
        throw new InvalidArgumentError(`withStorage(storage): storage must implement TrackingStorage, its ${m} is ${show(s[m])}`);
      }
    }
    this.#storage = storage;
    this.#owned = null;
    this.#recorder.useWriteDelay(storage, this.#writeDelayMs ?? 0);
    return this;
  }

  /**
   * Picks the storage that fits the broker and closes it on {@link close}:
   *
   * - a broker that makes its own (`createTrackingStorage()`): that one;
   * - a broker a registered provider recognises (src/tracking/auto-storage.ts): flowcast/redis
   *   registers one for a broker with an ioredis client as `redis`, as `BullMQBroker` has:
   *   a `RedisPipelineStorage` on that connection, with the broker's `keyPrefix` unless
   *   `options.keyPrefix` says otherwise (the connection stays the broker's);
   * - any other broker: a new {@link InMemoryPipelineStorage}.
   *
   * A broker of kind `"bullmq"` without a usable `redis`, or with a Redis connection while
   * flowcast/redis is not loaded, is refused rather than tracked in one process's memory.
   * `options` apply to the shared storage only. Returns `this`.
   *
   * @example
   * const tracking = new PipelineTrackingManager().withAutoStorage(new BullMQBroker({ connection: 'redis://localhost:6379' }));
   */
  withAutoStorage(broker: object, options: AutoStorageOptions = {}): this {
    const b = checkObject(broker, 'withAutoStorage(broker)');
    checkObject(options, 'withAutoStorage options');
    let storage: TrackingStorage;
    let writeDelayMs = 0;
    if (typeof b.createTrackingStorage === 'function') {
      storage = (broker as TrackingStorageFactory).createTrackingStorage();
    } else {
      const made = findAutoStorage(b, options);
      if (made !== undefined) {
        ({ storage, writeDelayMs } = made);
      } else if (b.kind === 'bullmq' || b.redis !== undefined) {
        // No provider recognised it: flowcast/redis, which provides the Redis storage, is not loaded.
        throw new InvalidArgumentError(`withAutoStorage(broker): the broker has a Redis connection but flowcast/redis is not loaded: import it (it provides the Redis tracking storage), or call withStorage()`);
      } else {
        storage = new InMemoryPipelineStorage();
      }
    }
    this.withStorage(storage);
    this.#owned = storage;
    if (writeDelayMs > 0) this.#recorder.useWriteDelay(storage, this.#writeDelayMs ?? writeDelayMs);
    return this;
  }

  /** The storage in use, or `null`. */
  get storage(): TrackingStorage | null {
    return this.#storage;
  }

  /** Sets where listener failures are reported. Returns `this`. */
  onError(handler: TrackingErrorHandler): this {
    if (typeof handler !== 'function') throw new InvalidArgumentError(`onError(handler): handler must be a function, received ${show(handler)}`);
    this.#onError = handler;
    return this;
  }

  #require(): TrackingStorage {
    if (this.#closed) throw new FlowcastError(ErrorCodes.CLOSED, 'PipelineTrackingManager is closed');
    if (this.#storage === null) {
      throw new FlowcastError(ErrorCodes.NO_STORAGE, 'No tracking storage configured: call withStorage() or withAutoStorage()');
    }
    return this.#storage;
  }

  /**
   * Applies one event to its run's status. The engine calls it for every event of every
   * tracked run, in seq order per run, and awaits it when it returns a promise. With a
   * synchronous `storage.applyEvent` (the in-memory storage) it returns `undefined`
   * without creating a promise.
   */
  record(event: FlowcastEvent): void | Promise<void> {
    return this.#recorder.record(event);
  }

  /**
   * Applies a group of events of one run (usually those one transition of the run
   * produced), in seq order: `events` must be a non-empty array of events of one run with
   * increasing seqs. With `storage.applyEvents` the group is stored in one write (one
   * Redis script call); otherwise each event goes through {@link record}, in order, each
   * awaited before the next. Listeners are called once per applied event, in order, as
   * `record()` would call them. Returns `undefined` without a promise when the storage is
   * synchronous (the in-memory storage), like `record()`.
   *
   * @example
   * await tracking.recordMany([stepComplete, nextStepStart]);
   */
  recordMany(events: FlowcastEvent[]): void | Promise<void> {
    return this.#recorder.recordMany(events);
  }

  /**
   * Passes the engine's rebuilt start of a run this process did not start to the storage
   * (`storage.primeStart`, see TrackingStorage): with the Redis storage, the worker's first
   * write of the run then needs no read. A no-op for other storages.
   */
  primeStart(start: FlowcastEvent): void {
    const storage = this.#require();
    if (typeof start !== 'object' || start === null || start.type !== 'PipelineStartEvent' || start.seq !== 1) {
      throw new InvalidArgumentError(`primeStart(start): start must be a PipelineStartEvent with seq 1, received ${show(start)}`);
    }
    storage.primeStart?.(start);
  }

  #report(error: unknown, where: string): void {
    try {
      this.#onError(toError(error), where);
    } catch (handlerError) {
      // The handler itself failed: the last place left to say so.
      console.error(`flowcast tracking: onError handler threw while reporting ${where}: ${describeError(handlerError)}`);
    }
  }

  /**
   * Adds a listener and returns a function that removes it: an object with some of the
   * {@link TrackingListener} methods (seed 001 §8), or a function (seed 001 §6,
   * `tracking.addListener(broadcaster.onStatusUpdate)`) called with every event of every
   * tracked run once it is stored. Listeners are called in the order they were added.
   *
   * @example
   * const off = tracking.addListener((event) => console.log(event.type, event.seq));
   */
  addListener(listener: TrackingListener | TrackingEventListener): () => void {
    return this.#listeners.add(listener);
  }

  /**
   * The status of a run. `id` is a run id, or a pipeline id: then its latest started run.
   * `null` when unknown.
   */
  async getStatus(id: string): Promise<PipelineStatus | null> {
    const storage = this.#require();
    await this.#written();
    checkNonEmptyString(id, 'getStatus(id): id');
    const byRun = await storage.getStatus(id);
    if (byRun !== null) return byRun;
    if (storage.getLatest !== undefined) return storage.getLatest(id);
    const [latest] = await storage.listPipelines({ pipelineId: id, limit: 1 });
    return latest ?? null;
  }

  /** Runs, newest started first, narrowed by `status`, `pipelineId`, `since` and paged by `limit` / `offset`. */
  async listPipelines(opts: ListPipelinesOptions = {}): Promise<PipelineStatus[]> {
    const storage = this.#require();
    await this.#written();
    return storage.listPipelines(listQuery(opts));
  }

  /** Past runs, newest started first : every run, or only ended ones with `endedOnly`. */
  async getHistory(opts: GetHistoryOptions = {}): Promise<PipelineStatus[]> {
    const storage = this.#require();
    await this.#written();
    const { query, limit, endedOnly } = historyQuery(opts);
    if (!endedOnly) return storage.listPipelines({ ...query, limit });
    const runs = await storage.listPipelines(query);
    return runs.filter((s) => isEndedStatus(s.status)).slice(0, limit);
  }

  /**
   * Deletes ended runs that completed more than `days` ago (fractions allowed); running
   * runs are kept. Resolves with how many were deleted. `signal` stops it: it rejects with
   * an `AbortedError` (`name` `"AbortError"`, code `ABORTED`) within the storage round
   * trip in flight, and what it did not reach stays for the next cleanup.
   *
   * @example
   * scheduler.scheduleAt(async ({ signal }) => tracking.cleanupOlderThan({ days: 7, signal }), { runAt: '0 3 * * *' });
   */
  async cleanupOlderThan(opts: CleanupOptions): Promise<number> {
    const storage = this.#require();
    const { days, signal } = cleanupArgs(opts);
    throwIfAborted(signal, 'cleanupOlderThan');
    await this.#written();
    throwIfAborted(signal, 'cleanupOlderThan');
    const cutoff = new Date(Date.now() - days * DAY_MS);
    if (storage.cleanupOlderThan !== undefined) return storage.cleanupOlderThan(cutoff, signal === undefined ? {} : { signal });
    return cleanupByListing(storage, cutoff, signal);
  }

  /**
   * Deletes a run (run id) or every run of a pipeline (pipeline id). Resolves with how many
   * runs were deleted. `options.signal` stops it, as for {@link cleanupOlderThan}.
   */
  async deletePipeline(id: string, opts: MaintenanceOptions = {}): Promise<number> {
    const storage = this.#require();
    checkNonEmptyString(id, 'deletePipeline(id): id');
    const signal = checkMaintenance(opts, 'deletePipeline');
    throwIfAborted(signal, 'deletePipeline');
    await this.#written();
    throwIfAborted(signal, 'deletePipeline');
    return signal === undefined ? storage.deletePipeline(id) : storage.deletePipeline(id, { signal });
  }

  /** Statistics of the runs started in the last `days` (see {@link computeMetrics}). */
  async getMetrics(opts: { days?: number; pipelineId?: string } = {}): Promise<PipelineMetrics> {
    const storage = this.#require();
    await this.#written();
    const { query, days, now } = metricsQuery(opts);
    const runs = await storage.listPipelines(query);
    return computeMetrics(runs, query.pipelineId === undefined ? { days, now } : { days, now, pipelineId: query.pipelineId });
  }

  /**
   * The status of a run (or a pipeline's latest run) as a JSON string.
   * Throws `NOT_FOUND` when there is none.
   */
  async exportJson(id: string, opts: ExportJsonOptions = {}): Promise<string> {
    const o = exportOptions(opts);
    const status = await this.getStatus(id);
    if (status === null) throw new FlowcastError(ErrorCodes.NOT_FOUND, `exportJson(id): no tracked run or pipeline "${id}"`);
    return statusJson(status, o);
  }

  /** Writes what waits in this process first (`writeDelayMs`), so reads here see every event recorded here. */
  #written(): Promise<void> {
    return this.#recorder.written();
  }

  /**
   * Waits for pending recordings, closes the storage if withAutoStorage() created it (a
   * storage given to withStorage() belongs to the caller), and refuses further use. Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#written();
    this.#closed = true;
    await this.#recorder.settled();
    this.#listeners.clear();
    await this.#owned?.close?.();
  }

  /** Closes the manager (`await using tracking = new PipelineTrackingManager()`), as {@link close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
