/**
 * What the HTTP routes (REST, SSE, /metrics, OpenAPI) need of the server that mounts them.
 * `FlowcastServer` is one; the routes import this interface, never the server class, so
 * `server.ts` → `routes.ts` → `rest/*` is one way down.
 */
import type { Logger } from '../core/logger.js';
import type { EventTransport } from '../transport/transport.js';
import type { AuthFailureLimiter } from './auth-throttle.js';
import type { Authenticator } from './auth.js';
import type { EngineReporter } from './engine.js';
import type { Hub } from './hub.js';
import type { ServerOptions } from './options.js';
import type { OutgoingLimits } from './connection.js';
import type { AddressCounter, SocketStats } from './socket-limits.js';

/** The server as its routes see it. */
export interface RouteHost {
  readonly hub: Hub;
  readonly engine: EngineReporter;
  readonly auth: Authenticator;
  readonly authFailures: AuthFailureLimiter;
  readonly transport: EventTransport;
  readonly options: Readonly<ServerOptions>;
  readonly sockets: Readonly<SocketStats>;
  /** Open WebSocket connections. */
  readonly connections: number;
  /** Streams (SSE) per client address. */
  readonly streams: AddressCounter;
  /** Where the server logs. */
  readonly logger: Logger;
  /** Where the server is mounted (`""` standalone, `"/flowcast"` embedded). */
  readonly basePath: string;
  /** Outgoing queue limits of every connection. */
  readonly outgoingLimits: Required<OutgoingLimits>;
}
