import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import cors from '@fastify/cors';
import Fastify, { type FastifyInstance } from 'fastify';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { FlowcastError, ErrorCodes } from '../core/errors.js';
import type { EventTransport } from '../transport/transport.js';
import { Authenticator, BEARER_PROTOCOL_PREFIX, type Principal } from './auth.js';
import { AuthFailureLimiter } from './auth-throttle.js';
import type { OutgoingLimits } from './connection.js';
import { HttpGuard, trustFunction } from './http-guard.js';
import { Hub, type SnapshotSource } from './hub.js';
import { jsonDepth, MAX_JSON_DEPTH, tooDeepMessage } from './json-limits.js';
import { resolveServerOptions, type ResolvedLimits, type ServerOptions } from './options.js';
import { CloseCodes, parseClientMessage, ProtocolErrors, type ClientMessage } from './protocol.js';
import { WsConnection } from './ws-connection.js';
import { EngineReporter } from './engine.js';
import { httpLogger } from './readiness.js';
import { loggerOf, type Logger } from '../core/logger.js';
import { logError } from '../core/log-throttle.js';
import { feedFromBridges, getDefaultTransport } from './bridge.js';
import { resolveTls } from './tls.js';
import { resolveDeflate } from './deflate.js';
import { checkRoutes, frameworkErrors, registerRoutes } from './routes.js';
import { clip, HttpError, RestErrors, sendError } from './rest/common.js';
import { AddressCounter, installSocketLimits, writeRawAnswer, type SocketStats } from './socket-limits.js';
import { TokenBucket } from './token-bucket.js';
import { checkBasePath, isUnder, pathOf } from './base-path.js';

export type { ServerOptions } from './options.js';

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
  /** Where the server logs (`options.logger`, else a pino logger at `info`); Fastify's `app.log` writes here too. */
  readonly logger: Logger;
  /** The origin and host rules, and the client address behind a trusted proxy. */
  readonly guard: HttpGuard;
  /** Refused tokens per address (WebSocket, SSE, REST). */
  readonly authFailures: AuthFailureLimiter;
  /** WebSocket and SSE streams per client address. */
  readonly streams: AddressCounter;
  /** Every limit, resolved to its value (docs/security.md). */
  readonly limits: Readonly<ResolvedLimits>;
  /** Open TCP connections and what the connection limits refused. */
  readonly sockets: Readonly<SocketStats>;
  /** The path everything is served under: `''` at the root, `/flowcast` when mounted (docs/server.md, "Embedding"). */
  readonly basePath: string;
  readonly #wss: WebSocketServer;
  readonly #connections = new Set<WsConnection>();
  #heartbeat: NodeJS.Timeout | null = null;
  #state: ServerState = 'created';
  #closing: Promise<void> | null = null;
  #port = 0;
  /** Stops `setupWebSocketBridge(hooks)` feeding this server's own transport. */
  #unbridge: (() => void) | null = null;

  constructor(options: ServerOptions = {}) {
    const { options: opts, limits } = resolveServerOptions(options);
    checkRoutes(opts);
    this.basePath = checkBasePath(opts.basePath);
    this.options = opts;
    this.limits = limits;
    this.auth = new Authenticator(opts.auth ?? {});
    this.authFailures = new AuthFailureLimiter(opts.authFailures ?? {});
    this.streams = new AddressCounter(limits.maxConnectionsPerAddress);
    this.guard = new HttpGuard({
      allowedOrigins: limits.allowedOrigins,
      allowedHosts: limits.allowedHosts,
      boundHost: opts.host as string,
      checkHost: !this.auth.enabled,
      trustProxy: limits.trustProxy,
    });
    this.logger = loggerOf(opts.logger, 'server options.logger');
    this.transport = opts.transport ?? opts.broker?.transport ?? getDefaultTransport();
    const snapshots: SnapshotSource | null = opts.tracking ?? null;
    this.hub = new Hub({ transport: this.transport, auth: this.auth, snapshots, logger: this.logger });
    this.engine = new EngineReporter({
      hub: this.hub,
      transport: this.transport,
      broker: opts.broker ?? null,
      logger: this.logger,
      ...(opts.engineIntervalMs === undefined ? {} : { intervalMs: opts.engineIntervalMs }),
    });
    this.app = (Fastify as unknown as (o: object) => FastifyInstance)({
      loggerInstance: httpLogger(this.logger),
      bodyLimit: 1024 * 1024,
      frameworkErrors,
      // Unknown fields are refused (where a schema says so), never silently dropped.
      ajv: { customOptions: { removeAdditional: false } },
      ...(limits.trustProxy === false ? {} : { trustProxy: trustFunction(limits.trustProxy) }),
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      ...(opts.tls === undefined ? {} : { https: { ...resolveTls(opts.tls), handshakeTimeout: limits.handshakeTimeoutMs || 120_000 } }),
    });
    // Slow headers are a pre-request connection too (slowloris).
    if (limits.handshakeTimeoutMs > 0) this.app.server.headersTimeout = Math.min(limits.handshakeTimeoutMs, limits.requestTimeoutMs || limits.handshakeTimeoutMs);
    const trust = limits.trustProxy;
    this.sockets = installSocketLimits(this.app.server, {
      maxConnections: limits.maxConnections,
      maxConnectionsPerAddress: limits.maxConnectionsPerAddress,
      handshakeTimeoutMs: limits.handshakeTimeoutMs,
      isTrustedProxy: trust === false ? () => false : (address) => this.guard.isTrustedProxy(address),
      tls: opts.tls !== undefined,
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
    this.#installHttpRules();
    const routes = { server: this, tracking: opts.tracking ?? null, broker: opts.broker ?? null, staticDir: opts.staticDir, basePath: this.basePath };
    if (this.basePath === '') registerRoutes(this.app, routes);
    else void this.app.register((scoped, _opts, done) => {
      registerRoutes(scoped, routes);
      done();
    }, { prefix: this.basePath });
    this.app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (!this.handleUpgrade(req, socket, head)) {
        socket.on('error', ignoreError);
        this.#reject(socket, 404, 'Not Found');
      }
    });
  }

  /** The outgoing limits of each connection (SSE sessions use them too). */
  get outgoingLimits(): Required<OutgoingLimits> {
    return this.limits.outgoing;
  }

  /**
   * What every HTTP request passes first: the origin and host rules (403), CORS for the
   * allowed origins, and JSON bodies no deeper than {@link MAX_JSON_DEPTH}.
   */
  #installHttpRules(): void {
    this.app.addHook('onRequest', (request, reply, done) => {
      const refusal = this.guard.check(request.raw);
      if (refusal === null) return done();
      void sendError(reply, refusal.status, refusal.code, refusal.message);
    });
    if (this.limits.allowedOrigins.length > 0) {
      void this.app.register(cors, {
        origin: (origin, callback) => callback(null, origin !== undefined && this.guard.isAllowedOrigin(origin)),
        methods: ['GET', 'HEAD', 'POST', 'DELETE'],
        allowedHeaders: ['Authorization', 'Content-Type', 'Last-Event-ID'],
        exposedHeaders: ['Retry-After', 'Location'],
        credentials: false,
        maxAge: 600,
        strictPreflight: true,
      });
    }
    const parseJson = this.app.getDefaultJsonParser('error', 'error');
    this.app.removeContentTypeParser('application/json');
    this.app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
      if (jsonDepth(body as string) > MAX_JSON_DEPTH) return done(new HttpError(400, RestErrors.BAD_REQUEST, tooDeepMessage()), undefined);
      void parseJson(request, body as string, done);
    });
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
    this.#begin();
    return { host: this.options.host as string, port: this.#port, url: this.url };
  }

  /**
   * Starts serving without listening: the HTTP server is someone else's, which hands
   * requests to `app.routing` and upgrades to {@link handleUpgrade} (what
   * `flowcastPlugin` and `attachFlowcast` do). Resolves once the routes are ready.
   */
  async startEmbedded(): Promise<void> {
    if (this.#state !== 'created') throw new FlowcastError(ErrorCodes.INVALID_ARGUMENT, `startEmbedded() called on a server that is ${this.#state}`);
    this.#state = 'starting';
    await this.app.ready();
    this.#begin();
  }

  #begin(): void {
    this.#state = 'listening';
    // The seed's `setupWebSocketBridge(hooks)` + `getWebSocketServer({ transport })`: the bridge feeds this transport too.
    if (this.options.transport !== undefined && this.options.transport !== this.options.broker?.transport) this.#unbridge = feedFromBridges(this.transport);
    this.engine.start();
    const every = this.options.heartbeatMs ?? 30_000;
    if (every > 0) {
      this.#heartbeat = setInterval(() => this.#beat(every), every);
      this.#heartbeat.unref();
    }
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

  #reject(socket: Duplex, status: number, message: string, headers: Record<string, string> = {}): void {
    writeRawAnswer(socket, status, 'text/plain; charset=utf-8', clip(message), headers);
  }

  /**
   * Takes a WebSocket upgrade whose path is under {@link basePath} (answering it, a 404
   * for a path that is not an endpoint) and returns `true`; returns `false` and leaves
   * the socket alone when the path is not flowcast's.
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    const path = pathOf(req.url);
    if (path === null || !isUnder(path, this.basePath)) return false;
    this.#upgrade(req, socket, head, path.slice(this.basePath.length));
    return true;
  }

  #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, path: string): void {
    socket.on('error', ignoreError);
    if (this.#state !== 'listening') return this.#reject(socket, 503, 'Service Unavailable');
    if (path !== '/' && path !== '/ws' && path !== '') return this.#reject(socket, 404, 'Not Found');
    const refusal = this.guard.check(req);
    if (refusal !== null) return this.#reject(socket, 403, refusal.message);
    const address = this.guard.clientAddress(req);
    void this.authFailures.blockedFor(address).then((blocked) => {
      if (blocked > 0) return this.#reject(socket, 429, this.authFailures.message(blocked), { 'Retry-After': String(blocked) });
      if (socket.destroyed) return;
      const release = this.streams.acquire(address);
      if (release === null) return this.#reject(socket, 429, `Too many streams from this address: at most ${this.streams.max} (maxConnectionsPerAddress)`);
      this.#wss.handleUpgrade(req, socket, head, (ws) => {
        ws.once('close', release);
        this.#accept(ws, req, address);
      });
    });
  }

  #accept(ws: WebSocket, req: IncomingMessage, address: string): void {
    // Messages that arrive while the token is checked wait here.
    let early: [RawData, boolean][] | null = null;
    const hold = (data: RawData, isBinary: boolean): void => {
      (early ??= []).push([data, isBinary]);
    };
    ws.on('message', hold);
    ws.on('error', ignoreError);
    this.auth.check(req).then(
      (result) => {
        ws.off('message', hold);
        if (!result.ok) {
          void this.authFailures.failed(address);
          // The seed's reason, "Unauthorized", with the claim named when the token is valid but its claims are not.
          ws.close(CloseCodes.UNAUTHORIZED, result.claim === true ? closeReason(`Unauthorized: ${result.reason}`) : 'Unauthorized');
          return;
        }
        if (ws.readyState !== ws.OPEN || this.#state !== 'listening') return;
        this.#attach(ws, result.principal, early);
      },
      (error: unknown) => {
        logError(this.logger, error, 'authentication');
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
    const conn = new WsConnection(ws, principal, this.limits.outgoing, this.#detach);
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

/** A WebSocket close reason: at most 123 bytes (RFC 6455), cut on a character boundary. */
function closeReason(text: string): string {
  let out = text;
  while (Buffer.byteLength(out) > 123) out = out.slice(0, -1);
  return out;
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
