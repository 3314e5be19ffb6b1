/**
 * The distributed setup end to end, with real processes: one redis-server (AOF on), 2
 * server processes, 3 worker processes, 4 SDK clients (two start on each server, each
 * knowing both), and this process as the producer of 200 runs of mixed pipelines
 * (sequential with a map, a DAG fan-in, a retried step, a failing one, a slow one).
 *
 * While the runs go on: one server is SIGKILLed (its clients fail over to the other and
 * resume), a worker is SIGKILLed while it runs steps (BullMQ's stalled-job check gives
 * them to another worker and the runs still end), and Redis is restarted (AOF, fsync
 * always). At the end, for every run, every client's events equal the run's stored log:
 * same events in the same order, no gap, no duplicate; tracking agrees with the end.
 *
 * Bounded in time: every wait has an upper bound; nothing asserts on timing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { Redis } from 'ioredis';
import { isTerminalEvent, type FlowcastEvent, type RunHandle } from '../src/index.js';
import { BullMQBroker } from '../src/redis/bullmq-broker.js';
import { PipelineMonitor } from '../src/client/index.js';
import { definePipelines } from './fixtures/e2e/pipelines.js';
import { freePort, startRedisServer, type RedisServer } from './helpers/redis.js';
import { waitUntil } from './helpers/collect.js';

const RUNS = Number(process.env.FLOWCAST_E2E_RUNS ?? 200);
const IN_FLIGHT = 16;
const PREFIX = 'e2e:';

interface Child {
  child: ChildProcess;
  out: () => string;
  exited: Promise<void>;
}
const children: Child[] = [];
const cleanups: (() => Promise<unknown> | void)[] = [];
afterAll(async () => {
  for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
  for (const cleanup of cleanups.reverse()) await cleanup();
});

async function spawnChild(script: string, env: Record<string, string>, ready: RegExp): Promise<Child & { match: RegExpExecArray }> {
  const child = spawn(process.execPath, ['--import', 'tsx', script], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (out += s));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const c: Child = { child, out: () => out, exited };
  children.push(c);
  let match: RegExpExecArray | null = null;
  await waitUntil(
    () => {
      if (child.exitCode !== null) throw new Error(`${script} exited with ${child.exitCode}: ${out}`);
      match = ready.exec(out);
      return match !== null;
    },
    `${script} ready`,
    60_000,
  );
  return { ...c, match: match as unknown as RegExpExecArray };
}

/** What one client received, per run. */
class ClientLog {
  readonly byRun = new Map<string, FlowcastEvent[]>();
  readonly monitor: PipelineMonitor;
  failovers = 0;
  constructor(urls: string[]) {
    this.monitor = new PipelineMonitor(urls, {
      WebSocket,
      lateJoin: 'replay',
      reconnect: { initialDelayMs: 20, maxDelayMs: 200 },
    });
    this.monitor.on('*', (event) => {
      let list = this.byRun.get(event.run_id);
      if (list === undefined) this.byRun.set(event.run_id, (list = []));
      list.push(event);
    });
    this.monitor.on('state', (s) => {
      if (s.to === 'reconnecting') this.failovers++;
    });
  }
  ended(runId: string): boolean {
    const list = this.byRun.get(runId);
    return list !== undefined && list.length > 0 && isTerminalEvent(list[list.length - 1] as FlowcastEvent);
  }
}

describe('many workers, many servers, one Redis', () => {
  it(`${RUNS} runs: every client gets every run's whole log while a server, a worker and Redis go down`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flowcast-e2e-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const port = await freePort();
    let redis: RedisServer = await startRedisServer({ port, dir, appendOnly: true });
    cleanups.push(() => redis.stop());
    const env = { E2E_REDIS: redis.url, E2E_PREFIX: PREFIX };

    const servers = await Promise.all([0, 1].map(() => spawnChild('test/fixtures/e2e/server.ts', env, /listening (\d+)/)));
    const workers = await Promise.all([0, 1, 2].map(() => spawnChild('test/fixtures/e2e/worker.ts', env, /ready (\S+)/)));
    const urls = servers.map((s) => `ws://127.0.0.1:${s.match[1]}/ws`) as [string, string];

    const clients = [
      new ClientLog([urls[0], urls[1]]),
      new ClientLog([urls[0], urls[1]]),
      new ClientLog([urls[1], urls[0]]),
      new ClientLog([urls[1], urls[0]]),
    ];
    cleanups.push(() => Promise.all(clients.map((c) => c.monitor.close())));
    await Promise.all(clients.map((c) => c.monitor.connect()));
    await Promise.all(clients.map((c) => c.monitor.subscribe('*')));

    const producer = new BullMQBroker({ connection: redis.url, keyPrefix: PREFIX, worker: false });
    const { pipelines, tracking } = definePipelines(producer);
    cleanups.push(async () => {
      await tracking.close();
      await producer.close({ force: true });
    });

    const runs: { handle: RunHandle; pipeline: string; outcome: Promise<'COMPLETED' | 'FAILED'> }[] = [];
    const inFlight = new Set<Promise<unknown>>();
    const chaos: string[] = [];
    let killedWorkerPid = 0;
    let redisDown = false;

    const doChaos = async (started: number): Promise<void> => {
      if (started === Math.floor(RUNS * 0.2)) {
        // A server dies with two clients on it: they move to the other one.
        servers[0]?.child.kill('SIGKILL');
        chaos.push(`server ${servers[0]?.child.pid} killed after ${started} runs`);
      } else if (started === Math.floor(RUNS * 0.4)) {
        // A worker dies while it runs steps.
        let busy: number | undefined;
        await waitUntil(
          () => {
            void producer.engineStatus().then((s) => {
              busy = s.workers.find((w) => w.state === 'busy' && w.active_jobs > 0 && workers.some((c) => c.child.pid === w.pid))?.pid;
            });
            return busy !== undefined;
          },
          'a busy worker',
          20_000,
        );
        const victim = workers.find((c) => c.child.pid === busy);
        victim?.child.kill('SIGKILL');
        killedWorkerPid = busy ?? 0;
        chaos.push(`worker ${busy} killed mid-step after ${started} runs`);
      } else if (started === Math.floor(RUNS * 0.6)) {
        // Redis restarts (AOF on): everyone reconnects, nothing acknowledged is lost.
        redisDown = true;
        await redis.stop('SIGTERM');
        redis = await startRedisServer({ port, dir, appendOnly: true });
        const probe = new Redis(redis.url, { maxRetriesPerRequest: null });
        await probe.ping();
        probe.disconnect();
        redisDown = false;
        chaos.push(`redis restarted after ${started} runs`);
      }
    };

    for (let i = 0; i < RUNS; i++) {
      while (inFlight.size >= IN_FLIGHT) await Promise.race(inFlight);
      await doChaos(i);
      expect(redisDown).toBe(false);
      const pipeline = pipelines[i % pipelines.length] as (typeof pipelines)[number];
      const handle = (await (pipeline as { kiq(input: number): Promise<RunHandle> }).kiq(i));
      const outcome = handle.waitResult({ timeoutMs: 120_000 }).then(
        () => 'COMPLETED' as const,
        (error: Error) => {
          if (/failed/i.test(error.message)) return 'FAILED' as const;
          throw error;
        },
      );
      runs.push({ handle, pipeline: pipeline.pipelineId, outcome });
      const settled = outcome.catch(() => undefined).finally(() => inFlight.delete(settled));
      inFlight.add(settled);
    }
    const settled = await Promise.allSettled(runs.map((r) => r.outcome));
    const stuck = runs.filter((_, i) => settled[i]?.status === 'rejected');
    if (stuck.length > 0) {
      const lines = await Promise.all(
        stuck.slice(0, 5).map(async (r) => {
          const log = await producer.transport.read(r.handle.runId, { since: 0 });
          const record = await producer.runState.get(r.handle.runId);
          const steps = record === null ? 'no record' : JSON.stringify(record.steps);
          return `${r.pipeline} ${r.handle.runId}: ${log.events.map((e) => `${e.seq}:${e.type}${'step_name' in e ? `(${e.step_name})` : ''}`).join(' ')} | state ${record?.status} ${steps.slice(0, 600)}`;
        }),
      );
      throw new Error(`${stuck.length} run(s) did not end (${chaos.join('; ')}):\n${lines.join('\n')}`);
    }
    const outcomes = settled.map((o) => (o as PromiseFulfilledResult<'COMPLETED' | 'FAILED'>).value);
    expect(chaos).toHaveLength(3);

    // Every run ended as its pipeline must: e2e_fail fails, every other pipeline completes.
    for (const [i, r] of runs.entries()) expect(`${r.pipeline} ${outcomes[i]}`).toBe(`${r.pipeline} ${r.pipeline === 'e2e_fail' ? 'FAILED' : 'COMPLETED'}`);

    // Every client has every run to its end, and each run's events equal the stored log.
    await waitUntil(() => clients.every((c) => runs.every((r) => c.ended(r.handle.runId))), 'every run ended at every client', 60_000);
    let retriedAfterKill = 0;
    for (const r of runs) {
      const log = await producer.transport.read(r.handle.runId, { since: 0 });
      expect(log.complete && log.ended, `run ${r.handle.runId}: the stored log is whole and ended`).toBe(true);
      const expected = log.events.map((e) => `${e.seq}:${e.event_id}:${e.type}`);
      expect(log.events.map((e) => e.seq)).toEqual(log.events.map((_, k) => k + 1));
      for (const [k, c] of clients.entries()) {
        const got = (c.byRun.get(r.handle.runId) ?? []).map((e) => `${e.seq}:${e.event_id}:${e.type}`);
        expect(got, `client ${k}, run ${r.handle.runId} (${r.pipeline})`).toEqual(expected);
      }
      // Tracking is written by whichever process emitted each event, so it may trail the
      // log for a moment (an event that arrives ahead of a gap waits for it: up to the
      // storage's gapTimeoutMs, 10 s). Bounded wait, then the tracked end must match.
      const want = r.pipeline === 'e2e_fail' ? 'FAILED' : 'COMPLETED';
      let status = await tracking.getStatus(r.handle.runId);
      for (let k = 0; k < 150 && status?.status !== want; k++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        status = await tracking.getStatus(r.handle.runId);
      }
      expect(`${status?.status} at seq ${status?.last_seq} of ${log.last_seq}`, `tracked status of ${r.handle.runId}`).toBe(`${want} at seq ${log.last_seq} of ${log.last_seq}`);
      if (log.events.some((e) => e.type === 'StepRetryEvent' && !/fails once/.test(e.error))) retriedAfterKill++;
    }
    // The killed worker's steps were retried elsewhere, visibly.
    expect(killedWorkerPid).toBeGreaterThan(0);
    expect(retriedAfterKill).toBeGreaterThan(0);
    // The clients of the killed server did fail over.
    expect(clients[0]?.failovers).toBeGreaterThan(0);
    expect(clients[1]?.failovers).toBeGreaterThan(0);
    console.log(`e2e: ${RUNS} runs; ${chaos.join('; ')}; ${retriedAfterKill} run(s) with a step retried after the kill`);
  }, 420_000);
});
