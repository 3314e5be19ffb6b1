/**
 * The pipeline routes that read: `GET /api/pipelines` (the pipelines this server can
 * start, with their input schema, concurrency policy and whether the caller may start
 * one now), `GET /api/pipelines/{pipeline_id}` (one of them) and
 * `GET /api/pipelines/{pipeline_id}/status` (seed 001 §9.3: a pipeline's latest run).
 */
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { Principal } from '../auth.js';
import { HttpError, RestErrors, requireAction, requireTracking, route, type RestContext } from './common.js';
import { ErrorBody, Nullable, PipelineIdParams, RunStatusSchema, RunStatusValue, StringEnum } from './schemas.js';
import type { StartablePipeline } from './start.js';

/** One pipeline as `GET /api/pipelines` shows it. */
export const PipelineInfoSchema = Type.Object(
  {
    pipeline_id: Type.String(),
    description: Nullable(Type.String({ description: 'The pipeline\'s `description` option.' })),
    input_schema: Type.Union([Type.Object({}, { additionalProperties: true }), Type.Null()], {
      description: 'The JSON Schema a run\'s input must match (the pipeline\'s `inputSchema`), or null: any JSON.',
    }),
    concurrency: Nullable(
      Type.Object({
        limit: Type.Integer({ minimum: 1, description: 'Runs of one key in flight at once.' }),
        key: StringEnum(['pipeline', 'input'] as const, { description: '"pipeline": one key for every run; "input": a key per run, from its input or its start\'s `concurrency_key`.' }),
        on_limit: StringEnum(['reject', 'queue'] as const, { description: 'A start over the limit: "reject" answers 409 already_running; "queue" answers 202 QUEUED and the run waits its turn.' }),
      }),
    ),
    can_start: Type.Boolean({ description: 'The caller has the "start" right on this pipeline.' }),
    start_blocked_by: Type.Optional(Type.String({ description: 'Present while the concurrency policy refuses a start: the run in the way (the oldest in flight).' })),
    start_blocked_reason: Type.Optional(Type.String({ description: 'Present with start_blocked_by: why a start is refused now, in one sentence.' })),
    start_queues_behind: Type.Optional(Type.String({ description: 'For a policy that queues, present while the limit is reached: a start now waits its turn behind this run (the oldest in flight).' })),
    latest_run: Nullable(
      Type.Object({ run_id: Type.String(), status: RunStatusValue, started_at: Nullable(Type.String({ format: 'date-time' })) }, { description: 'The newest tracked run (null without tracking or runs).' }),
    ),
  },
  { $id: 'Pipeline' },
);

type PipelineInfo = {
  pipeline_id: string;
  description: string | null;
  input_schema: object | null;
  concurrency: { limit: number; key: 'pipeline' | 'input'; on_limit: 'reject' | 'queue' } | null;
  can_start: boolean;
  start_queues_behind?: string;
  start_blocked_by?: string;
  start_blocked_reason?: string;
  latest_run: { run_id: string; status: string; started_at: string | null } | null;
};

const e401 = { description: 'Missing or invalid token', schema: ErrorBody };
const e429 = { description: 'Rate limited (see Retry-After)', schema: ErrorBody };

/** `/api/pipelines`, `/api/pipelines/:pipeline_id` and `/api/pipelines/:pipeline_id/status`. */
export function registerPipelineRoutes(app: FastifyInstance, ctx: RestContext): void {
  const pipelines = new Map<string, StartablePipeline>();
  for (const p of ctx.server.options.pipelines ?? []) pipelines.set(p.pipelineId, p);
  const readable = (principal: Principal | null, id: string): boolean => ctx.server.auth.authorize(principal, id, 'read');

  async function describe(p: StartablePipeline, principal: Principal | null): Promise<PipelineInfo> {
    const policy = p.concurrency;
    const info: PipelineInfo = {
      pipeline_id: p.pipelineId,
      description: p.description ?? null,
      // JSON: TypeBox's symbol keys drop out, what is left is the JSON Schema.
      input_schema: p.inputSchema === undefined ? null : (JSON.parse(JSON.stringify(p.inputSchema)) as object),
      concurrency: policy === undefined ? null : { limit: policy.limit, key: policy.key, on_limit: policy.onLimit ?? 'reject' },
      can_start: ctx.server.auth.authorize(principal, p.pipelineId, 'start'),
      latest_run: null,
    };
    const blockers = policy === undefined || p.startBlockedBy === undefined ? [] : await p.startBlockedBy();
    const [first] = blockers;
    if (policy?.onLimit === 'queue' && first !== undefined) {
      info.start_queues_behind = first.run_id;
    } else if (policy !== undefined && first !== undefined) {
      info.start_blocked_by = first.run_id;
      info.start_blocked_reason =
        policy.limit === 1
          ? `Already running: pipeline "${p.pipelineId}" allows one run at a time, and run ${first.run_id} is in flight.`
          : `Already running: pipeline "${p.pipelineId}" allows ${policy.limit} runs at a time, and ${blockers.length} are in flight (the oldest: run ${first.run_id}).`;
    }
    if (ctx.tracking !== null) {
      const [latest] = await ctx.tracking.listPipelines({ pipelineId: p.pipelineId, limit: 1 });
      if (latest !== undefined) info.latest_run = { run_id: latest.run_id, status: latest.status, started_at: latest.started_at };
    }
    return info;
  }

  route(
    app,
    ctx,
    {
      method: 'GET',
      url: '/api/pipelines',
      tag: 'pipelines',
      summary: 'The pipelines this server can start, with their input schema and concurrency policy',
      description:
        'The pipelines of the server\'s `pipelines` option the caller may read, in that order. `can_start` says whether the caller has the "start" right; `start_blocked_by` and `start_blocked_reason` appear while the concurrency policy refuses a start (a policy keyed on the input is never shown blocked: it depends on the input).',
      responses: {
        200: { description: 'The pipelines', schema: Type.Object({ pipelines: Type.Array(PipelineInfoSchema) }) },
        401: e401,
        429: e429,
      },
    },
    async (_request, _reply, principal) => {
      const out: PipelineInfo[] = [];
      for (const p of pipelines.values()) if (readable(principal, p.pipelineId)) out.push(await describe(p, principal));
      return { pipelines: out };
    },
  );

  route(
    app,
    ctx,
    {
      method: 'GET',
      url: '/api/pipelines/:pipeline_id',
      tag: 'pipelines',
      summary: 'One pipeline this server can start (as in GET /api/pipelines)',
      params: PipelineIdParams,
      responses: {
        200: { description: 'The pipeline', schema: PipelineInfoSchema },
        400: { description: 'Bad parameter', schema: ErrorBody },
        401: e401,
        404: { description: 'The server cannot start this pipeline, or the caller may not read it (the same answer)', schema: ErrorBody },
        429: e429,
      },
    },
    async (request, _reply, principal) => {
      const id = request.params.pipeline_id;
      const p = pipelines.get(id);
      if (p === undefined || !readable(principal, id)) throw new HttpError(404, RestErrors.PIPELINE_NOT_FOUND, `No pipeline "${id}" on this server`);
      return describe(p, principal);
    },
  );

  route(
    app,
    ctx,
    {
      method: 'GET',
      url: '/api/pipelines/:pipeline_id/status',
      tag: 'pipelines',
      summary: 'A pipeline\'s latest run (the newest started), with its steps',
      params: PipelineIdParams,
      responses: {
        200: { description: 'The latest run', schema: RunStatusSchema },
        400: { description: 'Bad parameter', schema: ErrorBody },
        401: e401,
        403: { description: 'Not allowed to read this pipeline', schema: ErrorBody },
        404: { description: 'The pipeline has no tracked run', schema: ErrorBody },
        429: e429,
        503: { description: 'The server has no tracking', schema: ErrorBody },
      },
    },
    async (request, _reply, principal) => {
      const tracking = requireTracking(ctx);
      const pipelineId = request.params.pipeline_id;
      requireAction(ctx, principal, pipelineId, 'read');
      // getStatus() takes a run id first: a run whose id is this pipeline id would not be its latest run.
      let latest = await tracking.getStatus(pipelineId);
      if (latest !== null && latest.pipeline_id !== pipelineId) [latest = null] = await tracking.listPipelines({ pipelineId, limit: 1 });
      if (latest === null || latest === undefined) throw new HttpError(404, RestErrors.PIPELINE_NOT_FOUND, `No tracked run of pipeline "${pipelineId}"`);
      return latest;
    },
  );
}
