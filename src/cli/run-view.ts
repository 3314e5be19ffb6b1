/**
 * What the terminal board shows of a run: the view types, and how a step's view is derived
 * from its tracked status (tracking's reducer decides how events change it) and the few
 * things only a view keeps ({@link StepExtra}).
 */
import type { PipelineType, StepKind } from '../events/types.js';
import type { PipelineRunStatus, StepStatus } from '../tracking/models.js';

/** Where a run stands, as the board saw it in its events. */
export type RunViewStatus = 'RUNNING' | 'COMPLETED' | 'FAILED' | 'CANCELLED';

/**
 * Where a step stands. `RETRYING`: an attempt failed and the next one waits for its
 * delay. `STOPPED`: the step was running when its run ended (cancelled, or failed in
 * another branch).
 */
export type StepViewStatus = 'PENDING' | 'RUNNING' | 'RETRYING' | 'COMPLETED' | 'FAILED' | 'SKIPPED' | 'STOPPED';

/** One step of a run on the board. */
export interface StepView {
  readonly name: string;
  readonly index: number;
  /** `null` until the run's `PipelineStartEvent` described the step. */
  readonly kind: StepKind | null;
  readonly status: StepViewStatus;
  /** The current (or last) attempt; 0 before the first start. */
  readonly attempt: number;
  /** Items (or grouped tasks) of a map/filter/group step; `null` for a plain call. */
  readonly items: number | null;
  /** 0..1. Item steps count finished items; other steps take the task's `ctx.progress()`. */
  readonly progress: number;
  /** The last progress message (e.g. `"3/8 items"`), or `null`. */
  readonly message: string | null;
  /** Epoch ms of the current attempt's start. */
  readonly startedAt: number | null;
  /** Epoch ms the step ended (completed, failed, stopped). */
  readonly endedAt: number | null;
  /** Duration reported by the step's last event, when it ended on its own. */
  readonly durationMs: number | null;
  /** The error that failed the step, or of the attempt being retried. */
  readonly error: string | null;
  readonly skipReason: string | null;
  /** Epoch ms the retry is due (while `RETRYING`). */
  readonly retryAt: number | null;
}

/** One log line of a run and the step that wrote it. */
export interface LogLine {
  readonly step: string;
  readonly line: string;
}

/** One run on the board. */
export interface RunView {
  readonly runId: string;
  readonly pipelineId: string;
  /** `null` when the board joined after the run's start. */
  readonly pipelineType: PipelineType | null;
  readonly status: RunViewStatus;
  /** Epoch ms of the first event the board saw (the start, normally). */
  readonly startedAt: number;
  readonly endedAt: number | null;
  readonly durationMs: number | null;
  /** Steps by index. */
  readonly steps: readonly StepView[];
  /** The last log lines of the run, oldest first. */
  readonly logs: readonly LogLine[];
  /** The run's error (FAILED) or cancel reason (CANCELLED). */
  readonly error: string | null;
  /** The step whose failure ended the run. */
  readonly failedStep: string | null;
  /** Retries scheduled over the run. */
  readonly retries: number;
  /** The highest `seq` applied. */
  readonly lastSeq: number;
}

/** Counts across every run the board has seen, evicted ones included. */
export interface BoardTotals {
  readonly running: number;
  readonly completed: number;
  readonly failed: number;
  readonly cancelled: number;
  /** Events applied. */
  readonly events: number;
}

/**
 * What the board keeps of a step beside its tracked status: only what a terminal view
 * needs and tracking does not record.
 */
export interface StepExtra {
  /** Items of a map/filter/group step (its `StepStartEvent`), `null` for a plain call. */
  items: number | null;
  /** An item step's bar: finished items / items, from its `"k/n items"` progress messages. */
  itemsDone: number;
  /** The message of that bar. */
  itemsMessage: string | null;
  /** The step's own attempt for an item step (item retries do not start a new one). */
  stepAttempt: number;
  /** The last retry was of one item: the step itself keeps running. */
  itemRetry: boolean;
  /** The attempt a (whole-step) retry will start, and when (epoch ms). */
  retryAttempt: number;
  retryAt: number | null;
}


/** A step's extras before any of its events said more. */
export function newStepExtra(): StepExtra {
  return { items: null, itemsDone: 0, itemsMessage: null, stepAttempt: 0, itemRetry: false, retryAttempt: 0, retryAt: null };
}

/** A run's tracked status as the board shows it (a run is never `PENDING` once it has events). */
export function viewStatus(status: PipelineRunStatus): RunViewStatus {
  return status === 'PENDING' ? 'RUNNING' : status;
}

/**
 * One step as the board shows it, from its tracked status and the view's extras:
 * `CANCELLED` (running when the run ended) shows as `STOPPED`; an item step that retries
 * one item keeps running, its bar counting finished items; a step waiting for its retry
 * shows an empty bar and the attempt to come.
 */
export function stepView(step: StepStatus, x: StepExtra | undefined, sawStart: boolean): StepView {
  const items = x?.items ?? null;
  let status: StepViewStatus = step.status === 'CANCELLED' ? 'STOPPED' : step.status;
  if (status === 'RETRYING' && x?.itemRetry === true) status = 'RUNNING';
  const retrying = status === 'RETRYING';
  return {
    name: step.step_name,
    index: step.step_index,
    kind: sawStart ? step.kind : null,
    status,
    attempt: retrying ? (x?.retryAttempt ?? step.attempts) : items !== null ? (x?.stepAttempt ?? step.attempts) : step.attempts,
    items,
    progress: retrying ? 0 : items !== null ? (x?.itemsDone ?? 0) : clamp(step.progress),
    message: items !== null ? (x?.itemsMessage ?? null) : step.message,
    startedAt: parseTime(step.started_at),
    endedAt: parseTime(step.completed_at),
    // A step stopped by its run's end did not end on its own: no duration of its own.
    durationMs: status === 'STOPPED' ? null : step.duration_ms,
    error: step.error,
    skipReason: step.skip_reason,
    retryAt: retrying ? (x?.retryAt ?? null) : null,
  };
}

/** Epoch ms of an ISO time, `null` for `null`. */
export function parseTime(iso: string | null): number | null {
  return iso === null ? null : Date.parse(iso);
}

function clamp(n: number): number {
  return Number.isFinite(n) ? Math.min(1, Math.max(0, n)) : 0;
}
