import { describe, expect, it } from 'vitest';
import { DataflowPipeline, ErrorCodes, FlowcastError, type JsonValue } from '../src/index.js';
import {
  EventCollector,
  brokerFactory,
  deferred,
  expectRunInvariants,
  indexOf,
  labels,
  ofType,
  settle,
  untilAborted,
  waitUntil,
} from './helpers/collect.js';

const newBroker = brokerFactory();

function thrown(fn: () => unknown): FlowcastError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(FlowcastError);
    return error as FlowcastError;
  }
  throw new Error('expected a FlowcastError, nothing was thrown');
}

describe('DataflowPipeline', () => {
  describe('inputs and results', () => {
    it('gives roots the run input, dependents { [dep]: result }, and the run the single sink result', async () => {
      const broker = newBroker();
      const inputs: Record<string, JsonValue> = {};
      const record = (name: string, fn: (input: JsonValue) => JsonValue) =>
        broker.task(name, (input: JsonValue) => {
          inputs[name] = input;
          return fn(input);
        });
      const load = record('load', (n) => (n as number) + 1);
      const left = record('left', (x) => ((x as { load: number }).load) * 2);
      const right = record('right', (x) => ((x as { load: number }).load) * 3);
      const join = record('join', (x) => x);
      const pipeline = new DataflowPipeline(broker, { id: 'diamond' })
        .step('load', load)
        .step('left', left, { dependsOn: ['load'] })
        .step('right', right, { dependsOn: ['load'] })
        .step('join', join, { dependsOn: ['left', 'right'] });
      const c = new EventCollector(pipeline);
      const run = await pipeline.kiq(4);
      await expect(run.waitResult()).resolves.toEqual({ left: 10, right: 15 });
      expect(inputs).toEqual({ load: 4, left: { load: 5 }, right: { load: 5 }, join: { left: 10, right: 15 } });
      const events = await c.waitForEnd(run.runId);
      expectRunInvariants(events);
      const [start] = ofType(events, 'PipelineStartEvent');
      expect(start?.pipeline_type).toBe('dataflow');
      expect(start?.dag).toEqual({
        nodes: ['load', 'left', 'right', 'join'],
        edges: [
          ['load', 'left'],
          ['load', 'right'],
          ['left', 'join'],
          ['right', 'join'],
        ],
      });
      expect(start?.steps.find((s) => s.step_name === 'join')?.depends_on).toEqual(['left', 'right']);
      expect(indexOf(events, 'StepStartEvent:join')).toBeGreaterThan(indexOf(events, 'StepCompleteEvent:left'));
      expect(indexOf(events, 'StepStartEvent:join')).toBeGreaterThan(indexOf(events, 'StepCompleteEvent:right'));
      expect(ofType(events, 'PipelineCompleteEvent')[0]?.result).toEqual({ left: 10, right: 15 });
    });

    it('returns { [sink]: result } when there are several sinks (disconnected graphs too)', async () => {
      const broker = newBroker();
      const inc = broker.task('inc', (n: number) => n + 1);
      const pick = broker.task('pick', (x: { a: number }) => x.a * 10);
      const run = await new DataflowPipeline(broker)
        .step('a', inc)
        .step('b', pick, { dependsOn: ['a'] })
        .step('c', pick, { dependsOn: ['a'] })
        .step('lonely', inc)
        .kiq(1);
      await expect(run.waitResult()).resolves.toEqual({ b: 20, c: 20, lonely: 2 });
    });

    it('wraps a step input with paramName and args', async () => {
      const broker = newBroker();
      const one = broker.task('one', () => 1);
      const echo = broker.task('echo', (x: JsonValue) => x);
      const run = await new DataflowPipeline(broker)
        .step('one', one)
        .step('echo', echo, { dependsOn: ['one'], paramName: 'deps', args: { mode: 'strict' } })
        .kiq(null);
      await expect(run.waitResult()).resolves.toEqual({ mode: 'strict', deps: { one: 1 } });
    });

    it('takes a whole graph in any order through the steps option', async () => {
      const broker = newBroker();
      const sum = broker.task('sum', (x: Record<string, number>) => Object.values(x).reduce((a, b) => a + b, 0));
      const inc = broker.task('inc', (n: number) => n + 1);
      const pipeline = new DataflowPipeline(broker, {
        id: 'graph',
        steps: {
          total: { task: sum, dependsOn: ['x', 'y'] },
          x: { task: inc },
          y: { task: inc, retries: 1 },
        },
      });
      expect(pipeline.stepNames).toEqual(['total', 'x', 'y']);
      await expect((await pipeline.kiq(1)).waitResult()).resolves.toBe(4);
    });
  });

  describe('scheduling', () => {
    it('starts a step as soon as its own dependencies completed (a ready queue, not waves)', async () => {
      const broker = newBroker();
      const c = new EventCollector();
      const aReleased = deferred();
      // "slow" only finishes once "fast_next" started; a wave scheduler would never start it (the fallback keeps the test finite).
      const slow = broker.task('slow', async () => {
        await Promise.race([aReleased.promise, new Promise((resolve) => setTimeout(resolve, 5_000))]);
        return 'slow';
      });
      const fast = broker.task('fast', () => 'fast');
      const next = broker.task('next', (x: JsonValue) => x);
      const pipeline = new DataflowPipeline(broker, { id: 'ready_queue' })
        .step('a', slow)
        .step('b', fast)
        .step('c', next, { dependsOn: ['a'] })
        .step('d', next, { dependsOn: ['b'] });
      c.attach(pipeline);
      void c.waitForType('StepStartEvent', 'd').then(() => aReleased.resolve());
      const run = await pipeline.kiq(null);
      await expect(run.waitResult()).resolves.toEqual({ c: { a: 'slow' }, d: { b: 'fast' } });
      const events = await c.waitForEnd(run.runId);
      expectRunInvariants(events);
      expect(indexOf(events, 'StepStartEvent:d')).toBeLessThan(indexOf(events, 'StepCompleteEvent:a'));
      expect(indexOf(events, 'StepCompleteEvent:d')).toBeLessThan(indexOf(events, 'StepCompleteEvent:a'));
      expect(indexOf(events, 'StepStartEvent:c')).toBeGreaterThan(indexOf(events, 'StepCompleteEvent:a'));
    });

    it('bounds the jobs of a run in flight with maxParallel and still runs every step', async () => {
      const broker = newBroker({ concurrency: 16 });
      const gate = deferred();
      let running = 0;
      let peak = 0;
      const work = broker.task('work', async (x: JsonValue) => {
        running++;
        peak = Math.max(peak, running);
        await gate.promise;
        running--;
        return x;
      });
      const pipeline = new DataflowPipeline(broker, { maxParallel: 2 });
      for (const name of ['s1', 's2', 's3', 's4', 's5', 's6']) pipeline.step(name, work);
      const run = await pipeline.kiq(7);
      await waitUntil(() => running === 2, 'two steps running');
      await settle();
      expect(running).toBe(2);
      gate.resolve();
      await expect(run.waitResult()).resolves.toEqual({ s1: 7, s2: 7, s3: 7, s4: 7, s5: 7, s6: 7 });
      expect(peak).toBe(2);
    });

    it('keeps maxParallel per run, not per pipeline', async () => {
      const broker = newBroker({ concurrency: 16 });
      const gate = deferred();
      let running = 0;
      const work = broker.task('work', async () => {
        running++;
        await gate.promise;
        running--;
        return null;
      });
      const pipeline = new DataflowPipeline(broker, { maxParallel: 1 }).step('a', work).step('b', work);
      const runs = await Promise.all([pipeline.kiq(null), pipeline.kiq(null), pipeline.kiq(null)]);
      await waitUntil(() => running === 3, 'one step of each run running');
      await settle();
      expect(running).toBe(3);
      gate.resolve();
      await Promise.all(runs.map((r) => r.waitResult()));
    });
  });

  describe('failure policies', () => {
    it('continue: skips the failed step\'s dependents transitively and finishes every other branch', async () => {
      const broker = newBroker();
      const calls: string[] = [];
      const ok = broker.task('ok', (_: JsonValue, ctx) => {
        calls.push(ctx.stepName ?? '?');
        return ctx.stepName;
      });
      const bad = broker.task('bad', () => {
        throw new Error('extract failed');
      });
      const pipeline = new DataflowPipeline(broker, { id: 'cont', failurePolicy: 'continue' })
        .step('extract', bad)
        .step('transform', ok, { dependsOn: ['extract'] })
        .step('enrich', ok, { dependsOn: ['extract'] })
        .step('load', ok, { dependsOn: ['transform', 'enrich'] })
        .step('audit', ok)
        .step('report', ok, { dependsOn: ['audit'] });
      const c = new EventCollector(pipeline);
      const run = await pipeline.kiq(null);
      const err = await run.waitResult().catch((e: unknown) => e);
      expect((err as FlowcastError).code).toBe(ErrorCodes.PIPELINE_FAILED);
      expect((err as Error).message).toContain('extract failed');
      const events = await c.waitForEnd(run.runId);
      expectRunInvariants(events);
      const skips = ofType(events, 'StepSkipEvent');
      expect(skips.map((e) => [e.step_name, e.reason])).toEqual([
        ['transform', 'dependency "extract" failed'],
        ['enrich', 'dependency "extract" failed'],
        ['load', 'dependency "transform" was skipped'],
      ]);
      expect(ofType(events, 'StepCompleteEvent').map((e) => e.step_name).sort()).toEqual(['audit', 'report']);
      expect(calls.sort()).toEqual(['audit', 'report']);
      const [failed] = ofType(events, 'PipelineErrorEvent');
      expect(failed?.error).toContain("'extract'");
      expect(events.at(-1)?.type).toBe('PipelineErrorEvent');
      const rec = await run.getRun();
      expect(rec?.status).toBe('FAILED');
      expect(rec?.steps.load?.phase).toBe('SKIPPED');
      expect(rec?.steps.report?.phase).toBe('COMPLETED');
    });

    it('continue: names every failed step in the run error', async () => {
      const broker = newBroker();
      const bad = broker.task('bad', (_: JsonValue, ctx) => {
        throw new Error(`${ctx.stepName} broke`);
      });
      const ok = broker.task('ok', () => 'fine');
      const run = await new DataflowPipeline(broker, { failurePolicy: 'continue' }).step('one', bad).step('two', bad).step('three', ok).kiq(null);
      const err = await run.waitResult().catch((e: unknown) => e);
      expect((err as Error).message).toContain('one broke');
      expect((err as Error).message).toContain('two broke');
    });

    it('fail_fast: every step that never ran gets a StepSkipEvent before PipelineErrorEvent', async () => {
      // One slot: the sibling root is dispatched but still queued when the first step fails.
      const broker = newBroker({ concurrency: 1 });
      const calls: string[] = [];
      const bad = broker.task('bad', () => {
        throw new Error('first failed');
      });
      const ok = broker.task('ok', (_: JsonValue, ctx) => {
        calls.push(ctx.stepName ?? '?');
        return 1;
      });
      const pipeline = new DataflowPipeline(broker, { id: 'ff' })
        .step('first', bad)
        .step('sibling', ok)
        .step('child', ok, { dependsOn: ['first'] })
        .step('grandchild', ok, { dependsOn: ['child', 'sibling'] });
      const c = new EventCollector(pipeline);
      const run = await pipeline.kiq(null);
      await expect(run.waitResult()).rejects.toThrow('first failed');
      await broker.onIdle();
      const events = await c.waitForEnd(run.runId);
      expectRunInvariants(events);
      const terminal = events.length - 1;
      for (const step of ['first', 'sibling', 'child', 'grandchild']) {
        const started = events.findIndex((e) => e.type === 'StepStartEvent' && e.step_name === step);
        const skipped = events.findIndex((e) => e.type === 'StepSkipEvent' && e.step_name === step);
        expect(started >= 0 || (skipped >= 0 && skipped < terminal), `step ${step} started or was skipped: ${labels(events).join(', ')}`).toBe(true);
      }
      expect(calls).toEqual([]);
      for (const skip of ofType(events, 'StepSkipEvent')) expect(skip.reason).toBe('pipeline failed at step "first"');
    });

    it('fail_fast: aborts a sibling step that is still running', async () => {
      const broker = newBroker();
      const reasons: unknown[] = [];
      const waiting = broker.task('waiting', async (_: JsonValue, ctx) => {
        ctx.signal.addEventListener('abort', () => reasons.push(ctx.signal.reason), { once: true });
        return await untilAborted(ctx.signal);
      });
      const bad = broker.task('bad', async () => {
        await settle(2);
        throw new Error('fell over');
      });
      const pipeline = new DataflowPipeline(broker).step('long', waiting).step('bad', bad);
      const c = new EventCollector(pipeline);
      const run = await pipeline.kiq(null);
      await expect(run.waitResult()).rejects.toThrow('fell over');
      await waitUntil(() => reasons.length === 1, 'sibling aborted');
      expect(reasons[0]).toBeInstanceOf(FlowcastError);
      const events = await c.waitForEnd(run.runId);
      expectRunInvariants(events);
      expect(ofType(events, 'StepCompleteEvent')).toHaveLength(0);
      expect((await run.getRun())?.steps.long?.phase).toBe('CANCELLED');
    });
  });

  describe('validation of the graph', () => {
    it('refuses a dependency on an unknown step, naming both steps', () => {
      const broker = newBroker();
      const t = broker.task('t', () => 1);
      const err = thrown(() => new DataflowPipeline(broker, { id: 'g' }).step('a', t).step('b', t, { dependsOn: ['nope'] }));
      expect(err.code).toBe(ErrorCodes.DAG_UNKNOWN_DEPENDENCY);
      expect(err.message).toContain('"b"');
      expect(err.message).toContain('"nope"');
      const err2 = thrown(() => new DataflowPipeline(broker, { steps: { x: { task: t, dependsOn: ['ghost'] } } }));
      expect(err2.code).toBe(ErrorCodes.DAG_UNKNOWN_DEPENDENCY);
      expect(err2.message).toContain('"x"');
      expect(err2.message).toContain('"ghost"');
    });

    it('refuses a duplicate step name', () => {
      const broker = newBroker();
      const t = broker.task('t', () => 1);
      const err = thrown(() => new DataflowPipeline(broker).step('a', t).step('a', t));
      expect(err.code).toBe(ErrorCodes.DUPLICATE_STEP);
      expect(err.message).toContain('"a"');
    });

    it('refuses cycles in a whole graph, listing the cycle', () => {
      const broker = newBroker();
      const t = broker.task('t', () => 1);
      const err = thrown(() => new DataflowPipeline(broker, { steps: { a: { task: t, dependsOn: ['b'] }, b: { task: t, dependsOn: ['a'] } } }));
      expect(err.code).toBe(ErrorCodes.DAG_CYCLE);
      expect(err.message).toContain('a -> b -> a');
      const longer = thrown(
        () =>
          new DataflowPipeline(broker, {
            steps: { root: { task: t }, a: { task: t, dependsOn: ['root', 'c'] }, b: { task: t, dependsOn: ['a'] }, c: { task: t, dependsOn: ['b'] } },
          }),
      );
      expect(longer.code).toBe(ErrorCodes.DAG_CYCLE);
      expect(longer.message).toContain('a -> c -> b -> a');
      const self = thrown(() => new DataflowPipeline(broker, { steps: { me: { task: t, dependsOn: ['me'] } } }));
      expect(self.code).toBe(ErrorCodes.DAG_CYCLE);
      expect(self.message).toContain('me -> me');
    });

    it('refuses a dependency listed twice and a malformed dependsOn', () => {
      const broker = newBroker();
      const t = broker.task('t', () => 1);
      const base = () => new DataflowPipeline(broker).step('a', t);
      expect(thrown(() => base().step('b', t, { dependsOn: ['a', 'a'] })).code).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(thrown(() => base().step('b', t, { dependsOn: 'a' as unknown as string[] })).message).toContain('dependsOn');
    });
  });
});
