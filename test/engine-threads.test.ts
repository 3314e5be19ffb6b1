import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CancelledError, ErrorCodes, FlowcastError, Pipeline, type JsonValue, type Task } from '../src/index.js';
import { EventCollector, brokerFactory, expectRunInvariants, indexOf, labels, ofType } from './helpers/collect.js';

const newBroker = brokerFactory();
const FIXTURE = new URL('./fixtures/thread-tasks.mjs', import.meta.url);

function threadTask<I extends JsonValue = JsonValue, O extends JsonValue = JsonValue>(
  broker: ReturnType<typeof newBroker>,
  exportName: string,
  options?: { timeoutMs?: number; retries?: number },
): Task<I, O> {
  return broker.task<I, O>(exportName, { module: FIXTURE, export: exportName }, options);
}

describe('thread tasks', () => {
  it('runs in a worker thread with the step\'s context and returns its result', async () => {
    const broker = newBroker({ threads: true });
    const where = threadTask(broker, 'whereAmI');
    expect(broker.getTask('whereAmI')?.threaded).toBe(true);
    const pipeline = new Pipeline(broker, { id: 'threaded' }).callNext(where);
    const c = new EventCollector(pipeline);
    const run = await pipeline.kiq({ hello: 'thread' });
    const result = await run.waitResult();
    const events = await c.waitForEnd(run.runId);
    expectRunInvariants(events);
    expect(result).toEqual({
      input: { hello: 'thread' },
      isMainThread: false,
      threadId: expect.any(Number) as number,
      runId: run.runId,
      pipelineId: 'threaded',
      stepName: 'whereAmI',
      taskName: 'whereAmI',
      taskId: ofType(events, 'StepStartEvent')[0]?.task_id,
      attempt: 1,
      item: null,
    });
  });

  it('runs the default export, and a module given as an absolute path', async () => {
    const broker = newBroker({ threads: true });
    const byUrl = broker.task<number, number>('triple', { module: FIXTURE });
    const byPath = broker.task<number, number>('triple_path', { module: fileURLToPath(FIXTURE) });
    const run = await new Pipeline(broker).callNext(byUrl).callNext(byPath).kiq(2);
    await expect(run.waitResult()).resolves.toBe(18);
    await expect((await byUrl.kiq(4)).waitResult()).resolves.toBe(12);
  });

  it('delivers ctx.log and ctx.progress from the thread as events, in order, before StepCompleteEvent', async () => {
    const broker = newBroker({ threads: true });
    const chatty = threadTask<number, number>(broker, 'chatty');
    const pipeline = new Pipeline(broker).callNext(chatty);
    const c = new EventCollector(pipeline);
    const run = await pipeline.kiq(50);
    await expect(run.waitResult()).resolves.toBe(50);
    const events = await c.waitForEnd(run.runId);
    expectRunInvariants(events);
    const lines = ofType(events, 'StepLogEvent').flatMap((e) => e.lines);
    expect(lines).toEqual([...Array.from({ length: 50 }, (_, i) => `line ${i}`), 'multi', 'line', 'last']);
    expect(ofType(events, 'StepProgressEvent').map((e) => [e.progress, e.message])).toEqual(
      [0, 10, 20, 30, 40].map((i) => [i / 50, `at ${i}`]),
    );
    const complete = indexOf(events, 'StepCompleteEvent:chatty');
    events.forEach((e, i) => {
      if (e.type === 'StepLogEvent' || e.type === 'StepProgressEvent') expect(i).toBeLessThan(complete);
    });
  });

  it('retries a failing thread call, keeping the failed attempt\'s log lines before its StepRetryEvent', async () => {
    const broker = newBroker({ threads: true });
    const failsFirst = threadTask<number, number>(broker, 'failsFirst');
    const pipeline = new Pipeline(broker).callNext(failsFirst, { retries: 1 });
    const c = new EventCollector(pipeline);
    const run = await pipeline.kiq(5);
    await expect(run.waitResult()).resolves.toBe(1005);
    const events = await c.waitForEnd(run.runId);
    expectRunInvariants(events);
    expect(labels(events)).toEqual([
      'PipelineStartEvent',
      'StepStartEvent:failsFirst',
      'StepLogEvent:failsFirst',
      'StepRetryEvent:failsFirst',
      'StepStartEvent:failsFirst',
      'StepCompleteEvent:failsFirst',
      'PipelineCompleteEvent',
    ]);
    expect(ofType(events, 'StepRetryEvent')[0]?.error).toContain('thread attempt 1 failed for 5');
  });

  it('fails the step with the thread\'s error', async () => {
    const broker = newBroker({ threads: true });
    const pipeline = new Pipeline(broker).callNext(threadTask(broker, 'alwaysFails'));
    const c = new EventCollector(pipeline);
    const run = await pipeline.kiq(null);
    await expect(run.waitResult()).rejects.toThrow('thread boom');
    const events = await c.waitForEnd(run.runId);
    expectRunInvariants(events);
    expect(ofType(events, 'StepErrorEvent')[0]?.error).toContain('thread boom');
  });

  it('checks thread results like any other: undefined becomes null, non-JSON fails', async () => {
    const broker = newBroker({ threads: true });
    await expect((await new Pipeline(broker).callNext(threadTask(broker, 'returnsNothing')).kiq(null)).waitResult()).resolves.toBeNull();
    const err = await (await new Pipeline(broker).callNext(threadTask(broker, 'returnsDate'), { retries: 2 }).kiq(null))
      .waitResult()
      .catch((e: unknown) => e);
    expect((err as Error).message).toContain('NotJsonError');
  });

  it('throws in the thread on progress outside 0..1', async () => {
    const broker = newBroker({ threads: true });
    const run = await new Pipeline(broker).callNext(threadTask(broker, 'badProgress')).kiq(null);
    await expect(run.waitResult()).rejects.toThrow(/from 0 to 1/);
  });

  it('fails the step when the export is missing or not a function', async () => {
    const broker = newBroker({ threads: true });
    await expect((await new Pipeline(broker).callNext(threadTask(broker, 'notAFunction')).kiq(null)).waitResult()).rejects.toThrow(
      'no exported function "notAFunction"',
    );
    await expect((await new Pipeline(broker).callNext(threadTask(broker, 'nowhere')).kiq(null)).waitResult()).rejects.toThrow(
      'no exported function "nowhere"',
    );
  });

  it('runs map items in parallel threads and keeps their order', async () => {
    const broker = newBroker({ threads: { maxThreads: 3 } });
    const triple = broker.task<number, number>('triple', { module: FIXTURE });
    const run = await new Pipeline(broker).map(triple).kiq([1, 2, 3, 4, 5, 6, 7]);
    await expect(run.waitResult()).resolves.toEqual([3, 6, 9, 12, 15, 18, 21]);
  });

  it('terminates the thread of a call that timed out, freeing it for the next call', async () => {
    const broker = newBroker({ threads: { maxThreads: 1 } });
    const spin = threadTask(broker, 'spin', { timeoutMs: 100 });
    const triple = broker.task<number, number>('triple', { module: FIXTURE });
    const pipeline = new Pipeline(broker).callNext(spin);
    const c = new EventCollector(pipeline);
    const run = await pipeline.kiq(null);
    await expect(run.waitResult()).rejects.toThrow('timed out after 100ms');
    expect(ofType(await c.waitForEnd(run.runId), 'StepErrorEvent')[0]?.error).toContain('TimeoutError');
    // One thread only: this call can run only if the spinning thread was terminated.
    await expect((await new Pipeline(broker).callNext(triple).kiq(3)).waitResult({ timeoutMs: 10_000 })).resolves.toBe(9);
  });

  it('terminates the thread of a cancelled call', async () => {
    const broker = newBroker({ threads: { maxThreads: 1 } });
    const spin = threadTask(broker, 'spin');
    const triple = broker.task<number, number>('triple', { module: FIXTURE });
    const pipeline = new Pipeline(broker).callNext(spin);
    const c = new EventCollector(pipeline);
    const run = await pipeline.kiq(null);
    await c.waitForType('StepStartEvent', 'spin');
    await expect(run.cancel()).resolves.toBe(true);
    await expect(run.waitResult()).rejects.toThrow(CancelledError);
    await expect((await triple.kiq(5)).waitResult({ timeoutMs: 10_000 })).resolves.toBe(15);
  });

  it('needs a broker with threads, and a module given as a URL or an absolute path', () => {
    const plain = newBroker();
    const err = (() => {
      try {
        plain.task('t', { module: FIXTURE });
      } catch (e) {
        return e as FlowcastError;
      }
      return null;
    })();
    expect(err?.code).toBe(ErrorCodes.INVALID_ARGUMENT);
    expect(err?.message).toContain('threads: true');
    const threaded = newBroker({ threads: true });
    expect(() => threaded.task('t', { module: './fixtures/thread-tasks.mjs' })).toThrow(/file: URL or an absolute path/);
    expect(() => threaded.task('t', 42 as unknown as { module: string })).toThrow(FlowcastError);
  });
});
