/**
 * Every write of {@link RedisPipelineStorage} to a run's status, named here in one place.
 * Each is a Lua script of storage-lua.ts, atomic on the run's keys
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
 * read) with its index entries: see storage-delete.ts.
 */
import { ErrorCodes, FlowcastError } from '../core/errors.js';
import type { FlowcastEvent } from '../events/types.js';
import { isEndedStatus, type PipelineStatus } from '../tracking/models.js';
import { applyEvent } from '../tracking/reducer.js';
import { runLogKey, trackPendingKey, trackPipelineIndexKey, trackRunKey } from './keys.js';
import { indexBlock, indexedFields, otherIndexes, planIndexes, withBlock, writeIndexes, type IndexPlan, type IndexedFields } from './storage-indexes.js';
import { COMMIT, FAST_APPLY, FAST_APPLY_GROUP, INDEX_ONLY, OFFER, OFFER_MANY, READ_AT, SAVE, type RedisClient } from './storage-lua.js';
import { drainPending, parseOffer, type Loaded } from './storage-pending.js';
import type { IndexPruner } from './storage-prune.js';

/** The record version of a run with no record yet (versions count writes from 1). */
const NO_RECORD_VERSION = '0';
/** Events of a run with no record yet wait at most this long (or the TTL, if shorter) for its start. */
const ORPHAN_TTL_SECONDS = 3600;
/** Compare-and-set attempts before applyEvent gives up. */
const MAX_ATTEMPTS = 1000;
/** Running runs whose last written status a storage keeps for the one-round-trip path. */
const CACHED_RUNS = 1000;

/** The settings of a storage its writes follow (checked by the storage). */
export interface StatusWritesOptions {
  /** The key prefix. */
  prefix: string;
  /** Seconds a run is kept after its last write. */
  ttlSeconds: number;
  /** How long buffered events wait for a missing seq. */
  gapTimeoutMs: number;
  /** Whether a run's start is recorded by its index entries alone (write path 5). */
  logBacked: boolean;
  /** Told of every write (it prunes a little on each). */
  pruner: IndexPruner;
}

/** The write paths of one storage, and the statuses this process wrote last (for the fast paths). */
export class StatusWrites {
  readonly #redis: RedisClient;
  readonly #prefix: string;
  readonly #ttlSeconds: number;
  readonly #gapTimeoutMs: number;
  readonly #logBacked: boolean;
  readonly #pruner: IndexPruner;
  readonly #orphanTtl: number;
  /** run id → the version and status this process wrote last (insertion order: oldest first). */
  readonly #cache = new Map<string, { version: string; status: PipelineStatus }>();

  /** Writes through `redis` (the caller's connection). */
  constructor(redis: RedisClient, options: StatusWritesOptions) {
    this.#redis = redis;
    this.#prefix = options.prefix;
    this.#ttlSeconds = options.ttlSeconds;
    this.#gapTimeoutMs = options.gapTimeoutMs;
    this.#logBacked = options.logBacked;
    this.#pruner = options.pruner;
    this.#orphanTtl = Math.min(options.ttlSeconds, ORPHAN_TTL_SECONDS);
  }

  /** Write path 1 (SAVE): a whole status, as given. */
  async save(status: PipelineStatus): Promise<void> {
    const runId = status.run_id;
    this.#cache.delete(runId);
    const prefix = this.#prefix;
    const after = indexedFields(status);
    // Every entry is written again (repairs one a reader removed meanwhile). The previous
    // status is known only once the script ran: on a single Redis the run leaves every other
    // status's index (and the end-time index when it is not ended) in the same call.
    const block = this.#redis.isCluster ? null : indexBlock(prefix, runId, otherIndexes(prefix, after), after);
    const keys = withBlock([trackRunKey(prefix, runId)], block?.keys);
    const args = withBlock<string | number>([JSON.stringify(status), status.last_seq, this.#ttlSeconds], block?.args);
    const previous = (await SAVE.run(this.#redis, keys, args)) as string | null;
    const before = previous === null ? null : indexedFields(JSON.parse(previous) as PipelineStatus);
    if (block === null) await writeIndexes(this.#redis, prefix, runId, before, after);
    // A status moved to another pipeline (rare): its previous pipeline's index key was not known before the script.
    else if (before !== null && before.pipelineId !== after.pipelineId) await this.#redis.zrem(trackPipelineIndexKey(prefix, before.pipelineId), runId);
    this.#pruner.wrote(after);
  }

  /**
   * A run's status as stored; events held back by a gap that timed out, or left by a
   * writer that stopped before it stored them (the next seq is waiting), are applied by
   * whoever looks next (write path 4).
   */
  async read(runId: string): Promise<PipelineStatus | null> {
    const loaded = await this.#offer(runId, 0, '');
    if (loaded === null) return null;
    const status = loaded.status;
    if (loaded.pending.size > 0 && (loaded.waitedMs >= this.#gapTimeoutMs || loaded.pending.has((status?.last_seq ?? 0) + 1))) {
      return (await this.#settle(runId, [], loaded)).status;
    }
    return loaded.status;
  }

  /** One event (checked): write path 2, else 4. See `RedisPipelineStorage.applyEvent`. */
  async apply(event: FlowcastEvent): Promise<PipelineStatus | null> {
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
      const keys = withBlock([trackRunKey(this.#prefix, runId), trackPendingKey(this.#prefix, runId), runLogKey(this.#prefix, runId)], plan.block?.keys);
      const args = withBlock<string | number>([event.seq, json, this.#ttlSeconds, this.#orphanTtl, cached.version, JSON.stringify(next)], plan.block?.args);
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

  /** The events of one transition (checked): write path 5, 3 or 4. See `RedisPipelineStorage.applyEvents`. */
  async applyGroup(events: FlowcastEvent[]): Promise<PipelineStatus | null> {
    const first = events[0] as FlowcastEvent;
    const runId = first.run_id;
    if (this.#logBacked && events.length === 1 && first.type === 'PipelineStartEvent' && first.seq === 1 && !this.#cache.has(runId)) {
      return this.#indexStart(first);
    }
    let cached = this.#cache.get(runId) ?? (first.type === 'PipelineStartEvent' && first.seq === 1 ? { version: NO_RECORD_VERSION, status: null } : undefined);
    const last = events[events.length - 1] as FlowcastEvent;
    // Increasing seqs (checked) spanning exactly length - 1: consecutive.
    const consecutive = last.seq - first.seq === events.length - 1;
    if (cached === undefined && consecutive && first.seq > 1) {
      // Another process wrote the run last: read its status (only if the group continues
      // it), then the same compare-and-set as the fast path. Two light calls.
      const read = (await READ_AT.run(this.#redis, [trackRunKey(this.#prefix, runId), trackPendingKey(this.#prefix, runId)], [first.seq - 1])) as [string, string] | null;
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
      const keys = withBlock([trackRunKey(this.#prefix, runId), trackPendingKey(this.#prefix, runId)], plan.block?.keys);
      const args = withBlock<string | number>([cached.version, JSON.stringify(status), last.seq, this.#ttlSeconds, startBase], plan.block?.args);
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
    const keys = [trackRunKey(this.#prefix, runId), trackPendingKey(this.#prefix, runId), runLogKey(this.#prefix, runId)];
    const args: (string | number)[] = [this.#ttlSeconds, this.#orphanTtl];
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
   * Takes the status `start` gives as what this process wrote last of the run, unless it
   * knows better. See `RedisPipelineStorage.primeStart`.
   */
  primeStart(start: FlowcastEvent): void {
    if (start.type !== 'PipelineStartEvent' || start.seq !== 1 || this.#cache.has(start.run_id)) return;
    const status = applyEvent(null, start);
    if (status !== null) this.#remember(start.run_id, '1', status);
  }

  /** Forgets what this process wrote of the run (it is being deleted). */
  forget(runId: string): void {
    this.#cache.delete(runId);
  }

  /**
   * Write path 5: the start of a run of a `logBacked` storage, its index entries alone, no
   * record (the status is read from the run's log until a later write stores it).
   * Remembered as this process's base for the run's next write (no record yet: version
   * 0, last_seq 1).
   */
  async #indexStart(start: FlowcastEvent): Promise<PipelineStatus | null> {
    const status = applyEvent(null, start);
    if (status === null) return null;
    const runId = start.run_id;
    const plan = this.#indexPlan(runId, null, status);
    const keys = withBlock([trackRunKey(this.#prefix, runId)], plan.block?.keys);
    await INDEX_ONLY.run(this.#redis, keys, withBlock<string | number>([this.#ttlSeconds], plan.block?.args));
    this.#remember(runId, NO_RECORD_VERSION, status);
    await this.#afterWrite(runId, plan);
    return status;
  }

  /** Keeps the status this process just wrote, for the fast path of the run's next event. */
  #remember(runId: string, version: string, status: PipelineStatus): void {
    this.#cache.delete(runId);
    if (isEndedStatus(status.status)) return;
    this.#cache.set(runId, { version, status });
    if (this.#cache.size > CACHED_RUNS) this.#cache.delete(this.#cache.keys().next().value as string);
  }

  #offer(runId: string, seq: number, json: string): Promise<Loaded | null> {
    const keys = [trackRunKey(this.#prefix, runId), trackPendingKey(this.#prefix, runId), runLogKey(this.#prefix, runId)];
    return OFFER.run(this.#redis, keys, [seq, json, this.#ttlSeconds, this.#orphanTtl]).then(parseOffer);
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
      const drained = drainPending(loaded, this.#gapTimeoutMs);
      if (drained === null) return { status: loaded.status, own: reflected };
      const plan = this.#indexPlan(runId, before, drained.status);
      const keys = withBlock([trackRunKey(this.#prefix, runId), trackPendingKey(this.#prefix, runId)], plan.block?.keys);
      const args = withBlock<string | number>([loaded.version, JSON.stringify(drained.status), drained.status.last_seq, this.#ttlSeconds, ...drained.remove], plan.block?.args);
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
    return planIndexes(this.#redis.isCluster, this.#prefix, runId, before, indexedFields(status));
  }

  /** After a successful write: the index commands a Cluster needs (the script could not write them), and the pruning writes call for. */
  async #afterWrite(runId: string, plan: IndexPlan): Promise<void> {
    if (plan.change && plan.block === null) await writeIndexes(this.#redis, this.#prefix, runId, plan.before, plan.after);
    this.#pruner.wrote(plan.change ? plan.after : null);
  }
}
