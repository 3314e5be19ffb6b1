/**
 * The protocol side of a `PipelineMonitor`: what it says to the server and how it handles
 * each answer. It keeps the subscriptions the application asked for (made again after
 * every reconnect, pipeline ones from their offset in the run stream), the requests in
 * flight by id, and each run's cursor (`run-cursors.ts`), so that a run's events reach the
 * application once each, in seq order, across reconnects and server changes.
 */
import { ErrorCodes, FlowcastError } from '../core/errors.js';
import { TERMINAL_EVENT_TYPES, type EventType, type FlowcastEvent } from '../events/types.js';
import { ALL_KEY, pipelineKey, runKey } from '../events/subscription.js';
import type { Emitter } from './emitter.js';
import { MonitorError } from './errors.js';
import { Requests, settle, type Waiter } from './requests.js';
import { RunCursors } from './run-cursors.js';
import type { Target } from './targets.js';
import type { ConnectionState, EngineStatusMessage, MonitorEventMap, PositionMessage, ReplayCompleteMessage, ReplayIncompleteMessage, RunSnapshot } from './types.js';

/** A subscription the application asked for; made again on every reconnect. */
interface Subscription extends Target {
  confirmed: boolean;
  waiters: Waiter<void>[];
  /** A pipeline (or `"*"`) subscription: its offset in its run stream, once the server gave one (it resumes after it). */
  offset: number | null;
}


/** How far before the last event seen a resuming pipeline subscription asks for runs (`started_since`). */
const RESUME_MARGIN_MS = 5_000;

/** What a {@link MonitorSession} needs of its monitor. */
export interface SessionHost {
  /** Sends a protocol message on the open connection. */
  send(message: Record<string, unknown>): void;
  /** The connection's state. */
  state(): ConnectionState;
  /** The server's URL, for messages. */
  url(): string;
  /** The monitor's listeners (its own news: snapshots, errors, replays). */
  readonly emitter: Emitter<MonitorEventMap>;
  /** Hands run events to the application (listeners and iterators), in order. */
  deliver(events: FlowcastEvent[]): void;
}

/** The monitor's subscriptions, requests and run cursors over one connection at a time (see the module comment). */
export class MonitorSession {
  readonly #host: SessionHost;
  readonly #eventTypes: readonly EventType[] | undefined;
  readonly #lateJoin: 'snapshot' | 'replay';
  readonly #runs: RunCursors;
  readonly #subs = new Map<string, Subscription>();
  readonly #requests: Requests;
  /** The newest event timestamp received (ISO 8601 UTC strings compare in time order). */
  #lastEventAt = '';
  /** The epoch of the server's history, from `subscribed` (resumes carry it). */
  #epoch: string | null = null;

  /**
   * @param eventTypes the only event types asked of the server (`undefined`: every type)
   * @param lateJoin how a run met in the middle is joined: from a snapshot, or replayed from its start
   * @param maxRuns runs remembered (their last seq), the oldest ended first out
   * @param target a subscription to make from the first connection on (seed 000 §4.1's form), or `null`
   */
  constructor(host: SessionHost, eventTypes: readonly EventType[] | undefined, lateJoin: 'snapshot' | 'replay', maxRuns: number, target: Target | null) {
    this.#host = host;
    this.#requests = new Requests((message) => host.send(message));
    this.#eventTypes = eventTypes;
    this.#lateJoin = lateJoin;
    this.#runs = new RunCursors(maxRuns);
    // Seed 000 §4.1's pipeline: no waiter, so a refusal goes to 'error' (nobody holds a promise of it).
    if (target !== null) this.#subs.set(target.key, { ...target, confirmed: false, waiters: [], offset: null });
  }

  /** Counters: events dropped as duplicates, runs remembered, subscriptions held. */
  get stats(): { duplicatesDropped: number; runs: number; subscriptions: number } {
    return { duplicatesDropped: this.#runs.duplicates, runs: this.#runs.size, subscriptions: this.#subs.size };
  }

  /** The last seq delivered (or covered by a snapshot) of a run; `undefined` for a run not seen. */
  lastSeq(runId: string): number | undefined {
    return this.#runs.get(runId)?.last;
  }

  /** Adds a subscription (see `PipelineMonitor.subscribe`); resolves when the server confirms it. */
  subscribe(t: Target): Promise<void> {
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
    if (this.#host.state() === 'open' && (isNew || t.since !== undefined)) this.#sendSubscribe(entry, t.since);
    return p;
  }

  /** Ends a subscription (see `PipelineMonitor.unsubscribe`). */
  unsubscribe(t: Target): Promise<void> {
    const sub = this.#subs.get(t.key);
    if (sub === undefined) return Promise.resolve();
    this.#subs.delete(t.key);
    settle(sub.waiters, new FlowcastError(ErrorCodes.CANCELLED, `subscribe(${sub.label}) was cancelled by unsubscribe()`));
    if (this.#host.state() !== 'open') return Promise.resolve();
    return new Promise<void>((resolve) => this.#requests.send({ type: 'unsubscribe', ...sub.message }, { kind: 'unsubscribe', done: resolve }));
  }

  /** Sends a `ping`; resolves with the round trip in milliseconds, rejects after `timeoutMs`. */
  ping(timeoutMs: number): Promise<number> {
    return this.#requests.ping(timeoutMs, this.#host.url());
  }

  // ---- outgoing ---------------------------------------------------------------------

  #withTypes(message: Record<string, unknown>): Record<string, unknown> {
    return this.#eventTypes === undefined ? message : { ...message, event_types: this.#eventTypes };
  }

  /**
   * After every open: first resume each run in flight that a pipeline (or `"*"`)
   * subscription covers, from its last seq — before that subscription, so that the server
   * follows the run from there instead of sending a snapshot — then make every
   * subscription again, runs from their last seq.
   */
  opened(): void {
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
    this.#requests.send(this.#withTypes(message), { kind: 'resume', runId });
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
    this.#requests.send('channel' in sub.message ? message : this.#withTypes(message), { kind: 'subscribe', key: sub.key });
  }

  // ---- incoming ---------------------------------------------------------------------

  /** Handles one message from the server. */
  message(msg: Record<string, unknown>): void {
    if (isEvent(msg)) {
      if (msg.timestamp > this.#lastEventAt) this.#lastEventAt = msg.timestamp;
      this.#host.deliver(this.#runs.accept(msg));
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
        this.#host.emitter.emit('replay_incomplete', m);
        return;
      }
      case 'position':
        this.#onPosition(msg as unknown as PositionMessage);
        return;
      case 'replay_complete':
        this.#onReplayComplete(msg as unknown as ReplayCompleteMessage);
        return;
      case 'engine_status':
        this.#host.emitter.emit('engine_status', msg as unknown as EngineStatusMessage);
        return;
      default:
      // A message type of a newer server: not ours to judge.
    }
  }

  #onReply(msg: Record<string, unknown>): void {
    const request = this.#requests.take(msg);
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
          this.#host.emitter.emit('resume_incomplete', { pipeline_id: sub.label === '"*"' ? '*' : (sub.message as { pipeline_id: string }).pipeline_id, reason, requested_offset: asked, offset: msg.offset });
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
    const request = this.#requests.take(msg);
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
        if (sub.runId !== null) this.#host.deliver(this.#runs.endReplay(sub.runId));
        const error = fail(`subscribe(${sub.label}) rejected: ${text}`);
        if (sub.waiters.length > 0) settle(sub.waiters, error);
        else this.#host.emitter.emit('error', error);
        return;
      }
      case 'resume': {
        const run = this.#runs.get(request.runId);
        if (run !== undefined) run.resume = false;
        this.#host.deliver(this.#runs.endReplay(request.runId));
        this.#host.emitter.emit('error', fail(`resuming run "${request.runId}" was rejected: ${text}`));
        return;
      }
      default:
        this.#host.emitter.emit('error', fail(`${this.#host.url()} says ${text}`));
    }
  }

  #onSnapshot(snapshot: RunSnapshot): void {
    if (typeof snapshot.run_id !== 'string' || typeof snapshot.last_seq !== 'number') return;
    const known = this.#runs.get(snapshot.run_id) !== undefined;
    if (!known && this.#lateJoin === 'replay') {
      this.#runs.ensure(snapshot.run_id, snapshot.pipeline_id);
      this.#host.emitter.emit('snapshot', snapshot);
      if (this.#host.state() === 'open') this.#resume(snapshot.run_id, 0);
      return;
    }
    this.#runs.snapshot(snapshot.run_id, snapshot.pipeline_id, snapshot.last_seq);
    this.#host.emitter.emit('snapshot', snapshot);
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
    this.#host.deliver(this.#runs.endReplay(msg.run_id));
    if (run?.resume === true) {
      run.resume = false;
      // The run's own subscription was only for the replay: its pipeline's carries it on.
      if (!this.#subs.has(runKey(msg.run_id)) && this.#host.state() === 'open') this.#requests.send({ type: 'unsubscribe', run_id: msg.run_id }, { kind: 'unsubscribe', done: null });
    }
    this.#host.emitter.emit('replay_complete', msg);
  }

  /** The socket is gone: requests in flight on it are void; replays will start over. */
  dropped(): void {
    this.#requests.dropped(this.#host.url());
    this.#runs.disconnected();
  }

  /** The monitor closed for good: every subscription still waiting rejects with `reason`. */
  closed(reason: Error): void {
    for (const sub of this.#subs.values()) settle(sub.waiters, reason);
  }
}

/** `true` for a run event (as opposed to a control message). */
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

