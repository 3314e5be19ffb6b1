/**
 * Part 1 of the distributed bench: tracked flowcast pipeline steps/s through the BullMQ
 * broker against raw BullMQ jobs/s, on the same Redis, with the same worker processes
 * count and total concurrency, in one run (rounds interleaved).
 */
import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { HookManager } from '../../src/events/hook-manager.js';
import { PipelineTrackingManager } from '../../src/tracking/manager.js';
import { BullMQBroker } from '../../src/redis/bullmq-broker.js';
import { bullmqPrefix } from '../../src/redis/keys.js';
import { nowUs } from '../fanout/shared.js';
import { redisSnapshot, redisUsage, type RedisUsage } from './redis-stats.js';
import { Peer, fmt, fmtInt, median } from '../orchestrator.js';
import { RAW_QUEUE, noopPipelines, type CountReport } from './shared.js';

export interface ThroughputOptions {
  url: string;
  keyPrefix: string;
  /** Worker processes per side. */
  workers: number;
  /** Total concurrency per side, split over the worker processes. */
  concurrency: number;
  /** No-op steps per flowcast run. */
  steps: number;
  /** Flowcast runs per round (raw: runs × steps jobs). */
  runs: number;
  rounds: number;
  /** Starts (flowcast `kiq`, raw `queue.add`) kept in flight by the producer. */
  lanes: number;
  /** Extra Node flags for the flowcast worker processes (e.g. --cpu-prof). */
  workerFlags: string[];
  /** Also measure the same pipeline without tracking (hooks, run state and events on). */
  untracked: boolean;
  /** The flowcast workers' `chainSteps` (undefined: the broker's default). */
  chainSteps?: number | undefined;
}

export interface SideResult {
  /** Steps (flowcast) or jobs (raw) per second, per round. */
  rounds: number[];
  perSec: number;
  /** CPU µs per step/job, medians over rounds: all worker processes, the producer, redis-server. */
  workerCpuUs: number;
  producerCpuUs: number;
  redisCpuUs: number;
  /** Redis commands per step/job (scripts' inner commands included) and the top ones, from the median round. */
  redisCalls: number;
  redis: RedisUsage;
  /** With DISTRIBUTED_COUNT_COMMANDS=1: commands the worker processes sent per step/job, by name (last round). */
  sent: Record<string, number> | null;
}

export interface ThroughputResult {
  raw: SideResult;
  flowcast: SideResult;
  /** flowcast / raw of each pair of rounds (run one after the other). */
  ratios: number[];
  /** With `untracked`: the same pipeline without tracking, and its ratios to raw. */
  untracked: SideResult | null;
  untrackedRatios: number[];
  concurrencyPerWorker: number[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Splits `total` over `parts` (the first ones get one more when it does not divide). */
function split(total: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0));
}

/** Runs `count` calls of `fn(i)` with `lanes` in flight. */
async function inLanes(count: number, lanes: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < count) await fn(next++);
  };
  await Promise.all(Array.from({ length: Math.min(lanes, count) }, lane));
}

/**
 * Polls the workers until their completions reach `target`; returns their reports. Not
 * often: an IPC round trip costs the loaded workers measurably, and the round's end is
 * the last completion's own time stamp, not the poll's.
 */
async function waitFor(workers: Peer[], target: number, timeoutMs: number): Promise<CountReport[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const reports = await Promise.all(workers.map((w) => w.request<CountReport>({ cmd: 'count' })));
    const done = reports.reduce((a, r) => a + r.completed, 0);
    if (done >= target) return reports;
    if (Date.now() > deadline) throw new Error(`${done} of ${target} completions after ${timeoutMs} ms`);
    await sleep(200);
  }
}

interface RoundResult {
  perSec: number;
  workerCpuUs: number;
  producerCpuUs: number;
  redisCpuUs: number;
  redis: RedisUsage;
  sent: Record<string, number> | null;
}

export async function runThroughput(o: ThroughputOptions, log: (line: string) => void): Promise<ThroughputResult> {
  const per = split(o.concurrency, o.workers);
  const file = new URL('./worker.js', import.meta.url);
  const rawWorkers = per.map((c, i) => new Peer(`raw worker ${i + 1}`, file, ['raw', o.url, o.keyPrefix, String(c), String(o.steps)]));
  const chain = o.chainSteps === undefined ? [] : [String(o.chainSteps)];
  const flowWorkers = per.map((c, i) => new Peer(`flowcast worker ${i + 1}`, file, ['flowcast', o.url, o.keyPrefix, String(c), String(o.steps), ...chain], o.workerFlags));
  const admin = new Redis(o.url, { maxRetriesPerRequest: null });
  const queueConnection = new Redis(o.url, { maxRetriesPerRequest: null });
  const queue = new Queue(RAW_QUEUE, { connection: queueConnection, prefix: bullmqPrefix(o.keyPrefix) });
  // The producer: starts runs, runs no job; hooks and tracking attached as on the workers.
  const broker = new BullMQBroker({ connection: o.url, keyPrefix: o.keyPrefix, worker: false });
  const tracking = new PipelineTrackingManager().withAutoStorage(broker);
  let producerEvents = 0;
  const hooks = new HookManager();
  hooks.on('*', () => void producerEvents++);
  const pipelines = noopPipelines(broker, o.steps);
  pipelines.tracked.withHooks(hooks).withTracking(tracking);
  pipelines.untracked.withHooks(hooks);
  try {
    await Promise.all([...rawWorkers, ...flowWorkers].map((w) => w.request({ cmd: 'ready' }, 60_000)));
    await queue.waitUntilReady();

    const measureRound = async (workers: Peer[], units: number, start: () => Promise<void>, target: number): Promise<{ round: RoundResult; reports: CountReport[] }> => {
      await Promise.all(workers.map((w) => w.request({ cmd: 'reset' })));
      await Promise.all(workers.map((w) => w.request({ cmd: 'mark' })));
      const before = await redisSnapshot(admin);
      const cpu0 = process.cpuUsage();
      const t0 = nowUs();
      await start();
      const reports = await waitFor(workers, target, 300_000);
      const cpu = process.cpuUsage(cpu0);
      const after = await redisSnapshot(admin);
      const workerCpu = (await Promise.all(workers.map((w) => w.request<number>({ cmd: 'measure' })))).reduce((a, b) => a + b, 0);
      const lastUs = Math.max(...reports.map((r) => r.lastUs));
      const usage = redisUsage(before, after);
      let sent: Record<string, number> | null = null;
      if (process.env.DISTRIBUTED_COUNT_COMMANDS === '1') {
        sent = {};
        for (const byName of await Promise.all(workers.map((w) => w.request<Record<string, number>>({ cmd: 'commands' })))) {
          for (const [name, n] of Object.entries(byName)) sent[name] = (sent[name] ?? 0) + n / units;
        }
      }
      return {
        reports,
        round: {
          perSec: units / ((lastUs - t0) / 1e6),
          workerCpuUs: workerCpu / units,
          // The producer's CPU includes the polling of the workers (the same on both sides).
          producerCpuUs: (cpu.user + cpu.system) / units,
          redisCpuUs: usage.cpuUs / units,
          redis: usage,
          sent,
        },
      };
    };

    const rawRound = async (runs: number): Promise<RoundResult> => {
      const jobs = runs * o.steps;
      // One by one, as flowcast starts its runs (no addBulk on either side); the same job
      // options as the broker's step jobs (custom id, 3 attempts, removed on completion).
      const start = (): Promise<void> =>
        inLanes(jobs, o.lanes, (i) =>
          queue.add('job', { n: i }, { jobId: randomUUID(), attempts: 3, backoff: { type: 'fixed', delay: 1000 }, removeOnComplete: true, removeOnFail: 1000 }),
        );
      return (await measureRound(rawWorkers, jobs, start, jobs)).round;
    };

    const flowRound = async (runs: number, tracked = true): Promise<RoundResult> => {
      producerEvents = 0;
      const pipeline = tracked ? pipelines.tracked : pipelines.untracked;
      const start = (): Promise<void> => inLanes(runs, o.lanes, (i) => pipeline.kiq(i));
      const { round, reports } = await measureRound(flowWorkers, runs * o.steps, start, runs);
      const steps = reports.reduce((a, r) => a + r.steps, 0);
      if (steps !== runs * o.steps) throw new Error(`flowcast: ${steps} steps completed, expected ${runs * o.steps}`);
      // Every event of every run reached the hooks of the process that emitted it.
      await sleep(50);
      const events = (await Promise.all(flowWorkers.map((w) => w.request<CountReport>({ cmd: 'count' })))).reduce((a, r) => a + r.events, 0) + producerEvents;
      const expected = runs * (2 * o.steps + 2);
      if (events !== expected) throw new Error(`flowcast: the hooks saw ${events} events, expected ${expected}`);
      return round;
    };

    // Warm-up rounds as big as a measured one (JIT, connections, scripts loaded), then rounds interleaved so both sides see the same machine.
    const warm = o.runs;
    await rawRound(warm);
    await flowRound(warm);
    if (o.untracked) await flowRound(warm, false);
    const raw: RoundResult[] = [];
    const flow: RoundResult[] = [];
    const bare: RoundResult[] = [];
    for (let r = 0; r < o.rounds; r++) {
      raw.push(await rawRound(o.runs));
      flow.push(await flowRound(o.runs));
      if (o.untracked) bare.push(await flowRound(o.runs, false));
      const a = raw.at(-1) as RoundResult;
      const b = flow.at(-1) as RoundResult;
      const c = bare.at(-1);
      log(
        `  round ${r + 1}: raw BullMQ ${fmtInt(a.perSec)} jobs/s, flowcast ${fmtInt(b.perSec)} steps/s (${fmt(b.perSec / a.perSec, 2)}x)` +
          (c === undefined ? '' : `, untracked ${fmtInt(c.perSec)} steps/s (${fmt(c.perSec / a.perSec, 2)}x)`),
      );
    }
    const side = (rounds: RoundResult[]): SideResult => {
      const perSec = median(rounds.map((r) => r.perSec));
      const mid = rounds.find((r) => r.perSec === perSec) as RoundResult;
      return {
        rounds: rounds.map((r) => r.perSec),
        perSec,
        workerCpuUs: median(rounds.map((r) => r.workerCpuUs)),
        producerCpuUs: median(rounds.map((r) => r.producerCpuUs)),
        redisCpuUs: median(rounds.map((r) => r.redisCpuUs)),
        redisCalls: mid.redis.calls / (o.runs * o.steps),
        redis: mid.redis,
        sent: (rounds.at(-1) as RoundResult).sent,
      };
    };
    const ratiosOf = (rounds: RoundResult[]): number[] => rounds.map((f, i) => f.perSec / (raw[i] as RoundResult).perSec);
    return {
      raw: side(raw),
      flowcast: side(flow),
      ratios: ratiosOf(flow),
      untracked: o.untracked ? side(bare) : null,
      untrackedRatios: ratiosOf(bare),
      concurrencyPerWorker: per,
    };
  } finally {
    await Promise.all([...rawWorkers, ...flowWorkers].map((w) => w.close()));
    await hooks.idle();
    await tracking.close();
    await broker.close();
    await queue.close();
    await queueConnection.quit();
    await admin.quit();
  }
}
