/**
 * The run state machine: pure functions over a {@link RunRecord}, one for each thing that
 * happens to a run (it starts, a job starts, succeeds or fails, the run is cancelled or
 * times out). Each one changes the record and returns the events it causes plus the jobs
 * to send; a {@link RunStateStore} applies them atomically. Run status moves only along
 * `RUNNING → COMPLETED | FAILED | CANCELLED`; nothing happens to an ended run. How the
 * run then advances is in `run-progress.ts`, what a step's end does in `step-outcomes.ts`.
 */
import { isStaleJob, type Dispatch, type JobFailure } from './step-jobs.js';
import { randomUUID } from 'node:crypto';
import { runFailureText } from './state-machine.js';
import { ErrorCodes } from '../core/errors.js';
import { isoTime } from '../core/clock.js';
import type { JsonValue } from '../core/json.js';
import type { StepJob } from './broker.js';
import type { EventDraft } from '../events/types.js';
import { describeDag, describeSteps, retryDelay, type PipelinePlan } from './plan.js';
import type { RunRecord, StepState, Transition } from './run-state.js';
import { fill } from './run-progress.js';
import { completeStep, endRun, failStep, markReady, stepOf } from './step-outcomes.js';

export type { Dispatch, JobFailure } from './step-jobs.js';

// Event drafts spell out pipeline_id, run_id and timestamp rather than spreading a helper's
// object: a spread in the middle of a literal builds the draft the slow way, and every
// draft is serialised on the hot path.

/** A fresh record for a run of `plan`. */
export function newRunRecord(runId: string, plan: PipelinePlan, input: JsonValue, now: number): RunRecord {
  const steps: Record<string, StepState> = {};
  for (const s of plan.steps) {
    steps[s.name] = { phase: 'PENDING', attempt: 0, started_at_ms: null, task_id: null, result: null, error: null, items: null };
  }
  return {
    run_id: runId,
    pipeline_id: plan.pipeline_id,
    plan,
    input,
    status: 'RUNNING',
    started_at_ms: now,
    ended_at_ms: null,
    inflight: 0,
    ready: [],
    steps,
    result: null,
    error: null,
  };
}

/**
 * A run's `PipelineStartEvent` (without seq), as {@link beginRun} emits it at `now`. The
 * engine rebuilds it from a record with `now = rec.started_at_ms` for a process that
 * handles a run it did not start (see `EventRecorder.primeStart`).
 */
export function startEventDraft(rec: RunRecord, now: number): EventDraft {
  const start: EventDraft = {
    type: 'PipelineStartEvent',
    pipeline_id: rec.pipeline_id, run_id: rec.run_id, timestamp: isoTime(now),
    pipeline_type: rec.plan.pipeline_type,
    input: rec.input,
    steps: describeSteps(rec.plan),
  };
  if (rec.plan.pipeline_type === 'dataflow') start.dag = describeDag(rec.plan);
  return start;
}

/** Emits `PipelineStartEvent` and dispatches every step without dependencies. */
export function beginRun(rec: RunRecord, now: number): Transition<Dispatch[]> {
  const out: Transition<Dispatch[]> = { value: [], events: [] };
  out.events.push(startEventDraft(rec, now));
  for (const s of rec.plan.steps) {
    if (s.depends_on.length === 0) markReady(rec, s.name);
  }
  fill(rec, now, out);
  return out;
}

/**
 * A worker is about to run `job`. `value` is false when it must not (run ended, stale job).
 * `carrier`: the id of the broker job this call runs inside when that is not `job`'s own
 * (step chaining); recorded on the step so a redelivery of that job can retry the call.
 */
export function jobStarted(rec: RunRecord, job: StepJob, now: number, carrier?: string): Transition<boolean> {
  const out: Transition<boolean> = { value: false, events: [] };
  if (rec.status !== 'RUNNING' || isStaleJob(rec, job)) return out;
  const { step, st } = stepOf(rec, job.step);
  if (st.phase !== 'ACTIVE') return out;
  if (st.items === null) {
    if (job.attempt !== st.attempt) return out;
    st.started_at_ms = now;
    st.task_id = job.job_id;
    if (carrier !== undefined && carrier !== job.job_id) st.carrier = carrier;
    else delete st.carrier;
    out.events.push({
      type: 'StepStartEvent',
      pipeline_id: rec.pipeline_id, run_id: rec.run_id, timestamp: isoTime(now),
      step_name: step.name,
      step_index: step.index,
      task_id: job.job_id,
      attempt: job.attempt,
      task_name: job.task,
    });
  } else if (st.started_at_ms === null) {
    st.started_at_ms = now;
    st.task_id = job.job_id;
    st.attempt = 1;
    out.events.push({
      type: 'StepStartEvent',
      pipeline_id: rec.pipeline_id, run_id: rec.run_id, timestamp: isoTime(now),
      step_name: step.name,
      step_index: step.index,
      task_id: job.job_id,
      attempt: 1,
      task_name: step.kind === 'group' ? step.tasks.join(',') : job.task,
      items: st.items.total,
    });
  }
  out.value = true;
  return out;
}

/** `job` returned `result`. */
export function jobSucceeded(rec: RunRecord, job: StepJob, result: JsonValue, now: number): Transition<Dispatch[]> {
  const out: Transition<Dispatch[]> = { value: [], events: [] };
  if (isStaleJob(rec, job)) return out;
  rec.inflight = Math.max(0, rec.inflight - 1);
  if (rec.status !== 'RUNNING') return out;
  const { step, st } = stepOf(rec, job.step);
  if (st.items === null && st.task_id === job.job_id) delete st.carrier;
  if (st.phase !== 'ACTIVE') {
    fill(rec, now, out);
    return out;
  }
  const items = st.items;
  if (items === null) {
    completeStep(rec, step, st, result, now, out);
  } else if (job.item !== undefined && items.results[job.item] === null) {
    items.results[job.item] = result;
    items.done++;
    if (items.done === items.total) {
      const value = step.kind === 'filter' ? items.inputs.filter((_, i) => Boolean(items.results[i])) : items.results;
      completeStep(rec, step, st, value, now, out);
    } else {
      out.events.push({
        type: 'StepProgressEvent',
        pipeline_id: rec.pipeline_id, run_id: rec.run_id, timestamp: isoTime(now),
        step_name: step.name,
        step_index: step.index,
        task_id: st.task_id ?? job.job_id,
        progress: items.done / items.total,
        message: `${items.done}/${items.total} items`,
        attempt: st.attempt,
      });
    }
  }
  fill(rec, now, out);
  return out;
}

/** `job` failed. Retries when the step allows, else fails the step (and the run, per the failure policy). */
export function jobFailed(rec: RunRecord, job: StepJob, failure: JobFailure, now: number): Transition<Dispatch[]> {
  const out: Transition<Dispatch[]> = { value: [], events: [] };
  if (isStaleJob(rec, job)) return out;
  rec.inflight = Math.max(0, rec.inflight - 1);
  if (rec.status !== 'RUNNING') return out;
  const { step, st } = stepOf(rec, job.step);
  if (st.items === null && st.task_id === job.job_id) delete st.carrier;
  if (st.phase !== 'ACTIVE') {
    fill(rec, now, out);
    return out;
  }
  if (failure.retryable && job.attempt <= step.retries) {
    const attempt = job.attempt + 1;
    const delay = retryDelay(step, attempt);
    const retry: EventDraft = {
      type: 'StepRetryEvent',
      pipeline_id: rec.pipeline_id, run_id: rec.run_id, timestamp: isoTime(now),
      step_name: step.name,
      step_index: step.index,
      task_id: job.job_id,
      attempt,
      delay_ms: delay,
      error: failure.error,
    };
    if (job.item !== undefined) retry.item = job.item;
    out.events.push(retry);
    st.attempt = Math.max(st.attempt, attempt);
    rec.inflight++;
    out.value.push({ job: { ...job, job_id: randomUUID(), attempt }, delayMs: delay });
    return out;
  }
  const error = job.item === undefined ? failure.error : `item ${job.item}: ${failure.error}`;
  failStep(rec, step, st, error, now, job.attempt, out);
  fill(rec, now, out);
  return out;
}

/** Cancels a running run. `value` is false when it had already ended. */
export function cancelRun(rec: RunRecord, reason: string, now: number): Transition<boolean> {
  const out: Transition<Dispatch[]> = { value: [], events: [] };
  if (rec.status !== 'RUNNING') return { value: false, events: [] };
  endRun(rec, 'cancel', { kind: 'run_cancelled' }, now, out);
  rec.error = reason;
  out.events.push({
    type: 'PipelineCancelledEvent',
    pipeline_id: rec.pipeline_id, run_id: rec.run_id, timestamp: isoTime(now),
    pipeline_type: rec.plan.pipeline_type,
    status: 'CANCELLED',
    reason,
    duration_ms: now - rec.started_at_ms,
  });
  return { value: true, events: out.events };
}

/** The run's deadline passed. `value` is false when it had already ended. */
export function timeoutRun(rec: RunRecord, now: number): Transition<boolean> {
  const out: Transition<Dispatch[]> = { value: [], events: [] };
  if (rec.status !== 'RUNNING') return { value: false, events: [] };
  const limit = rec.plan.timeout_ms ?? now - (rec.attempt_started_at_ms ?? rec.started_at_ms);
  const message = runFailureText({ kind: 'timed_out', pipelineId: rec.pipeline_id, afterMs: limit });
  endRun(rec, 'fail', { kind: 'run_timed_out' }, now, out);
  rec.error = message;
  out.events.push({
    type: 'PipelineErrorEvent',
    pipeline_id: rec.pipeline_id, run_id: rec.run_id, timestamp: isoTime(now),
    pipeline_type: rec.plan.pipeline_type,
    status: 'FAILED',
    error: message,
    duration_ms: now - rec.started_at_ms,
  });
  return { value: true, events: out.events };
}

/** Error codes a retry cannot fix: the step fails at once. */
export const NON_RETRYABLE_CODES: ReadonlySet<string> = new Set([ErrorCodes.UNKNOWN_TASK, ErrorCodes.NOT_JSON, ErrorCodes.CANCELLED]);
