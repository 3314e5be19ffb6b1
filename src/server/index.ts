/// <reference types="node" preserve="true" />
/**
 * `flowcast/server`: the HTTP + WebSocket + SSE server that streams run events, the REST
 * API over tracking, and the bridges from hooks (seed 000 §2).
 *
 * @example
 * import { getWebSocketServer } from 'flowcast/server';
 * const server = getWebSocketServer({ port: 8765, broker, tracking });
 * await server.startServer();
 */
export { getWebSocketServer, FlowcastServer } from './server.js';
export type { ServerOptions } from './server.js';
export { flowcastPlugin, attachFlowcast } from './embed.js';
export type { FlowcastPluginOptions, AttachOptions, AttachedFlowcast, EmbeddedOptions } from './embed.js';
export type { TlsOptions } from './tls.js';
export { setupWebSocketBridge, TrackingEventBroadcaster, getDefaultTransport } from './bridge.js';
export type { RecordingTracking } from './bridge.js';
export { Authenticator, BEARER_PROTOCOL_PREFIX, extractToken } from './auth.js';
export type { AuthOptions, JwtOptions, Principal, Action, TokenSource } from './auth.js';
export type { OutgoingLimits } from './connection.js';
export type { SnapshotSource, HubStats } from './hub.js';
export type { TrackingLike, RestRateLimitOptions } from './routes.js';
export { RestErrors } from './rest/common.js';
export type { RestErrorCode } from './rest/common.js';
export {
  SubscribeMessage,
  UnsubscribeMessage,
  PingMessage,
  ClientMessage,
  ProtocolErrors,
  CloseCodes,
  PROTOCOL_SCHEMAS,
  parseClientMessage,
} from './protocol.js';
export type {
  ProtocolErrorCode,
  ParseResult,
  SubscribedMessage,
  UnsubscribedMessage,
  PongMessage,
  ErrorMessage,
  SnapshotMessage,
  ReplayCompleteMessage,
  ReplayIncompleteMessage,
  PositionMessage,
  ServerControlMessage,
} from './protocol.js';
