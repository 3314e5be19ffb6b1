import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { computeMetrics } from '../../tracking/metrics.js';
import { readsEverything, requireAction, requireTracking, route, type RestContext } from './common.js';
import { ErrorBody, Id, MetricsSchema } from './schemas.js';

const MetricsQuery = Type.Object({
  days: Type.Number({ exclusiveMinimum: 0, maximum: 3650, default: 7, description: 'Size of the window in days (fractions allowed).' }),
  pipeline_id: Type.Optional(Id),
});

const DAY_MS = 86_400_000;

/** `/api/metrics`: tracking statistics (seed 001 §7). Prometheus metrics are at `/metrics`. */
export function registerMetricsRoutes(app: FastifyInstance, ctx: RestContext): void {
  route(
    app,
    ctx,
    {
      method: 'GET',
      url: '/api/metrics',
      tag: 'metrics',
      summary: 'Statistics of the runs started in the last days',
      description: 'Over the pipelines the caller may read. For Prometheus, scrape /metrics.',
      querystring: MetricsQuery,
      responses: {
        200: { description: 'The statistics', schema: MetricsSchema },
        400: { description: 'Bad parameter', schema: ErrorBody },
        401: { description: 'Missing or invalid token', schema: ErrorBody },
        403: { description: 'Not allowed to read this pipeline', schema: ErrorBody },
        429: { description: 'Rate limited (see Retry-After)', schema: ErrorBody },
        503: { description: 'The server has no tracking', schema: ErrorBody },
      },
    },
    async (request, _reply, principal) => {
      const tracking = requireTracking(ctx);
      const { days, pipeline_id: pipelineId } = request.query;
      if (pipelineId !== undefined) requireAction(ctx, principal, pipelineId, 'read');
      if (pipelineId !== undefined) return tracking.getMetrics({ days, pipelineId });
      if (readsEverything(ctx, principal)) return tracking.getMetrics({ days });
      const now = new Date();
      const runs = await tracking.listPipelines({ since: new Date(now.getTime() - days * DAY_MS) });
      const canRead = new Map<string, boolean>();
      const readable = runs.filter((s) => {
        let ok = canRead.get(s.pipeline_id);
        if (ok === undefined) {
          ok = ctx.server.auth.authorize(principal, s.pipeline_id, 'read');
          canRead.set(s.pipeline_id, ok);
        }
        return ok;
      });
      return computeMetrics(readable, { days, now });
    },
  );
}
