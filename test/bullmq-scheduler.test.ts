/**
 * PipelineScheduler with the BullMQ broker: schedules live in BullMQ job schedulers, so
 * a tick fires once across every scheduler instance on one Redis, not once per process.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { BullMQBroker } from '../src/redis/bullmq-broker.js';
import { InMemoryBroker } from '../src/pipeline/memory-broker.js';
import { Pipeline } from '../src/pipeline/pipeline.js';
import { PipelineScheduler, type ScheduleContext } from '../src/scheduler/scheduler.js';
import { useRedisServer } from './helpers/redis.js';

const redis = useRedisServer();

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

function broker(prefix: string, worker: boolean): BullMQBroker {
  const b = new BullMQBroker({ connection: redis.url, keyPrefix: prefix, worker: worker ? { concurrency: 4, heartbeatMs: 500 } : false });
  closers.push(() => b.close());
  return b;
}

function scheduler(b: BullMQBroker | InMemoryBroker): PipelineScheduler {
  const s = new PipelineScheduler(b);
  closers.push(() => s.close());
  return s;
}

interface Firing {
  instance: string;
  tick: number;
}

/** Resolves once `list` holds `n` entries (checked as firings come in). */
function waitFor(list: Firing[], n: number, added: { notify: () => void }): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => {
      if (list.length >= n) resolve();
    };
    added.notify = check;
    check();
  });
}

describe('PipelineScheduler on BullMQ', () => {
  it('two scheduler instances with the same every-second schedule fire each tick once in all', async () => {
    const prefix = redis.prefix();
    const firings: Firing[] = [];
    const added = { notify: () => undefined as void };
    const record = (instance: string) => (ctx: ScheduleContext) => {
      firings.push({ instance, tick: ctx.scheduledAt.getTime() });
      added.notify();
    };
    const a = scheduler(broker(prefix, false));
    const b = scheduler(broker(prefix, false));
    a.scheduleEvery(record('a'), { id: 'heartbeat', everyMs: 1000 });
    b.scheduleEvery(record('b'), { id: 'heartbeat', everyMs: 1000 });
    await waitFor(firings, 4, added);
    // nextRunAt is on the same grid as the ticks the cluster fires.
    expect((a.get('heartbeat')?.nextRunAt?.getTime() ?? 1) % 1000).toBe(0);
    await a.close();
    await b.close();

    const ticks = firings.map((f) => f.tick);
    expect(new Set(ticks).size).toBe(ticks.length);
    const sorted = [...ticks].sort((x, y) => x - y);
    // All on one grid of the period (a tick may be missed on a busy machine, never doubled).
    for (let i = 1; i < sorted.length; i++) expect(((sorted[i] as number) - (sorted[i - 1] as number)) % 1000).toBe(0);
    expect(a.get('heartbeat')?.runs ?? 0).toBe(firings.filter((f) => f.instance === 'a').length);
    expect((a.get('heartbeat')?.runs ?? 0) + (b.get('heartbeat')?.runs ?? 0)).toBe(firings.length);
  }, 60_000);

  it('a cron (seconds) schedule of a pipeline starts one run per tick across two instances', async () => {
    const prefix = redis.prefix();
    const worker = broker(prefix, true);
    const inc = worker.task('inc', (n: number) => n + 1);
    const pipeline = new Pipeline(worker, { id: 'cron_pipe' }).callNext(inc);
    const runs: string[] = [];
    const firings: Firing[] = [];
    const added = { notify: () => undefined as void };
    const target = (instance: string) => ({
      kiq: async (input: number) => {
        const handle = await pipeline.kiq(input);
        runs.push(handle.runId);
        firings.push({ instance, tick: Date.now() });
        added.notify();
        return handle;
      },
    });
    const s1 = scheduler(worker);
    const s2 = scheduler(broker(prefix, false));
    s1.scheduleAt(target('1'), { id: 'every-second', cron: '* * * * * *', input: 41 });
    s2.scheduleAt(target('2'), { id: 'every-second', cron: '* * * * * *', input: 41 });
    await waitFor(firings, 3, added);
    await s1.close();
    await s2.close();
    // Each tick made one run: the ticks' runs are all distinct and as many as the firings.
    expect(new Set(runs).size).toBe(firings.length);
    const s1Runs = s1.get('every-second')?.runs ?? 0;
    const s2Runs = s2.get('every-second')?.runs ?? 0;
    expect(s1Runs + s2Runs).toBe(runs.length);
  }, 60_000);

  it('removing a schedule in one instance stops it for all; with InMemoryBroker timers stay local', async () => {
    const prefix = redis.prefix();
    const a = scheduler(broker(prefix, false));
    a.scheduleEvery(() => undefined, { id: 'gone', everyMs: 1000 });
    a.remove('gone');
    await a.close();
    const store = new BullMQBroker({ connection: redis.url, keyPrefix: prefix, worker: false });
    closers.push(() => store.close());
    const keys = await store.redis.keys(`${prefix}bullmq:{schedules}:repeat:gone*`);
    expect(keys).toEqual([]);

    const memory = new InMemoryBroker();
    closers.push(() => memory.close());
    const local = scheduler(memory);
    let fired = 0;
    let done!: () => void;
    const twice = new Promise<void>((r) => (done = r));
    local.scheduleEvery(() => {
      if (++fired === 2) done();
    }, { everyMs: 20 });
    await twice;
    expect(fired).toBeGreaterThanOrEqual(2);
  }, 60_000);
});
