/**
 * Run control across processes on one real redis-server: two server processes (each
 * with a BullMQ worker) start runs of the same pipelines over REST. Concurrent starts on
 * both admit exactly the policy's limit and name the run in the way; an idempotency key
 * used on both answers one run; the slot is free again after success, failure and
 * cancel, and after a run whose end was committed but never freed (its process died).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { slotGroupKey } from '../src/redis/keys.js';
import { afterEach, describe, expect, it } from 'vitest';
import { BullMQBroker } from '../src/redis/bullmq-broker.js';
import { getEngine } from '../src/pipeline/engine.js';
import { useRedisServer } from './helpers/redis.js';
import { AlreadyRunningError, ErrorCodes } from '../src/core/errors.js';
import { startRun } from '../src/client/index.js';
import { flowcast } from './helpers/cli.js';
import { runControlPipelines } from './fixtures/run-control/pipelines.js';

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

async function startServer(prefix: string, script = 'serve'): Promise<Child> {
  const child = spawn(process.execPath, ['--import', 'tsx', `test/fixtures/run-control/${script}.ts`], {
    cwd: process.cwd(),
    env: { ...process.env, FLOWCAST_TEST_REDIS: redis.url, FLOWCAST_TEST_PREFIX: prefix },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (d: Buffer): void => {
      out += d.toString();
      const m = /^ready (\S+)$/m.exec(out);
      if (m?.[1] !== undefined) resolve(m[1]);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (d: Buffer) => void (out += d.toString()));
    void exited.then(() => reject(new Error(`server exited before it was ready:\n${out}`)));
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

/** The runs holding a slot of `group` (read straight from Redis). */
async function holders(prefix: string, group: string): Promise<string[]> {
  return redis.connect().hkeys(slotGroupKey(prefix, createHash('sha1').update(group).digest('hex')));
}

/** Waits (bounded) until `runId` holds no slot of `group`, and says whether it still does. */
async function stillHolds(prefix: string, group: string, runId: string): Promise<boolean> {
  for (let i = 0; i < 200 && (await holders(prefix, group)).includes(runId); i++) await new Promise((r) => setTimeout(r, 25));
  return (await holders(prefix, group)).includes(runId);
}

async function outcome(broker: BullMQBroker, runId: string): Promise<string> {
  await getEngine(broker).waitForRun(runId, 30_000).catch(() => undefined);
  return (await broker.runState.getSummary(runId))?.status ?? 'unknown';
}

describe('POST /api/pipelines/:pipeline_id/runs on two servers sharing one Redis', () => {
  it('admits one run of a limit-1 pipeline among concurrent starts on both servers, and frees the slot at every end', async () => {
    const prefix = redis.prefix();
    const [a, b] = await Promise.all([startServer(prefix), startServer(prefix)]);
    const broker = observer(prefix);
    const starts = await Promise.all(Array.from({ length: 8 }, (_, i) => post((i % 2 === 0 ? a : b).url, '/api/pipelines/guarded/runs', { input: { hold_ms: 60_000 } })));
    const started = starts.filter((s) => s.status === 201);
    expect(started).toHaveLength(1);
    const runId = (started[0] as { body: Json }).body.run_id as string;
    const refused = starts.filter((s) => s.status === 409);
    expect(refused).toHaveLength(7);
    for (const r of refused) expect(r.body.error).toMatchObject({ code: 'already_running', run_id: runId });

    // Cancel on the other server frees the slot for both.
    expect((await fetch(`${b.url}/api/runs/${runId}/cancel`, { method: 'POST' })).status).toBe(200);
    expect(await outcome(broker, runId)).toBe('CANCELLED');
    expect(await stillHolds(prefix, 'run:guarded:', runId)).toBe(false);
    const failing = await post(a.url, '/api/pipelines/guarded/runs', { input: { fail: true } });
    expect(failing.status).toBe(201);
    expect(await outcome(broker, failing.body.run_id as string)).toBe('FAILED');
    expect(await stillHolds(prefix, 'run:guarded:', failing.body.run_id as string)).toBe(false);
    const ok = await post(b.url, '/api/pipelines/guarded/runs', { input: {} });
    expect(ok.status).toBe(201);
    expect(await outcome(broker, ok.body.run_id as string)).toBe('COMPLETED');
    expect(await stillHolds(prefix, 'run:guarded:', ok.body.run_id as string)).toBe(false);
    const last = await post(a.url, '/api/pipelines/guarded/runs', { input: { hold_ms: 60_000 } });
    expect(last.status).toBe(201);
    await fetch(`${a.url}/api/runs/${String(last.body.run_id)}/cancel`, { method: 'POST' });
  });

  it('answers one run for an idempotency key used on both servers at once', async () => {
    const prefix = redis.prefix();
    const [a, b] = await Promise.all([startServer(prefix), startServer(prefix)]);
    const starts = await Promise.all(Array.from({ length: 6 }, (_, i) => post((i % 2 === 0 ? a : b).url, '/api/pipelines/per_user/runs', { input: { user: 'ann' }, idempotency_key: 'order-42' })));
    expect(starts.filter((s) => s.status === 201)).toHaveLength(1);
    expect(starts.filter((s) => s.status === 200)).toHaveLength(5);
    expect(new Set(starts.map((s) => s.body.run_id)).size).toBe(1);
  });

  it('takes over a slot whose run ended without freeing it (its process died after the end)', async () => {
    const prefix = redis.prefix();
    const a = await startServer(prefix);
    const broker = observer(prefix);
    const first = await post(a.url, '/api/pipelines/guarded/runs', { input: {} });
    const runId = first.body.run_id as string;
    expect(await outcome(broker, runId)).toBe('COMPLETED');
    // As if the release after the ending transition was lost: the run holds its slot again.
    const slots = broker.slots;
    expect(await slots.acquire('run:guarded:', 1, runId, 60_000)).toEqual({ ok: true });
    const again = await post(a.url, '/api/pipelines/guarded/runs', { input: {} });
    expect(again.status).toBe(201);
  });

  it('keeps the slot while a killed worker\'s step is recovered on another worker, and frees it when the run ends there', async () => {
    const prefix = redis.prefix();
    const producer = observer(prefix);
    const { guarded } = runControlPipelines(producer);
    const first = await startServer(prefix, 'worker');
    const run = await guarded.kiq({ hold_ms: 3_000 });
    // The step is running on the first worker: kill it there.
    for (let i = 0; i < 400 && (await run.getRun())?.steps.rc_hold?.phase !== 'ACTIVE'; i++) await new Promise((r) => setTimeout(r, 25));
    expect((await run.getRun())?.steps.rc_hold?.phase).toBe('ACTIVE');
    first.process.kill('SIGKILL');
    await first.exited;
    await startServer(prefix, 'worker');
    await expect(guarded.kiq({})).rejects.toBeInstanceOf(AlreadyRunningError);
    expect(await outcome(producer, run.runId)).toBe('COMPLETED');
    // Freed by the worker that ended the run, not left for the next start to take over.
    expect(await stillHolds(prefix, 'run:guarded:', run.runId)).toBe(false);
    const next = await guarded.kiq({});
    expect(next.deduplicated).toBe(false);
    expect(await outcome(producer, next.runId)).toBe('COMPLETED');
  });

  it('through the SDK and the CLI: a start on one server is refused on the other naming the run, and run --watch exits with the outcome', async () => {
    const prefix = redis.prefix();
    const [a, b] = await Promise.all([startServer(prefix), startServer(prefix)]);
    const held = await startRun('guarded', { hold_ms: 60_000 }, { url: a.url });
    await expect(startRun('guarded', {}, { url: b.url })).rejects.toMatchObject({ code: ErrorCodes.ALREADY_RUNNING, runId: held.run_id });
    const refused = flowcast(['run', 'guarded', '--url', b.url, '--input', '{}']);
    expect((await refused.exited).code).toBe(1);
    expect(refused.stderr()).toContain(held.run_id);
    await fetch(`${a.url}/api/runs/${held.run_id}/cancel`, { method: 'POST' });
    const ok = flowcast(['run', 'guarded', '--url', b.url, '--input', '{"hold_ms":0}', '--watch']);
    expect((await ok.exited).code).toBe(0);
    const failed = flowcast(['run', 'guarded', '--url', a.url, '--input', '{"fail":true}', '--watch', '--json']);
    expect((await failed.exited).code).toBe(1);
    expect(failed.stdout()).toContain('PipelineErrorEvent');
  });
});
