/**
 * Maintenance calls take an AbortSignal (docs/scheduler.md passes the firing's signal to
 * `tracking.cleanupOlderThan`): aborted, they stop promptly with an AbortError
 * (`FlowcastError` code `ABORTED`), leaving what they did not reach for the next call.
 */
import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../src/core/errors.js';
import { RedisPipelineStorage } from '../src/redis/storage.js';
import { PipelineTrackingManager } from '../src/tracking/manager.js';
import { InMemoryPipelineStorage } from '../src/tracking/memory-storage.js';
import type { PipelineStatus } from '../src/tracking/models.js';
import type { ListPipelinesQuery, TrackingStorage } from '../src/tracking/storage.js';
import { reduce, scriptedRun } from './helpers/events.js';
import { useRedisServer } from './helpers/redis.js';

const redis = useRedisServer();

const DAY = 86_400_000;

/** An ended run of `pipelineId` that completed about `daysAgo` days ago. */
function oldRun(runId: string, daysAgo: number, pipelineId = 'nightly'): PipelineStatus {
  const run = scriptedRun({ pipelineId, runId, start: Date.now() - daysAgo * DAY, steps: [{ name: 'a', ms: 10, result: 1 }] });
  return reduce(run.events) as PipelineStatus;
}

async function fill(storage: TrackingStorage, statuses: PipelineStatus[]): Promise<void> {
  for (let i = 0; i < statuses.length; i += 500) await Promise.all(statuses.slice(i, i + 500).map((s) => storage.saveStatus(s)));
}

async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error, 'the call should have rejected').toBeInstanceOf(Error);
  return error as Error & { code?: string };
}

describe('tracking maintenance with an AbortSignal', () => {
  it("docs/scheduler.md's cleanup job: cleanupOlderThan({ days, signal }) deletes old runs, and an aborted signal deletes nothing", async () => {
    const tracking = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
    const storage = tracking.storage as InMemoryPipelineStorage;
    await fill(storage, [oldRun('old-1', 10), oldRun('old-2', 9), oldRun('new-1', 1)]);

    const aborted = new AbortController();
    aborted.abort(new Error('scheduler closed'));
    const error = await rejection(tracking.cleanupOlderThan({ days: 7, signal: aborted.signal }));
    expect(error).toMatchObject({ name: 'AbortError', code: ErrorCodes.ABORTED });
    expect(error.message).toContain('cleanupOlderThan');
    expect(error.cause).toBe(aborted.signal.reason);
    expect(storage.size).toBe(3);

    // As the doc's schedule passes it: the firing's signal, not aborted.
    const { signal } = new AbortController();
    expect(await tracking.cleanupOlderThan({ days: 7, signal })).toBe(2);
    expect(storage.size).toBe(1);
  });

  it('rejects a signal that is not an AbortSignal, naming the option and the value', async () => {
    const tracking = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
    await expect(tracking.cleanupOlderThan({ days: 1, signal: 'stop' as never })).rejects.toThrow('cleanupOlderThan options.signal must be an AbortSignal, received "stop"');
    await expect(tracking.deletePipeline('p', { signal: {} as never })).rejects.toThrow('deletePipeline options.signal must be an AbortSignal, received {}');
    await expect(tracking.deletePipeline('p', { nope: 1 } as never)).rejects.toThrow(/unknown option "nope"/);
  });

  it('a cleanup on a storage without cleanupOlderThan stops between two deletions when aborted', async () => {
    const inner = new InMemoryPipelineStorage();
    const controller = new AbortController();
    let deletes = 0;
    // A custom storage with the four required methods only: the manager deletes run by run.
    const custom: TrackingStorage = {
      saveStatus: (s) => inner.saveStatus(s),
      getStatus: (id) => inner.getStatus(id),
      listPipelines: (q?: ListPipelinesQuery) => inner.listPipelines(q),
      deletePipeline: async (id) => {
        const n = await inner.deletePipeline(id);
        if (++deletes === 2) controller.abort();
        return n;
      },
    };
    const tracking = new PipelineTrackingManager().withStorage(custom);
    await fill(custom, Array.from({ length: 10 }, (_, i) => oldRun(`r${i}`, 30)));
    const error = await rejection(tracking.cleanupOlderThan({ days: 7, signal: controller.signal }));
    expect(error).toMatchObject({ name: 'AbortError', code: ErrorCodes.ABORTED });
    expect(error.message).toContain('after deleting 2 runs');
    expect(inner.size).toBe(8);
  });

  describe('on Redis', () => {
    const TOTAL = 5_000;

    /** Aborts `controller` when Redis deletes the first key under `prefix` (keyspace notification): mid-way, whatever the machine's speed. */
    async function abortOnFirstDelete(prefix: string, controller: AbortController): Promise<void> {
      const admin = redis.connect();
      await admin.config('SET', 'notify-keyspace-events', 'Eg');
      const sub = redis.connect();
      sub.on('message', (_channel: string, key: string) => {
        if (key.startsWith(prefix)) controller.abort(new Error('enough for today'));
      });
      await sub.subscribe('__keyevent@0__:del');
    }

    it('a cleanup of a large Redis store stops promptly when its signal aborts, and the next cleanup deletes the rest', async () => {
      const prefix = redis.prefix();
      const storage = new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix, pruneIntervalMs: 0 });
      const tracking = new PipelineTrackingManager().withStorage(storage);
      await fill(storage, Array.from({ length: TOTAL }, (_, i) => oldRun(`run-${i}`, 30)));

      const controller = new AbortController();
      await abortOnFirstDelete(prefix, controller);
      const error = await rejection(tracking.cleanupOlderThan({ days: 7, signal: controller.signal }));
      expect(error).toMatchObject({ name: 'AbortError', code: ErrorCodes.ABORTED });
      expect(error.cause).toBe(controller.signal.reason);

      const left = (await tracking.listPipelines({ pipelineId: 'nightly' })).length;
      expect(left).toBeLessThan(TOTAL);
      // It stopped within the batch it was in (1,000 runs a batch), far from the end.
      expect(left).toBeGreaterThanOrEqual(TOTAL - 2_000);
      expect(error.message).toContain(`after deleting ${TOTAL - left} runs`);

      expect(await tracking.cleanupOlderThan({ days: 7 })).toBe(left);
      expect(await tracking.listPipelines({ pipelineId: 'nightly' })).toEqual([]);
    }, 60_000);

    it('deleting a pipeline with many runs stops promptly when its signal aborts; prune() takes a signal too', async () => {
      const prefix = redis.prefix();
      const storage = new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix, pruneIntervalMs: 0 });
      const tracking = new PipelineTrackingManager().withStorage(storage);
      await fill(storage, Array.from({ length: TOTAL }, (_, i) => oldRun(`run-${i}`, 1, 'busy')));

      const controller = new AbortController();
      await abortOnFirstDelete(prefix, controller);
      const error = await rejection(tracking.deletePipeline('busy', { signal: controller.signal }));
      expect(error).toMatchObject({ name: 'AbortError', code: ErrorCodes.ABORTED });
      const left = (await tracking.listPipelines({ pipelineId: 'busy' })).length;
      expect(left).toBeLessThan(TOTAL);
      expect(left).toBeGreaterThanOrEqual(TOTAL - 2_000);
      expect(await tracking.deletePipeline('busy')).toBe(left);

      await expect(storage.prune({ signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError', code: ErrorCodes.ABORTED });
      expect(await storage.prune({ signal: new AbortController().signal })).toMatchObject({ removed: 0 });
    }, 60_000);
  });
});
