/**
 * Puts the live events of each run back in seq order, once each, before they reach local
 * listeners. Pub/Sub alone does not: two workers advancing one run publish on two
 * connections, so their events can cross; a subscription connection that reconnects
 * misses what was published meanwhile; each event arrives once per channel.
 *
 * Per run it keeps the next expected seq. An older or repeated event is dropped; a newer
 * one waits while the missing ones are read from the run's log (an event is always in
 * the log before it is published, so the log has every seq before a published one).
 * A run is followed from the first event seen of it; the most recently active
 * `maxRuns` are remembered.
 */
import { isTerminalEvent, type FlowcastEvent } from '../events/types.js';

/** Reads a run's log after `since` (the transport's `read`). */
export type LogReader = (runId: string, since: number) => Promise<FlowcastEvent[]>;

interface RunCursor {
  pipelineId: string;
  /** The next seq to deliver. */
  next: number;
  ended: boolean;
  /** Events that came before their turn, by seq. */
  early: Map<number, FlowcastEvent> | null;
  filling: boolean;
  /** Another fill was asked for while one ran. */
  again: boolean;
}

/** Per-run ordering and de-duplication of live events. */
export class RunSequencer {
  readonly #read: LogReader;
  readonly #deliver: (event: FlowcastEvent) => void;
  readonly #onError: (error: unknown, where: string) => void;
  readonly #maxRuns: number;
  readonly #runs = new Map<string, RunCursor>();

  constructor(read: LogReader, deliver: (event: FlowcastEvent) => void, onError: (error: unknown, where: string) => void, maxRuns: number) {
    this.#read = read;
    this.#deliver = deliver;
    this.#onError = onError;
    this.#maxRuns = maxRuns;
  }

  /** Runs followed now. */
  get size(): number {
    return this.#runs.size;
  }

  /** `true` when the run is followed. */
  has(runId: string): boolean {
    return this.#runs.has(runId);
  }

  /** A live event (from any channel). */
  push(event: FlowcastEvent): void {
    const cursor = this.#runs.get(event.run_id);
    if (cursor === undefined) {
      const fresh: RunCursor = { pipelineId: event.pipeline_id, next: event.seq, ended: false, early: null, filling: false, again: false };
      this.#runs.set(event.run_id, fresh);
      if (this.#runs.size > this.#maxRuns) {
        const oldest = this.#runs.keys().next().value;
        if (oldest !== undefined) this.#runs.delete(oldest);
      }
      this.#take(fresh, event);
      return;
    }
    if (event.seq < cursor.next) return;
    // Nothing is appended after a terminal event unless the run was resumed: it runs again.
    if (cursor.ended) cursor.ended = false;
    if (event.seq === cursor.next) {
      this.#take(cursor, event);
      this.#drain(cursor);
      return;
    }
    (cursor.early ??= new Map()).set(event.seq, event);
    void this.#fill(event.run_id, cursor);
  }

  /** After the subscription reconnected: reads what every followed run published meanwhile. */
  resync(): void {
    for (const [runId, cursor] of this.#runs) if (!cursor.ended) void this.#fill(runId, cursor);
  }

  /**
   * Forgets the runs nobody listens to any more (`followed` says who still does): should
   * a listener come back later, its run starts afresh from the next live event instead
   * of being replayed from where this process stopped following it.
   */
  forget(followed: (runId: string, pipelineId: string) => boolean, runId?: string): void {
    if (runId !== undefined) {
      const cursor = this.#runs.get(runId);
      if (cursor !== undefined && !followed(runId, cursor.pipelineId)) this.#runs.delete(runId);
      return;
    }
    for (const [id, cursor] of this.#runs) if (!followed(id, cursor.pipelineId)) this.#runs.delete(id);
  }

  /** Forgets every run. */
  clear(): void {
    this.#runs.clear();
  }

  #take(cursor: RunCursor, event: FlowcastEvent): void {
    cursor.next = event.seq + 1;
    if (isTerminalEvent(event)) {
      cursor.ended = true;
      cursor.early = null;
    }
    // Most recently active last: the oldest quiet run is forgotten first.
    this.#runs.delete(event.run_id);
    this.#runs.set(event.run_id, cursor);
    this.#deliver(event);
  }

  #drain(cursor: RunCursor): void {
    const early = cursor.early;
    if (early === null) return;
    for (let e = early.get(cursor.next); e !== undefined && !cursor.ended; e = early.get(cursor.next)) {
      early.delete(e.seq);
      this.#take(cursor, e);
    }
    if (cursor.early !== null && cursor.early.size === 0) cursor.early = null;
  }

  async #fill(runId: string, cursor: RunCursor): Promise<void> {
    if (cursor.filling) {
      cursor.again = true;
      return;
    }
    cursor.filling = true;
    try {
      do {
        cursor.again = false;
        const events = await this.#read(runId, cursor.next - 1);
        for (const e of events) {
          if (cursor.ended) break;
          if (e.seq < cursor.next) continue;
          // Retention trimmed what was missed: go on from what the log still holds.
          if (e.seq > cursor.next) cursor.next = e.seq;
          this.#take(cursor, e);
          this.#drain(cursor);
        }
        const early = cursor.early;
        if (early !== null) for (const seq of early.keys()) if (seq < cursor.next) early.delete(seq);
        if (!cursor.ended && early !== null && early.size > 0 && !early.has(cursor.next) && !cursor.again) {
          // The log holds nothing between: skip to the first waiting event.
          cursor.next = Math.min(...early.keys());
          this.#drain(cursor);
        }
      } while (cursor.again && !cursor.ended);
    } catch (error) {
      this.#onError(error, `reading the log of run ${runId} to fill a gap`);
    } finally {
      cursor.filling = false;
    }
  }
}
