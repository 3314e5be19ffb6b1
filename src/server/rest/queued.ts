/**
 * Queued runs on the REST API (a pipeline whose `concurrency.onLimit` is `"queue"`): a
 * queued start has its run id but no run yet, so `GET /api/runs/{run_id}` answers it
 * from the broker's run queue with status `QUEUED`, its place and the runs in the way,
 * until it starts; then it is a run like any other.
 */
import { Type } from '@sinclair/typebox';
import { queuedRun, type QueuedRequest } from '../../pipeline/run-queue.js';
import type { QueuedStart } from '../../core/run-queue.js';
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
  return statusOf(place.group, place.start, place.request, place.position, holders.map((h) => h.run_id));
}

/**
 * The starts waiting in the queues of this broker (`GET /api/runs` lists them apart, in
 * `queued`), oldest first per key, at most `max`; `keep` says which pipelines to show.
 */
export async function listQueued(ctx: RestContext, keep: (pipelineId: string) => boolean, max = 100): Promise<QueuedRunStatus[]> {
  const queue = ctx.broker?.slots?.queue;
  if (ctx.broker === null || queue === undefined) return [];
  const out: QueuedRunStatus[] = [];
  for (const group of (await queue.groups()).slice(0, 200)) {
    const waiting = await queue.waiting(group, max);
    if (waiting.length === 0) continue;
    const holders = ((await ctx.broker.slots?.holders(group)) ?? []).map((h) => h.run_id);
    waiting.forEach((start, i) => {
      let request: QueuedRequest;
      try {
        request = JSON.parse(start.request) as QueuedRequest;
      } catch {
        return;
      }
      if (out.length < max && keep(request.pipeline_id)) out.push(statusOf(group, start, request, i + 1, holders));
    });
  }
  return out;
}

function statusOf(group: string, start: QueuedStart, request: QueuedRequest, position: number, waitingFor: string[]): QueuedRunStatus {
  const stem = concurrencyGroup(request.pipeline_id, '');
  const at = new Date(start.queued_ms).toISOString();
  return {
    pipeline_id: request.pipeline_id,
    run_id: start.run_id,
    status: 'QUEUED',
    pipeline_type: request.plan.pipeline_type,
    queue_position: position,
    waiting_for: waitingFor,
    concurrency_key: group.startsWith(stem) ? group.slice(stem.length) : '',
    queued_at: at,
    started_at: null,
    completed_at: null,
    duration_ms: null,
    steps: [],
    result: null,
    error: null,
    input: request.input,
    last_seq: 0,
    progress: 0,
    current_step: null,
    updated_at: at,
  };
}
