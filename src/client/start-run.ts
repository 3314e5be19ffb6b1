/**
 * `startRun()`: starts a run of a pipeline through a flowcast server's REST API
 * (`POST /api/pipelines/{pipeline_id}/runs`), with `fetch`: browsers and Node 20 alike.
 */
import { ErrorCodes, FlowcastError, InvalidArgumentError } from '../core/errors.js';
import { show } from '../core/validate.js';

/** Options of {@link startRun}. */
export interface StartRunOptions {
  /** The server: `http(s)://host:port` or its WebSocket URL (`ws(s)://host:port/...`, mapped to http(s)). */
  url: string | URL;
  /**
   * The token (sent as `Authorization: Bearer`): a string, or a function asked before
   * the request (for tokens that expire). The caller needs the `start` action on the pipeline.
   * @default no token
   */
  token?: string | (() => string | Promise<string>);
  /** A repeated key (within the server's window, 24 h by default) answers the run it started instead of starting another. */
  idempotencyKey?: string;
  /** The key of the pipeline's concurrency policy (overrides the key it computes from the input). */
  concurrencyKey?: string;
  /** Aborts the request. */
  signal?: AbortSignal;
  /** @default globalThis.fetch */
  fetch?: typeof fetch;
}

/** The started run, as the server answered. */
export interface StartedRun {
  run_id: string;
  pipeline_id: string;
  /** `RUNNING` for a new run; the run's current status when an idempotency key answered it. */
  status: string;
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

/** A JSON answer of the start route: the run, or `{ error }`. */
interface Answer {
  run_id?: unknown;
  pipeline_id?: unknown;
  status?: unknown;
  deduplicated?: unknown;
  error?: { code?: unknown; message?: unknown; run_id?: unknown } | null;
}

/** The REST base of a server URL: `ws://h:p/ws` → `http://h:p`. */
function restBase(url: string | URL): string {
  let u: URL;
  try {
    u = new URL(String(url));
  } catch {
    throw new InvalidArgumentError(`url must be an http(s):// or ws(s):// URL, received ${show(String(url))}`);
  }
  const protocol = { 'ws:': 'http:', 'wss:': 'https:', 'http:': 'http:', 'https:': 'https:' }[u.protocol];
  if (protocol === undefined) throw new InvalidArgumentError(`url must be an http(s):// or ws(s):// URL, received ${show(String(url))}`);
  return `${protocol}//${u.host}`;
}

/**
 * Starts a run of `pipelineId` with `input` on a flowcast server, and resolves with it.
 * Rejects with a {@link StartRunError}: over the pipeline's concurrency limit its code is
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
  const base = restBase(options.url);
  const doFetch = options.fetch ?? globalThis.fetch;
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
  const token = typeof options.token === 'function' ? await options.token() : options.token;
  if (token !== undefined && token !== '') headers.authorization = `Bearer ${token}`;
  const body: Record<string, unknown> = { input: input === undefined ? null : input };
  if (options.idempotencyKey !== undefined) body.idempotency_key = options.idempotencyKey;
  if (options.concurrencyKey !== undefined) body.concurrency_key = options.concurrencyKey;
  let response: Response;
  try {
    response = await doFetch(`${base}/api/pipelines/${encodeURIComponent(pipelineId)}/runs`, {
      method: 'POST',
      headers,
      body: JSON.stringify(body),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
  } catch (error) {
    const cause = (error as { cause?: unknown }).cause ?? error;
    throw new StartRunError(ErrorCodes.CONNECTION_FAILED, `cannot reach ${base}: ${cause instanceof Error ? cause.message : String(cause)}`, 0, undefined, undefined, { cause: error });
  }
  const text = await response.text();
  let answer: Answer | null = null;
  try {
    answer = text === '' ? null : (JSON.parse(text) as Answer);
  } catch {
    // Not JSON (a proxy's page): reported with the status below.
  }
  if (!response.ok) {
    const err = answer?.error ?? null;
    const serverCode = typeof err?.code === 'string' ? err.code : undefined;
    const message = typeof err?.message === 'string' ? err.message : `${response.status} ${response.statusText}`;
    const runId = typeof err?.run_id === 'string' ? err.run_id : undefined;
    const code = serverCode === 'already_running' ? ErrorCodes.ALREADY_RUNNING : response.status === 401 ? ErrorCodes.UNAUTHORIZED : ErrorCodes.REQUEST_REJECTED;
    throw new StartRunError(code, message, response.status, serverCode, runId);
  }
  if (answer === null || typeof answer.run_id !== 'string') {
    throw new StartRunError(ErrorCodes.REQUEST_REJECTED, `the server answered ${response.status} without a run`, response.status, undefined, undefined);
  }
  return {
    run_id: answer.run_id,
    pipeline_id: String(answer.pipeline_id),
    status: String(answer.status),
    deduplicated: answer.deduplicated === true,
    location: response.headers.get('location') ?? `/api/runs/${encodeURIComponent(answer.run_id)}`,
  };
}
