/**
 * Distributed: flowcast on Redis, measured in one run against what it is built on.
 *
 * 1. Throughput: tracked pipeline steps/s through `BullMQBroker` (hooks, Redis tracking,
 *    Redis event log and Pub/Sub all on) against raw BullMQ jobs/s (Queue + Worker, no-op
 *    processor), same Redis, same worker process count and total concurrency; rounds
 *    interleaved, median. CPU per step of the workers, the producer and redis-server.
 * 2. Events from a worker to WebSocket subscribers through Redis on ONE server instance
 *    against TWO (each its own process and RedisPubSubTransport), same total subscribers:
 *    deliveries/s and server CPU µs per delivery under burst, p50/p99 at a paced rate.
 *
 * Starts its own redis-server (free port, no persistence) and stops it at the end.
 *
 * Usage: npm run bench:distributed -- [--workers 2] [--concurrency 32] [--steps 5]
 *          [--runs 1000] [--rounds 5] [--lanes 50] [--subscribers 500] [--burst 1000] [--burst-runs 8]
 *          [--rate 20000] [--paced-ms 3000] [--passes 3] [--parts throughput,events] [--untracked] [--chain-steps N]
 * `--untracked` adds the same pipeline without tracking to part 1 (what tracking costs).
 * `--chain-steps N` sets the flowcast workers' `chainSteps` (default: the broker's, 100; 0: one BullMQ job per step).
 * DISTRIBUTED_WORKER_FLAGS="--cpu-prof --cpu-prof-dir=.tmp/prof" passes Node flags to the
 * flowcast worker processes of part 1.
 */
import { rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { startRedisServer } from '../test/helpers/redis-server.js';
import { runThroughput, type SideResult, type ThroughputResult } from './distributed/throughput.js';
import { runEvents, type LayoutResult } from './distributed/events.js';
import { fmt, fmtInt, median } from './orchestrator.js';

const PARTS = ['throughput', 'events'] as const;
const { values: args } = parseArgs({
  options: {
    workers: { type: 'string', default: '2' },
    concurrency: { type: 'string', default: '32' },
    steps: { type: 'string', default: '5' },
    runs: { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '5' },
    lanes: { type: 'string', default: '50' },
    subscribers: { type: 'string', default: '500' },
    burst: { type: 'string', default: '1000' },
    'burst-runs': { type: 'string', default: '8' },
    rate: { type: 'string', default: '20000' },
    'paced-ms': { type: 'string', default: '3000' },
    passes: { type: 'string', default: '3' },
    parts: { type: 'string', default: PARTS.join(',') },
    untracked: { type: 'boolean', default: false },
    'chain-steps': { type: 'string' },
  },
});
function positiveInt(value: string, name: string, min = 1): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}, received ${JSON.stringify(value)}`);
  return n;
}
const parts = args.parts.split(',').map((p) => {
  if (!(PARTS as readonly string[]).includes(p)) throw new Error(`--parts: each must be one of ${PARTS.join(', ')}, received ${JSON.stringify(p)}`);
  return p;
});
const WORKERS = positiveInt(args.workers, 'workers');
const CONCURRENCY = positiveInt(args.concurrency, 'concurrency');
if (CONCURRENCY < WORKERS) throw new Error(`--concurrency (${CONCURRENCY}) must be at least --workers (${WORKERS}): it is the total over the worker processes`);
const STEPS = positiveInt(args.steps, 'steps');
const RUNS = positiveInt(args.runs, 'runs');
const ROUNDS = positiveInt(args.rounds, 'rounds');
const LANES = positiveInt(args.lanes, 'lanes');
const SUBSCRIBERS = positiveInt(args.subscribers, 'subscribers', 2);
const BURST = positiveInt(args.burst, 'burst');
const BURST_RUNS = positiveInt(args['burst-runs'], 'burst-runs');
if (BURST_RUNS > BURST) throw new Error(`--burst-runs (${BURST_RUNS}) must not exceed --burst (${BURST})`);
const RATE = positiveInt(args.rate, 'rate');
const PACED_MS = positiveInt(args['paced-ms'], 'paced-ms');
const PASSES = positiveInt(args.passes, 'passes');

const fdLimit = Number(spawnSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).stdout.trim());
if (parts.includes('events') && Number.isFinite(fdLimit) && fdLimit < SUBSCRIBERS + 200) {
  throw new Error(`the open-file limit is ${fdLimit}: raise it (ulimit -n) or lower --subscribers`);
}

/** The whole bench stops by itself, whatever happens. */
const deadline = setTimeout(() => {
  console.error('distributed bench: over its 10-minute limit, stopping');
  process.exit(2);
}, 600_000);
deadline.unref();

const began = Date.now();
const redis = await startRedisServer();
const version = spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).stdout.match(/v=(\S+)/)?.[1] ?? '?';
console.log(
  `flowcast distributed bench: node ${process.version}, redis-server ${version} on 127.0.0.1:${redis.port} (no persistence); ` +
    `part 1: ${WORKERS} worker processes per side, total concurrency ${CONCURRENCY}, ${fmtInt(RUNS)} runs x ${STEPS} no-op steps per round, ${ROUNDS} rounds, ${LANES} starts in flight, ` +
    `flowcast chainSteps ${args['chain-steps'] ?? 'default (100)'}; ` +
    `part 2: ${fmtInt(SUBSCRIBERS)} subscribers, bursts of ${fmtInt(BURST)} events from ${BURST_RUNS} runs at once, paced ${fmtInt(RATE)} deliveries/s for ${PACED_MS} ms in ${PASSES} passes per layout`,
);

let throughput: ThroughputResult | null = null;
let events: LayoutResult[] = [];
try {
  if (parts.includes('throughput')) {
    console.log('\nPart 1: throughput');
    throughput = await runThroughput(
      {
        url: redis.url,
        keyPrefix: 'bd:',
        workers: WORKERS,
        concurrency: CONCURRENCY,
        steps: STEPS,
        runs: RUNS,
        rounds: ROUNDS,
        lanes: LANES,
        workerFlags: (process.env.DISTRIBUTED_WORKER_FLAGS ?? '').split(' ').filter((f) => f !== ''),
        untracked: args.untracked,
        chainSteps: args['chain-steps'] === undefined ? undefined : positiveInt(args['chain-steps'], 'chain-steps', 0),
      },
      (line) => console.log(line),
    );
  }
  if (parts.includes('events')) {
    console.log('\nPart 2: events through Redis to one or two server instances');
    events = await runEvents(
      { url: redis.url, keyPrefix: 'be:', subscribers: SUBSCRIBERS, burstEvents: BURST, burstRuns: BURST_RUNS, rounds: ROUNDS, rate: RATE, pacedMs: PACED_MS, passes: PASSES },
      (line) => console.log(line),
    );
  }
} finally {
  await redis.stop();
  rmSync(redis.dir, { recursive: true, force: true });
}

// ---- report ----
if (throughput !== null) {
  const t = throughput;
  const top = (s: SideResult, units: number): string =>
    s.redis.top
      .slice(0, 12)
      .map((c) => `${c.name} ${fmt(c.calls / units, 1)}`)
      .join(', ');
  const units = RUNS * STEPS;
  console.log(`\n### Throughput (${WORKERS} worker processes per side, concurrency ${t.concurrencyPerWorker.join(' + ')})\n`);
  console.log('| side | per second (median) | rounds | worker CPU µs per unit | producer CPU µs per unit | redis-server CPU µs per unit | Redis commands per unit |');
  console.log('|---|---:|---|---:|---:|---:|---:|');
  const line = (name: string, s: SideResult): void =>
    console.log(
      `| ${name} | ${fmtInt(s.perSec)} | ${s.rounds.map(fmtInt).join(', ')} | ${fmt(s.workerCpuUs, 0)} | ${fmt(s.producerCpuUs, 0)} | ${fmt(s.redisCpuUs, 0)} | ${fmt(s.redisCalls, 1)} |`,
    );
  line('raw BullMQ (jobs)', t.raw);
  line('flowcast, tracked (steps)', t.flowcast);
  if (t.untracked !== null) line('flowcast, untracked (steps)', t.untracked);
  console.log(`\nRedis commands per unit, most called (scripts' inner commands included):`);
  console.log(`- raw BullMQ: ${top(t.raw, units)}`);
  console.log(`- flowcast:   ${top(t.flowcast, units)}`);
  if (t.untracked !== null) console.log(`- untracked:  ${top(t.untracked, units)}`);
  for (const [name, s] of [['raw BullMQ', t.raw], ['flowcast', t.flowcast], ['untracked flowcast', t.untracked]] as const) {
    if (s === null || s.sent === null) continue;
    const list = Object.entries(s.sent).sort((a, b) => b[1] - a[1]);
    const total = list.reduce((a, [, n]) => a + n, 0);
    console.log(`- sent by the ${name} workers per unit: ${fmt(total, 1)} (${list.map(([c, n]) => `${c} ${fmt(n, 2)}`).join(', ')})`);
  }
  const ratio = t.flowcast.perSec / t.raw.perSec;
  const paired = median(t.ratios);
  console.log(
    `\nflowcast / raw BullMQ: ${fmt(ratio, 2)}x of the medians; round by round ${t.ratios.map((r) => fmt(r, 2)).join(', ')} (median ${fmt(paired, 2)}x). ` +
      `Target >= 0.8x: ${Math.max(ratio, paired) >= 0.8 ? 'met' : 'NOT met'}`,
  );
  if (t.untracked !== null) {
    console.log(
      `untracked flowcast / raw BullMQ: ${fmt(t.untracked.perSec / t.raw.perSec, 2)}x of the medians; round by round ${t.untrackedRatios.map((r) => fmt(r, 2)).join(', ')} ` +
        `(median ${fmt(median(t.untrackedRatios), 2)}x)`,
    );
  }
}
if (events.length > 0) {
  const half = `${Math.ceil(SUBSCRIBERS / 2)} + ${Math.floor(SUBSCRIBERS / 2)}`;
  console.log(`\n### Events to ${fmtInt(SUBSCRIBERS)} subscribers through Redis (two client processes of ${half})\n`);
  console.log('| server instances | deliveries/s (burst) | server CPU µs/delivery (burst, all instances) | rounds | p50 ms | p99 ms | max ms | p99 per pass | server fan-out of one event p50 / p99 ms |');
  console.log('|---:|---:|---:|---|---:|---:|---:|---|---:|');
  for (const e of events) {
    console.log(
      `| ${e.instances} | ${fmtInt(e.perSec)} | ${fmt(e.cpuPerDelivery, 3)} | ${e.rounds.map((r) => fmt(r, 3)).join(', ')} | ` +
        `${fmt(e.p50, 2)} | ${fmt(e.p99, 2)} | ${fmt(e.max, 2)} | ${e.passes.map((p) => fmt(p.p99, 1)).join(', ')} | ${fmt(e.fanOutP50, 2)} / ${fmt(e.fanOutP99, 2)} |`,
    );
  }
  const one = events.find((e) => e.instances === 1);
  const two = events.find((e) => e.instances === 2);
  if (one !== undefined && two !== undefined) {
    console.log(
      `\ntwo instances / one: deliveries/s ${fmt(two.perSec / one.perSec, 2)}x, CPU per delivery ${fmt(two.cpuPerDelivery / one.cpuPerDelivery, 2)}x, ` +
        `p99 ${fmt(two.p99 / one.p99, 2)}x, server fan-out of one event p50 ${fmt(two.fanOutP50 / one.fanOutP50, 2)}x ` +
        `(latency: the higher of the two client processes, fan-out: the higher instance, in each pass; medians over passes)`,
    );
  }
}
console.log(`\ntotal ${((Date.now() - began) / 1000).toFixed(0)} s`);
process.exit(0);
