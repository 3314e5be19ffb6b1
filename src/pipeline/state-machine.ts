/**
 * The run-state machine as data: every (state, event) → state move a run and its steps may
 * make, the lifecycle event each move emits, and the typed reasons a step is skipped or a
 * run fails. `transitions.ts` and `resume.ts` move runs and steps only through
 * {@link moveRun} and {@link moveStep}, which refuse any move not in these tables, and
 * docs/events.md ("State machine") prints the same tables (test/state-machine.test.ts
 * holds the two to each other, row by row).
 */
import { FlowcastError, ErrorCodes } from '../core/errors.js';
import type { EventType } from '../events/types.js';
import type { RunStatus, StepPhase } from './run-state.js';

/** What happens to a step. */
export type StepMove =
  /** Every dependency completed. */
  | 'ready'
  /** Its first job is sent (or its items begin). */
  | 'activate'
  /** It succeeded. */
  | 'complete'
  /** It failed for good (no retry left, a non-retryable error, or bad input). */
  | 'fail'
  /** It will never run (a dependency failed or was skipped, or the run ended first). */
  | 'skip'
  /** The run ended while it ran (cancelled, or failed in another branch). */
  | 'stop'
  /** The run is resumed: it runs again from the start of the step. */
  | 'reset';

/** What happens to a run. */
export type RunMove = 'complete' | 'fail' | 'cancel' | 'resume';

/** One row of a transition table. */
export interface TransitionRow<S extends string, M extends string> {
  readonly from: S;
  readonly on: M;
  readonly to: S;
  /** The lifecycle event the move emits, `null` when it emits none by itself. */
  readonly emits: EventType | null;
}

/** Every move of a step. A step starts `PENDING`. */
export const STEP_TRANSITIONS: readonly TransitionRow<StepPhase, StepMove>[] = [
  { from: 'PENDING', on: 'ready', to: 'READY', emits: null },
  { from: 'READY', on: 'activate', to: 'ACTIVE', emits: null },
  { from: 'ACTIVE', on: 'complete', to: 'COMPLETED', emits: 'StepCompleteEvent' },
  { from: 'ACTIVE', on: 'fail', to: 'FAILED', emits: 'StepErrorEvent' },
  { from: 'PENDING', on: 'skip', to: 'SKIPPED', emits: 'StepSkipEvent' },
  { from: 'READY', on: 'skip', to: 'SKIPPED', emits: 'StepSkipEvent' },
  // A job that was sent but never started (still queued) never ran either.
  { from: 'ACTIVE', on: 'skip', to: 'SKIPPED', emits: 'StepSkipEvent' },
  { from: 'ACTIVE', on: 'stop', to: 'CANCELLED', emits: null },
  { from: 'FAILED', on: 'reset', to: 'PENDING', emits: null },
  { from: 'CANCELLED', on: 'reset', to: 'PENDING', emits: null },
  { from: 'SKIPPED', on: 'reset', to: 'PENDING', emits: null },
  { from: 'PENDING', on: 'reset', to: 'PENDING', emits: null },
  { from: 'READY', on: 'reset', to: 'PENDING', emits: null },
  { from: 'ACTIVE', on: 'reset', to: 'PENDING', emits: null },
];

/** Every move of a run. A run starts `RUNNING` (its `PipelineStartEvent`). */
export const RUN_TRANSITIONS: readonly TransitionRow<RunStatus, RunMove>[] = [
  { from: 'RUNNING', on: 'complete', to: 'COMPLETED', emits: 'PipelineCompleteEvent' },
  { from: 'RUNNING', on: 'fail', to: 'FAILED', emits: 'PipelineErrorEvent' },
  { from: 'RUNNING', on: 'cancel', to: 'CANCELLED', emits: 'PipelineCancelledEvent' },
  { from: 'FAILED', on: 'resume', to: 'RUNNING', emits: 'PipelineResumeEvent' },
  { from: 'CANCELLED', on: 'resume', to: 'RUNNING', emits: 'PipelineResumeEvent' },
];

function index<S extends string, M extends string>(rows: readonly TransitionRow<S, M>[]): Map<string, S> {
  return new Map(rows.map((r) => [`${r.from} ${r.on}`, r.to]));
}

const STEP_NEXT = index(STEP_TRANSITIONS);
const RUN_NEXT = index(RUN_TRANSITIONS);

/** The phase `move` takes a step in `from` to, or `null` when the table has no such move. */
export function nextStepPhase(from: StepPhase, move: StepMove): StepPhase | null {
  return STEP_NEXT.get(`${from} ${move}`) ?? null;
}

/** The status `move` takes a run in `from` to, or `null` when the table has no such move. */
export function nextRunStatus(from: RunStatus, move: RunMove): RunStatus | null {
  return RUN_NEXT.get(`${from} ${move}`) ?? null;
}

/** Moves a step (anything with a `phase`) by the table; a move the table lacks is a bug in flowcast, refused loudly. */
export function moveStep(step: { phase: StepPhase }, move: StepMove, name: string): void {
  const to = nextStepPhase(step.phase, move);
  if (to === null) throw new FlowcastError(ErrorCodes.INVALID_STATE, `step "${name}": no move "${move}" from ${step.phase} in the state machine`);
  step.phase = to;
}

/** Moves a run (anything with a `status`) by the table; a move the table lacks is a bug in flowcast, refused loudly. */
export function moveRun(run: { status: RunStatus; run_id: string }, move: RunMove): void {
  const to = nextRunStatus(run.status, move);
  if (to === null) throw new FlowcastError(ErrorCodes.INVALID_STATE, `run ${run.run_id}: no move "${move}" from ${run.status} in the state machine`);
  run.status = to;
}

/** Why a step is skipped (the `reason` of its `StepSkipEvent`, see {@link skipReasonText}). */
export type SkipReason =
  | { readonly kind: 'dependency_failed'; readonly step: string }
  | { readonly kind: 'dependency_skipped'; readonly step: string }
  | { readonly kind: 'run_failed_at'; readonly step: string }
  | { readonly kind: 'run_cancelled' }
  | { readonly kind: 'run_timed_out' };

/** The `reason` text of a `StepSkipEvent`. */
export function skipReasonText(reason: SkipReason): string {
  switch (reason.kind) {
    case 'dependency_failed':
      return `dependency "${reason.step}" failed`;
    case 'dependency_skipped':
      return `dependency "${reason.step}" was skipped`;
    case 'run_failed_at':
      return `pipeline failed at step "${reason.step}"`;
    case 'run_cancelled':
      return 'run cancelled';
    case 'run_timed_out':
      return 'pipeline timed out';
  }
}

/** Why a run failed (the `error` of its `PipelineErrorEvent`, see {@link runFailureText}). */
export type RunFailure =
  /** One step failed for good under the `fail_fast` policy. */
  | { readonly kind: 'step_failed'; readonly step: string; readonly error: string }
  /** Every step ended, some failed (the `continue` policy). */
  | { readonly kind: 'steps_failed'; readonly steps: readonly { readonly step: string; readonly error: string }[] }
  /** The run's deadline passed. */
  | { readonly kind: 'timed_out'; readonly pipelineId: string; readonly afterMs: number };

/** The `error` text of a `PipelineErrorEvent` (the taskiq-flow guide's `Pipeline failed at step '…': …` form). */
export function runFailureText(failure: RunFailure): string {
  switch (failure.kind) {
    case 'step_failed':
      return `Pipeline failed at step '${failure.step}': ${failure.error}`;
    case 'steps_failed': {
      const errors = failure.steps.map((s) => `'${s.step}': ${s.error}`).join('; ');
      return `Pipeline failed at step${failure.steps.length > 1 ? 's' : ''} ${errors}`;
    }
    case 'timed_out':
      return `TimeoutError: pipeline "${failure.pipelineId}" timed out after ${failure.afterMs}ms`;
  }
}
