/**
 * The hub: one per server process, between the transport and the connections. It routes
 * each live event to the connections that want it, in each run's seq order, with the help
 * of the modules around it: `subscriber-index.ts` (who wants which events, one upstream
 * subscription per channel), `late-join.ts` (snapshots and replays a new subscription gets
 * first), `run-fill.ts` (a gap filled from the run's log), `positions.ts` (pipeline
 * subscriptions that resume by offset in the run stream).
 */
import { loggerOf } from '../core/logger.js';
import { logError } from '../core/log-throttle.js';
import type { FlowcastEvent } from '../events/types.js';
import { ALL_KEY, pipelineKey, runKey, subscriptionKey } from '../events/subscription.js';
import type { EventTransport } from '../transport/transport.js';
import type { Authenticator } from './auth.js';
import type { Connection, RunCursor, Subscription } from './connection.js';
import { setCursor } from './cursor-limit.js';
import type { HubOptions, HubStats, SnapshotSource } from './hub-options.js';
import { followAnnounced, joinPipeline, joinRun, type JoinHost } from './late-join.js';
import { Positions, type PositionStart } from './positions.js';
import { fillRun, type FillHost } from './run-fill.js';
import { CloseCodes, type SubscribeMessage, type UnsubscribeMessage } from './protocol.js';
import { SubscriberIndex } from './subscriber-index.js';

export type { HubOptions, HubStats, SnapshotSource } from './hub-options.js';

/** Runs whose last live seq is remembered (to handle an event that comes through several channels once). */
const LAST_SEEN_MAX = 100_000;
/** Live events kept per run while it is filled from the log; past it they are dropped and read from the log instead. */
const FILL_BUFFER_MAX = 10_000;

/**
 * One per server process (DESIGN §1): the index of local subscriptions. It holds at
 * most one upstream subscription per channel, serialises each event once, and writes
 * it to every interested connection. Each connection keeps a cursor per run, so it gets
 * a run's events in seq order with no gap and no duplicate: a gap (a late join, a
 * replay, an event that overtook another) is filled from the run's log before live
 * events resume.
 */
export class Hub {
  /** Counters the server exposes on /metrics. */
  readonly stats: HubStats = { eventsIn: 0, serialised: 0, deliveries: 0, replayed: 0 };
  readonly #transport: EventTransport;
  readonly #auth: Authenticator;
  readonly #snapshots: SnapshotSource | null;
  readonly #fillHost: FillHost;
  readonly #onError: (error: unknown, where: string) => void;
  readonly #joinHost: JoinHost;
  readonly #connections = new Set<Connection>();
  readonly #index: SubscriberIndex;
  readonly #lastSeen = new Map<string, number>();
  /** Positions of pipeline subscriptions in their run stream, when the transport has run streams. */
  readonly #positions: Positions | null;
  /** The transport's epoch as last read (sent in `subscribed`). */
  #epoch: string | null = null;
  readonly #offEpoch: (() => void) | null;
  /** Progress events collapsed on connections that have gone. */
  #collapsedGone = 0;
  /** Set by {@link close}. */
  #closed = false;

  /** A hub over `options.transport`; the server makes one. */
  constructor(options: HubOptions) {
    this.#transport = options.transport;
    this.#auth = options.auth;
    this.#snapshots = options.snapshots ?? null;
    const logger = loggerOf(options.logger, 'Hub options.logger');
    const report = options.onError ?? ((error, where) => logError(logger, error, `hub: ${where}`));
    // After close() the hub serves no one: what its transport answers late (the epoch read
    // or a replay failing as the connection closes) is no error to report.
    this.#onError = (error, where) => {
      if (!this.#closed) report(error, where);
    };
    this.#fillHost = {
      transport: this.#transport,
      page: options.replayPage ?? 10_000,
      stats: this.stats,
      wants: (conn, event) => this.#wants(conn, event),
      onError: (error, where) => this.#onError(error, where),
    };
    this.#joinHost = {
      transport: this.#transport,
      snapshots: this.#snapshots,
      canRead: (conn, pipelineId) => this.canRead(conn, pipelineId),
      fill: (conn, runId, cursor, replaySince) => this.#fill(conn, runId, cursor, replaySince),
    };
    this.#index = new SubscriberIndex(this.#transport, (event) => this.#onEvent(event));
    const runs = this.#transport.runs;
    this.#positions =
      runs === undefined ? null : new Positions(runs, { canRead: (c, p) => this.canRead(c, p), follow: (c, r, _p, replay, after) => followAnnounced(this.#joinHost, c, r, replay, after), onError: this.#onError });
    this.#transport.epoch?.().then(
      (epoch) => (this.#epoch ??= epoch),
      (error: unknown) => this.#onError(error, 'reading the epoch'),
    );
    // The history was lost (a Redis that restarted empty): every client resumes, and is told.
    this.#offEpoch =
      this.#transport.onEpochChange?.((epoch) => {
        this.#epoch = epoch;
        this.#lastSeen.clear();
        for (const conn of this.#connections) conn.close(CloseCodes.HISTORY_RESET, 'Event history reset (Redis lost its data): resume');
      }) ?? null;
  }

  /** Connections attached. */
  get connectionCount(): number {
    return this.#connections.size;
  }

  /** Upstream channel subscriptions held (one per channel with local interest). */
  get upstreamCount(): number {
    return this.#index.upstreamCount;
  }

  /** Subscriptions of the attached connections. */
  get subscriptionCount(): number {
    let n = 0;
    for (const conn of this.#connections) n += conn.subscriptions.size;
    return n;
  }

  /** Progress events collapsed under back-pressure, over every connection this hub had. */
  get collapsedCount(): number {
    let n = this.#collapsedGone;
    for (const conn of this.#connections) n += conn.collapsed;
    return n;
  }

  /** Attaches a connection (its subscriptions come with `subscribe`). */
  add(conn: Connection): void {
    this.#connections.add(conn);
  }

  /** Detaches a connection and drops upstream channels nobody needs any more. */
  remove(conn: Connection): void {
    if (!this.#connections.delete(conn)) return;
    this.#collapsedGone += conn.collapsed;
    this.#positions?.remove(conn);
    for (const key of conn.subscriptions.keys()) this.#index.delete(conn, key);
    conn.subscriptions.clear();
    conn.cursors.clear();
  }

  /** May this connection read this pipeline's events? Cached per connection. */
  canRead(conn: Connection, pipelineId: string): boolean {
    let ok = conn.cachedRead(pipelineId);
    if (ok === undefined) {
      ok = this.#auth.authorize(conn.principal, pipelineId, 'read');
      conn.cacheRead(pipelineId, ok);
    }
    return ok;
  }

  /** Adds a subscription; sends `subscribed`, then snapshots or the replay, then live events. */
  async subscribe(conn: Connection, msg: SubscribeMessage): Promise<void> {
    const sub: Subscription =
      msg.run_id !== undefined
        ? { key: runKey(msg.run_id), kind: 'run', id: msg.run_id, eventTypes: msg.event_types ? new Set(msg.event_types) : null }
        : msg.pipeline_id === '*'
          ? { key: ALL_KEY, kind: 'all', id: '*', eventTypes: msg.event_types ? new Set(msg.event_types) : null }
          : { key: pipelineKey(msg.pipeline_id as string), kind: 'pipeline', id: msg.pipeline_id as string, eventTypes: msg.event_types ? new Set(msg.event_types) : null };
    const previous = conn.subscriptions.get(sub.key);
    if (previous !== undefined) this.#positions?.close(conn, previous);
    conn.subscriptions.set(sub.key, sub);
    this.#index.add(conn, sub.key);
    const ack: Record<string, unknown> = { type: 'subscribed' };
    if (sub.kind === 'run') ack.run_id = sub.id;
    else ack.pipeline_id = sub.id;
    if (msg.event_types !== undefined) ack.event_types = msg.event_types;
    if (this.#epoch !== null) ack.epoch = this.#epoch;
    let start: PositionStart | null = null;
    if (sub.kind !== 'run' && this.#positions !== null && (msg.positions === true || msg.offset !== undefined)) {
      try {
        start = await this.#positions.open(conn, sub, { offset: msg.offset, epoch: msg.epoch });
      } catch (error) {
        this.#positions.close(conn, sub);
        this.#onError(error, `reading the run stream of ${sub.key}`);
      }
      if (conn.state !== 'open' || conn.subscriptions.get(sub.key) !== sub) return;
      if (start !== null) Object.assign(ack, start);
    }
    if (msg.id !== undefined) ack.id = msg.id;
    conn.sendControl(ack);
    try {
      if (sub.kind === 'run') await joinRun(this.#joinHost, conn, sub.id, msg.since, msg.epoch);
      else {
        if (start !== null) await this.#positions?.replay(sub);
        await joinPipeline(this.#joinHost, conn, sub.kind === 'all' ? undefined : sub.id, start === null ? msg.started_since : undefined);
      }
    } catch (error) {
      this.#onError(error, `late join of ${sub.key}`);
    }
  }

  /** Removes a subscription; `false` when there was none. */
  unsubscribe(conn: Connection, msg: UnsubscribeMessage): boolean {
    const key = subscriptionKey(msg);
    const sub = conn.subscriptions.get(key);
    if (sub === undefined) return false;
    conn.subscriptions.delete(key);
    this.#positions?.close(conn, sub);
    this.#index.delete(conn, key);
    return true;
  }

  /** One live event from upstream (it may come through several channels: handled once). */
  #onEvent(event: FlowcastEvent): void {
    const seen = this.#lastSeen.get(event.run_id);
    if (seen !== undefined && event.seq <= seen) {
      // Handled already, or overtaken by a later event of its run: that one's fill waits for
      // it, and the log holds it now (it is appended before it is published).
      if (event.seq < seen) this.#wakeFills(event);
      return;
    }
    this.#lastSeen.delete(event.run_id);
    this.#lastSeen.set(event.run_id, event.seq);
    if (this.#lastSeen.size > LAST_SEEN_MAX) {
      const oldest = this.#lastSeen.keys().next().value;
      if (oldest !== undefined) this.#lastSeen.delete(oldest);
    }
    this.stats.eventsIn++;
    let json: Buffer | null = null;
    const serialise = (): Buffer => {
      if (json === null) {
        json = Buffer.from(JSON.stringify(event));
        this.stats.serialised++;
      }
      return json;
    };
    const targets = this.#index.targets(event);
    if (targets === null) return;
    for (const conn of targets) this.#deliver(conn, event, serialise);
  }

  /** Wakes the fills of `event`'s run that wait for an overtaken event (see {@link nextLiveEvent}). */
  #wakeFills(event: FlowcastEvent): void {
    const targets = this.#index.targets(event);
    if (targets === null) return;
    for (const conn of targets) conn.cursors.get(event.run_id)?.wake?.();
  }

  /** `true` when one of the connection's subscriptions wants this event. */
  #wants(conn: Connection, event: FlowcastEvent): boolean {
    if (!this.canRead(conn, event.pipeline_id)) return false;
    for (const sub of conn.subscriptions.values()) {
      const matches = sub.kind === 'all' || (sub.kind === 'pipeline' ? sub.id === event.pipeline_id : sub.id === event.run_id);
      if (matches && (sub.eventTypes === null || sub.eventTypes.has(event.type))) return true;
    }
    return false;
  }

  #deliver(conn: Connection, event: FlowcastEvent, serialise: () => Buffer): void {
    if (conn.state !== 'open') return;
    let cursor = conn.cursors.get(event.run_id);
    if (cursor === undefined) {
      if (!this.canRead(conn, event.pipeline_id)) return;
      if (this.#positions?.covers(conn, event.pipeline_id) === true) {
        // A run its positions have not announced yet: its `position` goes first (docs/protocol.md).
        const held: RunCursor = { last: 0, filling: true, buffer: [event], awaitsPosition: true };
        setCursor(conn, event.run_id, held);
        void this.#positions.catchUp(conn, event.pipeline_id).then(() => {
          held.awaitsPosition = false;
          return this.#fill(conn, event.run_id, held, undefined);
        });
        return;
      }
      if (event.seq === 1) {
        cursor = { last: 0, filling: false, buffer: [] };
        setCursor(conn, event.run_id, cursor);
      } else {
        // A run this connection joins in the middle: what it missed comes from the log first.
        cursor = { last: 0, filling: true, buffer: [event] };
        setCursor(conn, event.run_id, cursor);
        void this.#fill(conn, event.run_id, cursor, undefined);
        return;
      }
    }
    if (cursor.filling) {
      // The log holds them too: a fill that falls this far behind reads them from there.
      if (cursor.buffer.length >= FILL_BUFFER_MAX) cursor.buffer = [];
      cursor.buffer.push(event);
      cursor.wake?.();
      return;
    }
    if (event.seq <= cursor.last) return;
    if (event.seq > cursor.last + 1) {
      cursor.filling = true;
      cursor.buffer.push(event);
      void this.#fill(conn, event.run_id, cursor, undefined);
      return;
    }
    cursor.last = event.seq;
    if (this.#wants(conn, event)) {
      conn.send(serialise(), event);
      this.stats.deliveries++;
    }
  }

  /** Sends a run's missed events from the log (see {@link fillRun}). */
  #fill(conn: Connection, runId: string, cursor: RunCursor, replaySince: number | undefined): Promise<void> {
    return fillRun(this.#fillHost, conn, runId, cursor, replaySince);
  }

  /** Closes every connection (1001) and drops every upstream subscription. */
  close(): void {
    this.#closed = true;
    // SSE streams never end by themselves: left open, they would hold the HTTP server's close forever.
    for (const conn of this.#connections) conn.close(1001, 'Server shutting down');
    this.#index.clear();
    this.#positions?.clear();
    this.#offEpoch?.();
    this.#connections.clear();
  }
}
