/**
 * Resume: a FAILED or CANCELLED run continues as a new attempt of the same run (see
 * docs/pipelines.md, "Retry and resume"). The transition that reopens the run record,
 * and what the engine answers; the engine applies it with the run state's `reopen`.
 */
import { moveRun, moveStep } from './state-machine.js';
import { RunNotResumableError } from '../core/errors.js';
import { isoTime } from '../core/clock.js';
import type { RunRecord, Transition } from './run-state.js';
import { fill } from './run-progress.js';
import { markReady } from './step-outcomes.js';
import type { Dispatch } from './step-jobs.js';

/** What {@link resumeRun} did. */
export interface ResumeOutcome {
  /** `null` when the run was resumed; else its status, which refused the resume (`RUNNING` or `COMPLETED`). */
  refused: RunRecord['status'] | null;
  /** The run's attempt now (the new one when resumed). */
  attempt: number;
  /** Steps that completed before: kept, not run again. */
  kept: string[];
  /** Steps that run in the new attempt. */
  pending: string[];
  /** The jobs of the steps ready at once. */
  dispatches: Dispatch[];
}

/**
 * Resumes a FAILED or CANCELLED run as a new attempt of the same run: every step that
 * completed keeps its result and does not run again; every other step goes back to
 * PENDING, and those whose dependencies are all completed start now (their input is
 * built from the kept results, as if the run had never stopped). Emits a
 * `PipelineResumeEvent`, which continues the run's log after its terminal event.
 * A `RUNNING` or `COMPLETED` run is refused (`refused`), unchanged.
 */
export function resumeRun(rec: RunRecord, now: number): Transition<ResumeOutcome> {
  const previous = rec.status;
  if (previous !== 'FAILED' && previous !== 'CANCELLED') {
    return { value: { refused: previous, attempt: rec.attempt ?? 1, kept: [], pending: [], dispatches: [] }, events: [] };
  }
  const out: Transition<Dispatch[]> = { value: [], events: [] };
  const kept: string[] = [];
  const pending: string[] = [];
  for (const s of rec.plan.steps) {
    if (rec.steps[s.name]?.phase === 'COMPLETED') {
      kept.push(s.name);
      continue;
    }
    const before = rec.steps[s.name];
    if (before !== undefined) moveStep(before, 'reset', s.name);
    rec.steps[s.name] = { phase: 'PENDING', attempt: 0, started_at_ms: null, task_id: null, result: null, error: null, items: null };
    pending.push(s.name);
  }
  const attempt = (rec.attempt ?? 1) + 1;
  rec.attempt = attempt;
  rec.attempt_started_at_ms = now;
  moveRun(rec, 'resume');
  rec.ended_at_ms = null;
  rec.inflight = 0;
  rec.ready = [];
  rec.result = null;
  rec.error = null;
  out.events.push({
    type: 'PipelineResumeEvent',
    pipeline_id: rec.pipeline_id, run_id: rec.run_id, timestamp: isoTime(now),
    pipeline_type: rec.plan.pipeline_type,
    attempt,
    previous_status: previous,
    kept_steps: kept,
    pending_steps: pending,
  });
  for (const s of rec.plan.steps) {
    if (rec.steps[s.name]?.phase === 'PENDING' && s.depends_on.every((d) => rec.steps[d]?.phase === 'COMPLETED')) markReady(rec, s.name);
  }
  fill(rec, now, out);
  return { value: { refused: null, attempt, kept, pending, dispatches: out.value }, events: out.events };
}

/** The error of a resume refused because of the run's status. */
export function notResumable(runId: string, status: RunRecord['status']): RunNotResumableError {
  const why = status === 'RUNNING' ? 'it is still RUNNING (cancel it, or wait for its end)' : status === 'COMPLETED' ? 'it COMPLETED (retry starts a new run)' : `it is ${status}`;
  return new RunNotResumableError(`Run "${runId}" cannot be resumed: ${why}; only a FAILED or CANCELLED run can`, runId, status);
}

/** What {@link RunEngine.resume} answers: the run, its new attempt, and what it keeps and runs again. */
export interface ResumedRun {
  runId: string;
  pipelineId: string;
  /** The attempt that started (2 for the first resume). */
  attempt: number;
  /** Steps that completed before: their results are kept, they do not run again. */
  keptSteps: string[];
  /** Steps that run in this attempt. */
  pendingSteps: string[];
  /** The seq of the `PipelineResumeEvent` in the run's log: follow the run from `seq - 1` to see this attempt. */
  seq: number;
}
