/**
 * Coalesced tracking writes (`PipelineTrackingManager` option `writeDelayMs`): the events
 * of a running run wait up to `delayMs` and are written together, in one storage write.
 * A run's first event (`PipelineStartEvent`) and its end are written at once, so a run
 * shows in lists as soon as it starts and its outcome as soon as it ends.
 *
 * Only for storages whose reads are never behind the run's event log (the Redis storage
 * catches a run up from its log on `getStatus`): what waits here is already in the log.
 */
import { isTerminalEvent, type FlowcastEvent } from '../events/types.js';

interface Pending {
  events: FlowcastEvent[];
  timer: NodeJS.Timeout | null;
  /** The run's write in progress, if any: the next one goes after it. */
  writing: Promise<void> | null;
}

/** Per-run buffers of events not written yet, and the timers that write them. */
export class WriteBehind {
  readonly #delayMs: number;
  readonly #write: (events: FlowcastEvent[]) => void | Promise<void>;
  readonly #onError: (error: unknown, runId: string) => void;
  readonly #runs = new Map<string, Pending>();

  /**
   * @param delayMs longest wait of an event before it is written (> 0)
   * @param write writes a group of events of one run, in seq order
   * @param onError where a failed write goes (its events are not retried: the storage's
   *   reads catch up from the log)
   */
  constructor(delayMs: number, write: (events: FlowcastEvent[]) => void | Promise<void>, onError: (error: unknown, runId: string) => void) {
    this.#delayMs = delayMs;
    this.#write = write;
    this.#onError = onError;
  }

  /**
   * Takes events of one run, in seq order. The same event may come twice, or after later
   * ones, when two recorders hand the manager the same run (the engine, and a
   * `TrackingEventBroadcaster` recording what hooks see): the run's waiting events stay in
   * seq order, each seq once, as a storage write needs them. Returns the write's promise when they go at
   * once (the run's start or end is among them), else `undefined` (a timer writes them).
   */
  add(events: FlowcastEvent[]): Promise<void> | undefined {
    const first = events[0];
    if (first === undefined) return undefined;
    const runId = first.run_id;
    let run = this.#runs.get(runId);
    if (run === undefined) {
      run = { events: [], timer: null, writing: null };
      this.#runs.set(runId, run);
    }
    for (const e of events) queue(run.events, e);
    const now = first.type === 'PipelineStartEvent' || first.type === 'PipelineResumeEvent' || isTerminalEvent(events[events.length - 1] as FlowcastEvent);
    if (now) return this.#flush(runId, run);
    if (run.timer === null) {
      run.timer = setTimeout(() => void this.#flush(runId, run), this.#delayMs);
      run.timer.unref();
    }
    return undefined;
  }

  /** Writes every run's waiting events now; resolves once every write (also those in progress) ended. */
  async flushAll(): Promise<void> {
    const writes: Promise<void>[] = [];
    for (const [runId, run] of this.#runs) {
      writes.push(run.events.length > 0 ? this.#flush(runId, run) : (run.writing ?? Promise.resolve()));
    }
    await Promise.all(writes);
  }

  /** Runs with events waiting or being written (for tests and diagnostics). */
  get size(): number {
    return this.#runs.size;
  }

  #flush(runId: string, run: Pending): Promise<void> {
    if (run.timer !== null) {
      clearTimeout(run.timer);
      run.timer = null;
    }
    const events = run.events;
    run.events = [];
    const write = (): void | Promise<void> => (events.length === 0 ? undefined : this.#write(events));
    const p = (run.writing === null ? Promise.resolve().then(write) : run.writing.then(write)).then(
      () => undefined,
      (error: unknown) => this.#onError(error, runId),
    );
    run.writing = p;
    void p.then(() => {
      if (run.writing !== p) return;
      run.writing = null;
      if (run.events.length === 0 && run.timer === null) this.#runs.delete(runId);
    });
    return p;
  }
}

/** Puts `event` into `events` (ascending seqs) at its place; a seq already there is dropped. */
function queue(events: FlowcastEvent[], event: FlowcastEvent): void {
  let i = events.length;
  // Almost always the next seq: appended without a search.
  while (i > 0 && (events[i - 1] as FlowcastEvent).seq >= event.seq) {
    if ((events[i - 1] as FlowcastEvent).seq === event.seq) return;
    i--;
  }
  if (i === events.length) events.push(event);
  else events.splice(i, 0, event);
}
