/**
 * `PipelineMonitor`, the client SDK's entry point: the API an application calls. The
 * protocol it speaks is in `monitor-session.ts`, the reconnecting socket in
 * `connection.ts`; this file owns what the application holds: its listeners and iterators.
 */
import { ErrorCodes, InvalidArgumentError, toError } from '../core/errors.js';
import { checkKnownKeys, checkObject, checkPositiveInt, show } from '../core/validate.js';
import type { EventMap, EventType, FlowcastEvent } from '../events/types.js';
import { closedError, Connection } from './connection.js';
import { Emitter } from './emitter.js';
import { MonitorError } from './errors.js';
import { EventStream } from './event-stream.js';
import { MonitorSession } from './monitor-session.js';
import { displayUrl, parseTarget } from './targets.js';
import { resolveMonitorOptions } from './monitor-options.js';
import type { ConnectionState, EventStreamOptions, MonitorEventMap, PipelineMonitorOptions, SubscriptionTarget } from './types.js';

/** An iterator of `events()`, and the event types it takes (`null`: every type). */
type Stream = { stream: EventStream<FlowcastEvent>; types: ReadonlySet<string> | null };

/**
 * A live view of pipeline runs from a flowcast server, for browsers and Node: the seed's
 * `PipelineMonitor` (seed 000 §4.1) with typed listeners, async iterators, a connection
 * state machine, and exact delivery across reconnects. It keeps the last seq of every
 * run it has seen: an event at or below it is a duplicate and is dropped, and after a
 * reconnect every run in flight is resumed from its last seq and every subscription is
 * made again, so no event is lost or repeated.
 *
 * @example
 * const monitor = new PipelineMonitor('ws://localhost:8765', { token });
 * monitor.on('StepCompleteEvent', (e) => console.log(`${e.step_name} took ${e.duration_ms}ms`));
 * await monitor.subscribe('demo_workflow');
 * await monitor.connect();
 * @example
 * // Seed 000 §4.1's form: the pipeline to follow as the second argument
 * const monitor = new PipelineMonitor('ws://localhost:8765', 'pipeline_123');
 * monitor.on('PipelineCompleteEvent', (e) => console.log('Pipeline finished with status:', e.status));
 * monitor.connect();
 */
export class PipelineMonitor {
  readonly #connection: Connection;
  readonly #emitter = new Emitter<MonitorEventMap>((error, type) => this.#listenerFailed(error, type));
  readonly #session: MonitorSession;
  readonly #streams = new Set<Stream>();

  /**
   * @param url `ws://` or `wss://` (`http(s)://` is taken as `ws(s)://`), e.g. `ws://localhost:8765`;
   *   or several servers of one deployment (sharing Redis): after a failed attempt or a
   *   lost connection the monitor moves to the next one and resumes every run where it
   *   stopped.
   * @param options see {@link PipelineMonitorOptions}.
   */
  constructor(url: string | URL | readonly (string | URL)[], options?: PipelineMonitorOptions);
  /**
   * Seed 000 §4.1's form: `new PipelineMonitor(url, pipelineId)` follows that pipeline
   * (or `"*"`) from `connect()` on, as `subscribe(pipelineId)` would; a refusal of it
   * goes to `'error'`.
   */
  constructor(url: string | URL | readonly (string | URL)[], pipelineId: string, options?: PipelineMonitorOptions);
  constructor(url: string | URL | readonly (string | URL)[], second?: string | PipelineMonitorOptions, third?: PipelineMonitorOptions) {
    const { target, settings, eventTypes, lateJoin, maxRuns } = resolveMonitorOptions(url, second, third);
    this.#session = new MonitorSession(
      {
        send: (message) => this.#connection.send(message),
        state: () => this.#connection.state,
        url: () => this.url,
        emitter: this.#emitter,
        deliver: (events) => this.#deliverAll(events),
      },
      eventTypes,
      lateJoin,
      maxRuns,
      target,
    );
    this.#connection = new Connection(
      settings,
      {
        state: (change) => {
          if (change.to === 'closed') this.#onClosed();
          this.#emitter.emit('state', change);
        },
        open: () => this.#session.opened(),
        message: (msg) => this.#session.message(msg),
        dropped: () => this.#session.dropped(),
        error: (error) => this.#emitter.emit('error', error),
      },
    );
  }

  /** Where the connection stands. */
  get state(): ConnectionState {
    return this.#connection.state;
  }

  /** The server's URL (without the token): the one in use, or tried next, when several were given. */
  get url(): string {
    return displayUrl(this.#connection.url);
  }

  /** Counters: events dropped as duplicates, runs remembered, subscriptions held. */
  get stats(): { duplicatesDropped: number; runs: number; subscriptions: number } {
    return this.#session.stats;
  }

  /** The last seq delivered (or covered by a snapshot) of a run; `undefined` for a run not seen. */
  lastSeq(runId: string): number | undefined {
    return this.#session.lastSeq(runId);
  }

  /**
   * Connects (from `idle`; later calls wait for the same connection). Resolves once the
   * server has accepted the connection and its token; rejects when the monitor closes
   * first: the token was rejected (`UNAUTHORIZED`), `reconnect.maxAttempts` attempts
   * failed (`CONNECTION_FAILED`), or `close()` was called (`CLOSED`).
   */
  connect(): Promise<void> {
    return this.#connection.connect();
  }

  /**
   * Subscribes to a pipeline's runs (`"demo_workflow"` or `{ pipelineId }`), to every
   * pipeline (`"*"`), or to one run (`{ runId }`, with `since` to replay the events after
   * that seq first). Usable before `connect()`: the subscription waits for the connection.
   * Resolves when the server confirms; rejects with a `REQUEST_REJECTED`
   * {@link MonitorError} when it refuses (`serverCode` says why, e.g. `forbidden`).
   * Subscribing again to the same target is a no-op, unless `since` asks for a replay
   * (events already delivered are still not delivered twice).
   */
  subscribe(target: SubscriptionTarget): Promise<void> {
    const t = parseTarget(target, 'subscribe');
    if (this.state === 'closed') return Promise.reject(this.#connection.closeError ?? closedError('subscribe()'));
    return this.#session.subscribe(t);
  }

  /** Ends a subscription. Resolves once the server confirms (at once when not connected or not subscribed). */
  unsubscribe(target: SubscriptionTarget): Promise<void> {
    return this.#session.unsubscribe(parseTarget(target, 'unsubscribe'));
  }

  /**
   * Listens to one event type (typed: `on('StepCompleteEvent', (e) => e.duration_ms)`),
   * to every event (`'*'`), or to the monitor's own news: `'snapshot'`, `'state'`
   * (`{ from, to }`), `'error'`, `'replay_incomplete'`, `'replay_complete'`,
   * `'resume_incomplete'`. Returns the
   * disposer.
   */
  on<K extends keyof MonitorEventMap>(type: K, listener: (payload: MonitorEventMap[K]) => void): () => void {
    if (typeof type !== 'string' || (type as string) === '') {
      throw new InvalidArgumentError(`type must be an event type, "*", "snapshot", "state", "error", "replay_incomplete", "replay_complete" or "resume_incomplete", received ${show(type)}`);
    }
    if (typeof listener !== 'function') throw new InvalidArgumentError(`listener must be a function, received ${show(listener)}`);
    return this.#emitter.on(type, listener);
  }

  /**
   * The events as an async iterator (each call gets its own). It ends when `signal`
   * aborts, or when the monitor closes (after the events already received).
   *
   * @example
   * for await (const event of monitor.events({ signal })) console.log(event.type, event.seq);
   * for await (const e of monitor.events({ types: ['StepCompleteEvent'] })) console.log(e.step_name, e.duration_ms);
   */
  events<T extends EventType = EventType>(options: EventStreamOptions<T> = {}): AsyncIterableIterator<EventMap[T]> {
    checkKnownKeys(checkObject(options, 'events() options'), ['signal', 'types', 'bufferSize'], 'events() options');
    const { signal, types } = options;
    if (signal !== undefined && (typeof signal !== 'object' || signal === null || typeof signal.aborted !== 'boolean')) {
      throw new InvalidArgumentError(`signal must be an AbortSignal, received ${show(signal)}`);
    }
    if (types !== undefined && (!Array.isArray(types) || types.some((t) => typeof t !== 'string'))) {
      throw new InvalidArgumentError(`types must be an array of event types, received ${show(types)}`);
    }
    const bufferSize = checkPositiveInt(options.bufferSize ?? 10_000, 'bufferSize');
    // The stream finishes at once (and calls back) when the signal is already aborted.
    let entry: Stream | null = null;
    const stream = new EventStream<FlowcastEvent>(bufferSize, signal, () => {
      if (entry !== null) this.#streams.delete(entry);
    });
    entry = { stream, types: types === undefined ? null : new Set<string>(types) };
    if (!stream.finished) this.#streams.add(entry);
    if (this.state === 'closed') stream.end();
    // The stream only ever holds events whose type is in `types` (every type without it).
    return stream as AsyncIterableIterator<FlowcastEvent> as AsyncIterableIterator<EventMap[T]>;
  }

  /** Measures a round trip to the server with the protocol's `ping`/`pong`: resolves with milliseconds. */
  ping(options: { timeoutMs?: number } = {}): Promise<number> {
    checkKnownKeys(checkObject(options, 'ping() options'), ['timeoutMs'], 'ping() options');
    const timeoutMs = checkPositiveInt(options.timeoutMs ?? 10_000, 'timeoutMs');
    if (this.state !== 'open') {
      return Promise.reject(new MonitorError(ErrorCodes.CONNECTION_FAILED, `ping() needs an open connection; the monitor is ${this.state}`));
    }
    return this.#session.ping(timeoutMs);
  }

  /**
   * Closes for good (state `closed`): a pending `connect()` or `subscribe()` rejects with
   * a `CLOSED` error, iterators end after the events they hold. Idempotent; resolves once
   * the socket is closed.
   */
  close(): Promise<void> {
    return this.#connection.close();
  }

  /** Closes the monitor (`await using monitor = new PipelineMonitor(...)`). */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #deliverAll(events: FlowcastEvent[]): void {
    for (const event of events) {
      (this.#emitter as unknown as Emitter<Record<string, FlowcastEvent>>).emit(event.type, event);
      this.#emitter.emit('*', event);
      for (const { stream, types } of this.#streams) if (types === null || types.has(event.type)) stream.push(event);
    }
  }

  #onClosed(): void {
    this.#session.closed(this.#connection.closeError ?? closedError('subscribe()'));
    for (const { stream } of [...this.#streams]) stream.end();
  }

  #listenerFailed(error: unknown, type: keyof MonitorEventMap): void {
    // An 'error' listener that throws has nobody left to tell: let it surface like any uncaught error.
    if (type === 'error') {
      setTimeout(() => {
        throw toError(error);
      });
      return;
    }
    this.#emitter.emit('error', toError(error));
  }
}
