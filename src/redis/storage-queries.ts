/**
 * The list queries of {@link RedisPipelineStorage}: which index a query walks (the most
 * selective that fits), and the filters, offset and limit applied on the way.
 */
import type { PipelineRunStatus, PipelineStatus } from '../tracking/models.js';
import { trackPipelineIndexKey, trackStartedIndexKey, trackStatusIndexKey } from './keys.js';
import { newestStartedFirst } from './storage-checks.js';
import { scanIndex } from './storage-indexes.js';
import type { RedisClient } from './storage-lua.js';

/** Run ids read per round trip by list queries (and by the deletions that walk an index). */
export const SCAN_BATCH = 1000;

/** A list query, checked: `limit` is `Infinity` when none was given, `offset` 0. */
export interface RunQuery {
  /** Only runs in this status. */
  status: PipelineRunStatus | undefined;
  /** Only runs of this pipeline. */
  pipelineId: string | undefined;
  /** Only runs started at or after this time. */
  since: Date | undefined;
  /** Most runs returned. */
  limit: number;
  /** Runs skipped first. */
  offset: number;
}

/**
 * The runs a query selects, newest start first. `missing` reads a run whose start was
 * recorded by its index entries alone (`logBacked`): from its log, `null` when that is
 * gone too.
 */
export async function listRuns(
  redis: RedisClient,
  prefix: string,
  query: RunQuery,
  missing: (runId: string) => Promise<PipelineStatus | null>,
): Promise<PipelineStatus[]> {
  const { status, pipelineId, since, limit } = query;
  let skip = query.offset;
  // The most selective index that fits: the pipeline's, else the status's, else all runs.
  const key =
    pipelineId !== undefined
      ? trackPipelineIndexKey(prefix, pipelineId)
      : status !== undefined
        ? trackStatusIndexKey(prefix, status)
        : trackStartedIndexKey(prefix);
  const sinceMs = since?.getTime();
  const out: PipelineStatus[] = [];
  const scan = scanIndex(redis, prefix, {
    key,
    min: sinceMs === undefined ? '-inf' : String(sinceMs),
    batch: Number.isFinite(limit) ? Math.min(SCAN_BATCH, limit + skip) : SCAN_BATCH,
    belongs: (s) => (pipelineId === undefined || s.pipeline_id === pipelineId) && (pipelineId !== undefined || status === undefined || s.status === status),
    missing,
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
