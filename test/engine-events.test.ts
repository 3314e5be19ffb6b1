import { describe, expect, it } from 'vitest';
import {
  DataflowPipeline,
  InMemoryPipelineStorage,
  Pipeline,
  PipelineTrackingManager,
  type FlowcastEvent,
  type JsonValue,
  type LogRead,
} from '../src/index.js';
import { EventCollector, brokerFactory, expectRunInvariants, indexOf, labels, ofType, settle, waitUntil } from './helpers/collect.js';

const newBroker = brokerFactory();

describe('events', () => {
  describe('ctx.log and ctx.progress', () => {
    it('turns ctx.log() into StepLogEvent lines, splitting multi-line strings and formatting values', async () => {
      const broker = newBroker();
      const chatty = broker.task('chatty', (n: number, ctx) => {
        ctx.log('a\nb');
        ctx.log('count', n, { k: [1] });
        ctx.log('windows\r\nline');
        ctx.log();
        return n;
      });
      const pipeline = new Pipeline(broker).callNext(chatty);
      const c = new EventCollector(pipeline);
      const run = await pipeline.kiq(3);
      await run.waitResult();
      const events = await c.waitForEnd(run.runId);
      expectRunInvariants(events);
      const logs = ofType(events, 'StepLogEvent');
      expect(logs.map((e) => e.lines)).toEqual([['a', 'b'], ['count', '3', '{ k: [ 1 ] }'], ['windows', 'line']]);
      const [start] = ofType(events, 'StepStartEvent');
      for (const log of logs) expect(log).toMatchObject({ step_name: 'chatty', step_index: 0, task_id: start?.task_id, attempt: 1 });
    });

    it('turns ctx.progress() into StepProgressEvent, all before StepCompleteEvent', async () => {
      const broker = newBroker();
      const worker = broker.task('worker', async (_: null, ctx) => {
        ctx.progress(0);
        ctx.log('started');
        await settle(2);
        ctx.progress(0.5, 'half');
        ctx.progress(1, 'done');
        return 'ok';
      });
      const pipeline = new Pipeline(broker).callNext(worker);
      const c = new EventCollector(pipeline);
      const run = await pipeline.kiq(null);
      await run.waitResult();
      const events = await c.waitForEnd(run.runId);
      expectRunInvariants(events);
      expect(labels(events)).toEqual([
        'PipelineStartEvent',
        'StepStartEvent:worker',
        'StepProgressEvent:worker',
        'StepLogEvent:worker',
        'StepProgressEvent:worker',
        'StepProgressEvent:worker',
        'StepCompleteEvent:worker',
        'PipelineCompleteEvent',
      ]);
      expect(ofType(events, 'StepProgressEvent').map((e) => [e.progress, e.message])).toEqual([
        [0, undefined],
        [0.5, 'half'],
        [1, 'done'],
      ]);
    });

    it('throws in the task when progress is outside 0..1 or not a number', async () => {
      const broker = newBroker();
      const errors: string[] = [];
      const probe = broker.task('probe', (_: null, ctx) => {
        for (const bad of [1.5, -0.1, Number.NaN, '0.5' as unknown as number]) {
          try {
            ctx.progress(bad);
          } catch (error) {
            errors.push((error as Error).message);
          }
        }
        return null;
      });
      const uncaught = broker.task('uncaught', (_: null, ctx) => {
        ctx.progress(2);
        return null;
      });
      await (await new Pipeline(broker).callNext(probe).kiq(null)).waitResult();
      expect(errors).toHaveLength(4);
      for (const message of errors) expect(message).toMatch(/from 0 to 1/);
      await expect((await new Pipeline(broker).callNext(uncaught).kiq(null)).waitResult()).rejects.toThrow(/from 0 to 1, received 2/);
    });

    it('records StepStartEvent before the task body runs', async () => {
      const broker = newBroker();
      let seenInLog: string[] = [];
      const look = broker.task('look', async (_: null, ctx) => {
        const read = await broker.transport.read(ctx.runId ?? '');
        seenInLog = read.events.filter((e) => e.type === 'StepStartEvent' && e.task_id === ctx.taskId).map((e) => e.type);
        return null;
      });
      await (await new Pipeline(broker).callNext(look).kiq(null)).waitResult();
      expect(seenInLog).toEqual(['StepStartEvent']);
    });
  });

  describe('ordering and identity', () => {
    it('hands every listener the events of a run in seq order even when parallel steps log and finish at once', async () => {
      const broker = newBroker({ concurrency: 64 });
      const pipeline = new DataflowPipeline(broker, { id: 'busy' });
      for (let k = 0; k < 24; k++) {
        const t = broker.task(`t${k}`, async (_: JsonValue, ctx) => {
          for (let j = 0; j < k % 5; j++) await Promise.resolve();
          ctx.log(`line ${k}`);
          for (let j = 0; j < k % 3; j++) await Promise.resolve();
          ctx.progress(0.5);
          return k;
        });
        pipeline.step(`s${k}`, t);
      }
      const c = new EventCollector(pipeline);
      const live: FlowcastEvent[] = [];
      const off = broker.transport.subscribe({ pipelineId: 'busy' }, (e) => live.push(e));
      const run = await pipeline.kiq(null);
      await run.waitResult();
      off();
      const events = await c.waitForEnd(run.runId);
      expectRunInvariants(events);
      expectRunInvariants(live);
      expect(ofType(events, 'StepLogEvent')).toHaveLength(24);
      // Every log line of a step comes between its start and its completion.
      for (let k = 0; k < 24; k++) {
        const log = events.findIndex((e) => e.type === 'StepLogEvent' && e.step_name === `s${k}`);
        expect(log).toBeGreaterThan(indexOf(events, `StepStartEvent:s${k}`));
        expect(log).toBeLessThan(indexOf(events, `StepCompleteEvent:s${k}`));
      }
    });

    it('gives every event a unique id across runs and a seq per run', async () => {
      const broker = newBroker();
      const add = broker.task('add', (n: number) => n + 1);
      const pipeline = new Pipeline(broker).callNext(add).callNext(add);
      const c = new EventCollector(pipeline);
      const runs = await Promise.all([pipeline.kiq(1), pipeline.kiq(2), pipeline.kiq(3)]);
      await Promise.all(runs.map((r) => r.waitResult()));
      for (const r of runs) expectRunInvariants(await c.waitForEnd(r.runId));
      expect(new Set(c.events.map((e) => e.event_id)).size).toBe(c.events.length);
      expect(c.runIds().sort()).toEqual(runs.map((r) => r.runId).sort());
    });

    it('emits nothing after the terminal event, even for a step that keeps logging after the run failed', async () => {
      const broker = newBroker();
      const chatter = broker.task('chatter', async (_: JsonValue, ctx) => {
        for (let i = 0; i < 30; i++) {
          ctx.log(`still here ${i}`);
          await settle(1);
        }
        return 'late';
      });
      const bad = broker.task('bad', () => {
        throw new Error('early failure');
      });
      const pipeline = new DataflowPipeline(broker).step('chatter', chatter).step('bad', bad);
      const c = new EventCollector(pipeline);
      const run = await pipeline.kiq(null);
      await expect(run.waitResult()).rejects.toThrow('early failure');
      await settle(60);
      const events = await c.waitForEnd(run.runId);
      expectRunInvariants(events);
      const read = await broker.transport.read(run.runId);
      expect(read.events.map((e) => e.event_id)).toEqual(events.map((e) => e.event_id));
    });
  });

  describe('the run log (transport.read) and live subscribers', () => {
    it('keeps the same events the hooks saw, readable from any seq', async () => {
      const broker = newBroker();
      const add = broker.task('add', (n: number) => n + 1);
      const pipeline = new Pipeline(broker, { id: 'logged' }).callNext(add).callNext(add).callNext(add);
      const c = new EventCollector(pipeline);
      const all: FlowcastEvent[] = [];
      const off = broker.transport.subscribe('*', (e) => all.push(e));
      const run = await pipeline.kiq(0);
      await run.waitResult();
      off();
      const events = await c.waitForEnd(run.runId);
      const full = await broker.transport.read(run.runId);
      expect(full).toMatchObject({ first_seq: 1, last_seq: events.length, complete: true, ended: true });
      expect(full.events).toEqual(events);
      expect(all).toEqual(events);
      const tail = await broker.transport.read(run.runId, { since: 5 });
      expect(tail.events.map((e) => e.seq)).toEqual(events.slice(5).map((e) => e.seq));
      expect(tail.complete).toBe(true);
      const page = await broker.transport.read(run.runId, { since: 2, limit: 2 });
      expect(page.events.map((e) => e.seq)).toEqual([3, 4]);
    });

    it('subscribes per run and per pipeline', async () => {
      const broker = newBroker();
      const add = broker.task('add', (n: number) => n + 1);
      const p1 = new Pipeline(broker, { id: 'p_one' }).callNext(add);
      const p2 = new Pipeline(broker, { id: 'p_two' }).callNext(add);
      const onlyOne: FlowcastEvent[] = [];
      const offPipeline = broker.transport.subscribe({ pipelineId: 'p_one' }, (e) => onlyOne.push(e));
      const r1 = await p1.kiq(1);
      const r2 = await p2.kiq(1);
      const perRun: FlowcastEvent[] = [];
      await Promise.all([r1.waitResult(), r2.waitResult()]);
      const offRun = broker.transport.subscribe({ runId: r2.runId }, (e) => perRun.push(e));
      const r3 = await p2.kiq(5);
      await r3.waitResult();
      offPipeline();
      offRun();
      expect(new Set(onlyOne.map((e) => e.pipeline_id))).toEqual(new Set(['p_one']));
      expectRunInvariants(onlyOne);
      expect(perRun).toEqual([]);
    });

    it('trims a long log to maxEventsPerRun and says so to readers from the start', async () => {
      const broker = newBroker({ transport: { maxEventsPerRun: 5 } });
      const chatty = broker.task('chatty', (_: null, ctx) => {
        for (let i = 0; i < 10; i++) ctx.log(`line ${i}`);
        return 'done';
      });
      const pipeline = new Pipeline(broker).callNext(chatty);
      const c = new EventCollector(pipeline);
      const run = await pipeline.kiq(null);
      await expect(run.waitResult()).resolves.toBe('done');
      const events = await c.waitForEnd(run.runId);
      expectRunInvariants(events);
      const total = events.length;
      const fromStart: LogRead = await broker.transport.read(run.runId, { since: 0 });
      expect(fromStart.complete).toBe(false);
      expect(fromStart.first_seq).toBe(total - 4);
      expect(fromStart.last_seq).toBe(total);
      expect(fromStart.events.map((e) => e.seq)).toEqual([total - 4, total - 3, total - 2, total - 1, total]);
      expect(fromStart.ended).toBe(true);
      const recent = await broker.transport.read(run.runId, { since: total - 3 });
      expect(recent.complete).toBe(true);
      expect(recent.events.map((e) => e.seq)).toEqual([total - 2, total - 1, total]);
    });
  });

  describe('no run in the caller\'s closure', () => {
    it('completes a run started with void kiq() and every reference dropped, observed only through hooks, the transport and tracking', async () => {
      const broker = newBroker();
      const c = new EventCollector();
      const live: FlowcastEvent[] = [];
      const off = broker.transport.subscribe('*', (e) => live.push(e));
      const tracking = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
      (() => {
        const split = broker.task('split', (n: number) => Array.from({ length: n }, (_, i) => i));
        const square = broker.task('square', async (n: number, ctx) => {
          ctx.log(`squaring ${n}`);
          await settle(1);
          return n * n;
        });
        const total = broker.task('total', (xs: number[]) => xs.reduce((a, b) => a + b, 0));
        const pipeline = new Pipeline(broker, { id: 'fire_and_forget' }).callNext(split).map(square).callNext(total);
        c.attach(pipeline);
        pipeline.withTracking(tracking);
        void pipeline.kiq(4);
      })();
      const terminal = await c.waitForType('PipelineCompleteEvent');
      const events = await c.waitForEnd(terminal.run_id);
      expectRunInvariants(events);
      expect(ofType(events, 'PipelineCompleteEvent')[0]?.result).toBe(14);
      expect(ofType(events, 'StepLogEvent')).toHaveLength(4);
      await waitUntil(() => live.some((e) => e.type === 'PipelineCompleteEvent'), 'transport saw the end');
      off();
      expect(live).toEqual(events);
      const status = await tracking.getStatus(terminal.run_id);
      expect(status).toMatchObject({ run_id: terminal.run_id, pipeline_id: 'fire_and_forget', status: 'COMPLETED', result: 14, input: 4 });
      expect(status?.last_seq).toBe(events.at(-1)?.seq);
      expect(status?.steps.map((s) => [s.step_name, s.status, s.result])).toEqual(
        ofType(events, 'StepCompleteEvent').map((e) => [e.step_name, 'COMPLETED', e.result]),
      );
      expect(status?.steps.find((s) => s.step_name === 'square')?.log_lines).toBe(4);
      await expect(tracking.getStatus('fire_and_forget')).resolves.toMatchObject({ run_id: terminal.run_id });
    });
  });
});
