/**
 * One trace from the process that starts a run to the last step, across processes: a
 * real redis-server, a starter process (producer-only BullMQ broker) and TWO worker
 * processes, each with the OTel SDK registered (in-memory exporter, W3C propagator). The
 * run's context travels in the BullMQ step jobs; each process prints its finished spans
 * as JSON, and the test checks the trace ids and the parent links across all three.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { SpanStatusCode } from '@opentelemetry/api';
import { useRedisServer } from './helpers/redis.js';
import type { SpanJson } from './fixtures/tracing/otel.js';

const redis = useRedisServer();

interface Child {
  child: ChildProcess;
  out: () => string;
}
const children: Child[] = [];
afterAll(async () => {
  await Promise.all(
    children.map(
      ({ child }) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
          child.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          child.kill('SIGTERM');
        }),
    ),
  );
});

async function poll<T>(what: string, timeoutMs: number, fn: () => T | null | Promise<T | null>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== null) return value;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs}ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function spawnChild(script: string, env: Record<string, string>): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', script], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (out += s));
  const c = { child, out: () => out };
  children.push(c);
  return c;
}

function waitFor(c: Child, pattern: RegExp, what: string): Promise<RegExpExecArray> {
  return poll(what, 60_000, () => {
    if (c.child.exitCode !== null) throw new Error(`${what}: the process exited with ${c.child.exitCode}: ${c.out()}`);
    return pattern.exec(c.out());
  });
}

/** Asks a process for its finished spans (see fixtures/tracing/otel.ts). */
async function dump(c: Child): Promise<SpanJson[]> {
  const before = c.out().length;
  c.child.stdin?.write('dump\n');
  const m = await poll('a span dump', 20_000, () => /^spans (.*)$/m.exec(c.out().slice(before)));
  return JSON.parse(m[1] as string) as SpanJson[];
}

describe('tracing across processes (BullMQ broker)', () => {
  it('one trace from the starter through two workers to the last step, every step span a child of the run span', async () => {
    const env = { TR_REDIS: redis.url, TR_PREFIX: redis.prefix() };
    const workers = [spawnChild('test/fixtures/tracing/worker.ts', env), spawnChild('test/fixtures/tracing/worker.ts', env)];
    for (const [i, w] of workers.entries()) await waitFor(w, /^ready /m, `worker ${i + 1} ready`);
    const starter = spawnChild('test/fixtures/tracing/starter.ts', env);
    const ended = await waitFor(starter, /^ended (\S+) (\S+)$/m, 'the run ended');
    const runId = ended[1] as string;
    expect(ended[2]).toBe('40');

    // The run span ends in the starter when the run's end reaches it.
    const starterSpans = await poll('the run span', 20_000, async () => {
      const spans = await dump(starter);
      return spans.some((s) => s.name === 'flowcast.run traced_dist') ? spans : null;
    });
    const request = starterSpans.find((s) => s.name === 'app.request') as SpanJson;
    const runSpan = starterSpans.find((s) => s.name === 'flowcast.run traced_dist') as SpanJson;
    expect(runSpan).toMatchObject({
      traceId: request.traceId,
      parentSpanId: request.spanId,
      attributes: { 'flowcast.pipeline.id': 'traced_dist', 'flowcast.run.id': runId, 'flowcast.run.status': 'COMPLETED' },
    });
    expect(runSpan.status).not.toBe(SpanStatusCode.ERROR);

    const stepSpans = await poll('the step spans of both workers', 20_000, async () => {
      const spans = (await Promise.all(workers.map(dump))).flat().filter((s) => s.name.startsWith('flowcast.step '));
      return spans.length >= 4 ? spans : null;
    });
    expect(stepSpans.map((s) => s.attributes['flowcast.step.name']).sort()).toEqual(['finish', 'left', 'prepare', 'right']);
    for (const s of stepSpans) {
      expect(s.traceId).toBe(request.traceId);
      expect(s.parentSpanId).toBe(runSpan.spanId);
      expect(s.attributes).toMatchObject({ 'flowcast.run.id': runId, 'flowcast.pipeline.id': 'traced_dist', 'flowcast.step.attempt': 1 });
      expect(s.status).not.toBe(SpanStatusCode.ERROR);
    }
    // Both workers ran steps of the run (the barrier puts `left` and `right` on different ones).
    const pidOf = (name: string): number => (stepSpans.find((s) => s.attributes['flowcast.step.name'] === name) as SpanJson).pid;
    expect(pidOf('left')).not.toBe(pidOf('right'));
    expect(new Set(stepSpans.map((s) => s.pid))).toEqual(new Set(workers.map((w) => w.child.pid)));
    // The starter ran no step: its spans are the application's and the run's.
    expect(starterSpans.filter((s) => s.name.startsWith('flowcast.step '))).toEqual([]);
  }, 120_000);
});
