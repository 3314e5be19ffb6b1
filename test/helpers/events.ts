/**
 * Builds realistic event sequences of one run for tracking tests: seq from 1 without
 * gaps, `v: 1`, a unique `event_id`, and timestamps from a clock the test advances.
 *
 * @example
 * const run = new RunEvents({ runId: 'r1', steps: ['fetch', 'parse'] });
 * run.start(); run.stepStart('fetch'); run.advance(120); run.stepComplete('fetch', 42);
 */
import { randomUUID } from 'node:crypto';
import type { JsonValue } from '../../src/core/json.js';
import type {
  DagDescriptor,
  FlowcastEvent,
  PipelineCancelledEvent,
  PipelineCompleteEvent,
  PipelineErrorEvent,
  PipelineStartEvent,
  PipelineType,
  StepCompleteEvent,
  StepDescriptor,
  StepErrorEvent,
  StepLogEvent,
  StepProgressEvent,
  StepRetryEvent,
  StepSkipEvent,
  StepStartEvent,
} from '../../src/events/types.js';
import type { PipelineStatus } from '../../src/tracking/models.js';
import { applyEvent } from '../../src/tracking/reducer.js';

export interface RunEventsOptions {
  /** @default "pipe" */
  pipelineId?: string;
  /** @default a random UUID */
  runId?: string;
  /** Time of the start event. @default 2024-05-01T10:00:00.000Z */
  start?: Date | string | number;
  /** @default "sequential" */
  pipelineType?: PipelineType;
  /** Step names (sequential: each depends on the previous) or full descriptors. @default ["a", "b", "c"] */
  steps?: (string | StepDescriptor)[];
  /** @default { n: 1 } */
  input?: JsonValue;
  dag?: DagDescriptor;
}

export const DEFAULT_START = '2024-05-01T10:00:00.000Z';

type Omitted<T> = Omit<T, 'v' | 'event_id' | 'pipeline_id' | 'run_id' | 'seq' | 'timestamp'>;

export class RunEvents {
  readonly pipelineId: string;
  readonly runId: string;
  readonly pipelineType: PipelineType;
  readonly steps: StepDescriptor[];
  readonly input: JsonValue;
  readonly dag: DagDescriptor | undefined;
  readonly events: FlowcastEvent[] = [];
  /** Clock of the next event, epoch ms. */
  now: number;
  readonly startedAt: number;
  #seq = 0;
  readonly #stepStarts = new Map<string, number>();
  readonly #attempts = new Map<string, number>();

  constructor(options: RunEventsOptions = {}) {
    this.pipelineId = options.pipelineId ?? 'pipe';
    this.runId = options.runId ?? randomUUID();
    this.pipelineType = options.pipelineType ?? 'sequential';
    this.input = options.input ?? { n: 1 };
    this.dag = options.dag;
    this.now = new Date(options.start ?? DEFAULT_START).getTime();
    this.startedAt = this.now;
    const steps = options.steps ?? ['a', 'b', 'c'];
    this.steps = steps.map((s, i) =>
      typeof s === 'string'
        ? { step_name: s, step_index: i, kind: 'call', tasks: [`task_${s}`], depends_on: i === 0 || this.pipelineType === 'dataflow' ? [] : [stepName(steps[i - 1])] }
        : s,
    );
  }

  /** Moves the clock forward. */
  advance(ms: number): this {
    this.now += ms;
    return this;
  }

  #push<E extends FlowcastEvent>(fields: Omitted<E>): E {
    const event = {
      v: 1,
      event_id: randomUUID(),
      pipeline_id: this.pipelineId,
      run_id: this.runId,
      seq: ++this.#seq,
      timestamp: new Date(this.now).toISOString(),
      ...fields,
    } as unknown as E;
    this.events.push(event);
    return event;
  }

  #step(name: string): StepDescriptor {
    const s = this.steps.find((d) => d.step_name === name);
    if (s === undefined) throw new Error(`RunEvents: no step "${name}"`);
    return s;
  }

  #stepFields(name: string): { step_name: string; step_index: number; task_id: string } {
    return { step_name: name, step_index: this.#step(name).step_index, task_id: `job-${this.runId}-${name}` };
  }

  start(): PipelineStartEvent {
    const fields: Omitted<PipelineStartEvent> = { type: 'PipelineStartEvent', pipeline_type: this.pipelineType, input: this.input, steps: this.steps };
    if (this.dag !== undefined) fields.dag = this.dag;
    return this.#push<PipelineStartEvent>(fields);
  }

  stepStart(name: string, attempt = 1): StepStartEvent {
    this.#stepStarts.set(name, this.now);
    this.#attempts.set(name, attempt);
    return this.#push<StepStartEvent>({ type: 'StepStartEvent', ...this.#stepFields(name), attempt, task_name: this.#step(name).tasks[0] ?? name });
  }

  #duration(name: string): number {
    return this.now - (this.#stepStarts.get(name) ?? this.now);
  }

  stepComplete(name: string, result: JsonValue = null): StepCompleteEvent {
    return this.#push<StepCompleteEvent>({
      type: 'StepCompleteEvent',
      ...this.#stepFields(name),
      result,
      duration_ms: this.#duration(name),
      attempt: this.#attempts.get(name) ?? 1,
    });
  }

  stepError(name: string, error: string): StepErrorEvent {
    return this.#push<StepErrorEvent>({
      type: 'StepErrorEvent',
      ...this.#stepFields(name),
      error,
      duration_ms: this.#duration(name),
      attempt: this.#attempts.get(name) ?? 1,
    });
  }

  /** The attempt that failed was the current one; the next is `current + 1`. */
  stepRetry(name: string, error: string, delayMs = 100): StepRetryEvent {
    const attempt = (this.#attempts.get(name) ?? 1) + 1;
    return this.#push<StepRetryEvent>({ type: 'StepRetryEvent', ...this.#stepFields(name), attempt, delay_ms: delayMs, error });
  }

  stepProgress(name: string, progress: number, message?: string): StepProgressEvent {
    const fields: Omitted<StepProgressEvent> = { type: 'StepProgressEvent', ...this.#stepFields(name), progress, attempt: this.#attempts.get(name) ?? 1 };
    if (message !== undefined) fields.message = message;
    return this.#push<StepProgressEvent>(fields);
  }

  stepLog(name: string, lines: string[]): StepLogEvent {
    return this.#push<StepLogEvent>({ type: 'StepLogEvent', ...this.#stepFields(name), lines, attempt: this.#attempts.get(name) ?? 1 });
  }

  stepSkip(name: string, reason: string): StepSkipEvent {
    return this.#push<StepSkipEvent>({ type: 'StepSkipEvent', step_name: name, step_index: this.#step(name).step_index, reason });
  }

  complete(result: JsonValue = null): PipelineCompleteEvent {
    return this.#push<PipelineCompleteEvent>({
      type: 'PipelineCompleteEvent',
      pipeline_type: this.pipelineType,
      status: 'COMPLETED',
      duration_ms: this.now - this.startedAt,
      result,
    });
  }

  fail(error: string, stepName?: string): PipelineErrorEvent {
    const fields: Omitted<PipelineErrorEvent> = {
      type: 'PipelineErrorEvent',
      pipeline_type: this.pipelineType,
      status: 'FAILED',
      error,
      duration_ms: this.now - this.startedAt,
    };
    if (stepName !== undefined) fields.step_name = stepName;
    return this.#push<PipelineErrorEvent>(fields);
  }

  cancel(reason = 'cancelled by request'): PipelineCancelledEvent {
    return this.#push<PipelineCancelledEvent>({
      type: 'PipelineCancelledEvent',
      pipeline_type: this.pipelineType,
      status: 'CANCELLED',
      reason,
      duration_ms: this.now - this.startedAt,
    });
  }
}

function stepName(s: string | StepDescriptor | undefined): string {
  return typeof s === 'string' ? s : (s?.step_name ?? '');
}

export interface ScriptedStep {
  name: string;
  /** How long the step runs. */
  ms: number;
  /** The step fails with this error (the run fails, the rest is skipped). */
  error?: string;
  result?: JsonValue;
}

export interface ScriptedRunOptions extends Omit<RunEventsOptions, 'steps'> {
  steps: ScriptedStep[];
  /** End: run to completion (or failure) by default; `"cancel"` cancels during the last started step; `"running"` stops before the end. */
  end?: 'natural' | 'cancel' | 'running';
  /** Cancel or stop at this step (started, not ended). Only with end "cancel" / "running". */
  stopAt?: string;
}

/**
 * A whole sequential run as the engine emits it: start, then each step's start and end,
 * then the terminal event (a failure skips the remaining steps, then PipelineErrorEvent).
 */
export function scriptedRun(options: ScriptedRunOptions): RunEvents {
  const { steps, end = 'natural', stopAt, ...rest } = options;
  const run = new RunEvents({ ...rest, steps: steps.map((s) => s.name) });
  run.start();
  let last: JsonValue = null;
  for (let i = 0; i < steps.length; i++) {
    const s = steps[i] as ScriptedStep;
    run.stepStart(s.name);
    if (end !== 'natural' && stopAt === s.name) {
      run.advance(s.ms);
      if (end === 'cancel') {
        for (const later of steps.slice(i + 1)) run.stepSkip(later.name, 'run cancelled');
        run.cancel();
      }
      return run;
    }
    run.advance(s.ms);
    if (s.error !== undefined) {
      run.stepError(s.name, s.error);
      for (const later of steps.slice(i + 1)) run.stepSkip(later.name, `pipeline failed at step "${s.name}"`);
      run.fail(`Pipeline failed at step '${s.name}': ${s.error}`, s.name);
      return run;
    }
    last = s.result ?? i;
    run.stepComplete(s.name, last);
  }
  if (end === 'natural') run.complete(last);
  return run;
}

/** Folds events with the reducer, each applied to a fresh copy (the reference result storages must match). */
export function reduce(events: readonly FlowcastEvent[]): PipelineStatus | null {
  let status: PipelineStatus | null = null;
  for (const e of events) status = applyEvent(status === null ? null : structuredClone(status), e) ?? status;
  return status;
}
