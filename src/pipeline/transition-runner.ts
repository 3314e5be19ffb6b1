/**
 * How the engine changes a run: a transition of its record applied atomically in the
 * broker's run state, its events handed on in the run's seq order (`SeqOrder`), its
 * concurrency slot settled, then the follow-up: the jobs the transition decided on are
 * sent, and when it ended the run, what this process still holds for the run is let go
 * (the delayed jobs it sent, the run's timeout job, the calls still running here).
 *
 * The path is written without async functions where it can be: with an in-process store
 * and broker every transition is synchronous, and each promise saved is time saved per step.
 */
import { FlowcastError, ErrorCodes, toError } from '../core/errors.js';
import { isTerminalEvent, type FlowcastEvent } from '../events/types.js';
import type { Broker, StepJob } from './broker.js';
import type { RunRecord, Transition } from './run-state.js';
import type { SeqOrder } from './seq-order.js';
import { SlotWatch } from './slot-watch.js';
import type { Dispatch } from './transitions.js';

/** A transition's outcome; `delivered` settles once its events are handed on (`undefined`: they were, synchronously). `null`: the run is unknown. */
export type Done<T> = { value: T; events: FlowcastEvent[]; delivered: Promise<void> | undefined } | null;

/** Continues with `fn` at once for a plain value, or after the promise. */
export function andThen<T, R>(value: T | Promise<T>, fn: (v: T) => Promise<R> | undefined): Promise<R | undefined> | undefined {
  return value instanceof Promise ? value.then(fn) : fn(value);
}

/** Applies transitions to runs and follows them up (see the module comment). */
export class TransitionRunner {
  /** The broker whose run state, transport and queue this runner uses. */
  readonly broker: Broker;
  /** The per-run order the events are handed on in. */
  readonly order: SeqOrder;
  readonly #onError: (error: Error, where: string) => void;
  readonly #onEnded: (runId: string, terminal: FlowcastEvent) => void;
  /** Delayed jobs (retries) this process sent and that were not delivered yet, per run: dropped when the run ends. */
  readonly #delayed = new Map<string, Set<string>>();

  /**
   * @param onError where a job the broker refused is reported
   * @param onEnded called when a transition ended a run, with its terminal event (before its jobs are removed)
   */
  constructor(broker: Broker, order: SeqOrder, onError: (error: Error, where: string) => void, onEnded: (runId: string, terminal: FlowcastEvent) => void) {
    this.broker = broker;
    this.order = order;
    this.#onError = onError;
    this.#onEnded = onEnded;
  }

  /** Reports a failure that must not stop the engine. */
  report(error: Error, where: string): void {
    this.#onError(error, where);
  }

  /** Applies a transition and hands its events on (in seq order, see {@link SeqOrder}); `null` for an unknown run. */
  apply<T>(runId: string, transition: (r: RunRecord) => Transition<T>): Done<T> | Promise<Done<T>> {
    const store = this.broker.runState;
    const seen = new SlotWatch();
    const fn = seen.wrap(transition);
    if (store.transitionSync !== undefined) {
      let done: { value: T; events: FlowcastEvent[] };
      try {
        done = store.transitionSync(runId, fn);
      } catch (error) {
        if (error instanceof FlowcastError && error.code === ErrorCodes.NOT_FOUND) return null;
        throw error;
      }
      seen.settle(this.broker, runId, this.#onError);
      return { value: done.value, events: done.events, delivered: this.order.now(runId, done.events) };
    }
    return this.order.run(runId, () => store.transition(runId, fn), (d) => d.events).then(
      ({ result, delivered }) => {
        seen.settle(this.broker, runId, this.#onError);
        return { value: result.value, events: result.events, delivered };
      },
      (error: unknown) => {
        if (error instanceof FlowcastError && error.code === ErrorCodes.NOT_FOUND) return null;
        throw error;
      },
    );
  }

  /** Notes that a step job was delivered: a delayed job this process sent is no longer pending. */
  delivered(job: StepJob): void {
    if (this.#delayed.size === 0) return;
    const ids = this.#delayed.get(job.run_id);
    if (ids === undefined || !ids.delete(job.job_id)) return;
    if (ids.size === 0) this.#delayed.delete(job.run_id);
  }

  /**
   * After a transition whose `events` are being handed on (`delivered`): sends the next
   * jobs, and cleans up when the run ended. `timer`: the id of the delayed `run_timeout`
   * job that may be pending for the run's attempt (`null` when its plan has no run
   * timeout: spares the broker a removal of a job that was never sent). Settles once the
   * events are handed on and the jobs sent.
   */
  followUp(runId: string, events: FlowcastEvent[], dispatches: Dispatch[], delivered: Promise<void> | undefined, timer: string | null): Promise<void> | undefined {
    let waits: Promise<void>[] | null = null;
    const broker = this.broker;
    for (const d of dispatches) {
      const options = d.delayMs > 0 ? { delayMs: d.delayMs } : undefined;
      if (options !== undefined) {
        const ids = this.#delayed.get(runId) ?? new Set<string>();
        ids.add(d.job.job_id);
        this.#delayed.set(runId, ids);
      }
      const where = `sending job for step "${d.job.step}" of run ${runId}`;
      if (broker.enqueueSync !== undefined) {
        try {
          broker.enqueueSync(d.job, options);
        } catch (error) {
          this.#onError(toError(error), where);
        }
      } else {
        (waits ??= []).push(broker.enqueue(d.job, options).catch((error: unknown) => this.#onError(toError(error), where)));
      }
    }
    const last = events[events.length - 1];
    if (last !== undefined && isTerminalEvent(last)) {
      this.#onEnded(runId, last);
      if (timer !== null) (waits ??= []).push(broker.removeDelayed(timer));
      // A pending retry of an ended run would only be dropped when delivered; until then
      // its timer would keep the process alive.
      const ids = this.#delayed.get(runId);
      if (ids !== undefined) {
        this.#delayed.delete(runId);
        for (const id of ids) (waits ??= []).push(broker.removeDelayed(id));
      }
    }
    if (waits === null) return delivered;
    if (delivered !== undefined) waits.push(delivered);
    return Promise.all(waits).then(() => undefined);
  }
}
