/**
 * The deletions of {@link RedisPipelineStorage} (write path DELETE of storage-writes.ts):
 * one run with its index entries, a pipeline's runs, and the runs that ended before a
 * cutoff. The walks go {@link SCAN_BATCH} runs at a time and check their signal between
 * round trips.
 */
import { throwIfAborted } from '../core/abort.js';
import { isEndedStatus, type PipelineStatus } from '../tracking/models.js';
import { trackEndedIndexKey, trackPendingKey, trackPipelineIndexKey, trackPipelinesKey, trackRunKey } from './keys.js';
import { removeFromIndexes } from './storage-indexes.js';
import { DELETE, type RedisClient } from './storage-lua.js';
import { SCAN_BATCH } from './storage-queries.js';

/** Deletes one run (if still at `version`; any version when `''`). Resolves to whether it was there. */
export type DeleteRun = (runId: string, version: string) => Promise<boolean>;

/** Deletes a run (if still at `version`, when given) with its index entries. */
export async function deleteRun(redis: RedisClient, prefix: string, runId: string, version: string): Promise<boolean> {
  const keys = [trackRunKey(prefix, runId), trackPendingKey(prefix, runId)];
  const json = (await DELETE.run(redis, keys, [version])) as string | null;
  if (json === null) return false;
  // '': a start recorded without its status (logBacked); its pipeline's index entry goes when a list meets it.
  await removeFromIndexes(redis, prefix, runId, json === '' ? null : (JSON.parse(json) as PipelineStatus).pipeline_id);
  return true;
}

/** Deletes the run `id`, else every run of the pipeline `id`. Resolves to the runs deleted. */
export async function deletePipelineRuns(redis: RedisClient, prefix: string, id: string, signal: AbortSignal | undefined, remove: DeleteRun): Promise<number> {
  if (await remove(id, '')) return 1;
  const indexKey = trackPipelineIndexKey(prefix, id);
  let deleted = 0;
  for (;;) {
    throwIfAborted(signal, 'deletePipeline', `deleting ${deleted} runs`);
    const ids = await redis.zrange(indexKey, 0, SCAN_BATCH - 1);
    if (ids.length === 0) break;
    const rows = await Promise.all(ids.map((runId) => redis.hget(trackRunKey(prefix, runId), 's')));
    throwIfAborted(signal, 'deletePipeline', `deleting ${deleted} runs`);
    const results = await Promise.all(
      ids.map(async (runId, i) => {
        const row = rows[i];
        // No status: gone, or a start recorded without it (logBacked: in this pipeline's index, so of this pipeline).
        if (typeof row === 'string' && (JSON.parse(row) as PipelineStatus).pipeline_id !== id) return false;
        return remove(runId, '');
      }),
    );
    deleted += results.filter(Boolean).length;
    await redis.zrem(indexKey, ...ids);
  }
  await redis.srem(trackPipelinesKey(prefix), id);
  return deleted;
}

/** Deletes the runs that ended before `cut` (ms since the epoch), each only if unchanged since read. Resolves to the runs deleted. */
export async function deleteEndedBefore(redis: RedisClient, prefix: string, cut: number, signal: AbortSignal | undefined, remove: DeleteRun): Promise<number> {
  const key = trackEndedIndexKey(prefix);
  let removed = 0;
  let offset = 0;
  for (;;) {
    throwIfAborted(signal, 'cleanupOlderThan', `deleting ${removed} runs`);
    const ids = await redis.zrangebyscore(key, '-inf', `(${cut}`, 'LIMIT', offset, SCAN_BATCH);
    if (ids.length === 0) break;
    const rows = await Promise.all(ids.map((id) => redis.hmget(trackRunKey(prefix, id), 'v', 's')));
    throwIfAborted(signal, 'cleanupOlderThan', `deleting ${removed} runs`);
    let kept = 0;
    await Promise.all(
      ids.map(async (id, i) => {
        const [version, json] = rows[i] ?? [null, null];
        const s = typeof json === 'string' ? (JSON.parse(json) as PipelineStatus) : null;
        if (s === null) {
          await removeFromIndexes(redis, prefix, id, null);
          return;
        }
        const done = isEndedStatus(s.status) && s.completed_at !== null && Date.parse(s.completed_at) < cut;
        // Deleted only if unchanged since read: a run restarted meanwhile stays.
        if (done && (await remove(id, version ?? ''))) removed++;
        else kept++;
      }),
    );
    offset += kept;
    if (ids.length < SCAN_BATCH) break;
  }
  throwIfAborted(signal, 'cleanupOlderThan', `deleting ${removed} runs`);
  return removed;
}
