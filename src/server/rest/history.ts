import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { GetHistoryOptions } from '../../tracking/manager.js';
import { HttpError, RestErrors, readsEverything, requireAction, requireTracking, route, type RestContext } from './common.js';
import { ErrorBody, Id, RunStatusSchema } from './schemas.js';

const HistoryQuery = Type.Object({
  limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100, description: 'At most this many runs.' }),
  since: Type.Optional(Type.String({ minLength: 1, maxLength: 40, description: 'Only runs started at or after this time: ISO 8601 or epoch milliseconds.' })),
  pipeline_id: Type.Optional(Id),
  ended_only: Type.Boolean({ default: false, description: 'Only ended runs (COMPLETED, FAILED, CANCELLED).' }),
});

const HistoryAnswer = Type.Object({ runs: Type.Array(RunStatusSchema), limit: Type.Integer() });

/** An ISO 8601 date-time or epoch milliseconds; 400 otherwise. */
export function parseTime(value: string, name: string): Date {
  const d = /^\d{1,15}$/.test(value) ? new Date(Number(value)) : /^\d{4}-\d{2}-\d{2}/.test(value) ? new Date(value) : null;
  if (d === null || Number.isNaN(d.getTime())) {
    throw new HttpError(400, RestErrors.BAD_REQUEST, `${name} must be an ISO 8601 time or epoch milliseconds, received ${JSON.stringify(value)}`);
  }
  return d;
}

/** `/api/history`: past runs, newest started first (seed 001 §4.4). */
export function registerHistoryRoutes(app: FastifyInstance, ctx: RestContext): void {
  route(
    app,
    ctx,
    {
      method: 'GET',
      url: '/api/history',
      tag: 'runs',
      summary: 'Past runs, newest started first',
      description: 'Only runs of pipelines the caller may read. since is a time here (in /api/runs/{run_id}/events it is a seq).',
      querystring: HistoryQuery,
      responses: {
        200: { description: 'The runs', schema: HistoryAnswer },
        400: { description: 'Bad parameter', schema: ErrorBody },
        401: { description: 'Missing or invalid token', schema: ErrorBody },
        403: { description: 'Not allowed to read this pipeline', schema: ErrorBody },
        429: { description: 'Rate limited (see Retry-After)', schema: ErrorBody },
        503: { description: 'The server has no tracking', schema: ErrorBody },
      },
    },
    async (request, _reply, principal) => {
      const tracking = requireTracking(ctx);
      const q = request.query;
      const opts: GetHistoryOptions = { endedOnly: q.ended_only };
      if (q.since !== undefined) opts.since = parseTime(q.since, 'since');
      if (q.pipeline_id !== undefined) {
        requireAction(ctx, principal, q.pipeline_id, 'read');
        opts.pipelineId = q.pipeline_id;
      }
      if (q.pipeline_id !== undefined || readsEverything(ctx, principal)) {
        return { runs: await tracking.getHistory({ ...opts, limit: q.limit }), limit: q.limit };
      }
      // Filtered by pipeline: ask for more until enough readable runs are found or history runs out.
      const readable = (pipelineId: string): boolean => ctx.server.auth.authorize(principal, pipelineId, 'read');
      for (let ask = Math.max(q.limit * 2, 100); ; ask *= 4) {
        const runs = await tracking.getHistory({ ...opts, limit: ask });
        const kept = runs.filter((s) => readable(s.pipeline_id));
        if (kept.length >= q.limit || runs.length < ask) return { runs: kept.slice(0, q.limit), limit: q.limit };
      }
    },
  );
}
