/**
 * Redis run state and event log: append throughput, transitions (spread over runs and
 * contended on one run from several connections), publish-to-listener latency and
 * delivery rate to a subscriber of another transport. Starts its own redis-server on a
 * free port and stops it at the end.
 *
 * Usage: npx tsx bench/redis-log.ts
 */
import { Redis } from 'ioredis';
import { startRedisServer } from '../test/helpers/redis.js';
import { RedisPubSubTransport } from '../src/redis/transport.js';
import { RedisRunState } from '../src/redis/run-state.js';
import { beginRun, newRunRecord } from '../src/pipeline/transitions.js';
import type { PipelinePlan } from '../src/pipeline/plan.js';
import type { EventDraft } from '../src/events/types.js';

const server = await startRedisServer();
const mk = () => new Redis(server.port, '127.0.0.1', { maxRetriesPerRequest: null });
const plan: PipelinePlan = { pipeline_id: 'b', pipeline_type: 'sequential', failure_policy: 'fail_fast', steps: Array.from({ length: 5 }, (_, i) => ({ name: `s${i}`, index: i, kind: 'call' as const, tasks: ['t'], depends_on: i === 0 ? [] : [`s${i - 1}`], retries: 0, retry_delay_ms: 0, backoff: 'fixed' as const })) };
const d = (runId: string): EventDraft => ({ type: 'StepLogEvent', pipeline_id: 'b', run_id: runId, timestamp: new Date().toISOString(), step_name: 's0', step_index: 0, task_id: 't', attempt: 1, lines: ['hello world, a typical log line of moderate length'] });
const c1 = mk();
const t = new RedisPubSubTransport(c1, { keyPrefix: 'm:' });
const rs = new RedisRunState(c1, { transport: t });
const N = 20000;
let t0 = performance.now();
await Promise.all(Array.from({ length: 100 }, async (_, w) => { for (let i = 0; i < N / 100; i++) await t.append(d(`run-${w}`)); }));
console.log(`append: ${Math.round(N / ((performance.now() - t0) / 1000))} events/s (100 runs, 100 in flight, one connection)`);
const M = 5000;
for (let w = 0; w < 100; w++) { const rec = newRunRecord(`tr-${w}`, plan, null, Date.now()); await rs.create(rec, beginRun(rec, Date.now()).events); }
t0 = performance.now();
await Promise.all(Array.from({ length: 100 }, async (_, w) => { for (let i = 0; i < M / 100; i++) await rs.transition(`tr-${w}`, (r) => { r.inflight++; return { value: null, events: [d(`tr-${w}`)] }; }); }));
console.log(`transition (1 event each): ${Math.round(M / ((performance.now() - t0) / 1000))} /s (100 runs, 100 in flight, one connection)`);
const rec = newRunRecord('hot', plan, null, Date.now()); await rs.create(rec, beginRun(rec, Date.now()).events);
const others = Array.from({ length: 4 }, () => { const c = mk(); return new RedisRunState(c, { transport: new RedisPubSubTransport(c, { keyPrefix: 'm:' }) }); });
t0 = performance.now();
const K = 1000;
let conflictsBefore = 0;
await Promise.all(others.map(async (o) => { for (let i = 0; i < K / 4; i++) await o.transition('hot', (r) => { conflictsBefore++; r.inflight++; return { value: null, events: [] }; }); }));
console.log(`contended: 4 connections x ${K / 4} transitions on one run: ${Math.round(K / ((performance.now() - t0) / 1000))} /s, fn calls per transition ${(conflictsBefore / K).toFixed(2)}`);
// publish -> subscriber latency
const sub = new RedisPubSubTransport(mk(), { keyPrefix: 'm:' });
const lat: number[] = [];
let pending: ((n: number) => void) | null = null;
sub.subscribe({ runId: 'lat' }, () => pending?.(performance.now()));
await new Promise((r) => setTimeout(r, 100));
for (let i = 0; i < 2000; i++) {
  const e = (await t.append(d('lat')))!;
  const got = new Promise<number>((r) => (pending = r));
  const s = performance.now();
  await t.publish(e);
  lat.push((await got) - s);
}
lat.sort((a, b) => a - b);
console.log(`publish->listener latency: p50 ${lat[1000]!.toFixed(3)} ms, p99 ${lat[1980]!.toFixed(3)} ms`);
t0 = performance.now();
let count = 0;
sub.subscribe('*', () => count++);
await new Promise((r) => setTimeout(r, 100));
const P = 20000;
const evs = await Promise.all(Array.from({ length: P }, (_, i) => t.append(d(`pr-${i % 50}`))));
t0 = performance.now();
await Promise.all(evs.map(async (e) => { await t.publish(e!); }));
while (count < P) await new Promise((r) => setTimeout(r, 1));
console.log(`publish fan-in: ${Math.round(P / ((performance.now() - t0) / 1000))} events/s delivered to a remote subscriber`);
await server.stop();
process.exit(0);
