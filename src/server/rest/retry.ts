import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { InvalidArgumentError } from '../../core/errors.js';
import { show } from '../../core/validate.js';
import { isEndedStatus } from '../../tracking/models.js';
import { HttpError, RestErrors, requireRun, requireRunAction, requireTracking, route, runNotFound, type RestContext } from './common.js';
import { queuedStatus } from './queued.js';
import { ErrorBody, RunIdParams } from './schemas.js';

/**
 * A pipeline the server may start runs of (a `Pipeline` or `DataflowPipeline` fits):
 * what `POST /api/runs/{run_id}/retry` needs to run the same pipeline again.
 */
export interface RetryablePipeline {
  /** The id its runs carry. */
  readonly pipelineId: string;
  /** Starts a run (the pipeline's own `kiq`). */
  kiq(input: never): Promise<{ runId: string }>;
}

/** Checks the server's `pipelines` option: an array of pipelines with distinct ids. */
export function checkPipelines(value: unknown): RetryablePipeline[] {
  if (!Array.isArray(value)) throw new InvalidArgumentError(`pipelines must be an array of pipelines, received ${show(value)}`);
  const seen = new Set<string>();
  for (const p of value as unknown[]) {
    const candidate = p as Partial<RetryablePipeline> | null;
    if (typeof candidate !== 'object' || candidate === null || typeof candidate.pipelineId !== 'string' || typeof candidate.kiq !== 'function') {
      throw new InvalidArgumentError(`pipelines must hold pipelines (with pipelineId and kiq()), received ${show(p)}`);
    }
    if (seen.has(candidate.pipelineId)) throw new InvalidArgumentError(`pipelines holds two pipelines with the id "${candidate.pipelineId}"`);
    seen.add(candidate.pipelineId);
  }
  return value as RetryablePipeline[];
}

const RetryAnswer = Type.Object({
  run_id: Type.String({ description: 'The new run.' }),
  pipeline_id: Type.String(),
  retry_of: Type.String({ description: 'The run whose input was used.' }),
});

const ActionsAnswer = Type.Object({
  run_id: Type.String(),
  pipeline_id: Type.String(),
  cancel: Type.Boolean({ description: 'The caller may cancel it (and the server can).' }),
  retry: Type.Boolean({ description: 'The caller may retry it (and the server knows its pipeline).' }),
  resume: Type.Boolean({ description: 'The caller may resume it: it is FAILED or CANCELLED, the caller has the "resume" action, the server has a broker.' }),
  delete: Type.Boolean(),
});

const e401 = { description: 'Missing or invalid token', schema: ErrorBody };
const e403 = { description: 'Not allowed on this pipeline', schema: ErrorBody };
const e404 = { description: 'Unknown run', schema: ErrorBody };
const e429 = { description: 'Rate limited (see Retry-After)', schema: ErrorBody };
const e503 = { description: 'The server has no tracking', schema: ErrorBody };

/** `POST /api/runs/:run_id/retry` and `GET /api/runs/:run_id/actions`. */
export function registerRetryRoutes(app: FastifyInstance, ctx: RestContext): void {
  const pipelines = new Map<string, RetryablePipeline>();
  for (const p of ctx.server.options.pipelines ?? []) pipelines.set(p.pipelineId, p);

  route(
    app,
    ctx,
    {
      method: 'POST',
      url: '/api/runs/:run_id/retry',
      tag: 'runs',
      summary: 'Start the run\'s pipeline again with the same input',
      description:
        'Needs the "retry" action on the run\'s pipeline, a run that has ended, and the pipeline in the server\'s `pipelines` option. Answers the new run id.',
      params: RunIdParams,
      responses: {
        200: { description: 'The new run started', schema: RetryAnswer },
        401: e401,
        403: e403,
        404: e404,
        409: { description: 'The run is still running', schema: ErrorBody },
        429: e429,
        501: { description: 'The server does not know this pipeline', schema: ErrorBody },
        503: e503,
      },
    },
    async (request, _reply, principal) => {
      const tracking = requireTracking(ctx);
      const status = await requireRun(tracking, request.params.run_id);
      requireRunAction(ctx, principal, status.run_id, status.pipeline_id, 'retry');
      if (!isEndedStatus(status.status)) throw new HttpError(409, RestErrors.RUN_RUNNING, `Run "${status.run_id}" is still ${status.status}: cancel it or wait for its end`);
      const pipeline = pipelines.get(status.pipeline_id);
      if (pipeline === undefined) {
        throw new HttpError(
          501,
          RestErrors.RETRY_UNAVAILABLE,
          `This server cannot start runs of "${status.pipeline_id}": pass the pipeline in getWebSocketServer({ pipelines: [...] })`,
        );
      }
      const run = await pipeline.kiq(status.input as never);
      return { run_id: run.runId, pipeline_id: status.pipeline_id, retry_of: status.run_id };
    },
  );

  route(
    app,
    ctx,
    {
      method: 'GET',
      url: '/api/runs/:run_id/actions',
      tag: 'runs',
      summary: 'What the caller may do with this run',
      description: 'The dashboard shows Cancel, Retry and Resume only where they would be accepted.',
      params: RunIdParams,
      responses: { 200: { description: 'The allowed actions', schema: ActionsAnswer }, 401: e401, 403: e403, 404: e404, 429: e429, 503: e503 },
    },
    async (request, _reply, principal) => {
      const tracking = requireTracking(ctx);
      const runId = request.params.run_id;
      const tracked = await tracking.getStatus(runId);
      // A queued run (concurrency.onLimit "queue") may only be cancelled.
      const status = tracked !== null && tracked.run_id === runId ? tracked : await queuedStatus(ctx, runId);
      if (status === null) throw runNotFound(runId);
      const queued = status.status === 'QUEUED';
      requireRunAction(ctx, principal, status.run_id, status.pipeline_id, 'read');
      const may = (action: 'cancel' | 'retry' | 'delete' | 'resume'): boolean => ctx.server.auth.authorize(principal, status.pipeline_id, action);
      return {
        run_id: status.run_id,
        pipeline_id: status.pipeline_id,
        cancel: ctx.broker !== null && may('cancel'),
        retry: !queued && pipelines.has(status.pipeline_id) && may('retry'),
        resume: ctx.broker !== null && (status.status === 'FAILED' || status.status === 'CANCELLED') && may('resume'),
        delete: !queued && may('delete'),
      };
    },
  );
}
