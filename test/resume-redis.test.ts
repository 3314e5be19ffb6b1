/**
 * Resume across processes on one real redis-server: two server processes (no worker)
 * and two worker processes. A run started on one server fails at step 2 on a worker; a
 * resume through the other server reopens it atomically in Redis (status RUNNING,
 * attempt 2, log continuing with the next seq), the workers run only the steps that did
 * not complete, and the run completes. Two resumes at once on both servers: one 202, one
 * 409. A COMPLETED run answers 409.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BullMQBroker } from '../src/redis/bullmq-broker.js';
import { getEngine } from '../src/pipeline/engine.js';
import type { FlowcastEvent } from '../src/events/types.js';
import { useRedisServer } from './helpers/redis.js';
import { calls, resumePipelines } from './fixtures/resume/pipelines.js';
import { InMemoryBroker } from '../src/pipeline/memory-broker.js';
import { RedisPipelineStorage } from '../src/redis/storage.js';

const redis = useRedisServer();
type Json = Record<string, unknown>;

interface Child {
  process: ChildProcess;
  ready: string;
  exited: Promise<unknown>;
}
const children: Child[] = [];
const brokers: BullMQBroker[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.process.exitCode === null && c.process.signalCode === null) c.process.kill('SIGTERM');
    const timer = setTimeout(() => c.process.kill('SIGKILL'), 10_000);
    await c.exited;
    clearTimeout(timer);
  }
  await Promise.all(brokers.splice(0).map((b) => b.close()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function spawnFixture(script: 'serve' | 'worker', prefix: string): Promise<Child> {
  const child = spawn(process.execPath, ['--import', 'tsx', `test/fixtures/resume/${script}.ts`], {
    cwd: process.cwd(),
    env: { ...process.env, FLOWCAST_TEST_REDIS: redis.url, FLOWCAST_TEST_PREFIX: prefix },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const ready = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^ready (\S+)$/m.exec(out);
      if (m?.[1] !== undefined) resolve(m[1]);
    });
    child.stderr.on('data', (d: Buffer) => void (out += d.toString()));
    void exited.then(() => reject(new Error(`${script} exited before it was ready:\n${out}`)));
  });
  const c = { process: child, ready, exited };
  children.push(c);
  return c;
}

async function post(base: string, path: string, body?: unknown): Promise<{ status: number; body: Json }> {
  const init: RequestInit = { method: 'POST' };
  if (body !== undefined) {
    init.headers = { 'content-type': 'application/json' };
    init.body = JSON.stringify(body);
  }
  const res = await fetch(base + path, init);
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

async function logOf(broker: BullMQBroker, runId: string): Promise<FlowcastEvent[]> {
  return (await broker.transport.read(runId, { since: 0 })).events;
}

function failingDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'flowcast-resume-redis-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'fail'), '');
  return dir;
}

describe('POST /api/runs/:run_id/resume with two servers and two workers on one Redis', () => {
  it('resumes a failed run started on the other server: the workers run only the steps that did not complete', async () => {
    const prefix = redis.prefix();
    const [a, b] = await Promise.all([spawnFixture('serve', prefix), spawnFixture('serve', prefix), spawnFixture('worker', prefix), spawnFixture('worker', prefix)]);
    const broker = observer(prefix);

    // Sequential: fails at step 2.
    const dir = failingDir();
    const started = await post(a.ready, '/api/pipelines/resume_seq/runs', { input: { dir } });
    expect(started.status).toBe(201);
    const runId = started.body.run_id as string;
    expect(await outcome(broker, runId)).toBe('FAILED');
    const before = await logOf(broker, runId);
    expect(before[before.length - 1]?.type).toBe('PipelineErrorEvent');
    expect(calls(dir, 'rs_fetch')).toBe(1);
    unlinkSync(join(dir, 'fail'));
    const resumed = await post(b.ready, `/api/runs/${runId}/resume`);
    expect(resumed.status).toBe(202);
    expect(resumed.body).toMatchObject({ run_id: runId, status: 'RUNNING', attempt: 2, kept_steps: ['rs_fetch'], pending_steps: ['rs_flaky', 'rs_save'], seq: before.length + 1 });
    expect(await outcome(broker, runId)).toBe('COMPLETED');
    expect(calls(dir, 'rs_fetch')).toBe(1);
    expect(calls(dir, 'rs_flaky')).toBe(2);
    expect(calls(dir, 'rs_save')).toBe(1);
    const events = await logOf(broker, runId);
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    expect(events[before.length]).toMatchObject({ type: 'PipelineResumeEvent', attempt: 2, previous_status: 'FAILED' });
    expect(events.slice(before.length).filter((e) => e.type === 'StepStartEvent').map((e) => (e as { step_name: string }).step_name)).toEqual(['rs_flaky', 'rs_save']);
    expect(events[events.length - 1]).toMatchObject({ type: 'PipelineCompleteEvent', result: 'saved 6' });
    expect((await broker.runState.get(runId))?.attempt).toBe(2);

    // A COMPLETED run: 409 on either server.
    const done = await post(a.ready, `/api/runs/${runId}/resume`);
    expect(done.status).toBe(409);
    expect(done.body.error).toMatchObject({ code: 'run_not_resumable', status: 'COMPLETED' });
  }, 180_000);

  it('admits one of two resumes sent at once to both servers, and resumes a DAG keeping its completed branches', async () => {
    const prefix = redis.prefix();
    const [a, b] = await Promise.all([spawnFixture('serve', prefix), spawnFixture('serve', prefix), spawnFixture('worker', prefix), spawnFixture('worker', prefix)]);
    const broker = observer(prefix);
    const dir = failingDir();
    const started = await post(b.ready, '/api/pipelines/resume_dag/runs', { input: { dir } });
    expect(started.status, JSON.stringify(started.body)).toBe(201);
    const runId = started.body.run_id as string;
    expect(await outcome(broker, runId)).toBe('FAILED');
    expect(calls(dir, 'rs_c')).toBe(1);
    unlinkSync(join(dir, 'fail'));
    const both = await Promise.all([post(a.ready, `/api/runs/${runId}/resume`), post(b.ready, `/api/runs/${runId}/resume`)]);
    expect(both.map((r) => r.status).sort()).toEqual([202, 409]);
    const won = both.find((r) => r.status === 202) as { body: Json };
    const lost = both.find((r) => r.status === 409) as { body: Json };
    expect(won.body).toMatchObject({ attempt: 2, kept_steps: ['a', 'c'], pending_steps: ['b', 'd'] });
    expect(lost.body.error).toMatchObject({ code: 'run_not_resumable' });
    expect(await outcome(broker, runId)).toBe('COMPLETED');
    expect(calls(dir, 'rs_a')).toBe(1);
    expect(calls(dir, 'rs_c')).toBe(1);
    expect(calls(dir, 'rs_b')).toBe(2);
    const events = await logOf(broker, runId);
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    expect(events.filter((e) => e.type === 'PipelineResumeEvent')).toHaveLength(1);
  }, 180_000);
});

describe('RedisPipelineStorage and a resumed run', () => {
  it('moves the run back to RUNNING in its indexes at the resume event, and to COMPLETED at its end', async () => {
    const local = new InMemoryBroker();
    const { sequential } = resumePipelines(local);
    const dir = failingDir();
    const run = await sequential.kiq({ dir });
    await run.waitResult().catch(() => undefined);
    unlinkSync(join(dir, 'fail'));
    await (await sequential.resume(run.runId)).waitResult();
    const events = (await local.transport.read(run.runId, { since: 0 })).events;
    await local.close();
    const resumeAt = events.findIndex((e) => e.type === 'PipelineResumeEvent');
    const storage = new RedisPipelineStorage(redis.connect(), { keyPrefix: redis.prefix() });
    const ids = async (status: 'RUNNING' | 'FAILED' | 'COMPLETED'): Promise<string[]> => (await storage.listPipelines({ status })).map((s) => s.run_id);
    for (const e of events.slice(0, resumeAt)) await storage.applyEvent(e);
    expect(await ids('FAILED')).toEqual([run.runId]);
    await storage.applyEvent(events[resumeAt] as FlowcastEvent);
    expect(await ids('RUNNING')).toEqual([run.runId]);
    expect(await ids('FAILED')).toEqual([]);
    const reopened = await storage.getStatus(run.runId);
    expect(reopened).toMatchObject({ status: 'RUNNING', completed_at: null, error: null });
    expect(reopened?.steps.map((st) => st.status)).toEqual(['COMPLETED', 'PENDING', 'PENDING']);
    for (const e of events.slice(resumeAt + 1)) await storage.applyEvent(e);
    expect(await ids('COMPLETED')).toEqual([run.runId]);
    expect(await ids('RUNNING')).toEqual([]);
    expect(await storage.getStatus(run.runId)).toMatchObject({ status: 'COMPLETED', result: 'saved 6', last_seq: events.length });
  });
});
