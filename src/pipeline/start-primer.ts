/**
 * Priming recorders with a run's start. A worker that runs a step of a run it did not
 * start has no `PipelineStartEvent` of it: recorders that want one (`EventRecorder.primeStart`)
 * are given a start rebuilt from the run's record, once per run, before its step events.
 */
import { toError } from '../core/errors.js';
import { EVENT_SCHEMA_VERSION, type EventDraft, type FlowcastEvent } from '../events/types.js';
import type { Broker } from './broker.js';
import type { EventDelivery } from './delivery.js';

/** Runs remembered as primed (bounded, oldest out first). */
const PRIMED_RUNS = 10_000;

/** Remembers which runs this process did not start had their rebuilt start given to their recorders. */
export class StartPrimer {
  readonly #broker: Broker;
  readonly #delivery: EventDelivery;
  readonly #onError: (error: Error, where: string) => void;
  readonly #primed = new Set<string>();

  /** @param onError where a recorder that throws is reported */
  constructor(broker: Broker, delivery: EventDelivery, onError: (error: Error, where: string) => void) {
    this.#broker = broker;
    this.#delivery = delivery;
    this.#onError = onError;
  }

  /** `true` when recorders of the pipeline take a rebuilt start event and this process has not given them one for the run. */
  wants(pipelineId: string, runId: string): boolean {
    if (this.#broker.enqueueSync !== undefined || this.#primed.has(runId)) return false;
    return this.#delivery.recorders(pipelineId).some((r) => r.primeStart !== undefined);
  }

  /** Gives the recorders of the pipeline the run's start rebuilt from `draft` (seq 1). */
  prime(pipelineId: string, runId: string, draft: EventDraft): void {
    this.#primed.add(runId);
    if (this.#primed.size > PRIMED_RUNS) this.#primed.delete(this.#primed.values().next().value as string);
    const start = { ...draft, v: EVENT_SCHEMA_VERSION, event_id: '', seq: 1 } as FlowcastEvent;
    for (const r of this.#delivery.recorders(pipelineId)) {
      try {
        r.primeStart?.(start);
      } catch (error) {
        this.#onError(toError(error), `tracking of the start of run ${runId}`);
      }
    }
  }

  /** Forgets a run that ended. */
  forget(runId: string): void {
    this.#primed.delete(runId);
  }
}
