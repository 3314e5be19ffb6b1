import { describe, expect, it } from 'vitest';
import { captureLogger } from './helpers/logger.js';
import {
  ErrorCodes,
  EventFilter,
  FlowcastError,
  HookManager,
  Pipeline,
  type EventType,
  type FlowcastEvent,
  type InMemoryBroker,
  type JsonValue,
  type Task,
} from '../src/index.js';
import { brokerFactory, deferred, expectRunInvariants, labels, settle, waitUntil } from './helpers/collect.js';

const newBroker = brokerFactory();

const adders = new WeakMap<InMemoryBroker, Task<number, number>>();

/** A two-step pipeline (add, again): input n gives n + 2 and six events. */
function twoStep(broker: InMemoryBroker, id: string): Pipeline<JsonValue, number> {
  let add = adders.get(broker);
  if (add === undefined) {
    add = broker.task('add', (n: number) => n + 1);
    adders.set(broker, add);
  }
  return new Pipeline(broker, { id }).callNext(add).callNext(add, { name: 'again' });
}

function thrown(fn: () => unknown): FlowcastError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(FlowcastError);
    return error as FlowcastError;
  }
  throw new Error('expected a FlowcastError, nothing was thrown');
}

describe('HookManager', () => {
  describe('#on', () => {
    it('hands a typed listener only its type, and "*" every event', async () => {
      const broker = newBroker();
      const hooks = new HookManager();
      const completes: string[] = [];
      const all: FlowcastEvent[] = [];
      hooks.on('StepCompleteEvent', (e) => {
        completes.push(`${e.step_name}=${JSON.stringify(e.result)}`);
      });
      hooks.on('*', (e) => {
        all.push(e);
      });
      expect(hooks.listenerCount).toBe(2);
      const run = await twoStep(broker, 'typed').withHooks(hooks).kiq(1);
      await run.waitResult();
      expect(completes).toEqual(['add=2', 'again=3']);
      expectRunInvariants(all);
      expect(all).toHaveLength(6);
    });

    it('returns a disposer that stops delivery (and can be called twice)', async () => {
      const broker = newBroker();
      const hooks = new HookManager();
      const seen: EventType[] = [];
      const off = hooks.on('*', (e) => {
        seen.push(e.type);
        if (e.type === 'StepCompleteEvent') off();
      });
      const run = await twoStep(broker, 'dispose').withHooks(hooks).kiq(1);
      await run.waitResult();
      expect(seen).toEqual(['PipelineStartEvent', 'StepStartEvent', 'StepCompleteEvent']);
      off();
      expect(hooks.listenerCount).toBe(0);
    });

    it('refuses an unknown event type and a listener that is not a function', () => {
      const hooks = new HookManager();
      const err = thrown(() => hooks.on('StepFinishedEvent' as EventType, () => undefined));
      expect(err.code).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(err.message).toContain('"StepFinishedEvent"');
      expect(thrown(() => hooks.on('*', 'nope' as unknown as () => void)).message).toContain('listener must be a function');
    });

    it('receives the runs of every pipeline it is attached to', async () => {
      const broker = newBroker();
      const hooks = new HookManager();
      const pipelines = new Set<string>();
      hooks.on('PipelineCompleteEvent', (e) => {
        pipelines.add(e.pipeline_id);
      });
      const a = twoStep(broker, 'first').withHooks(hooks);
      const b = twoStep(broker, 'second').withHooks(hooks);
      await Promise.all([(await a.kiq(1)).waitResult(), (await b.kiq(1)).waitResult()]);
      expect([...pipelines].sort()).toEqual(['first', 'second']);
    });
  });

  describe('#addFilter', () => {
    it('passes only the pipelines and event types the filters allow, every filter must pass', async () => {
      const broker = newBroker();
      const hooks = new HookManager();
      const seen: string[] = [];
      hooks.on('*', (e) => {
        seen.push(`${e.pipeline_id}:${e.type}`);
      });
      hooks.addFilter(new EventFilter({ pipelineIds: ['pipeline_1', 'pipeline_2'] }));
      hooks.addFilter(new EventFilter({ eventTypes: ['StepStartEvent', 'StepCompleteEvent'] }));
      const runs = await Promise.all(['pipeline_1', 'pipeline_2', 'pipeline_3'].map((id) => twoStep(broker, id).withHooks(hooks).kiq(1)));
      await Promise.all(runs.map((r) => r.waitResult()));
      expect(seen.sort()).toEqual(
        [
          'pipeline_1:StepStartEvent',
          'pipeline_1:StepCompleteEvent',
          'pipeline_1:StepStartEvent',
          'pipeline_1:StepCompleteEvent',
          'pipeline_2:StepStartEvent',
          'pipeline_2:StepCompleteEvent',
          'pipeline_2:StepStartEvent',
          'pipeline_2:StepCompleteEvent',
        ].sort(),
      );
    });

    it('filters by run id, and its disposer lifts the filter', async () => {
      const broker = newBroker();
      const hooks = new HookManager();
      const runIds: string[] = [];
      hooks.on('PipelineCompleteEvent', (e) => {
        runIds.push(e.run_id);
      });
      const pipeline = twoStep(broker, 'by_run').withHooks(hooks);
      const removeFilter = hooks.addFilter(new EventFilter({ runIds: ['not-this-run'] }));
      await (await pipeline.kiq(1)).waitResult();
      expect(runIds).toEqual([]);
      removeFilter();
      const run = await pipeline.kiq(1);
      await run.waitResult();
      expect(runIds).toEqual([run.runId]);
    });

    it('lets a subclass decide (seed 000 §10 AuthFilter style)', async () => {
      class OnlyFailures extends EventFilter {
        override shouldEmit(event: FlowcastEvent): boolean {
          return event.type.endsWith('ErrorEvent');
        }
      }
      const broker = newBroker();
      const bad = broker.task('bad', () => {
        throw new Error('x');
      });
      const hooks = new HookManager();
      const seen: EventType[] = [];
      hooks.on('*', (e) => {
        seen.push(e.type);
      });
      hooks.addFilter(new OnlyFailures());
      await expect((await new Pipeline(broker).callNext(bad).withHooks(hooks).kiq(null)).waitResult()).rejects.toThrow();
      expect(seen).toEqual(['StepErrorEvent', 'PipelineErrorEvent']);
    });

    it('refuses bad filters', () => {
      const hooks = new HookManager();
      expect(thrown(() => new EventFilter({ eventTypes: ['Nope' as EventType] })).message).toContain('"Nope"');
      expect(thrown(() => new EventFilter({ pipelineIds: 'p' as unknown as string[] })).message).toContain('pipelineIds');
      expect(thrown(() => new EventFilter({ pipelines: ['p'] } as never)).message).toContain('"pipelines"');
      expect(thrown(() => hooks.addFilter({ shouldEmit: () => true } as unknown as EventFilter)).code).toBe(ErrorCodes.INVALID_ARGUMENT);
    });
  });

  describe('listener failures', () => {
    it('reports a throwing listener to onError; other listeners and the run carry on', async () => {
      const broker = newBroker();
      const reported: { error: unknown; type: string | undefined }[] = [];
      const hooks = new HookManager({ onError: (error, event) => reported.push({ error, type: event?.type }) });
      hooks.on('StepStartEvent', () => {
        throw new Error('listener exploded');
      });
      const all: FlowcastEvent[] = [];
      hooks.on('*', (e) => {
        all.push(e);
      });
      const run = await twoStep(broker, 'throwing').withHooks(hooks).kiq(1);
      await expect(run.waitResult()).resolves.toBe(3);
      expectRunInvariants(all);
      expect(reported.map((r) => [(r.error as Error).message, r.type])).toEqual([
        ['listener exploded', 'StepStartEvent'],
        ['listener exploded', 'StepStartEvent'],
      ]);
    });

    it('reports a rejecting async listener through hooks.onError(), keeps feeding it, and the disposer stops reports', async () => {
      const broker = newBroker();
      const log = captureLogger();
      const hooks = new HookManager({ logger: log.logger });
      const reported: unknown[] = [];
      const offError = hooks.onError((error) => reported.push(error));
      let calls = 0;
      hooks.on('*', async () => {
        calls++;
        await settle(1);
        throw new Error(`async failure ${calls}`);
      });
      const pipeline = twoStep(broker, 'rejecting').withHooks(hooks);
      await (await pipeline.kiq(1)).waitResult();
      await hooks.idle();
      expect(calls).toBe(6);
      expect(reported.map((e) => (e as Error).message)).toEqual([1, 2, 3, 4, 5, 6].map((n) => `async failure ${n}`));
      offError();
      // Without a handler, failures still surface: on the logger, at error.
      await (await pipeline.kiq(1)).waitResult();
      await hooks.idle();
      expect(log.lines).toHaveLength(6);
      expect(log.lines[0]).toMatchObject({ level: 50, msg: expect.stringContaining('async failure 7') as unknown });
      expect(reported).toHaveLength(6);
    });

    it('never lets a stuck listener hold up a run', async () => {
      const broker = newBroker();
      const hooks = new HookManager();
      const never = deferred();
      let received = 0;
      hooks.on('*', async () => {
        received++;
        await never.promise;
      });
      const run = await twoStep(broker, 'stuck').withHooks(hooks).kiq(1);
      await expect(run.waitResult()).resolves.toBe(3);
      expect(received).toBe(1);
      never.resolve();
      await hooks.idle();
      expect(received).toBe(6);
    });
  });

  describe('async listeners and #idle', () => {
    it('hands an async listener one event at a time, in order, and idle() waits until it drained', async () => {
      const broker = newBroker();
      const hooks = new HookManager();
      let inFlight = 0;
      let peak = 0;
      const seen: FlowcastEvent[] = [];
      hooks.on('*', async (e) => {
        inFlight++;
        peak = Math.max(peak, inFlight);
        await settle(2);
        seen.push(e);
        inFlight--;
      });
      const pipeline = twoStep(broker, 'async_listener').withHooks(hooks);
      const runs = await Promise.all([pipeline.kiq(1), pipeline.kiq(10)]);
      await Promise.all(runs.map((r) => r.waitResult()));
      await hooks.idle();
      expect(peak).toBe(1);
      expect(seen).toHaveLength(12);
      for (const r of runs) expectRunInvariants(seen.filter((e) => e.run_id === r.runId));
    });

    it('resolves idle() at once when nothing is pending', async () => {
      const hooks = new HookManager();
      hooks.on('*', () => undefined);
      await expect(hooks.idle()).resolves.toBeUndefined();
    });

    it('drops the oldest queued events of a listener that falls too far behind, and says so', async () => {
      const broker = newBroker();
      const reported: string[] = [];
      const hooks = new HookManager({ maxQueuePerListener: 2, onError: (error) => reported.push((error as Error).message) });
      const gate = deferred();
      const seen: string[] = [];
      hooks.on('*', async (e) => {
        seen.push(e.type);
        await gate.promise;
      });
      const run = await twoStep(broker, 'slow_listener').withHooks(hooks).kiq(1);
      await run.waitResult();
      gate.resolve();
      await hooks.idle();
      expect(reported.some((m) => m.includes('too slow'))).toBe(true);
      expect(seen[0]).toBe('PipelineStartEvent');
      expect(seen.slice(1)).toEqual(['StepCompleteEvent', 'PipelineCompleteEvent']);
    });

    it('dispatches events handed to emit() like the engine does', async () => {
      const hooks = new HookManager();
      const seen: string[] = [];
      hooks.on('PipelineErrorEvent', (e) => {
        seen.push(e.error);
      });
      hooks.emit({
        type: 'PipelineErrorEvent',
        v: 1,
        event_id: 'e1',
        pipeline_id: 'manual',
        run_id: 'r1',
        seq: 1,
        timestamp: new Date().toISOString(),
        pipeline_type: 'sequential',
        status: 'FAILED',
        error: 'by hand',
        duration_ms: 0,
      });
      await hooks.idle();
      expect(seen).toEqual(['by hand']);
    });
  });

  it('is refused by withHooks() when it is not a HookManager', () => {
    const broker = newBroker();
    const add = broker.task('add', (n: number) => n + 1);
    expect(thrown(() => new Pipeline(broker).callNext(add).withHooks({} as HookManager)).code).toBe(ErrorCodes.INVALID_ARGUMENT);
  });

  it('sees a whole run even when attached before the pipeline id changes', async () => {
    const broker = newBroker();
    const hooks = new HookManager();
    const seen: FlowcastEvent[] = [];
    hooks.on('*', (e) => {
      seen.push(e);
    });
    const pipeline = twoStep(broker, 'before_rename').withHooks(hooks);
    pipeline.pipelineId = 'after_rename';
    await (await pipeline.kiq(1)).waitResult();
    await waitUntil(() => seen.length === 6, 'six events');
    expect(labels(seen)[0]).toBe('PipelineStartEvent');
    expect(new Set(seen.map((e) => e.pipeline_id))).toEqual(new Set(['after_rename']));
  });
});
