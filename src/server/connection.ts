import { randomUUID } from 'node:crypto';
import type { FlowcastEvent } from '../events/types.js';
import type { Principal } from './auth.js';

/** One subscription of a connection. */
export interface Subscription {
  /** `all`, `p:<pipeline_id>` or `r:<run_id>`. */
  key: string;
  kind: 'all' | 'pipeline' | 'run';
  id: string;
  eventTypes: ReadonlySet<string> | null;
}

/** Where a connection is in a run's stream. */
export interface RunCursor {
  /** Last seq of the run this connection has accounted for (sent, or filtered out). */
  last: number;
  /** `true` while the hub reads missed events from the log; live events wait in `buffer`. */
  filling: boolean;
  buffer: FlowcastEvent[];
  /** Set while a fill waits for a live event of the run; the hub calls it when one arrives. */
  wake?: (() => void) | undefined;
  /** A run's first live event came before its run stream's marker: the fill waits for the marker, which may move `last` (a resumed run). */
  awaitsPosition?: boolean;
}

/** Outgoing buffer limits of a connection. */
export interface OutgoingLimits {
  /**
   * Past this many bytes queued, progress events of a run are collapsed to the latest.
   * @default 1048576 (1 MiB)
   */
  softLimitBytes?: number;
  /**
   * Past this many bytes queued the connection is closed (code 4008): the client
   * reconnects and replays what it missed with `since`.
   * @default 8388608 (8 MiB)
   */
  hardLimitBytes?: number;
}

/** Where a client connection stands. */
export type ConnectionState = 'open' | 'closing' | 'closed';

/**
 * A subscriber: a WebSocket or an SSE stream. Holds its subscriptions, its cursor in
 * each run, and a bounded outgoing queue that is written in batches. Subclasses only
 * know how to write bytes and close.
 */
export abstract class Connection {
  /**
   * Connections with queued messages, flushed together on the next turn of the event
   * loop: one callback for all of them rather than one per connection, and whatever was
   * queued meanwhile (a burst of events) goes out in one write per connection.
   */
  static #dirty: Connection[] = [];
  static #flushScheduled = false;
  static readonly #flushDirty = (): void => {
    Connection.#flushScheduled = false;
    const list = Connection.#dirty;
    // Connections that get messages while these are written wait for the next turn.
    Connection.#dirty = [];
    for (const conn of list) {
      conn.#scheduled = false;
      conn.#flush();
    }
  };

  readonly principal: Principal | null;
  readonly subscriptions = new Map<string, Subscription>();
  state: ConnectionState = 'open';
  /** Messages sent, for metrics. */
  sent = 0;
  /** Progress events collapsed under back-pressure. */
  collapsed = 0;
  readonly #soft: number;
  readonly #hard: number;
  /**
   * Queued messages, framed, with their events (null for control messages). A lone
   * message waits in `#one`; a second one moves both to the `#many` arrays (a burst).
   * Most flushes write one message, and then no array is made.
   */
  #one: Buffer | null = null;
  #oneEvent: FlowcastEvent | null = null;
  #many: Buffer[] | null = null;
  #manyEvents: (FlowcastEvent | null)[] | null = null;
  #queuedBytes = 0;
  #scheduled = false;
  #waiting: NodeJS.Timeout | null = null;
  // Made on first use: an idle connection is thousands of times over on a busy server.
  #id: string | undefined;
  #cursors: Map<string, RunCursor> | undefined;
  /** Cached `authorize(principal, pipelineId, 'read')` answers: the first pipeline inline, more in a map. */
  #readFirst: string | undefined;
  #readFirstOk = false;
  #readMore: Map<string, boolean> | undefined;

  constructor(principal: Principal | null, limits: Required<OutgoingLimits>) {
    this.principal = principal;
    this.#soft = limits.softLimitBytes;
    this.#hard = limits.hardLimitBytes;
  }

  /** A unique id of this connection. */
  get id(): string {
    return (this.#id ??= randomUUID());
  }

  /** run id → where this connection is in that run's stream. */
  get cursors(): Map<string, RunCursor> {
    return (this.#cursors ??= new Map());
  }

  /** The cached answer to "may this connection read this pipeline?", if there is one. */
  cachedRead(pipelineId: string): boolean | undefined {
    if (pipelineId === this.#readFirst) return this.#readFirstOk;
    return this.#readMore?.get(pipelineId);
  }

  cacheRead(pipelineId: string, ok: boolean): void {
    if (this.#readFirst === undefined || this.#readFirst === pipelineId) {
      this.#readFirst = pipelineId;
      this.#readFirstOk = ok;
    } else {
      (this.#readMore ??= new Map()).set(pipelineId, ok);
    }
  }

  /** Bytes the transport has accepted but not yet written to the network. */
  protected abstract bufferedBytes(): number;
  /** Writes a batch of messages (one network write when the transport allows). */
  protected abstract writeBatch(items: Buffer[]): void;
  /** Closes the underlying transport. */
  protected abstract closeTransport(code: number, reason: string): void;
  /** Frames one serialised message for this transport (SSE adds its `data:` lines). */
  abstract frame(json: Buffer, event: FlowcastEvent | null): Buffer;

  /** Bytes waiting: queued here plus buffered in the transport. */
  get pendingBytes(): number {
    return this.#queuedBytes + this.bufferedBytes();
  }

  /** `true` while more than the soft limit waits to be written: a replay reads its next page only once it drains. */
  get congested(): boolean {
    return this.pendingBytes > this.#soft;
  }

  /**
   * Resolves `true` once no more than the soft limit waits to be written, `false` when the
   * connection closes first. A connection that stays congested for `timeoutMs` is cut
   * (4008): a stalled reader holds its queue (at most the hard limit) for a bounded time.
   */
  drained(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const deadline = Date.now() + timeoutMs;
      const check = (): void => {
        if (this.state !== 'open') return resolve(false);
        if (this.pendingBytes <= this.#soft) return resolve(true);
        if (Date.now() >= deadline) {
          this.close(4008, 'Slow consumer: the replay could not be written in time; reconnect and replay with since', { drop: true });
          return resolve(false);
        }
        setTimeout(check, 20);
      };
      setImmediate(check);
    });
  }

  /** Queues a serialised message. `event` is given for events (progress events may be collapsed). */
  send(json: Buffer, event: FlowcastEvent | null = null): void {
    if (this.state !== 'open') return;
    const data = this.frame(json, event);
    if (event !== null && event.type === 'StepProgressEvent' && this.#queuedBytes > 0 && this.pendingBytes > this.#soft) this.#collapse(event);
    if (this.#many !== null) {
      this.#many.push(data);
      (this.#manyEvents as (FlowcastEvent | null)[]).push(event);
    } else if (this.#one === null) {
      this.#one = data;
      this.#oneEvent = event;
    } else {
      this.#many = [this.#one, data];
      this.#manyEvents = [this.#oneEvent, event];
      this.#one = null;
      this.#oneEvent = null;
    }
    this.#queuedBytes += data.length;
    this.sent++;
    if (this.#queuedBytes > this.#hard - this.bufferedBytes()) {
      this.close(4008, 'Slow consumer: outgoing queue over its limit; reconnect and replay with since', { drop: true });
      return;
    }
    this.#schedule();
  }

  /** Drops the queued progress event of the same run and step, if there is one: the newer one replaces it. */
  #collapse(event: FlowcastEvent & { type: 'StepProgressEvent' }): void {
    const same = (q: FlowcastEvent | null): boolean => q !== null && q.type === 'StepProgressEvent' && q.run_id === event.run_id && q.step_name === event.step_name;
    if (this.#one !== null) {
      if (!same(this.#oneEvent)) return;
      this.#queuedBytes -= this.#one.length;
      this.#one = null;
      this.#oneEvent = null;
    } else if (this.#many !== null) {
      const events = this.#manyEvents as (FlowcastEvent | null)[];
      const i = events.findIndex(same);
      if (i < 0) return;
      this.#queuedBytes -= (this.#many[i] as Buffer).length;
      this.#many.splice(i, 1);
      events.splice(i, 1);
    } else {
      return;
    }
    this.collapsed++;
  }

  /** Takes what is queued, in order. */
  #take(): Buffer[] {
    const batch = this.#many ?? (this.#one === null ? [] : [this.#one]);
    this.#one = null;
    this.#oneEvent = null;
    this.#many = null;
    this.#manyEvents = null;
    this.#queuedBytes = 0;
    return batch;
  }

  /** Sends a control message (JSON-serialisable object). */
  sendControl(message: object): void {
    this.send(Buffer.from(JSON.stringify(message)), null);
  }

  #schedule(): void {
    if (this.#scheduled || this.#waiting !== null) return;
    this.#scheduled = true;
    Connection.#dirty.push(this);
    if (!Connection.#flushScheduled) {
      Connection.#flushScheduled = true;
      setImmediate(Connection.#flushDirty);
    }
  }

  #flush(): void {
    if (this.state !== 'open' || (this.#one === null && this.#many === null)) return;
    if (this.bufferedBytes() > this.#soft) {
      // The network is behind: keep messages here (where progress can collapse) and look again soon.
      this.#waiting = setTimeout(() => {
        this.#waiting = null;
        this.#flush();
      }, 20);
      return;
    }
    this.writeBatch(this.#take());
  }

  /**
   * Closes the connection (idempotent). What is queued is written first, so that an
   * `error` explaining the close reaches the client, unless `drop` is set: a slow
   * consumer's queue is what it cannot take.
   */
  close(code = 1000, reason = '', options: { drop?: boolean } = {}): void {
    if (this.state !== 'open') return;
    this.state = 'closing';
    if (this.#waiting !== null) clearTimeout(this.#waiting);
    const pending = this.#take();
    if (options.drop !== true && pending.length > 0) this.writeBatch(pending);
    this.closeTransport(code, reason);
  }

  /** Called by subclasses when the transport is gone. */
  protected markClosed(): void {
    this.state = 'closed';
    if (this.#waiting !== null) clearTimeout(this.#waiting);
    this.#take();
  }
}
