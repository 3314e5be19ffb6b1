/**
 * The run state machine: pure functions over a {@link RunRecord}. Each one changes the
 * record and returns the events it causes plus the jobs to send; a
 * {@link RunStateStore} applies them atomically. Run status moves only along
 * `RUNNING → COMPLETED | FAILED | CANCELLED`; nothing happens to an ended run.
 */
import { baseInput, isStaleJob, makeJob, wrap } from './step-jobs.js';
import { randomUUID } from 'node:crypto';
import { moveRun, moveStep, runFailureText, skipReasonText, type SkipReason } from './state-machine.js';
import { ErrorCodes } from '../core/errors.js';
import { isoTime } from '../core/clock.js';
import type { JsonValue } from '../core/json.js';
import type { StepJob } from './broker.js';
import type { EventDraft } from '../events/types.js';
import { describeDag, describeSteps, retryDelay, sinkSteps, type PipelinePlan, type PlanStep } from './plan.js';
import type { RunRecord, StepState, Transition } from './run-state.js';

/** A job to send, possibly after a delay. */
export interface Dispatch {
  job: StepJob;
  delayMs: number;
}

/** How a failed job failed. */
export interface JobFailure {
  /** `"Name: message"` */
  error: string;
  /** `false` for failures a retry cannot fix (unknown task, non-JSON result). */
  retryable: boolean;
  code?: string;
}

// Event drafts spell out pipeline_id, run_id and timestamp rather than spreading a helper's
// object: a spread in the middle of a literal builds the draft the slow way, and every
// draft is serialised on the hot path.

function stepOf(rec: RunRecord, name: string): { step: PlanStep; st: StepState } {
  const step = rec.plan.steps.find((s) => s.name === name);
  const st = rec.steps[name];
  if (step === undefined || st === undefined) throw new Error(`flowcast: run ${rec.run_id} has no step "${name}"`);
  return { step, st };
}

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

/** Marks a PENDING step ready to start (internal: transitions and resume.ts). */
export function markReady(rec: RunRecord, name: string): void {
  const st = rec.steps[name];
  if (st === undefined || st.phase !== 'PENDING') return;
  moveStep(st, 'ready', name);
  rec.ready.push(name);
}

/** Starts ready work until `max_parallel` jobs of the run are in flight, then checks whether the run ended (internal: transitions and resume.ts). */
export function fill(rec: RunRecord, now: number, out: Transition<Dispatch[]>): void {
  const max = rec.plan.max_parallel ?? Infinity;
  for (;;) {
    if (rec.status !== 'RUNNING') return;
    let progressed = false;
    for (const step of rec.plan.steps) {
      const st = rec.steps[step.name];
      const items = st?.items;
      if (st?.phase !== 'ACTIVE' || !items) continue;
      while (rec.inflight < max && items.next < items.total) {
        const i = items.next++;
        const task = step.kind === 'group' ? (step.tasks[i] as string) : (step.tasks[0] as string);
        const input = step.kind === 'group' ? wrap(step, items.inputs[0] ?? null) : wrap(step, items.inputs[i] ?? null);
        rec.inflight++;
        out.value.push({ job: makeJob(rec, step, task, input, 1, i), delayMs: 0 });
        progressed = true;
      }
    }
    while (rec.inflight < max && rec.ready.length > 0) {
      const name = rec.ready.shift() as string;
      activate(rec, name, now, out);
      progressed = true;
      if (rec.status !== 'RUNNING') return;
    }
    if (!progressed) break;
  }
  maybeFinish(rec, now, out);
}

function activate(rec: RunRecord, name: string, now: number, out: Transition<Dispatch[]>): void {
  const { step, st } = stepOf(rec, name);
  const input = baseInput(rec, step);
  moveStep(st, 'activate', name);
  if (step.kind === 'call' || step.kind === 'after') {
    st.attempt = 1;
    rec.inflight++;
    out.value.push({ job: makeJob(rec, step, step.tasks[0] as string, wrap(step, input), 1), delayMs: 0 });
    return;
  }
  if (step.kind === 'group') {
    st.items = { total: step.tasks.length, next: 0, done: 0, inputs: [input], results: step.tasks.map(() => null) };
    return;
  }
  if (!Array.isArray(input)) {
    const got = input === null ? 'null' : typeof input;
    failStep(rec, step, st, `NotAnArrayError: ${step.kind} step "${name}" needs an array input, received ${got}`, now, 0, out);
    return;
  }
  if (input.length === 0) {
    // Nothing to do: the step starts and completes at once, truthfully with no items.
    st.started_at_ms = now;
    st.attempt = 1;
    out.events.push({ type: 'StepStartEvent', pipeline_id: rec.pipeline_id, run_id: rec.run_id, timestamp: isoTime(now), step_name: name, step_index: step.index, task_id: '', attempt: 1, task_name: step.tasks[0] as string, items: 0 });
    completeStep(rec, step, st, [], now, out);
    return;
  }
  st.items = { total: input.length, next: 0, done: 0, inputs: input, results: input.map(() => null) };
}

function completeStep(rec: RunRecord, step: PlanStep, st: StepState, result: JsonValue, now: number, out: Transition<Dispatch[]>): void {
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

function skip(rec: RunRecord, name: string, why: SkipReason, now: number, out: Transition<Dispatch[]>): void {
  const { step, st } = stepOf(rec, name);
  // A step whose job was sent but never started (still queued on the broker) never ran either.
  const neverRan = st.phase === 'PENDING' || st.phase === 'READY' || (st.phase === 'ACTIVE' && st.started_at_ms === null);
  if (!neverRan) return;
  moveStep(st, 'skip', name);
  out.events.push({ type: 'StepSkipEvent', pipeline_id: rec.pipeline_id, run_id: rec.run_id, timestamp: isoTime(now), step_name: name, step_index: step.index, reason: skipReasonText(why) });
}

/** Ends the run: every step that never ran is skipped, running ones are cancelled. */
function endRun(
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

function failStep(
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

function maybeFinish(rec: RunRecord, now: number, out: Transition<Dispatch[]>): void {
  if (rec.status !== 'RUNNING' || rec.inflight > 0 || rec.ready.length > 0) return;
  const failed: string[] = [];
  for (const s of rec.plan.steps) {
    const phase = rec.steps[s.name]?.phase;
    if (phase === 'PENDING' || phase === 'READY' || phase === 'ACTIVE') return;
    if (phase === 'FAILED') failed.push(s.name);
  }
  moveRun(rec, failed.length > 0 ? 'fail' : 'complete');
  rec.ended_at_ms = now;
  const duration = now - rec.started_at_ms;
  if (failed.length > 0) {
    rec.error = runFailureText({ kind: 'steps_failed', steps: failed.map((n) => ({ step: n, error: rec.steps[n]?.error ?? '' })) });
    out.events.push({
      type: 'PipelineErrorEvent',
      pipeline_id: rec.pipeline_id, run_id: rec.run_id, timestamp: isoTime(now),
      pipeline_type: rec.plan.pipeline_type,
      status: 'FAILED',
      error: rec.error,
      duration_ms: duration,
      step_name: failed[0] as string,
    });
    return;
  }
  rec.result = runResult(rec);
  out.events.push({
    type: 'PipelineCompleteEvent',
    pipeline_id: rec.pipeline_id, run_id: rec.run_id, timestamp: isoTime(now),
    pipeline_type: rec.plan.pipeline_type,
    status: 'COMPLETED',
    duration_ms: duration,
    result: rec.result,
  });
}

function runResult(rec: RunRecord): JsonValue {
  if (rec.plan.pipeline_type === 'sequential') {
    const last = rec.plan.steps[rec.plan.steps.length - 1];
    return last === undefined ? null : (rec.steps[last.name]?.result ?? null);
  }
  const sinks = sinkSteps(rec.plan);
  // No step at all: nothing produced a result.
  if (sinks.length === 0) return null;
  if (sinks.length === 1) return rec.steps[(sinks[0] as PlanStep).name]?.result ?? null;
  const obj: { [key: string]: JsonValue } = {};
  for (const s of sinks) obj[s.name] = rec.steps[s.name]?.result ?? null;
  return obj;
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
