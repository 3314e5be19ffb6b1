/**
 * OpenTelemetry spans of runs and steps with the in-memory broker, checked with the real
 * OTel SDK: a BasicTracerProvider, an InMemorySpanExporter and the AsyncLocalStorage
 * context manager, registered globally like an application would.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SpanStatusCode, context, propagation, trace, type SpanContext } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { DataflowPipeline, InMemoryBroker, Pipeline } from '../src/index.js';
import { getEngine } from '../src/pipeline/engine.js';
import { waitUntil } from './helpers/collect.js';

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const brokers: InMemoryBroker[] = [];

beforeAll(() => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(provider);
});
afterEach(async () => {
  await Promise.all(brokers.splice(0).map((b) => b.close()));
  exporter.reset();
  propagation.disable();
});
afterAll(async () => {
  trace.disable();
  context.disable();
  await provider.shutdown();
});

function newBroker(): InMemoryBroker {
  const broker = new InMemoryBroker();
  brokers.push(broker);
  return broker;
}

const spans = (): ReadableSpan[] => exporter.getFinishedSpans();
const named = (name: string): ReadableSpan[] => spans().filter((s) => s.name === name);
const runSpanOf = (runId: string): ReadableSpan | undefined => spans().find((s) => s.name.startsWith('flowcast.run ') && s.attributes['flowcast.run.id'] === runId);
const parentOf = (s: ReadableSpan): SpanContext | undefined => s.parentSpanContext;
const sameSpan = (a: SpanContext | undefined, b: SpanContext): boolean => a?.traceId === b.traceId && a.spanId === b.spanId;

describe('tracing (in-memory broker)', () => {
  it('makes a run span under the active span, and a child span per step with the run, step and attempt', async () => {
    const broker = newBroker();
    const inner: SpanContext[] = [];
    const add = broker.task('add', (n: number) => n + 1);
    const dbl = broker.task('dbl', (n: number) => {
      // The task's own spans nest under its step's span.
      const span = trace.getTracer('user-code').startSpan('user.inner');
      inner.push(span.spanContext());
      span.end();
      return n * 2;
    });
    const pipeline = new Pipeline(broker, { id: 'traced_seq' }).callNext(add).callNext(dbl);
    const request = trace.getTracer('app').startSpan('http.request');
    const run = await context.with(trace.setSpan(context.active(), request), () => pipeline.kiq(20));
    await expect(run.waitResult()).resolves.toBe(42);
    request.end();
    await waitUntil(() => runSpanOf(run.runId) !== undefined, 'run span ended', 10_000);

    const runSpan = runSpanOf(run.runId) as ReadableSpan;
    expect(runSpan.name).toBe('flowcast.run traced_seq');
    expect(runSpan.attributes).toMatchObject({ 'flowcast.pipeline.id': 'traced_seq', 'flowcast.run.id': run.runId, 'flowcast.run.status': 'COMPLETED', 'flowcast.pipeline.type': 'sequential' });
    expect(runSpan.status.code).not.toBe(SpanStatusCode.ERROR);
    expect(sameSpan(parentOf(runSpan), request.spanContext())).toBe(true);

    const steps = spans().filter((s) => s.name.startsWith('flowcast.step '));
    expect(steps.map((s) => s.name)).toEqual(['flowcast.step add', 'flowcast.step dbl']);
    for (const [i, s] of steps.entries()) {
      expect(sameSpan(parentOf(s), runSpan.spanContext())).toBe(true);
      expect(s.spanContext().traceId).toBe(request.spanContext().traceId);
      expect(s.attributes).toMatchObject({ 'flowcast.run.id': run.runId, 'flowcast.pipeline.id': 'traced_seq', 'flowcast.step.attempt': 1, 'flowcast.step.index': i });
      expect(s.status.code).not.toBe(SpanStatusCode.ERROR);
    }
    const userSpan = named('user.inner')[0] as ReadableSpan;
    expect(sameSpan(parentOf(userSpan), (steps[1] as ReadableSpan).spanContext())).toBe(true);
    expect(inner[0]?.traceId).toBe(runSpan.spanContext().traceId);
  });

  it('marks the failed step span ERROR with the exception, and the run span FAILED', async () => {
    const broker = newBroker();
    const ok = broker.task('ok', (n: number) => n);
    const boom = broker.task('boom', () => {
      throw new Error('disk full on /data');
    });
    const pipeline = new Pipeline(broker, { id: 'traced_fail' }).callNext(ok).callNext(boom);
    const run = await pipeline.kiq(1);
    await expect(run.waitResult()).rejects.toThrow(/disk full/);
    await waitUntil(() => runSpanOf(run.runId) !== undefined, 'run span ended', 10_000);
    const runSpan = runSpanOf(run.runId) as ReadableSpan;
    expect(runSpan.attributes['flowcast.run.status']).toBe('FAILED');
    expect(runSpan.status).toMatchObject({ code: SpanStatusCode.ERROR, message: expect.stringMatching(/disk full/) as string });
    const failed = named('flowcast.step boom')[0] as ReadableSpan;
    expect(failed.status).toMatchObject({ code: SpanStatusCode.ERROR, message: 'Error: disk full on /data' });
    const exception = failed.events.find((e) => e.name === 'exception');
    expect(exception?.attributes).toMatchObject({ 'exception.message': 'disk full on /data', 'exception.type': 'Error' });
    expect(named('flowcast.step ok')[0]?.status.code).not.toBe(SpanStatusCode.ERROR);
    expect(sameSpan(parentOf(failed), runSpan.spanContext())).toBe(true);
  });

  it('makes one span per attempt when a step is retried', async () => {
    const broker = newBroker();
    const flaky = broker.task(
      'flaky',
      (n: number, ctx) => {
        if (ctx.attempt < 3) throw new Error(`attempt ${ctx.attempt} failed`);
        return n;
      },
      { retries: 3, retryDelayMs: 5 },
    );
    const pipeline = new Pipeline(broker, { id: 'traced_retry' }).callNext(flaky);
    const run = await pipeline.kiq(7);
    await expect(run.waitResult()).resolves.toBe(7);
    await waitUntil(() => runSpanOf(run.runId) !== undefined, 'run span ended', 10_000);
    const runSpan = runSpanOf(run.runId) as ReadableSpan;
    const attempts = named('flowcast.step flaky').sort((a, b) => Number(a.attributes['flowcast.step.attempt']) - Number(b.attributes['flowcast.step.attempt']));
    expect(attempts.map((s) => [s.attributes['flowcast.step.attempt'], s.status.code])).toEqual([
      [1, SpanStatusCode.ERROR],
      [2, SpanStatusCode.ERROR],
      [3, SpanStatusCode.UNSET],
    ]);
    expect(new Set(attempts.map((s) => s.spanContext().spanId)).size).toBe(3);
    for (const s of attempts) expect(sameSpan(parentOf(s), runSpan.spanContext())).toBe(true);
    expect(runSpan.attributes['flowcast.run.status']).toBe('COMPLETED');
  });

  it('gives DAG steps and map items their own spans under the run span', async () => {
    const broker = newBroker();
    const inc = broker.task('inc', (n: number) => n + 1);
    const join = broker.task('join', (d: Record<string, number>) => Object.values(d).reduce((a, b) => a + b, 0));
    const dag = new DataflowPipeline(broker, { id: 'traced_dag' }).step('a', inc).step('b', inc).step('j', join, { dependsOn: ['a', 'b'] });
    const run = await dag.kiq(1);
    await expect(run.waitResult()).resolves.toBe(4);
    await waitUntil(() => runSpanOf(run.runId) !== undefined, 'run span ended', 10_000);
    const runSpan = runSpanOf(run.runId) as ReadableSpan;
    const steps = spans().filter((s) => s.name.startsWith('flowcast.step '));
    expect(steps.map((s) => s.attributes['flowcast.step.name']).sort()).toEqual(['a', 'b', 'j']);
    for (const s of steps) expect(sameSpan(parentOf(s), runSpan.spanContext())).toBe(true);
  });

  it('carries the context in the run record: the global propagator, else a W3C traceparent', async () => {
    const broker = newBroker();
    const t = broker.task('t', (n: number) => n);
    const pipeline = new Pipeline(broker, { id: 'traced_carrier' }).callNext(t);
    const first = await pipeline.kiq(1);
    await first.waitResult();
    await waitUntil(() => runSpanOf(first.runId) !== undefined, 'run span ended', 10_000);
    const sc = (runSpanOf(first.runId) as ReadableSpan).spanContext();
    // No propagator registered: flowcast writes the W3C header itself.
    expect((await getEngine(broker).getRun(first.runId))?.trace).toEqual({ traceparent: `00-${sc.traceId}-${sc.spanId}-01` });

    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    const second = await pipeline.kiq(2);
    await second.waitResult();
    await waitUntil(() => runSpanOf(second.runId) !== undefined, 'run span ended', 10_000);
    const sc2 = (runSpanOf(second.runId) as ReadableSpan).spanContext();
    expect((await getEngine(broker).getRun(second.runId))?.trace).toEqual({ traceparent: `00-${sc2.traceId}-${sc2.spanId}-01` });
    const step = named('flowcast.step t').find((s) => s.attributes['flowcast.run.id'] === second.runId) as ReadableSpan;
    expect(sameSpan(parentOf(step), sc2)).toBe(true);
  });

  it('makes no span and carries nothing when no tracer provider is registered', async () => {
    trace.disable();
    try {
      const broker = newBroker();
      const t = broker.task('t', (n: number) => n);
      const pipeline = new Pipeline(broker, { id: 'untraced' }).callNext(t);
      const run = await pipeline.kiq(1);
      await expect(run.waitResult()).resolves.toBe(1);
      expect((await getEngine(broker).getRun(run.runId))?.trace).toBeUndefined();
      expect(spans()).toEqual([]);
    } finally {
      trace.setGlobalTracerProvider(provider);
    }
  });
});
