/**
 * BullMQ across processes: worker processes (`flowcast worker` and `startWorker()`) run
 * the runs that this test process starts as a producer. Fan-in is atomic, a worker
 * SIGKILLed mid-step has its step recovered and retried elsewhere, cancel reaches the
 * process running the step, the engine status sees workers come and go.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { BullMQBroker } from '../src/redis/bullmq-broker.js';
import { DataflowPipeline } from '../src/pipeline/dataflow.js';
import { Pipeline } from '../src/pipeline/pipeline.js';
import { ErrorCodes } from '../src/core/errors.js';
import type { FlowcastEvent } from '../src/events/types.js';
import { clusterTasks, killPipeline } from './fixtures/tasks/cluster.js';
import { useRedisServer } from './helpers/redis.js';

const redis = useRedisServer();

interface Child {
  process: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children: Child[] = [];
const brokers: BullMQBroker[] = [];

afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.process.exitCode === null && c.process.signalCode === null) c.process.kill('SIGKILL');
    await c.exited;
  }
  await Promise.all(brokers.splice(0).map((b) => b.close()));
});

/** Spawns a node + tsx child and resolves once it printed `ready` (or a line matching `ready`). */
async function spawnChild(args: string[], env: Record<string, string>, ready: RegExp): Promise<Child> {
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: process.cwd(), env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => void (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => void (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const c: Child = { process: child, output: () => out, exited };
  children.push(c);
  await new Promise<void>((resolve, reject) => {
    const check = (): void => {
      if (ready.test(out)) {
        child.stdout.off('data', check);
        resolve();
      }
    };
    child.stdout.on('data', check);
    void exited.then(({ code }) => reject(new Error(`child exited with ${code} before it was ready:\n${out}`)));
  });
  return c;
}

function startApiWorker(prefix: string, maxStalled = 3, chainSteps?: number): Promise<Child> {
  const env: Record<string, string> = { FLOWCAST_TEST_REDIS: redis.url, FLOWCAST_TEST_PREFIX: prefix, FLOWCAST_TEST_MAX_STALLED: String(maxStalled) };
  if (chainSteps !== undefined) env.FLOWCAST_TEST_CHAIN = String(chainSteps);
  return spawnChild(['test/fixtures/tasks/start-worker.ts'], env, /^ready /m);
}

function startCliWorker(prefix: string): Promise<Child> {
  return spawnChild(
    ['src/cli/main.ts', 'worker', '--tasks', 'test/fixtures/tasks/cluster.ts', '--redis', redis.url, '--key-prefix', prefix, '--concurrency', '3'],
    {},
    /flowcast worker \S+ ready/,
  );
}

function producer(prefix: string): BullMQBroker {
  const broker = new BullMQBroker({ connection: redis.url, keyPrefix: prefix, worker: false });
  brokers.push(broker);
  return broker;
}

/** The next entry of a marker list written by the fixture tasks (blocks until one comes). */
async function nextMark(prefix: string, list: string): Promise<Record<string, unknown>> {
  const client = redis.connect();
  for (;;) {
    const got = await client.blpop(`${prefix}test:${list}`, 1);
    if (got !== null) return JSON.parse(got[1]) as Record<string, unknown>;
  }
}

async function marks(prefix: string, list: string): Promise<Record<string, unknown>[]> {
  const raw = await redis.connect().lrange(`${prefix}test:${list}`, 0, -1);
  return raw.map((r) => JSON.parse(r) as Record<string, unknown>);
}

async function logOf(broker: BullMQBroker, runId: string): Promise<FlowcastEvent[]> {
  const read = await broker.transport.read(runId);
  expect(read.complete).toBe(true);
  expect(read.events.map((e) => e.seq)).toEqual(read.events.map((_, i) => i + 1));
  return read.events;
}

// Each case starts node + tsx child processes: seconds each on a busy machine.
const SLOW = 90_000;

describe('BullMQ across processes', () => {
  it('flowcast worker runs the runs a producer starts, shows in the engine status, and stops cleanly on SIGTERM', async () => {
    const prefix = redis.prefix();
    const worker = await startCliWorker(prefix);
    const broker = producer(prefix);
    const t = clusterTasks(broker);
    const run = await new Pipeline(broker, { id: 'cli_seq' }).callNext(t.inc).callNext(t.double).kiq(4);
    expect(await run.waitResult({ timeoutMs: 60_000 })).toBe(10);

    // Heartbeats are eventually consistent: the worker reports its two jobs and idleness soon after.
    let status = await broker.engineStatus();
    while (status.workers[0]?.state !== 'idle' || (status.workers[0]?.processed ?? 0) < 2 || status.queues[0]?.active !== 0) {
      await new Promise((r) => setTimeout(r, 50));
      status = await broker.engineStatus();
    }
    expect(status.broker).toBe('bullmq');
    expect(status.workers).toHaveLength(1);
    expect(status.workers[0]).toMatchObject({ pid: worker.process.pid, concurrency: 3, active_jobs: 0 });
    expect(status.workers[0]?.processed).toBeGreaterThanOrEqual(2);
    expect(status.queues.map((q) => q.name)).toEqual(['tasks', 'control']);
    expect(status.queues[0]).toMatchObject({ waiting: 0, delayed: 0, failed: 0 });

    worker.process.kill('SIGTERM');
    expect(await worker.exited).toEqual({ code: 0, signal: null });
    expect(worker.output()).toContain('flowcast worker: stopped');
    expect((await broker.engineStatus()).workers).toEqual([]);
  }, SLOW);

  it('flowcast worker exits 1 with a clear message when Redis cannot be reached', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'worker', '--tasks', 'test/fixtures/tasks/cluster.ts', '--redis', 'redis://127.0.0.1:1'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d: Buffer) => void (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    expect(code).toBe(1);
    expect(err).toMatch(/cannot reach Redis at redis:\/\/127\.0\.0\.1:1/);
  }, SLOW);

  it('flowcast worker exits 1 with a clear message when the task module has no register function', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'worker', '--tasks', 'test/fixtures/tasks/no-register.ts', '--redis', redis.url], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d: Buffer) => void (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    expect(code).toBe(1);
    expect(err).toMatch(/must export a function that registers tasks.*\(its exports: answer\)/);
  }, SLOW);

  it('two workers racing on DAG fan-ins start each join step exactly once', async () => {
    const prefix = redis.prefix();
    await Promise.all([startApiWorker(prefix), startApiWorker(prefix)]);
    const broker = producer(prefix);
    const t = clusterTasks(broker);
    const branches = ['b0', 'b1', 'b2', 'b3', 'b4', 'b5'];
    let dag = new DataflowPipeline(broker, { id: 'fanin' });
    for (const b of branches) dag = dag.step(b, t.branch);
    dag = dag.step('join', t.join, { dependsOn: branches });
    const runs = await Promise.all(Array.from({ length: 12 }, (_, i) => dag.kiq(i)));
    const results = await Promise.all(runs.map((r) => r.waitResult({ timeoutMs: 60_000 })));
    expect(results).toEqual(runs.map((_, i) => i * branches.length));

    // The branches really ran on both workers, so the fan-ins really raced.
    expect(new Set((await marks(prefix, 'branch')).map((m) => m.pid)).size).toBe(2);
    const joins = await marks(prefix, 'join');
    for (const run of runs) {
      expect(joins.filter((j) => j.run === run.runId)).toHaveLength(1);
      const events = await logOf(broker, run.runId);
      expect(events.filter((e) => e.type === 'StepStartEvent' && e.step_name === 'join')).toHaveLength(1);
      expect(events.filter((e) => e.type === 'PipelineCompleteEvent')).toHaveLength(1);
    }
  }, SLOW);

  // With chaining (the default) the killed step runs inside the job of the step before it,
  // so the job BullMQ recovers is that one; without, it is the killed step's own job.
  it.each([
    ['chained into the job of the step before it (chainSteps default)', undefined],
    ['in its own job (chainSteps 0)', 0],
  ])('a worker SIGKILLed mid-step %s: BullMQ recovers the job, another worker retries the step, the run completes', async (_name, chainSteps) => {
    const prefix = redis.prefix();
    const [a, b] = await Promise.all([startApiWorker(prefix, 3, chainSteps), startApiWorker(prefix, 3, chainSteps)]);
    const broker = producer(prefix);
    const t = clusterTasks(broker);
    const handle = await killPipeline(broker, t).kiq(1);
    // Kill whichever worker runs the step's first attempt.
    const first = await nextMark(prefix, 'hang_once');
    expect(first.run).toBe(handle.runId);
    const victimPid = first.pid;
    // Chained: the run's record names the job of step "inc" as the one carrying this call.
    const during = await broker.runState.get(handle.runId);
    if (chainSteps === 0) expect(during?.steps.hang?.carrier).toBeUndefined();
    else expect(during?.steps.hang?.carrier).toBe(during?.steps.inc?.task_id);
    const victim = [a, b].find((c) => c.process.pid === victimPid);
    expect(victim).toBeDefined();
    victim?.process.kill('SIGKILL');

    expect(await handle.waitResult({ timeoutMs: 60_000 })).toBe('2:done on attempt 2');
    const events = await logOf(broker, handle.runId);
    const retry = events.find((e) => e.type === 'StepRetryEvent');
    expect(retry).toMatchObject({ step_name: 'hang', attempt: 2, error: expect.stringMatching(/^WorkerLostError: /) as string });
    const starts = events.filter((e) => e.type === 'StepStartEvent').map((e) => (e.type === 'StepStartEvent' ? e.attempt : 0));
    expect(starts).toEqual([1, 1, 2]);
    // The retry names the call that was lost, and the run's record no longer says a job carries it.
    const hangStarts = events.filter((e) => e.type === 'StepStartEvent' && e.step_name === 'hang');
    expect(retry?.type === 'StepRetryEvent' && retry.task_id).toBe(hangStarts[0]?.type === 'StepStartEvent' && hangStarts[0].task_id);
    const rec = await broker.runState.get(handle.runId);
    expect(rec?.steps.hang?.carrier).toBeUndefined();
    const calls = [first, ...(await marks(prefix, 'hang_once')).filter((m) => m.run === handle.runId)];
    expect(calls.map((c) => c.attempt)).toEqual([1, 2]);
    expect(calls[1]?.pid).not.toBe(victimPid);
    // The surviving worker's hooks saw the retry (it went through its run engine).
    const hooked = (await nextMark(prefix, 'hook_retry'));
    expect(hooked).toMatchObject({ run: handle.runId, attempt: 2, pid: calls[1]?.pid });
  }, SLOW);

  it('with maxStalledCount 0 a step whose worker is SIGKILLed fails with WorkerLostError instead of running again', async () => {
    const prefix = redis.prefix();
    const [a, b] = await Promise.all([startApiWorker(prefix, 0), startApiWorker(prefix, 0)]);
    const broker = producer(prefix);
    const t = clusterTasks(broker);
    const handle = await new Pipeline(broker, { id: 'kill_once' }).callNext(t.hang_once, { name: 'hang' }).kiq('y');
    const first = await nextMark(prefix, 'hang_once');
    [a, b].find((c) => c.process.pid === first.pid)?.process.kill('SIGKILL');

    await expect(handle.waitResult({ timeoutMs: 60_000 })).rejects.toThrow(/WorkerLostError: the worker running this step stopped 1 times \(maxStalledCount 0\)/);
    expect(await marks(prefix, 'hang_once')).toEqual([]);
    const events = await logOf(broker, handle.runId);
    expect(events.map((e) => e.type)).toEqual(['PipelineStartEvent', 'StepStartEvent', 'StepErrorEvent', 'PipelineErrorEvent']);
  }, SLOW);

  it('a run cancelled in this process aborts the step running in a worker process (ctx.signal fires)', async () => {
    const prefix = redis.prefix();
    await startApiWorker(prefix);
    const broker = producer(prefix);
    const t = clusterTasks(broker);
    const handle = await new Pipeline(broker, { id: 'cancel' }).callNext(t.wait_abort).callNext(t.inc).kiq(null);
    const started = await nextMark(prefix, 'wait_abort_started');
    expect(started.run).toBe(handle.runId);
    expect(started.pid).not.toBe(process.pid);

    expect(await handle.cancel('stop it')).toBe(true);
    await expect(handle.waitResult({ timeoutMs: 60_000 })).rejects.toMatchObject({ code: ErrorCodes.CANCELLED });
    const aborted = await nextMark(prefix, 'wait_abort_aborted');
    expect(aborted).toMatchObject({ run: handle.runId, pid: started.pid });
    expect(String(aborted.reason)).toContain('was cancelled: stop it');
    const events = await logOf(broker, handle.runId);
    expect(events.at(-1)).toMatchObject({ type: 'PipelineCancelledEvent', reason: 'stop it' });
    expect(events.some((e) => e.type === 'StepSkipEvent' && e.step_name === 'inc')).toBe(true);
  }, SLOW);
});
