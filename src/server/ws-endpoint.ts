/**
 * The WebSocket endpoint of a flowcast server (`/` and `/ws` under its base path): an
 * upgrade passes the origin and host rules, the refused-token throttle and the
 * per-address stream limit; the token is checked while early messages wait; an accepted
 * socket becomes a `WsConnection` of the hub, its messages rate-limited, and a heartbeat
 * closes the connections that stopped answering pings.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { logError } from '../core/log-throttle.js';
import type { Logger } from '../core/logger.js';
import { BEARER_PROTOCOL_PREFIX, type Authenticator, type Principal } from './auth.js';
import type { AuthFailureLimiter } from './auth-throttle.js';
import { resolveDeflate } from './deflate.js';
import type { EngineReporter } from './engine.js';
import type { HttpGuard } from './http-guard.js';
import type { Hub } from './hub.js';
import type { ResolvedLimits, ServerOptions } from './options.js';
import { CloseCodes, ProtocolErrors, type ClientMessage } from './protocol.js';
import { clip } from './rest/common.js';
import { writeRawAnswer, type AddressCounter } from './socket-limits.js';
import { TokenBucket } from './token-bucket.js';
import { WsConnection } from './ws-connection.js';
import { onClientFrame } from './ws-messages.js';

/** What the endpoint needs of its server (a `FlowcastServer`). */
export interface WsEndpointHost {
  readonly options: Readonly<ServerOptions>;
  readonly limits: Readonly<ResolvedLimits>;
  readonly guard: HttpGuard;
  readonly authFailures: AuthFailureLimiter;
  readonly streams: AddressCounter;
  readonly auth: Authenticator;
  readonly hub: Hub;
  readonly engine: EngineReporter;
  readonly logger: Logger;
  /** Applies one validated client message. */
  handleMessage(conn: WsConnection, msg: ClientMessage): void;
}

/** Socket errors end in 'close', which is handled; the listener only keeps them from being thrown. */
export function ignoreError(): void {}

/** Answers an upgrade request with a plain HTTP `status` and closes the socket. */
export function rejectUpgrade(socket: Duplex, status: number, message: string, headers: Record<string, string> = {}): void {
  writeRawAnswer(socket, status, 'text/plain; charset=utf-8', clip(message), headers);
}

/** A WebSocket close reason: at most 123 bytes (RFC 6455), cut on a character boundary. */
function closeReason(text: string): string {
  let out = text;
  while (Buffer.byteLength(out) > 123) out = out.slice(0, -1);
  return out;
}

/** The server's WebSocket connections, from upgrade to close (see the module comment). */
export class WsEndpoint {
  readonly #host: WsEndpointHost;
  readonly #listening: () => boolean;
  readonly #wss: WebSocketServer;
  readonly #connections = new Set<WsConnection>();
  #heartbeat: NodeJS.Timeout | null = null;

  /** @param listening `true` while the server serves (an upgrade before or after is refused, 503) */
  constructor(host: WsEndpointHost, listening: () => boolean) {
    this.#host = host;
    this.#listening = listening;
    const opts = host.options;
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
  }

  /** Connected WebSocket clients. */
  get size(): number {
    return this.#connections.size;
  }

  /** Pings every connection every `every` ms, and closes one that did not answer for two periods. */
  startHeartbeat(every: number): void {
    this.#heartbeat = setInterval(() => this.#beat(every), every);
    this.#heartbeat.unref();
  }

  /** Stops the heartbeat. */
  stopHeartbeat(): void {
    if (this.#heartbeat !== null) clearInterval(this.#heartbeat);
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

  /** Takes an upgrade of `path` (relative to the base path): refused, or accepted once its token is checked. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, path: string): void {
    socket.on('error', ignoreError);
    if (!this.#listening()) return rejectUpgrade(socket, 503, 'Service Unavailable');
    if (path !== '/' && path !== '/ws' && path !== '') return rejectUpgrade(socket, 404, 'Not Found');
    const refusal = this.#host.guard.check(req);
    if (refusal !== null) return rejectUpgrade(socket, 403, refusal.message);
    const address = this.#host.guard.clientAddress(req);
    void this.#host.authFailures.blockedFor(address).then((blocked) => {
      if (blocked > 0) return rejectUpgrade(socket, 429, this.#host.authFailures.message(blocked), { 'Retry-After': String(blocked) });
      if (socket.destroyed) return;
      const release = this.#host.streams.acquire(address);
      if (release === null) return rejectUpgrade(socket, 429, `Too many streams from this address: at most ${this.#host.streams.max} (maxConnectionsPerAddress)`);
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
    this.#host.auth.check(req).then(
      (result) => {
        ws.off('message', hold);
        if (!result.ok) {
          void this.#host.authFailures.failed(address);
          // The seed's reason, "Unauthorized", with the claim named when the token is valid but its claims are not.
          ws.close(CloseCodes.UNAUTHORIZED, result.claim === true ? closeReason(`Unauthorized: ${result.reason}`) : 'Unauthorized');
          return;
        }
        if (ws.readyState !== ws.OPEN || !this.#listening()) return;
        this.#attach(ws, result.principal, early);
      },
      (error: unknown) => {
        logError(this.#host.logger, error, 'authentication');
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
    const conn = new WsConnection(ws, principal, this.#host.limits.outgoing, this.#detach);
    this.#connections.add(conn);
    this.#host.hub.add(conn);
    const limiter = new TokenBucket(this.#host.options.messagesPerSecond ?? 50, this.#host.options.messageBurst ?? 100);
    let warned = false;
    const apply = (msg: ClientMessage): void => this.#host.handleMessage(conn, msg);
    const onMessage = (data: RawData, isBinary: boolean): void => {
      conn.lastSeen = Date.now();
      if (!limiter.take()) {
        if (warned) {
          conn.close(CloseCodes.RATE_LIMITED, 'Rate limit exceeded');
          return;
        }
        warned = true;
        conn.sendControl({ type: 'error', code: ProtocolErrors.RATE_LIMITED, message: `Too many messages: at most ${this.#host.options.messagesPerSecond ?? 50}/s; the next excess closes the connection` });
        return;
      }
      warned = false;
      onClientFrame(conn, data, isBinary, apply);
    };
    ws.on('message', onMessage);
    ws.on('pong', () => {
      conn.lastSeen = Date.now();
    });
    if (early !== null) for (const [data, isBinary] of early) onMessage(data, isBinary);
  }

  readonly #detach = (conn: WsConnection): void => {
    this.#connections.delete(conn);
    this.#host.engine.unsubscribe(conn);
    this.#host.hub.remove(conn);
  };

  /** Closes every connection (1001). */
  closeConnections(): void {
    for (const conn of this.#connections) conn.close(CloseCodes.GOING_AWAY, 'Server shutting down');
  }

  /** Stops the WebSocket server, ending the sockets that did not close. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
    for (const ws of this.#wss.clients) ws.terminate();
  }
}
