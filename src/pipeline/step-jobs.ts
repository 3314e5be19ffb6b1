/**
 * The broker jobs of a run's steps: what input a step gets (its predecessors' results, the
 * run's input, or its fixed args), the job that carries one call, and which jobs belong to
 * an earlier attempt of a resumed run.
 */
import { randomUUID } from 'node:crypto';
import type { JsonValue } from '../core/json.js';
import type { StepJob } from './broker.js';
import type { PlanStep } from './plan.js';
import type { RunRecord } from './run-state.js';

/** A step's input as its task takes it: bare, or as the named parameter beside the step's fixed args. */
export function wrap(step: PlanStep, value: JsonValue): JsonValue {
  if (step.param_name === undefined) return value;
  return { ...(step.args ?? {}), [step.param_name]: value };
}

/** The input a step receives before wrapping (see docs/pipelines.md). */
export function baseInput(rec: RunRecord, step: PlanStep): JsonValue {
  if (step.kind === 'after') return step.args ?? null;
  if (step.depends_on.length === 0) return rec.input;
  if (rec.plan.pipeline_type === 'sequential') {
    return rec.steps[step.depends_on[0] as string]?.result ?? null;
  }
  const obj: { [key: string]: JsonValue } = {};
  for (const dep of step.depends_on) obj[dep] = rec.steps[dep]?.result ?? null;
  return obj;
}

/** The broker job of one call of a step (an attempt; one item of a map step). */
export function makeJob(rec: RunRecord, step: PlanStep, task: string, input: JsonValue, attempt: number, item?: number): StepJob {
  const job: StepJob = {
    kind: 'step',
    job_id: randomUUID(),
    run_id: rec.run_id,
    pipeline_id: rec.pipeline_id,
    step: step.name,
    step_index: step.index,
    task,
    attempt,
    input,
  };
  if (item !== undefined) job.item = item;
  if (step.timeout_ms !== undefined) job.timeout_ms = step.timeout_ms;
  if (rec.trace !== undefined) job.trace = rec.trace;
  if (rec.attempt !== undefined) job.run_attempt = rec.attempt;
  return job;
}

/** `true` for a job of an earlier attempt of the run (sent before it was resumed): it must change nothing. */
export function isStaleJob(rec: RunRecord, job: StepJob): boolean {
  return (job.run_attempt ?? 1) !== (rec.attempt ?? 1);
}

/**
 * The call that runs inside broker job `carrierId` without being that job (step
 * chaining): the started, not ended, call of a step whose `carrier` is `carrierId`,
 * rebuilt as the job it runs (same job id, attempt and input), or `null`.
 */
export function carriedJob(rec: RunRecord, carrierId: string): StepJob | null {
  if (rec.status !== 'RUNNING') return null;
  for (const step of rec.plan.steps) {
    const st = rec.steps[step.name];
    if (st === undefined || st.carrier !== carrierId || st.phase !== 'ACTIVE' || st.items !== null || st.task_id === null) continue;
    const job = makeJob(rec, step, step.tasks[0] as string, wrap(step, baseInput(rec, step)), st.attempt);
    job.job_id = st.task_id;
    return job;
  }
  return null;
}

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
