/**
 * Part 1 of the distributed bench: tracked flowcast pipeline steps/s through the BullMQ
 * broker against raw BullMQ jobs/s, on the same Redis, with the same worker processes
 * count and total concurrency, in one run (rounds interleaved). Raw BullMQ runs one job
 * per step with as many bytes of data as a flowcast step job; the flowcast arms are the
 * same queue work (`equal`: a job per step), the chained mode (`chained`), and `untracked`.
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
import type { Pipeline } from '../../src/pipeline/pipeline.js';

/**
 * A flowcast arm of part 1. `equal`: every step is its own BullMQ job (`chainSteps: 0`),
 * the same queue work as raw BullMQ (one job per step): the arm the verdict rests on.
 * `chained`: the broker's step chaining (a run's steps in one job, in process), a
 * separate, labelled arm. `untracked`: `equal` without tracking (what tracking costs).
 */
export type FlowArm = 'equal' | 'chained' | 'untracked';
export const FLOW_ARMS: readonly FlowArm[] = ['equal', 'chained', 'untracked'];

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
  /** The flowcast arms, each against the same raw BullMQ rounds. */
  arms: FlowArm[];
  /** The chained arm's `chainSteps` (undefined: the broker's default, 100). */
  chainSteps?: number | undefined;
}

export interface SideResult {
  /** Steps (flowcast) or jobs (raw, one job = one step's queue work) per second, per round. */
  rounds: number[];
  perSec: number;
  /** CPU µs per step, medians over rounds: all worker processes, the producer, redis-server. */
  workerCpuUs: number;
  producerCpuUs: number;
  redisCpuUs: number;
  /** BullMQ jobs per step (raw and `equal`: 1). */
  jobsPerStep: number;
  /** Redis commands per step (scripts' inner commands included) and the top ones, from the median round. */
  redisCalls: number;
  redis: RedisUsage;
  /** With DISTRIBUTED_COUNT_COMMANDS=1: commands the worker processes sent per step/job, by name (last round). */
  sent: Record<string, number> | null;
}

export interface ArmResult {
  arm: FlowArm;
  side: SideResult;
  /** flowcast / raw of each pair of rounds (run one after the other). */
  ratios: number[];
}

export interface ThroughputResult {
  raw: SideResult;
  arms: ArmResult[];
  /** Bytes of a flowcast step job's data (JSON), measured; raw jobs carry as many. */
  payloadBytes: number;
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

/** Raw BullMQ job data of `bytes` bytes as JSON (at least `{"n":0,"pad":""}`). */
function rawPayload(i: number, bytes: number): { n: number; pad: string } {
  const base = JSON.stringify({ n: i, pad: '' }).length;
  return { n: i, pad: 'x'.repeat(Math.max(0, bytes - base)) };
}

/**
 * Measures the bytes of the step jobs this process enqueues while `fn` runs (the
 * producer enqueues each run's first step), by wrapping `Queue.prototype.add`.
 */
async function probeJobBytes(fn: () => Promise<void>): Promise<number> {
  const proto = Queue.prototype as unknown as { add: (name: string, data: unknown, opts?: unknown) => Promise<unknown> };
  const add = proto.add;
  let bytes = 0;
  let jobs = 0;
  proto.add = function (this: unknown, name: string, data: unknown, opts?: unknown) {
    bytes += Buffer.byteLength(JSON.stringify(data));
    jobs++;
    return add.call(this, name, data, opts);
  };
  try {
    await fn();
  } finally {
    proto.add = add;
  }
  return jobs === 0 ? 0 : Math.round(bytes / jobs);
}

interface FlowSide {
  arm: FlowArm;
  prefix: string;
  workers: Peer[];
  broker: BullMQBroker;
  tracking: PipelineTrackingManager;
  pipeline: Pipeline<number, number>;
  jobsPerStep: number;
}

export async function runThroughput(o: ThroughputOptions, log: (line: string) => void): Promise<ThroughputResult> {
  const per = split(o.concurrency, o.workers);
  const file = new URL('./worker.js', import.meta.url);
  const rawWorkers = per.map((c, i) => new Peer(`raw worker ${i + 1}`, file, ['raw', o.url, o.keyPrefix, String(c), String(o.steps)]));
  const admin = new Redis(o.url, { maxRetriesPerRequest: null });
  const queueConnection = new Redis(o.url, { maxRetriesPerRequest: null });
  const queue = new Queue(RAW_QUEUE, { connection: queueConnection, prefix: bullmqPrefix(o.keyPrefix) });
  let producerEvents = 0;
  const hooks = new HookManager();
  hooks.on('*', () => void producerEvents++);
  // One set of flowcast worker processes per chaining mode, each on a key prefix of its
  // own (the modes must not take each other's jobs); `untracked` runs on the equal one.
  const sides = new Map<'equal' | 'chained', Omit<FlowSide, 'arm' | 'pipeline'> & { pipelines: ReturnType<typeof noopPipelines> }>();
  const chainOf = (mode: 'equal' | 'chained'): number | undefined => (mode === 'equal' ? 0 : o.chainSteps);
  for (const mode of ['equal', 'chained'] as const) {
    if (!o.arms.includes(mode) && !(mode === 'equal' && o.arms.includes('untracked'))) continue;
    const prefix = `${o.keyPrefix}${mode}:`;
    const chain = chainOf(mode);
    const workers = per.map((c, i) => new Peer(`flowcast ${mode} worker ${i + 1}`, file, ['flowcast', o.url, prefix, String(c), String(o.steps), ...(chain === undefined ? [] : [String(chain)])], o.workerFlags));
    // The producer: starts runs, runs no job; hooks and tracking attached as on the workers.
    const broker = new BullMQBroker({ connection: o.url, keyPrefix: prefix, worker: false });
    const tracking = new PipelineTrackingManager().withAutoStorage(broker);
    const pipelines = noopPipelines(broker, o.steps);
    pipelines.tracked.withHooks(hooks).withTracking(tracking);
    pipelines.untracked.withHooks(hooks);
    const c = chain ?? 100;
    sides.set(mode, { prefix, workers, broker, tracking, pipelines, jobsPerStep: c === 0 ? 1 : Math.ceil(o.steps / c) / o.steps });
  }
  const flows: FlowSide[] = o.arms.map((arm) => {
    const mode = arm === 'chained' ? 'chained' : 'equal';
    const side = sides.get(mode) as NonNullable<ReturnType<typeof sides.get>>;
    return { arm, ...side, pipeline: arm === 'untracked' ? side.pipelines.untracked : side.pipelines.tracked };
  });
  const allWorkers = [...rawWorkers, ...[...sides.values()].flatMap((s) => s.workers)];
  try {
    await Promise.all(allWorkers.map((w) => w.request({ cmd: 'ready' }, 60_000)));
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

    let payloadBytes = 0;
    const rawRound = async (runs: number): Promise<RoundResult> => {
      const jobs = runs * o.steps;
      // One by one, as flowcast starts its runs (no addBulk on either side); the same job
      // options as the broker's step jobs (custom id, 3 attempts, removed on completion)
      // and as many bytes of data as a flowcast step job.
      const start = (): Promise<void> =>
        inLanes(jobs, o.lanes, (i) =>
          queue.add('job', rawPayload(i, payloadBytes), { jobId: randomUUID(), attempts: 3, backoff: { type: 'fixed', delay: 1000 }, removeOnComplete: true, removeOnFail: 1000 }),
        );
      return (await measureRound(rawWorkers, jobs, start, jobs)).round;
    };

    const flowRound = async (f: FlowSide, runs: number): Promise<RoundResult> => {
      producerEvents = 0;
      const start = (): Promise<void> => inLanes(runs, o.lanes, (i) => f.pipeline.kiq(i));
      const { round, reports } = await measureRound(f.workers, runs * o.steps, start, runs);
      const steps = reports.reduce((a, r) => a + r.steps, 0);
      if (steps !== runs * o.steps) throw new Error(`flowcast ${f.arm}: ${steps} steps completed, expected ${runs * o.steps}`);
      // Every event of every run reached the hooks of the process that emitted it.
      await sleep(50);
      const events = (await Promise.all(f.workers.map((w) => w.request<CountReport>({ cmd: 'count' })))).reduce((a, r) => a + r.events, 0) + producerEvents;
      const expected = runs * (2 * o.steps + 2);
      if (events !== expected) throw new Error(`flowcast ${f.arm}: the hooks saw ${events} events, expected ${expected}`);
      return round;
    };

    // Warm-up rounds as big as a measured one (JIT, connections, scripts loaded); the
    // first flowcast one also measures the bytes of a step job, which the raw jobs then carry.
    const warm = o.runs;
    for (const [i, f] of flows.entries()) {
      if (i === 0) payloadBytes = await probeJobBytes(async () => void (await flowRound(f, warm)));
      else await flowRound(f, warm);
    }
    await rawRound(warm);
    log(`  a flowcast step job carries ${fmtInt(payloadBytes)} bytes of data (JSON); every raw BullMQ job carries as many`);
    // Rounds interleaved so that every arm sees the same machine.
    const raw: RoundResult[] = [];
    const byArm = new Map<FlowArm, RoundResult[]>(flows.map((f) => [f.arm, []]));
    for (let r = 0; r < o.rounds; r++) {
      const a = await rawRound(o.runs);
      raw.push(a);
      const parts: string[] = [];
      for (const f of flows) {
        const b = await flowRound(f, o.runs);
        byArm.get(f.arm)?.push(b);
        parts.push(`${f.arm} ${fmtInt(b.perSec)} steps/s (${fmt(b.perSec / a.perSec, 2)}x)`);
      }
      log(`  round ${r + 1}: raw BullMQ ${fmtInt(a.perSec)} jobs/s; flowcast ${parts.join(', ')}`);
    }
    const side = (rounds: RoundResult[], jobsPerStep: number): SideResult => {
      const perSec = median(rounds.map((r) => r.perSec));
      const mid = rounds.find((r) => r.perSec === perSec) as RoundResult;
      return {
        rounds: rounds.map((r) => r.perSec),
        perSec,
        workerCpuUs: median(rounds.map((r) => r.workerCpuUs)),
        producerCpuUs: median(rounds.map((r) => r.producerCpuUs)),
        redisCpuUs: median(rounds.map((r) => r.redisCpuUs)),
        jobsPerStep,
        redisCalls: mid.redis.calls / (o.runs * o.steps),
        redis: mid.redis,
        sent: (rounds.at(-1) as RoundResult).sent,
      };
    };
    return {
      raw: side(raw, 1),
      arms: flows.map((f) => {
        const rounds = byArm.get(f.arm) ?? [];
        return { arm: f.arm, side: side(rounds, f.jobsPerStep), ratios: rounds.map((b, i) => b.perSec / (raw[i] as RoundResult).perSec) };
      }),
      payloadBytes,
      concurrencyPerWorker: per,
    };
  } finally {
    await Promise.all(allWorkers.map((w) => w.close()));
    await hooks.idle();
    for (const s of sides.values()) {
      await s.tracking.close();
      await s.broker.close();
    }
    await queue.close();
    await queueConnection.quit();
    await admin.quit();
  }
}
