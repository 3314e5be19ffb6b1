import type { JsonValue } from '../core/json.js';

/** The schema version carried by every event in `v`. */
export const EVENT_SCHEMA_VERSION = 1 as const;

/** `"sequential"` for {@link Pipeline}, `"dataflow"` for {@link DataflowPipeline}. */
export type PipelineType = 'sequential' | 'dataflow';

/** What a step does with its task(s). */
export type StepKind = 'call' | 'after' | 'map' | 'filter' | 'group';

/** A step as described in `PipelineStartEvent.steps`. */
export interface StepDescriptor {
  step_name: string;
  step_index: number;
  kind: StepKind;
  /** Task names the step runs (one, except for `group`). */
  tasks: string[];
  depends_on: string[];
}

/** The graph of a dataflow run, in `PipelineStartEvent.dag`. */
export interface DagDescriptor {
  nodes: string[];
  /** `[from, to]`: `to` depends on `from`. */
  edges: [string, string][];
}

/** Fields every event carries (DESIGN §2). */
export interface EventBase {
  /** Schema version, `1`. */
  v: typeof EVENT_SCHEMA_VERSION;
  /** Unique id of this event. */
  event_id: string;
  /** The pipeline definition the run belongs to. */
  pipeline_id: string;
  /** The run; many runs share one `pipeline_id`. */
  run_id: string;
  /** Position in the run's log, from 1, gapless. */
  seq: number;
  /** ISO 8601 with milliseconds, taken when the event happened. */
  timestamp: string;
}

interface StepFields {
  step_name: string;
  step_index: number;
  /** Id of the broker job that runs (or ran) the step. */
  task_id: string;
}

/** The first event of a run: its input and every step it may run (and the graph of a dataflow run). */
export interface PipelineStartEvent extends EventBase {
  type: 'PipelineStartEvent';
  pipeline_type: PipelineType;
  input: JsonValue;
  steps: StepDescriptor[];
  /** Present for dataflow runs. */
  dag?: DagDescriptor;
}

/** An attempt of a step started (attempt 1, or a retry after its `StepRetryEvent`). */
export interface StepStartEvent extends EventBase, StepFields {
  type: 'StepStartEvent';
  attempt: number;
  task_name: string;
  /** For map/filter/group steps: how many items or tasks the step runs. */
  items?: number;
}

/** A step finished with a result; its successors may start. */
export interface StepCompleteEvent extends EventBase, StepFields {
  type: 'StepCompleteEvent';
  result: JsonValue;
  /** Wall time from the step's start to its end, in milliseconds. */
  duration_ms: number;
  attempt: number;
}

/** A step failed for good (no retry left, or an error that is not retried). */
export interface StepErrorEvent extends EventBase, StepFields {
  type: 'StepErrorEvent';
  /** `"ErrorName: message"`. */
  error: string;
  duration_ms: number;
  /** The attempt that failed (the last one: a failure that will be retried is a `StepRetryEvent`). */
  attempt: number;
}

/** A step reported progress (`ctx.progress()`, or a map step's finished items). */
export interface StepProgressEvent extends EventBase, StepFields {
  type: 'StepProgressEvent';
  /** 0..1 */
  progress: number;
  message?: string;
  attempt: number;
}

/** Lines a step wrote with `ctx.log()`, in order. */
export interface StepLogEvent extends EventBase, StepFields {
  type: 'StepLogEvent';
  lines: string[];
  attempt: number;
  /** For map/filter/group steps: which item wrote the lines. */
  item?: number;
}

/** An attempt of a step failed and the step runs again after `delay_ms`. */
export interface StepRetryEvent extends EventBase, StepFields {
  type: 'StepRetryEvent';
  /** The attempt that is about to start (2 for the first retry). */
  attempt: number;
  delay_ms: number;
  /** The error of the failed attempt. */
  error: string;
  item?: number;
}

/** A step will not run (a dependency failed, or a condition skipped it). */
export interface StepSkipEvent extends EventBase {
  type: 'StepSkipEvent';
  step_name: string;
  step_index: number;
  /** Why the step will not run, e.g. `dependency "fetch" failed`. */
  reason: string;
}

/** The run ended with a result (terminal: nothing follows it in the log). */
export interface PipelineCompleteEvent extends EventBase {
  type: 'PipelineCompleteEvent';
  pipeline_type: PipelineType;
  status: 'COMPLETED';
  duration_ms: number;
  result: JsonValue;
}

/** The run failed (terminal): a step failed for good, or the run timed out. */
export interface PipelineErrorEvent extends EventBase {
  type: 'PipelineErrorEvent';
  pipeline_type: PipelineType;
  status: 'FAILED';
  error: string;
  duration_ms: number;
  /** The step whose failure ended the run, when one did (not for a run timeout). */
  step_name?: string;
}

/** The run was cancelled (terminal), with the reason given. */
export interface PipelineCancelledEvent extends EventBase {
  type: 'PipelineCancelledEvent';
  pipeline_type: PipelineType;
  status: 'CANCELLED';
  reason: string;
  duration_ms: number;
}

/** One typed map of every event, keyed by `type`. */
export interface EventMap {
  PipelineStartEvent: PipelineStartEvent;
  StepStartEvent: StepStartEvent;
  StepCompleteEvent: StepCompleteEvent;
  StepErrorEvent: StepErrorEvent;
  StepProgressEvent: StepProgressEvent;
  StepLogEvent: StepLogEvent;
  StepRetryEvent: StepRetryEvent;
  StepSkipEvent: StepSkipEvent;
  PipelineCompleteEvent: PipelineCompleteEvent;
  PipelineErrorEvent: PipelineErrorEvent;
  PipelineCancelledEvent: PipelineCancelledEvent;
}

/** The `type` of an event: one of {@link EVENT_TYPES}. */
export type EventType = keyof EventMap;

/** Every event flowcast emits: a discriminated union on `type`. */
export type FlowcastEvent = EventMap[EventType];

/** Distributes `Omit` over a union, keeping the discriminant. */
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** An event before the log gave it `seq` (and before `v`/`event_id` were filled in). */
export type EventDraft = DistributiveOmit<FlowcastEvent, 'seq' | 'v' | 'event_id'>;

/** Every event type, in the order a run emits them. */
export const EVENT_TYPES: readonly EventType[] = [
  'PipelineStartEvent',
  'StepStartEvent',
  'StepCompleteEvent',
  'StepErrorEvent',
  'StepProgressEvent',
  'StepLogEvent',
  'StepRetryEvent',
  'StepSkipEvent',
  'PipelineCompleteEvent',
  'PipelineErrorEvent',
  'PipelineCancelledEvent',
];

/** The three event types that end a run; see {@link isTerminalEvent}. */
export const TERMINAL_EVENT_TYPES: ReadonlySet<EventType> = new Set([
  'PipelineCompleteEvent',
  'PipelineErrorEvent',
  'PipelineCancelledEvent',
]);

/** `true` for the three events that end a run. */
export function isTerminalEvent(
  e: Pick<FlowcastEvent, 'type'>,
): e is PipelineCompleteEvent | PipelineErrorEvent | PipelineCancelledEvent {
  return TERMINAL_EVENT_TYPES.has(e.type);
}

/** `true` when `value` is the name of an event type. */
export function isEventType(value: unknown): value is EventType {
  return typeof value === 'string' && (EVENT_TYPES as readonly string[]).includes(value);
}
