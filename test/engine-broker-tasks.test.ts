import { describe, expect, it } from 'vitest';
import { ErrorCodes, FlowcastError, TimeoutError, type JsonValue, type TaskContext } from '../src/index.js';
import { brokerFactory, deferred, settle, untilAborted, waitUntil } from './helpers/collect.js';

const newBroker = brokerFactory();

describe('InMemoryBroker', () => {
  describe('#task and task.kiq', () => {
    it('runs a task and gives its result to waitResult()', async () => {
      const broker = newBroker();
      const double = broker.task('double', (n: number) => n * 2);
      const handle = await double.kiq(21);
      expect(typeof handle.taskId).toBe('string');
      expect(handle.taskName).toBe('double');
      await expect(handle.waitResult()).resolves.toBe(42);
    });

    it('runs async tasks and returns structured results', async () => {
      const broker = newBroker();
      const info = broker.task('info', async (input: { name: string; tags: string[] }) => {
        await settle(1);
        return { greeting: `hello ${input.name}`, count: input.tags.length, nested: { ok: true, list: [1, null, 'x'] } };
      });
      const result = await (await info.kiq({ name: 'ada', tags: ['a', 'b'] })).waitResult();
      expect(result).toEqual({ greeting: 'hello ada', count: 2, nested: { ok: true, list: [1, null, 'x'] } });
    });

    it('gives a standalone call a context without run, with its job id and attempt 1', async () => {
      const broker = newBroker();
      const seen: TaskContext[] = [];
      const probe = broker.task('probe', (_: null, ctx) => {
        seen.push(ctx);
        ctx.log('ignored outside a run');
        ctx.progress(0.5);
        return null;
      });
      const handle = await probe.kiq(null);
      await handle.waitResult();
      const ctx = seen[0];
      expect(ctx).toBeDefined();
      expect(ctx?.runId).toBeNull();
      expect(ctx?.pipelineId).toBeNull();
      expect(ctx?.stepName).toBeNull();
      expect(ctx?.item).toBeNull();
      expect(ctx?.attempt).toBe(1);
      expect(ctx?.taskName).toBe('probe');
      expect(ctx?.taskId).toBe(handle.taskId);
      expect(ctx?.signal.aborted).toBe(false);
    });

    it('turns an undefined result into null', async () => {
      const broker = newBroker();
      const voidTask = broker.task('void', (): null => undefined as unknown as null);
      await expect((await voidTask.kiq(null)).waitResult()).resolves.toBeNull();
    });

    it('gives the same result to several and late waiters', async () => {
      const broker = newBroker();
      const gate = deferred();
      const held = broker.task('held', async () => {
        await gate.promise;
        return 'done';
      });
      const handle = await held.kiq(null);
      const a = handle.waitResult();
      const b = handle.waitResult();
      gate.resolve();
      await expect(Promise.all([a, b])).resolves.toEqual(['done', 'done']);
      await expect(handle.waitResult()).resolves.toBe('done');
    });

    it('rejects waitResult with the error the task threw', async () => {
      const broker = newBroker();
      const bad = broker.task('bad', () => {
        throw new RangeError('value out of range: 7');
      });
      const err = await (await bad.kiq(null)).waitResult().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RangeError);
      expect((err as Error).message).toBe('value out of range: 7');
    });

    it('rejects waitResult with WAIT_TIMEOUT when its own time limit passes, and can wait again later', async () => {
      const broker = newBroker();
      const gate = deferred();
      const held = broker.task('held', async () => {
        await gate.promise;
        return 1;
      });
      const handle = await held.kiq(null);
      const err = await handle.waitResult({ timeoutMs: 20 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(FlowcastError);
      expect((err as FlowcastError).code).toBe(ErrorCodes.WAIT_TIMEOUT);
      gate.resolve();
      await expect(handle.waitResult()).resolves.toBe(1);
    });

    it('registers tasks by name and refuses a second task with the same name', () => {
      const broker = newBroker();
      broker.task('one', () => 1);
      broker.task('two', () => 2);
      expect(broker.taskNames()).toEqual(['one', 'two']);
      expect(broker.getTask('one')?.threaded).toBe(false);
      expect(broker.getTask('missing')).toBeUndefined();
      const err = (() => {
        try {
          broker.task('one', () => 3);
        } catch (e) {
          return e;
        }
        return null;
      })();
      expect(err).toBeInstanceOf(FlowcastError);
      expect((err as FlowcastError).code).toBe(ErrorCodes.DUPLICATE_TASK);
      expect((err as Error).message).toContain('"one"');
    });
  });

  describe('JSON at the boundary', () => {
    class Point {
      constructor(
        readonly x: number,
        readonly y: number,
      ) {}
    }
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;

    it.each([
      ['a function', { a: [1, () => 1] }, '$.a[1]'],
      ['undefined', undefined, '$'],
      ['undefined in an object', { ok: 1, missing: undefined }, '$.missing'],
      ['NaN', { n: Number.NaN }, '$.n'],
      ['Infinity', [1, 2, Number.POSITIVE_INFINITY], '$[2]'],
      ['a Date', { when: new Date(0) }, '$.when'],
      ['a Map', new Map([['a', 1]]), '$'],
      ['a cycle', cyclic, '$.self'],
      ['a class instance', { rows: [{ p: new Point(1, 2) }] }, '$.rows[0].p'],
      ['a bigint', { big: 10n }, '$.big'],
    ])('refuses %s as input at kiq, naming the path, and never runs the task', async (_what, input, path) => {
      const broker = newBroker();
      let calls = 0;
      const t = broker.task('t', () => {
        calls++;
        return null;
      });
      const err = await t.kiq(input as unknown as JsonValue).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(FlowcastError);
      expect((err as FlowcastError).code).toBe(ErrorCodes.NOT_JSON);
      expect((err as Error).message).toContain(path);
      await settle();
      expect(calls).toBe(0);
    });

    it.each([
      ['a Date', () => new Date()],
      ['NaN', () => Number.NaN],
      ['a Map inside an array', () => [1, new Map()]],
    ])('fails a call that returns %s with NOT_JSON, without retrying it', async (_what, body) => {
      const broker = newBroker();
      let calls = 0;
      const t = broker.task(
        't',
        () => {
          calls++;
          return body() as unknown as JsonValue;
        },
        { retries: 3 },
      );
      const err = await (await t.kiq(null)).waitResult().catch((e: unknown) => e);
      expect((err as FlowcastError).code).toBe(ErrorCodes.NOT_JSON);
      expect((err as Error).message).toContain('Result of task "t"');
      expect(calls).toBe(1);
    });
  });

  describe('retries and time limits of standalone calls', () => {
    it('retries a failing call as the task options say, with ctx.attempt counting up', async () => {
      const broker = newBroker();
      const attempts: number[] = [];
      const flaky = broker.task(
        'flaky',
        (_: null, ctx) => {
          attempts.push(ctx.attempt);
          if (ctx.attempt < 3) throw new Error(`flaky attempt ${ctx.attempt}`);
          return 'third time lucky';
        },
        { retries: 2, retryDelayMs: 1, backoff: 'exponential' },
      );
      await expect((await flaky.kiq(null)).waitResult()).resolves.toBe('third time lucky');
      expect(attempts).toEqual([1, 2, 3]);
    });

    it('gives up after the last retry with the last error', async () => {
      const broker = newBroker();
      let calls = 0;
      const bad = broker.task(
        'bad',
        (_: null, ctx) => {
          calls++;
          throw new Error(`failed attempt ${ctx.attempt}`);
        },
        { retries: 1 },
      );
      await expect((await bad.kiq(null)).waitResult()).rejects.toThrow('failed attempt 2');
      expect(calls).toBe(2);
    });

    it('aborts ctx.signal with a TimeoutError when the call exceeds timeoutMs', async () => {
      const broker = newBroker();
      const reasons: unknown[] = [];
      const slow = broker.task(
        'slow',
        async (_: null, ctx) => {
          ctx.signal.addEventListener('abort', () => reasons.push(ctx.signal.reason), { once: true });
          return await untilAborted(ctx.signal);
        },
        { timeoutMs: 20 },
      );
      const err = await (await slow.kiq(null)).waitResult().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TimeoutError);
      expect((err as FlowcastError).code).toBe(ErrorCodes.TIMEOUT);
      expect((err as Error).message).toContain('timed out after 20ms');
      expect(reasons[0]).toBeInstanceOf(TimeoutError);
    });

    it('stops waiting for a call that ignores its signal once it timed out', async () => {
      const broker = newBroker();
      const gate = deferred();
      const stubborn = broker.task(
        'stubborn',
        async () => {
          await gate.promise;
          return 'too late';
        },
        { timeoutMs: 20 },
      );
      await expect((await stubborn.kiq(null)).waitResult()).rejects.toThrow('timed out');
      gate.resolve();
    });
  });

  describe('concurrency', () => {
    it('never runs more calls at once than its concurrency, and runs them all', async () => {
      const broker = newBroker({ concurrency: 2 });
      const gate = deferred();
      let running = 0;
      let peak = 0;
      const work = broker.task('work', async (n: number) => {
        running++;
        peak = Math.max(peak, running);
        await gate.promise;
        running--;
        return n * 10;
      });
      const handles = await Promise.all([1, 2, 3, 4, 5, 6].map((n) => work.kiq(n)));
      await waitUntil(() => running === 2, 'two calls running');
      await settle();
      expect(running).toBe(2);
      expect(broker.running).toBe(2);
      expect(broker.queued).toBe(4);
      gate.resolve();
      await expect(Promise.all(handles.map((h) => h.waitResult()))).resolves.toEqual([10, 20, 30, 40, 50, 60]);
      expect(peak).toBe(2);
    });
  });

  describe('#close', () => {
    it('waits for running calls, is idempotent, and refuses new calls afterwards', async () => {
      const broker = newBroker();
      const gate = deferred();
      const held = broker.task('held', async () => {
        await gate.promise;
        return 'finished';
      });
      const handle = await held.kiq(null);
      const result = handle.waitResult();
      await waitUntil(() => broker.running === 1, 'call running');
      let closed = false;
      const closing = broker.close().then(() => {
        closed = true;
      });
      await settle();
      expect(closed).toBe(false);
      gate.resolve();
      await closing;
      await expect(result).resolves.toBe('finished');
      await broker.close();
      const err = await held.kiq(null).catch((e: unknown) => e);
      expect((err as FlowcastError).code).toBe(ErrorCodes.CLOSED);
    });

    it('rejects waiters of a call whose retry was still pending', async () => {
      const broker = newBroker();
      const bad = broker.task(
        'bad',
        () => {
          throw new Error('nope');
        },
        { retries: 1, retryDelayMs: 60_000 },
      );
      const handle = await bad.kiq(null);
      const result = handle.waitResult().catch((e: unknown) => e);
      await waitUntil(() => broker.delayed === 1, 'retry scheduled');
      await broker.close();
      expect(((await result) as FlowcastError).code).toBe(ErrorCodes.CLOSED);
    });
  });
});
