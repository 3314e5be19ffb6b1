import { describe, expect, it } from 'vitest';
import { CancelledError, DataflowPipeline, ErrorCodes, FlowcastError, Pipeline, TimeoutError, type JsonValue } from '../src/index.js';
import {
  EventCollector,
  brokerFactory,
  deferred,
  expectRunInvariants,
  labels,
  ofType,
  settle,
  untilAborted,
  waitUntil,
} from './helpers/collect.js';

const newBroker = brokerFactory();

describe('step timeouts', () => {
  it('aborts ctx.signal with a TimeoutError and retries the step as a failed attempt', async () => {
    const broker = newBroker();
    const reasons: unknown[] = [];
    const sometimesSlow = broker.task('sometimes_slow', async (n: number, ctx) => {
      if (ctx.attempt > 1) return n;
      ctx.signal.addEventListener('abort', () => reasons.push(ctx.signal.reason), { once: true });
      return await untilAborted(ctx.signal);
    });
    const pipeline = new Pipeline(broker).callNext(sometimesSlow, { timeoutMs: 30, retries: 1 });
    const c = new EventCollector(pipeline);
    const run = await pipeline.kiq(5);
    await expect(run.waitResult()).resolves.toBe(5);
    expect(reasons).toHaveLength(1);
    expect(reasons[0]).toBeInstanceOf(TimeoutError);
    expect((reasons[0] as TimeoutError).code).toBe(ErrorCodes.TIMEOUT);
    const events = await c.waitForEnd(run.runId);
    expectRunInvariants(events);
    expect(labels(events)).toEqual([
      'PipelineStartEvent',
      'StepStartEvent:sometimes_slow',
      'StepRetryEvent:sometimes_slow',
      'StepStartEvent:sometimes_slow',
      'StepCompleteEvent:sometimes_slow',
      'PipelineCompleteEvent',
    ]);
    expect(ofType(events, 'StepRetryEvent')[0]?.error).toBe('TimeoutError: Task "sometimes_slow" timed out after 30ms');
  });

  it('fails the step for good once every attempt timed out, even when the task ignores its signal', async () => {
    const broker = newBroker();
    const release = deferred();
    let calls = 0;
    const stubborn = broker.task(
      'stubborn',
      async () => {
        calls++;
        await release.promise;
        return 'too late';
      },
      { timeoutMs: 20 },
    );
    const pipeline = new Pipeline(broker).callNext(stubborn, { retries: 1 });
    const c = new EventCollector(pipeline);
    const run = await pipeline.kiq(null);
    const err = await run.waitResult().catch((e: unknown) => e);
    expect((err as FlowcastError).code).toBe(ErrorCodes.PIPELINE_FAILED);
    expect((err as Error).message).toContain('timed out after 20ms');
    expect(calls).toBe(2);
    const events = await c.waitForEnd(run.runId);
    expectRunInvariants(events);
    expect(ofType(events, 'StepErrorEvent')[0]).toMatchObject({ attempt: 2, error: 'TimeoutError: Task "stubborn" timed out after 20ms' });
    release.resolve();
    await broker.onIdle();
    expect((await broker.transport.read(run.runId)).events).toHaveLength(events.length);
  });
});

describe('pipeline timeoutMs', () => {
  it('ends the run with PipelineErrorEvent saying it timed out, aborting the running step and skipping the rest', async () => {
    const broker = newBroker();
    const reasons: unknown[] = [];
    let laterCalls = 0;
    const first = broker.task('first', (n: number) => n);
    const hang = broker.task('hang', async (_: JsonValue, ctx) => {
      ctx.signal.addEventListener('abort', () => reasons.push(ctx.signal.reason), { once: true });
      return await untilAborted(ctx.signal);
    });
    const later = broker.task('later', () => {
      laterCalls++;
      return null;
    });
    const pipeline = new Pipeline(broker, { id: 'deadline', timeoutMs: 50 }).callNext(first).callNext(hang).callNext(later);
    const c = new EventCollector(pipeline);
    const run = await pipeline.kiq(1);
    const err = await run.waitResult().catch((e: unknown) => e);
    expect((err as FlowcastError).code).toBe(ErrorCodes.PIPELINE_FAILED);
    expect((err as Error).message).toContain('timed out');
    const events = await c.waitForEnd(run.runId);
    expectRunInvariants(events);
    expect(labels(events)).toEqual([
      'PipelineStartEvent',
      'StepStartEvent:first',
      'StepCompleteEvent:first',
      'StepStartEvent:hang',
      'StepSkipEvent:later',
      'PipelineErrorEvent',
    ]);
    expect(ofType(events, 'PipelineErrorEvent')[0]?.error).toContain('timed out after 50ms');
    expect(ofType(events, 'StepSkipEvent')[0]?.reason).toBe('pipeline timed out');
    await waitUntil(() => reasons.length === 1, 'running step aborted');
    expect(reasons[0]).toBeInstanceOf(FlowcastError);
    expect(laterCalls).toBe(0);
    expect((await run.getRun())?.status).toBe('FAILED');
  });

  it('fires even when the run\'s own steps hold every slot of the broker', async () => {
    const broker = newBroker({ concurrency: 1 });
    const hang = broker.task('hang', (_: JsonValue, ctx) => untilAborted(ctx.signal));
    const pipeline = new Pipeline(broker, { timeoutMs: 50 }).callNext(hang);
    const c = new EventCollector(pipeline);
    const run = await pipeline.kiq(null);
    try {
      const err = await run.waitResult({ timeoutMs: 5_000 }).catch((e: unknown) => e);
      expect((err as FlowcastError).code).toBe(ErrorCodes.PIPELINE_FAILED);
      expect((err as Error).message).toContain('timed out');
      expectRunInvariants(await c.waitForEnd(run.runId));
    } finally {
      await run.cancel();
    }
  });

  it('leaves no pending deadline behind once the run ended', async () => {
    const broker = newBroker();
    const add = broker.task('add', (n: number) => n + 1);
    const run = await new Pipeline(broker, { timeoutMs: 60_000 }).callNext(add).kiq(1);
    await expect(run.waitResult()).resolves.toBe(2);
    await waitUntil(() => broker.delayed === 0, 'deadline removed');
  });
});

describe('#cancel', () => {
  it('aborts the running step, skips the rest, ends with PipelineCancelledEvent and rejects waitResult with CancelledError', async () => {
    const broker = newBroker();
    const reasons: unknown[] = [];
    let laterCalls = 0;
    const wait = broker.task('wait', async (_: JsonValue, ctx) => {
      ctx.signal.addEventListener('abort', () => reasons.push(ctx.signal.reason), { once: true });
      return await untilAborted(ctx.signal);
    });
    const later = broker.task('later', () => {
      laterCalls++;
      return null;
    });
    const pipeline = new Pipeline(broker, { id: 'cancellable' }).callNext(wait).callNext(later).callNext(later);
    const c = new EventCollector(pipeline);
    const run = await pipeline.kiq(null);
    const result = run.waitResult().catch((e: unknown) => e);
    await c.waitForType('StepStartEvent', 'wait');
    await expect(run.cancel('user pressed stop')).resolves.toBe(true);
    const err = await result;
    expect(err).toBeInstanceOf(CancelledError);
    expect((err as FlowcastError).code).toBe(ErrorCodes.CANCELLED);
    expect((err as Error).message).toContain('user pressed stop');
    await waitUntil(() => reasons.length === 1, 'running step aborted');
    expect(reasons[0]).toBeInstanceOf(CancelledError);
    const events = await c.waitForEnd(run.runId);
    expectRunInvariants(events);
    expect(labels(events)).toEqual([
      'PipelineStartEvent',
      'StepStartEvent:wait',
      'StepSkipEvent:later',
      'StepSkipEvent:later_2',
      'PipelineCancelledEvent',
    ]);
    expect(ofType(events, 'PipelineCancelledEvent')[0]).toMatchObject({ status: 'CANCELLED', reason: 'user pressed stop' });
    expect(ofType(events, 'StepSkipEvent').map((e) => e.reason)).toEqual(['run cancelled', 'run cancelled']);
    expect(laterCalls).toBe(0);
    expect((await run.getRun())?.status).toBe('CANCELLED');
    await expect(run.waitResult()).rejects.toThrow(CancelledError);
  });

  it('returns false for a run that already ended, and changes nothing', async () => {
    const broker = newBroker();
    const add = broker.task('add', (n: number) => n + 1);
    const pipeline = new Pipeline(broker).callNext(add);
    const c = new EventCollector(pipeline);
    const run = await pipeline.kiq(1);
    await run.waitResult();
    const before = await c.waitForEnd(run.runId);
    await expect(run.cancel()).resolves.toBe(false);
    await expect(run.waitResult()).resolves.toBe(2);
    expect((await broker.transport.read(run.runId)).events).toEqual(before);
    expect((await run.getRun())?.status).toBe('COMPLETED');
  });

  it('returns true only once when cancelled twice', async () => {
    const broker = newBroker();
    const wait = broker.task('wait', (_: JsonValue, ctx) => untilAborted(ctx.signal));
    const run = await new Pipeline(broker).callNext(wait).kiq(null);
    const results = await Promise.all([run.cancel(), run.cancel()]);
    expect(results.sort()).toEqual([false, true]);
    await expect(run.waitResult()).rejects.toThrow(CancelledError);
  });

  it('drops whatever a step that ignores its signal does after the cancel', async () => {
    const broker = newBroker();
    const release = deferred();
    let nextCalls = 0;
    const stubborn = broker.task('stubborn', async (_: JsonValue, ctx) => {
      await release.promise;
      ctx.log('still running after the cancel');
      ctx.progress(1);
      return 'ignored';
    });
    const next = broker.task('next', () => {
      nextCalls++;
      return null;
    });
    const pipeline = new Pipeline(broker).callNext(stubborn).callNext(next);
    const c = new EventCollector(pipeline);
    const run = await pipeline.kiq(null);
    await c.waitForType('StepStartEvent', 'stubborn');
    await run.cancel();
    release.resolve();
    await broker.onIdle();
    await settle();
    const events = c.forRun(run.runId);
    expectRunInvariants(events);
    expect(events.at(-1)?.type).toBe('PipelineCancelledEvent');
    expect(ofType(events, 'StepLogEvent')).toHaveLength(0);
    expect((await broker.transport.read(run.runId)).events).toEqual(events);
    expect(nextCalls).toBe(0);
  });

  it('ends a run waiting for a retry at once', async () => {
    const broker = newBroker();
    let calls = 0;
    const bad = broker.task('bad', () => {
      calls++;
      throw new Error('retry me later');
    });
    const pipeline = new Pipeline(broker).callNext(bad, { retries: 3, retryDelayMs: 60_000 });
    const c = new EventCollector(pipeline);
    const run = await pipeline.kiq(null);
    await c.waitForType('StepRetryEvent', 'bad');
    await expect(run.cancel()).resolves.toBe(true);
    await expect(run.waitResult()).rejects.toThrow(CancelledError);
    const events = await c.waitForEnd(run.runId);
    expectRunInvariants(events);
    expect(labels(events)).toEqual(['PipelineStartEvent', 'StepStartEvent:bad', 'StepRetryEvent:bad', 'PipelineCancelledEvent']);
    expect(calls).toBe(1);
    // No timer of the ended run is left to keep the process alive for the retry delay.
    await waitUntil(() => broker.delayed === 0, 'pending retry dropped');
  });

  it('drops the pending retries of a run that failed fast', async () => {
    const broker = newBroker();
    const flaky = broker.task('flaky', () => {
      throw new Error('try again much later');
    });
    const bad = broker.task('bad', async () => {
      await settle(2);
      throw new Error('fatal');
    });
    const run = await new DataflowPipeline(broker).step('flaky', flaky, { retries: 1, retryDelayMs: 60_000 }).step('bad', bad).kiq(null);
    await expect(run.waitResult()).rejects.toThrow('fatal');
    await waitUntil(() => broker.delayed === 0, 'pending retry dropped');
  });

  it('skips a step whose job was sent but had not started yet', async () => {
    // One slot, taken by another run: the cancelled run's first step is still queued.
    const broker = newBroker({ concurrency: 1 });
    const gate = deferred();
    let calls = 0;
    const blocker = broker.task('blocker', async () => {
      await gate.promise;
      return null;
    });
    const work = broker.task('work', () => {
      calls++;
      return null;
    });
    const blocking = await new Pipeline(broker).callNext(blocker).kiq(null);
    const pipeline = new DataflowPipeline(broker, { id: 'queued' }).step('a', work).step('b', work);
    const c = new EventCollector(pipeline);
    const run = await pipeline.kiq(null);
    await expect(run.cancel('not needed')).resolves.toBe(true);
    gate.resolve();
    await blocking.waitResult();
    await broker.onIdle();
    const events = await c.waitForEnd(run.runId);
    expectRunInvariants(events);
    expect(labels(events)).toEqual(['PipelineStartEvent', 'StepSkipEvent:a', 'StepSkipEvent:b', 'PipelineCancelledEvent']);
    expect(calls).toBe(0);
  });
});

describe('RunHandle#waitResult', () => {
  it('rejects with WAIT_TIMEOUT when its own limit passes, while the run goes on', async () => {
    const broker = newBroker();
    const gate = deferred();
    const held = broker.task('held', async () => {
      await gate.promise;
      return 'eventually';
    });
    const run = await new Pipeline(broker).callNext(held).kiq(null);
    const err = await run.waitResult({ timeoutMs: 20 }).catch((e: unknown) => e);
    expect((err as FlowcastError).code).toBe(ErrorCodes.WAIT_TIMEOUT);
    expect((await run.getRun())?.status).toBe('RUNNING');
    gate.resolve();
    await expect(run.waitResult()).resolves.toBe('eventually');
  });
});
