/**
 * The order in which a process hands a run's events on (tracking, hooks, subscribers):
 * the order of their seqs, also when the calls that gave them their seqs ran at once.
 *
 * With a remote run state and log (Redis), each transition and each loose append
 * (`ctx.log`, `ctx.progress`) is a call whose seqs are given where it runs, and the steps
 * of one run that a worker runs at the same time make such calls concurrently. Their
 * answers are then handled in an order that has nothing to do with their seqs (a
 * transition's answer goes through more promise hops than an append's), so a run's events
 * could be handed on out of seq order: the tracking write of a group `[…, 4, 3]` failed
 * ("seqs must increase"), and hooks saw seq 3 after seq 4.
 *
 * The rule that puts them back in order: a call that starts after another call's answer
 * came back runs after it wherever seqs are given, so it gets higher seqs. Only the calls
 * that were in flight when an answer came back may hold lower seqs than that answer. So
 * the events of an answer wait until every call that was in flight at that moment has
 * answered too, and the answers waiting are handed on lowest seq first. Nothing waits on
 * a call that starts later, so a run that keeps logging never holds its events back.
 */
import type { FlowcastEvent } from '../events/types.js';

/** An answer whose events wait for calls that may hold lower seqs. */
interface Held {
  events: FlowcastEvent[];
  /** The seq of its first event (an answer's events are consecutive). */
  first: number;
  /** The calls of the run that were in flight when this answer came back. */
  after: number[];
  resolve: (delivered: Promise<void> | undefined) => void;
}

/** What this process has going for one run. */
interface RunCalls {
  inFlight: Set<number>;
  /** Lowest first seq first. */
  held: Held[];
  /** Called once nothing is in flight or held. */
  idle: (() => void)[];
}

/** Hands the events given to it on in each run's seq order (see the module comment). */
export class SeqOrder {
  readonly #deliver: (events: FlowcastEvent[]) => Promise<void> | undefined;
  readonly #runs = new Map<string, RunCalls>();
  #nextId = 0;

  /** @param deliver hands a run's events on (called in seq order per run, never with an empty array) */
  constructor(deliver: (events: FlowcastEvent[]) => Promise<void> | undefined) {
    this.#deliver = deliver;
  }

  /**
   * Runs `call`, which gives events of `runId` their seqs (a transition, an append), and
   * hands the events `eventsOf` finds in its answer on in seq order. Resolves with the
   * answer and the promise of the events' delivery (`undefined` when it was synchronous).
   * A call that fails hands nothing on, and holds nothing back any longer.
   */
  run<R>(runId: string, call: () => Promise<R>, eventsOf: (result: R) => FlowcastEvent[]): Promise<{ result: R; delivered: Promise<void> | undefined }> {
    let run = this.#runs.get(runId);
    if (run === undefined) {
      run = { inFlight: new Set(), held: [], idle: [] };
      this.#runs.set(runId, run);
    }
    const id = this.#nextId++;
    run.inFlight.add(id);
    const calls = run;
    let answer: Promise<R>;
    try {
      answer = call();
    } catch (error) {
      answer = Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    return answer.then(
      (result) => ({ result, delivered: this.#answered(runId, calls, id, eventsOf(result)) }),
      (error: unknown) => {
        void this.#answered(runId, calls, id, []);
        throw error;
      },
    );
  }

  /**
   * Hands on events whose seqs were given synchronously (an in-process log or run
   * state): at once, unless calls of the run are in flight that may hold lower seqs.
   */
  now(runId: string, events: FlowcastEvent[]): Promise<void> | undefined {
    const run = this.#runs.get(runId);
    if (run === undefined) return events.length === 0 ? undefined : this.#deliver(events);
    return this.#hold(runId, run, events);
  }

  /** Resolves once nothing of the run is in flight or held back here (at once when nothing is). */
  settled(runId: string): Promise<void> | undefined {
    const run = this.#runs.get(runId);
    if (run === undefined) return undefined;
    return new Promise((resolve) => run.idle.push(resolve));
  }

  #answered(runId: string, run: RunCalls, id: number, events: FlowcastEvent[]): Promise<void> | undefined {
    run.inFlight.delete(id);
    return this.#hold(runId, run, events);
  }

  #hold(runId: string, run: RunCalls, events: FlowcastEvent[]): Promise<void> | undefined {
    let delivered: Promise<void> | undefined;
    if (events.length > 0) {
      if (run.inFlight.size === 0 && run.held.length === 0) delivered = this.#deliver(events);
      else {
        const first = (events[0] as FlowcastEvent).seq;
        let resolve!: (d: Promise<void> | undefined) => void;
        delivered = new Promise<void>((r) => (resolve = r));
        const held: Held = { events, first, after: [...run.inFlight], resolve };
        let i = run.held.length;
        while (i > 0 && (run.held[i - 1] as Held).first > first) i--;
        run.held.splice(i, 0, held);
      }
    }
    while (run.held.length > 0) {
      const head = run.held[0] as Held;
      if (head.after.some((id) => run.inFlight.has(id))) break;
      run.held.shift();
      head.resolve(this.#deliver(head.events));
    }
    if (run.inFlight.size === 0 && run.held.length === 0 && this.#runs.get(runId) === run) {
      this.#runs.delete(runId);
      for (const resolve of run.idle) resolve();
    }
    return delivered;
  }
}
