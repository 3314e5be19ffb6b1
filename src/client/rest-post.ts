/**
 * The POST helper the SDK's run actions share (`startRun`, `resumeRun`): resolve the REST
 * base of a server URL, send JSON with the token, and turn an error answer into the
 * caller's error class with the server's code, message and `run_id`.
 */
import { ErrorCodes, type FlowcastError, InvalidArgumentError } from '../core/errors.js';
import { show } from '../core/validate.js';

/** What every run action of the SDK takes to reach a server. */
export interface RestActionOptions {
  /** The server: `http(s)://host:port` or its WebSocket URL (`ws(s)://host:port/...`, mapped to http(s)). */
  url: string | URL;
  /**
   * The token (sent as `Authorization: Bearer`): a string, or a function asked before
   * the request (for tokens that expire).
   * @default no token
   */
  token?: string | (() => string | Promise<string>);
  /** Aborts the request. */
  signal?: AbortSignal;
  /** @default globalThis.fetch */
  fetch?: typeof fetch;
}

/** The codes a run action's error carries. */
export type RestActionCode = (typeof ErrorCodes)['ALREADY_RUNNING' | 'UNAUTHORIZED' | 'REQUEST_REJECTED' | 'CONNECTION_FAILED' | 'RUN_NOT_RESUMABLE'];

/** Builds the caller's error: code, message, HTTP status (0: unreachable), the server's code and `error` body. */
export type RestActionError = (code: RestActionCode, message: string, status: number, serverCode: string | undefined, error: Record<string, unknown> | null, cause?: unknown) => FlowcastError;

/** A JSON answer: the resource, or `{ error }`. */
export type RestAnswer = Record<string, unknown>;

/** The REST base of a server URL: `ws://h:p/ws` → `http://h:p`. */
export function restBase(url: string | URL): string {
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
 * POSTs `body` (JSON; none when `undefined`) to `path` of the server and resolves with
 * the JSON answer of a 2xx and its `Location`. Any other answer, or none, rejects with
 * the error `fail` builds: `ALREADY_RUNNING` / `RUN_NOT_RESUMABLE` for those server codes,
 * `UNAUTHORIZED` for 401, `REQUEST_REJECTED` otherwise, `CONNECTION_FAILED` unreachable.
 */
export async function postAction(options: RestActionOptions, path: string, body: unknown, fail: RestActionError): Promise<{ status: number; answer: RestAnswer | null; location: string | null }> {
  if (typeof options !== 'object' || options === null) throw new InvalidArgumentError(`options must be an object with url, received ${show(options)}`);
  const base = restBase(options.url);
  const doFetch = options.fetch ?? globalThis.fetch;
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const token = typeof options.token === 'function' ? await options.token() : options.token;
  if (token !== undefined && token !== '') headers.authorization = `Bearer ${token}`;
  let response: Response;
  try {
    response = await doFetch(`${base}${path}`, {
      method: 'POST',
      headers,
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
  } catch (error) {
    const cause = (error as { cause?: unknown }).cause ?? error;
    throw fail(ErrorCodes.CONNECTION_FAILED, `cannot reach ${base}: ${cause instanceof Error ? cause.message : String(cause)}`, 0, undefined, null, error);
  }
  const text = await response.text();
  let answer: RestAnswer | null = null;
  try {
    const parsed: unknown = text === '' ? null : JSON.parse(text);
    if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) answer = parsed as RestAnswer;
  } catch {
    // Not JSON (a proxy's page): reported with the status below.
  }
  if (!response.ok) {
    const raw = answer?.error;
    const err = typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>) : null;
    const serverCode = typeof err?.code === 'string' ? err.code : undefined;
    const message = typeof err?.message === 'string' ? err.message : `${response.status} ${response.statusText}`;
    const code =
      serverCode === 'already_running'
        ? ErrorCodes.ALREADY_RUNNING
        : serverCode === 'run_not_resumable'
          ? ErrorCodes.RUN_NOT_RESUMABLE
          : response.status === 401
            ? ErrorCodes.UNAUTHORIZED
            : ErrorCodes.REQUEST_REJECTED;
    throw fail(code, message, response.status, serverCode, err);
  }
  return { status: response.status, answer, location: response.headers.get('location') };
}
