/**
 * Fan-out: one publisher, N WebSocket subscribers on loopback, flowcast side by side with
 * Socket.IO 4 (room broadcast) and plain `ws` (serialise once, send to all). Each server
 * runs in its own child process (so `process.cpuUsage()` is the server's alone), the
 * subscribers in another. Measures, per system and N: deliveries/s and server CPU µs per
 * delivery under burst, p50/p99 latency at a paced 20,000 deliveries/s; then server memory
 * per idle subscribed connection, and (flowcast) a backlog replayed to a late subscriber.
 *
 * `flowcast-deflate` is flowcast with permessage-deflate on every event: the CPU that
 * compression costs per delivery, and its memory per connection once a message was compressed.
 *
 * Usage: npm run bench:fanout -- [--subscribers 100,500,1000] [--systems flowcast,flowcast-deflate,socketio,ws]
 *          [--rounds 3] [--per-tick 10] [--idle 5000] [--backlog 10000] [--rate 20000] [--paced-ms 3000]
 * (`--subscribers none`, `--idle 0`, `--backlog 0` skip those parts)
 */
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { SYSTEMS, type CpuReport, type ExpectReport, type MemReport, type System } from './fanout/shared.js';
import { Peer, fmt, fmtInt, median } from './orchestrator.js';

const { values: args } = parseArgs({
  options: {
    subscribers: { type: 'string', default: '100,500,1000' },
    systems: { type: 'string', default: SYSTEMS.join(',') },
    rounds: { type: 'string', default: '3' },
    'per-tick': { type: 'string', default: '10' },
    idle: { type: 'string', default: '5000' },
    backlog: { type: 'string', default: '10000' },
    rate: { type: 'string', default: '20000' },
    'paced-ms': { type: 'string', default: '3000' },
  },
});
function positiveInt(value: string, name: string, min = 1): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}, received ${JSON.stringify(value)}`);
  return n;
}
const RUN_SYSTEMS = args.systems.split(',').map((s) => {
  if (!(SYSTEMS as readonly string[]).includes(s)) throw new Error(`--systems: each must be one of ${SYSTEMS.join(', ')}, received ${JSON.stringify(s)}`);
  return s as System;
});
const SUBSCRIBERS = args.subscribers === 'none' ? [] : args.subscribers.split(',').map((s) => positiveInt(s, 'subscribers'));
const ROUNDS = positiveInt(args.rounds, 'rounds');
const PER_TICK = positiveInt(args['per-tick'], 'per-tick');
const IDLE = positiveInt(args.idle, 'idle', 0);
const BACKLOG = positiveInt(args.backlog, 'backlog', 0);
const RATE = positiveInt(args.rate, 'rate');
const PACED_MS = positiveInt(args['paced-ms'], 'paced-ms');
const WARMUP_MS = 500;
const fmtCount = (n: number): string => n.toLocaleString('en-US');
/** Deliveries per burst round: enough to take a few seconds, few enough to stay far from the outgoing queue limits. */
const BURST_DELIVERIES = 500_000;
/**
 * The deflate arm's clients inflate every message (ws does it off the main thread, ten at a
 * time): they, not the server, set its pace, so its rounds are a fifth as long, and it has
 * no paced-latency part (it would measure the clients' backlog).
 */
const DEFLATE_BURST_DELIVERIES = 100_000;
const burstEvents = (n: number, system: System): number =>
  Math.min(3000, Math.ceil((system === 'flowcast-deflate' ? DEFLATE_BURST_DELIVERIES : BURST_DELIVERIES) / n));

// Each server and client process holds one descriptor per connection (`npm run bench:fanout` raises the soft limit to the hard one).
const fdLimit = Number(spawnSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).stdout.trim());
const needed = Math.max(IDLE, ...SUBSCRIBERS) + 500;
if (Number.isFinite(fdLimit) && fdLimit < needed) {
  throw new Error(`the open-file limit is ${fdLimit}, ${needed} are needed for ${fmtCount(needed - 500)} connections: raise it (ulimit -n) or lower --idle`);
}

/** The whole bench stops by itself, whatever happens. */
const deadline = setTimeout(() => {
  console.error('fanout bench: over its 10-minute limit, stopping');
  process.exit(2);
}, 600_000);
deadline.unref();

/** A server or client process of bench/fanout/ for `system`. */
const peer = (file: string, system: System, execArgv: string[] = []): Peer => new Peer(`${file} ${system}`, new URL(`./fanout/${file}`, import.meta.url), [system], execArgv);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const NAME: Record<System, string> = { flowcast: 'flowcast', 'flowcast-deflate': 'flowcast + deflate', socketio: 'Socket.IO 4', ws: 'ws' };

async function startPair(system: System, connections: number): Promise<{ server: Peer; clients: Peer; url: string }> {
  // FANOUT_SERVER_FLAGS adds Node flags to the server processes (e.g. --cpu-prof to see where the time goes).
  const extra = (process.env.FANOUT_SERVER_FLAGS ?? '').split(' ').filter((f) => f !== '');
  const server = peer('server.js', system, ['--expose-gc', ...extra]);
  const { url } = await server.request<{ url: string }>({ cmd: 'start' });
  const clients = peer('clients.js', system);
  if (connections > 0) {
    await clients.request({ cmd: 'connect', url, connections }, 180_000);
    const subscribed = await server.request<number>({ cmd: 'subscribers' });
    if (subscribed !== connections) throw new Error(`${system}: ${subscribed} subscribers on the server, expected ${connections}`);
  }
  return { server, clients, url };
}

interface BurstResult {
  deliveries: number;
  perSec: number;
  cpuPerDelivery: number;
  clientCpuPerDelivery: number;
}

async function burst(server: Peer, clients: Peer, n: number, events: number, perTick = PER_TICK): Promise<BurstResult> {
  await sleep(200);
  await clients.request({ cmd: 'expect', perConnection: events, latency: false, timeoutMs: 60_000 });
  await server.request({ cmd: 'mark' });
  const published = server.request<{ startUs: number; endUs: number }>({ cmd: 'burst', events, perTick });
  const got = await clients.request<ExpectReport>({ cmd: 'wait' }, 90_000);
  const cpu = await server.request<CpuReport>({ cmd: 'measure' });
  const { startUs } = await published;
  if (got.timedOut) throw new Error(`burst: ${got.received} of ${n * events} deliveries arrived in 60 s`);
  return {
    deliveries: got.received,
    perSec: got.received / ((got.lastUs - startUs) / 1e6),
    cpuPerDelivery: (cpu.userUs + cpu.systemUs) / got.received,
    clientCpuPerDelivery: got.clientCpuUs / got.received,
  };
}

interface PacedResult {
  got: ExpectReport;
  fanOutP50Us: number;
  fanOutP99Us: number;
}

async function paced(server: Peer, clients: Peer, n: number): Promise<PacedResult> {
  await sleep(200);
  const eventsPerSec = RATE / n;
  const durationMs = PACED_MS + WARMUP_MS;
  const events = Math.round((eventsPerSec * durationMs) / 1000);
  await clients.request({ cmd: 'expect', perConnection: events, latency: true, skipUs: WARMUP_MS * 1000, timeoutMs: durationMs + 30_000 });
  const pub = await server.request<{ fanOutP50Us: number; fanOutP99Us: number }>({ cmd: 'paced', eventsPerSec, durationMs }, durationMs + 30_000);
  const got = await clients.request<ExpectReport>({ cmd: 'wait' }, durationMs + 60_000);
  if (got.timedOut) throw new Error(`paced: ${got.received} of ${n * events} deliveries arrived`);
  return { got, fanOutP50Us: pub.fanOutP50Us, fanOutP99Us: pub.fanOutP99Us };
}

interface Row {
  n: number;
  system: System;
  burst: BurstResult;
  rounds: number[];
  p50: number;
  p99: number;
  max: number;
  fanOutP50: number;
  fanOutP99: number;
}

const began = Date.now();
console.log(
  `flowcast fan-out bench: subscribers ${SUBSCRIBERS.join('/')}, burst ${ROUNDS} rounds of ~${fmtInt(BURST_DELIVERIES)} deliveries (${PER_TICK} events per event-loop turn), ` +
    `paced ${fmtInt(RATE)} deliveries/s for ${PACED_MS} ms, ${fmtInt(IDLE)} idle connections, ${fmtInt(BACKLOG)}-event backlog; node ${process.version}, 127.0.0.1`,
);

const rows: Row[] = [];
/** The subscriber count of the CPU target, where the one-event-per-turn burst is run too. */
const AT = SUBSCRIBERS.includes(500) ? 500 : (SUBSCRIBERS[0] ?? 0);
const singleRows: { system: System; result: BurstResult }[] = [];
for (const n of SUBSCRIBERS) {
  for (const system of RUN_SYSTEMS) {
    const { server, clients } = await startPair(system, n);
    try {
      const events = burstEvents(n, system);
      await burst(server, clients, n, Math.ceil(events / 2)); // warm-up
      const results: BurstResult[] = [];
      for (let r = 0; r < ROUNDS; r++) results.push(await burst(server, clients, n, events));
      const mid = median(results.map((r) => r.cpuPerDelivery));
      const chosen = results.find((r) => r.cpuPerDelivery === mid) as BurstResult;
      if (n === AT) {
        // The same burst with one event per turn of the event loop: nothing to coalesce.
        const single: BurstResult[] = [];
        for (let r = 0; r < ROUNDS; r++) single.push(await burst(server, clients, n, events, 1));
        const m = median(single.map((r) => r.cpuPerDelivery));
        singleRows.push({ system, result: single.find((r) => r.cpuPerDelivery === m) as BurstResult });
      }
      const lat: PacedResult = system === 'flowcast-deflate' ? { got: { latencies: null } as ExpectReport, fanOutP50Us: Number.NaN, fanOutP99Us: Number.NaN } : await paced(server, clients, n);
      const l = lat.got.latencies ?? { p50: Number.NaN, p99: Number.NaN, max: Number.NaN };
      rows.push({
        n,
        system,
        burst: chosen,
        rounds: results.map((r) => r.cpuPerDelivery),
        p50: l.p50 / 1000,
        p99: l.p99 / 1000,
        max: l.max / 1000,
        fanOutP50: lat.fanOutP50Us / 1000,
        fanOutP99: lat.fanOutP99Us / 1000,
      });
      console.log(
        `  N=${n} ${NAME[system]}: ${fmtInt(chosen.perSec)} deliveries/s, server CPU ${fmt(mid, 3)} µs/delivery (rounds ${results.map((r) => fmt(r.cpuPerDelivery, 3)).join(', ')}), ` +
          `p50 ${fmt(l.p50 / 1000, 2)} ms, p99 ${fmt(l.p99 / 1000, 2)} ms (server fan-out p50 ${fmt(lat.fanOutP50Us / 1000, 2)} ms)`,
      );
    } finally {
      await clients.close();
      await server.close();
    }
  }
}

const memory: { system: System; rssPerConn: number; heapPerConn: number; externalPerConn: number }[] = [];
for (const system of IDLE > 0 ? RUN_SYSTEMS : []) {
  const { server, clients, url } = await startPair(system, 0);
  try {
    const before = await server.request<MemReport>({ cmd: 'mem' });
    await clients.request({ cmd: 'connect', url, connections: IDLE }, 180_000);
    const subscribed = await server.request<number>({ cmd: 'subscribers' });
    if (subscribed !== IDLE) throw new Error(`${system}: ${subscribed} idle subscribers, expected ${IDLE}`);
    await sleep(500);
    const after = await server.request<MemReport>({ cmd: 'mem' });
    memory.push({
      system,
      rssPerConn: (after.rss - before.rss) / IDLE,
      heapPerConn: (after.heapUsed - before.heapUsed) / IDLE,
      externalPerConn: (after.external - before.external) / IDLE,
    });
    console.log(`  idle ${NAME[system]}: ${fmtInt(IDLE)} subscribed connections, RSS +${fmt((after.rss - before.rss) / 1048576, 1)} MiB, heap +${fmt((after.heapUsed - before.heapUsed) / 1048576, 1)} MiB`);
  } finally {
    await clients.close();
    await server.close();
  }
}

const backlog: { ended: boolean; ms: number; rounds: number[]; serverMs: number }[] = [];
if (BACKLOG > 0 && RUN_SYSTEMS.includes('flowcast')) {
  const { server, clients, url } = await startPair('flowcast', 0);
  try {
    for (const ended of [false, true]) {
      const times: number[] = [];
      const serverMs: number[] = [];
      for (let r = 0; r <= ROUNDS; r++) {
        const { runId } = await server.request<{ runId: string }>({ cmd: 'backlog', events: BACKLOG, ended });
        await sleep(100);
        await server.request({ cmd: 'mark' });
        const res = await clients.request<{ ms: number; events: number; inOrder: boolean }>({ cmd: 'replay', url, runId, events: BACKLOG });
        const cpu = await server.request<CpuReport>({ cmd: 'measure' });
        if (!res.inOrder) throw new Error(`backlog replay: ${res.events} events, not 1..${BACKLOG} in order`);
        if (r > 0) {
          // The first is a warm-up.
          times.push(res.ms);
          serverMs.push((cpu.userUs + cpu.systemUs) / 1000);
        }
      }
      backlog.push({ ended, ms: median(times), rounds: times, serverMs: median(serverMs) });
    }
  } finally {
    await clients.close();
    await server.close();
  }
}

// ---- report ----
const row = (n: number, s: System): Row | undefined => rows.find((r) => r.n === n && r.system === s);
console.log('\n### Burst and paced latency\n');
console.log('| subscribers | system | deliveries/s (burst) | server CPU µs/delivery (burst) | client CPU µs/delivery (burst) | latency p50 ms | p99 ms | max ms | server fan-out of one event p50 / p99 ms |');
console.log('|---:|---|---:|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  console.log(
    `| ${fmtInt(r.n)} | ${NAME[r.system]} | ${fmtInt(r.burst.perSec)} | ${fmt(r.burst.cpuPerDelivery, 3)} | ${fmt(r.burst.clientCpuPerDelivery, 3)} | ` +
      `${fmt(r.p50, 2)} | ${fmt(r.p99, 2)} | ${fmt(r.max, 2)} | ${fmt(r.fanOutP50, 2)} / ${fmt(r.fanOutP99, 2)} |`,
  );
}
console.log('\n### Server CPU per delivery, flowcast relative to the others (lower is better)\n');
console.log('| subscribers | flowcast / Socket.IO | flowcast / ws |');
console.log('|---:|---:|---:|');
for (const n of SUBSCRIBERS) {
  const f = row(n, 'flowcast')?.burst.cpuPerDelivery ?? Number.NaN;
  const s = row(n, 'socketio')?.burst.cpuPerDelivery ?? Number.NaN;
  const w = row(n, 'ws')?.burst.cpuPerDelivery ?? Number.NaN;
  console.log(`| ${fmtInt(n)} | ${fmt(f / s, 2)} (${fmt(s / f, 1)}x less) | ${fmt(f / w, 2)} (${fmt(w / f, 1)}x less) |`);
}
const deflateRows = rows.filter((r) => r.system === 'flowcast-deflate');
if (deflateRows.length > 0) {
  console.log('\n### permessage-deflate: server CPU per delivery with every event compressed (threshold 0)\n');
  console.log('| subscribers | flowcast µs/delivery | flowcast + deflate µs/delivery | deflate adds µs/delivery | ratio |');
  console.log('|---:|---:|---:|---:|---:|');
  for (const d of deflateRows) {
    const plain = row(d.n, 'flowcast')?.burst.cpuPerDelivery ?? Number.NaN;
    const with_ = d.burst.cpuPerDelivery;
    console.log(`| ${fmtInt(d.n)} | ${fmt(plain, 3)} | ${fmt(with_, 3)} | ${fmt(with_ - plain, 3)} | ${fmt(with_ / plain, 1)}x |`);
  }
}
if (singleRows.length > 0) {
  console.log(`\n### Burst with one event per turn of the event loop (${fmtInt(AT)} subscribers): nothing to coalesce\n`);
  console.log('| system | deliveries/s | server CPU µs/delivery | flowcast / this |');
  console.log('|---|---:|---:|---:|');
  const f = singleRows.find((r) => r.system === 'flowcast')?.result.cpuPerDelivery ?? Number.NaN;
  for (const r of singleRows) console.log(`| ${NAME[r.system]} | ${fmtInt(r.result.perSec)} | ${fmt(r.result.cpuPerDelivery, 3)} | ${fmt(f / r.result.cpuPerDelivery, 2)} |`);
}
console.log(`\n### Server memory per idle subscribed connection (${fmtInt(IDLE)} connections)\n`);
console.log('| system | RSS KB/connection | heap KB/connection | external KB/connection |');
console.log('|---|---:|---:|---:|');
for (const m of memory) console.log(`| ${NAME[m.system]} | ${fmt(m.rssPerConn / 1024, 2)} | ${fmt(m.heapPerConn / 1024, 2)} | ${fmt(m.externalPerConn / 1024, 2)} |`);
if (memory.some((m) => m.system === 'flowcast-deflate')) console.log("\n(flowcast + deflate: each connection holds a zlib inflate context for the client's messages, which ws clients and browsers compress.)");
console.log(`\n### Backlog replay to a late subscriber (flowcast, \`subscribe\` with \`run_id\` and \`since: 0\`, until \`replay_complete\`)\n`);
console.log('| run | events | ms until `replay_complete` (median) | rounds | server CPU ms (median) |');
console.log('|---|---:|---:|---|---:|');
for (const b of backlog) console.log(`| ${b.ended ? 'ended' : 'running'} | ${fmtInt(BACKLOG)} | ${fmt(b.ms, 1)} | ${b.rounds.map((x) => fmt(x, 1)).join(', ')} | ${fmt(b.serverMs, 1)} |`);

const verdict = (ok: boolean): string => (ok ? 'met' : 'NOT met');
const at500 = AT;
const f500 = row(at500, 'flowcast')?.burst.cpuPerDelivery ?? Number.NaN;
const s500 = row(at500, 'socketio')?.burst.cpuPerDelivery ?? Number.NaN;
const worstP99 = Math.max(...rows.filter((r) => r.system === 'flowcast').map((r) => r.p99));
const fMem = memory.find((m) => m.system === 'flowcast');
const worstBacklog = Math.max(...backlog.map((b) => b.ms));
console.log('\n### Targets\n');
const notRun = 'not run';
console.log(
  `- server CPU per delivery under burst at ${fmtInt(at500)} subscribers <= 1/4 of Socket.IO's: ` +
    (Number.isFinite(f500 / s500) ? `${fmt(f500, 3)} vs ${fmt(s500, 3)} µs = ${fmt(f500 / s500, 2)} — ${verdict(f500 / s500 <= 0.25)}` : notRun),
);
const p99s = rows.filter((r) => r.system === 'flowcast');
console.log(
  `- p99 <= 10 ms at ${fmtInt(RATE)} deliveries/s: ` +
    (p99s.length === 0
      ? notRun
      : `flowcast p99 ${p99s.map((r) => `${fmt(r.p99, 2)} ms at ${fmtInt(r.n)}`).join(', ')} — ` +
        (worstP99 <= 10 ? 'met' : `met at ${p99s.filter((r) => r.p99 <= 10).map((r) => fmtInt(r.n)).join(', ') || 'none'}, NOT met at ${p99s.filter((r) => r.p99 > 10).map((r) => fmtInt(r.n)).join(', ')} subscribers`)),
);
console.log(
  `- <= 8 KB per idle subscribed connection: ` +
    (fMem === undefined ? notRun : `${fmt(fMem.rssPerConn / 1024, 2)} KB RSS, ${fmt(fMem.heapPerConn / 1024, 2)} KB heap — ${verdict(fMem.rssPerConn <= 8192)}`),
);
console.log(
  `- ${fmtInt(BACKLOG)}-event backlog replayed in <= 100 ms: ` + (backlog.length === 0 ? notRun : `${fmt(worstBacklog, 1)} ms (worst of running/ended) — ${verdict(worstBacklog <= 100)}`),
);
console.log(`\ntotal ${((Date.now() - began) / 1000).toFixed(0)} s`);
