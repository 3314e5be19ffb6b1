/**
 * `FlowcastServer`: one HTTP(S) server, its state (`created → starting → listening →
 * closing → closed`), and the parts it wires: the hub, the engine status view, auth and
 * limits, the Fastify app and its routes (`http-app.ts`, `routes.ts`), and the WebSocket
 * endpoint (`ws-endpoint.ts`).
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { FlowcastError, ErrorCodes } from '../core/errors.js';
import type { EventTransport } from '../transport/transport.js';
import { Authenticator } from './auth.js';
import { AuthFailureLimiter } from './auth-throttle.js';
import type { OutgoingLimits } from './connection.js';
import { HttpGuard } from './http-guard.js';
import { createHttpApp, installHttpRules } from './http-app.js';
import { Hub, type SnapshotSource } from './hub.js';
import { resolveServerOptions, type ResolvedLimits, type ServerOptions } from './options.js';
import type { ClientMessage } from './protocol.js';
import type { WsConnection } from './ws-connection.js';
import { applyClientMessage } from './ws-messages.js';
import { EngineReporter } from './engine.js';
import { loggerOf, type Logger } from '../core/logger.js';
import { feedFromBridges, getDefaultTransport } from './bridge.js';
import { checkRoutes, registerRoutes } from './routes.js';
import { AddressCounter, installSocketLimits, type SocketStats } from './socket-limits.js';
import { checkBasePath, isUnder, pathOf } from './base-path.js';
import { ignoreError, rejectUpgrade, WsEndpoint } from './ws-endpoint.js';

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
  /** The WebSocket endpoint: upgrades, connections, heartbeat (ws-endpoint.ts). */
  readonly #ws: WsEndpoint;
  #state: ServerState = 'created';
  #closing: Promise<void> | null = null;
  #port = 0;
  /** Stops `setupWebSocketBridge(hooks)` feeding this server's own transport. */
  #unbridge: (() => void) | null = null;

  /** Mounted into another app's server (`flowcastPlugin`, `attachFlowcast`): that server owns the sockets. */
  readonly embedded: boolean;

  /** `embedded` is for `flowcastPlugin` and `attachFlowcast`; use {@link getWebSocketServer}. */
  constructor(options: ServerOptions = {}, embedded = false) {
    this.embedded = embedded;
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
    this.app = createHttpApp(opts, limits, this.logger);
    const trust = limits.trustProxy;
    this.sockets = installSocketLimits(this.app.server, {
      maxConnections: limits.maxConnections,
      maxConnectionsPerAddress: limits.maxConnectionsPerAddress,
      handshakeTimeoutMs: limits.handshakeTimeoutMs,
      isTrustedProxy: trust === false ? () => false : (address) => this.guard.isTrustedProxy(address),
      tls: opts.tls !== undefined,
    });
    this.#ws = new WsEndpoint(this, () => this.#state === 'listening');
    installHttpRules(this.app, this.guard, limits);
    const routes = { server: this, tracking: opts.tracking ?? null, broker: opts.broker ?? null, staticDir: opts.staticDir, basePath: this.basePath };
    if (this.basePath === '') registerRoutes(this.app, routes);
    else void this.app.register((scoped, _opts, done) => {
      registerRoutes(scoped, routes);
      done();
    }, { prefix: this.basePath });
    this.app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (!this.handleUpgrade(req, socket, head)) {
        socket.on('error', ignoreError);
        rejectUpgrade(socket, 404, 'Not Found');
      }
    });
  }

  /** The outgoing limits of each connection (SSE sessions use them too). */
  get outgoingLimits(): Required<OutgoingLimits> {
    return this.limits.outgoing;
  }

  /** Connected WebSocket clients. */
  get connections(): number {
    return this.#ws.size;
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
    if (every > 0) this.#ws.startHeartbeat(every);
  }

  /**
   * Takes a WebSocket upgrade whose path is under {@link basePath} (answering it, a 404
   * for a path that is not an endpoint) and returns `true`; returns `false` and leaves
   * the socket alone when the path is not flowcast's.
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    const path = pathOf(req.url);
    if (path === null || !isUnder(path, this.basePath)) return false;
    this.#ws.upgrade(req, socket, head, path.slice(this.basePath.length));
    return true;
  }

  /** Applies one validated client message (shared by WebSocket and tests). */
  handleMessage(conn: WsConnection, msg: ClientMessage): void {
    applyClientMessage(this, conn, msg);
  }

  /** Closes every connection (1001), stops listening, releases the hub. Idempotent. */
  close(): Promise<void> {
    if (this.#closing !== null) return this.#closing;
    this.#closing = (async () => {
      this.#state = 'closing';
      this.#unbridge?.();
      this.#ws.stopHeartbeat();
      this.engine.close();
      this.#ws.closeConnections();
      this.hub.close();
      await this.#ws.close();
      await this.app.close();
      this.#state = 'closed';
    })();
    return this.#closing;
  }

  /** Closes the server (`await using server = getWebSocketServer(...)`), as {@link close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
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
