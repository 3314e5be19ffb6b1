import { loggerOf, type Logger } from '../core/logger.js';
import { logError } from '../core/log-throttle.js';
import type { FlowcastEvent } from '../events/types.js';
import { ALL_KEY, keyChannel, pipelineKey, runKey, subscriptionKey } from '../events/subscription.js';
import type { EventTransport } from '../transport/transport.js';
import type { Authenticator } from './auth.js';
import type { Connection, RunCursor, Subscription } from './connection.js';
import { Positions, type PositionStart } from './positions.js';
import { fillRun, type FillHost } from './run-fill.js';
import { CloseCodes, type SubscribeMessage, type UnsubscribeMessage } from './protocol.js';

/** Where late joiners' snapshots come from (a PipelineTrackingManager fits). */
export interface SnapshotSource {
  getStatus(id: string): Promise<{ run_id: string; pipeline_id: string; last_seq: number; status: string } | null>;
  listPipelines(options: { status?: 'RUNNING'; pipelineId?: string; since?: string; limit?: number }): Promise<{ run_id: string; pipeline_id: string; last_seq: number }[]>;
}

/** At most this many runs are replayed for a resuming pipeline subscription (`started_since`). */
const RESUME_RUNS_MAX = 1000;
/** Runs brought level with their log at once after a pipeline subscription's snapshots. */
const SNAPSHOT_FILLS_AT_ONCE = 16;

/** What a {@link Hub} is built on. */
export interface HubOptions {
  transport: EventTransport;
  auth: Authenticator;
  snapshots?: SnapshotSource | null;
  /**
   * Events read from the log per page during a replay. A page is one read: for an ended
   * run of the memory transport that is one parse of its packed log, so one page for a
   * whole default-sized log (10,000 events) keeps a late joiner's replay fast.
   * @default 10000
   */
  replayPage?: number;
  /** Where errors go unless `onError` takes them. @default a pino logger at `info` on stderr */
  logger?: Logger;
  onError?: (error: unknown, where: string) => void;
}

/** Counters the server exposes on /metrics. */
export interface HubStats {
  eventsIn: number;
  serialised: number;
  deliveries: number;
  replayed: number;
}

const LAST_SEEN_MAX = 100_000;
/** Live events kept per run while it is filled from the log; past it they are dropped and read from the log instead. */
const FILL_BUFFER_MAX = 10_000;
const CURSORS_MAX = 10_000;

/**
 * One per server process (DESIGN §1): the index of local subscriptions. It holds at
 * most one upstream subscription per channel, serialises each event once, and writes
 * it to every interested connection. Each connection keeps a cursor per run, so it gets
 * a run's events in seq order with no gap and no duplicate: a gap (a late join, a
 * replay, an event that overtook another) is filled from the run's log before live
 * events resume.
 */
export class Hub {
  readonly stats: HubStats = { eventsIn: 0, serialised: 0, deliveries: 0, replayed: 0 };
  readonly #transport: EventTransport;
  readonly #auth: Authenticator;
  readonly #snapshots: SnapshotSource | null;
  readonly #fillHost: FillHost;
  readonly #onError: (error: unknown, where: string) => void;
  readonly #connections = new Set<Connection>();
  readonly #byKey = new Map<string, Set<Connection>>();
  readonly #upstream = new Map<string, () => void>();
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
    const runs = this.#transport.runs;
    this.#positions =
      runs === undefined ? null : new Positions(runs, { canRead: (c, p) => this.canRead(c, p), follow: (c, r, _p, replay, after) => this.#follow(c, r, replay, after), onError: this.#onError });
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
    return this.#upstream.size;
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

  add(conn: Connection): void {
    this.#connections.add(conn);
  }

  /** Detaches a connection and drops upstream channels nobody needs any more. */
  remove(conn: Connection): void {
    if (!this.#connections.delete(conn)) return;
    this.#collapsedGone += conn.collapsed;
    this.#positions?.remove(conn);
    for (const key of conn.subscriptions.keys()) this.#unindex(conn, key);
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
    this.#index(conn, sub.key);
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
      if (sub.kind === 'run') await this.#joinRun(conn, sub.id, msg.since, msg.epoch);
      else {
        if (start !== null) await this.#positions?.replay(sub);
        await this.#joinPipeline(conn, sub.kind === 'all' ? undefined : sub.id, start === null ? msg.started_since : undefined);
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
    this.#unindex(conn, key);
    return true;
  }

  async #joinPipeline(conn: Connection, pipelineId: string | undefined, startedSince: string | undefined): Promise<void> {
    if (this.#snapshots === null) return;
    if (startedSince !== undefined) await this.#replayStartedSince(conn, pipelineId, startedSince);
    const query: { status: 'RUNNING'; pipelineId?: string; limit: number } = { status: 'RUNNING', limit: 1000 };
    if (pipelineId !== undefined) query.pipelineId = pipelineId;
    const running = await this.#snapshots.listPipelines(query);
    // A listed status may be behind its run's log (tracking that coalesces writes, see
    // docs/tracking.md): after its snapshot, each run is brought level with its log, so
    // events published before this subscription and not in the snapshot still arrive.
    const fills: (() => Promise<void>)[] = [];
    for (const status of running) {
      if (conn.state !== 'open') return;
      if (!this.canRead(conn, status.pipeline_id) || conn.cursors.has(status.run_id)) continue;
      const cursor: RunCursor = { last: status.last_seq, filling: true, buffer: [] };
      this.#setCursor(conn, status.run_id, cursor);
      conn.sendControl({ type: 'snapshot', pipeline_id: status.pipeline_id, run_id: status.run_id, last_seq: status.last_seq, status });
      fills.push(() => this.#fill(conn, status.run_id, cursor, undefined));
    }
    // A few reads at a time: a subscription to "*" may meet a thousand running runs.
    for (let i = 0; i < fills.length; i += SNAPSHOT_FILLS_AT_ONCE) {
      if (conn.state !== 'open') return;
      await Promise.all(fills.slice(i, i + SNAPSHOT_FILLS_AT_ONCE).map((fill) => fill()));
    }
  }

  /**
   * A resuming client's pipeline subscription: every run started since `since` that this
   * connection has no cursor for is replayed from its first event (a run the client saw
   * before has a cursor from its resume message, sent before this one). So a run that
   * began and ended while the client was away reaches it too.
   */
  async #replayStartedSince(conn: Connection, pipelineId: string | undefined, since: string): Promise<void> {
    const query: { pipelineId?: string; since: string; limit: number } = { since, limit: RESUME_RUNS_MAX };
    if (pipelineId !== undefined) query.pipelineId = pipelineId;
    const runs = await (this.#snapshots as SnapshotSource).listPipelines(query);
    // Oldest first, so that the client gets runs in the order they started.
    for (const run of runs.reverse()) {
      if (conn.state !== 'open') return;
      if (!this.canRead(conn, run.pipeline_id) || conn.cursors.has(run.run_id)) continue;
      const cursor: RunCursor = { last: 0, filling: true, buffer: [] };
      this.#setCursor(conn, run.run_id, cursor);
      await this.#fill(conn, run.run_id, cursor, undefined);
    }
  }

  async #joinRun(conn: Connection, runId: string, since: number | undefined, epoch: string | undefined): Promise<void> {
    if (since !== undefined) {
      const cursor: RunCursor = { last: since, filling: true, buffer: [] };
      const previous = conn.cursors.get(runId);
      if (previous?.filling === true) cursor.buffer = previous.buffer;
      this.#setCursor(conn, runId, cursor);
      // Even replay_complete would tell a reader of another pipeline how far this run got.
      const head = await this.#transport.read(runId, { since: 0, limit: 1 });
      const now = epoch === undefined ? undefined : await this.#transport.epoch?.();
      if (conn.state !== 'open' || conn.cursors.get(runId) !== cursor) return;
      const owner = head.events[0]?.pipeline_id;
      if (owner !== undefined && !this.canRead(conn, owner)) return this.#asUnknownRun(conn, runId, since, now !== undefined && now !== epoch ? now : undefined);
      if (now !== undefined && now !== epoch) {
        // Another history (a Redis that lost its data): the seqs the client holds are not this log's.
        conn.sendControl({ type: 'replay_incomplete', run_id: runId, requested_since: since, first_seq: head.first_seq, last_seq: head.last_seq, epoch: now, reason: 'epoch' });
        cursor.last = 0;
        await this.#fill(conn, runId, cursor, 0);
        return;
      }
      await this.#fill(conn, runId, cursor, since);
      return;
    }
    if (conn.cursors.has(runId)) return;
    const status = this.#snapshots === null ? null : await this.#snapshots.getStatus(runId);
    if (conn.state !== 'open' || conn.cursors.has(runId)) return;
    if (status !== null && status.run_id === runId) {
      if (!this.canRead(conn, status.pipeline_id)) return this.#asUnknownRun(conn, runId, undefined, undefined);
      const cursor: RunCursor = { last: status.last_seq, filling: true, buffer: [] };
      this.#setCursor(conn, runId, cursor);
      conn.sendControl({ type: 'snapshot', pipeline_id: status.pipeline_id, run_id: runId, last_seq: status.last_seq, status });
      // Level with the log, in case the snapshot is behind it (see #joinPipeline).
      await this.#fill(conn, runId, cursor, undefined);
      return;
    }
    // No snapshot to give: follow live from the log's current end.
    const log = await this.#transport.read(runId, { since: Number.MAX_SAFE_INTEGER });
    if (conn.state !== 'open' || conn.cursors.has(runId)) return;
    this.#setCursor(conn, runId, { last: log.last_seq, filling: false, buffer: [] });
  }

  /**
   * A run a positioned subscription announced: followed after seq `after` (0: from its
   * first event; a resumed run: from its PipelineResumeEvent), `replay`: it may be under
   * way, its log first. A run followed already keeps its cursor, except one held for this
   * very announcement (its first live event came first, nothing sent yet): a resumed run
   * then starts at its resume, not at seq 1 again.
   */
  #follow(conn: Connection, runId: string, replay: boolean, after: number): Promise<void> | undefined {
    const held = conn.cursors.get(runId);
    if (held !== undefined) {
      if (held.filling && held.last === 0 && held.awaitsPosition === true) held.last = after;
      return undefined;
    }
    const cursor: RunCursor = { last: after, filling: replay, buffer: [] };
    this.#setCursor(conn, runId, cursor);
    return replay ? this.#fill(conn, runId, cursor, undefined) : undefined;
  }

  /**
   * A run of a pipeline this connection may not read answers exactly as a run that does
   * not exist (docs/security.md): `subscribed`, and with `since` a `replay_complete` at the
   * client's own seq (or the reset answer of another epoch), then nothing, ever. Its
   * events are never sent (every delivery checks the right to read); the cursor only
   * spares the hub from filling a run it would not send.
   */
  #asUnknownRun(conn: Connection, runId: string, since: number | undefined, newEpoch: string | undefined): void {
    this.#setCursor(conn, runId, { last: Number.MAX_SAFE_INTEGER, filling: false, buffer: [] });
    if (since === undefined) return;
    if (newEpoch !== undefined) {
      conn.sendControl({ type: 'replay_incomplete', run_id: runId, requested_since: since, first_seq: 0, last_seq: 0, epoch: newEpoch, reason: 'epoch' });
      conn.sendControl({ type: 'replay_complete', run_id: runId, last_seq: 0 });
      return;
    }
    conn.sendControl({ type: 'replay_complete', run_id: runId, last_seq: since });
  }

  #setCursor(conn: Connection, runId: string, cursor: RunCursor): void {
    conn.cursors.set(runId, cursor);
    if (conn.cursors.size > CURSORS_MAX) {
      const oldest = conn.cursors.keys().next().value;
      if (oldest !== undefined && oldest !== runId) conn.cursors.delete(oldest);
    }
  }

  #index(conn: Connection, key: string): void {
    let set = this.#byKey.get(key);
    if (set === undefined) {
      set = new Set();
      this.#byKey.set(key, set);
    }
    set.add(conn);
    if (!this.#upstream.has(key)) {
      this.#upstream.set(key, this.#transport.subscribe(keyChannel(key), (event) => this.#onEvent(event)));
    }
  }

  #unindex(conn: Connection, key: string): void {
    const set = this.#byKey.get(key);
    if (set === undefined) return;
    set.delete(conn);
    if (set.size > 0) return;
    this.#byKey.delete(key);
    this.#upstream.get(key)?.();
    this.#upstream.delete(key);
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
    const targets = this.#targets(event);
    if (targets === null) return;
    for (const conn of targets) this.#deliver(conn, event, serialise);
  }

  /** Wakes the fills of `event`'s run that wait for an overtaken event (see {@link nextLiveEvent}). */
  #wakeFills(event: FlowcastEvent): void {
    const targets = this.#targets(event);
    if (targets === null) return;
    for (const conn of targets) conn.cursors.get(event.run_id)?.wake?.();
  }

  #targets(event: FlowcastEvent): Set<Connection> | null {
    const all = this.#byKey.get(ALL_KEY);
    const byPipeline = this.#byKey.get(pipelineKey(event.pipeline_id));
    const byRun = this.#byKey.get(runKey(event.run_id));
    const parts = [all, byPipeline, byRun].filter((s): s is Set<Connection> => s !== undefined && s.size > 0);
    if (parts.length === 0) return null;
    if (parts.length === 1) return parts[0] as Set<Connection>;
    const union = new Set<Connection>();
    for (const s of parts) for (const c of s) union.add(c);
    return union;
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
        this.#setCursor(conn, event.run_id, held);
        void this.#positions.catchUp(conn, event.pipeline_id).then(() => {
          held.awaitsPosition = false;
          return this.#fill(conn, event.run_id, held, undefined);
        });
        return;
      }
      if (event.seq === 1) {
        cursor = { last: 0, filling: false, buffer: [] };
        this.#setCursor(conn, event.run_id, cursor);
      } else {
        // A run this connection joins in the middle: what it missed comes from the log first.
        cursor = { last: 0, filling: true, buffer: [event] };
        this.#setCursor(conn, event.run_id, cursor);
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
    for (const off of this.#upstream.values()) off();
    this.#upstream.clear();
    this.#positions?.clear();
    this.#offEpoch?.();
    this.#byKey.clear();
    this.#connections.clear();
  }
}
