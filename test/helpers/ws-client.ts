/**
 * A small WebSocket test client over the real `ws` package: connect (with a token in
 * any of the three places the server reads it, an Origin, TLS options), send JSON or raw
 * frames, keep every message received in order, and wait for a message or the close
 * with an upper-bound timeout (a bound for waiting, never an assertion on timing).
 */
import type { Socket } from 'node:net';
import WebSocket, { type ClientOptions } from 'ws';
import type { FlowcastEvent } from '../../src/index.js';

/** Anything the server sends: an event (it has `seq`) or a control message. */
export type ServerMessage = Record<string, unknown> & { type: string };

/** Options of {@link connect}. */
export interface ConnectOptions {
  /** Sent as `?token=`. */
  queryToken?: string;
  /** Sent as `Authorization: Bearer <token>`. */
  headerToken?: string;
  /** Sent as the subprotocol `flowcast.bearer.<token>`, offered with `flowcast`. */
  protocolToken?: string;
  /** The `Origin` header (browsers send one; scripts do not). */
  origin?: string;
  /** Path on the server. @default "/" */
  path?: string;
  /** TLS and other `ws` client options. */
  ws?: ClientOptions;
}

/** How a connection ended. */
export interface CloseInfo {
  code: number;
  reason: string;
}

/** `true` for a message that is a run event (events carry `seq` and `run_id`; control messages do not). */
export function isEvent(m: ServerMessage): m is ServerMessage & FlowcastEvent {
  return typeof m.seq === 'number' && typeof m.run_id === 'string' && typeof m.event_id === 'string';
}

/** A connected test client. Create it with {@link connect}. */
export class TestClient {
  readonly ws: WebSocket;
  /** Every message received, in order. */
  readonly messages: ServerMessage[] = [];
  /** Set once the connection closed. */
  closeInfo: CloseInfo | null = null;
  readonly closed: Promise<CloseInfo>;
  #nextId = 1;
  readonly #waiters = new Set<() => void>();

  constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? '' : (Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer)).toString('utf8');
      this.messages.push(JSON.parse(text) as ServerMessage);
      this.#wake();
    });
    this.closed = new Promise<CloseInfo>((resolve) => {
      ws.once('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString('utf8') };
        resolve(this.closeInfo);
        this.#wake();
      });
    });
    ws.on('error', () => undefined);
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  /** The run events received, in arrival order (of one run when `runId` is given). */
  events(runId?: string): FlowcastEvent[] {
    return this.messages.filter((m): m is ServerMessage & FlowcastEvent => isEvent(m) && (runId === undefined || m.run_id === runId));
  }

  /** The control messages of one type received so far. */
  controls(type: string): ServerMessage[] {
    return this.messages.filter((m) => !isEvent(m) && m.type === type);
  }

  /** Sends a JSON message. */
  send(message: unknown): void {
    this.ws.send(JSON.stringify(message));
  }

  /** Sends a raw text or binary frame. */
  sendRaw(data: string | Buffer, binary = false): void {
    this.ws.send(data, { binary });
  }

  /**
   * Sends `message` with a fresh `id` and resolves with the reply that echoes it
   * (`subscribed`, `unsubscribed`, `pong` or `error`).
   */
  async request(message: Record<string, unknown>, timeoutMs = 10_000): Promise<ServerMessage> {
    const id = `req-${this.#nextId++}`;
    this.send({ ...message, id });
    return this.waitFor((m) => m.id === id, `the reply to ${JSON.stringify(message)}`, timeoutMs);
  }

  /** Subscribes and waits for `subscribed`; throws with the error when the server refuses. */
  async subscribe(message: Record<string, unknown>, timeoutMs = 10_000): Promise<ServerMessage> {
    const reply = await this.request({ type: 'subscribe', ...message }, timeoutMs);
    if (reply.type !== 'subscribed') throw new Error(`subscribe ${JSON.stringify(message)} was answered ${JSON.stringify(reply)}`);
    return reply;
  }

  /** Resolves with the first message (from index `from`) that passes `test`; rejects after `timeoutMs` or when the connection closes first. */
  waitFor(test: (m: ServerMessage) => boolean, what: string, timeoutMs = 10_000, from = 0): Promise<ServerMessage> {
    return this.#until(() => this.messages.slice(from).find(test), what, timeoutMs);
  }

  /** Resolves once `condition()` holds (checked after each message); rejects after `timeoutMs` or on close. */
  async waitUntil(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    await this.#until(() => (condition() ? true : undefined), what, timeoutMs);
  }

  /** Resolves once the run's terminal event has arrived. */
  async waitForEnd(runId: string, timeoutMs = 10_000): Promise<FlowcastEvent> {
    const end = await this.waitFor(
      (m) => isEvent(m) && m.run_id === runId && (m.type === 'PipelineCompleteEvent' || m.type === 'PipelineErrorEvent' || m.type === 'PipelineCancelledEvent'),
      `the end of run ${runId}`,
      timeoutMs,
    );
    return end as ServerMessage & FlowcastEvent;
  }

  #until<T>(probe: () => T | undefined, what: string, timeoutMs: number): Promise<T> {
    const now = probe();
    if (now !== undefined) return Promise.resolve(now);
    return new Promise<T>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#waiters.delete(check);
      };
      const check = (): void => {
        const found = probe();
        if (found !== undefined) {
          done();
          resolve(found);
        } else if (this.closeInfo !== null) {
          done();
          reject(new Error(`${what}: the connection closed first (${this.closeInfo.code} ${this.closeInfo.reason}); received ${this.describe()}`));
        }
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`${what} did not arrive within ${timeoutMs}ms; received ${this.describe()}`));
      }, timeoutMs);
      this.#waiters.add(check);
    });
  }

  /** Resolves with the close code and reason (rejects after `timeoutMs`). */
  waitForClose(timeoutMs = 10_000): Promise<CloseInfo> {
    return new Promise<CloseInfo>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the connection did not close within ${timeoutMs}ms; received ${this.describe()}`)), timeoutMs);
      void this.closed.then((info) => {
        clearTimeout(timer);
        resolve(info);
      });
    });
  }

  /** Stops reading from the network (a client that stalls): the server's writes back up. */
  pause(): void {
    this.#socket().pause();
  }

  /** Reads again after {@link pause}. */
  resume(): void {
    this.#socket().resume();
  }

  #socket(): Socket {
    // ws keeps its net.Socket private; tests reach it to simulate a stalled reader.
    const socket = (this.ws as unknown as { _socket?: Socket })._socket;
    if (socket === undefined) throw new Error('the WebSocket has no socket (not connected?)');
    return socket;
  }

  /** Closes the connection and waits for it to be closed. */
  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close();
    await this.waitForClose().catch(() => this.ws.terminate());
  }

  /** A short description of what was received, for failure messages. */
  describe(): string {
    const shown = this.messages.slice(-30).map((m) => (isEvent(m) ? `${m.type}#${m.seq}` : JSON.stringify(m)));
    return `${this.messages.length} message(s)${this.messages.length > 30 ? ', the last 30' : ''}: ${shown.join(' ')}`;
  }
}

/** The URL with the path and `?token=` of `options`. */
export function clientUrl(base: string, options: ConnectOptions = {}): string {
  const url = new URL(options.path ?? '/', base);
  if (options.queryToken !== undefined) url.searchParams.set('token', options.queryToken);
  return url.toString();
}

function open(base: string, options: ConnectOptions): WebSocket {
  const headers: Record<string, string> = {};
  if (options.headerToken !== undefined) headers.authorization = `Bearer ${options.headerToken}`;
  const wsOptions: ClientOptions = { ...options.ws, headers: { ...options.ws?.headers, ...headers } };
  if (options.origin !== undefined) wsOptions.origin = options.origin;
  const protocols = options.protocolToken === undefined ? [] : ['flowcast', `flowcast.bearer.${options.protocolToken}`];
  return new WebSocket(clientUrl(base, options), protocols, wsOptions);
}

/** Connects and resolves once the connection is open (a server that rejects the upgrade makes it reject). */
export function connect(base: string, options: ConnectOptions = {}, timeoutMs = 10_000): Promise<TestClient> {
  const ws = open(base, options);
  const client = new TestClient(ws);
  return new Promise<TestClient>((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`could not connect to ${base} within ${timeoutMs}ms`));
    }, timeoutMs);
    ws.once('open', () => {
      clearTimeout(timer);
      resolve(client);
    });
    ws.once('unexpected-response', (_req, res) => {
      clearTimeout(timer);
      reject(new UpgradeRejected(res.statusCode ?? 0));
      ws.terminate();
    });
    ws.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/** The server answered the upgrade with an HTTP status instead of 101. */
export class UpgradeRejected extends Error {
  override readonly name = 'UpgradeRejected';
  constructor(readonly status: number) {
    super(`the server refused the WebSocket upgrade with HTTP ${status}`);
  }
}

/** Connects and resolves with the HTTP status the server refused the upgrade with; rejects if the upgrade succeeds. */
export async function connectRejected(base: string, options: ConnectOptions = {}): Promise<number> {
  try {
    const client = await connect(base, options);
    await client.close();
  } catch (error) {
    if (error instanceof UpgradeRejected) return error.status;
    throw error;
  }
  throw new Error(`the upgrade to ${base} succeeded but a refusal was expected`);
}

/** Every seq of a list of events, in order. */
export function seqs(events: readonly FlowcastEvent[]): number[] {
  return events.map((e) => e.seq);
}
