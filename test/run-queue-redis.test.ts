/**
 * Queued starts across processes on one real redis-server: two server processes (each
 * with a BullMQ worker) and two worker processes share the `queued` pipeline (limit 1,
 * onLimit "queue"). Concurrent starts on both servers: one runs, the others answer 202
 * QUEUED with distinct places, and all complete one at a time in the order of their
 * places, started by whichever process freed the slot. A queued run cancelled on the
 * other server ends CANCELLED without running. A queued start whose server was killed
 * still runs. A start given a slot whose starter died
 * is started by a keeper. `flowcast run --watch` on a queued run waits, then follows it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { BullMQBroker } from '../src/redis/bullmq-broker.js';
import { getEngine } from '../src/pipeline/engine.js';
import { concurrencyGroup } from '../src/pipeline/run-guard.js';
import { useRedisServer } from './helpers/redis.js';
import { flowcast } from './helpers/cli.js';

const redis = useRedisServer();
type Json = Record<string, unknown>;

interface Child {
  process: ChildProcess;
  url: string;
  exited: Promise<unknown>;
}
const children: Child[] = [];
const brokers: BullMQBroker[] = [];

afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.process.exitCode === null && c.process.signalCode === null) c.process.kill('SIGTERM');
    const timer = setTimeout(() => c.process.kill('SIGKILL'), 10_000);
    await c.exited;
    clearTimeout(timer);
  }
  await Promise.all(brokers.splice(0).map((b) => b.close()));
});

async function spawnFixture(prefix: string, script: 'serve' | 'worker'): Promise<Child> {
  const child = spawn(process.execPath, ['--import', 'tsx', `test/fixtures/run-control/${script}.ts`], {
    cwd: process.cwd(),
    env: { ...process.env, FLOWCAST_TEST_REDIS: redis.url, FLOWCAST_TEST_PREFIX: prefix },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^ready (\S+)$/m.exec(out);
      if (m?.[1] !== undefined) resolve(m[1]);
    });
    child.stderr.on('data', (d: Buffer) => void (out += d.toString()));
    void exited.then(() => reject(new Error(`${script} exited before it was ready:\n${out}`)));
  });
  const c = { process: child, url, exited };
  children.push(c);
  return c;
}

async function post(base: string, path: string, body: unknown): Promise<{ status: number; body: Json }> {
  const res = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Json };
}

function observer(prefix: string): BullMQBroker {
  const broker = new BullMQBroker({ connection: redis.url, keyPrefix: prefix, worker: false });
  brokers.push(broker);
  return broker;
}

async function outcome(broker: BullMQBroker, runId: string): Promise<string> {
  await getEngine(broker).waitForRun(runId, 60_000).catch(() => undefined);
  return (await broker.runState.getSummary(runId))?.status ?? 'unknown';
}

describe('concurrency.onLimit "queue" on two servers and two workers sharing one Redis', () => {
  it('queues concurrent starts from both servers and runs them all, one at a time, in the order of their places', async () => {
    const prefix = redis.prefix();
    const [a, b] = await Promise.all([spawnFixture(prefix, 'serve'), spawnFixture(prefix, 'serve'), spawnFixture(prefix, 'worker'), spawnFixture(prefix, 'worker')]);
    const broker = observer(prefix);
    const starts = await Promise.all(Array.from({ length: 6 }, (_, i) => post(((i % 2 === 0 ? a : b)).url, '/api/pipelines/queued/runs', { input: { hold_ms: 200 } })));
    const started = starts.filter((s) => s.status === 201);
    const queued = starts.filter((s) => s.status === 202);
    expect(started).toHaveLength(1);
    expect(queued).toHaveLength(5);
    for (const q of queued) expect(q.body).toMatchObject({ status: 'QUEUED', deduplicated: false });
    expect(queued.map((q) => q.body.queue_position).sort()).toEqual([1, 2, 3, 4, 5]);
    const order = [started[0] as { body: Json }, ...queued.sort((x, y) => (x.body.queue_position as number) - (y.body.queue_position as number))].map((s) => s.body.run_id as string);

    for (const id of order) expect(await outcome(broker, id)).toBe('COMPLETED');
    const records = await Promise.all(order.map((id) => broker.runState.get(id)));
    for (let i = 1; i < records.length; i++) {
      const prev = records[i - 1];
      const next = records[i];
      // One at a time, first in first out: each started once the one before it ended.
      expect(next?.started_at_ms).toBeGreaterThanOrEqual(prev?.ended_at_ms ?? Infinity);
    }
    expect(await broker.slots.queue.waiting(concurrencyGroup('queued', ''))).toEqual([]);
  });

  it('cancels a queued run on the other server: it ends CANCELLED without running, and the next one runs', async () => {
    const prefix = redis.prefix();
    const [a, b] = await Promise.all([spawnFixture(prefix, 'serve'), spawnFixture(prefix, 'serve')]);
    const broker = observer(prefix);
    const held = await post(a.url, '/api/pipelines/queued/runs', { input: { hold_ms: 60_000 } });
    const q1 = await post(a.url, '/api/pipelines/queued/runs', { input: {} });
    const q2 = await post(b.url, '/api/pipelines/queued/runs', { input: {} });
    expect([held.status, q1.status, q2.status]).toEqual([201, 202, 202]);
    const shown = await (await fetch(`${b.url}/api/runs/${String(q1.body.run_id)}`)).json();
    expect(shown).toMatchObject({ status: 'QUEUED', queue_position: 1, waiting_for: [held.body.run_id] });
    expect((await post(b.url, `/api/runs/${String(q1.body.run_id)}/cancel`, { reason: 'no longer needed' })).status).toBe(200);
    expect(await outcome(broker, q1.body.run_id as string)).toBe('CANCELLED');
    const log = await broker.transport.read(q1.body.run_id as string, { since: 0, limit: 100 });
    expect(log.events.map((e) => e.type)).not.toContain('StepStartEvent');
    expect(log.events.at(-1)).toMatchObject({ type: 'PipelineCancelledEvent', reason: 'no longer needed' });
    expect((await post(b.url, `/api/runs/${String(held.body.run_id)}/cancel`, {})).status).toBe(200);
    expect(await outcome(broker, q2.body.run_id as string)).toBe('COMPLETED');
  });

  it('runs a queued start whose server was killed: the process that frees the slot starts it', async () => {
    const prefix = redis.prefix();
    const b = await spawnFixture(prefix, 'serve');
    const broker = observer(prefix);
    const held = await post(b.url, '/api/pipelines/queued/runs', { input: { hold_ms: 60_000 } });
    const heldId = held.body.run_id as string;
    // Its step runs on b's worker before a exists.
    for (let i = 0; i < 400 && (await broker.runState.get(heldId))?.steps.rc_hold?.phase !== 'ACTIVE'; i++) await new Promise((r) => setTimeout(r, 25));
    expect((await broker.runState.get(heldId))?.steps.rc_hold?.phase).toBe('ACTIVE');
    const a = await spawnFixture(prefix, 'serve');
    const queued = await post(a.url, '/api/pipelines/queued/runs', { input: {} });
    expect(queued.status).toBe(202);
    a.process.kill('SIGKILL');
    await a.exited;
    expect((await post(b.url, `/api/runs/${heldId}/cancel`, {})).status).toBe(200);
    expect(await outcome(broker, queued.body.run_id as string)).toBe('COMPLETED');
  });

  it('starts a run given a slot whose starter died (a keeper starts it)', async () => {
    const prefix = redis.prefix();
    const a = await spawnFixture(prefix, 'serve');
    const broker = observer(prefix);
    const held = await post(a.url, '/api/pipelines/queued/runs', { input: { hold_ms: 60_000 } });
    const q1 = await post(a.url, '/api/pipelines/queued/runs', { input: {} });
    expect(q1.status).toBe(202);
    // As if the process that freed the slot died between giving it to q1 and starting q1.
    const group = concurrencyGroup('queued', '');
    await broker.slots.release(group, held.body.run_id as string);
    const promoted = await broker.slots.queue.promote(group, 1, 3_600_000);
    expect(promoted.map((p) => p.run_id)).toEqual([q1.body.run_id]);
    expect(await broker.runState.getSummary(q1.body.run_id as string)).toBeNull();
    expect(await outcome(broker, q1.body.run_id as string)).toBe('COMPLETED');
    await post(a.url, `/api/runs/${String(held.body.run_id)}/cancel`, {});
  });

  it('flowcast run --watch on a queued run says it is queued, waits for its turn and follows it to its end', async () => {
    const prefix = redis.prefix();
    const [a, b] = await Promise.all([spawnFixture(prefix, 'serve'), spawnFixture(prefix, 'serve')]);
    const held = await post(a.url, '/api/pipelines/queued/runs', { input: { hold_ms: 60_000 } });
    const cli = flowcast(['run', 'queued', '--url', b.url, '--input', '{"hold_ms":0}', '--watch']);
    for (let i = 0; i < 400 && !cli.stdout().includes('queued run'); i++) await new Promise((r) => setTimeout(r, 25));
    expect(cli.stdout()).toMatch(/queued run \S+ of queued \(position 1, waiting for run \S+\)/);
    expect(cli.stdout()).toContain(String(held.body.run_id));
    expect((await post(a.url, `/api/runs/${String(held.body.run_id)}/cancel`, {})).status).toBe(200);
    expect((await cli.exited).code).toBe(0);
    expect(cli.stdout()).toContain('completed');
  });
});
