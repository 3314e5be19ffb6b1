/**
 * The tracking models of seed 001 §3: plain JSON objects with the seed's snake_case
 * field names, plus `run_id`, `last_seq`, attempts and progress (DESIGN §4). A status is
 * built from a run's events by {@link applyEvent} and is what every storage keeps.
 */
import type { JsonValue } from '../core/json.js';
import type { DagDescriptor, PipelineType, StepKind } from '../events/types.js';

/** Where a run is. A run is created `RUNNING` by its `PipelineStartEvent`; `PENDING` is for storages that pre-register runs. */
export type PipelineRunStatus = 'PENDING' | 'RUNNING' | 'COMPLETED' | 'FAILED' | 'CANCELLED';

/** Where one step of a run is. */
export type StepRunStatus = 'PENDING' | 'RUNNING' | 'RETRYING' | 'COMPLETED' | 'FAILED' | 'SKIPPED' | 'CANCELLED';

/** Every {@link PipelineRunStatus}, for validation and UIs. */
export const PIPELINE_STATUSES: readonly PipelineRunStatus[] = ['PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED'];

/** Every {@link StepRunStatus}. */
export const STEP_STATUSES: readonly StepRunStatus[] = ['PENDING', 'RUNNING', 'RETRYING', 'COMPLETED', 'FAILED', 'SKIPPED', 'CANCELLED'];

/** The three statuses of a run that has ended. */
export const ENDED_STATUSES: readonly PipelineRunStatus[] = ['COMPLETED', 'FAILED', 'CANCELLED'];

/** `true` for `COMPLETED`, `FAILED` and `CANCELLED`. */
export function isEndedStatus(status: PipelineRunStatus): boolean {
  return status === 'COMPLETED' || status === 'FAILED' || status === 'CANCELLED';
}

/** One step of a tracked run (seed 001 §3 `StepStatus`). */
export interface StepStatus {
  step_name: string;
  /** Position of the step in the pipeline definition, from 0. */
  step_index: number;
  kind: StepKind;
  /** Task names the step runs (one, except for `group`). */
  task_names: string[];
  /** Steps this one waits for. */
  depends_on: string[];
  status: StepRunStatus;
  /** ISO time the latest attempt started, or `null` if it never started. */
  started_at: string | null;
  /** ISO time the step completed, failed or was cancelled. */
  completed_at: string | null;
  /** Duration of the latest attempt, as the engine measured it. */
  duration_ms: number | null;
  /** Return value, once completed. */
  result: JsonValue | null;
  /** Error of the failed step, or of the last failed attempt while `RETRYING`. */
  error: string | null;
  /** Number of attempts started (1 without retries). */
  attempts: number;
  /** 0..1: the last `StepProgressEvent`, 1 once completed. */
  progress: number;
  /** The last progress message. */
  message: string | null;
  /** Id of the broker job running the latest attempt. */
  task_id: string | null;
  /** Number of log lines the step wrote (`ctx.log`). */
  log_lines: number;
  /** Why the step was skipped. */
  skip_reason: string | null;
}

/** One tracked run (seed 001 §3 `PipelineStatus`). */
export interface PipelineStatus {
  /** The pipeline (definition) the run belongs to. */
  pipeline_id: string;
  /** The run. */
  run_id: string;
  status: PipelineRunStatus;
  pipeline_type: PipelineType;
  started_at: string | null;
  completed_at: string | null;
  duration_ms: number | null;
  /** Steps in definition order. */
  steps: StepStatus[];
  /** The run's result, once completed. */
  result: JsonValue | null;
  /** The run's error once failed, or the cancel reason once cancelled. */
  error: string | null;
  /** The run's input. */
  input: JsonValue | null;
  /** `seq` of the last event applied: follow the run's log from `last_seq + 1`. */
  last_seq: number;
  /** 0..1: steps completed or skipped / all steps. */
  progress: number;
  /** The most recently started step that is still running, else `null`. */
  current_step: string | null;
  /** Timestamp of the last event applied. */
  updated_at: string;
  /** The graph of a dataflow run. */
  dag?: DagDescriptor;
}
