/**
 * `POST /api/runs/{run_id}/resume`: a FAILED or CANCELLED run goes on as a new attempt of
 * the same run (its completed steps kept, the rest run again; the run's log continues).
 * Next to retry, which starts a new run from the beginning (./retry.ts).
 */
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { AlreadyRunningError, RunNotResumableError } from '../../core/errors.js';
import { getEngine } from '../../pipeline/engine.js';
import type { ResumedRun } from '../../pipeline/resume.js';
import { HttpError, RestErrors, requireRunAction, route, runNotFound, type RestContext } from './common.js';
import { ErrorBody, RunIdParams } from './schemas.js';

/** A pipeline the server resumes runs of through its own `resume` (binds its tracking and hooks here, applies its concurrency limit). */
interface ResumablePipeline {
  readonly pipelineId: string;
  resume(runId: string): Promise<{ attempt: number; keptSteps: string[]; pendingSteps: string[]; seq: number }>;
}

function isResumable(p: unknown): p is ResumablePipeline {
  return typeof p === 'object' && p !== null && typeof (p as Partial<ResumablePipeline>).resume === 'function';
}

const ResumeAnswer = Type.Object({
  run_id: Type.String({ description: 'The run: the same id, a new attempt.' }),
  pipeline_id: Type.String(),
  status: Type.Literal('RUNNING', { description: 'The run runs again (it may already have ended by the time the answer arrives).' }),
  attempt: Type.Integer({ minimum: 2, description: 'The attempt that started: 2 for the first resume.' }),
  kept_steps: Type.Array(Type.String(), { description: 'Steps that completed before: their results are kept, they do not run again.' }),
  pending_steps: Type.Array(Type.String(), { description: 'Steps that run in this attempt.' }),
  seq: Type.Integer({ minimum: 1, description: 'Seq of the run\'s PipelineResumeEvent: follow the run from `seq - 1` (WebSocket `since`, `/events?since=`) to see this attempt.' }),
});

const NotResumableBody = Type.Object({
  error: Type.Object({
    code: Type.Literal('run_not_resumable'),
    message: Type.String(),
    status: Type.Union([Type.String(), Type.Null()], { description: 'The run\'s status (RUNNING or COMPLETED), or null when its record or log expired.' }),
  }),
});

const AlreadyRunningBody = Type.Object({
  error: Type.Object({
    code: Type.Literal('already_running'),
    message: Type.String(),
    run_id: Type.String({ description: 'A run in flight that holds a slot of the run\'s concurrency group.' }),
    concurrency_key: Type.String(),
  }),
});

/** `POST /api/runs/:run_id/resume`. */
export function registerResumeRoutes(app: FastifyInstance, ctx: RestContext): void {
  const pipelines = new Map<string, ResumablePipeline>();
  for (const p of ctx.server.options.pipelines ?? []) if (isResumable(p)) pipelines.set(p.pipelineId, p);

  route(
    app,
    ctx,
    {
      method: 'POST',
      url: '/api/runs/:run_id/resume',
      tag: 'runs',
      summary: 'Continue a failed or cancelled run from the steps that did not finish',
      description:
        'Needs the "resume" action on the run\'s pipeline and a server with a broker. The run (same id) starts a new attempt: steps that completed keep their results and are not run again, the others run; its events continue the run\'s log after its terminal event, starting with a PipelineResumeEvent. The pipeline\'s concurrency policy applies as to a start. Unlike retry, which starts a new run from the beginning. Answers 202 once the attempt started.',
      params: RunIdParams,
      responses: {
        202: { description: 'The run runs again', schema: ResumeAnswer },
        401: { description: 'Missing or invalid token', schema: ErrorBody },
        403: { description: 'Not allowed to resume runs of this pipeline', schema: ErrorBody },
        404: { description: 'Unknown run (or one the caller may not read)', schema: ErrorBody },
        409: {
          description: '`run_not_resumable`: the run is RUNNING or COMPLETED (or its record or log expired); `already_running`: its concurrency group is full',
          schema: Type.Union([NotResumableBody, AlreadyRunningBody]),
        },
        429: { description: 'Rate limited (see Retry-After)', schema: ErrorBody },
        501: { description: 'The server has no broker (`resume_unavailable`)', schema: ErrorBody },
      },
    },
    async (request, reply, principal) => {
      const runId = request.params.run_id;
      if (ctx.broker === null) throw new HttpError(501, RestErrors.RESUME_UNAVAILABLE, 'This server cannot resume runs: start it with getWebSocketServer({ broker })');
      const summary = await ctx.broker.runState.getSummary(runId);
      if (summary === null) throw runNotFound(runId);
      requireRunAction(ctx, principal, runId, summary.pipeline_id, 'resume');
      const pipeline = pipelines.get(summary.pipeline_id);
      let resumed: Pick<ResumedRun, 'attempt' | 'keptSteps' | 'pendingSteps' | 'seq'>;
      try {
        resumed = pipeline === undefined ? await getEngine(ctx.broker).resume(runId, { pipelineId: summary.pipeline_id }) : await pipeline.resume(runId);
      } catch (error) {
        const json = reply.code(409).type('application/json; charset=utf-8');
        if (error instanceof RunNotResumableError) return json.send({ error: { code: RestErrors.RUN_NOT_RESUMABLE, message: error.message, status: error.status } });
        if (error instanceof AlreadyRunningError) return json.send({ error: { code: RestErrors.ALREADY_RUNNING, message: error.message, run_id: error.runId, concurrency_key: error.concurrencyKey } });
        throw error;
      }
      return reply
        .code(202)
        .header('location', `/api/runs/${encodeURIComponent(runId)}`)
        .send({ run_id: runId, pipeline_id: summary.pipeline_id, status: 'RUNNING', attempt: resumed.attempt, kept_steps: resumed.keptSteps, pending_steps: resumed.pendingSteps, seq: resumed.seq });
    },
  );
}
