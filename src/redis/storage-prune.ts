/**
 * Pruning the indexes of {@link RedisPipelineStorage} as runs expire. A run's record
 * expires by its TTL, but its index entries have no TTL (a long run must stay listed),
 * and an expiry has no event to hook on: without pruning, a deployment that only writes
 * (workers, no one listing runs) would keep every run id it ever saw.
 *
 * - **On write, bounded work per write.** Every write that adds index entries counts;
 *   after {@link STEP_EVERY} such writes, one background step checks at most
 *   {@link PER_WRITE} entries per write per index it counts for: the oldest entries of
 *   the all-runs index and of the pipelines written to, from a cursor, scored at or below
 *   now − TTL (only those can belong to an expired run: a record expires a TTL after its
 *   last write, which is after its start). An entry whose record is gone leaves the
 *   index: from the all-runs index with its status and end-time entries, from a pipeline
 *   index alone (a gone record does not say its pipeline). A few pipelines picked at
 *   random from the set of pipelines are checked too, so the index of a pipeline that is
 *   no longer written to (a pipeline id per run, say) empties and leaves the set. The
 *   cursor steps over live runs older than the TTL (long runs) and starts over at the
 *   end, so no entry is missed for good. So the indexes hold about the live runs, and a
 *   write never waits for pruning.
 * - **A full pass** ({@link pruneIndexes}) every `pruneIntervalMs`, and on demand.
 */
import { PIPELINE_STATUSES } from '../tracking/models.js';
import { trackEndedIndexKey, trackPipelineIndexKey, trackPipelinesKey, trackRunKey, trackStartedIndexKey, trackStatusIndexKey } from './keys.js';
import { pruneIndexes, type IndexedFields, type PruneResult } from './storage-indexes.js';
import type { RedisClient } from './storage-lua.js';

/** Writes that add index entries between two steps. */
export const STEP_EVERY = 16;
/** Entries a step checks per counted write, per index the write counts for. */
export const PER_WRITE = 2;
/** Most entries one step checks in one index. */
const MAX_PER_INDEX = 1000;
/** Pipelines picked at random per counted write (their index is checked in the next step). */
const PROBES_PER_WRITE = 0.5;
/** Most pipelines picked at random in one step. */
const MAX_PROBES = 256;
/** Most pipelines whose cursor a pruner keeps. */
const MAX_CURSORS = 10_000;

/** Options of {@link IndexPruner}. */
export interface IndexPrunerOptions {
  prefix: string;
  ttlSeconds: number;
  /** Full pass at most this often, started by a write; 0: never by itself. */
  intervalMs: number;
  /** Steps on write (see the module comment). */
  onWrite: boolean;
  onError: (error: Error) => void;
}

/** One index a step checks: its key, how many entries at most, and whether it is the all-runs index. */
interface Target {
  key: string;
  budget: number;
  /** `null` for the all-runs index, else the pipeline. */
  pipelineId: string | null;
}

/** The pruning of one storage: counts its writes and runs the steps and passes they call for. */
export class IndexPruner {
  readonly #redis: RedisClient;
  readonly #o: IndexPrunerOptions;
  #lastPass = Date.now();
  #writes = 0;
  /** Writes per pipeline since the last step. */
  #pipelines = new Map<string, number>();
  /** Pipelines picked at random by the last step. */
  #probes: string[] = [];
  /** Index key → how many live entries at its old end the next step steps over. */
  readonly #cursors = new Map<string, number>();
  #running: Promise<void> | null = null;
  #closed = false;

  constructor(redis: RedisClient, options: IndexPrunerOptions) {
    this.#redis = redis;
    this.#o = options;
  }

  /** A write succeeded; `added`: the index fields it wrote entries for (`null`: it wrote none). */
  wrote(added: IndexedFields | null): void {
    if (this.#closed) return;
    if (added !== null && this.#o.onWrite) {
      this.#writes++;
      this.#pipelines.set(added.pipelineId, (this.#pipelines.get(added.pipelineId) ?? 0) + 1);
    }
    if (this.#running !== null) return;
    const now = Date.now();
    if (this.#o.intervalMs > 0 && now - this.#lastPass >= this.#o.intervalMs) {
      this.#lastPass = now;
      this.#background(pruneIndexes(this.#redis, this.#o.prefix, now - this.#o.ttlSeconds * 1000, MAX_PER_INDEX).then(() => undefined));
    } else if (this.#writes >= STEP_EVERY) {
      this.#background(this.#step());
    }
  }

  /** A full pass now; `signal` stops it between round trips (an `AbortedError`). */
  pass(signal?: AbortSignal): Promise<PruneResult> {
    this.#lastPass = Date.now();
    return pruneIndexes(this.#redis, this.#o.prefix, Date.now() - this.#o.ttlSeconds * 1000, MAX_PER_INDEX, signal);
  }

  /** Stops starting work; resolves once the work running ended. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#running;
  }

  #background(work: Promise<void>): void {
    const running = work.then(
      () => undefined,
      (error: unknown) => this.#o.onError(error instanceof Error ? error : new Error(String(error))),
    );
    this.#running = running;
    void running.then(() => {
      if (this.#running === running) this.#running = null;
    });
  }

  /** One step: checks the old end of the indexes the writes since the last step count for. */
  async #step(): Promise<void> {
    const prefix = this.#o.prefix;
    const writes = this.#writes;
    const pipelines = this.#pipelines;
    const probes = this.#probes;
    this.#writes = 0;
    this.#pipelines = new Map();
    const targets: Target[] = [{ key: trackStartedIndexKey(prefix), budget: Math.min(MAX_PER_INDEX, writes * PER_WRITE), pipelineId: null }];
    for (const [pipelineId, n] of pipelines) targets.push({ key: trackPipelineIndexKey(prefix, pipelineId), budget: Math.min(MAX_PER_INDEX, n * PER_WRITE), pipelineId });
    for (const pipelineId of probes) if (!pipelines.has(pipelineId)) targets.push({ key: trackPipelineIndexKey(prefix, pipelineId), budget: PER_WRITE, pipelineId });
    const cutoff = String(Date.now() - this.#o.ttlSeconds * 1000);
    const redis = this.#redis;
    const [picked, ...pages] = await Promise.all([
      redis.srandmember(trackPipelinesKey(prefix), Math.min(MAX_PROBES, Math.ceil(writes * PROBES_PER_WRITE))),
      ...targets.map((t) => redis.zrangebyscore(t.key, '-inf', cutoff, 'LIMIT', this.#cursors.get(t.key) ?? 0, t.budget)),
    ]);
    this.#probes = picked;
    const candidates = [...new Set(pages.flat())];
    if (candidates.length === 0) {
      for (const t of targets) this.#cursors.delete(t.key);
      return;
    }
    const exists = await Promise.all(candidates.map((id) => redis.exists(trackRunKey(prefix, id))));
    const gone = new Set(candidates.filter((_, i) => exists[i] === 0));
    const removals: Promise<unknown>[] = [];
    const emptied: string[] = [];
    targets.forEach((t, i) => {
      const page = pages[i] ?? [];
      const dead = page.filter((id) => gone.has(id));
      // Past the end of the old entries: start over from the oldest next time.
      if (page.length < t.budget) this.#cursors.delete(t.key);
      else this.#cursors.set(t.key, (this.#cursors.get(t.key) ?? 0) + page.length - dead.length);
      if (dead.length === 0) return;
      if (t.pipelineId === null) {
        for (const key of [t.key, trackEndedIndexKey(prefix), ...PIPELINE_STATUSES.map((s) => trackStatusIndexKey(prefix, s))]) removals.push(redis.zrem(key, ...dead));
      } else {
        emptied.push(t.pipelineId);
        removals.push(redis.zrem(t.key, ...dead));
      }
    });
    await Promise.all(removals);
    if (this.#cursors.size > MAX_CURSORS) this.#cursors.clear();
    // A pipeline whose index emptied (Redis deletes an empty sorted set) leaves the set of pipelines.
    if (emptied.length > 0) {
      const left = await Promise.all(emptied.map((p) => redis.exists(trackPipelineIndexKey(prefix, p))));
      const empty = emptied.filter((_, i) => left[i] === 0);
      if (empty.length > 0) await redis.srem(trackPipelinesKey(prefix), ...empty);
    }
  }
}
