/**
 * The indexes of {@link RedisPipelineStorage}: sorted sets of run ids, by start time (all
 * runs, per pipeline, per status) and by end time (ended runs).
 *
 * On a single Redis, a write that changes a run's indexed fields updates its index entries
 * in the same script call as the record (the "index block" of {@link indexBlock}, applied
 * by `write_indexes` in storage-lua.ts only when the write succeeded): no command after the
 * script, and no moment where the record is written and its index entries are not. On
 * Redis Cluster the index keys share no hash tag with the run (a script may not touch keys
 * of two slots), so they are written by plain commands after the record ({@link writeIndexes}).
 *
 * Index entries are only ever added by writes; an entry whose run is gone (deleted or
 * expired) or no longer matches (another status, another pipeline) is removed by the
 * reader that meets it and by the prune pass. So a reader never trusts an index alone:
 * it checks every record it returns.
 */
import { throwIfAborted } from '../core/abort.js';
import { PIPELINE_STATUSES, isEndedStatus, type PipelineStatus } from '../tracking/models.js';
import {
  trackEndedIndexKey,
  trackPipelineIndexKey,
  trackPipelinesKey,
  trackRunKey,
  trackStartedIndexKey,
  trackStatusIndexKey,
} from './keys.js';
import type { RedisClient } from './storage-lua.js';

/** The fields of a status that decide its index entries. */
export interface IndexedFields {
  pipelineId: string;
  status: string;
  started: string;
  completed: string | null;
}

/** A status's index fields: `started` is the score (`-inf` for a run that never started). */
export function indexedFields(s: PipelineStatus): IndexedFields {
  const started = s.started_at === null ? NaN : Date.parse(s.started_at);
  const completed = s.completed_at === null || !isEndedStatus(s.status) ? NaN : Date.parse(s.completed_at);
  return {
    pipelineId: s.pipeline_id,
    status: s.status,
    started: Number.isNaN(started) ? '-inf' : String(started),
    completed: Number.isNaN(completed) ? null : String(completed),
  };
}

/** `true` when a write from `before` to `after` must touch the indexes. */
export function indexChanged(before: IndexedFields | null, after: IndexedFields): boolean {
  return (
    before === null ||
    before.pipelineId !== after.pipelineId ||
    before.status !== after.status ||
    before.started !== after.started ||
    before.completed !== after.completed
  );
}

/** Adds a run to every index it belongs to (idempotent). */
export async function addToIndexes(redis: RedisClient, prefix: string, runId: string, f: IndexedFields): Promise<void> {
  const writes: Promise<unknown>[] = [
    redis.zadd(trackStartedIndexKey(prefix), f.started, runId),
    redis.zadd(trackPipelineIndexKey(prefix, f.pipelineId), f.started, runId),
    redis.sadd(trackPipelinesKey(prefix), f.pipelineId),
    redis.zadd(trackStatusIndexKey(prefix, f.status), f.started, runId),
  ];
  if (f.completed !== null) writes.push(redis.zadd(trackEndedIndexKey(prefix), f.completed, runId));
  await Promise.all(writes);
}

/** The indexes a run leaves when its status goes from `before` to `after` (its previous pipeline, status, end). */
export function leftIndexes(prefix: string, before: IndexedFields | null, after: IndexedFields): string[] {
  const leave: string[] = [];
  if (before !== null && before.pipelineId !== after.pipelineId) leave.push(trackPipelineIndexKey(prefix, before.pipelineId));
  if (before !== null && before.status !== after.status) leave.push(trackStatusIndexKey(prefix, before.status));
  if (before?.completed != null && after.completed === null) leave.push(trackEndedIndexKey(prefix));
  return leave;
}

/**
 * The indexes a run may have left when its previous status is not known before the write
 * (saveStatus): every other status's index, and the end-time index when it is not ended.
 * (The previous pipeline's index is known only from the script's reply.)
 */
export function otherIndexes(prefix: string, after: IndexedFields): string[] {
  const leave = PIPELINE_STATUSES.filter((s) => s !== after.status).map((s) => trackStatusIndexKey(prefix, s));
  if (after.completed === null) leave.push(trackEndedIndexKey(prefix));
  return leave;
}

/** The KEYS and ARGV a write script appends to its own to update the run's index entries in the same call. */
export interface IndexBlock {
  keys: string[];
  args: string[];
}

/**
 * The index block of a write (single Redis only: its keys are in many Cluster slots), read
 * by `write_indexes` in storage-lua.ts from the end of the script's KEYS and ARGV:
 *
 * KEYS: the `leave.length` indexes the run leaves (ZREM), then the all-runs, pipeline and
 * status indexes (ZADD by start), the set of pipelines (SADD), and the end-time index when
 * the run ended (ZADD by end).
 * ARGV (always the last 5): run id, start score, pipeline id, end score or '', `leave.length`.
 */
export function indexBlock(prefix: string, runId: string, leave: readonly string[], after: IndexedFields): IndexBlock {
  const keys = [
    ...leave,
    trackStartedIndexKey(prefix),
    trackPipelineIndexKey(prefix, after.pipelineId),
    trackStatusIndexKey(prefix, after.status),
    trackPipelinesKey(prefix),
  ];
  if (after.completed !== null) keys.push(trackEndedIndexKey(prefix));
  return { keys, args: [runId, after.started, after.pipelineId, after.completed ?? '', String(leave.length)] };
}

/** How a compare-and-set write brings a run's index entries from `before` to `after`. */
export interface IndexPlan {
  before: IndexedFields | null;
  after: IndexedFields;
  /** An indexed field changed: the index entries must be written. */
  change: boolean;
  /** Single Redis: the KEYS / ARGV the write's script appends to write them in the same call. `null` on a Cluster or without a change. */
  block: IndexBlock | null;
}

/**
 * Plans the index update of a compare-and-set write from `before` (the index fields of the
 * status the record holds, as the write expects it) to `after`. When an indexed field
 * changes: on a single Redis, an index block for the write's script (the run leaves its
 * previous pipeline, status and end indexes and is added where it belongs now, in the same
 * call, only if the write succeeds); on a Cluster no block, and the caller sends
 * {@link writeIndexes} after the write.
 */
export function planIndexes(cluster: boolean, prefix: string, runId: string, before: IndexedFields | null, after: IndexedFields): IndexPlan {
  const change = indexChanged(before, after);
  const block = change && !cluster ? indexBlock(prefix, runId, leftIndexes(prefix, before, after), after) : null;
  return { before, after, change, block };
}

/** `base` (a script's own KEYS or ARGV) followed by the index block's part, if any. */
export function withBlock<T>(base: T[], block: readonly T[] | undefined): T[] {
  return block === undefined ? base : [...base, ...block];
}

/**
 * Brings a run's index entries from `before` (`null`: none known) to `after` with plain
 * commands, after the record was written: removes it from the indexes it left (pipeline,
 * status, ended) and adds it to those it belongs to. The Redis Cluster path (index keys
 * live in many slots: one command each, written back to back); a single Redis writes the
 * indexes inside the record's script instead ({@link indexBlock}).
 */
export async function writeIndexes(redis: RedisClient, prefix: string, runId: string, before: IndexedFields | null, after: IndexedFields): Promise<void> {
  await Promise.all([...leftIndexes(prefix, before, after).map((key) => redis.zrem(key, runId)), addToIndexes(redis, prefix, runId, after)]);
}

/** Removes a run from the global indexes and, when known, from its pipeline's index. */
export async function removeFromIndexes(redis: RedisClient, prefix: string, runId: string, pipelineId: string | null): Promise<void> {
  const writes: Promise<unknown>[] = [redis.zrem(trackStartedIndexKey(prefix), runId), redis.zrem(trackEndedIndexKey(prefix), runId)];
  for (const s of PIPELINE_STATUSES) writes.push(redis.zrem(trackStatusIndexKey(prefix, s), runId));
  await Promise.all(writes);
  if (pipelineId === null) return;
  const key = trackPipelineIndexKey(prefix, pipelineId);
  await redis.zrem(key, runId);
  // Redis deletes a sorted set that empties: then the pipeline leaves the set of pipelines.
  if ((await redis.exists(key)) === 0) await redis.srem(trackPipelinesKey(prefix), pipelineId);
}

/** Reads the `s` field (status JSON) of many runs; `null` for a run that is gone. */
export async function readStatuses(redis: RedisClient, prefix: string, runIds: readonly string[]): Promise<(string | null)[]> {
  if (redis.isCluster) {
    // A Cluster pipeline must stay in one slot, and every run has its own: one command per run (ioredis writes them back to back).
    return Promise.all(runIds.map((id) => redis.hget(trackRunKey(prefix, id), 's')));
  }
  const pipeline = redis.pipeline();
  for (const id of runIds) pipeline.hget(trackRunKey(prefix, id), 's');
  const replies = (await pipeline.exec()) ?? [];
  return replies.map(([error, value]) => {
    if (error !== null) throw error;
    return typeof value === 'string' ? value : null;
  });
}

/** Options of {@link scanIndex}. */
export interface ScanOptions {
  /** The sorted set to walk, highest score first. */
  key: string;
  /** Lowest score to include (a number as a string, or `-inf`). */
  min: string;
  /** Ids per round trip. */
  batch: number;
  /** Does this record belong in the index? (A `false` removes the entry.) */
  belongs: (status: PipelineStatus) => boolean;
  /**
   * The status of an entry with no record: a run whose start was recorded by its index
   * entries alone (the storage's `logBacked`), read from its log. `null` (or no
   * function): the run is gone, and the entry is removed.
   */
  missing?: (runId: string) => Promise<PipelineStatus | null>;
}

/**
 * Walks an index from the highest score down and yields the parsed status of every entry
 * whose record exists and belongs there; other entries are removed from the index as
 * they are met (the lazy half of pruning). A run seen twice (the index moved under the
 * walk) is yielded once.
 */
export async function* scanIndex(redis: RedisClient, prefix: string, options: ScanOptions): AsyncGenerator<PipelineStatus> {
  const { key, min, batch, belongs, missing } = options;
  const seen = new Set<string>();
  let offset = 0;
  for (;;) {
    const ids = await redis.zrevrangebyscore(key, '+inf', min, 'LIMIT', offset, batch);
    if (ids.length === 0) return;
    const rows = await readStatuses(redis, prefix, ids);
    const gone: string[] = [];
    const stale: string[] = [];
    const found: PipelineStatus[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i] as string;
      const row = rows[i];
      const status = row === null || row === undefined ? ((await missing?.(id)) ?? null) : (JSON.parse(row) as PipelineStatus);
      if (status === null) {
        gone.push(id);
        continue;
      }
      if (!belongs(status)) stale.push(id);
      else if (!seen.has(id)) {
        seen.add(id);
        found.push(status);
      }
    }
    const removals: Promise<unknown>[] = gone.map((id) => removeFromIndexes(redis, prefix, id, null));
    if (stale.length > 0) removals.push(redis.zrem(key, ...stale));
    if (gone.length > 0) removals.push(redis.zrem(key, ...gone));
    await Promise.all(removals);
    // The removed entries were in this page: the next page starts that much earlier.
    offset += ids.length - gone.length - stale.length;
    for (const s of found) yield s;
    if (ids.length < batch) return;
  }
}

/** What one prune pass did. */
export interface PruneResult {
  /** Index entries checked. */
  checked: number;
  /** Index entries removed because their run is gone. */
  removed: number;
}

/**
 * The prune pass: removes index entries whose run record no longer exists. Only entries
 * scored at or below `cutoffMs` can belong to an expired run (a record expires `ttl`
 * after its last write, which is after its start and its end), so only those are checked.
 * `signal` stops the pass between round trips (an `AbortedError`).
 */
export async function pruneIndexes(redis: RedisClient, prefix: string, cutoffMs: number, batch: number, signal?: AbortSignal): Promise<PruneResult> {
  const result: PruneResult = { checked: 0, removed: 0 };
  const stop = (): void => throwIfAborted(signal, 'prune', `checking ${result.checked} index entries`);
  const keys = [trackStartedIndexKey(prefix), trackEndedIndexKey(prefix), ...PIPELINE_STATUSES.map((s) => trackStatusIndexKey(prefix, s))];
  const pipelines = await redis.smembers(trackPipelinesKey(prefix));
  for (const p of pipelines) keys.push(trackPipelineIndexKey(prefix, p));
  for (const key of keys) {
    let offset = 0;
    for (;;) {
      stop();
      const ids = await redis.zrangebyscore(key, '-inf', String(cutoffMs), 'LIMIT', offset, batch);
      if (ids.length === 0) break;
      const exists = await Promise.all(ids.map((id) => redis.exists(trackRunKey(prefix, id))));
      stop();
      const gone = ids.filter((_, i) => exists[i] === 0);
      result.checked += ids.length;
      if (gone.length > 0) {
        await redis.zrem(key, ...gone);
        result.removed += gone.length;
      }
      offset += ids.length - gone.length;
      if (ids.length < batch) break;
    }
  }
  // A pipeline whose index emptied (Redis deletes an empty sorted set) leaves the set of pipelines.
  const left = await Promise.all(pipelines.map((p) => redis.exists(trackPipelineIndexKey(prefix, p))));
  const empty = pipelines.filter((_, i) => left[i] === 0);
  if (empty.length > 0) await redis.srem(trackPipelinesKey(prefix), ...empty);
  return result;
}
