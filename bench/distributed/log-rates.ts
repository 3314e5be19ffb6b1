/**
 * The log-rate part of the distributed bench (issue 18, goal 6): log events written by
 * tasks (`ctx.log`) on TWO BullMQ worker processes reach a WebSocket client through
 * Redis, on one server instance and on two (one client connection on each), one
 * redis-server. At each paced rate (log events/s over all runs): p50/p99/max latency
 * from the task's write to the client's receipt, whether every event arrived, the
 * Redis commands and CPU per log event, the workers' CPU per log event; and the largest
 * rate held (all delivered, p99 <= 50 ms).
 */
import { BullMQBroker } from '../../src/redis/bullmq-broker.js';
import { Redis } from 'ioredis';
import type { ExpectReport } from '../fanout/shared.js';
import { Peer, fmt, fmtInt } from '../orchestrator.js';
import { redisSnapshot, redisUsage, type RedisUsage } from './redis-stats.js';
import { EMIT_LIFECYCLE_EVENTS, emitPipeline } from './shared.js';

export interface LogRatesOptions {
  url: string;
  keyPrefix: string;
  /** Log events per second over all runs. */
  rates: number[];
  /** Server instances to measure (1 and/or 2). */
  layouts: number[];
  /** Runs writing at once (spread over the 2 worker processes): one run's lines are appended in order. */
  runs: number;
  /** Paced time per rate, after a 500 ms warm-up. */
  pacedMs: number;
  /** p99 target, ms. */
  targetMs: number;
}

export interface RatePoint {
  instances: number;
  rate: number;
  delivered: number;
  expected: number;
  p50: number;
  p99: number;
  max: number;
  held: boolean;
  /** Redis commands (scripts' inner ones included) per log event, and the top ones. */
  commandsPerEvent: number;
  redis: RedisUsage;
  events: number;
  redisCpuUsPerEvent: number;
  workerCpuUsPerEvent: number;
}

const WARMUP_MS = 500;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function runLogRates(o: LogRatesOptions, log: (line: string) => void): Promise<RatePoint[]> {
  const serverFile = new URL('./server.js', import.meta.url);
  const clientsFile = new URL('../fanout/clients.js', import.meta.url);
  const workerFile = new URL('./worker.js', import.meta.url);
  const maxInstances = Math.max(...o.layouts);
  const servers = Array.from({ length: maxInstances }, (_, i) => new Peer(`log server ${i + 1}`, serverFile, [o.url, o.keyPrefix]));
  const perWorker = [Math.ceil(o.runs / 2), Math.floor(o.runs / 2)].map((n) => Math.max(1, n));
  const workers = perWorker.map((c, i) => new Peer(`log worker ${i + 1}`, workerFile, ['emit', o.url, o.keyPrefix, String(c), '1']));
  const admin = new Redis(o.url, { maxRetriesPerRequest: null });
  const broker = new BullMQBroker({ connection: o.url, keyPrefix: o.keyPrefix, worker: false });
  const pipeline = emitPipeline(broker);
  const points: RatePoint[] = [];
  try {
    const urls = await Promise.all(servers.map(async (s) => (await s.request<{ url: string }>({ cmd: 'start' }, 60_000)).url));
    await Promise.all(workers.map((w) => w.request({ cmd: 'ready' }, 60_000)));
    for (const instances of o.layouts) {
      // One client connection on each server instance used.
      const clients = urls.slice(0, instances).map((_, i) => new Peer(`log client ${i + 1}`, clientsFile, ['flowcast']));
      try {
        await Promise.all(clients.map((c, i) => c.request({ cmd: 'connect', url: urls[i], connections: 1 }, 60_000)));
        await sleep(300);
        const pass = async (rate: number, measured: boolean): Promise<RatePoint> => {
          const total = Math.round((rate * (o.pacedMs + WARMUP_MS)) / 1000);
          const each = Array.from({ length: o.runs }, (_, i) => Math.floor(total / o.runs) + (i < total % o.runs ? 1 : 0));
          const perConnection = total + o.runs * EMIT_LIFECYCLE_EVENTS;
          const timeoutMs = o.pacedMs + WARMUP_MS + 60_000;
          await Promise.all(clients.map((c) => c.request({ cmd: 'expect', perConnection, latency: true, skipUs: WARMUP_MS * 1000, timeoutMs })));
          await Promise.all(workers.map((w) => w.request({ cmd: 'mark' })));
          const before = await redisSnapshot(admin);
          const handles = await Promise.all(each.map((n) => pipeline.kiq({ events: n, rate: rate / o.runs })));
          const got = await Promise.all(clients.map((c) => c.request<ExpectReport>({ cmd: 'wait' }, timeoutMs + 30_000)));
          await Promise.all(handles.map((h) => h.waitResult({ timeoutMs: 60_000 })));
          const after = await redisSnapshot(admin);
          const workerCpu = (await Promise.all(workers.map((w) => w.request<number>({ cmd: 'measure' })))).reduce((a, b) => a + b, 0);
          const usage = redisUsage(before, after);
          const delivered = Math.min(...got.map((g) => g.received));
          const worst = (k: 'p50' | 'p99' | 'max'): number => Math.max(...got.map((g) => (g.latencies?.[k] ?? Number.NaN) / 1000));
          const p: RatePoint = {
            instances,
            rate,
            delivered,
            expected: perConnection,
            p50: worst('p50'),
            p99: worst('p99'),
            max: worst('max'),
            held: delivered === perConnection && worst('p99') <= o.targetMs,
            commandsPerEvent: usage.calls / total,
            redis: usage,
            events: total,
            redisCpuUsPerEvent: usage.cpuUs / total,
            workerCpuUsPerEvent: workerCpu / total,
          };
          if (measured) {
            log(
              `  ${instances} server(s), ${fmtInt(rate)} log events/s: p50 ${fmt(p.p50, 1)} ms, p99 ${fmt(p.p99, 1)} ms, max ${fmt(p.max, 1)} ms, ` +
                `${fmtInt(delivered)} of ${fmtInt(perConnection)} delivered per client; ${fmt(p.commandsPerEvent, 1)} Redis commands per log event; ${p.held ? 'held' : 'NOT held'}`,
            );
          }
          return p;
        };
        await pass(Math.min(...o.rates), false); // warm-up
        for (const rate of o.rates) points.push(await pass(rate, true));
      } finally {
        await Promise.all(clients.map((c) => c.close()));
      }
    }
  } finally {
    await Promise.all([...servers, ...workers].map((p) => p.close()));
    await broker.close();
    await admin.quit();
  }
  return points;
}
