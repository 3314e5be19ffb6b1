import type { FlowcastError } from '../core/errors.js';
import type { EventMap, EventType, FlowcastEvent } from '../events/types.js';
import type { EngineStatusMessage, PositionMessage, ReplayCompleteMessage, ReplayIncompleteMessage, SnapshotMessage } from '../server/protocol.js';
import type { PipelineStatus } from '../tracking/models.js';
import type { ReconnectOptions } from './backoff.js';

// Only types here: the client must bundle for browsers without pulling server code.

/** Parameters are checked both ways, so that both `ws` and the browser's WebSocket fit. */
type Handler<E> = { bivarianceHack(event: E): void }['bivarianceHack'];

/**
 * The part of the standard WebSocket API the monitor uses: the browser's `WebSocket`
 * and the `ws` package's `WebSocket` both fit.
 */
export interface WebSocketLike {
  readonly readyState: number;
  /** The subprotocol the server chose. */
  readonly protocol: string;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: Handler<unknown> | null;
  onmessage: Handler<{ data: unknown }> | null;
  onclose: Handler<{ code: number; reason: string | { toString(): string } }> | null;
  onerror: Handler<unknown> | null;
}

/** A WebSocket class: `globalThis.WebSocket` in browsers, `WebSocket` from `ws` in Node. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** Where the connection stands. */
export type ConnectionState =
  /** Created; `connect()` not called yet. Subscriptions made now are queued. */
  | 'idle'
  /** An attempt to connect is in progress (socket opening, then the server confirming the token). */
  | 'connecting'
  /** Connected and confirmed by the server: events flow. */
  | 'open'
  /** The connection was lost or an attempt failed: waiting before the next attempt. */
  | 'reconnecting'
  /** `close()` was called, the token was rejected, or the monitor gave up. Final. */
  | 'closed';

/** The payload of the `state` event. */
export interface StateChange {
  from: ConnectionState;
  to: ConnectionState;
  /** The close code that ended the previous connection (to `reconnecting` or `closed`). */
  code?: number;
  /** The close reason sent with `code`, when there was one. */
  reason?: string;
  /** To `reconnecting`: how long the monitor waits before the next attempt. */
  delayMs?: number;
  /** To `connecting`: 1 for the first attempt, counting attempts that failed in a row. */
  attempt?: number;
  /** To `closed` for any other reason than `close()`: why. */
  error?: FlowcastError;
}

/**
 * A tracked run's state, sent by the server to a late joiner before the run's next
 * events (which follow from `last_seq + 1`).
 */
export type RunSnapshot = Omit<SnapshotMessage, 'status'> & { status: PipelineStatus };

export type { EngineStatusMessage, PositionMessage, ReplayCompleteMessage, ReplayIncompleteMessage };

/** What {@link MonitorEventMap.resume_incomplete} says. */
export interface ResumeIncomplete {
  /** The subscription: a pipeline id or `"*"`. */
  pipeline_id: string;
  reason: 'epoch' | 'trimmed' | 'unknown';
  /** The offset the monitor asked to resume after. */
  requested_offset: number;
  /** Where its positions go on from. */
  offset: number;
}

/** Every payload {@link PipelineMonitor.on} can listen to, keyed by name. */
export interface MonitorEventMap extends EventMap {
  /** Every event, whatever its type. */
  '*': FlowcastEvent;
  /** A late joiner's view of a run in flight. */
  snapshot: RunSnapshot;
  /** A connection state change. */
  state: StateChange;
  /**
   * Errors nobody else hears about: the token was rejected or the monitor gave up (a
   * {@link MonitorError} with a code), the server complained about something that was
   * not a request of yours, or a listener threw (its error).
   */
  error: Error;
  /** A replay asked for events the server no longer holds: the events from `first_seq` follow. */
  replay_incomplete: ReplayIncompleteMessage;
  /** A replay caught up: live events follow. */
  replay_complete: ReplayCompleteMessage;
  /**
   * A pipeline (or `"*"`) subscription could not resume where it stopped (`reason`:
   * `epoch`, the server's history is another one; `trimmed`, its run stream no longer
   * holds what followed; `unknown`): it goes on as a late join (snapshots of the runs in
   * flight), and runs that began and ended meanwhile are not sent.
   */
  resume_incomplete: ResumeIncomplete;
  /** The engine status, every ~2 s while subscribed to `{ channel: 'engine' }`. */
  engine_status: EngineStatusMessage;
}

/** A name `PipelineMonitor.on()` takes: an event type or a monitor event (`open`, `close`, `snapshot`, …). */
export type MonitorEventName = keyof MonitorEventMap;

/** What to subscribe to: a pipeline id, `"*"` for every pipeline, or one run (optionally replayed after `since`). */
export type SubscriptionTarget = string | { pipelineId: string } | { runId: string; since?: number } | { channel: 'engine' };

/** Options of {@link PipelineMonitor}. */
export interface PipelineMonitorOptions {
  /**
   * The token the server checks (seed 000 §10): a string, or a function asked before
   * every connection attempt (to refresh a short-lived JWT). Sent as the subprotocol
   * `flowcast.bearer.<token>` when it is a valid subprotocol name (JWTs are), in
   * `?token=` otherwise.
   * @default no token
   */
  token?: string | (() => string | Promise<string>);
  /**
   * The WebSocket class.
   * @default globalThis.WebSocket (browsers, Node >= 22); where there is none (Node 20), the `ws` package, loaded at the first connection attempt
   */
  WebSocket?: WebSocketConstructor;
  /**
   * Reconnect with full-jitter exponential backoff when the connection drops; `false`
   * gives up at the first drop.
   * @default { initialDelayMs: 500, maxDelayMs: 15000, maxAttempts: Infinity, stableAfterMs: 5000 }
   */
  reconnect?: ReconnectOptions | false;
  /**
   * Extra subprotocols to offer. `"flowcast"` is always offered.
   * @default []
   */
  protocols?: string[];
  /**
   * Only these event types are sent (filtered on the server, for every subscription).
   * @default every type
   */
  eventTypes?: EventType[];
  /**
   * What a late joiner gets for a run already in flight: `"snapshot"` (the run's tracked
   * state, then its next events) or `"replay"` (the snapshot, then every event of the
   * run from seq 1, so that a view shows every log line from the first).
   * @default "snapshot"
   */
  lateJoin?: 'snapshot' | 'replay';
  /**
   * Time allowed for one connection attempt (socket open and the server's confirmation),
   * in milliseconds.
   * @default 10000
   */
  connectTimeoutMs?: number;
  /**
   * Messages sent per second at most, after a burst of `burst` (the server closes
   * clients that send too fast; resubscribing many runs after a reconnect stays under it).
   * @default { messagesPerSecond: 40, burst: 80 }
   */
  rateLimit?: { messagesPerSecond?: number; burst?: number };
  /**
   * Runs whose last seq the monitor remembers (for dedupe and resume). Past it, the runs
   * seen longest ago are forgotten.
   * @default 10000
   */
  maxRuns?: number;
}

/** Options of {@link PipelineMonitor.events}. */
export interface EventStreamOptions<T extends EventType = EventType> {
  /** Ends the iteration when aborted. */
  signal?: AbortSignal;
  /** Only these event types; the iterator's events are typed by them. @default every type */
  types?: T[];
  /**
   * Events held for a consumer that is busy. When more arrive, the iterator throws an
   * `OVERFLOW` error after the held ones (nothing is dropped silently).
   * @default 10000
   */
  bufferSize?: number;
}
