/**
 * Waiting for a run's end from any process: the run's live terminal event, or its stored
 * summary when it ended before the wait began. Resolves with the result, rejects with the
 * run's failure or cancellation (or `WAIT_TIMEOUT`, `NOT_FOUND`).
 */
import { CancelledError, ErrorCodes, FlowcastError, toError } from '../core/errors.js';
import type { JsonValue } from '../core/json.js';
import type { Broker } from './broker.js';
import type { RunSummary } from './run-state.js';
import { queuedRun } from './run-queue.js';

/** Waits for the end of `runId` (see the module comment); `flushed` lets this process hand its events on first. */
export function waitForRun(broker: Broker, flushed: (runId: string) => Promise<void>, runId: string, timeoutMs?: number): Promise<JsonValue> {
  return new Promise<JsonValue>((resolve, reject) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      off();
      if (timer !== undefined) clearTimeout(timer);
      fn();
    };
    const off = broker.transport.subscribe({ runId }, (e) => {
      if (e.type === 'PipelineCompleteEvent') finish(() => resolve(e.result));
      else if (e.type === 'PipelineErrorEvent') finish(() => reject(runFailed(runId, e.pipeline_id, e.error)));
      else if (e.type === 'PipelineCancelledEvent') finish(() => reject(runCancelled(runId, e.pipeline_id, e.reason)));
    });
    if (timeoutMs !== undefined) {
      timer = setTimeout(
        () => finish(() => reject(new FlowcastError(ErrorCodes.WAIT_TIMEOUT, `Run ${runId} did not end within ${timeoutMs}ms`))),
        timeoutMs,
      );
    }
    // Read once the subscription is active: an end published before is in the summary, one after reaches the listener.
    const active = broker.transport.subscribed?.() ?? Promise.resolve();
    active.then(() => summaryOrQueued(broker, runId)).then(
      async (summary) => {
        // Queued (concurrency.onLimit "queue"): its events come once it starts.
        if (summary === 'QUEUED') return;
        if (summary === null) {
          finish(() => reject(new FlowcastError(ErrorCodes.NOT_FOUND, `Unknown run "${runId}"`)));
          return;
        }
        if (summary.status === 'RUNNING') return;
        // Ended already: let this process finish handing its events on first.
        await flushed(runId);
        finish(() => settleFromSummary(summary, resolve, reject));
      },
      (error: unknown) => finish(() => reject(toError(error))),
    );
  });
}

/** The run's summary; `"QUEUED"` while it waits in a queue (its run does not exist yet). */
async function summaryOrQueued(broker: Broker, runId: string): Promise<RunSummary | 'QUEUED' | null> {
  const summary = await broker.runState.getSummary(runId);
  if (summary !== null || broker.slots?.queue === undefined) return summary;
  if ((await queuedRun(broker, runId)) !== null) return 'QUEUED';
  // It may have started between the two reads.
  return broker.runState.getSummary(runId);
}

function runFailed(runId: string, pipelineId: string, error: string): FlowcastError {
  return new FlowcastError(ErrorCodes.PIPELINE_FAILED, `Run ${runId} of pipeline "${pipelineId}" failed: ${error}`);
}

function runCancelled(runId: string, pipelineId: string, reason: string): CancelledError {
  return new CancelledError(`Run ${runId} of pipeline "${pipelineId}" was cancelled: ${reason}`);
}

function settleFromSummary(s: RunSummary, resolve: (v: JsonValue) => void, reject: (e: Error) => void): void {
  if (s.status === 'COMPLETED') resolve(s.result);
  else if (s.status === 'CANCELLED') reject(runCancelled(s.run_id, s.pipeline_id, s.error ?? ''));
  else reject(runFailed(s.run_id, s.pipeline_id, s.error ?? 'unknown error'));
}
