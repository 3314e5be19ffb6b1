import { isTerminalEvent, type FlowcastEvent } from '../events/types.js';


/** What the monitor knows of one run. */
export interface RunCursor {
  readonly runId: string;
  pipelineId: string | null;
  /** The highest seq delivered (or covered by a snapshot): later events only. */
  last: number;
  /** The run's terminal event was delivered. */
  ended: boolean;
  /**
   * A replay (`subscribe` with `since`) is under way. Until it completes, an event past
   * `last + 1` is held back: it is a live event that overtook the replay.
   */
  replaying: boolean;
  held: FlowcastEvent[];
  /** The monitor subscribed to the run itself to replay it; it unsubscribes once caught up. */
  resume: boolean;
}

/**
 * The last seq of every run the monitor has seen, which makes delivery exact: an event
 * at or below a run's last seq is a duplicate and is dropped, and a reconnect resumes
 * each run from its last seq. Bounded: past `max` runs, the runs seen longest ago
 * (ended ones first) are forgotten.
 */
export class RunCursors {
  readonly #runs = new Map<string, RunCursor>();
  readonly #max: number;
  /** Events dropped as duplicates. */
  duplicates = 0;

  constructor(max: number) {
    this.#max = max;
  }

  get size(): number {
    return this.#runs.size;
  }

  get(runId: string): RunCursor | undefined {
    return this.#runs.get(runId);
  }

  values(): IterableIterator<RunCursor> {
    return this.#runs.values();
  }

  ensure(runId: string, pipelineId: string | null): RunCursor {
    let cursor = this.#runs.get(runId);
    if (cursor === undefined) {
      cursor = { runId, pipelineId, last: 0, ended: false, replaying: false, held: [], resume: false };
      this.#runs.set(runId, cursor);
      if (this.#runs.size > this.#max) this.#evict(runId);
    } else if (cursor.pipelineId === null && pipelineId !== null) {
      cursor.pipelineId = pipelineId;
    }
    return cursor;
  }

  /** Takes one event off the wire; returns what to deliver now, in seq order (nothing for a duplicate). */
  accept(event: FlowcastEvent): FlowcastEvent[] {
    const cursor = this.ensure(event.run_id, event.pipeline_id);
    if (event.seq <= cursor.last) {
      this.duplicates++;
      return [];
    }
    if (cursor.replaying && event.seq > cursor.last + 1) {
      if (cursor.held.some((e) => e.seq === event.seq)) this.duplicates++;
      else cursor.held.push(event);
      return [];
    }
    const out = [event];
    this.#advance(cursor, event);
    if (cursor.held.length > 0) this.#drain(cursor, out, false);
    return out;
  }

  /** A snapshot says the server follows the run from `lastSeq + 1`. */
  snapshot(runId: string, pipelineId: string, lastSeq: number): void {
    const cursor = this.ensure(runId, pipelineId);
    if (lastSeq > cursor.last) cursor.last = lastSeq;
  }

  /** A `subscribe` with `since` goes out: the replay delivers what follows `max(since, last)`. */
  startReplay(runId: string, since: number, resume: boolean): void {
    const cursor = this.ensure(runId, null);
    if (since > cursor.last) cursor.last = since;
    cursor.replaying = true;
    cursor.resume = resume;
  }

  /** The log starts later than asked (retention): accept from `firstSeq` on. */
  skipTo(runId: string, firstSeq: number): void {
    const cursor = this.#runs.get(runId);
    if (cursor !== undefined && firstSeq - 1 > cursor.last) cursor.last = firstSeq - 1;
  }

  /**
   * The run's log is another history than the one its seqs came from (the server's Redis
   * lost its data): forget them, and accept the log's events from `firstSeq` on.
   */
  reset(runId: string, firstSeq: number): void {
    const cursor = this.#runs.get(runId);
    if (cursor === undefined) return;
    cursor.last = Math.max(0, firstSeq - 1);
    cursor.ended = false;
    cursor.held = [];
  }

  /** The run was resumed, as its run stream says: it runs again, its events follow from `seq` (its PipelineResumeEvent). */
  resumed(runId: string, pipelineId: string, seq: number): void {
    const cursor = this.ensure(runId, pipelineId);
    if (seq - 1 > cursor.last) cursor.last = seq - 1;
    cursor.ended = false;
  }

  /** The run ended, as its run stream says (for a monitor that does not receive terminal events). */
  end(runId: string): void {
    const cursor = this.#runs.get(runId);
    if (cursor !== undefined) cursor.ended = true;
  }

  /** The replay caught up (or failed): returns the held events that can go now, in order. */
  endReplay(runId: string): FlowcastEvent[] {
    const cursor = this.#runs.get(runId);
    if (cursor === undefined) return [];
    cursor.replaying = false;
    const out: FlowcastEvent[] = [];
    this.#drain(cursor, out, true);
    return out;
  }

  /** The connection dropped: replays in flight are void, held events will come again. */
  disconnected(): void {
    for (const cursor of this.#runs.values()) {
      cursor.replaying = false;
      cursor.resume = false;
      cursor.held = [];
    }
  }

  #advance(cursor: RunCursor, event: FlowcastEvent): void {
    cursor.last = event.seq;
    // An event after the terminal one: the run was resumed (a new attempt) and runs again.
    cursor.ended = isTerminalEvent(event);
  }

  /** Moves held events out in order: the next seq only, or (`all`) every one past `last`. */
  #drain(cursor: RunCursor, out: FlowcastEvent[], all: boolean): void {
    cursor.held.sort((a, b) => a.seq - b.seq);
    let i = 0;
    for (; i < cursor.held.length; i++) {
      const e = cursor.held[i] as FlowcastEvent;
      if (e.seq <= cursor.last) {
        this.duplicates++;
        continue;
      }
      if (!all && cursor.replaying && e.seq > cursor.last + 1) break;
      out.push(e);
      this.#advance(cursor, e);
    }
    cursor.held = cursor.held.slice(i);
  }

  #evict(keep: string): void {
    let victim: string | undefined;
    for (const c of this.#runs.values()) {
      if (c.runId === keep) continue;
      if (c.ended) {
        victim = c.runId;
        break;
      }
      victim ??= c.runId;
    }
    if (victim !== undefined) this.#runs.delete(victim);
  }
}
