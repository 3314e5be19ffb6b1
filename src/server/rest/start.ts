import { Type, type TSchema } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { AlreadyRunningError } from '../../core/errors.js';
import { Value } from '@sinclair/typebox/value';
import { show } from '../../core/validate.js';
import { HttpError, RestErrors, requireAction, route, type RestContext } from './common.js';
import type { SlotHolder } from '../../core/run-slots.js';
import type { ConcurrencyInfo } from '../../pipeline/base.js';
import type { RetryablePipeline } from './retry.js';
import { ErrorBody, PipelineIdParams } from './schemas.js';
import { queuedStatus } from './queued.js';

/**
 * A pipeline the REST API can start: a `Pipeline` or `DataflowPipeline` fits (its `kiq`
 * takes the idempotency and concurrency keys, its `inputSchema` is shown in OpenAPI and
 * `GET /api/pipelines`, with its `description`, its `concurrency` policy and the runs in
 * the way of a start, `startBlockedBy()`).
 */
export interface StartablePipeline extends RetryablePipeline {
  readonly inputSchema?: TSchema | undefined;
  readonly description?: string | undefined;
  readonly concurrency?: ConcurrencyInfo | undefined;
  startBlockedBy?(): Promise<SlotHolder[]>;
  kiq(input: never, options?: { idempotencyKey?: string; concurrencyKey?: string }): Promise<KiqAnswer>;
}

/** What {@link StartablePipeline.kiq} resolves with (a `RunHandle` fits). */
export interface KiqAnswer {
  runId: string;
  deduplicated?: boolean;
  /** Set when the start waits its turn (`concurrency.onLimit: "queue"`). */
  queued?: { position: number; waitingFor: string[] } | undefined;
}

const Key = Type.String({ minLength: 1, maxLength: 200, pattern: '^[\\x20-\\x7e]+$' });

const StartBody = Type.Object(
  {
    input: Type.Optional(Type.Unknown({ description: 'The run\'s input (JSON); checked against the pipeline\'s input schema when it declares one. @default the schema\'s defaults for an object schema, else null' })),
    idempotency_key: Type.Optional({ ...Key, description: 'A start with a key this pipeline saw within its window (24 h by default) answers that run (200) instead of starting another.' }),
    concurrency_key: Type.Optional({ ...Key, description: 'The key of the pipeline\'s concurrency policy (at most N runs in flight per key); overrides the key the pipeline computes from the input.' }),
  },
  { additionalProperties: false },
);

const StartAnswer = Type.Object({
  run_id: Type.String(),
  pipeline_id: Type.String(),
  status: Type.String({ description: 'RUNNING for a new run, QUEUED for a start waiting its turn (202); the run\'s current status for a repeated idempotency key.' }),
  deduplicated: Type.Boolean({ description: 'true: the idempotency key had started this run, nothing new was started.' }),
  queue_position: Type.Optional(Type.Integer({ minimum: 0, description: 'With QUEUED: its place in the queue of its concurrency key (1: next).' })),
  waiting_for: Type.Optional(Type.Array(Type.String(), { description: 'With QUEUED: the runs in the way (holding the slots of its concurrency key).' })),
});

const AlreadyRunningBody = Type.Object({
  error: Type.Object({
    code: Type.Literal('already_running'),
    message: Type.String(),
    run_id: Type.String({ description: 'A run in flight that holds the slot: the one in the way.' }),
    concurrency_key: Type.String({ description: 'The key whose limit was reached ("" for the whole pipeline).' }),
  }),
});

/** `POST /api/pipelines/:pipeline_id/runs`: starts a run of a pipeline the server was given. */
export function registerStartRoutes(app: FastifyInstance, ctx: RestContext): void {
  const pipelines = new Map<string, StartablePipeline>();
  for (const p of ctx.server.options.pipelines ?? []) pipelines.set(p.pipelineId, p);
  const schemas = [...pipelines.values()].filter((p) => p.inputSchema !== undefined).map((p) => `- \`${p.pipelineId}\`: \`${JSON.stringify(p.inputSchema)}\``);

  route(
    app,
    ctx,
    {
      method: 'POST',
      url: '/api/pipelines/:pipeline_id/runs',
      tag: 'pipelines',
      summary: 'Start a run of a pipeline',
      description:
        'Needs the "start" action on the pipeline, and the pipeline in the server\'s `pipelines` option. Answers 201 with the new run and `Location: /api/runs/{run_id}`; a repeated `idempotency_key` answers 200 with the run it started. Over the pipeline\'s concurrency limit: 409 `already_running` with the run in the way, or, when its policy queues (`concurrency.onLimit: "queue"`), 202 with status `QUEUED`, its `queue_position` and the runs it waits for: the run starts under that id when a slot frees (first in, first out), and `GET /api/runs/{run_id}` shows it QUEUED until then.' +
        (schemas.length === 0 ? '' : `\n\nInput schemas of this server's pipelines:\n${schemas.join('\n')}`),
      params: PipelineIdParams,
      body: StartBody,
      bodyLimit: 1024 * 1024,
      responses: {
        200: { description: 'The idempotency key had started this run: nothing new started', schema: StartAnswer },
        201: { description: 'The run started', schema: StartAnswer },
        202: { description: 'The start waits its turn (status QUEUED): the pipeline\'s concurrency policy queues starts over its limit', schema: StartAnswer },
        400: { description: 'Bad body, or an input that does not match the pipeline\'s input schema', schema: ErrorBody },
        401: { description: 'Missing or invalid token', schema: ErrorBody },
        403: { description: 'Not allowed to start runs of this pipeline', schema: ErrorBody },
        409: { description: 'The concurrency policy allows no more runs now, or its queue is full (`already_running`)', schema: AlreadyRunningBody },
        413: { description: 'Body over 1 MiB', schema: ErrorBody },
        429: { description: 'Rate limited (see Retry-After)', schema: ErrorBody },
        501: { description: 'The server was not given this pipeline (`start_unavailable`)', schema: ErrorBody },
      },
    },
    async (request, reply, principal) => {
      const pipelineId = request.params.pipeline_id;
      requireAction(ctx, principal, pipelineId, 'start');
      const body: unknown = request.body;
      if (typeof body !== 'object' || body === null) throw new HttpError(400, RestErrors.BAD_REQUEST, `body must be JSON like { "input": ... }, received ${show(body)}`);
      const pipeline = pipelines.get(pipelineId);
      if (pipeline === undefined) {
        throw new HttpError(501, RestErrors.START_UNAVAILABLE, `This server cannot start runs of "${pipelineId}": pass the pipeline in getWebSocketServer({ pipelines: [...] })`);
      }
      const { input, idempotency_key: idempotencyKey, concurrency_key: concurrencyKey } = body as { input?: unknown; idempotency_key?: string; concurrency_key?: string };
      const options: { idempotencyKey?: string; concurrencyKey?: string } = {};
      if (idempotencyKey !== undefined) options.idempotencyKey = idempotencyKey;
      if (concurrencyKey !== undefined) options.concurrencyKey = concurrencyKey;
      let run: KiqAnswer;
      try {
        run = await pipeline.kiq(inputOrDefaults(pipeline.inputSchema, input) as never, options);
      } catch (error) {
        if (!(error instanceof AlreadyRunningError)) throw error;
        return reply
          .code(409)
          .type('application/json; charset=utf-8')
          .send({ error: { code: RestErrors.ALREADY_RUNNING, message: error.message, run_id: error.runId, concurrency_key: error.concurrencyKey } });
      }
      const deduplicated = run.deduplicated === true;
      let status = run.queued === undefined ? 'RUNNING' : 'QUEUED';
      let queued = run.queued === undefined ? {} : { queue_position: run.queued.position, waiting_for: run.queued.waitingFor };
      if (deduplicated && ctx.broker !== null) {
        const summary = await ctx.broker.runState.getSummary(run.runId);
        const waiting = summary === null ? await queuedStatus(ctx, run.runId) : null;
        status = summary?.status ?? waiting?.status ?? status;
        if (waiting !== null) queued = { queue_position: waiting.queue_position, waiting_for: waiting.waiting_for };
      }
      return reply
        .code(deduplicated ? 200 : run.queued === undefined ? 201 : 202)
        .header('location', `${ctx.server.basePath}/api/runs/${encodeURIComponent(run.runId)}`)
        .send({ run_id: run.runId, pipeline_id: pipelineId, status, deduplicated, ...queued });
    },
  );
}

/**
 * The input of a start without one: for a pipeline whose input schema is an object, the
 * object its defaults make (a required field without a default still fails the check);
 * else `null`. An input given is taken as it is.
 */
function inputOrDefaults(schema: TSchema | undefined, input: unknown): unknown {
  if (input !== undefined) return input;
  if (schema === undefined || schema.type !== 'object') return null;
  return Value.Default(schema, {});
}
