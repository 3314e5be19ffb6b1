/**
 * The monitor's requests in flight: each message that expects a reply carries an `id`,
 * and the reply (or the `error` with that `id`) is matched to what it answers. A ping
 * waits here for its pong; a lost connection voids every request sent on it.
 */
import { ErrorCodes } from '../core/errors.js';
import { MonitorError } from './errors.js';

/** The two ends of a promise someone waits on. */
export interface Waiter<T> {
  /** Fulfils the promise. */
  resolve: (value: T) => void;
  /** Rejects the promise. */
  reject: (error: Error) => void;
}

/** Resolves (`error` `null`) or rejects every waiter, and empties the list. */
export function settle<T>(waiters: Waiter<T>[], error: Error | null): void {
  for (const w of waiters.splice(0)) {
    if (error === null) w.resolve(undefined as T);
    else w.reject(error);
  }
}

/** What a reply with this `id` answers. */
export type Request =
  | { kind: 'subscribe'; key: string }
  | { kind: 'resume'; runId: string }
  | { kind: 'unsubscribe'; done: (() => void) | null }
  | { kind: 'ping'; sentAt: number; waiter: Waiter<number>; timer: ReturnType<typeof setTimeout> };

/** The requests sent and not answered yet, by id. */
export class Requests {
  readonly #send: (message: Record<string, unknown>) => void;
  readonly #pending = new Map<number, Request>();
  #nextId = 1;

  /** @param send sends a message on the open connection */
  constructor(send: (message: Record<string, unknown>) => void) {
    this.#send = send;
  }

  /** Sends `message` with the next id, remembering what its reply answers. */
  send(message: Record<string, unknown>, request: Request): void {
    const id = this.#nextId++;
    this.#pending.set(id, request);
    this.#send({ ...message, id });
  }

  /** Sends a `ping`; resolves with the round trip in milliseconds, rejects after `timeoutMs` (`url` names the server). */
  ping(timeoutMs: number, url: string): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      const id = this.#nextId;
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new MonitorError(ErrorCodes.TIMEOUT, `no pong from ${url} within ${timeoutMs}ms`));
      }, timeoutMs);
      this.send({ type: 'ping' }, { kind: 'ping', sentAt: performance.now(), waiter: { resolve, reject }, timer });
    });
  }

  /** The request a reply answers (by its `id`), forgotten from now on; `undefined` for none. */
  take(msg: Record<string, unknown>): Request | undefined {
    if (typeof msg.id !== 'number') return undefined;
    const request = this.#pending.get(msg.id);
    this.#pending.delete(msg.id);
    return request;
  }

  /** The connection is gone: a ping fails, an unsubscribe is done (a new connection starts without it), the rest is forgotten. */
  dropped(url: string): void {
    for (const request of this.#pending.values()) {
      if (request.kind === 'ping') {
        clearTimeout(request.timer);
        request.waiter.reject(new MonitorError(ErrorCodes.CONNECTION_FAILED, `the connection to ${url} closed before the pong`));
      } else if (request.kind === 'unsubscribe') {
        request.done?.();
      }
    }
    this.#pending.clear();
  }
}
