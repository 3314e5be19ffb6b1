/**
 * Three worker processes run 500 runs (DAGs whose parallel branches log while their
 * siblings end, retried steps that log, maps whose items log) that this process starts
 * as a producer. Within a worker, the events of several steps of one run get their seqs
 * at about the same moment: tracking and hooks must still get them in seq order.
 *
 * The test fails on any line of a worker that says a tracking write failed (such as
 * `applyEvents(events): seqs must increase`) or that its hooks got a run's events out of
 * seq order; and checks that every run's log is gapless and in order, and that the run's
 * tracked record (as the workers wrote it, not caught up by a read) equals its log.
 *
 * Bounded in time: every wait has an upper bound; nothing asserts on timing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { isTerminalEvent, type RunHandle } from '../src/index.js';
import { BullMQBroker } from '../src/redis/bullmq-broker.js';
import { trackRunKey } from '../src/redis/keys.js';
import type { PipelineStatus } from '../src/tracking/models.js';
import { definePipelines } from './fixtures/seq-order/pipelines.js';
import { reduce } from './helpers/events.js';
import { useRedisServer } from './helpers/redis.js';

const RUNS = 500;
const WORKERS = 3;
const IN_FLIGHT = 48;

const redis = useRedisServer();

interface Child {
  child: ChildProcess;
  out: () => string;
  exited: Promise<void>;
}
const children: Child[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
    await c.exited;
  }
});

function spawnWorker(env: Record<string, string>): Promise<Child> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/seq-order/worker.ts'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (out += s));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const c: Child = { child, out: () => out, exited };
  children.push(c);
  return new Promise((resolve, reject) => {
    const check = (): void => {
      if (/^ready /m.test(out)) {
        child.stdout?.off('data', check);
        resolve(c);
      }
    };
    child.stdout?.on('data', check);
    void exited.then(() => reject(new Error(`worker exited before it was ready:\n${out}`)));
  });
}

/** A worker's lines that report a failure: a tracking write that failed, events handed on out of seq order, a worker error. */
function complaints(out: string): string[] {
  return out.split('\n').filter((line) => /flowcast tracking: .* failed|seqs must increase|seq order broken|worker error|flowcast: /.test(line));
}

describe('sequence order across BullMQ workers', () => {
  it(`${WORKERS} workers, ${RUNS} runs with parallel steps, logs and retries: no tracking write fails, every log is gapless and in order, tracking equals the log`, async () => {
    const prefix = redis.prefix();
    const workers = await Promise.all(Array.from({ length: WORKERS }, () => spawnWorker({ ORDER_REDIS: redis.url, ORDER_PREFIX: prefix })));
    const producer = new BullMQBroker({ connection: redis.url, keyPrefix: prefix, worker: false });
    const { pipelines, tracking } = definePipelines(producer);
    try {
      const runs: { handle: RunHandle; pipeline: string; done: Promise<unknown> }[] = [];
      const inFlight = new Set<Promise<unknown>>();
      for (let i = 0; i < RUNS; i++) {
        while (inFlight.size >= IN_FLIGHT) await Promise.race(inFlight);
        const pipeline = pipelines[i % pipelines.length] as (typeof pipelines)[number];
        const handle = await (pipeline as { kiq(input: number): Promise<RunHandle> }).kiq(i);
        const done = handle.waitResult({ timeoutMs: 90_000 });
        runs.push({ handle, pipeline: pipeline.pipelineId, done });
        const settled: Promise<unknown> = done.catch(() => undefined).finally(() => inFlight.delete(settled));
        inFlight.add(settled);
      }
      const outcomes = await Promise.allSettled(runs.map((r) => r.done));
      const failed = runs.flatMap((r, i) => {
        const o = outcomes[i];
        return o?.status === 'rejected' ? [`${r.pipeline} ${r.handle.runId}: ${String(o.reason)}`] : [];
      });
      expect(failed).toEqual([]);
      const client = redis.connect();
      const behind: string[] = [];
      for (const r of runs) {
        const log = await producer.transport.read(r.handle.runId, { since: 0 });
        expect(log.complete && log.ended, `run ${r.handle.runId}: the stored log is whole and ended`).toBe(true);
        expect(log.events.map((e) => e.seq), `run ${r.handle.runId}: seqs 1..n`).toEqual(log.events.map((_, k) => k + 1));
        expect(isTerminalEvent(log.events.at(-1)!)).toBe(true);
        // The record as the workers wrote it (a read would catch it up from the log). Its last
        // write may land a moment after the end was published: a bounded wait for it.
        let stored: PipelineStatus | null = null;
        for (let k = 0; k < 100; k++) {
          const json = await client.hget(trackRunKey(prefix, r.handle.runId), 's');
          stored = json === null ? null : (JSON.parse(json) as PipelineStatus);
          if (stored?.last_seq === log.last_seq) break;
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        if (stored?.last_seq !== log.last_seq) behind.push(`${r.pipeline} ${r.handle.runId}: stored at seq ${stored?.last_seq} of ${log.last_seq}`);
        else expect(stored, `tracked record of ${r.pipeline} run ${r.handle.runId}`).toEqual(reduce(log.events));
      }
      expect(workers.flatMap((w) => complaints(w.out()))).toEqual([]);
      expect(behind).toEqual([]);
    } finally {
      await tracking.close();
      await producer.close({ force: true });
    }
  }, 150_000);
});
