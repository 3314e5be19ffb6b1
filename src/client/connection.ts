import { describeError, ErrorCodes, InvalidArgumentError, toError } from '../core/errors.js';
import { show } from '../core/validate.js';
import { fullJitterDelay, type ResolvedReconnectOptions } from './backoff.js';
import { MonitorError } from './errors.js';
import { loadWsPackage } from './node-websocket.js';
import { Outbox } from './outbox.js';
import { displayUrl } from './targets.js';
import type { ConnectionState, PipelineMonitorOptions, StateChange, WebSocketConstructor, WebSocketLike } from './types.js';

const TRANSITIONS: Record<ConnectionState, readonly ConnectionState[]> = {
  idle: ['connecting', 'closed'],
  connecting: ['open', 'reconnecting', 'closed'],
  open: ['reconnecting', 'closed'],
  reconnecting: ['connecting', 'closed'],
  closed: [],
};

const OPEN = 1;
const CLOSED = 3;
const UNAUTHORIZED_CLOSE = 4001;
/** Characters a subprotocol name may hold (an HTTP token, RFC 7230): JWTs and most API keys fit. */
export const PROTOCOL_SAFE = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;
const BEARER_PREFIX = 'flowcast.bearer.';
/** Request ids of handshake pings: strings, so they never meet the monitor's numeric ids. */
const HANDSHAKE_PREFIX = 'hello-';

/** What a {@link Connection} is set up with (resolved by the monitor from its options). */
export interface ConnectionSettings {
  /** The servers, tried in turn: after a failed attempt or a lost connection the next one is used. */
  urls: readonly URL[];
  token: PipelineMonitorOptions['token'];
  /** `null`: the runtime has no global WebSocket; the `ws` package is loaded at the first attempt. */
  WebSocket: WebSocketConstructor | null;
  reconnect: ResolvedReconnectOptions | false;
  protocols: readonly string[];
  connectTimeoutMs: number;
  rate: { messagesPerSecond: number; burst: number };
}

/** What the connection tells its owner. */
export interface ConnectionHooks {
  state(change: StateChange): void;
  /** The server confirmed the connection: (re)subscribe now. */
  open(): void;
  /** A JSON object from the server. */
  message(msg: Record<string, unknown>): void;
  /** The socket is gone: whatever was in flight on it is void. */
  dropped(): void;
  /** Errors for the owner's `error` event. */
  error(error: Error): void;
}

interface Waiter {
  resolve: () => void;
  reject: (error: Error) => void;
}

/**
 * One logical connection over successive sockets: the state machine
 * (`idle → connecting → open → reconnecting → connecting … → closed`, one `setState`
 * that reports `{ from, to }`), the handshake (a `ping` whose `pong` says the server
 * accepted the token), full-jitter reconnects, and paced sending.
 */
export class Connection {
  readonly #s: ConnectionSettings;
  readonly #hooks: ConnectionHooks;
  /** Index in `urls` of the server used now. */
  #current = 0;
  #state: ConnectionState = 'idle';
  #socket: WebSocketLike | null = null;
  #outbox: Outbox | null = null;
  /** Bumped for every socket: callbacks of an older one are ignored. */
  #generation = 0;
  /** Attempts in a row that did not reach `open`. */
  #failures = 0;
  /** The backoff exponent: reset once a connection stays open `stableAfterMs`. */
  #backoffAttempt = 0;
  #connectTimer: ReturnType<typeof setTimeout> | null = null;
  #reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  #stableTimer: ReturnType<typeof setTimeout> | null = null;
  #waiters: Waiter[] = [];
  #closing: Promise<void> | null = null;
  #closeError: MonitorError | null = null;

  constructor(settings: ConnectionSettings, hooks: ConnectionHooks) {
    this.#s = settings;
    this.#hooks = hooks;
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** The server used now (or last), without the token. */
  get url(): URL {
    return this.#s.urls[this.#current] as URL;
  }

  get #display(): string {
    return displayUrl(this.url);
  }

  /** Why the connection closed, when it was not `close()`. */
  get closeError(): MonitorError | null {
    return this.#closeError;
  }

  connect(): Promise<void> {
    if (this.#state === 'open') return Promise.resolve();
    if (this.#state === 'closed') return Promise.reject(this.#closeError ?? closedError('connect()'));
    const p = new Promise<void>((resolve, reject) => this.#waiters.push({ resolve, reject }));
    if (this.#state === 'idle') this.#attempt();
    return p;
  }

  /** Sends on the current socket (paced); dropped when there is none. */
  send(message: Record<string, unknown>): void {
    this.#outbox?.send(message);
  }

  /** To `closed` for good. Resolves once the socket is closed. Idempotent. */
  close(): Promise<void> {
    if (this.#closing !== null) return this.#closing;
    const socket = this.#socket;
    this.#shutdown(null, {});
    this.#closing =
      socket === null || socket.readyState === CLOSED
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            socket.onclose = () => resolve();
            try {
              socket.close(1000, 'client closed');
            } catch {
              resolve();
            }
          });
    return this.#closing;
  }

  #setState(to: ConnectionState, details: Omit<StateChange, 'from' | 'to'> = {}): void {
    const from = this.#state;
    if (!TRANSITIONS[from].includes(to)) throw new Error(`flowcast client: no transition from ${from} to ${to}`);
    this.#state = to;
    this.#hooks.state({ from, to, ...details });
  }

  #attempt(): void {
    const generation = ++this.#generation;
    this.#failures++;
    this.#setState('connecting', { attempt: this.#failures });
    const ms = this.#s.connectTimeoutMs;
    this.#connectTimer = setTimeout(() => this.#abandon(generation, `no answer within connectTimeoutMs (${ms}ms)`), ms);
    void this.#open(generation);
  }

  async #open(generation: number): Promise<void> {
    let token: string | undefined;
    try {
      const t = this.#s.token;
      token = typeof t === 'function' ? await t() : t;
      if (token !== undefined && (typeof token !== 'string' || token === '')) throw new InvalidArgumentError(`the token function must return a non-empty string, returned ${show(token)}`);
    } catch (error) {
      if (generation === this.#generation) this.#hooks.error(toError(error));
      this.#abandon(generation, `no token: ${describeError(error)}`);
      return;
    }
    if (generation !== this.#generation || this.#state !== 'connecting') return;
    let WebSocketClass = this.#s.WebSocket;
    if (WebSocketClass === null) {
      try {
        WebSocketClass = await loadWsPackage();
      } catch (error) {
        // Not something a reconnect can wait for: closed, with the error naming the package.
        if (generation === this.#generation && this.#state === 'connecting') this.#shutdown(error instanceof MonitorError ? error : new MonitorError(ErrorCodes.CONNECTION_FAILED, describeError(error), { cause: error }), {});
        return;
      }
      if (generation !== this.#generation || this.#state !== 'connecting') return;
    }
    const url = new URL(this.url.href);
    const protocols = ['flowcast', ...this.#s.protocols];
    if (token !== undefined) {
      if (PROTOCOL_SAFE.test(token)) protocols.push(BEARER_PREFIX + token);
      else url.searchParams.set('token', token);
    }
    let socket: WebSocketLike;
    try {
      socket = new WebSocketClass(url.href, protocols);
    } catch (error) {
      this.#abandon(generation, describeError(error));
      return;
    }
    this.#socket = socket;
    this.#outbox = new Outbox(this.#s.rate.messagesPerSecond, this.#s.rate.burst, (text) => {
      if (socket.readyState === OPEN) socket.send(text);
    });
    const hello = `${HANDSHAKE_PREFIX}${generation}`;
    socket.onopen = () => {
      // The server holds messages until it has checked the token: its pong says it accepted it.
      if (generation === this.#generation) this.#outbox?.send({ type: 'ping', id: hello });
    };
    socket.onmessage = (event) => {
      if (generation !== this.#generation) return;
      const msg = parse(event.data, (error) => this.#hooks.error(error));
      if (msg === null) return;
      if (this.#state === 'connecting' && msg.type === 'pong' && msg.id === hello) this.#opened();
      else this.#hooks.message(msg);
    };
    // Needed anyway: `ws` throws an 'error' nobody listens to. Browsers say nothing more in it; `ws` says why.
    let lastError = '';
    socket.onerror = (event) => {
      const message = (event as { message?: unknown } | null)?.message;
      if (typeof message === 'string') lastError = message;
    };
    socket.onclose = (event) => this.#closed(generation, event.code, String(event.reason) || lastError);
  }

  /** An attempt that cannot succeed any more: drop its socket and count it as failed. */
  #abandon(generation: number, reason: string): void {
    if (generation !== this.#generation || this.#state !== 'connecting') return;
    const socket = this.#socket;
    if (socket !== null) {
      quiet(socket);
      try {
        socket.close();
      } catch {
        // A socket that never opened: nothing more to do.
      }
    }
    this.#closed(generation, 1006, reason);
  }

  #opened(): void {
    this.#clearTimers();
    this.#failures = 0;
    if (this.#s.reconnect !== false) {
      this.#stableTimer = setTimeout(() => (this.#backoffAttempt = 0), this.#s.reconnect.stableAfterMs);
    }
    // Subscriptions go out before anyone hears of the open, so that none goes twice.
    this.#hooks.open();
    this.#setState('open');
    settle(this.#waiters, null);
  }

  #closed(generation: number, code: number, reason: string): void {
    if (generation !== this.#generation) return;
    this.#generation++;
    const wasConnecting = this.#state === 'connecting';
    this.#drop();
    if (this.#state === 'closed') return;
    const at = { code, ...(reason === '' ? {} : { reason }) };
    const why = `${code}${reason === '' ? '' : ` ${reason}`}`;
    const failed = this.#display;
    // Fail over: the next attempt goes to the next server (the same one when there is one).
    if (code !== UNAUTHORIZED_CLOSE) this.#current = (this.#current + 1) % this.#s.urls.length;
    const reconnect = this.#s.reconnect;
    if (code === UNAUTHORIZED_CLOSE) {
      this.#shutdown(new MonitorError(ErrorCodes.UNAUTHORIZED, `Unauthorized: ${failed} rejected the token (close code 4001)`, { closeCode: code }), at);
    } else if (reconnect === false) {
      const message = wasConnecting ? `could not connect to ${failed} (${why})` : `the connection to ${failed} closed (${why}) and reconnect is off`;
      this.#shutdown(new MonitorError(ErrorCodes.CONNECTION_FAILED, message, { closeCode: code }), at);
    } else if (wasConnecting && this.#failures >= reconnect.maxAttempts) {
      const n = this.#failures;
      const where = this.#s.urls.length === 1 ? failed : `any of ${this.#s.urls.map((u) => displayUrl(u)).join(', ')}`;
      const message = `could not connect to ${where} after ${n} attempt${n === 1 ? '' : 's'} (last: ${why})`;
      this.#shutdown(new MonitorError(ErrorCodes.CONNECTION_FAILED, message, { closeCode: code }), at);
    } else {
      const delayMs = fullJitterDelay(Math.min(this.#backoffAttempt, 30), reconnect);
      this.#backoffAttempt++;
      this.#setState('reconnecting', { ...at, delayMs });
      this.#reconnectTimer = setTimeout(() => {
        this.#reconnectTimer = null;
        if (this.#state === 'reconnecting') this.#attempt();
      }, delayMs);
    }
  }

  /** Forgets the socket and what was queued on it. */
  #drop(): void {
    this.#clearTimers();
    this.#outbox?.clear();
    this.#outbox = null;
    const had = this.#socket !== null;
    this.#socket = null;
    if (had) this.#hooks.dropped();
  }

  #shutdown(error: MonitorError | null, details: Omit<StateChange, 'from' | 'to'>): void {
    if (this.#state === 'closed') return;
    this.#generation++;
    if (this.#reconnectTimer !== null) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
    const socket = this.#socket;
    this.#drop();
    if (socket !== null) quiet(socket);
    this.#closeError = error;
    this.#setState('closed', error === null ? details : { ...details, error });
    settle(this.#waiters, error ?? closedError('connect()'));
    if (error !== null) this.#hooks.error(error);
  }

  #clearTimers(): void {
    if (this.#connectTimer !== null) clearTimeout(this.#connectTimer);
    if (this.#stableTimer !== null) clearTimeout(this.#stableTimer);
    this.#connectTimer = null;
    this.#stableTimer = null;
  }
}

/** Detaches a socket's handlers (an empty `onerror` stays: `ws` throws unheard errors). */
function quiet(socket: WebSocketLike): void {
  socket.onopen = null;
  socket.onmessage = null;
  socket.onclose = null;
  socket.onerror = () => undefined;
}

function settle(waiters: Waiter[], error: Error | null): void {
  for (const w of waiters.splice(0)) {
    if (error === null) w.resolve();
    else w.reject(error);
  }
}

/** The error of a request that the closing of the monitor ended. */
export function closedError(what: string): MonitorError {
  return new MonitorError(ErrorCodes.CLOSED, `${what}: the monitor is closed`);
}

/** A text frame as a JSON object; `null` for anything else (binary frames, which the protocol never sends; arrays). */
function parse(data: unknown, onError: (error: Error) => void): Record<string, unknown> | null {
  if (typeof data !== 'string') return null;
  try {
    const value: unknown = JSON.parse(data);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch (error) {
    onError(new MonitorError(ErrorCodes.NOT_JSON, `the server sent a message that is not JSON: ${describeError(error)}`));
    return null;
  }
}
