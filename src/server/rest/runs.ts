import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { getEngine } from '../../pipeline/engine.js';
import { cancelRunOrQueued } from '../../pipeline/run-queue.js';
import { QueuedRunSchema, listQueued, queuedStatus, type QueuedRunStatus } from './queued.js';
import { show } from '../../core/validate.js';
import type { ListPipelinesOptions } from '../../tracking/manager.js';
import { isEndedStatus } from '../../tracking/models.js';
import {
  HttpError,
  RestErrors,
  pageFiltered,
  readsEverything,
  requireAction,
  requireRun,
  requireRunAction,
  runNotFound,
  requireTracking,
  route,
  type RestContext,
} from './common.js';
import { ErrorBody, EventSchema, Id, RunIdParams, RunStatusSchema, RunStatusValue } from './schemas.js';

const RunsQuery = Type.Object({
  status: Type.Optional(RunStatusValue),
  pipeline_id: Type.Optional(Id),
  run_id_prefix: Type.Optional(
    Type.String({ minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9_.:\\-/@]+$', description: 'Only runs whose id starts with this (the short ids flowcast history prints), among the newest 100,000.' }),
  ),
  limit: Type.Integer({ minimum: 1, maximum: 1000, default: 50, description: 'Runs per page.' }),
  offset: Type.Integer({ minimum: 0, maximum: 1_000_000, default: 0, description: 'Runs to skip (of those you may read).' }),
});

/** How many of the newest runs a `run_id_prefix` search reads at most. */
const PREFIX_SCAN = 10_000;

const RunsPage = Type.Object({
  runs: Type.Array(RunStatusSchema),
  limit: Type.Integer(),
  offset: Type.Integer(),
  next_offset: Type.Union([Type.Integer(), Type.Null()], { description: 'The offset of the next page; null on the last page.' }),
  queued: Type.Optional(
    Type.Array(QueuedRunSchema, {
      description: 'On the first page (offset 0, no status filter): the starts waiting their turn (a pipeline whose concurrency policy queues), oldest first per key, at most 100. They have no tracked run yet, so runs does not hold them.',
    }),
  ),
});

const EventsQuery = Type.Object({
  since: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, default: 0, description: 'Events after this seq (0: from the start).' }),
  limit: Type.Integer({ minimum: 1, maximum: 10_000, default: 1000, description: 'Events per page.' }),
});

const EventsPage = Type.Object({
  run_id: Type.String(),
  pipeline_id: Type.String(),
  events: Type.Array(EventSchema),
  first_seq: Type.Integer({ description: 'First seq the log still holds (retention may trim the start).' }),
  last_seq: Type.Integer({ description: 'Last seq the log holds.' }),
  complete: Type.Boolean({ description: 'false when retention trimmed events after since.' }),
  ended: Type.Boolean({ description: 'true once the run\'s terminal event is in the log.' }),
  next_since: Type.Integer({ description: 'Pass as since for the next page; more exist while next_since < last_seq.' }),
});

const CancelBody = Type.Object({ reason: Type.Optional(Type.String({ minLength: 1, maxLength: 500 })) }, { additionalProperties: false });

const CancelAnswer = Type.Object({ run_id: Type.String(), pipeline_id: Type.String(), status: Type.Literal('CANCELLED'), reason: Type.String() });
const DeleteAnswer = Type.Object({ run_id: Type.String(), pipeline_id: Type.String(), deleted: Type.Integer() });

const e400 = { description: 'Bad parameter', schema: ErrorBody };
const e401 = { description: 'Missing or invalid token', schema: ErrorBody };
const e403 = { description: 'Not allowed on this pipeline', schema: ErrorBody };
const e404 = { description: 'Unknown run', schema: ErrorBody };
const e429 = { description: 'Rate limited (see Retry-After)', schema: ErrorBody };
const e503 = { description: 'The server has no tracking', schema: ErrorBody };

/** Finds the pipeline of a run from tracking, the broker's run state or the run's log; `null` when none knows it. */
async function pipelineOfRun(ctx: RestContext, runId: string): Promise<string | null> {
  if (ctx.tracking !== null) {
    const status = await ctx.tracking.getStatus(runId);
    if (status !== null && status.run_id === runId) return status.pipeline_id;
  }
  if (ctx.broker !== null) {
    const record = await ctx.broker.runState.get(runId);
    if (record !== null) return record.pipeline_id;
  }
  const head = await ctx.server.transport.read(runId, { since: 0, limit: 1 });
  return head.events[0]?.pipeline_id ?? null;
}

/** `/api/runs`, `/api/runs/:run_id`, its events, cancel and delete. */
export function registerRunRoutes(app: FastifyInstance, ctx: RestContext): void {
  route(
    app,
    ctx,
    {
      method: 'GET',
      url: '/api/runs',
      tag: 'runs',
      summary: 'List runs, newest started first',
      description:
        'Narrowed by status, pipeline_id and run_id_prefix, paged by limit and offset. Only runs of pipelines the caller may read are listed (and counted by offset). There is no total: next_offset is null on the last page.',
      querystring: RunsQuery,
      responses: { 200: { description: 'A page of runs', schema: RunsPage }, 400: e400, 401: e401, 403: e403, 429: e429, 503: e503 },
    },
    async (request, _reply, principal) => {
      const tracking = requireTracking(ctx);
      const { status, pipeline_id: pipelineId, run_id_prefix: prefix, limit, offset } = request.query;
      if (pipelineId !== undefined) requireAction(ctx, principal, pipelineId, 'read');
      const base: ListPipelinesOptions = {};
      if (status !== undefined) base.status = status;
      if (pipelineId !== undefined) base.pipelineId = pipelineId;
      let runs;
      let more;
      const everything = pipelineId !== undefined || readsEverything(ctx, principal);
      if (everything && prefix === undefined) {
        const page = await tracking.listPipelines({ ...base, limit: limit + 1, offset });
        more = page.length > limit;
        runs = page.slice(0, limit);
      } else {
        const canRead = new Map<string, boolean>();
        const page = await pageFiltered(
          // A prefix search reads at most the newest PREFIX_SCAN runs: a prefix that fits none costs a bounded scan.
          (at, n) => (prefix !== undefined && at >= PREFIX_SCAN ? Promise.resolve([]) : tracking.listPipelines({ ...base, limit: Math.min(n, prefix === undefined ? n : PREFIX_SCAN - at), offset: at })),
          (s) => {
            if (prefix !== undefined && !s.run_id.startsWith(prefix)) return false;
            if (everything) return true;
            let ok = canRead.get(s.pipeline_id);
            if (ok === undefined) {
              ok = ctx.server.auth.authorize(principal, s.pipeline_id, 'read');
              canRead.set(s.pipeline_id, ok);
            }
            return ok;
          },
          offset,
          limit,
        );
        runs = page.items;
        more = page.more;
      }
      const page: { runs: unknown[]; limit: number; offset: number; next_offset: number | null; queued?: QueuedRunStatus[] } = { runs, limit, offset, next_offset: more ? offset + limit : null };
      if (offset === 0 && status === undefined && prefix === undefined) {
        const queued = await listQueued(ctx, (id) => (pipelineId === undefined || id === pipelineId) && ctx.server.auth.authorize(principal, id, 'read'));
        if (queued.length > 0) page.queued = queued;
      }
      return page;
    },
  );

  route(
    app,
    ctx,
    {
      method: 'GET',
      url: '/api/runs/:run_id',
      tag: 'runs',
      summary: 'A run\'s status, with its steps',
      params: RunIdParams,
      description: 'A start waiting its turn (a pipeline whose concurrency policy queues) answers status QUEUED with its queue_position and the runs it waits for, until it starts.',
      responses: { 200: { description: 'The run', schema: Type.Union([RunStatusSchema, QueuedRunSchema]) }, 400: e400, 401: e401, 403: e403, 404: e404, 429: e429, 503: e503 },
    },
    async (request, _reply, principal) => {
      const runId = request.params.run_id;
      // A queued run is shown from the broker's queue, with or without tracking.
      const tracked = ctx.tracking === null ? null : await ctx.tracking.getStatus(runId);
      const status = tracked !== null && tracked.run_id === runId ? tracked : await queuedStatus(ctx, runId);
      if (status === null) {
        requireTracking(ctx);
        throw runNotFound(runId);
      }
      requireRunAction(ctx, principal, status.run_id, status.pipeline_id, 'read');
      return status;
    },
  );

  route(
    app,
    ctx,
    {
      method: 'GET',
      url: '/api/runs/:run_id/events',
      tag: 'runs',
      summary: 'A run\'s events from its log, after a seq',
      description: 'The same events, in seq order, that the WebSocket sends; page with next_since. Works without tracking.',
      params: RunIdParams,
      querystring: EventsQuery,
      responses: { 200: { description: 'A page of the run\'s log', schema: EventsPage }, 400: e400, 401: e401, 403: e403, 404: e404, 429: e429 },
    },
    async (request, _reply, principal) => {
      const runId = request.params.run_id;
      const pipelineId = await pipelineOfRun(ctx, runId);
      if (pipelineId === null) throw runNotFound(runId);
      requireRunAction(ctx, principal, runId, pipelineId, 'read');
      const { since, limit } = request.query;
      const log = await ctx.server.transport.read(runId, { since, limit });
      return {
        run_id: runId,
        pipeline_id: pipelineId,
        events: log.events,
        first_seq: log.first_seq,
        last_seq: log.last_seq,
        complete: log.complete,
        ended: log.ended,
        next_since: log.events.at(-1)?.seq ?? Math.min(since, log.last_seq),
      };
    },
  );

  route(
    app,
    ctx,
    {
      method: 'POST',
      url: '/api/runs/:run_id/cancel',
      tag: 'runs',
      summary: 'Cancel a running run',
      description:
        'Needs the "cancel" action on the run\'s pipeline. Running calls see their signal aborted; the run ends CANCELLED. A QUEUED run leaves its queue and ends CANCELLED without running a step (its log: a PipelineStartEvent, then a PipelineCancelledEvent). Optional JSON body: { "reason": "..." }.',
      params: RunIdParams,
      body: CancelBody,
      responses: {
        200: { description: 'The run is cancelled', schema: CancelAnswer },
        400: e400,
        401: e401,
        403: e403,
        404: e404,
        409: { description: 'The run already ended', schema: ErrorBody },
        429: e429,
        501: { description: 'The server has no broker to cancel with', schema: ErrorBody },
      },
    },
    async (request, _reply, principal) => {
      const runId = request.params.run_id;
      // Fastify validates JSON bodies; anything else (text/plain) is refused here.
      const body: unknown = request.body;
      if (body !== undefined && body !== null && typeof body !== 'object') {
        throw new HttpError(400, RestErrors.BAD_REQUEST, `body must be JSON like { "reason": "..." }, received ${show(body)}`);
      }
      if (ctx.broker === null) {
        throw new HttpError(501, RestErrors.CANCEL_UNAVAILABLE, 'This server cannot cancel runs: start it with getWebSocketServer({ broker })');
      }
      const record = (await ctx.broker.runState.get(runId)) ?? (await queuedStatus(ctx, runId));
      if (record === null) throw runNotFound(runId);
      requireRunAction(ctx, principal, runId, record.pipeline_id, 'cancel');
      if (record.status !== 'RUNNING' && record.status !== 'QUEUED') throw new HttpError(409, RestErrors.RUN_ENDED, `Run "${runId}" already ended: ${record.status}`);
      const reason = (body as { reason?: string } | null | undefined)?.reason ?? `cancelled through the REST API by ${principal?.id ?? 'anonymous'}`;
      // A queued run leaves its queue and ends CANCELLED without running a step.
      const cancelled = await cancelRunOrQueued(getEngine(ctx.broker), runId, reason);
      if (!cancelled) {
        const now = await ctx.broker.runState.get(runId);
        throw new HttpError(409, RestErrors.RUN_ENDED, `Run "${runId}" already ended: ${now?.status ?? 'unknown'}`);
      }
      return { run_id: runId, pipeline_id: record.pipeline_id, status: 'CANCELLED', reason };
    },
  );

  route(
    app,
    ctx,
    {
      method: 'DELETE',
      url: '/api/runs/:run_id',
      tag: 'runs',
      summary: 'Delete an ended run from tracking',
      description: 'Needs the "delete" action on the run\'s pipeline. A run still running answers 409: cancel it first.',
      params: RunIdParams,
      responses: {
        200: { description: 'Deleted', schema: DeleteAnswer },
        400: e400,
        401: e401,
        403: e403,
        404: e404,
        409: { description: 'The run is still running', schema: ErrorBody },
        429: e429,
        503: e503,
      },
    },
    async (request, _reply, principal) => {
      const tracking = requireTracking(ctx);
      const runId = request.params.run_id;
      const status = await requireRun(tracking, runId);
      requireRunAction(ctx, principal, runId, status.pipeline_id, 'delete');
      if (!isEndedStatus(status.status)) throw new HttpError(409, RestErrors.RUN_RUNNING, `Run "${runId}" is ${status.status}: cancel it before deleting it`);
      const deleted = await tracking.deletePipeline(runId);
      return { run_id: runId, pipeline_id: status.pipeline_id, deleted };
    },
  );
}
