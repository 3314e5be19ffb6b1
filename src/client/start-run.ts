/**
 * `startRun()`: starts a run of a pipeline through a flowcast server's REST API
 * (`POST /api/pipelines/{pipeline_id}/runs`), with `fetch`: browsers and Node 20 alike.
 */
import { ErrorCodes, FlowcastError, InvalidArgumentError } from '../core/errors.js';
import { show } from '../core/validate.js';
import { postAction, type RestActionError, type RestActionOptions } from './rest-post.js';

/** Options of {@link startRun}: where the server is (`url`, `token`: it needs the `start` action on the pipeline) and the start's keys. */
export interface StartRunOptions extends RestActionOptions {
  /** A repeated key (within the server's window, 24 h by default) answers the run it started instead of starting another. */
  idempotencyKey?: string;
  /** The key of the pipeline's concurrency policy (overrides the key it computes from the input). */
  concurrencyKey?: string;
}

/** The started run, as the server answered. */
export interface StartedRun {
  run_id: string;
  pipeline_id: string;
  /**
   * `RUNNING` for a new run; `QUEUED` when the pipeline's concurrency policy queues starts
   * over its limit (`onLimit: "queue"`): the run starts under this id when a slot frees;
   * the run's current status when an idempotency key answered it.
   */
  status: string;
  /** With `QUEUED`: its place in the queue of its concurrency key (1: next). */
  queuePosition?: number;
  /** With `QUEUED`: the runs in the way (holding the slots of its concurrency key). */
  waitingFor?: string[];
  /** `true`: the idempotency key had started this run, nothing new was started. */
  deduplicated: boolean;
  /** Where the run is: `/api/runs/{run_id}`. */
  location: string;
}

/**
 * A start the server refused: `ALREADY_RUNNING` (the concurrency policy is full: `runId`
 * names the run in the way), `UNAUTHORIZED`, `REQUEST_REJECTED` (bad input, forbidden,
 * unknown pipeline: `serverCode` says which), or `CONNECTION_FAILED`.
 */
export class StartRunError extends FlowcastError {
  override readonly name = 'StartRunError';
  constructor(
    code: (typeof ErrorCodes)['ALREADY_RUNNING' | 'UNAUTHORIZED' | 'REQUEST_REJECTED' | 'CONNECTION_FAILED'],
    message: string,
    /** HTTP status; 0 when the server could not be reached. */
    readonly status: number,
    /** The server's error code (`already_running`, `bad_request`, `forbidden`, `start_unavailable`...). */
    readonly serverCode: string | undefined,
    /** With `ALREADY_RUNNING`: a run in flight that holds the slot. */
    readonly runId: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/**
 * Starts a run of `pipelineId` with `input` on a flowcast server, and resolves with it:
 * status `RUNNING`, or `QUEUED` (with `queuePosition`) when the pipeline queues starts
 * over its concurrency limit. Rejects with a {@link StartRunError}: over the pipeline's concurrency limit its code is
 * `ALREADY_RUNNING` and its `runId` the run in the way.
 *
 * @example
 * import { startRun } from 'flowcast/client';
 * try {
 *   const run = await startRun('reports', { month: '2026-11' }, { url: 'http://localhost:8765', token, idempotencyKey: clickId });
 *   console.log('started', run.run_id);
 * } catch (error) {
 *   if (error instanceof StartRunError && error.code === ErrorCodes.ALREADY_RUNNING) console.log('Task is already running:', error.runId);
 * }
 */
export async function startRun(pipelineId: string, input: unknown, options: StartRunOptions): Promise<StartedRun> {
  if (typeof pipelineId !== 'string' || pipelineId === '') throw new InvalidArgumentError(`pipelineId must be a non-empty string, received ${show(pipelineId)}`);
  if (typeof options !== 'object' || options === null) throw new InvalidArgumentError(`startRun options must be an object with url, received ${show(options)}`);
  // No input: the server takes the pipeline's schema defaults (docs/rest.md), else null.
  const body: Record<string, unknown> = input === undefined ? {} : { input };
  if (options.idempotencyKey !== undefined) body.idempotency_key = options.idempotencyKey;
  if (options.concurrencyKey !== undefined) body.concurrency_key = options.concurrencyKey;
  const fail: RestActionError = (code, message, status, serverCode, error, cause) =>
    new StartRunError(code === ErrorCodes.RUN_NOT_RESUMABLE ? ErrorCodes.REQUEST_REJECTED : code, message, status, serverCode, typeof error?.run_id === 'string' ? error.run_id : undefined, cause === undefined ? undefined : { cause });
  const { status, answer, location } = await postAction(options, `/api/pipelines/${encodeURIComponent(pipelineId)}/runs`, body, fail);
  if (answer === null || typeof answer.run_id !== 'string') {
    throw new StartRunError(ErrorCodes.REQUEST_REJECTED, `the server answered ${status} without a run`, status, undefined, undefined);
  }
  const run: StartedRun = {
    run_id: answer.run_id,
    pipeline_id: String(answer.pipeline_id),
    status: String(answer.status),
    deduplicated: answer.deduplicated === true,
    location: location ?? `/api/runs/${encodeURIComponent(answer.run_id)}`,
  };
  if (typeof answer.queue_position === 'number') run.queuePosition = answer.queue_position;
  if (Array.isArray(answer.waiting_for)) run.waitingFor = answer.waiting_for.filter((id): id is string => typeof id === 'string');
  return run;
}
