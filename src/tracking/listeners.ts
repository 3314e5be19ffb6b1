/**
 * The listeners of a {@link PipelineTrackingManager}: objects with some of the seed's
 * methods (seed 001 §8) and plain functions that get every event (seed 001 §6's
 * `tracking.add_listener(broadcaster.on_status_update)`). They are told about an event
 * once it is stored, in the order they were added; a listener that throws or rejects is
 * reported and never stops the others or the recording.
 */
import { InvalidArgumentError } from '../core/errors.js';
import type { JsonValue } from '../core/json.js';
import { show } from '../core/validate.js';
import type {
  FlowcastEvent,
  PipelineCancelledEvent,
  PipelineCompleteEvent,
  PipelineErrorEvent,
  PipelineStartEvent,
  StepCompleteEvent,
  StepStartEvent,
} from '../events/types.js';
import type { PipelineStatus } from './models.js';

/**
 * Callbacks on tracked runs (seed 001 §8); every method is optional. They are called
 * after the status is stored, in the order listeners were added. A listener that throws
 * or rejects is reported to the manager's `onError` and never stops recording; an async
 * listener is not awaited (the run does not wait for it).
 */
export interface TrackingListener {
  onPipelineStart?(pipelineId: string, event: PipelineStartEvent): void | Promise<void>;
  onStepStart?(pipelineId: string, stepName: string, event: StepStartEvent): void | Promise<void>;
  onStepComplete?(pipelineId: string, stepName: string, result: JsonValue, event: StepCompleteEvent): void | Promise<void>;
  /** Every end of a run: `status.status` is `COMPLETED`, `FAILED` or `CANCELLED`. `status` is the listener's own copy. */
  onPipelineComplete?(
    pipelineId: string,
    status: PipelineStatus,
    event: PipelineCompleteEvent | PipelineErrorEvent | PipelineCancelledEvent,
  ): void | Promise<void>;
  /** A run failed (called before `onPipelineComplete` of the same event). */
  onPipelineError?(pipelineId: string, error: string, event: PipelineErrorEvent): void | Promise<void>;
}

/**
 * A function listener (seed 001 §6): called with every event of every tracked run once
 * the event is stored, logs and progress included, in seq order per run; never twice for
 * one event (a duplicate is not stored again). Same rules as {@link TrackingListener}:
 * not awaited, failures reported to `onError`.
 *
 * @example
 * tracking.addListener((event) => console.log(event.run_id, event.seq, event.type));
 */
export type TrackingEventListener = (event: FlowcastEvent) => void | Promise<void>;

/** The methods a tracking listener object may have. */
export const LISTENER_METHODS = ['onPipelineStart', 'onStepStart', 'onStepComplete', 'onPipelineComplete', 'onPipelineError'] as const;

/** Where a listener failure goes: the error, and which listener, run and event. */
export type ListenerFailure = (error: unknown, where: string) => void;

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

/** Checks a listener given to `addListener`: a function, or an object with at least one known method (and no non-function one). */
export function checkListener(listener: unknown): TrackingListener | TrackingEventListener {
  if (typeof listener === 'function') return listener as TrackingEventListener;
  if (typeof listener !== 'object' || listener === null || Array.isArray(listener)) {
    throw new InvalidArgumentError(`addListener(listener): listener must be a function or an object with some of ${LISTENER_METHODS.join(', ')}, received ${show(listener)}`);
  }
  const o = listener as Record<string, unknown>;
  let any = false;
  for (const m of LISTENER_METHODS) {
    const fn = o[m];
    if (fn === undefined) continue;
    if (typeof fn !== 'function') throw new InvalidArgumentError(`addListener(listener): ${m} must be a function, received ${show(fn)}`);
    any = true;
  }
  if (!any) throw new InvalidArgumentError(`addListener(listener): listener has none of ${LISTENER_METHODS.join(', ')}`);
  return listener;
}

/** The listeners of one manager, and their notification. */
export class TrackingListeners {
  /** Copy on write: a notification in progress keeps iterating the array it started with. */
  #list: (TrackingListener | TrackingEventListener)[] = [];
  readonly #fail: ListenerFailure;

  constructor(fail: ListenerFailure) {
    this.#fail = fail;
  }

  get size(): number {
    return this.#list.length;
  }

  /** Adds a checked listener; returns its disposer. */
  add(listener: unknown): () => void {
    const l = checkListener(listener);
    this.#list = [...this.#list, l];
    return () => {
      this.#list = this.#list.filter((x) => x !== l);
    };
  }

  clear(): void {
    this.#list = [];
  }

  /** Tells every listener about `event`, now stored; `status` is the run's status after it. */
  notify(status: PipelineStatus, event: FlowcastEvent): void {
    const pid = event.pipeline_id;
    for (const l of this.#list) {
      if (typeof l === 'function') {
        this.#call(event, 'function', () => l(event));
        continue;
      }
      switch (event.type) {
        case 'PipelineStartEvent':
          if (l.onPipelineStart) this.#call(event, 'onPipelineStart', () => l.onPipelineStart?.(pid, event));
          break;
        case 'StepStartEvent':
          if (l.onStepStart) this.#call(event, 'onStepStart', () => l.onStepStart?.(pid, event.step_name, event));
          break;
        case 'StepCompleteEvent':
          if (l.onStepComplete) this.#call(event, 'onStepComplete', () => l.onStepComplete?.(pid, event.step_name, event.result, event));
          break;
        case 'PipelineErrorEvent':
          // A failure is also an end: onPipelineError, then onPipelineComplete.
          if (l.onPipelineError) this.#call(event, 'onPipelineError', () => l.onPipelineError?.(pid, event.error, event));
          this.#complete(l, status, event);
          break;
        case 'PipelineCompleteEvent':
        case 'PipelineCancelledEvent':
          this.#complete(l, status, event);
          break;
        default:
          break;
      }
    }
  }

  #complete(l: TrackingListener, status: PipelineStatus, event: PipelineCompleteEvent | PipelineErrorEvent | PipelineCancelledEvent): void {
    if (!l.onPipelineComplete) return;
    // Each listener gets its own copy: the storage's object may be the stored one.
    const copy = structuredClone(status);
    this.#call(event, 'onPipelineComplete', () => l.onPipelineComplete?.(event.pipeline_id, copy, event));
  }

  #call(event: FlowcastEvent, method: string, fn: () => unknown): void {
    const where = `listener ${method} (run ${event.run_id}, ${event.type} seq ${event.seq})`;
    try {
      const r = fn();
      if (isPromiseLike(r)) Promise.resolve(r).catch((error: unknown) => this.#fail(error, where));
    } catch (error) {
      this.#fail(error, where);
    }
  }
}
