/**
 * The calls of tasks running in this process, and their run: what the engine aborts when a
 * run ends (cancelled, failed, timed out) while some of its steps still run here.
 */
import { CancelledError } from '../core/errors.js';
import type { CallControl } from '../core/execute.js';
import type { FlowcastEvent } from '../events/types.js';

/** The calls running in this process (at most the broker's concurrency), each with its run. */
export class LocalCalls {
  readonly #calls = new Map<CallControl, string>();

  /** Notes a call of run `runId` that starts running here. */
  track(runId: string, control: CallControl): void {
    this.#calls.set(control, runId);
  }

  /** Forgets a call that ended. */
  untrack(control: CallControl): void {
    this.#calls.delete(control);
  }

  /** Aborts the calls of run `runId` running here with `reason` (a function: made once, only when there is a call to abort). */
  abort(runId: string, reason: Error | (() => Error)): void {
    let error: Error | null = null;
    for (const [control, id] of this.#calls) {
      if (id !== runId) continue;
      this.#calls.delete(control);
      error ??= typeof reason === 'function' ? reason() : reason;
      control.abort(error);
    }
  }

  /** Aborts the calls of a run that just ended with the `terminal` event, with a `CancelledError` that says why. */
  abortEnded(runId: string, terminal: FlowcastEvent): void {
    // A completed run has no call left: it completes only once every job ended.
    if (this.#calls.size === 0 || terminal.type === 'PipelineCompleteEvent') return;
    this.abort(runId, () =>
      terminal.type === 'PipelineCancelledEvent'
        ? new CancelledError(`Run ${runId} was cancelled: ${terminal.reason}`)
        : new CancelledError(`Run ${runId} ended (${terminal.type}) while this step was running`),
    );
  }
}
