/**
 * Distributed: flowcast on Redis, measured in one run against what it is built on.
 *
 * 1. Throughput (goal 5 of issue 18): raw BullMQ jobs/s (Queue + Worker, no-op
 *    processor, one job per step, as many bytes of data as a flowcast step job) against
 *    tracked flowcast steps/s through `BullMQBroker` (hooks, Redis tracking, Redis event
 *    log and Pub/Sub all on), same Redis, same worker process count and total
 *    concurrency; rounds interleaved, median. Arms: `equal` (every step its own BullMQ
 *    job, `chainSteps: 0`: the same queue work as raw; the verdict rests on it only),
 *    `chained` (the default step chaining, labelled, never the verdict), `untracked`.
 *    Per arm: CPU per step and per job of the workers, the producer and redis-server, and
 *    the Redis commands per step by name (INFO commandstats deltas).
 * 2. Memory (goal 7): `used_memory` before/after runs of a known shape, `MEMORY USAGE`
 *    per key kind, bytes per run and per event against the events' wire JSON.
 * 3. Log rates (goal 6): `ctx.log` on 2 workers to a WebSocket client through Redis on 1
 *    and 2 servers at paced rates: p50/p99, the largest rate held, commands per log event.
 * 4. Events: a worker's events to many WebSocket subscribers on ONE server instance
 *    against TWO: deliveries/s and server CPU per delivery under burst, p50/p99 paced.
 *
 * Starts its own redis-server (free port, no persistence) and stops it at the end.
 *
 * Usage: npm run bench:distributed -- [--quick] [--parts throughput,memory,logrates,events]
 *          [--workers 2] [--concurrency 32] [--steps 5] [--runs 1000] [--rounds 5] [--lanes 50]
 *          [--arms equal,chained] [--untracked] [--chain-steps N]
 *          [--memory-runs 200] [--memory-steps 5] [--memory-lines 4]
 *          [--log-rates 1000,5000,20000] [--log-layouts 1,2] [--log-runs 8] [--log-ms 3000]
 *          [--subscribers 500] [--burst 1000] [--burst-runs 8] [--rate 20000] [--paced-ms 3000] [--passes 3]
 * `--quick`: sizes for a run of about two minutes (runs 200, rounds 3, memory runs 100,
 * log 2000 ms per rate, parts throughput,memory,logrates); explicit flags still win.
 * `--untracked` adds the `untracked` arm. `--chain-steps N` sets the chained arm's
 * `chainSteps` (default: the broker's, 100).
 * DISTRIBUTED_WORKER_FLAGS="--cpu-prof --cpu-prof-dir=.tmp/prof" passes Node flags to the
 * flowcast worker processes of part 1; DISTRIBUTED_COUNT_COMMANDS=1 also counts the
 * commands the workers send, by name.
 */
import { rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { cpus, loadavg } from 'node:os';
import { startRedisServer } from '../test/helpers/redis-server.js';
import { FLOW_ARMS, runThroughput, type FlowArm, type ThroughputResult } from './distributed/throughput.js';
import { runEvents, type LayoutResult } from './distributed/events.js';
import { runMemory, type MemoryResult } from './distributed/memory.js';
import { runLogRates, type RatePoint } from './distributed/log-rates.js';
import { fmtInt } from './orchestrator.js';
import { reportEvents, reportLogRates, reportMemory, reportThroughput } from './distributed/report.js';

const PARTS = ['throughput', 'memory', 'logrates', 'events'] as const;
const { values: given } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    workers: { type: 'string' },
    concurrency: { type: 'string' },
    steps: { type: 'string' },
    runs: { type: 'string' },
    rounds: { type: 'string' },
    lanes: { type: 'string' },
    arms: { type: 'string' },
    'memory-runs': { type: 'string' },
    'memory-steps': { type: 'string' },
    'memory-lines': { type: 'string' },
    'log-rates': { type: 'string' },
    'log-layouts': { type: 'string' },
    'log-runs': { type: 'string' },
    'log-ms': { type: 'string' },
    subscribers: { type: 'string' },
    burst: { type: 'string' },
    'burst-runs': { type: 'string' },
    rate: { type: 'string' },
    'paced-ms': { type: 'string' },
    passes: { type: 'string' },
    parts: { type: 'string' },
    untracked: { type: 'boolean', default: false },
    'chain-steps': { type: 'string' },
  },
});
const DEFAULTS = {
  workers: '2',
  concurrency: '32',
  steps: '5',
  runs: '1000',
  rounds: '5',
  lanes: '50',
  arms: 'equal,chained',
  'memory-runs': '200',
  'memory-steps': '5',
  'memory-lines': '4',
  'log-rates': '1000,5000,20000',
  'log-layouts': '1,2',
  'log-runs': '8',
  'log-ms': '3000',
  subscribers: '500',
  burst: '1000',
  'burst-runs': '8',
  rate: '20000',
  'paced-ms': '3000',
  passes: '3',
  parts: PARTS.join(','),
};
const QUICK: Partial<typeof DEFAULTS> = { runs: '200', rounds: '3', 'memory-runs': '100', 'log-ms': '2000', parts: 'throughput,memory,logrates' };
type Key = keyof typeof DEFAULTS;
const arg = (k: Key): string => given[k] ?? (given.quick ? QUICK[k] : undefined) ?? DEFAULTS[k];
function positiveInt(value: string, name: string, min = 1): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}, received ${JSON.stringify(value)}`);
  return n;
}
function listOf<T extends string>(k: Key, allowed: readonly T[]): T[] {
  return arg(k)
    .split(',')
    .map((p) => {
      if (!(allowed as readonly string[]).includes(p)) throw new Error(`--${k}: each must be one of ${allowed.join(', ')}, received ${JSON.stringify(p)}`);
      return p as T;
    });
}
const intsOf = (k: Key): number[] => arg(k).split(',').map((v) => positiveInt(v, k));
const parts = listOf('parts', PARTS);
const ARMS: FlowArm[] = listOf('arms', FLOW_ARMS);
if (given.untracked && !ARMS.includes('untracked')) ARMS.push('untracked');
const WORKERS = positiveInt(arg('workers'), 'workers');
const CONCURRENCY = positiveInt(arg('concurrency'), 'concurrency');
if (CONCURRENCY < WORKERS) throw new Error(`--concurrency (${CONCURRENCY}) must be at least --workers (${WORKERS}): it is the total over the worker processes`);
const STEPS = positiveInt(arg('steps'), 'steps');
const RUNS = positiveInt(arg('runs'), 'runs');
const ROUNDS = positiveInt(arg('rounds'), 'rounds');
const LANES = positiveInt(arg('lanes'), 'lanes');
const CHAIN = given['chain-steps'] === undefined ? undefined : positiveInt(given['chain-steps'], 'chain-steps', 0);
const MEMORY_RUNS = positiveInt(arg('memory-runs'), 'memory-runs');
const MEMORY_STEPS = positiveInt(arg('memory-steps'), 'memory-steps');
const MEMORY_LINES = positiveInt(arg('memory-lines'), 'memory-lines', 0);
const LOG_RATES = intsOf('log-rates');
const LOG_LAYOUTS = intsOf('log-layouts');
if (LOG_LAYOUTS.some((l) => l > 2)) throw new Error('--log-layouts: each must be 1 or 2');
const LOG_RUNS = positiveInt(arg('log-runs'), 'log-runs', 2);
const LOG_MS = positiveInt(arg('log-ms'), 'log-ms');
const SUBSCRIBERS = positiveInt(arg('subscribers'), 'subscribers', 2);
const BURST = positiveInt(arg('burst'), 'burst');
const BURST_RUNS = positiveInt(arg('burst-runs'), 'burst-runs');
if (BURST_RUNS > BURST) throw new Error(`--burst-runs (${BURST_RUNS}) must not exceed --burst (${BURST})`);
const RATE = positiveInt(arg('rate'), 'rate');
const PACED_MS = positiveInt(arg('paced-ms'), 'paced-ms');
const PASSES = positiveInt(arg('passes'), 'passes');

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
const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' ');
const redis = await startRedisServer();
const version = spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).stdout.match(/v=(\S+)/)?.[1] ?? '?';
console.log(
  `flowcast distributed bench: node ${process.version}, redis-server ${version} on 127.0.0.1:${redis.port} (no persistence), ${cpus().length} cores, load average ${load()}; parts ${parts.join(', ')}\n` +
    (parts.includes('throughput')
      ? `- throughput: ${WORKERS} worker processes per arm, total concurrency ${CONCURRENCY}, ${fmtInt(RUNS)} runs x ${STEPS} no-op steps per round (raw: ${fmtInt(RUNS * STEPS)} jobs), ${ROUNDS} rounds, ${LANES} starts in flight; arms ${ARMS.join(', ')}; chained arm chainSteps ${CHAIN ?? 'default (100)'}\n`
      : '') +
    (parts.includes('memory') ? `- memory: ${MEMORY_RUNS} runs of ${MEMORY_STEPS} steps x ${MEMORY_LINES} log lines\n` : '') +
    (parts.includes('logrates') ? `- log rates: ${LOG_RATES.map(fmtInt).join(', ')} log events/s from ${LOG_RUNS} runs on 2 workers, ${LOG_MS} ms each, to 1 client connection per server, ${LOG_LAYOUTS.join(' and ')} server(s)\n` : '') +
    (parts.includes('events')
      ? `- events: ${fmtInt(SUBSCRIBERS)} subscribers, bursts of ${fmtInt(BURST)} events from ${BURST_RUNS} runs at once, paced ${fmtInt(RATE)} deliveries/s for ${PACED_MS} ms in ${PASSES} passes per layout\n`
      : ''),
);

let throughput: ThroughputResult | null = null;
let memory: MemoryResult | null = null;
let logRates: RatePoint[] = [];
let events: LayoutResult[] = [];
const say = (line: string): void => console.log(line);
try {
  if (parts.includes('throughput')) {
    console.log('Throughput');
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
        arms: ARMS,
        chainSteps: CHAIN,
      },
      say,
    );
  }
  if (parts.includes('memory')) {
    console.log('\nMemory');
    memory = await runMemory({ url: redis.url, keyPrefix: 'bm:', workers: WORKERS, runs: MEMORY_RUNS, steps: MEMORY_STEPS, lines: MEMORY_LINES, lanes: LANES }, say);
  }
  if (parts.includes('logrates')) {
    console.log('\nLog rates');
    logRates = await runLogRates({ url: redis.url, keyPrefix: 'bl:', rates: LOG_RATES, layouts: LOG_LAYOUTS, runs: LOG_RUNS, pacedMs: LOG_MS, targetMs: 50 }, say);
  }
  if (parts.includes('events')) {
    console.log('\nEvents through Redis to one or two server instances');
    events = await runEvents(
      { url: redis.url, keyPrefix: 'be:', subscribers: SUBSCRIBERS, burstEvents: BURST, burstRuns: BURST_RUNS, rounds: ROUNDS, rate: RATE, pacedMs: PACED_MS, passes: PASSES },
      say,
    );
  }
} finally {
  await redis.stop();
  rmSync(redis.dir, { recursive: true, force: true });
}

if (throughput !== null) reportThroughput(throughput, STEPS);
if (memory !== null) reportMemory(memory, MEMORY_STEPS, MEMORY_LINES);
if (logRates.length > 0) reportLogRates(logRates);
if (events.length > 0) reportEvents(events, SUBSCRIBERS);
console.log(`\ntotal ${((Date.now() - began) / 1000).toFixed(0)} s, load average at the end ${load()}`);
process.exit(0);
