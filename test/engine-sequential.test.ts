import { describe, expect, it } from 'vitest';
import { ErrorCodes, FlowcastError, Pipeline, type JsonValue, type TaskContext } from '../src/index.js';
import {
  EventCollector,
  brokerFactory,
  deferred,
  expectRunInvariants,
  labels,
  ofType,
  settle,
  waitUntil,
} from './helpers/collect.js';

const newBroker = brokerFactory();

describe('Pipeline (sequential)', () => {
  describe('#kiq and results', () => {
    it('passes each result to the next step and emits the seed sequence of events', async () => {
      const broker = newBroker();
      const add = broker.task('add', (n: number) => n + 1);
      const dbl = broker.task('dbl', (n: number) => n * 2);
      const pipeline = new Pipeline(broker, { id: 'demo_workflow' }).callNext(add).callNext(dbl);
      const c = new EventCollector(pipeline);
      const run = await pipeline.kiq(20);
      expect(run.pipelineId).toBe('demo_workflow');
      await expect(run.waitResult()).resolves.toBe(42);
      const events = await c.waitForEnd(run.runId);
      expectRunInvariants(events);
      expect(labels(events)).toEqual([
        'PipelineStartEvent',
        'StepStartEvent:add',
        'StepCompleteEvent:add',
        'StepStartEvent:dbl',
        'StepCompleteEvent:dbl',
        'PipelineCompleteEvent',
      ]);
      const [start] = ofType(events, 'PipelineStartEvent');
      expect(start).toMatchObject({ pipeline_id: 'demo_workflow', run_id: run.runId, pipeline_type: 'sequential', input: 20 });
      expect(start?.steps.map((s) => [s.step_name, s.step_index, s.kind, s.tasks])).toEqual([
        ['add', 0, 'call', ['add']],
        ['dbl', 1, 'call', ['dbl']],
      ]);
      const starts = ofType(events, 'StepStartEvent');
      const completes = ofType(events, 'StepCompleteEvent');
      expect(starts.map((e) => [e.step_index, e.attempt, e.task_name])).toEqual([
        [0, 1, 'add'],
        [1, 1, 'dbl'],
      ]);
      expect(completes.map((e) => e.result)).toEqual([21, 42]);
      completes.forEach((e, i) => {
        expect(e.task_id).toBe(starts[i]?.task_id);
        expect(e.duration_ms).toBeGreaterThanOrEqual(0);
      });
      const [done] = ofType(events, 'PipelineCompleteEvent');
      expect(done).toMatchObject({ status: 'COMPLETED', result: 42, pipeline_type: 'sequential' });
      expect(done?.duration_ms).toBeGreaterThanOrEqual(0);
    });

    it('gives each task a context that names its run, pipeline, step and job', async () => {
      const broker = newBroker();
      const seen: Pick<TaskContext, 'runId' | 'pipelineId' | 'stepName' | 'taskId' | 'attempt' | 'taskName'>[] = [];
      const probe = broker.task('probe', (n: number, ctx) => {
        seen.push({ runId: ctx.runId, pipelineId: ctx.pipelineId, stepName: ctx.stepName, taskId: ctx.taskId, attempt: ctx.attempt, taskName: ctx.taskName });
        return n;
      });
      const pipeline = new Pipeline(broker, { id: 'ctx' }).callNext(probe).callNext(probe, { name: 'second' });
      const c = new EventCollector(pipeline);
      const run = await pipeline.kiq(1);
      await run.waitResult();
      const starts = ofType(await c.waitForEnd(run.runId), 'StepStartEvent');
      expect(seen).toEqual([
        { runId: run.runId, pipelineId: 'ctx', stepName: 'probe', taskId: starts[0]?.task_id, attempt: 1, taskName: 'probe' },
        { runId: run.runId, pipelineId: 'ctx', stepName: 'second', taskId: starts[1]?.task_id, attempt: 1, taskName: 'probe' },
      ]);
    });

    it('names steps after their task, numbering repeats, and takes an explicit name', () => {
      const broker = newBroker();
      const add = broker.task('add', (n: number) => n + 1);
      const dbl = broker.task('dbl', (n: number) => n * 2);
      const pipeline = new Pipeline(broker)
        .callNext(add)
        .callNext(add)
        .callNext(dbl)
        .callNext(add)
        .callNext(add, { name: 'final_add' })
        .group([add, dbl]);
      expect(pipeline.stepNames).toEqual(['add', 'add_2', 'dbl', 'add_3', 'final_add', 'add+dbl']);
      expect(() => pipeline.callNext(dbl, { name: 'final_add' })).toThrowError(
        expect.objectContaining({ code: ErrorCodes.DUPLICATE_STEP, message: expect.stringContaining('final_add') as string }) as Error,
      );
    });

    it('carries the id set with pipeline.pipelineId = ... on every event, and a generated id otherwise', async () => {
      const broker = newBroker();
      const add = broker.task('add', (n: number) => n + 1);
      const anonymous = new Pipeline(broker).callNext(add);
      expect(anonymous.pipelineId).toMatch(/^pipeline-[0-9a-f]{8}$/);
      const pipeline = new Pipeline(broker).callNext(add);
      pipeline.pipelineId = 'renamed_workflow';
      const c = new EventCollector(pipeline);
      const run = await pipeline.kiq(1);
      expect(run.pipelineId).toBe('renamed_workflow');
      await run.waitResult();
      const events = await c.waitForEnd(run.runId);
      expect(new Set(events.map((e) => e.pipeline_id))).toEqual(new Set(['renamed_workflow']));
    });

    it('wraps the previous result with paramName and args', async () => {
      const broker = newBroker();
      const inputs: JsonValue[] = [];
      const echo = broker.task('echo', (input: JsonValue) => {
        inputs.push(input);
        return input;
      });
      const pipeline = new Pipeline(broker).callNext(echo).callNext(echo, { paramName: 'rows', args: { table: 'users', limit: 2 } });
      const run = await pipeline.kiq([1, 2]);
      await expect(run.waitResult()).resolves.toEqual({ table: 'users', limit: 2, rows: [1, 2] });
      expect(inputs).toEqual([[1, 2], { table: 'users', limit: 2, rows: [1, 2] }]);
    });

    it('runs a callAfter step on its args (or null), ignoring the previous result', async () => {
      const broker = newBroker();
      const inputs: JsonValue[] = [];
      const echo = broker.task('echo', (input: JsonValue) => {
        inputs.push(input);
        return input;
      });
      const pipeline = new Pipeline(broker).callNext(echo).callAfter(echo, { args: { fresh: true } }).callAfter(echo);
      const run = await pipeline.kiq('first');
      await expect(run.waitResult()).resolves.toBeNull();
      expect(inputs).toEqual(['first', { fresh: true }, null]);
    });

    it('keeps the run record: status, steps and result', async () => {
      const broker = newBroker();
      const add = broker.task('add', (n: number) => n + 1);
      const run = await new Pipeline(broker, { id: 'rec' }).callNext(add).callNext(add).kiq(1);
      await run.waitResult();
      const rec = await run.getRun();
      expect(rec).toMatchObject({ run_id: run.runId, pipeline_id: 'rec', status: 'COMPLETED', result: 3, input: 1, error: null });
      expect(rec?.steps.add).toMatchObject({ phase: 'COMPLETED', result: 2 });
      expect(rec?.steps.add_2).toMatchObject({ phase: 'COMPLETED', result: 3 });
    });

    it('keeps runs apart: many runs of one pipeline at once, each with its own result and gapless log', async () => {
      const broker = newBroker({ concurrency: 4 });
      const add = broker.task('add', async (n: number) => {
        await settle(1);
        return n + 1;
      });
      const square = broker.task('square', (n: number) => n * n);
      const pipeline = new Pipeline(broker, { id: 'many' }).callNext(add).callNext(square);
      const c = new EventCollector(pipeline);
      const runs = await Promise.all(Array.from({ length: 25 }, (_, i) => pipeline.kiq(i)));
      const results = await Promise.all(runs.map((r) => r.waitResult()));
      expect(results).toEqual(Array.from({ length: 25 }, (_, i) => (i + 1) * (i + 1)));
      expect(new Set(runs.map((r) => r.runId)).size).toBe(25);
      for (const run of runs) {
        const events = await c.waitForEnd(run.runId);
        expectRunInvariants(events);
        expect(events).toHaveLength(6);
      }
    });
  });

  describe('#map, #filter, #group', () => {
    it('maps items in parallel and keeps the result in input order, with one start, progress per item and one complete', async () => {
      const broker = newBroker();
      const split = broker.task('split', (n: number) => Array.from({ length: n }, (_, i) => i));
      const finished: number[] = [];
      // Later items finish first: the result must still follow the input order.
      const slowFirst = broker.task('slow_first', async (i: number) => {
        await settle(2 * (5 - i));
        finished.push(i);
        return i * 10;
      });
      const pipeline = new Pipeline(broker, { id: 'map' }).callNext(split).map(slowFirst);
      const c = new EventCollector(pipeline);
      const run = await pipeline.kiq(5);
      await expect(run.waitResult()).resolves.toEqual([0, 10, 20, 30, 40]);
      expect(finished).not.toEqual([0, 1, 2, 3, 4]);
      const events = await c.waitForEnd(run.runId);
      expectRunInvariants(events);
      const mapEvents = events.filter((e) => 'step_name' in e && e.step_name === 'slow_first');
      expect(ofType(mapEvents, 'StepStartEvent')).toHaveLength(1);
      expect(ofType(mapEvents, 'StepStartEvent')[0]?.items).toBe(5);
      expect(ofType(mapEvents, 'StepCompleteEvent')).toHaveLength(1);
      const progress = ofType(mapEvents, 'StepProgressEvent').map((e) => e.progress);
      expect(progress.length).toBeGreaterThanOrEqual(4);
      progress.forEach((p, i) => {
        expect(p).toBeGreaterThan(0);
        expect(p).toBeLessThanOrEqual(1);
        if (i > 0) expect(p).toBeGreaterThan(progress[i - 1] as number);
      });
      expect(labels(mapEvents)[0]).toBe('StepStartEvent:slow_first');
      expect(labels(mapEvents).at(-1)).toBe('StepCompleteEvent:slow_first');
    });

    it('gives each map item its index in ctx.item', async () => {
      const broker = newBroker();
      const where = broker.task('where', (s: string, ctx) => `${s}@${ctx.item}`);
      const run = await new Pipeline(broker).map(where).kiq(['a', 'b', 'c']);
      await expect(run.waitResult()).resolves.toEqual(['a@0', 'b@1', 'c@2']);
    });

    it('completes a map over an empty array at once with []', async () => {
      const broker = newBroker();
      let calls = 0;
      const item = broker.task('item', (n: number) => {
        calls++;
        return n;
      });
      const pipeline = new Pipeline(broker).map(item);
      const c = new EventCollector(pipeline);
      const run = await pipeline.kiq([]);
      await expect(run.waitResult()).resolves.toEqual([]);
      const events = await c.waitForEnd(run.runId);
      expectRunInvariants(events);
      expect(labels(events)).toEqual(['PipelineStartEvent', 'StepStartEvent:item', 'StepCompleteEvent:item', 'PipelineCompleteEvent']);
      expect(ofType(events, 'StepStartEvent')[0]?.items).toBe(0);
      expect(calls).toBe(0);
    });

    it('fails a map step over something that is not an array, saying so', async () => {
      const broker = newBroker();
      const item = broker.task('item', (n: number) => n);
      const after = broker.task('after', (n: JsonValue) => n);
      const pipeline = new Pipeline(broker, { id: 'notarray' }).map(item).callNext(after);
      const c = new EventCollector(pipeline);
      const run = await pipeline.kiq({ not: 'an array' });
      const err = await run.waitResult().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(FlowcastError);
      expect((err as FlowcastError).code).toBe(ErrorCodes.PIPELINE_FAILED);
      expect((err as Error).message).toMatch(/array/);
      const events = await c.waitForEnd(run.runId);
      expectRunInvariants(events);
      const [stepError] = ofType(events, 'StepErrorEvent');
      expect(stepError?.step_name).toBe('item');
      expect(stepError?.error).toMatch(/array/);
      expect(ofType(events, 'StepSkipEvent').map((e) => e.step_name)).toEqual(['after']);
      expect(events.at(-1)?.type).toBe('PipelineErrorEvent');
    });

    it('filters items by the truthiness of the task result, keeping their order', async () => {
      const broker = newBroker();
      const even = broker.task('even', (n: number) => n % 2 === 0);
      const nonEmpty = broker.task('non_empty', (s: string) => s);
      await expect((await new Pipeline(broker).filter(even).kiq([1, 2, 3, 4, 5, 6])).waitResult()).resolves.toEqual([2, 4, 6]);
      await expect((await new Pipeline(broker).filter(nonEmpty).kiq(['a', '', 'b', ''])).waitResult()).resolves.toEqual(['a', 'b']);
    });

    it('gives the same input to every task of a group and returns their results in order', async () => {
      const broker = newBroker();
      const inputs: JsonValue[] = [];
      const sum = broker.task('sum', async (xs: number[]) => {
        inputs.push(xs);
        await settle(3);
        return xs.reduce((a, b) => a + b, 0);
      });
      const count = broker.task('count', (xs: number[]) => {
        inputs.push(xs);
        return xs.length;
      });
      const pipeline = new Pipeline(broker).group([sum, count]);
      const c = new EventCollector(pipeline);
      const run = await pipeline.kiq([1, 2, 3]);
      await expect(run.waitResult()).resolves.toEqual([6, 3]);
      expect(inputs).toEqual([
        [1, 2, 3],
        [1, 2, 3],
      ]);
      const events = await c.waitForEnd(run.runId);
      expect(ofType(events, 'StepStartEvent')[0]).toMatchObject({ step_name: 'sum+count', items: 2 });
    });

    it('chains map, filter and group like the seed pipeline', async () => {
      const broker = newBroker();
      const add = broker.task('add', (n: number) => n + 1);
      const split = broker.task('split', (n: number) => [n, n + 1, n + 2]);
      const even = broker.task('even', (n: number) => n % 2 === 0);
      const min = broker.task('min', (xs: number[]) => Math.min(...xs));
      const max = broker.task('max', (xs: number[]) => Math.max(...xs));
      const run = await new Pipeline(broker).callNext(split).map(add).filter(even).group([min, max]).kiq(3);
      await expect(run.waitResult()).resolves.toEqual([4, 6]);
    });

    it('bounds the items of a run in flight with maxParallel', async () => {
      const broker = newBroker({ concurrency: 16 });
      const gate = deferred();
      let running = 0;
      let peak = 0;
      const work = broker.task('work', async (n: number) => {
        running++;
        peak = Math.max(peak, running);
        await gate.promise;
        running--;
        return n;
      });
      const run = await new Pipeline(broker, { maxParallel: 2 }).map(work).kiq([1, 2, 3, 4, 5, 6]);
      await waitUntil(() => running === 2, 'two items running');
      await settle();
      expect(running).toBe(2);
      gate.resolve();
      await expect(run.waitResult()).resolves.toEqual([1, 2, 3, 4, 5, 6]);
      expect(peak).toBe(2);
    });
  });

  describe('failures and retries', () => {
    it('fails the run at the first step that fails, skipping the rest', async () => {
      const broker = newBroker();
      let laterCalls = 0;
      const ok = broker.task('ok', (n: number) => n);
      const validate = broker.task('validate', () => {
        throw new TypeError('invalid input');
      });
      const later = broker.task('later', (n: number) => {
        laterCalls++;
        return n;
      });
      const pipeline = new Pipeline(broker, { id: 'failing' }).callNext(ok).callNext(validate).callNext(later);
      const c = new EventCollector(pipeline);
      const run = await pipeline.kiq(1);
      const err = await run.waitResult().catch((e: unknown) => e);
      expect((err as FlowcastError).code).toBe(ErrorCodes.PIPELINE_FAILED);
      expect((err as Error).message).toContain('TypeError: invalid input');
      const events = await c.waitForEnd(run.runId);
      expectRunInvariants(events);
      expect(labels(events)).toEqual([
        'PipelineStartEvent',
        'StepStartEvent:ok',
        'StepCompleteEvent:ok',
        'StepStartEvent:validate',
        'StepErrorEvent:validate',
        'StepSkipEvent:later',
        'PipelineErrorEvent',
      ]);
      expect(ofType(events, 'StepErrorEvent')[0]).toMatchObject({ error: 'TypeError: invalid input', attempt: 1 });
      expect(ofType(events, 'StepSkipEvent')[0]?.reason).toBe('pipeline failed at step "validate"');
      const [failed] = ofType(events, 'PipelineErrorEvent');
      expect(failed).toMatchObject({ status: 'FAILED', step_name: 'validate' });
      expect(failed?.error).toBe("Pipeline failed at step 'validate': TypeError: invalid input");
      expect(laterCalls).toBe(0);
      expect((await run.getRun())?.status).toBe('FAILED');
    });

    it('reports a thrown non-Error readably', async () => {
      const broker = newBroker();
      const weird = broker.task('weird', () => {
        // eslint-disable-next-line @typescript-eslint/only-throw-error -- user code may throw anything; the engine must cope
        throw { reason: 'plain object' };
      });
      const run = await new Pipeline(broker).callNext(weird).kiq(null);
      await expect(run.waitResult()).rejects.toThrow('plain object');
    });

    it('retries a failing step: StepStart, StepRetry, StepStart(attempt 2)... then StepComplete, no StepError', async () => {
      const broker = newBroker();
      const flaky = broker.task('flaky', (n: number, ctx) => {
        if (ctx.attempt < 3) throw new Error(`flaky ${ctx.attempt}`);
        return n * 100;
      });
      const pipeline = new Pipeline(broker).callNext(flaky, { retries: 2 });
      const c = new EventCollector(pipeline);
      const run = await pipeline.kiq(4);
      await expect(run.waitResult()).resolves.toBe(400);
      const events = await c.waitForEnd(run.runId);
      expectRunInvariants(events);
      expect(labels(events)).toEqual([
        'PipelineStartEvent',
        'StepStartEvent:flaky',
        'StepRetryEvent:flaky',
        'StepStartEvent:flaky',
        'StepRetryEvent:flaky',
        'StepStartEvent:flaky',
        'StepCompleteEvent:flaky',
        'PipelineCompleteEvent',
      ]);
      expect(ofType(events, 'StepStartEvent').map((e) => e.attempt)).toEqual([1, 2, 3]);
      expect(ofType(events, 'StepRetryEvent').map((e) => [e.attempt, e.error])).toEqual([
        [2, 'Error: flaky 1'],
        [3, 'Error: flaky 2'],
      ]);
      expect(ofType(events, 'StepCompleteEvent')[0]?.attempt).toBe(3);
    });

    it('emits StepErrorEvent once, for the last attempt, when retries run out', async () => {
      const broker = newBroker();
      const bad = broker.task('bad', (_: null, ctx) => {
        throw new Error(`attempt ${ctx.attempt} failed`);
      });
      const pipeline = new Pipeline(broker).callNext(bad, { retries: 2 });
      const c = new EventCollector(pipeline);
      const run = await pipeline.kiq(null);
      await expect(run.waitResult()).rejects.toThrow('attempt 3 failed');
      const events = await c.waitForEnd(run.runId);
      expectRunInvariants(events);
      expect(ofType(events, 'StepRetryEvent')).toHaveLength(2);
      expect(ofType(events, 'StepErrorEvent').map((e) => [e.attempt, e.error])).toEqual([[3, 'Error: attempt 3 failed']]);
      expect(labels(events).slice(-2)).toEqual(['StepErrorEvent:bad', 'PipelineErrorEvent']);
    });

    it.each([
      ['fixed', [4, 4, 4]],
      ['linear', [4, 8, 12]],
      ['exponential', [4, 8, 16]],
    ] as const)('announces %s backoff delays in StepRetryEvent.delay_ms', async (backoff, delays) => {
      const broker = newBroker();
      const bad = broker.task('bad', () => {
        throw new Error('always');
      });
      const pipeline = new Pipeline(broker).callNext(bad, { retries: 3, retryDelayMs: 4, backoff });
      const c = new EventCollector(pipeline);
      const run = await pipeline.kiq(null);
      await expect(run.waitResult()).rejects.toThrow('always');
      const events = await c.waitForEnd(run.runId);
      expect(ofType(events, 'StepRetryEvent').map((e) => e.delay_ms)).toEqual(delays);
    });

    it('takes retry options from the task unless the step overrides them', async () => {
      const broker = newBroker();
      let calls = 0;
      const bad = broker.task(
        'bad',
        () => {
          calls++;
          throw new Error('no');
        },
        { retries: 2 },
      );
      await expect((await new Pipeline(broker).callNext(bad).kiq(null)).waitResult()).rejects.toThrow('no');
      expect(calls).toBe(3);
      calls = 0;
      await expect((await new Pipeline(broker).callNext(bad, { retries: 0 }).kiq(null)).waitResult()).rejects.toThrow('no');
      expect(calls).toBe(1);
    });

    it('fails a step whose task returns non-JSON without retrying, and turns undefined into null', async () => {
      const broker = newBroker();
      let calls = 0;
      const dated = broker.task('dated', () => {
        calls++;
        return new Date() as unknown as JsonValue;
      });
      const nothing = broker.task('nothing', (): null => undefined as unknown as null);
      const pipeline = new Pipeline(broker).callNext(dated, { retries: 3 });
      const c = new EventCollector(pipeline);
      const run = await pipeline.kiq(null);
      const err = await run.waitResult().catch((e: unknown) => e);
      expect((err as Error).message).toContain('NotJsonError');
      expect(calls).toBe(1);
      const events = await c.waitForEnd(run.runId);
      expect(ofType(events, 'StepRetryEvent')).toHaveLength(0);
      expect(ofType(events, 'StepErrorEvent')[0]?.error).toMatch(/^NotJsonError: Result of task "dated" must be JSON: \$ is a Date instance/);
      await expect((await new Pipeline(broker).callNext(nothing).kiq(null)).waitResult()).resolves.toBeNull();
    });

    it('retries map items one by one and names the item in StepRetryEvent', async () => {
      const broker = newBroker();
      const flakyItem = broker.task('flaky_item', (n: number, ctx) => {
        if (n === 2 && ctx.attempt === 1) throw new Error('item 2 hiccup');
        return n * 2;
      });
      const pipeline = new Pipeline(broker).map(flakyItem, { retries: 1 });
      const c = new EventCollector(pipeline);
      const run = await pipeline.kiq([1, 2, 3]);
      await expect(run.waitResult()).resolves.toEqual([2, 4, 6]);
      const events = await c.waitForEnd(run.runId);
      expectRunInvariants(events);
      expect(ofType(events, 'StepRetryEvent').map((e) => [e.item, e.attempt, e.error])).toEqual([[1, 2, 'Error: item 2 hiccup']]);
    });

    it('fails a map step when an item fails for good, naming the item', async () => {
      const broker = newBroker();
      const picky = broker.task('picky', (n: number) => {
        if (n === 3) throw new Error('three is bad');
        return n;
      });
      const pipeline = new Pipeline(broker).map(picky);
      const c = new EventCollector(pipeline);
      const run = await pipeline.kiq([1, 2, 3, 4]);
      await expect(run.waitResult()).rejects.toThrow('three is bad');
      const events = await c.waitForEnd(run.runId);
      expectRunInvariants(events);
      expect(ofType(events, 'StepErrorEvent')[0]?.error).toBe('item 2: Error: three is bad');
    });
  });
});
