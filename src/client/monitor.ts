import { ErrorCodes, FlowcastError, InvalidArgumentError, toError } from '../core/errors.js';
import { checkKnownKeys, checkObject, checkPositiveInt, show } from '../core/validate.js';
import { TERMINAL_EVENT_TYPES, type EventMap, type EventType, type FlowcastEvent } from '../events/types.js';
import { ALL_KEY, pipelineKey, runKey } from '../events/subscription.js';
import { closedError, Connection } from './connection.js';
import { Emitter } from './emitter.js';
import { MonitorError } from './errors.js';
import { EventStream } from './event-stream.js';
import { RunCursors } from './run-cursors.js';
import { displayUrl, parseTarget, type Target } from './targets.js';
import { resolveMonitorOptions } from './monitor-options.js';
import type { ConnectionState, EngineStatusMessage, EventStreamOptions, MonitorEventMap, PositionMessage, PipelineMonitorOptions, ReplayCompleteMessage, ReplayIncompleteMessage, RunSnapshot, SubscriptionTarget } from './types.js';


interface Waiter<T> {
  resolve: (value: T) => void;
  reject: (error: Error) => void;
}

/** A subscription the application asked for; made again on every reconnect. */
interface Subscription extends Target {
  confirmed: boolean;
  waiters: Waiter<void>[];
  /** A pipeline (or `"*"`) subscription: its offset in its run stream, once the server gave one (it resumes after it). */
  offset: number | null;
}


/** What a reply with this `id` answers. */
type Request =
  | { kind: 'subscribe'; key: string }
  | { kind: 'resume'; runId: string }
  | { kind: 'unsubscribe'; done: (() => void) | null }
  | { kind: 'ping'; sentAt: number; waiter: Waiter<number>; timer: ReturnType<typeof setTimeout> };

type Stream = { stream: EventStream<FlowcastEvent>; types: ReadonlySet<string> | null };

/** How far before the last event seen a resuming pipeline subscription asks for runs (`started_since`). */
const RESUME_MARGIN_MS = 5_000;

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
  readonly #eventTypes: readonly EventType[] | undefined;
  readonly #lateJoin: 'snapshot' | 'replay';
  readonly #emitter = new Emitter<MonitorEventMap>((error, type) => this.#listenerFailed(error, type));
  readonly #runs: RunCursors;
  readonly #subs = new Map<string, Subscription>();
  readonly #requests = new Map<number, Request>();
  readonly #streams = new Set<Stream>();
  #nextId = 1;
  /** The newest event timestamp received (ISO 8601 UTC strings compare in time order). */
  #lastEventAt = '';
  /** The epoch of the server's history, from `subscribed` (resumes carry it). */
  #epoch: string | null = null;

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
    this.#eventTypes = eventTypes;
    this.#lateJoin = lateJoin;
    this.#runs = new RunCursors(maxRuns);
    this.#connection = new Connection(
      settings,
      {
        state: (change) => {
          if (change.to === 'closed') this.#onClosed();
          this.#emitter.emit('state', change);
        },
        open: () => this.#resubscribe(),
        message: (msg) => this.#onMessage(msg),
        dropped: () => this.#onDropped(),
        error: (error) => this.#emitter.emit('error', error),
      },
    );
    // Seed 000 §4.1's pipeline: no waiter, so a refusal goes to 'error' (nobody holds a promise of it).
    if (target !== null) this.#subs.set(target.key, { ...target, confirmed: false, waiters: [], offset: null });
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
    return { duplicatesDropped: this.#runs.duplicates, runs: this.#runs.size, subscriptions: this.#subs.size };
  }

  /** The last seq delivered (or covered by a snapshot) of a run; `undefined` for a run not seen. */
  lastSeq(runId: string): number | undefined {
    return this.#runs.get(runId)?.last;
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
    let sub = this.#subs.get(t.key);
    const isNew = sub === undefined;
    if (sub === undefined) {
      sub = { ...t, confirmed: false, waiters: [], offset: null };
      this.#subs.set(t.key, sub);
    } else if (t.since === undefined) {
      if (sub.confirmed) return Promise.resolve();
    } else {
      sub.since = t.since;
      sub.confirmed = false;
    }
    const entry = sub;
    const p = new Promise<void>((resolve, reject) => entry.waiters.push({ resolve, reject }));
    if (this.state === 'open' && (isNew || t.since !== undefined)) this.#sendSubscribe(entry, t.since);
    return p;
  }

  /** Ends a subscription. Resolves once the server confirms (at once when not connected or not subscribed). */
  unsubscribe(target: SubscriptionTarget): Promise<void> {
    const t = parseTarget(target, 'unsubscribe');
    const sub = this.#subs.get(t.key);
    if (sub === undefined) return Promise.resolve();
    this.#subs.delete(t.key);
    settle(sub.waiters, new FlowcastError(ErrorCodes.CANCELLED, `subscribe(${sub.label}) was cancelled by unsubscribe()`));
    if (this.state !== 'open') return Promise.resolve();
    return new Promise<void>((resolve) => this.#request({ type: 'unsubscribe', ...sub.message }, { kind: 'unsubscribe', done: resolve }));
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
    return new Promise<number>((resolve, reject) => {
      const id = this.#nextId;
      const timer = setTimeout(() => {
        this.#requests.delete(id);
        reject(new MonitorError(ErrorCodes.TIMEOUT, `no pong from ${this.url} within ${timeoutMs}ms`));
      }, timeoutMs);
      this.#request({ type: 'ping' }, { kind: 'ping', sentAt: performance.now(), waiter: { resolve, reject }, timer });
    });
  }

  /**
   * Closes for good (state `closed`): a pending `connect()` or `subscribe()` rejects with
   * a `CLOSED` error, iterators end after the events they hold. Idempotent; resolves once
   * the socket is closed.
   */
  close(): Promise<void> {
    return this.#connection.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ---- outgoing ---------------------------------------------------------------------

  #request(message: Record<string, unknown>, request: Request): void {
    const id = this.#nextId++;
    this.#requests.set(id, request);
    this.#connection.send({ ...message, id });
  }

  #withTypes(message: Record<string, unknown>): Record<string, unknown> {
    return this.#eventTypes === undefined ? message : { ...message, event_types: this.#eventTypes };
  }

  /**
   * After every open: first resume each run in flight that a pipeline (or `"*"`)
   * subscription covers, from its last seq — before that subscription, so that the server
   * follows the run from there instead of sending a snapshot — then make every
   * subscription again, runs from their last seq.
   */
  #resubscribe(): void {
    const all = this.#subs.has(ALL_KEY);
    for (const run of this.#runs.values()) {
      if (run.ended || run.pipelineId === null || this.#subs.has(runKey(run.runId))) continue;
      if (all || this.#subs.has(pipelineKey(run.pipelineId))) this.#resume(run.runId, run.last);
    }
    // Runs that began (and maybe ended) while away: the server replays those started since
    // a little before the last event seen (the margin covers clocks of other machines).
    const startedSince = this.#lastEventAt === '' ? undefined : new Date(Date.parse(this.#lastEventAt) - RESUME_MARGIN_MS).toISOString();
    for (const sub of this.#subs.values()) this.#sendSubscribe(sub, undefined, startedSince);
  }

  #resume(runId: string, since: number): void {
    this.#runs.startReplay(runId, since, true);
    const message: Record<string, unknown> = { type: 'subscribe', run_id: runId, since };
    if (this.#epoch !== null) message.epoch = this.#epoch;
    this.#request(this.#withTypes(message), { kind: 'resume', runId });
  }

  #sendSubscribe(sub: Subscription, since: number | undefined, startedSince?: string): void {
    const message: Record<string, unknown> = { type: 'subscribe', ...sub.message };
    if ('pipeline_id' in sub.message) {
      // Its place in the run stream: resume exactly after it (docs/protocol.md, "Resuming after a drop").
      if (sub.offset !== null) {
        message.offset = sub.offset;
        if (this.#epoch !== null) message.epoch = this.#epoch;
      } else {
        message.positions = true;
        if (startedSince !== undefined) message.started_since = startedSince;
      }
    }
    if (sub.runId !== null) {
      const known = this.#runs.get(sub.runId);
      const from = since ?? (known === undefined ? sub.since : known.last);
      if (from !== undefined) {
        message.since = from;
        if (this.#epoch !== null) message.epoch = this.#epoch;
        this.#runs.startReplay(sub.runId, from, false);
      }
    }
    // A channel carries no run events: event_types does not apply to it.
    this.#request('channel' in sub.message ? message : this.#withTypes(message), { kind: 'subscribe', key: sub.key });
  }

  // ---- incoming ---------------------------------------------------------------------

  #onMessage(msg: Record<string, unknown>): void {
    if (isEvent(msg)) {
      if (msg.timestamp > this.#lastEventAt) this.#lastEventAt = msg.timestamp;
      this.#deliverAll(this.#runs.accept(msg));
      return;
    }
    switch (msg.type) {
      case 'pong':
      case 'subscribed':
      case 'unsubscribed':
        this.#onReply(msg);
        return;
      case 'error':
        this.#onError(msg);
        return;
      case 'snapshot':
        this.#onSnapshot(msg as unknown as RunSnapshot);
        return;
      case 'replay_incomplete': {
        const m = msg as unknown as ReplayIncompleteMessage;
        // Another history: what the monitor holds of the run is not this log's.
        if (m.reason === 'epoch') this.#runs.reset(m.run_id, m.first_seq);
        else this.#runs.skipTo(m.run_id, m.first_seq);
        this.#emitter.emit('replay_incomplete', m);
        return;
      }
      case 'position':
        this.#onPosition(msg as unknown as PositionMessage);
        return;
      case 'replay_complete':
        this.#onReplayComplete(msg as unknown as ReplayCompleteMessage);
        return;
      case 'engine_status':
        this.#emitter.emit('engine_status', msg as unknown as EngineStatusMessage);
        return;
      default:
      // A message type of a newer server: not ours to judge.
    }
  }

  #takeRequest(msg: Record<string, unknown>): Request | undefined {
    if (typeof msg.id !== 'number') return undefined;
    const request = this.#requests.get(msg.id);
    this.#requests.delete(msg.id);
    return request;
  }

  #onReply(msg: Record<string, unknown>): void {
    const request = this.#takeRequest(msg);
    if (request === undefined) return;
    if (request.kind === 'ping') {
      clearTimeout(request.timer);
      request.waiter.resolve(performance.now() - request.sentAt);
    } else if (request.kind === 'subscribe') {
      const sub = this.#subs.get(request.key);
      if (sub === undefined) return;
      if (typeof msg.epoch === 'string') this.#epoch = msg.epoch;
      if (typeof msg.offset === 'number') {
        const asked = sub.offset;
        sub.offset = msg.offset;
        if (msg.recovered === false && asked !== null) {
          const reason = msg.reason === 'epoch' || msg.reason === 'trimmed' ? msg.reason : 'unknown';
          this.#emitter.emit('resume_incomplete', { pipeline_id: sub.label === '"*"' ? '*' : (sub.message as { pipeline_id: string }).pipeline_id, reason, requested_offset: asked, offset: msg.offset });
        }
      }
      sub.confirmed = true;
      settle(sub.waiters, null);
    } else if (request.kind === 'unsubscribe') {
      request.done?.();
    }
  }

  #onError(msg: Record<string, unknown>): void {
    const serverCode = typeof msg.code === 'string' ? msg.code : 'unknown';
    const text = `${serverCode}: ${typeof msg.message === 'string' ? msg.message : JSON.stringify(msg)}`;
    const request = this.#takeRequest(msg);
    const fail = (message: string): MonitorError => new MonitorError(ErrorCodes.REQUEST_REJECTED, message, { serverCode });
    switch (request?.kind) {
      case 'unsubscribe':
        request.done?.();
        return;
      case 'ping':
        clearTimeout(request.timer);
        request.waiter.reject(fail(`ping rejected: ${text}`));
        return;
      case 'subscribe': {
        const sub = this.#subs.get(request.key);
        if (sub === undefined) return;
        this.#subs.delete(request.key);
        if (sub.runId !== null) this.#deliverAll(this.#runs.endReplay(sub.runId));
        const error = fail(`subscribe(${sub.label}) rejected: ${text}`);
        if (sub.waiters.length > 0) settle(sub.waiters, error);
        else this.#emitter.emit('error', error);
        return;
      }
      case 'resume': {
        const run = this.#runs.get(request.runId);
        if (run !== undefined) run.resume = false;
        this.#deliverAll(this.#runs.endReplay(request.runId));
        this.#emitter.emit('error', fail(`resuming run "${request.runId}" was rejected: ${text}`));
        return;
      }
      default:
        this.#emitter.emit('error', fail(`${this.url} says ${text}`));
    }
  }

  #onSnapshot(snapshot: RunSnapshot): void {
    if (typeof snapshot.run_id !== 'string' || typeof snapshot.last_seq !== 'number') return;
    const known = this.#runs.get(snapshot.run_id) !== undefined;
    if (!known && this.#lateJoin === 'replay') {
      this.#runs.ensure(snapshot.run_id, snapshot.pipeline_id);
      this.#emitter.emit('snapshot', snapshot);
      if (this.state === 'open') this.#resume(snapshot.run_id, 0);
      return;
    }
    this.#runs.snapshot(snapshot.run_id, snapshot.pipeline_id, snapshot.last_seq);
    this.#emitter.emit('snapshot', snapshot);
  }

  /** A run of a subscription's run stream started or ended: the run is known from now on, and the offset moves on. */
  #onPosition(msg: PositionMessage): void {
    if (typeof msg.run_id !== 'string' || typeof msg.offset !== 'number' || typeof msg.pipeline_id !== 'string') return;
    const sub = this.#subs.get(pipelineKey(msg.stream));
    if (sub !== undefined && (sub.offset === null || msg.offset > sub.offset)) sub.offset = msg.offset;
    if (msg.kind === 'resume' && typeof msg.resume_seq === 'number') this.#runs.resumed(msg.run_id, msg.pipeline_id, msg.resume_seq);
    else this.#runs.ensure(msg.run_id, msg.pipeline_id);
    // A monitor that gets no terminal event learns of the end here (a terminal event it gets may still be on its way).
    if (msg.kind === 'end' && this.#eventTypes !== undefined && !this.#eventTypes.some((t) => TERMINAL_EVENT_TYPES.has(t))) this.#runs.end(msg.run_id);
  }

  #onReplayComplete(msg: ReplayCompleteMessage): void {
    const run = this.#runs.get(msg.run_id);
    this.#deliverAll(this.#runs.endReplay(msg.run_id));
    if (run?.resume === true) {
      run.resume = false;
      // The run's own subscription was only for the replay: its pipeline's carries it on.
      if (!this.#subs.has(runKey(msg.run_id)) && this.state === 'open') this.#request({ type: 'unsubscribe', run_id: msg.run_id }, { kind: 'unsubscribe', done: null });
    }
    this.#emitter.emit('replay_complete', msg);
  }

  #deliverAll(events: FlowcastEvent[]): void {
    for (const event of events) {
      (this.#emitter as unknown as Emitter<Record<string, FlowcastEvent>>).emit(event.type, event);
      this.#emitter.emit('*', event);
      for (const { stream, types } of this.#streams) if (types === null || types.has(event.type)) stream.push(event);
    }
  }

  // ---- connection news --------------------------------------------------------------

  /** The socket is gone: requests in flight on it are void; replays will start over. */
  #onDropped(): void {
    for (const request of this.#requests.values()) {
      if (request.kind === 'ping') {
        clearTimeout(request.timer);
        request.waiter.reject(new MonitorError(ErrorCodes.CONNECTION_FAILED, `the connection to ${this.url} closed before the pong`));
      } else if (request.kind === 'unsubscribe') {
        // A new connection starts without the subscription: done.
        request.done?.();
      }
    }
    this.#requests.clear();
    this.#runs.disconnected();
  }

  #onClosed(): void {
    const reason = this.#connection.closeError ?? closedError('subscribe()');
    for (const sub of this.#subs.values()) settle(sub.waiters, reason);
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

function isEvent(msg: Record<string, unknown>): msg is FlowcastEvent & Record<string, unknown> {
  return (
    typeof msg.type === 'string' &&
    typeof msg.run_id === 'string' &&
    typeof msg.pipeline_id === 'string' &&
    typeof msg.seq === 'number' &&
    Number.isInteger(msg.seq) &&
    msg.seq >= 1
  );
}

function settle<T>(waiters: Waiter<T>[], error: Error | null): void {
  for (const w of waiters.splice(0)) {
    if (error === null) w.resolve(undefined as T);
    else w.reject(error);
  }
}
