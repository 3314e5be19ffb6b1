import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCodes } from '../src/core/errors.js';
import { InMemoryBroker } from '../src/pipeline/memory-broker.js';
import { Pipeline } from '../src/pipeline/pipeline.js';
import { BullMQBroker } from '../src/redis/bullmq-broker.js';
import { trackRunKey } from '../src/redis/keys.js';
import { RedisPipelineStorage } from '../src/redis/storage.js';
import { PipelineTrackingManager } from '../src/tracking/manager.js';
import { InMemoryPipelineStorage } from '../src/tracking/memory-storage.js';
import { RunEvents } from './helpers/events.js';
import { useRedisServer } from './helpers/redis.js';

const redis = useRedisServer();

describe('PipelineTrackingManager#withAutoStorage', () => {
  const closers: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  it('picks memory storage for the in-memory broker, and tracks a run with it', async () => {
    const broker = new InMemoryBroker();
    closers.push(() => broker.close());
    const tracking = new PipelineTrackingManager().withAutoStorage(broker);
    closers.push(() => tracking.close());
    expect(tracking.storage).toBeInstanceOf(InMemoryPipelineStorage);
    const double = broker.task('double', (n: number) => n * 2);
    const run = await new Pipeline(broker, { id: 'mem' }).callNext(double).withTracking(tracking).kiq(21);
    expect(await run.waitResult()).toBe(42);
    expect((await tracking.getStatus(run.runId))?.status).toBe('COMPLETED');
  });

  it('picks Redis storage for BullMQBroker, on its connection and key prefix, shared with every other process', async () => {
    const prefix = redis.prefix();
    const broker = new BullMQBroker({ connection: redis.url, keyPrefix: prefix, worker: { concurrency: 2 } });
    closers.push(() => broker.close());
    await broker.waitUntilReady();
    const tracking = new PipelineTrackingManager().withAutoStorage(broker, { ttlSeconds: 3600 });
    closers.push(() => tracking.close());
    const storage = tracking.storage;
    expect(storage).toBeInstanceOf(RedisPipelineStorage);
    expect((storage as RedisPipelineStorage).keyPrefix).toBe(prefix);
    expect((storage as RedisPipelineStorage).ttlSeconds).toBe(3600);

    const inc = broker.task('inc', (n: number) => n + 1);
    const run = await new Pipeline(broker, { id: 'auto_redis' }).callNext(inc).callNext(inc).withTracking(tracking).kiq(1);
    expect(await run.waitResult({ timeoutMs: 15_000 })).toBe(3);

    // Another process would see it: a storage of its own, on another connection, same prefix.
    const elsewhere = new PipelineTrackingManager().withStorage(new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix }));
    const seen = await elsewhere.getStatus('auto_redis');
    expect(seen?.run_id).toBe(run.runId);
    expect(seen?.status).toBe('COMPLETED');
    expect(seen?.steps.map((s) => s.status)).toEqual(['COMPLETED', 'COMPLETED']);
    expect(await redis.connect().exists(trackRunKey(prefix, run.runId))).toBe(1);
  });

  it('closing the manager closes the storage it made but leaves the broker connection open', async () => {
    const prefix = redis.prefix();
    const broker = new BullMQBroker({ connection: redis.url, keyPrefix: prefix, worker: false });
    closers.push(() => broker.close());
    await broker.waitUntilReady();
    const tracking = new PipelineTrackingManager().withAutoStorage(broker);
    const storage = tracking.storage as RedisPipelineStorage;
    await tracking.close();
    await expect(storage.getStatus('x')).rejects.toMatchObject({ code: ErrorCodes.CLOSED });
    expect(await broker.redis.ping()).toBe('PONG');
  });

  it('accepts any broker with an ioredis client as `redis` (and its keyPrefix), and options.keyPrefix wins', async () => {
    const client = redis.connect();
    const prefix = redis.prefix();
    const broker = { kind: 'custom', redis: client, keyPrefix: prefix };
    const tracking = new PipelineTrackingManager().withAutoStorage(broker);
    expect(tracking.storage).toBeInstanceOf(RedisPipelineStorage);
    const run = new RunEvents({ pipelineId: 'custom', steps: ['a'] });
    await tracking.record(run.start());
    expect(await client.exists(trackRunKey(prefix, run.runId))).toBe(1);

    const other = `${prefix}other:`;
    const overridden = new PipelineTrackingManager().withAutoStorage(broker, { keyPrefix: other });
    expect((overridden.storage as RedisPipelineStorage).keyPrefix).toBe(other);
  });

  it('prefers a broker that makes its own storage', () => {
    const own = new InMemoryPipelineStorage({ maxRuns: 5 });
    const tracking = new PipelineTrackingManager().withAutoStorage({ kind: 'bullmq', createTrackingStorage: () => own });
    expect(tracking.storage).toBe(own);
  });

  it('refuses a "bullmq" broker without an ioredis client, and bad arguments', () => {
    const tracking = new PipelineTrackingManager();
    expect(() => tracking.withAutoStorage({ kind: 'bullmq' })).toThrow(/a "bullmq" broker must expose its ioredis client as broker\.redis, received undefined/);
    expect(() => tracking.withAutoStorage({ kind: 'bullmq', redis: 'redis://x' })).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }) as Error);
    expect(() => tracking.withAutoStorage(null as never)).toThrow(/withAutoStorage\(broker\) must be an object, received null/);
    expect(() => tracking.withAutoStorage({ kind: 'custom', redis: redis.connect({ lazyConnect: true }) }, { ttlSeconds: -1 })).toThrow(/ttlSeconds must be an integer >= 1/);
    expect(() => tracking.withAutoStorage(new InMemoryBroker(), 'x' as never)).toThrow(/withAutoStorage options must be an object/);
  });
});
