import { describe, expect, it, afterEach } from 'vitest';
import { BullMQBroker } from '../src/redis/bullmq-broker.js';
import { ErrorCodes } from '../src/core/errors.js';
import { Pipeline } from '../src/pipeline/pipeline.js';
import { DataflowPipeline } from '../src/pipeline/dataflow.js';
import { brokerConformance } from './conformance/broker.js';
import { useRedisServer } from './helpers/redis.js';

const redis = useRedisServer();

const fast = { lockDurationMs: 2_000, stalledIntervalMs: 1_000, heartbeatMs: 500 };

brokerConformance('bullmq', async () => {
  const broker = new BullMQBroker({ connection: redis.url, keyPrefix: redis.prefix(), worker: { concurrency: 4, ...fast } });
  await broker.waitUntilReady();
  return broker;
});

describe('BullMQBroker', () => {
  const opened: BullMQBroker[] = [];
  const open = async (options: Partial<ConstructorParameters<typeof BullMQBroker>[0]> = {}): Promise<BullMQBroker> => {
    const broker = new BullMQBroker({ connection: redis.url, keyPrefix: redis.prefix(), worker: { concurrency: 4, ...fast }, ...options });
    opened.push(broker);
    await broker.waitUntilReady();
    return broker;
  };
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((b) => b.close()));
  });

  describe('#constructor', () => {
    it('names the option and the value it refuses', () => {
      expect(() => new BullMQBroker({ connection: 'http://x' })).toThrow(/options\.connection must be a redis:\/\/ or rediss:\/\/ URL, received "http:\/\/x"/);
      expect(() => new BullMQBroker({ connection: redis.url, keyPrefix: 'a b' })).toThrow(/keyPrefix/);
      expect(() => new BullMQBroker({ connection: redis.url, worker: { concurrency: 0 } })).toThrow(/worker\.concurrency must be an integer >= 1, received 0/);
      expect(() => new BullMQBroker({ connection: redis.url, worker: { bogus: 1 } as never })).toThrow(/unknown option "bogus"/);
      expect(() => new BullMQBroker({ connection: redis.url, nope: 1 } as never)).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }) as Error);
    });

    it('exposes kind "bullmq" and its own redis connection', async () => {
      const broker = await open();
      expect(broker.kind).toBe('bullmq');
      expect(await broker.redis.ping()).toBe('PONG');
    });
  });

  it('runs a sequential pipeline and a dataflow DAG on Redis, with the events in the run log', async () => {
    const broker = await open();
    const inc = broker.task('inc', (n: number) => n + 1);
    const dbl = broker.task('dbl', (n: number) => n * 2);
    const range = broker.task('range', (n: number) => Array.from({ length: n }, (_, i) => i));
    const seq = new Pipeline(broker, { id: 'seq' }).callNext(inc).callNext(dbl).callNext(range).map(inc);
    const handle = await seq.kiq(1);
    expect(await handle.waitResult({ timeoutMs: 15_000 })).toEqual([1, 2, 3, 4]);

    const add = broker.task('add', (o: { a: number; b: number }) => o.a + o.b);
    const dag = new DataflowPipeline(broker, { id: 'dag' }).step('a', inc).step('b', dbl).step('sum', add, { dependsOn: ['a', 'b'] });
    const run = await dag.kiq(10);
    expect(await run.waitResult({ timeoutMs: 15_000 })).toBe(31);
    const log = await broker.transport.read(run.runId);
    expect(log.ended).toBe(true);
    expect(log.events.map((e) => e.seq)).toEqual(log.events.map((_, i) => i + 1));
    expect(log.events.filter((e) => e.type === 'StepStartEvent' && e.step_name === 'sum')).toHaveLength(1);
    expect(log.events.at(-1)?.type).toBe('PipelineCompleteEvent');
  });
});
