/**
 * Part 2 of the distributed bench: log events written by a task on a BullMQ worker
 * process reach WebSocket subscribers through Redis, on ONE server instance or on TWO
 * (each with its own RedisPubSubTransport, in its own process), the same total number of
 * subscribers. Deliveries/s and server CPU per delivery under a burst, p50/p99 latency
 * at a paced rate. The subscribers are the fan-out bench's client processes
 * (bench/fanout/clients.ts), two of them in both layouts.
 */
import { BullMQBroker } from '../../src/redis/bullmq-broker.js';
import { nowUs, type CpuReport, type ExpectReport } from '../fanout/shared.js';
import { Peer, fmt, fmtInt, median } from '../orchestrator.js';
import { EMIT_LIFECYCLE_EVENTS, EMIT_PIPELINE, emitPipeline } from './shared.js';

export interface EventsOptions {
  url: string;
  keyPrefix: string;
  /** Total subscribers (split evenly over two client processes). */
  subscribers: number;
  /** Log events per burst round (over all runs). */
  burstEvents: number;
  /** Runs emitting at once in a burst (the worker's concurrency): one run's events are appended one after the other. */
  burstRuns: number;
  rounds: number;
  /** Paced deliveries per second in total. */
  rate: number;
  pacedMs: number;
  /** Paced passes per layout (layouts alternate; clients reconnect each pass). */
  passes: number;
}

export interface LayoutResult {
  instances: number;
  perSec: number;
  cpuPerDelivery: number;
  /** Burst rounds: CPU µs per delivery. */
  rounds: number[];
  /** Per paced pass, the higher of the two client processes: p50 / p99 / max in ms; server fan-out of one event p50 / p99 in ms (the higher instance). */
  passes: Latency[];
  /** Medians over the passes. */
  p50: number;
  p99: number;
  max: number;
  fanOutP50: number;
  fanOutP99: number;
}

interface Latency {
  p50: number;
  p99: number;
  max: number;
  fanOutP50: number;
  fanOutP99: number;
}

const WARMUP_MS = 500;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function runEvents(o: EventsOptions, log: (line: string) => void): Promise<LayoutResult[]> {
  const serverFile = new URL('./server.js', import.meta.url);
  const clientsFile = new URL('../fanout/clients.js', import.meta.url);
  const servers = [1, 2].map((i) => new Peer(`server ${i}`, serverFile, [o.url, o.keyPrefix], ['--expose-gc']));
  const emitter = new Peer('emit worker', new URL('./worker.js', import.meta.url), ['emit', o.url, o.keyPrefix, String(o.burstRuns), '1']);
  const broker = new BullMQBroker({ connection: o.url, keyPrefix: o.keyPrefix, worker: false });
  const pipeline = emitPipeline(broker);
  const results: LayoutResult[] = [];
  try {
    const urls = await Promise.all(servers.map(async (s) => (await s.request<{ url: string }>({ cmd: 'start' }, 60_000)).url));
    await emitter.request({ cmd: 'ready' }, 60_000);
    const half = [Math.ceil(o.subscribers / 2), Math.floor(o.subscribers / 2)];

    const bursts = new Map<number, { perSec: number; cpuPerDelivery: number }[]>();
    const passes = new Map<number, Latency[]>();
    // Layouts alternate (1, 2, 1, 2, ...) so that both see the same machine; the bursts run in the first pass of each.
    for (let pass = 0; pass < o.passes; pass++) {
      for (const instances of [1, 2]) {
        const used = servers.slice(0, instances);
        const clients = [0, 1].map((i) => new Peer(`clients ${i + 1}`, clientsFile, ['flowcast']));
        try {
          // Client process i connects to server i (two instances) or both to server 1.
          await Promise.all(clients.map((c, i) => c.request({ cmd: 'connect', url: urls[instances === 2 ? i : 0], connections: half[i] }, 180_000)));
          const counts = await Promise.all(used.map((s) => s.request<number>({ cmd: 'subscribers' })));
          const total = counts.reduce((a, b) => a + b, 0);
          if (total !== o.subscribers) throw new Error(`${instances} instance(s): ${total} subscribers on the servers, expected ${o.subscribers}`);
          // The servers' Redis subscriptions are made asynchronously: let them settle.
          await sleep(300);

          /** `runs` runs of the emit pipeline at once, `events` log lines over all of them. */
          const run = async (events: number, runs: number, rate: number, latency: boolean, timeoutMs: number): Promise<{ got: ExpectReport[]; cpuUs: number; startUs: number }> => {
            const each = Array.from({ length: runs }, (_, i) => Math.floor(events / runs) + (i < events % runs ? 1 : 0));
            const perConnection = events + runs * EMIT_LIFECYCLE_EVENTS;
            await Promise.all(clients.map((c) => c.request({ cmd: 'expect', perConnection, latency, skipUs: WARMUP_MS * 1000, timeoutMs })));
            await Promise.all(used.map((s) => s.request({ cmd: 'mark' })));
            const startUs = nowUs();
            const handles = await Promise.all(each.map((n) => pipeline.kiq({ events: n, rate: rate / runs })));
            const got = await Promise.all(clients.map((c) => c.request<ExpectReport>({ cmd: 'wait' }, timeoutMs + 30_000)));
            const cpu = await Promise.all(used.map((s) => s.request<CpuReport>({ cmd: 'measure' })));
            await Promise.all(handles.map((h) => h.waitResult({ timeoutMs: 30_000 })));
            const missing = got.filter((g) => g.timedOut);
            if (missing.length > 0) {
              throw new Error(`${instances} instance(s): ${got.map((g) => g.received).join(' + ')} of ${o.subscribers * perConnection} deliveries arrived in ${timeoutMs} ms`);
            }
            return { got, cpuUs: cpu.reduce((a, c) => a + c.userUs + c.systemUs, 0), startUs };
          };

          const burst = async (events: number): Promise<{ perSec: number; cpuPerDelivery: number }> => {
            await sleep(200);
            const { got, cpuUs, startUs } = await run(events, o.burstRuns, 0, false, 90_000);
            const received = got.reduce((a, g) => a + g.received, 0);
            const lastUs = Math.max(...got.map((g) => g.lastUs));
            return { perSec: received / ((lastUs - startUs) / 1e6), cpuPerDelivery: cpuUs / received };
          };
          if (pass === 0) {
            await burst(Math.ceil(o.burstEvents / 2)); // warm-up
            const list: { perSec: number; cpuPerDelivery: number }[] = [];
            for (let r = 0; r < o.rounds; r++) list.push(await burst(o.burstEvents));
            bursts.set(instances, list);
            log(
              `  ${instances} instance(s), burst: ${list.map((b) => `${fmtInt(b.perSec)} deliveries/s at ${fmt(b.cpuPerDelivery, 3)} µs`).join('; ')}`,
            );
          }

          await sleep(200);
          const eventsPerSec = o.rate / o.subscribers;
          const pacedEvents = Math.round((eventsPerSec * (o.pacedMs + WARMUP_MS)) / 1000);
          await Promise.all(used.map((s) => s.request({ cmd: 'fanout-start', pipelineId: EMIT_PIPELINE })));
          const paced = await run(pacedEvents, 1, eventsPerSec, true, o.pacedMs + WARMUP_MS + 60_000);
          const fan = await Promise.all(used.map((s) => s.request<{ p50Us: number; p99Us: number }>({ cmd: 'fanout-stop' })));
          const worst = (k: 'p50' | 'p99' | 'max'): number => Math.max(...paced.got.map((g) => (g.latencies?.[k] ?? Number.NaN) / 1000));
          const latency: Latency = {
            p50: worst('p50'),
            p99: worst('p99'),
            max: worst('max'),
            fanOutP50: Math.max(...fan.map((f) => f.p50Us)) / 1000,
            fanOutP99: Math.max(...fan.map((f) => f.p99Us)) / 1000,
          };
          passes.set(instances, [...(passes.get(instances) ?? []), latency]);
          log(
            `  ${instances} instance(s), paced pass ${pass + 1}: p50 ${fmt(latency.p50, 2)} ms, p99 ${fmt(latency.p99, 2)} ms, max ${fmt(latency.max, 2)} ms; ` +
              `server fan-out of one event p50 ${fmt(latency.fanOutP50, 2)} ms, p99 ${fmt(latency.fanOutP99, 2)} ms`,
          );
        } finally {
          await Promise.all(clients.map((c) => c.close()));
        }
      }
    }
    for (const instances of [1, 2]) {
      const list = bursts.get(instances) ?? [];
      const cpuMid = median(list.map((b) => b.cpuPerDelivery));
      const chosen = list.find((b) => b.cpuPerDelivery === cpuMid);
      const lat = passes.get(instances) ?? [];
      results.push({
        instances,
        perSec: chosen?.perSec ?? Number.NaN,
        cpuPerDelivery: cpuMid,
        rounds: list.map((b) => b.cpuPerDelivery),
        passes: lat,
        p50: median(lat.map((l) => l.p50)),
        p99: median(lat.map((l) => l.p99)),
        max: median(lat.map((l) => l.max)),
        fanOutP50: median(lat.map((l) => l.fanOutP50)),
        fanOutP99: median(lat.map((l) => l.fanOutP99)),
      });
    }
  } finally {
    await Promise.all([...servers, emitter].map((p) => p.close()));
    await broker.close();
  }
  return results;
}
