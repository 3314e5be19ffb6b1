/**
 * How flowcast jobs map onto BullMQ jobs, and what happens when BullMQ hands a step job
 * out a second time because the worker that ran it died (stalled-job recovery).
 */
import { UnrecoverableError, type JobsOptions } from 'bullmq';
import { isoTime } from '../core/clock.js';
import { InvalidArgumentError } from '../core/errors.js';
import type { BrokerJob, StepJob, StepJobFailure } from '../pipeline/broker.js';
import type { ResolvedBrokerOptions } from './bullmq-options.js';
import type { EventDraft } from '../events/types.js';
import type { RunRecord, Transition } from '../pipeline/run-state.js';
import { carriedJob, isStaleJob } from '../pipeline/step-jobs.js';
import type { RedisRunState } from './run-state.js';

/**
 * BullMQ job id of a flowcast job id. BullMQ refuses `:` in custom ids (and plain
 * integers), so `%` and `:` are escaped and a numeric id gets a `j` in front: the mapping
 * stays one-to-one.
 */
export function bullmqJobId(jobId: string): string {
  const escaped = jobId.replaceAll('%', '%25').replaceAll(':', '%3A');
  return /^-?\d+$/.test(escaped) ? `j${escaped}` : escaped;
}

/** Backoff type BullMQ calls back for task-job retries (the task's own delay and backoff). */
export const TASK_BACKOFF = 'flowcast-task';

/**
 * The BullMQ name of a flowcast job, for people reading the queues (bull-board):
 * `<pipeline>:<step>` for a step, `task:<task>` for a standalone call, `run-timeout` for a
 * run's deadline.
 */
export function jobName(job: BrokerJob): string {
  if (job.kind === 'step') return `${job.pipeline_id}:${job.step}`;
  if (job.kind === 'task') return `task:${job.task}`;
  return 'run-timeout';
}

/**
 * BullMQ options of a flowcast job.
 * - `step`: the engine retries steps itself; BullMQ's 3 attempts cover errors outside the
 *   task (a worker that could not reach Redis while finishing the step). Finished ones
 *   are kept by `keepJobs` (a failed call fails its job, see `StepFailedError`).
 * - `task` (standalone call): BullMQ's attempts are the task's retries, with its backoff;
 *   the outcome is kept (`keepResults` jobs) for `waitResult()`.
 * - `run_timeout`: once; kept by `keepJobs`.
 */
export function jobOptions(job: BrokerJob, delayMs: number, taskRetries: number, keepResults: number, keepJobs: ResolvedBrokerOptions['keepJobs']): JobsOptions {
  const base: JobsOptions = { jobId: bullmqJobId(job.job_id), ...(delayMs > 0 && { delay: Math.ceil(delayMs) }) };
  const kept = { removeOnComplete: { ...keepJobs.completed }, removeOnFail: { ...keepJobs.failed } };
  if (job.kind === 'run_timeout') return { ...base, ...kept };
  if (job.kind === 'step') return { ...base, attempts: 3, backoff: { type: 'fixed', delay: 1000 }, ...kept };
  return { ...base, attempts: taskRetries + 1, backoff: { type: TASK_BACKOFF }, removeOnComplete: { count: keepResults }, removeOnFail: { count: keepResults } };
}

/** Field of a step job's BullMQ data that carries the sender's run-state handoff (see `RedisRunState.handoff`). */
const HANDOFF = 'state_handoff';

/**
 * The BullMQ data of a job: a step job carries what `runState` (the broker's own, when it
 * is a `RedisRunState`) last wrote of its run, so the worker's first transition needs no read.
 */
export function jobData(job: BrokerJob, runState: RedisRunState | null): BrokerJob {
  const handoff = job.kind === 'step' && runState !== null ? runState.handoff(job.run_id) : null;
  return handoff === null ? job : ({ ...job, [HANDOFF]: handoff } as unknown as BrokerJob);
}

/** The step job without the run-state handoff it may carry, which primes `runState` (when there is one). */
export function takeHandoff(data: StepJob, runState: RedisRunState | null): StepJob {
  const h = (data as unknown as Record<string, unknown>)[HANDOFF];
  if (h === undefined) return data;
  if (runState !== null) runState.prime(data.run_id, h);
  const step = { ...data };
  delete (step as unknown as Record<string, unknown>)[HANDOFF];
  return step;
}

/**
 * Thrown by a worker for a step job whose (last) call failed, so that BullMQ keeps the job
 * in its failed set with the task's error as its reason. Unrecoverable: BullMQ does not
 * run the job again; flowcast retries the step by its own policy, as a new job.
 */
export class StepFailedError extends UnrecoverableError {
  constructor(job: StepJob, failure: StepJobFailure) {
    const chained = failure.step !== job.step ? `step "${failure.step}" (attempt ${failure.attempt}, run in this job after "${job.step}"): ` : '';
    super(`${chained}${failure.error}`);
    this.name = 'StepFailedError';
    // The failure happened in the task, not here: no frames of the broker in the job's stacktrace.
    this.stack = `${this.name}: ${this.message}`;
  }
}

/** `true` for what the run engine's processor resolves with when a step job's call failed. */
export function isStepJobFailure(value: unknown): value is StepJobFailure {
  const v = value as Partial<StepJobFailure> | null;
  return typeof v === 'object' && v !== null && typeof v.step === 'string' && typeof v.error === 'string' && typeof v.attempt === 'number';
}

/** Checks what `enqueue()` received. */
export function checkJob(job: unknown): void {
  const j = job as Partial<BrokerJob> | null;
  if (typeof j !== 'object' || j === null || typeof j.job_id !== 'string' || j.job_id.length === 0) {
    throw new InvalidArgumentError(`enqueue(job): job must be an object with a job_id, received ${typeof job}`);
  }
  if (j.kind !== 'task' && j.kind !== 'step' && j.kind !== 'run_timeout') {
    throw new InvalidArgumentError(`enqueue(job): job.kind must be "task", "step" or "run_timeout", received ${String(j.kind)}`);
  }
}

/**
 * A step job delivered again after its worker stopped mid-step: the call it was running
 * counts as a failed attempt. The step's attempt moves on by one, a `StepRetryEvent`
 * says why, and the job continues under the new attempt (`value`). `value` is `null`
 * when the job must not run (the run ended or the step moved on without it), and the
 * job itself when it had not started before (nothing to retry).
 *
 * Pure, like every run transition: a store may apply it more than once.
 */
export function stepRedelivered(rec: RunRecord, job: StepJob, reason: string, now: number): Transition<StepJob | null> {
  const none: Transition<StepJob | null> = { value: null, events: [] };
  if (rec.status !== 'RUNNING' || isStaleJob(rec, job)) return none;
  const st = rec.steps[job.step];
  const step = rec.plan.steps.find((s) => s.name === job.step);
  // Its own call ended: the job may have carried a chained step's call when its worker stopped.
  if (st === undefined || step === undefined || st.phase !== 'ACTIVE') return carriedRetry(rec, job, reason, now);
  let attempt: number;
  if (st.items === null) {
    // This job is the step's current call when it carries the current attempt, or when it
    // already started once (then a previous redelivery moved the attempt on).
    const current = job.attempt === st.attempt || st.task_id === job.job_id;
    if (!current) return carriedRetry(rec, job, reason, now);
    if (st.started_at_ms === null || st.task_id !== job.job_id) return { value: job, events: [] };
    attempt = st.attempt + 1;
    st.attempt = attempt;
  } else {
    if (job.item !== undefined && st.items.results[job.item] !== null) return none;
    if (st.started_at_ms === null) return { value: job, events: [] };
    attempt = Math.max(st.attempt, job.attempt) + 1;
    st.attempt = attempt;
  }
  return { value: { ...job, attempt }, events: [lostCallRetry(rec, job, attempt, reason, now)] };
}

/** The `StepRetryEvent` of a call lost with its worker (`job`, now going again as `attempt`). */
function lostCallRetry(rec: RunRecord, job: StepJob, attempt: number, reason: string, now: number): EventDraft {
  const event: EventDraft = {
    type: 'StepRetryEvent',
    pipeline_id: rec.pipeline_id,
    run_id: rec.run_id,
    timestamp: isoTime(now),
    step_name: job.step,
    step_index: job.step_index,
    task_id: job.job_id,
    attempt,
    delay_ms: 0,
    error: reason,
  };
  if (job.item !== undefined) event.item = job.item;
  return event;
}

/** A step's call that ran inside `job` (step chaining) and did not end counts as a failed attempt: it goes again. */
function carriedRetry(rec: RunRecord, job: StepJob, reason: string, now: number): Transition<StepJob | null> {
  const carried = carriedJob(rec, job.job_id);
  const st = carried === null ? undefined : rec.steps[carried.step];
  if (carried === null || st === undefined) return { value: null, events: [] };
  const attempt = st.attempt + 1;
  st.attempt = attempt;
  // A copy of the input: the one in `carried` is part of the record (which the run state may keep).
  return { value: { ...carried, attempt, input: structuredClone(carried.input) }, events: [lostCallRetry(rec, carried, attempt, reason, now)] };
}

/**
 * A step job BullMQ runs again after its processing failed outside the task (an error
 * reaching Redis while recording the step's end): the job goes on as before when its
 * own call is still current; when its own call had ended, the chained call it carried
 * (if any) counts as a failed attempt and goes again, like {@link stepRedelivered}.
 */
export function stepAttemptedAgain(rec: RunRecord, job: StepJob, reason: string, now: number): Transition<StepJob | null> {
  if (ownCallCurrent(rec, job)) return { value: job, events: [] };
  return carriedRetry(rec, job, reason, now);
}

/** The call that a job gone wrong stands for now: its own when still current, else the chained call it carried, else its own. */
export function callOf(rec: RunRecord, job: StepJob): StepJob {
  if (ownCallCurrent(rec, job)) return job;
  return carriedJob(rec, job.job_id) ?? job;
}

function ownCallCurrent(rec: RunRecord, job: StepJob): boolean {
  const st = rec.steps[job.step];
  if (rec.status !== 'RUNNING' || st === undefined || st.phase !== 'ACTIVE' || isStaleJob(rec, job)) return false;
  if (st.items === null) return job.attempt === st.attempt || st.task_id === job.job_id;
  return job.item === undefined || st.items.results[job.item] === null;
}
