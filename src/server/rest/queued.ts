/**
 * Queued runs on the REST API (a pipeline whose `concurrency.onLimit` is `"queue"`): a
 * queued start has its run id but no run yet, so `GET /api/runs/{run_id}` answers it
 * from the broker's run queue with status `QUEUED`, its place and the runs in the way,
 * until it starts; then it is a run like any other.
 */
import { Type } from '@sinclair/typebox';
import { queuedRun } from '../../pipeline/run-queue.js';
import { concurrencyGroup } from '../../pipeline/run-guard.js';
import type { RestContext } from './common.js';

/** What `GET /api/runs/{run_id}` answers for a queued run (the fields of a run status that apply, plus its place). */
export interface QueuedRunStatus {
  pipeline_id: string;
  run_id: string;
  status: 'QUEUED';
  pipeline_type: string;
  /** 1: the next to start; 0: it was given a slot and is starting now. */
  queue_position: number;
  /** The runs holding the slots of its concurrency group now. */
  waiting_for: string[];
  /** The concurrency key it waits under (`""`: the whole pipeline). */
  concurrency_key: string;
  queued_at: string;
  started_at: null;
  completed_at: null;
  duration_ms: null;
  steps: [];
  result: null;
  error: null;
  input: unknown;
  last_seq: 0;
  progress: 0;
  current_step: null;
  updated_at: string;
}

/** The JSON Schema of {@link QueuedRunStatus}. */
export const QueuedRunSchema = Type.Object(
  {
    pipeline_id: Type.String(),
    run_id: Type.String(),
    status: Type.Literal('QUEUED'),
    pipeline_type: Type.String(),
    queue_position: Type.Integer({ minimum: 0, description: '1: the next to start; 0: given a slot, starting now.' }),
    waiting_for: Type.Array(Type.String(), { description: 'The runs holding the slots of its concurrency group now.' }),
    concurrency_key: Type.String({ description: 'The key it waits under ("" for the whole pipeline).' }),
    queued_at: Type.String({ format: 'date-time' }),
    input: Type.Unknown(),
    last_seq: Type.Literal(0),
    updated_at: Type.String({ format: 'date-time' }),
  },
  { $id: 'QueuedRun', additionalProperties: true, description: 'A start waiting its turn (concurrency.onLimit "queue"): no event yet; follow its run id, its events start at seq 1 when it starts.' },
);

/** The queued run `runId` as {@link QueuedRunStatus}, or `null` when it does not wait. */
export async function queuedStatus(ctx: RestContext, runId: string): Promise<QueuedRunStatus | null> {
  const broker = ctx.broker;
  if (broker === null) return null;
  const place = await queuedRun(broker, runId);
  if (place === null) return null;
  const holders = (await broker.slots?.holders(place.group)) ?? [];
  const stem = concurrencyGroup(place.request.pipeline_id, '');
  const at = new Date(place.start.queued_ms).toISOString();
  return {
    pipeline_id: place.request.pipeline_id,
    run_id: runId,
    status: 'QUEUED',
    pipeline_type: place.request.plan.pipeline_type,
    queue_position: place.position,
    waiting_for: holders.map((h) => h.run_id),
    concurrency_key: place.group.startsWith(stem) ? place.group.slice(stem.length) : '',
    queued_at: at,
    started_at: null,
    completed_at: null,
    duration_ms: null,
    steps: [],
    result: null,
    error: null,
    input: place.request.input,
    last_seq: 0,
    progress: 0,
    current_step: null,
    updated_at: at,
  };
}
