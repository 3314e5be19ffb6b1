import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import Fastify, { type FastifyInstance } from 'fastify';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { describeError, FlowcastError, ErrorCodes, InvalidArgumentError } from '../core/errors.js';
import { checkKnownKeys, checkObject, checkPositiveInt, checkNonNegativeInt, show } from '../core/validate.js';
import type { Broker } from '../core/broker.js';
import type { EventTransport } from '../transport/transport.js';
import { Authenticator, BEARER_PROTOCOL_PREFIX, type AuthOptions, type Principal } from './auth.js';
import type { OutgoingLimits } from './connection.js';
import { Hub, type SnapshotSource } from './hub.js';
import { CloseCodes, parseClientMessage, ProtocolErrors, type ClientMessage } from './protocol.js';
import { WsConnection } from './ws-connection.js';
import { EngineReporter } from './engine.js';
import { checkPipelines, type RetryablePipeline } from './rest/retry.js';
import { registerSse } from './sse.js';
import { resolveTls, type TlsOptions } from './tls.js';
import { resolveDeflate, type PerMessageDeflateOption } from './deflate.js';
import { feedFromBridges, getDefaultTransport } from './bridge.js';
import { frameworkErrors, registerRoutes, type RestRateLimitOptions, type TrackingLike } from './routes.js';

/** Options of {@link getWebSocketServer}. */
export interface ServerOptions {
  /** @default "127.0.0.1" */
  host?: string;
  /** 0 picks a free port. @default 8765 */
  port?: number;
  /** Where events come from. @default the broker's transport, else the one `setupWebSocketBridge()` feeds */
  transport?: EventTransport;
  /** The broker whose runs the server shows and may cancel. */
  broker?: Broker;
  /** Tracking behind snapshots and the REST API. */
  tracking?: TrackingLike;
  /** Token checks (seed 000 §10). None: open to everyone. */
  auth?: AuthOptions;
  /** Native TLS (seed 000 §10.4): `cert` and `key` each a file path, PEM text or a Buffer. */
  tls?: TlsOptions;
  /** Allowed `Origin` values of browser connections; others get 403. @default any */
  allowedOrigins?: string[];
  /** @default 10000 */
  maxConnections?: number;
  /**
   * permessage-deflate for clients that offer it (seed 000 §9.4): `true` compresses
   * messages of 1024 bytes or more, `{ threshold }` sets the size. Each message over it
   * is compressed once for every subscriber; costs in docs/server.md.
   * @default false
   */
  perMessageDeflate?: PerMessageDeflateOption;
  /** Largest incoming message in bytes. @default 65536 */
  maxPayload?: number;
  /** Subscriptions per connection. @default 1000 */
  maxSubscriptions?: number;
  /** Incoming messages per second per connection (token bucket); past it an error, then a close. @default 50 */
  messagesPerSecond?: number;
  /** Burst size of the rate limit. @default 100 */
  messageBurst?: number;
  /** Ping interval; a peer that misses two is dropped. 0 disables. @default 30000 */
  heartbeatMs?: number;
  /** Outgoing buffer limits per connection. */
  outgoing?: OutgoingLimits;
  /**
   * A folder of static files served at `/` (a dashboard of your own); `false` serves the
   * minimal built-in page instead of the dashboard.
   * @default the built dashboard (`dist/dashboard/`), or the built-in page when it was not built
   */
  staticDir?: string | false;
  /** Per-client-IP rate limit of the REST API and `/metrics` (429 with Retry-After past it); `false` turns it off. @default { requestsPerSecond: 50, burst: 100 } */
  restRateLimit?: RestRateLimitOptions | false;
  /**
   * Pipelines the server may start runs of: `POST /api/runs/{run_id}/retry` starts a new
   * run of the run's pipeline with the same input (docs/dashboard.md). Pipelines not
   * listed cannot be retried from the server.
   * @default []
   */
  pipelines?: RetryablePipeline[];
  /** How often subscribers of the `engine` channel get `engine_status`, in ms. @default 2000 */
  engineIntervalMs?: number;
}

const KNOWN = [
  'host', 'port', 'transport', 'broker', 'tracking', 'auth', 'tls', 'allowedOrigins', 'maxConnections', 'maxPayload', 'perMessageDeflate',
  'maxSubscriptions', 'messagesPerSecond', 'messageBurst', 'heartbeatMs', 'outgoing', 'staticDir', 'restRateLimit',
  'pipelines', 'engineIntervalMs',
] as const;

type ServerState = 'created' | 'starting' | 'listening' | 'closing' | 'closed';

/**
 * The flowcast server: one HTTP(S) server on one port serving the WebSocket endpoint
 * (`/` and `/ws`), SSE (`/api/events`), the REST API, `/health`, `/metrics` and the
 * dashboard. Create it with {@link getWebSocketServer}.
 */
export class FlowcastServer {
  readonly app: FastifyInstance;
  readonly hub: Hub;
  /** The engine status view: `GET /api/engine` and the `engine` channel. */
  readonly engine: EngineReporter;
  readonly auth: Authenticator;
  readonly transport: EventTransport;
  readonly options: Readonly<ServerOptions>;
  readonly #wss: WebSocketServer;
  readonly #limits: Required<OutgoingLimits>;
  readonly #connections = new Set<WsConnection>();
  #heartbeat: NodeJS.Timeout | null = null;
  #state: ServerState = 'created';
  #closing: Promise<void> | null = null;
  #port = 0;
  /** Stops `setupWebSocketBridge(hooks)` feeding this server's own transport. */
  #unbridge: (() => void) | null = null;

  constructor(options: ServerOptions = {}) {
    checkKnownKeys(checkObject(options, 'server options'), KNOWN, 'server options');
    const opts: ServerOptions = { host: '127.0.0.1', port: 8765, ...options };
    checkNonNegativeInt(opts.port, 'port');
    if (opts.port! > 65535) throw new InvalidArgumentError(`port must be 0-65535, received ${show(opts.port)}`);
    for (const key of ['maxConnections', 'maxPayload', 'maxSubscriptions', 'messagesPerSecond', 'messageBurst'] as const) {
      if (opts[key] !== undefined) checkPositiveInt(opts[key], key);
    }
    if (opts.heartbeatMs !== undefined) checkNonNegativeInt(opts.heartbeatMs, 'heartbeatMs');
    if (opts.engineIntervalMs !== undefined) checkPositiveInt(opts.engineIntervalMs, 'engineIntervalMs');
    if (opts.pipelines !== undefined) checkPipelines(opts.pipelines);
    if (opts.allowedOrigins !== undefined && (!Array.isArray(opts.allowedOrigins) || opts.allowedOrigins.some((o) => typeof o !== 'string'))) {
      throw new InvalidArgumentError(`allowedOrigins must be an array of origins, received ${show(opts.allowedOrigins)}`);
    }
    this.options = opts;
    this.auth = new Authenticator(opts.auth ?? {});
    this.transport = opts.transport ?? opts.broker?.transport ?? getDefaultTransport();
    const snapshots: SnapshotSource | null = opts.tracking ?? null;
    this.hub = new Hub({ transport: this.transport, auth: this.auth, snapshots });
    this.engine = new EngineReporter({
      hub: this.hub,
      transport: this.transport,
      broker: opts.broker ?? null,
      ...(opts.engineIntervalMs === undefined ? {} : { intervalMs: opts.engineIntervalMs }),
    });
    this.#limits = {
      softLimitBytes: opts.outgoing?.softLimitBytes ?? 1024 * 1024,
      hardLimitBytes: opts.outgoing?.hardLimitBytes ?? 8 * 1024 * 1024,
    };
    this.app = Fastify({
      logger: false,
      bodyLimit: 1024 * 1024,
      frameworkErrors,
      ...(opts.tls === undefined ? {} : { https: resolveTls(opts.tls) }),
    });
    this.#wss = new WebSocketServer({
      noServer: true,
      maxPayload: opts.maxPayload ?? 64 * 1024,
      perMessageDeflate: resolveDeflate(opts.perMessageDeflate),
      handleProtocols: (protocols) => {
        if (protocols.has('flowcast')) return 'flowcast';
        for (const p of protocols) if (!p.startsWith(BEARER_PROTOCOL_PREFIX)) return p;
        return false;
      },
    });
    registerSse(this.app, { hub: this.hub, auth: this.auth, limits: this.#limits, heartbeatMs: opts.heartbeatMs ?? 30_000 });
    registerRoutes(this.app, { server: this, tracking: opts.tracking ?? null, broker: opts.broker ?? null, staticDir: opts.staticDir });
    this.app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#upgrade(req, socket, head));
  }

  /** Connected WebSocket clients. */
  get connections(): number {
    return this.#connections.size;
  }

  /** The port listened on (after `startServer()`). */
  get port(): number {
    return this.#port;
  }

  /** `ws://host:port` (or `wss://`). */
  get url(): string {
    const host = this.options.host === '0.0.0.0' || this.options.host === '::' ? '127.0.0.1' : (this.options.host as string);
    const h = host.includes(':') ? `[${host}]` : host;
    return `${this.options.tls ? 'wss' : 'ws'}://${h}:${this.#port}`;
  }

  /** `http://host:port` (or `https://`). */
  get httpUrl(): string {
    return this.url.replace(/^ws/, 'http');
  }

  /** Starts listening. Resolves with the address once the port is bound. */
  async startServer(): Promise<{ host: string; port: number; url: string }> {
    if (this.#state !== 'created') throw new FlowcastError(ErrorCodes.INVALID_ARGUMENT, `startServer() called on a server that is ${this.#state}`);
    this.#state = 'starting';
    await this.app.listen({ host: this.options.host as string, port: this.options.port as number });
    const address = this.app.server.address();
    this.#port = typeof address === 'object' && address !== null ? address.port : 0;
    this.#state = 'listening';
    // The seed's `setupWebSocketBridge(hooks)` + `getWebSocketServer({ transport })`: the bridge feeds this transport too.
    if (this.options.transport !== undefined && this.options.transport !== this.options.broker?.transport) this.#unbridge = feedFromBridges(this.transport);
    this.engine.start();
    const every = this.options.heartbeatMs ?? 30_000;
    if (every > 0) {
      this.#heartbeat = setInterval(() => this.#beat(every), every);
      this.#heartbeat.unref();
    }
    return { host: this.options.host as string, port: this.#port, url: this.url };
  }

  #beat(every: number): void {
    const now = Date.now();
    for (const conn of this.#connections) {
      if (now - conn.lastSeen > every * 2) {
        conn.close(CloseCodes.HEARTBEAT_TIMEOUT, 'No pong');
        conn.ws.terminate();
      } else if (conn.ws.readyState === conn.ws.OPEN) {
        conn.ws.ping();
      }
    }
  }

  #reject(socket: Duplex, status: number, message: string): void {
    socket.end(`HTTP/1.1 ${status} ${message}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(message)}\r\n\r\n${message}`);
  }

  #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (this.#state !== 'listening') return this.#reject(socket, 503, 'Service Unavailable');
    if (path !== '/' && path !== '/ws') return this.#reject(socket, 404, 'Not Found');
    const origin = req.headers.origin;
    const allowed = this.options.allowedOrigins;
    if (allowed !== undefined && typeof origin === 'string' && !allowed.includes(origin)) return this.#reject(socket, 403, 'Forbidden origin');
    this.#wss.handleUpgrade(req, socket, head, (ws) => this.#accept(ws, req));
  }

  #accept(ws: WebSocket, req: IncomingMessage): void {
    if (this.#connections.size >= (this.options.maxConnections ?? 10_000)) {
      ws.close(CloseCodes.TOO_MANY_CONNECTIONS, 'Too many connections');
      return;
    }
    // Messages that arrive while the token is checked wait here.
    let early: [RawData, boolean][] | null = null;
    const hold = (data: RawData, isBinary: boolean): void => {
      (early ??= []).push([data, isBinary]);
    };
    ws.on('message', hold);
    ws.on('error', ignoreError);
    this.auth.authenticate(req).then(
      (principal) => {
        ws.off('message', hold);
        if (principal === false) {
          ws.close(CloseCodes.UNAUTHORIZED, 'Unauthorized');
          return;
        }
        if (ws.readyState !== ws.OPEN || this.#state !== 'listening') return;
        this.#attach(ws, principal, early);
      },
      (error: unknown) => {
        console.error(`flowcast server: authentication failed: ${describeError(error)}`);
        ws.close(CloseCodes.UNAUTHORIZED, 'Unauthorized');
      },
    );
  }

  /**
   * Makes an authenticated socket a subscriber. Apart from `#accept` so that the
   * listeners a connection keeps for its lifetime hold only what they use (memory per
   * idle connection is what a busy server has thousands of).
   */
  #attach(ws: WebSocket, principal: Principal | null, early: [RawData, boolean][] | null): void {
    const conn = new WsConnection(ws, principal, this.#limits, this.#detach);
    this.#connections.add(conn);
    this.hub.add(conn);
    const limiter = new TokenBucket(this.options.messagesPerSecond ?? 50, this.options.messageBurst ?? 100);
    let warned = false;
    const onMessage = (data: RawData, isBinary: boolean): void => {
      conn.lastSeen = Date.now();
      if (!limiter.take()) {
        if (warned) {
          conn.close(CloseCodes.RATE_LIMITED, 'Rate limit exceeded');
          return;
        }
        warned = true;
        conn.sendControl({ type: 'error', code: ProtocolErrors.RATE_LIMITED, message: `Too many messages: at most ${this.options.messagesPerSecond ?? 50}/s; the next excess closes the connection` });
        return;
      }
      warned = false;
      this.#onMessage(conn, data, isBinary);
    };
    ws.on('message', onMessage);
    ws.on('pong', () => {
      conn.lastSeen = Date.now();
    });
    if (early !== null) for (const [data, isBinary] of early) onMessage(data, isBinary);
  }

  readonly #detach = (conn: WsConnection): void => {
    this.#connections.delete(conn);
    this.engine.unsubscribe(conn);
    this.hub.remove(conn);
  };

  #onMessage(conn: WsConnection, data: RawData, isBinary: boolean): void {
    if (isBinary) {
      conn.sendControl({ type: 'error', code: ProtocolErrors.BINARY_NOT_SUPPORTED, message: 'Binary frames are not supported: send JSON text frames' });
      return;
    }
    const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data as ArrayBuffer).toString('utf8');
    const parsed = parseClientMessage(text);
    if (!parsed.ok) {
      const err: Record<string, unknown> = { type: 'error', code: parsed.code, message: parsed.message };
      if (parsed.id !== undefined) err.id = parsed.id;
      conn.sendControl(err);
      return;
    }
    this.handleMessage(conn, parsed.message);
  }

  /** Applies one validated client message (shared by WebSocket and tests). */
  handleMessage(conn: WsConnection, msg: ClientMessage): void {
    const withId = (o: Record<string, unknown>): Record<string, unknown> => (msg.id === undefined ? o : { ...o, id: msg.id });
    if (msg.type === 'ping') {
      conn.sendControl(withId({ type: 'pong', timestamp: new Date().toISOString() }));
      return;
    }
    if (msg.channel !== undefined) {
      if (msg.type === 'subscribe') {
        conn.sendControl(withId({ type: 'subscribed', channel: msg.channel }));
        this.engine.subscribe(conn);
      } else if (this.engine.unsubscribe(conn)) conn.sendControl(withId({ type: 'unsubscribed', channel: msg.channel }));
      else conn.sendControl(withId({ type: 'error', code: ProtocolErrors.NOT_SUBSCRIBED, message: `Not subscribed to ${JSON.stringify({ channel: msg.channel })}` }));
      return;
    }
    if (msg.type === 'unsubscribe') {
      const target = msg.run_id !== undefined ? { run_id: msg.run_id } : { pipeline_id: msg.pipeline_id };
      if (this.hub.unsubscribe(conn, msg)) conn.sendControl(withId({ type: 'unsubscribed', ...target }));
      else conn.sendControl(withId({ type: 'error', code: ProtocolErrors.NOT_SUBSCRIBED, message: `Not subscribed to ${JSON.stringify(target)}` }));
      return;
    }
    if (msg.pipeline_id !== undefined && msg.pipeline_id !== '*' && !this.hub.canRead(conn, msg.pipeline_id)) {
      conn.sendControl(withId({ type: 'error', code: ProtocolErrors.FORBIDDEN, message: `Not allowed to read pipeline "${msg.pipeline_id}"` }));
      return;
    }
    if (conn.subscriptions.size >= (this.options.maxSubscriptions ?? 1000)) {
      conn.sendControl(withId({ type: 'error', code: ProtocolErrors.TOO_MANY_SUBSCRIPTIONS, message: `At most ${this.options.maxSubscriptions ?? 1000} subscriptions per connection` }));
      return;
    }
    void this.hub.subscribe(conn, msg);
  }

  /** Closes every connection (1001), stops listening, releases the hub. Idempotent. */
  close(): Promise<void> {
    if (this.#closing !== null) return this.#closing;
    this.#closing = (async () => {
      this.#state = 'closing';
      this.#unbridge?.();
      if (this.#heartbeat !== null) clearInterval(this.#heartbeat);
      this.engine.close();
      for (const conn of this.#connections) conn.close(CloseCodes.GOING_AWAY, 'Server shutting down');
      this.hub.close();
      await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
      for (const ws of this.#wss.clients) ws.terminate();
      await this.app.close();
      this.#state = 'closed';
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Socket errors end in 'close', which is handled; the listener only keeps them from being thrown. */
function ignoreError(): void {}

/** A token bucket: `rate` tokens per second, at most `burst`. */
class TokenBucket {
  #tokens: number;
  #last = Date.now();
  constructor(
    readonly rate: number,
    readonly burst: number,
  ) {
    this.#tokens = burst;
  }
  take(): boolean {
    const now = Date.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#last) / 1000) * this.rate);
    this.#last = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

/**
 * Creates the server (seed 000 §2.1: `get_websocket_server(host, port)`). Call
 * `startServer()` to listen.
 *
 * @example
 * const server = getWebSocketServer({ host: '127.0.0.1', port: 8765, broker, tracking });
 * await server.startServer();
 */
export function getWebSocketServer(options: ServerOptions = {}): FlowcastServer {
  return new FlowcastServer(options);
}
