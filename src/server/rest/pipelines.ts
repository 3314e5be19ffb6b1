import type { FastifyInstance } from 'fastify';
import { HttpError, RestErrors, requireAction, requireTracking, route, type RestContext } from './common.js';
import { ErrorBody, PipelineIdParams, RunStatusSchema } from './schemas.js';

/** `/api/pipelines/:pipeline_id/status` (seed 001 §9.3): a pipeline's latest run. */
export function registerPipelineRoutes(app: FastifyInstance, ctx: RestContext): void {
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
        401: { description: 'Missing or invalid token', schema: ErrorBody },
        403: { description: 'Not allowed to read this pipeline', schema: ErrorBody },
        404: { description: 'The pipeline has no tracked run', schema: ErrorBody },
        429: { description: 'Rate limited (see Retry-After)', schema: ErrorBody },
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
