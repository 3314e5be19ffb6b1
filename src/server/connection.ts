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

interface Queued {
  data: Buffer;
  /** `run_id:step_name` for progress events, which may be collapsed. */
  progressKey: string | null;
}

export type ConnectionState = 'open' | 'closing' | 'closed';

/**
 * A subscriber: a WebSocket or an SSE stream. Holds its subscriptions, its cursor in
 * each run, and a bounded outgoing queue that is written in batches. Subclasses only
 * know how to write bytes and close.
 */
export abstract class Connection {
  readonly id = randomUUID();
  readonly principal: Principal | null;
  readonly subscriptions = new Map<string, Subscription>();
  readonly cursors = new Map<string, RunCursor>();
  /** pipeline id → may this principal read it (cached `authorize` answers). */
  readonly readable = new Map<string, boolean>();
  state: ConnectionState = 'open';
  /** Messages sent, for metrics. */
  sent = 0;
  /** Progress events collapsed under back-pressure. */
  collapsed = 0;
  readonly #soft: number;
  readonly #hard: number;
  #queue: Queued[] = [];
  #queuedBytes = 0;
  #scheduled = false;
  #waiting: NodeJS.Timeout | null = null;

  constructor(principal: Principal | null, limits: Required<OutgoingLimits>) {
    this.principal = principal;
    this.#soft = limits.softLimitBytes;
    this.#hard = limits.hardLimitBytes;
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

  /** Queues a serialised message. `event` is given for events (progress events may be collapsed). */
  send(json: Buffer, event: FlowcastEvent | null = null): void {
    if (this.state !== 'open') return;
    const data = this.frame(json, event);
    const progressKey = event?.type === 'StepProgressEvent' ? `${event.run_id}:${event.step_name}` : null;
    if (progressKey !== null && this.pendingBytes > this.#soft) {
      const i = this.#queue.findIndex((q) => q.progressKey === progressKey);
      if (i >= 0) {
        const old = this.#queue[i] as Queued;
        this.#queuedBytes -= old.data.length;
        this.#queue.splice(i, 1);
        this.collapsed++;
      }
    }
    this.#queue.push({ data, progressKey });
    this.#queuedBytes += data.length;
    this.sent++;
    if (this.pendingBytes > this.#hard) {
      this.close(4008, 'Slow consumer: outgoing queue over its limit; reconnect and replay with since');
      return;
    }
    this.#schedule();
  }

  /** Sends a control message (JSON-serialisable object). */
  sendControl(message: object): void {
    this.send(Buffer.from(JSON.stringify(message)), null);
  }

  #schedule(): void {
    if (this.#scheduled || this.#waiting !== null) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#flush();
    });
  }

  #flush(): void {
    if (this.state !== 'open' || this.#queue.length === 0) return;
    if (this.bufferedBytes() > this.#soft) {
      // The network is behind: keep messages here (where progress can collapse) and look again soon.
      this.#waiting = setTimeout(() => {
        this.#waiting = null;
        this.#flush();
      }, 20);
      return;
    }
    const batch = this.#queue;
    this.#queue = [];
    this.#queuedBytes = 0;
    this.writeBatch(batch.map((q) => q.data));
  }

  /** Closes the connection (idempotent). */
  close(code = 1000, reason = ''): void {
    if (this.state !== 'open') return;
    this.state = 'closing';
    if (this.#waiting !== null) clearTimeout(this.#waiting);
    this.#queue = [];
    this.#queuedBytes = 0;
    this.closeTransport(code, reason);
  }

  /** Called by subclasses when the transport is gone. */
  protected markClosed(): void {
    this.state = 'closed';
    if (this.#waiting !== null) clearTimeout(this.#waiting);
    this.#queue = [];
    this.#queuedBytes = 0;
  }
}
