/**
 * What a WebSocket client's messages do: parse a text frame (protocol.ts), then apply
 * it: ping, the `engine` channel, subscribe and unsubscribe (with the read check and
 * the subscription cap).
 */
import type { RawData } from 'ws';
import type { EngineReporter } from './engine.js';
import type { Hub } from './hub.js';
import type { ServerOptions } from './options.js';
import { parseClientMessage, ProtocolErrors, type ClientMessage } from './protocol.js';
import type { WsConnection } from './ws-connection.js';

/** The parts of the server a message reaches. */
export interface MessageTarget {
  readonly hub: Hub;
  readonly engine: EngineReporter;
  readonly options: Readonly<ServerOptions>;
}

/** Parses one frame and hands it to `apply`; a malformed one gets an `error` message. */
export function onClientFrame(conn: WsConnection, data: RawData, isBinary: boolean, apply: (msg: ClientMessage) => void): void {
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
  apply(parsed.message);
}

/** Applies one validated client message. */
export function applyClientMessage(server: MessageTarget, conn: WsConnection, msg: ClientMessage): void {
  const withId = (o: Record<string, unknown>): Record<string, unknown> => (msg.id === undefined ? o : { ...o, id: msg.id });
  if (msg.type === 'ping') {
    conn.sendControl(withId({ type: 'pong', timestamp: new Date().toISOString() }));
    return;
  }
  if (msg.channel !== undefined) {
    if (msg.type === 'subscribe') {
      conn.sendControl(withId({ type: 'subscribed', channel: msg.channel }));
      server.engine.subscribe(conn);
    } else if (server.engine.unsubscribe(conn)) conn.sendControl(withId({ type: 'unsubscribed', channel: msg.channel }));
    else conn.sendControl(withId({ type: 'error', code: ProtocolErrors.NOT_SUBSCRIBED, message: `Not subscribed to ${JSON.stringify({ channel: msg.channel })}` }));
    return;
  }
  if (msg.type === 'unsubscribe') {
    const target = msg.run_id !== undefined ? { run_id: msg.run_id } : { pipeline_id: msg.pipeline_id };
    if (server.hub.unsubscribe(conn, msg)) conn.sendControl(withId({ type: 'unsubscribed', ...target }));
    else conn.sendControl(withId({ type: 'error', code: ProtocolErrors.NOT_SUBSCRIBED, message: `Not subscribed to ${JSON.stringify(target)}` }));
    return;
  }
  if (msg.pipeline_id !== undefined && msg.pipeline_id !== '*' && !server.hub.canRead(conn, msg.pipeline_id)) {
    conn.sendControl(withId({ type: 'error', code: ProtocolErrors.FORBIDDEN, message: `Not allowed to read pipeline "${msg.pipeline_id}"` }));
    return;
  }
  if (conn.subscriptions.size >= (server.options.maxSubscriptions ?? 1000)) {
    conn.sendControl(withId({ type: 'error', code: ProtocolErrors.TOO_MANY_SUBSCRIPTIONS, message: `At most ${server.options.maxSubscriptions ?? 1000} subscriptions per connection` }));
    return;
  }
  void server.hub.subscribe(conn, msg);
}
