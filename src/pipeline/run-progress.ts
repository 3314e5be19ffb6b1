/**
 * How a run advances: ready steps start and map items are sent until `max_parallel` jobs
 * of the run are in flight, and once nothing is ready, running or pending any more the
 * run ends, COMPLETED with its result or FAILED naming the steps that failed.
 */
import { baseInput, makeJob, wrap, type Dispatch } from './step-jobs.js';
import { moveRun, moveStep, runFailureText } from './state-machine.js';
import { isoTime } from '../core/clock.js';
import type { JsonValue } from '../core/json.js';
import { sinkSteps, type PlanStep } from './plan.js';
import type { RunRecord, Transition } from './run-state.js';
import { completeStep, failStep, stepOf } from './step-outcomes.js';

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

/** Starts a ready step: sends its call, or sets up its items (map, filter, group). */
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

/** Ends the run once no step is pending, ready or running: COMPLETED with its result, or FAILED. */
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

/** The result of a completed run: its last step's (sequential), its one sink's, or an object of its sinks' results. */
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
