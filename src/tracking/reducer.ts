import { InvalidArgumentError } from '../core/errors.js';
import type {
  FlowcastEvent,
  PipelineCancelledEvent,
  PipelineCompleteEvent,
  PipelineErrorEvent,
  PipelineResumeEvent,
  PipelineStartEvent,
} from '../events/types.js';
import type { PipelineStatus, StepRunStatus, StepStatus } from './models.js';

/**
 * Applies one event of a run to its status and returns the status.
 *
 * - `status` is `null` for a run not seen yet: only a `PipelineStartEvent` creates one;
 *   any other event returns `null` (nothing to apply).
 * - An event whose `seq` is `<= status.last_seq` is a duplicate: ignored, `status` is
 *   returned unchanged. Otherwise `last_seq` becomes `event.seq`.
 * - For speed, **`status` is mutated in place and returned** (no clone): pass a copy if
 *   the caller must keep the old one. The status keeps references to the event's
 *   payloads (`input`, `result`): events are immutable once emitted.
 * - Event types this version does not know only move `last_seq` and `updated_at`.
 *
 * @example
 * let status: PipelineStatus | null = null;
 * for (const e of events) status = applyEvent(status, e) ?? status;
 */
export function applyEvent(status: PipelineStatus | null, event: FlowcastEvent): PipelineStatus | null {
  if (status === null) return event.type === 'PipelineStartEvent' ? createStatus(event) : null;
  if (status.run_id !== event.run_id) {
    throw new InvalidArgumentError(`applyEvent(status, event): event of run "${event.run_id}" applied to the status of run "${status.run_id}"`);
  }
  if (event.seq <= status.last_seq) return status;
  status.last_seq = event.seq;
  status.updated_at = event.timestamp;
  switch (event.type) {
    case 'PipelineStartEvent':
      // A second start of one run (seq above the last applied) starts over.
      return createStatus(event);
    case 'StepStartEvent': {
      const step = stepOf(status, event.step_name, event.step_index);
      setStepStatus(status, step, 'RUNNING');
      step.attempts = event.attempt;
      step.started_at = event.timestamp;
      step.completed_at = null;
      step.duration_ms = null;
      step.progress = 0;
      step.message = null;
      if (event.task_id !== '') step.task_id = event.task_id;
      status.current_step = step.step_name;
      return status;
    }
    case 'StepCompleteEvent': {
      const step = stepOf(status, event.step_name, event.step_index);
      setStepStatus(status, step, 'COMPLETED');
      step.result = event.result;
      step.error = null;
      step.duration_ms = event.duration_ms;
      step.completed_at = event.timestamp;
      step.progress = 1;
      if (event.attempt > step.attempts) step.attempts = event.attempt;
      if (event.task_id !== '') step.task_id = event.task_id;
      stepEnded(status, step);
      return status;
    }
    case 'StepErrorEvent': {
      const step = stepOf(status, event.step_name, event.step_index);
      setStepStatus(status, step, 'FAILED');
      step.error = event.error;
      step.duration_ms = event.duration_ms;
      step.completed_at = event.timestamp;
      if (event.attempt > step.attempts) step.attempts = event.attempt;
      stepEnded(status, step);
      return status;
    }
    case 'StepRetryEvent': {
      const step = stepOf(status, event.step_name, event.step_index);
      setStepStatus(status, step, 'RETRYING');
      step.error = event.error;
      // An item of a map/filter/group step is retried without a new StepStartEvent.
      if (event.item !== undefined && event.attempt > step.attempts) step.attempts = event.attempt;
      return status;
    }
    case 'StepProgressEvent': {
      const step = stepOf(status, event.step_name, event.step_index);
      // Progress means work is going on (for map steps: other items while one waits for its retry).
      if (step.status === 'PENDING' || step.status === 'RETRYING') setStepStatus(status, step, 'RUNNING');
      step.progress = event.progress;
      if (event.message !== undefined) step.message = event.message;
      return status;
    }
    case 'StepLogEvent': {
      stepOf(status, event.step_name, event.step_index).log_lines += event.lines.length;
      return status;
    }
    case 'StepSkipEvent': {
      const step = stepOf(status, event.step_name, event.step_index);
      setStepStatus(status, step, 'SKIPPED');
      step.skip_reason = event.reason;
      stepEnded(status, step);
      return status;
    }
    case 'PipelineCompleteEvent':
    case 'PipelineErrorEvent':
    case 'PipelineCancelledEvent':
      return endRun(status, event);
    case 'PipelineResumeEvent':
      return resumeRun(status, event);
    default:
      return status;
  }
}

/**
 * The status of a run whose `PipelineStartEvent` was not seen: a view that joined in the
 * middle of the run (a `flowcast watch` started after the run did). It is `RUNNING`, has no
 * steps yet (each step is added by its first event, see {@link applyEvent}), `started_at`
 * `null` (unknown), `last_seq` 0, and `pipeline_type` `'sequential'` until an end event
 * tells the real one. Apply the first event seen to it, and every later one:
 *
 * @example
 * const status = applyEvent(held ?? joinedStatus(event), event);
 */
export function joinedStatus(event: Pick<FlowcastEvent, 'pipeline_id' | 'run_id' | 'timestamp'>): PipelineStatus {
  return {
    pipeline_id: event.pipeline_id,
    run_id: event.run_id,
    status: 'RUNNING',
    pipeline_type: 'sequential',
    started_at: null,
    completed_at: null,
    duration_ms: null,
    steps: [],
    result: null,
    error: null,
    input: null,
    last_seq: 0,
    progress: 0,
    current_step: null,
    updated_at: event.timestamp,
  };
}

/** `true` when `event` would be ignored as a duplicate by {@link applyEvent} (`seq <= last_seq`). */
export function isDuplicateEvent(status: PipelineStatus | null, event: Pick<FlowcastEvent, 'seq'>): boolean {
  return status !== null && event.seq <= status.last_seq;
}

function createStatus(event: PipelineStartEvent): PipelineStatus {
  const steps: StepStatus[] = [];
  for (const d of event.steps) steps.push(newStep(d.step_name, d.step_index, d.kind, [...d.tasks], [...d.depends_on]));
  const status: PipelineStatus = {
    pipeline_id: event.pipeline_id,
    run_id: event.run_id,
    status: 'RUNNING',
    pipeline_type: event.pipeline_type,
    started_at: event.timestamp,
    completed_at: null,
    duration_ms: null,
    steps,
    result: null,
    error: null,
    input: event.input,
    last_seq: event.seq,
    progress: 0,
    current_step: null,
    updated_at: event.timestamp,
  };
  if (event.dag !== undefined) status.dag = { nodes: [...event.dag.nodes], edges: event.dag.edges.map(([a, b]) => [a, b]) };
  return status;
}

function newStep(name: string, index: number, kind: StepStatus['kind'], tasks: string[], dependsOn: string[]): StepStatus {
  return {
    step_name: name,
    step_index: index,
    kind,
    task_names: tasks,
    depends_on: dependsOn,
    status: 'PENDING',
    started_at: null,
    completed_at: null,
    duration_ms: null,
    result: null,
    error: null,
    attempts: 0,
    progress: 0,
    message: null,
    task_id: null,
    log_lines: 0,
    skip_reason: null,
  };
}

/**
 * The step an event is about. Steps are stored in definition order, so `step_index` finds
 * it in O(1); the name check and the scan only matter for statuses built elsewhere. A
 * step the start event did not declare is added rather than lost.
 */
function stepOf(status: PipelineStatus, name: string, index: number): StepStatus {
  const steps = status.steps;
  const byIndex = steps[index];
  if (byIndex !== undefined && byIndex.step_name === name) return byIndex;
  for (const s of steps) if (s.step_name === name) return s;
  const step = newStep(name, index, 'call', [], []);
  steps.push(step);
  status.progress = doneCount(status, steps.length - 1) / steps.length;
  return step;
}

function isDone(s: StepRunStatus): boolean {
  return s === 'COMPLETED' || s === 'SKIPPED';
}

/** Number of done steps, recovered exactly from `progress` (a ratio of two small integers). */
function doneCount(status: PipelineStatus, total: number): number {
  return Math.round(status.progress * total);
}

/** Changes a step's status and keeps the run's `progress` (done / total) in step without a scan. */
function setStepStatus(status: PipelineStatus, step: StepStatus, next: StepRunStatus): void {
  const was = isDone(step.status);
  step.status = next;
  const now = isDone(next);
  if (was === now) return;
  const total = status.steps.length;
  status.progress = (doneCount(status, total) + (now ? 1 : -1)) / total;
}

/** After a step ended: `current_step` moves to the latest started step still running. */
function stepEnded(status: PipelineStatus, step: StepStatus): void {
  if (status.current_step !== step.step_name) return;
  let best: StepStatus | null = null;
  for (const s of status.steps) {
    if (s.status !== 'RUNNING' && s.status !== 'RETRYING') continue;
    if (best === null || (s.started_at ?? '') >= (best.started_at ?? '')) best = s;
  }
  status.current_step = best === null ? null : best.step_name;
}

function endRun(status: PipelineStatus, event: PipelineCompleteEvent | PipelineErrorEvent | PipelineCancelledEvent): PipelineStatus {
  status.status = event.status;
  status.pipeline_type = event.pipeline_type;
  status.completed_at = event.timestamp;
  status.duration_ms = event.duration_ms;
  status.current_step = null;
  if (event.type === 'PipelineCompleteEvent') {
    status.result = event.result;
    status.error = null;
    // A run with no steps (progress is done / all steps) is all done once it completed.
    if (status.steps.length === 0) status.progress = 1;
  } else {
    status.error = event.type === 'PipelineErrorEvent' ? event.error : event.reason;
  }
  let endMs: number | null = null;
  for (const s of status.steps) {
    if (s.status !== 'RUNNING' && s.status !== 'RETRYING') continue;
    s.status = 'CANCELLED';
    s.completed_at = event.timestamp;
    if (s.started_at !== null) {
      endMs ??= Date.parse(event.timestamp);
      s.duration_ms = Math.max(0, endMs - Date.parse(s.started_at));
    }
  }
  return status;
}

/** A new attempt of an ended run: RUNNING again, its kept steps as they were, every other step PENDING. */
function resumeRun(status: PipelineStatus, event: PipelineResumeEvent): PipelineStatus {
  status.status = 'RUNNING';
  status.completed_at = null;
  status.duration_ms = null;
  status.result = null;
  status.error = null;
  status.current_step = null;
  const kept = new Set(event.kept_steps);
  let done = 0;
  status.steps = status.steps.map((s) => {
    if (kept.has(s.step_name)) {
      if (isDone(s.status)) done++;
      return s;
    }
    return newStep(s.step_name, s.step_index, s.kind, s.task_names, s.depends_on);
  });
  status.progress = status.steps.length === 0 ? 0 : done / status.steps.length;
  return status;
}
