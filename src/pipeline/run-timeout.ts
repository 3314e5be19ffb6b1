/**
 * A run's deadline (`timeout_ms` of its plan): a delayed `run_timeout` job sent when an
 * attempt of the run begins, one per attempt (a resumed run's deadline counts from its
 * resume), removed when the run ends first, and the transition it applies when it fires.
 */
import type { ControlJob } from './broker.js';
import type { RunRecord, Transition } from './run-state.js';
import { timeoutRun } from './transitions.js';
import { andThen, type TransitionRunner } from './transition-runner.js';

/** The id of the `run_timeout` job of the run's `attempt` (one per attempt). */
export function timeoutJobId(runId: string, attempt = 1): string {
  return attempt === 1 ? `run-timeout:${runId}` : `run-timeout:${runId}:${attempt}`;
}

/** The id of the run's pending `run_timeout` job (sent when its attempt began), or `null` when its plan has no run timeout. */
export function timerOf(r: RunRecord): string | null {
  return r.plan.timeout_ms === undefined ? null : timeoutJobId(r.run_id, r.attempt);
}

/** Sends the delayed `run_timeout` job `jobId` of run `runId`, due in `delayMs`. */
export function sendRunTimeout(runner: TransitionRunner, jobId: string, runId: string, delayMs: number): Promise<void> {
  const job: ControlJob = { kind: 'run_timeout', job_id: jobId, run_id: runId };
  return runner.broker.enqueue(job, { delayMs });
}

/**
 * Processes a `run_timeout` job: ends the run as timed out when the job is the deadline of
 * the run's current attempt and the run is still running, else does nothing.
 */
export function processRunTimeout(runner: TransitionRunner, job: ControlJob): Promise<void> | undefined {
  // The deadline of an earlier attempt (a resumed run) is no longer the run's.
  const transition = (r: RunRecord): Transition<boolean> => (timerOf(r) === job.job_id ? timeoutRun(r, Date.now()) : { value: false, events: [] });
  return andThen(runner.apply(job.run_id, transition), (done) => {
    if (done === null) return undefined;
    if (!done.value || done.events.length === 0) return done.delivered;
    return runner.followUp(job.run_id, done.events, [], done.delivered, job.job_id);
  });
}
