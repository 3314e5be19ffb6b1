/**
 * A running call's `ctx.log()` and `ctx.progress()`, turned into `StepLogEvent` and
 * `StepProgressEvent` of its run, in the order the call made them.
 */
import { isoTime } from '../core/clock.js';
import type { CallSink } from '../core/execute.js';
import type { EventDraft, FlowcastEvent } from '../events/types.js';
import type { StepJob } from './broker.js';

/** What a {@link StepSink} needs of the run engine. */
export interface SinkHost {
  /** Appends an event outside a transition and hands it on (see `RunEngine.appendLoose`). */
  appendLoose(draft: EventDraft): Promise<void> | undefined;
  /** `true` when the run's log takes appends synchronously (an in-process log). */
  readonly appendsSync: boolean;
  /** Reports a failure that must not stop the call. */
  reportError(error: unknown, where: string): void;
}

/** Turns a call's `ctx.log()` / `ctx.progress()` into events, in order. */
export class StepSink implements CallSink {
  /** Tail of the events this call emitted; `null` until it emits one. */
  pending: Promise<void> | null = null;
  readonly #engine: SinkHost;
  readonly #job: StepJob;

  constructor(engine: SinkHost, job: StepJob) {
    this.#engine = engine;
    this.#job = job;
  }

  #fields(): Pick<FlowcastEvent & { type: 'StepLogEvent' }, 'pipeline_id' | 'run_id' | 'step_name' | 'step_index' | 'task_id' | 'attempt' | 'timestamp'> {
    const j = this.#job;
    return {
      pipeline_id: j.pipeline_id,
      run_id: j.run_id,
      step_name: j.step,
      step_index: j.step_index,
      task_id: j.job_id,
      attempt: j.attempt,
      timestamp: isoTime(),
    };
  }

  #emit(draft: EventDraft): void {
    const report = (error: unknown): void => this.#engine.reportError(error, `log event of run ${this.#job.run_id}`);
    if (this.#engine.appendsSync) {
      // The event takes its seq now: appended later, it would land after events that
      // happened after it, and listeners would get the run's events out of seq order.
      let delivered: Promise<void> | undefined;
      try {
        delivered = this.#engine.appendLoose(draft);
      } catch (error) {
        report(error);
        return;
      }
      if (delivered !== undefined) this.pending = Promise.all([this.pending, delivered]).then(() => undefined, report);
      return;
    }
    this.pending = (this.pending ?? Promise.resolve()).then(() => this.#engine.appendLoose(draft)).catch(report);
  }

  log(lines: string[]): void {
    const draft: EventDraft = { type: 'StepLogEvent', ...this.#fields(), lines };
    if (this.#job.item !== undefined) draft.item = this.#job.item;
    this.#emit(draft);
  }

  progress(fraction: number, message: string | undefined): void {
    const draft: EventDraft = { type: 'StepProgressEvent', ...this.#fields(), progress: fraction };
    if (message !== undefined) draft.message = message;
    this.#emit(draft);
  }
}
