/**
 * The server's options: their types with defaults, and the one place they are checked.
 * docs/security.md lists every limit with its default and what a client gets past it.
 */
import type { Broker } from '../pipeline/broker.js';
import type { Logger } from '../core/logger.js';
import { InvalidArgumentError } from '../core/errors.js';
import { checkKnownKeys, checkNonNegativeInt, checkObject, checkPositiveInt, show } from '../core/validate.js';
import type { EventTransport } from '../transport/transport.js';
import type { AuthOptions } from './auth.js';
import type { AuthFailureLimitOptions } from './auth-throttle.js';
import type { OutgoingLimits } from './connection.js';
import { checkHostName, checkOrigin, checkTrustProxy, type TrustProxy } from './http-guard.js';
import { checkPipelines, type RetryablePipeline } from './rest/retry.js';
import type { RestRateLimitOptions } from './rest/rate-limit.js';
import type { TrackingLike } from './rest/common.js';
import { defaultMaxConnections } from './socket-limits.js';
import type { TlsOptions } from './tls.js';
import type { PerMessageDeflateOption } from './deflate.js';

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
  /** Token checks (seed 000 §10). None: open to everyone who can reach the address (and {@link allowedHosts} applies). */
  auth?: AuthOptions;
  /** Native TLS (seed 000 §10.4): `cert` and `key` each a file path, PEM text or a Buffer. */
  tls?: TlsOptions;
  /**
   * permessage-deflate for clients that offer it (seed 000 §9.4): `true` compresses
   * messages of 1024 bytes or more, `{ threshold }` sets the size. Each message over it
   * is compressed once for every subscriber; costs in docs/server.md.
   * @default false
   */
  perMessageDeflate?: PerMessageDeflateOption;
  /**
   * Origins (`https://app.example.com`) whose pages may use the server: WebSocket, SSE
   * and REST, with CORS answered for them. A request carrying any other `Origin` gets
   * 403, unless the page came from this server itself. Requests without `Origin`
   * (scripts, the CLI) are unaffected.
   * @default [] (only the server's own pages)
   */
  allowedOrigins?: string[];
  /**
   * Without auth: host names (besides loopback names and IP addresses) the server
   * answers to in the `Host` header; others get 403 (DNS rebinding). `.example.com`
   * allows a domain and its subdomains.
   * @default []
   */
  allowedHosts?: string[];
  /**
   * Behind a reverse proxy: which peers to believe about the client's address
   * (`X-Forwarded-For`) and host, for rate limits and per-address caps (Fastify's
   * `trustProxy`: `true`, a hop count, or addresses/CIDRs such as `"loopback"`).
   * @default false
   */
  trustProxy?: TrustProxy;
  /** Connections at once, all kinds (HTTP, WebSocket, SSE); past it 503 before any byte is read. @default 10000, or `ulimit -n` minus 64 when lower */
  maxConnections?: number;
  /** Connections (and WebSocket/SSE streams) at once from one client address; past it 429. @default 128 */
  maxConnectionsPerAddress?: number;
  /** A connection must complete its first request or upgrade (and a TLS handshake) within this, else it is closed. @default 10000 */
  handshakeTimeoutMs?: number;
  /** Time to receive a whole request (headers and body). @default 30000 */
  requestTimeoutMs?: number;
  /** An idle keep-alive connection is closed after this. @default 5000 */
  keepAliveTimeoutMs?: number;
  /** Refused tokens per address before it is blocked (429) for a while. */
  authFailures?: AuthFailureLimitOptions;
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
  /** Outgoing buffer limits per connection: what a connection may hold, replays included. */
  outgoing?: OutgoingLimits;
  /**
   * A folder of static files served at `/` (a dashboard of your own); `false` serves the
   * minimal built-in page instead of the dashboard.
   * @default the built dashboard (`dist/dashboard/`), or the built-in page when it was not built
   */
  staticDir?: string | false;
  /** Per-client rate limit of the REST API, SSE and `/metrics` (429 with Retry-After past it); `false` turns it off. @default { requestsPerSecond: 50, burst: 100 } */
  restRateLimit?: RestRateLimitOptions | false;
  /**
   * Pipelines the server may start runs of: `POST /api/pipelines/{pipeline_id}/runs`
   * starts one (docs/rest.md, "Starting runs"), and `POST /api/runs/{run_id}/retry` starts
   * a new run of the run's pipeline with the same input (docs/dashboard.md). Pipelines
   * not listed cannot be started or retried from the server (501).
   * @default []
   */
  pipelines?: RetryablePipeline[];
  /** How often subscribers of the `engine` channel get `engine_status`, in ms. @default 2000 */
  engineIntervalMs?: number;
  /**
   * The path everything is served under (`/flowcast`): the dashboard and its files, REST,
   * SSE, the WebSocket endpoint, `/health` and `/metrics`. `flowcastPlugin` and
   * `attachFlowcast` set it; on a standalone server it suits a proxy that forwards the
   * prefix unchanged. Requests outside it get 404.
   * @default "" (the root)
   */
  basePath?: string;
  /**
   * prom-client's default metrics (process CPU, memory, event loop, GC, Node.js) in
   * `/metrics`; turn off when the application embedding flowcast exports them already.
   * @default true
   */
  processMetrics?: boolean;
  /**
   * Where the server logs, Fastify's request lines included (at `debug`; failed
   * requests at `error`). A pino-compatible logger (`pino()`, Fastify's `app.log`).
   * @default a pino logger at `info` on stderr: JSON lines, readable ones on a terminal
   */
  logger?: Logger;
}

const KNOWN = [
  'host', 'port', 'transport', 'broker', 'tracking', 'auth', 'tls', 'perMessageDeflate', 'allowedOrigins', 'allowedHosts', 'trustProxy', 'maxConnections',
  'maxConnectionsPerAddress', 'handshakeTimeoutMs', 'requestTimeoutMs', 'keepAliveTimeoutMs', 'authFailures', 'maxPayload',
  'maxSubscriptions', 'messagesPerSecond', 'messageBurst', 'heartbeatMs', 'outgoing', 'staticDir', 'restRateLimit',
  'pipelines', 'engineIntervalMs', 'basePath', 'processMetrics', 'logger',
] as const;

/** The options with every limit resolved to its value. */
export interface ResolvedLimits {
  allowedOrigins: string[];
  allowedHosts: string[];
  trustProxy: TrustProxy;
  maxConnections: number;
  maxConnectionsPerAddress: number;
  handshakeTimeoutMs: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  outgoing: Required<OutgoingLimits>;
}

/** Checks `options` (a TypeError-like InvalidArgumentError naming the option) and resolves the limits. */
export function resolveServerOptions(options: ServerOptions): { options: ServerOptions; limits: ResolvedLimits } {
  checkKnownKeys(checkObject(options, 'server options'), KNOWN, 'server options');
  const opts: ServerOptions = { host: '127.0.0.1', port: 8765, ...options };
  checkNonNegativeInt(opts.port, 'port');
  if (opts.port! > 65535) throw new InvalidArgumentError(`port must be 0-65535, received ${show(opts.port)}`);
  for (const key of ['maxConnections', 'maxConnectionsPerAddress', 'maxPayload', 'maxSubscriptions', 'messagesPerSecond', 'messageBurst'] as const) {
    if (opts[key] !== undefined) checkPositiveInt(opts[key], key);
  }
  for (const key of ['heartbeatMs', 'handshakeTimeoutMs', 'requestTimeoutMs', 'keepAliveTimeoutMs'] as const) {
    if (opts[key] !== undefined) checkNonNegativeInt(opts[key], key);
  }
  if (opts.engineIntervalMs !== undefined) checkPositiveInt(opts.engineIntervalMs, 'engineIntervalMs');
  if (opts.pipelines !== undefined) checkPipelines(opts.pipelines);
  if (opts.processMetrics !== undefined && typeof opts.processMetrics !== 'boolean') throw new InvalidArgumentError(`processMetrics must be a boolean, received ${show(opts.processMetrics)}`);
  const list = (value: unknown, name: string): unknown[] => {
    if (value === undefined) return [];
    if (!Array.isArray(value)) throw new InvalidArgumentError(`${name} must be an array, received ${show(value)}`);
    return value as unknown[];
  };
  const allowedOrigins = list(opts.allowedOrigins, 'allowedOrigins').map((o, i) => checkOrigin(o, `allowedOrigins[${i}]`));
  const allowedHosts = list(opts.allowedHosts, 'allowedHosts').map((h, i) => checkHostName(h, `allowedHosts[${i}]`));
  const trustProxy = opts.trustProxy === undefined ? false : checkTrustProxy(opts.trustProxy);
  const outgoing = checkOutgoing(opts.outgoing);
  return {
    options: opts,
    limits: {
      allowedOrigins,
      allowedHosts,
      trustProxy,
      maxConnections: opts.maxConnections ?? defaultMaxConnections(),
      maxConnectionsPerAddress: opts.maxConnectionsPerAddress ?? 128,
      handshakeTimeoutMs: opts.handshakeTimeoutMs ?? 10_000,
      requestTimeoutMs: opts.requestTimeoutMs ?? 30_000,
      keepAliveTimeoutMs: opts.keepAliveTimeoutMs ?? 5_000,
      outgoing,
    },
  };
}

function checkOutgoing(value: OutgoingLimits | undefined): Required<OutgoingLimits> {
  if (value === undefined) return { softLimitBytes: 1024 * 1024, hardLimitBytes: 8 * 1024 * 1024 };
  checkKnownKeys(checkObject(value, 'outgoing'), ['softLimitBytes', 'hardLimitBytes'], 'outgoing');
  const soft = value.softLimitBytes === undefined ? 1024 * 1024 : checkPositiveInt(value.softLimitBytes, 'outgoing.softLimitBytes');
  const hard = value.hardLimitBytes === undefined ? 8 * 1024 * 1024 : checkPositiveInt(value.hardLimitBytes, 'outgoing.hardLimitBytes');
  if (soft > hard) throw new InvalidArgumentError(`outgoing.softLimitBytes (${soft}) must not exceed outgoing.hardLimitBytes (${hard})`);
  return { softLimitBytes: soft, hardLimitBytes: hard };
}
