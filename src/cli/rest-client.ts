/**
 * The little REST client behind `flowcast status` and `flowcast history`: GET a JSON
 * document from a flowcast server with the token, and turn error answers into errors
 * that say what the server said.
 */
import { describeError } from '../core/errors.js';

/** Where the server is and how to get in. */
export interface RestTarget {
  /** `http(s)://host:port` or `ws(s)://host:port` (mapped to http). */
  url: string;
  token?: string;
}

/** An answer other than 2xx, or no answer at all. */
export class RestCallError extends Error {
  /** HTTP status, or 0 when the server could not be reached. */
  readonly status: number;
  /** The error code of the JSON body (`run_not_found`...), when there was one. */
  readonly code: string | null;
  constructor(status: number, code: string | null, message: string) {
    super(message);
    this.name = 'RestCallError';
    this.status = status;
    this.code = code;
  }
}

/**
 * What to do after the server refused the request's token, in the CLI's words (its
 * flag and environment variable, not the HTTP header the server names).
 */
export function tokenHint(given: boolean): string {
  return given
    ? 'the server refused the token: check the one given with --token or $FLOWCAST_TOKEN'
    : 'the server wants a token: pass --token <token> or set $FLOWCAST_TOKEN';
}

/** `ws://h:p/ws` → `http://h:p`: the base URL of the REST API. */
export function restBase(url: string): string {
  const u = new URL(url);
  u.protocol = u.protocol === 'wss:' ? 'https:' : u.protocol === 'ws:' ? 'http:' : u.protocol;
  return `${u.protocol}//${u.host}`;
}

/** GETs `path` (with `query`) and resolves with the parsed JSON body; rejects with a {@link RestCallError}. */
export async function getJson<T>(target: RestTarget, path: string, query: Record<string, string | number | boolean | undefined> = {}): Promise<T> {
  const url = new URL(path, `${restBase(target.url)}/`);
  for (const [key, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(key, String(value));
  const headers: Record<string, string> = { accept: 'application/json' };
  if (target.token !== undefined && target.token !== '') headers.authorization = `Bearer ${target.token}`;
  let response: Response;
  try {
    response = await fetch(url, { headers, signal: AbortSignal.timeout(15_000) });
  } catch (error) {
    const cause = (error as { cause?: unknown }).cause;
    throw new RestCallError(0, null, `cannot reach ${restBase(target.url)}: ${(cause ?? error) instanceof Error ? ((cause ?? error) as Error).message : describeError(cause ?? error)}`);
  }
  const text = await response.text();
  let body: unknown = null;
  try {
    body = text === '' ? null : JSON.parse(text);
  } catch {
    // Not JSON: a proxy's page, say. Reported below with the status.
  }
  if (!response.ok) {
    const err = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
    const code = typeof err?.code === 'string' ? err.code : null;
    let message = typeof err?.message === 'string' ? err.message : `${response.status} ${response.statusText}`;
    if (response.status === 401) {
      const given = headers.authorization !== undefined;
      const reason = message.replace(/^Unauthorized: /, '');
      // The server's "no token" reason names HTTP headers: the CLI says it with its flag.
      message = given && !/no token/.test(reason) ? `${tokenHint(true)} (${reason})` : tokenHint(given);
    }
    throw new RestCallError(response.status, code, message);
  }
  if (body === null) throw new RestCallError(response.status, null, `${url.pathname}: the server answered ${response.status} without a JSON body`);
  return body as T;
}
