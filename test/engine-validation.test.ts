import { describe, expect, it } from 'vitest';
import {
  DataflowPipeline,
  ErrorCodes,
  FlowcastError,
  InMemoryBroker,
  InvalidArgumentError,
  NotJsonError,
  Pipeline,
  type Broker,
  type JsonValue,
  type Task,
} from '../src/index.js';
import { brokerFactory, settle } from './helpers/collect.js';

const newBroker = brokerFactory();

/** The FlowcastError `fn` throws (fails the test when it throws nothing or something else). */
function thrown(fn: () => unknown): FlowcastError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(FlowcastError);
    return error as FlowcastError;
  }
  throw new Error('expected a FlowcastError, nothing was thrown');
}

async function rejected(promise: Promise<unknown>): Promise<FlowcastError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(FlowcastError);
  return error as FlowcastError;
}

describe('validation', () => {
  describe('InMemoryBroker options', () => {
    it.each([
      [{ concurency: 2 }, 'unknown option "concurency"'],
      [{ concurrency: 0 }, 'concurrency must be an integer >= 1, received 0'],
      [{ concurrency: 1.5 }, 'received 1.5'],
      [{ threads: { maxThreds: 2 } }, 'unknown option "maxThreds"'],
      [{ transport: { maxEventsPerRun: -1 } }, 'maxEventsPerRun'],
    ])('refuses %j, saying what is wrong', (options, message) => {
      const err = thrown(() => new InMemoryBroker(options as never));
      expect(err.code).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(err.message).toContain(message);
    });
  });

  describe('task options', () => {
    it.each([
      [{ retries: -1 }, 'task "t" options: retries must be an integer >= 0, received -1'],
      [{ retries: 1.5 }, 'retries must be an integer >= 0, received 1.5'],
      [{ timeoutMs: -5 }, 'task "t" options: timeoutMs must be a finite number > 0, received -5'],
      [{ timeoutMs: 0 }, 'timeoutMs must be a finite number > 0, received 0'],
      [{ timeoutMs: '100' }, 'timeoutMs must be a finite number > 0, received "100"'],
      [{ retryDelayMs: -1 }, 'retryDelayMs must be a finite number >= 0, received -1'],
      [{ backoff: 'quadratic' }, 'backoff must be one of "fixed", "linear", "exponential", received "quadratic"'],
      [{ retry: 3 }, 'unknown option "retry"'],
    ])('refuses %j', (options, message) => {
      const broker = newBroker();
      const err = thrown(() => broker.task('t', () => null, options as never));
      expect(err).toBeInstanceOf(InvalidArgumentError);
      expect(err.message).toContain(message);
      expect(broker.taskNames()).toEqual([]);
    });

    it.each(['', 'has space', 'semi;colon', 'x'.repeat(201)])('refuses the task name %j', (name) => {
      const broker = newBroker();
      expect(thrown(() => broker.task(name, () => null)).code).toBe(ErrorCodes.INVALID_ARGUMENT);
    });

    it('refuses a task body that is neither a function nor { module }', () => {
      const broker = newBroker();
      expect(thrown(() => broker.task('t', 'not a function' as never)).message).toContain('fn must be a function or { module }');
    });
  });

  describe('step options', () => {
    it.each([
      [{ timeoutMs: -1 }, 'step "t" options: timeoutMs must be a finite number > 0, received -1'],
      [{ retries: -2 }, 'step "t" options: retries must be an integer >= 0, received -2'],
      [{ retryDelayMs: Number.NaN }, 'retryDelayMs must be a finite number >= 0'],
      [{ retires: 2 }, 'unknown option "retires"'],
      [{ paramName: '' }, 'paramName must be a non-empty string'],
      [{ args: { a: 1 } }, 'args needs paramName'],
      [{ paramName: 'x', args: [1] }, 'args must be an object'],
      [{ name: '' }, 'name must be a non-empty string'],
    ])('refuses callNext options %j', (options, message) => {
      const broker = newBroker();
      const t = broker.task('t', () => null);
      const pipeline = new Pipeline(broker);
      const err = thrown(() => pipeline.callNext(t, options as never));
      expect(err.message).toContain(message);
      expect(pipeline.stepNames).toEqual([]);
    });

    it('refuses non-JSON args, naming the path', () => {
      const broker = newBroker();
      const t = broker.task('t', () => null);
      const err = thrown(() => new Pipeline(broker).callNext(t, { paramName: 'x', args: { when: new Date() as unknown as JsonValue } }));
      expect(err).toBeInstanceOf(NotJsonError);
      expect(err.message).toContain('$.when');
    });

    it('refuses bad dataflow step options', () => {
      const broker = newBroker();
      const t = broker.task('t', () => null);
      expect(thrown(() => new DataflowPipeline(broker).step('a', t, { timeoutMs: -1 })).message).toContain('timeoutMs must be a finite number > 0, received -1');
      expect(thrown(() => new DataflowPipeline(broker).step('a', t, { name: 'x' } as never)).message).toContain('unknown option "name"');
      expect(thrown(() => new DataflowPipeline(broker).step('', t)).message).toContain('step name must be a non-empty string');
    });

    it('refuses an empty or malformed group', () => {
      const broker = newBroker();
      expect(thrown(() => new Pipeline(broker).group([])).message).toContain('non-empty array of tasks');
    });
  });

  describe('pipeline options and ids', () => {
    it.each([
      [{ id: 'has space' }, 'pipeline id must be 1-200 characters'],
      [{ id: '' }, 'pipeline id must be a non-empty string'],
      [{ timeoutMs: -1 }, 'timeoutMs must be a finite number > 0, received -1'],
      [{ maxParallel: 0 }, 'maxParallel must be an integer >= 1, received 0'],
      [{ maxparallel: 2 }, 'unknown option "maxparallel"'],
    ])('refuses Pipeline options %j', (options, message) => {
      const broker = newBroker();
      expect(thrown(() => new Pipeline(broker, options as never)).message).toContain(message);
      expect(thrown(() => new DataflowPipeline(broker, options as never)).message).toContain(message);
    });

    it('refuses a bad failurePolicy and a bad id set later', () => {
      const broker = newBroker();
      expect(thrown(() => new DataflowPipeline(broker, { failurePolicy: 'keep_going' as never })).message).toContain(
        'failurePolicy must be one of "fail_fast", "continue", received "keep_going"',
      );
      const pipeline = new Pipeline(broker, { id: 'good_id' });
      expect(thrown(() => (pipeline.pipelineId = 'bad id!')).code).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(pipeline.pipelineId).toBe('good_id');
    });

    it('refuses something that is not a broker', () => {
      expect(thrown(() => new Pipeline({} as Broker)).message).toContain('broker must be a Broker');
    });
  });

  describe('tasks and pipelines must match', () => {
    it('refuses a task registered on another broker (UNKNOWN_TASK)', () => {
      const mine = newBroker();
      const theirs = newBroker();
      mine.task('local', () => null);
      const foreign = theirs.task('foreign', () => null);
      const err = thrown(() => new Pipeline(mine).callNext(foreign));
      expect(err.code).toBe(ErrorCodes.UNKNOWN_TASK);
      expect(err.message).toContain('"foreign"');
      expect(thrown(() => new DataflowPipeline(mine).step('a', foreign)).code).toBe(ErrorCodes.UNKNOWN_TASK);
      expect(thrown(() => new Pipeline(mine).group([foreign])).code).toBe(ErrorCodes.UNKNOWN_TASK);
    });

    it('refuses something that is not a task', () => {
      const broker = newBroker();
      expect(thrown(() => new Pipeline(broker).callNext('add' as unknown as Task)).message).toContain('expected a task created with broker.task()');
    });
  });

  describe('#kiq', () => {
    it('refuses a non-JSON run input, naming the path, and starts nothing', async () => {
      const broker = newBroker();
      let calls = 0;
      const t = broker.task('t', () => {
        calls++;
        return null;
      });
      const pipeline = new Pipeline(broker, { id: 'strict' }).callNext(t);
      const err = await rejected(pipeline.kiq({ rows: [1, 2, 3, Number.NaN] }));
      expect(err.code).toBe(ErrorCodes.NOT_JSON);
      expect(err.message).toContain('$.rows[3]');
      expect(err.message).toContain('"strict"');
      expect((await rejected(pipeline.kiq({ a: [1, () => 2] } as unknown as JsonValue))).message).toContain('$.a[1]');
      await settle();
      expect(calls).toBe(0);
      expect(broker.transport.size).toBe(0);
    });

    it('refuses a negative waitResult timeout', async () => {
      const broker = newBroker();
      const t = broker.task('t', () => null);
      const run = await new Pipeline(broker).callNext(t).kiq(null);
      expect((await rejected(run.waitResult({ timeoutMs: -1 }))).message).toContain('timeoutMs must be a finite number >= 0, received -1');
      await run.waitResult();
    });

    it('refuses to start runs on a closed broker', async () => {
      const broker = newBroker();
      const t = broker.task('t', () => null);
      const pipeline = new Pipeline(broker).callNext(t);
      await broker.close();
      expect((await rejected(pipeline.kiq(null))).code).toBe(ErrorCodes.CLOSED);
    });
  });
});
