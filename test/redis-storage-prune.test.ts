/**
 * RedisPipelineStorage's indexes in a deployment that only writes: workers record runs
 * that expire by their TTL, and nothing ever lists them (no reader prunes), nor runs a
 * full prune pass. The writes themselves must keep the indexes about as large as the live
 * runs: a little pruning per write, in the background.
 */
import { describe, expect, it } from 'vitest';
import { trackEndedIndexKey, trackPipelineIndexKey, trackPipelinesKey, trackRunKey, trackStartedIndexKey, trackStatusIndexKey } from '../src/redis/keys.js';
import { RedisPipelineStorage } from '../src/redis/storage.js';
import { PIPELINE_STATUSES } from '../src/tracking/models.js';
import { RunEvents } from './helpers/events.js';
import { useRedisServer } from './helpers/redis.js';

const redis = useRedisServer();

const ROUNDS = 5;
const PER_ROUND = 2_000;
const SHARED = ['p0', 'p1', 'p2', 'p3', 'p4'];

/** The pipeline of a round's `i`-th run: most in a few pipelines, one in ten in a pipeline of its own (an id per run). */
function pipelineOf(round: number, i: number): string {
  return i % 10 === 0 ? `once-${round}-${i}` : (SHARED[i % SHARED.length] as string);
}

/** Runs `fn` on every item, `width` at a time. */
async function inParallel<T>(items: readonly T[], width: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await fn(items[next++] as T);
    }),
  );
}

describe('RedisPipelineStorage index pruning on write', () => {
  it(`${ROUNDS * PER_ROUND} short-lived runs written with no read: the indexes end about as large as the runs that can be live, not every run written`, async () => {
    const client = redis.connect();
    const prefix = redis.prefix();
    // pruneIntervalMs 0: no full pass; only the writes prune.
    const storage = new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix, ttlSeconds: 1, pruneIntervalMs: 0 });
    for (let round = 0; round < ROUNDS; round++) {
      const runs = Array.from({ length: PER_ROUND }, (_, i) => new RunEvents({ pipelineId: pipelineOf(round, i), steps: ['a'], start: Date.now() }));
      await inParallel(runs, 50, async (run) => {
        await storage.applyEvents([run.start()]);
        run.stepStart('a');
        run.advance(1);
        run.stepComplete('a', 1);
        await storage.applyEvents(run.events.slice(1).concat(run.complete(1)));
      });
      // The next round starts once every run of this one expired: each round's runs are the live ones.
      if (round < ROUNDS - 1) {
        const keys = runs.map((r) => trackRunKey(prefix, r.runId));
        for (let k = 0; (await client.exists(...keys)) > 0; k++) {
          if (k > 200) throw new Error(`the runs of round ${round} did not expire`);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
    }
    // Lets the pruning in progress end.
    await storage.close();

    // At most about one round of runs can be live at once: every index must stay near
    // that (before pruning on write, each held every run ever written: 5 rounds).
    const size: Record<string, number> = {};
    size.started = await client.zcard(trackStartedIndexKey(prefix));
    size.ended = await client.zcard(trackEndedIndexKey(prefix));
    for (const s of PIPELINE_STATUSES) size[s] = await client.zcard(trackStatusIndexKey(prefix, s));
    for (const p of SHARED) size[p] = await client.zcard(trackPipelineIndexKey(prefix, p));
    const own = await client.keys(`${trackPipelineIndexKey(prefix, 'once-')}*`);
    size.own = 0;
    for (const key of own) size.own += await client.zcard(key);
    size.pipelines = await client.scard(trackPipelinesKey(prefix));

    const perRound: Record<string, number> = { started: PER_ROUND, ended: PER_ROUND, COMPLETED: PER_ROUND, own: 0 };
    for (let i = 0; i < PER_ROUND; i++) {
      const p = pipelineOf(0, i);
      if (p.startsWith('once-')) perRound.own = (perRound.own ?? 0) + 1;
      else perRound[p] = (perRound[p] ?? 0) + 1;
    }
    perRound.pipelines = SHARED.length + (perRound.own ?? 0);
    for (const [index, live] of Object.entries(perRound)) expect(size[index], `${index}: ${size[index]} entries, ${live} runs per round`).toBeLessThanOrEqual(2 * live);
    for (const s of ['PENDING', 'RUNNING', 'FAILED', 'CANCELLED']) expect(size[s]).toBe(0);
  }, 120_000);
});
