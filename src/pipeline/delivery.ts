/**
 * Event delivery: how the events of a run, once in its log with their seq, reach this
 * process's recorders (tracking), dispatchers (hooks) and live subscribers (the
 * transport's publish), in that order and in seq order per run.
 *
 * One path for every event: each recorder records it (a recorder that returns a promise
 * holds the next one back), then each dispatcher gets it, then it is published. The walk
 * goes on synchronously for as long as every part answers synchronously (an in-process
 * broker and storage: no promise made per event), and continues from the same point in a
 * `then` when one part answers with a promise. A part that fails is reported and the walk
 * goes on: one broken listener never stalls a run.
 */
import { toError } from '../core/errors.js';
import type { FlowcastEvent } from '../events/types.js';
import type { EventTransport } from '../transport/transport.js';

/** Something that records every event of a run, in seq order, before it is published (tracking). */
export interface EventRecorder {
  /** May return a promise: the next event of the run waits for it. */
  record(event: FlowcastEvent): void | Promise<void>;
  /**
   * Optional: records several events of one run at once, in seq order (the events of one
   * transition, e.g. a step's end and the next step's start), as `record` would one by one.
   */
  recordMany?(events: FlowcastEvent[]): void | Promise<void>;
  /**
   * Optional: this process is about to hand on events of a run it did not start (a
   * worker of a remote broker); `start` is the run's `PipelineStartEvent` rebuilt from
   * the run's record (seq 1, `event_id` empty). A recorder may start from it instead of
   * reading back what was recorded of the run; it is a hint, to check before relying on it.
   */
  primeStart?(start: FlowcastEvent): void;
}

/** Something that is handed every event and must not block (hooks). */
export interface EventDispatcher {
  dispatch(event: FlowcastEvent): void;
}

interface Binding {
  recorders: EventRecorder[];
  dispatchers: EventDispatcher[];
}

/** The recorders and dispatchers of every run of one pipeline in this process. */
interface Binding {
  recorders: EventRecorder[];
  dispatchers: EventDispatcher[];
}

/** See the module comment. One per run engine. */
export class EventDelivery {
  readonly #transport: EventTransport;
  readonly #onError: (error: Error, where: string) => void;
  readonly #bindings = new Map<string, Binding>();
  /** Per run: the delivery in progress (its events wait for the run's previous ones). */
  readonly #chains = new Map<string, Promise<void>>();

  constructor(transport: EventTransport, onError: (error: Error, where: string) => void) {
    this.#transport = transport;
    this.#onError = onError;
  }

  /** Attaches recorders and dispatchers to every run of `pipelineId` (each once). */
  bind(pipelineId: string, recorders: Iterable<EventRecorder>, dispatchers: Iterable<EventDispatcher>): void {
    let b = this.#bindings.get(pipelineId);
    if (b === undefined) {
      b = { recorders: [], dispatchers: [] };
      this.#bindings.set(pipelineId, b);
    }
    for (const r of recorders) if (!b.recorders.includes(r)) b.recorders.push(r);
    for (const d of dispatchers) if (!b.dispatchers.includes(d)) b.dispatchers.push(d);
  }

  /** The recorders bound to `pipelineId`. */
  recorders(pipelineId: string): readonly EventRecorder[] {
    return this.#bindings.get(pipelineId)?.recorders ?? [];
  }

  /** Resolves once every event of the run handed to {@link deliver} so far is delivered. */
  async settled(runId: string): Promise<void> {
    await this.#chains.get(runId);
  }

  /**
   * Hands events to tracking (awaited when it returns a promise), then hooks, then live
   * subscribers, in seq order per run within this process. Synchronous when every part
   * is (then it returns `undefined`).
   */
  deliver(pipelineId: string, runId: string, events: FlowcastEvent[]): Promise<void> | undefined {
    const prev = this.#chains.get(runId);
    if (events.length === 0) return prev;
    const b = this.#bindings.get(pipelineId);
    const p = prev === undefined ? this.#deliverAll(b, events) : prev.then(() => this.#deliverAll(b, events));
    if (p === undefined) return undefined;
    this.#chains.set(runId, p);
    void p.then(() => {
      if (this.#chains.get(runId) === p) this.#chains.delete(runId);
    });
    return p;
  }

  /**
   * Several events with recorders that take them at once (tracking's `recordMany`): each
   * recorder records them all first, in one go, then hooks and subscribers get them one
   * by one. Tracking is then ahead of what subscribers saw, never behind.
   */
  #deliverAll(b: Binding | undefined, events: FlowcastEvent[]): Promise<void> | undefined {
    if (b === undefined || events.length < 2 || b.recorders.length === 0 || !b.recorders.every((r) => r.recordMany !== undefined)) {
      return this.#deliverFrom(b, events, 0, 0);
    }
    const recorded = this.#recordMany(b, events, 0);
    if (recorded === undefined) return this.#deliverFrom(b, events, 0, b.recorders.length, true);
    return recorded.then(() => this.#deliverFrom(b, events, 0, b.recorders.length, true));
  }

  #recordMany(b: Binding, events: FlowcastEvent[], r: number): Promise<void> | undefined {
    const where = (): string => `tracking of ${events.length} events (run ${(events[0] as FlowcastEvent).run_id}, seq ${(events[0] as FlowcastEvent).seq}-)`;
    for (; r < b.recorders.length; r++) {
      let pending: void | Promise<void> = undefined;
      try {
        pending = (b.recorders[r] as EventRecorder).recordMany?.(events);
      } catch (error) {
        this.#onError(toError(error), where());
      }
      if (pending !== undefined) {
        const nr = r + 1;
        return pending.then(
          () => this.#recordMany(b, events, nr),
          (error: unknown) => {
            this.#onError(toError(error), where());
            return this.#recordMany(b, events, nr);
          },
        );
      }
    }
    return undefined;
  }

  /** `recorded`: the recorders already have every event (skip them for all, not only the first). */
  #deliverFrom(b: Binding | undefined, events: FlowcastEvent[], i: number, r: number, recorded = false): Promise<void> | undefined {
    for (; i < events.length; i++, r = recorded ? r : 0) {
      const event = events[i] as FlowcastEvent;
      if (b !== undefined) {
        for (; r < b.recorders.length; r++) {
          let pending: void | Promise<void> = undefined;
          try {
            pending = (b.recorders[r] as EventRecorder).record(event);
          } catch (error) {
            this.#onError(toError(error), `tracking of ${event.type} (run ${event.run_id}, seq ${event.seq})`);
          }
          if (pending !== undefined) {
            const [ni, nr] = [i, r + 1];
            return pending.then(
              () => this.#deliverFrom(b, events, ni, nr, recorded),
              (error: unknown) => {
                this.#onError(toError(error), `tracking of ${event.type} (run ${event.run_id}, seq ${event.seq})`);
                return this.#deliverFrom(b, events, ni, nr, recorded);
              },
            );
          }
        }
        for (const d of b.dispatchers) d.dispatch(event);
      }
      let published: void | Promise<void> = undefined;
      try {
        published = this.#transport.publish(event);
      } catch (error) {
        this.#onError(toError(error), `publishing ${event.type} (run ${event.run_id}, seq ${event.seq})`);
      }
      if (published !== undefined) {
        const ni = i + 1;
        const nr = recorded ? r : 0;
        return published.then(
          () => this.#deliverFrom(b, events, ni, nr, recorded),
          (error: unknown) => {
            this.#onError(toError(error), `publishing ${event.type} (run ${event.run_id}, seq ${event.seq})`);
            return this.#deliverFrom(b, events, ni, nr, recorded);
          },
        );
      }
    }
    return undefined;
  }
}
