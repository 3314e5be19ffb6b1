import { checkKnownKeys, checkObject, checkPositiveInt } from '../core/validate.js';
import type { FlowcastEvent, PipelineType, StepKind } from '../events/types.js';

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

/** Options of {@link RunBoard}. */
export interface RunBoardOptions {
  /**
   * Runs kept on the board. When more are known, the run that ended first is dropped;
   * running runs are never dropped.
   * @default 12
   */
  maxRuns?: number;
  /**
   * Log lines kept per run.
   * @default 2
   */
  logLines?: number;
  /**
   * Window of {@link RunBoard.eventsPerSecond}, in milliseconds.
   * @default 2000
   */
  rateWindowMs?: number;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
type StepState = Mutable<StepView>;
interface RunState extends Mutable<Omit<RunView, 'steps' | 'logs'>> {
  steps: StepState[];
  logs: LogLine[];
  /** Order of arrival, to break ties between runs started in the same millisecond. */
  order: number;
}

const ITEMS_MESSAGE = /^(\d+)\/(\d+) items$/;
const EVICTED_MEMORY = 1024;

/**
 * A pure model of recent runs, fed with events (`board.apply(event)` from a
 * `hooks.on('*')` listener) and read by {@link render}. It keeps no timer and reads no
 * clock: every time comes from event timestamps, so a hand-fed sequence of events gives
 * the same board every time. Events already applied (same or lower `seq`) are ignored.
 *
 * @example
 * const board = new RunBoard({ maxRuns: 12 });
 * hooks.on('*', (e) => board.apply(e));
 * console.log(render(board, { width: 100, color: false, now: Date.now() }));
 */
export class RunBoard {
  readonly #runs = new Map<string, RunState>();
  readonly #evicted = new Set<string>();
  readonly #maxRuns: number;
  readonly #logLines: number;
  readonly #rateWindowMs: number;
  readonly #eventTimes: number[] = [];
  #order = 0;
  #totals: Mutable<BoardTotals> = { running: 0, completed: 0, failed: 0, cancelled: 0, events: 0 };

  constructor(options: RunBoardOptions = {}) {
    checkKnownKeys(checkObject(options, 'RunBoard options'), ['maxRuns', 'logLines', 'rateWindowMs'], 'RunBoard options');
    const opts = { maxRuns: 12, logLines: 2, rateWindowMs: 2000, ...options };
    this.#maxRuns = checkPositiveInt(opts.maxRuns, 'maxRuns');
    this.#logLines = checkPositiveInt(opts.logLines, 'logLines');
    this.#rateWindowMs = checkPositiveInt(opts.rateWindowMs, 'rateWindowMs');
  }

  /**
   * Applies one event. Returns the run it changed, or `null` when the event was ignored
   * (a duplicate, or a late event of a run already dropped from the board).
   */
  apply(event: FlowcastEvent): RunView | null {
    if (this.#evicted.has(event.run_id)) return null;
    const at = Date.parse(event.timestamp);
    let run = this.#runs.get(event.run_id);
    if (run !== undefined && event.seq <= run.lastSeq) return null;
    if (run === undefined) run = this.#add(event, at);
    run.lastSeq = event.seq;
    this.#totals.events++;
    this.#countRate(at);

    switch (event.type) {
      case 'PipelineStartEvent': {
        run.pipelineType = event.pipeline_type;
        run.startedAt = at;
        for (const d of event.steps) {
          const step = this.#step(run, d.step_name, d.step_index);
          step.kind = d.kind;
        }
        break;
      }
      case 'StepStartEvent': {
        const step = this.#step(run, event.step_name, event.step_index);
        step.status = 'RUNNING';
        step.attempt = event.attempt;
        step.items = event.items ?? null;
        step.progress = 0;
        step.message = event.items === undefined ? null : `0/${event.items} items`;
        step.startedAt = at;
        step.endedAt = null;
        step.retryAt = null;
        break;
      }
      case 'StepProgressEvent': {
        const step = this.#step(run, event.step_name, event.step_index);
        if (step.items !== null) {
          // An item step's bar counts finished items; progress reported by one item's task
          // (same event type, no item count in the message) would make it jump back and forth.
          const m = ITEMS_MESSAGE.exec(event.message ?? '');
          if (m === null) break;
          step.progress = Number(m[1]) / Math.max(1, Number(m[2]));
        } else {
          step.progress = clamp(event.progress);
        }
        if (event.message !== undefined) step.message = event.message;
        break;
      }
      case 'StepLogEvent': {
        for (const line of event.lines) run.logs.push({ step: event.step_name, line });
        if (run.logs.length > this.#logLines) run.logs.splice(0, run.logs.length - this.#logLines);
        break;
      }
      case 'StepRetryEvent': {
        const step = this.#step(run, event.step_name, event.step_index);
        run.retries++;
        step.error = event.error;
        // An item of a map step is retried inside the step: the step itself keeps running.
        if (event.item !== undefined && step.items !== null) break;
        step.status = 'RETRYING';
        step.attempt = event.attempt;
        step.progress = 0;
        step.retryAt = at + event.delay_ms;
        break;
      }
      case 'StepCompleteEvent': {
        const step = this.#step(run, event.step_name, event.step_index);
        step.status = 'COMPLETED';
        step.attempt = event.attempt;
        step.progress = 1;
        if (step.items !== null) step.message = `${step.items}/${step.items} items`;
        step.durationMs = event.duration_ms;
        step.endedAt = at;
        step.error = null;
        step.retryAt = null;
        break;
      }
      case 'StepErrorEvent': {
        const step = this.#step(run, event.step_name, event.step_index);
        step.status = 'FAILED';
        step.attempt = event.attempt;
        step.durationMs = event.duration_ms;
        step.endedAt = at;
        step.error = event.error;
        step.retryAt = null;
        break;
      }
      case 'StepSkipEvent': {
        const step = this.#step(run, event.step_name, event.step_index);
        step.status = 'SKIPPED';
        step.skipReason = event.reason;
        break;
      }
      case 'PipelineCompleteEvent':
      case 'PipelineErrorEvent':
      case 'PipelineCancelledEvent': {
        this.#end(run, event, at);
        break;
      }
    }
    return run;
  }

  /** The run with this id, if it is on the board. */
  get(runId: string): RunView | undefined {
    return this.#runs.get(runId);
  }

  /** Runs in display order: running ones first (newest first), then ended ones (last ended first). */
  get runs(): RunView[] {
    return [...this.#runs.values()].sort((a, b) => {
      const ar = a.status === 'RUNNING';
      const br = b.status === 'RUNNING';
      if (ar !== br) return ar ? -1 : 1;
      const at = ar ? a.startedAt : (a.endedAt ?? a.startedAt);
      const bt = br ? b.startedAt : (b.endedAt ?? b.startedAt);
      return bt - at || b.order - a.order;
    });
  }

  /** Counts over every run seen. */
  get totals(): BoardTotals {
    return { ...this.#totals };
  }

  /** Events per second over the window ending at `now` (epoch ms), from event timestamps. */
  eventsPerSecond(now: number): number {
    const from = now - this.#rateWindowMs;
    let n = 0;
    for (let i = this.#eventTimes.length - 1; i >= 0; i--) {
      const t = this.#eventTimes[i] as number;
      if (t <= from) break;
      if (t <= now) n++;
    }
    return n / (this.#rateWindowMs / 1000);
  }

  #add(event: FlowcastEvent, at: number): RunState {
    const run: RunState = {
      runId: event.run_id,
      pipelineId: event.pipeline_id,
      pipelineType: null,
      status: 'RUNNING',
      startedAt: at,
      endedAt: null,
      durationMs: null,
      steps: [],
      logs: [],
      error: null,
      failedStep: null,
      retries: 0,
      lastSeq: 0,
      order: this.#order++,
    };
    this.#runs.set(run.runId, run);
    this.#totals.running++;
    this.#evict();
    return run;
  }

  #evict(): void {
    while (this.#runs.size > this.#maxRuns) {
      let oldest: RunState | null = null;
      for (const r of this.#runs.values()) {
        if (r.status === 'RUNNING') continue;
        if (oldest === null || (r.endedAt ?? 0) < (oldest.endedAt ?? 0)) oldest = r;
      }
      if (oldest === null) return;
      this.#runs.delete(oldest.runId);
      this.#evicted.add(oldest.runId);
      if (this.#evicted.size > EVICTED_MEMORY) {
        const first = this.#evicted.values().next().value;
        if (first !== undefined) this.#evicted.delete(first);
      }
    }
  }

  #step(run: RunState, name: string, index: number): StepState {
    let step = run.steps.find((s) => s.name === name);
    if (step === undefined) {
      step = {
        name,
        index,
        kind: null,
        status: 'PENDING',
        attempt: 0,
        items: null,
        progress: 0,
        message: null,
        startedAt: null,
        endedAt: null,
        durationMs: null,
        error: null,
        skipReason: null,
        retryAt: null,
      };
      const at = run.steps.findIndex((s) => s.index > index);
      if (at === -1) run.steps.push(step);
      else run.steps.splice(at, 0, step);
    }
    return step;
  }

  #end(
    run: RunState,
    event: Extract<FlowcastEvent, { type: 'PipelineCompleteEvent' | 'PipelineErrorEvent' | 'PipelineCancelledEvent' }>,
    at: number,
  ): void {
    if (run.status === 'RUNNING') this.#totals.running--;
    run.status = event.status;
    run.endedAt = at;
    run.durationMs = event.duration_ms;
    if (event.type === 'PipelineCompleteEvent') this.#totals.completed++;
    else if (event.type === 'PipelineErrorEvent') {
      this.#totals.failed++;
      run.error = event.error;
      run.failedStep = event.step_name ?? null;
    } else {
      this.#totals.cancelled++;
      run.error = event.reason;
    }
    for (const step of run.steps) {
      if (step.status === 'RUNNING' || step.status === 'RETRYING') {
        step.status = 'STOPPED';
        step.endedAt = at;
        step.retryAt = null;
      }
    }
    this.#evict();
  }

  #countRate(at: number): void {
    const times = this.#eventTimes;
    times.push(at);
    // Events of concurrent runs can arrive a little out of order: keep the list sorted.
    for (let i = times.length - 1; i > 0 && (times[i - 1] as number) > (times[i] as number); i--) {
      [times[i - 1], times[i]] = [times[i] as number, times[i - 1] as number];
    }
    const horizon = (times[times.length - 1] as number) - this.#rateWindowMs;
    let drop = 0;
    while (drop < times.length && (times[drop] as number) <= horizon) drop++;
    if (drop > 0) times.splice(0, drop);
  }
}

function clamp(n: number): number {
  return Number.isFinite(n) ? Math.min(1, Math.max(0, n)) : 0;
}
