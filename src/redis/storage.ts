import { throwIfAborted } from '../core/abort.js';
import { loggerOf } from '../core/logger.js';
import { logError } from '../core/log-throttle.js';
import { ErrorCodes, FlowcastError, InvalidArgumentError } from '../core/errors.js';
import { checkKnownKeys, checkNonEmptyString, checkNonNegativeInt, checkObject, checkOneOf, checkPositiveInt, show } from '../core/validate.js';
import type { FlowcastEvent } from '../events/types.js';
import { PIPELINE_STATUSES, isEndedStatus, type PipelineStatus } from '../tracking/models.js';
import { applyEvent } from '../tracking/reducer.js';
import { checkEventGroup, checkMaintenance, type ListPipelinesQuery, type MaintenanceOptions, type TrackingStorage } from '../tracking/storage.js';
import type { AutoStorageOptions } from '../tracking/auto-storage.js';
import {
  DEFAULT_KEY_PREFIX,
  checkKeyPrefix,
  runLogKey,
  trackEndedIndexKey,
  trackPendingKey,
  trackPipelineIndexKey,
  trackPipelinesKey,
  trackRunKey,
  trackStartedIndexKey,
  trackStatusIndexKey,
} from './keys.js';
import {
  indexBlock,
  indexedFields,
  otherIndexes,
  planIndexes,
  removeFromIndexes,
  scanIndex,
  withBlock,
  writeIndexes,
  type IndexPlan,
  type IndexedFields,
  type PruneResult,
} from './storage-indexes.js';
import { checkDate, checkEvent, checkStatusObject, isRedisClient, newestStartedFirst } from './storage-checks.js';
import { COMMIT, DELETE, FAST_APPLY, READ_AT, FAST_APPLY_GROUP, INDEX_ONLY, OFFER, OFFER_MANY, SAVE, type RedisClient } from './storage-lua.js';
import { drainPending, parseOffer, type Loaded } from './storage-pending.js';
import { IndexPruner } from './storage-prune.js';

export type { RedisClient } from './storage-lua.js';
export type { PruneResult } from './storage-indexes.js';

/** Options of {@link RedisPipelineStorage} (declared in tracking, where `withAutoStorage` takes them too). */
export type RedisPipelineStorageOptions = AutoStorageOptions;

const OPTION_KEYS = ['keyPrefix', 'ttlSeconds', 'gapTimeoutMs', 'pruneIntervalMs', 'pruneOnWrite', 'logger', 'onError', 'logBacked'] as const;
/**
 * The write paths, all Lua scripts of storage-lua.ts, each atomic on the run's keys
 * (`<prefix>{<run_id>}:track`, its pending buffer, and its index entries):
 *
 * 1. **SAVE** (`saveStatus`): a whole status, written as given; indexes follow it.
 * 2. **FAST_APPLY** (`applyEvent`, one round trip): this process wrote the run last and
 *    holds that status and its record version: it applies the event here and stores the
 *    result if the record is still at that version (compare-and-set), else falls to 4.
 * 3. **FAST_APPLY_GROUP** (`applyEvents`): the same for the events of one transition
 *    (one write for several events), after a **READ_AT** when nothing is cached.
 * 4. **OFFER / OFFER_MANY, then COMMIT** (the general path): the event goes into the run's
 *    pending buffer; the buffered events are drained in seq order with the reducer (a
 *    missing seq is read from the run's log, see `logBacked`) and the result is stored
 *    with a compare-and-set, retried on a concurrent writer.
 * 5. **INDEX_ONLY** (`primeStart` / a start with `logBacked`): a run's start is recorded
 *    by its index entries alone; reads build its status from its log until a later write.
 *
 * **DELETE** (`deletePipeline`, `cleanupOlderThan`) removes a run (if still at the version
 * read) with its index entries.
 */

/** The record version of a run with no record yet (versions count writes from 1). */
const NO_RECORD_VERSION = '0';
/** Events of a run with no record yet wait at most this long (or the TTL, if shorter) for its start. */
const ORPHAN_TTL_SECONDS = 3600;
/** Run ids read per round trip by list queries. */
const SCAN_BATCH = 1000;
/** Compare-and-set attempts before applyEvent gives up. */
const MAX_ATTEMPTS = 1000;
/** Running runs whose last written status a storage keeps for the one-round-trip path. */
const CACHED_RUNS = 1000;

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
  readonly #orphanTtl: number;
  #closed = false;
  /** run id → the version and status this process wrote last (insertion order: oldest first). */
  readonly #cache = new Map<string, { version: string; status: PipelineStatus }>();

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
    this.#orphanTtl = Math.min(this.ttlSeconds, ORPHAN_TTL_SECONDS);
  }

  async saveStatus(status: PipelineStatus): Promise<void> {
    this.#open();
    checkStatusObject(status);
    const runId = status.run_id;
    this.#cache.delete(runId);
    const prefix = this.keyPrefix;
    const after = indexedFields(status);
    // Every entry is written again (repairs one a reader removed meanwhile). The previous
    // status is known only once the script ran: on a single Redis the run leaves every other
    // status's index (and the end-time index when it is not ended) in the same call.
    const block = this.#redis.isCluster ? null : indexBlock(prefix, runId, otherIndexes(prefix, after), after);
    const keys = withBlock([trackRunKey(prefix, runId)], block?.keys);
    const args = withBlock<string | number>([JSON.stringify(status), status.last_seq, this.ttlSeconds], block?.args);
    const previous = (await SAVE.run(this.#redis, keys, args)) as string | null;
    const before = previous === null ? null : indexedFields(JSON.parse(previous) as PipelineStatus);
    if (block === null) await writeIndexes(this.#redis, prefix, runId, before, after);
    // A status moved to another pipeline (rare): its previous pipeline's index key was not known before the script.
    else if (before !== null && before.pipelineId !== after.pipelineId) await this.#redis.zrem(trackPipelineIndexKey(prefix, before.pipelineId), runId);
    this.#pruner.wrote(after);
  }

  async getStatus(runId: string): Promise<PipelineStatus | null> {
    this.#open();
    checkNonEmptyString(runId, 'getStatus(runId)');
    const loaded = await this.#offer(runId, 0, '');
    if (loaded === null) return null;
    // Events held back by a gap that timed out, or left by a writer that stopped before it
    // stored them (the next seq is waiting), are applied by whoever looks next.
    const status = loaded.status;
    if (loaded.pending.size > 0 && (loaded.waitedMs >= this.gapTimeoutMs || loaded.pending.has((status?.last_seq ?? 0) + 1))) {
      return (await this.#settle(runId, [], loaded)).status;
    }
    return loaded.status;
  }

  async listPipelines(query: ListPipelinesQuery = {}): Promise<PipelineStatus[]> {
    this.#open();
    const q = checkObject(query, 'listPipelines(query)');
    checkKnownKeys(q, ['status', 'pipelineId', 'since', 'limit', 'offset'], 'listPipelines(query)');
    const status = query.status === undefined ? undefined : checkOneOf(query.status, PIPELINE_STATUSES, 'status');
    const pipelineId = query.pipelineId === undefined ? undefined : checkNonEmptyString(query.pipelineId, 'pipelineId');
    const since = query.since === undefined ? undefined : checkDate(query.since, 'since');
    const limit = query.limit === undefined ? Infinity : checkPositiveInt(query.limit, 'limit');
    let skip = query.offset === undefined ? 0 : checkNonNegativeInt(query.offset, 'offset');
    const prefix = this.keyPrefix;
    // The most selective index that fits: the pipeline's, else the status's, else all runs.
    const key =
      pipelineId !== undefined
        ? trackPipelineIndexKey(prefix, pipelineId)
        : status !== undefined
          ? trackStatusIndexKey(prefix, status)
          : trackStartedIndexKey(prefix);
    const sinceMs = since?.getTime();
    const out: PipelineStatus[] = [];
    const scan = scanIndex(this.#redis, prefix, {
      key,
      min: sinceMs === undefined ? '-inf' : String(sinceMs),
      batch: Number.isFinite(limit) ? Math.min(SCAN_BATCH, limit + skip) : SCAN_BATCH,
      belongs: (s) => (pipelineId === undefined || s.pipeline_id === pipelineId) && (pipelineId !== undefined || status === undefined || s.status === status),
      // A run whose start was recorded by its index entries alone: read from its log (null when that is gone too).
      missing: (runId) => this.getStatus(runId),
    });
    for await (const s of scan) {
      if (status !== undefined && s.status !== status) continue;
      if (sinceMs !== undefined && (s.started_at === null || Date.parse(s.started_at) < sinceMs)) continue;
      if (skip > 0) {
        skip--;
        continue;
      }
      out.push(s);
      if (out.length >= limit) break;
    }
    // The index order is by start time; ties and entries moved under the walk are put right here.
    return out.sort(newestStartedFirst);
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
    if (await this.#deleteRun(id, '')) return 1;
    const prefix = this.keyPrefix;
    const indexKey = trackPipelineIndexKey(prefix, id);
    let deleted = 0;
    for (;;) {
      throwIfAborted(signal, 'deletePipeline', `deleting ${deleted} runs`);
      const ids = await this.#redis.zrange(indexKey, 0, SCAN_BATCH - 1);
      if (ids.length === 0) break;
      const rows = await Promise.all(ids.map((runId) => this.#redis.hget(trackRunKey(prefix, runId), 's')));
      throwIfAborted(signal, 'deletePipeline', `deleting ${deleted} runs`);
      const results = await Promise.all(
        ids.map(async (runId, i) => {
          const row = rows[i];
          // No status: gone, or a start recorded without it (logBacked: in this pipeline's index, so of this pipeline).
          if (typeof row === 'string' && (JSON.parse(row) as PipelineStatus).pipeline_id !== id) return false;
          return this.#deleteRun(runId, '');
        }),
      );
      deleted += results.filter(Boolean).length;
      await this.#redis.zrem(indexKey, ...ids);
    }
    await this.#redis.srem(trackPipelinesKey(prefix), id);
    return deleted;
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
    const runId = event.run_id;
    const json = JSON.stringify(event);
    let loaded: Loaded | null;
    // The fast path: this process wrote the run last (or the event starts a new run); apply
    // here, store in one round trip if nobody wrote since.
    const cached = this.#cache.get(runId) ?? (event.type === 'PipelineStartEvent' && event.seq === 1 ? { version: NO_RECORD_VERSION, status: null } : undefined);
    if (cached !== undefined && event.seq === (cached.status?.last_seq ?? 0) + 1) {
      this.#cache.delete(runId);
      // Before the reducer, which may change the status it is given in place.
      const before = cached.status === null ? null : indexedFields(cached.status);
      const next = applyEvent(cached.status, event) as PipelineStatus;
      const plan = this.#indexPlan(runId, before, next);
      const keys = withBlock([trackRunKey(this.keyPrefix, runId), trackPendingKey(this.keyPrefix, runId), runLogKey(this.keyPrefix, runId)], plan.block?.keys);
      const args = withBlock<string | number>([event.seq, json, this.ttlSeconds, this.#orphanTtl, cached.version, JSON.stringify(next)], plan.block?.args);
      const reply = (await FAST_APPLY.run(this.#redis, keys, args)) as unknown[];
      if (reply[0] === 2) {
        this.#remember(runId, String(reply[1]), next);
        await this.#afterWrite(runId, plan);
        return next;
      }
      loaded = parseOffer(reply);
    } else {
      loaded = await this.#offer(runId, event.seq, json);
    }
    if (loaded === null) return null;
    const { status, own } = await this.#settle(runId, [event.seq], loaded);
    return own ? status : null;
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
    const first = events[0] as FlowcastEvent;
    const runId = first.run_id;
    if (this.logBacked && events.length === 1 && first.type === 'PipelineStartEvent' && first.seq === 1 && !this.#cache.has(runId)) {
      return this.#indexStart(first);
    }
    let cached = this.#cache.get(runId) ?? (first.type === 'PipelineStartEvent' && first.seq === 1 ? { version: NO_RECORD_VERSION, status: null } : undefined);
    const last = events[events.length - 1] as FlowcastEvent;
    // Increasing seqs (checked) spanning exactly length - 1: consecutive.
    const consecutive = last.seq - first.seq === events.length - 1;
    if (cached === undefined && consecutive && first.seq > 1) {
      // Another process wrote the run last: read its status (only if the group continues
      // it), then the same compare-and-set as the fast path. Two light calls.
      const read = (await READ_AT.run(this.#redis, [trackRunKey(this.keyPrefix, runId), trackPendingKey(this.keyPrefix, runId)], [first.seq - 1])) as [string, string] | null;
      if (read !== null) cached = { version: String(read[0]), status: JSON.parse(read[1]) as PipelineStatus };
    }
    if (cached !== undefined && first.seq === (cached.status?.last_seq ?? 0) + 1 && consecutive) {
      this.#cache.delete(runId);
      // Before the reducer, which may change the status it is given in place.
      const before = cached.status === null ? null : indexedFields(cached.status);
      // Based on the start alone (primed, or this process's start write): checked by last_seq, and a run not written yet is at that base too.
      const startBase = cached.status?.last_seq === 1 ? '1' : '0';
      let next = cached.status;
      for (const e of events) next = applyEvent(next, e);
      // Not null: the group starts the run, or follows a stored status.
      const status = next as PipelineStatus;
      const plan = this.#indexPlan(runId, before, status);
      const keys = withBlock([trackRunKey(this.keyPrefix, runId), trackPendingKey(this.keyPrefix, runId)], plan.block?.keys);
      const args = withBlock<string | number>([cached.version, JSON.stringify(status), last.seq, this.ttlSeconds, startBase], plan.block?.args);
      const version = (await FAST_APPLY_GROUP.run(this.#redis, keys, args)) as number;
      if (version !== 0) {
        this.#remember(runId, String(version), status);
        await this.#afterWrite(runId, plan);
        return status;
      }
      // Refused: the record moved (another writer) or events are pending; nothing was written.
    }
    // Any other case: every event into the pending buffer in one call, then one settle (as
    // many applyEvent calls would do, in two round trips for the whole group).
    const keys = [trackRunKey(this.keyPrefix, runId), trackPendingKey(this.keyPrefix, runId), runLogKey(this.keyPrefix, runId)];
    const args: (string | number)[] = [this.ttlSeconds, this.#orphanTtl];
    for (const e of events) args.push(e.seq, JSON.stringify(e));
    const loaded = parseOffer(await OFFER_MANY.run(this.#redis, keys, args));
    if (loaded === null) return null;
    // The group's events that were not duplicates when offered (the record was read in the same script).
    const stored = loaded.status?.last_seq ?? 0;
    const own = events.map((e) => e.seq).filter((seq) => seq > stored);
    const settled = await this.#settle(runId, own, loaded);
    return settled.own ? settled.status : null;
  }

  /**
   * The start of a run of a `logBacked` storage: its index entries alone, no record (the
   * status is read from the run's log until a later write stores it). Remembered as this
   * process's base for the run's next write (no record yet: version 0, last_seq 1).
   */
  async #indexStart(start: FlowcastEvent): Promise<PipelineStatus | null> {
    const status = applyEvent(null, start);
    if (status === null) return null;
    const runId = start.run_id;
    const plan = this.#indexPlan(runId, null, status);
    const keys = withBlock([trackRunKey(this.keyPrefix, runId)], plan.block?.keys);
    await INDEX_ONLY.run(this.#redis, keys, withBlock<string | number>([this.ttlSeconds], plan.block?.args));
    this.#remember(runId, NO_RECORD_VERSION, status);
    await this.#afterWrite(runId, plan);
    return status;
  }

  /**
   * Takes the status `start` gives (as the run's start wrote it, or as a run whose start
   * was recorded without it reads) as what this process wrote last of the run, unless it
   * knows better: its next write of the run then goes out in one call, with the check
   * (the record is absent or holds the start alone) that refuses it when the run moved on
   * (then the write reads the run as usual).
   */
  primeStart(start: FlowcastEvent): void {
    if (this.#closed || start.type !== 'PipelineStartEvent' || start.seq !== 1 || this.#cache.has(start.run_id)) return;
    const status = applyEvent(null, start);
    if (status !== null) this.#remember(start.run_id, '1', status);
  }

  /**
   * See {@link TrackingStorage.cleanupOlderThan}. Runs go 1,000 at a time; `options.signal`
   * is checked between round trips, so an abort stops it within the batch in flight.
   */
  async cleanupOlderThan(cutoff: Date, options: MaintenanceOptions = {}): Promise<number> {
    this.#open();
    const cut = checkDate(cutoff, 'cleanupOlderThan(cutoff)').getTime();
    const signal = checkMaintenance(options, 'cleanupOlderThan');
    const prefix = this.keyPrefix;
    const key = trackEndedIndexKey(prefix);
    let removed = 0;
    let offset = 0;
    for (;;) {
      throwIfAborted(signal, 'cleanupOlderThan', `deleting ${removed} runs`);
      const ids = await this.#redis.zrangebyscore(key, '-inf', `(${cut}`, 'LIMIT', offset, SCAN_BATCH);
      if (ids.length === 0) break;
      const rows = await Promise.all(ids.map((id) => this.#redis.hmget(trackRunKey(prefix, id), 'v', 's')));
      throwIfAborted(signal, 'cleanupOlderThan', `deleting ${removed} runs`);
      let kept = 0;
      await Promise.all(
        ids.map(async (id, i) => {
          const [version, json] = rows[i] ?? [null, null];
          const s = typeof json === 'string' ? (JSON.parse(json) as PipelineStatus) : null;
          if (s === null) {
            await removeFromIndexes(this.#redis, prefix, id, null);
            return;
          }
          const done = isEndedStatus(s.status) && s.completed_at !== null && Date.parse(s.completed_at) < cut;
          // Deleted only if unchanged since read: a run restarted meanwhile stays.
          if (done && (await this.#deleteRun(id, version ?? ''))) removed++;
          else kept++;
        }),
      );
      offset += kept;
      if (ids.length < SCAN_BATCH) break;
    }
    throwIfAborted(signal, 'cleanupOlderThan', `deleting ${removed} runs`);
    return removed;
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

  /** Keeps the status this process just wrote, for the fast path of the run's next event. */
  #remember(runId: string, version: string, status: PipelineStatus): void {
    this.#cache.delete(runId);
    if (isEndedStatus(status.status)) return;
    this.#cache.set(runId, { version, status });
    if (this.#cache.size > CACHED_RUNS) this.#cache.delete(this.#cache.keys().next().value as string);
  }

  #open(): void {
    if (this.#closed) throw new FlowcastError(ErrorCodes.CLOSED, 'RedisPipelineStorage is closed');
  }

  #offer(runId: string, seq: number, json: string): Promise<Loaded | null> {
    const keys = [trackRunKey(this.keyPrefix, runId), trackPendingKey(this.keyPrefix, runId), runLogKey(this.keyPrefix, runId)];
    return OFFER.run(this.#redis, keys, [seq, json, this.ttlSeconds, this.#orphanTtl]).then(parseOffer);
  }

  /**
   * Applies the run's pending events that can go now (in seq order; past a gap only once
   * it timed out) and stores the result with a compare-and-set, reading again on a
   * conflict. `own` tells whether one of the events `seqs` (the caller's) is in the
   * resulting status.
   */
  async #settle(runId: string, seqs: readonly number[], first: Loaded): Promise<{ status: PipelineStatus | null; own: boolean }> {
    let loaded: Loaded | null = first;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      if (loaded === null) return { status: null, own: false };
      const ownApplied = (l: Loaded): boolean => l.status !== null && seqs.some((seq) => !l.pending.has(seq) && seq <= (l.status as PipelineStatus).last_seq);
      // Before drainPending, which applies the events to the loaded status in place. The
      // compare-and-set below holds only if the record is still the one read: `before` is exact.
      const before = loaded.status === null ? null : indexedFields(loaded.status);
      const reflected = ownApplied(loaded);
      const drained = drainPending(loaded, this.gapTimeoutMs);
      if (drained === null) return { status: loaded.status, own: reflected };
      const plan = this.#indexPlan(runId, before, drained.status);
      const keys = withBlock([trackRunKey(this.keyPrefix, runId), trackPendingKey(this.keyPrefix, runId)], plan.block?.keys);
      const args = withBlock<string | number>([loaded.version, JSON.stringify(drained.status), drained.status.last_seq, this.ttlSeconds, ...drained.remove], plan.block?.args);
      const version = (await COMMIT.run(this.#redis, keys, args)) as number;
      if (version !== 0) {
        this.#remember(runId, String(version), drained.status);
        await this.#afterWrite(runId, plan);
        return { status: drained.status, own: reflected || seqs.some((seq) => drained.applied.has(seq)) };
      }
      loaded = await this.#offer(runId, 0, '');
    }
    throw new FlowcastError(ErrorCodes.CONFLICT, `applyEvent: gave up after ${MAX_ATTEMPTS} attempts: run "${runId}" changed under every one`);
  }

  /** {@link planIndexes} of a write of this storage. */
  #indexPlan(runId: string, before: IndexedFields | null, status: PipelineStatus): IndexPlan {
    return planIndexes(this.#redis.isCluster, this.keyPrefix, runId, before, indexedFields(status));
  }

  /** After a successful write: the index commands a Cluster needs (the script could not write them), and the pruning writes call for. */
  async #afterWrite(runId: string, plan: IndexPlan): Promise<void> {
    if (plan.change && plan.block === null) await writeIndexes(this.#redis, this.keyPrefix, runId, plan.before, plan.after);
    this.#pruner.wrote(plan.change ? plan.after : null);
  }

  /** Deletes a run (if still at `version`, when given) with its index entries. */
  async #deleteRun(runId: string, version: string): Promise<boolean> {
    this.#cache.delete(runId);
    const keys = [trackRunKey(this.keyPrefix, runId), trackPendingKey(this.keyPrefix, runId)];
    const json = (await DELETE.run(this.#redis, keys, [version])) as string | null;
    if (json === null) return false;
    // '': a start recorded without its status (logBacked); its pipeline's index entry goes when a list meets it.
    await removeFromIndexes(this.#redis, this.keyPrefix, runId, json === '' ? null : (JSON.parse(json) as PipelineStatus).pipeline_id);
    return true;
  }
}
