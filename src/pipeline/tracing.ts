/**
 * OpenTelemetry spans of runs and steps, through `@opentelemetry/api` only: the
 * application registers (or not) a tracer provider; flowcast never loads an SDK.
 *
 * - `flowcast.run <pipeline>`: one span per run, opened by the process that starts the
 *   run (a child of the span active there) and ended when the run ends, with its status.
 * - `flowcast.step <step>`: one span per call of a step (each attempt its own span), a
 *   child of the run span, in whichever process runs the call; the task runs with it as
 *   the active span, so the task's own instrumentation nests under it.
 *
 * The run span's context travels with the run: it is injected into a carrier (the global
 * propagator's fields, or a W3C `traceparent` when no propagator is registered) stored
 * in the run record, which every step job copies; a worker extracts it as the parent of
 * its step spans. With no tracer provider registered, no span is made: a run and a step
 * each cost one lookup of the global provider.
 */
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  context,
  isSpanContextValid,
  propagation,
  trace,
  ProxyTracerProvider,
  type Context,
  type Span,
  type SpanContext,
  type TextMapGetter,
  type Tracer,
} from '@opentelemetry/api';
import type { StepJob } from './broker.js';
import { describeError, toError } from '../core/errors.js';
import { isTerminalEvent, type FlowcastEvent } from '../events/types.js';
import type { EventTransport } from '../transport/transport.js';

/** The instrumentation scope of flowcast's spans. */
export const TRACER_NAME = 'flowcast';

/** Names of the span attributes flowcast sets. */
export const SpanAttributes = Object.freeze({
  PIPELINE_ID: 'flowcast.pipeline.id',
  PIPELINE_TYPE: 'flowcast.pipeline.type',
  RUN_ID: 'flowcast.run.id',
  RUN_STATUS: 'flowcast.run.status',
  STEP_NAME: 'flowcast.step.name',
  STEP_INDEX: 'flowcast.step.index',
  STEP_ATTEMPT: 'flowcast.step.attempt',
  STEP_ITEM: 'flowcast.step.item',
  TASK_NAME: 'flowcast.task.name',
  TASK_ID: 'flowcast.task.id',
});

/** Trace context fields carried by a run record and its step jobs (`traceparent`, `tracestate`, or a custom propagator's). */
export type TraceCarrier = Record<string, string>;

/** Open run spans one process keeps at most: beyond, the oldest is ended as `RUNNING`. */
const MAX_OPEN_RUN_SPANS = 10_000;
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/**
 * flowcast's tracer from the registered provider, or `null` when none is registered: then
 * no span is made at all (looked up on every use, so a provider registered later counts).
 */
function tracer(): Tracer | null {
  const provider = trace.getTracerProvider();
  if (provider instanceof ProxyTracerProvider) return provider.getDelegateTracer(TRACER_NAME) ?? null;
  return provider.getTracer(TRACER_NAME);
}

const getter: TextMapGetter<TraceCarrier> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => (Object.hasOwn(carrier, key) ? carrier[key] : undefined),
};

/** The carrier of `ctx` (whose span context is `sc`): the global propagator's fields, else (none registered) a W3C `traceparent`. */
function inject(ctx: Context, sc: SpanContext): TraceCarrier {
  const carrier: TraceCarrier = {};
  propagation.inject(ctx, carrier);
  if (Object.keys(carrier).length === 0) carrier.traceparent = `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
  return carrier;
}

/** The parent context a carrier names (global propagator first, then `traceparent`); the active context without a carrier. */
function extract(carrier: TraceCarrier | undefined): Context {
  if (carrier === undefined) return context.active();
  const ctx = propagation.extract(ROOT_CONTEXT, carrier, getter);
  if (trace.getSpanContext(ctx) !== undefined) return ctx;
  const m = TRACEPARENT.exec(carrier.traceparent ?? '');
  if (m === null) return context.active();
  const sc: SpanContext = { traceId: m[1] as string, spanId: m[2] as string, traceFlags: parseInt(m[3] as string, 16), isRemote: true };
  return isSpanContextValid(sc) ? trace.setSpanContext(ROOT_CONTEXT, sc) : context.active();
}

interface OpenRun {
  span: Span;
  off: () => void;
}

/**
 * The run spans one engine opened and not ended yet. Each ends when its run's terminal
 * event reaches this process through the transport (the run may end on any worker).
 */
export class RunSpans {
  readonly #transport: EventTransport;
  readonly #open = new Map<string, OpenRun>();
  readonly #onError: (error: Error, where: string) => void;

  constructor(transport: EventTransport, onError: (error: Error, where: string) => void) {
    this.#transport = transport;
    this.#onError = onError;
  }

  /**
   * Opens the span of a run about to start and returns the carrier to store in its
   * record (`undefined` when there is no trace to carry: no provider, not sampled and no
   * parent). Resolves once the span will see the run's end.
   */
  open(pipelineId: string, pipelineType: string, runId: string): TraceCarrier | undefined | Promise<TraceCarrier | undefined> {
    const t = tracer();
    if (t === null) {
      // No provider here, but a trace may pass through (a propagated context): it goes on to the workers.
      const ctx = context.active();
      const sc = trace.getSpanContext(ctx);
      return sc !== undefined && isSpanContextValid(sc) ? inject(ctx, sc) : undefined;
    }
    const span = t.startSpan(`flowcast.run ${pipelineId}`, {
      kind: SpanKind.INTERNAL,
      attributes: { [SpanAttributes.PIPELINE_ID]: pipelineId, [SpanAttributes.PIPELINE_TYPE]: pipelineType, [SpanAttributes.RUN_ID]: runId },
    });
    const sc = span.spanContext();
    if (!isSpanContextValid(sc)) return undefined;
    const carrier = inject(trace.setSpan(context.active(), span), sc);
    if (!span.isRecording()) return carrier;
    let off: () => void;
    try {
      off = this.#transport.subscribe({ runId }, (event) => {
        if (isTerminalEvent(event)) this.#end(runId, event);
      });
    } catch (error) {
      span.end();
      this.#onError(toError(error), `tracing run ${runId}`);
      return carrier;
    }
    this.#open.set(runId, { span, off });
    if (this.#open.size > MAX_OPEN_RUN_SPANS) this.#endRunning(this.#open.keys().next().value as string);
    const active = this.#transport.subscribed?.();
    return active === undefined ? carrier : active.then(() => carrier);
  }

  /** The run did not start after all (its record could not be stored): ends its span with the error. */
  failed(runId: string, error: unknown): void {
    const open = this.#take(runId);
    if (open === undefined) return;
    open.span.recordException(toError(error));
    open.span.setStatus({ code: SpanStatusCode.ERROR, message: describeError(error) });
    open.span.end();
  }

  /** Ends every open run span as `RUNNING` (this process stops following them). */
  closeAll(): void {
    for (const runId of [...this.#open.keys()]) this.#endRunning(runId);
  }

  #take(runId: string): OpenRun | undefined {
    const open = this.#open.get(runId);
    if (open === undefined) return undefined;
    this.#open.delete(runId);
    open.off();
    return open;
  }

  #endRunning(runId: string): void {
    const open = this.#take(runId);
    if (open === undefined) return;
    open.span.setAttribute(SpanAttributes.RUN_STATUS, 'RUNNING');
    open.span.end();
  }

  #end(runId: string, event: FlowcastEvent): void {
    const open = this.#take(runId);
    if (open === undefined) return;
    const { span } = open;
    if (event.type === 'PipelineCompleteEvent') {
      span.setAttribute(SpanAttributes.RUN_STATUS, 'COMPLETED');
    } else if (event.type === 'PipelineErrorEvent') {
      span.setAttribute(SpanAttributes.RUN_STATUS, 'FAILED');
      span.setStatus({ code: SpanStatusCode.ERROR, message: event.error });
    } else if (event.type === 'PipelineCancelledEvent') {
      span.setAttribute(SpanAttributes.RUN_STATUS, 'CANCELLED');
      span.setStatus({ code: SpanStatusCode.ERROR, message: `cancelled: ${event.reason}` });
    }
    span.end();
  }
}

/** The span of one call of a step, while it runs. */
export interface StepSpan {
  /** Runs `fn` with the step span active (the task's own spans nest under it). */
  run<T>(fn: () => T): T;
  /** Ends the span: OK, or ERROR with the exception. */
  end(error?: unknown): void;
}

const NOOP_STEP: StepSpan = { run: (fn) => fn(), end: () => undefined };

/** Opens the span of a call of a step: a child of the run span its job carries. */
export function startStepSpan(job: StepJob): StepSpan {
  const t = tracer();
  if (t === null) return NOOP_STEP;
  const parent = extract(job.trace);
  const attributes: Record<string, string | number> = {
    [SpanAttributes.PIPELINE_ID]: job.pipeline_id,
    [SpanAttributes.RUN_ID]: job.run_id,
    [SpanAttributes.STEP_NAME]: job.step,
    [SpanAttributes.STEP_INDEX]: job.step_index,
    [SpanAttributes.STEP_ATTEMPT]: job.attempt,
    [SpanAttributes.TASK_NAME]: job.task,
    [SpanAttributes.TASK_ID]: job.job_id,
  };
  if (job.item !== undefined) attributes[SpanAttributes.STEP_ITEM] = job.item;
  const span = t.startSpan(`flowcast.step ${job.step}`, { kind: SpanKind.INTERNAL, attributes }, parent);
  if (!span.isRecording()) return NOOP_STEP;
  const active = trace.setSpan(parent, span);
  return {
    run: (fn) => context.with(active, fn),
    end: (error) => {
      if (error !== undefined) {
        span.recordException(toError(error));
        span.setStatus({ code: SpanStatusCode.ERROR, message: describeError(error) });
      }
      span.end();
    },
  };
}
