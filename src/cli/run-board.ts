import { checkKnownKeys, checkObject, checkPositiveInt } from '../core/validate.js';
import type { FlowcastEvent } from '../events/types.js';
import type { PipelineRunStatus, PipelineStatus } from '../tracking/models.js';
import { applyEvent, isDuplicateEvent, joinedStatus } from '../tracking/reducer.js';
import { newStepExtra, parseTime, stepView, viewStatus, type BoardTotals, type LogLine, type RunView, type StepExtra } from './run-view.js';

export type { BoardTotals, LogLine, RunView, RunViewStatus, StepView, StepViewStatus } from './run-view.js';

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

/** One run: its status as tracking computes it ({@link applyEvent}), and the view's own extras. */
interface RunState {
  status: PipelineStatus;
  /** The board saw the run's `PipelineStartEvent` (else the type and step kinds are unknown). */
  sawStart: boolean;
  /** Epoch ms of the first event seen, for a run joined in the middle. */
  firstAt: number;
  extras: Map<string, StepExtra>;
  logs: LogLine[];
  failedStep: string | null;
  retries: number;
  /** Order of arrival, to break ties between runs started in the same millisecond. */
  order: number;
  /** The view built from the above, until the next event changes the run. */
  view: RunView | null;
}

const ITEMS_MESSAGE = /^(\d+)\/(\d+) items$/;
const EVICTED_MEMORY = 1024;

/**
 * A pure model of recent runs, fed with events (`board.apply(event)` from a
 * `hooks.on('*')` listener) and read by {@link render}. It keeps no timer and reads no
 * clock: every time comes from event timestamps, so a hand-fed sequence of events gives
 * the same board every time. Events already applied (same or lower `seq`) are ignored.
 *
 * How an event changes a run is decided in one place, tracking's reducer
 * ({@link applyEvent}); the board keeps one tracked status per run and derives its view
 * from it, adding only what is the view's own: log lines, the item bar of map steps, the
 * retry countdown, the display status `STOPPED` (a step tracking marks `CANCELLED` when
 * its run ended), and the totals.
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
    if (run !== undefined && isDuplicateEvent(run.status, event)) return null;
    const before = run?.status.status ?? null;
    if (run === undefined) run = this.#add(event, at);
    run.status = applyEvent(run.status, event) ?? run.status;
    run.view = null;
    this.#totals.events++;
    this.#countRate(at);
    this.#applyExtras(run, event, at);
    const after = run.status.status;
    if (after !== before) {
      if (before !== null) this.#count(before, -1);
      this.#count(after, 1);
      // A new run, or one that ended, may put an ended run over the limit.
      this.#evict();
    }
    return this.#view(run);
  }

  /** The run with this id, if it is on the board. */
  get(runId: string): RunView | undefined {
    const run = this.#runs.get(runId);
    return run === undefined ? undefined : this.#view(run);
  }

  /** Runs in display order: running ones first (newest first), then ended ones (last ended first). */
  get runs(): RunView[] {
    const order = new Map<RunView, number>();
    for (const r of this.#runs.values()) order.set(this.#view(r), r.order);
    return [...order.keys()].sort((a, b) => {
      const ar = a.status === 'RUNNING';
      const br = b.status === 'RUNNING';
      if (ar !== br) return ar ? -1 : 1;
      const at = ar ? a.startedAt : (a.endedAt ?? a.startedAt);
      const bt = br ? b.startedAt : (b.endedAt ?? b.startedAt);
      return bt - at || (order.get(b) as number) - (order.get(a) as number);
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
    const sawStart = event.type === 'PipelineStartEvent';
    const run: RunState = {
      // A start event creates the status itself; any other joins the run in the middle.
      status: joinedStatus(event),
      sawStart,
      firstAt: at,
      extras: new Map(),
      logs: [],
      failedStep: null,
      retries: 0,
      order: this.#order++,
      view: null,
    };
    this.#runs.set(event.run_id, run);
    return run;
  }

  /** The view's own bookkeeping for one applied event (the status is the reducer's). */
  #applyExtras(run: RunState, event: FlowcastEvent, at: number): void {
    switch (event.type) {
      case 'PipelineStartEvent':
        // A (re)start begins the run over: tracking rebuilt its steps.
        run.sawStart = true;
        run.extras.clear();
        run.failedStep = null;
        return;
      case 'PipelineResumeEvent':
        run.failedStep = null;
        for (const name of event.pending_steps) run.extras.delete(name);
        return;
      case 'PipelineErrorEvent':
        run.failedStep = event.step_name ?? null;
        return;
      case 'StepLogEvent':
        for (const line of event.lines) run.logs.push({ step: event.step_name, line });
        if (run.logs.length > this.#logLines) run.logs.splice(0, run.logs.length - this.#logLines);
        return;
      case 'StepStartEvent': {
        const x = extraOf(run, event.step_name);
        x.items = event.items ?? null;
        x.itemsDone = 0;
        x.itemsMessage = event.items === undefined ? null : `0/${event.items} items`;
        x.stepAttempt = event.attempt;
        x.itemRetry = false;
        x.retryAt = null;
        return;
      }
      case 'StepProgressEvent': {
        const x = extraOf(run, event.step_name);
        // An item step's bar counts finished items; progress reported by one item's task
        // (same event type, no item count in the message) would make it jump back and forth.
        const m = x.items === null ? null : ITEMS_MESSAGE.exec(event.message ?? '');
        if (m === null) return;
        x.itemsDone = Number(m[1]) / Math.max(1, Number(m[2]));
        x.itemsMessage = event.message ?? null;
        x.itemRetry = false;
        return;
      }
      case 'StepRetryEvent': {
        const x = extraOf(run, event.step_name);
        run.retries++;
        x.itemRetry = event.item !== undefined && x.items !== null;
        if (x.itemRetry) return;
        x.retryAttempt = event.attempt;
        x.retryAt = at + event.delay_ms;
        return;
      }
      case 'StepCompleteEvent':
      case 'StepErrorEvent': {
        const x = extraOf(run, event.step_name);
        x.stepAttempt = event.attempt;
        x.itemRetry = false;
        x.retryAt = null;
        if (event.type === 'StepCompleteEvent' && x.items !== null) {
          x.itemsDone = 1;
          x.itemsMessage = `${x.items}/${x.items} items`;
        }
        return;
      }
      default:
    }
  }

  #view(run: RunState): RunView {
    if (run.view !== null) return run.view;
    const s = run.status;
    const steps = s.steps.map((step) => stepView(step, run.extras.get(step.step_name), run.sawStart));
    steps.sort((a, b) => a.index - b.index);
    run.view = {
      runId: s.run_id,
      pipelineId: s.pipeline_id,
      pipelineType: run.sawStart ? s.pipeline_type : null,
      status: viewStatus(s.status),
      startedAt: run.sawStart && s.started_at !== null ? Date.parse(s.started_at) : run.firstAt,
      endedAt: parseTime(s.completed_at),
      durationMs: s.duration_ms,
      steps,
      logs: [...run.logs],
      error: s.error,
      failedStep: run.failedStep,
      retries: run.retries,
      lastSeq: s.last_seq,
    };
    return run.view;
  }

  #count(status: PipelineRunStatus, by: 1 | -1): void {
    const t = this.#totals;
    if (status === 'COMPLETED') t.completed += by;
    else if (status === 'FAILED') t.failed += by;
    else if (status === 'CANCELLED') t.cancelled += by;
    else t.running += by;
  }

  #evict(): void {
    while (this.#runs.size > this.#maxRuns) {
      let oldest: RunState | null = null;
      let oldestEnd = 0;
      for (const r of this.#runs.values()) {
        if (r.status.status === 'RUNNING') continue;
        const end = parseTime(r.status.completed_at) ?? 0;
        if (oldest === null || end < oldestEnd) {
          oldest = r;
          oldestEnd = end;
        }
      }
      if (oldest === null) return;
      this.#runs.delete(oldest.status.run_id);
      this.#evicted.add(oldest.status.run_id);
      if (this.#evicted.size > EVICTED_MEMORY) {
        const first = this.#evicted.values().next().value;
        if (first !== undefined) this.#evicted.delete(first);
      }
    }
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

function extraOf(run: RunState, step: string): StepExtra {
  let x = run.extras.get(step);
  if (x === undefined) {
    x = newStepExtra();
    run.extras.set(step, x);
  }
  return x;
}
