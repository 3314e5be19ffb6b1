/**
 * What happens to a step when it ends, and to the steps that depend on it: a completed
 * step makes the dependents whose dependencies all completed ready; a failed step fails
 * the run (`fail_fast`) or has its dependents skipped; a run ended early (failed,
 * cancelled, timed out) skips every step that never ran. Each change moves along the
 * tables of `state-machine.ts` and pushes the event it causes to the transition's output.
 */
import { moveRun, moveStep, runFailureText, skipReasonText, type SkipReason } from './state-machine.js';
import { isoTime } from '../core/clock.js';
import type { JsonValue } from '../core/json.js';
import type { PlanStep } from './plan.js';
import type { RunRecord, StepState, Transition } from './run-state.js';
import type { Dispatch } from './step-jobs.js';

// Event drafts spell out pipeline_id, run_id and timestamp rather than spreading a helper's
// object: a spread in the middle of a literal builds the draft the slow way, and every
// draft is serialised on the hot path.

/** The plan step named `name` of the run and its state; throws when the run has no such step (a corrupt record). */
export function stepOf(rec: RunRecord, name: string): { step: PlanStep; st: StepState } {
  const step = rec.plan.steps.find((s) => s.name === name);
  const st = rec.steps[name];
  if (step === undefined || st === undefined) throw new Error(`flowcast: run ${rec.run_id} has no step "${name}"`);
  return { step, st };
}

/** Marks a PENDING step ready to start (internal: transitions and resume.ts). */
export function markReady(rec: RunRecord, name: string): void {
  const st = rec.steps[name];
  if (st === undefined || st.phase !== 'PENDING') return;
  moveStep(st, 'ready', name);
  rec.ready.push(name);
}

/** Completes a step with `result` and makes ready the dependents whose dependencies all completed. */
export function completeStep(rec: RunRecord, step: PlanStep, st: StepState, result: JsonValue, now: number, out: Transition<Dispatch[]>): void {
  moveStep(st, 'complete', step.name);
  st.result = result;
  out.events.push({
    type: 'StepCompleteEvent',
    pipeline_id: rec.pipeline_id, run_id: rec.run_id, timestamp: isoTime(now),
    step_name: step.name,
    step_index: step.index,
    task_id: st.task_id ?? '',
    result,
    duration_ms: now - (st.started_at_ms ?? now),
    attempt: st.attempt,
  });
  for (const other of rec.plan.steps) {
    if (!other.depends_on.includes(step.name)) continue;
    if (other.depends_on.every((d) => rec.steps[d]?.phase === 'COMPLETED')) markReady(rec, other.name);
  }
}

/** Skips a step that never ran, for reason `why` (a step that ran is left as it is). */
function skip(rec: RunRecord, name: string, why: SkipReason, now: number, out: Transition<Dispatch[]>): void {
  const { step, st } = stepOf(rec, name);
  // A step whose job was sent but never started (still queued on the broker) never ran either.
  const neverRan = st.phase === 'PENDING' || st.phase === 'READY' || (st.phase === 'ACTIVE' && st.started_at_ms === null);
  if (!neverRan) return;
  moveStep(st, 'skip', name);
  out.events.push({ type: 'StepSkipEvent', pipeline_id: rec.pipeline_id, run_id: rec.run_id, timestamp: isoTime(now), step_name: name, step_index: step.index, reason: skipReasonText(why) });
}

/** Ends the run: every step that never ran is skipped, running ones are cancelled. */
export function endRun(
  rec: RunRecord,
  move: 'fail' | 'cancel',
  why: SkipReason,
  now: number,
  out: Transition<Dispatch[]>,
): void {
  rec.ready = [];
  for (const s of rec.plan.steps) skip(rec, s.name, why, now, out);
  for (const [name, st] of Object.entries(rec.steps)) if (st.phase === 'ACTIVE') moveStep(st, 'stop', name);
  moveRun(rec, move);
  rec.ended_at_ms = now;
}

/** Fails a step with `error`; the run fails with it under `fail_fast`, else the step's dependents are skipped. */
export function failStep(
  rec: RunRecord,
  step: PlanStep,
  st: StepState,
  error: string,
  now: number,
  attempt: number,
  out: Transition<Dispatch[]>,
): void {
  moveStep(st, 'fail', step.name);
  st.error = error;
  out.events.push({
    type: 'StepErrorEvent',
    pipeline_id: rec.pipeline_id, run_id: rec.run_id, timestamp: isoTime(now),
    step_name: step.name,
    step_index: step.index,
    task_id: st.task_id ?? '',
    error,
    duration_ms: st.started_at_ms === null ? 0 : now - st.started_at_ms,
    attempt,
  });
  if (rec.plan.failure_policy === 'fail_fast') {
    const message = runFailureText({ kind: 'step_failed', step: step.name, error });
    endRun(rec, 'fail', { kind: 'run_failed_at', step: step.name }, now, out);
    rec.error = message;
    out.events.push({
      type: 'PipelineErrorEvent',
      pipeline_id: rec.pipeline_id, run_id: rec.run_id, timestamp: isoTime(now),
      pipeline_type: rec.plan.pipeline_type,
      status: 'FAILED',
      error: message,
      duration_ms: now - rec.started_at_ms,
      step_name: step.name,
    });
    return;
  }
  skipDependents(rec, step.name, now, out);
}

/** Skips, transitively, the steps that depend on the failed step `failed`. */
function skipDependents(rec: RunRecord, failed: string, now: number, out: Transition<Dispatch[]>): void {
  const queue = [failed];
  while (queue.length > 0) {
    const name = queue.shift() as string;
    const why: SkipReason = rec.steps[name]?.phase === 'FAILED' ? { kind: 'dependency_failed', step: name } : { kind: 'dependency_skipped', step: name };
    for (const other of rec.plan.steps) {
      if (!other.depends_on.includes(name)) continue;
      const before = rec.steps[other.name]?.phase;
      skip(rec, other.name, why, now, out);
      if (before !== rec.steps[other.name]?.phase) queue.push(other.name);
    }
  }
}
